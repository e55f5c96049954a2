"""Evaluate a TypedBert relation classifier on a data file.

    python scripts/evaluate.py --model OUT_OR_HUB_ID --data-file F [--plot confusion.png] [--batch-size 128]

Prints per-label scores, then, as its last line, one JSON object: micro_f1 (no_relation excluded), auprc (KLUE-RE),
accuracy, micro precision/recall and per-label precision/recall/F1/support.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from typed_bert.scripts.relation_data import encode_dataset, load_relations
from typed_bert.scripts.relation_metrics import confusion_matrix, plot_confusion_matrix, relation_metrics

from encoding_typed_bert import MODEL_INPUT_NAMES, TypedBertDataCollator


def predict_probabilities(model, tokenizer, dataset, batch_size: int = 128) -> np.ndarray:
    """Softmax probabilities `(len(dataset), num_labels)` of an encoded dataset, in dataset order."""
    collator = TypedBertDataCollator(tokenizer)
    rows = dataset.select_columns([name for name in MODEL_INPUT_NAMES if name in dataset.column_names])
    order = np.argsort([len(ids) for ids in rows["input_ids"]])  # similar lengths together: less padding
    probabilities = np.zeros((len(rows), model.config.num_labels), dtype=np.float32)
    loader = DataLoader(rows.select(order), batch_size=batch_size, collate_fn=collator)
    model.eval()
    done = 0
    with torch.inference_mode():
        for batch in loader:
            batch = {name: tensor.to(model.device) for name, tensor in batch.items()}
            probs = model(**batch).logits.float().softmax(-1).cpu().numpy()
            probabilities[order[done : done + len(probs)]] = probs
            done += len(probs)
    return probabilities


def evaluate(model_source: str, data_file: str, batch_size: int = 128, plot: str | None = None, **load_kwargs) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(model_source, trust_remote_code=True, **load_kwargs)
    model = AutoModelForSequenceClassification.from_pretrained(model_source, trust_remote_code=True, **load_kwargs)
    config = model.config
    max_length = min(tokenizer.model_max_length, config.max_position_embeddings)
    dataset = encode_dataset(
        load_relations(data_file), tokenizer, config.entity_types, config.label2id, max_length, config.entity_markers
    )
    started = time.perf_counter()
    probabilities = predict_probabilities(model, tokenizer, dataset, batch_size)
    labels = [config.id2label[i] for i in range(config.num_labels)]
    metrics = relation_metrics(dataset["labels"], probabilities, labels)
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    if plot:
        matrix = confusion_matrix(dataset["labels"], probabilities.argmax(1), len(labels))
        metrics["confusion_matrix_png"] = str(plot_confusion_matrix(matrix, labels, plot, f"{model_source}"))
    return metrics


def format_table(metrics: dict) -> str:
    lines = [f"{'label':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}"]
    for label, row in metrics["per_label"].items():
        lines.append(f"{label:<16}{row['precision']:>10.3f}{row['recall']:>10.3f}{row['f1']:>10.3f}{row['support']:>9}")
    lines.append(
        f"micro-F1 (no_relation excluded) {metrics['micro_f1']:.4f}   P {metrics['micro_precision']:.4f}   "
        f"R {metrics['micro_recall']:.4f}   AUPRC {metrics['auprc']:.4f}   accuracy {metrics['accuracy']:.4f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub id")
    parser.add_argument("--data-file", required=True, help="JSON Lines, canonical or KLUE-RE format")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--plot", default=None, help="write the confusion matrix to this PNG")
    parser.add_argument("--revision", default=None)
    args = parser.parse_args(argv)
    kwargs = {"revision": args.revision} if args.revision else {}
    metrics = evaluate(args.model, args.data_file, args.batch_size, args.plot, **kwargs)
    print(format_table(metrics))
    print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
