"""ONNX export and ONNX Runtime inference: `typed-bert export --format onnx` checks each graph against PyTorch and
writes nothing when one disagrees; `typed-bert predict` and `onnx_pipeline` on the export give the PyTorch model's
entities, relations and labels; other commands refuse an export in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from transformers import pipeline

from encoding_typed_bert import MODEL_INPUT_NAMES, PACKED_INPUT_NAMES
from tests.conftest import REPO_ROOT, hub_env, save_tiny_classifier
from tests.test_word_shapes import _saved_shape_tagger
from typed_bert.entities import bundle_entity_model
from typed_bert.entity_heads import bio_labels

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ENTITY_TYPES = ["O", "PER", "ORG"]
TEXTS = [
    {"text": "Bill Gates founded Microsoft in Seattle.", "entities": [
        {"start": 0, "end": 10, "type": "PER"}, {"start": 19, "end": 28, "type": "ORG"}]},
    {"text": "Ada Lovelace worked with Charles Babbage at the Analytical Society and Cambridge.", "entities": [
        {"start": 0, "end": 12, "type": "PER"}, {"start": 25, "end": 40, "type": "PER"},
        {"start": 48, "end": 67, "type": "ORG"}, {"start": 72, "end": 81, "type": "ORG"}]},
]  # fmt: skip


def command(*args, cwd, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "typed_bert.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=900)  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A subject-packed tiny relation model with a word-shape entity model, exported with int8 graphs by the command,
    run from its folder with relative paths."""
    root = tmp_path_factory.mktemp("onnx")
    relations = save_tiny_classifier(root / "relations", ENTITY_TYPES, pair_encoding="per_subject")
    _, tagger = _saved_shape_tagger(root / "tagger", bio_labels(["PER", "ORG"]))
    bundle_entity_model(relations, tagger)
    (root / "check.jsonl").write_text("".join(json.dumps(text) + "\n" for text in TEXTS))
    result = command("export", "--format", "onnx", "--model", "relations", "--output-dir", "exported", "--quantize",
                     "int8", "--check-file", "check.jsonl", "--min-agreement", "0", cwd=root)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def test_export_writes_checked_graphs_for_both_models(exported):
    folder = exported / "exported"
    report = json.loads((folder / "export_report.json").read_text())
    for model in ("relations", "entities"):
        assert report[model]["fp32"]["max_logit_difference"] <= 1e-4 and report[model]["fp32"]["label_agreement"] == 1
        assert 0 <= report[model]["int8"]["label_agreement"] <= 1
    assert json.loads((folder / "config.json").read_text())["onnx"] == {
        "graphs": {"fp32": "model.onnx", "int8": "model.int8.onnx"},
        "input_names": list(PACKED_INPUT_NAMES),
    }
    entities = json.loads((folder / "entities" / "config.json").read_text())["onnx"]
    assert entities["input_names"] == ["input_ids", "attention_mask", "token_type_ids", "word_shape_ids"]
    assert not list(folder.rglob("*.safetensors"))  # no torch weights: the graphs hold them


def _labels(predictions: list) -> list:
    """What must be equal between runtimes: spans, types and labels (scores are compared with a tolerance)."""
    return [[(e["start"], e["end"], e["type"]) for e in p["entities"]]
            + [(r["subject"]["start"], r["object"]["start"], r["label"]) for r in p["relations"]]
            for p in predictions]  # fmt: skip


