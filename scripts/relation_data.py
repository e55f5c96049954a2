"""Relation-extraction data files → `datasets.Dataset` of canonical examples → TypedBert features.

Canonical example (JSON Lines, one a line, as in shared/data/conll04):
`{"id", "text", "subject": {"start", "end", "type"}, "object": {...}, "label"}`, offsets end exclusive.
KLUE-RE files (`sentence`, `subject_entity`/`object_entity` with `word`, `start_idx`, `end_idx` inclusive, `type`,
`label`) are read too and turned into the canonical form.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
from torch.utils.data import Sampler
from typed_bert.scripts.relation_metrics import NO_RELATION

from encoding_typed_bert import encode_relations


class DataFileError(ValueError):
    """A data file line is malformed; the message names the file and the line."""


def _line_numbers(path: Path) -> list[int]:
    """1-based numbers of the non-blank lines: row i of the loaded dataset is line `_line_numbers(path)[i]`."""
    with path.open(encoding="utf-8") as handle:
        return [number for number, line in enumerate(handle, start=1) if line.strip()]


def _first_unparsable_line(path: Path) -> tuple[int, str]:
    """Only called after `datasets` failed to read `path`: find the first line that is not a JSON object."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                return number, f"invalid JSON ({error.msg})"
            if not isinstance(value, dict):
                return number, f"expected a JSON object, got {type(value).__name__}"
    return 0, "rows have inconsistent fields"


def _canonical_klue(row: dict[str, Any], names: Sequence[str] | None) -> dict[str, Any]:
    spans = {}
    for key, name in (("subject_entity", "subject"), ("object_entity", "object")):
        entity = row[key]
        if isinstance(entity, str):  # the original KLUE files store the entity dicts as Python-literal strings
            entity = json.loads(entity.replace("'", '"'))
        spans[name] = {"start": entity["start_idx"], "end": entity["end_idx"] + 1, "type": entity["type"]}
    label = row["label"]
    if isinstance(label, int) and names is not None:
        label = names[label]
    return {"id": str(row.get("guid", row.get("id", ""))), "text": row["sentence"], **spans, "label": str(label)}


def _row_problem(row: dict[str, Any]) -> str | None:
    text = row.get("text")
    if not isinstance(text, str) or not text:
        return "'text' must be a non-empty string"
    for name in ("subject", "object"):
        span = row.get(name)
        # datasets fills a field missing on one line with None, so None counts as missing.
        if not isinstance(span, dict) or any(span.get(key) is None for key in ("start", "end", "type")):
            return f"'{name}' must be an object with start, end and type"
        start, end = span["start"], span["end"]
        if not isinstance(start, int) or not isinstance(end, int) or not 0 <= start < end <= len(text):
            return f"'{name}' span [{start}, {end}) is not inside the text of length {len(text)}"
        if not isinstance(span["type"], str) or not span["type"]:
            return f"'{name}' type must be a non-empty string"
    if not isinstance(row.get("label"), str) or not row["label"]:
        return "'label' must be a non-empty string"
    return None


def load_relations(path: str | Path) -> datasets.Dataset:
    """Load a canonical or KLUE-RE JSON Lines file; a `DataFileError` names the file and line of a bad example."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file.")
    try:
        raw = datasets.load_dataset("json", data_files=str(path), split="train")
    except Exception as error:  # datasets/pyarrow raise many types; find the line ourselves
        number, problem = _first_unparsable_line(path)
        raise DataFileError(f"{path}:{number}: {problem}.") from error
    lines = _line_numbers(path)
    if "sentence" in raw.column_names:
        names = raw.features["label"].names if isinstance(raw.features.get("label"), datasets.ClassLabel) else None
        raw = raw.map(lambda row: _canonical_klue(row, names), remove_columns=raw.column_names)
    missing = {"text", "subject", "object", "label"} - set(raw.column_names)
    if missing:
        raise DataFileError(f"{path}:{lines[0] if lines else 1}: missing fields {sorted(missing)}.")
    for index, row in enumerate(raw):
        problem = _row_problem(row)
        if problem:
            raise DataFileError(f"{path}:{lines[index]}: {problem}.")
    return raw


def label_names(dataset: datasets.Dataset) -> list[str]:
    """The relation labels of a dataset, `no_relation` first (id 0) when present, the rest sorted."""
    labels = sorted(set(dataset["label"]))
    return [NO_RELATION] + [label for label in labels if label != NO_RELATION] if NO_RELATION in labels else labels


def entity_type_names(dataset: datasets.Dataset) -> list[str]:
    """The entity types that subjects and objects of a dataset carry, sorted."""
    return sorted({row["subject"]["type"] for row in dataset} | {row["object"]["type"] for row in dataset})


def encode_dataset(
    dataset: datasets.Dataset,
    tokenizer,
    entity_types: Sequence[str],
    label2id: dict[str, int] | None,
    max_length: int,
    entity_markers: bool = False,
) -> datasets.Dataset:
    """Add the five TypedBert fields (and integer `labels` when `label2id` is given); keeps the other columns."""
    if label2id is not None:
        unknown = sorted(set(dataset["label"]) - set(label2id))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the model's labels {list(label2id)}.")

    def encode(batch: dict[str, list]) -> dict[str, list]:
        rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
        features = encode_relations(tokenizer, rows, entity_types, max_length, entity_markers=entity_markers)
        if label2id is not None:
            features["labels"] = [label2id[label] for label in batch["label"]]
        return features

    return dataset.map(encode, batched=True, desc="Encoding")


class NegativeSubsamplingSampler(Sampler[int]):
    """Each epoch: every related example plus a fresh random draw of `ratio` × as many `no_relation` ones, grouped
    into length buckets (runs of similar length, for dynamic padding) in random order. Deterministic given the seed
    and the epoch, so every DDP process draws the same order.
    """

    def __init__(
        self,
        labels: Sequence[int],
        lengths: Sequence[int],
        batch_size: int,
        negative_ratio: float,
        no_relation_id: int | None,
        seed: int,
    ) -> None:
        self.positives = [i for i, label in enumerate(labels) if label != no_relation_id]
        self.negatives = [i for i, label in enumerate(labels) if label == no_relation_id]
        wanted = math.ceil(negative_ratio * len(self.positives)) if negative_ratio >= 0 else len(self.negatives)
        self.num_negatives = min(len(self.negatives), wanted)
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.positives) + self.num_negatives

    def __iter__(self) -> Iterator[int]:
        generator = random.Random(self.seed * 1000 + self.epoch)
        chosen = self.positives + generator.sample(self.negatives, self.num_negatives)
        generator.shuffle(chosen)
        bucket = self.batch_size * 50
        batches = []
        for begin in range(0, len(chosen), bucket):
            run = sorted(chosen[begin : begin + bucket], key=lambda i: self.lengths[i], reverse=True)
            batches += [run[i : i + self.batch_size] for i in range(0, len(run), self.batch_size)]
        # Only the last run can end in a short batch; keep it last so the DataLoader's batches match the buckets.
        full = [batch for batch in batches if len(batch) == self.batch_size]
        generator.shuffle(full)
        batches = full + [batch for batch in batches if len(batch) < self.batch_size]
        self.epoch += 1
        return iter([index for batch in batches for index in batch])
