"""What every command shares: an argument parser whose `--help` ends with an example, path arguments resolved once,
and bad input (an `InputError`) reported as one line, `error: FILE:LINE: what is wrong; what was expected`, with exit
status 2 and no traceback (the traceback with `--debug` or `TYPED_BERT_DEBUG=1`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from typed_bert.errors import InputError

DEBUG_VARIABLE = "TYPED_BERT_DEBUG"
# The settings fields that name local files or folders (`base_model` may also be a Hub id).
PATH_SETTINGS = ("train_file", "validation_file", "entity_model")


def command_parser(description: str | None, example: str, settings: type | None = None) -> argparse.ArgumentParser:
    """An `ArgumentParser` whose help shows `description`, then `example`, with a `--debug` flag; with a `settings`
    dataclass, transformers' `HfArgumentParser` of it (each field an option, its help and choices from the field's
    metadata)."""
    kwargs = {"description": description, "epilog": f"example:\n  {example}",
              "formatter_class": argparse.RawDescriptionHelpFormatter}  # fmt: skip
    if settings is None:
        parser = argparse.ArgumentParser(**kwargs)
    else:
        from transformers import HfArgumentParser

        parser = HfArgumentParser(settings, **kwargs)
    parser.add_argument("--debug", action="store_true", help=f"show tracebacks (or set {DEBUG_VARIABLE}=1)")
    return parser


def settings_parser(description: str | None, example: str, settings: type) -> argparse.ArgumentParser:
    """`command_parser` of a settings dataclass, with `--output-dir` and `--overwrite`."""
    parser = command_parser(description, example, settings)
    parser.add_argument("--output-dir", required=True, type=local_path, help="the model folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output-dir")
    return parser


def parse_settings(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> tuple[Any, argparse.Namespace]:
    """The settings dataclass of `settings_parser`'s command line, its files and folders made absolute (`local_path`,
    `model_path`), and the namespace of the other options."""
    settings, options = parser.parse_args_into_dataclasses(argv, look_for_args_file=False)
    paths = {name: local_path(value) for name in PATH_SETTINGS if (value := getattr(settings, name, None))}
    return replace(settings, base_model=model_path(settings.base_model), **paths), options


def local_path(value: str) -> str:
    """argparse type of a file or folder argument: the absolute path, resolved once against the working directory the
    command was started in. Every child process (the clean-interpreter checks run elsewhere) and transformers (which
    takes a relative path that is not a folder there for a Hub id) then get the same file. `-` (stdin, stdout) stays."""
    return value if value == "-" else os.path.abspath(Path(value).expanduser())


def is_local_path(value: str) -> bool:
    """Whether a checkpoint argument names a local folder rather than a Hub id: it exists, or it can only be a path
    (absolute, `./`, `../`, `~`, or more than one `/`)."""
    path = Path(value).expanduser()
    return path.exists() or path.is_absolute() or value.startswith((".", "~")) or value.count("/") > 1


def model_path(value: str) -> str:
    """argparse type of a checkpoint argument, a folder or a Hub id: a local one becomes absolute (`local_path`), a
    Hub id stays as given."""
    return local_path(value) if is_local_path(value) else value


def add_inference_options(parser: argparse.ArgumentParser, batch_size: int, dtype: str, dtype_help: str) -> None:
    """The options of every command that runs a trained model: `--revision`, `--batch-size`, `--device`, `--dtype`."""
    from typed_bert.hardware import PRECISIONS

    parser.add_argument("--revision", default=None, help="branch, tag or commit of a Hub model")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size)
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, mps")
    parser.add_argument("--dtype", choices=list(PRECISIONS), default=dtype, help=dtype_help)


def add_window_options(parser: argparse.ArgumentParser) -> None:
    """`--max-length` and `--stride`: how long texts are read (the relation-classification pipeline's keywords)."""
    from pipeline_typed_bert import DOCUMENT_MAX_LENGTH  # torch and transformers: only for the commands that run models

    parser.add_argument(
        "--max-length", type=positive_int, default=None,
        help="tokens of a window: each relation sequence, and the entity model's windows over a long text (default: "
        f"each model's limit; a document's windows: {DOCUMENT_MAX_LENGTH})",
    )  # fmt: skip
    parser.add_argument(
        "--stride",
        type=non_negative_int,
        default=None,
        help="tokens two windows of the entity model share on a long text (default: a quarter of the window)",
    )


def non_negative_int(value: str) -> int:
    """argparse type of an overlap: an int of at least 0."""
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer of at least 0")
    return number


def positive_int(value: str) -> int:
    """argparse type of a count: an int of at least 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive integer")
    return number


def fraction(value: str) -> float:
    """argparse type of a score threshold: a number from 0 to 1."""
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number from 0 to 1")
    return number


def run(main: Callable[[Sequence[str] | None], Any], argv: Sequence[str] | None = None) -> Any:
    """Run a command's `main(argv)`. An `InputError` (bad input, bad data, a refused conversion or push, a model or
    repo that cannot be read) becomes one line on stderr and exit status 2; any other exception is a bug and keeps
    its traceback."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        return main(arguments)
    except InputError as error:
        if "--debug" in arguments or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
