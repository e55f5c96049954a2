"""Text + typed entity spans → TypedBert inputs.

This file is uploaded to the Hugging Face Hub with the model (the relation-classification pipeline uses it), so it
imports only torch, transformers and `configuration_typed_bert`.

A relation example is a `text` with two character spans, `subject` and `object`, each
`{"start": int, "end": int, "type": str}` (end exclusive). A sub-word token belongs to a span when its character
offsets overlap it; its `entity_type_ids` entry is the index of the span's type in `entity_types` and its
`entity_role_ids` entry is 1 (subject) or 2 (object). Every other token gets 0 for both.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import BatchEncoding, PreTrainedTokenizerBase

try:
    from .configuration_typed_bert import OBJECT_ROLE, SUBJECT_ROLE
except ImportError:  # imported as a top-level module from a checkout, not as part of a package
    from configuration_typed_bert import OBJECT_ROLE, SUBJECT_ROLE

MODEL_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "entity_type_ids", "entity_role_ids")
# pair_encoding="all_pairs" adds explicit positions (a pair token sits at its entity's) and each token's pair number.
ALL_PAIRS_INPUT_NAMES = (*MODEL_INPUT_NAMES, "position_ids", "pair_ids")
# Pairs in one all-pairs sequence: the text is encoded once for them.
PAIRS_PER_SEQUENCE = 64
# Zhou & Chen (2021), typed entity markers in punctuation form: "@ * person * Bill @" and "# ^ org ^ Microsoft #".
SUBJECT_MARKERS = ("@", "*")
OBJECT_MARKERS = ("#", "^")


class EntityOverlapError(ValueError):
    """The subject and object overlap (nested mentions such as "the [[BERT] encoder]") or share a token: the pair
    cannot be encoded, since every token has one role."""


class EntitiesTooFarApartError(ValueError):
    """The subject and object are further apart than `max_length` tokens: no window holds both."""


def _checked_span(name: str, span: Any, text: str, entity_types: Sequence[str]) -> tuple[int, int, str]:
    if not isinstance(span, Mapping) or not {"start", "end", "type"} <= set(span):
        raise ValueError(f"{name} must be a mapping with 'start', 'end' and 'type', got {span!r}.")
    start, end, entity_type = span["start"], span["end"], span["type"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        raise ValueError(f"{name} start/end must be integers, got start={start!r}, end={end!r}.")
    if start >= end:
        raise ValueError(f"{name} span has start={start} >= end={end}; spans are [start, end) with start < end.")
    if start < 0 or end > len(text):
        raise ValueError(f"{name} span [{start}, {end}) lies outside the text of length {len(text)}.")
    if entity_type not in entity_types[1:]:
        raise ValueError(
            f"{name} type {entity_type!r} is not a known entity type; known types: {list(entity_types[1:])}."
        )
    return start, end, entity_type


def encode_relation(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    subject: Mapping[str, Any],
    object: Mapping[str, Any],  # noqa: A002 - the RE name of the second entity
    entity_types: Sequence[str],
    max_length: int | None = None,
    entity_markers: bool = False,
) -> dict[str, list[int]]:
    """Encode one relation example.

    Args:
        tokenizer: a fast tokenizer (offset mappings are needed).
        text: the sentence.
        subject, object: `{"start", "end", "type"}`, character offsets into `text`, end exclusive.
        entity_types: the model's `config.entity_types`; index 0 is the "no entity" type.
        max_length: at most this many tokens, special tokens included (default: the tokenizer's
            `model_max_length`). A longer text is cut to a window around the two entities, never through them.
        entity_markers: first insert typed entity markers around both entities (`add_typed_entity_markers`; the
            marker input modes, `config.entity_markers`).

    Returns:
        `input_ids`, `attention_mask`, `token_type_ids`, `entity_type_ids`, `entity_role_ids`: lists of equal length.
    """
    check_pair(text, subject, object, entity_types)
    subject_start, subject_end, subject_type = _checked_span("subject", subject, text, entity_types)
    object_start, object_end, object_type = _checked_span("object", object, text, entity_types)
    if entity_markers:
        text, subject, object = add_typed_entity_markers(text, subject, object)  # noqa: A001
        subject_start, subject_end, object_start, object_end = (
            subject["start"],
            subject["end"],
            object["start"],
            object["end"],
        )
    encoding = tokenize(tokenizer, text)
    return pair_features(
        encoding,
        entity_tokens(encoding, text, "subject", subject_start, subject_end),
        entity_tokens(encoding, text, "object", object_start, object_end),
        list(entity_types).index(subject_type),
        list(entity_types).index(object_type),
        _limit(tokenizer, max_length),
    )


def tokenize(tokenizer: PreTrainedTokenizerBase, text: str) -> BatchEncoding:
    """The text's tokens with their character offsets and special-token mask, untruncated."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{type(tokenizer).__name__} is not a fast tokenizer; offset mappings need a fast one.")
    return tokenizer(
        text,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_token_type_ids=True,
        truncation=False,
        verbose=False,
    )


