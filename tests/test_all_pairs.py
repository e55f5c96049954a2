"""pair_encoding="all_pairs": one encoder pass for every pair of a text. A pair's logits do not depend on the other
pairs of its sequence, the text's hidden states are those of the text alone, on eager and SDPA attention and on
every supported transformers; the pipeline, the collator and bad input."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from transformers import AutoTokenizer, pipeline

from encoding_typed_bert import ALL_PAIRS_INPUT_NAMES, TypedBertDataCollator, encode_all_pairs
from modeling_typed_bert import TypedBertForSequenceClassification, TypedBertModel
from tests.conftest import minilm_path, save_tiny_classifier, tiny_config

pytestmark = pytest.mark.remote_code

TYPES = ["O", "PER", "ORG", "LOC"]
TEXT = "Bill Gates and Paul Allen founded Microsoft in Albuquerque before moving to Redmond near Seattle."
NAMES = ["Bill Gates", "Paul Allen", "Microsoft", "Albuquerque", "Redmond", "Seattle"]
KINDS = ["PER", "PER", "ORG", "LOC", "LOC", "LOC"]
ENTITIES = [
    {"start": TEXT.index(name), "end": TEXT.index(name) + len(name), "type": kind}
    for name, kind in zip(NAMES, KINDS, strict=True)
]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(minilm_path())


def model_for(attention: str, **overrides) -> TypedBertForSequenceClassification:
    torch.manual_seed(0)
    config = tiny_config(vocab_size=30522, entity_types=TYPES, pair_encoding="all_pairs", max_position_embeddings=128)
    config._attn_implementation = attention
    for key, value in overrides.items():
        setattr(config, key, value)
    model = TypedBertForSequenceClassification(config).eval()
    with torch.no_grad():
        for table in model.bert.embeddings.entity_tables():
            table.weight[1:].normal_()
    return model


def run(model, features_list):
    """Logits `(rows, pairs, labels)` of all-pairs sequences, padded into one batch by the collator."""
    batch = TypedBertDataCollator(AutoTokenizer.from_pretrained(minilm_path()))(features_list)
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_a_pairs_logits_are_the_same_alone_or_with_thirty_others(tokenizer, attention):
    model = model_for(attention)
    sequences, skipped = encode_all_pairs(tokenizer, TEXT, ENTITIES, TYPES)
    assert not skipped and len(sequences) == 1
    pairs, features = sequences[0]
    assert pairs == list(itertools.permutations(range(6), 2)) and len(pairs) == 30
    together = run(model, [features])[0]
    assert together.shape == (30, 3)
    for index, pair in enumerate(pairs):
        (alone,) = encode_all_pairs(tokenizer, TEXT, ENTITIES, TYPES, pairs=[pair])[0]
        assert torch.allclose(run(model, [alone[1]])[0, 0], together[index], atol=1e-5), pair
    # Padding and the other rows of a batch change nothing either.
    short = encode_all_pairs(tokenizer, TEXT, ENTITIES[:2], TYPES)[0][0][1]
    batched = run(model, [short, features])
    assert torch.allclose(batched[1], together, atol=1e-5)
    assert torch.allclose(batched[0, :2], run(model, [short])[0], atol=1e-5)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_the_text_cannot_see_the_pair_tokens(tokenizer, attention):
    torch.manual_seed(0)
    config = tiny_config(vocab_size=30522, entity_types=TYPES, pair_encoding="all_pairs", max_position_embeddings=128)
    config._attn_implementation = attention
    encoder = TypedBertModel(config).eval()
    (_, features), *_ = encode_all_pairs(tokenizer, TEXT, ENTITIES, TYPES)[0]
    text_length = features["pair_ids"].index(1)
    inputs = {name: torch.tensor([values]) for name, values in features.items()}
    text_only = {name: tensor[:, :text_length] for name, tensor in inputs.items()}
    with torch.no_grad():
        with_pairs = encoder(**inputs).last_hidden_state[:, :text_length]
        alone = encoder(**text_only).last_hidden_state
    assert (with_pairs - alone).abs().max() <= 1e-5


def test_pair_tokens_stand_for_their_entities(tokenizer):
    (pairs, features), *_ = encode_all_pairs(tokenizer, TEXT, ENTITIES, TYPES, pairs=[(0, 2), (2, 0)])[0]
    assert set(features) == set(ALL_PAIRS_INPUT_NAMES)
    text_length = features["pair_ids"].index(1)
    assert features["pair_ids"][text_length:] == [1, 1, 2, 2]
    assert features["entity_role_ids"][:text_length] == [0] * text_length
    assert features["entity_role_ids"][text_length:] == [1, 2, 1, 2]
    tokens = tokenizer.convert_ids_to_tokens(features["input_ids"])
    assert tokens[text_length:] == ["bill", "microsoft", "microsoft", "bill"]
    for position in range(text_length, text_length + 4):  # the position and type of the entity's first token
        twin = features["position_ids"][position]
        assert tokens[twin] == tokens[position]
        assert features["entity_type_ids"][position] == features["entity_type_ids"][twin] != 0
    # Every entity of the text is typed, not only those of the sequence's pairs.
    typed = {tokens[i] for i in range(text_length) if features["entity_type_ids"][i]}
    assert {"paul", "seattle", "##mond"} <= typed


def test_many_pairs_are_split_into_sequences_and_overlaps_skipped(tokenizer):
    nested = [*ENTITIES, {"start": 5, "end": 10, "type": "PER"}]  # "Gates" inside "Bill Gates"
    sequences, skipped = encode_all_pairs(tokenizer, TEXT, nested, TYPES, pairs_per_sequence=8)
    assert sorted((i, j) for i, j, _ in skipped) == [(0, 6), (6, 0)]
    assert [len(pairs) for pairs, _ in sequences] == [8] * 5  # 42 ordered pairs, 2 of them overlapping
    model = model_for("sdpa")
    one_sequence, _ = encode_all_pairs(tokenizer, TEXT, nested, TYPES, pairs_per_sequence=64)
    together = run(model, [one_sequence[0][1]])[0]
    split = torch.cat([run(model, [features])[0, : len(pairs)] for pairs, features in sequences])
    assert torch.allclose(split, together, atol=1e-5)


def test_a_long_text_is_windowed_and_far_apart_pairs_get_their_own_sequence(tokenizer):
    filler = " ".join(["word"] * 200)
    text = f"Alice met Bob. {filler} Carol met Dave."
    entities = [{"start": text.index(name), "end": text.index(name) + len(name), "type": "PER"}
                for name in ("Alice", "Bob", "Carol", "Dave")]  # fmt: skip
    sequences, skipped = encode_all_pairs(tokenizer, text, entities, TYPES, max_length=64)
    assert sorted(pair for pairs, _ in sequences for pair in pairs) == [(0, 1), (1, 0), (2, 3), (3, 2)]
    assert len(skipped) == 8 and all("more than the" in reason for *_, reason in skipped)
    assert all(features["position_ids"][-1] < 64 for _, features in sequences)


def test_an_all_pairs_model_needs_pair_ids(tokenizer):
    model = model_for("sdpa")
    inputs = {"input_ids": torch.tensor([[101, 2000, 102]]), "entity_role_ids": torch.tensor([[0, 1, 0]])}
    with pytest.raises(ValueError, match="trained with pair_encoding='all_pairs': pass pair_ids"):
        model(**inputs)


def test_the_pipeline_runs_all_pairs_models_in_one_pass_per_text(tmp_path, monkeypatch):
    folder = save_tiny_classifier(tmp_path / "model", entity_types=TYPES, pair_encoding="all_pairs")
    classify = pipeline("relation-classification", model=str(folder), trust_remote_code=True)
    rows = []
    forward = classify.model.forward
    monkeypatch.setattr(classify.model, "forward", lambda **kw: rows.append(kw["input_ids"].shape) or forward(**kw))
    relations = classify({"text": TEXT, "entities": ENTITIES}, keep_no_relation=True)
    assert len(relations) == 30 and len(rows) == 1 and rows[0][0] == 1  # one sequence, one forward pass
    one_by_one = classify({"text": TEXT, "entities": ENTITIES}, keep_no_relation=True, pairs_per_sequence=1)
    assert len(rows) == 2 and rows[1][0] == 30
    assert [r["label"] for r in one_by_one] == [r["label"] for r in relations]
    assert [r["score"] for r in one_by_one] == pytest.approx([r["score"] for r in relations], abs=1e-5)
    two = classify({"text": TEXT, "entities": ENTITIES[:2]}, keep_no_relation=True)
    single = classify({"text": TEXT, "subject": ENTITIES[0], "object": ENTITIES[1]})
    assert two[0]["label"] == single["label"] and two[0]["score"] == pytest.approx(single["score"], abs=1e-5)


def test_an_all_pairs_model_pushes_and_runs_from_the_hub(tmp_path, local_hub):
    from tests.conftest import hub_env, run_isolated
    from tests.test_hub import push

    folder = save_tiny_classifier(tmp_path / "model", entity_types=TYPES, pair_encoding="all_pairs")
    result = json.loads(push(folder, local_hub).stdout.strip().splitlines()[-1])
    assert result["max_abs_difference"] == 0.0  # verified through the downloaded repo's own code
    script = f"""
import json
from transformers import pipeline
classify = pipeline("relation-classification", model="org/typed-bert", trust_remote_code=True,
                    revision={result["commit"]!r})
relations = classify({{"text": {TEXT!r}, "entities": {ENTITIES!r}}}, keep_no_relation=True)
print(json.dumps({{"pairs": len(relations), "encoding": classify.model.config.pair_encoding}}))
"""
    env = {**hub_env(local_hub), "HF_HOME": str(tmp_path / "hf-home")}
    assert run_isolated(script, cwd=tmp_path, env=env) == {"pairs": 30, "encoding": "all_pairs"}
