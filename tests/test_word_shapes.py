"""The word-shape table of TypedBert's entity model: shapes read from the text, a lossless start from BERT, the
standard token-classification pipeline from a saved folder, train-entities --word-shapes, and a bundled entity model
with the table extracting from raw text."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

from configuration_typed_bert import WORD_SHAPES
from encoding_typed_bert import word_shape, word_shape_ids
from modeling_typed_bert import TypedBertForTokenClassification
from tests.conftest import (
    entity_slices,
    hub_env,
    minilm_path,
    push_as_a_user,
    run_isolated,
    run_script,
    save_tiny_classifier,
)
from typed_bert.entities import bundle_entity_model
from typed_bert.entity_heads import bio_labels

TEXT = "Bill Gates founded MICROSOFT in 1975, with McAllister."


def test_each_word_gets_its_shape():
    assert [WORD_SHAPES[word_shape(word)] for word in ("gates", "Gates", "IBM", "iPhone", "1975", ",", "I")] == [
        "lower", "title", "upper", "mixed", "digit", "other", "title"
    ]  # fmt: skip
    assert WORD_SHAPES[word_shape(".", glued=True)] == "glued other"
    assert WORD_SHAPES[word_shape("min", glued=True)] == "glued lower"


def test_a_word_glued_to_the_one_before_is_told_apart():
    """ "Boise." and "Boise ." tokenize the same; the shapes tell the model which one it reads."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    shapes = {}
    for text in ("He lives in Boise.", "He lives in Boise ."):
        encoding = tokenizer(text, return_offsets_mapping=True)
        shapes[text] = [WORD_SHAPES[i] for i in word_shape_ids(text, encoding["offset_mapping"])]
    assert shapes["He lives in Boise."][-2:] == ["glued other", "none"]
    assert shapes["He lives in Boise ."][-2:] == ["other", "none"]
    assert shapes["He lives in Boise."][:-2] == shapes["He lives in Boise ."][:-2]


def test_word_shape_ids_follow_the_tokenizer_offsets_to_the_whole_word():
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    encoding = tokenizer(TEXT, return_offsets_mapping=True)
    names = [WORD_SHAPES[i] for i in word_shape_ids(TEXT, encoding["offset_mapping"])]
    shapes = dict(zip(tokenizer.convert_ids_to_tokens(encoding["input_ids"]), names, strict=True))
    assert shapes["[CLS]"] == shapes["[SEP]"] == "none"
    assert shapes["bill"] == shapes["gates"] == "title" and shapes["founded"] == "lower"
    assert shapes["microsoft"] == "upper" and shapes["1975"] == "digit" and shapes[","] == "glued other"
    # every piece of "McAllister" has the word's shape, not its own ("##ster" alone reads as lower case)
    pieces = [i for i, (start, end) in enumerate(encoding["offset_mapping"]) if TEXT.find("McAllister") <= start < end
              <= TEXT.find("McAllister") + 10]  # fmt: skip
    assert len(pieces) > 1
    assert {word_shape_ids(TEXT, encoding["offset_mapping"])[i] for i in pieces} == {WORD_SHAPES.index("mixed")}


def _tiny_tagger(folder, labels):
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=37, id2label=dict(enumerate(labels)),
                        label2id={label: i for i, label in enumerate(labels)})  # fmt: skip
    torch.manual_seed(0)
    BertForTokenClassification(config).eval().save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return folder


def test_a_bert_tagger_converts_losslessly_and_the_table_then_changes_the_logits(tmp_path):
    labels = bio_labels(["PER", "ORG"])
    folder = _tiny_tagger(tmp_path / "bert", labels)
    bert = BertForTokenClassification.from_pretrained(folder).eval()
    typed = TypedBertForTokenClassification.from_pretrained(folder, word_shapes=True, input_mode="plain").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoding = tokenizer(TEXT, return_offsets_mapping=True, return_tensors="pt")
    shapes = torch.tensor([word_shape_ids(TEXT, encoding.pop("offset_mapping")[0].tolist())])
    assert not typed.bert.embeddings.word_shape_embeddings.weight.any()
    with torch.no_grad():
        expected = bert(**encoding).logits
        assert torch.equal(typed(**encoding, word_shape_ids=shapes).logits, expected)
        typed.bert.embeddings.word_shape_embeddings.weight.normal_()
        assert not torch.allclose(typed(**encoding, word_shape_ids=shapes).logits, expected)


