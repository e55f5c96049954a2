"""TypedBert's span classifier as an entity model: its candidates and decoding, a forward that traces, the standard
token-classification pipeline (a text, a list, a generator, windows) in a clean process and from a Hub repo,
`train-entities --head span`, a relation model that extracts from raw text with it, and its ONNX graph."""

from __future__ import annotations

import json
import re

import pytest
import torch
from transformers import AutoTokenizer

from encoding_typed_bert import SpanCandidates, span_candidates, span_inputs, word_shape_ids
from modeling_typed_bert import TypedBertForSpanClassification
from pipeline_typed_bert import decode_spans
from tests.conftest import (
    entity_slices,
    hub_env,
    minilm_path,
    push_as_a_user,
    run_isolated,
    save_tiny_classifier,
    tiny_config,
)
from tests.test_relative_paths import typed_bert
from typed_bert.entities import bundle_entity_model, check_entity_model
from typed_bert.errors import InputError
from typed_bert.trainer import TypedBertTrainer

TEXT = "Bill Gates founded MICROSOFT in Redmond, Washington, in 1975."
TYPES = ["Loc", "Org", "Peop"]


def _span_model(folder, types=TYPES, **overrides) -> tuple[TypedBertForSpanClassification, object]:
    """A tiny span classifier (seed 0) whose scores are far from uniform, saved with MiniLM's tokenizer."""
    torch.manual_seed(0)
    labels = ["O", *types]
    config = tiny_config(vocab_size=30522, entity_types=["O"], input_mode="plain", word_shapes=True,
                         num_labels=len(labels), id2label=dict(enumerate(labels)),
                         label2id={label: i for i, label in enumerate(labels)}, **overrides)  # fmt: skip
    model = TypedBertForSpanClassification(config).eval()
    with torch.no_grad():
        model.span_head.classifier.weight.normal_(0, 3.0)
        model.span_head.classifier.bias[0] = 2.0  # most candidates are no entity, as after training
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return model, folder


def _entities_of(model, tokenizer, text: str) -> list[list]:
    """`[type, start, end]` of the entities the model finds in `text` read in one sequence, computed here."""
    encoding = tokenizer(text, return_offsets_mapping=True, return_tensors="pt")
    offsets = encoding.pop("offset_mapping")[0].tolist()
    candidates = span_candidates(encoding.word_ids(), offsets, text, model.config.max_span_width)
    with torch.no_grad():
        logits = model(**encoding, word_shape_ids=torch.tensor([word_shape_ids(text, offsets)]),
                       **span_inputs([candidates])).logits  # fmt: skip
    found = decode_spans(candidates.characters, logits.softmax(-1), model.config.id2label)
    return [[entity["entity_group"], entity["start"], entity["end"]] for entity in found]


def test_the_candidates_are_every_run_of_up_to_max_width_words():
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    text = "Son Heung-min's father, Woong-jung, lives in Chuncheon."
    encoding = tokenizer(text, return_offsets_mapping=True)
    candidates = span_candidates(encoding.word_ids(), encoding["offset_mapping"], text, 3)
    words = [match.span() for match in re.finditer(r"\w+|[^\w\s]", text)]  # BERT's pre-tokenized words
    expected = [(words[a][0], words[b][1]) for a in range(len(words)) for b in range(a, min(len(words), a + 3))]
    assert candidates.characters == expected
    assert candidates.widths == [b - a for a in range(len(words)) for b in range(a, min(len(words), a + 3))]
    chuncheon = candidates.characters.index((text.index("Chuncheon"), text.index(".", text.index("Chuncheon"))))
    first, last = candidates.first[chuncheon], candidates.last[chuncheon]
    assert last > first  # a word of several tokens: the span covers them all
    assert tokenizer.convert_ids_to_tokens(encoding["input_ids"][first : last + 1])[-1].startswith("##")


def test_span_inputs_put_every_candidate_of_a_batch_in_one_row():
    candidates = [SpanCandidates("", [1, 1, 2], [1, 3, 2], [0, 1, 0], []), SpanCandidates("", [1], [2], [0], [])]
    inputs = span_inputs(candidates)
    assert {name: tensor.tolist() for name, tensor in inputs.items()} == {
        "span_rows": [0, 0, 0, 1], "span_starts": [1, 1, 2, 1], "span_ends": [1, 3, 2, 2], "span_widths": [0, 1, 0, 0]
    }


