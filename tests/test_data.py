"""Loading canonical and KLUE-RE files; bad lines are reported with file and line number."""

from __future__ import annotations

import json

import pytest
from typed_bert.scripts.relation_data import (
    DataFileError,
    NegativeSubsamplingSampler,
    entity_type_names,
    label_names,
    load_relations,
)

from tests.conftest import SHARED

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
        ({**GOOD, "subject": {"start": 0, "end": 99, "type": "Peop"}}, r"'subject' span \[0, 99\) is not inside"),
        ({**GOOD, "label": ""}, "'label' must be a non-empty string"),
        ({**GOOD, "object": {"start": 13, "end": 22}}, "'object' must be an object with start, end and type"),
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
    labels = [1] * 10 + [0] * 100
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