def _saved_shape_tagger(tmp_path, labels) -> tuple[TypedBertForTokenClassification, object]:
    """A tiny word-shape tagger whose shape table holds noise (so the shapes decide some tags), saved with MiniLM's
    tokenizer to TMP/typed; the model and the folder."""
    model = TypedBertForTokenClassification.from_pretrained(
        _tiny_tagger(tmp_path / "bert", labels), word_shapes=True, input_mode="plain"
    ).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        model.bert.embeddings.word_shape_embeddings.weight[1:].normal_(std=3.0)
    folder = tmp_path / "typed"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return model, folder


def test_the_standard_token_classification_pipeline_reads_the_shapes_in_a_clean_process(tmp_path):
    labels = bio_labels(["PER", "ORG"])
    model, folder = _saved_shape_tagger(tmp_path, labels)
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["TypedBertForTokenClassification"] and config["word_shapes"] is True

    result = run_isolated(
        f"""
        import json
        from transformers import pipeline
        recognize = pipeline("token-classification", model={str(folder)!r}, trust_remote_code=True)
        words = pipeline("token-classification", model={str(folder)!r}, trust_remote_code=True,
                         aggregation_strategy="average")
        print(json.dumps({{"class": type(recognize).__name__,
                          "tokens": [[int(t["index"]), t["entity"], float(t["score"])] for t in recognize({TEXT!r})],
                          "entities": [[e["entity_group"], e["start"], e["end"]] for e in words([{TEXT!r}])[0]]}}))
        """,
        tmp_path,
    )
    assert result["class"] == "TypedBertTokenClassificationPipeline"
    encoding = AutoTokenizer.from_pretrained(folder)(TEXT, return_offsets_mapping=True, return_tensors="pt")
    offsets = encoding.pop("offset_mapping")[0].tolist()
    shapes = torch.tensor([word_shape_ids(TEXT, offsets)])
    with torch.no_grad():
        with_shapes = model(**encoding, word_shape_ids=shapes).logits.softmax(-1)[0]
        without = model(**encoding).logits.softmax(-1)[0]
    expected = [[i, labels[int(p.argmax())], float(p.max())] for i, p in enumerate(with_shapes) if p.argmax() != 0]
    assert [[i, label] for i, label, _ in result["tokens"]] == [[i, label] for i, label, _ in expected]
    assert [score for *_, score in result["tokens"]] == pytest.approx([score for *_, score in expected], abs=1e-5)
    assert with_shapes.argmax(-1).tolist() != without.argmax(-1).tolist()  # the shapes decided some tags
    assert result["entities"] == _bio_entities(with_shapes, encoding.word_ids(), offsets, labels)


def _bio_entities(probabilities, word_ids, offsets, labels) -> list[list]:
    """`[type, start, end]` of the entities that the words' averaged tag probabilities give along the BIO-constrained
    path (`constrained_bio_path`): a word `B-T` starts one, `I-T` extends it."""
    from pipeline_typed_bert import constrained_bio_path

    words = sorted({word for word in word_ids if word is not None})
    tokens = [[i for i, w in enumerate(word_ids) if w == word] for word in words]
    average = torch.stack([probabilities[positions].mean(0) for positions in tokens])
    entities = []
    for positions, (tag, _) in zip(tokens, constrained_bio_path(average.double(), labels), strict=True):
        start, end = offsets[positions[0]][0], offsets[positions[-1]][1]
        if labels[tag].startswith("I-"):
            entities[-1][2] = end
        elif labels[tag] != "O":
            entities.append([labels[tag][2:], start, end])
    return entities


def test_push_to_hub_then_the_standard_pipeline_from_the_repo_reads_the_shapes(tmp_path, local_hub):
    """`model.push_to_hub` / `tokenizer.push_to_hub` as a user calls them (in a fresh process), then
    `pipeline("token-classification", model=repo, revision=commit, trust_remote_code=True)` in a clean process: the
    same tags as the local model."""
    labels = bio_labels(["PER", "ORG"])
    model, folder = _saved_shape_tagger(tmp_path, labels)
    commit = push_as_a_user(folder, "org/tagger", tmp_path, local_hub)
    result = run_isolated(
        f"""
        import json
        from transformers import pipeline
        recognize = pipeline("token-classification", model="org/tagger", revision={commit!r}, trust_remote_code=True)
        print(json.dumps([[int(t["index"]), t["entity"]] for t in recognize([{TEXT!r}])[0]]))
        """,
        tmp_path,
        env={**hub_env(local_hub), "HF_HOME": str(tmp_path / "hf-home")},
    )
    encoding = AutoTokenizer.from_pretrained(minilm_path())(TEXT, return_offsets_mapping=True, return_tensors="pt")
    shapes = torch.tensor([word_shape_ids(TEXT, encoding.pop("offset_mapping")[0].tolist())])
    with torch.no_grad():
        tags = model(**encoding, word_shape_ids=shapes).logits.argmax(-1)[0].tolist()
    assert result == [[i, labels[tag]] for i, tag in enumerate(tags) if tag != 0]


