"""Relation-extraction data files → `datasets.Dataset` of canonical examples → TypedBert features.

Canonical example (JSON Lines, one a line, as in shared/data/conll04):
`{"id", "text", "subject": {"start", "end", "type"}, "object": {...}, "label"}`, offsets end exclusive.
Two other line forms are read and turned into canonical examples:
- KLUE-RE (`sentence`, `subject_entity`/`object_entity` with `word`, `start_idx`, `end_idx` inclusive, `type`,
  `label`);
- a text with its entities and gold relations, `{"id", "text", "entities": [{"start", "end", "type"}, ...],
  "relations": [{"subject": i, "object": j, "label"}, ...]}`: one example per ordered pair of distinct entities,
  labelled `no_relation` unless a relation names it, so it scores exactly as the equivalent pair file.
A line with both `subject`/`object` and `entities` is refused as ambiguous, as the pipeline refuses such a dict.
"""

from __future__ import annotations

import ast
import itertools
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from configuration_typed_bert import NO_RELATION
from encoding_typed_bert import PairEncoding, check_span, max_sequence_length
from typed_bert.errors import DataFileError, InputError
from typed_bert.jsonl import json_rows

EXPECTED_ROW = 'expected {"text", "subject": {"start", "end", "type"}, "object": {...}, "label"}'
UNENCODABLE_EXPECTED = (
    "expected a pair the model can read (without --strict, training skips such pairs and evaluation scores them as "
    "no_relation)"
)
EXPECTED_TEXT_ROW = (
    'expected {"text", "entities": [{"start", "end", "type"}, ...], "relations": [{"subject": i, "object": j, '
    '"label"}, ...]}'
)


def _canonical_klue(row: dict[str, Any]) -> dict[str, Any]:
    spans = {}
    for key, name in (("subject_entity", "subject"), ("object_entity", "object")):
        entity = row[key]
        if isinstance(entity, str):  # the original KLUE files store the entity dicts as Python literals
            entity = ast.literal_eval(entity)
        spans[name] = {"start": entity["start_idx"], "end": entity["end_idx"] + 1, "type": entity["type"]}
    return {"id": str(row.get("guid", row.get("id", ""))), "text": row["sentence"], **spans, "label": str(row["label"])}


def _pairs_of_text(row: dict[str, Any]) -> list[dict[str, Any]] | str:
    """The canonical examples of an entity-list line (every ordered pair of its entities), or what is wrong with it."""
    text, entities, relations = row.get("text"), row.get("entities"), row.get("relations", [])
    if not isinstance(text, str) or not text:
        return "'text' must be a non-empty string"
    if not isinstance(entities, list):
        return "'entities' must be a list of objects with start, end and type"
    for index, entity in enumerate(entities):
        problem = _span_problem(f"entity {index}", entity, text)
        if problem:
            return problem
    if "subject" in row or "object" in row:
        return "the line has both 'entities' and 'subject'/'object', so it is neither a pair nor an entity list"
    if not isinstance(relations, list) or not all(isinstance(relation, dict) for relation in relations):
        return "'relations' must be a list of objects with subject, object and label"
    labels = {}
    for index, relation in enumerate(relations):
        pair = relation.get("subject"), relation.get("object")
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(entities) for i in pair):
            return f"relation {index} names entities {list(pair)}; expected indices into the {len(entities)} entities"
        if pair[0] == pair[1] or pair in labels:
            return f"relation {index} repeats the pair {list(pair)} or relates an entity to itself"
        if not isinstance(relation.get("label"), str) or not relation["label"]:
            return f"relation {index}: 'label' must be a non-empty string"
        labels[pair] = relation["label"]
    line_id = str(row.get("id", ""))
    return [
        {
            "id": f"{line_id}-{i}-{j}",
            "text": text,
            "subject": entities[i],
            "object": entities[j],
            "label": labels.get((i, j), NO_RELATION),
        }
        for i, j in itertools.permutations(range(len(entities)), 2)
    ]


