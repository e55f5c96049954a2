"""Entity recognition for end-to-end extraction: a token classifier with BIO tags over the entity types of entity-list
files (by default TypedBert's, with a word-shape table; `word_shapes=False`: a standard
`AutoModelForTokenClassification`), trained with the transformers `Trainer` and loaded with
`pipeline("token-classification", aggregation_strategy="average")` (word-level aggregation, as the
relation-classification pipeline runs it); and the span scores papers report.

    settings = EntitySettings(base_model=..., train_file=..., validation_file=...)
    results = train_entities(settings, output_dir)  # the Hub-ready folder, scored on the validation file

Entity-list files are JSON Lines of `{"text", "entities": [{"start", "end", "type"}, ...], ...}` (other fields, gold
relations included, are ignored here). Nested entities cannot all be BIO-tagged: the outermost is kept, the nested
ones are counted and left out of training (they still count as gold when scoring).
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from seqeval.metrics import f1_score, precision_score, recall_score
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    TrainingArguments,
    set_seed,
)

from encoding_typed_bert import check_span, word_shape_ids
from modeling_typed_bert import TypedBertForTokenClassification
from pipeline_typed_bert import (
    ENTITY_AGGREGATION,
    TypedBertTokenClassificationPipeline,
    load_entity_recognizer,
    recognized_entities,
)
from typed_bert.errors import DataFileError, InputError, reading
from typed_bert.hardware import PRECISION_HELP, PRECISIONS, pick_precision
from typed_bert.hub.model_card import shown_path
from typed_bert.jsonl import json_rows
from typed_bert.outputs import check_complete, check_destination, staged_folder, write_text_atomically
from typed_bert.trainer import TypedBertTrainer, kept_state_arguments

OUTSIDE = "O"
FINAL_FIT_HELP = (
    "train on the training and validation files together for --epochs and keep the last epoch (SpERT's protocol: the "
    "epochs chosen on dev first); the validation file is still scored, and eval_results.json and the card say that "
    "the model trained on it"
)
FINAL_FIT_CAVEAT = " (which the model was trained on too, a final fit: not a held-out score)"


@dataclass(frozen=True)
class EntitySettings:
    """Everything one entity-model run depends on."""

    base_model: str = field(metadata={"help": "a BERT-family checkpoint: a folder or a Hub id"})
    train_file: str = field(metadata={"help": "entity-list JSON Lines"})
    validation_file: str = field(metadata={
        "help": "entity-list JSON Lines, for the best epoch (trained on too with --final-fit) and eval_results.json"
    })  # fmt: skip
    epochs: float = 8.0
    batch_size: int = field(default=16, metadata={"help": "texts per step"})
    learning_rate: float = 2e-4  # over 1e-4: CoNLL04 dev +1.1 entity F1, SciERC dev +1.2 (3 seeds each): docs/results
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    precision: str = field(default="auto", metadata={"choices": list(PRECISIONS), "help": PRECISION_HELP})
    seed: int = 42
    max_steps: int = field(default=-1, metadata={"help": "stop after N steps (smoke runs)"})
    # CoNLL04 dev +5.8 entity F1 (3 seeds), SciERC dev +0.4 (2 seeds): docs/results
    word_shapes: bool = field(default=True, metadata={
        "help": "a zero-initialised word-shape (letter case) table in the input embeddings: a TypedBert token "
        "classifier (--no-word-shapes: a standard AutoModelForTokenClassification)",
    })  # fmt: skip
    table_learning_rate: float = field(default=1e-3, metadata={"help": "for the word-shape table"})
    final_fit: bool = field(default=False, metadata={"help": FINAL_FIT_HELP})

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.batch_size <= 0 or self.max_steps == 0:
            raise InputError(
                f"epochs={self.epochs}, batch_size={self.batch_size}, max_steps={self.max_steps}; expected epochs > 0, "
                "batch_size > 0 and max_steps > 0 or -1"
            )


def load_entity_texts(path: str | Path) -> list[dict[str, Any]]:
    """The lines of an entity-list file as `{"text", "entities", "relations", "line"}`; a `DataFileError` names the
    first bad line (not JSON, no non-empty `text`, `entities` not a list of valid spans)."""
    texts = []
    expected = 'expected {"text", "entities": [{"start", "end", "type"}, ...]}'
    with reading(path, "an entity-list JSON Lines file"):
        rows = list(json_rows(path))
    for number, row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"]:
            raise DataFileError(f"no non-empty 'text'; {expected}", path, number)
        if not isinstance(row.get("entities"), list):
            raise DataFileError(f"'entities' is missing or not a list; {expected}", path, number)
        for index, entity in enumerate(row["entities"]):
            try:
                check_span(f"entity {index}", entity, row["text"])
            except ValueError as error:
                raise DataFileError(f"{str(error).rstrip('.')}; {expected}", path, number) from None
        texts.append({**row, "relations": row.get("relations", []), "line": number})
    if not texts:
        raise DataFileError(f"no examples; {expected}", path)
    return texts


def bio_labels(entity_types: Iterable[str]) -> list[str]:
    """`O`, then `B-T` and `I-T` for each entity type `T` (sorted)."""
    return [OUTSIDE] + [f"{prefix}-{name}" for name in sorted(entity_types) for prefix in ("B", "I")]


def outermost(entities: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The entities BIO tags can hold: the longest first, each one kept unless it overlaps a kept one; and how many
    were left out."""
    kept: list[dict[str, Any]] = []
    for entity in sorted(entities, key=lambda e: (e["start"], -(e["end"] - e["start"]))):
        if all(entity["end"] <= other["start"] or other["end"] <= entity["start"] for other in kept):
            kept.append(entity)
    return kept, len(entities) - len(kept)


