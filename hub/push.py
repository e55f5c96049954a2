"""Publish a TypedBert checkpoint folder to the Hub in one commit, tag it, and verify it by loading it back.

`huggingface_hub` reads `HF_ENDPOINT` and `HF_TOKEN` as usual (set them before importing it).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from huggingface_hub import HfApi, constants

from configuration_typed_bert import TypedBertConfig
from typed_bert.batching import TypedBertDataCollator, encode_relations
from typed_bert.entities import check_entity_model
from typed_bert.errors import InputError, reading
from typed_bert.network import unreachable
from typed_bert.onnx_runtime import check_export
from typed_bert.outputs import ONNX_CONFIG_KEY, check_complete, is_onnx_export

from .export import check_publishable
from .model_card import EXAMPLE, example_pair, render_export_card, write_card, write_model_card
from .verify import extract_in_clean_process, run_in_clean_process

IGNORE_PATTERNS = ["checkpoint-*", "*.partial", ".git/*", "__pycache__/*", "*.pyc"]


class PublishError(InputError):
    """The folder cannot be published as it is, or the Hub cannot be reached; the message says what to do."""


def check_endpoint_reachable(endpoint: str, timeout: float = 10.0) -> None:
    """Raise a `PublishError` naming `endpoint` when no connection to it can be opened, before anything is sent (so
    nothing is half-written on the Hub side). Behind a proxy (`HTTPS_PROXY`, ...) the HTTP client is left to try."""
    url = urlparse(endpoint)
    if not url.hostname or (urllib.request.getproxies() and not urllib.request.proxy_bypass(url.hostname)):
        return
    reason = unreachable(url.hostname, url.port or (443 if url.scheme == "https" else 80), timeout)
    if reason:
        raise PublishError(
            f"cannot reach the Hub endpoint {endpoint} ({reason}); check HF_ENDPOINT (unset, it is "
            "https://huggingface.co), the network and any proxy settings; nothing was uploaded"
        )


@dataclass
class PushResult:
    repo_id: str
    commit: str
    tag: str | None
    url: str
    max_abs_difference: float | None = None
    verified_with: str | None = None
    loaded_from: str | None = None
    files: list[str] | None = None
    entities_verified: int | None = None  # entities the bundled entity model found alike, remote and local


def next_version_tag(api: HfApi, repo_id: str) -> str:
    """`v1`, or one more than the highest `vN` tag of the repo."""
    tags = [ref.name for ref in api.list_repo_refs(repo_id).tags]
    numbers = [int(match.group(1)) for tag in tags if (match := re.fullmatch(r"v(\d+)", tag))]
    return f"v{max(numbers, default=0) + 1}"


def sample_inputs(folder: str | Path, tokenizer) -> dict[str, torch.Tensor]:
    """A two-example batch built from the folder's own entity types, for comparing logits."""
    config = json.loads((Path(folder) / "config.json").read_text())
    types = config["entity_types"]
    pair = example_pair(types)
    first, second = pair["subject"]["type"], pair["object"]["type"]
    examples = [
        pair,
        {
            "text": "Microsoft hired Bill Gates in Redmond.",
            "subject": {"start": 16, "end": 26, "type": first},
            "object": {"start": 0, "end": 9, "type": second},
        },
    ]
    typed = TypedBertConfig.from_dict(config)
    encoded = encode_relations(tokenizer, examples, types, entity_markers=typed.entity_markers)
    rows = [{name: values[i] for name, values in encoded.items()} for i in range(len(examples))]
    return TypedBertDataCollator(tokenizer)(rows)


