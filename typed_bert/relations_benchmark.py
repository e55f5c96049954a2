"""The all-relations figures of `typed-bert benchmark --all-relations FILE`: the relation-classification pipeline
over every ordered entity pair of real texts, one sequence per pair (`per_pair`) against one per subject
(`per_subject`), on the same weights, each at its best batch size; and, given trained models, their micro-F1 on the
same texts. (The text-only call's figures are `extraction_benchmark`'s.)

Two sets of texts come from FILE (pairs or entity lists with gold relations): its texts with at least
`min_entities` entities, and longer texts made by joining consecutive texts until each has at least
`long_entities` entities (offsets shifted, gold relations kept), where per-pair encoding costs most.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import Pipeline, pipeline

from configuration_typed_bert import NO_RELATION
from typed_bert.data import joined_text, load_relations, texts_with_entities
from typed_bert.metrics import relation_metrics

BATCH_SIZES = (16, 64)


def texts_of(path: str, min_entities: int) -> list[dict[str, Any]]:
    """The texts of a data file with at least `min_entities` entities: `{"text", "entities", "relations"}` with the
    file's pairs (no_relation included) as relations."""
    groups = texts_with_entities(load_relations(path))
    return [
        {"text": group["text"], "entities": group["entities"], "relations": group["relations"]}
        for group in groups
        if len(group["entities"]) >= min_entities
    ]


def texts_joined_to(texts: Sequence[dict[str, Any]], min_entities: int) -> list[dict[str, Any]]:
    """Consecutive texts joined with a space until each joined text has at least `min_entities` entities; entity
    offsets and relation indices are shifted (`joined_text`), the pairs across joined texts are `no_relation`."""
    joined, current, entities = [], [], 0
    for text in texts:
        current.append(text)
        entities += len(text["entities"])
        if entities >= min_entities:
            joined.append({key: value for key, value in joined_text(current).items() if key != "sources"})
            current, entities = [], 0
    return joined


def pairs_per_second(classify, texts: Sequence[dict[str, Any]], batch_size: int) -> float:
    """Ordered entity pairs per second of the all-relations call over `texts` at `batch_size` (after a warm-up)."""
    inputs = [{"text": text["text"], "entities": text["entities"]} for text in texts]
    classify(inputs[:2], batch_size=batch_size)
    started = time.perf_counter()
    classify(inputs, batch_size=batch_size, keep_no_relation=True)
    pairs = sum(len(text["entities"]) * (len(text["entities"]) - 1) for text in texts)
    return pairs / (time.perf_counter() - started)


def classifier(folder: str, dtype: torch.dtype, pair_encoding: str) -> Pipeline:
    """The relation-classification pipeline of a model folder read with `pair_encoding` (one class reads both; its
    config says which), without writing anything."""
    return pipeline("relation-classification", model=folder, trust_remote_code=True, dtype=dtype,
                    model_kwargs={"pair_encoding": pair_encoding})  # fmt: skip


def best_speed(
    folder: str, texts: Sequence[dict[str, Any]], dtype: torch.dtype, pair_encoding: str
) -> dict[str, float]:
    """Pairs/s at each of `BATCH_SIZES` and the best of them, the model's weights read with `pair_encoding`."""
    classify = classifier(folder, dtype, pair_encoding)
    speeds = {batch_size: pairs_per_second(classify, texts, batch_size) for batch_size in BATCH_SIZES}
    best = max(speeds, key=speeds.get)
    return {"best_batch_size": best, "pairs_per_s": speeds[best], "by_batch_size": speeds}


def predicted_labels(folder: str, texts: Sequence[dict[str, Any]], dtype: torch.dtype) -> list[str]:
    """The label the all-relations call gives each gold pair of `texts` (skipped pairs: `no_relation`), in order."""
    classify = pipeline("relation-classification", model=folder, trust_remote_code=True, dtype=dtype)
    outputs = classify([{"text": t["text"], "entities": t["entities"]} for t in texts], keep_no_relation=True)
    labels = []
    for text, relations in zip(texts, outputs, strict=True):
        found = {
            (text["entities"].index(r["subject"]), text["entities"].index(r["object"])): r["label"] or NO_RELATION
            for r in relations
        }
        labels += [found.get((r["subject"], r["object"]), NO_RELATION) for r in text["relations"]]
    return labels


def micro_f1(folder: str, texts: Sequence[dict[str, Any]], label_names: list[str], dtype: torch.dtype) -> float:
    """Relation micro-F1 (no_relation excluded) of the all-relations call on the gold pairs of `texts`."""
    predicted = predicted_labels(folder, texts, dtype)
    gold = [relation["label"] for text in texts for relation in text["relations"]]
    index = {label: i for i, label in enumerate(label_names)}
    probabilities = np.eye(len(label_names), dtype=np.float32)[[index[label] for label in predicted]]
    return relation_metrics(np.array([index[label] for label in gold]), probabilities, label_names)["micro_f1"]
