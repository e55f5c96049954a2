"""micro-F1 without no_relation, AUPRC and per-label scores on hand-made cases."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from typed_bert.metrics import confusion_matrix, plot_confusion_matrix, relation_metrics

LABELS = ["no_relation", "A", "B"]


def one_hot(predicted, confidence=0.8):
    probabilities = np.full((len(predicted), len(LABELS)), (1 - confidence) / (len(LABELS) - 1))
    probabilities[np.arange(len(predicted)), predicted] = confidence
    return probabilities


def test_no_relation_is_neither_true_nor_false_positive():
    # gold: A, B, none, none; predicted: A (tp), none (missed B), B (false positive), none (ignored)
    metrics = relation_metrics([1, 2, 0, 0], one_hot([1, 0, 2, 0]), LABELS)
    assert metrics["micro_precision"] == pytest.approx(1 / 2)
    assert metrics["micro_recall"] == pytest.approx(1 / 2)
    assert metrics["micro_f1"] == pytest.approx(0.5)
    assert metrics["accuracy"] == pytest.approx(2 / 4)


def test_wrong_relation_counts_against_precision_and_recall():
    metrics = relation_metrics([1, 1, 2], one_hot([2, 1, 2]), LABELS)
    assert metrics["micro_precision"] == pytest.approx(2 / 3)
    assert metrics["micro_recall"] == pytest.approx(2 / 3)
    assert metrics["per_label"]["A"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert metrics["per_label"]["B"]["precision"] == pytest.approx(0.5)


def test_all_no_relation_predictions_score_zero_not_nan():
    metrics = relation_metrics([1, 2, 0], one_hot([0, 0, 0]), LABELS)
    assert metrics["micro_f1"] == 0.0 and metrics["micro_precision"] == 0.0 and metrics["micro_recall"] == 0.0
    assert metrics["accuracy"] == pytest.approx(1 / 3)


def test_perfect_predictions():
    gold = [0, 1, 2, 1, 0]
    metrics = relation_metrics(gold, one_hot(gold), LABELS)
    assert metrics["micro_f1"] == 1.0 and metrics["accuracy"] == 1.0 and metrics["auprc"] == pytest.approx(1.0)


def test_auprc_is_the_mean_area_over_labels():
    gold = [1, 1, 0, 0]
    probabilities = np.array([[0.1, 0.9, 0.0], [0.6, 0.4, 0.0], [0.3, 0.7, 0.0], [0.8, 0.2, 0.0]])
    metrics = relation_metrics(gold, probabilities, LABELS)
    # Label A: scores 0.9 (A), 0.7 (none), 0.4 (A), 0.2 (none): PR points (recall, precision)
    # (0, 1) (0.5, 1) (0.5, 0.5) (1, 2/3) (1, 0.5): trapezoid area 0.5*1 + 0.5*(0.5+2/3)/2 = 0.7917.
    # Label none: scores 0.8 (none), 0.6 (A), 0.3 (none), 0.1 (A): the same shape, the same area. B has no gold
    # example: as in KLUE's klue_re_auprc, it still counts, with scikit-learn's area for it, 0.5.
    area = 0.5 + 0.5 * (0.5 + 2 / 3) / 2
    assert metrics["auprc"] == pytest.approx((area + area + 0.5) / 3)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"probabilities have shape \(2, 3\), expected \(3, 3\)"):
        relation_metrics([0, 1, 2], one_hot([0, 1]), LABELS)


def test_confusion_matrix_png(tmp_path):
    matrix = confusion_matrix([0, 1, 2, 1], [0, 2, 2, 1], 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    path = plot_confusion_matrix(matrix, LABELS, tmp_path / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_cli_prints_json_last(tmp_path, tiny_bert_dir, small_data):
    from tests.conftest import run_script, train_tiny

    out = tmp_path / "model"
    train_tiny(tiny_bert_dir, small_data, out)
    result = run_script(
        [
            sys.executable,
            "scripts/evaluate.py",
            "--model",
            str(out),
            "--data-file",
            str(small_data["dev"]),
            "--plot",
            str(tmp_path / "cm.png"),
        ]
    )
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"micro_f1", "auprc", "accuracy", "per_label"} <= set(metrics)
    assert metrics["num_examples"] == 60
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "eval_results.json").read_text())
    assert saved["micro_f1"] == pytest.approx(metrics["micro_f1"])
