"""The `typed-bert` command: one entry point for every tool, `typed-bert <command> --help` for each."""

from __future__ import annotations

import argparse
import importlib
import sys

from typed_bert.command_line import run

# command: (module, one-line summary)
COMMANDS = {
    "convert": ("typed_bert.commands.convert", "turn a BERT checkpoint into a TypedBert checkpoint folder"),
    "train": ("typed_bert.commands.train", "fine-tune on JSON Lines relation data, write a Hub-ready folder"),
    "train-entities": (
        "typed_bert.commands.train_entities",
        "fine-tune an entity recognizer (token classification, BIO) for text-in extraction",
    ),
    "compare": ("typed_bert.commands.compare", "train input modes over seeds, report mean ± std (table and chart)"),
    "evaluate": ("typed_bert.commands.evaluate", "score a model on a data file (micro-F1, AUPRC, per label)"),
    "predict": ("typed_bert.commands.predict", "run the relation-classification pipeline over JSON Lines"),
    "export": ("typed_bert.commands.export", "export a trained folder to ONNX graphs, checked against PyTorch"),
    "push": ("typed_bert.commands.push", "publish a checkpoint folder to the Hub, tag it, verify it"),
    "demo": ("typed_bert.commands.demo", "the end-to-end demo: convert, train, push, reload, predict"),
    "benchmark": ("typed_bert.commands.benchmark", "TypedBert vs BertForSequenceClassification: speed, memory"),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="typed-bert",
        description=__doc__,
        epilog="example: typed-bert convert --base-model bert-base-cased --entity-types PER,ORG --output-dir out",
    )
    parser.add_argument(
        "command",
        choices=sorted(COMMANDS),
        metavar="COMMAND",
        help="; ".join(f"{name}: {summary}" for name, (_, summary) in COMMANDS.items()),
    )
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        sys.exit(0 if argv else 2)
    command = parser.parse_args(argv[:1]).command
    sys.argv = [f"typed-bert {command}", *argv[1:]]  # argparse names the subcommand in usage and errors
    run(importlib.import_module(COMMANDS[command][0]).main, argv[1:])


if __name__ == "__main__":
    main()
