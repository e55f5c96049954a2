"""Turn a BERT checkpoint into a Hub-ready TypedBert checkpoint folder, and check such a folder."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification, BertModel
from typed_bert.hub.verify import run_in_clean_process

from configuration_typed_bert import TypedBertConfig
from modeling_typed_bert import TYPED_BERT_AUTO_MAP, TypedBertForSequenceClassification, TypedBertModel

# The files that run on the user's machine under trust_remote_code; every exported folder carries all of them.
CODE_FILES = (
    "configuration_typed_bert.py",
    "modeling_typed_bert.py",
    "encoding_typed_bert.py",
    "pipeline_typed_bert.py",
)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# Weights a BERT checkpoint may lack: the entity tables, a new classifier, the pooler of a BERT saved without one.
NEW_PARAMETERS = ("embeddings.entity_type_embeddings.", "embeddings.entity_role_embeddings.", "classifier.", "pooler.")
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
    try:
        config = AutoConfig.from_pretrained(base_model)
    except OSError as error:
        reason = str(error).split(". ")[0]
        raise ConversionError(
            f"--base-model {base_model!r}: not a local folder, and the Hub could not provide it ({reason}); expected a "
            "BERT checkpoint folder or a Hub id"
        ) from error
    if config.model_type != "bert":
        raise ConversionError(
            f"--base-model {base_model!r} has model_type {config.model_type!r}; only 'bert' checkpoints convert."
        )
    return base_model


def _check_output_dir(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists():
        if not output_dir.is_dir():
            raise ConversionError(f"--output-dir {str(output_dir)!r} exists and is not a folder.")
        if any(output_dir.iterdir()) and not overwrite:
            raise ConversionError(
                f"--output-dir {str(output_dir)!r} exists and is not empty; pass --overwrite or choose another."
            )


def typed_config_from_bert(
    base_model: str,
    entity_types: Sequence[str],
    labels: Sequence[str] | None = None,
    **typed_fields,
) -> TypedBertConfig:
    """A `TypedBertConfig` with the base checkpoint's BERT fields, the entity types (no-entity "O" first) and labels.

    A fine-tuned `BertForSequenceClassification` keeps its labels and gets `cls` pooling (its classifier is kept)
    unless `labels` or `classifier_pooling` say otherwise.
    """
    names = list(entity_types)
    if not names:
        raise ConversionError("entity types are empty; pass at least one type, e.g. --entity-types PER,ORG.")
    if "O" in names:
        names.remove("O")
    base = AutoConfig.from_pretrained(base_model).to_dict()
    if is_sequence_classifier(base) and labels is None:
        typed_fields.setdefault("classifier_pooling", "cls")
    else:
        base.pop("id2label", None)
        base.pop("label2id", None)
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


def is_sequence_classifier(config: dict) -> bool:
    """Whether a checkpoint's config.json is that of a fine-tuned `BertForSequenceClassification`."""
    return "BertForSequenceClassification" in (config.get("architectures") or [])


def load_typed_from_bert(model_class: type, base_model: str, config: TypedBertConfig):
    """Load BERT weights into `model_class`; raise `ConversionError` if any BERT weight is not found or mismatched.

    Returns the model and `{"unused_weights": [...], "new_weights": [...]}` (checkpoint weights TypedBert does not
    use, such as an MLM head or a pooler that entity-start pooling does not need, and the TypedBert weights the
    checkpoint lacks: entity tables, classifier, and the pooler of a BERT saved without one).
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


def convert_bert_checkpoint(
    base_model: str,
    entity_types: Sequence[str],
    output_dir: str | Path,
    labels: Sequence[str] | None = None,
    overwrite: bool = False,
    tolerance: float = 1e-5,
    **typed_fields,
) -> dict:
    """Write a TypedBert checkpoint folder built from the BERT checkpoint `base_model` (folder or Hub id).

    All BERT weights are carried over; the entity tables start at zero; with `labels` a fresh classifier head is
    added, and a fine-tuned `BertForSequenceClassification` keeps its own. The folder is written beside
    `output_dir`, loaded back with `trust_remote_code=True` in a clean interpreter and compared with the base; only
    when the hidden states (and a kept classifier's logits) agree within `tolerance` is it moved into place.
    Raises `ConversionError`, having written nothing, when a BERT weight would be lost or the check fails.
    Returns a report: weights not used, weights newly initialised, the differences, seconds taken.
    """
    started = time.perf_counter()
    base_model = _check_base(str(base_model))
    output_dir = Path(output_dir)
    config = typed_config_from_bert(base_model, entity_types, labels, **typed_fields)
    _check_output_dir(output_dir, overwrite)
    base_config = AutoConfig.from_pretrained(base_model).to_dict()
    keeps_classifier = labels is None and is_sequence_classifier(base_config) and config.classifier_pooling == "cls"

    model_class = TypedBertModel if labels is None and not keeps_classifier else TypedBertForSequenceClassification
    model, info = load_typed_from_bert(model_class, base_model, config)
    if keeps_classifier and any(key.startswith("classifier.") for key in info["new_weights"]):
        raise ConversionError(f"{base_model!r} is a BertForSequenceClassification whose classifier did not load.")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent))
    try:
        model.save_pretrained(staging)
        AutoTokenizer.from_pretrained(base_model).save_pretrained(staging)
        differences, module = differences_from_base(staging, base_model, compare_logits=keeps_classifier)
        too_large = {name: value for name, value in differences.items() if not value <= tolerance}
        if too_large:
            raise ConversionError(
                f"the converted model differs from {base_model!r} by {too_large} (tolerance {tolerance}); "
                "nothing was written."
            )
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "base_model": base_model,
        "output_dir": str(output_dir),
        **info,
        "classifier_kept": keeps_classifier,
        **differences,
        "verified_with": module,
        "seconds": round(time.perf_counter() - started, 2),
    }


def differences_from_base(
    folder: str | Path, base_model: str, sentences: Sequence[str] = VERIFY_SENTENCES, compare_logits: bool = False
) -> tuple[dict[str, float], str]:
    """Max abs differences of `folder`, loaded through the Auto classes with `trust_remote_code=True` in a clean
    interpreter (so the folder's own code runs), from the base BERT checkpoint: last hidden states on real tokens
    (entity ids given, tables at zero) and, with `compare_logits`, a fine-tuned classifier's logits. Returns them
    and the module the folder's model class came from."""
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    inputs = dict(tokenizer(list(sentences), padding=True, return_tensors="pt"))
    entity_ids = torch.zeros_like(inputs["input_ids"])
    entity_ids[:, 1:3] = 1
    got, module = run_in_clean_process(
        folder, {**inputs, "entity_type_ids": entity_ids, "entity_role_ids": entity_ids.clone()}, "AutoModel"
    )
    with torch.no_grad():
        expected = BertModel.from_pretrained(base_model, add_pooling_layer=False).eval()(**inputs).last_hidden_state
    mask = inputs["attention_mask"].bool()
    differences = {"max_abs_difference": float((got - expected)[mask].abs().max())}
    if compare_logits:
        got, _ = run_in_clean_process(folder, inputs, "AutoModelForSequenceClassification")
        with torch.no_grad():
            expected = BertForSequenceClassification.from_pretrained(base_model).eval()(**inputs).logits
        differences["max_abs_logit_difference"] = float((got - expected).abs().max())
    return differences, module


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
