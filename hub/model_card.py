"""Render the model card (README.md) of a TypedBert checkpoint folder from `templates/model_card.md`.

The generated part sits between two HTML comments (`GENERATED_BEGIN`, `GENERATED_END`). A README.md the user wrote is
kept: its text stays, the generated part is replaced (or appended, the first time), and the metadata header is
updated field by field.
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from typed_bert.outputs import write_text_atomically

TEMPLATE = Path(__file__).resolve().parent / "templates" / "model_card.md"
EXPORT_TEMPLATE = TEMPLATE.with_name("onnx_card.md")
GENERATED_BEGIN = "<!-- typed-bert: generated section begins; edits between these lines are replaced -->"
GENERATED_END = "<!-- typed-bert: generated section ends -->"
GENERATED_FIELDS = (
    "library_name",
    "pipeline_tag",
    "base_model",
    "language",
    "model-index",
    "eval_results",
    "model_name",
)
# What the model is told about the two entities, per input mode (README, "Input modes"; compare's table).
INPUT_MODE_DESCRIPTIONS = {
    "typed-embeddings": "entity type + role embeddings",
    "type-only": "entity type embeddings",
    "role-only": "entity role (subject/object) embeddings",
    "typed-markers": "typed markers in the text (Zhou & Chen)",
    "markers+embeddings": "typed markers + type and role embeddings",
    "plain": "nothing ([CLS] pooling)",
}
EXAMPLE = {
    "text": "Bill Gates founded Microsoft.",
    "subject": {"start": 0, "end": 10, "type": "Peop"},
    "object": {"start": 19, "end": 28, "type": "Org"},
}


def render_model_card(
    folder: str | Path,
    repo_id: str = "org/typed-bert",
    revision: str = "main",
    base_model: str | None = None,
    train_file: str | None = None,
    confusion_matrix: str | None = None,
    training_curve: str | None = None,
    language: str | list[str] | None = None,
) -> ModelCard:
    """Build the card from the folder's config.json and eval_results.json (both written by scripts/train.py)."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    results_file = folder / "eval_results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    is_classifier = config.get("architectures") != ["TypedBertModel"]
    id2label = config.get("id2label") or {}
    labels = [id2label[str(i)] for i in range(len(id2label))] if is_classifier else []
    entity_types = config["entity_types"]
    hub_base = base_model if base_model and not Path(base_model).exists() else None
    if base_model and not hub_base:
        base_model = f"a local checkpoint ({Path(base_model).name})"  # no path of the author's machine in the card
    train_file = shown_path(train_file) if train_file else train_file
    card_data = model_card_data(results, repo_id, is_classifier, hub_base, language or config.get("language"))
    example = example_pair(entity_types)
    summary = [
        (name, f"{results[name]:.4f}")
        for name in ("micro_f1", "micro_precision", "micro_recall", "auprc", "accuracy")
        if name in results
    ]
    input_mode = config.get("input_mode", results.get("input_mode", "typed-embeddings"))
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=repo_id,
        repo_id=repo_id,
        revision=revision,
        base_model=base_model or "a BERT checkpoint",
        input_mode=input_mode,
        input_mode_description=INPUT_MODE_DESCRIPTIONS.get(input_mode, "see the README"),
        classifier_pooling=config.get("classifier_pooling"),
        pair_encoding=config.get("pair_encoding", "per_pair"),
        example_text=example["text"],
        example_subject=json.dumps(example["subject"]),
        example_object=json.dumps(example["object"]),
        entity_types=entity_types,
        labels=labels,
        train_file=train_file or (results.get("settings") or results.get("args", {})).get("train_file", "not recorded"),
        train_description=f"{len(labels)} labels, entity types {entity_types[1:]}.",
        validation_file=results.get("validation_file", "not recorded"),
        final_fit=bool(results.get("final_fit")),
        num_examples=results.get("num_examples", "?"),
        summary=summary,
        per_label=sorted(results.get("per_label", {}).items()),
        confusion_matrix=confusion_matrix,
        training_curve=training_curve,
    )


def model_card_data(
    results: dict, repo_id: str, is_classifier: bool, hub_base: str | None, language: str | list[str] | None
) -> ModelCardData:
    """The card's metadata: tags, pipeline tag, the Hub base model, and the dev scores of `results`
    (eval_results.json) as model-index entries, unless a final fit trained on that dev file (they are not held out)."""
    dataset_name = Path(results.get("validation_file", "relation data")).parent.name or "relation data"
    eval_results = [
        EvalResult(
            task_type="text-classification",
            task_name="Relation Extraction",
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            dataset_split="validation",
            metric_type=name,
            metric_name=name,
            metric_value=round(results[name], 4),
        )
        for name in ("micro_f1", "auprc", "accuracy")
        if name in results and not results.get("final_fit")
    ]
    return ModelCardData(
        language=language,
        library_name="transformers",
        pipeline_tag="text-classification" if is_classifier else "feature-extraction",
        tags=["custom_code", "relation-extraction", "typed-bert", "bert"],
        base_model=hub_base,
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results or None,
        license="apache-2.0",
    )


