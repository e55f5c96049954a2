"""What every command shares: an argument parser whose `--help` ends with an example, and bad input reported as one
line, `error: FILE:LINE: what is wrong; what was expected`, with exit status 2 and no traceback (the traceback
with `--debug` or `TYPED_BERT_DEBUG=1`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DEBUG_VARIABLE = "TYPED_BERT_DEBUG"


class InputError(ValueError):
    """Bad input from the user; `str()` is the one line the user sees, naming the file and line when known."""

    def __init__(self, problem: str, file: object | None = None, line: int | None = None) -> None:
        self.problem, self.file, self.line = problem, file, line
        where = "" if file is None else (f"{file}:{line}: " if line is not None else f"{file}: ")
        super().__init__(f"{where}{problem}")


def command_parser(description: str | None, example: str) -> argparse.ArgumentParser:
    """An `ArgumentParser` whose help shows `description`, then `example`, with a `--debug` flag."""
    parser = argparse.ArgumentParser(
        description=description,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks (or set {DEBUG_VARIABLE}=1)")
    return parser


def local_path(value: str) -> str:
    """argparse type of a file or folder argument: the absolute path, resolved once against the working directory the
    command was started in. Every child process (the clean-interpreter checks run elsewhere) and transformers (which
    takes a relative path that is not a folder there for a Hub id) then get the same file. `-` (stdin, stdout) stays."""
    return value if value == "-" else str(Path(value).expanduser().absolute())


def is_local_path(value: str) -> bool:
    """Whether a checkpoint argument names a local folder rather than a Hub id: it exists, or it can only be a path
    (absolute, `./`, `../`, `~`, or more than one `/`)."""
    path = Path(value).expanduser()
    return path.exists() or path.is_absolute() or value.startswith((".", "~")) or value.count("/") > 1


def model_path(value: str) -> str:
    """argparse type of a checkpoint argument, a folder or a Hub id: a local one becomes absolute (`local_path`), a
    Hub id stays as given."""
    return local_path(value) if is_local_path(value) else value


def run(main: Callable[[Sequence[str] | None], Any], argv: Sequence[str] | None = None) -> Any:
    """Run a command's `main(argv)`. A `ValueError` (bad input, bad data, a refused conversion or push) or an
    `OSError` (a missing file, model or repo) becomes one line on stderr and exit status 2."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        return main(arguments)
    except (ValueError, OSError) as error:
        if "--debug" in arguments or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def pick_device(name: str) -> str:
    """`--device`: `auto` picks cuda, then mps, then cpu; any other name is used as given."""
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def pick_precision(name: str, device: str) -> str:
    """`--precision`: `auto` is bf16 (autocast; the weights stay fp32) on CUDA GPUs that support it and on CPUs with
    bf16 units (AVX512-BF16 or AMX-BF16), fp32 elsewhere; `fp32` and `bf16` are used as given."""
    import torch

    if name != "auto":
        return name
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device == "cpu":
        get_capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.10
        capabilities = get_capabilities() if get_capabilities else {}
        return "bf16" if capabilities.get("avx512_bf16") or capabilities.get("amx_bf16") else "fp32"
    return "fp32"
