"""Text in, entities and relations out: the entity model bundled in a relation model's folder, the pipeline on raw
text and on a foreign NER's entities, pushing both models, end-to-end scores, train-entities."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForTokenClassification, pipeline

from tests.conftest import (
    HUB_TOKEN,
    REPO_ROOT,
    entity_slices,
    hub_env,
    minilm_path,
    run_isolated,
    run_script,
    save_tiny_classifier,
    train_tiny,
)
from tests.test_standard_paths import TRAINER_PUSH
from typed_bert.entities import bundle_entity_model
from typed_bert.entity_heads import bio_labels, outermost, span_scores

pytestmark = pytest.mark.remote_code

ENTITY_TYPES = ["O", "PER", "ORG"]
TEXT = "Bill Gates founded Microsoft."


def save_tiny_recognizer(folder, tagged: str = "B-PER", entity_types=("PER", "ORG")):
    """A tiny token classifier that tags every token `tagged` (so every word is an entity), with MiniLM's tokenizer."""
    labels = bio_labels(entity_types)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=37, id2label=dict(enumerate(labels)),
                        label2id={label: i for i, label in enumerate(labels)})  # fmt: skip
    model = BertForTokenClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[labels.index(tagged)] = 10.0
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    folder = save_tiny_classifier(tmp_path_factory.mktemp("relations"), ENTITY_TYPES)
    bundle_entity_model(folder, save_tiny_recognizer(tmp_path_factory.mktemp("entities")))
    return folder


def test_a_plain_text_gives_entities_and_the_relations_among_them(bundled):
    classify = pipeline("relation-classification", model=str(bundled), trust_remote_code=True)
    result = classify(TEXT, keep_no_relation=True)
    assert [entity["text"] for entity in result["entities"]] == ["Bill", "Gates", "founded", "Microsoft", "."]
    assert all(entity["type"] == "PER" and 0 < entity["score"] <= 1 for entity in result["entities"])
    assert len(result["relations"]) == 5 * 4
    assert result["relations"][0]["subject"] == result["entities"][0]
    both = classify([TEXT, {"text": "Paul Allen"}], batch_size=4)
    assert [len(r["entities"]) for r in both] == [5, 2]
    # the relations are those of the same entities passed as a list
    given = classify({"text": TEXT, "entities": result["entities"]}, keep_no_relation=True)
    assert [(r["label"], round(r["score"], 5)) for r in given] == [
        (r["label"], round(r["score"], 5)) for r in result["relations"]
    ]


def test_bad_text_inputs_are_clear_errors(bundled, tmp_path):
    classify = pipeline("relation-classification", model=str(bundled), trust_remote_code=True)
    with pytest.raises(ValueError, match=r"text 0 is '  '; expected a non-empty string"):
        classify("  ")
    plain = pipeline(
        "relation-classification", model=str(save_tiny_classifier(tmp_path / "plain", ENTITY_TYPES)),
        trust_remote_code=True,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"has no entity model.*typed-bert push --model FOLDER --entity-model"):
        plain(TEXT)


def test_entities_from_a_foreign_ner_are_mapped_and_unknown_types_named(bundled):
    classify = pipeline("relation-classification", model=str(bundled), trust_remote_code=True)
    foreign = [
        {"entity_group": "PERSON", "start": 0, "end": 10, "word": "bill gates", "score": 0.99},
        {"entity_group": "COMPANY", "start": 19, "end": 28, "word": "microsoft", "score": 0.98},
        {"entity_group": "DATE", "start": 0, "end": 4, "word": "bill", "score": 0.5},
    ]
    mapping = {"PERSON": "PER", "COMPANY": "ORG"}
    with pytest.raises(ValueError, match=r"entity types \['DATE'\] are not among the model's \['PER', 'ORG'\]"):
        classify({"text": TEXT, "entities": foreign}, entity_type_map=mapping)
    with pytest.warns(UserWarning, match=r"left out 1 entities of types unknown to the model: \['DATE'\]"):
        relations = classify({"text": TEXT, "entities": foreign}, entity_type_map=mapping,
                             unknown_entity_types="skip", keep_no_relation=True)  # fmt: skip
    assert len(relations) == 2 and relations[0]["subject"]["type"] == "PER" and relations[0]["object"]["type"] == "ORG"
    ner = [{"entity": "B-PER", "start": 0, "end": 4}, {"entity": "B-ORG", "start": 19, "end": 28}]
    assert len(classify({"text": TEXT, "entities": ner}, keep_no_relation=True)) == 2


