"""Text + typed entity spans → TypedBert inputs.

This file is uploaded to the Hugging Face Hub with the model (the relation-classification pipeline uses it), so it
imports only torch, transformers and `configuration_typed_bert`.

A relation example is a `text` with two character spans, `subject` and `object`, each
`{"start": int, "end": int, "type": str}` (end exclusive). A sub-word token belongs to a span when its character
offsets overlap it; its `entity_type_ids` entry is the index of the span's type in `entity_types` and its
`entity_role_ids` entry is 1 (subject) or 2 (object). Every other token gets 0 for both.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from transformers import BatchEncoding, PreTrainedTokenizerBase

try:
    from .configuration_typed_bert import OBJECT_ROLE, SUBJECT_ROLE, WORD_SHAPES
except ImportError:  # imported as a top-level module from a checkout, not as part of a package
    from configuration_typed_bert import OBJECT_ROLE, SUBJECT_ROLE, WORD_SHAPES

MODEL_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "entity_type_ids", "entity_role_ids")
# The inputs of a subject-packed sequence (`SubjectPackedPairs`): the five above, the
# position of every token (object markers sit at their object's first and last token), which object's markers each
# token is (0: a text token), and where each object's start marker is.
PACKED_INPUT_NAMES = (*MODEL_INPUT_NAMES, "position_ids", "marker_groups", "object_positions")
# PL-Marker packs 16-40 objects per sequence; texts with more candidate objects per subject take several sequences.
DEFAULT_OBJECTS_PER_SEQUENCE = 32
_WORDS = re.compile(r"\w+|[^\w\s]")  # BERT's pre-tokenization: runs of word characters, single punctuation marks
# Zhou & Chen (2021), typed entity markers in punctuation form: "@ * person * Bill @" and "# ^ org ^ Microsoft #".
SUBJECT_MARKERS = ("@", "*")
OBJECT_MARKERS = ("#", "^")


class UnencodablePairError(ValueError):
    """A well-formed pair that the model cannot read: training skips such pairs and evaluation scores them as
    `no_relation`, counted under `reason`."""

    reason = "unencodable"


class EntityOverlapError(UnencodablePairError):
    """The subject and object overlap (nested mentions such as "the [[BERT] encoder]") or share a token: the pair
    cannot be encoded, since every token has one role."""

    reason = "overlapping"


class EntitiesTooFarApartError(UnencodablePairError):
    """The subject and object are further apart than `max_length` tokens: no window holds both."""

    reason = "too_far_apart"


def check_span(name: str, span: Any, text: str, entity_types: Sequence[str] | None = None) -> tuple[int, int, str]:
    """`(start, end, type)` of an entity span of `text`, or a `ValueError` naming `name` and what is wrong: not a
    mapping with integer `start` < `end` inside the text and a type (one of `entity_types[1:]` when given, else any
    non-empty string)."""
    if not isinstance(span, Mapping) or not {"start", "end", "type"} <= set(span):
        raise ValueError(f"{name} must be a mapping with 'start', 'end' and 'type', got {span!r}.")
    start, end, entity_type = span["start"], span["end"], span["type"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        raise ValueError(f"{name} start/end must be integers, got start={start!r}, end={end!r}.")
    if start >= end:
        raise ValueError(f"{name} span has start={start} >= end={end}; spans are [start, end) with start < end.")
    if start < 0 or end > len(text):
        raise ValueError(f"{name} span [{start}, {end}) lies outside the text of length {len(text)}.")
    if entity_types is None:
        if not isinstance(entity_type, str) or not entity_type:
            raise ValueError(f"{name} type must be a non-empty string, got {entity_type!r}.")
    elif entity_type not in entity_types[1:]:
        raise ValueError(
            f"{name} type {entity_type!r} is not a known entity type; known types: {list(entity_types[1:])}."
        )
    return start, end, entity_type


def word_shape(word: str, glued: bool = False) -> int:
    """The `WORD_SHAPES` index of a word: its letters all lower, Title (one upper first), all UPPER (two or more) or
    mixed; without letters, digits or other; `glued`: the word follows another with no space between."""
    letters = [character for character in word if character.isalpha()]
    if not letters:
        case = "digit" if any(c.isdigit() for c in word) else "other"
    elif all(letter.islower() for letter in letters):
        case = "lower"
    elif letters[0].isupper() and all(letter.islower() for letter in letters[1:]):
        case = "title"
    else:
        case = "upper" if all(letter.isupper() for letter in letters) else "mixed"
    return WORD_SHAPES.index(f"glued {case}" if glued else case)


def word_shape_ids(text: str, offsets: Sequence[Sequence[int]]) -> list[int]:
    """The shape of the word each token comes from (words as BERT pre-tokenizes: `_WORDS`), one id per `(start, end)`
    character offset of the tokenizer (0 for a token with no characters: special tokens and padding). Only the words
    the offsets reach are read, so the windows of a long document cost what their own text does."""
    offsets = [(int(start), int(end)) for start, end in offsets]
    reached = [start for start, end in offsets if end > start]
    if not reached:
        return [0] * len(offsets)
    first = min(reached)
    while first > 0 and not text[first - 1].isspace():  # back to the start of the word the first token is in
        first -= 1
    shapes = {}
    for word in _WORDS.finditer(text, first, max(end for _, end in offsets)):
        glued = word.start() > 0 and not text[word.start() - 1].isspace()
        shapes.update(dict.fromkeys(range(word.start(), word.end()), word_shape(word.group(), glued)))
    return [shapes.get(start, 0) if end > start else 0 for start, end in offsets]


@dataclass
class SpanCandidates:
    """The candidate entities of one sequence (`span_candidates`), one entry per candidate in each list: its first and
    last token, its width in words minus one, and its `(start, end)` character offsets in `text`."""

    text: str
    first: list[int]
    last: list[int]
    widths: list[int]
    characters: list[tuple[int, int]]


def span_candidates(
    word_ids: Sequence[int | None], offsets: Sequence[Sequence[int]], text: str, max_width: int
) -> SpanCandidates:
    """Every run of up to `max_width` words of one tokenized sequence of `text` (a window of a long one): its
    tokens' `word_ids` and `(start, end)` character `offsets`, as a fast tokenizer gives them. Words are the
    tokenizer's pre-tokenized words, so a candidate never starts or ends inside one."""
    words: list[list[int]] = []
    previous = None
    for position, word in enumerate(word_ids):
        if word is not None and word == previous:
            words[-1][1] = position
        elif word is not None:
            words.append([position, position])
        previous = word
    candidates = SpanCandidates(text, [], [], [], [])
    for a, (first, _) in enumerate(words):
        for b in range(a, min(len(words), a + max_width)):
            last = words[b][1]
            candidates.first.append(first)
            candidates.last.append(last)
            candidates.widths.append(b - a)
            candidates.characters.append((int(offsets[first][0]), int(offsets[last][1])))
    return candidates


