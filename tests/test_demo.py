"""The README's main job, end to end, on a tiny base model and a slice of CoNLL04 (the real run takes ~14 min)."""

from __future__ import annotations

import json
import re
import sys

import pytest

from tests.conftest import SHARED, run_script

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end(tmp_path, tiny_bert_dir, small_data):
    entity_files = {}
    for split, count in (("train", 40), ("dev", 20)):
        lines = (SHARED / "data" / "conll04" / f"{split}_entities.jsonl").read_text().splitlines()[:count]
        entity_files[split] = tmp_path / f"{split}_entities.jsonl"
        entity_files[split].write_text("\n".join(lines) + "\n")
    result = run_script(
        [
            sys.executable,
            "scripts/demo.py",
            "--base-model",
            str(tiny_bert_dir),
            "--max-steps",
            "2",
            "--train-file",
            str(small_data["train"]),
            "--validation-file",
            str(small_data["dev"]),
            "--entity-train-file",
            str(entity_files["train"]),
            "--entity-validation-file",
            str(entity_files["dev"]),
            "--work-dir",
            str(tmp_path / "demo"),
        ],
        env={"HF_HUB_OFFLINE": "0"},
    )
    out = result.stdout
    steps = ("1/6 convert", "2/6 fine-tune the entity", "3/6 fine-tune the relation", "4/6 evaluate", "5/6 push",
             "6/6 load it back")  # fmt: skip
    for step in steps:
        assert f"=== {step}" in out
    assert "max abs difference of hidden states from the base model: 0" in out
    assert "through AutoModelForSequenceClassification in a clean interpreter" in out
    assert "max abs difference from the local folder 0.0" in out
    assert "loaded transformers_modules.org.typed_hyphen_bert." in out
    predictions = re.findall(r"^    .+ -> .+: \S+ [01]\.\d\d, \S+ [01]\.\d\d$", out, flags=re.MULTILINE)
    assert len(predictions) == 3, out[-2000:]
    assert "end to end: entity micro-F1" in out
    assert "verified: the bundled entity model finds the same" in out
    assert len(re.findall(r"^    entities: .*$", out, flags=re.MULTILINE)) == 3, out[-2000:]
    assert (tmp_path / "demo" / "typed-bert-conll04" / "confusion_matrix.png").is_file()
    assert (tmp_path / "demo" / "typed-bert-conll04" / "training_curve.png").is_file()
    config = json.loads((tmp_path / "demo" / "typed-bert-conll04" / "config.json").read_text())
    assert config["pair_encoding"] == "per_subject" and config["entity_model"] == "entities"
    # The demo keeps to its time budget: 6 epochs, not per_subject's default 10.
    settings = json.loads((tmp_path / "demo" / "typed-bert-conll04" / "eval_results.json").read_text())["settings"]
    assert (settings["pair_encoding"], settings["epochs"]) == ("per_subject", 6.0)
