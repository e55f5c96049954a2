"""Nothing lost, nothing half-published: outputs are refused when they exist (without --overwrite) or are inputs,
written beside their destination and renamed into place only when complete; interrupted runs leave the destination
as it was and a marked folder that every consumer refuses; push checks before it uploads and publishes through a
branch; input files are read as UTF-8 split on newlines only; the pipeline checks every keyword the same way for a
single input, a list and a generator."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import pipeline

from tests.conftest import HUB_TOKEN, REPO_ROOT, SHARED, hub_env, save_tiny_classifier
from tests.test_end_to_end import save_tiny_recognizer
from typed_bert.outputs import INCOMPLETE_MARKER, staged_folder

ENTITY_TYPES = ["O", "PER", "ORG"]
PAIR = {"text": "Bill Gates founded Microsoft.", "subject": {"start": 0, "end": 10, "type": "PER"},
        "object": {"start": 19, "end": 28, "type": "ORG"}}  # fmt: skip


def command(*args, env=None, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "typed_bert.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=600)  # fmt: skip


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    from typed_bert.entities import bundle_entity_model

    folder = save_tiny_classifier(tmp_path_factory.mktemp("relations"), ENTITY_TYPES)
    bundle_entity_model(folder, save_tiny_recognizer(tmp_path_factory.mktemp("entities")))
    return folder


def test_predict_refuses_its_input_as_output_and_an_existing_output(bundled, tmp_path):
    data = tmp_path / "f.jsonl"
    data.write_text(json.dumps(PAIR) + "\n")
    before = data.read_bytes()
    same = command("predict", "--model", str(bundled), "--input", str(data), "--output", str(data))
    assert same.returncode == 2 and "is also an input" in last_line(same) and data.read_bytes() == before
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n")
    existing = command("predict", "--model", str(bundled), "--input", str(data), "--output", str(out))
    assert existing.returncode == 2 and "pass --overwrite" in last_line(existing)
    assert out.read_text() == "keep me\n"
    replaced = command("predict", "--model", str(bundled), "--input", str(data), "--output", str(out), "--overwrite")
    assert replaced.returncode == 0 and json.loads(out.read_text())["prediction"]["label"]


def test_a_predict_that_fails_while_the_model_runs_leaves_the_output_as_it_was(bundled, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(bundled, broken)
    tagger = json.loads((broken / "entities" / "config.json").read_text())
    tagger["id2label"] = {key: label.replace("PER", "LOC") for key, label in tagger["id2label"].items()}
    (broken / "entities" / "config.json").write_text(json.dumps(tagger))  # finds LOC, a type the model lacks
    data = tmp_path / "texts.jsonl"
    data.write_text(json.dumps({"text": "Bill Gates founded Microsoft."}) + "\n")  # fmt: skip
    out = tmp_path / "out.jsonl"
    out.write_text("old results\n")
    failed = command("predict", "--model", str(broken), "--input", str(data), "--output", str(out), "--overwrite")
    assert failed.returncode != 0
    assert out.read_text() == "old results\n"
    assert "type 'LOC' is not a known entity type" in failed.stderr  # the relation stage, after the entity model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "out.jsonl", "texts.jsonl"]  # no staging file


def test_invalid_utf8_is_one_line_naming_line_and_byte_and_skippable(bundled, tmp_path):
    data = tmp_path / "bad.jsonl"
    good = (json.dumps(PAIR) + "\n").encode()
    data.write_bytes(good + b'{"text": "caf\xe9"}\n' + good)
    failed = command("predict", "--model", str(bundled), "--input", str(data))
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert last_line(failed).startswith(f"error: {data}:2: invalid UTF-8 byte 0xe9 at byte offset {len(good) + 13}")
    skipped = command("predict", "--model", str(bundled), "--input", str(data), "--skip-bad-lines")
    assert skipped.returncode == 0 and len(skipped.stdout.strip().splitlines()) == 2
    assert f"skipped {data}:2: invalid UTF-8 byte" in skipped.stderr


def test_a_line_separator_inside_a_text_is_part_of_the_text_for_every_reader(tmp_path):
    from typed_bert.data import load_relations
    from typed_bert.entities import load_entity_texts

    text = "Bill Gates\u2028founded Microsoft."
    row = {"text": text, "entities": [{"start": 0, "end": 10, "type": "PER"}, {"start": 19, "end": 28, "type": "ORG"}],
           "relations": [{"subject": 0, "object": 1, "label": "founded_by"}]}  # fmt: skip
    path = tmp_path / "u2028.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    assert [t["text"] for t in load_entity_texts(path)] == [text]
    assert load_relations(path)[0]["text"] == text


def test_train_entities_refuses_a_non_empty_folder_and_keeps_it(bundled, tmp_path):
    before = sorted(p.name for p in bundled.iterdir())
    config = (bundled / "config.json").read_text()
    data = SHARED / "data" / "conll04" / "dev_entities.jsonl"
    refused = command("train-entities", "--base-model", "org/base", "--train-file", str(data),
                      "--validation-file", str(data), "--output-dir", str(bundled), "--max-steps", "1")  # fmt: skip
    assert refused.returncode == 2 and "--overwrite" in last_line(refused)
    assert sorted(p.name for p in bundled.iterdir()) == before and (bundled / "config.json").read_text() == config


def test_train_refuses_an_unfit_entity_model_before_training(tiny_bert_dir, small_data, tmp_path):
    """A missing folder, a plain encoder, and a tagger of other entity types: each one line naming the folder, in the
    seconds before the training, and no output or checkpoint folder left."""
    other_types = save_tiny_recognizer(tmp_path / "other-types", "B-Peop", entity_types=("Peop", "Animal"))
    cases = {tmp_path / "missing": "no such folder",
             tiny_bert_dir: "architectures ['BertModel']; expected a token or span classifier",
             other_types: "entity types ['Animal'] of the entity model are not among"}  # fmt: skip
    for folder, expected in cases.items():
        started = time.perf_counter()
        result = command("train", "--base-model", str(tiny_bert_dir), "--train-file", str(small_data["train"]),
                         "--validation-file", str(small_data["dev"]), "--output-dir", str(tmp_path / "out"),
                         "--entity-model", str(folder), "--epochs", "50")  # fmt: skip
        assert result.returncode == 2 and str(folder) in last_line(result) and expected in last_line(result), (
            folder, last_line(result))  # fmt: skip
        assert time.perf_counter() - started < 120  # 50 epochs would take many minutes
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith((".out", "out"))]


def test_an_incomplete_folder_is_refused_by_every_consumer(bundled, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(bundled, broken)
    (broken / INCOMPLETE_MARKER).write_text("")
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({**PAIR, "label": "founded_by"}) + "\n")
    for args in (("evaluate", "--model", str(broken), "--data-file", str(data)),
                 ("predict", "--model", str(broken), "--input", str(data)),
                 ("push", "--model", str(broken), "--repo-id", "org/x"),
                 ("train", "--base-model", str(broken), "--train-file", str(data), "--validation-file", str(data),
                  "--output-dir", str(tmp_path / "out"))):  # fmt: skip
        result = command(*args)
        assert result.returncode == 2, args
        assert last_line(result).startswith(f"error: {broken}: is incomplete"), (args, last_line(result))


def test_staged_folder_leaves_the_destination_as_it_was_on_failure_and_interrupt(tmp_path):
    destination = tmp_path / "out"
    destination.mkdir()
    (destination / "old.txt").write_text("old")
    for error in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)), staged_folder(destination, overwrite=True) as staging:
            (staging / "new.txt").write_text("new")
            raise error
        assert [p.name for p in destination.iterdir()] == ["old.txt"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with staged_folder(destination, overwrite=True) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in destination.iterdir()] == ["new.txt"]


# Runs a typed-bert command that signals itself at one point of its run: while the base model loads (inside
# `from_pretrained`), inside the training loop (the third training step), or just after the weights are written into
# the staged output folder (before its evaluation record, card and rename). The signal is real (SIGINT is Ctrl-C,
# SIGKILL cannot be caught); only its timing is fixed, so each point is hit on every run.
INTERRUPTED_COMMAND = """
import os, signal, sys
import transformers
from typed_bert import cli
from typed_bert.outputs import STAGING_SUFFIX