def test_bundling_refuses_an_entity_model_with_other_types(tmp_path):
    from typed_bert.errors import InputError

    folder = save_tiny_classifier(tmp_path / "relations", ENTITY_TYPES)
    recognizer = save_tiny_recognizer(tmp_path / "entities", "B-LOC", entity_types=("PER", "LOC"))
    with pytest.raises(InputError, match=r"entity types \['LOC'\] of the entity model are not among"):
        bundle_entity_model(folder, recognizer)


def test_nested_entities_and_span_scores():
    assert outermost([{"start": 0, "end": 10}, {"start": 0, "end": 4}, {"start": 12, "end": 14}])[1] == 1
    scores = span_scores([{(0, 1, "A"), (2, 3, "B")}], [{(0, 1, "A"), (2, 4, "B")}])
    assert scores["precision"] == scores["recall"] == scores["f1"] == 0.5


def test_push_publishes_both_models_and_the_hub_repo_extracts_from_text_in_a_clean_process(local_hub, tmp_path):
    folder = save_tiny_classifier(tmp_path / "relations", ENTITY_TYPES)
    recognizer = save_tiny_recognizer(tmp_path / "entities")
    env = hub_env(local_hub)
    run_script([sys.executable, "scripts/push.py", "--model", str(folder), "--repo-id", "org/e2e",
                "--entity-model", str(recognizer)], env=env)  # fmt: skip
    result = run_isolated(
        f"""
        import json
        from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline
        classify = pipeline("relation-classification", model="org/e2e", trust_remote_code=True, revision="v1")
        load = {{"subfolder": "entities", "revision": "v1"}}
        recognize = pipeline("token-classification", aggregation_strategy="simple",
                             model=AutoModelForTokenClassification.from_pretrained("org/e2e", **load),
                             tokenizer=AutoTokenizer.from_pretrained("org/e2e", **load))
        assert len(recognize({TEXT!r})) == 5  # the entity model alone, no custom code
        print(json.dumps(classify({TEXT!r})["entities"]))
        """,
        tmp_path,
        env=env,
    )
    assert [entity["type"] for entity in result] == ["PER"] * 5


@pytest.mark.slow
def test_train_entities_then_train_with_it_then_evaluate_end_to_end(tiny_bert_dir, small_data, tmp_path):
    folder = tmp_path / "data"
    entity_slices(folder, 40, 20)
    run_script([sys.executable, "scripts/train_entities.py", "--base-model", str(tiny_bert_dir),
                "--train-file", str(folder / "train.jsonl"), "--validation-file", str(folder / "dev.jsonl"),
                "--output-dir", str(tmp_path / "ner"), "--max-steps", "3", "--head", "tagger",
                "--no-word-shapes"])  # fmt: skip
    results = json.loads((tmp_path / "ner" / "eval_results.json").read_text())
    assert 0 <= results["entity_micro_f1"] <= 1 and results["train_steps"] == 3
    recognize = pipeline("token-classification", model=str(tmp_path / "ner"), aggregation_strategy="simple")
    assert isinstance(recognize("Bill Gates founded Microsoft."), list)  # loads with no custom code
    train_tiny(tiny_bert_dir, small_data, tmp_path / "re", "--entity-model", str(tmp_path / "ner"))
    assert json.loads((tmp_path / "re" / "config.json").read_text())["entity_model"] == "entities"
    output = run_script([sys.executable, "scripts/evaluate.py", "--model", str(tmp_path / "re"), "--data-file",
                         str(folder / "dev.jsonl"), "--end-to-end", "--quiet"])  # fmt: skip
    metrics = json.loads(output.stdout.strip().splitlines()[-1])
    for key in ("entity_micro_f1", "end_to_end_relation_micro_f1", "gold_entity_relation_micro_f1",
                "entity_precision", "end_to_end_relation_recall"):  # fmt: skip
        assert 0 <= metrics[key] <= 1
    errors, found = metrics["errors"], round(metrics["end_to_end_relation_recall"] * metrics["gold_relations"])
    assert errors["missed_entity_errors"] + errors["missed_by_relation_model"] == metrics["gold_relations"] - found
    assert errors["spurious_on_wrong_entities"] + errors["spurious_by_relation_model"] == (
        metrics["predicted_relations"] - found
    )
    assert "wrong entities: " in output.stdout and "gold relations missed: " in output.stdout
    command = [sys.executable, "scripts/evaluate.py", "--model", str(tmp_path / "re"), "--data-file",
               str(small_data["dev"]), "--end-to-end"]  # fmt: skip
    bad = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith(f"error: {small_data['dev']}:1: 'entities' is missing")