@pytest.mark.slow
def test_train_entities_word_shapes_bundled_in_a_relation_model_extracts_from_raw_text(tiny_bert_dir, tmp_path):
    data = tmp_path / "data"
    entity_slices(data, 40, 20)
    run_script([sys.executable, "scripts/train_entities.py", "--base-model", str(tiny_bert_dir),
                "--train-file", str(data / "train.jsonl"), "--validation-file", str(data / "dev.jsonl"),
                "--output-dir", str(tmp_path / "ner"), "--max-steps", "3", "--head", "tagger"])  # fmt: skip
    config = json.loads((tmp_path / "ner" / "config.json").read_text())
    assert config["word_shapes"] is True and config["architectures"] == ["TypedBertForTokenClassification"]
    card = (tmp_path / "ner" / "README.md").read_text()
    assert "TypedBert token classifier" in card and '"average", trust_remote_code=True)' in card
    entity_types = sorted({e["type"] for line in (data / "train.jsonl").read_text().splitlines()
                           for e in json.loads(line)["entities"]})  # fmt: skip
    relations = save_tiny_classifier(tmp_path / "re", ["O", *entity_types])
    bundle_entity_model(relations, tmp_path / "ner")
    result = run_isolated(
        f"""
        import json
        from transformers import pipeline
        classify = pipeline("relation-classification", model={str(relations)!r}, trust_remote_code=True)
        out = classify({TEXT!r})
        print(json.dumps({{"recognizer": type(classify.entity_recognition.recognizer).__name__,
                          "model": type(classify.entity_recognition.recognizer.model).__name__, "keys": sorted(out)}}))
        """,
        tmp_path,
    )
    assert result == {"recognizer": "TypedBertTokenClassificationPipeline",
                      "model": "TypedBertForTokenClassification", "keys": ["entities", "relations"]}  # fmt: skip


def test_constrained_bio_path_never_cuts_an_entity_with_a_tag_of_another_type():
    from pipeline_typed_bert import constrained_bio_path

    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    probabilities = torch.tensor(
        [
            [0.1, 0.8, 0.0, 0.1, 0.0],  # "Dan": B-LOC
            [0.1, 0.0, 0.4, 0.0, 0.5],  # "Sai": I-PER is its best tag, but I-PER cannot follow B-LOC
            [0.1, 0.1, 0.7, 0.1, 0.0],  # "District": I-LOC
            [0.2, 0.0, 0.0, 0.0, 0.8],  # an I-PER after I-LOC: B-PER is not likely, O is the best allowed
        ]
    )
    path = constrained_bio_path(probabilities, labels)
    assert [labels[tag] for tag, _ in path] == ["B-LOC", "I-LOC", "I-LOC", "O"]
    assert [round(p, 2) for _, p in path] == [0.8, 0.4, 0.7, 0.2]
    # without prefixes nothing is constrained: each word keeps its best tag
    assert [tag for tag, _ in constrained_bio_path(probabilities[:, :3], ["X", "Y", "Z"])] == [1, 2, 2, 0]


def test_constrained_bio_path_is_the_most_probable_sequence_bio_allows():
    """Against every tag sequence of up to four words (brute force): the path is an allowed one of the highest
    product of probabilities."""
    import itertools

    from pipeline_typed_bert import constrained_bio_path

    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]

    def allowed(tags):
        previous = ["O", *[labels[tag] for tag in tags]]
        return all(not labels[tag].startswith("I-") or previous[i][2:] == labels[tag][2:] and previous[i] != "O"
                   for i, tag in enumerate(tags))  # fmt: skip

    generator = torch.Generator().manual_seed(0)
    for words in range(1, 5):
        for _ in range(20):
            probabilities = (torch.randn(words, len(labels), generator=generator) * 2).softmax(-1).double()
            best = max((tags for tags in itertools.product(range(len(labels)), repeat=words) if allowed(tags)),
                       key=lambda tags: float(probabilities[torch.arange(words), list(tags)].log().sum()))  # fmt: skip
            assert [tag for tag, _ in constrained_bio_path(probabilities, labels)] == list(best)


