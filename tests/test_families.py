"""RoBERTa, XLM-RoBERTa, CamemBERT and ELECTRA checkpoints convert exactly (tiny random models, no download): the
encoder reproduces the source's hidden states on real tokens, padded or not; their tokenizers encode entities; what
cannot be reproduced is refused with the reason."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import transformers
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
from typed_bert.hub.export import ConversionError, convert_checkpoint

from encoding_typed_bert import PerPairEncoding, encode_relation
from tests.tiny_families import FAMILIES, SIZES, byte_level_bpe_tokenizer, save_tiny

pytestmark = pytest.mark.remote_code

TYPES = ["O", "PER", "ORG"]
SENTENCES = ["Bill Gates founded Microsoft in Albuquerque.", "Son Heung-min's father is Son Woong-jung, he said."]
# What each family's config says where it differs from BERT.
EXPECTED = {
    "roberta": {"position_id_offset": 2, "type_vocab_size": 1, "layer_norm_eps": 1e-5},
    "xlm-roberta": {"position_id_offset": 2, "type_vocab_size": 1, "layer_norm_eps": 1e-5},
    "camembert": {"position_id_offset": 2, "type_vocab_size": 1, "layer_norm_eps": 1e-5},
    "electra": {"position_id_offset": 0, "type_vocab_size": 2, "layer_norm_eps": 1e-12},
}


@pytest.fixture(scope="module", params=FAMILIES)
def converted(request, tmp_path_factory):
    family = request.param
    folder = tmp_path_factory.mktemp(family)
    head = "ForPreTraining" if family == "electra" else "ForMaskedLM"  # as such checkpoints are published
    save_tiny(folder / "base", family, head)
    report = convert_checkpoint(str(folder / "base"), ["PER", "ORG"], folder / "typed")
    return family, folder, report


def hidden_states(model, tokenizer, sentences, **entity_ids):
    inputs = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs, **entity_ids).last_hidden_state, inputs["attention_mask"].bool()


def test_converted_encoder_reproduces_the_source_on_real_tokens(converted):
    family, folder, report = converted
    assert report["model_type"] == family
    assert report["max_abs_difference"] <= 1e-5  # the clean-process check: a padded batch and each sentence alone
    assert {key: report[key] for key in EXPECTED[family]} == EXPECTED[family]
    config = json.loads((folder / "typed" / "config.json").read_text())
    assert {key: config[key] for key in EXPECTED[family]} == EXPECTED[family]
    assert report["verified_with"].startswith("transformers_modules.")
    assert not [key for key in report["new_weights"] if not key.startswith("embeddings.entity_")]

    source = AutoModel.from_pretrained(folder / "base").eval()
    typed = AutoModel.from_pretrained(folder / "typed", trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder / "typed")
    assert type(tokenizer).__name__ == type(AutoTokenizer.from_pretrained(folder / "base")).__name__
    for sentences in (SENTENCES, SENTENCES[:1], SENTENCES[1:]):  # right-padded, then unpadded
        expected, mask = hidden_states(source, tokenizer, sentences)
        got, _ = hidden_states(typed, tokenizer, sentences)
        assert (got - expected)[mask].abs().max() <= 1e-5


def test_position_offset_is_what_makes_roberta_exact(converted):
    family, folder, _ = converted
    if family == "electra":
        pytest.skip("ELECTRA counts positions from 0, as BERT does")
    source = AutoModel.from_pretrained(folder / "base").eval()
    typed = AutoModel.from_pretrained(folder / "typed", trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder / "typed")
    typed.config.position_id_offset = 0  # BERT's convention: the wrong positions
    expected, mask = hidden_states(source, tokenizer, SENTENCES)
    got, _ = hidden_states(typed, tokenizer, SENTENCES)
    assert (got - expected)[mask].abs().max() > 1e-2


def test_pipeline_finds_entities_with_the_family_tokenizer(converted, tmp_path):
    family, folder, _ = converted
    base = folder / "typed"
    model = AutoModelForSequenceClassification.from_pretrained(base, trust_remote_code=True, num_labels=3)
    model.config.id2label = {0: "no_relation", 1: "founded", 2: "based_in"}
    model.save_pretrained(tmp_path / "classifier")
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp_path / "classifier")
    classify = transformers.pipeline(
        "relation-classification", model=str(tmp_path / "classifier"), trust_remote_code=True
    )
    text = SENTENCES[0]
    entities = [{"start": 0, "end": 10, "type": "PER"}, {"start": 19, "end": 28, "type": "ORG"},
                {"start": 32, "end": 43, "type": "ORG"}]  # fmt: skip
    relations = classify({"text": text, "entities": entities}, keep_no_relation=True)
    assert len(relations) == 6
    single = classify({"text": text, "subject": entities[0], "object": entities[1]})
    assert relations[0]["label"] == single["label"] and relations[0]["score"] == pytest.approx(
        single["score"], abs=1e-5
    )


@pytest.mark.parametrize("trim_offsets", [True, False])
def test_byte_level_bpe_offsets_mark_whole_words(trim_offsets):
    tokenizer = byte_level_bpe_tokenizer(trim_offsets=trim_offsets)
    text = "Bill Gates founded Microsoft."
    features = encode_relation(tokenizer, text, {"start": 0, "end": 10, "type": "PER"},
                               {"start": 19, "end": 28, "type": "ORG"}, TYPES)  # fmt: skip
    tokens = tokenizer.convert_ids_to_tokens(features["input_ids"])
    by_role = {
        role: [t for t, r in zip(tokens, features["entity_role_ids"], strict=True) if r == role] for role in (1, 2)
    }
    assert "".join(by_role[1]).replace("Ġ", " ").strip() == "Bill Gates"
    assert "".join(by_role[2]).replace("Ġ", " ").strip() == "Microsoft"
    assert set(features["token_type_ids"]) == {0}
    encoded = PerPairEncoding().encode(
        tokenizer, text, [{"start": 0, "end": 4, "type": "PER"}, {"start": 5, "end": 10, "type": "PER"}], TYPES
    )
    assert len(encoded.sequences) == 2 and not encoded.skipped  # "Bill" and "Gates" fall into different tokens


def test_roberta_classifier_keeps_its_head(tmp_path):
    labels = {0: "no_relation", 1: "founded", 2: "based_in"}
    save_tiny(tmp_path / "base", "roberta", "ForSequenceClassification", id2label=labels)
    report = convert_checkpoint(str(tmp_path / "base"), ["PER", "ORG"], tmp_path / "typed")
    assert report["classifier_kept"] is True
    assert report["max_abs_difference"] <= 1e-5 and report["max_abs_logit_difference"] <= 1e-5
    config = json.loads((tmp_path / "typed" / "config.json").read_text())
    assert config["classifier_pooling"] == "cls" and config["id2label"]["1"] == "founded"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda folder: save_tiny(folder, "electra", embedding_size=16),
            r"ELECTRA model whose 16-wide embeddings are projected to its hidden size 32 \(embeddings_project\)",
        ),
        (
            lambda folder: transformers.DebertaV2Model(
                transformers.DebertaV2Config(vocab_size=99, **SIZES)
            ).save_pretrained(folder),
            r"model_type 'deberta-v2': DeBERTa's disentangled relative-position attention is not BERT's attention",
        ),
    ],
)
def test_architectures_that_cannot_be_reproduced_are_refused(tmp_path, build, message):
    build(tmp_path / "base")
    with pytest.raises(ConversionError, match=message):
        convert_checkpoint(str(tmp_path / "base"), ["PER"], tmp_path / "typed")
    assert not (tmp_path / "typed").exists()


RELOAD = """
import json
import sys
from transformers import AutoModelForSequenceClassification, pipeline
repo, revision = {repo!r}, {revision!r}
model = AutoModelForSequenceClassification.from_pretrained(repo, trust_remote_code=True, revision=revision)
classify = pipeline("relation-classification", model=repo, trust_remote_code=True, revision=revision)
text = "John Smith works for Acme Corp in Paris."
entities = [{{"start": 0, "end": 10, "type": "Peop"}}, {{"start": 21, "end": 30, "type": "Org"}},
            {{"start": 34, "end": 39, "type": "Loc"}}]
