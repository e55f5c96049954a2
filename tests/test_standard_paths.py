"""The standard Hugging Face calls a user makes, each walked as the user walks it: several checkpoints in one process,
`model.push_to_hub` / `tokenizer.push_to_hub` / `save_pretrained`, `Trainer(push_to_hub=True)`, then loading the
repo back in a clean process through the Auto classes and the pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from modeling_typed_bert import TypedBertForSequenceClassification
from tests.conftest import HUB_TOKEN, REPO_ROOT, hub_env, run_isolated, save_tiny_classifier

pytestmark = pytest.mark.remote_code

CODE_FILES = {
    "configuration_typed_bert.py",
    "modeling_typed_bert.py",
    "encoding_typed_bert.py",
    "pipeline_typed_bert.py",
}
LABELS = {0: "no_relation", 1: "founded_by", 2: "works_for"}
EXAMPLE = {
    "text": "Bill Gates founded Microsoft.",
    "subject": {"start": 0, "end": 10, "type": "PER"},
    "object": {"start": 19, "end": 28, "type": "ORG"},
}

# Loads `source` through every Auto class and the pipeline, and reports which module each class came from and the
# marker (TYPED_BERT_TEST_MARK) that the test appended to that module's file, if any.
LOAD_EACH = """
import json, sys, torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer, pipeline

def mark(obj):
    return getattr(sys.modules[type(obj).__module__], "TYPED_BERT_TEST_MARK", None)

report = []
for source, revision in {sources!r}:
    config = AutoConfig.from_pretrained(source, trust_remote_code=True, revision=revision)
    encoder = AutoModel.from_pretrained(source, trust_remote_code=True, revision=revision)
    classifier = AutoModelForSequenceClassification.from_pretrained(source, trust_remote_code=True, revision=revision)
    entry = {{"marks": [mark(config), mark(encoder), mark(classifier)],
              "modules": [type(config).__module__, type(encoder).__module__, type(classifier).__module__]}}
    if {with_pipeline!r}:
        classify = pipeline("relation-classification", model=source, trust_remote_code=True, revision=revision)
        entry["prediction"] = classify({example!r})
        entry["pipeline_mark"] = mark(classify)
    report.append(entry)
print(json.dumps(report))
"""


def write_checkpoint(folder, mark: str | None = None) -> None:
    """A tiny TypedBert classifier with trained-looking tables and MiniLM's tokenizer; `mark` is appended to the code
    files of the folder, so that a test can tell which folder's code ran."""
    save_tiny_classifier(folder, labels=list(LABELS.values()))
    if mark is not None:
        for name in CODE_FILES:
            with open(folder / name, "a") as file:
                file.write(f"\nTYPED_BERT_TEST_MARK = {mark!r}\n")


def load_each(tmp_path, sources, env=None, with_pipeline=True) -> list[dict]:
    script = LOAD_EACH.format(sources=sources, with_pipeline=with_pipeline, example=EXAMPLE)
    return run_isolated(script, cwd=tmp_path, env=env)


def test_save_pretrained_writes_all_four_code_files(tmp_path):
    write_checkpoint(tmp_path / "folder")
    assert {p.name for p in (tmp_path / "folder").iterdir()} >= CODE_FILES
    config = json.loads((tmp_path / "folder" / "config.json").read_text())
    assert config["custom_pipelines"]["relation-classification"]["impl"].startswith("pipeline_typed_bert.")


def test_two_folders_in_one_process_each_run_their_own_code(tmp_path):
    write_checkpoint(tmp_path / "a" / "checkpoint-a", mark="a")
    write_checkpoint(tmp_path / "b" / "checkpoint-b", mark="b")
    report = load_each(
        tmp_path, [(str(tmp_path / "a" / "checkpoint-a"), None), (str(tmp_path / "b" / "checkpoint-b"), None)]
    )
    assert [entry["marks"] for entry in report] == [["a", "a", "a"], ["b", "b", "b"]]
    assert [entry["pipeline_mark"] for entry in report] == ["a", "b"]
    assert all(module.startswith("transformers_modules.") for entry in report for module in entry["modules"])


