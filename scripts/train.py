"""Fine-tune TypedBert (or a baseline) for relation extraction with the transformers Trainer.

    python scripts/train.py --base-model PATH --train-file F --validation-file F --output-dir OUT

`--base-model` is a plain BERT (converted on the fly, entity types and labels read from the training data) or a
TypedBert checkpoint, whose input mode, fusion, pooling, entity types and (when the data's labels are among its
labels) trained head are kept unless the command line says otherwise. Works under `torchrun --nproc_per_node N`
(DDP; gloo on CPU): all ranks share one checkpoint folder and end with the same, best, model. `--lora-rank R` trains
LoRA adapters (plus the entity tables and the head) and writes the merged model. OUT is a complete Hub-ready folder:
safetensors weights, config (id2label, entity_types, auto_map, custom_pipelines), tokenizer, code files,
eval_results.json, training_log.json and a model card.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoTokenizer, TrainingArguments, set_seed
from typed_bert.hub.export import (
    FAMILIES,
    check_base_model,
    load_typed_from_encoder,
    typed_config_from_encoder,
)
from typed_bert.hub.model_card import write_model_card
from typed_bert.scripts.command_line import InputError, command_parser, local_path, model_path, pick_precision, run
from typed_bert.scripts.evaluate import evaluate
from typed_bert.scripts.relation_data import (
    NegativeSubsamplingSampler,
    check_vocabulary,
    encode_all_pairs_dataset,
    encode_dataset,
    entity_type_names,
    label_names,
    load_relations,
)
from typed_bert.scripts.relation_metrics import (
    NO_RELATION,
    plot_training_curve,
    relation_metrics,
    with_no_relation_rows,
)

from configuration_typed_bert import (
    ENTITY_ROLES,
    INPUT_MODES,
    OBJECT_ROLE,
    PAIR_ENCODINGS,
    SUBJECT_ROLE,
    TypedBertConfig,
)
from encoding_typed_bert import TypedBertDataCollator
from modeling_typed_bert import TypedBertForSequenceClassification
from typed_bert.trainer import TypedBertTrainer

EXAMPLE = (
    "typed-bert train --base-model typed-bert-base --train-file train.jsonl --validation-file dev.jsonl "
    "--output-dir out"
)
ENTITY_TABLES = ["entity_type_embeddings", "entity_role_embeddings"]
ENTITY_INITS = ("zero", "names")
# A name-initialised entity row is this fraction of its name's mean word vector: a type row and a role row together
# are about one word vector on an entity token.
NAME_INIT_SCALE = 0.5
DEFAULT_INPUT_MODE = "typed-embeddings"
DEFAULT_EPOCHS = 4.0
# all_pairs: the per_pair default run, then this many epochs in the all_pairs layout (README, "All pairs in one pass").
ALL_PAIRS_EPOCHS = 3.0
# Sequences per training step: pairs, or texts with all their pairs (13 on average in CoNLL04).
DEFAULT_BATCH_SIZES = {"per_pair": 32, "all_pairs": 8}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = command_parser(__doc__, EXAMPLE)
    parser.add_argument(
        "--base-model", required=True, type=model_path, help="BERT or TypedBert checkpoint folder or Hub id"
    )
    parser.add_argument("--train-file", required=True, type=local_path)
    parser.add_argument("--validation-file", required=True, type=local_path)
    parser.add_argument("--output-dir", required=True, type=local_path)
    checkpoints = "default: a TypedBert --base-model's own setting, else"
    parser.add_argument("--input-mode", choices=list(INPUT_MODES), help=f"{checkpoints} {DEFAULT_INPUT_MODE}")
    parser.add_argument("--entity-fusion", choices=["sum", "mean"], help=f"{checkpoints} sum")
    parser.add_argument(
        "--pair-encoding",
        choices=list(PAIR_ENCODINGS),
        help=f"{checkpoints} per_pair; all_pairs: one sequence per text with every pair (see TypedBertConfig)",
    )
    parser.add_argument("--pooling", choices=["cls", "entity_start"], help=f"{checkpoints} by input mode")
    parser.add_argument("--lora-rank", type=int, default=0, help="train LoRA adapters of rank R (0: full fine-tuning)")
    parser.add_argument("--lora-alpha", type=float, default=None, help="LoRA scaling numerator (default: 2 x rank)")
    parser.add_argument(
        "--epochs",
        type=float,
        default=None,
        help=f"default {DEFAULT_EPOCHS}; {ALL_PAIRS_EPOCHS} for the all_pairs epochs that follow --per-pair-epochs",
    )
    parser.add_argument(
        "--per-pair-epochs",
        type=float,
        default=None,
        help=f"all_pairs only: first train the same model this many epochs one pair per sequence (default "
        f"{DEFAULT_EPOCHS}, the per_pair default run), then --epochs in the all_pairs layout; 0: all_pairs only",
    )
    parser.add_argument(
        "--all-pairs-learning-rate",
        type=float,
        default=5e-5,
        help="rate of the all_pairs epochs that follow --per-pair-epochs",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"sequences per step; default {DEFAULT_BATCH_SIZES['per_pair']} pairs (per_pair) or "
        f"{DEFAULT_BATCH_SIZES['all_pairs']} texts (all_pairs)",
    )
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--entity-learning-rate", type=float, default=1e-3, help="for the two entity tables")
    parser.add_argument(
        "--entity-init",
        choices=list(ENTITY_INITS),
        default="zero",
        help="how entity tables that are still zero (a converted BERT) start training: zero, or names (each type's "
        "row from the word vectors of its name, the role rows from 'subject' and 'object'; see init_from_names)",
    )
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument(
        "--negative-ratio", type=float, default=3.0, help="no_relation per related example per epoch; -1 = all"
    )
    parser.add_argument(
        "--negative-weight",
        default="auto",
        help="loss weight of no_relation examples; auto = (no_relation per related example in the data) / "
        "--negative-ratio, which undoes the prior shift of subsampling (importance weighting)",
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="auto: bf16 autocast on CUDA GPUs and on CPUs with bf16 units (AVX512-BF16, AMX), else fp32; the model "
        "is saved in fp32 either way",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (smoke tests)")
    parser.add_argument("--eval-batch-size", type=int, default=128)
    parser.add_argument("--base-model-id", default=None, help="Hub id of a local --base-model, for the model card")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.add_argument("--language", nargs="+", default=None, help="language code(s) of the data, for the model card")
    parser.add_argument(
        "--strict", action="store_true", help="refuse pairs whose subject and object overlap instead of skipping them"
    )
    return parser.parse_args(argv)


def typed_fields(args: argparse.Namespace, checkpoint: TypedBertConfig | None) -> dict:
    """The TypedBert settings of the run: the command line's where given, else the checkpoint's, else the defaults
    (`plain` pools the [CLS] vector, every other mode the entity start tokens)."""
    if args.input_mode is None:
        args.input_mode = DEFAULT_INPUT_MODE if checkpoint is None else checkpoint.input_mode
    default_pooling = "cls" if args.input_mode == "plain" else "entity_start"
    same_mode = checkpoint is not None and checkpoint.input_mode == args.input_mode
    return dict(
        entity_fusion=args.entity_fusion or (checkpoint.entity_fusion if checkpoint is not None else "sum"),
        classifier_pooling=args.pooling or (checkpoint.classifier_pooling if same_mode else default_pooling),
        input_mode=args.input_mode,
        pair_encoding=args.pair_encoding or (checkpoint.pair_encoding if same_mode else "per_pair"),
    )


def build_model(args: argparse.Namespace, entity_types: list[str], labels: list[str]):
    """A TypedBertForSequenceClassification for the data: from a plain BERT (converted) or a TypedBert checkpoint.

    A TypedBert checkpoint keeps its settings (see `typed_fields`) and its label order and trained head when the
    data's labels are among its labels; otherwise the head starts afresh.
    """
    config = AutoConfig.from_pretrained(args.base_model, trust_remote_code=True)
    model_type = config.model_type
    if model_type in FAMILIES:
        check_base_model(args.base_model, labels)
        config = typed_config_from_encoder(args.base_model, entity_types, labels, **typed_fields(args, None))
        model, _ = load_typed_from_encoder(TypedBertForSequenceClassification, args.base_model, config)
        return model.train()
    if model_type != "typed_bert":
        check_base_model(args.base_model)  # says why this architecture does not convert
    unknown = sorted(set(entity_types) - set(config.entity_types))
    if unknown:
        raise ValueError(f"entity types {unknown} of the data are not in the checkpoint's {config.entity_types}.")
    checkpoint = TypedBertConfig.from_dict(config.to_dict())
    fields = typed_fields(args, checkpoint)
    known_labels = [config.id2label[i] for i in range(config.num_labels)]
    keeps_head = set(labels) <= set(known_labels) and all(
        fields[key] == getattr(checkpoint, key) for key in ("classifier_pooling", "entity_fusion")
    )
    if not keeps_head:
        fields.update(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    config = TypedBertConfig.from_dict({**checkpoint.to_dict(), **fields})
    return TypedBertForSequenceClassification.from_pretrained(
        args.base_model, config=config, ignore_mismatched_sizes=not keeps_head
    )


def readable_name(name: str) -> str:
    """The words of an entity type or role name: `OtherScientificTerm` → `other scientific term`, `per_org` → `per
    org`, `LOC` → `loc`."""
    return " ".join(re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("_", " ").replace("-", " ").split()).lower()


@torch.no_grad()
def init_from_names(model, tokenizer, scale: float = NAME_INIT_SCALE) -> list[str]:
    """Start each entity table row from the meaning of its name: `scale` × the mean word vector of the name's word
    pieces (`readable_name`), for the types of `config.entity_types` and the roles `subject` and `object`. Only
    tables that are still all zero (a converted BERT) are set, so continuing from a trained TypedBert changes
    nothing; row 0 (no entity, no role) stays zero. Returns the names of the tables it set."""
    embeddings = model.get_input_embeddings().weight
    rows = {
        "entity_type_embeddings": model.config.entity_types[1:],
        "entity_role_embeddings": [ENTITY_ROLES[SUBJECT_ROLE], ENTITY_ROLES[OBJECT_ROLE]],
    }
    set_tables = []
    for name, names in rows.items():
        table = getattr(model.base_model.embeddings, name, None)
        if table is None or torch.count_nonzero(table.weight):
            continue
        for row, words in enumerate(names, start=1):
            ids = tokenizer(readable_name(words), add_special_tokens=False)["input_ids"]
            table.weight[row] = scale * embeddings[ids].mean(dim=0)
        set_tables.append(name)
    return set_tables


def encoded_splits(args, config, tokenizer, train_raw, validation_raw, max_length: int):
    """The training and dev sets in the model's pair encoding, the labels of the dev pairs that cannot be encoded
    (scored as predicted no_relation) and how many pairs of each split were left out.

    Pairs whose subject and object overlap (nested mentions) cannot be encoded: training skips them, the dev score
    keeps them as predicted no_relation (--strict refuses them while encoding).
    """
    if config.pair_encoding == "all_pairs":
        sets, left_out = [], []
        for raw, path in ((train_raw, args.train_file), (validation_raw, args.validation_file)):
            encoded, unencodable = encode_all_pairs_dataset(
                raw, tokenizer, config.entity_types, config.label2id, max_length, config.position_id_offset, path,
                args.strict
            )  # fmt: skip
            sets.append(encoded)
            left_out.append(unencodable)
        unencoded_dev_labels = [config.label2id[validation_raw[row]["label"]] for row in left_out[1]]
        return *sets, unencoded_dev_labels, {"train": len(left_out[0]), "validation": len(left_out[1])}
    train_set, validation_set = (
        encode_dataset(
            raw,
            tokenizer,
            config.entity_types,
            config.label2id,
            max_length,
            config.entity_markers,
            path=path,
            strict=args.strict,
        )
        for raw, path in ((train_raw, args.train_file), (validation_raw, args.validation_file))
    )
    unencoded_dev_labels = [row["labels"] for row in validation_set if not row["encodable"]]
    skipped = {"train": train_set["encodable"].count(False), "validation": len(unencoded_dev_labels)}
    train_set, validation_set = (split.filter(lambda row: row["encodable"]) for split in (train_set, validation_set))
    return train_set, validation_set, unencoded_dev_labels, skipped


def with_lora(model, args: argparse.Namespace):
    """Wrap `model` with LoRA adapters on the attention projections (PEFT), training the entity tables and the head
    in full: the recipe of the README's LoRA section."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        task_type="SEQ_CLS",
        r=args.lora_rank,
        lora_alpha=args.lora_alpha or 2 * args.lora_rank,
        target_modules=["query", "key", "value"],
        modules_to_save=[name for name in ENTITY_TABLES if getattr(model.bert.embeddings, name, None) is not None]
        or None,
    )
    return get_peft_model(model, lora)


