"""Inference from a folder that `typed-bert export --format onnx` wrote (or a Hub repo it was pushed to), through
ONNX Runtime (`pip install "typed-bert[onnx]"`): the same pipelines as the PyTorch model
(`RelationClassificationPipeline`, the entity model's `entity_recognizer_for`), each model replaced
by `OnnxModel`, its graph run by an `onnxruntime.InferenceSession`. Entities, relations, labels and scores are those
of the PyTorch model (the export checked the logits); no torch weights are read.

An exported folder holds the relation graph, the tokenizer and the config (its `onnx` entry names the graphs and
their inputs), and `entities/` the same for a bundled entity model.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer, Pipeline, PretrainedConfig, PreTrainedModel, pipeline
from transformers.modeling_outputs import ModelOutput

from pipeline_typed_bert import RelationClassificationPipeline, entity_recognizer_for
from typed_bert.errors import InputError
from typed_bert.hub.export import PICKLE_SUFFIXES
from typed_bert.outputs import ONNX_CONFIG_KEY, is_onnx_export

ONNX_PRECISIONS = ("fp32", "int8")


@dataclass
class OnnxModelOutput(ModelOutput):
    """What the pipelines read from a model call: `logits` (a float32 tensor of the graph's output shape)."""

    logits: torch.Tensor | None = None


class OnnxModel(PreTrainedModel):
    """An exported TypedBert (or BERT) graph run by ONNX Runtime, in place of the PyTorch model in transformers'
    pipelines: it has the model's config and takes its keyword inputs; `forward` feeds the graph the inputs it names
    (a missing `token_type_ids` is zeros) and returns `logits`. It has no parameters; it runs on the CPU (or where the
    session's execution providers put it)."""

    main_input_name = "input_ids"

    def __init__(self, config: PretrainedConfig, session: Any) -> None:
        super().__init__(config)
        self.session = session
        self.input_names = [graph_input.name for graph_input in session.get_inputs()]

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def forward(self, **inputs: torch.Tensor) -> OnnxModelOutput:
        """`inputs`: the model's tensors `(batch, seq)` (and `object_positions` `(batch, pairs)` for a packed model, a
        span classifier's `span_rows`, `span_starts`, `span_ends`, `span_widths` `(n_spans,)`). Returns `logits` as the
        PyTorch model's: `(batch, num_labels)`, `(batch, pairs, num_labels)`, `(n_spans, num_labels)` or `(batch, seq,
        num_labels)`."""
        shape = inputs["input_ids"].shape
        feed = {
            name: (inputs[name] if name in inputs else torch.zeros(shape, dtype=torch.long)).numpy()
            for name in self.input_names
        }
        (logits,) = self.session.run(None, feed)
        return OnnxModelOutput(logits=torch.from_numpy(logits))

    @classmethod
    def from_folder(cls, folder: str | Path, precision: str = "fp32", threads: int | None = None) -> OnnxModel:
        """The model of one exported folder (`config.json` with an `onnx` entry and its graphs), its graph for
        `precision` (`fp32`, or `int8` when the export quantized). `threads`: ONNX Runtime's intra-op threads
        (default: its own choice, one per core)."""
        onnxruntime = require_onnx()["onnxruntime"]
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        graphs = onnx_graphs(config, folder)
        if precision not in graphs:
            raise InputError(f"has no {precision} graph (it has {sorted(graphs)}); export it with typed-bert export "
                             f"--format onnx{' --quantize int8' if precision == 'int8' else ''}", folder)  # fmt: skip
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(
            str(Path(folder) / graphs[precision]), options, providers=["CPUExecutionProvider"]
        )
        return cls(config, session)


def check_export(folder: str | Path) -> list[str]:
    """What stops an exported folder from being published or loaded: a graph its config.json (or its entity model's)
    names that is not there; pickle files (only ONNX graphs and configs are published)."""
    folder, problems = Path(folder), []
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    parts = [(folder, config)]
    if config.get("entity_model"):
        part = folder / config["entity_model"]
        parts.append((part, json.loads((part / "config.json").read_text(encoding="utf-8"))))
    for part, part_config in parts:
        graphs = part_config.get(ONNX_CONFIG_KEY, {}).get("graphs")
        missing = [name for name in (graphs or {}).values() if not (part / name).is_file()]
        if not graphs or missing:
            problems.append(f"{part.relative_to(folder.parent)}: the graphs its config.json names are missing "
                            f"({missing or 'none named'}); export it again with typed-bert export")  # fmt: skip
    pickles = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.suffix in PICKLE_SUFFIXES)
    if pickles:
        problems.append(f"pickle files {pickles}: remove them; only ONNX graphs and safetensors are published.")
    return problems


