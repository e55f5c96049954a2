"""The relation-classification pipeline: single pairs, every relation of a text in one call, batching, bad input."""

from __future__ import annotations

import pytest
from transformers import pipeline

from tests.conftest import save_tiny_classifier

pytestmark = pytest.mark.remote_code

TEXT = "Bill Gates founded Microsoft with Paul Allen in Albuquerque."
ENTITIES = [
    {"start": 0, "end": 10, "type": "PER", "id": "gates"},
    {"start": 19, "end": 28, "type": "ORG", "id": "msft"},
    {"start": 34, "end": 44, "type": "PER", "id": "allen"},
    {"start": 48, "end": 59, "type": "ORG"},
]


@pytest.fixture(scope="module", params=["typed-embeddings", "typed-markers", "typed-embeddings:per_subject"])
def classify(request, tmp_path_factory):
    """The pipeline of a tiny model of each input mode, and of one trained subject-packed (`per_subject`)."""
    input_mode, _, pair_encoding = request.param.partition(":")
    folder = tmp_path_factory.mktemp(input_mode)
    save_tiny_classifier(folder, input_mode=input_mode, pair_encoding=pair_encoding or "per_pair")
    return pipeline("relation-classification", model=str(folder), trust_remote_code=True)


def single_pair_results(classify, entities, **kwargs):
    """What the one-pair call gives for every ordered pair of distinct entities, one call per pair."""
    return {
        (i, j): classify({"text": TEXT, "subject": subject, "object": obj}, **kwargs)
        for i, subject in enumerate(entities)
        for j, obj in enumerate(entities)
        if i != j
    }


def test_every_pair_of_a_text_equals_its_single_pair_call(classify):
    if classify.model.config.pair_encoding == "per_subject":
        pytest.skip("a packed text carries every entity's type: tests/test_subject_packing.py checks its pairs")
    relations = classify({"text": TEXT, "entities": ENTITIES}, keep_no_relation=True)
    singles = single_pair_results(classify, ENTITIES)
    assert len(relations) == 12
    for relation in relations:
        i, j = ENTITIES.index(relation["subject"]), ENTITIES.index(relation["object"])
        assert "id" in relation["subject"] or i == 3  # the input dicts, ids kept
        assert relation["label"] == singles[i, j]["label"]
        assert relation["score"] == pytest.approx(singles[i, j]["score"], abs=1e-5)
    assert [(ENTITIES.index(r["subject"]), ENTITIES.index(r["object"])) for r in relations] == sorted(singles)


def test_no_relation_is_left_out_and_top_k_and_threshold_filter(classify):
    everything = classify({"text": TEXT, "entities": ENTITIES}, keep_no_relation=True, top_k=3)
    assert len(everything) == 36
    default = classify({"text": TEXT, "entities": ENTITIES})
    best = classify({"text": TEXT, "entities": ENTITIES}, keep_no_relation=True)
    assert default == [relation for relation in best if relation["label"] != "no_relation"]
    threshold = sorted(relation["score"] for relation in everything)[18]
    filtered = classify({"text": TEXT, "entities": ENTITIES}, top_k=3, threshold=threshold)
    best_label = {(r["subject"]["start"], r["object"]["start"]): r["label"] for r in reversed(everything)}
    expected = [
        r
        for r in everything
        if best_label[r["subject"]["start"], r["object"]["start"]] != "no_relation"
        and r["label"] != "no_relation"
        and r["score"] >= threshold
    ]
    assert [r["label"] for r in filtered] == [r["label"] for r in expected]
    assert [r["score"] for r in filtered] == pytest.approx([r["score"] for r in expected])
    pair = {"text": TEXT, "subject": ENTITIES[0], "object": ENTITIES[1]}
    ranked = classify(pair, top_k=3)
    assert classify(pair, top_k=3, threshold=ranked[1]["score"]) == ranked[:2]
    assert classify(pair, threshold=1.0) == []


def test_overlapping_entities_are_skipped_and_reported(classify):
    nested = [*ENTITIES[:2], {"start": 5, "end": 10, "type": "PER", "id": "gates-surname"}]
    relations = classify({"text": TEXT, "entities": nested}, keep_no_relation=True)
    skipped = [r for r in relations if "skipped" in r]
    assert [(r["subject"]["id"], r["object"]["id"]) for r in skipped] == [
        ("gates", "gates-surname"),
        ("gates-surname", "gates"),
    ]
    assert all(r["label"] is None and "overlap" in r["skipped"] for r in skipped)
    assert len(relations) == 6


def test_fewer_than_two_entities_give_no_relations_and_lists_mix_both_forms(classify):
    pair = {"text": TEXT, "subject": ENTITIES[0], "object": ENTITIES[1]}
    inputs = [pair, *({"text": TEXT, "entities": entities} for entities in ([], ENTITIES[:1], ENTITIES))]
    for batch_size in (1, 5):
        outputs = classify(inputs, batch_size=batch_size)
        assert outputs[0]["label"] == classify(pair)["label"]
        assert outputs[1] == [] and outputs[2] == []
        assert [r["label"] for r in outputs[3]] == [r["label"] for r in classify({"text": TEXT, "entities": ENTITIES})]


def test_pairs_run_in_batches(classify, monkeypatch):
    rows = []
    packed = classify.model.config.pair_encoding == "per_subject"
    model = classify.model
    forward = model.forward

    def counting_forward(*args, **kwargs):
        rows.append(len(kwargs["input_ids"]))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counting_forward)
    classify({"text": TEXT, "entities": ENTITIES})
    # one forward pass of all 12 pairs at the default batch size: 12 sequences, or 4 (one per subject) packed
    assert rows == ([4] if packed else [12])
    rows.clear()
    classify({"text": TEXT, "entities": ENTITIES}, batch_size=3 if packed else 5)
    assert rows == ([3, 1] if packed else [5, 5, 2])