def test_save_pretrained_and_push_to_hub_carry_the_entity_model(bundled, local_hub, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(bundled), trust_remote_code=True)
    model.save_pretrained(tmp_path / "saved")
    AutoTokenizer.from_pretrained(str(bundled), trust_remote_code=True).save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "entities" / "model.safetensors").is_file()
    classify = pipeline("relation-classification", model=str(tmp_path / "saved"), trust_remote_code=True)
    assert len(classify(TEXT)["entities"]) == 5
    env = hub_env(local_hub)
    result = run_isolated(
        f"""
        import json
        from huggingface_hub import list_repo_files
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        model = AutoModelForSequenceClassification.from_pretrained({str(bundled)!r}, trust_remote_code=True)
        model.push_to_hub("org/pushed")
        AutoTokenizer.from_pretrained({str(bundled)!r}, trust_remote_code=True).push_to_hub("org/pushed")
        print(json.dumps({{"files": sorted(list_repo_files("org/pushed"))}}))
        """,
        tmp_path,
        env=env,
    )
    assert {"entities/model.safetensors", "entities/config.json"} <= set(result["files"])


def test_predict_takes_text_only_lines(bundled, tmp_path):
    source = tmp_path / "texts.jsonl"
    source.write_text(json.dumps({"text": TEXT}) + "\n" + json.dumps({"text": " "}) + "\n")
    result = run_script([sys.executable, "scripts/predict.py", "--model", str(bundled), "--input", str(source),
                         "--skip-bad-lines", "--quiet", "--keep-no-relation"])  # fmt: skip
    [line] = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(line["prediction"]["entities"]) == 5 and len(line["prediction"]["relations"]) == 20
    assert f"skipped {source}:2: 'text' is ' ', not a non-empty string" in result.stderr


def test_the_benchmark_reports_text_only_extraction_throughput(bundled, tmp_path):
    pytest.importorskip("datasets", reason="typed-bert benchmark runs on the training stack")
    data = tmp_path / "entities.jsonl"
    lines = [{"text": TEXT, "entities": []}, {"text": "Paul Allen", "entities": []}] * 3
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = run_script([sys.executable, "scripts/benchmark.py", "--extraction", str(bundled), str(data),
                         "--threads", "1"])  # fmt: skip
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["texts"] == 6 and "cpu" in report["machine"]
    assert {"pytorch fp32, batch 16", "pytorch fp32, batch 64"} <= set(report["results"])
    for figures in report["results"].values():
        assert figures["entities"] == 3 * (5 + 2)  # every word is an entity for the tiny recognizer
        shares = figures["share_in_entity_model"] + figures["share_in_relation_model"]
        assert figures["texts_per_s"] > 0 and 0 < shares < 1
        assert figures["relations_per_s"] == pytest.approx(figures["relations"] * figures["texts_per_s"] / 6)
        assert figures["encoder_tokens_per_text"] > 5 and figures["padding"] >= 0
        assert figures["share_of_roof"] > 0 and figures["roof_texts_per_s"] > 0  # PyTorch: a plain encoder's roof
    assert report["results"]["pytorch fp32, batch 16"]["agreement_with_pytorch_fp32"] == 1.0
    assert "text-only extraction, 6 texts, pytorch fp32, batch 16:" in result.stdout


