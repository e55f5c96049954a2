"""Predict relations with the relation-classification pipeline: JSON Lines in, JSON Lines out.

    python scripts/predict.py --model OUT_OR_HUB_ID --input examples.jsonl [--output predictions.jsonl] [--top-k 3]

Each input line is `{"text", "subject": {"start", "end", "type"}, "object": {...}}` (other fields are kept); each
output line is the input plus `"prediction": {"label", "score"}` (a list with --top-k).
"""

from __future__ import annotations

import argparse
import json
import sys

from transformers import pipeline


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True, help="JSON Lines file, or - for stdin")
    parser.add_argument("--output", default="-", help="JSON Lines file, or - for stdout")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--revision", default=None)
    args = parser.parse_args(argv)

    classify = pipeline("relation-classification", model=args.model, trust_remote_code=True, revision=args.revision)
    source = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")  # noqa: SIM115
    examples = []
    with source:
        for number, line in enumerate(source, start=1):
            if line.strip():
                try:
                    examples.append(json.loads(line))
                except json.JSONDecodeError as error:
                    sys.exit(f"error: {args.input}:{number}: invalid JSON ({error.msg})")
    kwargs = {} if args.top_k is None else {"top_k": args.top_k}
    try:
        predictions = classify(examples, **kwargs) if examples else []
    except ValueError as error:
        sys.exit(f"error: {error}")
    sink = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    with sink:
        for example, prediction in zip(examples, predictions, strict=True):
            sink.write(json.dumps({**example, "prediction": prediction}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
