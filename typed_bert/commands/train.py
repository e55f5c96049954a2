"""Fine-tune TypedBert (or a baseline) for relation extraction with the transformers Trainer.

    python scripts/train.py --base-model PATH --train-file F --validation-file F --output-dir OUT

`--base-model` is a BERT-family checkpoint (converted on the fly, entity types and labels read from the training
data) or a TypedBert checkpoint, whose input mode, pooling, entity types and (when the data's labels are among its
labels) trained head are kept unless the command line says otherwise. Works under `torchrun --nproc_per_node N`
(DDP; gloo on CPU): all ranks share one checkpoint folder and end with the same, best, model (the last with
`--final-fit`, which trains on the dev file too). `--lora-rank R` trains LoRA adapters (plus the entity tables and
the head) and writes the merged model. OUT is a complete Hub-ready folder: safetensors weights, config (id2label,
entity_types, auto_map, custom_pipelines), tokenizer, code files, eval_results.json, training_log.json and a model
card.
"""

from __future__ import annotations

import json
from pathlib import Path

from typed_bert.command_line import parse_settings, run, settings_parser
from typed_bert.outputs import check_complete, check_destination

EXAMPLE = (
    "typed-bert train --base-model typed-bert-base --train-file train.jsonl --validation-file dev.jsonl "
    "--output-dir out"
)


def parse_args(argv: list[str] | None = None):
    """The command line as (`TrainingSettings`, the namespace of `--output-dir` and `--overwrite`); each option is a
    `TrainingSettings` field, declared there once with its help."""
    from typed_bert.training import TrainingSettings

    return parse_settings(settings_parser(__doc__, EXAMPLE, TrainingSettings), argv)


def main(argv: list[str] | None = None) -> dict:
    settings, args = parse_args(argv)
    output_dir = Path(args.output_dir)
    inputs = (settings.train_file, settings.validation_file, settings.base_model, settings.entity_model)
    check_destination(output_dir, args.overwrite, inputs)
    for folder in (settings.base_model, settings.entity_model):
        if folder and Path(folder).is_dir():
            check_complete(folder)
    from typed_bert.training import is_main_process, leave_process_group, train, write_output

    # One checkpoint folder for all DDP ranks, beside OUT (the same file system); removed when training ends.
    result = train(settings, output_dir.parent / f".{output_dir.name}.checkpoints")
    leave_process_group()  # the ranks are done together; writing OUT is rank 0's alone
    if not is_main_process():
        return {}
    results = write_output(result, output_dir, overwrite=args.overwrite)
    print(json.dumps({key: value for key, value in results.items() if not isinstance(value, dict)}))
    return results


if __name__ == "__main__":
    run(main)
