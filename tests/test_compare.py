"""scripts/compare.py: two input modes × two seeds on a tiny base, the report, resuming, and settings that differ."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, run_script

pytestmark = pytest.mark.slow


def compare_command(base, data, out, *extra: str, budget=("--max-steps", "2", "--batch-size", "8")) -> list[str]:
    return [
        sys.executable,
        "scripts/compare.py",
        *("--base-model", str(base), "--train-file", str(data["train"]), "--validation-file", str(data["dev"])),
        *("--output-dir", str(out)),
        *extra,
        "--",
        *budget,
    ]


def test_two_modes_two_seeds_report_resume_and_refuse_other_settings(tmp_path, tiny_bert_dir, small_data):
    out = tmp_path / "compare"
    variants = ("--variants", "typed-embeddings", "typed-markers", "--seeds", "1", "2")
    first = run_script(compare_command(tiny_bert_dir, small_data, out, *variants))
    assert "4 runs requested, 0 already finished" in first.stdout

    report = json.loads((out / "comparison.json").read_text())
    assert sorted((run["variant"], run["seed"]) for run in report["runs"]) == [
        ("typed-embeddings", 1),
        ("typed-embeddings", 2),
        ("typed-markers", 1),
        ("typed-markers", 2),
    ]
    for row in report["summary"]:
        scores = []
        for seed in (1, 2):
            folder = out / "runs" / row["variant"] / f"seed-{seed}"
            assert json.loads((folder / "config.json").read_text())["input_mode"] == row["variant"]
            assert json.loads((folder / "eval_results.json").read_text())["settings"]["seed"] == seed
            assert "train_runtime_s" in folder.with_name(f"seed-{seed}.log").read_text()  # the run's log, kept
            scores.append(json.loads((folder / "eval_results.json").read_text())["micro_f1"])
        assert row["micro_f1"]["mean"] == pytest.approx(statistics.fmean(scores))
        assert row["micro_f1"]["std"] == pytest.approx(statistics.stdev(scores))

    table = (out / "comparison.md").read_text()
    for variant in ("typed-embeddings", "typed-markers"):
        (line,) = [line for line in table.splitlines() if line.startswith(f"| `{variant}` |")]
        assert "| 1, 2 |" in line and line.count(" ± ") == 5  # four metrics and the wall time
    assert "--max-steps 2 --batch-size 8" in table
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A second call redoes nothing; one with another seed adds only that run.
    stamps = {path: path.stat().st_mtime_ns for path in out.glob("runs/*/seed-*/model.safetensors")}
    again = run_script(compare_command(tiny_bert_dir, small_data, out, *variants))
    assert "4 runs requested, 4 already finished" in again.stdout
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    # An interrupted run (no run.json) is started again.
    (out / "runs" / "typed-markers" / "seed-2" / "run.json").unlink()
    resumed = run_script(compare_command(tiny_bert_dir, small_data, out, *variants))
    assert "4 runs requested, 3 already finished" in resumed.stdout
    assert len(json.loads((out / "comparison.json").read_text())["runs"]) == 4

    other_budget = compare_command(tiny_bert_dir, small_data, out, *variants, budget=("--max-steps", "3"))
    refused = subprocess.run(other_budget, cwd=REPO_ROOT, capture_output=True, text=True)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: {out / 'settings.json'}: this folder compares runs with other settings")
    assert "train_args" in refused.stderr


def test_flags_that_compare_sets_are_refused_in_the_shared_arguments(tmp_path, tiny_bert_dir, small_data):
    command = compare_command(
        tiny_bert_dir, small_data, tmp_path / "c", "--variants", "plain", "--seeds", "1", budget=("--seed", "3")
    )
    refused = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert refused.returncode == 2
    assert "training arguments ['--seed'] are set by compare for each run" in refused.stderr


def test_a_final_fit_is_refused_because_compare_ranks_by_the_validation_file(tmp_path):
    from typed_bert.commands.compare import parse_args
    from typed_bert.errors import InputError

    own = ["--base-model", str(tmp_path), "--train-file", "t.jsonl", "--validation-file", "v.jsonl", "--output-dir",
           str(tmp_path / "c"), "--variants", "plain", "--seeds", "1"]  # fmt: skip
    with pytest.raises(InputError, match="--final-fit trains on the validation file"):
        parse_args([*own, "--", "--epochs", "2", "--final-fit"])
    assert parse_args([*own, "--", "--epochs", "2"]).train_args == ["--epochs", "2"]
