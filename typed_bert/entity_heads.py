"""The kinds of entity model `typed_bert.entities.train_entities` trains, behind one interface (`EntityHead`): how
each is built from a base, what its training rows and batches are, and the dev score its best epoch is chosen by.

- `BioTagger`: a token classifier with BIO tags (TypedBert's with a word-shape table, or a standard
  `AutoModelForTokenClassification`), read by `pipeline("token-classification", aggregation_strategy="average")`.
- `SpanClassifier`: TypedBert's span classifier (`TypedBertForSpanClassification`), which types every run of up to
  `config.max_span_width` words as a whole, as PURE's and SpERT's entity models do; read by
  `pipeline("token-classification", trust_remote_code=True)` (its own `TypedBertSpanClassificationPipeline`).

Both are scored the way papers score entities: a found entity counts when its character start, end and type match a
gold one (`span_scores`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from seqeval.metrics import f1_score, precision_score, recall_score
from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification, PreTrainedModel

from encoding_typed_bert import SpanCandidates, span_candidates, span_inputs, word_shape_ids
from modeling_typed_bert import TypedBertForSpanClassification, TypedBertForTokenClassification
from pipeline_typed_bert import ENTITY_AGGREGATION, decode_spans

if TYPE_CHECKING:
    from typed_bert.entities import EntitySettings

OUTSIDE = "O"


def span_scores(gold: Iterable[set], predicted: Iterable[set]) -> dict[str, float]:
    """Micro precision, recall and F1 of predicted spans against gold spans, text by text (exact match)."""
    true_positives = num_gold = num_predicted = 0
    for gold_spans, predicted_spans in zip(gold, predicted, strict=True):
        true_positives += len(gold_spans & predicted_spans)
        num_gold += len(gold_spans)
        num_predicted += len(predicted_spans)
    precision = true_positives / num_predicted if num_predicted else 0.0
    recall = true_positives / num_gold if num_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "gold": num_gold, "predicted": num_predicted}


def entity_spans(entities: Iterable[dict[str, Any]]) -> set[tuple[int, int, str]]:
    """`(start, end, type)` of each entity: what must match for an entity to count."""
    return {(entity["start"], entity["end"], entity["type"]) for entity in entities}


def bio_labels(entity_types: Iterable[str]) -> list[str]:
    """`O`, then `B-T` and `I-T` for each entity type `T` (sorted)."""
    return [OUTSIDE] + [f"{prefix}-{name}" for name in sorted(entity_types) for prefix in ("B", "I")]


def outermost(entities: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The entities BIO tags can hold: the longest first, each one kept unless it overlaps a kept one; and how many
    were left out."""
    kept: list[dict[str, Any]] = []
    for entity in sorted(entities, key=lambda e: (e["start"], -(e["end"] - e["start"]))):
        if all(entity["end"] <= other["start"] or other["end"] <= entity["start"] for other in kept):
            kept.append(entity)
    return kept, len(entities) - len(kept)


def tag_tokens(
    tokenizer, text: str, entities: Sequence[dict[str, Any]], label2id: dict[str, int], max_length: int
) -> dict[str, list[int]]:
    """`input_ids`, `attention_mask`, `word_shape_ids` and BIO `labels` (-100 on special tokens) of a text, truncated
    to `max_length`: the first token of an entity is `B-type`, the others `I-type`."""
    encoding = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True, truncation=True,
                         max_length=max_length)  # fmt: skip
    labels = [-100 if special else label2id[OUTSIDE] for special in encoding["special_tokens_mask"]]
    for entity in outermost(entities)[0]:
        inside = [
            position
            for position, ((start, end), special) in enumerate(
                zip(encoding["offset_mapping"], encoding["special_tokens_mask"], strict=True)
            )
            if not special and start < entity["end"] and end > entity["start"]
        ]
        for rank, position in enumerate(inside):
            labels[position] = label2id[f"{'B' if rank == 0 else 'I'}-{entity['type']}"]
    return {
        "input_ids": encoding["input_ids"],
        "attention_mask": encoding["attention_mask"],
        "word_shape_ids": word_shape_ids(text, encoding["offset_mapping"]),
        "labels": labels,
    }


