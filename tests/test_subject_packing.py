"""Subject-oriented packing (`pair_encoding="per_subject"`): the encoding, `TypedBertForSequenceClassification` on
packed sequences, its checkpoints and the pipeline that packs for it; the pair-encoding interface both encodings
share."""

from __future__ import annotations

import itertools
import json
import sys

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from configuration_typed_bert import OBJECT_ROLE, SUBJECT_ROLE, TypedBertConfig
from encoding_typed_bert import (
    PerPairEncoding,
    SubjectPackedPairs,
    pair_encoding_for,
    pair_logits,
)
from modeling_typed_bert import TypedBertForSequenceClassification
from pipeline_typed_bert import RelationClassificationPipeline
from tests.conftest import (
    REPO_ROOT,
    minilm_path,
    run_isolated,
    run_script,
    save_tiny_classifier,
    tiny_config,
    train_tiny,
)
from typed_bert.batching import TypedBertDataCollator

pytestmark = pytest.mark.remote_code

TEXT = "Bill Gates founded Microsoft with Paul Allen in Albuquerque."
ENTITY_TYPES = ["O", "PER", "ORG"]
ENTITIES = [
    {"start": 0, "end": 10, "type": "PER"},
    {"start": 19, "end": 28, "type": "ORG"},
    {"start": 34, "end": 44, "type": "PER"},
    {"start": 48, "end": 59, "type": "ORG"},
]


def encode_subjects(tokenizer, text, entities, entity_types, max_length=None, pairs=None, objects_per_sequence=32):
    """`SubjectPackedPairs`' sequences of every ordered pair (or `pairs`) as `(subject, objects, features)`, and the
    skipped pairs."""
    pairs = list(itertools.permutations(range(len(entities)), 2)) if pairs is None else pairs
    encoded = SubjectPackedPairs(objects_per_sequence).encode(
        tokenizer, text, entities, entity_types, max_length, pairs
    )
    sequences = [(pairs[0][0], [j for _, j in pairs], features)
                 for features, pairs in zip(encoded.sequences, encoded.pairs, strict=True)]  # fmt: skip
    return sequences, encoded.skipped


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(minilm_path())


def packed_model(attn_implementation: str = "sdpa") -> TypedBertForSequenceClassification:
    """A tiny packed classifier with noise in its entity tables, as after training."""
    torch.manual_seed(0)
    config = tiny_config(vocab_size=30522, entity_types=ENTITY_TYPES, pair_encoding="per_subject")
    config._attn_implementation = attn_implementation
    model = TypedBertForSequenceClassification(config).eval()
    with torch.no_grad():
        for table in model.bert.embeddings.entity_tables():
            table.weight[1:].normal_()
    return model


def test_each_subject_gets_one_sequence_with_two_markers_per_object(tokenizer):
    sequences, skipped = encode_subjects(tokenizer, TEXT, ENTITIES, ENTITY_TYPES)
    assert skipped == []
    assert [(i, objects) for i, objects, _ in sequences] == [(i, [j for j in range(4) if j != i]) for i in range(4)]
    _, objects, features = sequences[1]  # subject: Microsoft
    text_length = len(tokenizer(TEXT)["input_ids"])
    assert len(features["input_ids"]) == text_length + 2 * len(objects)
    assert features["input_ids"][text_length:] == [tokenizer.mask_token_id] * 6
    assert features["marker_groups"] == [0] * text_length + [1, 1, 2, 2, 3, 3]
    assert features["object_positions"] == [text_length, text_length + 2, text_length + 4]
    roles = features["entity_role_ids"]
    assert {roles[p] for p in range(text_length)} == {0, SUBJECT_ROLE}
    assert roles[text_length:] == [OBJECT_ROLE] * 6
    # every entity's tokens carry its type in the text; each marker its object's type and first/last position
    encoding = tokenizer(TEXT, return_offsets_mapping=True)
    for j, start in zip(objects, features["object_positions"], strict=True):
        type_id = ENTITY_TYPES.index(ENTITIES[j]["type"])
        assert features["entity_type_ids"][start : start + 2] == [type_id, type_id]
        first, last = (features["position_ids"][start + k] for k in (0, 1))
        assert encoding["offset_mapping"][first][0] == ENTITIES[j]["start"]
        assert encoding["offset_mapping"][last][1] == ENTITIES[j]["end"]
        assert all(features["entity_type_ids"][p] == type_id for p in range(first, last + 1))


