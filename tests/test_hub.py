"""Push to the local Hub endpoint with the real huggingface_hub client, reload with transformers in a clean
process, pipeline from the Hub, refusals, and an interrupted push."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from modeling_typed_bert import TypedBertForSequenceClassification
from tests.conftest import REPO_ROOT, hub_env, minilm_path, run_isolated, save_tiny_classifier

pytestmark = pytest.mark.remote_code


RELOAD = """
import json, torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, pipeline
repo, revision = {repo!r}, {revision!r}
inputs = load_file({inputs!r})
model = AutoModelForSequenceClassification.from_pretrained(repo, trust_remote_code=True, revision=revision).eval()
with torch.no_grad():
    logits = model(**inputs).logits
save_file({{"logits": logits.contiguous()}}, {outputs!r})
classify = pipeline("relation-classification", model=repo, trust_remote_code=True, revision=revision)
example = {{"text": "Bill Gates founded Microsoft.", "subject": {{"start": 0, "end": 10, "type": "PER"}},
           "object": {{"start": 19, "end": 28, "type": "ORG"}}}}
single = classify(example)
top = classify([example, example], top_k=2)
print(json.dumps({{"module": type(model).__module__, "pipeline": type(classify).__name__, "single": single,
                   "top": top}}))
"""


@pytest.fixture
def checkpoint(tmp_path):
    """A tiny trained-looking TypedBert classifier folder with MiniLM's tokenizer, code files and no eval results."""
    return save_tiny_classifier(tmp_path / "checkpoint")


def push(folder, server, *extra, check=True) -> subprocess.CompletedProcess:
    import os

    result = subprocess.run(
        [sys.executable, "scripts/push.py", "--model", str(folder), "--repo-id", "org/typed-bert", *extra],
        cwd=REPO_ROOT,
        env={**os.environ, **hub_env(server)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"push failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def head_commit(server, revision="main") -> str:
    url = f"{server.endpoint}/api/models/org/typed-bert/revision/{revision}"
    with urllib.request.urlopen(url) as response:
        return json.load(response)["sha"]


def test_push_then_reload_in_clean_process_gives_identical_logits(tmp_path, local_hub, checkpoint):
    from transformers import AutoTokenizer
    from typed_bert.hub.push import sample_inputs

    result = json.loads(push(checkpoint, local_hub).stdout.strip().splitlines()[-1])
    assert result["max_abs_difference"] == 0.0
    assert result["loaded_from"].startswith("transformers_modules.org.typed")
    assert result["tag"] == "v1"
    # transformers 4.x also saves vocab.txt and special_tokens_map.json with the tokenizer.
    assert set(result["files"]) - {"vocab.txt", "special_tokens_map.json"} == {
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "configuration_typed_bert.py",
        "modeling_typed_bert.py",
        "encoding_typed_bert.py",
        "pipeline_typed_bert.py",
    }
    assert head_commit(local_hub) == result["commit"] == head_commit(local_hub, "v1")

    inputs = sample_inputs(checkpoint, AutoTokenizer.from_pretrained(checkpoint))
    save_file(inputs, tmp_path / "inputs.safetensors")
    report = run_isolated(
        RELOAD.format(
            repo="org/typed-bert",
            revision="v1",
            inputs=str(tmp_path / "inputs.safetensors"),
            outputs=str(tmp_path / "out.safetensors"),
        ),
        cwd=tmp_path,
        env={**hub_env(local_hub), "HF_HOME": str(tmp_path / "hf-home")},
    )
    assert report["module"].startswith("transformers_modules.")
    assert report["pipeline"] == "RelationClassificationPipeline"
    assert report["single"]["label"] in {"no_relation", "founded_by", "works_for"}
    assert 0 < report["single"]["score"] <= 1
    assert [len(row) for row in report["top"]] == [2, 2]
    local = TypedBertForSequenceClassification.from_pretrained(checkpoint).eval()
    with torch.no_grad():
        assert torch.equal(load_file(tmp_path / "out.safetensors")["logits"], local(**inputs).logits)

    card = (checkpoint / "README.md").read_text()
    assert "library_name: transformers" in card and "custom_code" in card and "relation-extraction" in card
    assert 'trust_remote_code=True, revision="v1"' in card

    second = json.loads(push(checkpoint, local_hub, "--revision", "dev").stdout.strip().splitlines()[-1])
    assert second["tag"] == "v2" and head_commit(local_hub, "dev") == second["commit"]
    assert head_commit(local_hub) == result["commit"]  # main untouched by a push to another branch


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "modeling_typed_bert.py").unlink(), "code files missing"),
        (lambda f: (f / "pipeline_typed_bert.py").unlink(), "code files missing: ['pipeline_typed_bert.py']"),
        (lambda f: (f / "pytorch_model.bin").write_bytes(b"x"), "pickle files ['pytorch_model.bin']"),
        (
            lambda f: (f / "config.json").write_text(
                json.dumps({k: v for k, v in json.loads((f / "config.json").read_text()).items() if k != "auto_map"})
            ),
            "auto_map lacks",
        ),
    ],
)
def test_push_refuses_unpublishable_folders(local_hub, checkpoint, damage, message):
    damage(checkpoint)
    result = push(checkpoint, local_hub, check=False)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_interrupted_push_leaves_previous_commit_and_retry_succeeds(local_hub, checkpoint):
    first = json.loads(push(checkpoint, local_hub, "--no-verify").stdout.strip().splitlines()[-1])
    model = TypedBertForSequenceClassification.from_pretrained(checkpoint)
    with torch.no_grad():
        model.bert.embeddings.entity_type_embeddings.weight[1:].add_(1.0)
    model.save_pretrained(checkpoint)

    local_hub.state.drop_lfs_uploads = 1000  # every attempt of the client's retries dies mid-upload
    failed = push(checkpoint, local_hub, "--no-verify", check=False)
    assert failed.returncode != 0
    assert head_commit(local_hub) == first["commit"]

    local_hub.state.drop_lfs_uploads = 0
    retried = json.loads(push(checkpoint, local_hub).stdout.strip().splitlines()[-1])
    assert retried["commit"] != first["commit"] and head_commit(local_hub) == retried["commit"]
    assert retried["max_abs_difference"] == 0.0


