"""Documents of any length: the entity model reads a long text in windows that overlap by `stride` tokens, an entity
seen in two windows is reported once, every pair of entities that one window of `max_length` holds is classified
(across sentences), and the pairs further apart are counted (raw text) or reported skipped (an entity list)."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, pipeline

from encoding_typed_bert import (
    EntitiesTooFarApartError,
    PerPairEncoding,
    SubjectPackedPairs,
    encode_text,
    pairs_within_reach,
)
from pipeline_typed_bert import load_entity_recognizer, recognized_entities
from tests.conftest import minilm_path, save_tiny_classifier
from tests.test_end_to_end import save_tiny_recognizer
from typed_bert.entities import bundle_entity_model

pytestmark = pytest.mark.remote_code

ENTITY_TYPES = ["O", "PER", "ORG"]
SENTENCE = "Bill Gates founded Microsoft in Albuquerque."
DOCUMENT = " ".join([SENTENCE] * 90)  # about 630 tokens: more than the 512 the entity model reads at once


def word_spans(text: str) -> list[tuple[int, int]]:
    """The words of `text` as BERT pre-tokenizes these ASCII texts (the tiny recognizer tags every word)."""
    return [match.span() for match in re.finditer(r"\w+|[^\w\s]", text)]


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    folder = save_tiny_classifier(tmp_path_factory.mktemp("relations"), ENTITY_TYPES)
    bundle_entity_model(folder, save_tiny_recognizer(tmp_path_factory.mktemp("entities")))
    return folder


@pytest.fixture(scope="module")
def classify(bundled):
    return pipeline("relation-classification", model=str(bundled), trust_remote_code=True)


def test_a_document_longer_than_the_entity_model_reads_gives_each_entity_once(classify):
    assert len(classify.tokenizer(DOCUMENT)["input_ids"]) > 512
    (entities,) = classify.recognize([DOCUMENT])
    assert [(entity["start"], entity["end"]) for entity in entities] == word_spans(DOCUMENT)
    assert all(entity["text"] == DOCUMENT[entity["start"] : entity["end"]] for entity in entities)


def test_a_document_in_one_call_classifies_the_pairs_within_a_document_window(tmp_path):
    """Without max_length, a text longer than the tokenizer's limit gets relation windows of DOCUMENT_MAX_LENGTH."""
    from pipeline_typed_bert import DOCUMENT_MAX_LENGTH

    folder = save_tiny_classifier(tmp_path / "relations", ENTITY_TYPES, max_position_embeddings=512)
    bundle_entity_model(folder, save_tiny_recognizer(tmp_path / "entities"))
    classify = pipeline("relation-classification", model=str(folder), trust_remote_code=True)
    text = " ".join(["Antidisestablishmentarianism"] * 100)  # 8 tokens a word: 100 entities, 800 tokens
    result = classify(text, keep_no_relation=True)
    entities, relations = result["entities"], result["relations"]
    assert len(entities) == 100 and len(relations) + result["pairs_beyond_reach"] == 100 * 99
    assert all(relation["label"] is not None for relation in relations)
    spans = [token_span(classify.tokenizer, text, entity) for entity in entities]
    index = {id(entity): i for i, entity in enumerate(entities)}
    distances = [max(spans[index[id(r["subject"])]][1], spans[index[id(r["object"])]][1])
                 - min(spans[index[id(r["subject"])]][0], spans[index[id(r["object"])]][0])
                 for r in relations]  # fmt: skip
    assert max(distances) < DOCUMENT_MAX_LENGTH - 4 <= max(distances) + 8  # within reach, and reaching that far


@pytest.mark.parametrize("stride", [0, 8, 20])
def test_small_windows_give_the_same_entities_whatever_the_overlap(classify, stride):
    result = classify(DOCUMENT[:600], max_length=32, stride=stride)
    assert [(entity["start"], entity["end"]) for entity in result["entities"]] == word_spans(DOCUMENT[:600])


def test_a_text_within_one_window_gives_what_the_entity_model_gives_without_windows(classify, bundled):
    recognizer = load_entity_recognizer(str(bundled / "entities"))
    assert classify(SENTENCE)["entities"] == recognized_entities([SENTENCE], [recognizer(SENTENCE)])[0]


def token_span(tokenizer, text: str, entity: dict) -> tuple[int, int]:
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    inside = [i for i, (start, end) in enumerate(offsets) if start < entity["end"] and end > entity["start"]]
    return inside[0], inside[-1]


def test_pairs_within_one_window_are_classified_across_sentences_and_the_others_counted(classify):
    text = DOCUMENT[:400]
    result = classify(text, max_length=32, stride=8, keep_no_relation=True)
    entities, relations = result["entities"], result["relations"]
    assert len(relations) + result["pairs_beyond_reach"] == len(entities) * (len(entities) - 1)
    assert result["pairs_beyond_reach"] > 0
    reach = 32 - 2 - classify.pair_encoding.marker_tokens  # the window less [CLS], [SEP] (and a packed object)
    spans = [token_span(classify.tokenizer, text, entity) for entity in entities]
    index = {id(entity): i for i, entity in enumerate(entities)}
    for relation in relations:
        (a, b), (c, d) = spans[index[id(relation["subject"])]], spans[index[id(relation["object"])]]
        assert max(b, d) - min(a, c) < reach
    crossing = [r for r in relations if text.count(".", r["subject"]["end"], r["object"]["start"])]
    assert crossing and all(r["label"] is not None for r in crossing)  # pairs across a sentence end are classified