def span_inputs(candidates: Sequence[SpanCandidates]) -> dict[str, torch.Tensor]:
    """The span inputs of a batch of sequences (one `SpanCandidates` each), every candidate of the batch in one row
    `(n_spans,)`: `span_rows` (its sequence), `span_starts` and `span_ends` (its first and last token) and
    `span_widths` (its width in words minus one). A model gives one row of logits per candidate, in this order."""
    columns = {"span_rows": [], "span_starts": [], "span_ends": [], "span_widths": []}
    for row, candidate in enumerate(candidates):
        columns["span_rows"] += [row] * len(candidate.first)
        columns["span_starts"] += candidate.first
        columns["span_ends"] += candidate.last
        columns["span_widths"] += candidate.widths
    return {name: torch.tensor(values, dtype=torch.long) for name, values in columns.items()}


def max_sequence_length(tokenizer: PreTrainedTokenizerBase, model_limit: int, max_length: int | None = None) -> int:
    """The most tokens a sequence may have, special tokens included: `max_length` when given, else the tokenizer's
    `model_max_length`, never more than the model's position table allows (`model_limit`, the config's
    `max_sequence_length`). A `max_length` above `model_limit` is a `ValueError`; so is one below 3."""
    if max_length is None:
        return min(tokenizer.model_max_length, model_limit)
    if not isinstance(max_length, int) or isinstance(max_length, bool) or not 3 <= max_length <= model_limit:
        raise ValueError(
            f"max_length={max_length!r} must be an int from 3 to {model_limit}, the most tokens the model's position "
            "table holds."
        )
    return max_length