def entity_tokens(encoding: BatchEncoding, text: str, name: str, start: int, end: int) -> list[int]:
    """Positions of the tokens whose character offsets overlap `[start, end)`; a `ValueError` names `name` when the
    span covers none (only whitespace or characters the tokenizer drops)."""
    positions = [
        position
        for position, ((token_start, token_end), is_special) in enumerate(
            zip(encoding["offset_mapping"], encoding["special_tokens_mask"], strict=True)
        )
        if not is_special and token_start < end and token_end > start
    ]
    if not positions:
        raise ValueError(
            f"{name} span [{start}, {end}) = {text[start:end]!r} covers no token (only whitespace or characters the "
            "tokenizer drops)."
        )
    return positions


def pair_features(
    encoding: BatchEncoding,
    subject_tokens: list[int],
    object_tokens: list[int],
    subject_type_id: int,
    object_type_id: int,
    limit: int,
) -> dict[str, list[int]]:
    """The five model inputs of one (subject, object) pair of an encoded text, cut to `limit` tokens around both."""
    special = encoding["special_tokens_mask"]
    roles = [0] * len(special)
    types = [0] * len(special)
    for role, positions, type_id in (
        (SUBJECT_ROLE, subject_tokens, subject_type_id),
        (OBJECT_ROLE, object_tokens, object_type_id),
    ):
        for position in positions:
            if roles[position]:
                token_start, token_end = encoding["offset_mapping"][position]
                raise EntityOverlapError(
                    f"subject and object share the token {encoding.tokens()[position]!r} at characters "
                    f"[{token_start}, {token_end}); they must fall into different tokens."
                )
            roles[position], types[position] = role, type_id
    features = {
        "input_ids": encoding["input_ids"],
        "attention_mask": encoding["attention_mask"],
        "token_type_ids": encoding["token_type_ids"],
        "entity_type_ids": types,
        "entity_role_ids": roles,
    }
    if len(special) <= limit:
        return features
    window = _window_around_entities(special, roles, limit)
    return {name: [values[i] for i in window] for name, values in features.items()}


def _limit(tokenizer: PreTrainedTokenizerBase, max_length: int | None) -> int:
    return tokenizer.model_max_length if max_length is None else max_length