def test_an_entity_list_reports_each_pair_beyond_reach_skipped(classify):
    text = DOCUMENT[:400]
    found = classify(text, max_length=32, stride=8)
    entities = [{key: entity[key] for key in ("start", "end", "type")} for entity in found["entities"]]
    relations = classify({"text": text, "entities": entities}, max_length=32, keep_no_relation=True)
    assert len(relations) == len(entities) * (len(entities) - 1)
    skipped = [relation for relation in relations if "max_length=32" in relation.get("skipped", "")]
    assert len(skipped) == found["pairs_beyond_reach"]


def test_a_list_and_a_generator_of_documents_give_the_same(classify):
    texts = [DOCUMENT[:300], SENTENCE, {"text": DOCUMENT[:500]}]
    as_list = classify(texts, max_length=48, stride=12, batch_size=4)
    assert list(classify((text for text in texts), max_length=48, stride=12, batch_size=4)) == as_list
    assert as_list[1] == classify(SENTENCE)


@pytest.mark.parametrize(
    ("keywords", "named"),
    [({"stride": -1}, "stride=-1"), ({"stride": True}, "stride=True"), ({"stride": 2.5}, "stride=2.5"),
     ({"stride": 30, "max_length": 32}, "stride=30"), ({"stride": 600}, "stride=600")],
)  # fmt: skip
def test_a_bad_stride_is_one_error_naming_it(classify, keywords, named):
    for inputs in (DOCUMENT, [DOCUMENT], (text for text in [DOCUMENT])):
        with pytest.raises(ValueError, match=re.escape(named)):
            list(classify(inputs, **keywords))


def test_an_empty_document_is_an_error_naming_it(classify):
    with pytest.raises(ValueError, match="text 1 is '  '"):
        classify([SENTENCE, "  "])


@given(
    spans=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 6)), min_size=0, max_size=25),
    reach=st.integers(1, 80),
)
@settings(max_examples=200, deadline=None)
def test_pairs_within_reach_are_exactly_the_pairs_some_window_holds(spans, reach):
    tokens = [list(range(start, start + length + 1)) for start, length in spans]
    expected = [(i, j) for i, j in itertools.permutations(range(len(tokens)), 2)
                if max(tokens[i][-1], tokens[j][-1]) - min(tokens[i][0], tokens[j][0]) < reach]  # fmt: skip
    assert pairs_within_reach(tokens, reach) == sorted(expected)


