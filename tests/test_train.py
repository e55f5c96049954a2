"""scripts/train.py on a tiny random BERT and a slice of CoNLL04: output folder, determinism, modes, DDP."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import load_file
from typed_bert.hub.export import CODE_FILES

from tests.conftest import run_script
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
    ("mode", "tables", "pooling"),
    [
        ("type-only", ["entity_type_embeddings"], "entity_start"),
        ("role-only", ["entity_role_embeddings"], "entity_start"),
        ("typed-markers", [], "entity_start"),
        ("markers+embeddings", ["entity_role_embeddings", "entity_type_embeddings"], "entity_start"),
        ("plain", [], "cls"),
    ],
)
def test_input_modes_are_saved_and_build_only_their_tables(tmp_path, tiny_bert_dir, small_data, mode, tables, pooling):
    out = tmp_path / mode
    train(tiny_bert_dir, small_data, out, "--input-mode", mode)
    config = json.loads((out / "config.json").read_text())
    assert (config["input_mode"], config["classifier_pooling"]) == (mode, pooling)
    weights = load_file(out / "model.safetensors")
    assert sorted(key.split(".")[2] for key in weights if "entity_" in key) == tables
    assert all(torch.count_nonzero(weights[f"bert.embeddings.{table}.weight"]) > 0 for table in tables)
    assert json.loads((out / "eval_results.json").read_text())["input_mode"] == mode


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


def test_ddp_two_cpu_processes_report_the_saved_models_metrics(tmp_path, tiny_bert_dir, small_data):
    out = tmp_path / "ddp"
    launcher = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29731")
    # Three epochs, so that the best epoch is loaded back at the end from the checkpoint folder all ranks share.
    train(tiny_bert_dir, small_data, out, "--epochs", "3", "--learning-rate", "1e-3", launcher=launcher, steps=None)
    results = json.loads((out / "eval_results.json").read_text())
    assert results["world_size"] == 2
    log = json.loads((out / "training_log.json").read_text())
    assert len([entry for entry in log if "eval_micro_f1" in entry]) == 3
    assert not (tmp_path / ".ddp.checkpoints").exists()
    evaluated = run_script(
        [sys.executable, "scripts/evaluate.py", "--model", str(out), "--data-file", str(small_data["dev"])]
    )
    metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
    for name in ("micro_f1", "auprc", "accuracy"):
        assert abs(metrics[name] - results[name]) < 1e-6, (name, metrics[name], results[name])


def test_ddp_all_pairs_training_runs_both_phases_on_every_rank(tmp_path, tiny_bert_dir, small_data):
    out = tmp_path / "ddp-all-pairs"
    launcher = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29732")
    train(
        tiny_bert_dir, small_data, out, "--pair-encoding", "all_pairs", "--per-pair-epochs", "1", "--epochs", "1",
        launcher=launcher, steps=None,
    )  # fmt: skip
    results = json.loads((out / "eval_results.json").read_text())
    assert results["world_size"] == 2 and results["pair_encoding"] == "all_pairs"
    log = json.loads((out / "training_log.json").read_text())
    assert [entry["pair_encoding"] for entry in log if "eval_micro_f1" in entry] == ["per_pair", "all_pairs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp-all-pairs"]


def test_lora_trains_the_entity_tables_and_writes_a_merged_folder(tmp_path, tiny_bert_dir, small_data):
    out = tmp_path / "lora"
    train(tiny_bert_dir, small_data, out, "--lora-rank", "4")
    weights = load_file(out / "model.safetensors")
    assert torch.count_nonzero(weights["bert.embeddings.entity_type_embeddings.weight"]) > 0
    assert not [key for key in weights if "lora" in key or "modules_to_save" in key or "base_model" in key]
    assert not (out / "adapter_config.json").exists()
    assert json.loads((out / "config.json").read_text())["architectures"] == ["TypedBertForSequenceClassification"]


def test_continuing_from_a_typed_bert_checkpoint_keeps_its_settings_and_head(tmp_path, tiny_bert_dir, small_data):
    first = tmp_path / "first"
    train(tiny_bert_dir, small_data, first, "--input-mode", "typed-markers", "--entity-fusion", "mean")
    second = tmp_path / "second"
    train(first, small_data, second, "--learning-rate", "0", "--entity-learning-rate", "0")
    a, b = (json.loads((folder / "config.json").read_text()) for folder in (first, second))
    for key in ("input_mode", "entity_fusion", "classifier_pooling", "id2label"):
        assert a[key] == b[key], key
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert all(torch.equal(a[key], b[key]) for key in a if key.startswith("classifier."))
    assert json.loads((second / "eval_results.json").read_text())["input_mode"] == "typed-markers"


def test_all_pairs_training_trains_on_texts_and_reports_what_evaluate_gives(tmp_path, tiny_bert_dir, small_data):
    out = tmp_path / "all-pairs"
    train(
        tiny_bert_dir, small_data, out, "--pair-encoding", "all_pairs", "--epochs", "2", "--per-pair-epochs", "0",
        steps=None,
    )  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["pair_encoding"] == "all_pairs"
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_examples"] == 60 and results["pair_encoding"] == "all_pairs"
    texts = {json.loads(line)["text"] for line in small_data["train"].read_text().splitlines()}
    assert results["train_steps"] == 2 * -(-len(texts) // 8)  # a step is 8 texts with all their pairs
    evaluated = run_script(
        [sys.executable, "scripts/evaluate.py", "--model", str(out), "--data-file", str(small_data["dev"])]
    )
    metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
    for name in ("micro_f1", "auprc", "accuracy"):
        assert abs(metrics[name] - results[name]) < 1e-6, name


def test_all_pairs_training_starts_with_per_pair_epochs(tmp_path, tiny_bert_dir, small_data):
    out = tmp_path / "all-pairs"
    train(
        tiny_bert_dir, small_data, out, "--pair-encoding", "all_pairs", "--per-pair-epochs", "1", "--epochs", "1",
        steps=None,
    )  # fmt: skip
    assert json.loads((out / "config.json").read_text())["pair_encoding"] == "all_pairs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all-pairs"]  # the per-pair phase's folder is gone
    log = json.loads((out / "training_log.json").read_text())
    phases = [entry["pair_encoding"] for entry in log]
    assert phases == sorted(phases, reverse=True) and set(phases) == {"per_pair", "all_pairs"}
    per_pair_steps = max(entry["step"] for entry in log if entry["pair_encoding"] == "per_pair")
    texts = {json.loads(line)["text"] for line in small_data["train"].read_text().splitlines()}
    results = json.loads((out / "eval_results.json").read_text())
    assert results["train_steps"] == log[-1]["step"] == per_pair_steps + -(-len(texts) // 8)  # 1 all-pairs epoch
    assert [entry["epoch"] for entry in log if "eval_micro_f1" in entry] == [1.0, 2.0]
    assert results["args"]["base_model"] == str(tiny_bert_dir) and results["args"]["per_pair_epochs"] == 1
    assert results["args"]["all_pairs_learning_rate"] == 5e-5 and results["pair_encoding"] == "all_pairs"


def test_per_pair_epochs_need_all_pairs(tmp_path, tiny_bert_dir, small_data):
    with pytest.raises(AssertionError, match="--per-pair-epochs needs --pair-encoding all_pairs"):
        train(tiny_bert_dir, small_data, tmp_path / "out", "--per-pair-epochs", "1")