@pytest.mark.parametrize("length", [1, 5, 17, 64])
def test_the_max_over_a_span_is_the_max_over_its_tokens_and_sends_its_gradient_there(length):
    model = TypedBertForSpanClassification(tiny_config(num_labels=3)).eval()
    states = torch.randn(2, length, 32, requires_grad=True)
    pairs = [(row, a, b) for row in range(2) for a in range(length) for b in range(a, length)]
    rows, starts, ends = (torch.tensor(column) for column in zip(*pairs, strict=True))
    got = model.span_head.span_max(states, rows, starts, ends)
    expected = torch.stack([states[row, a : b + 1].amax(0) for row, a, b in pairs])
    assert torch.equal(got, expected)
    got[-1].sum().backward()  # the last span: one token, the last of row 1
    assert states.grad[1, -1].abs().sum() > 0 and states.grad.abs().sum() == states.grad[1, -1].abs().sum()


def test_decoding_keeps_the_most_probable_spans_that_overlap_none_kept_before():
    characters = [(0, 4), (0, 10), (5, 10), (12, 20), (12, 20)]
    probabilities = torch.tensor([[0.2, 0.8, 0.0], [0.1, 0.0, 0.9], [0.3, 0.7, 0.0], [0.6, 0.4, 0.0],
                                  [0.1, 0.0, 0.9]])  # fmt: skip
    found = decode_spans(characters, probabilities, {0: "O", 1: "PER", 2: "ORG"})
    assert [(e["entity_group"], e["start"], e["end"]) for e in found] == [("ORG", 0, 10), ("ORG", 12, 20)]
    assert [e["score"] for e in found] == pytest.approx([0.9, 0.9])


def test_the_span_model_s_loss_and_its_exported_graph(tmp_path):
    model, _ = _span_model(tmp_path / "span")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    texts = [TEXT, "Bill Gates."]
    encoding = tokenizer(texts, padding=True, return_offsets_mapping=True, return_tensors="pt")
    offsets = encoding.pop("offset_mapping").tolist()
    candidates = [span_candidates(encoding.word_ids(i), offsets[i], text, 14) for i, text in enumerate(texts)]
    spans = span_inputs(candidates)
    flat = torch.randint(0, model.num_labels, spans["span_rows"].shape, generator=torch.Generator().manual_seed(0))
    counts = [len(candidate.first) for candidate in candidates]
    labels = torch.nn.utils.rnn.pad_sequence(flat.split(counts), batch_first=True, padding_value=-100)
    inputs = {**encoding, **spans, "word_shape_ids": torch.zeros_like(encoding["input_ids"])}
    with torch.no_grad():
        output = model(**inputs, labels=labels)
        first = {name: value[:1] for name, value in encoding.items()}
        one = model(**first, word_shape_ids=inputs["word_shape_ids"][:1], **span_inputs(candidates[:1])).logits
        exported = torch.export.export(model, args=(), kwargs=inputs, strict=False).module()(**inputs)
    assert output.logits.shape == (sum(counts), model.num_labels)
    assert labels.shape == (2, max(counts)) and (labels[1] == -100).sum() == counts[0] - counts[1]
    torch.testing.assert_close(output.loss, torch.nn.functional.cross_entropy(output.logits, flat))
    torch.testing.assert_close(output.logits[: len(one)], one, atol=1e-5, rtol=0)  # padding changes nothing
    torch.testing.assert_close(exported.logits, output.logits)