@pytest.mark.slow
def test_trainer_push_to_hub_of_a_packed_model_with_an_entity_model_extracts_from_the_hub(local_hub, tmp_path):
    """The standard calls on a `per_subject` model that carries an entity model: AutoModelForSequenceClassification,
    `Trainer(push_to_hub=True)` (the script of test_standard_paths), then the pipeline on raw text from the Hub repo
    in a clean process."""
    folder = save_tiny_classifier(tmp_path / "relations", ENTITY_TYPES, pair_encoding="per_subject")
    bundle_entity_model(folder, save_tiny_recognizer(tmp_path / "entities"))
    env = {**hub_env(local_hub), "HF_HOME": str(tmp_path / "hf-home"), "TOKENIZERS_PARALLELISM": "false"}
    example = {"text": TEXT, "subject": {"start": 0, "end": 10, "type": "PER"},
               "object": {"start": 19, "end": 28, "type": "ORG"}}  # fmt: skip
    script = TRAINER_PUSH.format(source=str(folder), repo="org/packed", trainer="Trainer",
                                 output_dir=str(tmp_path / "out"), example=example, token=HUB_TOKEN)  # fmt: skip
    trained = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={**os.environ, **env},
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-4000:]
    result = run_isolated(
        f"""
        import json
        from huggingface_hub import list_repo_files
        from transformers import AutoConfig, pipeline
        config = AutoConfig.from_pretrained("org/packed", trust_remote_code=True)
        found = pipeline("relation-classification", model="org/packed", trust_remote_code=True)({TEXT!r},
                                                                                                 keep_no_relation=True)
        print(json.dumps({{"files": sorted(list_repo_files("org/packed")), "pair_encoding": config.pair_encoding,
                          "entities": [e["text"] for e in found["entities"]], "relations": len(found["relations"])}}))
        """,
        tmp_path,
        env={**env, "HF_HOME": str(tmp_path / "fresh-home")},
    )
    assert {"entities/model.safetensors", "entities/config.json", "model.safetensors"} <= set(result["files"])
    assert result["pair_encoding"] == "per_subject"
    assert result["entities"] == ["Bill", "Gates", "founded", "Microsoft", "."] and result["relations"] == 5 * 4


@pytest.mark.slow
def test_train_entities_is_reproducible_with_the_same_seed(tiny_bert_dir, tmp_path):
    """Two runs of `typed-bert train-entities --seed 7` in one process (as the demo runs it, after other work) give
    the same weights: the new classifier head and the batches both follow the seed, not the global generator."""
    from safetensors.torch import load_file

    from typed_bert.commands import train_entities

    folder = tmp_path / "data"
    entity_slices(folder, 24, 8)
    for run in ("a", "b"):
        torch.manual_seed(ord(run))  # a different global state before each run
        train_entities.main(["--base-model", str(tiny_bert_dir), "--train-file", str(folder / "train.jsonl"),
                             "--validation-file", str(folder / "dev.jsonl"), "--output-dir", str(tmp_path / run),
                             "--seed", "7", "--max-steps", "2", "--precision", "fp32"])  # fmt: skip
    first, second = (load_file(tmp_path / run / "model.safetensors") for run in ("a", "b"))
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        torch.testing.assert_close(second[name], tensor, rtol=0, atol=0, msg=name)