def push_folder(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str = "main",
    commit_message: str | None = None,
    tag: str | None = None,
    verify: bool = True,
    token: str | None = None,
    language: str | list[str] | None = None,
) -> PushResult:
    """Check `folder`, publish it as one commit on `revision` of `repo_id`, tag it, and return what was published.

    Everything that can be checked locally is checked before the first byte is sent: the folder is complete and
    publishable, a bundled entity model fits the relation model, and both load and run in a clean interpreter. The
    upload then goes to a temporary branch, where the repo is loaded back in a clean interpreter (a fresh cache,
    `trust_remote_code=True`) and compared with the local folder: the same logits (hidden states for an encoder) and
    the same entities. Only then is the same folder committed to `revision` (refused if `revision` moved meanwhile)
    and tagged; the temporary branch is deleted whatever happens. docs/files-and-push.md says what the Hub holds
    after each kind of failure.
    """
    folder = Path(folder)
    config = check_folder(folder)
    onnx = ONNX_CONFIG_KEY in config
    local = (ExportOutputs.of(folder) if onnx else LocalOutputs.of(folder, config)) if verify else None
    check_endpoint_reachable(constants.ENDPOINT)
    api = HfApi(token=token)
    with reading(repo_id, HUB_EXPECTED):  # the Hub's refusals (401, 403, a bad repo id) as one line
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        tag = tag or next_version_tag(api, repo_id)
        head = api.repo_info(repo_id, revision=revision).sha
    if onnx:
        write_card(folder, render_export_card(folder, repo_id, tag))
    else:
        _write_card(folder, repo_id, tag, language)
    staging = f"typed-bert-push-{tag}-{secrets.token_hex(3)}"
    message = commit_message or f"Upload TypedBert checkpoint ({tag})"
    with reading(repo_id, HUB_EXPECTED):
        api.create_branch(repo_id, branch=staging, revision=head)
    try:
        with reading(repo_id, HUB_EXPECTED):
            checked = _upload(api, folder, repo_id, staging, message, head)
        result = PushResult(repo_id=repo_id, commit=checked, tag=tag, url="")
        if local is not None:
            local.compare_with_hub(repo_id, checked, result)
        with reading(repo_id, HUB_EXPECTED):
            published = _upload(api, folder, repo_id, revision, message, head)
            _check_same_files(api, repo_id, checked, published)
            api.create_tag(repo_id, tag=tag, revision=published, tag_message=f"TypedBert checkpoint {tag}")
            result.files = sorted(api.list_repo_files(repo_id, revision=published))
    finally:
        with contextlib.suppress(Exception):
            api.delete_branch(repo_id, branch=staging)
    result.commit, result.url = published, f"{constants.ENDPOINT}/{repo_id}/commit/{published}"
    return result


HUB_EXPECTED = "a repo id (namespace/name) that HF_TOKEN may write to on the Hub endpoint (HF_ENDPOINT)"


def check_folder(folder: Path) -> dict:
    """The folder's config.json, once the folder is known to be publishable: a complete (not interrupted) folder with
    the code files, auto_map and safetensors weights and no pickle, and a bundled entity model that fits."""
    if not folder.is_dir():
        raise PublishError(f"{folder}: no such folder; expected a checkpoint folder from typed-bert train or convert")
    check_complete(folder, onnx=True)
    onnx = is_onnx_export(folder)
    problems = check_export(folder) if onnx else check_publishable(folder)
    if problems:
        raise PublishError(f"{folder} cannot be published:\n- " + "\n- ".join(problems))
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("entity_model") and not onnx:
        check_entity_model(folder / config["entity_model"], config.get("entity_types", ["O"]))
    return config


def _write_card(folder: Path, repo_id: str, tag: str, language) -> None:
    """The model card (README.md), its loading snippet pinned to `tag`, from the folder's eval_results.json."""
    results_file = folder / "eval_results.json"
    results = json.loads(results_file.read_text(encoding="utf-8")) if results_file.is_file() else {}
    settings = results.get("settings", {})
    write_model_card(
        folder,
        repo_id=repo_id,
        revision=tag,
        base_model=settings.get("base_model_id") or settings.get("base_model"),
        train_file=settings.get("train_file"),
        confusion_matrix="confusion_matrix.png" if (folder / "confusion_matrix.png").is_file() else None,
        training_curve="training_curve.png" if (folder / "training_curve.png").is_file() else None,
        language=language or settings.get("language"),
    )


def _upload(api: HfApi, folder: Path, repo_id: str, branch: str, message: str, parent: str) -> str:
    """Upload `folder` as one commit on `branch`, whose head must still be `parent`; the new commit's id."""
    commit = api.upload_folder(
        folder_path=folder, repo_id=repo_id, revision=branch, commit_message=message,
        ignore_patterns=IGNORE_PATTERNS, parent_commit=parent,
    )  # fmt: skip
    return commit.oid


def _check_same_files(api: HfApi, repo_id: str, checked: str, published: str) -> None:
    """Refuse when the published commit's files differ from the checked commit's (path and content id)."""

    def files(revision: str) -> dict[str, str | None]:
        entries = api.list_repo_tree(repo_id, revision=revision, recursive=True)
        return {entry.path: getattr(entry, "blob_id", None) for entry in entries if hasattr(entry, "blob_id")}

    if files(checked) != files(published):
        raise PublishError(
            f"{repo_id}@{published} does not hold the files that were checked at {checked}; the tag was not created"
        )


