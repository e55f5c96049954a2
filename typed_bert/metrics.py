"""Relation-extraction metrics: micro-F1 without `no_relation` (TACRED/KLUE), KLUE's AUPRC, accuracy, per label."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, auc, precision_recall_curve, precision_recall_fscore_support
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

from configuration_typed_bert import NO_RELATION
from typed_bert.outputs import staged_path


def relation_metrics(
    gold: Sequence[int], probabilities: np.ndarray, labels: Sequence[str], no_relation: str = NO_RELATION
) -> dict:
    """Score predictions (the argmax of `probabilities`, shape `(n, len(labels))`) against `gold` label ids.

    micro_f1: scikit-learn's micro average over every label but `no_relation` (TACRED, KLUE-RE): precision = correct
    related predictions / related predictions, recall = correct related predictions / related gold examples, so
    predicting `no_relation` is neither a true nor a false positive and a wrong related label counts against both.
    auprc: KLUE-RE's, the mean over ALL labels of the area under each one-vs-rest precision-recall curve, computed as
    KLUE's script does: a label with no gold example in the scored file gets scikit-learn's curve for it (recall set
    to 1), an area of 0.5.
    """
    gold = np.asarray(gold)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape != (len(gold), len(labels)):
        raise ValueError(f"probabilities have shape {probabilities.shape}, expected ({len(gold)}, {len(labels)}).")
    predicted = probabilities.argmax(axis=1)
    related = [index for index, label in enumerate(labels) if label != no_relation]
    precision, recall, f1, _ = precision_recall_fscore_support(
        gold, predicted, labels=related, average="micro", zero_division=0
    )
    label_scores = precision_recall_fscore_support(gold, predicted, labels=range(len(labels)), zero_division=0)
    per_label = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
        for label, p, r, f, n in zip(labels, *label_scores, strict=True)
    }
    areas = []
    for index in range(len(labels)):
        with warnings.catch_warnings():  # "No positive class found in y_true": KLUE's script scores it all the same
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            curve_precision, curve_recall, _ = precision_recall_curve(gold == index, probabilities[:, index])
        areas.append(auc(curve_recall, curve_precision))
    return {
        "micro_f1": float(f1),
        "micro_precision": float(precision),
        "micro_recall": float(recall),
        "auprc": float(np.mean(areas)) if areas else 0.0,
        "accuracy": float(accuracy_score(gold, predicted)) if len(gold) else 0.0,
        "num_examples": len(gold),
        "per_label": per_label,
    }


def confusion_matrix(gold: Sequence[int], predicted: Sequence[int], num_labels: int) -> np.ndarray:
    """`matrix[g, p]` = number of examples of gold label g predicted as p (scikit-learn's)."""
    return sklearn_confusion_matrix(gold, predicted, labels=range(num_labels))


def plot_confusion_matrix(matrix: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Write the confusion matrix as a PNG heat map with counts; rows gold, columns predicted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(5.0, 0.7 * len(labels) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    shown = np.log1p(matrix)
    axes.imshow(shown, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    axes.set_title(title or "confusion matrix")
    for g in range(len(labels)):
        for p in range(len(labels)):
            color = "white" if shown[g, p] > shown.max() / 2 else "black"
            axes.text(p, g, str(matrix[g, p]), ha="center", va="center", color=color, fontsize=8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with staged_path(path, overwrite=True) as staging:  # the command checked --overwrite before it ran
        figure.savefig(staging, dpi=120, format="png")
    plt.close(figure)
    return path


def with_no_relation_rows(
    labels: Sequence[int], probabilities: np.ndarray, extra_labels: Sequence[int], no_relation_id: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Append `extra_labels` (pairs the model could not encode) as rows predicted `no_relation` with certainty, so a
    score counts every pair of the data file."""
    if not len(extra_labels):
        return np.asarray(labels), probabilities
    if no_relation_id is None:
        raise ValueError(f"{len(extra_labels)} pairs could not be encoded and the model has no no_relation label.")
    extra = np.zeros((len(extra_labels), probabilities.shape[1]), dtype=probabilities.dtype)
    extra[:, no_relation_id] = 1.0
    return np.concatenate([np.asarray(labels), np.asarray(extra_labels)]), np.concatenate([probabilities, extra])


def plot_training_curve(log_history: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Write training loss (per logging step, against epoch) and dev micro-F1 (per evaluation, if any) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [(entry["epoch"], entry["loss"]) for entry in log_history if "loss" in entry and "epoch" in entry]
    scores = [(entry["epoch"], entry["eval_micro_f1"]) for entry in log_history if "eval_micro_f1" in entry]
    figure, loss_axes = plt.subplots(figsize=(7, 4))
    if losses:
        loss_axes.plot(*zip(*losses, strict=True), color="tab:blue", label="training loss")
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("training loss", color="tab:blue")
    if scores:  # none after a final fit, which does not evaluate
        f1_axes = loss_axes.twinx()
        f1_axes.plot(*zip(*scores, strict=True), "o-", color="tab:orange", label="dev micro-F1")
        f1_axes.set_ylabel("dev micro-F1", color="tab:orange")
        f1_axes.set_ylim(0, 1)
    loss_axes.set_title(title)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
