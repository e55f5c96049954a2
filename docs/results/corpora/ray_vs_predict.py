"""Texts/s of `typed-bert predict --engine ray --workers 1` and `--workers 2` against single-process `predict` on the
same texts (CoNLL04 dev sentences, text only, with ids), and Ray's fixed cost (the same command on 2 texts); each run
a fresh process, wall-clock from start to exit. A sanity figure for one machine, not a scaling claim.

    python docs/results/corpora/ray_vs_predict.py MODEL ../shared/data/conll04/dev_entities.jsonl > record.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(*args: str, cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "typed_bert.cli", *args], cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def main(model: str, data_file: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix="ray-vs-predict-"))
    texts = [json.loads(line)["text"] for line in Path(data_file).read_text().splitlines() if line.strip()]
    (work / "all.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    (work / "two.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts[:2])))
    model = str(Path(model).resolve())
    record = {"texts": len(texts), "seconds": {}}
    record["seconds"]["predict"] = timed("predict", "--model", model, "--input", "all.jsonl", "--output", "p.jsonl",
                                         "--quiet", cwd=work)  # fmt: skip
    record["seconds"]["predict, 2 texts"] = timed("predict", "--model", model, "--input", "two.jsonl", "--output",
                                                  "p2.jsonl", "--quiet", cwd=work)  # fmt: skip
    for workers in (1, 2):
        runs = ((f"ray, {workers} workers", "all.jsonl"), (f"ray, {workers} workers, 2 texts", "two.jsonl"))
        for name, source in runs:
            record["seconds"][name] = timed("predict", "--model", model, "--input", source, "--output",
                                            f"out-{workers}-{source}", "--engine", "ray", "--workers", str(workers),
                                            cwd=work)  # fmt: skip
    record["texts_per_s"] = {name: len(texts) / seconds for name, seconds in record["seconds"].items()
                             if "2 texts" not in name}  # fmt: skip
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main(*sys.argv[1:3])
