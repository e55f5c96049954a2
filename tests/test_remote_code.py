"""Save → load through the Auto classes with trust_remote_code=True in a process that cannot import the checkout."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from modeling_typed_bert import TypedBertForSequenceClassification, TypedBertModel
from tests.conftest import run_isolated

pytestmark = pytest.mark.remote_code

LOAD_AND_RUN = """
import json, sys, torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

folder, inputs_file, outputs_file = {folder!r}, {inputs!r}, {outputs!r}
inputs = load_file(inputs_file)
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
classifier = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
with torch.no_grad():
    hidden = base(**inputs).last_hidden_state
    logits = classifier(**inputs).logits
save_file({{"hidden": hidden.contiguous(), "logits": logits.contiguous()}}, outputs_file)
print(json.dumps({{
    "classes": [type(config).__module__, type(base).__module__, type(classifier).__module__],
    "names": [type(config).__name__, type(base).__name__, type(classifier).__name__],
    "entity_types": config.entity_types,
    "base_table_nonzero": int(torch.count_nonzero(base.embeddings.entity_type_embeddings.weight)),
}}))
"""


@pytest.mark.parametrize("saved_by", ["classifier", "base_model"])
def test_auto_classes_load_saved_folder_in_clean_process(tmp_path, config, batch, saved_by):
    torch.manual_seed(0)
    classifier = TypedBertForSequenceClassification(config).eval()
    with torch.no_grad():
        classifier.bert.embeddings.entity_type_embeddings.weight[1:].normal_()
        classifier.bert.embeddings.entity_role_embeddings.weight[1:].normal_()
    folder = tmp_path / "checkpoint"
    model_to_save = classifier if saved_by == "classifier" else classifier.bert
    model_to_save.save_pretrained(folder)

    saved_config = json.loads((folder / "config.json").read_text())
    assert saved_config["auto_map"] == {
        "AutoConfig": "configuration_typed_bert.TypedBertConfig",
        "AutoModel": "modeling_typed_bert.TypedBertModel",
        "AutoModelForSequenceClassification": "modeling_typed_bert.TypedBertForSequenceClassification",
        "AutoModelForTokenClassification": "modeling_typed_bert.TypedBertForTokenClassification",
    }
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "configuration_typed_bert.py",
        "encoding_typed_bert.py",
        "model.safetensors",
        "modeling_typed_bert.py",
        "pipeline_typed_bert.py",
    ]

    save_file(batch, tmp_path / "inputs.safetensors")
    report = run_isolated(
        LOAD_AND_RUN.format(
            folder=str(folder), inputs=str(tmp_path / "inputs.safetensors"), outputs=str(tmp_path / "out.safetensors")
        ),
        cwd=tmp_path,
    )
    assert report["names"] == ["TypedBertConfig", "TypedBertModel", "TypedBertForSequenceClassification"]
    assert all(module.startswith("transformers_modules.") for module in report["classes"]), report["classes"]
    assert report["entity_types"] == config.entity_types
    assert report["base_table_nonzero"] > 0

    outputs = load_file(tmp_path / "out.safetensors")
    with torch.no_grad():
        expected_hidden = classifier.bert(**batch).last_hidden_state
        expected_logits = classifier(**batch).logits
    assert torch.equal(outputs["hidden"], expected_hidden)
    if saved_by == "classifier":
        assert torch.equal(outputs["logits"], expected_logits)


def test_local_auto_classes_resolve_without_remote_code(tmp_path, config):
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    from typed_bert import register_typed_bert

    register_typed_bert()
    TypedBertModel(config).save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)).__name__ == "TypedBertConfig"
    assert type(AutoModel.from_pretrained(tmp_path)) is TypedBertModel
    assert type(AutoModelForSequenceClassification.from_pretrained(tmp_path)) is TypedBertForSequenceClassification
