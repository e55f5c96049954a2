"""Evaluate a TypedBert relation classifier on a data file.

    python scripts/evaluate.py --model OUT_OR_HUB_ID --data-file F [--plot confusion.png] [--batch-size 128]
        [--device auto] [--dtype auto] [--quiet] [--strict]

Prints per-label scores, then, as its last line, one JSON object: micro_f1 (no_relation excluded), auprc (KLUE-RE),
accuracy, micro precision/recall and per-label precision/recall/F1/support.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from typed_bert.scripts.command_line import command_parser, local_path, model_path, pick_device, pick_precision, run
from typed_bert.scripts.relation_data import (
    check_vocabulary,
    encode_all_pairs_dataset,
    encode_dataset,
    load_relations,
)
from typed_bert.scripts.relation_metrics import (
    NO_RELATION,
    confusion_matrix,
    plot_confusion_matrix,
    relation_metrics,
    with_no_relation_rows,
)

from encoding_typed_bert import ALL_PAIRS_INPUT_NAMES, TypedBertDataCollator

EXAMPLE = "typed-bert evaluate --model out --data-file dev.jsonl --plot confusion.png"


def predict_probabilities(
    model, tokenizer, dataset, batch_size: int = 128, quiet: bool = False, dtype: torch.dtype | None = None
) -> np.ndarray:
    """Softmax probabilities `(pairs, num_labels)` of an encoded dataset, in dataset order, batched by similar
    length, with a progress bar on a terminal (not with `quiet`), under autocast to `dtype` when given. A row is one
    pair, or for all-pairs sequences (`pair_ids`) each of its pairs in turn."""
    collator = TypedBertDataCollator(tokenizer)
    rows = dataset.select_columns([name for name in ALL_PAIRS_INPUT_NAMES if name in dataset.column_names])
    counts = [max(ids) for ids in rows["pair_ids"]] if "pair_ids" in rows.column_names else [1] * len(rows)
    starts = np.concatenate([[0], np.cumsum(counts)])
    order = np.argsort([len(ids) for ids in rows["input_ids"]])  # similar lengths together: less padding
    probabilities = np.zeros((starts[-1], model.config.num_labels), dtype=np.float32)
    loader = DataLoader(rows.select(order), batch_size=batch_size, collate_fn=collator)
    model.eval()
    done = 0
    autocast = torch.autocast(model.device.type, dtype=dtype, enabled=dtype is not None)
    with torch.inference_mode(), autocast, tqdm(total=starts[-1], unit="pair", disable=quiet or None) as progress:
        for batch in loader:
            batch = {name: tensor.to(model.device) for name, tensor in batch.items()}
            probs = model(**batch).logits.float().softmax(-1).cpu().numpy()
            for row_probs in probs if probs.ndim == 3 else probs[:, None]:
                row = order[done]
                probabilities[starts[row] : starts[row + 1]] = row_probs[: counts[row]]
                progress.update(counts[row])
                done += 1
    return probabilities


def evaluate(
    model_source: str,
    data_file: str,
    batch_size: int = 128,
    plot: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    quiet: bool = False,
    strict: bool = False,
    **load_kwargs,
) -> dict:
    data = load_relations(data_file)
    config = AutoConfig.from_pretrained(model_source, trust_remote_code=True, **load_kwargs)
    # Checked before the weights load: every type and label of the file must be known to the model.
    check_vocabulary(data, data_file, config.entity_types[1:], config.label2id, f"the model {model_source}")
    tokenizer = AutoTokenizer.from_pretrained(model_source, trust_remote_code=True, **load_kwargs)
    device = pick_device(device)
    model = AutoModelForSequenceClassification.from_pretrained(model_source, trust_remote_code=True, **load_kwargs)
    model.to(device)
    # Checkpoints of older versions have no position_id_offset: they count positions from 0.
    positions = config.max_position_embeddings - getattr(config, "position_id_offset", 0)
    max_length = min(tokenizer.model_max_length, positions)
    if getattr(config, "pair_encoding", "per_pair") == "all_pairs":
        encodable, unencodable = encode_all_pairs_dataset(
            data, tokenizer, config.entity_types, config.label2id, max_length, config.position_id_offset, data_file,
            strict,
        )  # fmt: skip
        encodable_labels = [label for labels in encodable["labels"] for label in labels]
        unencodable_labels = [config.label2id[data[row]["label"]] for row in unencodable]
    else:
        dataset = encode_dataset(
            data, tokenizer, config.entity_types, config.label2id, max_length, config.entity_markers, data_file, strict
        )
        encodable = dataset.filter(lambda row: row["encodable"])
        encodable_labels = encodable["labels"]
        unencodable_labels = [row["labels"] for row in dataset if not row["encodable"]]
    started = time.perf_counter()
    precision = pick_precision(dtype, device)
    autocast_dtype = torch.bfloat16 if precision == "bf16" else None
    probabilities = predict_probabilities(model, tokenizer, encodable, batch_size, quiet, autocast_dtype)
    labels = [config.id2label[i] for i in range(config.num_labels)]
    gold, probabilities = with_no_relation_rows(
        encodable_labels, probabilities, unencodable_labels, config.label2id.get(NO_RELATION)
    )
    metrics = relation_metrics(gold, probabilities, labels)
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    metrics["precision"] = precision
    metrics["overlapping_pairs_scored_as_no_relation"] = len(unencodable_labels)
    if unencodable_labels and not quiet:
        print(
            f"{len(unencodable_labels)} pairs whose subject and object overlap (nested mentions) are scored as "
            "predicted no_relation; --strict makes them errors",
            file=sys.stderr,
        )
    if plot:
        matrix = confusion_matrix(gold, probabilities.argmax(1), len(labels))
        title = f"{Path(str(model_source)).name} on {Path(data_file).name}"
        metrics["confusion_matrix_png"] = str(plot_confusion_matrix(matrix, labels, plot, title))
    return metrics


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


def main(argv: list[str] | None = None) -> dict:
    parser = command_parser(__doc__, EXAMPLE)
    parser.add_argument("--model", required=True, type=model_path, help="checkpoint folder or Hub id")
    parser.add_argument("--data-file", required=True, type=local_path, help="JSON Lines, canonical or KLUE-RE format")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--plot", type=local_path, default=None, help="write the confusion matrix to this PNG")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, mps")
    parser.add_argument(
        "--dtype",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="bf16: autocast inference; auto: bf16 on CUDA GPUs and CPUs with bf16 units, as training does, else fp32",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--strict", action="store_true", help="refuse pairs whose subject and object overlap")
    args = parser.parse_args(argv)
    kwargs = {"revision": args.revision} if args.revision else {}
    metrics = evaluate(
        args.model,
        args.data_file,
        args.batch_size,
        args.plot,
        device=args.device,
        dtype=args.dtype,
        quiet=args.quiet,
        strict=args.strict,
        **kwargs,
    )
    print(format_table(metrics))
    print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    run(main)
