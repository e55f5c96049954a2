"""The one root of the errors a user's input causes: what the `typed-bert` commands print as one line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class InputError(ValueError):
    """Bad input from the user (a file, a line, an argument, a checkpoint); `str()` is the one line the user sees,
    `FILE:LINE: what is wrong; what was expected`, naming the file and line when there is one.

    The `typed-bert` commands print these as `error: ...` with exit status 2; every other exception is a bug and keeps
    its traceback. Subclasses say which step refused the input (`DataFileError`, `ConversionError`, ...).
    """

    def __init__(self, problem: str, file: str | Path | None = None, line: int | None = None) -> None:
        self.problem, self.file, self.line = problem, file, line
        where = "" if file is None else (f"{file}:{line}: " if line is not None else f"{file}: ")
        super().__init__(f"{where}{problem}")


class DataFileError(InputError):
    """A data file is missing, empty or has a malformed line; the message names the file and the line."""


@contextmanager
def reading(what: str | Path, expected: str) -> Iterator[None]:
    """Turn the errors of loading a user's checkpoint, tokenizer or Hub repo (transformers' `OSError` for a missing
    folder or repo, `ValueError` for a config it refuses) into an `InputError` naming `what` and `expected`. An
    absolute path (the commands make every local path absolute; a Hub id never is) that does not exist is refused
    before transformers would take it for a repo id."""
    if Path(what).is_absolute() and not Path(what).exists():
        raise InputError(f"no such folder; expected {expected}", what)
    try:
        yield
    except (OSError, ValueError) as error:
        if isinstance(error, InputError):
            raise
        problem = " ".join(str(error).split()).rstrip(".") or type(error).__name__
        raise InputError(f"{problem}; expected {expected}", what) from error
