"""The entity model's linear-chain CRF over word tags (`config.tag_transitions`): its loss against brute force, the
decoding with its transitions against brute force, a lossless start, training, saving and the standard pipeline."""

from __future__ import annotations

import itertools
import json
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, pipeline

from modeling_typed_bert import TypedBertForTokenClassification
from pipeline_typed_bert import constrained_bio_path
from tests.conftest import entity_slices, minilm_path, run_isolated, run_script
from tests.test_word_shapes import TEXT, _tiny_tagger
from typed_bert.entities import bio_labels, word_crf_loss

LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def _allowed(tags) -> bool:
    previous = ["O", *[LABELS[tag] for tag in tags]]
    return all(not LABELS[tag].startswith("I-") or previous[i][2:] == LABELS[tag][2:] and previous[i] != "O"
               for i, tag in enumerate(tags))  # fmt: skip


def _path_score(emissions: torch.Tensor, transitions: torch.Tensor, tags) -> float:
    """The CRF's score of a tag sequence: emissions, the first tag's row (the last one) and each transition."""
    score = transitions[-1, tags[0]] + sum(emissions[word, tag] for word, tag in enumerate(tags))
    return float(score + sum(transitions[a, b] for a, b in zip(tags[:-1], tags[1:], strict=False)))


def test_decoding_with_transitions_is_the_best_sequence_bio_allows():
    """Against every allowed tag sequence of up to four words: the path has the highest log probability plus
    transition scores; zero transitions decode as BIO alone."""
    generator = torch.Generator().manual_seed(0)
    for words, scale in itertools.product(range(1, 5), (2.0, 0.3)):  # 0.3: confident words outweigh transitions
        for _ in range(20):
            probabilities = (torch.randn(words, len(LABELS), generator=generator) * 4).softmax(-1).double()
            transitions = torch.randn(len(LABELS) + 1, len(LABELS), generator=generator).double() * scale
            best = max((tags for tags in itertools.product(range(len(LABELS)), repeat=words) if _allowed(tags)),
                       key=lambda tags: _path_score(probabilities.log(), transitions, tags))  # fmt: skip
            assert [tag for tag, _ in constrained_bio_path(probabilities, LABELS, transitions)] == list(best)
            assert constrained_bio_path(probabilities, LABELS, torch.zeros_like(transitions)) == (
                constrained_bio_path(probabilities, LABELS)
            )


def test_the_loss_is_the_negative_log_likelihood_per_word_of_the_gold_word_tags():
    """Against brute force over every tag sequence: words are the mean probabilities of their tokens (special tokens
    and padding, word -1, are no word), each word's gold tag is its first token's label, rows have their own length."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 3, generator=generator)
    transitions = torch.randn(4, 3, generator=generator)
    word_index = torch.tensor([[-1, 0, 0, 1, 2, -1, -1], [-1, 0, 1, 1, 1, -1, -1]])
    labels = torch.tensor([[-100, 1, 2, 0, 2, -100, -100], [-100, 2, 0, 1, 1, -100, -100]])
    total, words = 0.0, 0
    for row, groups, gold in ((0, [[1, 2], [3], [4]], [1, 0, 2]), (1, [[1], [2, 3, 4]], [2, 0])):
        emissions = torch.stack([logits[row, group].softmax(-1).mean(0) for group in groups]).log()
        scores = torch.tensor([_path_score(emissions, transitions, tags)
                               for tags in itertools.product(range(3), repeat=len(groups))])  # fmt: skip
        total += float(scores.logsumexp(0)) - _path_score(emissions, transitions, gold)
        words += len(groups)
    assert abs(float(word_crf_loss(logits, labels, word_index, transitions)) - total / words) < 1e-5


def test_a_tagger_converts_losslessly_and_its_saved_transitions_steer_the_standard_pipeline(tmp_path):
    """The transitions start at zero (the BIO decoding of a tagger without them), are saved and loaded with the
    model, and the standard pipeline adds them: a large score for B-PER after anything tags every word B-PER."""
    labels = bio_labels(["PER", "ORG"])
    model = TypedBertForTokenClassification.from_pretrained(
        _tiny_tagger(tmp_path / "bert", labels), word_shapes=True, input_mode="plain", tag_transitions=True
    )
    assert not model.tag_transitions.weight.any()
    folder = tmp_path / "crf"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    recognize = pipeline("token-classification", model=str(folder), aggregation_strategy="average",
                         trust_remote_code=True)  # fmt: skip
    before = recognize(TEXT)
    with torch.no_grad():
        recognize.model.tag_transitions.weight[:, labels.index("B-PER")] = 100.0
    assert [entity["word"] for entity in recognize(TEXT)] == TEXT.lower().replace(",", " ,").replace(".", " .").split()
    assert {entity["entity_group"] for entity in recognize(TEXT)} == {"PER"}
    recognize.model.save_pretrained(folder)
    reloaded = pipeline("token-classification", model=str(folder), aggregation_strategy="average",
                        trust_remote_code=True)  # fmt: skip
    assert reloaded(TEXT) == recognize(TEXT) != before


@pytest.mark.slow
def test_train_entities_with_tag_transitions_learns_and_saves_them(tiny_bert_dir, tmp_path):
    data = entity_slices(tmp_path / "data", 40, 20)
    run_script([sys.executable, "scripts/train_entities.py", "--base-model", str(tiny_bert_dir),
                "--train-file", str(data["train"]), "--validation-file", str(data["dev"]),
                "--output-dir", str(tmp_path / "ner"), "--max-steps", "3", "--tag-transitions"])  # fmt: skip
    config = json.loads((tmp_path / "ner" / "config.json").read_text())
    assert config["tag_transitions"] is True
    transitions = load_file(tmp_path / "ner" / "model.safetensors")["tag_transitions.weight"]
    assert transitions.shape == (len(config["id2label"]) + 1, len(config["id2label"])) and transitions.any()
    result = run_isolated(
        f"""
        import json
        from transformers import pipeline
        recognize = pipeline("token-classification", model={str(tmp_path / "ner")!r}, trust_remote_code=True,
                             aggregation_strategy="average")
        print(json.dumps({{"loaded": bool(recognize.model.tag_transitions.weight.any()),
                          "found": isinstance(recognize({TEXT!r}), list)}}))
        """,
        tmp_path,
    )
    assert result == {"loaded": True, "found": True}
