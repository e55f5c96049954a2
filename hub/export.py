"""Turn a BERT checkpoint into a Hub-ready TypedBert checkpoint folder, and check such a folder."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, BertModel

from configuration_typed_bert import TypedBertConfig
from hub.verify import run_in_clean_process
from modeling_typed_bert import TYPED_BERT_AUTO_MAP, TypedBertForSequenceClassification, TypedBertModel

REPO_ROOT = Path(__file__).resolve().parents[1]
# The files that run on the user's machine under trust_remote_code; every exported folder carries all of them.
CODE_FILES = (
    "configuration_typed_bert.py",
    "modeling_typed_bert.py",
    "encoding_typed_bert.py",
    "pipeline_typed_bert.py",
)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
NEW_PARAMETERS = ("entity_embeddings.", "entity_head.", "classifier.")
VERIFY_SENTENCES = (
    "Son Heung-min's father is Son Woong-jung.",
    "Bill Gates founded Microsoft in Albuquerque, New Mexico, in 1975.",
    "손흥민의 아버지는 손웅정이다.",
)


class ConversionError(ValueError):
    """The base checkpoint or the requested conversion is not valid; the message says what to change."""


def _check_base(base_model: str) -> str:
    path = Path(base_model)
    looks_local = path.is_absolute() or base_model.startswith((".", "~")) or base_model.count("/") > 1
    if path.exists() or looks_local:
        if not path.is_dir():
            raise ConversionError(f"--base-model {base_model!r}: no such folder.")
        if not (path / "config.json").is_file():
            raise ConversionError(f"--base-model {base_model!r} has no config.json; expected a BERT checkpoint folder.")
    config = AutoConfig.from_pretrained(base_model)
    if config.model_type != "bert":
        raise ConversionError(
            f"--base-model {base_model!r} has model_type {config.model_type!r}; only 'bert' checkpoints convert."
        )
    return base_model


def _prepare_output_dir(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists():
        if not output_dir.is_dir():
            raise ConversionError(f"--output-dir {str(output_dir)!r} exists and is not a folder.")
        if any(output_dir.iterdir()):
            if not overwrite:
                raise ConversionError(
                    f"--output-dir {str(output_dir)!r} exists and is not empty; pass --overwrite or choose another."
                )
            shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)


def typed_config_from_bert(
    base_model: str,
    entity_types: Sequence[str],
    labels: Sequence[str] | None = None,
    **typed_fields,
) -> TypedBertConfig:
    """A `TypedBertConfig` with the base checkpoint's BERT fields, the entity types (no-entity "O" first) and labels."""
    names = list(entity_types)
    if not names:
        raise ConversionError("entity types are empty; pass at least one type, e.g. --entity-types PER,ORG.")
    if "O" in names:
        names.remove("O")
    base = AutoConfig.from_pretrained(base_model).to_dict()
    for key in ("model_type", "architectures", "auto_map", "transformers_version", "_name_or_path"):
        base.pop(key, None)
    if labels is not None:
        labels = list(labels)
        if len(set(labels)) != len(labels) or not labels:
            raise ConversionError(f"labels must be non-empty and unique, got {labels!r}.")
        base.update(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    try:
        return TypedBertConfig(entity_types=["O", *names], **{**base, **typed_fields})
    except ValueError as error:
        raise ConversionError(str(error)) from error


def load_typed_from_bert(model_class: type, base_model: str, config: TypedBertConfig):
    """Load BERT weights into `model_class`; raise `ConversionError` if any BERT weight is not found or mismatched.

    Returns the model and `{"unused_weights": [...], "new_weights": [...]}` (checkpoint weights TypedBert does not
    use, such as an MLM head, and the TypedBert weights the checkpoint lacks: entity tables, classifier).
    """
    model, info = model_class.from_pretrained(base_model, config=config, output_loading_info=True)
    missing = sorted(info["missing_keys"])
    lost = [key for key in missing if not key.removeprefix("bert.").startswith(NEW_PARAMETERS)]
    mismatched = [str(item) for item in info.get("mismatched_keys", [])]
    if lost or mismatched:
        raise ConversionError(
            f"{base_model!r} does not fit a TypedBert of its own config: weights not found {lost}, "
            f"shape mismatches {mismatched}. Nothing was written."
        )
    return model, {"unused_weights": sorted(info["unexpected_keys"]), "new_weights": missing}


def copy_code_files(output_dir: Path) -> None:
    """Copy the remote-code files into `output_dir`."""
    for name in CODE_FILES:
        shutil.copyfile(REPO_ROOT / name, output_dir / name)


def convert_bert_checkpoint(
    base_model: str,
    entity_types: Sequence[str],
    output_dir: str | Path,
    labels: Sequence[str] | None = None,
    overwrite: bool = False,
    **typed_fields,
) -> dict:
    """Write a TypedBert checkpoint folder built from the BERT checkpoint `base_model` (folder or Hub id).

    All BERT weights are carried over; the entity tables start at zero; with `labels` a fresh classifier head is
    added. Raises `ConversionError` when a BERT weight would be lost. Returns a report: weights not used, weights
    newly initialised, seconds taken.
    """
    started = time.perf_counter()
    base_model = _check_base(str(base_model))
    output_dir = Path(output_dir)
    config = typed_config_from_bert(base_model, entity_types, labels, **typed_fields)
    _prepare_output_dir(output_dir, overwrite)

    model_class = TypedBertModel if labels is None else TypedBertForSequenceClassification
    try:
        model, info = load_typed_from_bert(model_class, base_model, config)
    except ConversionError:
        shutil.rmtree(output_dir)
        raise
    model.save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(base_model).save_pretrained(output_dir)
    copy_code_files(output_dir)
    return {
        "base_model": base_model,
        "output_dir": str(output_dir),
        **info,
        "seconds": round(time.perf_counter() - started, 2),
    }


def max_difference_from_base(output_dir: str | Path, base_model: str, sentences: Sequence[str] = VERIFY_SENTENCES):
    """Max abs difference of the last hidden states of `AutoModel.from_pretrained(output_dir, trust_remote_code=True)`
    (run in a clean interpreter, so the folder's own code runs) from the base `BertModel`'s, and that code's module."""
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    inputs = dict(tokenizer(list(sentences), padding=True, return_tensors="pt"))
    got, module = run_in_clean_process(output_dir, inputs, "AutoModel")
    bert = BertModel.from_pretrained(base_model).eval()
    with torch.no_grad():
        expected = bert(**inputs).last_hidden_state
    mask = inputs["attention_mask"].bool()
    return float((got - expected)[mask].abs().max()), module


def check_publishable(folder: str | Path) -> list[str]:
    """Problems that stop `folder` from being published: missing code files, no auto_map, pickle files."""
    folder = Path(folder)
    problems = []
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    # The model code always; the encoder and pipeline files too when config.json announces the pipeline.
    needed = CODE_FILES if config.get("custom_pipelines") else CODE_FILES[:2]
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        problems.append(f"code files missing: {missing}; re-export the folder with scripts/convert.py or train.py.")
    if not config:
        problems.append("config.json is missing.")
    else:
        auto_map = config.get("auto_map") or {}
        absent = sorted(set(TYPED_BERT_AUTO_MAP) - set(auto_map))
        if absent:
            problems.append(f"config.json's auto_map lacks {absent}; save the model with TypedBert's save_pretrained.")
    pickles = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        problems.append(f"pickle files {pickles}: remove them; only safetensors weights are published.")
    if not list(folder.glob("*.safetensors")):
        problems.append("no .safetensors weights in the folder.")
    return problems
