"""PyTorch TypedBert: BERT with entity type and entity role embeddings, for relation extraction.

This file is uploaded to the Hugging Face Hub next to the weights and runs on the user's machine under
`trust_remote_code=True`: it imports only torch, transformers and `configuration_typed_bert`, makes no network
calls and evaluates no code.

BERT's embedding layer sums word, segment (token type) and position embeddings. TypedBert adds, per token, the
vector of the entity type the token belongs to (`entity_type_ids`, 0 = no entity) and the vector of its role
(`entity_role_ids`: 0 = none, 1 = subject, 2 = object). Both tables start at zero, so a TypedBert built from BERT
weights computes exactly what BERT computes until it is trained.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    BertModel,
    BertPreTrainedModel,
)
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions, SequenceClassifierOutput

try:
    from .configuration_typed_bert import OBJECT_ROLE, SUBJECT_ROLE, TypedBertConfig
except ImportError:  # imported as a top-level module from a checkout, not as part of a package
    from configuration_typed_bert import OBJECT_ROLE, SUBJECT_ROLE, TypedBertConfig

# Written into every saved config.json, whichever class saves it, so that a checkpoint loads through each Auto class.
TYPED_BERT_AUTO_MAP = {
    "AutoConfig": "configuration_typed_bert.TypedBertConfig",
    "AutoModel": "modeling_typed_bert.TypedBertModel",
    "AutoModelForSequenceClassification": "modeling_typed_bert.TypedBertForSequenceClassification",
}


def _is_tracing() -> bool:
    """True under torch.compile, torch.export/ONNX export or TorchScript tracing, where data-dependent checks break."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def _check_entity_ids(ids: torch.Tensor, name: str, num_ids: int, shape: torch.Size) -> None:
    """Raise a `ValueError` naming the problem when `ids` does not fit the table of `num_ids` rows or `shape`."""
    if ids.shape != shape:
        raise ValueError(f"{name} has shape {tuple(ids.shape)} but input_ids/inputs_embeds have shape {tuple(shape)}.")
    if ids.dtype not in (torch.long, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"{name} must hold integer ids, got dtype {ids.dtype}.")
    if _is_tracing() or ids.numel() == 0:
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= num_ids:
        bad = low if low < 0 else high
        raise ValueError(f"{name} holds id {bad}, outside the valid range [0, {num_ids - 1}].")