def _span_problem(name: str, span: Any, text: str) -> str | None:
    """What is wrong with an entity span of `text` (`check_span`, the rule the model's encoding applies), or None."""
    try:
        check_span(name, span, text)
    except ValueError as error:
        return str(error).rstrip(".")
    return None


def _row_problem(row: dict[str, Any]) -> str | None:
    text = row.get("text")
    if not isinstance(text, str) or not text:
        return "'text' must be a non-empty string"
    for name in ("subject", "object"):
        problem = _span_problem(f"'{name}'", row.get(name), text)
        if problem:
            return problem
    if not isinstance(row.get("label"), str) or not row["label"]:
        return "'label' must be a non-empty string"
    return None


def _canonical(row: dict[str, Any], line: int) -> dict[str, Any]:
    spans = {name: {key: row[name][key] for key in ("start", "end", "type")} for name in ("subject", "object")}
    return {"id": str(row.get("id", "")), "text": row["text"], **spans, "label": row["label"], "line": line}


def load_relations(path: str | Path) -> datasets.Dataset:
    """Load a JSON Lines file of pairs, KLUE-RE examples or entity lists (see the module docstring) into canonical
    rows plus `line` (the 1-based line number; an entity-list line gives one row per ordered pair).

    A `DataFileError` names the file and line of the first bad line: a missing or empty file, invalid JSON, a line
    that is not an object, a missing field, a span outside the text, a KLUE entity that is not a Python literal, a
    relation naming an entity that is not in the list.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError("no such file; expected a JSON Lines file of relation examples", path)
    rows, read_any = [], False
    for number, row in json_rows(path):
        read_any = True
        if not isinstance(row, dict):
            raise DataFileError(f"a JSON {type(row).__name__}; {EXPECTED_ROW}", path, number)
        if "sentence" in row:
            try:
                row = _canonical_klue(row)
            except (KeyError, TypeError, ValueError, SyntaxError) as error:
                raise DataFileError(
                    f"bad KLUE-RE entity ({type(error).__name__}: {error}); expected subject_entity and "
                    "object_entity with word, start_idx, end_idx (inclusive) and type",
                    path,
                    number,
                ) from error
        if "entities" in row:
            pairs = _pairs_of_text(row)
            if isinstance(pairs, str):
                raise DataFileError(f"{pairs}; {EXPECTED_TEXT_ROW}", path, number)
        else:
            problem = _row_problem(row)
            if problem:
                raise DataFileError(f"{problem}; {EXPECTED_ROW}", path, number)
            pairs = [row]
        rows += [_canonical(pair, number) for pair in pairs]
    if not rows and read_any:
        raise DataFileError(f"no pairs: every entity list has fewer than two entities; {EXPECTED_TEXT_ROW}", path)
    if not rows:
        raise DataFileError("the file is empty; expected one JSON object per line", path)
    return datasets.Dataset.from_list(rows)


def texts_with_entities(dataset: datasets.Dataset) -> list[dict[str, Any]]:
    """The pairs of a dataset grouped by text: `{"text", "entities", "relations", "lines"}` per distinct text, in the
    order texts first appear. `entities` are the distinct `{"start", "end", "type"}` spans of its pairs (in order of
    appearance), `relations` one `{"subject": i, "object": j, "label"}` per pair of the data (no_relation included),
    `lines` the data file lines of those pairs and `rows` their indices in the dataset."""
    texts: dict[str, dict[str, Any]] = {}
    for index, row in enumerate(dataset):
        group = texts.setdefault(
            row["text"], {"text": row["text"], "entities": [], "relations": [], "lines": [], "rows": []}
        )
        indices = []
        for name in ("subject", "object"):
            entity = {key: row[name][key] for key in ("start", "end", "type")}
            if entity not in group["entities"]:
                group["entities"].append(entity)
            indices.append(group["entities"].index(entity))
        group["relations"].append({"subject": indices[0], "object": indices[1], "label": row["label"]})
        group["lines"].append(row["line"])
        group["rows"].append(index)
    return list(texts.values())


def joined_texts(dataset: datasets.Dataset, max_texts: int, seed: int) -> datasets.Dataset:
    """Pseudo-documents for training on text longer than a sentence: consecutive texts of `dataset` (in file order)
    joined with one space, 1 to `max_texts` at a time (each document's count drawn uniformly, from `seed`). Each
    text's pairs keep their labels and lines, their offsets shifted; every ordered pair of entities from two different
    texts of a document is added as `no_relation` (the texts are unrelated, so no relation joins them), with the line
    of the subject's text. A model trained on them has seen pairs across sentence boundaries, which a document's
    windows hold (docs/documents.md). Pairs are in the order an entity-list line gives them (`_pairs_of_text`)."""
    rng, groups, rows = random.Random(seed), texts_with_entities(dataset), []
    start = 0
    while start < len(groups):
        document = groups[start : start + rng.randint(1, max_texts)]
        start += len(document)
        rows += _document_pairs(document, dataset)
    return datasets.Dataset.from_list(rows)


def _document_pairs(document: list[dict[str, Any]], dataset: datasets.Dataset) -> list[dict[str, Any]]:
    """The canonical rows of the texts of `document` (`texts_with_entities` groups) joined into one text."""
    joined = joined_text(document)
    known: dict[tuple[int, int], list[dict[str, Any]]] = {}  # a pair may have several rows
    rows = [row for group in document for row in group["rows"]]
    for relation, row in zip(joined["relations"], rows, strict=True):
        known.setdefault((relation["subject"], relation["object"]), []).append(dataset[row])
    firsts = list(itertools.accumulate((len(group["entities"]) for group in document), initial=0))
    lines = [group["lines"][0] for group in document]
    pairs = []
    for i, j in itertools.permutations(range(len(joined["entities"])), 2):
        text_i, text_j = joined["sources"][i], joined["sources"][j]
        # A pair across two texts, named by their lines and its entities' places in them; none within a text that
        # the file does not give (a pair file lists only some).
        name = f"line {lines[text_i]} entity {i - firsts[text_i]} -> line {lines[text_j]} entity {j - firsts[text_j]}"
        across = [{"id": name, "label": NO_RELATION, "line": lines[text_i]}] if text_i != text_j else []
        pairs += [{"id": original["id"], "text": joined["text"], "subject": joined["entities"][i],
                   "object": joined["entities"][j], "label": original["label"], "line": original["line"]}
                  for original in known.get((i, j), across)]  # fmt: skip
    return pairs


def joined_text(texts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Texts (`{"text", "entities", "relations"}`, as `texts_with_entities` gives them) as one text, joined with a
    space: entity offsets and relation indices shifted; `sources` gives the index in `texts` of each entity."""
    joined: dict[str, Any] = {"text": " ".join(text["text"] for text in texts), "entities": [], "relations": [],
                              "sources": []}  # fmt: skip
    offset = 0
    for number, text in enumerate(texts):
        first = len(joined["entities"])
        joined["entities"] += [{**e, "start": e["start"] + offset, "end": e["end"] + offset} for e in text["entities"]]
        joined["relations"] += [{**r, "subject": r["subject"] + first, "object": r["object"] + first}
                                for r in text["relations"]]  # fmt: skip
        joined["sources"] += [number] * len(text["entities"])
        offset += len(text["text"]) + 1
    return joined


def check_vocabulary(dataset: datasets.Dataset, path: str | Path, entity_types, labels, known_from: str) -> None:
    """Raise a `DataFileError` at the first line whose entity type or label is not among the known ones."""
    entity_types, labels = set(entity_types), set(labels) if labels is not None else None
    for row in dataset:
        for name in ("subject", "object"):
            if row[name]["type"] not in entity_types:
                raise DataFileError(
                    f"{name} type {row[name]['type']!r} is not among the entity types of {known_from}; expected one "
                    f"of {sorted(entity_types)}",
                    path,
                    row["line"],
                )
        if labels is not None and row["label"] not in labels:
            raise DataFileError(
                f"label {row['label']!r} is not among the labels of {known_from}; expected one of {sorted(labels)}",
                path,
                row["line"],
            )


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
    encoding: PairEncoding,
    entity_types: Sequence[str],
    label2id: dict[str, int] | None,
    max_length: int,
    path: str | Path | None = None,
    strict: bool = False,
) -> tuple[datasets.Dataset, list[str]]:
    """The pairs of `dataset` as the model sequences of `encoding` (`pair_encoding_for(config)`), text by text: each
    text's entities are those of its pairs, and only the pairs of the file are encoded.

    Returns the sequences (`encoding.input_names`; `rows`: the index in `dataset` of the pair of each of its rows of
    logits; given `label2id`, `labels`: their label ids) and, for each row of `dataset`, the reason it could not be
    encoded (`overlapping`, `too_far_apart`; '' when it was). With `strict`, such a pair is a `DataFileError` naming
    its line; so is any other bad pair.
    """
    labels = dataset["label"]
    reasons = [""] * len(dataset)
    problems: dict[int, tuple[ValueError, int]] = {}
    sequences = []
    for group in texts_with_entities(dataset):
        pairs = [(relation["subject"], relation["object"]) for relation in group["relations"]]
        try:
            encoded = encoding.encode(tokenizer, group["text"], group["entities"], entity_types, max_length, pairs)
        except ValueError as error:
            message = f"{_problem(error)}; expected pairs the model can encode"
            raise DataFileError(message, path, group["lines"][0]) from error
        rows_of: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for pair, row, line in zip(pairs, group["rows"], group["lines"], strict=True):
            rows_of.setdefault(pair, []).append((row, line))
        for i, j, error in encoded.skipped:
            row, line = rows_of[i, j].pop(0)
            reasons[row], problems[row] = error.reason, (error, line)
        for features, sequence_pairs in zip(encoded.sequences, encoded.pairs, strict=True):
            rows = [rows_of[pair].pop(0)[0] for pair in sequence_pairs]
            sequence = {**features, "rows": rows}
            if label2id is not None:
                sequence["labels"] = [label2id[labels[row]] for row in rows]
            sequences.append(sequence)
    if strict and problems:  # the first line of the file that cannot be encoded
        error, line = problems[min(problems)]
        raise DataFileError(f"{_problem(error)}; {UNENCODABLE_EXPECTED}", path, line)
    columns = [*encoding.input_names, "rows", *(["labels"] if label2id is not None else [])]
    encoded_set = datasets.Dataset.from_dict({name: [sequence[name] for sequence in sequences] for name in columns})
    return encoded_set, reasons


def _problem(error: ValueError) -> str:
    """The message of an encoding error, without its final period."""
    cause = error.__cause__ if isinstance(error.__cause__, ValueError) else error
    return str(cause).rstrip(".")


def pair_max_length(tokenizer, config, max_length: int | None) -> int:
    """The tokens a pair may take (`max_sequence_length`: `max_length`, else the model's); a `max_length` the model
    cannot take is an `InputError` naming `--max-length`."""
    try:
        return max_sequence_length(tokenizer, config.max_sequence_length, max_length)
    except ValueError as error:
        raise InputError(str(error).rstrip("."), "--max-length") from None


def unencodable_counts(reasons: Sequence[str]) -> dict[str, int]:
    """How many pairs the model could not read, by reason (`overlapping`, `too_far_apart`), from the reason of each
    pair ('' when it was encoded), as `encode_dataset` gives them."""
    counts: dict[str, int] = {}
    for reason in reasons:
        if reason:
            counts[reason] = counts.get(reason, 0) + 1
    return counts