def tag_tokens(
    tokenizer, text: str, entities: Sequence[dict[str, Any]], label2id: dict[str, int], max_length: int
) -> dict[str, list[int]]:
    """`input_ids`, `attention_mask`, `word_shape_ids` and BIO `labels` (-100 on special tokens) of a text, truncated
    to `max_length`: the first token of an entity is `B-type`, the others `I-type`."""
    encoding = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True, truncation=True,
                         max_length=max_length)  # fmt: skip
    labels = [-100 if special else label2id[OUTSIDE] for special in encoding["special_tokens_mask"]]
    for entity in outermost(entities)[0]:
        inside = [
            position
            for position, ((start, end), special) in enumerate(
                zip(encoding["offset_mapping"], encoding["special_tokens_mask"], strict=True)
            )
            if not special and start < entity["end"] and end > entity["start"]
        ]
        for rank, position in enumerate(inside):
            labels[position] = label2id[f"{'B' if rank == 0 else 'I'}-{entity['type']}"]
    return {
        "input_ids": encoding["input_ids"],
        "attention_mask": encoding["attention_mask"],
        "word_shape_ids": word_shape_ids(text, encoding["offset_mapping"]),
        "labels": labels,
    }


class TaggingCollator(DataCollatorForTokenClassification):
    """transformers' token-classification collator, with `word_shape_ids` padded (0) like the labels."""

    def torch_call(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        shapes = [feature.pop("word_shape_ids") for feature in features] if "word_shape_ids" in features[0] else None
        batch = super().torch_call(features)
        if shapes is not None:
            length, left = batch["input_ids"].shape[1], self.tokenizer.padding_side == "left"
            padding = [[0] * (length - len(row)) for row in shapes]
            rows = [pad + row if left else row + pad for pad, row in zip(padding, shapes, strict=True)]
            batch["word_shape_ids"] = torch.tensor(rows)
        return batch


def span_scores(gold: Iterable[set], predicted: Iterable[set]) -> dict[str, float]:
    """Micro precision, recall and F1 of predicted spans against gold spans, text by text (exact match)."""
    true_positives = num_gold = num_predicted = 0
    for gold_spans, predicted_spans in zip(gold, predicted, strict=True):
        true_positives += len(gold_spans & predicted_spans)
        num_gold += len(gold_spans)
        num_predicted += len(predicted_spans)
    precision = true_positives / num_predicted if num_predicted else 0.0
    recall = true_positives / num_gold if num_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "gold": num_gold, "predicted": num_predicted}


def entity_spans(entities: Iterable[dict[str, Any]]) -> set[tuple[int, int, str]]:
    """`(start, end, type)` of each entity: what must match for an entity to count."""
    return {(entity["start"], entity["end"], entity["type"]) for entity in entities}


def found_entities(recognize, texts: Sequence[str], batch_size: int = 32) -> list[list[dict[str, Any]]]:
    """The entities a token-classification pipeline (with an aggregation strategy) finds in each text, as
    `{"start", "end", "type", "text", "score"}`, as the relation-classification pipeline reports them."""
    return recognized_entities(list(texts), recognize(list(texts), batch_size=batch_size) if texts else [])


