"""The `relation-classification` pipeline of TypedBert models.

This file is uploaded to the Hugging Face Hub with the model and named in config.json's `custom_pipelines`, so

    pipeline("relation-classification", model="org/typed-bert", trust_remote_code=True)

works in one line. It imports only torch, transformers and the other uploaded files.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer, PretrainedConfig
from transformers.pipelines import TokenClassificationPipeline
from transformers.pipelines.base import ChunkPipeline, Pipeline
from transformers.pipelines.token_classification import AggregationStrategy

try:
    from .configuration_typed_bert import NO_RELATION, TypedBertConfig
    from .encoding_typed_bert import (
        SpanCandidates,
        max_sequence_length,
        pair_encoding_for,
        pair_logits,
        span_candidates,
        span_inputs,
        word_shape_ids,
    )
except ImportError:  # imported as a top-level module from a checkout, not as part of a package
    from configuration_typed_bert import NO_RELATION, TypedBertConfig
    from encoding_typed_bert import (
        SpanCandidates,
        max_sequence_length,
        pair_encoding_for,
        pair_logits,
        span_candidates,
        span_inputs,
        word_shape_ids,
    )

# Pairs per forward pass when the caller gives no batch_size: pairs are never run one at a time.
DEFAULT_BATCH_SIZE = 32
# How a tagger's token labels become entities: a word's token scores averaged, so that no entity starts or ends
# inside a word (docs/results/entities).
ENTITY_AGGREGATION = "average"
# The architecture of an entity model that types whole spans (`TypedBertForSpanClassification`), not tokens.
SPAN_CLASSIFIER = "TypedBertForSpanClassification"
# The windows of a document (a text longer than the models' limit) when the caller gives no max_length: they hold
# every gold relation of CoNLL04 and SciERC dev but one in each (docs/documents.md).
DOCUMENT_MAX_LENGTH = 48
# The texts of a list run in groups of similar token length (the longest at most this factor times the shortest, plus
# two tokens), so that a larger batch does not pad more (docs/serving.md).
LENGTH_SPREAD = 1.125
# The keywords a call takes (besides batch_size), all checked in `_sanitize_parameters`.
CALL_KEYWORDS = (
    "top_k", "threshold", "keep_no_relation", "max_length", "stride", "entity_type_map", "unknown_entity_types"
)  # fmt: skip


class RelationClassificationPipeline(ChunkPipeline):
    """Classifies the relations between typed entity spans of a text (character offsets, end exclusive). Inputs,
    alone, in a list or from a generator (docs/all-relations.md, docs/text-in.md):

    - one pair, `{"text", "subject": {"start", "end", "type"}, "object": {...}}` → `{"label", "score"}` (with
      `top_k` or `threshold`: a list of the best labels);
    - a text and its entities, `{"text", "entities": [...]}` → `[{"subject", "object", "label", "score"}]` for each
      ordered pair whose best label is not `no_relation` (all with `keep_no_relation=True`), and `"label": None,
      "skipped": <why>` for a pair that cannot be encoded. Entities may be any NER's output (`entity_type_map`);
    - raw text, a string or `{"text"}`, for a model with an entity model (`config.entity_model`) →
      `{"entities": [{"start", "end", "type", "text", "score"}], "relations": [...]}`.

    A document (a text longer than the models' limit) is read in windows of `max_length` tokens (default
    `DOCUMENT_MAX_LENGTH`) that share `stride` tokens; pairs that no window holds are counted in
    `"pairs_beyond_reach"` for raw text, reported skipped for an entity list (docs/documents.md). Pairs are encoded as
    the model was trained (`pair_encoding_for(config)`) and run `batch_size` sequences at a time, across inputs.
    """

    def __init__(self, *args, batch_size: int | None = None, entity_recognizer=None, **kwargs) -> None:
        """`entity_recognizer`: a token-classification pipeline to find the entities of raw text with, instead of the
        model's own entity model (`config.entity_model`)."""
        super().__init__(*args, batch_size=_checked_batch_size(batch_size) or DEFAULT_BATCH_SIZE, **kwargs)
        self.pair_encoding = pair_encoding_for(self.model.config)
        self.entity_recognition = EntityRecognition(self.model, self.device, entity_recognizer)

    def __call__(self, inputs, *args, batch_size: int | None = None, **kwargs):
        """Classify one input, a list or a generator of them. The texts of a list that have no entities go through the
        entity model first, together in batches (a generator's in `preprocess`, one at a time)."""
        batch_size = _checked_batch_size(batch_size)
        unknown = sorted(set(kwargs) - set(CALL_KEYWORDS))
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword arguments {unknown}; expected some of "
                            f"{list(CALL_KEYWORDS)} and batch_size")  # fmt: skip
        if isinstance(inputs, list):
            if not inputs:
                return []
            self._sanitize_parameters(**kwargs)  # before the entity model runs
            windows = {name: kwargs[name] for name in ("stride", "max_length") if name in kwargs}
            inputs = self.entity_recognition.fill(inputs, batch_size, **windows)
        elif isinstance(inputs, str):
            inputs = {"text": inputs}
        if batch_size is not None:
            kwargs["batch_size"] = batch_size
        if not isinstance(inputs, list):
            return super().__call__(inputs, *args, **kwargs)
        outputs: list = [None] * len(inputs)
        for group in length_groups(self._sequence_lengths(inputs)):
            for index, output in zip(group, super().__call__([inputs[i] for i in group], *args, **kwargs), strict=True):
                outputs[index] = output
        return outputs

    @property
    def entity_recognizer(self) -> Pipeline:
        """The pipeline that finds the entities of raw text (`EntityRecognition.recognizer`)."""
        return self.entity_recognition.recognizer

    def recognize(self, texts: list[str], batch_size: int | None = None, **windows) -> list[list[dict[str, Any]]]:
        """The entities the entity model finds in each text (`EntityRecognition`; `windows`: `stride`, `max_length`)."""
        return self.entity_recognition(texts, batch_size, **windows)

    def entity_windows(
        self, stride: int | None = None, max_length: int | None = None, document: bool = False
    ) -> tuple[int, int]:
        """The entity model's `(window, stride)` in tokens (`EntityRecognition.windows`)."""
        return self.entity_recognition.windows(stride, max_length, document)

    def _sequence_lengths(self, inputs: list) -> list[int]:
        """About how many tokens each input's sequences take: its text's, plus the markers of packed objects."""
        lengths = _token_lengths(self.tokenizer, [_text_of(item) for item in inputs])
        entities = [len(item.get("entities") or ()) if isinstance(item, dict) else 0 for item in inputs]
        return [length + self.pair_encoding.marker_tokens * max(count - 1, 0)
                for length, count in zip(lengths, entities, strict=True)]  # fmt: skip

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        threshold: float | None = None,
        keep_no_relation: bool | None = None,
        max_length: int | None = None,
        stride: int | None = None,
        entity_type_map: Mapping[str, str] | None = None,
        unknown_entity_types: str | None = None,
        **loading_options,
    ):
        """Every keyword of a call, checked once for every kind of input (at construction, transformers passes its
        loading options too, which are not ours)."""
        _check_optional_int("top_k", top_k, "the number of best labels to return")
        _check_optional_int("max_length", max_length, "tokens a window may take")
        if stride is not None and (not isinstance(stride, int) or isinstance(stride, bool) or stride < 0):
            raise ValueError(f"stride={stride!r} must be an int of at least 0 (tokens two windows share).")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not 0.0 <= threshold <= 1.0):  # fmt: skip
            raise ValueError(f"threshold={threshold!r} must be a number from 0 to 1 (a label's lowest score).")
        if keep_no_relation is not None and not isinstance(keep_no_relation, bool):
            raise TypeError(f"keep_no_relation={keep_no_relation!r} must be True or False.")
        if unknown_entity_types not in (None, "error", "skip"):
            raise ValueError(f"unknown_entity_types={unknown_entity_types!r} must be 'error' or 'skip'.")
        _check_type_map(entity_type_map)
        given = {"max_length": max_length, "stride": stride, "entity_type_map": entity_type_map,
                 "unknown_entity_types": unknown_entity_types}  # fmt: skip
        preprocess_params = {name: value for name, value in given.items() if value is not None}
        given = {"top_k": top_k, "threshold": threshold, "keep_no_relation": keep_no_relation}
        return preprocess_params, {}, {name: value for name, value in given.items() if value is not None}

    def preprocess(
        self,
        inputs: dict[str, Any],
        max_length: int | None = None,
        stride: int | None = None,
        entity_type_map: Mapping[str, str] | None = None,
        unknown_entity_types: str = "error",
    ) -> Iterator[dict[str, Any]]:
        """One chunk per sequence: its model inputs `(1, seq)` and which pairs it holds. A text without entities (a
        generator's) goes through the entity model here; foreign entity types are mapped."""
        if _is_text_only(inputs):
            text = inputs if isinstance(inputs, str) else inputs["text"]
            found = self.entity_recognition([text], stride=stride, max_length=max_length)[0]
            inputs = {"text": text, "entities": found, "text_only": True}
        inputs = _typed_entities(inputs, self.model.config.entity_types, entity_type_map, unknown_entity_types)
        text_only = isinstance(inputs, dict) and inputs.get("text_only", False)
        for chunk in self._chunks(inputs, max_length, text_only):
            chunk["pairs"].text_only = text_only
            yield chunk

    def _chunks(self, inputs: dict[str, Any], max_length: int | None, text_only: bool) -> Iterator[dict[str, Any]]:
        """One chunk per sequence of the model's pair encoding; a single pair is a text with two entities."""
        config = self.model.config
        window = max_sequence_length(self.tokenizer, config.max_sequence_length, max_length)
        document_window = DOCUMENT_MAX_LENGTH if max_length is None else None
        is_pair = isinstance(inputs, dict) and {"text", "subject", "object"} <= set(inputs)
        is_text = isinstance(inputs, dict) and {"text", "entities"} <= set(inputs)
        if is_pair == is_text:
            raise ValueError(
                "Expected a dict with 'text', 'subject' and 'object' (one pair) or with 'text' and 'entities' (all "
                f"relations of a text), not both, got {inputs!r}."
            )
        if is_pair:  # one pair is read in the model's window, however long its text
            entities, pairs, names = [inputs["subject"], inputs["object"]], [(0, 1)], ["subject", "object"]
            document_window = None
        else:
            entities, pairs, names = inputs["entities"], None, None
        encoded = self.pair_encoding.encode(
            self.tokenizer, inputs["text"], entities, config.entity_types, window, pairs, names, document_window
        )
        if is_pair and encoded.skipped:  # what cannot be encoded is an error for a single pair, not a skipped pair
            raise encoded.skipped[0][2]
        skipped = [(i, j, {"skipped": str(error)}) for i, j, error in encoded.skipped]
        beyond = encoded.beyond_reach
        if beyond and not text_only:
            skipped += _beyond_reach(len(entities), encoded)
        entities = None if is_pair else entities
        if not encoded.sequences:  # nothing to run; a placeholder chunk carries the input through the batched loop
            yield self._chunk(self.pair_encoding.placeholder(self.tokenizer), entities, [], skipped, True, beyond)
            return
        # Shortest first: a document's sequences differ in length, and batches of similar ones pad little.
        order = sorted(range(len(encoded.sequences)), key=lambda index: len(encoded.sequences[index]["input_ids"]))
        for index in order:
            is_last = index == order[-1]
            yield self._chunk(encoded.sequences[index], entities, encoded.pairs[index], skipped, is_last, beyond)

    @staticmethod
    def _chunk(features, entities, pairs, skipped, is_last, beyond_reach) -> dict[str, Any]:
        """One sequence's model inputs, each `(1, length)` (those of one length are rows of one `int64` tensor, which
        is faster than one tensor each), and which pairs of which input it holds."""
        names_of: dict[int, list[str]] = {}
        for name, values in features.items():
            names_of.setdefault(len(values), []).append(name)
        tensors = {}
        for names in names_of.values():
            rows = torch.tensor([features[name] for name in names], dtype=torch.long)
            tensors |= {name: rows[index : index + 1] for index, name in enumerate(names)}
        return {
            **tensors,
            "pairs": ChunkPairs(entities, pairs, skipped if is_last else [], beyond_reach if is_last else 0),
            "is_last": is_last,
        }

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        """Logits `(batch, pairs, labels)`: a row per pair of each sequence (`pair_logits`)."""
        metadata = {name: model_inputs.pop(name) for name in ("pairs", "is_last")}
        return {"logits": pair_logits(self.model(**model_inputs).logits).float(), **metadata}

    def postprocess(
        self,
        model_outputs: list[dict[str, Any]],
        top_k: int | None = None,
        threshold: float | None = None,
        keep_no_relation: bool = False,
    ):
        id2label = self.model.config.id2label
        chunks = [output["pairs"] for output in model_outputs]
        if chunks[0].entities is None:  # one pair
            ranked = _ranked(model_outputs[0]["logits"][0, :1].softmax(-1), id2label, top_k or 1, threshold)[0]
            return ranked if top_k is not None or threshold is not None else ranked[0]
        results = [(i, j, extra) for chunk in chunks for i, j, extra in chunk.skipped]
        for output, chunk in zip(model_outputs, chunks, strict=True):
            rows = _ranked(output["logits"][0, : len(chunk.pairs)].softmax(-1), id2label, top_k or 1, None)
            for (i, j), ranked in zip(chunk.pairs, rows, strict=True):
                if ranked[0]["label"] == NO_RELATION and not keep_no_relation:
                    continue  # the pair holds no relation
                for prediction in ranked:
                    above = threshold is None or prediction["score"] >= threshold
                    if above and (keep_no_relation or prediction["label"] != NO_RELATION):
                        results.append((i, j, prediction))
        results.sort(key=lambda item: (item[0], item[1]))
        entities = chunks[0].entities
        relations = [
            {"subject": entities[i], "object": entities[j], **({"label": None, "score": None} | extra)}
            for i, j, extra in results
        ]
        if not chunks[0].text_only:
            return relations
        beyond = sum(chunk.beyond_reach for chunk in chunks)
        return {"entities": entities, "relations": relations} | ({"pairs_beyond_reach": beyond} if beyond else {})


