"""Text + typed entity spans → TypedBert inputs. Uploaded to the Hub with the model; imports only torch, transformers
and `configuration_typed_bert`.

An entity is a character span of a text, `{"start": int, "end": int, "type": str}` (end exclusive). A token belongs
to it when their character offsets overlap: its `entity_type_ids` entry is the index of the type in `entity_types`,
its `entity_role_ids` entry 1 (subject) or 2 (object); every other token gets 0 for both.
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
# A subject-packed sequence's inputs (`SubjectPackedPairs`): the five above, each token's position (object markers
# take their object's first and last token's), its object marker group (0: text) and each object's start marker.
PACKED_INPUT_NAMES = (*MODEL_INPUT_NAMES, "position_ids", "marker_groups", "object_positions")
# PL-Marker packs 16-40 objects per sequence; texts with more candidate objects per subject take several sequences.
DEFAULT_OBJECTS_PER_SEQUENCE = 32
_WORDS = re.compile(r"\w+|[^\w\s]")  # BERT's pre-tokenization: runs of word characters, single punctuation marks
# Zhou & Chen (2021), typed entity markers in punctuation form: "@ * person * Bill @" and "# ^ org ^ Microsoft #".
SUBJECT_MARKERS = ("@", "*")
OBJECT_MARKERS = ("#", "^")


class UnencodablePairError(ValueError):
    """A well-formed pair that the model cannot read (training skips it, evaluation scores it `no_relation`)."""

    reason = "unencodable"


class EntityOverlapError(UnencodablePairError):
    """The subject and object overlap ("the [[BERT] encoder]") or share a token: every token has one role."""

    reason = "overlapping"


class EntitiesTooFarApartError(UnencodablePairError):
    """The subject and object are further apart than `max_length` tokens: no window holds both."""

    reason = "too_far_apart"


def check_span(name: str, span: Any, text: str, entity_types: Sequence[str] | None = None) -> tuple[int, int, str]:
    """`(start, end, type)` of an entity span of `text`, or a `ValueError` naming `name` and what is wrong (integer
    `start` < `end` inside the text; a type of `entity_types[1:]` when given, else any non-empty string)."""
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
    """The shape of the word (as BERT pre-tokenizes: `_WORDS`) that each token comes from, one id per `(start, end)`
    character offset (0 for special tokens and padding). Only the words the offsets reach are read."""
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
    """Every run of up to `max_width` words of one tokenized sequence of `text` (a window of a long one), from its
    tokens' `word_ids` and `(start, end)` character `offsets` as a fast tokenizer gives them."""
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
    """The span inputs of a batch of sequences (one `SpanCandidates` each), `(n_spans,)` each: `span_rows` (the
    sequence), `span_starts` and `span_ends` (first and last token) and `span_widths` (words minus one)."""
    columns = {"span_rows": [], "span_starts": [], "span_ends": [], "span_widths": []}
    for row, candidate in enumerate(candidates):
        columns["span_rows"] += [row] * len(candidate.first)
        columns["span_starts"] += candidate.first
        columns["span_ends"] += candidate.last
        columns["span_widths"] += candidate.widths
    return {name: torch.tensor(values, dtype=torch.long) for name, values in columns.items()}


def max_sequence_length(tokenizer: PreTrainedTokenizerBase, model_limit: int, max_length: int | None = None) -> int:
    """The most tokens a sequence may have, special tokens included: `max_length` (from 3 to `model_limit`, the
    config's `max_sequence_length`, else a `ValueError`), by default `model_max_length` within `model_limit`."""
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
    """The five model inputs (`MODEL_INPUT_NAMES`) of one relation example, cut to a window of `max_length` tokens
    (default `model_max_length`) around both entities; `entity_markers` first inserts typed entity markers (the
    marker input modes). A bad span is a `ValueError` naming it; a pair that cannot be read raises the
    `UnencodablePairError` that says why."""
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
    """For each `(name, start, end)` span, the positions of the tokens whose character offsets overlap it (a binary
    search per span); a `ValueError` names a span that covers no token."""
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
    """Positions to keep of a sequence of `length` whose text runs from `content[0]` to `content[1]`: the special
    tokens around it, and `limit` minus those around the tokens `first` to `last`."""
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
    """The text and its entities (spans, which may overlap) tokenized once; a `ValueError` names a bad entity (as
    `names[i]`, default `entity i`)."""
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
    """The ordered pairs `(i, j)` of distinct entities whose token positions (`tokens[i]`, ascending) lie within
    `reach` consecutive tokens together: the pairs some window holds (found by bisection, not all pairs)."""
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
        pairs: for each sequence, the `(subject, object)` pairs of its rows of logits (`pair_logits`).
        skipped: `(i, j, error)` for each pair no sequence holds (`UnencodablePairError`).
        beyond_reach: the ordered pairs not tried because no window holds them (counted, not listed).
        window: the window, in tokens, that the pairs were sought in (`max_length`, or `document_window`).
    """

    sequences: list[dict[str, list[int]]]
    pairs: list[list[tuple[int, int]]]
    skipped: list[tuple[int, int, UnencodablePairError]]
    beyond_reach: int = 0
    window: int = 0


class PairEncoding:
    """How the (subject, object) pairs of a text become model sequences: the one interface of the pipeline, training
    and evaluation (`pair_encoding_for(config)`). An encoding names its inputs and implements `encode_pairs`."""

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
        """The sequences of `pairs` (subject, object) of a text's entities, by default every ordered pair that one
        window of `max_length` tokens holds (`pairs_within_reach`); a document (a text longer than `max_length`) is
        read in windows of `document_window` tokens when given and smaller. `names` are what errors call the
        entities. A bad entity raises a `ValueError`; a pair that cannot be encoded is `skipped`."""
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
    """One sequence per pair (`pair_encoding="per_pair"`): the text with the subject's and object's tokens typed, cut
    to a window around both; for the marker input modes with typed entity markers in the text."""

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
    """One sequence per subject with its objects packed (`pair_encoding="per_subject"`, PL-Marker's packing).

    Every entity's tokens carry its type, only the subject's a role. Each object is appended as two marker tokens
    (the mask token) with its type, the object role and the positions of its first and last token. Text tokens attend
    to text tokens only, markers to the text and their own pair (`marker_groups`). A sequence holds at most
    `objects_per_sequence` objects; a pair is classified when one window of `max_length` tokens holds both entities.
    In a document a subject's objects share sequences up to `sequence_limit` tokens (the text cut around them).
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
    """The subject-packed sequences of one encoded text: pairs within `limit` tokens, sequences of at most `cap`."""

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
        """The subject's objects in text order, in chunks of at most `per_sequence` objects and `cap` tokens; an object
        that no window of `limit` holds with the subject is added to `skipped`."""
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
        """The text tokens (special tokens included) that the subject and `objects` need together."""
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
    """A relation model's logits as `(batch, pairs, num_labels)`, whichever encoding it reads."""
    return logits if logits.dim() == 3 else logits.unsqueeze(1)


def pair_encoding_for(config) -> PairEncoding:
    """The pair encoding a model reads, from its `TypedBertConfig` (`config.pair_encoding`)."""
    return {"per_pair": PerPairEncoding, "per_subject": SubjectPackedPairs}[config.pair_encoding].from_config(config)


def add_typed_entity_markers(
    text: str,
    subject: Mapping[str, Any],
    object: Mapping[str, Any],  # noqa: A002
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Zhou & Chen's typed entity markers around both entities: "Bill founded Microsoft" → "@ * peop * Bill @ founded
    # ^ org ^ Microsoft #"; the new text and spans (markers included: the first subject token is "@")."""
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
