"""Corpora beyond one machine: text-in relation extraction as a Ray Data stage (`pip install "typed-bert[ray]"`).

`RelationExtractor` is a callable class for `ray.data.Dataset.map_batches`: each actor loads the relation-classification
pipeline once (PyTorch, or ONNX Runtime for a `typed-bert export` folder) and turns a batch's `text` column into two
columns, `entities` (`{start, end, type, text, score}` each) and `relations` (`{subject, object, label, score}`,
subject and object being indices into the row's `entities`), plus `pairs_beyond_reach` (documents, see
docs/documents.md); every other column (an `id`) is kept:

    import ray
    from typed_bert.ray_inference import RelationExtractor

    texts = ray.data.read_json("corpus/*.jsonl")            # or read_parquet
    found = texts.map_batches(RelationExtractor, fn_constructor_args=("org/typed-bert",),
                              compute=ray.data.ActorPoolStrategy(size=4), batch_size=64, batch_format="pyarrow")
    found.write_parquet("relations/")

`typed-bert predict --engine ray` runs the same for users who write no Ray code (`predict_with_ray`).
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from typed_bert.errors import InputError
from typed_bert.network import unreachable
from typed_bert.outputs import staged_folder

ENTITY = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("type", pa.string()), ("text", pa.string()),
                    ("score", pa.float64())])  # fmt: skip
CONNECT_TIMEOUT_S = 10
RELATION = pa.struct([("subject", pa.int64()), ("object", pa.int64()), ("label", pa.string()),
                      ("score", pa.float64())])  # fmt: skip


class RelationExtractor:
    """A stateful `map_batches` transform: the relation-classification pipeline of `model` (a folder every worker can
    read, a Hub id at `revision`, or an ONNX export), loaded once per actor with `threads` torch threads; `batch_size`
    texts per forward pass; `dtype` the weights' (PyTorch only), `onnx_graph` the export's graph (`fp32`, `int8`)."""

    def __init__(
        self, model: str, batch_size: int = 32, threads: int | None = None, device: str | None = None,
        dtype: torch.dtype | None = None, onnx_graph: str = "fp32", revision: str | None = None,
    ) -> None:  # fmt: skip
        if threads:
            torch.set_num_threads(threads)
        from typed_bert.onnx_runtime import relation_pipeline

        self.classify = relation_pipeline(model, onnx_graph, threads, device=device, dtype=dtype, revision=revision)
        self.batch_size = batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        """`batch`: a table with a `text` column (strings). Returns it with `entities`, `relations` and
        `pairs_beyond_reach` appended."""
        if "text" not in batch.column_names:
            raise ValueError(f"the rows have no 'text' column (columns: {batch.column_names}); expected texts")
        outputs = self.classify(batch.column("text").to_pylist(), batch_size=self.batch_size)
        entities = [[{key: entity[key] for key in ENTITY.names} for entity in output["entities"]] for output in outputs]
        relations = [_indexed_relations(output) for output in outputs]
        beyond = [output.get("pairs_beyond_reach", 0) for output in outputs]
        batch = batch.append_column(pa.field("entities", pa.list_(ENTITY)), pa.array(entities, pa.list_(ENTITY)))
        batch = batch.append_column(pa.field("relations", pa.list_(RELATION)), pa.array(relations, pa.list_(RELATION)))
        return batch.append_column("pairs_beyond_reach", pa.array(beyond, pa.int64()))


def _indexed_relations(output: dict[str, Any]) -> list[dict[str, Any]]:
    """The relations of one text with their subject and object as indices into its entities."""
    index = {(e["start"], e["end"], e["type"]): i for i, e in enumerate(output["entities"])}
    return [{"subject": index[(r["subject"]["start"], r["subject"]["end"], r["subject"]["type"])],
             "object": index[(r["object"]["start"], r["object"]["end"], r["object"]["type"])],
             "label": r["label"], "score": r["score"]} for r in output["relations"]]  # fmt: skip


def input_paths(pattern: str) -> list[str]:
    """The files of `--input`: a local file or glob (sorted), or a URI (`s3://...`) passed to Ray as given; JSON
    Lines (`.jsonl`, `.json`) or Parquet (`.parquet`)."""
    if "://" in pattern:
        return [pattern]
    paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not paths or not all(os.path.isfile(path) for path in paths):
        raise InputError("no such file (or no file matches); expected JSON Lines or Parquet files of texts", pattern)
    kinds = {"parquet" if path.endswith(".parquet") else "json" if path.endswith((".jsonl", ".json")) else path
             for path in paths}  # fmt: skip
    if len(kinds) > 1 or not kinds <= {"parquet", "json"}:
        raise InputError(f"files {paths[:3]}...; expected all JSON Lines (.jsonl) or all Parquet (.parquet)", pattern)
    return paths


def predict_with_ray(
    model: str, pattern: str, output_dir: str, workers: int = 1, cpus_per_worker: float = 1, gpus_per_worker: float = 0,
    batch_size: int = 32, dtype: torch.dtype | None = None, onnx_graph: str = "fp32", overwrite: bool = False,
    revision: str | None = None,
) -> int:  # fmt: skip
    """Read the texts of `pattern`, extract with `workers` `RelationExtractor` actors on the Ray instance
    `RAY_ADDRESS` names (else a local one), and write Parquet files to `output_dir` (written beside it and renamed
    into place when every file is there). Returns the number of rows written."""
    import ray

    paths = input_paths(pattern)
    _connect(ray, local_cpus=int(workers * cpus_per_worker) + 1)  # one CPU more than the actors: reads and writes
    read = ray.data.read_parquet if paths[0].endswith(".parquet") else ray.data.read_json
    texts = read(paths)
    columns = texts.schema().names
    if "text" not in columns:
        raise InputError(f"the rows have no 'text' column (columns: {columns}); expected one text per row", pattern)
    found = texts.map_batches(
        RelationExtractor, fn_constructor_args=(model, batch_size, max(1, int(cpus_per_worker))),
        fn_constructor_kwargs={"device": "cuda" if gpus_per_worker else None, "dtype": dtype, "onnx_graph": onnx_graph,
                               "revision": revision},
        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker, num_gpus=gpus_per_worker,
        batch_size=batch_size, batch_format="pyarrow",
    )  # fmt: skip
    with staged_folder(output_dir, overwrite) as staging:
        try:
            found.write_parquet(str(staging))
        except ray.exceptions.RayError as error:
            refusal = _refusal(error)
            if refusal is None:
                raise
            raise InputError(f"a worker refused its input: {refusal[:500]}", pattern) from None
        return sum(pq.read_metadata(path).num_rows for path in Path(staging).glob("*.parquet"))


def _refusal(error: BaseException) -> str | None:
    """What a worker's `ValueError` (the pipeline refusing a text) said, from the Ray error that carries it (Ray
    passes the worker's traceback as text); None when something else failed."""
    found = re.findall(r"^ValueError: (.+)$", str(error), flags=re.MULTILINE)
    return found[-1] if found else None


