"""Scoring a relation classifier on a data file: every pair of the file counts, those the model cannot read (nested
or too far apart) as predicted `no_relation`."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from configuration_typed_bert import NO_RELATION
from encoding_typed_bert import pair_encoding_for, pair_logits
from typed_bert.batching import TypedBertDataCollator
from typed_bert.data import check_vocabulary, encode_dataset, load_relations, pair_max_length, unencodable_counts
from typed_bert.errors import InputError, reading
from typed_bert.hardware import pick_device, pick_precision
from typed_bert.metrics import confusion_matrix, plot_confusion_matrix, relation_metrics, with_no_relation_rows


def pair_probabilities(
    model, tokenizer, sequences, num_pairs: int, batch_size: int = 128, quiet: bool = False, dtype=None
) -> np.ndarray:
    """Softmax probabilities `(num_pairs, num_labels)` of the pairs of an encoded dataset (`encode_dataset`), each
    at its `rows` index (pairs no sequence holds stay zero), batched by similar length, with a progress bar on a
    terminal (not with `quiet`), under autocast to `dtype` when given."""
    rows = sequences["rows"]
    inputs = sequences.select_columns([name for name in sequences.column_names if name not in ("rows", "labels")])
    probabilities = np.zeros((num_pairs, model.config.num_labels), dtype=np.float32)
    with tqdm(total=sum(len(row) for row in rows), unit="pair", disable=quiet or None) as progress:
        for sequence, probs in _probabilities_by_length(model, tokenizer, inputs, batch_size, dtype):
            if len(probs) < len(rows[sequence]):  # the model's code reads one pair per sequence
                raise ValueError(
                    f"the model gave {len(probs)} row of logits for a sequence of {len(rows[sequence])} pairs: its "
                    f"code does not read config.pair_encoding={model.config.pair_encoding!r}; save it again with "
                    "this version of typed-bert"
                )
            probabilities[rows[sequence]] = probs[: len(rows[sequence])]
            progress.update(len(rows[sequence]))
    return probabilities


def _probabilities_by_length(
    model, tokenizer, inputs, batch_size: int, dtype: torch.dtype | None
) -> Iterator[tuple[int, np.ndarray]]:
    """Each sequence of `inputs` (a dataset of model inputs) as `(its index, softmax probabilities (pairs,
    num_labels))`, run in batches of similar length (less padding) under autocast to `dtype` when given."""
    order = np.argsort([len(ids) for ids in inputs["input_ids"]], kind="stable")
    loader = DataLoader(inputs.select(order), batch_size=batch_size, collate_fn=TypedBertDataCollator(tokenizer))
    model.eval()
    done = 0
    for batch in loader:
        with torch.inference_mode(), torch.autocast(model.device.type, dtype=dtype, enabled=dtype is not None):
            batch = {name: tensor.to(model.device) for name, tensor in batch.items()}
            probs = pair_logits(model(**batch).logits).float().softmax(-1).cpu().numpy()
        yield from zip(order[done : done + len(probs)].tolist(), probs, strict=True)
        done += len(probs)


def model_for(model_source: str, data, data_file: str, max_length: int | None, **load_kwargs):
    """The TypedBert relation classifier of `model_source`, its tokenizer and the tokens a pair may take; its config
    is read first and every entity type and label of `data` checked against it before the weights load."""
    with reading(model_source, "a TypedBert relation classifier folder or Hub id"):
        config = AutoConfig.from_pretrained(model_source, trust_remote_code=True, **load_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(model_source, trust_remote_code=True, **load_kwargs)
    if config.model_type != "typed_bert":
        raise InputError(f"a {config.model_type} model; expected a TypedBert relation classifier", model_source)
    check_vocabulary(data, data_file, config.entity_types[1:], config.label2id, f"the model {model_source}")
    max_length = pair_max_length(tokenizer, config, max_length)
    with reading(model_source, "a TypedBert relation classifier folder or Hub id"):
        model = AutoModelForSequenceClassification.from_pretrained(model_source, trust_remote_code=True, **load_kwargs)
    return model, tokenizer, max_length


def evaluate(
    model_source: str,
    data_file: str,
    batch_size: int = 128,
    plot: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    quiet: bool = False,
    strict: bool = False,
    max_length: int | None = None,
    **load_kwargs,
) -> dict:
    """Score `model_source` (a folder or Hub id) on `data_file`: `relation_metrics` of every pair of the file (those
    the model cannot read scored as predicted `no_relation` and counted in `unencodable_pairs`; `strict` refuses
    them), plus `seconds` and the inference `precision`; with `plot`, the confusion matrix as a PNG there.
    `max_length`: as the pipeline takes it (`max_sequence_length`)."""
    data = load_relations(data_file)
    model, tokenizer, max_length = model_for(model_source, data, data_file, max_length, **load_kwargs)
    config = model.config
    device = pick_device(device)
    model.to(device)
    precision = pick_precision(dtype, device)
    autocast_dtype = torch.bfloat16 if precision == "bf16" else None
    gold = np.array([config.label2id[label] for label in data["label"]], dtype=np.int64)
    sequences, reasons = encode_dataset(
        data, tokenizer, pair_encoding_for(config), config.entity_types, config.label2id, max_length, data_file, strict
    )
    encoded = np.array([not reason for reason in reasons], dtype=bool)
    unencodable_labels = gold[~encoded].tolist()
    if unencodable_labels and NO_RELATION not in config.label2id:
        raise InputError(
            f"{len(unencodable_labels)} pairs cannot be encoded and the model has no {NO_RELATION!r} label to score "
            "them as; expected pairs the model can read, or --strict to refuse them",
            data_file,
        )
    started = time.perf_counter()
    probabilities = pair_probabilities(model, tokenizer, sequences, len(data), batch_size, quiet, autocast_dtype)
    probabilities = probabilities[encoded]
    labels = [config.id2label[i] for i in range(config.num_labels)]
    gold, probabilities = with_no_relation_rows(
        gold[encoded], probabilities, unencodable_labels, config.label2id.get(NO_RELATION)
    )
    metrics = relation_metrics(gold, probabilities, labels)
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    metrics["precision"] = precision
    metrics["unencodable_pairs"] = unencodable_counts(reasons)
    if unencodable_labels and not quiet:
        print(f"pairs the model cannot read, scored as predicted no_relation: {metrics['unencodable_pairs']} "
              "(overlapping: nested mentions; too_far_apart: no max_length window holds both); --strict makes them "
              "errors", file=sys.stderr)  # fmt: skip
    if plot:
        matrix = confusion_matrix(gold, probabilities.argmax(1), len(labels))
        title = f"{Path(str(model_source)).name} on {Path(data_file).name}"
        metrics["confusion_matrix_png"] = str(plot_confusion_matrix(matrix, labels, plot, title))
    return metrics
