"""PyTorch TypedBert: BERT whose input embeddings also carry each token's entity type and entity role.

Uploaded to the Hub with the weights and run under `trust_remote_code=True`: it imports only torch, transformers and
the other uploaded files, and registers nothing at import (`typed_bert.register_typed_bert()` does, on request). The
entity tables start at zero with row 0 fixed at zero, so a TypedBert built from BERT weights computes what BERT does
until it is trained (docs/model.md).
"""

import os
import shutil

import torch
from torch import nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from transformers import BertModel, BertPreTrainedModel
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndCrossAttentions,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.models.bert.modeling_bert import BertEmbeddings
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, logging

# Every uploaded file is imported here, directly: transformers copies a model file's relative imports into each saved
# folder and Hub download, and 4.57 follows only direct ones. The pipeline is announced in config.json.
try:
    from .configuration_typed_bert import OBJECT_ROLE, SUBJECT_ROLE, TypedBertConfig
    from .encoding_typed_bert import MODEL_INPUT_NAMES  # noqa: F401
    from .pipeline_typed_bert import RelationClassificationPipeline, entity_model_source, load_entity_model  # noqa: F401
except ImportError:  # imported as a top-level module from a checkout, not as part of a package
    from configuration_typed_bert import OBJECT_ROLE, SUBJECT_ROLE, TypedBertConfig
    from encoding_typed_bert import MODEL_INPUT_NAMES  # noqa: F401
    from pipeline_typed_bert import RelationClassificationPipeline, entity_model_source, load_entity_model  # noqa: F401

# Written into every saved config.json, so that a checkpoint loads through each Auto class.
TYPED_BERT_AUTO_MAP = {
    "AutoConfig": "configuration_typed_bert.TypedBertConfig",
    "AutoModel": "modeling_typed_bert.TypedBertModel",
    "AutoModelForSequenceClassification": "modeling_typed_bert.TypedBertForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_typed_bert.TypedBertForTokenClassification",
}
RELATION_TASK = "relation-classification"
ENTITY_TASK = "token-classification"
logger = logging.get_logger(__name__)


def _announced_pipeline(task: str, pipeline_class: str, auto_class: str) -> dict[str, dict]:
    """The `custom_pipelines` entry of config.json that makes `pipeline(task, trust_remote_code=True)` run
    `pipeline_class` of the uploaded pipeline file."""
    return {task: {"impl": f"pipeline_typed_bert.{pipeline_class}", "pt": [auto_class], "tf": [], "type": "text"}}


def _check_ids(ids: torch.Tensor, name: str, shape: torch.Size) -> None:
    """A `ValueError` unless `ids` has `shape` and an integer dtype (the range is checked in the encoding: a check
    here would cost a device-to-host sync)."""
    if ids.shape != shape:
        raise ValueError(f"{name} has shape {tuple(ids.shape)} but input_ids/inputs_embeds have shape {tuple(shape)}.")
    if ids.dtype not in (torch.long, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"{name} must hold integer ids, got dtype {ids.dtype}.")