def shown_path(path: str) -> str:
    """A data file as a published card or record shows it: its folder and name (`conll04/train.jsonl`), not the path
    on the author's machine."""
    parts = Path(path).parts
    return str(Path(*parts[-2:])) if Path(path).is_absolute() else path


def example_pair(entity_types: list[str]) -> dict:
    """`EXAMPLE` with the model's own types, as the card, the push's checks and an export's verification use it:
    "Bill Gates" the first type whose name starts with "per" or "peop" (any case), else the first; "Microsoft" the
    first starting with "org", else the second (or the last)."""
    return {
        "text": EXAMPLE["text"],
        "subject": {**EXAMPLE["subject"], "type": _example_type(entity_types, ("per", "peop"), 1)},
        "object": {**EXAMPLE["object"], "type": _example_type(entity_types, ("org",), 2)},
    }


def _example_type(entity_types: list[str], prefixes: tuple[str, ...], fallback: int) -> str:
    """The first of the model's types (after "no entity") whose name starts with one of `prefixes` (any case), else the
    `fallback`-th (or the last)."""
    types = entity_types[1:] or ["PER"]
    matching = [name for name in types if name.lower().startswith(prefixes)]
    return matching[0] if matching else types[min(fallback, len(types)) - 1]


def write_model_card(folder: str | Path, **kwargs) -> Path:
    """Render the card (`render_model_card`) into `folder/README.md` (`write_card`)."""
    return write_card(folder, render_model_card(folder, **kwargs))


def render_export_card(folder: str | Path, repo_id: str, revision: str) -> ModelCard:
    """The card of an ONNX export (`typed-bert export`): what the graphs are, and how to run them from the repo."""
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    id2label = config.get("id2label") or {}
    card_data = ModelCardData(library_name="onnx", tags=["onnx", "relation-extraction", "typed-bert"],
                              model_name=repo_id.split("/")[-1], license="apache-2.0")  # fmt: skip
    types = config["entity_types"]
    example = EXAMPLE["text"] if config.get("entity_model") else example_pair(types)
    return ModelCard.from_template(
        card_data, template_path=str(EXPORT_TEMPLATE), model_name=repo_id, repo_id=repo_id, revision=revision,
        graphs=", ".join(f"{name} (`{file}`)" for name, file in config["onnx"]["graphs"].items()),
        entity_model=config.get("entity_model"),
        entity_types=types[1:], labels=[id2label[str(i)] for i in range(len(id2label))],
        example=json.dumps(example),
    )  # fmt: skip


def write_card(folder: str | Path, generated: ModelCard) -> Path:
    """Write `generated` into `folder/README.md`, keeping what a user wrote there (see the module docstring); the file
    is replaced whole, never left half-written."""
    path = Path(folder) / "README.md"
    body = f"{GENERATED_BEGIN}\n{generated.text.strip()}\n{GENERATED_END}"
    if not path.is_file():
        generated.text = f"\n{body}\n"
        write_text_atomically(path, str(generated))
        return path
    existing = ModelCard.load(path)
    text = existing.text
    if GENERATED_BEGIN in text and GENERATED_END in text:
        before, rest = text.split(GENERATED_BEGIN, 1)
        after = rest.split(GENERATED_END, 1)[1]
        text = f"{before}{body}{after}"
    else:
        text = f"{text.rstrip()}\n\n{body}\n"
    # The user's metadata stays (license, their tags, ...); what describes the model itself is regenerated, and
    # results the new card does not claim (none recorded, or a final fit's, which are not held out) go.
    ours = generated.data.to_dict()
    theirs = {key: value for key, value in existing.data.to_dict().items() if key != "model-index" or key in ours}
    metadata = {**theirs, **{key: ours[key] for key in GENERATED_FIELDS if key in ours}}
    metadata["tags"] = sorted(set(existing.data.to_dict().get("tags") or []) | set(ours.get("tags") or []))
    write_text_atomically(path, str(ModelCard(f"---\n{ModelCardData(**metadata).to_yaml()}\n---\n{text}")))
    return path
