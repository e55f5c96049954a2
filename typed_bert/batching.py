"""TypedBert features → tensor batches, for training and evaluation: `encode_relations` (a batch of pair examples
→ feature rows) and `TypedBertDataCollator` (feature rows → padded tensors). The pipeline batches its own inputs;
neither is needed to load or run a published model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from encoding_typed_bert import MODEL_INPUT_NAMES, PACKED_INPUT_NAMES, UnencodablePairError, encode_relation


def encode_relations(
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Mapping[str, Any]],
    entity_types: Sequence[str],
    max_length: int | None = None,
    entity_markers: bool = False,
) -> dict[str, list[list[int]]]:
    """Encode a batch of `{"text", "subject", "object"}` examples (`encode_relation`); returns the five fields as
    lists of rows. A `ValueError` names the index of the example that failed."""
    batch: dict[str, list[list[int]]] = {name: [] for name in MODEL_INPUT_NAMES}
    for index, example in enumerate(examples):
        try:
            text, subject, obj = example["text"], example["subject"], example["object"]
            features = encode_relation(tokenizer, text, subject, obj, entity_types, max_length, entity_markers)
        except (KeyError, TypeError, ValueError) as error:
            error_class = type(error) if isinstance(error, UnencodablePairError) else ValueError
            raise error_class(f"example {index}: {error}") from error
        for name in MODEL_INPUT_NAMES:
            batch[name].append(features[name])
    return batch


class TypedBertDataCollator:
    """Pads the TypedBert fields of a list of features to the longest row (or a multiple of `pad_to_multiple_of`).

    `input_ids` are padded with the tokenizer's pad id, the other fields with 0. A `labels` (or `label`) field is
    stacked. Returns a dict of tensors `(batch, seq)`, plus `labels` `(batch,)`. Subject-packed features
    (`SubjectPackedPairs`) also get `position_ids` and `marker_groups` `(batch, seq)`, `object_positions`
    `(batch, objects)` padded with 0 (no object) and per-object `labels` `(batch, objects)` padded with -100.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, pad_to_multiple_of: int | None = None) -> None:
        if tokenizer.pad_token_id is None:
            raise ValueError(f"{type(tokenizer).__name__} has no pad token; set tokenizer.pad_token first.")
        self.pad_token_id = tokenizer.pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(feature["input_ids"]) for feature in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {}
        for name in PACKED_INPUT_NAMES[:-1]:
            if name in features[0]:
                pad = self.pad_token_id if name == "input_ids" else 0
                batch[name] = _padded([feature[name] for feature in features], length, pad)
        if "object_positions" in features[0]:
            objects = max(len(feature["object_positions"]) for feature in features)
            batch["object_positions"] = _padded([feature["object_positions"] for feature in features], objects, 0)
        for name in ("labels", "label"):
            if name in features[0]:
                labels = [feature[name] for feature in features]
                if isinstance(labels[0], Sequence):
                    batch["labels"] = _padded(labels, max(len(row) for row in labels), -100)
                else:
                    batch["labels"] = torch.tensor(labels)
                break
        return batch


def _padded(rows: Sequence[Sequence[int]], length: int, pad: int) -> torch.Tensor:
    return torch.tensor([list(row) + [pad] * (length - len(row)) for row in rows], dtype=torch.long)