def _connect(ray, local_cpus: int) -> None:
    """Join the Ray instance `RAY_ADDRESS` names, or start a local one with at least `local_cpus` logical CPUs (the
    actors and a read or write task at a time); an address that does not answer within `CONNECT_TIMEOUT_S` is an
    `InputError` (Ray itself retries for minutes)."""
    address = os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return
    if address and address != "auto":
        _check_reachable(address)
    local = {} if address else {"num_cpus": max(os.cpu_count() or 1, local_cpus)}
    try:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False, **local)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise _unreachable(address, " ".join(str(error).split())[:300]) from None


def _check_reachable(address: str) -> None:
    """Open a TCP connection to `HOST:PORT` (or `ray://HOST:PORT`), refusing an address that does not answer."""
    host, _, port = address.rpartition("://")[2].rpartition(":")
    port = port.strip()
    reason = unreachable(host, int(port), CONNECT_TIMEOUT_S) if port.isascii() and port.isdigit() else "no port"
    if reason:
        raise _unreachable(address, reason)


def _unreachable(address: str | None, reason: str) -> InputError:
    return InputError(f"cannot reach the Ray cluster ({reason}); expected the address of a running one (ray start "
                      "--head), or no RAY_ADDRESS for a local instance", f"RAY_ADDRESS={address}")  # fmt: skip