def check_pair(
    text: str,
    subject: Mapping[str, Any],
    object: Mapping[str, Any],  # noqa: A002
    entity_types: Sequence[str],
) -> None:
    """Raise a `ValueError` naming the problem when a (subject, object) pair of `text` cannot be encoded: a bad span,
    an unknown type, or spans that overlap (`EntityOverlapError`)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}.")
    _checked_span("subject", subject, text, entity_types)
    _checked_span("object", object, text, entity_types)
    _check_disjoint(subject, object)


def _check_disjoint(subject: Mapping[str, Any], object: Mapping[str, Any]) -> None:  # noqa: A002
    if subject["start"] < object["end"] and object["start"] < subject["end"]:
        raise EntityOverlapError(
            f"subject [{subject['start']}, {subject['end']}) and object [{object['start']}, {object['end']}) overlap; "
            "they must be disjoint."
        )


def _window_around_entities(special: list[int], roles: list[int], limit: int) -> list[int]:
    """Positions to keep: the leading and trailing special tokens and `limit` minus those around both entities."""
    content = [i for i, is_special in enumerate(special) if not is_special]
    first_content, last_content = content[0], content[-1]
    prefix = list(range(first_content))
    suffix = list(range(last_content + 1, len(special)))
    budget = limit - len(prefix) - len(suffix)
    entity_positions = [i for i, role in enumerate(roles) if role]
    first, last = entity_positions[0], entity_positions[-1]
    needed = last - first + 1
    if needed > budget:
        raise EntitiesTooFarApartError(
            f"The subject and object together span {needed} tokens, more than the {budget} that max_length={limit} "
            "leaves for text; raise max_length or shorten the distance between the entities."
        )
    spare = budget - needed
    left = max(first_content, first - spare // 2)
    right = min(last_content, left + budget - 1)
    left = max(first_content, right - budget + 1)
    return prefix + list(range(left, right + 1)) + suffix


def encode_relations(
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Mapping[str, Any]],
    entity_types: Sequence[str],
    max_length: int | None = None,
    entity_markers: bool = False,
) -> dict[str, list[list[int]]]:
    """Encode a batch of `{"text", "subject", "object"}` examples; returns the five fields as lists of rows.

    With `entity_markers=True` each example first gets typed entity markers (`add_typed_entity_markers`).
    A `ValueError` names the index of the example that failed.
    """
    batch: dict[str, list[list[int]]] = {name: [] for name in MODEL_INPUT_NAMES}
    for index, example in enumerate(examples):
        try:
            text, subject, obj = example["text"], example["subject"], example["object"]
            features = encode_relation(tokenizer, text, subject, obj, entity_types, max_length, entity_markers)
        except (KeyError, TypeError, ValueError) as error:
            error_class = EntityOverlapError if isinstance(error, EntityOverlapError) else ValueError
            raise error_class(f"example {index}: {error}") from error
        for name in MODEL_INPUT_NAMES:
            batch[name].append(features[name])
    return batch


def encode_entity_pairs(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    entities: Sequence[Mapping[str, Any]],
    entity_types: Sequence[str],
    max_length: int | None = None,
    entity_markers: bool = False,
) -> tuple[list[tuple[int, int, dict[str, list[int]]]], list[tuple[int, int, str]]]:
    """Encode every ordered pair of distinct entities of a text, the first of each pair as the subject.

    Args:
        entities: `{"start", "end", "type"}` spans of `text` (other keys are ignored); they may overlap.
        entity_types, max_length: as for `encode_relation`.
        entity_markers: insert typed entity markers around each pair's two entities (marker input modes).

    Returns:
        `(i, j, features)` for each encodable pair (entity i the subject, entity j the object), and `(i, j, reason)`
        for each skipped pair: entities that overlap or share a token, or that no `max_length` window holds together.
        A bad entity raises a `ValueError` naming its index.
    """
    encoding, tokens, type_ids = _encoded_entities(tokenizer, text, entities, entity_types)
    limit = _limit(tokenizer, max_length)
    encoded, skipped = [], []
    for i, j in itertools.permutations(range(len(entities)), 2):
        try:
            _check_disjoint(entities[i], entities[j])
            if entity_markers:
                features = encode_relation(tokenizer, text, entities[i], entities[j], entity_types, limit, True)
            else:
                features = pair_features(encoding, tokens[i], tokens[j], type_ids[i], type_ids[j], limit)
        except (EntityOverlapError, EntitiesTooFarApartError) as error:
            skipped.append((i, j, str(error)))
            continue
        encoded.append((i, j, features))
    return encoded, skipped


def _encoded_entities(
    tokenizer: PreTrainedTokenizerBase, text: str, entities: Sequence[Mapping[str, Any]], entity_types: Sequence[str]
) -> tuple[BatchEncoding, list[list[int]], list[int]]:
    """The text's encoding and, per entity, its token positions and type id; a `ValueError` names a bad entity."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}.")
    if isinstance(entities, (str, bytes, Mapping)) or not isinstance(entities, Sequence):
        raise ValueError(f"entities must be a list of {{'start', 'end', 'type'}} mappings, got {entities!r}.")
    spans = [_checked_span(f"entity {index}", entity, text, entity_types) for index, entity in enumerate(entities)]
    encoding = tokenize(tokenizer, text)
    tokens = [entity_tokens(encoding, text, f"entity {i}", start, end) for i, (start, end, _) in enumerate(spans)]
    return encoding, tokens, [list(entity_types).index(entity_type) for _, _, entity_type in spans]