def test_overlapping_pairs_are_skipped_and_objects_are_chunked(tokenizer):
    nested = [*ENTITIES, {"start": 0, "end": 4, "type": "PER"}]  # "Bill", inside "Bill Gates"
    sequences, skipped = encode_subjects(tokenizer, TEXT, nested, ENTITY_TYPES, objects_per_sequence=2)
    assert sorted((i, j) for i, j, _ in skipped) == [(0, 4), (4, 0)]
    assert {error.reason for _, _, error in skipped} == {"overlapping"}
    assert [(i, objects) for i, objects, _ in sequences][:2] == [(0, [1, 2]), (0, [3])]
    with pytest.raises(ValueError, match=r"objects_per_sequence=0 must be a positive int"):
        encode_subjects(tokenizer, TEXT, ENTITIES, ENTITY_TYPES, objects_per_sequence=0)


def test_a_long_text_is_windowed_and_objects_no_window_holds_are_skipped(tokenizer):
    sequences, skipped = encode_subjects(tokenizer, TEXT, ENTITIES, ENTITY_TYPES, max_length=12, pairs=[(0, 1), (0, 3)])
    assert all(len(features["input_ids"]) <= 12 for _, _, features in sequences)
    assert [(i, objects) for i, objects, _ in sequences] == [(0, [1])]  # both did not fit; 0 and 1 do alone
    assert [(i, j, error.reason) for i, j, error in skipped] == [(0, 3, "too_far_apart")]


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_an_objects_logits_do_not_depend_on_the_other_objects_of_its_sequence(tokenizer, attn_implementation):
    model = packed_model(attn_implementation)
    collate = TypedBertDataCollator(tokenizer)
    packed, _ = encode_subjects(tokenizer, TEXT, ENTITIES, ENTITY_TYPES)
    with torch.no_grad():
        logits = model(**collate([features for _, _, features in packed])).logits  # a padded batch of 4 sequences
        for row, (i, objects, _) in enumerate(packed):
            for column, j in enumerate(objects):
                [(_, _, alone)] = encode_subjects(tokenizer, TEXT, ENTITIES, ENTITY_TYPES, pairs=[(i, j)])[0]
                expected = model(**collate([alone])).logits[0, 0]
                torch.testing.assert_close(logits[row, column], expected, atol=1e-5, rtol=0)


def test_a_packed_checkpoint_is_a_sequence_classifier_that_says_per_subject(tmp_path):
    save_tiny_classifier(tmp_path / "per_pair")
    per_pair = TypedBertForSequenceClassification.from_pretrained(tmp_path / "per_pair")
    per_pair.config.pair_encoding = "per_subject"
    per_pair.save_pretrained(tmp_path / "packed")
    config = json.loads((tmp_path / "packed" / "config.json").read_text())
    assert config["pair_encoding"] == "per_subject"
    assert config["architectures"] == ["TypedBertForSequenceClassification"]
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "packed", trust_remote_code=True)
    assert all(torch.equal(reloaded.state_dict()[name], value) for name, value in per_pair.state_dict().items())


