"""Entity-list files through the commands: evaluate scores them as the equivalent pair file, predict writes one line
per input line for both line forms."""

from __future__ import annotations

import json
import sys

import pytest
from transformers import pipeline

from tests.conftest import SHARED, run_script, save_tiny_classifier
from typed_bert.data import load_relations, texts_with_entities

pytestmark = pytest.mark.slow

LABELS = ["no_relation", "Kill", "Live_In", "Located_In", "OrgBased_In", "Work_For"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    entity_types = ["O", "Loc", "Org", "Other", "Peop"]
    return save_tiny_classifier(tmp_path_factory.mktemp("model"), entity_types, LABELS)


@pytest.fixture(scope="module")
def dev_files(tmp_path_factory):
    """The first 12 CoNLL04 dev texts whose every ordered pair is in the file: as pairs, and as entity lists."""
    groups = [
        group
        for group in texts_with_entities(load_relations(SHARED / "data" / "conll04" / "dev.jsonl"))
        if len(group["relations"]) == len(group["entities"]) * (len(group["entities"]) - 1)
    ][:12]
    lines = (SHARED / "data" / "conll04" / "dev.jsonl").read_text().splitlines()
    folder = tmp_path_factory.mktemp("dev")
    pairs, texts = folder / "pairs.jsonl", folder / "texts.jsonl"
    pairs.write_text("".join(lines[number - 1] + "\n" for group in groups for number in group["lines"]))
    texts.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"text-{index}",
                    "text": group["text"],
                    "entities": group["entities"],
                    "relations": [r for r in group["relations"] if r["label"] != "no_relation"],
                }
            )
            + "\n"
            for index, group in enumerate(groups)
        )
    )
    return pairs, texts


def test_evaluate_scores_an_entity_list_file_as_the_equivalent_pair_file(model_dir, dev_files):
    scores = []
    for path in dev_files:
        command = [sys.executable, "scripts/evaluate.py", "--model", str(model_dir), "--data-file", str(path)]
        result = run_script(command)
        scores.append(json.loads(result.stdout.strip().splitlines()[-1]))
    pairs, texts = scores
    assert pairs["num_examples"] == texts["num_examples"] > 12
    for name in ("micro_f1", "micro_precision", "micro_recall", "auprc", "accuracy"):
        assert texts[name] == pytest.approx(pairs[name], abs=1e-6), name
    assert texts["per_label"] == pairs["per_label"]
    assert 0 < pairs["auprc"] < 1


def test_predict_writes_one_line_per_input_line_for_both_forms(tmp_path, model_dir, dev_files):
    pair_line = dev_files[0].read_text().splitlines()[0]
    text_lines = dev_files[1].read_text().splitlines()[:2]
    source = tmp_path / "mixed.jsonl"
    source.write_text("\n".join([text_lines[0], pair_line, text_lines[1]]) + "\n")
    out = tmp_path / "predictions.jsonl"
    run_script(
        [
            sys.executable,
            "scripts/predict.py",
            "--model",
            str(model_dir),
            "--input",
            str(source),
            "--output",
            str(out),
            "--keep-no-relation",
            "--quiet",
            "--dtype",
            "fp32",  # the default, auto, runs bf16 weights where the CPU has bf16 units
        ]  # fmt: skip
    )
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(written) == 3
    classify = pipeline("relation-classification", model=str(model_dir), trust_remote_code=True)
    for line, output in zip(source.read_text().splitlines(), written, strict=True):
        example = json.loads(line)
        assert {k: v for k, v in output.items() if k != "prediction"} == example
        expected = classify(example, keep_no_relation=True)
        if "entities" in example:
            n = len(example["entities"])
            assert len(output["prediction"]) == n * (n - 1)
            assert [r["label"] for r in output["prediction"]] == [r["label"] for r in expected]
            assert [r["score"] for r in output["prediction"]] == pytest.approx([r["score"] for r in expected], abs=1e-5)
        else:
            assert output["prediction"]["label"] == expected["label"]
