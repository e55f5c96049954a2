"""Loading canonical and KLUE-RE files; bad lines are reported with file and line number."""

from __future__ import annotations

import json

import pytest

from encoding_typed_bert import PerPairEncoding
from tests.conftest import SHARED
from typed_bert.data import (
    encode_dataset,
    entity_type_names,
    joined_texts,
    label_names,
    load_relations,
    texts_with_entities,
    unencodable_counts,
)
from typed_bert.errors import DataFileError
from typed_bert.trainer import NegativeSubsamplingSampler

GOOD = {
    "id": "x-1",
    "text": "Bill founded Microsoft",
    "subject": {"start": 0, "end": 4, "type": "Peop"},
    "object": {"start": 13, "end": 22, "type": "Org"},
    "label": "founded",
}


def write_lines(path, rows):
    path.write_text(
        "".join((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n" for row in rows)
    )
    return path


def test_conll04_loads():
    dataset = load_relations(SHARED / "data" / "conll04" / "dev.jsonl")
    assert len(dataset) == 3260
    assert label_names(dataset)[0] == "no_relation" and len(label_names(dataset)) == 6
    assert entity_type_names(dataset) == ["Loc", "Org", "Other", "Peop"]


def test_klue_format_is_converted_with_inclusive_ends(tmp_path):
    row = {
        "guid": "klue-re-v1_train_0",
        "sentence": "손흥민의 아버지는 손웅정이다.",
        "subject_entity": {"word": "손흥민", "start_idx": 0, "end_idx": 2, "type": "PER"},
        "object_entity": {"word": "손웅정", "start_idx": 10, "end_idx": 12, "type": "PER"},
        "label": "per:parents",
        "source": "wikipedia",
    }
    dataset = load_relations(write_lines(tmp_path / "klue.jsonl", [row]))
    example = dataset[0]
    assert example["text"][example["subject"]["start"] : example["subject"]["end"]] == "손흥민"
    assert example["text"][example["object"]["start"] : example["object"]["end"]] == "손웅정"
    assert example["label"] == "per:parents" and example["id"] == "klue-re-v1_train_0"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"id": "x", "text": ', "invalid JSON"),
        ({**GOOD, "subject": {"start": 0, "end": 99, "type": "Peop"}}, r"'subject' span \[0, 99\) lies outside"),
        ({**GOOD, "label": ""}, "'label' must be a non-empty string"),
        ({**GOOD, "object": {"start": 13, "end": 22}}, "'object' must be a mapping with 'start', 'end' and 'type'"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, bad, message):
    path = write_lines(tmp_path / "data.jsonl", [GOOD, "", GOOD, bad, GOOD])
    with pytest.raises(DataFileError, match=rf"data\.jsonl:4: {message}"):
        load_relations(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        load_relations(tmp_path / "absent.jsonl")


def test_negative_sampler_redraws_negatives_each_epoch():
    labels = [[1]] * 10 + [[0]] * 100  # the label ids of each sequence's pairs
    lengths = list(range(110))
    sampler = NegativeSubsamplingSampler(labels, lengths, batch_size=4, negative_ratio=3, no_relation_id=0, seed=7)
    first, second = list(sampler), list(sampler)
    assert len(first) == len(sampler) == 40
    assert sorted(i for i in first if i < 10) == list(range(10))
    assert set(first) != set(second)
    again = NegativeSubsamplingSampler(labels, lengths, batch_size=4, negative_ratio=3, no_relation_id=0, seed=7)
    assert list(again) == first  # deterministic given seed and epoch
    batches = [first[i : i + 4] for i in range(0, 40, 4)]
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert sorted(spread)[len(spread) // 2] < 30  # length buckets: most batches hold similar lengths


def test_klue_entity_literal_with_an_apostrophe_loads(tmp_path):
    row = {
        "guid": "x",
        "sentence": "Lovin' You was sung by Minnie Riperton.",
        "subject_entity": "{'word': \"Lovin' You\", 'start_idx': 0, 'end_idx': 9, 'type': 'WORK'}",
        "object_entity": "{'word': 'Minnie Riperton', 'start_idx': 23, 'end_idx': 37, 'type': 'PER'}",
        "label": "per:works",
    }
    example = load_relations(write_lines(tmp_path / "klue.jsonl", [row]))[0]
    assert example["text"][example["subject"]["start"] : example["subject"]["end"]] == "Lovin' You"
    assert example["line"] == 1


TEXT_ROW = {
    "id": "t",
    "text": "Bill founded Microsoft in Seattle",
    "entities": [
        {"start": 0, "end": 4, "type": "Peop", "id": "bill"},
        {"start": 13, "end": 22, "type": "Org"},
        {"start": 26, "end": 33, "type": "Loc"},
    ],
    "relations": [{"subject": 0, "object": 1, "label": "founded"}, {"subject": 1, "object": 2, "label": "based_in"}],
}


def test_entity_list_line_becomes_every_ordered_pair(tmp_path):
    dataset = load_relations(write_lines(tmp_path / "texts.jsonl", [GOOD, TEXT_ROW]))
    assert len(dataset) == 1 + 6 and set(dataset["line"]) == {1, 2}
    pairs = {(row["subject"]["start"], row["object"]["start"]): row["label"] for row in dataset if row["line"] == 2}
    assert pairs == {
        (0, 13): "founded",
        (13, 26): "based_in",
        (0, 26): "no_relation",
        (13, 0): "no_relation",
        (26, 0): "no_relation",
        (26, 13): "no_relation",
    }
    assert dataset[1]["id"] == "t-0-1" and dataset[1]["subject"] == {"start": 0, "end": 4, "type": "Peop"}
    grouped = texts_with_entities(dataset)
    assert [len(group["entities"]) for group in grouped] == [2, 3]
    assert grouped[1]["entities"] == [{k: e[k] for k in ("start", "end", "type")} for e in TEXT_ROW["entities"]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"relations": [{"subject": 0, "object": 3, "label": "x"}]}, r"relation 0 names entities \[0, 3\]; expected"),
        ({"relations": [{"subject": 1, "object": 1, "label": "x"}]}, r"relation 0 repeats the pair \[1, 1\]"),
        ({"relations": [{"subject": 0, "object": 1}]}, r"relation 0: 'label' must be a non-empty string"),
        ({"entities": [{"start": 0, "end": 40, "type": "Peop"}]}, r"entity 0 span \[0, 40\) lies outside the text"),
        ({"entities": {"start": 0}}, r"'entities' must be a list of objects"),
    ],
)
def test_bad_entity_list_line_names_file_line_and_what(tmp_path, change, message):
    path = write_lines(tmp_path / "texts.jsonl", [TEXT_ROW, {**TEXT_ROW, **change}])
    with pytest.raises(DataFileError, match=rf"texts\.jsonl:2: {message}.*expected {{\"text\", \"entities\""):
        load_relations(path)


def test_a_line_with_a_pair_and_entities_is_refused_as_ambiguous(tmp_path):
    """One rule for every path: a dict with both a pair and an entity list is neither (the pipeline refuses it too)."""
    path = write_lines(
        tmp_path / "both.jsonl", [GOOD, {**TEXT_ROW, "subject": GOOD["subject"], "object": GOOD["object"]}]
    )
    with pytest.raises(DataFileError, match=r"both\.jsonl:2: the line has both 'entities' and 'subject'/'object'"):
        load_relations(path)


def test_pairs_the_model_cannot_read_are_marked_with_their_reason(tmp_path):
    """Nested pairs and pairs no max_length window holds are kept, unencodable, each counted under its reason;
    strict refuses them naming the line."""
    from transformers import AutoTokenizer

    from tests.conftest import minilm_path

    far = {
        **GOOD,
        "text": "Bill " + "and so on " * 30 + "Microsoft",
        "object": {"start": 305, "end": 314, "type": "Org"},
    }
    nested = {**GOOD, "object": {"start": 2, "end": 12, "type": "Org"}}
    path = write_lines(tmp_path / "data.jsonl", [GOOD, far, nested])
    dataset = load_relations(path)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    label2id = {"no_relation": 0, "founded": 1}
    encoding = PerPairEncoding()
    encoded, reasons = encode_dataset(dataset, tokenizer, encoding, ["O", "Org", "Peop"], label2id, 32)
    assert reasons == ["", "too_far_apart", "overlapping"]
    assert encoded["rows"] == [[0]] and encoded["labels"] == [[label2id[GOOD["label"]]]]
    assert unencodable_counts(reasons) == {"too_far_apart": 1, "overlapping": 1}
    with pytest.raises(DataFileError, match=r"data\.jsonl:2: the subject and object together span \d+ tokens"):
        encode_dataset(dataset, tokenizer, encoding, ["O", "Org", "Peop"], label2id, 32, path=path, strict=True)


def test_joined_texts_shift_offsets_keep_labels_and_make_pairs_across_texts_no_relation(tmp_path):
    rows = [
        {"id": "a", "text": "Bill founded Microsoft", "entities": [
            {"start": 0, "end": 4, "type": "Peop"}, {"start": 13, "end": 22, "type": "Org"}],
         "relations": [{"subject": 0, "object": 1, "label": "founded"}]},
        {"id": "b", "text": "Ann lives in Oslo", "entities": [
            {"start": 0, "end": 3, "type": "Peop"}, {"start": 13, "end": 17, "type": "Loc"}],
         "relations": [{"subject": 0, "object": 1, "label": "Live_In"}]},
    ]  # fmt: skip
    dataset = load_relations(write_lines(tmp_path / "texts.jsonl", rows))
    seed = next(seed for seed in range(50) if len(set(joined_texts(dataset, 2, seed)["text"])) == 1)  # both joined
    joined = joined_texts(dataset, 2, seed)
    words = [tuple(r["text"][r[name]["start"] : r[name]["end"]] for name in ("subject", "object")) for r in joined]
    pairs = {pair: (row["label"], row["line"]) for pair, row in zip(words, joined, strict=True)}
    assert joined[0]["text"] == "Bill founded Microsoft Ann lives in Oslo"
    assert len(pairs) == 12  # every ordered pair of the four entities
    assert pairs["Bill", "Microsoft"] == ("founded", 1) and pairs["Ann", "Oslo"] == ("Live_In", 2)
    assert pairs["Microsoft", "Bill"] == ("no_relation", 1)
    assert pairs["Bill", "Oslo"] == ("no_relation", 1) and pairs["Oslo", "Bill"] == ("no_relation", 2)


def test_joined_texts_are_seeded_and_add_no_pair_a_pair_file_leaves_out(tmp_path):
    lines = (SHARED / "data" / "conll04" / "dev.jsonl").read_text().splitlines()
    kept = write_lines(tmp_path / "some_pairs.jsonl", lines[::2])  # a pair file that gives only some of each text's
    dataset = load_relations(kept)
    first, again = joined_texts(dataset, 3, seed=7), joined_texts(dataset, 3, seed=7)
    assert first["text"] == again["text"] and first["label"] == again["label"] and first["id"] == again["id"]
    assert joined_texts(dataset, 3, seed=8)["text"] != first["text"]
    texts = {row["text"] for row in dataset}
    assert len(texts) / 3 <= len(set(first["text"])) < len(texts)

    def words(row):  # the pair as the words its spans cover, and its label and line
        return tuple(row["text"][row[name]["start"] : row[name]["end"]] for name in ("subject", "object"))

    file_pairs = sorted((words(row), row["label"], row["line"]) for row in dataset)
    same_text = [row for row in first if "->" not in row["id"]]  # the file's own pairs, moved into documents
    across = [row for row in first if "->" in row["id"]]
    assert sorted((words(row), row["label"], row["line"]) for row in same_text) == file_pairs
    assert across and {row["label"] for row in across} == {"no_relation"}
    for row in across:  # two texts' entities: the id names two different lines
        assert row["id"].split(" entity ")[0] != row["id"].split("-> ")[1].split(" entity ")[0]
    alone = joined_texts(dataset, 1, seed=7)  # one text per document: the file's own pairs
    key = lambda row: (row["text"], row["subject"]["start"], row["object"]["start"], row["label"])  # noqa: E731
    assert sorted(map(key, alone)) == sorted(map(key, dataset))
