"""`typed-bert export --format onnx`: a trained TypedBert folder → ONNX graphs that ONNX Runtime runs
(`typed_bert.onnx_runtime`), each checked against PyTorch before the folder is written.

The relation model becomes `model.onnx` with the inputs of its pair encoding (`PairEncoding.input_names`: five for
one sequence per pair, eight for subject-packed sequences) and dynamic batch, sequence and pair axes; a bundled
entity model becomes `entities/model.onnx` (`input_ids`, `attention_mask`, `token_type_ids`, `word_shape_ids`
when it has a word shape table, and a span classifier's candidates `span_rows`, `span_starts`, `span_ends`,
`span_widths`). Each graph is run by ONNX Runtime on real encodings (the texts and entities of `--check-file`, else
sentences made of the model's entity types) and refused when a logit differs from PyTorch's by more than
`MAX_LOGIT_DIFFERENCE`. `--quantize int8` adds `model.int8.onnx` graphs (ONNX Runtime's dynamic quantization of the
linear layers' weights), refused when their labels agree with PyTorch's on fewer than `min_agreement` of the check
file's pairs, candidate spans or tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from encoding_typed_bert import pair_encoding_for, span_candidates, span_inputs, word_shape_ids
from pipeline_typed_bert import SPAN_CLASSIFIER, load_entity_recognizer
from typed_bert.batching import TypedBertDataCollator
from typed_bert.errors import InputError, reading
from typed_bert.onnx_runtime import require_onnx
from typed_bert.outputs import ONNX_CONFIG_KEY, check_complete, check_destination, staged_folder

MAX_LOGIT_DIFFERENCE = 1e-4
# A span classifier's candidate inputs (`span_inputs`), one row per candidate of the batch.
SPAN_INPUTS = {"span_rows", "span_starts", "span_ends", "span_widths"}
GRAPH_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
# Sentences for the parity check when no --check-file is given: each bracketed name gets one of the model's types.
CHECK_TEMPLATES = (
    "[Anna Berg] said that [Northwind Labs] and [Carl Dahl] met near [Lake Oswego] on Friday.",
    "[Oslo] is far from [Eden Hall].",
    "Reports from [Maria Lopez] of the [Harbor Institute] describe how [Kyoto] and [Lima] signed the accord with "
    "[Peter Novak] after long talks.",
)


class ExportError(InputError):
    """An exported graph disagrees with the PyTorch model it came from; nothing is written."""


def export_onnx(
    model_dir: str | Path,
    output_dir: str | Path,
    quantize: bool = False,
    check_file: str | Path | None = None,
    min_agreement: float = 0.95,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export the relation model of `model_dir` (and its bundled entity model) to `output_dir`, checked as the module
    docstring says; returns the report also written to `export_report.json` (per graph: max logit difference, label
    agreement, size in bytes)."""
    require_onnx("onnx", "onnxscript")
    check_destination(output_dir, overwrite, (model_dir, check_file))
    check_complete(model_dir)  # refuses an ONNX export too
    if quantize and check_file is None:
        raise InputError("--quantize int8 needs --check-file: the int8 labels are checked on data of your domain")
    with reading(model_dir, "a TypedBert relation model folder (typed-bert train or convert)"):
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
    entity_model = getattr(model.config, "entity_model", None)
    texts = check_texts(check_file, model.config.entity_types)
    report: dict[str, Any] = {}
    with staged_folder(output_dir, overwrite) as staging:
        report["relations"] = _export_model(model, tokenizer, _relation_batch(model, tokenizer, texts), staging,
                                            quantize, min_agreement)  # fmt: skip
        if entity_model and (Path(model_dir) / entity_model).is_dir():
            recognizer = load_entity_recognizer(str(Path(model_dir) / entity_model))
            report["entities"] = _export_model(
                recognizer.model.eval(), recognizer.tokenizer, _entity_batch(recognizer, texts),
                staging / entity_model, quantize, min_agreement,
            )  # fmt: skip
        (staging / "export_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def check_texts(check_file: str | Path | None, entity_types: Sequence[str]) -> list[dict[str, Any]]:
    """`{"text", "entities"}` to check the graphs on: the texts of `check_file` (pairs or entity lists, as
    `typed-bert evaluate` reads them), else `CHECK_TEMPLATES` with the model's entity types in turn."""
    if check_file is not None:
        from typed_bert.data import load_relations, texts_with_entities

        return texts_with_entities(load_relations(check_file))
    types = [name for name in entity_types if name != "O"] or list(entity_types)
    texts, count = [], 0
    for template in CHECK_TEMPLATES:
        text, entities = "", []
        for index, piece in enumerate(template.replace("]", "[").split("[")):
            if index % 2:
                entities.append({"start": len(text), "end": len(text) + len(piece), "type": types[count % len(types)]})
                count += 1
            text += piece
        texts.append({"text": text, "entities": entities})
    return texts


def _relation_batch(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[dict]) -> dict:
    """The model inputs of every pair of the check texts (at most 256 sequences), padded to the longest."""
    encoding = pair_encoding_for(model.config)
    sequences = []
    for text in texts:
        try:
            encoded = encoding.encode(tokenizer, text["text"], text["entities"], model.config.entity_types)
        except ValueError as error:
            raise InputError(f"the check text {text['text'][:60]!r} cannot be encoded: {error}") from error
        sequences.extend(encoded.sequences)
    if len(sequences) < 2:
        raise InputError("the check texts give fewer than 2 pairs; expected texts with at least two entities")
    batch = TypedBertDataCollator(tokenizer)(sequences[:256])
    return {name: batch[name] for name in encoding.input_names}


def _entity_batch(recognizer, texts: list[dict]) -> dict:
    """The entity model's inputs for the check texts (at most 256), padded to the longest."""
    strings = [text["text"] for text in texts[:256]] * (2 if len(texts) < 2 else 1)
    batch = recognizer.tokenizer(strings, padding=True, truncation=True, return_tensors="pt",
                                 return_offsets_mapping=True, return_token_type_ids=True)  # fmt: skip
    offsets = batch.pop("offset_mapping")
    inputs = {name: batch[name] for name in ("input_ids", "attention_mask", "token_type_ids")}
    if getattr(recognizer.model.config, "word_shapes", False):
        inputs["word_shape_ids"] = torch.tensor([word_shape_ids(text, rows.tolist())
                                                 for text, rows in zip(strings, offsets, strict=True)])  # fmt: skip
    if SPAN_CLASSIFIER in (recognizer.model.config.architectures or []):
        width = recognizer.model.config.max_span_width
        inputs |= span_inputs([span_candidates(batch.word_ids(row), offsets[row].tolist(), text, width)
                               for row, text in enumerate(strings)])  # fmt: skip
    return inputs


class _GraphInputs(torch.nn.Module):
    """The model with positional inputs in a fixed order, returning only the logits: what an exported graph is."""

    def __init__(self, model: PreTrainedModel, names: Sequence[str]) -> None:
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True))).logits


