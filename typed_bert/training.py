"""Fine-tuning TypedBert for relation classification: the settings of a run, the run, and the folder it writes.

    settings = TrainingSettings(base_model=..., train_file=..., validation_file=...)
    result = train(settings, checkpoint_dir)        # in memory: model, tokenizer, log, steps, time
    results = write_output(result, output_dir)      # the Hub-ready folder, scored as `typed-bert evaluate` scores it

`train` runs under `torchrun` as well (DDP; gloo on CPU): every rank trains and ends with the same, best, model;
only rank 0 calls `write_output`.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoTokenizer,
    EarlyStoppingCallback,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainingArguments,
)
from transformers import set_seed as set_transformers_seed

from configuration_typed_bert import (
    CLASSIFIER_POOLINGS,
    ENTITY_ROLES,
    INPUT_MODES,
    NO_RELATION,
    OBJECT_ROLE,
    PAIR_ENCODINGS,
    SUBJECT_ROLE,
    TypedBertConfig,
)
from encoding_typed_bert import pair_encoding_for
from modeling_typed_bert import TypedBertForSequenceClassification
from typed_bert.batching import TypedBertDataCollator
from typed_bert.data import (
    check_vocabulary,
    encode_dataset,
    entity_type_names,
    joined_texts,
    label_names,
    load_relations,
    pair_max_length,
    unencodable_counts,
)
from typed_bert.entities import FINAL_FIT_HELP, bundle_entity_model, check_entity_model
from typed_bert.errors import InputError, reading
from typed_bert.evaluation import evaluate
from typed_bert.hardware import PRECISION_HELP, PRECISIONS, pick_precision
from typed_bert.hub.export import FAMILIES, check_base_model, load_typed_from_encoder, typed_config_from_encoder
from typed_bert.hub.model_card import shown_path, write_model_card
from typed_bert.metrics import plot_training_curve, relation_metrics, with_no_relation_rows
from typed_bert.outputs import staged_folder
from typed_bert.trainer import ENTITY_TABLES, RelationTrainer, kept_state_arguments

# The best mean dev micro-F1 over CoNLL04 and SciERC (docs/results.md, "choosing the default"); per_subject packing
# cannot carry markers in the text and takes the best mode without them.
DEFAULT_INPUT_MODE = "markers+embeddings"
DEFAULT_PACKED_INPUT_MODE = "typed-embeddings"
# Epochs and batch size by pair encoding: a packed sequence holds a subject's every object, so an epoch has fewer,
# longer sequences (CoNLL04: 3,316 against 5,132 sampled pairs); at batch 16 it still gains from epoch 6 to 10
# (CoNLL04 dev, 3 seeds: 0.765 to 0.782; docs/all-relations.md, "Subject-oriented packing").
DEFAULT_EPOCHS = {"per_pair": 4.0, "per_subject": 10.0}
DEFAULT_BATCH_SIZE = {"per_pair": 32, "per_subject": 16}
# no_relation sequences drawn per related one each epoch (-1: all): a packed sequence holds a subject's related and
# unrelated objects alike, so all of them are kept (and weighted 1).
DEFAULT_NEGATIVE_RATIO = {"per_pair": 3.0, "per_subject": -1.0}
ENTITY_INITS = ("zero", "names")
# A name-initialised entity row is this fraction of its name's mean word vector: a type row and a role row together
# are about one word vector on an entity token.
NAME_INIT_SCALE = 0.5
BY_CHECKPOINT = "default: a TypedBert --base-model's own setting, else"


def by_pair_encoding(defaults: dict[str, float]) -> str:
    """A default that depends on the pair encoding, for a help text: `{"per_pair": 4.0, "per_subject": 10.0}` as
    "per_pair 4, per_subject 10"."""
    return ", ".join(f"{encoding} {value:g}" for encoding, value in defaults.items())


@dataclass(frozen=True)
class TrainingSettings:
    """Everything one fine-tuning run depends on. `input_mode` and `classifier_pooling` left as None are resolved by
    `resolved_settings` (from a TypedBert base's checkpoint, else the defaults)."""

    base_model: str = field(metadata={"help": "a BERT-family or TypedBert checkpoint: a folder or a Hub id"})
    train_file: str = field(metadata={"help": "relation JSON Lines (docs/cli.md)"})
    validation_file: str = field(metadata={
        "help": "relation JSON Lines, for the best epoch (trained on too with --final-fit) and eval_results.json"
    })  # fmt: skip
    input_mode: str | None = field(default=None, metadata={
        "choices": list(INPUT_MODES),
        "help": f"{BY_CHECKPOINT} {DEFAULT_INPUT_MODE} ({DEFAULT_PACKED_INPUT_MODE} with --pair-encoding per_subject)",
    })  # fmt: skip
    classifier_pooling: str | None = field(default=None, metadata={
        "aliases": ["--pooling"], "choices": list(CLASSIFIER_POOLINGS), "help": f"{BY_CHECKPOINT} by input mode",
    })  # fmt: skip
    pair_encoding: str = field(default="per_pair", metadata={
        "choices": list(PAIR_ENCODINGS),
        "help": "per_pair: one sequence per (subject, object) pair; per_subject: one per subject, its objects packed "
        "as marker tokens (PL-Marker; N passes for N entities instead of N(N-1))",
    })  # fmt: skip
    entity_init: str = field(default="zero", metadata={
        "choices": list(ENTITY_INITS),
        "help": "how entity tables that are still zero (a converted BERT) start: zero, or names (each type's row from "
        "the word vectors of its name, the role rows from 'subject' and 'object')",
    })  # fmt: skip
    epochs: float | None = field(default=None, metadata={
        "help": f"epochs (the most, with --patience); default by pair encoding: {by_pair_encoding(DEFAULT_EPOCHS)}"
    })  # fmt: skip
    patience: int | None = field(default=None, metadata={
        "help": "stop when dev micro-F1 has not improved for this many epochs (the best epoch is kept either way)"
    })  # fmt: skip
    batch_size: int | None = field(default=None, metadata={
        "help": f"sequences per step; default by pair encoding: {by_pair_encoding(DEFAULT_BATCH_SIZE)}"
    })  # fmt: skip
    learning_rate: float = 1e-4
    entity_learning_rate: float = field(default=1e-3, metadata={"help": "for the entity tables"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "a fraction of the steps, from 0 to below 1"})
    weight_decay: float = 0.01
    max_length: int | None = field(default=None, metadata={"help": "tokens a pair may take (default: the model's)"})
    negative_ratio: float | None = field(default=None, metadata={
        "help": "no_relation sequences per related one per epoch; -1 = all (default: 3 per pair, all packed)"
    })  # fmt: skip
    negative_weight: str = field(default="auto", metadata={  # or a float, from Python
        "help": "loss weight of no_relation examples: a number, or auto = (no_relation per related example in the "
        "data) / --negative-ratio, which undoes the prior shift of subsampling (importance weighting)",
    })  # fmt: skip
    precision: str = field(default="auto", metadata={"choices": list(PRECISIONS), "help": PRECISION_HELP})
    join_texts: int = field(default=1, metadata={
        "help": "train on pseudo-documents: consecutive training texts joined 1 to N at a time (seeded), pairs across "
        "them no_relation; for models that will read documents (docs/documents.md). 1: each text alone",
    })  # fmt: skip
    seed: int = 42
    max_steps: int = field(default=-1, metadata={"help": "stop after this many steps (smoke tests)"})
    eval_batch_size: int = 128
    lora_rank: int = field(default=0, metadata={"help": "train LoRA adapters of rank R (0: full fine-tuning)"})
    lora_alpha: float | None = field(default=None, metadata={"help": "LoRA scaling numerator (default: 2 x rank)"})
    entity_model: str | None = field(default=None, metadata={
        "help": "an entity model folder (typed-bert train-entities) to bundle as entities/: the pipeline takes raw text"
    })  # fmt: skip
    strict: bool = field(default=False, metadata={
        "help": "refuse pairs the model cannot read (nested, too far apart)"
    })  # fmt: skip
    final_fit: bool = field(default=False, metadata={"help": FINAL_FIT_HELP})
    base_model_id: str | None = field(default=None, metadata={
        "help": "Hub id of a local --base-model, for the model card"
    })  # fmt: skip
    language: list[str] | None = field(default=None, metadata={
        "help": "language code(s) of the data, for the model card"
    })  # fmt: skip

    def __post_init__(self) -> None:
        if self.entity_init not in ENTITY_INITS:
            raise InputError(f"entity_init={self.entity_init!r}; expected one of {list(ENTITY_INITS)}")
        if self.max_steps == 0:
            raise InputError("max_steps=0; expected a positive number of steps, or -1 for whole epochs")
        counts = (self.epochs, self.batch_size, self.patience)  # None: the pair encoding's default, or no patience
        if any(count is not None and count <= 0 for count in counts) or self.lora_rank < 0:
            raise InputError(
                f"epochs={self.epochs}, batch_size={self.batch_size}, lora_rank={self.lora_rank}, "
                f"patience={self.patience}; expected epochs > 0, batch_size > 0, lora_rank >= 0 and patience >= 1"
            )
        if self.pair_encoding not in DEFAULT_EPOCHS:
            raise InputError(f"pair_encoding={self.pair_encoding!r}; expected one of {list(DEFAULT_EPOCHS)}")
        if self.pair_encoding == "per_subject" and self.lora_rank > 0:
            raise InputError(
                "--pair-encoding per_subject with --lora-rank; expected one of them (LoRA trains per pair)"
            )
        if not isinstance(self.join_texts, int) or isinstance(self.join_texts, bool) or self.join_texts < 1:
            raise InputError(f"join_texts={self.join_texts!r}; expected a positive number of texts per document")
        if self.strict and self.join_texts > 1:
            raise InputError(
                "--strict with --join-texts; expected one of them (--strict refuses the file's pairs that cannot be "
                "read, and the pairs across joined texts are not the file's)"
            )
        if self.final_fit and self.patience:
            raise InputError(
                f"--patience {self.patience} with --final-fit; expected one of them (patience stops on dev scores, and "
                "a final fit trains on the dev file)"
            )
        if not (0 <= self.warmup_ratio < 1):
            raise InputError(f"warmup_ratio={self.warmup_ratio}; expected a fraction of the steps, from 0 to below 1")
        if self.negative_weight != "auto" and not is_number(self.negative_weight):
            raise InputError(f"negative_weight={self.negative_weight!r}; expected a number, or auto")


def is_number(value: Any) -> bool:
    """Whether `value` is a number or the text of one ("2.5")."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


@dataclass
class TrainingResult:
    """What `train` returns: the best model (rank 0's, merged when LoRA trained it), its tokenizer and the run's
    record."""

    settings: TrainingSettings
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    log_history: list[dict[str, Any]]
    steps: int
    seconds: float
    precision: str
    negative_weight: float
    world_size: int
    train_pairs: int = 0  # pairs of the training data (its pseudo-documents' with --join-texts)
    unencodable_pairs: dict[str, dict[str, int]] = field(default_factory=dict)


def resolved_settings(settings: TrainingSettings, config: PretrainedConfig) -> TrainingSettings:
    """`settings` with the input mode, pooling, epochs, batch size and negative ratio filled in (the last three by
    pair encoding, `DEFAULT_EPOCHS`, `DEFAULT_BATCH_SIZE`, `DEFAULT_NEGATIVE_RATIO`): a trained TypedBert base keeps
    its own (its pooling only with its input mode), anything else, a converted encoder (`TypedBertModel`, untrained
    tables) included, gets `DEFAULT_INPUT_MODE` (`DEFAULT_PACKED_INPUT_MODE` with `per_subject` pair encoding), and
    `plain` pools the [CLS] vector, every other mode the entity start tokens; `config` is the base model's. Invalid
    combinations are refused here, before any data is read."""
    is_typed = config.model_type == "typed_bert"
    checkpoint = config if is_typed and config.architectures != ["TypedBertModel"] else None
    default_mode = DEFAULT_PACKED_INPUT_MODE if settings.pair_encoding == "per_subject" else DEFAULT_INPUT_MODE
    input_mode = settings.input_mode or (checkpoint.input_mode if checkpoint is not None else default_mode)
    mode_default = "cls" if input_mode == "plain" else "entity_start"
    same_mode = checkpoint is not None and checkpoint.input_mode == input_mode
    default_pooling = checkpoint.classifier_pooling if same_mode else mode_default
    resolved = replace(
        settings,
        input_mode=input_mode,
        classifier_pooling=settings.classifier_pooling or default_pooling,
        epochs=settings.epochs or DEFAULT_EPOCHS[settings.pair_encoding],
        batch_size=settings.batch_size or DEFAULT_BATCH_SIZE[settings.pair_encoding],
        negative_ratio=(
            settings.negative_ratio
            if settings.negative_ratio is not None
            else DEFAULT_NEGATIVE_RATIO[settings.pair_encoding]
        ),
    )
    try:
        TypedBertConfig(
            input_mode=resolved.input_mode,
            classifier_pooling=resolved.classifier_pooling,
            pair_encoding=resolved.pair_encoding,
        )
    except ValueError as error:
        raise InputError(
            str(error).rstrip(".") + "; expected a supported input mode, pooling and pair encoding"
        ) from None
    return resolved


def build_model(
    settings: TrainingSettings, config: PretrainedConfig, entity_types: list[str], labels: list[str]
) -> PreTrainedModel:
    """A `TypedBertForSequenceClassification` for the data: from a BERT-family base (converted) or a TypedBert
    checkpoint, which keeps its label order and trained head when the data's labels are among its labels and the
    pooling is its own (otherwise the head starts afresh), reading `settings.pair_encoding`. `config` is the base
    model's."""
    model = _sequence_classifier(settings, config, entity_types, labels)
    model.config.pair_encoding = settings.pair_encoding
    return model


def _sequence_classifier(
    settings: TrainingSettings, config: PretrainedConfig, entity_types: list[str], labels: list[str]
) -> PreTrainedModel:
    fields = {"input_mode": settings.input_mode, "classifier_pooling": settings.classifier_pooling}
    if config.model_type in FAMILIES:
        check_base_model(settings.base_model, labels)
        config = typed_config_from_encoder(settings.base_model, entity_types, labels, **fields)
        model, _ = load_typed_from_encoder(TypedBertForSequenceClassification, settings.base_model, config)
        return model.train()
    if config.model_type != "typed_bert":
        check_base_model(settings.base_model)  # says why this architecture does not convert
    unknown = sorted(set(entity_types) - set(config.entity_types))
    if unknown:
        raise InputError(
            f"entity types {unknown} of the data are not in the checkpoint's {config.entity_types}; expected a "
            "checkpoint that knows every type of the training file",
            settings.base_model,
        )
    known_labels = [config.id2label[i] for i in range(config.num_labels)]
    keeps_head = set(labels) <= set(known_labels) and settings.classifier_pooling == config.classifier_pooling
    if not keeps_head:
        fields.update(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    config = TypedBertConfig.from_dict({**config.to_dict(), **fields})
    return TypedBertForSequenceClassification.from_pretrained(
        settings.base_model, config=config, ignore_mismatched_sizes=not keeps_head
    )


def readable_name(name: str) -> str:
    """The words of an entity type or role name: `OtherScientificTerm` → `other scientific term`, `per_org` → `per
    org`, `LOC` → `loc`."""
    return " ".join(re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("_", " ").replace("-", " ").split()).lower()


@torch.no_grad()
def init_from_names(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, scale: float = NAME_INIT_SCALE
) -> list[str]:
    """Start each entity table row from the meaning of its name: `scale` × the mean word vector of the name's word
    pieces (`readable_name`), for the types of `config.entity_types` and the roles `subject` and `object`. Only
    tables that are still all zero (a converted BERT) are set, so continuing from a trained TypedBert changes
    nothing and a converted checkpoint still reproduces BERT; row 0 (no entity, no role) stays zero. Returns the
    names of the tables it set."""
    embeddings = model.get_input_embeddings().weight
    rows = {
        "entity_type_embeddings": model.config.entity_types[1:],
        "entity_role_embeddings": [ENTITY_ROLES[SUBJECT_ROLE], ENTITY_ROLES[OBJECT_ROLE]],
    }
    initialised = []
    for name, names in rows.items():
        table = getattr(model.base_model.embeddings, name, None)
        if table is None or torch.count_nonzero(table.weight):
            continue
        for row, words in enumerate(names, start=1):
            ids = tokenizer(readable_name(words), add_special_tokens=False)["input_ids"]
            table.weight[row] = scale * embeddings[ids].mean(dim=0)
        initialised.append(name)
    return initialised


def with_lora(model: PreTrainedModel, rank: int, alpha: float | None):
    """`model` with LoRA adapters of `rank` on the attention projections (PEFT), the entity tables and the head
    trained in full: the recipe of docs/bases-and-standard-calls.md's LoRA section."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        task_type="SEQ_CLS",
        r=rank,
        lora_alpha=alpha or 2 * rank,
        target_modules=["query", "key", "value"],
        modules_to_save=[name for name in ENTITY_TABLES if getattr(model.bert.embeddings, name, None) is not None]
        or None,
    )
    return get_peft_model(model, lora)


def train(settings: TrainingSettings, checkpoint_dir: str | Path) -> TrainingResult:
    """One fine-tuning run. Epoch checkpoints (weights only) go to `checkpoint_dir`, shared by all DDP ranks so that
    each loads the same best one at the end; it is removed when training ends. The best epoch by dev micro-F1 is kept (a
    final fit: the last, no checkpoints). Data is read and checked (every dev type and label known from the training
    file) before the model loads.
    """
    started = time.perf_counter()
    with reading(settings.base_model, "a BERT-family or TypedBert checkpoint folder or Hub id"):
        base_config = AutoConfig.from_pretrained(settings.base_model, trust_remote_code=True)
    settings = resolved_settings(settings, base_config)
    set_transformers_seed(settings.seed)
    train_raw, validation_raw = read_data(settings)
    model, tokenizer = prepared_model(settings, base_config, entity_type_names(train_raw), label_names(train_raw))
    splits = EncodedSplits.of(settings, model.config, tokenizer, train_raw, validation_raw)
    checkpoint_dir = Path(checkpoint_dir)
    precision = pick_precision(settings.precision, "cuda" if torch.cuda.is_available() else "cpu")
    training_args = training_arguments(settings, checkpoint_dir, precision)
    trainer = RelationTrainer(
        model=model,
        args=training_args,
        train_dataset=splits.train,
        eval_dataset=splits.validation,
        data_collator=TypedBertDataCollator(tokenizer),
        compute_metrics=splits.dev_metrics(model.config),
        no_relation_id=model.config.label2id.get(NO_RELATION),
        negative_ratio=settings.negative_ratio,
        negative_weight=settings.negative_weight,
        entity_learning_rate=settings.entity_learning_rate,
        warmup_ratio=settings.warmup_ratio,
        callbacks=[EarlyStoppingCallback(settings.patience)] if settings.patience else None,
    )
    outcome = run_trainer(trainer, checkpoint_dir)
    return TrainingResult(
        settings=settings,
        model=trainer.model.merge_and_unload() if settings.lora_rank > 0 else trainer.model,  # every rank: the best
        tokenizer=tokenizer,
        log_history=trainer.state.log_history,
        steps=outcome.global_step,
        seconds=round(time.perf_counter() - started, 1),
        precision=precision,
        negative_weight=trainer.negative_weight,
        world_size=training_args.world_size,
        train_pairs=len(train_raw),
        unencodable_pairs=splits.unencodable,
    )


def read_data(settings: TrainingSettings):
    """The training data (the training file, followed by the dev file for a `final_fit`; joined into
    pseudo-documents for `join_texts` > 1) and the dev file, as pair datasets; every dev entity type and label must
    be one of the training file's."""
    train_raw, validation_raw = load_relations(settings.train_file), load_relations(settings.validation_file)
    check_vocabulary(validation_raw, settings.validation_file, entity_type_names(train_raw), label_names(train_raw),
                     f"the training file {settings.train_file}")  # fmt: skip
    if settings.final_fit:
        train_raw = datasets.concatenate_datasets([train_raw, validation_raw])
    if settings.join_texts > 1:
        train_raw = joined_texts(train_raw, settings.join_texts, settings.seed)
    return train_raw, validation_raw


def prepared_model(
    settings: TrainingSettings, base_config: PretrainedConfig, entity_types: list[str], labels: list[str]
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model to train (entity tables started as `settings.entity_init` says, LoRA-wrapped for a `lora_rank`) and
    its tokenizer; a bundled entity model is checked against its entity types before any training."""
    with reading(settings.base_model, "a BERT-family or TypedBert checkpoint folder or Hub id with a tokenizer"):
        model = build_model(settings, base_config, entity_types, labels)
        tokenizer = AutoTokenizer.from_pretrained(settings.base_model, trust_remote_code=True)
    if settings.entity_model:
        check_entity_model(settings.entity_model, model.config.entity_types)
    if settings.entity_init == "names":
        initialised = init_from_names(model, tokenizer)
        if is_main_process():
            print(f"entity tables started from their names: {initialised or 'none (already trained)'}", flush=True)
    if settings.lora_rank > 0:
        model = with_lora(model, settings.lora_rank, settings.lora_alpha)
    return model, tokenizer


@dataclass
class EncodedSplits:
    """The training and dev sets as the model reads them, what could not be encoded, and the dev labels of the pairs
    that could not (scored as `no_relation`)."""

    train: Any
    validation: Any
    unencodable: dict[str, dict[str, int]]
    unencoded_dev_labels: list[int]

    @classmethod
    def of(cls, settings: TrainingSettings, config: TypedBertConfig, tokenizer, train_raw, validation_raw):
        """Encode both files with the model's pair encoding; report the pairs it cannot read, refuse dev pairs that
        cannot be scored; the dev set sorted by length (its batches then need almost no padding)."""
        max_length = pair_max_length(tokenizer, config, settings.max_length)
        # dev first: a final fit's training data holds the dev file's pairs, whose errors then name the dev file
        (validation_set, validation_reasons), (train_set, train_reasons) = (
            encode_dataset(raw, tokenizer, pair_encoding_for(config), config.entity_types, config.label2id,
                           max_length, path, settings.strict)
            for raw, path in ((validation_raw, settings.validation_file), (train_raw, settings.train_file))
        )  # fmt: skip
        unencodable = {"train": unencodable_counts(train_reasons), "validation": unencodable_counts(validation_reasons)}
        if any(unencodable.values()) and is_main_process():
            print(f"pairs the model cannot read (subject and object overlap, or no --max-length window holds both): "
                  f"{unencodable['train']} in training, skipped; {unencodable['validation']} in dev, scored as "
                  "no_relation; --strict makes them errors", flush=True)  # fmt: skip
        reasons = zip(validation_raw["label"], validation_reasons, strict=True)
        unencoded = [config.label2id[label] for label, reason in reasons if reason]
        if unencoded and NO_RELATION not in config.label2id:
            raise InputError(
                f"{len(unencoded)} dev pairs cannot be encoded and the labels have no {NO_RELATION!r} to score them "
                "as; expected a no_relation label in the training file, or --strict to refuse such pairs",
                settings.validation_file,
            )
        order = np.argsort([len(ids) for ids in validation_set["input_ids"]], kind="stable")
        return cls(train_set, validation_set.select(order), unencodable, unencoded)

    def dev_metrics(self, config: TypedBertConfig):
        """The Trainer's `compute_metrics`: the per-epoch dev scores (model selection); the final ones are
        `evaluate`'s, of the saved folder."""
        label_list = [config.id2label[i] for i in range(config.num_labels)]
        no_relation_id = config.label2id.get(NO_RELATION)

        def compute_metrics(prediction) -> dict:
            logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
            gold = prediction.label_ids  # (sequences, pairs), padded with -100
            logits = logits.reshape(*gold.shape, -1)  # one row per pair (`pair_logits`)
            logits, gold = logits[gold != -100], gold[gold != -100]
            probabilities = torch.tensor(logits).float().softmax(-1).numpy()
            gold, probabilities = with_no_relation_rows(gold, probabilities, self.unencoded_dev_labels, no_relation_id)
            metrics = relation_metrics(gold, probabilities, label_list)
            return {key: value for key, value in metrics.items() if isinstance(value, float)}

        return compute_metrics


def training_arguments(settings: TrainingSettings, checkpoint_dir: Path, precision: str) -> TrainingArguments:
    """The Trainer's arguments of a run: an evaluation and a weights-only checkpoint per epoch (or once, after
    `max_steps`), the best by dev micro-F1 loaded at the end (a final fit: the last state, no evaluation)."""
    return TrainingArguments(
        output_dir=str(checkpoint_dir), bf16=precision == "bf16", num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size, per_device_eval_batch_size=settings.eval_batch_size,
        learning_rate=settings.learning_rate, weight_decay=settings.weight_decay, logging_steps=20,
        seed=settings.seed, data_seed=settings.seed, report_to="none", dataloader_num_workers=0,
        remove_unused_columns=True, use_cpu=not torch.cuda.is_available(),
        **kept_state_arguments(settings.max_steps, "micro_f1", settings.final_fit),
        ddp_find_unused_parameters=False,  # every trainable parameter gets a gradient, whatever the pooling
    )  # fmt: skip


def run_trainer(trainer: RelationTrainer, checkpoint_dir: Path):
    """`trainer.train()` with `checkpoint_dir` emptied before (rank 0) and removed after, or on a failure or Ctrl-C,
    so that no checkpoint folder is left beside the output; every rank has loaded the best checkpoint first (a final
    fit keeps its last state and writes none)."""
    if trainer.is_world_process_zero():
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    try:
        outcome = trainer.train()
    except BaseException:
        if trainer.is_world_process_zero():
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        raise
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return outcome


def write_output(result: TrainingResult, output_dir: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Write the run's Hub-ready folder: safetensors weights, config, tokenizer, the four code files, then the saved
    folder's dev scores as `typed-bert evaluate` gives them (same batches, same precision) in eval_results.json, the
    training log (training_log.json, training_curve.png) and a model card. The folder is written beside `output_dir`
    and renamed into place only when all of it is there (`staged_folder`). Returns the eval_results.json record."""
    with staged_folder(output_dir, overwrite) as staging:
        return _write_folder(result, staging, Path(output_dir).name)


def _write_folder(result: TrainingResult, output_dir: Path, name: str) -> dict[str, Any]:
    """`write_output` into `output_dir`, a folder that will be renamed `name`."""
    settings = result.settings
    result.model.save_pretrained(output_dir)
    result.tokenizer.save_pretrained(output_dir)
    if settings.entity_model:
        bundle_entity_model(output_dir, settings.entity_model)
    metrics = evaluate(
        str(output_dir), settings.validation_file, settings.eval_batch_size, dtype=result.precision, quiet=True,
        strict=settings.strict, max_length=settings.max_length,
    )  # fmt: skip
    results = {
        "validation_file": shown_path(settings.validation_file),
        "final_fit": settings.final_fit,  # trained on the validation file too: its scores are not held out
        **metrics,
        "train_runtime_s": result.seconds,
        "train_steps": result.steps,
        "train_pairs": result.train_pairs,
        "world_size": result.world_size,
        "precision": result.precision,
        "input_mode": settings.input_mode,
        "pair_encoding": settings.pair_encoding,
        "entity_init": settings.entity_init,
        "negative_weight": round(result.negative_weight, 4),
        "unencodable_pairs_by_split": result.unencodable_pairs,
        # The record is published with the folder: data files as folder/name, a local base model as its name.
        "settings": {
            **asdict(settings),
            "train_file": shown_path(settings.train_file),
            "validation_file": shown_path(settings.validation_file),
            "base_model": settings.base_model_id or shown_path(settings.base_model),
            "entity_model": settings.entity_model and shown_path(settings.entity_model),
        },
    }
    (output_dir / "eval_results.json").write_text(json_text(results))
    (output_dir / "training_log.json").write_text(json_text(result.log_history))
    curve = plot_training_curve(
        result.log_history,
        output_dir / "training_curve.png",
        f"{name}: trained on {Path(settings.train_file).name}{' + dev' if settings.final_fit else ''}, scored on "
        f"{Path(settings.validation_file).name}",
    )
    write_model_card(
        output_dir,
        base_model=settings.base_model_id or settings.base_model,
        train_file=settings.train_file,
        training_curve=curve.name,
        language=settings.language,
    )
    return results


def leave_process_group() -> None:
    """Destroy torchrun's process group, if there is one, once training's collectives are over: PyTorch's documented
    shutdown. The finished Trainers and their DDP-wrapped models, which hold the group, are collected first, so that
    the group is freed here and its gloo worker threads are joined while the interpreter is alive; one still releasing
    a collective's tensors as the interpreter exits aborts the process (SIGABRT, "terminate called without an active
    exception") after a training that succeeded."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gc.collect()
        torch.distributed.destroy_process_group()


def is_main_process() -> bool:
    """Whether this is the process that reports: the only one, or rank 0 under torchrun."""
    return int(os.environ.get("RANK", "0")) == 0


def json_text(value: Any) -> str:
    return json.dumps(value, indent=2) + "\n"