def test_the_standard_pipeline_in_a_clean_process_finds_what_the_model_gives(tmp_path):
    model, folder = _span_model(tmp_path / "span")
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["TypedBertForSpanClassification"]
    assert config["auto_map"]["AutoModelForTokenClassification"] == "modeling_typed_bert.TypedBertForSpanClassification"
    result = run_isolated(
        f"""
        import json
        from transformers import AutoModelForTokenClassification, pipeline
        recognize = pipeline("token-classification", model={str(folder)!r}, trust_remote_code=True)
        entities = lambda found: [[e["entity_group"], e["start"], e["end"]] for e in found]
        loaded = AutoModelForTokenClassification.from_pretrained({str(folder)!r}, trust_remote_code=True)
        print(json.dumps({{"class": type(recognize).__name__, "model": type(loaded).__name__,
                          "one": entities(recognize({TEXT!r})),
                          "list": [entities(f) for f in recognize([{TEXT!r}, "Bill Gates."], batch_size=2)],
                          "generator": [entities(f) for f in recognize(t for t in [{TEXT!r}, {TEXT!r}])],
                          "words": [e["word"] for e in recognize({TEXT!r})]}}))
        """,
        tmp_path,
    )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    expected = _entities_of(model, tokenizer, TEXT)
    assert expected  # the test means something: the model finds entities
    assert result["class"] == "TypedBertSpanClassificationPipeline"
    assert result["model"] == "TypedBertForSpanClassification"
    assert result["one"] == expected and result["generator"] == [expected, expected]
    assert result["list"] == [expected, _entities_of(model, tokenizer, "Bill Gates.")]
    assert result["words"] == [TEXT[start:end] for _, start, end in expected]


def test_windows_give_non_overlapping_entities_each_one_a_candidate_of_a_window(tmp_path):
    from transformers import pipeline

    model, folder = _span_model(tmp_path / "span")
    recognize = pipeline("token-classification", model=str(folder), trust_remote_code=True)
    document = " ".join([TEXT] * 6)
    found = recognize(document, max_length=24, stride=6)
    spans = [(e["start"], e["end"]) for e in found]
    assert found and spans == sorted(spans)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False))
    assert max(end for _, end in spans) > len(TEXT) * 3  # windows reach the end of the document
    words = [match.span() for match in re.finditer(r"\w+|[^\w\s]", document)]
    starts, ends = {start for start, _ in words}, {end for _, end in words}
    assert all(start in starts and end in ends for start, end in spans)  # no entity in part of a word a window cut
    assert recognize(TEXT, max_length=64) == recognize(TEXT)
    with pytest.raises(ValueError, match="stride=30"):
        recognize(TEXT, max_length=24, stride=30)


def test_push_to_hub_then_the_standard_pipeline_from_the_repo(tmp_path, local_hub):
    model, folder = _span_model(tmp_path / "span")
    commit = push_as_a_user(folder, "org/spans", tmp_path, local_hub)
    result = run_isolated(
        f"""
        import json
        from transformers import pipeline
        recognize = pipeline("token-classification", model="org/spans", revision={commit!r}, trust_remote_code=True)
        print(json.dumps([[e["entity_group"], e["start"], e["end"]] for e in recognize({TEXT!r})]))
        """,
        tmp_path,
        env={**hub_env(local_hub), "HF_HOME": str(tmp_path / "hf-home")},
    )
    assert result == _entities_of(model, AutoTokenizer.from_pretrained(folder), TEXT)


def test_a_relation_model_bundles_a_span_entity_model_and_extracts_from_raw_text(tmp_path):
    model, folder = _span_model(tmp_path / "span")
    check_entity_model(folder, ["O", *TYPES])
    with pytest.raises(InputError, match=r"entity types \['Peop'\]"):
        check_entity_model(folder, ["O", "Loc", "Org"])
    relations = save_tiny_classifier(tmp_path / "re", ["O", *TYPES])
    code = relations / "pipeline_typed_bert.py"
    code.write_text(code.read_text().replace("TypedBertSpanClassificationPipeline", "Before"))  # older code
    bundle_entity_model(relations, folder)
    assert "class TypedBertSpanClassificationPipeline" in code.read_text()  # this version's, which reads spans
    result = run_isolated(
        f"""
        import json
        from transformers import pipeline
        classify = pipeline("relation-classification", model={str(relations)!r}, trust_remote_code=True)
        out = classify({TEXT!r})
        document = classify(" ".join([{TEXT!r}] * 8))
        print(json.dumps({{"recognizer": type(classify.entity_recognition.recognizer).__name__,
                          "entities": [[e["type"], e["start"], e["end"]] for e in out["entities"]],
                          "relations": len(out["relations"]), "document": len(document["entities"])}}))
        """,
        tmp_path,
    )
    assert result["recognizer"] == "TypedBertSpanClassificationPipeline"
    assert result["entities"] == _entities_of(model, AutoTokenizer.from_pretrained(folder), TEXT)
    assert result["document"] >= 4 * len(result["entities"])  # every window of the document is read