class TaggingCollator(DataCollatorForTokenClassification):
    """transformers' token-classification collator, with `word_shape_ids` padded (0) like the labels."""

    def torch_call(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        shapes = [feature.pop("word_shape_ids") for feature in features] if "word_shape_ids" in features[0] else None
        batch = super().torch_call(features)
        if shapes is not None:
            length, left = batch["input_ids"].shape[1], self.tokenizer.padding_side == "left"
            padding = [[0] * (length - len(row)) for row in shapes]
            rows = [pad + row if left else row + pad for pad, row in zip(padding, shapes, strict=True)]
            batch["word_shape_ids"] = torch.tensor(rows)
        return batch


def tag_metrics(labels: list[str], prediction) -> dict[str, float]:
    """The Trainer's `compute_metrics`: dev entity micro P/R/F1 on the tokens' BIO tags (seqeval, as conlleval reads
    them), for choosing the best epoch; the final scores are the pipeline's, on character spans."""
    predicted_ids = prediction.predictions.argmax(-1)
    gold, predicted = [], []
    for row_gold, row_predicted in zip(prediction.label_ids, predicted_ids, strict=True):
        keep = row_gold != -100
        gold.append([labels[i] for i in row_gold[keep]])
        predicted.append([labels[i] for i in row_predicted[keep]])
    return {"entity_micro_f1": f1_score(gold, predicted), "entity_precision": precision_score(gold, predicted),
            "entity_recall": recall_score(gold, predicted)}  # fmt: skip


class EntityHead:
    """What an entity-model run asks of the kind of model it trains; `train_entities` calls these and nothing
    else that differs between kinds."""

    # The epochs of a run that does not set them (docs/results/entities).
    default_epochs: float = 8.0
    # The name of a run's dev score in `compute_metrics`, the best epoch's criterion.
    metric = "entity_micro_f1"

    def labels(self, entity_types: Sequence[str]) -> list[str]:
        """The model's labels for the data's entity types (sorted, no "O")."""
        raise NotImplementedError

    def load_model(self, settings: EntitySettings, labels: Sequence[str]) -> PreTrainedModel:
        """The model to train from `settings.base_model`, with a new head for `labels`."""
        raise NotImplementedError

    def rows(self, tokenizer, texts: Sequence[dict[str, Any]], config, max_length: int) -> list[dict[str, list]]:
        """The training rows of entity-list `texts` for a model with `config`, truncated to `max_length` tokens."""
        raise NotImplementedError

    def collator(self, tokenizer) -> Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]:
        """Rows → a padded batch."""
        raise NotImplementedError

    def compute_metrics(self, config, texts: Sequence[dict[str, Any]], rows: list[dict[str, list]]) -> Callable:
        """The Trainer's `compute_metrics` on the dev `texts` (as `rows`): `metric` and its precision and recall."""
        raise NotImplementedError

    def training_arguments(self) -> dict[str, Any]:
        """The `TrainingArguments` this kind sets itself."""
        return {}

    def preprocess_logits(self, rows: list[dict[str, list]]) -> Callable | None:
        """The Trainer's `preprocess_logits_for_metrics` for the dev `rows`, if this kind needs one."""
        return None

    def learning_rates(self, settings: EntitySettings) -> dict[str, float | None]:
        """`TypedBertTrainer`'s rates of its own: the word-shape table's, when the model has one."""
        return {"table_learning_rate": settings.table_learning_rate if settings.word_shapes else None}

    def describe(self, settings: EntitySettings) -> str:
        """What the model card calls the model."""
        raise NotImplementedError

    def pipeline_keywords(self, settings: EntitySettings) -> str:
        """The keywords of the card's `pipeline("token-classification", ...)` line, after the model."""
        return ", trust_remote_code=True"

    def left_out(self, texts: Sequence[dict[str, Any]], rows: list[dict[str, list]]) -> dict[str, int]:
        """The training entities the model cannot learn, for eval_results.json."""
        raise NotImplementedError