@pytest.mark.slow
def test_train_push_pull_round_trip_is_bitwise(tmp_path, local_hub, tiny_bert_dir, small_data):
    import os

    from transformers import AutoTokenizer
    from typed_bert.hub.push import sample_inputs

    from tests.conftest import train_tiny

    out = tmp_path / "trained"
    train_tiny(tiny_bert_dir, small_data, out)
    result = json.loads(push(out, local_hub).stdout.strip().splitlines()[-1])
    assert result["max_abs_difference"] == 0.0
    assert not [name for name in result["files"] if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert "eval_results.json" in result["files"]

    inputs = sample_inputs(out, AutoTokenizer.from_pretrained(out))
    save_file(inputs, tmp_path / "inputs.safetensors")
    env = {**hub_env(local_hub), "HF_HOME": str(tmp_path / "hf-home")}
    run_isolated(
        RELOAD.replace('"PER"', '"Peop"')
        .replace('"ORG"', '"Org"')
        .format(
            repo="org/typed-bert",
            revision=result["commit"],
            inputs=str(tmp_path / "inputs.safetensors"),
            outputs=str(tmp_path / "out.safetensors"),
        ),
        cwd=tmp_path,
        env=env,
    )
    local = TypedBertForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        assert torch.equal(load_file(tmp_path / "out.safetensors")["logits"], local(**inputs).logits)

    examples = tmp_path / "examples.jsonl"
    examples.write_text(
        json.dumps(
            {
                "id": "a",
                "text": "John Smith works for Acme Corp.",
                "subject": {"start": 0, "end": 10, "type": "Peop"},
                "object": {"start": 21, "end": 31, "type": "Org"},
            }
        )
        + "\n"
    )
    predicted = subprocess.run(
        [sys.executable, "scripts/predict.py", "--model", "org/typed-bert", "--input", str(examples), "--top-k", "2"],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    row = json.loads(predicted.stdout.strip().splitlines()[-1])
    assert row["id"] == "a" and len(row["prediction"]) == 2
    labels = json.loads((out / "config.json").read_text())["label2id"]
    assert all(p["label"] in labels for p in row["prediction"])


def test_push_of_a_base_encoder_publishes_card_tag_and_verifies_hidden_states(tmp_path, local_hub):
    from typed_bert.hub.export import convert_checkpoint

    convert_checkpoint(str(minilm_path()), ["PER", "ORG"], tmp_path / "encoder")
    result = json.loads(push(tmp_path / "encoder", local_hub).stdout.strip().splitlines()[-1])
    assert result["tag"] == "v1" and result["verified_with"] == "AutoModel"
    assert result["max_abs_difference"] == 0.0
    card = (tmp_path / "encoder" / "README.md").read_text()
    assert "pipeline_tag: feature-extraction" in card and "AutoModel.from_pretrained" in card
    assert "## Labels" not in card and "github.com" not in card


@pytest.mark.slow
def test_a_final_fit_pushed_with_the_command_claims_no_held_out_results_on_the_hub(tmp_path, local_hub, tiny_bert_dir,
                                                                                   small_data):  # fmt: skip
    """`train --final-fit` then `typed-bert push`, which writes the card again for its tag: the card on the Hub says the
    dev scores are not held out and its metadata indexes no results (the Hub would show them as validation scores)."""
    from huggingface_hub import hf_hub_download

    from tests.conftest import HUB_TOKEN, train_tiny

    out = tmp_path / "final"
    train_tiny(tiny_bert_dir, small_data, out, "--final-fit", "--epochs", "1", steps=None)
    result = json.loads(push(out, local_hub).stdout.strip().splitlines()[-1])
    card = hf_hub_download("org/typed-bert", "README.md", revision=result["commit"], endpoint=local_hub.endpoint,
                           token=HUB_TOKEN, cache_dir=tmp_path / "cache")  # fmt: skip
    text = " ".join(Path(card).read_text(encoding="utf-8").split())
    assert "model-index" not in text and "which the model was trained on too: these are not held-out scores" in text
    assert f'revision="{result["tag"]}"' in text