def _export_model(model, tokenizer, batch: dict, folder: Path, quantize: bool, min_agreement: float) -> dict:
    """Write `folder` (graphs, tokenizer, config with its `onnx` entry) for one model; returns its report."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(batch)
    _export_graph(model, names, batch, folder / GRAPH_FILES["fp32"])
    report = {"fp32": _compare(model, folder / GRAPH_FILES["fp32"], batch)}
    if report["fp32"]["max_logit_difference"] > MAX_LOGIT_DIFFERENCE:
        difference = report["fp32"]["max_logit_difference"]
        raise ExportError(f"the ONNX graph's logits differ from PyTorch's by {difference:.2e} (at most "
                          f"{MAX_LOGIT_DIFFERENCE} allowed); nothing was written", folder.name)  # fmt: skip
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(folder / GRAPH_FILES["fp32"], folder / GRAPH_FILES["int8"], weight_type=QuantType.QInt8)
        report["int8"] = _compare(model, folder / GRAPH_FILES["int8"], batch)
        if report["int8"]["label_agreement"] < min_agreement:
            agreement = report["int8"]["label_agreement"]
            raise ExportError(f"the int8 graph's labels agree with PyTorch's on {agreement:.3f} of the check inputs "
                              f"(at least {min_agreement} required); nothing was written", folder.name)  # fmt: skip
    config = model.config
    setattr(config, ONNX_CONFIG_KEY, {"graphs": {p: GRAPH_FILES[p] for p in report}, "input_names": names})
    config.save_pretrained(folder)
    delattr(config, ONNX_CONFIG_KEY)
    tokenizer.save_pretrained(folder)
    return report


def _export_graph(model: PreTrainedModel, names: list[str], batch: dict, path: Path) -> None:
    """torch.onnx's export (torch.export underneath) with dynamic batch, sequence and pair axes, weights inline."""
    sequence = torch.export.Dim("sequence", max=model.config.max_position_embeddings)
    axes = {name: {0: torch.export.Dim.AUTO, 1: sequence} for name in names}
    if "object_positions" in axes:
        axes["object_positions"] = {0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO}
    for name in SPAN_INPUTS & set(axes):  # a span classifier's candidates, (n_spans,)
        axes[name] = {0: torch.export.Dim.AUTO}
    torch.onnx.export(
        _GraphInputs(model, names).eval(), tuple(batch[name] for name in names), str(path), input_names=names,
        output_names=["logits"], dynamic_shapes={"inputs": tuple(axes[name] for name in names)},
        external_data=False, verbose=False,
    )  # fmt: skip


def _compare(model: PreTrainedModel, path: Path, batch: dict) -> dict[str, Any]:
    """Run the graph at `path` and the PyTorch model on `batch` and on its first row alone (another batch size and
    length): the max absolute logit difference, the share of the batch's scored rows (pairs, or tokens) with the same
    best label, and the graph's size on disk."""
    onnxruntime = require_onnx()["onnxruntime"]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    length = int(batch["attention_mask"][0].sum())
    first = {name: value[:1] if name == "object_positions" else value[:1, :length] for name, value in batch.items()
             if name not in SPAN_INPUTS}  # fmt: skip
    if "span_rows" in batch:  # the first row's candidates
        first |= {name: batch[name][batch["span_rows"] == 0] for name in SPAN_INPUTS}
    difference, agreement = 0.0, []
    for inputs in (batch, first):
        with torch.no_grad():
            expected = model(**inputs).logits.float()
        (got,) = session.run(None, {name: value.numpy() for name, value in inputs.items()})
        got = torch.from_numpy(got)
        difference = max(difference, float((got - expected).abs().max()))
        agreement.append(float((got.argmax(-1) == expected.argmax(-1))[_scored(inputs, expected)].float().mean()))
    return {"max_logit_difference": difference, "label_agreement": agreement[0], "bytes": path.stat().st_size}


def _scored(inputs: dict, logits: torch.Tensor) -> torch.Tensor:
    """Which rows of `logits.argmax(-1)` are real: packed pairs (`object_positions` 0 pads), the tokens of a token
    classifier (`attention_mask`), or every pair (or candidate span)."""
    if "object_positions" in inputs:
        return inputs["object_positions"] != 0
    if logits.dim() == 3:
        return inputs["attention_mask"].bool()
    return torch.ones(logits.shape[0], dtype=torch.bool)
