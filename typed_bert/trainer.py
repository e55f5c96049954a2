"""`TypedBertTrainer`: the transformers `Trainer`, with no pickle in its output folder or its Hub pushes."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import upload_folder
from transformers import Trainer, TrainingArguments
from transformers.utils import PushInProgress

# transformers' Trainer writes its TrainingArguments with torch.save (a pickle) beside the model, and its Hub pushes
# upload that file; these are the suffixes of pickles that must never reach a repo.
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt"]
TRAINING_ARGS_PICKLE = "training_args.bin"
TRAINING_ARGS_JSON = "training_args.json"


class TypedBertTrainer(Trainer):
    """`transformers.Trainer` whose saved folders and Hub pushes hold no pickle.

    The training arguments are written as `training_args.json` instead of `training_args.bin`, and
    `push_to_hub=True` uploads the model (safetensors, config, the four code files), the tokenizer, the model card
    and that JSON. `hub_strategy="checkpoint"` / `"all_checkpoints"`, which upload optimizer and RNG state
    pickles, are refused. A plain `Trainer(push_to_hub=True)` works with TypedBert too, but uploads
    `training_args.bin`.
    """

    def __init__(self, model=None, args: TrainingArguments | None = None, *more, **kwargs) -> None:
        if args is not None and args.push_to_hub and args.hub_strategy in ("checkpoint", "all_checkpoints"):
            raise ValueError(
                f"hub_strategy={args.hub_strategy.value!r} uploads optimizer, scheduler and RNG state pickles; "
                "TypedBertTrainer publishes no pickle: use hub_strategy='every_save' or 'end'."
            )
        super().__init__(model, args, *more, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict)
        folder = Path(output_dir or self.args.output_dir)
        if self.args.should_save and (folder / TRAINING_ARGS_PICKLE).is_file():
            (folder / TRAINING_ARGS_PICKLE).unlink()
            (folder / TRAINING_ARGS_JSON).write_text(self.args.to_json_string())

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Upload the model files of a new checkpoint in the background, as `Trainer` does, without the pickles of
        the checkpoint (optimizer, scheduler, RNG state, training arguments)."""
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