relations = classify({{"text": text, "entities": entities}}, keep_no_relation=True)
single = classify({{"text": text, "subject": entities[0], "object": entities[1]}})
print(json.dumps({{"module": type(model).__module__, "offset": model.config.position_id_offset,
                   "relations": relations, "single": single}}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_pushes_and_loads_back_from_the_hub(tmp_path, local_hub, small_data, family):
    from tests.conftest import hub_env, run_isolated, run_script, train_tiny

    head = "ForPreTraining" if family == "electra" else "ForMaskedLM"
    base = save_tiny(tmp_path / "base", family, head)
    out = tmp_path / "trained"
    train_tiny(base, small_data, out, steps=2)
    results = json.loads((out / "eval_results.json").read_text())
    assert results["train_steps"] == 2 and results["num_examples"] == 60
    pushed = run_script(
        [sys.executable, "scripts/push.py", "--model", str(out), "--repo-id", f"org/typed-{family}"],
        env=hub_env(local_hub) | {"HF_HUB_OFFLINE": "0"},
    )
    push = json.loads(pushed.stdout.strip().splitlines()[-1])
    assert push["max_abs_difference"] == 0.0  # the download, through the repo's own code, gives the local logits
    env = {**hub_env(local_hub), "HF_HOME": str(tmp_path / "hf-home")}
    script = RELOAD.format(repo=f"org/typed-{family}", revision=push["commit"])
    loaded = run_isolated(script, cwd=tmp_path, env=env)
    assert loaded["module"].startswith("transformers_modules.")
    assert loaded["offset"] == EXPECTED[family]["position_id_offset"]
    assert len(loaded["relations"]) == 6
    assert loaded["relations"][0]["label"] == loaded["single"]["label"]
    assert loaded["relations"][0]["score"] == pytest.approx(loaded["single"]["score"], abs=1e-5)


def test_an_electra_classifier_head_is_not_kept_silently(tmp_path):
    save_tiny(tmp_path / "base", "electra", "ForSequenceClassification", num_labels=3)
    with pytest.raises(ConversionError, match="ElectraForSequenceClassification, whose classification head is not"):
        convert_checkpoint(str(tmp_path / "base"), ["PER"], tmp_path / "typed")
    report = convert_checkpoint(str(tmp_path / "base"), ["PER"], tmp_path / "typed", labels=["no_relation", "x"])
    assert report["max_abs_difference"] <= 1e-5 and report["classifier_kept"] is False
