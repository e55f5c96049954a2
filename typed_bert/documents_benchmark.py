"""The document figures of `typed-bert benchmark --documents MODEL FILE`: the sentences of an entity-list file joined
into documents of about N tokens, and the text-only call on the documents against the same call on the sentences
as a list, in one process, one after the other: the time ratio, how far the two agree, and both against the gold
entities and relations.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

Entity = tuple[int, int, int, str]  # (document, start, end, type)


def documents_of(rows: Sequence[dict[str, Any]], tokenizer, tokens: int) -> list[list[dict[str, Any]]]:
    """Consecutive rows grouped until each group's texts hold at least `tokens` tokens (the last may hold fewer)."""
    documents, current, size = [], [], 0
    for row in rows:
        current.append(row)
        size += len(tokenizer(row["text"], add_special_tokens=False)["input_ids"])
        if size >= tokens:
            documents.append(current)
            current, size = [], 0
    return documents + ([current] if current else [])


def f1(gold: set, found: set) -> float:
    """Micro-F1 of `found` against `gold` (exact matches)."""
    return 2 * len(gold & found) / max(1, len(gold) + len(found))


def document_figures(
    classify, rows: Sequence[dict[str, Any]], tokens: int, batch_size: int = 16, **windows: int
) -> dict[str, Any]:
    """The text-only call `classify` on `rows` (`{"text", "entities", "relations"}`) joined with one space into
    documents of about `tokens` tokens, against the same call on the rows' texts as a list (after a warm-up), each at
    `batch_size`; the documents read in the pipeline's default windows, or those of `windows` (`max_length`,
    `stride`)."""
    documents = documents_of(rows, classify.tokenizer, tokens)
    sentences = [row["text"] for document in documents for row in document]
    classify(sentences[:batch_size], batch_size=batch_size)
    started = time.perf_counter()
    by_sentence = classify(sentences, batch_size=batch_size)
    sentence_seconds = time.perf_counter() - started
    started = time.perf_counter()
    texts = [" ".join(row["text"] for row in document) for document in documents]
    by_document = classify(texts, batch_size=batch_size, **windows)
    document_seconds = time.perf_counter() - started
    found = found_sets(documents, by_sentence, by_document)
    return {
        "documents": len(documents),
        "tokens_per_document": tokens,
        "windows": dict(zip(("max_length", "stride"), classify.entity_windows(document=True, **windows), strict=True)),
        "sentences_s": sentence_seconds,
        "documents_s": document_seconds,
        "time_ratio": document_seconds / sentence_seconds,
        "entity_agreement_f1": f1(found["sentence entities"], found["document entities"]),
        "relation_agreement_f1": f1(found["sentence relations"], found["document relations"]),
        "entity_f1_sentences": f1(found["gold entities"], found["sentence entities"]),
        "entity_f1_documents": f1(found["gold entities"], found["document entities"]),
        "relation_f1_sentences": f1(found["gold relations"], found["sentence relations"]),
        "relation_f1_documents": f1(found["gold relations"], found["document relations"]),
        "relations_across_sentences": len(found["relations across sentences"]),
        "pairs_beyond_reach": sum(output.get("pairs_beyond_reach", 0) for output in by_document),
    }


def found_sets(documents: list[list[dict]], by_sentence: list[dict], by_document: list[dict]) -> dict[str, set]:
    """Gold, sentence-call and document-call entities `(document, start, end, type)` and relations `(document,
    subject start, end, object start, end, label)`, all in document offsets; and the document call's relations whose
    two entities start in different sentences."""
    found: dict[str, set] = {name: set() for name in ("gold entities", "gold relations", "sentence entities",
                                                      "sentence relations", "document entities", "document relations",
                                                      "relations across sentences")}  # fmt: skip
    sentence_outputs = iter(by_sentence)
    for number, (document, output) in enumerate(zip(documents, by_document, strict=True)):
        offset, sentence_at = 0, {}
        for index, row in enumerate(document):
            sentence_at.update(dict.fromkeys(range(offset, offset + len(row["text"])), index))
            gold = [{**relation, "subject": row["entities"][relation["subject"]],
                     "object": row["entities"][relation["object"]]} for relation in row["relations"]]  # fmt: skip
            for kind, found_in_row in (("gold", {"entities": row["entities"], "relations": gold}),
                                       ("sentence", next(sentence_outputs))):  # fmt: skip
                found[f"{kind} entities"] |= {_entity(number, offset, e) for e in found_in_row["entities"]}
                found[f"{kind} relations"] |= {_relation(number, offset, r) for r in found_in_row["relations"]}
            offset += len(row["text"]) + 1
        found["document entities"] |= {_entity(number, 0, entity) for entity in output["entities"]}
        found["document relations"] |= {_relation(number, 0, relation) for relation in output["relations"]}
        found["relations across sentences"] |= {
            _relation(number, 0, relation) for relation in output["relations"]
            if sentence_at.get(relation["subject"]["start"]) != sentence_at.get(relation["object"]["start"])
        }  # fmt: skip
    return found


def _entity(document: int, offset: int, entity: dict) -> Entity:
    return document, entity["start"] + offset, entity["end"] + offset, entity["type"]


def _relation(document: int, offset: int, relation: dict) -> tuple:
    subject, obj = _entity(document, offset, relation["subject"]), _entity(document, offset, relation["object"])
    return document, *subject[1:3], *obj[1:3], relation["label"]