@pytest.mark.parametrize(
    ("entities", "message"),
    [
        ([ENTITIES[0], {"start": 19, "end": 28, "type": "CITY"}], r"entity 1 type 'CITY' is not a known entity type"),
        ([ENTITIES[0], ENTITIES[1], {"start": 50, "end": 90, "type": "ORG"}], r"entity 2 span \[50, 90\) lies outside"),
        ([ENTITIES[0], {"start": 10, "end": 11, "type": "ORG"}], r"entity 1 span \[10, 11\) = ' ' covers no token"),
        ([ENTITIES[0], {"start": 19, "type": "ORG"}], r"entity 1 must be a mapping with 'start', 'end' and 'type'"),
        ("Bill Gates", r"entities must be a list"),
    ],
)
def test_bad_entities_name_their_index(classify, entities, message):
    with pytest.raises(ValueError, match=message):
        classify({"text": TEXT, "entities": entities})


def test_neither_form_is_refused(classify):
    with pytest.raises(ValueError, match=r"Expected a dict with 'text', 'subject' and 'object' \(one pair\) or"):
        classify({"text": TEXT, "subject": ENTITIES[0]})


def test_single_pair_output_is_unchanged(classify):
    pair = {"text": TEXT, "subject": ENTITIES[0], "object": ENTITIES[1]}
    best = classify(pair)
    assert set(best) == {"label", "score"}
    ranked = classify(pair, top_k=len(classify.model.config.id2label))
    assert ranked[0] == best and sum(r["score"] for r in ranked) == pytest.approx(1.0, abs=1e-5)


def test_a_span_covering_no_token_is_refused_in_every_input_mode(classify):
    """Marker modes check the spans on the text as given, before the markers surround them."""
    with pytest.raises(ValueError, match=r"object span \[10, 11\) = ' ' covers no token"):
        classify({"text": TEXT, "subject": ENTITIES[0], "object": {"start": 10, "end": 11, "type": "ORG"}})


def test_max_length_above_the_position_table_is_refused(classify):
    limit = classify.model.config.max_sequence_length
    with pytest.raises(ValueError, match=rf"max_length={limit + 1} must be an int from 3 to {limit}"):
        classify({"text": TEXT, "subject": ENTITIES[0], "object": ENTITIES[1]}, max_length=limit + 1)
    assert classify({"text": TEXT, "subject": ENTITIES[0], "object": ENTITIES[1]}, max_length=limit)["label"]


def test_pairs_too_far_apart_are_refused_alone_and_skipped_in_entity_lists(classify):
    pair = {"text": TEXT, "subject": ENTITIES[0], "object": ENTITIES[3]}
    with pytest.raises(ValueError, match=r"no window holds both") as raised:
        classify(pair, max_length=8)
    assert "raise max_length" not in str(raised.value)
    relations = classify({"text": TEXT, "entities": ENTITIES}, max_length=8, keep_no_relation=True)
    skipped = [r for r in relations if r.get("skipped")]
    assert skipped and all(r["label"] is None and "no window holds both" in r["skipped"] for r in skipped)
    assert len(relations) == 12


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": -1}, r"top_k=-1 must be a positive int"),
        ({"top_k": 0}, r"top_k=0 must be a positive int"),
        ({"top_k": 1.5}, r"top_k=1.5 must be a positive int"),
        ({"threshold": -0.1}, r"threshold=-0.1 must be a number from 0 to 1"),
        ({"threshold": 2.5}, r"threshold=2.5 must be a number from 0 to 1"),
    ],
)
def test_bad_top_k_and_threshold_are_refused(classify, kwargs, message):
    with pytest.raises(ValueError, match=message):
        classify({"text": TEXT, "subject": ENTITIES[0], "object": ENTITIES[1]}, **kwargs)


def test_a_dict_with_a_pair_and_entities_is_refused_as_ambiguous(classify):
    with pytest.raises(ValueError, match=r"\(all relations of a text\), not both"):
        classify({"text": TEXT, "subject": ENTITIES[0], "object": ENTITIES[1], "entities": ENTITIES})


def test_a_list_runs_in_groups_of_similar_length_and_answers_in_input_order(classify, monkeypatch):
    """Texts of a list are batched with texts of about their length (`length_groups`), each batch padding little,
    and the answers come back in the input's order, equal to one call per input."""
    from pipeline_typed_bert import length_groups

    assert length_groups([30, 5, 6, 100, 31, 40]) == [[1, 2], [0, 4], [5], [3]]
    long_text = TEXT + " Later, " + TEXT.lower() + " It grew in Seattle and in Redmond, Washington."
    inputs = [{"text": long_text, "entities": ENTITIES}, {"text": TEXT, "entities": ENTITIES[:2]},
              {"text": TEXT, "entities": ENTITIES}]  # fmt: skip
    lengths = []
    forward = classify.model.forward

    def recording_forward(*args, **kwargs):
        lengths.append(kwargs["attention_mask"].sum(-1).tolist())
        return forward(*args, **kwargs)

    monkeypatch.setattr(classify.model, "forward", recording_forward)
    together = classify(inputs, keep_no_relation=True, batch_size=64)
    assert together == [classify(item, keep_no_relation=True) for item in inputs]
    assert max(lengths[0]) < len(classify.tokenizer(long_text)["input_ids"])  # the long text is not padded to
