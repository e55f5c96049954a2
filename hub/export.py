"""Turn a BERT-family checkpoint into a Hub-ready TypedBert checkpoint folder, and check such a folder."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from configuration_typed_bert import TypedBertConfig
from modeling_typed_bert import TYPED_BERT_AUTO_MAP, TypedBertForSequenceClassification, TypedBertModel
from typed_bert.command_line import is_local_path
from typed_bert.errors import InputError
from typed_bert.outputs import check_destination, staged_folder

from .verify import run_in_clean_process

# The files that run on the user's machine under trust_remote_code; every exported folder carries all of them.
CODE_FILES = (
    "configuration_typed_bert.py",
    "modeling_typed_bert.py",
    "encoding_typed_bert.py",
    "pipeline_typed_bert.py",
)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
VERIFY_SENTENCES = (
    "Son Heung-min's father is Son Woong-jung.",
    "Bill Gates founded Microsoft in Albuquerque, New Mexico, in 1975.",
    "손흥민의 아버지는 손웅정이다.",
)


class ConversionError(InputError):
    """The base checkpoint or the requested conversion is not valid; the message says what to change."""


# The encoder families TypedBert reproduces exactly: BERT's encoder with BERT's embedding layer. RoBERTa's family
# differs in three known ways, each a config field: position ids start after the padding index
# (`position_id_offset = pad_token_id + 1`), one token-type row (`type_vocab_size = 1`), LayerNorm eps 1e-5
# (`layer_norm_eps`). ELECTRA's discriminator is BERT's architecture when its embeddings need no projection.
FAMILIES = {
    "bert": "BERT",
    "roberta": "RoBERTa",
    "xlm-roberta": "XLM-RoBERTa",
    "camembert": "CamemBERT",
    "electra": "ELECTRA",
}
ROBERTA_FAMILY = ("roberta", "xlm-roberta", "camembert")
# Why other encoders are refused, where the reason is known.
NOT_REPRODUCIBLE = {
    "deberta": "DeBERTa's disentangled relative-position attention is not BERT's attention",
    "deberta-v2": "DeBERTa's disentangled relative-position attention is not BERT's attention",
    "distilbert": "DistilBERT has no segment embeddings and its own layer layout",
    "albert": "ALBERT shares one layer's weights across the encoder and projects its embeddings",
    "xlnet": "XLNet is a permutation language model with relative attention, not BERT's encoder",
}
# Fields of the source configs that describe parts TypedBert does not have (ELECTRA's summary head).
NOT_CARRIED = ("embedding_size", "summary_type", "summary_use_proj", "summary_activation", "summary_last_dropout")
# Fine-tuned sequence classifiers whose head TypedBert's "cls" pooling reproduces: BERT's pooler + classifier, and
# RoBERTa's head (dense, tanh, out_proj on the first token), which is the same computation.
CLASSIFIERS = {
    "BertForSequenceClassification": "bert",
    "RobertaForSequenceClassification": "roberta",
    "XLMRobertaForSequenceClassification": "roberta",
    "CamembertForSequenceClassification": "roberta",
}


def check_base_model(base_model: str, labels: Sequence[str] | None = None) -> str:
    """`base_model` if it is a checkpoint TypedBert reproduces exactly (with `labels`: a new head is wanted), else a
    `ConversionError` that says why not."""
    path = Path(base_model).expanduser()
    if is_local_path(base_model):
        if not path.is_dir():
            raise ConversionError(f"--base-model {base_model!r}: no such folder.")
        if not (path / "config.json").is_file():
            raise ConversionError(f"--base-model {base_model!r} has no config.json; expected a BERT checkpoint folder.")
    try:
        config = AutoConfig.from_pretrained(base_model)
    except (OSError, ValueError) as error:
        reason = " ".join(str(error).split(". ")[0].split())
        where = "its config.json could not be read" if is_local_path(base_model) else "the Hub could not provide it"
        raise ConversionError(
            f"--base-model {base_model!r}: {where} ({reason}); expected a BERT-family checkpoint folder or a Hub id"
        ) from error
    supported = f"only {', '.join(FAMILIES.values())} checkpoints convert exactly"
    model_type = config.model_type
    if model_type not in FAMILIES:
        why = NOT_REPRODUCIBLE.get(model_type, "its architecture is not BERT's encoder")
        raise ConversionError(f"--base-model {base_model!r} has model_type {model_type!r}: {why}; {supported}.")
    if model_type == "electra" and config.embedding_size != config.hidden_size:
        raise ConversionError(
            f"--base-model {base_model!r} is an ELECTRA model whose {config.embedding_size}-wide embeddings are "
            f"projected to its hidden size {config.hidden_size} (embeddings_project), which BERT's embedding layer "
            "cannot reproduce; only ELECTRA checkpoints with embedding_size == hidden_size convert exactly."
        )
    head = next((name for name in config.architectures or [] if name.endswith("ForSequenceClassification")), None)
    if head and head not in CLASSIFIERS and not labels:
        raise ConversionError(
            f"--base-model {base_model!r} is a {head}, whose classification head is not BERT's pooler + classifier "
            "(ELECTRA's applies GELU, not tanh), so it cannot be kept; pass --labels to start a new head."
        )
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise ConversionError(
            f"--base-model {base_model!r} uses position_embedding_type={config.position_embedding_type!r}; TypedBert "
            "reproduces absolute position embeddings only."
        )
    return base_model


def typed_config_from_encoder(
    base_model: str,
    entity_types: Sequence[str],
    labels: Sequence[str] | None = None,
    **typed_fields,
) -> TypedBertConfig:
    """A `TypedBertConfig` with the base checkpoint's encoder fields, the entity types (no-entity "O" first) and
    labels. A RoBERTa-family base gets `position_id_offset = pad_token_id + 1`; its one token-type row and LayerNorm
    eps come with its own fields. A fine-tuned sequence classifier (see `CLASSIFIERS`) keeps its labels and gets
    `cls` pooling (its head is kept) unless `labels` or `classifier_pooling` say otherwise.
    """
    names = list(entity_types)
    if not names:
        raise ConversionError("entity types are empty; pass at least one type, e.g. --entity-types PER,ORG.")
    if "O" in names:
        names.remove("O")
    base = AutoConfig.from_pretrained(base_model).to_dict()
    if classifier_family(base) and labels is None:
        typed_fields.setdefault("classifier_pooling", "cls")
    else:
        base.pop("id2label", None)
        base.pop("label2id", None)
    family = base["model_type"]
    for key in ("model_type", "architectures", "auto_map", "transformers_version", "_name_or_path", *NOT_CARRIED):
        base.pop(key, None)
    if family in ROBERTA_FAMILY:
        base["position_id_offset"] = base["pad_token_id"] + 1
    if labels is not None:
        labels = list(labels)
        if len(set(labels)) != len(labels) or not labels:
            raise ConversionError(f"labels must be non-empty and unique, got {labels!r}.")
        base.update(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    try:
        return TypedBertConfig(entity_types=["O", *names], **{**base, **typed_fields})
    except ValueError as error:
        raise ConversionError(str(error)) from error


def classifier_family(config: dict) -> str | None:
    """`"bert"` or `"roberta"` when a checkpoint's config.json is that of a fine-tuned sequence classifier whose head
    TypedBert reproduces (`CLASSIFIERS`), else None."""
    return next((CLASSIFIERS[name] for name in config.get("architectures") or [] if name in CLASSIFIERS), None)


def load_typed_from_encoder(model_class: type, base_model: str, config: TypedBertConfig, keep_classifier: bool = False):
    """Build `model_class(config)` with the encoder weights of a BERT-family checkpoint (and, with
    `keep_classifier`, its fine-tuned classifier head); raise `ConversionError` if any encoder weight is not found or
    mismatched.

    The checkpoint is read through its own transformers class (`AutoModel`), so each family's weight names and
    layout are transformers' own. Returns the model and `{"unused_weights": [...], "new_weights": [...]}`
    (checkpoint weights TypedBert does not use, such as an MLM head or a pooler that entity-start pooling does not
    need, and the TypedBert weights the checkpoint lacks: entity tables, classifier, the pooler of a checkpoint saved
    without one).
    """
    try:
        source, loading = AutoModel.from_pretrained(base_model, output_loading_info=True)
    except (OSError, ValueError) as error:
        reason = " ".join(str(error).split())
        raise ConversionError(
            f"{base_model!r}: its weights could not be read ({reason}); nothing was written"
        ) from error
    absent = set(loading["missing_keys"])
    lost = sorted(key for key in absent if not key.startswith("pooler."))
    mismatched = [str(item) for item in loading.get("mismatched_keys", [])]
    if lost or mismatched:
        raise ConversionError(
            f"{base_model!r} does not fit a TypedBert of its own config: weights not found {lost}, "
            f"shape mismatches {mismatched}. Nothing was written."
        )
    # A pooler the checkpoint did not have was initialised at random by AutoModel: not a weight to carry over.
    state = {name: tensor for name, tensor in source.state_dict().items() if name not in absent}
    if keep_classifier:
        state.update(_classifier_weights(base_model))
    model = model_class(config)
    prefix = "" if model is model.base_model else f"{model.base_model_prefix}."
    state = {name if name.startswith("classifier.") else prefix + name: tensor for name, tensor in state.items()}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise ConversionError(f"{base_model!r} does not fit a TypedBert of its own config: {error}") from error
    unused = set(result.unexpected_keys) | set(loading["unexpected_keys"])
    if keep_classifier:  # read through the classifier class and carried over
        unused = {name for name in unused if not name.startswith("classifier.")}
    unused = sorted(unused)
    return model.eval(), {"unused_weights": unused, "new_weights": sorted(result.missing_keys)}


def _classifier_weights(base_model: str) -> dict[str, torch.Tensor]:
    """The fine-tuned head of a sequence classifier under TypedBert's names: BERT's `classifier` as is (its pooler
    comes with the encoder); RoBERTa's `classifier.dense` as the pooler's dense layer, `classifier.out_proj` as
    `classifier`."""
    state = AutoModelForSequenceClassification.from_pretrained(base_model).state_dict()
    if classifier_family(AutoConfig.from_pretrained(base_model).to_dict()) == "bert":
        return {name: tensor for name, tensor in state.items() if name.startswith("classifier.")}
    return {
        "pooler.dense.weight": state["classifier.dense.weight"],
        "pooler.dense.bias": state["classifier.dense.bias"],
        "classifier.weight": state["classifier.out_proj.weight"],
        "classifier.bias": state["classifier.out_proj.bias"],
    }


def convert_checkpoint(
    base_model: str,
    entity_types: Sequence[str],
    output_dir: str | Path,
    labels: Sequence[str] | None = None,
    overwrite: bool = False,
    tolerance: float = 1e-5,
    **typed_fields,
) -> dict:
    """Write a TypedBert checkpoint folder built from the BERT-family checkpoint `base_model` (folder or Hub id).

    All encoder weights are carried over; the entity tables start at zero; with `labels` a fresh classifier head is
    added, and a fine-tuned sequence classifier keeps its own (see `CLASSIFIERS`). The folder is written beside
    `output_dir`, loaded back with `trust_remote_code=True` in a clean interpreter and compared with the base on a
    padded batch and on each sentence alone; only when the hidden states on real tokens (and a kept classifier's
    logits) agree within `tolerance` is it moved into place. Raises `ConversionError`, having written nothing, when
    an encoder weight would be lost or the check fails. Returns a report: weights not used, weights newly
    initialised, the differences, seconds taken.
    """
    started = time.perf_counter()
    base_model = check_base_model(str(base_model), labels)
    output_dir = Path(output_dir)
    config = typed_config_from_encoder(base_model, entity_types, labels, **typed_fields)
    check_destination(output_dir, overwrite, (base_model,))
    base_config = AutoConfig.from_pretrained(base_model).to_dict()
    keeps_classifier = labels is None and classifier_family(base_config) is not None
    keeps_classifier = keeps_classifier and config.classifier_pooling == "cls"

    model_class = TypedBertModel if labels is None and not keeps_classifier else TypedBertForSequenceClassification
    model, info = load_typed_from_encoder(model_class, base_model, config, keep_classifier=keeps_classifier)
    with staged_folder(output_dir, overwrite) as staging:
        model.save_pretrained(staging)
        AutoTokenizer.from_pretrained(base_model).save_pretrained(staging)
        differences, module = differences_from_base(staging, base_model, compare_logits=keeps_classifier)
        too_large = {name: value for name, value in differences.items() if not value <= tolerance}
        if too_large:
            raise ConversionError(
                f"the converted model differs from {base_model!r} by {too_large} (tolerance {tolerance}); "
                "nothing was written."
            )
    return {
        "base_model": base_model,
        "model_type": base_config["model_type"],
        "position_id_offset": config.position_id_offset,
        "type_vocab_size": config.type_vocab_size,
        "layer_norm_eps": config.layer_norm_eps,
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
    interpreter (so the folder's own code runs), from the base checkpoint loaded by its own class: last hidden
    states on real tokens (entity ids given, tables at zero) and, with `compare_logits`, a fine-tuned classifier's
    logits, for the sentences as one right-padded batch and for each sentence alone. Returns them and the module the
    folder's model class came from."""
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    batches = [dict(tokenizer(list(sentences), padding=True, return_tensors="pt"))]
    batches += [dict(tokenizer([sentence], return_tensors="pt")) for sentence in sentences]
    typed_batches = []
    for inputs in batches:
        entity_ids = torch.zeros_like(inputs["input_ids"])
        entity_ids[:, 1:3] = 1
        typed_batches.append({**inputs, "entity_type_ids": entity_ids, "entity_role_ids": entity_ids.clone()})
    got, module = run_in_clean_process(folder, typed_batches, "AutoModel")
    base = AutoModel.from_pretrained(base_model).eval()
    differences = {"max_abs_difference": 0.0}
    with torch.no_grad():
        for inputs, output in zip(batches, got, strict=True):
            expected = base(**inputs).last_hidden_state
            mask = inputs["attention_mask"].bool()
            differences["max_abs_difference"] = max(
                differences["max_abs_difference"], float((output - expected)[mask].abs().max())
            )
    if compare_logits:
        got, _ = run_in_clean_process(folder, typed_batches, "AutoModelForSequenceClassification")
        classifier = AutoModelForSequenceClassification.from_pretrained(base_model).eval()
        with torch.no_grad():
            differences["max_abs_logit_difference"] = max(
                float((output - classifier(**inputs).logits).abs().max())
                for inputs, output in zip(batches, got, strict=True)
            )
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
