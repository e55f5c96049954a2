"""What an ONNX export changes in the answers: entity and strict end-to-end relation micro-F1 against gold on an
entity-list file (raw text in), and the agreement of every gold-entity pair's label with PyTorch fp32, for PyTorch
fp32 and each graph of the export.

    python docs/results/serving/onnx_quality.py MODEL EXPORT ../shared/data/conll04/dev_entities.jsonl > record.json
"""

from __future__ import annotations

import json
import sys

from transformers import pipeline

from typed_bert.end_to_end import gold_triples, relation_triples
from typed_bert.entities import load_entity_texts
from typed_bert.entity_heads import entity_spans, span_scores
from typed_bert.onnx_runtime import onnx_pipeline


def scores(classify, texts: list[dict]) -> tuple[dict, list[str]]:
    outputs = classify([text["text"] for text in texts], batch_size=16)
    entities = span_scores([entity_spans(t["entities"]) for t in texts], [entity_spans(o["entities"]) for o in outputs])
    relations = span_scores([gold_triples(t) for t in texts], [relation_triples(o["relations"]) for o in outputs])
    given = [{"text": t["text"], "entities": t["entities"]} for t in texts]
    labels = [r["label"] for output in classify(given, batch_size=16, keep_no_relation=True) for r in output]
    return {"entity_micro_f1": entities["f1"], "end_to_end_relation_micro_f1": relations["f1"]}, labels


def main(model: str, export: str, data_file: str) -> dict:
    texts = load_entity_texts(data_file)
    backends = {"pytorch fp32": lambda: pipeline("relation-classification", model=model, trust_remote_code=True),
                "onnx runtime fp32": lambda: onnx_pipeline(export, "fp32"),
                "onnx runtime int8": lambda: onnx_pipeline(export, "int8")}  # fmt: skip
    record, reference = {"data_file": data_file, "texts": len(texts)}, None
    for name, load in backends.items():
        figures, labels = scores(load(), texts)
        reference = reference or labels
        figures["gold_pairs"] = len(labels)
        figures["gold_pair_label_agreement"] = sum(a == b for a, b in zip(labels, reference, strict=True)) / len(labels)
        record[name] = figures
        print(name, figures, file=sys.stderr, flush=True)
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main(*sys.argv[1:4])