def test_predict_on_the_export_gives_what_the_pytorch_model_gives(exported):
    lines = [{"text": text["text"]} for text in TEXTS] + TEXTS
    (exported / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    outputs = {}
    for model in ("exported", "relations"):
        result = command("predict", "--model", model, "--input", "in.jsonl", "--output", f"{model}.jsonl", "--dtype",
                         "fp32", "--quiet", "--keep-no-relation", cwd=exported)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[model] = [json.loads(line)["prediction"] for line in (exported / f"{model}.jsonl").open()]
    onnx, torch_ = outputs["exported"], outputs["relations"]
    assert [p["entities"] for p in onnx[:2]] and _labels(onnx[:2]) == _labels(torch_[:2])
    assert [[(r["label"]) for r in p] for p in onnx[2:]] == [[(r["label"]) for r in p] for p in torch_[2:]]
    scores = [r["score"] for p in onnx[:2] for r in p["relations"]] + [r["score"] for p in onnx[2:] for r in p]
    expected = [r["score"] for p in torch_[:2] for r in p["relations"]] + [r["score"] for p in torch_[2:] for r in p]
    assert scores and max(abs(a - b) for a, b in zip(scores, expected, strict=True)) <= 1e-4


def test_a_per_pair_export_reads_a_list_and_a_generator_as_pytorch_does(tmp_path):
    from typed_bert.onnx_export import export_onnx
    from typed_bert.onnx_runtime import onnx_pipeline

    relations = save_tiny_classifier(tmp_path / "relations", ENTITY_TYPES)
    report = export_onnx(relations, tmp_path / "exported")
    assert report["relations"]["fp32"]["max_logit_difference"] <= 1e-4 and "entities" not in report
    config = json.loads((tmp_path / "exported" / "config.json").read_text())
    assert config["onnx"]["input_names"] == list(MODEL_INPUT_NAMES)
    reference = pipeline("relation-classification", model=str(relations), trust_remote_code=True)
    classify = onnx_pipeline(tmp_path / "exported")
    expected = [[r["label"] for r in p] for p in reference(TEXTS, keep_no_relation=True)]
    assert [[r["label"] for r in p] for p in classify(TEXTS, keep_no_relation=True)] == expected
    assert [[r["label"] for r in p] for p in classify((t for t in TEXTS), keep_no_relation=True)] == expected
    with pytest.raises(ValueError, match=r"has no int8 graph \(it has \['fp32'\]\); export it with .* --quantize int8"):
        onnx_pipeline(tmp_path / "exported", "int8")


def test_a_graph_that_disagrees_with_pytorch_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    from typed_bert import onnx_export

    relations = save_tiny_classifier(tmp_path / "relations", ENTITY_TYPES)
    monkeypatch.setattr(onnx_export, "MAX_LOGIT_DIFFERENCE", -1.0)  # any difference, even 0, is too much
    with pytest.raises(onnx_export.ExportError, match="logits differ from PyTorch's by .* nothing was written"):
        onnx_export.export_onnx(relations, tmp_path / "exported")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relations"]


def test_the_export_is_refused_in_one_line_where_a_pytorch_folder_is_expected(exported):
    data = exported / "pairs.jsonl"
    pair = {"text": "Bill Gates founded Microsoft.", "subject": {"start": 0, "end": 10, "type": "PER"},
            "object": {"start": 19, "end": 28, "type": "ORG"}, "label": "founded_by"}  # fmt: skip
    data.write_text(json.dumps(pair) + "\n")
    for args in (("evaluate", "--model", "exported", "--data-file", "pairs.jsonl"),
                 ("export", "--format", "onnx", "--model", "exported", "--output-dir", "again"),
                 ("train", "--base-model", "exported", "--train-file", "pairs.jsonl", "--validation-file",
                  "pairs.jsonl", "--output-dir", "trained")):  # fmt: skip
        result = command(*args, cwd=exported)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert (
            result.stderr.strip()
            .splitlines()[-1]
            .endswith(
                "exported: is an ONNX export (typed-bert export), which only typed-bert predict and push read; "
                "expected the PyTorch model folder it was exported from"
            )
        ), args
    result = command("export", "--format", "onnx", "--model", "relations", "--output-dir", "int8", "--quantize",
                     "int8", cwd=exported)  # fmt: skip
    assert result.returncode == 2 and "--quantize int8 needs --check-file" in result.stderr
    assert not (exported / "int8").exists() and not (exported / "again").exists()


def test_the_benchmark_times_each_graph_beside_pytorch(exported):
    result = command("benchmark", "--extraction", "relations", "check.jsonl", "--onnx", "exported", "--threads", "1",
                     cwd=exported)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])["results"]
    assert {"pytorch fp32, batch 16", "onnx runtime fp32, batch 16", "onnx runtime int8, batch 64"} <= set(results)
    assert results["onnx runtime fp32, batch 16"]["agreement_with_pytorch_fp32"] == 1.0
    assert results["onnx runtime fp32, batch 16"]["relations"] == results["pytorch fp32, batch 16"]["relations"] > 0


