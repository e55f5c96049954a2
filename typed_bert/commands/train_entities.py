r"""Fine-tune an entity recognizer for end-to-end relation extraction.

    python scripts/train_entities.py --base-model PATH --train-file train_entities.jsonl \
        --validation-file dev_entities.jsonl --output-dir OUT [--head span|tagger] [--no-word-shapes] [--overwrite]

Input: entity-list JSON Lines, `{"text", "entities": [{"start", "end", "type"}, ...]}` (gold relations may be
there too; they are ignored). By default (`--head span`) the model is TypedBert's span classifier, which types every
run of up to 14 words as a whole (15 epochs); `--head tagger` trains a token classifier with BIO tags (8 epochs).
Both carry a zero-initialised word-shape table, the letter case an uncased tokenizer throws away (with
`--no-word-shapes` none; a tagger is then a standard `AutoModelForTokenClassification`, loaded without custom code).
OUT is a Hub-ready folder that `AutoModelForTokenClassification` and `pipeline("token-classification",
trust_remote_code=True)` load; `typed-bert train --entity-model OUT` (or `typed-bert push --entity-model OUT`) puts
it into a relation model's repository, whose pipeline then extracts from raw text. The best epoch by dev entity
micro-F1 is kept (with --final-fit, which trains on the dev file too, the last) and scored on character spans
(boundaries and type must match) in eval_results.json. Works under `torchrun --nproc_per_node N` (DDP; rank 0 writes
OUT).
"""

from __future__ import annotations

import json

from typed_bert.command_line import parse_settings, run, settings_parser

EXAMPLE = (
    "typed-bert train-entities --base-model bert-base-cased --train-file train_entities.jsonl "
    "--validation-file dev_entities.jsonl --output-dir ner"
)


def parse_args(argv: list[str] | None = None):
    """The command line as (`EntitySettings`, the namespace of `--output-dir` and `--overwrite`); each option is an
    `EntitySettings` field, declared there once with its help."""
    from typed_bert.entities import EntitySettings

    return parse_settings(settings_parser(__doc__, EXAMPLE, EntitySettings), argv)


def main(argv: list[str] | None = None) -> dict:
    settings, args = parse_args(argv)
    from typed_bert.entities import train_entities
    from typed_bert.training import is_main_process, leave_process_group

    results = train_entities(settings, args.output_dir, overwrite=args.overwrite)
    leave_process_group()
    if is_main_process():
        print(json.dumps(results))
    return results


if __name__ == "__main__":
    run(main)
