"""Fine-tune TypedBert (or a baseline) for relation extraction with the transformers Trainer.

    python scripts/train.py --base-model PATH --train-file F --validation-file F --output-dir OUT

`--base-model` is a BERT-family checkpoint (converted on the fly, entity types and labels read from the training
data) or a TypedBert checkpoint, whose input mode, pooling, entity types and (when the data's labels are among its
labels) trained head are kept unless the command line says otherwise. Works under `torchrun --nproc_per_node N`
(DDP; gloo on CPU): all ranks share one checkpoint folder and end with the same, best, model. `--lora-rank R` trains
LoRA adapters (plus the entity tables and the head) and writes the merged model. OUT is a complete Hub-ready folder:
safetensors weights, config (id2label, entity_types, auto_map, custom_pipelines), tokenizer, code files,
eval_results.json, training_log.json and a model card.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from configuration_typed_bert import CLASSIFIER_POOLINGS, INPUT_MODES, PAIR_ENCODINGS
from typed_bert.command_line import command_parser, local_path, model_path, positive_int, run
from typed_bert.hardware import PRECISIONS
from typed_bert.outputs import check_complete, check_destination

EXAMPLE = (
    "typed-bert train --base-model typed-bert-base --train-file train.jsonl --validation-file dev.jsonl "
    "--output-dir out"
)


def by_pair_encoding(defaults: dict[str, float]) -> str:
    """A default that depends on the pair encoding, for a help text: `{"per_pair": 4.0, "per_subject": 10.0}` as
    "per_pair 4, per_subject 10"."""
    return ", ".join(f"{encoding} {value:g}" for encoding, value in defaults.items())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from typed_bert.training import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_EPOCHS,
        DEFAULT_INPUT_MODE,
        DEFAULT_PACKED_INPUT_MODE,
        ENTITY_INITS,
        TrainingSettings,
    )

    defaults = {item.name: item.default for item in fields(TrainingSettings)}
    parser = command_parser(__doc__, EXAMPLE)
    parser.add_argument("--base-model", required=True, type=model_path, help="BERT or TypedBert folder or Hub id")
    parser.add_argument("--train-file", required=True, type=local_path)
    parser.add_argument("--validation-file", required=True, type=local_path)
    parser.add_argument("--output-dir", required=True, type=local_path)
    checkpoints = "default: a TypedBert --base-model's own setting, else"
    packed = f"{DEFAULT_PACKED_INPUT_MODE} with --pair-encoding per_subject"
    mode_help = f"{checkpoints} {DEFAULT_INPUT_MODE} ({packed})"
    parser.add_argument("--input-mode", choices=list(INPUT_MODES), help=mode_help)
    parser.add_argument("--pooling", choices=list(CLASSIFIER_POOLINGS), help=f"{checkpoints} by input mode")
    parser.add_argument(
        "--pair-encoding",
        choices=list(PAIR_ENCODINGS),
        default=defaults["pair_encoding"],
        help="per_pair: one sequence per (subject, object) pair; per_subject: one per subject, its objects packed as "
        "marker tokens (PL-Marker; N passes for N entities instead of N(N-1))",
    )
    parser.add_argument(
        "--entity-model",
        type=local_path,
        default=None,
        help="an entity model folder (typed-bert train-entities) to bundle as entities/: the pipeline takes raw text",
    )
    parser.add_argument(
        "--entity-init",
        choices=list(ENTITY_INITS),
        default=defaults["entity_init"],
        help="how entity tables that are still zero (a converted BERT) start: zero, or names (each type's row from "
        "the word vectors of its name, the role rows from 'subject' and 'object')",
    )
    parser.add_argument("--lora-rank", type=int, default=0, help="train LoRA adapters of rank R (0: full fine-tuning)")
    parser.add_argument("--lora-alpha", type=float, default=None, help="LoRA scaling numerator (default: 2 x rank)")
    parser.add_argument(
        "--epochs",
        type=float,
        default=defaults["epochs"],
        help=f"epochs (the most, with --patience); default by pair encoding: {by_pair_encoding(DEFAULT_EPOCHS)}",
    )
    parser.add_argument(
        "--patience",
        type=positive_int,
        default=defaults["patience"],
        help="stop when dev micro-F1 has not improved for this many epochs (the best epoch is kept either way)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults["batch_size"],
        help=f"sequences per step; default by pair encoding: {by_pair_encoding(DEFAULT_BATCH_SIZE)}",
    )
    parser.add_argument("--learning-rate", type=float, default=defaults["learning_rate"])
    parser.add_argument(
        "--entity-learning-rate", type=float, default=defaults["entity_learning_rate"], help="for the entity tables"
    )
    parser.add_argument("--warmup-ratio", type=float, default=defaults["warmup_ratio"])
    parser.add_argument("--weight-decay", type=float, default=defaults["weight_decay"])
    parser.add_argument("--max-length", type=int, default=None, help="tokens a pair may take (default: the model's)")
    parser.add_argument(
        "--negative-ratio",
        type=float,
        default=defaults["negative_ratio"],
        help="no_relation sequences per related one per epoch; -1 = all (default: 3 per pair, all packed)",
    )
    parser.add_argument(
        "--negative-weight",
        type=weight,
        default="auto",
        help="loss weight of no_relation examples; auto = (no_relation per related example in the data) / "
        "--negative-ratio, which undoes the prior shift of subsampling (importance weighting)",
    )
    parser.add_argument(
        "--precision",
        choices=list(PRECISIONS),
        default="auto",
        help="auto: bf16 autocast on CUDA GPUs and on CPUs with bf16 units (AVX512-BF16, AMX), else fp32; the model "
        "is saved in fp32 either way",
    )
    parser.add_argument(
        "--join-texts",
        type=positive_int,
        default=defaults["join_texts"],
        help="train on pseudo-documents: consecutive training texts joined 1 to N at a time (seeded), pairs across "
        "them no_relation; for models that will read documents (docs/documents.md). Default 1: each text alone",
    )
    parser.add_argument("--seed", type=int, default=defaults["seed"])
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (smoke tests)")
    parser.add_argument("--eval-batch-size", type=int, default=defaults["eval_batch_size"])
    parser.add_argument("--base-model-id", default=None, help="Hub id of a local --base-model, for the model card")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.add_argument("--language", nargs="+", default=None, help="language code(s) of the data, for the model card")
    parser.add_argument(
        "--strict", action="store_true", help="refuse pairs the model cannot read (nested, too far apart)"
    )
    return parser.parse_args(argv)


def settings_of(args: argparse.Namespace):
    """The `TrainingSettings` the command line asks for: every option of the same name, and `--pooling`."""
    from typed_bert.training import TrainingSettings

    names = {item.name for item in fields(TrainingSettings)}
    values = {name: value for name, value in vars(args).items() if name in names}
    return TrainingSettings(**values, classifier_pooling=args.pooling)


def weight(value: str) -> float | str:
    """argparse type of --negative-weight: a number, or auto."""
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither a number nor auto") from None


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    inputs = (args.train_file, args.validation_file, args.base_model, args.entity_model)
    check_destination(output_dir, args.overwrite, inputs)
    for folder in (args.base_model, args.entity_model):
        if folder and Path(folder).is_dir():
            check_complete(folder)
    settings = settings_of(args)
    from typed_bert.training import is_main_process, leave_process_group, train, write_output

    # One checkpoint folder for all DDP ranks, beside OUT (the same file system); removed when training ends.
    result = train(settings, output_dir.parent / f".{output_dir.name}.checkpoints")
    leave_process_group()  # the ranks are done together; writing OUT is rank 0's alone
    if not is_main_process():
        return {}
    results = write_output(result, output_dir, overwrite=args.overwrite)
    print(json.dumps({key: value for key, value in results.items() if not isinstance(value, dict)}))
    return results


if __name__ == "__main__":
    run(main)
