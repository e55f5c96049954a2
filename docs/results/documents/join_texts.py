"""Join consecutive texts of an entity-list file (with relations) into pseudo-documents of 1-3 texts (seeded), so
that pairs across sentences appear as no_relation examples. Usage: join.py IN OUT SEED."""

import json
import random
import sys

with open(sys.argv[1]) as lines:
    rows = [json.loads(line) for line in lines]
rng = random.Random(int(sys.argv[3]))
out, i = [], 0
while i < len(rows):
    group = rows[i : i + rng.choice((1, 2, 3))]
    i += len(group)
    text, entities, relations = "", [], []
    for row in group:
        offset = len(text) + (1 if text else 0)
        text = f"{text} {row['text']}" if text else row["text"]
        base = len(entities)
        entities += [{**e, "start": e["start"] + offset, "end": e["end"] + offset} for e in row["entities"]]
        relations += [{**r, "subject": r["subject"] + base, "object": r["object"] + base} for r in row["relations"]]
    for e in entities:
        assert text[e["start"] : e["end"]] == e["text"], e
    out.append({"id": "+".join(r["id"] for r in group), "text": text, "entities": entities, "relations": relations})
with open(sys.argv[2], "w") as f:
    for row in out:
        f.write(json.dumps(row) + "\n")
print(len(rows), "texts ->", len(out), "documents")