class RelationTrainer(TypedBertTrainer):
    """Trainer with per-epoch `no_relation` subsampling and length-bucketed batches, and a larger rate for the
    entity tables (they start at zero and are the only new part of the encoder)."""

    def __init__(
        self,
        *args,
        negative_ratio: float,
        no_relation_id: int | None,
        negative_weight: float,
        entity_learning_rate: float,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.negative_ratio = negative_ratio
        self.no_relation_id = no_relation_id
        self.entity_learning_rate = entity_learning_rate
        self.class_weights = None
        if no_relation_id is not None and negative_weight != 1.0:
            self.class_weights = torch.ones(self.model.config.num_labels)
            self.class_weights[no_relation_id] = negative_weight

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Cross-entropy with `no_relation` weighted by `negative_weight`; the model's own loss when it is 1."""
        if self.class_weights is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        weights = self.class_weights.to(outputs.logits.device)
        logits = outputs.logits.float()  # (batch, labels), or (sequences, pairs, labels) for all-pairs sequences
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), weight=weights
        )
        return (loss, outputs) if return_outputs else loss

    def _get_train_sampler(self, *args, **kwargs):
        dataset = self.train_dataset
        return NegativeSubsamplingSampler(
            labels=dataset["labels"],
            lengths=[len(ids) for ids in dataset["input_ids"]],
            batch_size=self.args.per_device_train_batch_size,  # each DDP process takes whole batches in turn
            negative_ratio=self.negative_ratio,
            no_relation_id=self.no_relation_id,
            seed=self.args.seed,
        )

    def create_optimizer(self, *args, **kwargs):
        if self.optimizer is None:
            entity, decay, no_decay = [], [], []
            for name, parameter in self.model.named_parameters():
                if not parameter.requires_grad:
                    continue
                if any(table in name for table in ENTITY_TABLES):
                    entity.append(parameter)
                elif name.endswith("bias") or "LayerNorm" in name:
                    no_decay.append(parameter)
                else:
                    decay.append(parameter)
            groups = [
                {"params": decay, "weight_decay": self.args.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
                {"params": entity, "weight_decay": 0.0, "lr": self.entity_learning_rate},
            ]
            self.optimizer = torch.optim.AdamW(
                [group for group in groups if group["params"]], lr=self.args.learning_rate
            )
        return self.optimizer


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not args.overwrite:
        raise InputError("exists and is not empty; pass --overwrite or choose another --output-dir", output_dir)
    if args.per_pair_epochs is None:
        args.per_pair_epochs = DEFAULT_EPOCHS if args.pair_encoding == "all_pairs" else 0.0
    elif args.per_pair_epochs != 0 and args.pair_encoding != "all_pairs":
        raise InputError(
            f"{args.per_pair_epochs}: --per-pair-epochs needs --pair-encoding all_pairs", "--per-pair-epochs"
        )
    if args.epochs is None:
        args.epochs = ALL_PAIRS_EPOCHS if args.per_pair_epochs > 0 else DEFAULT_EPOCHS
    if args.epochs <= 0 or args.per_pair_epochs < 0:
        raise InputError(f"{args.epochs}, {args.per_pair_epochs}: expected > 0, >= 0", "--epochs, --per-pair-epochs")
    if args.pair_encoding == "all_pairs" and (args.input_mode or args.pooling):  # refused now, not after phase 1
        TypedBertConfig(
            input_mode=args.input_mode or DEFAULT_INPUT_MODE,
            classifier_pooling=args.pooling or "entity_start",
            pair_encoding="all_pairs",
        )
    if args.per_pair_epochs == 0:
        return train(args)
    return train_per_pair_then_all_pairs(args)


def train_per_pair_then_all_pairs(args: argparse.Namespace) -> dict:
    """The all_pairs recipe: `--per-pair-epochs` one pair per sequence, then `--epochs` in the all_pairs layout,
    continuing from the best per-pair checkpoint (same model class, same weights, head kept) at
    `--all-pairs-learning-rate`. Trained in the all_pairs layout alone, the model learns more slowly (README, "All
    pairs in one pass"). OUT reports both phases: time, steps and the training log."""
    output_dir = Path(args.output_dir)
    first_dir = output_dir.parent / f".{output_dir.name}.per-pair"
    first = argparse.Namespace(**vars(args))
    first.output_dir, first.overwrite = str(first_dir), True
    first.pair_encoding, first.epochs = "per_pair", args.per_pair_epochs
    started = time.perf_counter()
    train(first)
    log = json.loads((first_dir / "training_log.json").read_text())
    steps = json.loads((first_dir / "eval_results.json").read_text())["train_steps"]
    second = argparse.Namespace(**vars(args))
    second.base_model, second.base_model_id = str(first_dir), args.base_model_id or args.base_model
    second.learning_rate = args.all_pairs_learning_rate
    earlier = {"log": log, "steps": steps, "seconds": time.perf_counter() - started, "args": vars(args)}
    metrics = train(second, earlier)
    if int(os.environ.get("RANK", "0")) == 0:
        shutil.rmtree(first_dir, ignore_errors=True)
    return metrics


def train(args: argparse.Namespace, earlier: dict | None = None) -> dict:
    """One fine-tuning run of `args` into `args.output_dir`; `earlier` (log, steps, seconds, the command line's args)
    is a first phase of the same run that OUT's eval_results.json and training_log.json also report."""
    started = time.perf_counter()
    earlier = earlier or {"log": [], "steps": 0, "seconds": 0.0, "args": vars(args)}
    output_dir = Path(args.output_dir)
    set_seed(args.seed)

    train_raw = load_relations(args.train_file)
    validation_raw = load_relations(args.validation_file)
    labels = label_names(train_raw)
    entity_types = entity_type_names(train_raw)
    # Checked before the model loads: every dev type and label must be known from the training file.
    check_vocabulary(validation_raw, args.validation_file, entity_types, labels, f"the training file {args.train_file}")
    model = build_model(args, entity_types, labels)
    config = model.config
    args.batch_size = args.batch_size or DEFAULT_BATCH_SIZES[config.pair_encoding]
    tokenizer = AutoTokenizer.from_pretrained(args.base_model, trust_remote_code=True)
    if args.entity_init == "names":
        initialised = init_from_names(model, tokenizer)
        print(f"entity tables started from their names: {initialised or 'none (already trained)'}", flush=True)
    if args.lora_rank > 0:
        model = with_lora(model, args)
    max_length = min(args.max_length, config.max_sequence_length)

    train_set, validation_set, unencoded_dev_labels, skipped = encoded_splits(
        args, config, tokenizer, train_raw, validation_raw, max_length
    )
    if any(skipped.values()):
        print(
            f"{skipped['train']} training pairs skipped and {skipped['validation']} dev pairs scored as no_relation: "
            "their subject and object overlap (nested mentions) or, for all_pairs, no --max-length window holds "
            "both; --strict makes them errors",
            flush=True,
        )
    # Evaluation order does not change the metrics; sorted by length, its batches need almost no padding.
    validation_set = validation_set.select(np.argsort([len(ids) for ids in validation_set["input_ids"]], kind="stable"))
    label_list = [config.id2label[i] for i in range(config.num_labels)]

    def compute_metrics(prediction) -> dict:
        """The per-epoch dev scores (model selection); the final ones are `evaluate`'s, of the saved folder."""
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        gold = prediction.label_ids
        if logits.ndim == 3:  # all-pairs sequences: (sequences, pairs, labels), absent pairs labelled -100
            logits, gold = logits[gold != -100], gold[gold != -100]
        probabilities = torch.tensor(logits).float().softmax(-1).numpy()
        gold, probabilities = with_no_relation_rows(
            gold, probabilities, unencoded_dev_labels, config.label2id.get(NO_RELATION)
        )
        metrics = relation_metrics(gold, probabilities, label_list)
        return {key: value for key, value in metrics.items() if isinstance(value, float)}

    no_relation_id = config.label2id.get(NO_RELATION)
    # All-pairs sequences hold every pair of their text: nothing to subsample, so no prior shift to undo either.
    subsamples = no_relation_id is not None and config.pair_encoding == "per_pair"
    negative_ratio = args.negative_ratio if subsamples else -1
    num_related = sum(label != no_relation_id for label in train_set["labels"])
    if args.negative_weight == "auto":
        # Sampled ratio / available ratio: 1 when every no_relation example is used anyway.
        available_ratio = (len(train_set) - num_related) / max(1, num_related)
        negative_weight = max(1.0, available_ratio / negative_ratio) if negative_ratio > 0 else 1.0
    else:
        negative_weight = float(args.negative_weight)
    per_epoch = len(train_set) if negative_ratio < 0 else min(len(train_set), round(num_related * (1 + negative_ratio)))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    steps_per_epoch = math.ceil(per_epoch / (args.batch_size * world_size))
    total_steps = args.max_steps if args.max_steps > 0 else math.ceil(steps_per_epoch * args.epochs)
    # One checkpoint folder for all DDP ranks (beside OUT, so on the same file system), so that every rank loads the
    # same best checkpoint at the end; removed when training ends.
    work_dir = output_dir.parent / f".{output_dir.name}.checkpoints"
    if int(os.environ.get("RANK", "0")) == 0:
        shutil.rmtree(work_dir, ignore_errors=True)
    precision = pick_precision(args.precision, "cuda" if torch.cuda.is_available() else "cpu")
    training_args = TrainingArguments(
        output_dir=str(work_dir),
        bf16=precision == "bf16",
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=int(args.warmup_ratio * total_steps),  # an int: transformers 4.x has no float warmup_steps
        weight_decay=args.weight_decay,
        lr_scheduler_type="linear",
        eval_strategy="epoch" if args.max_steps < 0 else "steps",
        eval_steps=None if args.max_steps < 0 else args.max_steps,
        save_strategy="epoch" if args.max_steps < 0 else "steps",
        save_steps=None if args.max_steps < 0 else args.max_steps,
        save_only_model=True,
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="micro_f1",
        greater_is_better=True,
        logging_steps=20,
        seed=args.seed,
        data_seed=args.seed,
        report_to="none",
        dataloader_num_workers=0,
        remove_unused_columns=True,
        use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=False,  # every trainable parameter gets a gradient, whatever the pooling
    )
    trainer = RelationTrainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=validation_set,
        data_collator=TypedBertDataCollator(tokenizer),
        compute_metrics=compute_metrics,
        negative_ratio=negative_ratio,
        no_relation_id=no_relation_id,
        negative_weight=negative_weight,
        entity_learning_rate=args.entity_learning_rate,
    )
    train_result = trainer.train()
    if args.lora_rank > 0:  # every rank merges the same best adapter
        trainer.model = trainer.model_wrapped = trainer.model.merge_and_unload()
    trainer.accelerator.wait_for_everyone()  # every rank has loaded the best checkpoint before it is removed
    metrics = {}
    if trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        if args.overwrite:
            for child in output_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        trainer.model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        shutil.rmtree(work_dir, ignore_errors=True)
        # The saved folder, scored as `typed-bert evaluate` scores it (same batches, same precision).
        metrics = evaluate(
            str(output_dir), args.validation_file, args.eval_batch_size, dtype=precision, quiet=True, strict=args.strict
        )
        results = {
            "validation_file": str(args.validation_file),
            **metrics,
            "train_runtime_s": round(earlier["seconds"] + time.perf_counter() - started, 1),
            "train_steps": earlier["steps"] + train_result.global_step,
            "world_size": training_args.world_size,
            "precision": precision,
            "input_mode": args.input_mode,
            "entity_init": args.entity_init,
            "pair_encoding": config.pair_encoding,
            "negative_weight": round(negative_weight, 4),
            "skipped_overlapping_pairs": skipped,
            "args": earlier["args"],
        }
        log = training_log(earlier["log"], trainer.state.log_history, config.pair_encoding)
        (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
        (output_dir / "training_log.json").write_text(json.dumps(log, indent=2) + "\n")
        curve = plot_training_curve(
            log,
            output_dir / "training_curve.png",
            f"{output_dir.name}: trained on {Path(args.train_file).name}, scored on {Path(args.validation_file).name}",
        )
        write_model_card(
            output_dir,
            base_model=args.base_model_id or args.base_model,
            train_file=args.train_file,
            training_curve=curve.name,
            language=args.language,
        )
        print(json.dumps({k: v for k, v in results.items() if not isinstance(v, dict)}))
    trainer.accelerator.wait_for_everyone()  # OUT is written before any rank goes on (a second phase reads it)
    return metrics


def training_log(earlier: list[dict], log: list[dict], pair_encoding: str) -> list[dict]:
    """The Trainer's log of this run after an `earlier` phase's: each entry says its `pair_encoding`, epochs and
    steps count on from the earlier phase's last."""
    if not earlier:
        return log
    epochs = max((entry.get("epoch", 0) for entry in earlier), default=0)
    steps = max((entry.get("step", 0) for entry in earlier), default=0)
    first = [{**entry, "pair_encoding": entry.get("pair_encoding", "per_pair")} for entry in earlier]
    later = [
        {
            **entry,
            "epoch": entry.get("epoch", 0) + epochs,
            "step": entry.get("step", 0) + steps,
            "pair_encoding": pair_encoding,
        }
        for entry in log
    ]
    return first + later


if __name__ == "__main__":
    run(main)
