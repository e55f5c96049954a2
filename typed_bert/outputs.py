"""What every command does to the files and folders it writes: nothing existing is lost, nothing half-written is left
where a finished output would be.

- `check_destination` runs before any work: an existing destination (a non-empty folder, a file) is refused without
  `--overwrite`, and so is a destination that is also one of the command's inputs.
- `staged_folder` / `staged_file` write under a temporary name beside the destination (same file system) and rename
  into place only when the `with` block ends without an error; a failure or an interrupt (Ctrl-C) removes the
  temporary copy and leaves the destination exactly as it was. A replaced destination is moved aside first and
  removed only after the new one is in place.
- A staged folder carries `INCOMPLETE_MARKER` until it is renamed: the copy that a killed process (SIGKILL, power
  loss) leaves behind says so, and `check_complete` (run by everything that reads a model folder: `push`,
  `--entity-model`, `--base-model`, `evaluate`, `predict`) refuses it, and so is an ONNX export (`typed-bert export`)
  anywhere but in `predict`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from typed_bert.errors import InputError

INCOMPLETE_MARKER = ".typed-bert-incomplete"
STAGING_SUFFIX = ".partial"
# config.json's entry in a folder that `typed-bert export --format onnx` wrote (`typed_bert.onnx_runtime`).
ONNX_CONFIG_KEY = "onnx"


def check_destination(destination: str | Path, overwrite: bool, inputs: Iterable[str | Path | None] = ()) -> None:
    """Refuse, before any work, a destination that is one of `inputs` (or holds one of them), or that exists (a
    non-empty folder, or a file) when `overwrite` is false; an `InputError` names it and says what to do."""
    destination = Path(destination).resolve()
    for source in inputs:
        if source is None or str(source) == "-":
            continue
        source = Path(source).resolve()
        if source == destination or destination in source.parents:
            raise InputError(f"is also an input ({source}); expected an output path that no input lies in", destination)
    if destination.is_dir() and any(destination.iterdir()) and not overwrite:
        raise InputError("exists and is not empty; pass --overwrite to replace it, or choose another path", destination)
    if destination.exists() and not destination.is_dir() and not overwrite:
        raise InputError("exists; pass --overwrite to replace it, or choose another path", destination)


def check_complete(folder: str | Path, onnx: bool = False) -> None:
    """Refuse a folder that an interrupted or failed typed-bert run left behind (it still holds `INCOMPLETE_MARKER`),
    and an ONNX export unless the consumer reads one (`onnx`)."""
    if (Path(folder) / INCOMPLETE_MARKER).exists():
        raise InputError(
            "is incomplete: a typed-bert run that wrote it was interrupted before it finished; run that command again "
            "(the finished folder is renamed into place) or delete this folder",
            folder,
        )
    if not onnx and is_onnx_export(folder):
        raise InputError("is an ONNX export (typed-bert export), which only typed-bert predict and push read; expected "
                         "the PyTorch model folder it was exported from", folder)  # fmt: skip


def is_onnx_export(folder: str | Path) -> bool:
    """Whether `folder` holds a config.json that `typed-bert export --format onnx` wrote."""
    try:
        return ONNX_CONFIG_KEY in json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _replace(staging: Path, destination: Path) -> None:
    """Rename `staging` to `destination`; an existing destination is moved aside first and removed afterwards."""
    aside = None
    if destination.exists() or destination.is_symlink():
        aside = Path(tempfile.mkdtemp(prefix=f".{destination.name}.replaced-", dir=destination.parent))
        os.replace(destination, aside / destination.name)
    os.replace(staging, destination)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def staged_folder(destination: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """A new empty folder beside `destination` to write the whole output into; renamed to `destination` when the
    block succeeds (replacing what is there only with `overwrite`, checked again at the end), removed otherwise."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=STAGING_SUFFIX, dir=destination.parent))
    (staging / INCOMPLETE_MARKER).write_text("written by a typed-bert command that has not finished\n")
    try:
        yield staging
        check_destination(destination, overwrite)
        (staging / INCOMPLETE_MARKER).unlink()
        _replace(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def staged_path(destination: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """The path of a new empty file beside `destination` for a writer that takes a path (a plot), renamed to
    `destination` when the block succeeds, removed otherwise."""
    destination = Path(destination)
    if not destination.parent.is_dir():
        raise InputError("cannot write: its folder does not exist; expected a file in an existing folder", destination)
    handle, name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=STAGING_SUFFIX, dir=destination.parent)
    os.close(handle)
    try:
        yield Path(name)
        check_destination(destination, overwrite)
        os.replace(name, destination)
    finally:
        if os.path.exists(name):
            os.unlink(name)


@contextmanager
def staged_file(destination: str | Path, overwrite: bool = False, encoding: str = "utf-8") -> Iterator[TextIO]:
    """A text stream to a new file beside `destination`, renamed to it when the block succeeds, removed otherwise."""
    with staged_path(destination, overwrite) as path, path.open("w", encoding=encoding, newline="") as stream:
        yield stream


def write_text_atomically(destination: str | Path, text: str) -> None:
    """Write a whole small file (a record, a table) so that readers see the old content or the new, never a part."""
    with staged_file(destination, overwrite=True) as stream:
        stream.write(text)