@pytest.mark.parametrize("pair_encoding", ["per_pair", "per_subject"])
def test_every_pair_encoding_gives_each_wanted_pair_one_row_of_logits(tokenizer, pair_encoding):
    """The interface: `encode` → sequences and the pairs of each, in the order of `pair_logits` rows."""
    model = packed_model()
    model.config.pair_encoding = pair_encoding
    encoding = pair_encoding_for(model.config)
    assert isinstance(encoding, {"per_pair": PerPairEncoding, "per_subject": SubjectPackedPairs}[pair_encoding])
    nested = [*ENTITIES, {"start": 0, "end": 4, "type": "PER"}]  # "Bill" inside "Bill Gates"
    wanted = [(0, 1), (0, 2), (1, 0), (0, 4), (3, 2)]
    encoded = encoding.encode(tokenizer, TEXT, nested, ENTITY_TYPES, pairs=wanted)
    assert [(i, j) for i, j, _ in encoded.skipped] == [(0, 4)]
    assert sorted(pair for pairs in encoded.pairs for pair in pairs) == sorted(set(wanted) - {(0, 4)})
    assert len(encoded.sequences) == (4 if pair_encoding == "per_pair" else 3)
    with torch.no_grad():
        logits = pair_logits(model(**TypedBertDataCollator(tokenizer)(encoded.sequences)).logits)
    assert logits.shape[:2] == (len(encoded.sequences), max(len(pairs) for pairs in encoded.pairs))
    assert set(encoding.placeholder(tokenizer)) == set(encoded.sequences[0])


def test_per_subject_needs_entity_start_pooling_and_no_markers():
    with pytest.raises(ValueError, match=r"pair_encoding='per_subject' .* input_mode='typed-markers'"):
        TypedBertConfig(pair_encoding="per_subject", input_mode="typed-markers")
    with pytest.raises(ValueError, match=r"classifier_pooling='cls'"):
        TypedBertConfig(pair_encoding="per_subject", classifier_pooling="cls")


def test_the_pipeline_of_a_packed_checkpoint_gives_the_packed_models_scores_in_a_clean_process(tmp_path, tokenizer):
    folder = save_tiny_classifier(tmp_path / "model", ENTITY_TYPES, pair_encoding="per_subject")
    model = TypedBertForSequenceClassification.from_pretrained(folder).eval()
    collate = TypedBertDataCollator(tokenizer)
    expected = {}
    with torch.no_grad():
        for i, objects, features in encode_subjects(tokenizer, TEXT, ENTITIES, ENTITY_TYPES)[0]:
            probabilities = model(**collate([features])).logits[0].softmax(-1)
            for column, j in enumerate(objects):
                expected[f"{i},{j}"] = probabilities[column].max().item()
        [(_, _, pair)] = encode_subjects(tokenizer, TEXT, ENTITIES[:2], ENTITY_TYPES)[0][:1]
        single = model(**collate([pair])).logits[0, 0].softmax(-1).max().item()
    result = run_isolated(
        f"""
        import json
        from transformers import pipeline
        classify = pipeline("relation-classification", model={str(folder)!r}, trust_remote_code=True)
        entities = {ENTITIES!r}
        relations = classify({{"text": {TEXT!r}, "entities": entities}}, keep_no_relation=True)
        pair = classify({{"text": {TEXT!r}, "subject": entities[0], "object": entities[1]}})
        scores = {{f"{{entities.index(r['subject'])}},{{entities.index(r['object'])}}": r["score"] for r in relations}}
        print(json.dumps({{"scores": scores, "pair": pair["score"], "class": type(classify.model).__name__}}))
        """,
        tmp_path,
    )
    assert result["class"] == "TypedBertForSequenceClassification"
    assert result["scores"].keys() == expected.keys()
    for key, score in expected.items():
        assert result["scores"][key] == pytest.approx(score, abs=1e-5)
    assert result["pair"] == pytest.approx(single, abs=1e-5)  # a pair alone is a text with those two entities


def test_the_pipeline_runs_a_packed_model_instance_on_a_list(tokenizer):
    model = packed_model()
    classify = RelationClassificationPipeline(model=model, tokenizer=tokenizer)
    relations = classify([{"text": TEXT, "entities": ENTITIES}] * 2, keep_no_relation=True)
    assert [len(result) for result in relations] == [12, 12]
    assert relations[0] == relations[1]


