"""The README's main job, end to end, on a tiny base model and a slice of CoNLL04 (the real run takes ~14 min)."""

from __future__ import annotations

import re
import sys

import pytest

from tests.conftest import run_script

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end(tmp_path, tiny_bert_dir, small_data):
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
            "--work-dir",
            str(tmp_path / "demo"),
        ],
        env={"HF_HUB_OFFLINE": "0"},
    )
    out = result.stdout
    for step in ("1/5 convert", "2/5 fine-tune", "3/5 evaluate", "4/5 push", "5/5 load it back"):
        assert f"=== {step}" in out
    assert "max abs difference of hidden states from the base model: 0" in out
    assert "through AutoModelForSequenceClassification in a clean interpreter" in out
    assert "max abs difference from the local folder 0.0" in out
    assert "loaded transformers_modules.org.typed_hyphen_bert." in out
    predictions = re.findall(r"^    .+ -> .+: \S+ [01]\.\d\d, \S+ [01]\.\d\d$", out, flags=re.MULTILINE)
    assert len(predictions) == 3, out[-2000:]
    assert (tmp_path / "demo" / "typed-bert-conll04" / "confusion_matrix.png").is_file()
    assert (tmp_path / "demo" / "typed-bert-conll04" / "training_curve.png").is_file()