@dataclass
class LocalOutputs:
    """What the local folder gives in a clean interpreter, to compare the published repo with."""

    folder: Path
    auto_class: str
    inputs: dict[str, torch.Tensor]
    outputs: torch.Tensor
    module: str
    entities: list | None

    @classmethod
    def of(cls, folder: Path, config: dict) -> LocalOutputs:
        """Run the folder as a user would (its logits, or hidden states for an encoder; its entities)."""
        from transformers import AutoTokenizer

        auto_class = "AutoModel" if config.get("architectures") == ["TypedBertModel"] else (
            "AutoModelForSequenceClassification"
        )  # fmt: skip
        inputs = sample_inputs(folder, AutoTokenizer.from_pretrained(folder, trust_remote_code=True))
        (outputs,), module = run_in_clean_process(folder, [inputs], auto_class)
        entities = extract_in_clean_process(folder, [EXAMPLE["text"]]) if config.get("entity_model") else None
        return cls(folder, auto_class, inputs, outputs, module, entities)

    def compare_with_hub(self, repo_id: str, commit: str, result: PushResult) -> None:
        """Load `repo_id@commit` in a clean interpreter with a fresh cache; a `PublishError` names any difference."""
        with tempfile.TemporaryDirectory(prefix="typed-bert-verify-") as cache_dir:
            (remote,), module = run_in_clean_process(
                repo_id, [self.inputs], self.auto_class, revision=commit, cache_dir=cache_dir
            )
            entities = None
            if self.entities is not None:
                entities = extract_in_clean_process(repo_id, [EXAMPLE["text"]], revision=commit, cache_dir=cache_dir)
        result.loaded_from, result.verified_with = module, self.auto_class
        result.max_abs_difference = float((remote - self.outputs).abs().max())
        if not torch.equal(remote, self.outputs):
            raise PublishError(
                f"Verification failed: outputs of {repo_id}@{commit} through {self.auto_class} differ from "
                f"{self.folder} by {result.max_abs_difference}; nothing was published"
            )
        if entities is not None:
            if _spans(entities) != _spans(self.entities):
                raise PublishError(
                    f"Verification failed: the entity model of {repo_id}@{commit} finds {entities} in "
                    f"{EXAMPLE['text']!r}, the local folder {self.entities}; nothing was published"
                )
            result.entities_verified = len(self.entities[0])


@dataclass
class ExportOutputs:
    """What an ONNX export (`typed-bert export`) gives through ONNX Runtime for the card's example, to compare the
    published repo with: the relations of the example text (found by its entity model when it has one) or the label
    of the example pair."""

    folder: Path
    outputs: Any

    @classmethod
    def of(cls, folder: Path) -> ExportOutputs:
        return cls(folder, _export_outputs(folder))

    def compare_with_hub(self, repo_id: str, commit: str, result: PushResult) -> None:
        """Download `repo_id@commit` into a fresh cache and run it the same way; a `PublishError` names a difference."""
        from huggingface_hub import snapshot_download

        with tempfile.TemporaryDirectory(prefix="typed-bert-verify-") as cache_dir:
            snapshot = snapshot_download(repo_id, revision=commit, cache_dir=cache_dir)
            remote = _export_outputs(Path(snapshot))
        result.verified_with, result.loaded_from = "typed_bert.onnx_runtime.onnx_pipeline", f"{repo_id}@{commit}"
        result.max_abs_difference = 0.0 if remote == self.outputs else float("inf")
        if remote != self.outputs:
            raise PublishError(f"Verification failed: {repo_id}@{commit} through ONNX Runtime gives {remote}, "
                               f"{self.folder} {self.outputs}; nothing was published")  # fmt: skip


def _export_outputs(folder: Path) -> Any:
    """The example's relations (raw text, with an entity model) or its pair's label, through ONNX Runtime."""
    from typed_bert.onnx_runtime import onnx_pipeline

    classify = onnx_pipeline(folder)
    if getattr(classify.model.config, "entity_model", None):
        return classify(EXAMPLE["text"])
    pair = example_pair(list(classify.model.config.entity_types))
    return classify(pair, top_k=classify.model.config.num_labels)


def _spans(found: list[list[dict]]) -> list[list[tuple]]:
    return [[(entity["start"], entity["end"], entity["type"]) for entity in entities] for entities in found]