def encode_relation(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    subject: Mapping[str, Any],
    object: Mapping[str, Any],  # noqa: A002 - the RE name of the second entity
    entity_types: Sequence[str],
    max_length: int | None = None,
    entity_markers: bool = False,
) -> dict[str, list[int]]:
    """The five model inputs (`MODEL_INPUT_NAMES`, lists of equal length) of one relation example: `subject` and
    `object` are `{"start", "end", "type"}` character spans of `text` (end exclusive), with types from the model's
    `config.entity_types` (index 0 is "no entity"). The text is cut to a window of `max_length` tokens (default the
    tokenizer's `model_max_length`; `max_sequence_length` gives the model's) around both entities, never through
    them; `entity_markers` first inserts typed entity markers (`add_typed_entity_markers`; the marker input modes).
    A bad span is a `ValueError` naming it; spans that overlap or that no window holds together raise the
    `UnencodablePairError` that says so."""
    encoded = PerPairEncoding(entity_markers).encode(
        tokenizer, text, [subject, object], entity_types, max_length, [(0, 1)], ["subject", "object"]
    )
    if encoded.skipped:
        raise encoded.skipped[0][2]
    return encoded.sequences[0]


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


def entity_tokens(encoding: BatchEncoding, text: str, spans: Sequence[tuple[str, int, int]]) -> list[list[int]]:
    """For each `(name, start, end)` span, the positions of the tokens whose character offsets overlap `[start, end)`;
    a `ValueError` names `name` when a span covers none (only whitespace or characters the tokenizer drops). One pass
    over the tokens, then a binary search per span, so a document's thousands of entities cost little."""
    content = [
        (position, token_start, token_end)
        for position, ((token_start, token_end), is_special) in enumerate(
            zip(encoding["offset_mapping"], encoding["special_tokens_mask"], strict=True)
        )
        if not is_special
    ]
    ends = [token_end for _, _, token_end in content]  # in text order
    found = []
    for name, start, end in spans:
        positions, index = [], bisect.bisect_right(ends, start)
        while index < len(content) and content[index][1] < end:
            if content[index][2] > start:
                positions.append(content[index][0])
            index += 1
        if not positions:
            raise ValueError(
                f"{name} span [{start}, {end}) = {text[start:end]!r} covers no token (only whitespace or characters "
                "the tokenizer drops)."
            )
        found.append(positions)
    return found


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


def check_disjoint(subject: Mapping[str, Any], object: Mapping[str, Any]) -> None:  # noqa: A002
    """An `EntityOverlapError` when the two spans overlap."""
    if subject["start"] < object["end"] and object["start"] < subject["end"]:
        raise EntityOverlapError(
            f"subject [{subject['start']}, {subject['end']}) and object [{object['start']}, {object['end']}) overlap; "
            "they must be disjoint."
        )


def _window_around_entities(special: list[int], roles: list[int], limit: int) -> list[int]:
    """Positions to keep: the leading and trailing special tokens and `limit` minus those around both entities."""
    entity_positions = [i for i, role in enumerate(roles) if role]
    return _window(_content_bounds(special), len(special), entity_positions[0], entity_positions[-1], limit)


def _content_bounds(special: list[int]) -> tuple[int, int]:
    """The first and last position of a sequence that is not a special token."""
    content = [i for i, is_special in enumerate(special) if not is_special]
    return content[0], content[-1]


