"""Training on a tiny random BERT and a slice of CoNLL04: the command's output folder, determinism, modes, DDP,
LoRA; the library's `train` / `write_output`, the sampler's epoch length, tables started from their names."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import load_file
from typed_bert.hub.export import CODE_FILES

from modeling_typed_bert import TYPED_BERT_AUTO_MAP
from tests.conftest import entity_slices, run_script
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
    assert set(config["auto_map"]) == set(TYPED_BERT_AUTO_MAP)
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


@pytest.mark.parametrize("pair_encoding", ["per_pair", "per_subject"])
def test_ddp_two_cpu_processes_report_the_saved_models_metrics(tmp_path, tiny_bert_dir, small_data, pair_encoding):
    out = tmp_path / "ddp"
    port = {"per_pair": "29731", "per_subject": "29733"}[pair_encoding]
    launcher = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port)
    # Three epochs, so that the best epoch is loaded back at the end from the checkpoint folder all ranks share.
    train(tiny_bert_dir, small_data, out, "--epochs", "3", "--learning-rate", "1e-3", "--pair-encoding", pair_encoding,
          launcher=launcher, steps=None)  # fmt: skip
    results = json.loads((out / "eval_results.json").read_text())
    assert results["world_size"] == 2 and results["pair_encoding"] == pair_encoding
    log = json.loads((out / "training_log.json").read_text())
    assert len([entry for entry in log if "eval_micro_f1" in entry]) == 3
    assert not (tmp_path / ".ddp.checkpoints").exists()
    evaluated = run_script(
        [sys.executable, "scripts/evaluate.py", "--model", str(out), "--data-file", str(small_data["dev"])]
    )
    metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
    for name in ("micro_f1", "auprc", "accuracy"):
        assert abs(metrics[name] - results[name]) < 1e-6, (name, metrics[name], results[name])


def test_train_entities_under_torchrun_writes_one_folder_from_rank_zero(tmp_path, tiny_bert_dir):
    """Two CPU processes (gloo): both train, rank 0 alone writes and scores OUT and prints its record, and both
    leave the process group, so neither aborts at exit."""
    data = entity_slices(tmp_path / "data", 40, 20)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29735"]
    trained = run_script([*launcher, "scripts/train_entities.py", "--base-model", str(tiny_bert_dir), "--train-file",
                          str(data["train"]), "--validation-file", str(data["dev"]), "--output-dir",
                          str(tmp_path / "ner"), "--epochs", "2"])  # fmt: skip
    out = tmp_path / "ner"
    printed = [line for line in trained.stdout.splitlines() if line.startswith('{"')]  # the Trainer logs dicts
    assert len(printed) == 1 and json.loads(printed[0]) == json.loads((out / "eval_results.json").read_text())
    assert {"model.safetensors", "config.json", "tokenizer.json", *CODE_FILES} <= {p.name for p in out.iterdir()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "ner"]  # no staging folder left beside it


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
    train(tiny_bert_dir, small_data, first, "--input-mode", "typed-markers")
    second = tmp_path / "second"
    train(first, small_data, second, "--learning-rate", "0", "--entity-learning-rate", "0")
    a, b = (json.loads((folder / "config.json").read_text()) for folder in (first, second))
    for key in ("input_mode", "classifier_pooling", "id2label"):
        assert a[key] == b[key], key
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert all(torch.equal(a[key], b[key]) for key in a if key.startswith("classifier."))
    assert json.loads((second / "eval_results.json").read_text())["input_mode"] == "typed-markers"


def test_train_returns_its_result_in_memory_and_write_output_writes_the_folder(tmp_path, tiny_bert_dir, small_data):
    """The library path: settings as data, `train` returns the model and the record, `write_output` writes OUT.
    The steps and the warm-up come from the sampler: 1 epoch = ceil(len(sampler) / batch) steps."""
    from typed_bert.trainer import NegativeSubsamplingSampler
    from typed_bert.training import TrainingSettings, train, write_output

    settings = TrainingSettings(
        base_model=str(tiny_bert_dir), train_file=str(small_data["train"]), validation_file=str(small_data["dev"]),
        epochs=1, batch_size=8, precision="fp32",
    )  # fmt: skip
    result = train(settings, tmp_path / "checkpoints")
    assert result.settings.input_mode == "markers+embeddings" and result.settings.classifier_pooling == "entity_start"
    labels = [[result.model.config.label2id[label]] for label in load_labels(small_data["train"])]  # a pair each
    sampler = NegativeSubsamplingSampler(labels, [1] * len(labels), 8, 3.0, 0, seed=42)
    assert result.steps == -(-len(sampler) // 8)
    assert result.log_history and not (tmp_path / "checkpoints").exists()
    results = write_output(result, tmp_path / "out")
    assert results["train_steps"] == result.steps and results["settings"]["epochs"] == 1
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "README.md").is_file()


def load_labels(path) -> list[str]:
    return [json.loads(line)["label"] for line in path.read_text().splitlines() if line.strip()]


def test_entity_init_names_starts_the_tables_from_their_names(tmp_path, tiny_bert_dir):
    """`--entity-init names`: each type row is half the mean word vector of its name's word pieces, the role rows
    those of 'subject' and 'object'; row 0 stays zero; tables that are already trained are left alone."""
    from transformers import AutoTokenizer

    from tests.conftest import save_tiny_classifier
    from typed_bert.training import init_from_names, readable_name

    assert readable_name("OtherScientificTerm") == "other scientific term"
    assert readable_name("per_org-x") == "per org x" and readable_name("LOC") == "loc"
    from modeling_typed_bert import TypedBertForSequenceClassification

    folder = save_tiny_classifier(tmp_path / "m", ("O", "Peop", "OtherScientificTerm"), trained_tables=False)
    model = TypedBertForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert init_from_names(model, tokenizer) == ["entity_type_embeddings", "entity_role_embeddings"]
    words = model.get_input_embeddings().weight
    types = model.bert.embeddings.entity_type_embeddings.weight
    roles = model.bert.embeddings.entity_role_embeddings.weight
    for row, name in ((2, "other scientific term"), (1, "peop")):
        ids = tokenizer(name, add_special_tokens=False)["input_ids"]
        torch.testing.assert_close(types[row], 0.5 * words[ids].mean(0))
    subject = tokenizer("subject", add_special_tokens=False)["input_ids"]
    torch.testing.assert_close(roles[1], 0.5 * words[subject].mean(0))
    assert not types[0].any() and not roles[0].any()
    assert init_from_names(model, tokenizer) == []  # trained (non-zero) tables are kept


def test_patience_stops_when_dev_micro_f1_stops_improving(tmp_path, tiny_bert_dir, small_data):
    """With nothing learned (rates 0) dev micro-F1 never improves on epoch 1: --patience 1 stops after epoch 2 of 6."""
    out = tmp_path / "patience"
    train(tiny_bert_dir, small_data, out, "--epochs", "6", "--patience", "1", "--learning-rate", "0",
          "--entity-learning-rate", "0", steps=None)  # fmt: skip
    log = json.loads((out / "training_log.json").read_text())
    assert [entry["epoch"] for entry in log if "eval_micro_f1" in entry] == [1.0, 2.0]


def test_the_default_input_mode_applies_to_bases_and_converted_encoders_not_to_trained_checkpoints():
    from transformers import BertConfig

    from configuration_typed_bert import TypedBertConfig
    from typed_bert.training import TrainingSettings, resolved_settings

    settings = TrainingSettings(base_model="b", train_file="t", validation_file="v")
    encoder = TypedBertConfig(architectures=["TypedBertModel"], input_mode="typed-embeddings")
    trained = TypedBertConfig(architectures=["TypedBertForSequenceClassification"], input_mode="type-only")
    assert resolved_settings(settings, BertConfig()).input_mode == "markers+embeddings"
    assert resolved_settings(settings, encoder).input_mode == "markers+embeddings"
    assert resolved_settings(settings, trained).input_mode == "type-only"
    packed = TrainingSettings(base_model="b", train_file="t", validation_file="v", pair_encoding="per_subject")
    assert resolved_settings(packed, encoder).input_mode == "typed-embeddings"


def test_epochs_and_batch_size_default_by_pair_encoding_and_keep_what_is_given():
    from transformers import BertConfig

    from typed_bert.training import TrainingSettings, resolved_settings

    def resolved(**given):
        settings = TrainingSettings(base_model="b", train_file="t", validation_file="v", **given)
        return resolved_settings(settings, BertConfig())

    assert (resolved().epochs, resolved().batch_size) == (4.0, 32)
    packed = resolved(pair_encoding="per_subject")
    assert (packed.epochs, packed.batch_size) == (10.0, 16)
    assert (resolved(pair_encoding="per_subject", epochs=2, batch_size=8).epochs, 8) == (2, 8)


def test_each_training_option_is_a_settings_field_and_its_values_are_checked(tmp_path, monkeypatch):
    from typed_bert.commands.train import parse_args
    from typed_bert.errors import InputError

    monkeypatch.chdir(tmp_path)
    required = ["--base-model", "./base", "--train-file", "t.jsonl", "--validation-file", "v.jsonl",
                "--output-dir", "o"]  # fmt: skip
    settings, options = parse_args([*required, "--pooling", "cls", "--negative-weight", "2.5", "--language", "en", "de",
                                    "--strict", "--patience", "2"])  # fmt: skip
    assert (settings.base_model, settings.train_file) == (str(tmp_path / "base"), str(tmp_path / "t.jsonl"))
    assert (options.output_dir, options.overwrite) == (str(tmp_path / "o"), False)
    assert (settings.classifier_pooling, settings.negative_weight, settings.language) == ("cls", "2.5", ["en", "de"])
    assert settings.strict and settings.patience == 2 and settings.epochs is None
    assert parse_args(required)[0].negative_weight == "auto"
    for given, named in (("--negative-weight=abc", "negative_weight='abc'"), ("--patience=0", "patience=0"),
                         ("--epochs=0", "epochs=0"), ("--batch-size=0", "batch_size=0")):  # fmt: skip
        with pytest.raises(InputError, match=named):
            parse_args([*required, given])


def test_join_texts_trains_on_pseudo_documents_and_records_it(tmp_path, tiny_bert_dir, small_data):
    plain, joined = tmp_path / "plain", tmp_path / "joined"
    train(tiny_bert_dir, small_data, plain, "--pair-encoding", "per_subject", "--epochs", "1", steps=None)
    train(tiny_bert_dir, small_data, joined, "--pair-encoding", "per_subject", "--join-texts", "3", "--epochs", "1",
          steps=None)  # fmt: skip
    plain_results, joined_results = (json.loads((out / "eval_results.json").read_text()) for out in (plain, joined))
    assert joined_results["settings"]["join_texts"] == 3 and plain_results["settings"]["join_texts"] == 1
    # The pairs across joined texts are more no_relation examples (packed: more objects per subject's sequence).
    assert joined_results["train_pairs"] > 2 * plain_results["train_pairs"] == 2 * 160
    assert joined_results["num_examples"] == plain_results["num_examples"]  # dev is scored as it is


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"join_texts": 0}, "join_texts=0"),
        ({"join_texts": True}, "join_texts=True"),
        ({"join_texts": 2, "strict": True}, "--strict with --join-texts"),
        ({"final_fit": True, "patience": 2}, "--patience 2 with --final-fit"),
    ],
)
def test_join_texts_refuses_what_it_cannot_mean(given, named):
    from typed_bert.errors import InputError
    from typed_bert.training import TrainingSettings

    with pytest.raises(InputError, match=named):
        TrainingSettings(base_model="b", train_file="t", validation_file="v", **given)


def test_a_final_fit_trains_on_the_dev_file_too_keeps_the_last_epoch_and_says_so(tmp_path, tiny_bert_dir, small_data):
    """`--final-fit`: the 60 dev pairs are trained on after the 160 training pairs, nothing is evaluated or
    checkpointed during training, and the record and the card say the dev scores are not held out (no model-index
    entries for the Hub to show as validation results)."""
    out, held_out = tmp_path / "final", tmp_path / "held-out"
    train(tiny_bert_dir, small_data, out, "--final-fit", "--epochs", "1", steps=None)
    train(tiny_bert_dir, small_data, held_out, "--epochs", "1", steps=None)
    results, plain = (json.loads((folder / "eval_results.json").read_text()) for folder in (out, held_out))
    assert (results["final_fit"], plain["final_fit"]) == (True, False)
    assert (results["train_pairs"], plain["train_pairs"]) == (160 + 60, 160)
    assert results["train_steps"] > plain["train_steps"] and results["num_examples"] == plain["num_examples"] == 60
    assert not [entry for entry in json.loads((out / "training_log.json").read_text()) if "eval_micro_f1" in entry]
    card = " ".join((out / "README.md").read_text().split())
    assert "which the model was trained on too: these are not held-out scores" in card
    assert "model-index" not in card and "(a final fit: the epochs chosen on dev before" in card


def test_a_final_fit_of_the_entity_model_trains_on_the_dev_file_too(tmp_path, tiny_bert_dir):
    """`train-entities --final-fit`: 40 + 20 texts in batches of 16 are 4 steps an epoch (3 without), the last state
    is kept, and the record and the card say the dev scores are not held out."""
    data = entity_slices(tmp_path / "data", 40, 20)
    command = [sys.executable, "scripts/train_entities.py", "--base-model", str(tiny_bert_dir), "--train-file",
               str(data["train"]), "--validation-file", str(data["dev"]), "--epochs", "2"]  # fmt: skip
    run_script([*command, "--output-dir", str(tmp_path / "best")])
    run_script([*command, "--output-dir", str(tmp_path / "final"), "--final-fit"])
    best, final = (json.loads((tmp_path / name / "eval_results.json").read_text()) for name in ("best", "final"))
    assert (best["train_steps"], final["train_steps"]) == (6, 8)
    assert (best["final_fit"], final["final_fit"]) == (False, True)
    card = " ".join((tmp_path / "final" / "README.md").read_text().split())
    assert "on `train.jsonl` and `dev.jsonl`" in card and "not a held-out score" in card and "the last epoch" in card