def entity_pipeline(model_source: str, device=None, dtype=None, **load_kwargs) -> TypedBertTokenClassificationPipeline:
    """The entity recognizer of the relation-classification pipeline (`load_entity_recognizer`: word shapes,
    BIO-constrained word tags, `ENTITY_AGGREGATION`) over an entity model folder or Hub id."""
    return load_entity_recognizer(model_source, device=device, dtype=dtype, **load_kwargs)


def train_entities(settings: EntitySettings, output_dir: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Fine-tune a token classifier on the training file, keep the best epoch by dev entity micro-F1 (a `final_fit`
    trains on the dev file too and keeps the last), write the Hub-ready folder (safetensors, BIO labels, tokenizer,
    eval_results.json, card) and return its dev scores on character spans through the token-classification pipeline.
    The folder is staged beside `output_dir` and renamed into place when complete (`staged_folder`); an existing one
    is refused unless `overwrite`. Under `torchrun` all ranks train (DDP); rank 0 writes, the others return `{}`."""
    check_destination(output_dir, overwrite, (settings.train_file, settings.validation_file, settings.base_model))
    if Path(settings.base_model).is_dir():
        check_complete(settings.base_model)
    started = time.perf_counter()
    train_texts, validation_texts = load_entity_texts(settings.train_file), load_entity_texts(settings.validation_file)
    entity_types = sorted({entity["type"] for text in train_texts for entity in text["entities"]})
    check_entity_types(validation_texts, entity_types, settings.validation_file)
    labels = bio_labels(entity_types)
    label2id = {label: index for index, label in enumerate(labels)}
    set_seed(settings.seed)  # before the model: its new classifier head is drawn from the global generator
    with reading(settings.base_model, "a BERT-family checkpoint folder or Hub id with a fast tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(settings.base_model)
        model = _load_entity_model(settings, label2id)
    max_length = min(tokenizer.model_max_length, model.config.max_position_embeddings)
    fit_texts = train_texts + validation_texts if settings.final_fit else train_texts
    train_set = tagged_dataset(tokenizer, fit_texts, label2id, max_length, settings.word_shapes)
    validation_set = None if settings.final_fit else tagged_dataset(tokenizer, validation_texts, label2id, max_length,
                                                                    settings.word_shapes)  # fmt: skip
    precision = pick_precision(settings.precision, "cuda" if torch.cuda.is_available() else "cpu")
    checkpoints = Path(tempfile.mkdtemp(prefix="typed-bert-entities-"))
    trainer = TypedBertTrainer(
        model=model,
        args=entity_training_arguments(settings, checkpoints, precision),
        train_dataset=train_set,
        eval_dataset=validation_set,
        data_collator=TaggingCollator(tokenizer),
        compute_metrics=functools.partial(tag_metrics, labels),
        table_learning_rate=settings.table_learning_rate if settings.word_shapes else None,
    )
    try:
        outcome = trainer.train()
    finally:
        shutil.rmtree(checkpoints, ignore_errors=True)
    seconds = round(time.perf_counter() - started, 1)
    if not trainer.is_world_process_zero():
        return {}
    nested = sum(outermost(text["entities"])[1] for text in fit_texts)
    with staged_folder(output_dir, overwrite) as staging:
        trainer.model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        results = _entity_results(settings, staging, validation_texts, precision, seconds, outcome.global_step, nested)
        (staging / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
        write_entity_card(staging, settings, entity_types, results)
    return results


def check_entity_types(texts: Sequence[dict[str, Any]], entity_types: list[str], path: str) -> None:
    """A `DataFileError` naming the first line of `path` with an entity type that is not among `entity_types`."""
    for text in texts:
        for entity in text["entities"]:
            if entity["type"] not in entity_types:
                raise DataFileError(
                    f"entity type {entity['type']!r} is not among the training file's {entity_types}; expected one "
                    "of them",
                    path,
                    text["line"],
                )


def tagged_dataset(tokenizer, texts: Sequence[dict[str, Any]], label2id: dict[str, int], max_length: int,
                   word_shapes: bool):  # fmt: skip
    """The texts as a `datasets.Dataset` of tagged tokens (`tag_tokens`), without `word_shape_ids` for a model that
    has no word-shape table."""
    import datasets  # the training stack; the rest of this module runs on the remote-code stack alone

    rows = [tag_tokens(tokenizer, text["text"], text["entities"], label2id, max_length) for text in texts]
    return datasets.Dataset.from_list(rows).remove_columns([] if word_shapes else ["word_shape_ids"])


def tag_metrics(labels: list[str], prediction) -> dict[str, float]:
    """The Trainer's `compute_metrics`: dev entity micro P/R/F1 on the tokens' BIO tags (seqeval, as conlleval reads
    them), for choosing the best epoch; the final scores are the pipeline's, on character spans."""
    predicted_ids = prediction.predictions.argmax(-1)
    gold, predicted = [], []
    for row_gold, row_predicted in zip(prediction.label_ids, predicted_ids, strict=True):
        keep = row_gold != -100
        gold.append([labels[i] for i in row_gold[keep]])
        predicted.append([labels[i] for i in row_predicted[keep]])
    return {"entity_micro_f1": f1_score(gold, predicted), "entity_precision": precision_score(gold, predicted),
            "entity_recall": recall_score(gold, predicted)}  # fmt: skip


def entity_training_arguments(settings: EntitySettings, checkpoints: Path, precision: str) -> TrainingArguments:
    """The Trainer's arguments of an entity-model run: an evaluation and a weights-only checkpoint per epoch (or once,
    after `max_steps`), the best by dev entity micro-F1 loaded at the end (a final fit: the last state, no
    evaluation), length-grouped batches."""
    return TrainingArguments(
        output_dir=str(checkpoints), bf16=precision == "bf16", num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size, per_device_eval_batch_size=64,
        learning_rate=settings.learning_rate, weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_ratio,  # below 1: a fraction of the steps (transformers 5)
        lr_scheduler_type="linear", logging_steps=50, seed=settings.seed, data_seed=settings.seed, report_to="none",
        train_sampling_strategy="group_by_length", use_cpu=not torch.cuda.is_available(),
        **kept_state_arguments(settings.max_steps, "entity_micro_f1", settings.final_fit),
    )  # fmt: skip


def _entity_results(
    settings: EntitySettings, folder: Path, texts: list[dict[str, Any]], precision: str, seconds: float, steps: int,
    nested: int,
) -> dict[str, Any]:  # fmt: skip
    """The eval_results.json record of a trained entity model: its dev scores through the pipeline, and the run."""
    dtype = torch.bfloat16 if precision == "bf16" else None
    scores = score_entity_model(str(folder), texts, dtype=dtype)
    return {
        "validation_file": Path(settings.validation_file).name,
        "final_fit": settings.final_fit,  # trained on the validation file too: its scores are not held out
        **{f"entity_{key}": value for key, value in scores.items()},
        "entity_micro_f1": scores["f1"],
        "nested_entities_left_out_of_training": nested,
        "train_runtime_s": seconds,
        "train_steps": steps,
        "precision": precision,
        "settings": {
            **asdict(settings),
            "base_model": shown_path(settings.base_model),
            "train_file": shown_path(settings.train_file),
            "validation_file": shown_path(settings.validation_file),
        },  # fmt: skip
    }


def _load_entity_model(settings: EntitySettings, label2id: dict[str, int]):
    """The token classifier to train, with a new head for the tags of `label2id`: TypedBert's with a word shape table
    (and no entity tables) for `settings.word_shapes`, else a standard `AutoModelForTokenClassification`."""
    head = {"num_labels": len(label2id), "id2label": {i: label for label, i in label2id.items()}, "label2id": label2id}
    if settings.word_shapes:
        return TypedBertForTokenClassification.from_pretrained(
            settings.base_model, ignore_mismatched_sizes=True, word_shapes=True, input_mode="plain", **head
        )
    return AutoModelForTokenClassification.from_pretrained(settings.base_model, ignore_mismatched_sizes=True, **head)


def score_entity_model(model_source: str, texts: Sequence[dict[str, Any]], dtype=None) -> dict[str, float]:
    """Entity micro precision/recall/F1 (boundaries and type match) of an entity model on entity-list `texts`,
    through the token-classification pipeline."""
    found = found_entities(entity_pipeline(model_source, dtype=dtype), [text["text"] for text in texts])
    return span_scores([entity_spans(t["entities"]) for t in texts], [entity_spans(f) for f in found])


def _entity_model_kind(settings: EntitySettings) -> str:
    """What the model card calls the entity model."""
    if settings.word_shapes:
        return ("A TypedBert token classifier (custom code: load it with `trust_remote_code=True`) whose input "
                "embeddings also carry each word's letter case (a word-shape table)")  # fmt: skip
    return "A standard `AutoModelForTokenClassification`"


def write_entity_card(folder: Path, settings: EntitySettings, entity_types: list[str], results: dict) -> None:
    """A short model card: what the model is, how to load it, its dev scores."""
    card = f"""---
library_name: transformers
pipeline_tag: token-classification
base_model: {Path(settings.base_model).name}
---

# Entity recognizer ({", ".join(entity_types)})

{_entity_model_kind(settings)} with BIO tags over the entity types {entity_types}, fine-tuned from
`{Path(settings.base_model).name}` on {_trained_on(settings)} with typed-bert's `train-entities`. It is
the entity model of a TypedBert relation model when it sits in that repository's `entities/` folder.

```python
from transformers import pipeline

recognize = pipeline("token-classification", model="PATH_OR_REPO", aggregation_strategy="{ENTITY_AGGREGATION}"{
    ", trust_remote_code=True" if settings.word_shapes else ""})
```

On `{results["validation_file"]}`{FINAL_FIT_CAVEAT if settings.final_fit else ""}: entity micro-F1
{results["entity_micro_f1"]:.4f} (precision {results["entity_precision"]:.4f}, recall {results["entity_recall"]:.4f};
an entity counts when its character boundaries and type match). Trained for {settings.epochs:g} epochs at lr
{settings.learning_rate:g}, batch {settings.batch_size}, {results["precision"]}, in {results["train_runtime_s"]:.0f}
s; {"the last epoch" if settings.final_fit else "the best epoch by dev entity micro-F1"} is kept.
"""
    (folder / "README.md").write_text(card)


def _trained_on(settings: EntitySettings) -> str:
    """The card's training files: the training file, and the validation file after a final fit."""
    files = [settings.train_file, settings.validation_file] if settings.final_fit else [settings.train_file]
    return " and ".join(f"`{Path(name).name}`" for name in files)


ENTITY_MODEL_FOLDER = "entities"


def check_entity_model(entity_folder: str | Path, entity_types: Sequence[str]) -> None:
    """Refuse, with an `InputError` naming the folder, an entity model that a relation model with `entity_types`
    (`"O"` first) cannot bundle: a folder an interrupted run left, no safetensors weights, not a token classifier, or
    tags that are not BIO tags (`O`, `B-T`, `I-T`) of those entity types."""
    entity_folder = Path(entity_folder)
    check_complete(entity_folder)
    with reading(entity_folder / "config.json", "an entity model folder from typed-bert train-entities"):
        entity_config = json.loads((entity_folder / "config.json").read_text(encoding="utf-8"))
    architectures = entity_config.get("architectures") or []
    if not any(name.endswith("ForTokenClassification") for name in architectures):
        raise InputError(
            f"architectures {architectures}; expected a token classifier (typed-bert train-entities)", entity_folder
        )
    tags = list((entity_config.get("id2label") or {}).values())
    not_bio = sorted(tag for tag in tags if tag != OUTSIDE and tag.partition("-")[0] not in ("B", "I"))
    if not_bio or OUTSIDE not in tags:
        raise InputError(
            f"tags {sorted(tags)}; expected BIO tags: 'O' and 'B-TYPE'/'I-TYPE' for the relation model's entity types "
            f"{list(entity_types[1:])}",
            entity_folder,
        )
    unknown = sorted({tag.split("-", 1)[1] for tag in tags if tag != OUTSIDE} - set(entity_types[1:]))
    if unknown:
        raise InputError(
            f"entity types {unknown} of the entity model are not among the relation model's "
            f"{list(entity_types[1:])}; expected an entity model trained on the same types",
            entity_folder,
        )
    if not (entity_folder / "model.safetensors").is_file():
        raise InputError("no model.safetensors; expected a safetensors entity model folder", entity_folder)


def bundle_entity_model(relation_folder: str | Path, entity_folder: str | Path) -> Path:
    """Copy an entity model folder (a token classifier with BIO labels, from `train_entities`) into a relation model
    folder as `entities/` and name it in the relation model's config.json (`entity_model`), so that the relation
    model's pipeline extracts from raw text. `check_entity_model` refuses one that does not fit before anything is
    written. Returns the copied folder."""
    relation_folder, entity_folder = Path(relation_folder), Path(entity_folder)
    relation_config_file = relation_folder / "config.json"
    with reading(relation_config_file, "a TypedBert relation model folder"):
        relation_config = json.loads(relation_config_file.read_text(encoding="utf-8"))
    check_entity_model(entity_folder, relation_config.get("entity_types", ["O"]))
    target = relation_folder / ENTITY_MODEL_FOLDER
    if target.resolve() != entity_folder.resolve():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(entity_folder, target, ignore=shutil.ignore_patterns("checkpoint-*", "*.bin", "*.pt"))
    relation_config["entity_model"] = ENTITY_MODEL_FOLDER
    write_text_atomically(relation_config_file, json.dumps(relation_config, indent=2, sort_keys=True) + "\n")
    return target