@dataclass
class ChunkPairs:
    """What one chunk's rows of logits belong to, apart from the tensors that transformers pads: the input's entities
    (None for one pair), each row's `(subject, object)`, on the last chunk the pairs skipped and the count beyond
    reach, and whether the input was text alone."""

    entities: list | None
    pairs: list[tuple[int, int]]
    skipped: list[tuple[int, int, dict[str, str]]]
    beyond_reach: int
    text_only: bool = False


class EntityRecognition:
    """The entity step of raw text: the entity recognizer of a relation model's entity model (`config.entity_model`),
    or one given in its place, run on texts in groups of similar length and on a document in windows."""

    def __init__(self, relation_model, device=None, recognizer: Pipeline | None = None) -> None:
        self.relation_model, self.device, self._recognizer = relation_model, device, recognizer

    @property
    def recognizer(self) -> Pipeline:
        """The pipeline that finds the entities of raw text: the one given, else the relation model's entity model's
        (`load_entity_recognizer`), loaded at first use."""
        if self._recognizer is None:
            if not getattr(self.relation_model.config, "entity_model", None):
                raise ValueError(
                    "This relation model has no entity model, so it needs each text's entities: pass "
                    "{'text': ..., 'entities': [{'start', 'end', 'type'}, ...]}, or add an entity model to its "
                    "repository (typed-bert train-entities, then typed-bert push --model FOLDER --entity-model "
                    "NER_FOLDER or typed-bert train ... --entity-model NER_FOLDER)."
                )
            source, load = entity_model_source(self.relation_model)
            dtype = self.relation_model.dtype
            self._recognizer = load_entity_recognizer(source, device=self.device, dtype=dtype, **load)
        return self._recognizer

    def fill(self, items: list, batch_size: int | None, **windows) -> list:
        """`items` with each text-only item replaced by its text and the entities found in it (`windows`: `stride`
        and `max_length`)."""
        text_only = [index for index, item in enumerate(items) if _is_text_only(item)]
        if not text_only:
            return items
        texts = [items[index] if isinstance(items[index], str) else items[index]["text"] for index in text_only]
        found = self(texts, batch_size, indices=text_only, **windows)
        items = list(items)
        for index, text, entities in zip(text_only, texts, found, strict=True):
            items[index] = {"text": text, "entities": entities, "text_only": True}
        return items

    def __call__(
        self,
        texts: list[str],
        batch_size: int | None = None,
        indices: list[int] | None = None,
        stride: int | None = None,
        max_length: int | None = None,
    ) -> list[list[dict[str, Any]]]:
        """The entities found in each text, `{"start", "end", "type", "text", "score"}`: a document in windows
        (`windows`), a shorter text whole. An error names a text by `indices` (its place in the caller's list)."""
        recognizer = self.recognizer
        for index, text in zip(indices or range(len(texts)), texts, strict=True):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"text {index} is {text!r}; expected a non-empty string to extract relations from.")
        limit = self.windows(stride, max_length)[0]
        lengths = _token_lengths(recognizer.tokenizer, texts)
        documents = [index for index, length in enumerate(lengths) if length > limit]
        sentences = [index for index, length in enumerate(lengths) if length <= limit]
        groups = [[sentences[i] for i in group] for group in length_groups([lengths[i] for i in sentences])]
        found: list = [None] * len(texts)
        for group in [*groups, documents]:
            if group:
                window, overlap = self.windows(stride, max_length, lengths[group[0]] > limit)
                batch = recognizer([texts[index] for index in group], batch_size=batch_size or DEFAULT_BATCH_SIZE,
                                   stride=overlap, max_length=window)  # fmt: skip
                for index, entities in zip(group, batch, strict=True):
                    found[index] = entities
        return recognized_entities(texts, found)

    def windows(
        self, stride: int | None = None, max_length: int | None = None, document: bool = False
    ) -> tuple[int, int]:
        """The entity model's `(window, stride)` in tokens: `max_length` (at most the entity model's limit; by default
        the limit, or `DOCUMENT_MAX_LENGTH` for a `document`) and `stride` (by default a quarter of the window)."""
        recognizer = self.recognizer
        limit = min(recognizer.tokenizer.model_max_length, recognizer.model.config.max_position_embeddings)
        window = min(limit, max_length or (DOCUMENT_MAX_LENGTH if document else limit))
        stride = window // 4 if stride is None else stride
        room = window - recognizer.tokenizer.num_special_tokens_to_add()
        if stride >= room:
            raise ValueError(
                f"stride={stride} must be smaller than the {room} text tokens of a window of {window} (max_length); "
                "it is how many tokens two windows share."
            )
        return window, stride


