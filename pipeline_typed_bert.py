"""The `relation-classification` pipeline of TypedBert models.

This file is uploaded to the Hugging Face Hub with the model and named in config.json's `custom_pipelines`, so

    pipeline("relation-classification", model="org/typed-bert", trust_remote_code=True)

works in one line. It imports only torch, transformers and the other uploaded files.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from transformers.pipelines.base import ChunkPipeline

try:
    from .configuration_typed_bert import NO_RELATION
    from .encoding_typed_bert import (
        PAIRS_PER_SEQUENCE,
        check_pair,
        encode_all_pairs,
        encode_entity_pairs,
        encode_relation,
    )
except ImportError:  # imported as a top-level module from a checkout, not as part of a package
    from configuration_typed_bert import NO_RELATION
    from encoding_typed_bert import (
        PAIRS_PER_SEQUENCE,
        check_pair,
        encode_all_pairs,
        encode_entity_pairs,
        encode_relation,
    )

# Pairs per forward pass when the caller gives no batch_size: pairs are never run one at a time.
DEFAULT_BATCH_SIZE = 32


class RelationClassificationPipeline(ChunkPipeline):
    """Classifies the relation between typed entity spans of a text.

    Two input forms (character offsets, end exclusive), alone or mixed in a list:

    - one pair, `{"text", "subject": {"start", "end", "type"}, "object": {...}}` → `{"label", "score"}`, or with
      `top_k=k` (or a `threshold`) a list of the k best labels scoring at least `threshold`;
    - a text and its entities, `{"text", "entities": [{"start", "end", "type", ...}, ...]}` → every relation among
      them: a list with one entry per ordered pair of distinct entities, `{"subject": <entity>, "object": <entity>,
      "label", "score"}` (`<entity>` is the input dict, an `"id"` included). Pairs whose best label is `no_relation`
      are left out unless `keep_no_relation=True`; with `top_k=k` each other pair contributes its k best labels
      (`no_relation` among them only with `keep_no_relation`), and no label below `threshold` is reported. A pair
      that cannot be encoded (overlapping entities, or too far apart for `max_length`) is reported as
      `{"subject", "object", "label": None, "score": None, "skipped": <why>}`.

    Pairs are encoded and run `batch_size` sequences at a time (default 32), across inputs. A model with
    `pair_encoding="per_pair"` runs one sequence per pair, and each pair's label and score are those the single-pair
    call gives for it. One with `pair_encoding="all_pairs"` runs one sequence per text holding up to
    `pairs_per_sequence` pairs (default 64): a pair's result does not depend on the others in its sequence, and all
    the text's entities are typed in it, where a single-pair call knows only its two.
    """

    def __init__(self, *args, batch_size: int | None = None, **kwargs) -> None:
        super().__init__(*args, batch_size=batch_size or DEFAULT_BATCH_SIZE, **kwargs)

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        threshold: float | None = None,
        keep_no_relation: bool | None = None,
        max_length: int | None = None,
        pairs_per_sequence: int | None = None,
        **kwargs,
    ):
        preprocess_params = {"max_length": max_length, "pairs_per_sequence": pairs_per_sequence}
        preprocess_params = {name: value for name, value in preprocess_params.items() if value is not None}
        given = {"top_k": top_k, "threshold": threshold, "keep_no_relation": keep_no_relation}
        return preprocess_params, {}, {name: value for name, value in given.items() if value is not None}

    def preprocess(
        self, inputs: dict[str, Any], max_length: int | None = None, pairs_per_sequence: int = PAIRS_PER_SEQUENCE
    ) -> Iterator[dict[str, Any]]:
        """One chunk per sequence: the model inputs `(1, seq)` and which pairs of which input it holds."""
        config = self.model.config
        if max_length is None:
            max_length = min(self.tokenizer.model_max_length, config.max_sequence_length)
        all_pairs = config.pair_encoding == "all_pairs"
        if isinstance(inputs, dict) and {"text", "subject", "object"} <= set(inputs):
            text, subject, obj = inputs["text"], inputs["subject"], inputs["object"]
            if all_pairs:
                check_pair(text, subject, obj, config.entity_types)  # errors name the subject and object
                sequences, skipped = self._all_pairs(text, [subject, obj], max_length, 1, pairs=[(0, 1)])
                if skipped:
                    raise ValueError(skipped[0][2])
                features = sequences[0][1]
            else:
                features = encode_relation(
                    self.tokenizer, text, subject, obj, config.entity_types, max_length, config.entity_markers
                )
            yield self._chunk(features, None, [], [], True)
            return
        if not isinstance(inputs, dict) or not {"text", "entities"} <= set(inputs):
            raise ValueError(
                "Expected a dict with 'text', 'subject' and 'object' (one pair) or with 'text' and 'entities' (all "
                f"relations of a text), got {inputs!r}."
            )
        text, entities = inputs["text"], inputs["entities"]
        if all_pairs:
            sequences, skipped = self._all_pairs(text, entities, max_length, pairs_per_sequence)
        else:
            encoded, skipped = encode_entity_pairs(
                self.tokenizer, text, entities, config.entity_types, max_length, config.entity_markers
            )
            sequences = [([(i, j)], features) for i, j, features in encoded]
        skipped = [(i, j, {"skipped": reason}) for i, j, reason in skipped]
        if not sequences:  # nothing to run; a placeholder chunk carries the input through the batched loop
            yield self._chunk(self._placeholder_features(all_pairs), entities, [], skipped, True, has_pairs=False)
            return
        for index, (pairs, features) in enumerate(sequences):
            yield self._chunk(features, entities, pairs, skipped, index == len(sequences) - 1)

    def _all_pairs(self, text, entities, max_length: int, pairs_per_sequence: int, pairs=None):
        config = self.model.config
        return encode_all_pairs(
            self.tokenizer, text, entities, config.entity_types, max_length, config.position_id_offset,
            pairs_per_sequence, pairs,
        )  # fmt: skip

    def _placeholder_features(self, all_pairs: bool) -> dict[str, list[int]]:
        """The model inputs of an empty text, never run: the fields every chunk has, for batching."""
        encoding = self.tokenizer("", return_token_type_ids=True)
        zeros = [0] * len(encoding["input_ids"])
        extra = {"position_ids": zeros, "pair_ids": zeros} if all_pairs else {}
        return {**encoding, "entity_type_ids": zeros, "entity_role_ids": zeros, **extra}

    @staticmethod
    def _chunk(features, entities, pairs, skipped, is_last, has_pairs: bool = True) -> dict[str, Any]:
        return {
            **{name: torch.tensor([values]) for name, values in features.items()},
            "has_pairs": torch.tensor([has_pairs]),
            "entities": entities,
            "pairs": pairs,
            "skipped": skipped if is_last else [],
            "is_last": is_last,
        }

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        metadata = {name: model_inputs.pop(name) for name in ("entities", "pairs", "skipped", "is_last")}
        has_pairs = model_inputs.pop("has_pairs")
        logits = torch.zeros(len(has_pairs), 1, self.model.config.num_labels, device=has_pairs.device)
        if has_pairs.any():
            batch = {name: tensor[has_pairs] for name, tensor in model_inputs.items()}
            ran = self.model(**batch).logits.float()
            ran = ran if ran.dim() == 3 else ran.unsqueeze(1)  # (sequences, pairs, labels)
            logits = logits.new_zeros(len(has_pairs), *ran.shape[1:])
            logits[has_pairs] = ran
        return {"logits": logits, **metadata}

    def postprocess(
        self,
        model_outputs: list[dict[str, Any]],
        top_k: int | None = None,
        threshold: float | None = None,
        keep_no_relation: bool = False,
    ):
        id2label = self.model.config.id2label
        if model_outputs[0]["entities"] is None:  # one pair
            probabilities = model_outputs[0]["logits"][0, 0].softmax(-1)
            ranked = _ranked(probabilities, id2label, top_k or 1, threshold)
            return ranked if top_k is not None or threshold is not None else ranked[0]
        entities = model_outputs[0]["entities"]
        results = [(i, j, extra) for output in model_outputs for i, j, extra in output["skipped"]]
        for output in model_outputs:
            for index, (i, j) in enumerate(output["pairs"]):
                ranked = _ranked(output["logits"][0, index].softmax(-1), id2label, top_k or 1, None)
                if ranked[0]["label"] == NO_RELATION and not keep_no_relation:
                    continue  # the pair holds no relation
                for prediction in ranked:
                    above = threshold is None or prediction["score"] >= threshold
                    if above and (keep_no_relation or prediction["label"] != NO_RELATION):
                        results.append((i, j, prediction))
        results.sort(key=lambda item: (item[0], item[1]))
        return [
            {"subject": entities[i], "object": entities[j], **({"label": None, "score": None} | extra)}
            for i, j, extra in results
        ]


def _ranked(probabilities: torch.Tensor, id2label: dict[int, str], k: int, threshold: float | None) -> list[dict]:
    """The `k` most probable labels `{"label", "score"}`, best first, without those scoring below `threshold`."""
    scores, indices = probabilities.topk(min(k, len(probabilities)))
    return [
        {"label": id2label[int(index)], "score": float(score)}
        for score, index in zip(scores, indices, strict=True)
        if threshold is None or score >= threshold
    ]
