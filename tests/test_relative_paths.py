"""Every command with RELATIVE paths, started from a working directory that is neither the checkout nor the data's
folder, as a user runs them; and the one-line errors of an unreachable Hub endpoint and of a failed clean-interpreter
check."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import HUB_TOKEN, save_tiny_classifier

pytestmark = pytest.mark.slow


def typed_bert(cwd: Path, *args: str, env: dict[str, str] | None = None, check: bool = True):
    """`typed-bert ARGS` (the installed command) run in `cwd`."""
    full_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "typed_bert.cli", *args], cwd=cwd, env=full_env, capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"typed-bert {args} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


@pytest.fixture
def workspace(tmp_path, tiny_bert_dir, small_data):
    """A user's folder: a base model in `models/base`, data in `data/`, and the commands run from `work/`."""
    (tmp_path / "models").mkdir()
    shutil.copytree(tiny_bert_dir, tmp_path / "models" / "base")
    shutil.copytree(small_data["train"].parent, tmp_path / "data")
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def test_convert_train_evaluate_predict_compare_with_relative_paths(workspace):
    converted = typed_bert(
        workspace, "convert", "--base-model", "../models/base", "--entity-types", "Peop,Org,Loc,Other",
        "--output-dir", "converted",
    )  # fmt: skip
    assert json.loads(converted.stdout.strip().splitlines()[-1])["max_abs_difference"] <= 1e-5
    assert (workspace / "converted" / "config.json").is_file()

    data = ("--train-file", "../data/train.jsonl", "--validation-file", "../data/dev.jsonl")
    typed_bert(workspace, "train", "--base-model", "converted", *data, "--output-dir", "out/model", "--max-steps", "2",
               "--batch-size", "8")  # fmt: skip
    assert (workspace / "out" / "model" / "model.safetensors").is_file()

    evaluated = typed_bert(workspace, "evaluate", "--model", "out/model", "--data-file", "../data/dev.jsonl",
                           "--plot", "plots/confusion.png", "--quiet")  # fmt: skip
    assert json.loads(evaluated.stdout.strip().splitlines()[-1])["num_examples"] == 60
    assert (workspace / "plots" / "confusion.png").is_file()

    typed_bert(workspace, "predict", "--model", "out/model", "--input", "../data/dev.jsonl", "--output",
               "predictions.jsonl", "--quiet")  # fmt: skip
    assert len((workspace / "predictions.jsonl").read_text().splitlines()) == 60

    typed_bert(workspace, "compare", "--base-model", "converted", *data, "--output-dir", "cmp", "--variants",
               "typed-markers", "--seeds", "1", "--", "--max-steps", "1", "--batch-size", "8")  # fmt: skip
    assert (workspace / "cmp" / "comparison.md").is_file()


def test_push_with_relative_paths(workspace, local_hub):
    save_tiny_classifier(workspace / "model")
    env = {"HF_ENDPOINT": local_hub.endpoint, "HF_TOKEN": HUB_TOKEN, "HF_HUB_OFFLINE": "0",
           "HF_HOME": str(workspace.parent / "hf-home")}  # fmt: skip
    pushed = typed_bert(workspace, "push", "--model", "model", "--repo-id", "org/relative", env=env)
    assert json.loads(pushed.stdout.strip().splitlines()[-1])["max_abs_difference"] == 0.0


def test_demo_with_relative_paths(workspace):
    """The demo with relative data files and work folder, a short training run."""
    demo = typed_bert(
        workspace, "demo", "--base-model", "../models/base", "--train-file", "../data/train.jsonl",
        "--validation-file", "../data/dev.jsonl", "--work-dir", "demo", "--max-steps", "2",
    )  # fmt: skip
    assert "demo finished" in demo.stdout
    assert (workspace / "demo" / "typed-bert-conll04" / "model.safetensors").is_file()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:{port}", "http://hub.invalid"])
def test_push_to_an_unreachable_endpoint_is_one_line(tmp_path, endpoint):
    save_tiny_classifier(tmp_path / "model")
    endpoint = endpoint.format(port=closed_port())
    env = {"HF_ENDPOINT": endpoint, "HF_TOKEN": HUB_TOKEN, "HF_HUB_OFFLINE": "0"}
    result = typed_bert(tmp_path, "push", "--model", "model", "--repo-id", "org/x", env=env, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach the Hub endpoint {endpoint} ("), lines
    assert "HF_ENDPOINT" in lines[0] and "nothing was uploaded" in lines[0]


def test_a_failed_clean_interpreter_check_is_one_line(tmp_path, local_hub, monkeypatch):
    """A folder whose code does not load: the helper takes the relative path from another working directory and
    raises one line naming the folder and the child's error; the push command prints that line alone (exit 2), from the
    check it runs on the folder before uploading."""
    from typed_bert.hub.verify import VerificationError, run_in_clean_process

    folder = save_tiny_classifier(tmp_path / "model")
    (folder / "modeling_typed_bert.py").write_text("raise ImportError('broken on purpose')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VerificationError) as raised:
        run_in_clean_process(Path("model"), [], "AutoModelForSequenceClassification")
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{folder}: ") and "broken on purpose" in message
    assert "Traceback" in raised.value.stderr

    env = {"HF_ENDPOINT": local_hub.endpoint, "HF_TOKEN": HUB_TOKEN, "HF_HUB_OFFLINE": "0",
           "HF_HOME": str(tmp_path / "hf-home")}  # fmt: skip
    result = typed_bert(tmp_path, "push", "--model", "model", "--repo-id", "org/broken", env=env, check=False)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    # found by the local clean-interpreter check, before anything is uploaded
    assert len(errors) == 1 and errors[0].startswith(f"error: {folder}: ") and "broken on purpose" in errors[0], errors