def test_onnx_export_of_a_span_entity_model_extracts_as_pytorch_does(tmp_path):
    pytest.importorskip("onnxscript")
    from transformers import pipeline

    from typed_bert.onnx_export import export_onnx
    from typed_bert.onnx_runtime import onnx_pipeline

    _, folder = _span_model(tmp_path / "span")
    relations = save_tiny_classifier(tmp_path / "re", ["O", *TYPES])
    bundle_entity_model(relations, folder)
    report = export_onnx(relations, tmp_path / "onnx")
    assert report["entities"]["fp32"]["max_logit_difference"] <= 1e-4
    assert report["entities"]["fp32"]["label_agreement"] == 1.0
    document = " ".join([TEXT] * 5)
    texts = [TEXT, document, "Bill Gates."]
    expected = pipeline("relation-classification", model=str(relations), trust_remote_code=True)(texts)
    got = onnx_pipeline(tmp_path / "onnx")(texts)
    recognizer = onnx_pipeline(tmp_path / "onnx").entity_recognition.recognizer
    assert type(recognizer).__name__ == "TypedBertSpanClassificationPipeline"
    assert [[(e["start"], e["end"], e["type"]) for e in out["entities"]] for out in got] == [
        [(e["start"], e["end"], e["type"]) for e in out["entities"]] for out in expected
    ]
    assert any(out["entities"] for out in got)


def test_the_span_head_trains_at_its_own_rate_and_the_tables_at_theirs(tmp_path):
    from transformers import TrainingArguments

    model, _ = _span_model(tmp_path / "span")
    args = TrainingArguments(output_dir=str(tmp_path / "out"), learning_rate=2e-4, report_to="none", use_cpu=True)
    trainer = TypedBertTrainer(model=model, args=args, table_learning_rate=1e-3, head_learning_rate=5e-4)
    groups = trainer.create_optimizer().param_groups
    by_rate = {group["lr"]: {id(p) for p in group["params"]} for group in groups}
    assert by_rate[5e-4] == {id(p) for p in model.span_head.parameters()}
    assert by_rate[1e-3] == {id(model.bert.embeddings.word_shape_embeddings.weight)}


@pytest.mark.slow
def test_train_entities_head_span_with_relative_paths_then_the_pipeline_scores_as_recorded(tiny_bert_dir, tmp_path):
    entity_slices(tmp_path / "data", 40, 20)
    typed_bert(tmp_path, "train-entities", "--base-model", str(tiny_bert_dir), "--train-file", "data/train.jsonl",
               "--validation-file", "data/dev.jsonl", "--output-dir", "ner", "--head", "span", "--max-steps", "4")
    folder = tmp_path / "ner"
    config = json.loads((folder / "config.json").read_text())
    results = json.loads((folder / "eval_results.json").read_text())
    assert config["architectures"] == ["TypedBertForSpanClassification"] and config["word_shapes"] is True
    assert config["id2label"]["0"] == "O" and set(config["id2label"].values()) - {"O"} == (
        {e["type"] for line in (tmp_path / "data" / "train.jsonl").read_text().splitlines()
         for e in json.loads(line)["entities"]})  # fmt: skip
    assert results["settings"]["head"] == "span" and results["settings"]["epochs"] == 15.0
    assert results["train_steps"] == 4 and results["entities_out_of_reach_of_the_candidates"] == 0
    card = (folder / "README.md").read_text()
    assert "TypedBert span classifier" in card and 'model="PATH_OR_REPO", trust_remote_code=True)' in card
    from typed_bert.entities import load_entity_texts, score_entity_model

    scores = score_entity_model(str(folder), load_entity_texts(tmp_path / "data" / "dev.jsonl"), dtype=torch.bfloat16)
    assert scores["f1"] == pytest.approx(results["entity_micro_f1"])
