"""Documents against sentences, the figures of docs/documents.md.

    python docs/results/documents/documents_vs_sentences.py MODEL TOKENS [OPTIONS_JSON] [DATA]

CoNLL04 dev sentences (DATA, default ../shared/data/conll04/dev_entities.jsonl) joined with one space into documents
of about TOKENS tokens; the sentences as a list and the documents (with the pipeline keywords of OPTIONS_JSON, such
as '{"max_length": 64}') through the same pipeline, in one process, one after the other. Prints one JSON line: the
time ratio, entity and relation agreement, and both calls' strict F1 against the gold entities and relations.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from transformers import pipeline


def f1(gold: set, found: set) -> float:
    return round(2 * len(gold & found) / max(1, len(gold) + len(found)), 4)


def documents_of(rows: list[dict], tokenizer, target: int) -> list[list[dict]]:
    """Consecutive rows grouped until each group holds at least `target` tokens."""
    documents, current, size = [], [], 0
    for row in rows:
        current.append(row)
        size += len(tokenizer(row["text"], add_special_tokens=False)["input_ids"])
        if size >= target:
            documents.append(current)
            current, size = [], 0
    return documents + ([current] if current else [])


def shifted(entity: dict, offset: int) -> tuple[int, int]:
    return entity["start"] + offset, entity["end"] + offset


def main() -> None:
    model, target = sys.argv[1], int(sys.argv[2])
    options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    data = sys.argv[4] if len(sys.argv) > 4 else "../shared/data/conll04/dev_entities.jsonl"
    rows = [json.loads(line) for line in Path(data).read_text(encoding="utf-8").split("\n") if line.strip()]
    classify = pipeline("relation-classification", model=model, trust_remote_code=True)
    documents = documents_of(rows, classify.tokenizer, target)
    sentences = [row["text"] for document in documents for row in document]
    classify(sentences[:16], batch_size=16)  # warm-up
    started = time.perf_counter()
    by_sentence = iter(classify(sentences, batch_size=16))
    sentence_seconds = time.perf_counter() - started
    started = time.perf_counter()
    by_document = classify([" ".join(row["text"] for row in document) for document in documents], batch_size=16,
                           **options)  # fmt: skip
    document_seconds = time.perf_counter() - started
    sets = {name: set() for name in ("gold_entities", "gold_relations", "sentence_entities", "sentence_relations",
                                     "document_entities", "document_relations")}  # fmt: skip
    across = 0
    for number, (document, output) in enumerate(zip(documents, by_document, strict=True)):
        offset, sentence_at = 0, {}
        for index, row in enumerate(document):
            sentence_at.update({char: index for char in range(offset, offset + len(row["text"]))})
            found = next(by_sentence)
            sets["gold_entities"] |= {(number, *shifted(e, offset), e["type"]) for e in row["entities"]}
            sets["gold_relations"] |= {(number, *shifted(row["entities"][r["subject"]], offset),
                                        *shifted(row["entities"][r["object"]], offset), r["label"])
                                       for r in row["relations"]}  # fmt: skip
            sets["sentence_entities"] |= {(number, *shifted(e, offset), e["type"]) for e in found["entities"]}
            sets["sentence_relations"] |= {(number, *shifted(r["subject"], offset), *shifted(r["object"], offset),
                                            r["label"]) for r in found["relations"]}  # fmt: skip
            offset += len(row["text"]) + 1
        sets["document_entities"] |= {(number, *shifted(e, 0), e["type"]) for e in output["entities"]}
        sets["document_relations"] |= {(number, *shifted(r["subject"], 0), *shifted(r["object"], 0), r["label"])
                                       for r in output["relations"]}  # fmt: skip
        across += sum(sentence_at.get(r["subject"]["start"]) != sentence_at.get(r["object"]["start"])
                      for r in output["relations"])  # fmt: skip
    print(json.dumps({
        "documents": len(documents), "options": options, "sentences_s": round(sentence_seconds, 2),
        "documents_s": round(document_seconds, 2), "time_ratio": round(document_seconds / sentence_seconds, 2),
        "entity_agreement_f1": f1(sets["sentence_entities"], sets["document_entities"]),
        "entity_f1_sentences": f1(sets["gold_entities"], sets["sentence_entities"]),
        "entity_f1_documents": f1(sets["gold_entities"], sets["document_entities"]),
        "relation_f1_sentences": f1(sets["gold_relations"], sets["sentence_relations"]),
        "relation_f1_documents": f1(sets["gold_relations"], sets["document_relations"]),
        "relations_across_sentences": across,
        "pairs_beyond_reach": sum(output.get("pairs_beyond_reach", 0) for output in by_document),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