def test_the_end_to_end_error_breakdown_names_each_kind_of_error():
    from typed_bert.end_to_end import entity_errors, relation_errors

    gold = [{(0, 10, "PER"), (20, 29, "ORG"), (40, 46, "LOC"), (50, 55, "PER")}]
    found = [{(0, 4, "PER"), (20, 29, "PER"), (40, 46, "LOC"), (60, 65, "ORG")}]  # boundary, type, right, spurious
    assert entity_errors(gold, found) == {"type": 1, "boundary": 1, "spurious": 1, "missed": 1}  # (50, 55) missed
    gold_relations = [{((0, 10, "PER"), (20, 29, "ORG"), "Work_For"), ((50, 55, "PER"), (40, 46, "LOC"), "Live_In")}]
    found_entities = [{(0, 10, "PER"), (20, 29, "ORG"), (40, 46, "LOC"), (60, 65, "ORG")}]
    found_relations = [{((0, 10, "PER"), (20, 29, "ORG"), "Kill"), ((0, 10, "PER"), (60, 65, "ORG"), "Work_For")}]
    assert relation_errors(gold_relations, found_relations, gold, found_entities) == {
        "missed_entity_errors": 1,  # Live_In: its subject was not found
        "missed_by_relation_model": 1,  # Work_For: both entities found, the label was Kill
        "spurious_on_wrong_entities": 1,  # (60, 65) is not a gold entity
        "spurious_by_relation_model": 1,  # Kill between two gold entities
    }


def test_a_model_loaded_from_the_hub_saves_and_pushes_its_entity_model(bundled, local_hub, tmp_path):
    """Loaded from a Hub repo (no local folder to copy from), a bundled model's `save_pretrained` and `push_to_hub`
    still write its entity model, read from that repo at the commit the model came from (a later commit's entity
    model, which tags ORG, is not the one saved)."""
    later = save_tiny_recognizer(tmp_path / "later", tagged="B-ORG")
    result = run_isolated(
        f"""
        import json, os
        from huggingface_hub import create_repo, list_repo_files, upload_folder
        from transformers import AutoModelForSequenceClassification, pipeline
        create_repo("org/source")
        upload_folder(repo_id="org/source", folder_path={str(bundled)!r})
        model = AutoModelForSequenceClassification.from_pretrained("org/source", trust_remote_code=True)
        upload_folder(repo_id="org/source", folder_path={str(later)!r}, path_in_repo="entities")
        model.save_pretrained("saved")
        model.push_to_hub("org/pushed")
        found = pipeline("relation-classification", model="saved", tokenizer={str(bundled)!r},
                         trust_remote_code=True)({TEXT!r})["entities"]
        print(json.dumps({{"saved": sorted(os.listdir("saved/entities")), "files": list_repo_files("org/pushed"),
                          "found": [(entity["text"], entity["type"]) for entity in found]}}))
        """,
        tmp_path,
        env=hub_env(local_hub),
    )
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(result["saved"])
    assert {"entities/model.safetensors", "entities/config.json"} <= set(result["files"])
    assert result["found"] == [[word, "PER"] for word in ("Bill", "Gates", "founded", "Microsoft", ".")]


def test_saving_in_place_keeps_the_entity_model_and_a_missing_one_is_a_warning(bundled, tmp_path, caplog):
    """A local folder's entity model is copied as it is (its card and every file), not onto itself when the model is
    saved where it was loaded from; one that is not there is a warning, and the rest is saved."""
    import shutil

    from transformers import AutoModelForSequenceClassification

    folder = shutil.copytree(bundled, tmp_path / "model")
    weights = (folder / "entities" / "model.safetensors").read_bytes()
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), trust_remote_code=True)
    (folder / "entities" / "README.md").write_text("the entity model's card")
    model.save_pretrained(folder)
    assert (folder / "entities" / "model.safetensors").read_bytes() == weights
    model.save_pretrained(tmp_path / "copy")
    assert (tmp_path / "copy" / "entities" / "README.md").read_text() == "the entity model's card"
    shutil.rmtree(folder / "entities")
    with caplog.at_level("WARNING"):
        model.save_pretrained(tmp_path / "saved")
    assert "no folder" in caplog.text and "the saved folder has no entity model" in caplog.text
    assert not (tmp_path / "saved" / "entities").exists()