def _window(content: tuple[int, int], length: int, first: int, last: int, limit: int) -> list[int]:
    """Positions to keep of a sequence of `length` whose text tokens run from `content[0]` to `content[1]`: the
    special tokens before and after them, and `limit` minus those around the tokens `first` to `last`."""
    first_content, last_content = content
    prefix = list(range(first_content))
    suffix = list(range(last_content + 1, length))
    budget = limit - len(prefix) - len(suffix)
    needed = last - first + 1
    if needed > budget:
        raise EntitiesTooFarApartError(
            f"the subject and object together span {needed} tokens, more than the {budget} that max_length={limit} "
            "leaves for text, so no window holds both."
        )
    spare = budget - needed
    left = max(first_content, first - spare // 2)
    right = min(last_content, left + budget - 1)
    left = max(first_content, right - budget + 1)
    return prefix + list(range(left, right + 1)) + suffix


@dataclass
class EncodedText:
    """A text tokenized once (`encoding`, untruncated), with the token positions and the type id of each entity."""

    text: str
    entities: Sequence[Mapping[str, Any]]
    entity_types: Sequence[str]
    encoding: BatchEncoding
    tokens: list[list[int]]
    type_ids: list[int]


def encode_text(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    entities: Sequence[Mapping[str, Any]],
    entity_types: Sequence[str],
    names: Sequence[str] | None = None,
) -> EncodedText:
    """The text and its entities (`{"start", "end", "type"}` spans, which may overlap), tokenized once; a
    `ValueError` names a bad entity (as `names[i]`, default `entity i`)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}.")
    if isinstance(entities, (str, bytes, Mapping)) or not isinstance(entities, Sequence):
        raise ValueError(f"entities must be a list of {{'start', 'end', 'type'}} mappings, got {entities!r}.")
    names = names or [f"entity {index}" for index in range(len(entities))]
    spans = [(name, *check_span(name, span, text, entity_types)) for name, span in zip(names, entities, strict=True)]
    tokens = entity_tokens(encoding := tokenize(tokenizer, text), text, [span[:3] for span in spans])
    type_ids = [list(entity_types).index(span[3]) for span in spans]
    return EncodedText(text, entities, entity_types, encoding, tokens, type_ids)


def pairs_within_reach(tokens: Sequence[Sequence[int]], reach: int) -> list[tuple[int, int]]:
    """The ordered pairs `(i, j)` of distinct entities, in order, whose token positions (`tokens[i]`, ascending)
    lie within `reach` consecutive tokens together: the pairs some window holds. Entities are sorted by their first
    token, so a document's thousands of entities cost about (entities x entities in reach), not entities squared."""
    order = sorted(range(len(tokens)), key=lambda index: tokens[index][0])
    firsts = [tokens[index][0] for index in order]
    pairs = []
    for i, positions in enumerate(tokens):
        first, last = positions[0], positions[-1]
        near = order[bisect.bisect_left(firsts, last - reach + 1) : bisect.bisect_right(firsts, first + reach - 1)]
        pairs.extend((i, j) for j in near if j != i and max(last, tokens[j][-1]) - min(first, tokens[j][0]) < reach)
    pairs.sort()
    return pairs


@dataclass
class EncodedPairs:
    """The model sequences of one text's pairs (`PairEncoding.encode`).

    Args:
        sequences: the model inputs of each sequence (`PairEncoding.input_names`, lists of ints).
        pairs: for each sequence, the `(subject, object)` entity index pairs it classifies, in the order of its rows
            of logits (`pair_logits`).
        skipped: `(i, j, error)` for each pair no sequence holds (`UnencodablePairError`: overlapping entities, or
            too far apart for `max_length`).
        beyond_reach: how many ordered pairs of distinct entities were not tried because their tokens lie further
            apart than a window of `max_length` holds (only when the pairs were not given: every pair within reach
            is tried; a document's far pairs are counted, not listed).
        window: the window, in tokens, that the pairs were sought in (`max_length`, or `document_window`).
    """

    sequences: list[dict[str, list[int]]]
    pairs: list[list[tuple[int, int]]]
    skipped: list[tuple[int, int, UnencodablePairError]]
    beyond_reach: int = 0
    window: int = 0


class PairEncoding:
    """How the (subject, object) pairs of a text become model sequences: the one interface that the pipeline,
    training and evaluation use (`pair_encoding_for(config)` gives the model's). A new encoding is a subclass that
    says which inputs its sequences have and implements `encode_pairs`."""

    input_names: tuple[str, ...] = MODEL_INPUT_NAMES
    # Tokens a pair needs besides the text and the special tokens (the packed encoding's two object markers).
    marker_tokens = 0

    @classmethod
    def from_config(cls, config) -> PairEncoding:
        """The encoding a model with this `TypedBertConfig` reads."""
        return cls()

    def encode(
        self,
        tokenizer: PreTrainedTokenizerBase,
        text: str,
        entities: Sequence[Mapping[str, Any]],
        entity_types: Sequence[str],
        max_length: int | None = None,
        pairs: Sequence[tuple[int, int]] | None = None,
        names: Sequence[str] | None = None,
        document_window: int | None = None,
    ) -> EncodedPairs:
        """The sequences of `pairs` of a text's entities (`{"start", "end", "type"}` spans, which may overlap; the
        first of a pair is the subject); `names` are what errors call the entities; `max_length` as for
        `encode_relation`. By default every ordered pair of distinct entities whose tokens one window of `max_length`
        holds (`pairs_within_reach`); the others are counted in `beyond_reach`. A text longer than `max_length` (a
        document) is read in windows of `document_window` tokens when that is given and smaller. A bad entity raises
        a `ValueError` naming it; a pair that cannot be encoded is `skipped`."""
        encoded = encode_text(tokenizer, text, entities, entity_types, names)
        limit = tokenizer.model_max_length if max_length is None else max_length
        if document_window and len(encoded.encoding["input_ids"]) > limit:
            limit = min(limit, document_window)
        if pairs is not None:
            return replace(self.encode_pairs(tokenizer, encoded, limit, pairs), window=limit)
        reach = limit - tokenizer.num_special_tokens_to_add() - self.marker_tokens
        pairs = pairs_within_reach(encoded.tokens, reach)
        beyond = len(entities) * (len(entities) - 1) - len(pairs)
        return replace(self.encode_pairs(tokenizer, encoded, limit, pairs), beyond_reach=beyond, window=limit)

    def encode_pairs(
        self, tokenizer: PreTrainedTokenizerBase, text: EncodedText, limit: int, pairs: Sequence[tuple[int, int]]
    ) -> EncodedPairs:
        """The sequences of the given `pairs` of `text`, at most `limit` tokens each (each pair tried; those no
        window holds are `skipped`)."""
        raise NotImplementedError

    def placeholder(self, tokenizer: PreTrainedTokenizerBase) -> dict[str, list[int]]:
        """The inputs of an empty sequence with no pair (never run; it lets a text without pairs ride in a batch)."""
        encoding = tokenizer("", return_token_type_ids=True)
        zeros = [0] * len(encoding["input_ids"])
        return {name: list(encoding[name]) if name in encoding else zeros for name in self.input_names}


class PerPairEncoding(PairEncoding):
    """One sequence per pair (`pair_encoding="per_pair"`): the text with the subject's and the object's tokens
    typed, cut to a window around both; with typed entity markers in the text for the marker input modes
    (`entity_markers`, `add_typed_entity_markers`)."""

    def __init__(self, entity_markers: bool = False) -> None:
        self.entity_markers = entity_markers

    @classmethod
    def from_config(cls, config) -> PerPairEncoding:
        return cls(config.entity_markers)

    def encode_pairs(self, tokenizer, text, limit, pairs) -> EncodedPairs:
        sequences, kept, skipped = [], [], []
        for i, j in pairs:
            try:
                sequences.append(self._pair_features(tokenizer, text, i, j, limit))
            except UnencodablePairError as error:
                skipped.append((i, j, error))
                continue
            kept.append([(i, j)])
        return EncodedPairs(sequences, kept, skipped)

    def _pair_features(self, tokenizer, text: EncodedText, i: int, j: int, limit: int) -> dict[str, list[int]]:
        """The inputs of the pair of entities `i` (subject) and `j` (object) of `text`."""
        check_disjoint(text.entities[i], text.entities[j])
        if self.entity_markers:  # the spans were checked on the text as given; the model reads the marked text
            marked, subject, obj = add_typed_entity_markers(text.text, text.entities[i], text.entities[j])
            text, i, j = encode_text(tokenizer, marked, [subject, obj], text.entity_types, ["subject", "object"]), 0, 1
        return pair_features(text.encoding, text.tokens[i], text.tokens[j], text.type_ids[i], text.type_ids[j], limit)


class SubjectPackedPairs(PairEncoding):
    """One sequence per subject with its objects packed (`pair_encoding="per_subject"`, PL-Marker's subject-oriented
    packing).

    The text is encoded once per subject, as a per-pair sequence is, except that every entity's tokens carry its type
    and only the subject's tokens a role. Each candidate object is appended as two marker tokens (the mask token) with
    the object's type, the object role and the position ids of the object's first and last token. Text tokens attend
    only to text tokens, so the text is the same whichever objects share the sequence; an object's two markers attend
    to the text and to each other, never to another object's markers (`marker_groups`). A sequence holds at most
    `objects_per_sequence` objects. A pair is classified when one window of `max_length` tokens holds both entities
    and the object's markers, as for one sequence per pair; the others are skipped. A text that one window holds is
    read whole, each sequence at most `max_length`; in a longer text (a document) a subject's objects share its
    sequences up to the model's own limit (`sequence_limit`, else the tokenizer's), so that the subject is read once
    with all its objects within reach on both sides: the text is cut to the span of the subject and its objects (at
    least `max_length` tokens, context around them).
    The sequences hold `PACKED_INPUT_NAMES`; `position_ids` count from 0.
    """

    input_names = PACKED_INPUT_NAMES
    marker_tokens = 2

    def __init__(
        self, objects_per_sequence: int = DEFAULT_OBJECTS_PER_SEQUENCE, sequence_limit: int | None = None
    ) -> None:
        if not isinstance(objects_per_sequence, int) or objects_per_sequence < 1:
            raise ValueError(f"objects_per_sequence={objects_per_sequence!r} must be a positive int.")
        self.objects_per_sequence, self.sequence_limit = objects_per_sequence, sequence_limit

    @classmethod
    def from_config(cls, config) -> SubjectPackedPairs:
        """The packing of a model with this `TypedBertConfig`: its sequences at most the position table's limit."""
        return cls(sequence_limit=config.max_sequence_length)

    def encode_pairs(self, tokenizer, text, limit, pairs) -> EncodedPairs:
        objects_of: dict[int, list[int]] = {}
        skipped = []
        for i, j in pairs:
            try:
                check_disjoint(text.entities[i], text.entities[j])  # a pair of one entity with itself overlaps too
                if set(text.tokens[i]) & set(text.tokens[j]):
                    raise EntityOverlapError(f"entities {i} and {j} share a token.")
            except EntityOverlapError as error:
                skipped.append((i, j, error))
                continue
            objects_of.setdefault(i, []).append(j)
        cap = limit  # a text that one window holds is read as before; a longer one, a subject's whole reach at once
        if len(text.encoding["input_ids"]) > limit:
            cap = max(limit, min(tokenizer.model_max_length, self.sequence_limit or tokenizer.model_max_length))
        packing = _SubjectPacking(text, limit, cap, _marker_token_id(tokenizer))
        sequences, kept = [], []
        for i, objects in objects_of.items():
            for chunk in packing.chunks(i, objects, self.objects_per_sequence, skipped):
                sequences.append(packing.features(i, chunk))
                kept.append([(i, j) for j in chunk])
        return EncodedPairs(sequences, kept, skipped)

    def placeholder(self, tokenizer: PreTrainedTokenizerBase) -> dict[str, list[int]]:
        return super().placeholder(tokenizer) | {"object_positions": [0]}  # one (never read) object slot


def _marker_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The word id of the object markers: the mask token where the tokenizer has one, else the unknown token."""
    token_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
    if token_id is None:
        raise ValueError(f"{type(tokenizer).__name__} has neither a mask nor an unknown token for the object markers.")
    return token_id


class _SubjectPacking:
    """The subject-packed sequences of one encoded text (`SubjectPackedPairs`): pairs within a window of `limit`
    tokens, sequences of at most `cap`."""

    def __init__(self, text: EncodedText, limit: int, cap: int, marker_id: int) -> None:
        # The encoding's lists, read once rather than through a `BatchEncoding` lookup per token (a Python call each).
        self.input_ids, self.token_type_ids = text.encoding["input_ids"], text.encoding["token_type_ids"]
        self.tokens, self.type_ids = text.tokens, text.type_ids
        self.limit, self.cap, self.marker_id = limit, cap, marker_id
        self.special_tokens = sum(text.encoding["special_tokens_mask"])
        self.content = _content_bounds(text.encoding["special_tokens_mask"])
        self.text_type_ids = [0] * len(self.input_ids)  # every entity's type on its tokens
        for index in sorted(range(len(text.tokens)), key=lambda i: -len(text.tokens[i])):  # a nested entity's wins
            for position in text.tokens[index]:
                self.text_type_ids[position] = text.type_ids[index]

    def chunks(self, subject: int, objects: list[int], per_sequence: int, skipped: list) -> list[list[int]]:
        """The subject's objects within reach, in text order, in chunks that fill a sequence while it holds at most
        `per_sequence` of them and `cap` tokens (their markers included); an object that no window of `limit` holds
        with the subject is added to `skipped`."""
        chunks, chunk = [], []
        for j in sorted(objects, key=lambda index: self.tokens[index][0]):
            if self._text_tokens(subject, [j]) + 2 > self.limit:
                skipped.append((subject, j, EntitiesTooFarApartError(
                    f"entities {subject} and {j} lie further apart than max_length={self.limit} allows, so no window "
                    "holds both."
                )))  # fmt: skip
            elif len(chunk) < per_sequence and self._text_tokens(subject, [*chunk, j]) + 2 * len(chunk) + 2 <= self.cap:
                chunk.append(j)
            else:
                chunks.append(chunk)
                chunk = [j]
        return [*chunks, chunk] if chunk else chunks

    def _text_tokens(self, subject: int, objects: list[int]) -> int:
        """The text tokens (special tokens included) a sequence of the subject and `objects` needs: the whole text,
        or the span from the first to the last of their tokens."""
        positions = [p for index in (subject, *objects) for p in (self.tokens[index][0], self.tokens[index][-1])]
        return min(len(self.input_ids), max(positions) - min(positions) + 1 + self.special_tokens)

    def features(self, subject: int, objects: list[int]) -> dict[str, list[int]]:
        """The text (cut to a window around the subject and `objects` when needed) and two markers per object."""
        length, subject_positions = len(self.input_ids), set(self.tokens[subject])
        keep: Sequence[int] = range(length)
        budget = max(self.limit - 2 * len(objects), self._text_tokens(subject, objects))
        if length > budget:  # a window around the entities, found from their positions alone (documents are long)
            positions = [position for index in (subject, *objects) for position in self.tokens[index]]
            keep = _window(self.content, length, min(positions), max(positions), budget)
        features = {
            "input_ids": [self.input_ids[p] for p in keep],
            "attention_mask": [1] * len(keep),
            "token_type_ids": [self.token_type_ids[p] for p in keep],
            "entity_type_ids": [self.text_type_ids[p] for p in keep],
            "entity_role_ids": [SUBJECT_ROLE if p in subject_positions else 0 for p in keep],
            "position_ids": list(range(len(keep))),
            "marker_groups": [0] * len(keep),
            "object_positions": [],
        }
        index_of = {position: index for index, position in enumerate(keep)}
        for group, j in enumerate(objects, start=1):
            features["object_positions"].append(len(features["input_ids"]))
            for position in (self.tokens[j][0], self.tokens[j][-1]):
                for name, value in (
                    ("input_ids", self.marker_id), ("attention_mask", 1), ("token_type_ids", 0),
                    ("entity_type_ids", self.type_ids[j]), ("entity_role_ids", OBJECT_ROLE),
                    ("position_ids", index_of[position]), ("marker_groups", group),
                ):  # fmt: skip
                    features[name].append(value)
        return features


def pair_logits(logits: torch.Tensor) -> torch.Tensor:
    """A relation model's logits as one row per pair of each sequence, `(batch, pairs, num_labels)`, whichever encoding
    it reads (one pair per sequence gives `(batch, num_labels)`)."""
    return logits if logits.dim() == 3 else logits.unsqueeze(1)


def pair_encoding_for(config) -> PairEncoding:
    """The pair encoding a model reads, from its `TypedBertConfig` (`config.pair_encoding`)."""
    return {"per_pair": PerPairEncoding, "per_subject": SubjectPackedPairs}[config.pair_encoding].from_config(config)


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
