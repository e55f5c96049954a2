"""scripts/train.py on a tiny random BERT and a slice of CoNLL04: output folder, determinism, modes, DDP."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import load_file
from typed_bert.hub.export import CODE_FILES

from tests.conftest import train_tiny as train

pytestmark = pytest.mark.slow


def test_output_folder_is_hub_ready(tmp_path, tiny_bert_dir, small_data):
    out = tmp_path / "out"
    train(tiny_bert_dir, small_data, out)
    names = {p.name for p in out.iterdir()}
    assert names >= {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "eval_results.json",
        "README.md",
        "training_log.json",
        *CODE_FILES,
    }
    assert not [p for p in out.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    assert not [p for p in out.iterdir() if p.is_dir()]
    config = json.loads((out / "config.json").read_text())
    assert config["entity_types"] == ["O", "Loc", "Org", "Other", "Peop"]
    assert config["id2label"]["0"] == "no_relation" and len(config["id2label"]) == 6
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}
    assert "relation-classification" in config["custom_pipelines"]
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_examples"] == 60 and 0 <= results["micro_f1"] <= 1
    assert "train_steps" in results and results["train_steps"] == 3


def test_same_seed_same_weights(tmp_path, tiny_bert_dir, small_data):
    train(tiny_bert_dir, small_data, tmp_path / "a", "--seed", "3")
    train(tiny_bert_dir, small_data, tmp_path / "b", "--seed", "3")
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.count_nonzero(a["bert.embeddings.entity_type_embeddings.weight"]) > 0  # the tables were trained


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            "typed-markers",
            {"use_entity_embeddings": False, "entity_markers": True, "classifier_pooling": "entity_start"},
        ),
        ("plain", {"use_entity_embeddings": False, "entity_markers": False, "classifier_pooling": "cls"}),
    ],
)
def test_baseline_input_modes(tmp_path, tiny_bert_dir, small_data, mode, expected):
    out = tmp_path / mode
    train(tiny_bert_dir, small_data, out, "--input-mode", mode)
    config = json.loads((out / "config.json").read_text())
    assert {key: config[key] for key in expected} == expected
    weights = load_file(out / "model.safetensors")
    assert not [key for key in weights if "entity_" in key]


def test_continue_from_typed_bert_checkpoint(tmp_path, tiny_bert_dir, small_data):
    first = tmp_path / "first"
    train(tiny_bert_dir, small_data, first)
    second = tmp_path / "second"
    train(first, small_data, second, "--learning-rate", "1e-3")
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert not torch.equal(
        a["bert.embeddings.entity_type_embeddings.weight"], b["bert.embeddings.entity_type_embeddings.weight"]
    )


def test_refuses_non_empty_output_dir(tmp_path, tiny_bert_dir, small_data):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(AssertionError, match="exists and is not empty; pass --overwrite"):
        train(tiny_bert_dir, small_data, out)
    assert (out / "mine.txt").read_text() == "keep"


def test_ddp_two_cpu_processes(tmp_path, tiny_bert_dir, small_data):
    out = tmp_path / "ddp"
    train(
        tiny_bert_dir,
        small_data,
        out,
        launcher=(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29731"),
    )
    results = json.loads((out / "eval_results.json").read_text())
    assert results["train_steps"] == 3
    assert results["world_size"] == 2
    log = json.loads((out / "training_log.json").read_text())
    assert any("eval_micro_f1" in entry for entry in log)