@pytest.mark.parametrize("strategy", ["first", "max", "average"])
def test_word_probabilities_are_those_transformers_aggregation_reads(strategy):
    """Each word's tag probabilities, computed for all words at once, equal what transformers' own per-word
    aggregation reads (its best tag and score), a NaN score included (`average` leaves it out)."""
    import numpy as np
    from transformers.pipelines import TokenClassificationPipeline
    from transformers.pipelines.token_classification import AggregationStrategy

    from pipeline_typed_bert import word_probabilities

    rng = np.random.default_rng(0)
    subword = [False, True, True, False, False, True, False, True]
    tokens = [{"scores": rng.dirichlet(np.ones(5)).astype(np.float32), "is_subword": flag, "word": "w", "start": i,
               "end": i + 1} for i, flag in enumerate(subword)]  # fmt: skip
    if strategy == "average":
        tokens[2]["scores"][1] = np.nan
    starts = [0, 3, 4, 6]
    stub = TokenClassificationPipeline.__new__(TokenClassificationPipeline)
    stub.tokenizer = type("Tokenizer", (), {"convert_tokens_to_string": staticmethod(" ".join)})()
    stub.model = type("Model", (), {"config": type("Config", (), {"id2label": dict(enumerate("abcde"))})()})()
    words = word_probabilities(torch.as_tensor(np.stack([token["scores"] for token in tokens])), starts,
                               AggregationStrategy(strategy))
    for word, (start, end) in zip(words, zip(starts, [*starts[1:], len(tokens)], strict=True), strict=True):
        expected = TokenClassificationPipeline.aggregate_word(stub, tokens[start:end], AggregationStrategy(strategy))
        assert "abcde"[int(np.nanargmax(word.numpy()))] == expected["entity"]
        assert float(np.nanmax(word.numpy())) == pytest.approx(float(expected["score"]), abs=1e-6)


@pytest.mark.parametrize("strategy", ["first", "average", "max"])
def test_the_entities_of_a_window_are_those_transformers_postprocess_gives(tmp_path, strategy):
    """Where each word's own best tag already follows BIO (so the constraint changes nothing), the words, tags,
    spans, texts and scores that `window_words` / `group_words` read from a window's tensors equal those of
    transformers' own postprocess (a dict per token, then its aggregation and grouping): with subwords, an unknown
    token, pre-tokenized words and a text read in overlapping windows."""
    from transformers import AutoModelForTokenClassification
    from transformers.pipelines import TokenClassificationPipeline

    from pipeline_typed_bert import TypedBertTokenClassificationPipeline

    labels = bio_labels(["PER", "ORG"])
    folder = _tiny_tagger(tmp_path / "bert", labels)
    pipe = TypedBertTokenClassificationPipeline(model=AutoModelForTokenClassification.from_pretrained(folder),
                                                tokenizer=AutoTokenizer.from_pretrained(folder))  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    cases = [
        (TEXT, {}),
        ("Ms. ☃ McAllister-Wong met IBM ☃ in Chuncheon.", {}),
        (["Son", "Heung-min", "met", "McAllister", "in", "Chuncheon", "."], {"is_split_into_words": True}),
        (" ".join([TEXT] * 4), {"max_length": 24, "stride": 6}),
    ]
    found = 0
    for sentence, options in cases:
        preprocess, _, postprocess = pipe._sanitize_parameters(aggregation_strategy=strategy, **options)
        outputs = [pipe._forward(inputs) for inputs in pipe.preprocess(sentence, **preprocess)]
        for output in outputs:
            output["logits"] = _logits_of_bio_words(pipe, output, outputs[0], labels, generator)
        ours = pipe.postprocess(outputs, **postprocess)
        theirs = TokenClassificationPipeline.postprocess(pipe, outputs, **postprocess)
        assert ours
        found += len(ours)
        assert [{**entity, "score": pytest.approx(float(entity["score"]), abs=1e-6)} for entity in theirs] == ours
    assert found >= 10


def _logits_of_bio_words(pipe, output, first, labels, generator) -> torch.Tensor:
    """Logits `(1, seq, labels)` that give every token of a word (as transformers' `gather_pre_entities` finds
    words) the word's tag, clearly, with noise; the words' tags a random sequence that BIO allows."""
    from transformers.pipelines import TokenClassificationPipeline
    from transformers.pipelines.token_classification import AggregationStrategy

    seq = output["input_ids"].shape[1]
    tokens = TokenClassificationPipeline.gather_pre_entities(
        pipe, first["sentence"], output["input_ids"][0], torch.zeros(seq, len(labels)).numpy(),
        output["offset_mapping"][0], output["special_tokens_mask"][0].numpy(), AggregationStrategy.FIRST,
        word_ids=output.get("word_ids"), word_to_chars_map=first.get("word_to_chars_map"),
    )  # fmt: skip
    logits = torch.randn(1, seq, len(labels), generator=generator) * 0.5
    tag = 0
    for token in tokens:
        if not token["is_subword"]:
            choices = [0, 1, 3] + ([tag + 1 if labels[tag].startswith("B-") else tag] if tag else [])
            tag = choices[int(torch.randint(len(choices), (1,), generator=generator))]
        logits[0, token["index"], tag] += 8.0
    return logits