def test_two_tagged_revisions_of_one_repo_each_run_their_own_code(tmp_path, local_hub):
    upload = """
import sys
from huggingface_hub import HfApi
api = HfApi()
api.create_repo("org/typed-bert", exist_ok=True)
commit = api.upload_folder(repo_id="org/typed-bert", folder_path=sys.argv[1])
api.create_tag("org/typed-bert", tag=sys.argv[2], revision=commit.oid)
"""
    env = {**hub_env(local_hub), "HF_HOME": str(tmp_path / "hf-home")}
    for mark in ("a", "b"):
        write_checkpoint(tmp_path / mark, mark=mark)
        result = subprocess.run(
            [sys.executable, "-c", upload, str(tmp_path / mark), f"v-{mark}"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    report = load_each(tmp_path, [("org/typed-bert", "v-a"), ("org/typed-bert", "v-b")], env=env)
    assert [entry["marks"] for entry in report] == [["a", "a", "a"], ["b", "b", "b"]]
    assert [entry["pipeline_mark"] for entry in report] == ["a", "b"]


def test_local_registration_is_explicit(tmp_path):
    """Importing the uploaded modules registers nothing; the installed package's `register_typed_bert()` does."""
    write_checkpoint(tmp_path / "folder")
    script = f"""
    import json, sys
    sys.path.insert(0, {str(REPO_ROOT)!r})
    import modeling_typed_bert
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, pipeline
    try:
        AutoConfig.from_pretrained({str(tmp_path / "folder")!r}, trust_remote_code=False)
        before = "loaded"
    except ValueError as error:
        before = str(error)[:200]
    from typed_bert.registration import register_typed_bert
    register_typed_bert()
    model = AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "folder")!r})
    tokenizer = AutoTokenizer.from_pretrained({str(tmp_path / "folder")!r}, trust_remote_code=True)
    classify = pipeline("relation-classification", model=model, tokenizer=tokenizer)
    print(json.dumps({{"before": before, "after": type(model).__module__, "prediction": classify({EXAMPLE!r})}}))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["before"] != "loaded" and "custom code" in report["before"]
    assert report["after"] == "modeling_typed_bert"
    assert report["prediction"]["label"] in LABELS.values()


PUSH_TO_HUB = """
import json, sys
from transformers import AutoModelForSequenceClassification, AutoTokenizer
source, repo = {source!r}, {repo!r}
if {from_package!r}:
    from typed_bert import TypedBertForSequenceClassification as model_class
else:
    model_class = AutoModelForSequenceClassification
model = model_class.from_pretrained(source, trust_remote_code=True)
model.push_to_hub(repo)
AutoTokenizer.from_pretrained(source, trust_remote_code=True).push_to_hub(repo)
print(json.dumps({{"module": type(model).__module__}}))
"""


@pytest.mark.parametrize("from_package", [True, False], ids=["installed-class", "remote-code-class"])
def test_model_and_tokenizer_push_to_hub_publish_a_complete_repo(tmp_path, local_hub, from_package):
    from huggingface_hub import HfApi

    write_checkpoint(tmp_path / "folder")
    env = {**os.environ, **hub_env(local_hub), "HF_HOME": str(tmp_path / "hf-home")}
    script = PUSH_TO_HUB.format(source=str(tmp_path / "folder"), repo="org/pushed", from_package=from_package)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pushed_by = json.loads(result.stdout.strip().splitlines()[-1])["module"]
    assert pushed_by.startswith("transformers_modules.") != from_package

    files = set(HfApi(endpoint=local_hub.endpoint, token=HUB_TOKEN).list_repo_files("org/pushed"))
    assert CODE_FILES | {"config.json", "model.safetensors", "tokenizer.json"} <= files
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
    report = load_each(tmp_path, [("org/pushed", None)], env={**hub_env(local_hub), "HF_HOME": str(tmp_path / "h2")})
    assert report[0]["prediction"]["label"] in LABELS.values()
    assert all(module.startswith("transformers_modules.org.pushed") for module in report[0]["modules"])


TRAINER_PUSH = """
import json, sys
import torch
from transformers import AutoTokenizer, Trainer, TrainingArguments
from typed_bert import TypedBertDataCollator, TypedBertForSequenceClassification, TypedBertTrainer, encode_relations

source, repo, trainer_name, output_dir = {source!r}, {repo!r}, {trainer!r}, {output_dir!r}
tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=True)
model = TypedBertForSequenceClassification.from_pretrained(source)
example = {example!r}
encoded = encode_relations(tokenizer, [example] * 8, model.config.entity_types)
rows = [{{**{{k: v[i] for k, v in encoded.items()}}, "labels": i % 3}} for i in range(8)]
args = TrainingArguments(output_dir=output_dir, max_steps=2, per_device_train_batch_size=4, save_strategy="steps",
                         save_steps=1, report_to="none", use_cpu=True, push_to_hub=True, hub_model_id=repo,
                         hub_token={token!r})
trainer_class = TypedBertTrainer if trainer_name == "TypedBertTrainer" else Trainer
trainer = trainer_class(model=model, args=args, train_dataset=rows, data_collator=TypedBertDataCollator(tokenizer),
                        processing_class=tokenizer)
trainer.train()
trainer.push_to_hub()
print(json.dumps({{"steps": trainer.state.global_step}}))
"""


def four_labelled_rows(folder):
    """A tiny classifier without dropout saved to `folder`, its tokenizer, and four encoded rows of `EXAMPLE`
    labelled 0, 1, 2, 0: what the loss tests of the standard Trainer paths train on."""
    from transformers import AutoTokenizer

    from typed_bert import encode_relations

    save_tiny_classifier(folder, labels=list(LABELS.values()), hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = TypedBertForSequenceClassification.from_pretrained(folder)
    encoded = encode_relations(tokenizer, [EXAMPLE] * 4, model.config.entity_types)
    rows = [{**{name: values[i] for name, values in encoded.items()}, "labels": i % 3} for i in range(4)]
    return tokenizer, model, rows


def test_a_plain_trainer_accumulates_the_mean_loss_of_its_batches(tmp_path):
    """transformers' Trainer, gradient accumulation of 2: our losses are batch means, so the Trainer divides each by
    the accumulation steps itself (4.57 once passed it `num_items_in_batch`, which BertModel refused)."""
    from transformers import Trainer, TrainingArguments

    from typed_bert import TypedBertDataCollator

    tokenizer, model, rows = four_labelled_rows(tmp_path / "model")
    collate = TypedBertDataCollator(tokenizer)
    with torch.no_grad():
        expected = sum(float(model(**collate(rows[i : i + 2])).loss) for i in (0, 2)) / 2
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2,
                             gradient_accumulation_steps=2, learning_rate=0.0, report_to="none", use_cpu=True,
                             save_strategy="no")  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
    result = trainer.train()
    assert result.training_loss == pytest.approx(expected, rel=1e-4)
    assert trainer.model_accepts_loss_kwargs is False


TORCHRUN_LOSS = """
import gc, json, sys
import torch.distributed
from transformers import AutoTokenizer, Trainer, TrainingArguments
from modeling_typed_bert import TypedBertForSequenceClassification
from typed_bert import TypedBertDataCollator, encode_relations

folder, log = sys.argv[1], sys.argv[2]
tokenizer = AutoTokenizer.from_pretrained(folder)
model = TypedBertForSequenceClassification.from_pretrained(folder)
encoded = encode_relations(tokenizer, [json.loads(sys.argv[3])] * 4, model.config.entity_types)
rows = [{**{name: values[i] for name, values in encoded.items()}, "labels": i % 3} for i in range(4)]
args = TrainingArguments(output_dir=folder + "-out", max_steps=1, per_device_train_batch_size=2, learning_rate=0.0,
                         logging_steps=1, report_to="none", use_cpu=True, save_strategy="no")
trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=TypedBertDataCollator(tokenizer))
trainer.train()
if trainer.is_world_process_zero():
    open(log, "w").write(json.dumps(trainer.state.log_history))
