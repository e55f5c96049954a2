"""Text in, entities and relations out, scored as SpERT scores CoNLL04, with the breakdown of what went wrong.

    metrics = evaluate_end_to_end("out", "dev_entities.jsonl")  # a relation model with a bundled entity model
    metrics["entity_micro_f1"], metrics["end_to_end_relation_micro_f1"], metrics["errors"]

Entities are `(start, end, type)` character spans; relations `(subject span, object span, label)` triples. A
prediction counts only when it matches exactly (strict).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from transformers import pipeline

from configuration_typed_bert import NO_RELATION
from typed_bert.entities import load_entity_texts
from typed_bert.entity_heads import entity_spans, span_scores
from typed_bert.errors import InputError, reading

Span = tuple[int, int, str]
Triple = tuple[Span, Span, str]


def relation_triples(relations: Iterable[dict[str, Any]]) -> set[Triple]:
    """`(subject span, object span, label)` of each relation the pipeline reports (`no_relation` left out)."""
    return {
        (
            (r["subject"]["start"], r["subject"]["end"], r["subject"]["type"]),
            (r["object"]["start"], r["object"]["end"], r["object"]["type"]),
            r["label"],
        )  # fmt: skip
        for r in relations
        if r.get("label") and r["label"] != NO_RELATION
    }


def gold_triples(text: dict[str, Any]) -> set[Triple]:
    """The gold relations of an entity-list row, as `relation_triples`."""
    entities = text["entities"]
    return relation_triples(
        {"subject": entities[r["subject"]], "object": entities[r["object"]], "label": r["label"]}
        for r in text.get("relations", [])
    )


def _overlaps(span: Span, others: Iterable[Span]) -> bool:
    return any(span[0] < other[1] and other[0] < span[1] for other in others)


def entity_errors(gold: Sequence[set[Span]], predicted: Sequence[set[Span]]) -> dict[str, int]:
    """Each wrong predicted entity as `type` (a gold span, another type), `boundary` (overlaps a gold entity with
    other boundaries) or `spurious` (overlaps none); each gold entity no prediction overlaps as `missed`."""
    errors = dict.fromkeys(("type", "boundary", "spurious", "missed"), 0)
    for gold_spans, predicted_spans in zip(gold, predicted, strict=True):
        for span in predicted_spans - gold_spans:
            if any(other[:2] == span[:2] for other in gold_spans):
                errors["type"] += 1
            else:
                errors["boundary" if _overlaps(span, gold_spans) else "spurious"] += 1
        errors["missed"] += sum(not _overlaps(span, predicted_spans) for span in gold_spans)
    return errors


def relation_errors(
    gold: Sequence[set[Triple]],
    predicted: Sequence[set[Triple]],
    gold_entities: Sequence[set[Span]],
    predicted_entities: Sequence[set[Span]],
) -> dict[str, int]:
    """Each gold relation not found, as `missed_entity_errors` (an argument was not predicted exactly) or
    `missed_by_relation_model` (both were: the relation model gave `no_relation` or another label); each wrong
    predicted relation as `spurious_on_wrong_entities` (an argument is not a gold entity) or
    `spurious_by_relation_model` (both are: a relation the text does not state, or the wrong label)."""
    missed, spurious = (
        ("missed_entity_errors", "missed_by_relation_model"),
        ("spurious_on_wrong_entities", "spurious_by_relation_model"),
    )
    errors = dict.fromkeys(missed + spurious, 0)
    for gold_triples_, predicted_triples, gold_spans, predicted_spans in zip(
        gold, predicted, gold_entities, predicted_entities, strict=True
    ):
        for subject, object_, _ in gold_triples_ - predicted_triples:
            found = subject in predicted_spans and object_ in predicted_spans
            errors["missed_by_relation_model" if found else "missed_entity_errors"] += 1
        for subject, object_, _ in predicted_triples - gold_triples_:
            right = subject in gold_spans and object_ in gold_spans
            errors["spurious_by_relation_model" if right else "spurious_on_wrong_entities"] += 1
    return errors


def end_to_end_scores(texts: Sequence[dict[str, Any]], outputs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Entity micro-F1 and strict end-to-end relation micro-F1, with precision, recall and counts of each, and
    `errors` (`entity_errors`, `relation_errors`), of `outputs` (per text, `{"entities", "relations"}` as the
    relation-classification pipeline returns them for raw text) against the gold entity-list `texts`."""
    gold_entities = [entity_spans(text["entities"]) for text in texts]
    found_entities = [entity_spans(output["entities"]) for output in outputs]
    gold_relations = [gold_triples(text) for text in texts]
    found_relations = [relation_triples(output["relations"]) for output in outputs]
    entities = span_scores(gold_entities, found_entities)
    relations = span_scores(gold_relations, found_relations)
    return {
        "entity_micro_f1": entities["f1"],
        "entity_precision": entities["precision"],
        "entity_recall": entities["recall"],
        "end_to_end_relation_micro_f1": relations["f1"],
        "end_to_end_relation_precision": relations["precision"],
        "end_to_end_relation_recall": relations["recall"],
        "gold_entities": entities["gold"],
        "predicted_entities": entities["predicted"],
        "gold_relations": relations["gold"],
        "predicted_relations": relations["predicted"],
        "errors": {
            **entity_errors(gold_entities, found_entities),
            **relation_errors(gold_relations, found_relations, gold_entities, found_entities),
        },
    }


def evaluate_end_to_end(
    model_source: str,
    data_file: str,
    batch_size: int = 64,
    device=None,
    dtype=None,
    windows: dict[str, int | None] | None = None,
    **load_kwargs,
) -> dict[str, Any]:
    """Text in, entities and relations out: entity micro-F1 (boundaries and type match) and strict end-to-end
    relation micro-F1 (the label and both entities' boundaries and types match; `no_relation` never counts), with
    precision and recall of each, and `errors` (`entity_errors`, `relation_errors`). `data_file` is an entity-list
    file with gold relations; `model_source` a relation model with a bundled entity model (`config.entity_model`);
    `windows`: the pipeline's `stride` and `max_length` for long texts (None: its defaults)."""
    texts = load_entity_texts(data_file)
    with reading(model_source, "a TypedBert relation model folder or Hub id with an entity model"):
        classify = pipeline("relation-classification", model=model_source, trust_remote_code=True, device=device,
                            dtype=dtype, **load_kwargs)  # fmt: skip
    if not getattr(classify.model.config, "entity_model", None):
        raise InputError(
            "the model has no entity model (config.json's entity_model); expected one bundled with typed-bert train "
            "--entity-model or typed-bert push --entity-model",
            model_source,
        )
    started = time.perf_counter()
    windows = {name: value for name, value in (windows or {}).items() if value is not None}
    outputs = classify([text["text"] for text in texts], batch_size=batch_size, **windows)
    seconds = time.perf_counter() - started
    scores = end_to_end_scores(texts, outputs)
    return {
        **scores,
        "texts": len(texts),
        "texts_per_s": len(texts) / seconds,
        "relations_per_s": scores["predicted_relations"] / seconds,
    }
