"""Bad input to every command: one line on stderr, `error: FILE[:LINE]: what is wrong; what was expected`, exit
status 2, no traceback; and what is skipped or kept instead of aborting (overlapping pairs, --skip-bad-lines)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, SHARED, minilm_path, save_tiny_classifier

pytestmark = pytest.mark.slow

LABELS = ["no_relation", "Kill", "Live_In", "Located_In", "OrgBased_In", "Work_For"]
GOOD = {
    "id": "g",
    "text": "John Smith works for Acme Corp in Paris.",
    "subject": {"start": 0, "end": 10, "type": "Peop"},
    "object": {"start": 21, "end": 30, "type": "Org"},
    "label": "Work_For",
}
# "Acme Corp" nested in "Acme Corp in Paris": an ordered pair whose subject and object overlap.
NESTED = {**GOOD, "id": "n", "subject": {"start": 21, "end": 39, "type": "Org"}, "label": "no_relation"}


def lines(*rows) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny TypedBert classifier with CoNLL04's entity types and labels and MiniLM's tokenizer."""
    entity_types = ["O", "Loc", "Org", "Other", "Peop"]
    return save_tiny_classifier(tmp_path_factory.mktemp("model"), entity_types, LABELS, trained_tables=False)


def command(*args, stdin=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("TYPED_BERT_DEBUG", None)
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, input=stdin
    )


def train_args(train, dev, out, *extra):
    base = str(minilm_path())
    return ["scripts/train.py", "--base-model", base, "--train-file", str(train), "--validation-file", str(dev),
            "--output-dir", str(out), "--max-steps", "1", "--batch-size", "4", *extra]  # fmt: skip