# PyTorch's documented shutdown, after the last reference to the DDP-wrapped model is gone: the process group is then
# freed here, joining gloo's worker threads, instead of at interpreter exit, where one of them could still be
# releasing an all-gather's tensors (4.57's Trainer all-gathers the loss it logs) and abort the process (SIGABRT).
del trainer, model
gc.collect()
torch.distributed.destroy_process_group()
"""


def test_a_plain_trainer_under_torchrun_logs_the_mean_loss_of_both_processes(tmp_path):
    """`torchrun` with two CPU processes (gloo), transformers' Trainer: the logged loss is the mean of the two
    processes' batch means (the mean over the four rows), not a multiple of it (a model that accepted loss kwargs had
    its loss multiplied by the number of processes)."""
    from typed_bert import TypedBertDataCollator

    tokenizer, model, rows = four_labelled_rows(tmp_path / "model")
    with torch.no_grad():
        expected = sum(float(model(**TypedBertDataCollator(tokenizer)([row])).loss) for row in rows) / 4
    (tmp_path / "script.py").write_text(TORCHRUN_LOSS)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29741"]
    command = [*torchrun, str(tmp_path / "script.py"), str(tmp_path / "model"), str(tmp_path / "log.json"),
               json.dumps(EXAMPLE)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    [logged] = [entry for entry in json.loads((tmp_path / "log.json").read_text()) if "loss" in entry]
    assert logged["loss"] == pytest.approx(expected, abs=2e-4)


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["Trainer", "TypedBertTrainer"])
def test_trainer_push_to_hub_publishes_a_loadable_repo(tmp_path, local_hub, trainer):
    from huggingface_hub import HfApi

    write_checkpoint(tmp_path / "folder")
    repo = f"org/{trainer.lower()}-push"
    env = {**os.environ, **hub_env(local_hub), "HF_HOME": str(tmp_path / "hf-home"), "TOKENIZERS_PARALLELISM": "false"}
    script = TRAINER_PUSH.format(
        source=str(tmp_path / "folder"),
        repo=repo,
        trainer=trainer,
        output_dir=str(tmp_path / "out"),
        example=EXAMPLE,
        token=HUB_TOKEN,
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    files = set(HfApi(endpoint=local_hub.endpoint, token=HUB_TOKEN).list_repo_files(repo))
    assert CODE_FILES | {"config.json", "model.safetensors", "tokenizer.json"} <= files
    pickles = {name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl"))}
    # transformers' own Trainer uploads its TrainingArguments pickle; TypedBertTrainer never writes one.
    assert pickles == ({"training_args.bin"} if trainer == "Trainer" else set())
    if trainer == "TypedBertTrainer":
        assert "training_args.json" in files
        assert not [p for p in (tmp_path / "out").rglob("training_args.bin")]
    report = load_each(tmp_path, [(repo, None)], env={**hub_env(local_hub), "HF_HOME": str(tmp_path / "h2")})
    assert report[0]["prediction"]["label"] in LABELS.values()


def test_typed_bert_trainer_refuses_checkpoint_hub_strategies(tmp_path):
    from transformers import TrainingArguments

    from typed_bert import TypedBertTrainer

    write_checkpoint(tmp_path / "folder")
    model = TypedBertForSequenceClassification.from_pretrained(tmp_path / "folder")
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), push_to_hub=True, hub_strategy="checkpoint", report_to="none", use_cpu=True
    )
    with pytest.raises(ValueError, match="hub_strategy='checkpoint' uploads optimizer"):
        TypedBertTrainer(model=model, args=args)