point, number = sys.argv[1], getattr(signal, sys.argv[2])
# Ctrl-C as a terminal delivers it, also when the tests run in a background job (which starts with SIGINT ignored)
signal.signal(signal.SIGINT, signal.default_int_handler)
model_class, trainer_class = transformers.PreTrainedModel, transformers.Trainer
load, save, step = model_class.from_pretrained.__func__, model_class.save_pretrained, trainer_class.training_step
steps = []

def loading(cls, *args, **kwargs):
    os.kill(os.getpid(), number)
    return load(cls, *args, **kwargs)

def training(self, *args, **kwargs):
    steps.append(1)
    if len(steps) == 3:
        os.kill(os.getpid(), number)
    return step(self, *args, **kwargs)

def writing(self, directory, *args, **kwargs):
    save(self, directory, *args, **kwargs)
    if str(directory).endswith(STAGING_SUFFIX):
        os.kill(os.getpid(), number)

if point == "loading":
    model_class.from_pretrained = classmethod(loading)
elif point == "training":
    trainer_class.training_step = training
else:
    model_class.save_pretrained = writing
cli.main(sys.argv[3:])
"""


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGKILL"])
@pytest.mark.parametrize("point", ["loading", "training", "writing"])
@pytest.mark.parametrize("kind", ["train-entities", "train"])
def test_an_interrupted_training_leaves_the_old_output_and_nothing_a_consumer_takes(
    tiny_bert_dir, small_data, tmp_path, kind, point, signal_name
):
    """Ctrl-C or a kill while loading, training or writing: the existing output folder is untouched (the run had
    --overwrite), a Ctrl-C leaves nothing beside it, and whatever a kill leaves is refused by push, evaluate and
    --entity-model."""
    data = SHARED / "data" / "conll04" / "dev_entities.jsonl"
    files = (data, data) if kind == "train-entities" else (small_data["train"], small_data["dev"])
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("the previous run")
    arguments = [kind, "--base-model", str(tiny_bert_dir), "--train-file", str(files[0]), "--validation-file",
                 str(files[1]), "--output-dir", str(output), "--epochs", "2", "--overwrite"]  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_COMMAND, point, signal_name, *arguments], capture_output=True, text=True,
        cwd=REPO_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600,
    )  # fmt: skip
    assert run.returncode == -getattr(signal, signal_name), run.stderr[-3000:]  # Python ends on Ctrl-C by SIGINT
    assert [p.name for p in output.iterdir()] == ["keep.txt"]
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    if signal_name == "SIGINT":
        assert left == [], left  # no partial copy, no checkpoint folder
    model = save_tiny_classifier(tmp_path / "relations", ["O", "Loc", "Org", "Other", "Peop"])
    for target in [output, *left]:
        for args in (("push", "--model", str(target), "--repo-id", "org/x"),
                     ("evaluate", "--model", str(target), "--data-file", str(small_data["dev"])),
                     ("push", "--model", str(model), "--repo-id", "org/x", "--entity-model", str(target))):  # fmt: skip
            result = command(*args)
            assert result.returncode == 2 and str(target) in last_line(result), (args, last_line(result))


def test_push_checks_the_entity_model_before_uploading_anything(local_hub, tmp_path):
    relations = save_tiny_classifier(tmp_path / "relations", ENTITY_TYPES)
    bundle_dir = relations / "entities"
    save_tiny_recognizer(bundle_dir)
    config = json.loads((relations / "config.json").read_text())
    (relations / "config.json").write_text(json.dumps({**config, "entity_model": "entities"}))
    tagger = json.loads((bundle_dir / "config.json").read_text())
    tagger["id2label"] = {"0": "O", "1": "B-PER", "2": "I-PER", "3": "B-LOC", "4": "I-LOC"}
    (bundle_dir / "config.json").write_text(json.dumps(tagger))
    result = command("push", "--model", str(relations), "--repo-id", "org/safe", env=hub_env(local_hub))
    assert result.returncode == 2 and "entity types ['LOC']" in last_line(result)
    from huggingface_hub import HfApi

    api = HfApi(endpoint=local_hub.endpoint, token=HUB_TOKEN)
    assert not api.repo_exists("org/safe")


def test_push_publishes_through_a_branch_and_a_failed_load_leaves_the_repo_as_it_was(local_hub, tmp_path):
    from huggingface_hub import HfApi

    relations = save_tiny_classifier(tmp_path / "relations", ENTITY_TYPES)
    first = command("push", "--model", str(relations), "--repo-id", "org/branchy", env=hub_env(local_hub))
    assert first.returncode == 0, first.stderr[-2000:]
    api = HfApi(endpoint=local_hub.endpoint, token=HUB_TOKEN)
    refs = api.list_repo_refs("org/branchy")
    assert [b.name for b in refs.branches] == ["main"] and [t.name for t in refs.tags] == ["v1"]
    head = api.repo_info("org/branchy").sha
    # weights that no longer fit the config: found by the clean-interpreter load, before anything is sent
    config = json.loads((relations / "config.json").read_text())
    (relations / "config.json").write_text(json.dumps({**config, "entity_types": [*ENTITY_TYPES, "LOC"]}))
    broken = command("push", "--model", str(relations), "--repo-id", "org/branchy", env=hub_env(local_hub))
    assert broken.returncode == 2
    refs = api.list_repo_refs("org/branchy")
    assert [b.name for b in refs.branches] == ["main"] and [t.name for t in refs.tags] == ["v1"]
    assert api.repo_info("org/branchy").sha == head


HUB_SIDE_FAILURE = """
import sys
from typed_bert.hub import push
def served_something_else(self, repo_id, commit, result):
    raise push.PublishError(f"Verification failed: {repo_id}@{commit} serves other outputs; nothing was published")
