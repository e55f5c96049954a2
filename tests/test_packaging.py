"""The built wheel adds only names that are ours: `typed_bert` and the four remote-code modules, and the
`typed-bert` command; `hub/` is installed inside `typed_bert`, `scripts/` (thin entry points) not at all."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO_ROOT
from typed_bert.cli import COMMANDS

pytestmark = pytest.mark.slow

REMOTE_CODE = {"configuration_typed_bert", "modeling_typed_bert", "encoding_typed_bert", "pipeline_typed_bert"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO_ROOT)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("typed_bert-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_adds_only_our_top_level_names(wheel):
    names = wheel.namelist()
    top_level = {name.split("/")[0].removesuffix(".py") for name in names if ".dist-info/" not in name}
    assert top_level == {"typed_bert", *REMOTE_CODE}
    expected = {"typed_bert/hub/export.py", "typed_bert/hub/templates/model_card.md", "typed_bert/commands/train.py"}
    assert expected <= set(names)
    assert not [name for name in names if name.startswith(("tests/", "hub/", "scripts/"))]


def test_wheel_declares_the_typed_bert_command(wheel):
    (entry_points,) = [name for name in wheel.namelist() if name.endswith(".dist-info/entry_points.txt")]
    assert "typed-bert = typed_bert.cli:main" in wheel.read(entry_points).decode()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_runs_from_its_script_in_a_checkout(command):
    """docs/cli.md: `python scripts/NAME.py` is `typed-bert NAME`, for every command."""
    script = REPO_ROOT / "scripts" / f"{command.replace('-', '_')}.py"
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "example:" in result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help_with_an_example(command):
    result = subprocess.run(
        [sys.executable, "-m", "typed_bert.cli", command, "--help"], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"usage: typed-bert {command}" in result.stdout
    assert f"example:\n  typed-bert {command} " in result.stdout
    # A usage line continued with a backslash stays two lines (a docstring's "\\<newline>" would join them).
    joined = [
        line for line in result.stdout.splitlines() if line.startswith("    python scripts/") and "   " in line.strip()
    ]
    assert not joined, joined