@pytest.mark.parametrize("encoding", [PerPairEncoding(), SubjectPackedPairs(objects_per_sequence=4)])
def test_the_pairs_not_tried_are_exactly_those_no_window_holds(encoding):
    """Every pair tried one by one: those that fail as too far apart are the ones the default leaves out."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    text = DOCUMENT[:500]
    entities = [{"start": start, "end": end, "type": "PER"} for start, end in word_spans(text)][::3]
    every = list(itertools.permutations(range(len(entities)), 2))
    one_by_one = encoding.encode(tokenizer, text, entities, ENTITY_TYPES, 40, pairs=every)
    too_far = {(i, j) for i, j, error in one_by_one.skipped if isinstance(error, EntitiesTooFarApartError)}
    default = encoding.encode(tokenizer, text, entities, ENTITY_TYPES, 40)
    tried = {pair for pairs in default.pairs for pair in pairs} | {(i, j) for i, j, _ in default.skipped}
    assert too_far and tried == set(every) - too_far and default.beyond_reach == len(too_far)


def test_a_document_subject_is_read_once_with_its_objects_on_both_sides():
    """Packed, a subject's objects within reach share one sequence (up to the model's limit), however far apart on
    either side: not one window of max_length per side, which read the text near a subject many times."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    text = DOCUMENT[:1500]
    entities = [{"start": start, "end": end, "type": "PER"} for start, end in word_spans(text)][::3]
    encoded = SubjectPackedPairs(sequence_limit=512).encode(tokenizer, text, entities, ENTITY_TYPES, 40)
    subjects = [pairs[0][0] for pairs in encoded.pairs]
    assert len(subjects) == len(set(subjects)) == len(entities)  # one sequence per subject
    middle = encoded.pairs[subjects.index(len(entities) // 2)]
    assert min(j for _, j in middle) < len(entities) // 2 < max(j for _, j in middle)  # objects on both sides
    reach = set(pairs_within_reach(encode_text(tokenizer, text, entities, ENTITY_TYPES).tokens, 40 - 2 - 2))
    assert {pair for pairs in encoded.pairs for pair in pairs} == reach  # every pair one window of 40 holds
    lengths = [len(sequence["input_ids"]) for sequence in encoded.sequences]
    assert max(lengths) <= 2 * 40 + 2 * max(map(len, encoded.pairs)) and min(lengths) >= 40
    capped = SubjectPackedPairs(sequence_limit=48).encode(tokenizer, text, entities, ENTITY_TYPES, 40)
    assert max(len(sequence["input_ids"]) for sequence in capped.sequences) <= 48
    assert len(capped.sequences) > len(entities)
    assert {pair for pairs in capped.pairs for pair in pairs} == reach  # a lower limit: more sequences, same pairs


def test_a_texts_sequences_run_shortest_first_and_the_last_carries_what_was_skipped(tmp_path):
    folder = save_tiny_classifier(tmp_path / "packed", ENTITY_TYPES, max_position_embeddings=512,
                                  pair_encoding="per_subject")  # fmt: skip
    classify = pipeline("relation-classification", model=str(folder), trust_remote_code=True)
    text = DOCUMENT[:1500]
    entities = [{"start": start, "end": end, "type": "PER"} for start, end in word_spans(text)][::3]
    chunks = list(classify.preprocess({"text": text, "entities": entities}, max_length=40))
    lengths = [chunk["input_ids"].shape[1] for chunk in chunks]
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1]  # subjects near the ends read less text
    assert [chunk["is_last"] for chunk in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1]["pairs"].beyond_reach > 0 and all(chunk["pairs"].beyond_reach == 0 for chunk in chunks[:-1])
    assert chunks[-1]["pairs"].skipped and not any(chunk["pairs"].skipped for chunk in chunks[:-1])


def run_command(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "typed_bert.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=900)  # fmt: skip


def test_predict_reads_a_file_of_documents_with_their_ids_and_refuses_a_bad_stride(bundled, tmp_path):
    lines = [{"id": "long", "text": DOCUMENT[:700]}, {"id": "short", "text": SENTENCE}]  # windows of 64 tokens
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = run_command("predict", "--model", str(bundled), "--input", "docs.jsonl", "--output", "out.jsonl",
                         "--max-length", "64", "--stride", "16", "--quiet", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["id"] for line in out] == ["long", "short"]
    for line in out:
        found = [(entity["start"], entity["end"]) for entity in line["prediction"]["entities"]]
        assert found == word_spans(line["text"])
    bad = run_command("predict", "--model", str(bundled), "--input", "docs.jsonl", "--output", "bad.jsonl",
                      "--stride", "600", cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 2 and "stride=600" in bad.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "bad.jsonl").exists()


def test_evaluate_end_to_end_scores_long_texts(bundled, tmp_path):
    pytest.importorskip("datasets", reason="typed-bert evaluate runs on the training stack")
    text = DOCUMENT[:700]  # windows of 64 tokens
    spans = word_spans(text)
    entities = [{"start": start, "end": end, "type": "PER"} for start, end in spans[:2] + spans[-2:]]
    line = {"text": text, "entities": entities, "relations": [{"subject": 0, "object": 1, "label": "founded_by"}]}
    (tmp_path / "long.jsonl").write_text(json.dumps(line) + "\n")
    result = run_command("evaluate", "--model", str(bundled), "--data-file", "long.jsonl", "--end-to-end",
                         "--max-length", "64", "--stride", "16", "--quiet", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["predicted_entities"] == len(spans) and metrics["gold_entities"] == 4


def test_the_benchmark_reports_documents_against_the_same_texts_as_a_list(bundled, tmp_path):
    """`benchmark --documents`: the texts joined into documents of about N tokens; the tiny recognizer tags every
    word, so both calls find the same entities, all of them gold here."""
    from typed_bert.commands.benchmark import main

    rows = []
    for words in ("Bill Gates founded Microsoft .", "Paul Allen left .", "Seattle grew ."):
        spans = word_spans(words)
        rows.append({"text": words, "entities": [{"start": a, "end": b, "type": "PER"} for a, b in spans],
                     "relations": [{"subject": 0, "object": 1, "label": "no_relation"}]})  # fmt: skip
    data = tmp_path / "entities.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows * 4))
    report = main(["--documents", str(bundled), str(data), "--document-tokens", "10", "40"])
    small, large = report["results"]["documents of 10 tokens"], report["results"]["documents of 40 tokens"]
    assert (small["documents"], large["documents"]) == (4, 2)  # 5 + 4 + 3 tokens a round of three texts: 12 >= 10
    for figures in (small, large):
        assert figures["entity_agreement_f1"] == figures["entity_f1_sentences"] == figures["entity_f1_documents"] == 1
        assert figures["time_ratio"] == pytest.approx(figures["documents_s"] / figures["sentences_s"])
        assert figures["relations_across_sentences"] >= 0 and figures["relation_f1_sentences"] == 0  # no gold relation
        assert figures["windows"] == {"max_length": 48, "stride": 12}  # the default windows, as read