class TypedBertTokenClassificationPipeline(TokenClassificationPipeline):
    """transformers' token-classification pipeline with two additions for taggers: each window's `word_shape_ids`
    (with `config.word_shapes`), read from the text through the tokenizer's offsets; and with a word-level
    aggregation strategy (`first`, `average`, `max`), the most probable tag sequence that BIO allows
    (`constrained_bio_path`) instead of each word's own best tag (docs/results/entities)."""

    def preprocess(self, sentence, offset_mapping=None, **preprocess_params):
        uses_shapes = getattr(self.model.config, "word_shapes", False)
        if uses_shapes and not self.tokenizer.is_fast:
            raise ValueError("word_shape_ids are read through the tokenizer's offsets; expected a fast tokenizer.")
        for model_inputs in super().preprocess(sentence, offset_mapping=offset_mapping, **preprocess_params):
            if uses_shapes:
                model_inputs["word_shape_ids"] = self._word_shape_ids(sentence, model_inputs, preprocess_params)
            yield model_inputs

    def _sanitize_parameters(self, max_length: int | None = None, **kwargs):
        """transformers' parameters, plus `max_length`: the tokens of one window (default `model_max_length`)."""
        preprocess_params, forward_params, postprocess_params = super()._sanitize_parameters(**kwargs)
        if max_length is not None:
            preprocess_params["tokenizer_params"] = {**preprocess_params.get("tokenizer_params", {}),
                                                     "max_length": max_length}  # fmt: skip
        return preprocess_params, forward_params, postprocess_params

    def check_model_type(self, supported_models) -> None:
        """transformers' check (which logs an error for classes it does not know) unless the config names a token
        classifier (TypedBert's, or an exported graph's)."""
        architectures = getattr(self.model.config, "architectures", None) or []
        if not any(name.endswith("ForTokenClassification") for name in architectures):
            super().check_model_type(supported_models)

    def postprocess(self, all_outputs, aggregation_strategy=AggregationStrategy.NONE, ignore_labels=None):
        """transformers' postprocess, except that with a word-level strategy the words of each window are tagged along
        the most probable path that BIO allows (`window_words`, from the window's tensors at once rather than a dict
        per token) and grouped as transformers groups them (`group_words`)."""
        if aggregation_strategy in (AggregationStrategy.NONE, AggregationStrategy.SIMPLE):
            return super().postprocess(all_outputs, aggregation_strategy, ignore_labels)
        ignore_labels = ["O"] if ignore_labels is None else ignore_labels
        entities = [entity for output in all_outputs
                    for entity in self.group_words(self.window_words(output, all_outputs[0], aggregation_strategy),
                                                   ignore_labels)]  # fmt: skip
        return self.aggregate_overlapping_entities(entities) if len(all_outputs) > 1 else entities

    def window_words(self, output: dict[str, Any], first: dict[str, Any], strategy: AggregationStrategy) -> list:
        """The words of one window (`output`: its logits `(1, seq, labels)` and inputs; `first`: the first window's)
        as transformers' `gather_pre_entities` and `aggregate_words` find them, each `(tag, probability, tokens,
        start, end)`, tagged along `constrained_bio_path`."""
        sentence, keep = first["sentence"], ~output["special_tokens_mask"][0].bool()
        ids, offsets = output["input_ids"][0][keep].tolist(), output["offset_mapping"][0]
        if output.get("word_ids") is not None and first.get("word_to_chars_map") is not None:
            starts = [0 if word is None else first["word_to_chars_map"][word][0] for word in output["word_ids"]]
            offsets = offsets + torch.tensor(starts).unsqueeze(1)
        spans = offsets[keep].tolist()
        texts = [sentence[start:end] for start, end in spans]
        tokens = self.tokenizer.convert_ids_to_tokens(ids)
        if getattr(self.tokenizer.backend_tokenizer.model, "continuing_subword_prefix", None):
            subword = [len(token) != len(text) for token, text in zip(tokens, texts, strict=True)]
        else:  # transformers' heuristic (and its warning) for tokenizers that do not mark subwords
            warnings.warn("Tokenizer does not support real words, using fallback heuristic", UserWarning, stacklevel=2)
            subword = [start > 0 and " " not in sentence[start - 1 : start + 1] for start, _ in spans]
        unknown = self.tokenizer.unk_token_id  # read once: each read is a vocabulary lookup
        tokens = [text if token_id == unknown else token
                  for token, text, token_id in zip(tokens, texts, ids, strict=True)]  # fmt: skip
        starts = [index for index, flag in enumerate(subword) if index == 0 or not flag or ids[index] == unknown]
        if not starts:
            return []
        probabilities = word_probabilities(output["logits"][0][keep].float().softmax(-1), starts, strategy)
        id2label = self.model.config.id2label
        path = constrained_bio_path(probabilities, [id2label[index] for index in range(len(id2label))])
        return [(tag, probability, tokens[start:end], spans[start][0], spans[end - 1][1])
                for (tag, probability), start, end in zip(path, starts, [*starts[1:], len(tokens)], strict=True)]

    def group_words(self, words: list, ignore_labels: Sequence[str]) -> list[dict]:
        """transformers' `group_entities` over tagged words (`window_words`): a word joins the group before it when its
        tag has the group's type and is not `B-`; a group is an entity with the mean of its words' scores."""
        labels, groups = self.model.config.id2label, []
        tags = {tag: self.get_tag(label) for tag, label in labels.items()}
        for word in words:
            bi, kind = tags[word[0]]
            if groups and bi != "B" and kind == groups[-1][0]:
                groups[-1][1].append(word)
            else:
                groups.append((kind, [word]))
        text = self.tokenizer.convert_tokens_to_string
        return [{"entity_group": name, "score": sum(word[1] for word in group) / len(group),
                 "word": text([text(word[2]) for word in group]), "start": group[0][3], "end": group[-1][4]}
                for name, group in ((labels[group[0][0]].split("-", 1)[-1], group) for _, group in groups)
                if name not in ignore_labels]  # fmt: skip

    @staticmethod
    def _word_shape_ids(sentence, model_inputs: dict[str, Any], preprocess_params: dict[str, Any]) -> torch.Tensor:
        """`(1, seq)` shape ids of one window; with `is_split_into_words`, offsets are within each word."""
        offsets = model_inputs["offset_mapping"][0].tolist()
        word_starts = model_inputs.get("word_to_chars_map")
        if word_starts is not None:
            text = preprocess_params["delimiter"].join(sentence)
            words = model_inputs["word_ids"]
            offsets = [(0, 0) if w is None else (word_starts[w][0] + a, word_starts[w][0] + b)
                       for w, (a, b) in zip(words, offsets, strict=True)]  # fmt: skip
        else:
            text = sentence
        return torch.tensor([word_shape_ids(text, offsets)], dtype=torch.long)


