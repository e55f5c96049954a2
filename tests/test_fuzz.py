"""Fuzzing with hypothesis: random unicode text and spans through the encoder, random id tensors through the model.
The encoder raises nothing but the documented ValueErrors and encodes every valid pair; the model reads every valid id
tensor."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encoding_typed_bert import encode_relation
from modeling_typed_bert import TypedBertForSequenceClassification
from tests.conftest import minilm_path, tiny_config

TYPES = ["O", "PER", "ORG"]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TypedBertForSequenceClassification(tiny_config(entity_types=TYPES)).eval()


span_values = st.one_of(st.integers(-5, 80), st.just(0))
spans = st.fixed_dictionaries(
    {"start": span_values, "end": span_values, "type": st.sampled_from(["PER", "ORG", "O", "CITY", ""])}
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(min_size=0, max_size=60), subject=spans, obj=spans, max_length=st.sampled_from([None, 4, 8, 64]))
def test_encoder_raises_only_value_errors(tokenizer, text, subject, obj, max_length):
    try:
        features = encode_relation(tokenizer, text, subject, obj, TYPES, max_length)
    except ValueError:
        return
    assert len({len(v) for v in features.values()}) == 1
    assert 1 in features["entity_role_ids"] and 2 in features["entity_role_ids"]
    if max_length is not None:
        assert len(features["input_ids"]) <= max_length


word = st.text(alphabet="abcXYZ019éßÅ-'", min_size=1, max_size=9).filter(lambda w: any(c.isalnum() for c in w))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(word, min_size=2, max_size=14), data=st.data())
def test_encoder_encodes_every_valid_pair(tokenizer, words, data):
    """The other side of the test above: two distinct words of a text (within the tokenizer's limit) as typed spans
    always encode, each entity's tokens carry its role and type, and nothing else does."""
    starts = [sum(len(word) + 1 for word in words[:index]) for index in range(len(words))]
    i, j = data.draw(st.lists(st.integers(0, len(words) - 1), min_size=2, max_size=2, unique=True))
    subject, obj = ({"start": starts[k], "end": starts[k] + len(words[k]),
                     "type": data.draw(st.sampled_from(TYPES[1:]))} for k in (i, j))  # fmt: skip
    features = encode_relation(tokenizer, " ".join(words), subject, obj, TYPES)
    roles, types = features["entity_role_ids"], features["entity_type_ids"]
    assert set(roles) == {0, 1, 2}  # [CLS] and [SEP] are outside both entities
    assert {types[p] for p, role in enumerate(roles) if role == 1} == {TYPES.index(subject["type"])}
    assert {types[p] for p, role in enumerate(roles) if role == 2} == {TYPES.index(obj["type"])}
    assert all(types[p] == 0 for p, role in enumerate(roles) if role == 0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batch=st.integers(1, 3),
    length=st.integers(1, 10),
    shape_delta=st.sampled_from([0, 0, 0, 1, -1]),
    seed=st.integers(0, 2**16),
)
def test_model_reads_any_valid_ids_and_refuses_a_shape_mismatch(model, batch, length, shape_delta, seed):
    """Ids in range (the encoding makes them so) give finite logits; role ids of another length, a ValueError."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, 99, (batch, length), generator=generator)
    type_ids = torch.randint(0, len(TYPES), (batch, length), generator=generator)
    role_ids = torch.randint(0, 3, (batch, max(1, length + shape_delta)), generator=generator)
    if role_ids.shape != input_ids.shape:
        with pytest.raises(ValueError, match="entity_role_ids has shape"):
            model(input_ids=input_ids, entity_type_ids=type_ids, entity_role_ids=role_ids)
        return
    logits = model(input_ids=input_ids, entity_type_ids=type_ids, entity_role_ids=role_ids).logits
    assert logits.shape == (batch, 3) and torch.isfinite(logits).all()