# (case, files: name -> content, command builder, expected error line with {name} for the file's path)
CASES = [
    ("train: missing file", {}, lambda p, m: train_args(p["nope"], p["nope"], p["out"]), "{nope}: no such file"),
    ("train: bad JSON", {"train": lines(GOOD, '{"text": '), "dev": lines(GOOD)},
     lambda p, m: train_args(p["train"], p["dev"], p["out"]), "{train}:2: invalid JSON"),
    ("train: empty file", {"train": "", "dev": lines(GOOD)},
     lambda p, m: train_args(p["train"], p["dev"], p["out"]), "{train}: the file is empty"),
    ("train: dev type not in train", {"train": lines(GOOD), "dev": lines(GOOD, {**GOOD, "object": {**GOOD["object"], "type": "Loc"}})},
     lambda p, m: train_args(p["train"], p["dev"], p["out"]), "{dev}:2: object type 'Loc' is not among the entity types of the training file"),
    ("train: dev label not in train", {"train": lines(GOOD), "dev": lines({**GOOD, "label": "Kill"})},
     lambda p, m: train_args(p["train"], p["dev"], p["out"]), "{dev}:1: label 'Kill' is not among the labels of the training file"),
    ("train: overlapping pair with --strict", {"train": lines(GOOD, NESTED), "dev": lines(GOOD)},
     lambda p, m: train_args(p["train"], p["dev"], p["out"], "--strict"), "{train}:2: subject [21, 39) and object [21, 30) overlap"),
    ("train: bad span", {"train": lines(GOOD, {**GOOD, "object": {"start": 30, "end": 99, "type": "Org"}}), "dev": lines(GOOD)},
     lambda p, m: train_args(p["train"], p["dev"], p["out"]), "{train}:2: 'object' span [30, 99) lies outside the text"),
    ("evaluate: missing file", {}, lambda p, m: ["scripts/evaluate.py", "--model", m, "--data-file", p["nope"]], "{nope}: no such file"),
    ("evaluate: bad JSON", {"dev": lines(GOOD, GOOD, "[1, 2")},
     lambda p, m: ["scripts/evaluate.py", "--model", m, "--data-file", p["dev"]], "{dev}:3: invalid JSON"),
    ("evaluate: empty file", {"dev": "\n\n"}, lambda p, m: ["scripts/evaluate.py", "--model", m, "--data-file", p["dev"]], "{dev}: the file is empty"),
    ("evaluate: type unknown to the model", {"dev": lines({**GOOD, "subject": {**GOOD["subject"], "type": "PER"}})},
     lambda p, m: ["scripts/evaluate.py", "--model", m, "--data-file", p["dev"]], "{dev}:1: subject type 'PER' is not among the entity types of the model"),
    ("evaluate: label unknown to the model", {"dev": lines(GOOD, {**GOOD, "label": "founded_by"})},
     lambda p, m: ["scripts/evaluate.py", "--model", m, "--data-file", p["dev"]], "{dev}:2: label 'founded_by' is not among the labels of the model"),
    ("evaluate: overlapping pair with --strict", {"dev": lines(GOOD, NESTED)},
     lambda p, m: ["scripts/evaluate.py", "--model", m, "--data-file", p["dev"], "--strict"], "{dev}:2: subject [21, 39) and object [21, 30) overlap"),
    ("predict: missing input", {}, lambda p, m: ["scripts/predict.py", "--model", m, "--input", p["nope"]], "{nope}: no such file; expected a JSON Lines file of pairs"),
    ("predict: bad span", {"pairs": lines(GOOD, {**GOOD, "subject": {"start": 5, "end": 2, "type": "Peop"}})},
     lambda p, m: ["scripts/predict.py", "--model", m, "--input", p["pairs"]], "{pairs}:2: subject span has start=5 >= end=2"),
    ("predict: bad JSON", {"pairs": lines(GOOD, "{oops")},
     lambda p, m: ["scripts/predict.py", "--model", m, "--input", p["pairs"]], "{pairs}:2: Expecting property name"),
    ("demo: no shared/ data", {}, lambda p, m: ["scripts/demo.py", "--train-file", p["nope"], "--work-dir", p["out"]],
     "{nope}: no such file; expected CoNLL04 train.jsonl, dev.jsonl, train_entities.jsonl and dev_entities.jsonl in"),
    ("convert: missing base", {}, lambda p, m: ["scripts/convert.py", "--base-model", p["nope"], "--entity-types", "PER", "--output-dir", p["out"]],
     "--base-model"),
    ("push: missing folder", {}, lambda p, m: ["scripts/push.py", "--model", p["nope"], "--repo-id", "org/x", "--no-verify"], "{nope}: no such folder"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "files", "build", "expected"), CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_clear_line(tmp_path, model_dir, case, files, build, expected):
    paths = {"nope": str(tmp_path / "nope.jsonl"), "out": str(tmp_path / "out")}
    for name, content in files.items():
        (tmp_path / f"{name}.jsonl").write_text(content)
        paths[name] = str(tmp_path / f"{name}.jsonl")
    result = command(*build(paths, str(model_dir)))
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: " + expected.format(**paths)), last
    assert "; expected" in last or case.startswith(("convert", "push")), last


def test_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "nope.jsonl"
    result = command("scripts/evaluate.py", "--model", "x", "--data-file", str(missing), "--debug")
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == f"typed_bert.errors.DataFileError: {missing}: no such file; expected a JSON Lines file of relation examples"
    assert any("load_relations" in line for line in lines)  # the frames of the code that raised it


def test_training_skips_and_evaluation_scores_overlapping_pairs(tmp_path, model_dir):
    rows = [json.loads(line) for line in (SHARED / "data" / "conll04" / "train.jsonl").read_text().splitlines()[:40]]
    (tmp_path / "train.jsonl").write_text(lines(*rows, NESTED))
    (tmp_path / "dev.jsonl").write_text(lines(*rows[:10], NESTED))
    trained = command(*train_args(tmp_path / "train.jsonl", tmp_path / "dev.jsonl", tmp_path / "out"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "{'overlapping': 1} in training, skipped; {'overlapping': 1} in dev, scored as no_relation" in trained.stdout
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert results["num_examples"] == 11
    assert results["unencodable_pairs"] == {"overlapping": 1}  # the saved folder's dev score, as evaluate gives it
    assert results["unencodable_pairs_by_split"] == {"train": {"overlapping": 1}, "validation": {"overlapping": 1}}

    evaluated = command("scripts/evaluate.py", "--model", str(model_dir), "--data-file", str(tmp_path / "dev.jsonl"))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert metrics["num_examples"] == 11 and metrics["unencodable_pairs"] == {"overlapping": 1}
    assert "pairs the model cannot read, scored as predicted no_relation: {'overlapping': 1}" in evaluated.stderr


def test_a_pair_too_far_apart_is_scored_as_no_relation_not_an_error(tmp_path, model_dir):
    """One pair that no --max-length window holds no longer stops evaluate: it is scored as no_relation and counted
    under its own name; --strict refuses it, naming the line."""
    far = {**GOOD, "id": "far", "text": GOOD["text"] + " and so on" * 20 + " Acme Corp", "label": "no_relation"}
    far["object"] = {"start": len(far["text"]) - 9, "end": len(far["text"]), "type": "Org"}
    (tmp_path / "dev.jsonl").write_text(lines(GOOD, far))
    args = ["scripts/evaluate.py", "--model", str(model_dir), "--data-file", str(tmp_path / "dev.jsonl")]
    evaluated = command(*args, "--max-length", "24")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert metrics["num_examples"] == 2 and metrics["unencodable_pairs"] == {"too_far_apart": 1}
    refused = command(*args, "--max-length", "24", "--strict")
    assert refused.returncode == 2 and f"\nerror: {tmp_path / 'dev.jsonl'}:2: the subject and" in refused.stderr
    too_long = command(*args, "--max-length", "100000")
    assert too_long.returncode == 2 and "--max-length: max_length=100000 must be an int from 3 to" in too_long.stderr


def test_predict_skips_bad_lines_and_keeps_every_good_one(tmp_path, model_dir):
    bad = {**GOOD, "subject": {"start": 5, "end": 2, "type": "Peop"}}
    (tmp_path / "pairs.jsonl").write_text(lines({**GOOD, "id": 1}, bad, "{oops", {**GOOD, "id": 4}, {**GOOD, "id": 5}))
    result = command(
        "scripts/predict.py", "--model", str(model_dir), "--input", str(tmp_path / "pairs.jsonl"), "--skip-bad-lines",
        "--batch-size", "2", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [1, 4, 5]
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
    assert [line.split(":")[1] for line in skipped] == ["2", "3"]