def onnx_graphs(config: PretrainedConfig, folder: str | Path) -> dict[str, str]:
    """The graph file of each precision that config.json's `onnx` entry names; an `InputError` for a folder that is
    not an ONNX export."""
    entry = getattr(config, ONNX_CONFIG_KEY, None)
    if not isinstance(entry, dict) or not isinstance(entry.get("graphs"), dict):
        raise InputError("is not an ONNX export (its config.json has no 'onnx' entry); expected a folder written by "
                         "typed-bert export --format onnx", folder)  # fmt: skip
    return entry["graphs"]


def onnx_export_folder(model: str | Path, revision: str | None = None) -> Path | None:
    """The local folder of an ONNX export: `model` itself when it is a folder that `typed-bert export` wrote, or the
    downloaded snapshot (at `revision`) of a Hub repo whose config.json names its graphs; None for anything else (a
    PyTorch model, or a repo that cannot be read, which the PyTorch loader then reports in its own words)."""
    if Path(model).is_dir():
        return Path(model) if is_onnx_export(model) else None
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        config = Path(hf_hub_download(str(model), "config.json", revision=revision))
    except (OSError, ValueError, EntryNotFoundError):
        return None
    return Path(snapshot_download(str(model), revision=revision)) if is_onnx_export(config.parent) else None


def onnx_pipeline(
    model: str | Path, precision: str = "fp32", threads: int | None = None, revision: str | None = None, **kwargs: Any
) -> RelationClassificationPipeline:
    """`RelationClassificationPipeline` over an exported folder or a Hub repo that holds one (at `revision`): the
    relation graph, and the entity graph of `entities/` when the export has one (raw text in, as the PyTorch
    model's). `kwargs` go to the pipeline (`batch_size`, ...)."""
    folder = onnx_export_folder(model, revision)
    if folder is None:
        raise InputError("is not an ONNX export (no config.json with an 'onnx' entry); expected a folder written by "
                         "typed-bert export --format onnx, or a Hub repo that holds one", str(model))  # fmt: skip
    model = OnnxModel.from_folder(folder, precision, threads)
    recognizer = None
    subfolder = getattr(model.config, "entity_model", None)
    if subfolder and (folder / subfolder).is_dir():
        recognizer = entity_recognizer(folder / subfolder, precision, threads)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    return RelationClassificationPipeline(model=model, tokenizer=tokenizer, entity_recognizer=recognizer, **kwargs)


def relation_pipeline(
    model: str, onnx_graph: str = "fp32", threads: int | None = None, **pipeline_kwargs: Any
) -> RelationClassificationPipeline:
    """The relation-classification pipeline of `model`: ONNX Runtime on its `onnx_graph` for a folder that
    `typed-bert export` wrote (or a Hub repo that holds one), else the PyTorch model (`pipeline(...,
    trust_remote_code=True, **pipeline_kwargs)`: `device`, `dtype`, `revision`)."""
    folder = onnx_export_folder(model, pipeline_kwargs.get("revision"))
    if folder is not None:
        return onnx_pipeline(folder, onnx_graph, threads)
    return pipeline("relation-classification", model=model, trust_remote_code=True, **pipeline_kwargs)


def entity_recognizer(folder: str | Path, precision: str = "fp32", threads: int | None = None) -> Pipeline:
    """The entity model's pipeline over its exported graph (`entity_recognizer_for`: a span classifier's own, or a
    tagger's, `ENTITY_AGGREGATION` and BIO-constrained words)."""
    model = OnnxModel.from_folder(folder, precision, threads)
    return entity_recognizer_for(model, AutoTokenizer.from_pretrained(folder, trust_remote_code=True))


def require_onnx(*names: str) -> dict[str, Any]:
    """Import `onnxruntime` (and `names`, e.g. the exporter's `onnx`, `onnxscript`); an `InputError` says how to
    install what is missing."""
    modules = {}
    for name in ("onnxruntime", *names):
        try:
            modules[name] = importlib.import_module(name)
        except ImportError:
            raise InputError(f'{name} is not installed; expected pip install "typed-bert[onnx]"') from None
    return modules
