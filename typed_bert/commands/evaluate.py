"""Evaluate a TypedBert relation classifier on a data file.

    python scripts/evaluate.py --model OUT_OR_HUB_ID --data-file F [--plot confusion.png] [--batch-size 128]
        [--device auto] [--dtype auto] [--max-length N] [--quiet] [--strict]

Prints per-label scores, then, as its last line, one JSON object: micro_f1 (no_relation excluded), auprc (KLUE-RE),
accuracy, micro precision/recall and per-label precision/recall/F1/support.
"""

from __future__ import annotations

import json
from pathlib import Path

from typed_bert.command_line import (
    add_inference_options,
    add_window_options,
    command_parser,
    local_path,
    model_path,
    run,
)

EXAMPLE = "typed-bert evaluate --model out --data-file dev.jsonl --plot confusion.png"


def format_table(metrics: dict) -> str:
    lines = [f"{'label':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}"]
    for label, row in metrics["per_label"].items():
        lines.append(f"{label:<16}{row['precision']:>10.3f}{row['recall']:>10.3f}{row['f1']:>10.3f}{row['support']:>9}")
    lines.append(
        f"micro-F1 (no_relation excluded) {metrics['micro_f1']:.4f}   P {metrics['micro_precision']:.4f}   "
        f"R {metrics['micro_recall']:.4f}   AUPRC {metrics['auprc']:.4f}   accuracy {metrics['accuracy']:.4f}   "
        f"({metrics['num_examples']} pairs, {metrics['precision']} inference)"
    )
    return "\n".join(lines)


def format_errors(errors: dict[str, int]) -> str:
    """The end-to-end error breakdown (`typed_bert.end_to_end`) in two lines."""
    return (
        f"wrong entities: {errors['boundary']} boundary (overlap a gold entity), {errors['type']} type (right span), "
        f"{errors['spurious']} spurious (overlap none); {errors['missed']} gold entities missed (nothing overlaps)\n"
        f"gold relations missed: {errors['missed_entity_errors']} through entity errors, "
        f"{errors['missed_by_relation_model']} by the relation model (both entities right); wrong relations: "
        f"{errors['spurious_on_wrong_entities']} on wrong entities, {errors['spurious_by_relation_model']} between "
        "gold entities"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = command_parser(__doc__, EXAMPLE)
    parser.add_argument("--model", required=True, type=model_path, help="checkpoint folder or Hub id")
    parser.add_argument("--data-file", required=True, type=local_path, help="JSON Lines, canonical or KLUE-RE format")
    parser.add_argument("--plot", type=local_path, default=None, help="write the confusion matrix to this PNG")
    add_inference_options(
        parser, batch_size=128, dtype="auto",
        dtype_help="bf16: autocast inference; auto: bf16 on CUDA GPUs and CPUs with bf16 units, as training does",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    add_window_options(parser)
    parser.add_argument("--strict", action="store_true", help="refuse pairs the model cannot read (nested, too far)")
    parser.add_argument(
        "--end-to-end", action="store_true",
        help="entity-list file with gold relations: extract from the text alone with the bundled entity model and "
        "add entity and strict end-to-end relation micro-F1 (precision, recall) to the gold-entity scores",
    )  # fmt: skip
    args = parser.parse_args(argv)
    from typed_bert.evaluation import evaluate
    from typed_bert.outputs import check_complete, check_destination

    if args.plot:
        check_destination(args.plot, args.overwrite, (args.model, args.data_file))
    if Path(args.model).is_dir():
        check_complete(args.model)

    options = {name: getattr(args, name) for name in ("device", "dtype", "quiet", "strict", "max_length")}
    load_kwargs = {"revision": args.revision} if args.revision else {}
    if args.end_to_end:  # checked before anything runs
        from typed_bert.entities import load_entity_texts

        load_entity_texts(args.data_file)
    metrics = evaluate(args.model, args.data_file, args.batch_size, args.plot, **options, **load_kwargs)
    print(format_table(metrics))
    if args.end_to_end:
        metrics = {"gold_entity_relation_micro_f1": metrics["micro_f1"], **metrics}
        metrics.update(end_to_end_metrics(args, load_kwargs))
        print(
            f"end to end: entity micro-F1 {metrics['entity_micro_f1']:.4f} (P {metrics['entity_precision']:.4f}, R "
            f"{metrics['entity_recall']:.4f}); relation micro-F1 (strict) "
            f"{metrics['end_to_end_relation_micro_f1']:.4f} "
            f"(P {metrics['end_to_end_relation_precision']:.4f}, R {metrics['end_to_end_relation_recall']:.4f}); "
            f"gold entities: relation micro-F1 {metrics['gold_entity_relation_micro_f1']:.4f}"
        )
        print(format_errors(metrics["errors"]))
    print(json.dumps(metrics))
    return metrics


def end_to_end_metrics(args, load_kwargs: dict) -> dict:
    """`evaluate_end_to_end` with the command's device and precision (bf16 weights where it picks bf16)."""
    import torch

    from typed_bert.end_to_end import evaluate_end_to_end
    from typed_bert.hardware import pick_device, pick_precision

    device = pick_device(args.device)
    dtype = torch.bfloat16 if pick_precision(args.dtype, device) == "bf16" else None
    windows = {"stride": args.stride, "max_length": args.max_length}
    return evaluate_end_to_end(args.model, args.data_file, args.batch_size, device, dtype, windows, **load_kwargs)


if __name__ == "__main__":
    run(main)
