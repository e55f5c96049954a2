"""An entity-model run for end-to-end extraction: an entity model over the entity types of entity-list files, of the
kind `EntitySettings.head` names (`typed_bert.entity_heads`: by default TypedBert's span classifier, else a BIO
tagger; both with a word-shape table unless `word_shapes=False`), trained with the transformers `Trainer`, written
as a Hub-ready folder that `pipeline("token-classification", trust_remote_code=True)` loads, and scored as papers
score entities; and the bundling of such a folder into a relation model.

    settings = EntitySettings(base_model=..., train_file=..., validation_file=...)
    results = train_entities(settings, output_dir)  # the Hub-ready folder, scored on the validation file

Entity-list files are JSON Lines of `{"text", "entities": [{"start", "end", "type"}, ...], ...}` (other fields, gold
relations included, are ignored here). Entities a model cannot learn (nested ones for a tagger, ones no candidate
reaches for the span classifier) are counted in eval_results.json; they still count as gold when scoring.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, Pipeline, TrainingArguments, set_seed

import pipeline_typed_bert
from encoding_typed_bert import check_span
from pipeline_typed_bert import (
    SPAN_CLASSIFIER,
    TypedBertSpanClassificationPipeline,
    load_entity_recognizer,
    recognized_entities,
)
from typed_bert.entity_heads import (
    OUTSIDE,
    BioTagger,
    EntityHead,
    SpanClassifier,
    entity_spans,
    span_scores,
)
from typed_bert.errors import DataFileError, InputError, reading
from typed_bert.hardware import PRECISION_HELP, PRECISIONS, pick_precision
from typed_bert.hub.export import CODE_FILES
from typed_bert.hub.model_card import shown_path
from typed_bert.jsonl import json_rows
from typed_bert.outputs import check_complete, check_destination, staged_folder, write_text_atomically
from typed_bert.trainer import TypedBertTrainer, kept_state_arguments

FINAL_FIT_HELP = (
    "train on the training and validation files together for --epochs and keep the last epoch (SpERT's protocol: the "
    "epochs chosen on dev first); the validation file is still scored, and eval_results.json and the card say that "
    "the model trained on it"
)
FINAL_FIT_CAVEAT = " (which the model was trained on too, a final fit: not a held-out score)"
# The kinds of entity model, by `EntitySettings.head`.
ENTITY_HEADS: dict[str, EntityHead] = {"tagger": BioTagger(), "span": SpanClassifier()}


@dataclass(frozen=True)
class EntitySettings:
    """Everything one entity-model run depends on."""

    base_model: str = field(metadata={"help": "a BERT-family checkpoint: a folder or a Hub id"})
    train_file: str = field(metadata={"help": "entity-list JSON Lines"})
    validation_file: str = field(metadata={
        "help": "entity-list JSON Lines, for the best epoch (trained on too with --final-fit) and eval_results.json"
    })  # fmt: skip
    # The span head over the tagger: CoNLL04 dev entities +1.3, end to end +1.2; SciERC dev +2.4, +0.2 (3 seeds each)
    head: str = field(default="span", metadata={"choices": list(ENTITY_HEADS), "help": (
        "span: TypedBert's span classifier, which types every run of up to 14 words as a whole; tagger: a token "
        "classifier with BIO tags (docs/results/entities)"
    )})  # fmt: skip
    epochs: float | None = field(default=None, metadata={"help": "default 8 for the tagger, 15 for the span head"})
    batch_size: int = field(default=16, metadata={"help": "texts per step"})
    learning_rate: float = 2e-4  # over 1e-4: CoNLL04 dev +1.1 entity F1, SciERC dev +1.2 (3 seeds each): docs/results
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    precision: str = field(default="auto", metadata={"choices": list(PRECISIONS), "help": PRECISION_HELP})
    seed: int = 42
    max_steps: int = field(default=-1, metadata={"help": "stop after N steps (smoke runs)"})
    # CoNLL04 dev +5.8 entity F1 (3 seeds), SciERC dev +0.4 (2 seeds): docs/results
    word_shapes: bool = field(default=True, metadata={
        "help": "a zero-initialised word-shape (letter case) table in the input embeddings (--no-word-shapes: none; "
        "with --head tagger, a standard AutoModelForTokenClassification)",
    })  # fmt: skip
    table_learning_rate: float = field(default=1e-3, metadata={"help": "for the word-shape table"})
    head_learning_rate: float = field(default=1e-3, metadata={"help": "for the span head's layers (--head span)"})
    final_fit: bool = field(default=False, metadata={"help": FINAL_FIT_HELP})

    def __post_init__(self) -> None:
        if self.head not in ENTITY_HEADS:
            raise InputError(f"head={self.head!r}; expected one of {list(ENTITY_HEADS)}")
        if self.epochs is None:  # frozen: set once, here
            object.__setattr__(self, "epochs", ENTITY_HEADS[self.head].default_epochs)
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


def found_entities(recognize, texts: Sequence[str], batch_size: int = 32) -> list[list[dict[str, Any]]]:
    """The entities a token-classification pipeline (with an aggregation strategy) finds in each text, as
    `{"start", "end", "type", "text", "score"}`, as the relation-classification pipeline reports them."""
    return recognized_entities(list(texts), recognize(list(texts), batch_size=batch_size) if texts else [])


def entity_pipeline(model_source: str, device=None, dtype=None, **load_kwargs) -> Pipeline:
    """The entity recognizer of the relation-classification pipeline over an entity model folder or Hub id
    (`load_entity_recognizer`: a span classifier's own pipeline, or word shapes, BIO-constrained word tags and
    `ENTITY_AGGREGATION` for a tagger)."""
    return load_entity_recognizer(model_source, device=device, dtype=dtype, **load_kwargs)


def train_entities(settings: EntitySettings, output_dir: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Fine-tune an entity model of the kind `settings.head` names (`ENTITY_HEADS`) on the training file, keep the
    best epoch by dev entity micro-F1 (a `final_fit` trains on the dev file too and keeps the last), write the
    Hub-ready folder (safetensors, labels, tokenizer, eval_results.json, card) and return its dev scores on character
    spans through its pipeline. The folder is staged beside `output_dir` and renamed into place when complete
    (`staged_folder`); an existing one is refused unless `overwrite`. Under `torchrun` all ranks train (DDP); rank 0
    writes, the others return `{}`."""
    check_destination(output_dir, overwrite, (settings.train_file, settings.validation_file, settings.base_model))
    if Path(settings.base_model).is_dir():
        check_complete(settings.base_model)
    started = time.perf_counter()
    train_texts, validation_texts = load_entity_texts(settings.train_file), load_entity_texts(settings.validation_file)
    entity_types = sorted({entity["type"] for text in train_texts for entity in text["entities"]})
    check_entity_types(validation_texts, entity_types, settings.validation_file)
    head = ENTITY_HEADS[settings.head]
    set_seed(settings.seed)  # before the model: its new head is drawn from the global generator
    with reading(settings.base_model, "a BERT-family checkpoint folder or Hub id with a fast tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(settings.base_model)
        model = head.load_model(settings, head.labels(entity_types))
    fit_texts = train_texts + validation_texts if settings.final_fit else train_texts
    trainer, train_rows = _entity_trainer(settings, head, model, tokenizer, fit_texts, validation_texts)
    try:
        outcome = trainer.train()
    finally:
        shutil.rmtree(trainer.args.output_dir, ignore_errors=True)
    seconds = round(time.perf_counter() - started, 1)
    if not trainer.is_world_process_zero():
        return {}
    run = {"train_runtime_s": seconds, "train_steps": outcome.global_step, **head.left_out(fit_texts, train_rows)}
    with staged_folder(output_dir, overwrite) as staging:
        trainer.model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        results = _entity_results(settings, staging, validation_texts, _precision(settings), run)
        (staging / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
        write_entity_card(staging, settings, entity_types, results)
    return results


def _entity_trainer(
    settings: EntitySettings, head: EntityHead, model, tokenizer, fit_texts: list, validation_texts: list
) -> tuple[TypedBertTrainer, list[dict[str, list]]]:
    """The Trainer of an entity-model run (checkpoints in a temporary folder, `args.output_dir`), and the rows it
    trains on."""
    import datasets  # the training stack; the rest of this module runs on the remote-code stack alone

    max_length = min(tokenizer.model_max_length, model.config.max_position_embeddings)
    train_rows = head.rows(tokenizer, fit_texts, model.config, max_length)
    validation_rows = None if settings.final_fit else head.rows(tokenizer, validation_texts, model.config, max_length)
    checkpoints = Path(tempfile.mkdtemp(prefix="typed-bert-entities-"))
    trainer = TypedBertTrainer(
        model=model,
        args=entity_training_arguments(settings, head, checkpoints, _precision(settings)),
        train_dataset=datasets.Dataset.from_list(train_rows),
        eval_dataset=None if validation_rows is None else datasets.Dataset.from_list(validation_rows),
        data_collator=head.collator(tokenizer),
        compute_metrics=None if validation_rows is None else head.compute_metrics(model.config, validation_texts,
                                                                                  validation_rows),  # fmt: skip
        preprocess_logits_for_metrics=None if validation_rows is None else head.preprocess_logits(validation_rows),
        **head.learning_rates(settings),
    )
    return trainer, train_rows


def _precision(settings: EntitySettings) -> str:
    """The precision the run trains and scores in (`pick_precision` on this machine's device)."""
    return pick_precision(settings.precision, "cuda" if torch.cuda.is_available() else "cpu")


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


def entity_training_arguments(
    settings: EntitySettings, head: EntityHead, checkpoints: Path, precision: str
) -> TrainingArguments:
    """The Trainer's arguments of an entity-model run: an evaluation and a weights-only checkpoint per epoch (or once,
    after `max_steps`), the best by dev entity micro-F1 loaded at the end (a final fit: the last state, no
    evaluation), and what the `head` sets itself (how batches are drawn)."""
    return TrainingArguments(**{
        "output_dir": str(checkpoints), "bf16": precision == "bf16", "num_train_epochs": settings.epochs,
        "per_device_train_batch_size": settings.batch_size, "per_device_eval_batch_size": 64,
        "learning_rate": settings.learning_rate, "weight_decay": settings.weight_decay,
        "warmup_steps": settings.warmup_ratio,  # below 1: a fraction of the steps (transformers 5)
        "lr_scheduler_type": "linear", "logging_steps": 50, "seed": settings.seed, "data_seed": settings.seed,
        "report_to": "none", "use_cpu": not torch.cuda.is_available(),
        **kept_state_arguments(settings.max_steps, head.metric, settings.final_fit), **head.training_arguments(),
    })  # fmt: skip


def _entity_results(
    settings: EntitySettings, folder: Path, texts: list[dict[str, Any]], precision: str, run: dict[str, Any]
) -> dict[str, Any]:
    """The eval_results.json record of a trained entity model: its dev scores through its pipeline, and the `run`
    (time, steps, the entities it could not learn)."""
    dtype = torch.bfloat16 if precision == "bf16" else None
    scores = score_entity_model(str(folder), texts, dtype=dtype)
    return {
        "validation_file": Path(settings.validation_file).name,
        "final_fit": settings.final_fit,  # trained on the validation file too: its scores are not held out
        **{f"entity_{key}": value for key, value in scores.items()},
        "entity_micro_f1": scores["f1"],
        **run,
        "precision": precision,
        "settings": {
            **asdict(settings),
            "base_model": shown_path(settings.base_model),
            "train_file": shown_path(settings.train_file),
            "validation_file": shown_path(settings.validation_file),
        },  # fmt: skip
    }


def score_entity_model(model_source: str, texts: Sequence[dict[str, Any]], dtype=None) -> dict[str, float]:
    """Entity micro precision/recall/F1 (boundaries and type match) of an entity model on entity-list `texts`,
    through its pipeline (`entity_pipeline`)."""
    found = found_entities(entity_pipeline(model_source, dtype=dtype), [text["text"] for text in texts])
    return span_scores([entity_spans(t["entities"]) for t in texts], [entity_spans(f) for f in found])


def write_entity_card(folder: Path, settings: EntitySettings, entity_types: list[str], results: dict) -> None:
    """A short model card: what the model is, how to load it, its dev scores."""
    head = ENTITY_HEADS[settings.head]
    card = f"""---
library_name: transformers
pipeline_tag: token-classification
base_model: {Path(settings.base_model).name}
---

# Entity recognizer ({", ".join(entity_types)})

{head.describe(settings)}, over the entity types {entity_types}, fine-tuned from
`{Path(settings.base_model).name}` on {_trained_on(settings)} with typed-bert's `train-entities`. It is
the entity model of a TypedBert relation model when it sits in that repository's `entities/` folder.

```python
from transformers import pipeline

recognize = pipeline("token-classification", model="PATH_OR_REPO"{head.pipeline_keywords(settings)})
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


def check_entity_model(entity_folder: str | Path, entity_types: Sequence[str]) -> dict[str, Any]:
    """Refuse, with an `InputError` naming the folder, an entity model that a relation model with `entity_types`
    (`"O"` first) cannot bundle: a folder an interrupted run left, no safetensors weights, not a token or span
    classifier, or labels that are not BIO tags (`O`, `B-T`, `I-T`; a span classifier's: `O`, `T`) of those entity
    types. Returns the entity model's config.json."""
    entity_folder = Path(entity_folder)
    check_complete(entity_folder)
    with reading(entity_folder / "config.json", "an entity model folder from typed-bert train-entities"):
        entity_config = json.loads((entity_folder / "config.json").read_text(encoding="utf-8"))
    architectures = entity_config.get("architectures") or []
    if not any(name.endswith("ForTokenClassification") or name == SPAN_CLASSIFIER for name in architectures):
        raise InputError(f"architectures {architectures}; expected a token or span classifier (typed-bert "
                         "train-entities)", entity_folder)  # fmt: skip
    tags = list((entity_config.get("id2label") or {}).values())
    if SPAN_CLASSIFIER in architectures:
        types = [tag for tag in tags if tag != OUTSIDE]
    else:
        not_bio = sorted(tag for tag in tags if tag != OUTSIDE and tag.partition("-")[0] not in ("B", "I"))
        if not_bio:
            raise InputError(f"tags {sorted(tags)}; expected BIO tags: 'O' and 'B-TYPE'/'I-TYPE' for the relation "
                             f"model's entity types {list(entity_types[1:])}", entity_folder)  # fmt: skip
        types = [tag.split("-", 1)[1] for tag in tags if tag != OUTSIDE]
    if OUTSIDE not in tags:
        raise InputError(f"labels {sorted(tags)}; expected 'O' (no entity) among them", entity_folder)
    unknown = sorted(set(types) - set(entity_types[1:]))
    if unknown:
        raise InputError(
            f"entity types {unknown} of the entity model are not among the relation model's "
            f"{list(entity_types[1:])}; expected an entity model trained on the same types",
            entity_folder,
        )
    if not (entity_folder / "model.safetensors").is_file():
        raise InputError("no model.safetensors; expected a safetensors entity model folder", entity_folder)
    return entity_config


def bundle_entity_model(relation_folder: str | Path, entity_folder: str | Path) -> Path:
    """Copy an entity model folder (a token or span classifier from `train_entities`) into a relation model folder as
    `entities/` and name it in the relation model's config.json (`entity_model`), so that the relation model's
    pipeline extracts from raw text. `check_entity_model` refuses one that does not fit before anything is written.
    A span classifier needs a pipeline that reads it: a relation folder whose code files predate span classifiers
    gets this version's. Returns the copied folder."""
    relation_folder, entity_folder = Path(relation_folder), Path(entity_folder)
    relation_config_file = relation_folder / "config.json"
    with reading(relation_config_file, "a TypedBert relation model folder"):
        relation_config = json.loads(relation_config_file.read_text(encoding="utf-8"))
    entity_config = check_entity_model(entity_folder, relation_config.get("entity_types", ["O"]))
    target = relation_folder / ENTITY_MODEL_FOLDER
    if target.resolve() != entity_folder.resolve():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(entity_folder, target, ignore=shutil.ignore_patterns("checkpoint-*", "*.bin", "*.pt"))
    if SPAN_CLASSIFIER in entity_config["architectures"] and not _reads_span_classifiers(relation_folder):
        for name in CODE_FILES:
            shutil.copyfile(Path(pipeline_typed_bert.__file__).with_name(name), relation_folder / name)
    relation_config["entity_model"] = ENTITY_MODEL_FOLDER
    write_text_atomically(relation_config_file, json.dumps(relation_config, indent=2, sort_keys=True) + "\n")
    return target


def _reads_span_classifiers(relation_folder: Path) -> bool:
    """Whether the pipeline file of a relation folder has the span classifier's pipeline."""
    code = relation_folder / "pipeline_typed_bert.py"
    return code.is_file() and TypedBertSpanClassificationPipeline.__name__ in code.read_text(encoding="utf-8")
