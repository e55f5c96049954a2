r"""Fine-tune an entity recognizer (a token classifier, BIO tags) for end-to-end relation extraction.

    python scripts/train_entities.py --base-model PATH --train-file train_entities.jsonl \
        --validation-file dev_entities.jsonl --output-dir OUT [--no-word-shapes] [--overwrite]

Input: entity-list JSON Lines, `{"text", "entities": [{"start", "end", "type"}, ...]}` (gold relations may be
there too; they are ignored). OUT is a Hub-ready folder that `AutoModelForTokenClassification` and
`pipeline("token-classification", aggregation_strategy="average")` load with `trust_remote_code=True` (by default
the model is TypedBert's token classifier with a zero-initialised word-shape table, the letter case an uncased
tokenizer throws away; with --no-word-shapes a standard one, loaded without custom code); `typed-bert train
--entity-model OUT` (or `typed-bert push --entity-model OUT`) puts it into a relation model's repository, whose
pipeline then extracts from raw text. The best epoch by dev entity micro-F1 is kept and scored on character spans
(boundaries and type must match) in eval_results.json. Works under `torchrun --nproc_per_node N` (DDP; rank 0
writes OUT).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

from typed_bert.command_line import command_parser, local_path, model_path, positive_int, run
from typed_bert.hardware import PRECISIONS

EXAMPLE = (
    "typed-bert train-entities --base-model bert-base-cased --train-file train_entities.jsonl "
    "--validation-file dev_entities.jsonl --output-dir ner"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from typed_bert.entities import EntitySettings

    defaults = {item.name: item.default for item in fields(EntitySettings)}
    parser = command_parser(__doc__, EXAMPLE)
    parser.add_argument("--base-model", required=True, type=model_path, help="BERT-family folder or Hub id")
    parser.add_argument("--train-file", required=True, type=local_path)
    parser.add_argument("--validation-file", required=True, type=local_path)
    parser.add_argument("--output-dir", required=True, type=local_path)
    parser.add_argument("--epochs", type=float, default=defaults["epochs"])
    parser.add_argument("--batch-size", type=positive_int, default=defaults["batch_size"], help="texts per step")
    parser.add_argument("--learning-rate", type=float, default=defaults["learning_rate"])
    parser.add_argument("--warmup-ratio", type=float, default=defaults["warmup_ratio"])
    parser.add_argument("--precision", choices=list(PRECISIONS), default=defaults["precision"])
    parser.add_argument(
        "--word-shapes", action=argparse.BooleanOptionalAction, default=defaults["word_shapes"],
        help="a zero-initialised word-shape (letter case) table in the input embeddings: a TypedBert token classifier "
        "(default; --no-word-shapes: a standard AutoModelForTokenClassification)",
    )  # fmt: skip
    parser.add_argument(
        "--table-learning-rate", type=float, default=defaults["table_learning_rate"], help="for the word-shape table"
    )
    parser.add_argument("--seed", type=int, default=defaults["seed"])
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    parser.add_argument("--max-steps", type=int, default=defaults["max_steps"], help="stop after N steps (smoke runs)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from typed_bert.entities import EntitySettings, train_entities
    from typed_bert.training import is_main_process, leave_process_group

    names = {item.name for item in fields(EntitySettings)}
    settings = EntitySettings(**{name: value for name, value in vars(args).items() if name in names})
    results = train_entities(settings, args.output_dir, overwrite=args.overwrite)
    leave_process_group()
    if is_main_process():
        print(json.dumps(results))
    return results


if __name__ == "__main__":
    run(main)