class BioTagger(EntityHead):
    """A token classifier with BIO tags; nested entities cannot all be tagged, so the outermost are kept."""

    def labels(self, entity_types: Sequence[str]) -> list[str]:
        return bio_labels(entity_types)

    def load_model(self, settings: EntitySettings, labels: Sequence[str]) -> PreTrainedModel:
        """TypedBert's token classifier with a word-shape table (no entity tables) for `settings.word_shapes`, else
        a standard `AutoModelForTokenClassification`."""
        if settings.word_shapes:
            return TypedBertForTokenClassification.from_pretrained(
                settings.base_model, ignore_mismatched_sizes=True, word_shapes=True, input_mode="plain",
                **_head_config(labels),
            )  # fmt: skip
        return AutoModelForTokenClassification.from_pretrained(
            settings.base_model, ignore_mismatched_sizes=True, **_head_config(labels)
        )

    def rows(self, tokenizer, texts: Sequence[dict[str, Any]], config, max_length: int) -> list[dict[str, list]]:
        rows = [tag_tokens(tokenizer, text["text"], text["entities"], config.label2id, max_length) for text in texts]
        if not getattr(config, "word_shapes", False):
            for row in rows:
                del row["word_shape_ids"]
        return rows

    def collator(self, tokenizer) -> TaggingCollator:
        return TaggingCollator(tokenizer)

    def compute_metrics(self, config, texts: Sequence[dict[str, Any]], rows: list[dict[str, list]]) -> Callable:
        labels = [config.id2label[index] for index in range(len(config.id2label))]
        return lambda prediction: tag_metrics(labels, prediction)

    def training_arguments(self) -> dict[str, Any]:
        return {"train_sampling_strategy": "group_by_length"}

    def describe(self, settings: EntitySettings) -> str:
        if settings.word_shapes:
            return ("A TypedBert token classifier (custom code: load it with `trust_remote_code=True`) with BIO tags, "
                    "whose input embeddings also carry each word's letter case (a word-shape table)")  # fmt: skip
        return "A standard `AutoModelForTokenClassification` with BIO tags"

    def pipeline_keywords(self, settings: EntitySettings) -> str:
        remote = ", trust_remote_code=True" if settings.word_shapes else ""
        return f', aggregation_strategy="{ENTITY_AGGREGATION}"{remote}'

    def left_out(self, texts: Sequence[dict[str, Any]], rows: list[dict[str, list]]) -> dict[str, int]:
        return {"nested_entities_left_out_of_training": sum(outermost(text["entities"])[1] for text in texts)}


class SpanClassifier(EntityHead):
    """TypedBert's span classifier: every run of up to `config.max_span_width` words is a candidate, typed as "O" or
    an entity type with cross-entropy over all candidates; nested entities are candidates like any other. Its head
    trains at `settings.head_learning_rate`, and batches are drawn at random (the recipe measured in
    docs/results/entities)."""

    default_epochs = 15.0

    def labels(self, entity_types: Sequence[str]) -> list[str]:
        return [OUTSIDE, *sorted(entity_types)]

    def load_model(self, settings: EntitySettings, labels: Sequence[str]) -> PreTrainedModel:
        return TypedBertForSpanClassification.from_pretrained(
            settings.base_model, word_shapes=settings.word_shapes, input_mode="plain", **_head_config(labels)
        )

    def rows(self, tokenizer, texts: Sequence[dict[str, Any]], config, max_length: int) -> list[dict[str, list]]:
        """Token inputs, the candidates (`span_first`, `span_last`, `span_widths`) and each candidate's label (the
        type of the gold entity with its exact characters, else "O")."""
        rows = []
        for text in texts:
            encoding = tokenizer(text["text"], return_offsets_mapping=True, truncation=True, max_length=max_length)
            offsets = encoding.pop("offset_mapping")
            candidates = span_candidates(encoding.word_ids(), offsets, text["text"], config.max_span_width)
            where = {characters: index for index, characters in enumerate(candidates.characters)}
            labels = [0] * len(where)
            for entity in text["entities"]:
                index = where.get((entity["start"], entity["end"]))
                if index is not None:
                    labels[index] = config.label2id[entity["type"]]
            if config.word_shapes:
                encoding["word_shape_ids"] = word_shape_ids(text["text"], offsets)
            rows.append({**encoding, "span_first": candidates.first, "span_last": candidates.last,
                         "span_widths": candidates.widths, "span_characters": candidates.characters,
                         "labels": labels})  # fmt: skip
        return rows

    def collator(self, tokenizer) -> SpanCollator:
        return SpanCollator(tokenizer.pad_token_id)

    def compute_metrics(self, config, texts: Sequence[dict[str, Any]], rows: list[dict[str, list]]) -> Callable:
        """Dev entity micro P/R/F1 of the decoded candidates (`decode_spans`, as the pipeline decodes), against every
        gold entity of `texts`."""
        gold = [entity_spans(text["entities"]) for text in texts]
        counts = [len(row["span_first"]) for row in rows]
        characters = [[tuple(pair) for pair in row["span_characters"]] for row in rows]
        return lambda prediction: span_metrics(config.id2label, gold, characters, counts, prediction)

    def training_arguments(self) -> dict[str, Any]:
        # The candidates are not arguments of the model's forward: the Trainer must not drop them before the collator.
        return {"train_sampling_strategy": "random", "remove_unused_columns": False}

    def preprocess_logits(self, rows: list[dict[str, list]]) -> Callable:
        most = max(len(row["span_first"]) for row in rows)  # the same on every rank, so ranks gather alike
        return lambda logits, labels: logits_per_text(logits, labels, most)

    def learning_rates(self, settings: EntitySettings) -> dict[str, float | None]:
        """The table's rate, and the head's (`settings.head_learning_rate`)."""
        return {**super().learning_rates(settings), "head_learning_rate": settings.head_learning_rate}

    def describe(self, settings: EntitySettings) -> str:
        shapes = " whose input embeddings also carry each word's letter case (a word-shape table)"
        return ("A TypedBert span classifier (custom code: load it with `trust_remote_code=True`)"
                f"{shapes if settings.word_shapes else ''}, which types every run of up to 14 words as a whole")

    def left_out(self, texts: Sequence[dict[str, Any]], rows: list[dict[str, list]]) -> dict[str, int]:
        """Entities no candidate reaches: longer than `max_span_width` words, or bounded inside a word."""
        missed = 0
        for text, row in zip(texts, rows, strict=True):
            reached = {tuple(pair) for pair in row["span_characters"]}
            missed += sum((entity["start"], entity["end"]) not in reached for entity in text["entities"])
        return {"entities_out_of_reach_of_the_candidates": missed}


