"""Find (or fetch from the package index) the `tests/` folder of the installed transformers release, and import its
common test mixins under a package name of their own (`transformers_release_tests`), next to our `tests` package."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import transformers

CACHE = Path(__file__).resolve().parents[1] / ".transformers-tests"
PACKAGE = "transformers_release_tests"
# Our own values for `config_common_kwargs` (the sdist leaves out tests/utils/test_configuration_utils.py): common
# PretrainedConfig fields, each set to a non-default value, which ConfigTester checks a config keeps.
CONFIG_COMMON_KWARGS = {
    "output_hidden_states": True,
    "return_dict": False,
    "chunk_size_feed_forward": 5,
    "id2label": {0: "no_relation", 1: "founded_by"},
    "label2id": {"no_relation": 0, "founded_by": 1},
    "problem_type": "single_label_classification",
    "pad_token_id": 3,
}


def release_tests_dir() -> Path | None:
    """`tests/` of the installed release's sdist, downloaded once into `.transformers-tests/`; None if unavailable."""
    version = transformers.__version__
    folder = CACHE / f"transformers-{version}" / "tests"
    if (folder / "__init__.py").is_file():
        return folder
    CACHE.mkdir(exist_ok=True)
    archive = CACHE / f"transformers-{version}.tar.gz"
    if not archive.is_file():
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        result = subprocess.run([*command, f"transformers=={version}", "-d", str(CACHE)], capture_output=True)
        if result.returncode != 0 or not archive.is_file():
            return None
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(f"transformers-{version}/tests/")]
        tar.extractall(CACHE, members=members, filter="data")
    if not folder.is_dir():
        return None
    # The repository's tests/ is a package; the sdist drops its empty __init__.py, which ConfigTester's module reads.
    (folder / "__init__.py").touch()
    return folder


def _stub(name: str, **attributes) -> None:
    module = types.ModuleType(f"{PACKAGE}.{name}")
    module.__dict__.update(attributes)
    sys.modules[module.__name__] = module


def import_common_tests():
    """`(ModelTesterMixin, ConfigTester, ids_tensor, random_attention_mask)` of the installed release, or None."""
    folder = release_tests_dir()
    if folder is None:
        return None
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(folder)]
        sys.modules[PACKAGE] = package
        # Helper modules the sdist does not carry: mixins for export and generation tests, which an encoder that
        # does not generate has no use for, and the common config kwargs (ours above).
        _stub("exporters", __path__=[])
        _stub("exporters.test_export", ExportTesterMixin=type("ExportTesterMixin", (), {}))
        _stub("generation", __path__=[])
        _stub("generation.test_utils", GenerationTesterMixin=type("GenerationTesterMixin", (), {}))
        _stub("utils", __path__=[])
        _stub("utils.test_configuration_utils", config_common_kwargs=CONFIG_COMMON_KWARGS)
    modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
    configuration = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    return modeling.ModelTesterMixin, configuration.ConfigTester, modeling.ids_tensor, modeling.random_attention_mask
