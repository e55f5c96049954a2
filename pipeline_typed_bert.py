"""The `relation-classification` pipeline of TypedBert models.

This file is uploaded to the Hugging Face Hub with the model and named in config.json's `custom_pipelines`, so

    pipeline("relation-classification", model="org/typed-bert", trust_remote_code=True)

works in one line. It imports only torch, transformers and `encoding_typed_bert`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Pipeline

try:
    from .encoding_typed_bert import add_typed_entity_markers, encode_relation
except ImportError:  # imported as a top-level module from a checkout, not as part of a package
    from encoding_typed_bert import add_typed_entity_markers, encode_relation


class RelationClassificationPipeline(Pipeline):
    """Classifies the relation between a typed subject span and a typed object span of a text.

    Input: `{"text": str, "subject": {"start", "end", "type"}, "object": {...}}` (character offsets, end exclusive),
    or a list of them. Output per input: `{"label", "score"}`, or with `top_k=k` a list of the k best.
    """

    def _sanitize_parameters(self, top_k: int | None = None, max_length: int | None = None, **kwargs):
        preprocess_params = {} if max_length is None else {"max_length": max_length}
        postprocess_params = {} if top_k is None else {"top_k": top_k}
        return preprocess_params, {}, postprocess_params

    def preprocess(self, inputs: dict[str, Any], max_length: int | None = None) -> dict[str, torch.Tensor]:
        if not isinstance(inputs, dict) or not {"text", "subject", "object"} <= set(inputs):
            raise ValueError(f"Expected a dict with 'text', 'subject' and 'object', got {inputs!r}.")
        text, subject, obj = inputs["text"], inputs["subject"], inputs["object"]
        if getattr(self.model.config, "entity_markers", False):
            text, subject, obj = add_typed_entity_markers(text, subject, obj)
        if max_length is None:
            max_length = min(self.tokenizer.model_max_length, self.model.config.max_position_embeddings)
        features = encode_relation(self.tokenizer, text, subject, obj, self.model.config.entity_types, max_length)
        return {name: torch.tensor([values]) for name, values in features.items()}

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"logits": self.model(**model_inputs).logits}

    def postprocess(self, model_outputs: dict[str, torch.Tensor], top_k: int | None = None):
        probabilities = model_outputs["logits"][0].float().softmax(-1)
        ranked = probabilities.argsort(descending=True).tolist()
        predictions = [
            {"label": self.model.config.id2label[index], "score": float(probabilities[index])}
            for index in ranked[: top_k or 1]
        ]
        return predictions if top_k is not None else predictions[0]