def encode_all_pairs(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    entities: Sequence[Mapping[str, Any]],
    entity_types: Sequence[str],
    max_length: int | None = None,
    position_id_offset: int = 0,
    pairs_per_sequence: int = PAIRS_PER_SEQUENCE,
    pairs: Sequence[tuple[int, int]] | None = None,
) -> tuple[list[tuple[list[tuple[int, int]], dict[str, list[int]]]], list[tuple[int, int, str]]]:
    """Encode pairs of a text's entities for `pair_encoding="all_pairs"`: one sequence holds the text once and up to
    `pairs_per_sequence` pairs.

    The text's tokens carry the type id of the entity they belong to (the first listed, for tokens of overlapping
    entities), whichever pairs the sequence holds, and no role. Each pair `(i, j)` then adds two tokens: entity i's
    first word piece with role 1 (subject) and entity j's with role 2 (object), each with its entity's type id and
    position id and with the pair's number (1, 2, ...) in `pair_ids`, which is 0 on the text. `position_ids` are
    explicit (`position_id_offset` onwards). A text longer than `max_length` tokens is cut to a window around the
    entities of the sequence's pairs, halving the sequence's pairs until a window holds them (the text part then
    depends on the sequence's pairs: independence holds for texts that fit). A sequence has at most `max_length` text
    tokens plus two per pair.

    Args:
        entities, entity_types, max_length: as for `encode_entity_pairs`.
        pairs: the `(subject index, object index)` pairs to encode; default every ordered pair of distinct entities.

    Returns:
        `(pairs, features)` per sequence, with the seven fields of `ALL_PAIRS_INPUT_NAMES`, and `(i, j, reason)` for
        each skipped pair: entities that overlap or share a token, or that no window holds together.
    """
    encoding, tokens, type_ids = _encoded_entities(tokenizer, text, entities, entity_types)
    text_types = [0] * len(encoding["input_ids"])
    for positions, type_id in reversed(list(zip(tokens, type_ids, strict=True))):  # the first listed entity wins
        for position in positions:
            text_types[position] = type_id
    if pairs is None:
        pairs = list(itertools.permutations(range(len(entities)), 2))
    encodable, skipped = [], []
    for i, j in pairs:
        try:
            _check_disjoint(entities[i], entities[j])
            if set(tokens[i]) & set(tokens[j]):
                raise EntityOverlapError(f"entities {i} and {j} share a token; they must fall into different tokens.")
        except EntityOverlapError as error:
            skipped.append((i, j, str(error)))
            continue
        encodable.append((i, j))
    limit = _limit(tokenizer, max_length)
    sequences = []
    chunks = [encodable[start : start + pairs_per_sequence] for start in range(0, len(encodable), pairs_per_sequence)]
    while chunks:
        chunk = chunks.pop(0)
        try:
            sequences.append(
                (chunk, _all_pairs_sequence(encoding, text_types, tokens, type_ids, chunk, limit, position_id_offset))
            )
        except EntitiesTooFarApartError as error:
            if len(chunk) == 1:
                skipped.append((*chunk[0], str(error)))
            else:  # halves, until the pairs whose entities are too far apart are alone
                chunks[:0] = [chunk[: len(chunk) // 2], chunk[len(chunk) // 2 :]]
    return sequences, skipped


def _all_pairs_sequence(
    encoding: BatchEncoding,
    text_types: list[int],
    tokens: list[list[int]],
    type_ids: list[int],
    pairs: list[tuple[int, int]],
    limit: int,
    position_id_offset: int,
) -> dict[str, list[int]]:
    """One all-pairs sequence: the text (windowed to `limit` around the pairs' entities) then two tokens per pair."""
    special = encoding["special_tokens_mask"]
    window = list(range(len(special)))
    if len(special) > limit:
        used = [0] * len(special)
        for index in {index for pair in pairs for index in pair}:
            for position in tokens[index]:
                used[position] = 1
        window = _window_around_entities(special, used, limit)
    where = {position: new for new, position in enumerate(window)}
    features = {
        "input_ids": [encoding["input_ids"][p] for p in window],
        "attention_mask": [1] * len(window),
        "token_type_ids": [encoding["token_type_ids"][p] for p in window],
        "position_ids": [position_id_offset + new for new in range(len(window))],
        "entity_type_ids": [text_types[p] for p in window],
        "entity_role_ids": [0] * len(window),
        "pair_ids": [0] * len(window),
    }
    for number, pair in enumerate(pairs, start=1):
        for role, index in zip((SUBJECT_ROLE, OBJECT_ROLE), pair, strict=True):
            first = tokens[index][0]
            for name, value in (
                ("input_ids", encoding["input_ids"][first]),
                ("attention_mask", 1),
                ("token_type_ids", encoding["token_type_ids"][first]),
                ("position_ids", position_id_offset + where[first]),
                ("entity_type_ids", type_ids[index]),
                ("entity_role_ids", role),
                ("pair_ids", number),
            ):
                features[name].append(value)
    return features


def add_typed_entity_markers(
    text: str,
    subject: Mapping[str, Any],
    object: Mapping[str, Any],  # noqa: A002
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Insert Zhou & Chen's typed entity markers in punctuation form around both entities.

    "Bill founded Microsoft" → "@ * peop * Bill @ founded # ^ org ^ Microsoft #". Returns the new text and the new
    spans, which cover the whole marked entity (markers included), so the first subject token is "@" and the first
    object token is "#".
    """
    insertions = []
    for span, (outer, inner) in ((subject, SUBJECT_MARKERS), (object, OBJECT_MARKERS)):
        before = f"{outer} {inner} {str(span['type']).lower()} {inner} "
        insertions.append((span, before, f" {outer}"))
    pieces, new_spans, cursor = [], {}, 0
    for span, before, after in sorted(insertions, key=lambda item: item[0]["start"]):
        pieces.append(text[cursor : span["start"]])
        start = sum(len(piece) for piece in pieces)
        pieces.append(before + text[span["start"] : span["end"]] + after)
        new_spans[id(span)] = {"start": start, "end": start + len(pieces[-1]), "type": span["type"]}
        cursor = span["end"]
    pieces.append(text[cursor:])
    return "".join(pieces), new_spans[id(subject)], new_spans[id(object)]


class TypedBertDataCollator:
    """Pads the TypedBert fields of a list of features to the longest row (or a multiple of `pad_to_multiple_of`).

    `input_ids` are padded with the tokenizer's pad id, everything else with 0 (the all-pairs fields `position_ids`
    and `pair_ids` too: padding is never attended to). A `labels` (or `label`) field is stacked: one label per row, or
    for all-pairs rows one per pair, padded with -100 (ignored by the loss). Returns a dict of tensors `(batch, seq)`
    plus `labels` `(batch,)` or `(batch, pairs)`.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, pad_to_multiple_of: int | None = None) -> None:
        if tokenizer.pad_token_id is None:
            raise ValueError(f"{type(tokenizer).__name__} has no pad token; set tokenizer.pad_token first.")
        self.pad_token_id = tokenizer.pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(feature["input_ids"]) for feature in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {}
        for name in ALL_PAIRS_INPUT_NAMES:
            if name in features[0]:
                pad = self.pad_token_id if name == "input_ids" else 0
                batch[name] = _padded([feature[name] for feature in features], length, pad)
        for name in ("labels", "label"):
            if name in features[0]:
                labels = [feature[name] for feature in features]
                if isinstance(labels[0], (list, tuple)):  # all-pairs rows: one label per pair
                    batch["labels"] = _padded(labels, max(len(row) for row in labels), -100)
                else:
                    batch["labels"] = torch.tensor(labels)
                break
        return batch


def _padded(rows: Sequence[Sequence[int]], length: int, pad: int) -> torch.Tensor:
    return torch.tensor([list(row) + [pad] * (length - len(row)) for row in rows], dtype=torch.long)


__all__ = [
    "ALL_PAIRS_INPUT_NAMES",
    "MODEL_INPUT_NAMES",
    "PAIRS_PER_SEQUENCE",
    "EntitiesTooFarApartError",
    "EntityOverlapError",
    "TypedBertDataCollator",
    "add_typed_entity_markers",
    "check_pair",
    "encode_all_pairs",
    "encode_entity_pairs",
    "encode_relation",
    "encode_relations",
]