class TypedBertEntityEmbeddings(nn.Module):
    """The entity type table and the entity role table, both zero at initialisation.

    The tables are parameters of this module itself (not `nn.Embedding` children), so that `_init_weights` zeroes
    them when a checkpoint lacks them and leaves them alone when it has them.
    """

    def __init__(self, config: TypedBertConfig) -> None:
        super().__init__()
        self.type_embeddings = nn.Parameter(torch.zeros(config.num_entity_types, config.hidden_size))
        self.role_embeddings = nn.Parameter(torch.zeros(config.num_entity_roles, config.hidden_size))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Zero both tables, except those already loaded from a checkpoint (transformers flags those)."""
        for table in (self.type_embeddings, self.role_embeddings):
            if not getattr(table, "_is_hf_initialized", False):
                table.zero_()

    def forward(
        self, entity_type_ids: torch.LongTensor | None, entity_role_ids: torch.LongTensor | None
    ) -> torch.Tensor:
        """Return the entity vectors, `(batch, seq, hidden)`, or `(hidden,)` for the all-zero ids when both are None."""
        type_vectors = self.type_embeddings[0] if entity_type_ids is None else self.type_embeddings[entity_type_ids]
        role_vectors = self.role_embeddings[0] if entity_role_ids is None else self.role_embeddings[entity_role_ids]
        return type_vectors + role_vectors


class TypedBertPreTrainedModel(BertPreTrainedModel):
    """Loads TypedBert checkpoints, plain BERT checkpoints included (the entity tables then start at zero)."""

    config_class = TypedBertConfig
    base_model_prefix = "bert"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, TypedBertEntityEmbeddings):
            module.reset_parameters()
        else:
            super()._init_weights(module)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, with two differences: only safetensors weights load unless the caller
        opts in to pickle files with `use_safetensors=False`, and a weight whose shape disagrees with the config gives
        a clear error."""
        kwargs.setdefault("use_safetensors", True)
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except RuntimeError as error:
            if "mismatch" not in str(error):
                raise
            raise ValueError(
                f"Cannot load {pretrained_model_name_or_path}: a weight's shape disagrees with its config ({error}). "
                "In a TypedBert checkpoint this is usually entity_embeddings.type_embeddings, which has one row per "
                "entry of config.entity_types: a config.json whose entity_types is missing or was edited cannot "
                "load the trained table. Restore entity_types as saved with the model (or pass "
                "ignore_mismatched_sizes=True to re-initialise the mismatched weights)."
            ) from error

    # The pipeline a saved checkpoint announces in config.json's `custom_pipelines` (classifiers only).
    _custom_pipelines: dict | None = None

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as `PreTrainedModel.save_pretrained` does, with all three Auto classes in config.json's `auto_map`."""
        self.config.auto_map = {**TYPED_BERT_AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        if self._custom_pipelines is not None:
            self.config.custom_pipelines = self._custom_pipelines
        return super().save_pretrained(save_directory, *args, **kwargs)


class TypedBertModel(TypedBertPreTrainedModel, BertModel):
    """BERT encoder whose input embeddings also carry each token's entity type and entity role."""

    def __init__(self, config: TypedBertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        self.entity_embeddings = TypedBertEntityEmbeddings(config) if config.use_entity_embeddings else None

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        entity_type_ids: torch.LongTensor | None = None,
        entity_role_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPoolingAndCrossAttentions | tuple[torch.Tensor, ...]:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch, seq)`): token ids, as for `BertModel`.
            inputs_embeds (`torch.Tensor` of shape `(batch, seq, hidden)`): word vectors instead of `input_ids`.
            entity_type_ids (`torch.LongTensor` of shape `(batch, seq)`, *optional*):
                Index into `config.entity_types` of the entity each token belongs to; 0 (no entity) when absent.
            entity_role_ids (`torch.LongTensor` of shape `(batch, seq)`, *optional*):
                0 = outside both entities, 1 = subject, 2 = object; all 0 when absent.
            attention_mask, token_type_ids, position_ids and the other keyword arguments are those of `BertModel`.

        Returns:
            `BaseModelOutputWithPoolingAndCrossAttentions`: `last_hidden_state` `(batch, seq, hidden)`,
            `pooler_output` `(batch, hidden)` (None without a pooling layer).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if input_ids is not None:
            shape = input_ids.shape
            inputs_embeds = self.embeddings.word_embeddings(input_ids)
        else:
            shape = inputs_embeds.shape[:-1]
        for name, ids, num_ids in (
            ("entity_type_ids", entity_type_ids, self.config.num_entity_types),
            ("entity_role_ids", entity_role_ids, self.config.num_entity_roles),
        ):
            if ids is not None:
                _check_entity_ids(ids, name, num_ids, shape)

        if self.entity_embeddings is not None:
            inputs_embeds = inputs_embeds + self.entity_embeddings(entity_type_ids, entity_role_ids)
            if self.config.entity_fusion == "mean":
                inputs_embeds = inputs_embeds / 3

        return super().forward(
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )


class TypedBertEntityStartHead(nn.Module):
    """Classifies the concatenated hidden states of the first subject and first object tokens (Zhou & Chen 2021)."""

    def __init__(self, config: TypedBertConfig) -> None:
        super().__init__()
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dense = nn.Linear(2 * config.hidden_size, config.hidden_size)
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden_states: torch.Tensor, entity_role_ids: torch.LongTensor) -> torch.Tensor:
        """`hidden_states` `(batch, seq, hidden)`, `entity_role_ids` `(batch, seq)` → logits `(batch, num_labels)`."""
        subject_start = _first_position(entity_role_ids, SUBJECT_ROLE, "subject")
        object_start = _first_position(entity_role_ids, OBJECT_ROLE, "object")
        rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
        pair = torch.cat([hidden_states[rows, subject_start], hidden_states[rows, object_start]], dim=-1)
        return self.out_proj(self.dropout(self.activation(self.dense(pair))))


def _first_position(entity_role_ids: torch.LongTensor, role: int, role_name: str) -> torch.LongTensor:
    """Index `(batch,)` of the first token with `role` in each row; a `ValueError` names the rows that have none."""
    is_role = entity_role_ids == role
    if not _is_tracing():
        missing = (~is_role.any(dim=1)).nonzero().flatten().tolist()
        if missing:
            raise ValueError(
                f"classifier_pooling='entity_start' needs a {role_name} token (entity_role_ids == {role}) in every "
                f"row; rows {missing} have none."
            )
    return is_role.int().argmax(dim=1)


class TypedBertForSequenceClassification(TypedBertPreTrainedModel):
    """TypedBert with a relation classifier over the [CLS] vector or the subject and object start tokens."""

    _custom_pipelines = {
        "relation-classification": {
            "impl": "pipeline_typed_bert.RelationClassificationPipeline",
            "pt": ["AutoModelForSequenceClassification"],
            "tf": [],
            "type": "text",
        }
    }

    def __init__(self, config: TypedBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        # The pooler is kept with entity_start pooling too, so that no BERT weight is lost in a saved checkpoint.
        self.bert = TypedBertModel(config)
        if config.classifier_pooling == "cls":
            dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
            self.dropout = nn.Dropout(dropout)
            # Named as in BertForSequenceClassification, so a fine-tuned BERT classifier converts without loss.
            self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        else:
            self.entity_head = TypedBertEntityStartHead(config)
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
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple[torch.Tensor, ...]:
        r"""
        Args:
            entity_type_ids, entity_role_ids (`torch.LongTensor` of shape `(batch, seq)`): see `TypedBertModel`;
                `entity_role_ids` is required with `classifier_pooling="entity_start"`.
            labels (`torch.Tensor` of shape `(batch,)`, or `(batch, num_labels)` for multi-label): as for
                `BertForSequenceClassification` (regression when `num_labels == 1`, else single- or multi-label by
                `config.problem_type`).

        Returns:
            `SequenceClassifierOutput` with `logits` `(batch, num_labels)` and `loss` when `labels` is given.
        """
        return_dict = kwargs.pop("return_dict", None)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if self.config.classifier_pooling == "entity_start" and entity_role_ids is None:
            raise ValueError(
                "classifier_pooling='entity_start' needs entity_role_ids (1 on subject tokens, 2 on object tokens)."
            )
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            entity_type_ids=entity_type_ids,
            entity_role_ids=entity_role_ids,
            return_dict=True,
            **kwargs,
        )
        if self.config.classifier_pooling == "cls":
            logits = self.classifier(self.dropout(outputs.pooler_output))
        else:
            logits = self.entity_head(outputs.last_hidden_state, entity_role_ids)
        loss = None if labels is None else self._loss(logits, labels)

        if not return_dict:
            output = (logits, outputs.hidden_states, outputs.attentions)
            output = tuple(value for value in output if value is not None)
            return ((loss,) + output) if loss is not None else output
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of `BertForSequenceClassification`: MSE, cross-entropy or BCE by `config.problem_type`."""
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
            return CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        return BCEWithLogitsLoss()(logits, labels)


TypedBertModel.register_for_auto_class("AutoModel")
TypedBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
AutoModel.register(TypedBertConfig, TypedBertModel, exist_ok=True)
AutoModelForSequenceClassification.register(TypedBertConfig, TypedBertForSequenceClassification, exist_ok=True)

__all__ = [
    "TypedBertEntityEmbeddings",
    "TypedBertForSequenceClassification",
    "TypedBertModel",
    "TypedBertPreTrainedModel",
]
