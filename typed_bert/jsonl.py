"""The one reader of JSON Lines files, for every command: bytes split on `\\n` only (a U+2028 or a form feed inside
a text is part of the text, as JSON allows), each line decoded as UTF-8 and parsed as JSON.

    for number, row in json_rows("train.jsonl"):  # a DataFileError at the first bad line
        ...
    for number, line in raw_lines(path, path):      # text, or the DataFileError of a line that is not UTF-8
        ...
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from typed_bert.errors import DataFileError

EXPECTED_JSON = "expected one JSON object per line"


def raw_lines(source: str | Path | BinaryIO, name: str | Path) -> Iterator[tuple[int, str | DataFileError]]:
    """`(line number, text)` of every non-blank line of a file (or a binary stream, such as stdin's buffer); a line
    with an invalid UTF-8 byte gives a `DataFileError` naming the line and the byte's offset in the file instead."""
    stream = open(source, "rb") if isinstance(source, (str, Path)) else source  # noqa: SIM115 - closed below
    offset = 0
    try:
        for number, data in enumerate(stream, start=1):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as error:
                problem = f"invalid UTF-8 byte 0x{data[error.start]:02x} at byte offset {offset + error.start}"
                yield number, DataFileError(f"{problem}; expected UTF-8 text", name, number)
            else:
                if text.strip():
                    yield number, text
            offset += len(data)
    finally:
        if stream is not source:
            stream.close()


def json_rows(source: str | Path | BinaryIO, name: str | Path | None = None) -> Iterator[tuple[int, Any]]:
    """`(line number, parsed JSON)` of every non-blank line. A missing file, a line that is not UTF-8 or not JSON
    raises a `DataFileError` naming the file and line."""
    name = name if name is not None else source
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise DataFileError("no such file; expected a JSON Lines file", name)
    for number, line in raw_lines(source, name):
        if isinstance(line, DataFileError):
            raise line
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFileError(f"invalid JSON ({error.msg}); {EXPECTED_JSON}", name, number) from None