class TypedBertSpanClassificationPipeline(ChunkPipeline):
    """The entity recognizer of a span classifier (`TypedBertForSpanClassification`), called as transformers'
    aggregated token classification is: a text, a list or a generator → `[{"entity_group", "score", "word", "start",
    "end"}]` per text. Each window of `max_length` tokens (`stride` shared) gives every run of up to
    `config.max_span_width` words as a candidate; `decode_spans` picks the entities over all windows of a text."""

    def _sanitize_parameters(self, stride: int | None = None, max_length: int | None = None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments {sorted(kwargs)}; expected "
                            "stride, max_length and batch_size")  # fmt: skip
        limit = min(self.tokenizer.model_max_length, self.model.config.max_position_embeddings)
        window = max_sequence_length(self.tokenizer, limit, max_length)
        stride = 0 if stride is None else stride
        if not isinstance(stride, int) or not 0 <= stride < window - self.tokenizer.num_special_tokens_to_add():
            raise ValueError(f"stride={stride!r} must be an int from 0 to less than the text tokens of a window of "
                             f"{window} (max_length): it is how many tokens two windows share.")  # fmt: skip
        return {"max_length": window, "stride": stride}, {}, {}

    def preprocess(self, sentence: str, max_length: int, stride: int) -> Iterator[dict[str, Any]]:
        """One chunk per window of `sentence`: its model inputs `(1, seq)` and its `SpanCandidates`."""
        if self.tokenizer.padding_side != "right":  # the span positions count from the first token
            raise ValueError(f"padding_side={self.tokenizer.padding_side!r}; a span classifier needs 'right'.")
        if not isinstance(sentence, str) or not self.tokenizer.is_fast:
            raise ValueError(f"{type(self).__name__} reads a text (a str) through a fast tokenizer's offsets; got "
                             f"{type(sentence).__name__} and a {type(self.tokenizer).__name__}.")  # fmt: skip
        encoding = self.tokenizer(sentence, return_offsets_mapping=True, return_overflowing_tokens=True,
                                  truncation=True, max_length=max_length, stride=stride)  # fmt: skip
        windows, words = len(encoding["input_ids"]), _whole_words(encoding)
        for row in range(windows):
            inputs = {name: torch.tensor([encoding[name][row]], dtype=torch.long)
                      for name in self.tokenizer.model_input_names if name in encoding}  # fmt: skip
            if getattr(self.model.config, "word_shapes", False):
                inputs["word_shape_ids"] = torch.tensor([word_shape_ids(sentence, encoding["offset_mapping"][row])])
            candidates = span_candidates(words[row], encoding["offset_mapping"][row], sentence,
                                         self.model.config.max_span_width)  # fmt: skip
            yield {**inputs, "candidates": candidates, "is_last": row == windows - 1}

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        """The label probabilities `(batch, spans, num_labels)` of a batch of windows' candidates (padded)."""
        candidates, is_last = model_inputs.pop("candidates"), model_inputs.pop("is_last")
        batch = [candidates] if isinstance(candidates, SpanCandidates) else candidates
        spans = {name: tensor.to(self.device) for name, tensor in span_inputs(batch).items()}
        probabilities = self.model(**model_inputs, **spans).logits.float().softmax(-1)
        rows = probabilities.split([len(candidate.first) for candidate in batch])
        padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
        return {"probabilities": padded, "candidates": candidates, "is_last": is_last}

    def postprocess(self, all_outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The entities of one text, from the candidates of all its windows (`decode_spans`)."""
        characters, probabilities = [], []
        for output in all_outputs:
            candidates = output["candidates"]
            characters += candidates.characters
            probabilities.append(output["probabilities"][0, : len(candidates.characters)])
        text = all_outputs[0]["candidates"].text
        return [{**entity, "word": text[entity["start"] : entity["end"]]}
                for entity in decode_spans(characters, torch.cat(probabilities), self.model.config.id2label)]


def _whole_words(encoding) -> list[list[int | None]]:
    """The `word_ids` of each window of `encoding`, None for the tokens of a word the window cuts, so that no
    candidate starts or ends in part of a word."""
    rows = [_word_reach(encoding.word_ids(row), offsets) for row, offsets in enumerate(encoding["offset_mapping"])]
    full: dict[int, tuple[int, int]] = {}
    for reach in rows:
        for word, (start, end) in reach.items():
            known = full.get(word, (start, end))
            full[word] = (min(known[0], start), max(known[1], end))
    return [[word if word is not None and reach[word] == full[word] else None for word in encoding.word_ids(row)]
            for row, reach in enumerate(rows)]  # fmt: skip


def _word_reach(word_ids: Sequence[int | None], offsets: Sequence[Sequence[int]]) -> dict[int, tuple[int, int]]:
    """The characters each word's tokens in one window cover, `(start, end)`."""
    reach: dict[int, tuple[int, int]] = {}
    for word, (start, end) in zip(word_ids, offsets, strict=True):
        if word is not None:
            reach[word] = (reach.get(word, (start, end))[0], end)
    return reach


def decode_spans(
    characters: Sequence[tuple[int, int]], probabilities: torch.Tensor, id2label: Mapping[int, str]
) -> list[dict[str, Any]]:
    """The entities among candidate spans (`characters`, label `probabilities` `(spans, num_labels)`, label 0 "no
    entity"): most probable first, each candidate whose best label is a type kept unless it overlaps one kept;
    `{"entity_group", "score", "start", "end"}` in text order."""
    scores, labels = probabilities.max(-1)
    found = [(score, start, end, label) for score, (start, end), label
             in zip(scores.tolist(), characters, labels.tolist(), strict=True) if label != 0]  # fmt: skip
    kept: list[tuple[float, int, int, int]] = []
    for score, start, end, label in sorted(found, key=lambda candidate: -candidate[0]):
        if all(end <= other[1] or other[2] <= start for other in kept):
            kept.append((score, start, end, label))
    return [{"entity_group": id2label[label], "score": score, "start": start, "end": end}
            for score, start, end, label in sorted(kept, key=lambda entity: entity[1])]  # fmt: skip


def word_probabilities(scores: torch.Tensor, starts: list[int], strategy: AggregationStrategy) -> torch.Tensor:
    """The tag probabilities of each word `(words, tags)` from its tokens' `scores` `(tokens, tags)` (word w's tokens
    start at `starts[w]`), as transformers' `first`, `max` or `average` aggregation reads them; NaN left out."""
    scores = scores.double()
    word = torch.zeros(len(scores), dtype=torch.long)
    word[starts[1:]] = 1
    word = word.cumsum(0)
    if strategy == AggregationStrategy.FIRST:
        return scores[starts]
    if strategy == AggregationStrategy.MAX:
        confidence = scores.nan_to_num(float("-inf")).max(dim=1).values
        best = torch.full((len(starts),), float("-inf"), dtype=scores.dtype).scatter_reduce(0, word, confidence, "amax")
        chosen = torch.arange(len(scores))[confidence == best[word]]
        first = torch.full((len(starts),), len(scores)).scatter_reduce(0, word[chosen], chosen, "amin")
        return scores[first]
    sums = torch.zeros(len(starts), scores.shape[1], dtype=scores.dtype).index_add_(0, word, scores.nan_to_num())
    return sums / torch.zeros_like(sums).index_add_(0, word, (~scores.isnan()).to(sums.dtype))


@functools.lru_cache(maxsize=16)
def _bio_sources(labels: tuple[str, ...]) -> tuple[tuple[bool, ...], tuple[tuple[int, ...], ...]]:
    """For each tag of `labels`: whether it is an `I-` tag, and the tags that BIO allows right before it."""
    inside = tuple(label.startswith("I-") for label in labels)
    sources = tuple(tuple(frm for frm in range(len(labels)) if not inside[to] or (labels[frm] != "O" and
                    labels[frm][2:] == labels[to][2:])) for to in range(len(labels)))  # fmt: skip
    return inside, sources


def constrained_bio_path(probabilities: torch.Tensor, labels: Sequence[str]) -> list[tuple[int, float]]:
    """The most probable tag sequence of words with tag probabilities `(words, tags)` under BIO's rule (`I-T` only
    right after `B-T` or `I-T`), `(tag, its probability)` per word: each word's own best tag when that is allowed,
    else Viterbi on the log probabilities in Python floats (cheaper than tensors for a sentence's few words)."""
    inside, sources = _bio_sources(tuple(labels))
    rows = probabilities.double().tolist()
    own = probabilities.argmax(-1).tolist()  # each word's best tag: the path itself when BIO allows it (most texts)
    if not inside[own[0]] and all(before in sources[tag] for before, tag in zip(own[:-1], own[1:], strict=True)):
        return [(tag, rows[word][tag]) for word, tag in enumerate(own)]
    distinct = list(dict.fromkeys(sources))
    source_set = [distinct.index(allowed) for allowed in sources]
    emissions = probabilities.double().clamp_min(1e-12).log().tolist()
    score = [float("-inf") if inside[tag] else value for tag, value in enumerate(emissions[0])]
    back = []
    for emission in emissions[1:]:
        best_of = [max(allowed, key=score.__getitem__) for allowed in distinct]
        best = [best_of[index] for index in source_set]
        score = [score[frm] + value for frm, value in zip(best, emission, strict=True)]
        back.append(best)
    path = [max(range(len(score)), key=score.__getitem__)]
    for best in reversed(back):
        path.append(best[path[-1]])
    path.reverse()
    return [(tag, rows[word][tag]) for word, tag in enumerate(path)]


def _repository_commit(config) -> str | None:
    """The commit the relation model was loaded from (None for a local folder): 4.57 records it on the config; 5.x
    imports this file from a folder named for it."""
    commit = getattr(config, "_commit_hash", None)
    package = __name__.rpartition(".")[0].rpartition(".")[2]
    return commit or (package if re.fullmatch(r"[0-9a-f]{40}", package) else None)


def entity_model_source(model) -> tuple[str, dict[str, str]]:
    """Where the entity model that `model.config.entity_model` names is read from, `(source, load_kwargs)`: that
    subfolder of the folder `model` was loaded from, or of its Hub repo at the commit `model` came from."""
    source, subfolder = model.name_or_path, model.config.entity_model
    if os.path.isdir(source):
        return os.path.join(source, subfolder), {}
    revision = _repository_commit(model.config)
    return source, {"subfolder": subfolder, **({"revision": revision} if revision else {})}


def load_entity_model(source: str, dtype=None, **load_kwargs) -> tuple[torch.nn.Module, Any]:
    """The token classifier and tokenizer of an entity model folder or Hub id (`load_kwargs`: `subfolder`,
    `revision`, ...); a TypedBert checkpoint is run by this repository's own code."""
    model = _token_classifier_class(source, **load_kwargs).from_pretrained(source, dtype=dtype, **load_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source, config=model.config, **load_kwargs)  # no second config lookup
    return model, tokenizer


def load_entity_recognizer(source: str, device=None, dtype=None, **load_kwargs) -> Pipeline:
    """The entity recognizer (`entity_recognizer_for`) of the entity model in `source` (`load_entity_model`)."""
    return entity_recognizer_for(*load_entity_model(source, dtype, **load_kwargs), device=device)


def entity_recognizer_for(model, tokenizer, device=None) -> Pipeline:
    """The entity recognizer of a loaded entity model (a PyTorch model, or an exported graph in its place):
    `TypedBertSpanClassificationPipeline` for a span classifier, else `TypedBertTokenClassificationPipeline`
    aggregated as `ENTITY_AGGREGATION`."""
    if SPAN_CLASSIFIER in (model.config.architectures or []):
        return TypedBertSpanClassificationPipeline(model=model, tokenizer=tokenizer, device=device)
    return TypedBertTokenClassificationPipeline(
        model=model, tokenizer=tokenizer, aggregation_strategy=ENTITY_AGGREGATION, device=device
    )


def _token_classifier_class(source: str, **load_kwargs) -> type:
    """The class of the entity model in `source`: this code's span or token classifier for a TypedBert checkpoint,
    transformers' Auto class for any other."""
    config_dict, _ = PretrainedConfig.get_config_dict(source, **load_kwargs)
    if config_dict.get("model_type") != TypedBertConfig.model_type:
        return AutoModelForTokenClassification
    try:  # imported here: the modeling file imports this one
        from .modeling_typed_bert import TypedBertForSpanClassification, TypedBertForTokenClassification
    except ImportError:  # imported as a top-level module from a checkout, not as part of a package
        from modeling_typed_bert import TypedBertForSpanClassification, TypedBertForTokenClassification
    if SPAN_CLASSIFIER in (config_dict.get("architectures") or []):
        return TypedBertForSpanClassification
    return TypedBertForTokenClassification


def recognized_entities(texts: list[str], found: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """Aggregated token-classification output on `texts` as `{"start", "end", "type", "text", "score"}` entities."""
    return [
        [
            {
                "start": int(entity["start"]),
                "end": int(entity["end"]),
                "type": entity["entity_group"],
                "text": text[entity["start"] : entity["end"]],
                "score": float(entity["score"]),
            }  # fmt: skip
            for entity in entities
        ]
        for text, entities in zip(texts, found, strict=True)
    ]


def length_groups(lengths: Sequence[int]) -> list[list[int]]:
    """The indices of `lengths` in groups of similar length, shortest first: a group's longest is at most
    `LENGTH_SPREAD` times its shortest plus two."""
    groups: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        if groups and lengths[index] <= lengths[groups[-1][0]] * LENGTH_SPREAD + 2:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def _token_lengths(tokenizer, texts: list[Any]) -> list[int]:
    """The tokens of each text (0 for an input that is not a string, which `preprocess` refuses)."""
    strings = [text for text in texts if isinstance(text, str)]
    lengths = iter(map(len, tokenizer(strings, verbose=False)["input_ids"] if strings else []))
    return [next(lengths) if isinstance(text, str) else 0 for text in texts]


def _text_of(item: Any) -> Any:
    """The text of an input: a string itself, a dict's `text`."""
    return item.get("text") if isinstance(item, dict) else item


def _beyond_reach(count: int, encoded) -> list[tuple[int, int, dict[str, str]]]:
    """A skipped entry for each ordered pair of `count` entities that `encoded` did not try (beyond reach)."""
    tried = {pair for pairs in encoded.pairs for pair in pairs} | {(i, j) for i, j, _ in encoded.skipped}
    reason = {"skipped": f"the two entities lie further apart than max_length={encoded.window} allows, so no window "
                         "holds both."}  # fmt: skip
    return [(i, j, reason) for i in range(count) for j in range(count) if i != j and (i, j) not in tried]


def _checked_batch_size(batch_size: Any) -> int | None:
    """`batch_size` if it is None or a positive int; else a `ValueError` naming it."""
    _check_optional_int("batch_size", batch_size, "inputs per forward pass")
    return batch_size


def _check_type_map(type_map: Any) -> None:
    """A `TypeError` naming `entity_type_map` unless it is None or a mapping of type names to type names."""
    if type_map is None:
        return
    names = type_map.items() if isinstance(type_map, Mapping) else [(None, None)]
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in names):
        raise TypeError(f"entity_type_map={type_map!r} must be a mapping of type names, {{'PER': 'Peop', ...}}.")


def _check_optional_int(name: str, value: Any, meaning: str) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name}={value!r} must be a positive int ({meaning}).")


