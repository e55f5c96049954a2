"""Predict relations with the relation-classification pipeline: JSON Lines in, JSON Lines out, in batches.

    python scripts/predict.py --model OUT_OR_HUB_ID --input examples.jsonl [--output predictions.jsonl] [--top-k 3]
        [--batch-size 64] [--device auto] [--dtype auto|fp32|bf16] [--skip-bad-lines] [--quiet]

Each input line is one pair, `{"text", "subject": {"start", "end", "type"}, "object": {...}}`, or a text with its
entities, `{"text", "entities": [{"start", "end", "type"}, ...]}` (other fields are kept). Each output line is the
input plus `"prediction"`: for a pair `{"label", "score"}` (a list with --top-k or --threshold); for a text the list
of its relations, `{"subject", "object", "label", "score"}` per ordered pair of entities, without `no_relation`
unless --keep-no-relation (see the relation-classification pipeline). Every line is checked before the model runs:
a bad line stops the command with its number, or, with --skip-bad-lines, is reported on stderr and left out while
every good line is still predicted.

`--model` may be an ONNX export (`typed-bert export`, run by ONNX Runtime: docs/serving.md). With `--engine ray`
the text-only rows of a file or glob go through Ray Data workers into a folder of Parquet files (docs/corpora.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import torch
from tqdm.auto import tqdm
from transformers import Pipeline

from typed_bert.command_line import (
    add_inference_options,
    add_window_options,
    command_parser,
    fraction,
    local_path,
    model_path,
    positive_int,
    run,
)
from typed_bert.errors import InputError, reading
from typed_bert.hardware import pick_device, pick_precision
from typed_bert.jsonl import raw_lines
from typed_bert.outputs import check_complete, check_destination, is_onnx_export, staged_file

EXPECTED_LINE = (
    "expected {'text', 'subject': {'start', 'end', 'type'}, 'object': {...}}, {'text', 'entities': "
    "[{'start', 'end', 'type'}, ...]} or, with a model that has an entity model, {'text'}"
)
# Lines per call of the pipeline: enough for texts of similar length to share batches, few enough for steady progress.
CHUNK_LINES = 512
EXAMPLE = "typed-bert predict --model org/typed-bert --input pairs.jsonl --output predictions.jsonl --top-k 3"


def check_text_line(classify, example: dict) -> None:
    """A text-only line needs a non-empty text and a model with an entity model (`config.entity_model`)."""
    if not isinstance(example["text"], str) or not example["text"].strip():
        raise ValueError(f"'text' is {example['text']!r}, not a non-empty string")
    if not getattr(classify.model.config, "entity_model", None):
        raise ValueError(
            "the line has no entities and the model has no entity model to find them (typed-bert push --model FOLDER "
            "--entity-model NER_FOLDER adds one)"
        )


def read_lines(classify, source, name: str, skip_bad_lines: bool) -> list[tuple[int, dict]]:
    """`(line number, example)` of every good line of `source` (a path, or a binary stream). A bad line (not UTF-8,
    not JSON, not an object, a span or type the model cannot encode) raises an `InputError`, or with
    `skip_bad_lines` is reported on stderr and left out, and the skipped lines are counted at the end."""
    examples, skipped = [], 0
    for number, line in raw_lines(source, name):
        try:
            examples.append((number, checked_example(classify, line)))
        except ValueError as error:  # json.JSONDecodeError and the reader's DataFileError are ValueErrors
            problem = error.problem if isinstance(error, InputError) else f"{str(error).rstrip('.')}; {EXPECTED_LINE}"
            if not skip_bad_lines:
                raise InputError(f"{problem} (--skip-bad-lines skips such lines)", name, number) from None
            print(f"skipped {name}:{number}: {problem}", file=sys.stderr)
            skipped += 1
    if skipped:
        print(f"{skipped} bad lines of {name} left out (--skip-bad-lines)", file=sys.stderr)
    return examples


def checked_example(classify, line: str | InputError) -> dict:
    """The example of one line, after the checks the pipeline runs on it without the model; a `ValueError` says
    what is wrong (the reader's own error for a line that is not UTF-8)."""
    if isinstance(line, InputError):
        raise line
    example = json.loads(line)
    if not isinstance(example, dict):
        raise ValueError(f"a JSON {type(example).__name__}, not an object")
    if "text" in example and not {"entities", "subject", "object"} & set(example):  # raw text
        check_text_line(classify, example)
    else:
        for _ in classify.preprocess(example):  # the checks and encoding the pipeline will run, no model
            pass
    return example


def check_windows(classify, args) -> None:
    """--max-length within the relation model's limit, --stride smaller than the entity model's window: checked
    before the lines are read (an `InputError` naming the model)."""
    from encoding_typed_bert import max_sequence_length

    with reading(args.model, "a --max-length the model's position table holds and a --stride smaller than it"):
        max_sequence_length(classify.tokenizer, classify.model.config.max_sequence_length, args.max_length)
        if getattr(classify.model.config, "entity_model", None):
            for document in (False, True):
                classify.entity_windows(args.stride, args.max_length, document)


def main(argv: list[str] | None = None) -> None:
    parser = command_parser(__doc__, EXAMPLE)
    parser.add_argument("--model", required=True, type=model_path)
    parser.add_argument("--input", required=True, type=local_path, help="JSON Lines file, or - for stdin")
    parser.add_argument("--output", type=local_path, default="-", help="JSON Lines file, or - for stdout")
    parser.add_argument("--top-k", type=positive_int, default=None, help="the k best labels of each pair")
    parser.add_argument("--threshold", type=fraction, default=None, help="report no label scoring below this (0-1)")
    parser.add_argument(
        "--keep-no-relation", action="store_true", help="entity lists: report pairs predicted no_relation too"
    )
    add_inference_options(
        parser, batch_size=64, dtype="auto",
        dtype_help="bf16: bf16 weights; auto: bf16 where the GPU or CPU has bf16 units (see --precision of train)",
    )  # fmt: skip
    add_window_options(parser)
    parser.add_argument("--skip-bad-lines", action="store_true", help="report bad lines on stderr and go on")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    parser.add_argument("--onnx-graph", choices=["fp32", "int8"], default="fp32",
                        help="which graphs of an ONNX export (typed-bert export) run; CPU only")  # fmt: skip
    add_ray_options(parser)
    args = parser.parse_args(argv)
    if Path(args.model).is_dir():
        check_complete(args.model, onnx=True)
    if args.engine == "ray":
        predict_on_ray(args)
        return
    if args.output != "-":
        check_destination(args.output, args.overwrite, (args.input, args.model))
    if args.input != "-" and not Path(args.input).is_file():
        raise InputError("no such file; expected a JSON Lines file of pairs, entity lists or texts", args.input)
    classify = load_pipeline(args)
    check_windows(classify, args)
    source = sys.stdin.buffer if args.input == "-" else args.input
    examples = read_lines(classify, source, args.input, args.skip_bad_lines)
    given = {"top_k": args.top_k, "threshold": args.threshold, "keep_no_relation": args.keep_no_relation or None,
             "max_length": args.max_length, "stride": args.stride}  # fmt: skip
    kwargs = {"batch_size": args.batch_size} | {name: value for name, value in given.items() if value is not None}

    bar = tqdm(total=len(examples), unit="line", disable=args.quiet or None, file=sys.stderr)
    with output_stream(args.output, args.overwrite) as sink, bar as progress:
        for predicted in predictions_in_chunks(classify, [example for _, example in examples], kwargs, progress):
            for example, prediction in predicted:
                sink.write(json.dumps({**example, "prediction": prediction}, ensure_ascii=False) + "\n")


def predictions_in_chunks(
    classify: Pipeline, examples: list[dict], kwargs: dict, progress: tqdm
) -> Iterator[list[tuple[dict, object]]]:
    """`(example, prediction)` pairs, `CHUNK_LINES` lines at a time: each chunk is one list call (its raw texts through
    the entity model in batches, its texts batched with texts of their length), and the progress bar counts its lines
    and the tokens per second read (counted only for a bar that is shown)."""
    tokens = 0
    for start in range(0, len(examples), CHUNK_LINES):
        chunk = examples[start : start + CHUNK_LINES]
        yield list(zip(chunk, classify(chunk, **kwargs), strict=True))
        progress.update(len(chunk))
        if progress.disable:
            continue
        tokens += sum(map(len, classify.tokenizer([example["text"] for example in chunk], verbose=False)["input_ids"]))
        progress.set_postfix_str(f"{tokens / max(progress.format_dict['elapsed'], 1e-9):,.0f} tokens/s", refresh=False)


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    """`--engine ray` and its worker options (docs/corpora.md)."""
    parser.add_argument(
        "--engine",
        choices=["pipeline", "ray"],
        default="pipeline",
        help="ray: Ray Data over --input files or a glob, Parquet files in the folder --output",
    )
    parser.add_argument("--workers", type=positive_int, default=1, help="with --engine ray: model copies (actors)")
    parser.add_argument("--cpus-per-worker", type=positive_int, default=1, help="with --engine ray: CPUs (threads)")
    parser.add_argument("--gpus-per-worker", type=fraction, default=0.0, help="with --engine ray: GPUs, 0 to 1")


def predict_on_ray(args: argparse.Namespace) -> None:
    """`--engine ray`: the texts of the --input files through `RelationExtractor` actors, Parquet files in --output."""
    given = {name: getattr(args, name) for name in ("top_k", "threshold", "max_length", "stride")}
    given["keep_no_relation"] = args.keep_no_relation or None
    unsupported = [f"--{name.replace('_', '-')}" for name, value in given.items() if value is not None]
    if unsupported or args.output == "-":
        raise InputError(f"--engine ray takes text-only rows and writes a folder; expected --output DIR and none of "
                         f"{unsupported or ['--output -']}", "--engine ray")  # fmt: skip
    from typed_bert.ray_inference import input_paths, predict_with_ray

    check_destination(args.output, args.overwrite, (args.model, *input_paths(args.input)))

    device = "cuda" if args.gpus_per_worker else "cpu"  # the driver's pick: workers are assumed alike
    dtype = torch.bfloat16 if pick_precision(args.dtype, device) == "bf16" else None
    rows = predict_with_ray(args.model, args.input, args.output, args.workers, args.cpus_per_worker,
                            args.gpus_per_worker, args.batch_size, dtype, args.onnx_graph, args.overwrite,
                            args.revision)  # fmt: skip
    print(f"{rows} rows -> {args.output}", file=sys.stderr)


def load_pipeline(args: argparse.Namespace) -> Pipeline:
    """The relation-classification pipeline of `--model`: PyTorch (a folder or Hub id), or ONNX Runtime for a folder
    that typed-bert export wrote (`--onnx-graph`)."""
    from typed_bert.onnx_runtime import relation_pipeline

    onnx = is_onnx_export(args.model)
    expected = (
        "an ONNX export of a TypedBert relation model (typed-bert export)"
        if onnx
        else "a TypedBert relation classifier folder or Hub id"
    )
    device = pick_device(args.device)
    with reading(args.model, expected):
        return relation_pipeline(
            args.model,
            args.onnx_graph,
            revision=args.revision,
            device=device,
            dtype=torch.bfloat16 if pick_precision(args.dtype, device) == "bf16" else None,
        )


@contextmanager
def output_stream(output: str, overwrite: bool) -> Iterator[TextIO]:
    """stdout for `-`, else the output file, written beside it and renamed into place when every line is there."""
    if output == "-":
        yield sys.stdout
        return
    with staged_file(output, overwrite) as sink:
        yield sink


if __name__ == "__main__":
    run(main)
