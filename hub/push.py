"""Publish a TypedBert checkpoint folder to the Hub in one commit, tag it, and verify it by loading it back.

`huggingface_hub` reads `HF_ENDPOINT` and `HF_TOKEN` as usual (set them before importing it).
"""

from __future__ import annotations

import json
import re
import socket
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from huggingface_hub import HfApi, constants

from configuration_typed_bert import TypedBertConfig
from encoding_typed_bert import TypedBertDataCollator, encode_relations
from typed_bert.errors import InputError, reading

from .export import check_publishable
from .model_card import EXAMPLE, write_model_card
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
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise PublishError(
            f"cannot reach the Hub endpoint {endpoint} ({reason}); check HF_ENDPOINT (unset, it is "
            "https://huggingface.co), the network and any proxy settings; nothing was uploaded"
        ) from None


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
    first, second = (types[1], types[2]) if len(types) > 2 else (types[-1], types[-1])
    examples = [
        {**EXAMPLE, "subject": {**EXAMPLE["subject"], "type": first}, "object": {**EXAMPLE["object"], "type": second}},
        {
            "text": "Microsoft hired Bill Gates in Redmond.",
            "subject": {"start": 16, "end": 26, "type": first},
            "object": {"start": 0, "end": 9, "type": second},
        },
    ]
    typed = TypedBertConfig.from_dict(config)  # also reads configs written before input_mode
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
    """Create `repo_id` if needed, upload `folder` as one commit on `revision`, tag it, then verify the upload.

    The model card (README.md) is rendered first with the tag as the pinned revision of its loading snippet.
    Verification downloads the commit into a fresh cache and checks that `AutoModelForSequenceClassification`
    (for an encoder: `AutoModel`) with `trust_remote_code=True` gives the same logits (hidden states) as the local
    folder.
    """
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(f"{folder}: no such folder; expected a checkpoint folder from typed-bert train or convert")
    problems = check_publishable(folder)
    if problems:
        raise PublishError(f"{folder} cannot be published:\n- " + "\n- ".join(problems))

    check_endpoint_reachable(constants.ENDPOINT)
    expected = f"a repo id (namespace/name) that HF_TOKEN may write to on {constants.ENDPOINT}"
    api = HfApi(token=token)
    with reading(repo_id, expected):  # the Hub's refusals (401, 403, a bad repo id) as one line
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        tag = tag or next_version_tag(api, repo_id)
    results = json.loads((folder / "eval_results.json").read_text()) if (folder / "eval_results.json").is_file() else {}
    settings = results.get("settings") or results.get("args", {})  # "args": folders trained before 0.2
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
    with reading(repo_id, expected):
        commit = api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            revision=revision,
            commit_message=commit_message or f"Upload TypedBert checkpoint ({tag})",
            ignore_patterns=IGNORE_PATTERNS,
        )
        api.create_tag(repo_id, tag=tag, revision=commit.oid, tag_message=f"TypedBert checkpoint {tag}")
        files = sorted(api.list_repo_files(repo_id, revision=commit.oid))
    result = PushResult(repo_id=repo_id, commit=commit.oid, tag=tag, url=commit.commit_url, files=files)
    if verify:
        # A classifier is compared by its logits; an encoder (no head) by its hidden states through AutoModel.
        config = json.loads((folder / "config.json").read_text())
        is_encoder = config.get("architectures") == ["TypedBertModel"]
        auto_class = "AutoModel" if is_encoder else "AutoModelForSequenceClassification"
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        inputs = sample_inputs(folder, tokenizer)
        with tempfile.TemporaryDirectory(prefix="typed-bert-verify-") as cache_dir:
            (remote,), module = run_in_clean_process(
                repo_id, [inputs], auto_class, revision=commit.oid, cache_dir=cache_dir
            )
        (local,), _ = run_in_clean_process(folder, [inputs], auto_class)
        result.loaded_from = module
        result.verified_with = auto_class
        result.max_abs_difference = float((remote - local).abs().max())
        if not torch.equal(remote, local):
            raise PublishError(
                f"Verification failed: outputs of {repo_id}@{commit.oid} through {auto_class} differ from {folder} "
                f"by {result.max_abs_difference}."
            )
        if config.get("entity_model"):  # the bundled entity model: raw text in, the same entities out
            texts = [EXAMPLE["text"]]
            with tempfile.TemporaryDirectory(prefix="typed-bert-verify-") as cache_dir:
                remote_entities = extract_in_clean_process(repo_id, texts, revision=commit.oid, cache_dir=cache_dir)
            local_entities = extract_in_clean_process(folder, texts)
            if [[(e["start"], e["end"], e["type"]) for e in found] for found in remote_entities] != [
                [(e["start"], e["end"], e["type"]) for e in found] for found in local_entities
            ]:
                raise PublishError(
                    f"Verification failed: the entity model of {repo_id}@{commit.oid} finds {remote_entities} in "
                    f"{texts[0]!r}, the local folder {local_entities}."
                )
            result.entities_verified = len(local_entities[0])
    return result
