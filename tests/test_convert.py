"""Conversion of the real all-MiniLM-L6-v2 and of tiny checkpoints, and its error messages."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertModel
from typed_bert.hub.export import CODE_FILES, ConversionError, convert_checkpoint

from modeling_typed_bert import TYPED_BERT_AUTO_MAP
from tests.conftest import REPO_ROOT, minilm_path, run_isolated, run_script
from typed_bert.errors import InputError

pytestmark = pytest.mark.remote_code

SENTENCES = ["Son Heung-min's father is Son Woong-jung.", "Bill Gates founded Microsoft in Albuquerque."]

COMPARE = """
import json, torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
folder = {folder!r}
inputs = load_file({inputs!r})
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
with torch.no_grad():
    plain = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
    typed = model(**inputs).last_hidden_state
save_file({{"plain": plain.contiguous(), "typed": typed.contiguous()}}, {outputs!r})
classifier = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True, num_labels=6)
print(json.dumps({{"module": type(model).__module__, "num_labels": classifier.config.num_labels,
                   "logits_shape": list(classifier.eval()(**inputs).logits.shape)}}))
"""


@pytest.fixture(scope="module")
def converted_minilm(tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "minilm-typed"
    result = run_script(
        [
            sys.executable,
            "scripts/convert.py",
            "--base-model",
            str(minilm_path()),
            "--entity-types",
            "Peop,Org,Loc,Other",
            "--output-dir",
            str(out),
        ]
    )
    return out, json.loads(result.stdout.strip().splitlines()[-1])


def test_converted_minilm_reproduces_bert_hidden_states(converted_minilm, tmp_path):
    from transformers import AutoTokenizer

    out, report = converted_minilm
    assert report["max_abs_difference"] <= 1e-5
    assert sorted(report["new_weights"]) == [
        "embeddings.entity_role_embeddings.weight",
        "embeddings.entity_type_embeddings.weight",
    ]
    assert not [key for key in load_file(out / "model.safetensors") if "pooler" in key]  # entity_start: no pooler
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json", *CODE_FILES}
    assert not [p for p in out.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    config = json.loads((out / "config.json").read_text())
    assert config["entity_types"] == ["O", "Peop", "Org", "Loc", "Other"]
    assert set(config["auto_map"]) == set(TYPED_BERT_AUTO_MAP)

    tokenizer = AutoTokenizer.from_pretrained(out)
    inputs = dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    inputs.pop("token_type_ids")
    inputs["entity_type_ids"] = torch.zeros_like(inputs["input_ids"])
    inputs["entity_role_ids"] = torch.zeros_like(inputs["input_ids"])
    inputs["entity_type_ids"][:, 1:4] = 1
    inputs["entity_role_ids"][:, 1:4] = 1
    inputs["entity_type_ids"][:, 8:10] = 2
    inputs["entity_role_ids"][:, 8:10] = 2
    save_file(inputs, tmp_path / "inputs.safetensors")
    report = run_isolated(
        COMPARE.format(folder=str(out), inputs=str(tmp_path / "inputs.safetensors"), outputs=str(tmp_path / "o.st")),
        cwd=tmp_path,
    )
    assert report["module"].startswith("transformers_modules.")
    assert report["num_labels"] == 6 and report["logits_shape"] == [2, 6]
    outputs = load_file(tmp_path / "o.st")
    bert = BertModel.from_pretrained(minilm_path()).eval()
    with torch.no_grad():
        expected = bert(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
    mask = inputs["attention_mask"].bool()
    assert (outputs["plain"] - expected)[mask].abs().max() <= 1e-5
    assert (outputs["typed"] - expected)[mask].abs().max() <= 1e-5  # entity ids given, tables still zero


def test_labels_add_a_classifier_head(tmp_path):
    report = convert_checkpoint(
        str(minilm_path()), ["PER", "ORG"], tmp_path / "out", labels=["no_relation", "founded_by"]
    )
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["id2label"] == {"0": "no_relation", "1": "founded_by"}
    assert config["architectures"] == ["TypedBertForSequenceClassification"]
    assert any(key.startswith("classifier.") for key in report["new_weights"])
    assert "relation-classification" in config["custom_pipelines"]


def test_not_bert_is_refused(tmp_path):
    from transformers import DistilBertConfig, DistilBertModel

    DistilBertModel(DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=37)).save_pretrained(tmp_path / "d")
    message = "has model_type 'distilbert': DistilBERT has no segment embeddings.*; only BERT, RoBERTa"
    with pytest.raises(ConversionError, match=message):
        convert_checkpoint(str(tmp_path / "d"), ["PER"], tmp_path / "out")


def test_missing_folder_and_non_empty_output_are_refused(tmp_path):
    with pytest.raises(ConversionError, match="no such folder"):
        convert_checkpoint(str(tmp_path / "nope"), ["PER"], tmp_path / "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="exists and is not empty; pass --overwrite"):
        convert_checkpoint(str(minilm_path()), ["PER"], tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(("types", "message"), [([], "entity types are empty"), (["PER", "PER"], "duplicates")])
def test_bad_entity_types_are_refused(tmp_path, types, message):
    with pytest.raises(ConversionError, match=message):
        convert_checkpoint(str(minilm_path()), types, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_checkpoint_missing_encoder_weights_fails_loudly(tmp_path):
    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    BertModel(config).save_pretrained(tmp_path / "b")
    weights = load_file(tmp_path / "b" / "model.safetensors")
    weights = {k: v for k, v in weights.items() if "layer.1." not in k}
    save_file(weights, tmp_path / "b" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConversionError, match=r"weights not found \[.*encoder\.layer\.1\..*Nothing was written"):
        convert_checkpoint(str(tmp_path / "b"), ["PER"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_reports_errors_without_traceback(tmp_path):
    import subprocess

    result = subprocess.run(
        [
            sys.executable,
            "scripts/convert.py",
            "--base-model",
            str(tmp_path / "nope"),
            "--entity-types",
            "PER",
            "--output-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode != 0
    assert "error: --base-model" in result.stderr and "Traceback" not in result.stderr


def test_cli_verification_runs_the_folders_own_code(converted_minilm):
    _, report = converted_minilm
    assert report["verified_with"].startswith("transformers_modules.")
    assert report["max_abs_difference"] == 0.0


@pytest.fixture(scope="module")
def tiny_tokenizer_dir(tmp_path_factory):
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tokenizer")
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return folder


def tiny_bert_config(**overrides) -> BertConfig:
    return BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, **overrides
    )


@pytest.mark.parametrize("head", ["BertForMaskedLM", "BertForPreTraining", "BertForTokenClassification"])
def test_bert_saved_without_pooler_converts(tmp_path, tiny_tokenizer_dir, head):
    import shutil

    import transformers

    torch.manual_seed(0)
    getattr(transformers, head)(tiny_bert_config()).save_pretrained(tmp_path / "base")
    for file in tiny_tokenizer_dir.iterdir():
        shutil.copy(file, tmp_path / "base")
    assert not [key for key in load_file(tmp_path / "base" / "model.safetensors") if "pooler" in key] or head != (
        "BertForMaskedLM"
    )
    report = convert_checkpoint(str(tmp_path / "base"), ["PER", "ORG"], tmp_path / "out")
    assert report["max_abs_difference"] <= 1e-5
    assert not [key for key in report["new_weights"] if not key.startswith("embeddings.entity_")]


def test_fine_tuned_bert_classifier_keeps_its_classifier(tmp_path, tiny_tokenizer_dir):
    import shutil

    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    labels = {0: "no_relation", 1: "founded_by", 2: "works_for"}
    BertForSequenceClassification(tiny_bert_config(id2label=labels)).save_pretrained(tmp_path / "base")
    for file in tiny_tokenizer_dir.iterdir():
        shutil.copy(file, tmp_path / "base")
    report = convert_checkpoint(str(tmp_path / "base"), ["PER", "ORG"], tmp_path / "out")
    assert report["classifier_kept"] is True
    assert report["max_abs_difference"] <= 1e-5 and report["max_abs_logit_difference"] <= 1e-5
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["classifier_pooling"] == "cls" and config["id2label"]["1"] == "founded_by"
    assert config["architectures"] == ["TypedBertForSequenceClassification"]


def test_failed_check_writes_nothing_and_keeps_the_old_folder(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ConversionError, match=r"differs from .* \(tolerance -1.0\); nothing was written"):
        convert_checkpoint(str(minilm_path()), ["PER"], tmp_path / "out", overwrite=True, tolerance=-1.0)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