def _is_text_only(item: Any) -> bool:
    """A plain string, or a dict with a text and neither entities nor a pair."""
    return isinstance(item, str) or (
        isinstance(item, dict) and "text" in item and not {"entities", "subject", "object"} & set(item)
    )


def _typed_entities(item: Any, entity_types: list[str], type_map: Mapping[str, str] | None, unknown: str) -> Any:
    """`item` with its entities' types read from a foreign NER's output (`entity_group`, or `entity` without `B-`/`I-`)
    and mapped by `type_map`; types the model does not know are an error, or left out with a warning
    (`unknown="skip"`). Entities with a `type` and no map are left to the encoding's checks."""
    if not isinstance(item, dict) or not isinstance(item.get("entities"), list) or item.get("text_only"):
        return item
    entities, unknown_types = [], []
    for entity in item["entities"]:
        if not isinstance(entity, Mapping) or ("type" in entity and not type_map and unknown == "error"):
            entities.append(entity)
            continue
        name = entity.get("type", entity.get("entity_group"))
        if name is None and isinstance(entity.get("entity"), str):
            name = entity["entity"].removeprefix("B-").removeprefix("I-")
        name = (type_map or {}).get(name, name)
        if name not in entity_types[1:]:
            unknown_types.append(name)
            if unknown == "skip":
                continue
        entities.append({**entity, "type": name})
    if unknown_types and unknown == "error":
        raise ValueError(
            f"entity types {sorted(set(map(str, unknown_types)))} are not among the model's {entity_types[1:]}; map "
            "them with entity_type_map={'THEIRS': 'OURS', ...}, or pass unknown_entity_types='skip' to leave such "
            "entities out."
        )
    if unknown_types:
        warnings.warn(f"left out {len(unknown_types)} entities of types unknown to the model: "
                      f"{sorted(set(map(str, unknown_types)))}", stacklevel=3)  # fmt: skip
    return {**item, "entities": entities}


def _ranked(probabilities: torch.Tensor, id2label: dict[int, str], k: int, threshold: float | None) -> list[list[dict]]:
    """For each row of label probabilities `(rows, labels)`, the `k` best labels `{"label", "score"}` at or above
    `threshold`."""
    scores, indices = probabilities.topk(min(k, probabilities.shape[-1]), dim=-1)
    kept = (scores >= threshold if threshold is not None else torch.ones_like(scores, dtype=torch.bool)).tolist()
    return [
        [{"label": id2label[index], "score": score} for score, index, keep in zip(*row, strict=True) if keep]
        for row in zip(scores.tolist(), indices.tolist(), kept, strict=True)
    ]
