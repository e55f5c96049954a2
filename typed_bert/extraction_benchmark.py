"""The text-in figures of `typed-bert benchmark --extraction MODEL FILE`: texts/s and relations/s of the text-only
call (the bundled entity model, then every ordered pair of the entities it finds) at a batch size, and how near it
comes to what its encoders allow.

The encoders' roof: a plain BERT encoder of each model's size, at the same batch size and precision, encodes some
tokens/s on full batches of that model's mean sequence length; the call needs the real (unpadded) tokens its two
models read, so it can reach at most `texts / sum(tokens / tokens_per_s)` texts/s. What the call loses to that roof
is padding and the Python around the models; the share of its time inside the models' forwards says which.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import BertConfig, BertModel

# The least time one roof measurement runs, in seconds; the calls each figure is the median of.
ROOF_SECONDS = 1.0
REPEATS = 3
ENCODER_DIMENSIONS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                      "max_position_embeddings", "type_vocab_size")  # fmt: skip


@dataclass
class ForwardCount:
    """What one model's forwards read during a call: sequences, real and padded tokens, seconds inside them."""

    sequences: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    seconds: float = 0.0


@contextmanager
def counted_forwards(models: dict[str, torch.nn.Module]) -> Iterator[dict[str, ForwardCount]]:
    """Counts each model's forwards (`ForwardCount`) while the block runs, through forward hooks removed after it."""
    counts = {name: ForwardCount() for name in models}
    started: dict[str, float] = {}
    handles = []
    for name, model in models.items():

        def before(module, args, kwargs, name=name) -> None:
            mask = kwargs["attention_mask"]
            counts[name].sequences += mask.shape[0]
            counts[name].tokens += int(mask.sum())
            counts[name].padded_tokens += mask.numel()
            started[name] = time.perf_counter()

        def after(module, args, kwargs, output, name=name) -> None:
            counts[name].seconds += time.perf_counter() - started[name]

        handles += [model.register_forward_pre_hook(before, with_kwargs=True),
                    model.register_forward_hook(after, with_kwargs=True)]  # fmt: skip
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


def encoder_tokens_per_second(config, batch_size: int, length: int, dtype: torch.dtype) -> float:
    """Tokens/s of a plain BERT encoder with `config`'s dimensions (random weights) on full batches of
    `batch_size` x `length` tokens, in `dtype`, on the CPU, after a warm-up."""
    dimensions = BertConfig(**{name: getattr(config, name) for name in ENCODER_DIMENSIONS})
    encoder = BertModel(dimensions, add_pooling_layer=False).to(dtype).eval()
    input_ids = torch.randint(1000, config.vocab_size, (batch_size, length))
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    with torch.inference_mode():
        for _ in range(2):
            encoder(**inputs)
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < ROOF_SECONDS:
            encoder(**inputs)
            runs += 1
    return runs * batch_size * length / (time.perf_counter() - started)


def extraction_speed(
    classify, texts: Sequence[str], batch_size: int, dtype: torch.dtype | None = None, repeats: int = REPEATS
) -> tuple[dict[str, float], list]:
    """Texts/s, entities/s and relations/s of the text-only call of the pipeline `classify` at `batch_size`, after a
    warm-up; the share of the call's time inside each model's forwards and the padding they read; with `dtype`
    (PyTorch), the encoders' roof at that precision, measured right after each call (the speed of a shared machine
    drifts), and the call's share of it. The median of `repeats` calls; and the call's outputs."""
    classify(list(texts[:2]), batch_size=batch_size)
    models = {"entity": classify.entity_recognizer.model, "relation": classify.model}
    rounds = []
    for _ in range(repeats):
        with counted_forwards(models) as counts:
            started = time.perf_counter()
            outputs = classify(list(texts), batch_size=batch_size)
            seconds = time.perf_counter() - started
        figures = call_figures(outputs, counts, seconds)
        if dtype is not None:
            figures |= roof(models, counts, len(texts), batch_size, dtype)
            figures["share_of_roof"] = figures["texts_per_s"] / figures["roof_texts_per_s"]
        rounds.append(figures)
    return {name: statistics.median(figures[name] for figures in rounds) for name in rounds[0]}, outputs


def call_figures(outputs: list[dict], counts: dict[str, ForwardCount], seconds: float) -> dict[str, float]:
    """The figures of one text-only call that took `seconds` and gave `outputs`, its models' forwards `counts`."""
    entities = sum(len(output["entities"]) for output in outputs)
    relations = sum(len(output["relations"]) for output in outputs)
    tokens = sum(count.tokens for count in counts.values())
    return {
        "texts_per_s": len(outputs) / seconds,
        "entities_per_s": entities / seconds,
        "relations_per_s": relations / seconds,
        "entities": entities,
        "relations": relations,
        "encoder_tokens_per_text": tokens / len(outputs),
        "padding": sum(count.padded_tokens for count in counts.values()) / tokens - 1,
        "model_tokens_per_s": tokens / sum(count.seconds for count in counts.values()),
        "share_in_entity_model": counts["entity"].seconds / seconds,
        "share_in_relation_model": counts["relation"].seconds / seconds,
    }


def roof(models: dict[str, torch.nn.Module], counts: dict[str, ForwardCount], texts: int, batch_size: int,
         dtype: torch.dtype) -> dict[str, float]:  # fmt: skip
    """The encoders' roof in texts/s: the seconds plain encoders of the models' sizes need for the tokens each model
    read (at its mean sequence length), and their tokens/s."""
    figures, seconds = {}, 0.0
    for name, model in models.items():
        length = round(counts[name].tokens / counts[name].sequences)
        speed = encoder_tokens_per_second(model.config, batch_size, length, dtype)
        figures[f"{name}_encoder_tokens_per_s"] = speed
        seconds += counts[name].tokens / speed
    return figures | {"roof_texts_per_s": texts / seconds}


def text_agreement(outputs: list[dict], reference: list[dict]) -> float:
    """The share of texts whose entities (spans, types) and relations (pairs, labels) equal the reference's."""

    def found(output: dict) -> tuple:
        entities = [(e["start"], e["end"], e["type"]) for e in output["entities"]]
        relations = [(r["subject"]["start"], r["object"]["start"], r["label"]) for r in output["relations"]]
        return entities, relations

    return sum(found(a) == found(b) for a, b in zip(outputs, reference, strict=True)) / len(reference)