@pytest.mark.slow
def test_train_per_subject_writes_a_packed_model_that_evaluate_scores_the_same(tiny_bert_dir, small_data, tmp_path):
    out = tmp_path / "out"
    train_tiny(tiny_bert_dir, small_data, out, "--pair-encoding", "per_subject", "--precision", "fp32")
    results = json.loads((out / "eval_results.json").read_text())
    assert results["pair_encoding"] == "per_subject"
    assert json.loads((out / "config.json").read_text())["pair_encoding"] == "per_subject"
    evaluated = run_script(
        [sys.executable, "scripts/evaluate.py", "--model", str(out), "--data-file", str(small_data["dev"]),
         "--dtype", "fp32"]
    )  # fmt: skip
    scores = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert scores["num_examples"] == results["num_examples"] == 60
    assert scores["auprc"] == pytest.approx(results["auprc"], abs=1e-6)


@pytest.mark.slow
def test_per_subject_with_a_marker_input_mode_is_one_clear_line(tiny_bert_dir, small_data, tmp_path):
    import subprocess

    result = subprocess.run(
        [sys.executable, "scripts/train.py", "--base-model", str(tiny_bert_dir),
         "--train-file", str(small_data["train"]), "--validation-file", str(small_data["dev"]),
         "--output-dir", str(tmp_path / "out"),
         "--pair-encoding", "per_subject", "--input-mode", "typed-markers"],
        capture_output=True, text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "pair_encoding='per_subject'" in result.stderr and "expected" in result.stderr


def test_lora_on_the_packed_class_trains_saves_and_merges(tmp_path, tokenizer):
    """`peft.get_peft_model` with the README's LoRA recipe on a packed classifier: the packed inputs pass
    through PEFT's wrapper, the adapter reloads onto a fresh model with the same logits, and merging keeps them."""
    peft = pytest.importorskip("peft", reason="PEFT is a dependency of the package; the transformers 4.57 job lacks it")
    from tests.test_peft import RECIPE

    packed_model().save_pretrained(tmp_path / "base")
    packed, _ = encode_subjects(tokenizer, TEXT, ENTITIES, ENTITY_TYPES)
    batch = TypedBertDataCollator(tokenizer)([features for _, _, features in packed])
    labels = torch.ones(batch["object_positions"].shape, dtype=torch.long)  # (subjects, objects): every pair related
    model = peft.get_peft_model(
        TypedBertForSequenceClassification.from_pretrained(tmp_path / "base"), peft.LoraConfig(**RECIPE)
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        trained = model(**batch).logits
    assert trained.shape == (*labels.shape, model.config.num_labels)
    model.save_pretrained(tmp_path / "adapter")

    fresh = TypedBertForSequenceClassification.from_pretrained(tmp_path / "base").eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(**batch).logits, trained, atol=1e-3)  # training moved them
    reloaded = peft.PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, trained)
        torch.testing.assert_close(reloaded.merge_and_unload()(**batch).logits, trained, rtol=0, atol=1e-5)


def test_the_all_relations_benchmark_reads_one_folder_with_either_encoding_and_writes_nothing(tmp_path):
    pytest.importorskip("datasets", reason="the benchmark reads data files with the training stack")
    from typed_bert import relations_benchmark as bench

    folder = save_tiny_classifier(tmp_path / "model", ("O", "PER", "ORG"))
    before = sorted(path.name for path in tmp_path.rglob("*"))
    text = "Bill Gates founded Microsoft with Paul Allen in Albuquerque ."
    entities = [{"start": start, "end": end, "type": "PER"} for start, end in ((0, 10), (19, 28), (34, 44))]
    texts = [{"text": text, "entities": entities, "relations": []}]
    for encoding, kind in (("per_pair", PerPairEncoding), ("per_subject", SubjectPackedPairs)):  # the Hub copy's class
        assert type(bench.classifier(str(folder), torch.float32, encoding).pair_encoding).__name__ == kind.__name__
        assert bench.best_speed(str(folder), texts, torch.float32, encoding)["pairs_per_s"] > 0
    assert sorted(path.name for path in tmp_path.rglob("*")) == before
