"""The transformers `Trainer` for TypedBert: `TypedBertTrainer` (no pickle in its output folder or its Hub pushes)
and `RelationTrainer` (what `typed-bert train` runs: `no_relation` subsampling, length buckets, a rate of its own for
the entity tables)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import upload_folder
from torch.utils.data import Sampler
from transformers import Trainer, TrainingArguments, get_linear_schedule_with_warmup
from transformers.utils import PushInProgress

from typed_bert.hub.export import PICKLE_SUFFIXES

# transformers' Trainer writes its TrainingArguments with torch.save (a pickle) beside the model, and its Hub pushes
# upload that file; no pickle may reach a repo.
PICKLE_PATTERNS = [f"*{suffix}" for suffix in PICKLE_SUFFIXES]
# The tables TypedBert adds: they start at zero (or from their names) and train at a rate of their own.
ENTITY_TABLES = ("entity_type_embeddings", "entity_role_embeddings", "word_shape_embeddings")
TRAINING_ARGS_PICKLE = "training_args.bin"
TRAINING_ARGS_JSON = "training_args.json"


def kept_state_arguments(max_steps: int, metric: str, final_fit: bool) -> dict[str, Any]:
    """`TrainingArguments` of what a run keeps: its best state, from an evaluation and a weights-only checkpoint per
    epoch (or once, after `max_steps` > 0), the best by dev `metric` loaded at the end; or for a `final_fit` (training
    on the dev file too, for epochs chosen on dev before) its last, with no evaluation or checkpoint."""
    if final_fit:
        return {"max_steps": max_steps, "eval_strategy": "no", "save_strategy": "no"}
    by_epoch = max_steps < 0
    return {"max_steps": max_steps, "eval_strategy": "epoch" if by_epoch else "steps",
            "eval_steps": None if by_epoch else max_steps, "save_strategy": "epoch" if by_epoch else "steps",
            "save_steps": None if by_epoch else max_steps, "save_only_model": True, "save_total_limit": 1,
            "load_best_model_at_end": True, "metric_for_best_model": metric, "greater_is_better": True}  # fmt: skip


class TypedBertTrainer(Trainer):
    """`transformers.Trainer` whose saved folders and Hub pushes hold no pickle.

    The training arguments are written as `training_args.json` instead of `training_args.bin`, and
    `push_to_hub=True` uploads the model (safetensors, config, the four code files), the tokenizer, the model card
    and that JSON. `hub_strategy="checkpoint"` / `"all_checkpoints"`, which upload optimizer and RNG state
    pickles, are refused. A plain `Trainer(push_to_hub=True)` works with TypedBert too, but uploads
    `training_args.bin`. `table_learning_rate`, when given, is the rate of TypedBert's own tables (`ENTITY_TABLES`,
    no weight decay), `head_learning_rate` that of the layers outside the encoder (a span classifier's head); the
    other parameters train at `args.learning_rate`.
    """

    def __init__(
        self,
        model=None,
        args: TrainingArguments | None = None,
        *more,
        table_learning_rate: float | None = None,
        head_learning_rate: float | None = None,
        **kwargs,
    ) -> None:
        self.table_learning_rate = table_learning_rate
        self.head_learning_rate = head_learning_rate
        if args is not None and args.push_to_hub and args.hub_strategy in ("checkpoint", "all_checkpoints"):
            raise ValueError(
                f"hub_strategy={args.hub_strategy.value!r} uploads optimizer, scheduler and RNG state pickles; "
                "TypedBertTrainer publishes no pickle: use hub_strategy='every_save' or 'end'."
            )
        super().__init__(model, args, *more, **kwargs)

    def create_optimizer(self, *args, **kwargs):
        """AdamW with weight decay except on biases and LayerNorms, TypedBert's tables at `table_learning_rate` (no
        decay) and, with `head_learning_rate`, every parameter outside the encoder at that rate (with decay);
        transformers' own optimizer when both are None."""
        if self.table_learning_rate is None and self.head_learning_rate is None:
            return super().create_optimizer(*args, **kwargs)
        if self.optimizer is None:
            entity, head, decay, no_decay = [], [], [], []
            encoder = f"{self.model.base_model_prefix}."
            for name, parameter in self.model.named_parameters():
                if not parameter.requires_grad:
                    continue
                if self.table_learning_rate is not None and any(table in name for table in ENTITY_TABLES):
                    entity.append(parameter)
                elif self.head_learning_rate is not None and not name.startswith(encoder):
                    head.append(parameter)
                elif name.endswith("bias") or "LayerNorm" in name:
                    no_decay.append(parameter)
                else:
                    decay.append(parameter)
            groups = [
                {"params": decay, "weight_decay": self.args.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
                {"params": entity, "weight_decay": 0.0, "lr": self.table_learning_rate},
                {"params": head, "weight_decay": self.args.weight_decay, "lr": self.head_learning_rate},
            ]
            self.optimizer = torch.optim.AdamW(
                [group for group in groups if group["params"]], lr=self.args.learning_rate
            )
        return self.optimizer

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """`Trainer.save_model` (which also writes every checkpoint), with the training arguments as JSON."""
        super().save_model(output_dir, _internal_call)
        folder = Path(output_dir or self.args.output_dir)
        if self.args.should_save and (folder / TRAINING_ARGS_PICKLE).is_file():
            (folder / TRAINING_ARGS_PICKLE).unlink()
            (folder / TRAINING_ARGS_JSON).write_text(self.args.to_json_string())

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Upload the model files of a new checkpoint in the background, as `Trainer` does, without the pickles of
        the checkpoint (optimizer, scheduler, RNG state, training arguments). Transformers has no public hook for
        this push, and its own writes `training_args.bin` into the upload."""
        if not self.is_world_process_zero() or self.args.hub_strategy == "end":
            return
        if not self.args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done():
            return
        self.push_in_progress = PushInProgress(
            [
                upload_folder(
                    repo_id=self.hub_model_id,
                    folder_path=checkpoint_folder,
                    commit_message=f"Training in progress, step {self.state.global_step}",
                    token=self.args.hub_token,
                    run_as_future=True,
                    ignore_patterns=["_*", "trainer_state.json", *PICKLE_PATTERNS],
                    revision=getattr(self.args, "hub_revision", None),
                )
            ]
        )


class NegativeSubsamplingSampler(Sampler[int]):
    """Each epoch: every related sequence (one with a label other than `no_relation`; `labels` holds the label ids of
    each sequence's pairs) plus a fresh random draw of `ratio` × as many `no_relation` ones, grouped
    into length buckets (runs of similar length, for dynamic padding) in random order. Deterministic given the seed
    and the epoch, so every DDP process draws the same order.
    """

    def __init__(
        self,
        labels: Sequence[Sequence[int]],
        lengths: Sequence[int],
        batch_size: int,
        negative_ratio: float,
        no_relation_id: int | None,
        seed: int,
    ) -> None:
        related = [any(label != no_relation_id for label in row) for row in labels]
        self.positives = [i for i, is_related in enumerate(related) if is_related]
        self.negatives = [i for i, is_related in enumerate(related) if not is_related]
        wanted = math.ceil(negative_ratio * len(self.positives)) if negative_ratio >= 0 else len(self.negatives)
        self.num_negatives = min(len(self.negatives), wanted)
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.positives) + self.num_negatives

    def __iter__(self) -> Iterator[int]:
        generator = random.Random(self.seed * 1000 + self.epoch)
        chosen = self.positives + generator.sample(self.negatives, self.num_negatives)
        generator.shuffle(chosen)
        bucket = self.batch_size * 50
        batches = []
        for begin in range(0, len(chosen), bucket):
            run = sorted(chosen[begin : begin + bucket], key=lambda i: self.lengths[i], reverse=True)
            batches += [run[i : i + self.batch_size] for i in range(0, len(run), self.batch_size)]
        # Only the last run can end in a short batch; keep it last so the DataLoader's batches match the buckets.
        full = [batch for batch in batches if len(batch) == self.batch_size]
        generator.shuffle(full)
        batches = full + [batch for batch in batches if len(batch) < self.batch_size]
        self.epoch += 1
        return iter([index for batch in batches for index in batch])


class RelationTrainer(TypedBertTrainer):
    """`TypedBertTrainer` for relation classification: each epoch every related sequence and a fresh draw of
    `negative_ratio` × as many `no_relation` ones (`NegativeSubsamplingSampler`, -1: all of them), in
    length-bucketed batches; `no_relation` weighted in the loss by `negative_weight` (`"auto"`: the ratio of
    `no_relation` pairs in the data to those drawn, which undoes the prior shift of the subsampling); the entity tables
    at `entity_learning_rate` (they start at zero or from their names, the only new part of the encoder). The epoch
    length comes from the sampler, the steps from the Trainer's count of its batches, and the linear warm-up is
    `warmup_ratio` of those steps (rounded up), on every transformers version."""

    def __init__(
        self,
        *args,
        no_relation_id: int | None,
        negative_ratio: float = 3.0,
        negative_weight: float | str = "auto",
        entity_learning_rate: float = 1e-3,
        warmup_ratio: float = 0.0,
        **kwargs,
    ):
        super().__init__(*args, table_learning_rate=entity_learning_rate, **kwargs)
        self.warmup_ratio = warmup_ratio
        self.no_relation_id = no_relation_id
        self.negative_ratio = negative_ratio if no_relation_id is not None else -1
        if negative_weight == "auto":
            labels = [label for row in self.train_dataset["labels"] for label in row]
            related = sum(label != no_relation_id for label in labels)
            available_ratio = (len(labels) - related) / max(1, related)
            negative_weight = max(1.0, available_ratio / self.negative_ratio) if self.negative_ratio > 0 else 1.0
        self.negative_weight = float(negative_weight)
        self.class_weights = None
        if no_relation_id is not None and self.negative_weight != 1.0:
            self.class_weights = torch.ones(self.model.config.num_labels)
            self.class_weights[no_relation_id] = self.negative_weight

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """Linear decay after a linear warm-up of `warmup_ratio` × `num_training_steps` steps."""
        if self.lr_scheduler is None:
            warmup = math.ceil(self.warmup_ratio * num_training_steps)
            self.lr_scheduler = get_linear_schedule_with_warmup(optimizer or self.optimizer, warmup, num_training_steps)
        return self.lr_scheduler

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Cross-entropy with `no_relation` weighted by `negative_weight`; the model's own loss when it is 1."""
        if self.class_weights is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        weights = self.class_weights.to(outputs.logits.device)
        logits = outputs.logits.float().reshape(-1, outputs.logits.shape[-1])  # a row per pair
        loss = torch.nn.functional.cross_entropy(logits, labels.reshape(-1), weight=weights)
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