push.LocalOutputs.compare_with_hub = served_something_else
from typed_bert.cli import main
main(sys.argv[1:])
"""


def test_a_failed_check_on_the_hub_leaves_the_repo_as_it_was(local_hub, tmp_path):
    """The check that can only run on the Hub (the uploaded branch loaded back in a clean interpreter) fails: main,
    its tags and its head are as before the push, and the temporary branch is gone."""
    from huggingface_hub import HfApi

    relations = save_tiny_classifier(tmp_path / "relations", ENTITY_TYPES)
    first = command("push", "--model", str(relations), "--repo-id", "org/hubside", env=hub_env(local_hub))
    assert first.returncode == 0, first.stderr[-2000:]
    api = HfApi(endpoint=local_hub.endpoint, token=HUB_TOKEN)
    head = api.repo_info("org/hubside").sha
    (relations / "notes.txt").write_text("a second version")
    failed = subprocess.run(
        [sys.executable, "-c", HUB_SIDE_FAILURE, "push", "--model", str(relations), "--repo-id", "org/hubside"],
        capture_output=True, text=True, cwd=REPO_ROOT, env={**os.environ, **hub_env(local_hub)}, timeout=600,
    )  # fmt: skip
    assert failed.returncode == 2 and "nothing was published" in last_line(failed), failed.stderr[-2000:]
    refs = api.list_repo_refs("org/hubside")
    assert [b.name for b in refs.branches] == ["main"] and [t.name for t in refs.tags] == ["v1"]
    assert api.repo_info("org/hubside").sha == head
    assert "notes.txt" not in api.list_repo_files("org/hubside")


@pytest.fixture(scope="module")
def classify(bundled):
    return pipeline("relation-classification", model=str(bundled), trust_remote_code=True)


@pytest.mark.parametrize(
    ("keywords", "error", "named"),
    [
        ({"batch_size": 0}, ValueError, "batch_size=0"),
        ({"batch_size": -1}, ValueError, "batch_size=-1"),
        ({"batch_size": 1.5}, ValueError, "batch_size=1.5"),
        ({"batch_size": "4"}, ValueError, "batch_size='4'"),
        ({"keep_no_relation": "no"}, TypeError, "keep_no_relation='no'"),
        ({"keep_no_relations": True}, TypeError, "keep_no_relations"),
        ({"topk": 3}, TypeError, "topk"),
        ({"entity_type_map": ["PER"]}, TypeError, "entity_type_map=['PER']"),
    ],
)
def test_bad_keywords_are_refused_alike_for_one_input_a_list_and_a_generator(classify, keywords, error, named):
    item = {"text": PAIR["text"], "entities": [PAIR["subject"], PAIR["object"]]}
    for inputs in (item, [item], (x for x in [item])):
        with pytest.raises(error, match=named.replace("[", r"\[").replace("]", r"\]")):
            result = classify(inputs, **keywords)
            list(result) if not isinstance(result, (list, dict)) else result


def test_a_generator_of_plain_strings_and_mapped_types_gives_what_a_list_gives(classify):
    texts = ["Bill Gates founded Microsoft.", "Ann works for Acme."]
    assert list(classify(t for t in texts)) == classify(texts)
    foreign = {"text": PAIR["text"], "entities": [{**PAIR["subject"], "type": "PERSON"}, PAIR["object"]]}
    mapped = {"entity_type_map": {"PERSON": "PER"}}
    assert list(classify((x for x in [foreign]), **mapped)) == classify([foreign], **mapped)
    assert classify([]) == []
    with pytest.raises(ValueError, match="text 1 is ''"):
        classify(["Bill Gates founded Microsoft.", ""])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.text(min_size=0, max_size=40),
    spans=st.lists(st.tuples(st.integers(-3, 45), st.integers(-3, 45), st.sampled_from(["PER", "ORG", "LOC", 7])),
                   max_size=3),
    top_k=st.one_of(st.none(), st.integers(-1, 4), st.just("2")),
    keep=st.one_of(st.none(), st.booleans(), st.just("no")),
)  # fmt: skip
def test_every_outcome_is_a_result_inside_the_text_or_an_error_naming_the_value(classify, text, spans, top_k, keep):
    entities = [{"start": start, "end": end, "type": kind} for start, end, kind in spans]
    keywords = {name: value for name, value in (("top_k", top_k), ("keep_no_relation", keep)) if value is not None}
    try:
        result = classify({"text": text, "entities": entities}, **keywords)
    except (ValueError, TypeError) as error:
        message = str(error)
        offending = [repr(value) for value in (top_k, keep) if value is not None] + [str(v) for s in spans for v in s]
        assert any(part in message for part in offending) or repr(text) in message or "entities" in message, message
        return
    for relation in result:
        for entity in (relation["subject"], relation["object"]):
            assert 0 <= entity["start"] < entity["end"] <= len(text)
