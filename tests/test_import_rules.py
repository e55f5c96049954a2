"""The import rules of docs/ARCHITECTURE.md, read from the source (no import runs): a rule broken here is a layer
that leaks."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

REMOTE_CODE = ["configuration_typed_bert", "modeling_typed_bert", "encoding_typed_bert", "pipeline_typed_bert"]
TRAINING_SIDE = ("typed_bert.commands", "typed_bert.training", "typed_bert.trainer", "typed_bert.evaluation")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (relative imports resolved to their module name)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def top_level(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("name", REMOTE_CODE)
def test_remote_code_imports_only_torch_transformers_the_standard_library_and_each_other(name):
    allowed = {"torch", "transformers", "__future__", *REMOTE_CODE}
    outside = {
        module for module in imported_modules(REPO_ROOT / f"{name}.py")
        if top_level(module) not in allowed and top_level(module) not in sys.stdlib_module_names
    }  # fmt: skip
    assert not outside, f"{name}.py imports {sorted(outside)}"


def test_the_library_imports_no_command_and_only_conversion_and_cards_from_hub():
    for path in sorted((REPO_ROOT / "typed_bert").glob("*.py")):
        modules = imported_modules(path)
        assert not {m for m in modules if m.startswith("typed_bert.commands")}, path.name
        from_hub = {m for m in modules if m.startswith("typed_bert.hub.")}
        assert from_hub <= {"typed_bert.hub.export", "typed_bert.hub.model_card"}, (path.name, from_hub)


def test_hub_does_not_import_the_training_side():
    for path in sorted((REPO_ROOT / "hub").glob("*.py")):
        leaks = {m for m in imported_modules(path) if m.startswith(TRAINING_SIDE)}
        assert not leaks, (path.name, leaks)


def test_scripts_are_thin_entry_points_to_the_commands():
    for path in sorted((REPO_ROOT / "scripts").glob("*.py")):
        ours = {m for m in imported_modules(path) if top_level(m) in {"typed_bert", *REMOTE_CODE, "hub"}}
        assert ours and all(m.startswith(("typed_bert.commands", "typed_bert.command_line")) for m in ours), (
            path.name,
            ours,
        )