class TypedBertEntityEmbedding(nn.Embedding):
    """An entity table (types or roles): zero at initialisation, row 0 ("no entity" / "no role") fixed at zero."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__(num_embeddings, embedding_dim, padding_idx=0)

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)


class TypedBertEmbeddings(BertEmbeddings):
    """BERT's embeddings plus the tables the config asks for (each None otherwise): `entity_type_embeddings` and
    `entity_role_embeddings` (by `input_mode`), `word_shape_embeddings` (`word_shapes`)."""

    def __init__(self, config: TypedBertConfig) -> None:
        super().__init__(config)
        rows = (
            (config.num_entity_types, config.use_entity_type_embeddings),
            (config.num_entity_roles, config.use_entity_role_embeddings),
            (config.num_word_shapes, config.word_shapes),
        )
        self.entity_type_embeddings, self.entity_role_embeddings, self.word_shape_embeddings = (
            TypedBertEntityEmbedding(count, config.hidden_size) if used else None for count, used in rows
        )

    def entity_tables(self) -> list[TypedBertEntityEmbedding]:
        """The entity tables this model has."""
        return [table for table in (self.entity_type_embeddings, self.entity_role_embeddings) if table is not None]

    def add_entity_embeddings(
        self,
        inputs_embeds: torch.Tensor,
        entity_type_ids: torch.LongTensor | None,
        entity_role_ids: torch.LongTensor | None,
        word_shape_ids: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """Word vectors `(batch, seq, hidden)` plus the rows that the ids `(batch, seq)` name in each table (ids None,
        or a table the model lacks: nothing added). Every token is looked up; row 0 of every table is zero."""
        tables = (self.entity_type_embeddings, self.entity_role_embeddings, self.word_shape_embeddings)
        for table, ids in zip(tables, (entity_type_ids, entity_role_ids, word_shape_ids), strict=True):
            if table is not None and ids is not None:
                inputs_embeds = inputs_embeds + table(ids)
        return inputs_embeds


class TypedBertPreTrainedModel(BertPreTrainedModel):
    """Loads TypedBert checkpoints, plain BERT checkpoints included (the entity tables then start at zero)."""

    config_class = TypedBertConfig
    base_model_prefix = "bert"
    # An entity_start checkpoint has no pooler; one converted from BERT may still carry BERT's, unused.
    _keys_to_ignore_on_load_unexpected = [r"pooler\."]
    # The losses are means over the batch: the Trainer must scale them for gradient accumulation and devices itself,
    # and not pass `num_items_in_batch` (transformers 4.57's BertModel refuses it).
    accepts_loss_kwargs = False

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, TypedBertEntityEmbedding):
            if not getattr(module.weight, "_is_hf_initialized", False):  # transformers 5 flags loaded weights
                module.reset_parameters()
        else:
            super()._init_weights(module)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, loading only safetensors weights unless the caller opts in to pickle
        files with `use_safetensors=False`."""
        kwargs.setdefault("use_safetensors", True)
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    # The pipeline a saved checkpoint announces in config.json's `custom_pipelines` (`_announced_pipeline`).
    _custom_pipelines: dict | None = None

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained` (and so `push_to_hub` and the `Trainer`), with every Auto class in
        config.json's `auto_map`, the announced pipeline and the entity model that `config.entity_model` names."""
        self.config.auto_map = {**TYPED_BERT_AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        if self._custom_pipelines is not None:
            self.config.custom_pipelines = self._custom_pipelines
        saved = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", args[0] if args else True):
            self._save_entity_model(save_directory)
        return saved

    def _save_entity_model(self, save_directory) -> None:
        """Write the entity model into `config.entity_model`'s subfolder of `save_directory`: copied from the folder
        this model was loaded from, or read from its Hub repo at the same commit and saved."""
        if not getattr(self.config, "entity_model", None):
            return
        source, load = entity_model_source(self)
        target = os.path.join(save_directory, self.config.entity_model)
        if os.path.isdir(source):
            if not (os.path.isdir(target) and os.path.samefile(source, target)):  # not saved in place
                shutil.copytree(source, target, dirs_exist_ok=True)
            return
        try:
            if not load:  # the folder this model was loaded from has no such subfolder
                raise FileNotFoundError(f"no folder {source!r}")
            entity_model, tokenizer = load_entity_model(source, dtype="auto", **load)
        except (OSError, ValueError) as error:
            logger.warning(f"config.entity_model names {self.config.entity_model!r}, which could not be read from "
                           f"{self.name_or_path!r} ({error}): the saved folder has no entity model. Save one into it "
                           "with `typed-bert push --entity-model` or `typed-bert train --entity-model`.")  # fmt: skip
            return
        entity_model.save_pretrained(target)
        tokenizer.save_pretrained(target)


class TypedBertModel(TypedBertPreTrainedModel, BertModel):
    """BERT encoder whose input embeddings also carry each token's entity type and entity role."""

    def __init__(self, config: TypedBertConfig, add_pooling_layer: bool | None = None) -> None:
        """`add_pooling_layer` defaults to `config.classifier_pooling == "cls"`: only that pooling uses the pooler."""
        if add_pooling_layer is None:
            add_pooling_layer = config.classifier_pooling == "cls"
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        if config.use_entity_embeddings or config.word_shapes:
            self.embeddings = TypedBertEmbeddings(config)
            self.embeddings.apply(self._init_weights)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        entity_type_ids: torch.LongTensor | None = None,
        entity_role_ids: torch.LongTensor | None = None,
        word_shape_ids: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPoolingAndCrossAttentions | tuple[torch.Tensor, ...]:
        r"""
        Args:
            entity_type_ids (`torch.LongTensor` of shape `(batch, seq)`, *optional*):
                Index into `config.entity_types` of the entity each token belongs to; 0 (no entity) when absent.
            entity_role_ids (`torch.LongTensor` of shape `(batch, seq)`, *optional*):
                0 = outside both entities, 1 = subject, 2 = object; all 0 when absent.
            word_shape_ids (`torch.LongTensor` of shape `(batch, seq)`, *optional*):
                Index into `WORD_SHAPES` of each token's word (`encoding_typed_bert.word_shape_ids`).
            position_ids (`torch.LongTensor` of shape `(batch, seq)`, *optional*): by default 0, 1, ... as in BERT;
                with `config.position_id_offset` (RoBERTa's family) the real tokens counted from the offset.
            The other arguments are those of `BertModel`.

        Returns:
            `BaseModelOutputWithPoolingAndCrossAttentions` (`pooler_output` None without a pooling layer).
        """
        inputs_embeds = self.typed_inputs_embeds(input_ids, inputs_embeds, entity_type_ids, entity_role_ids,
                                                 word_shape_ids)  # fmt: skip
        if position_ids is None and self.config.position_id_offset:
            position_ids = _counted_positions(
                attention_mask, inputs_embeds.shape[:-1], self.config.position_id_offset, inputs_embeds.device
            )
        return_dict = kwargs.pop("return_dict", None)
        outputs = super().forward(attention_mask=attention_mask, token_type_ids=token_type_ids,
                                  position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True,
                                  **kwargs)  # fmt: skip
        # The tuple form without the absent pooler output, on every transformers version (4.57's keeps a None).
        return outputs if (return_dict if return_dict is not None else self.config.return_dict) else outputs.to_tuple()

    def typed_inputs_embeds(
        self,
        input_ids: torch.LongTensor | None,
        inputs_embeds: torch.Tensor | None,
        entity_type_ids: torch.LongTensor | None,
        entity_role_ids: torch.LongTensor | None,
        word_shape_ids: torch.LongTensor | None,
    ) -> torch.Tensor:
        """The word vectors of `input_ids` (or `inputs_embeds`) plus the entity and word-shape rows the ids name,
        `(batch, seq, hidden)`: what BERT's embedding layer adds positions and segments to."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if input_ids is not None:
            inputs_embeds = self.embeddings.word_embeddings(input_ids)
        typed = {"entity_type_ids": entity_type_ids, "entity_role_ids": entity_role_ids,
                 "word_shape_ids": word_shape_ids}  # fmt: skip
        for name, ids in typed.items():
            if ids is not None:
                _check_ids(ids, name, inputs_embeds.shape[:-1])
        if isinstance(self.embeddings, TypedBertEmbeddings):
            inputs_embeds = self.embeddings.add_entity_embeddings(
                inputs_embeds, entity_type_ids, entity_role_ids, word_shape_ids
            )
        return inputs_embeds


def _counted_positions(
    attention_mask: torch.Tensor | None, shape: torch.Size, offset: int, device: torch.device
) -> torch.LongTensor:
    """RoBERTa's position ids `(batch, seq)`: real tokens count up from `offset`, whatever the padding side; padding
    gets `offset - 1` (the padding index). Without a 2D mask every token is real."""
    if attention_mask is None or attention_mask.dim() != 2:
        return torch.arange(offset, offset + shape[1], device=device).unsqueeze(0)
    mask = attention_mask.long()
    return torch.cumsum(mask, dim=1) * mask + (offset - 1)


def _classifier_dropout(config: TypedBertConfig) -> nn.Dropout:
    """The dropout of a head, as BERT's heads take it: `classifier_dropout`, else `hidden_dropout_prob`."""
    rate = config.classifier_dropout
    return nn.Dropout(rate if rate is not None else config.hidden_dropout_prob)


class TypedBertEntityStartHead(nn.Module):
    """Classifies the concatenated hidden states of a subject token and an object token (Zhou & Chen 2021): the first
    token of each entity, or for a packed object its start marker."""

    def __init__(self, config: TypedBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(2 * config.hidden_size, config.hidden_size)
        self.activation = nn.ReLU()
        self.dropout = _classifier_dropout(config)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(
        self,
        hidden_states: torch.Tensor,
        entity_role_ids: torch.LongTensor,
        object_positions: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """`hidden_states` `(batch, seq, hidden)`, `entity_role_ids` `(batch, seq)` → logits `(batch, num_labels)`;
        with `object_positions` `(batch, pairs)` (packed objects' start markers) → `(batch, pairs, num_labels)`."""
        rows = torch.arange(hidden_states.shape[0], device=hidden_states.device).unsqueeze(1)
        subject = _first_position(entity_role_ids, SUBJECT_ROLE).unsqueeze(1)
        objects = object_positions
        if objects is None:
            objects = _first_position(entity_role_ids, OBJECT_ROLE).unsqueeze(1)
        subject_states = hidden_states[rows, subject].expand(-1, objects.shape[1], -1)
        pair = torch.cat([subject_states, hidden_states[rows, objects]], dim=-1)
        logits = self.out_proj(self.dropout(self.activation(self.dense(pair))))
        return logits if object_positions is not None else logits.squeeze(1)


def _first_position(entity_role_ids: torch.LongTensor, role: int) -> torch.LongTensor:
    """Index `(batch,)` of the first token with `role` in each row (0 in a row without one: the encoding gives every
    sequence its subject and objects)."""
    return (entity_role_ids == role).int().argmax(dim=1)


def _packed_attention_mask(
    attention_mask: torch.Tensor | None, marker_groups: torch.LongTensor, dtype: torch.dtype, as_3d: bool
) -> torch.Tensor:
    """Which key each query may attend to in a subject-packed sequence: real keys that are text tokens or in the
    query's own marker group. transformers 5 takes it as a 4D additive mask `(batch, 1, seq, seq)`; 4.57's BERT
    (`as_3d`) a 3D 0/1 mask `(batch, seq, seq)`, from which it builds the 4D one itself."""
    keys = marker_groups.unsqueeze(1)  # (batch, 1, seq)
    allowed = (keys == 0) | (keys == marker_groups.unsqueeze(2))  # (batch, seq, seq)
    if attention_mask is not None:
        allowed = allowed & attention_mask.bool().unsqueeze(1)
    if as_3d:
        return allowed.long()
    additive = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return additive.masked_fill(~allowed, torch.finfo(dtype).min).unsqueeze(1)


class TypedBertForSequenceClassification(TypedBertPreTrainedModel):
    """TypedBert with a relation classifier over the [CLS] vector or the subject and object start tokens.

    The head is named `classifier` for both poolings, as in `BertForSequenceClassification` (a fine-tuned BERT
    classifier converts without loss; PEFT's `task_type="SEQ_CLS"` saves it). With `marker_groups` and
    `object_positions` it reads a subject-packed sequence (PL-Marker's packing, `SubjectPackedPairs` of the encoding
    file) with the same weights: one row of logits per packed object.
    """

    _custom_pipelines = _announced_pipeline(
        RELATION_TASK, "RelationClassificationPipeline", "AutoModelForSequenceClassification"
    )

    def __init__(self, config: TypedBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = TypedBertModel(config)
        if config.classifier_pooling == "cls":
            self.dropout = _classifier_dropout(config)
            self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        else:
            self.classifier = TypedBertEntityStartHead(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        entity_type_ids: torch.LongTensor | None = None,
        entity_role_ids: torch.LongTensor | None = None,
        marker_groups: torch.LongTensor | None = None,
        object_positions: torch.LongTensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput | tuple[torch.Tensor, ...]:
        r"""
        Args:
            entity_type_ids, entity_role_ids (`torch.LongTensor` of shape `(batch, seq)`): see `TypedBertModel`;
                `entity_role_ids` is required with `classifier_pooling="entity_start"`.
            marker_groups (`torch.LongTensor` of shape `(batch, seq)`, *optional*): a subject-packed sequence: 0 for
                text tokens, k for the two markers of the k-th object. Text tokens attend to text tokens; markers to
                the text and their own group. Its `position_ids` count from 0 (the model adds
                `config.position_id_offset`); an object's markers have those of its first and last token.
            object_positions (`torch.LongTensor` of shape `(batch, pairs)`, *optional*): with `marker_groups`, the
                index of each object's start marker; 0 pads a row with fewer objects.
            labels (`torch.Tensor` of shape `(batch,)`, `(batch, pairs)` packed with -100 padding, or `(batch,
                num_labels)`): as for `BertForSequenceClassification` (regression, single- or multi-label).

        Returns:
            `SequenceClassifierOutput`: `logits` `(batch, num_labels)` (packed: `(batch, pairs, num_labels)`), `loss`.
        """
        return_dict = kwargs.pop("return_dict", None)
        if self.config.classifier_pooling == "entity_start" and entity_role_ids is None:
            raise ValueError("classifier_pooling='entity_start' needs entity_role_ids (1: subject, 2: object tokens).")
        if marker_groups is not None or object_positions is not None:
            attention_mask, position_ids = self._packed_inputs(
                attention_mask, position_ids, marker_groups, object_positions, inputs_embeds
            )
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            position_ids=position_ids, inputs_embeds=inputs_embeds, entity_type_ids=entity_type_ids,
                            entity_role_ids=entity_role_ids, return_dict=True, **kwargs)  # fmt: skip
        if self.config.classifier_pooling == "cls":
            logits = self.classifier(self.dropout(outputs.pooler_output))
        else:
            logits = self.classifier(outputs.last_hidden_state, entity_role_ids, object_positions)
        loss = None if labels is None else self._loss(logits, labels)
        output = SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if (return_dict if return_dict is not None else self.config.return_dict) else output.to_tuple()

    def _packed_inputs(
        self,
        attention_mask: torch.Tensor | None,
        position_ids: torch.LongTensor,
        marker_groups: torch.LongTensor | None,
        object_positions: torch.LongTensor | None,
        inputs_embeds: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.LongTensor]:
        """The attention mask (`_packed_attention_mask`) and position ids `(batch, seq)` (shifted by
        `config.position_id_offset`) that the encoder reads for a subject-packed sequence."""
        if marker_groups is None or object_positions is None:
            raise ValueError("A subject-packed sequence needs both marker_groups and object_positions.")
        embeds = inputs_embeds if inputs_embeds is not None else self.bert.embeddings.word_embeddings.weight
        as_3d = hasattr(self.bert, "get_extended_attention_mask")
        attention_mask = _packed_attention_mask(attention_mask, marker_groups, embeds.dtype, as_3d)
        return attention_mask, position_ids + self.config.position_id_offset

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of `BertForSequenceClassification`: MSE, cross-entropy (over every labelled pair; -100 is
        padding) or BCE by `config.problem_type`."""
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            if self.num_labels == 1:
                return MSELoss()(logits.squeeze(), labels.squeeze())
            return MSELoss()(logits, labels)
        if self.config.problem_type == "single_label_classification":
            return CrossEntropyLoss()(logits.reshape(-1, self.num_labels), labels.reshape(-1))
        return BCEWithLogitsLoss()(logits, labels)


class TypedBertForTokenClassification(TypedBertPreTrainedModel):
    """TypedBert with a token classifier (BIO tags), as `BertForTokenClassification`: an entity model of text-in
    extraction. With `config.word_shapes` its inputs also carry each word's shape, which an uncased tokenizer throws
    away; its checkpoint announces `TypedBertTokenClassificationPipeline`, which computes them from the text."""

    _custom_pipelines = _announced_pipeline(
        ENTITY_TASK, "TypedBertTokenClassificationPipeline", "AutoModelForTokenClassification"
    )

    def __init__(self, config: TypedBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = TypedBertModel(config, add_pooling_layer=False)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        word_shape_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput | tuple[torch.Tensor, ...]:
        r"""
        Args:
            word_shape_ids (`torch.LongTensor` of shape `(batch, seq)`, *optional*): see `TypedBertModel`.
            labels (`torch.LongTensor` of shape `(batch, seq)`, *optional*): tag ids, -100 where no loss is taken.
            The other arguments are those of `TypedBertModel`.

        Returns:
            `TokenClassifierOutput` with `logits` `(batch, seq, num_labels)`, and `loss` when `labels` is given.
        """
        return_dict = kwargs.pop("return_dict", None)
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            position_ids=position_ids, inputs_embeds=inputs_embeds, word_shape_ids=word_shape_ids,
                            return_dict=True, **kwargs)  # fmt: skip
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None
        if labels is not None:
            loss = CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        return _token_classifier_output(loss, logits, outputs, return_dict, self.config)


def _token_classifier_output(
    loss: torch.Tensor | None,
    logits: torch.Tensor,
    outputs: BaseModelOutputWithPoolingAndCrossAttentions,
    return_dict: bool | None,
    config: TypedBertConfig,
) -> TokenClassifierOutput | tuple[torch.Tensor, ...]:
    """An entity model's output, as `BertForTokenClassification` returns it (`return_dict` None: the config's)."""
    output = TokenClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                   attentions=outputs.attentions)  # fmt: skip
    return output if (return_dict if return_dict is not None else config.return_dict) else output.to_tuple()


# The size of the span classifier's width vectors (PURE's and SpERT's width embeddings are 150 and 25).
SPAN_WIDTH_SIZE = 64


class TypedBertSpanHead(nn.Module):
    """Scores candidate spans as PURE's and SpERT's entity models do: [first token's state; last token's; the max over
    its tokens; a vector of its width in words] → a two-layer feed-forward network → a score per label. The max is
    read from a sparse table (the running maxima over 1, 2, 4, ... tokens), two lookups a span: no per-span loop and
    no data-dependent shape."""

    def __init__(self, config: TypedBertConfig) -> None:
        super().__init__()
        self.width_embeddings = nn.Embedding(config.max_span_width, SPAN_WIDTH_SIZE)
        self.dropout = _classifier_dropout(config)
        self.dense = nn.Linear(3 * config.hidden_size + SPAN_WIDTH_SIZE, config.hidden_size)
        self.activation = nn.GELU()
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        # Levels of the sparse table: spans of up to 2 ** levels tokens, the longest sequence the positions allow.
        self.levels = max(config.max_position_embeddings.bit_length() - 1, 0)

    def forward(
        self,
        states: torch.Tensor,
        span_rows: torch.LongTensor,
        span_starts: torch.LongTensor,
        span_ends: torch.LongTensor,
        span_widths: torch.LongTensor,
    ) -> torch.Tensor:
        """`states` `(batch, seq, hidden)` and the spans `(n_spans,)` (`encoding_typed_bert.span_inputs`) → logits
        `(n_spans, num_labels)`."""
        tokens = states.flatten(0, 1)  # (batch * seq, hidden); index_select's backward adds in a fixed order
        first = tokens.index_select(0, span_rows * states.shape[1] + span_starts)
        last = tokens.index_select(0, span_rows * states.shape[1] + span_ends)
        features = torch.cat([first, last, self.span_max(states, span_rows, span_starts, span_ends),
                              self.width_embeddings(span_widths)], dim=-1)  # fmt: skip
        return self.classifier(self.dropout(self.activation(self.dense(self.dropout(features)))))

    def span_max(
        self, states: torch.Tensor, rows: torch.LongTensor, starts: torch.LongTensor, ends: torch.LongTensor
    ) -> torch.Tensor:
        """The max over each span's tokens `(n_spans, hidden)`: level k of the table holds the max over the 2 ** k
        tokens from each position, and a span of n tokens is the max of two overlapping runs of the largest 2 ** k
        <= n, one from its first token and one ending at its last."""
        length = states.shape[1]
        positions = torch.arange(length, device=states.device)
        table = [states]
        for level in range(1, self.levels + 1):
            ahead = (positions + 2 ** (level - 1)).clamp(max=length - 1)  # past the end: never read
            table.append(torch.maximum(table[-1], table[-1].index_select(1, ahead)))
        table = torch.stack(table, dim=1).flatten(0, 2)  # (batch * (levels + 1) * seq, hidden)
        powers = 2 ** torch.arange(1, self.levels + 1, device=states.device)
        level = ((ends - starts + 1).unsqueeze(-1) >= powers).sum(-1)
        start = (rows * (self.levels + 1) + level) * length
        return torch.maximum(table.index_select(0, start + starts), table.index_select(0, start + ends - 2**level + 1))


class TypedBertForSpanClassification(TypedBertPreTrainedModel):
    """TypedBert with a span classifier (`TypedBertSpanHead`): an entity model that types every run of up to
    `config.max_span_width` words as `config.id2label[0]` ("O") or an entity type, seeing where a span ends before
    typing it. Its checkpoint loads with `AutoModelForTokenClassification` and announces
    `TypedBertSpanClassificationPipeline` for `pipeline("token-classification", trust_remote_code=True)`."""

    _custom_pipelines = _announced_pipeline(
        ENTITY_TASK, "TypedBertSpanClassificationPipeline", "AutoModelForTokenClassification"
    )

    def __init__(self, config: TypedBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = TypedBertModel(config, add_pooling_layer=False)
        self.span_head = TypedBertSpanHead(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        word_shape_ids: torch.LongTensor | None = None,
        span_rows: torch.LongTensor | None = None,
        span_starts: torch.LongTensor | None = None,
        span_ends: torch.LongTensor | None = None,
        span_widths: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput | tuple[torch.Tensor, ...]:
        r"""
        Args:
            word_shape_ids (`torch.LongTensor` of shape `(batch, seq)`, *optional*): see `TypedBertModel`.
            span_rows, span_starts, span_ends, span_widths (`torch.LongTensor` of shape `(n_spans,)`):
                The candidate spans of the whole batch, row by row (`encoding_typed_bert.span_inputs`): each one's
                sequence, its first and last token, and its width in words minus one.
            labels (`torch.LongTensor` of shape `(batch, spans)`, *optional*): the label ids of each sequence's
                spans in order, padded with -100 (what the Trainer gathers by sequence).
            The other arguments are those of `TypedBertModel`.

        Returns:
            `TokenClassifierOutput` with `logits` `(n_spans, num_labels)`, and `loss` when `labels` is given.
        """
        spans = (span_rows, span_starts, span_ends, span_widths)
        if any(tensor is None for tensor in spans):
            raise ValueError("TypedBertForSpanClassification needs span_rows, span_starts, span_ends and span_widths "
                             "(encoding_typed_bert.span_inputs).")  # fmt: skip
        return_dict = kwargs.pop("return_dict", None)
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            position_ids=position_ids, inputs_embeds=inputs_embeds, word_shape_ids=word_shape_ids,
                            return_dict=True, **kwargs)  # fmt: skip
        logits = self.span_head(outputs.last_hidden_state, *spans)
        loss = None if labels is None else CrossEntropyLoss()(logits.float(), _span_targets(labels, span_rows))
        return _token_classifier_output(loss, logits, outputs, return_dict, self.config)


def _span_targets(labels: torch.LongTensor, span_rows: torch.LongTensor) -> torch.LongTensor:
    """Each span's label `(n_spans,)` from the labels of each row's spans `(batch, spans)` (rows in order)."""
    first = torch.searchsorted(span_rows, span_rows)  # where each span's row starts
    return labels[span_rows, torch.arange(len(span_rows), device=labels.device) - first]


TypedBertModel.register_for_auto_class("AutoModel")
TypedBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
TypedBertForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")
TypedBertForSpanClassification.register_for_auto_class("AutoModelForTokenClassification")

__all__ = [
    "TypedBertEmbeddings",
    "TypedBertEntityEmbedding",
    "TypedBertForSequenceClassification",
    "TypedBertForSpanClassification",
    "TypedBertForTokenClassification",
    "TypedBertModel",
    "TypedBertPreTrainedModel",
]
