"""Corpora on Ray Data: `RelationExtractor` in `map_batches` and `typed-bert predict --engine ray` on a local Ray
instance with 2 workers give what single-process `predict` gives, joined on `id`; bad input is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, save_tiny_classifier
from tests.test_end_to_end import save_tiny_recognizer
from typed_bert.entities import bundle_entity_model

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # each command starts a local Ray instance (10-30 s)

ENTITY_TYPES = ["O", "PER", "ORG"]
TEXTS = ["Bill Gates founded Microsoft.", "Ada Lovelace met Charles Babbage in London.", "Paul Allen", "Hello there."]


def command(*args, cwd, env=None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    if env is None:
        full_env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "typed_bert.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=900)  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny relation model with an entity model that tags every word, and two JSON Lines files of texts with ids."""
    root = tmp_path_factory.mktemp("corpus")
    model = save_tiny_classifier(root / "model", ENTITY_TYPES)
    bundle_entity_model(model, save_tiny_recognizer(root / "tagger"))
    (root / "texts").mkdir()
    for part, texts in enumerate((TEXTS[:2], TEXTS[2:])):
        lines = [json.dumps({"id": f"{part}-{i}", "text": text, "source": "test"}) for i, text in enumerate(texts)]
        (root / "texts" / f"part-{part}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_predict_on_ray_with_two_workers_equals_single_process_predict(corpus):
    import pyarrow.parquet as pq

    result = command("predict", "--model", "model", "--input", "texts/*.jsonl", "--output", "found", "--engine", "ray",
                     "--workers", "2", "--dtype", "fp32", cwd=corpus)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["id"]: row for row in pq.read_table(corpus / "found").to_pylist()}
    assert sorted(rows) == ["0-0", "0-1", "1-0", "1-1"] and {row["source"] for row in rows.values()} == {"test"}
    (corpus / "all.jsonl").write_text("".join((corpus / "texts" / f"part-{i}.jsonl").read_text() for i in range(2)))
    single = command("predict", "--model", "model", "--input", "all.jsonl", "--output", "single.jsonl", "--dtype",
                     "fp32", "--quiet", cwd=corpus)  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    fields = ("start", "end", "type", "text")
    for line in (corpus / "single.jsonl").read_text().splitlines():
        expected = json.loads(line)["prediction"]
        row = rows[json.loads(line)["id"]]
        assert [{key: e[key] for key in fields} for e in row["entities"]] == [
            {key: e[key] for key in fields} for e in expected["entities"]]  # fmt: skip
        differences = [abs(a["score"] - b["score"]) for a, b in zip(row["entities"], expected["entities"], strict=True)]
        assert max(differences, default=0) <= 1e-5
        found = [(row["entities"][r["subject"]]["start"], row["entities"][r["object"]]["start"], r["label"])
                 for r in row["relations"]]  # fmt: skip
        assert found == [(r["subject"]["start"], r["object"]["start"], r["label"]) for r in expected["relations"]]
    assert sum(len(row["relations"]) for row in rows.values()) > 0


def test_relation_extractor_in_map_batches(corpus):
    from transformers import pipeline

    from typed_bert.ray_inference import RelationExtractor

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        items = ray.data.from_items([{"id": i, "text": text} for i, text in enumerate(TEXTS)])
        found = items.map_batches(RelationExtractor, fn_constructor_args=(str(corpus / "model"),), concurrency=1,
                                  batch_size=2, batch_format="pyarrow").take_all()  # fmt: skip
    finally:
        ray.shutdown()
    expected = pipeline("relation-classification", model=str(corpus / "model"), trust_remote_code=True)(TEXTS)
    by_id = {row["id"]: row for row in found}
    for i, output in enumerate(expected):
        assert [e["text"] for e in by_id[i]["entities"]] == [e["text"] for e in output["entities"]]
        assert [r["label"] for r in by_id[i]["relations"]] == [r["label"] for r in output["relations"]]


def test_bad_ray_input_is_one_line_and_writes_nothing(corpus):
    (corpus / "no-text.jsonl").write_text(json.dumps({"id": 1, "body": "Bill Gates"}) + "\n")
    (corpus / "empty-text.jsonl").write_text(json.dumps({"id": 1, "text": "   "}) + "\n")
    cases = [
        (("--input", "missing/*.jsonl"), None, "missing/*.jsonl: no such file (or no file matches)"),
        (("--input", "no-text.jsonl"), None, "no-text.jsonl: the rows have no 'text' column (columns: ['id', 'body'])"),
        (("--input", "empty-text.jsonl"), None, "a worker refused its input: "),
        (("--input", "texts/*.jsonl", "--top-k", "2"), None, "none of ['--top-k']"),
        (("--input", "texts/*.jsonl"), {"RAY_ADDRESS": "127.0.0.1:1"}, "RAY_ADDRESS=127.0.0.1:1: cannot reach the Ray"),
    ]
    for args, env, expected in cases:
        result = command("predict", "--model", "model", "--output", "bad-out", "--engine", "ray", *args, cwd=corpus,
                         env=env)  # fmt: skip
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert expected in result.stderr.strip().splitlines()[-1], (args, result.stderr[-2000:])
        assert not (corpus / "bad-out").exists() and not list(corpus.glob(".bad-out*"))