def _head_config(labels: Sequence[str]) -> dict[str, Any]:
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {label: index for index, label in enumerate(labels)}}  # fmt: skip


class SpanCollator:
    """Span-classifier rows → a batch: token inputs padded on the right (`input_ids` with `pad_token_id`, the rest
    with 0), every candidate of the batch in one row (`span_inputs`), and the `labels` `(batch, spans)` of each text's
    candidates, padded with -100."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = span_inputs([SpanCandidates("", row["span_first"], row["span_last"], row["span_widths"], [])
                             for row in rows])  # fmt: skip
        length = max(len(row["input_ids"]) for row in rows)
        for name in rows[0]:
            if name not in ("span_first", "span_last", "span_widths", "span_characters", "labels"):
                padding = self.pad_token_id if name == "input_ids" else 0
                batch[name] = torch.tensor([row[name] + [padding] * (length - len(row[name])) for row in rows])
        batch["labels"] = torch.nn.utils.rnn.pad_sequence([torch.tensor(row["labels"], dtype=torch.long)
                                                           for row in rows], batch_first=True, padding_value=-100)
        return batch


def span_metrics(id2label, gold: list[set], characters: list, counts: list[int], prediction) -> dict[str, float]:
    """The span classifier's `compute_metrics`: its dev logits `(texts, spans, num_labels)` (`logits_per_text`),
    decoded text by text."""
    found = []
    for spans, count, logits in zip(characters, counts, prediction.predictions, strict=True):
        probabilities = torch.from_numpy(logits[:count]).float().softmax(-1)
        found.append({(entity["start"], entity["end"], entity["entity_group"])
                      for entity in decode_spans(spans, probabilities, id2label)})  # fmt: skip
    scores = span_scores(gold, found)
    return {"entity_micro_f1": scores["f1"], "entity_precision": scores["precision"],
            "entity_recall": scores["recall"]}  # fmt: skip


def logits_per_text(logits: torch.Tensor, labels: torch.Tensor, spans: int) -> torch.Tensor:
    """The Trainer's `preprocess_logits_for_metrics` for the span classifier: a batch's logits `(n_spans,
    num_labels)` as `(texts, spans, num_labels)`, padded with -100 to `spans` (the most candidates of a dev text, the
    same on every rank), so that the Trainer gathers and keeps them by text; `labels` `(texts, spans)` (-100 pads)
    says how many candidates each text has."""
    padded = logits.new_full((labels.shape[0], spans, logits.shape[-1]), -100.0)
    for row, text_logits in enumerate(logits.split((labels != -100).sum(-1).tolist())):
        padded[row, : len(text_logits)] = text_logits
    return padded