def test_without_the_extra_an_export_or_a_run_says_what_to_install(exported, monkeypatch):
    from typed_bert.errors import InputError
    from typed_bert.onnx_export import export_onnx
    from typed_bert.onnx_runtime import onnx_pipeline

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    message = r'^onnxruntime is not installed; expected pip install "typed-bert\[onnx\]"$'
    for call in (lambda: onnx_pipeline(exported / "exported"), lambda: export_onnx(exported / "relations", "x")):
        with pytest.raises(InputError, match=message):
            call()


def test_the_export_is_pushed_and_runs_from_the_hub_as_from_its_folder(exported, local_hub):
    """`typed-bert push` of an export: checked, uploaded, run back from the Hub through ONNX Runtime; then `predict`
    and `onnx_pipeline` from the repo id give what the folder gives."""
    env = hub_env(local_hub)
    result = command("push", "--model", "exported", "--repo-id", "org/typed-bert-onnx", cwd=exported, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "through typed_bert.onnx_runtime.onnx_pipeline" in result.stdout
    card = (exported / "exported" / "README.md").read_text()
    assert 'onnx_pipeline("org/typed-bert-onnx", revision="v1")' in card and "library_name: onnx" in card
    lines = [{"text": text["text"]} for text in TEXTS]
    (exported / "raw.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    found = {}
    for model, extra in (("exported", ()), ("org/typed-bert-onnx", ("--revision", "v1"))):
        result = command("predict", "--model", model, *extra, "--input", "raw.jsonl", "--output", "-", "--quiet",
                         "--onnx-graph", "int8", cwd=exported, env=env)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        found[model] = [json.loads(line)["prediction"] for line in result.stdout.splitlines() if line.startswith("{")]
    assert found["exported"] == found["org/typed-bert-onnx"] and len(found["exported"]) == 2
    assert all(prediction["entities"] for prediction in found["exported"])


PLAIN_UPLOAD = """
import json
from huggingface_hub import HfApi
from typed_bert.onnx_runtime import onnx_pipeline

api = HfApi()
api.create_repo("org/uploaded-onnx")
api.upload_folder(folder_path="exported", repo_id="org/uploaded-onnx")
texts = {texts!r}
print(json.dumps({{"hub": onnx_pipeline("org/uploaded-onnx")(texts), "folder": onnx_pipeline("exported")(texts)}}))
"""


def test_an_export_uploaded_with_huggingface_hub_runs_from_its_repo_id(exported, local_hub, tmp_path):
    """A user's own `upload_folder` of the export, then `onnx_pipeline(repo_id)`: the folder's results."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **hub_env(local_hub), "HF_HOME": str(tmp_path / "hf-home")}
    script = PLAIN_UPLOAD.format(texts=[text["text"] for text in TEXTS])
    result = subprocess.run([sys.executable, "-c", script], cwd=exported, env=env, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["hub"] == found["folder"] and len(found["hub"]) == 2 and found["hub"][0]["entities"]


def test_push_refuses_an_export_with_a_missing_graph_or_a_pickle(exported, tmp_path, local_hub):
    """Checked before anything is sent: the entity model's missing graph and a pickle are each named."""
    import shutil

    from huggingface_hub import HfApi

    folder = shutil.copytree(exported / "exported", tmp_path / "broken")
    entity_config = json.loads((folder / "entities" / "config.json").read_text())
    (folder / "entities" / entity_config["onnx"]["graphs"]["fp32"]).unlink()
    (folder / "optimizer.pt").write_bytes(b"x")
    result = command("push", "--model", "broken", "--repo-id", "org/broken-onnx", cwd=tmp_path,
                     env=hub_env(local_hub))  # fmt: skip
    assert result.returncode != 0
    assert "broken/entities: the graphs its config.json names are missing" in result.stderr
    assert "pickle files ['optimizer.pt']" in result.stderr
    assert not HfApi(endpoint=local_hub.endpoint, token=hub_env(local_hub)["HF_TOKEN"]).repo_exists("org/broken-onnx")
