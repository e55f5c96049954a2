"""The model card: a README.md the user wrote is kept, only the generated section changes; language from an option;
encoders get a card; the training curve; no guessed links."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
from typed_bert.hub.model_card import GENERATED_BEGIN, GENERATED_END, write_model_card

from modeling_typed_bert import TypedBertForSequenceClassification
from tests.conftest import save_tiny_classifier, tiny_config


def classifier_folder(tmp_path):
    config = tiny_config(entity_types=["O", "PER", "ORG"], id2label={0: "no_relation", 1: "a", 2: "b"})
    TypedBertForSequenceClassification(config).save_pretrained(tmp_path)
    (tmp_path / "eval_results.json").write_text(
        json.dumps({"micro_f1": 0.5, "auprc": 0.6, "accuracy": 0.7, "validation_file": "data/dev.jsonl"})
    )
    return tmp_path


def test_users_readme_is_kept_and_only_the_generated_section_changes(tmp_path):
    folder = classifier_folder(tmp_path)
    (folder / "README.md").write_text("---\nlicense: mit\ntags:\n- mine\n---\n# My model\n\nWritten by me.\n")
    write_model_card(folder, repo_id="org/m", revision="v1", language="ko")
    first = (folder / "README.md").read_text()
    assert "# My model\n\nWritten by me." in first and first.count(GENERATED_BEGIN) == 1
    header = first.split("---")[1]
    assert "language: ko" in header and "license: mit" in header and "- mine" in header and "- typed-bert" in header
    assert 'revision="v1"' in first

    write_model_card(folder, repo_id="org/m", revision="v2", language="ko")
    second = (folder / "README.md").read_text()
    assert "Written by me." in second and second.count(GENERATED_BEGIN) == second.count(GENERATED_END) == 1
    assert 'revision="v2"' in second and 'revision="v1"' not in second
    assert "github.com" not in second


def test_a_final_fit_card_claims_no_held_out_results_even_over_an_earlier_card(tmp_path):
    """A card written over one that indexed dev results, after a final fit (trained on the dev file too): the
    model-index entries go, the user's metadata stays, and the text says the scores are not held out."""
    folder = classifier_folder(tmp_path)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# My model\n")
    write_model_card(folder, repo_id="org/m", revision="v1")
    assert "model-index" in (folder / "README.md").read_text()
    results = json.loads((folder / "eval_results.json").read_text())
    (folder / "eval_results.json").write_text(json.dumps({**results, "final_fit": True}))
    write_model_card(folder, repo_id="org/m", revision="v2", train_file="data/train.jsonl")
    card = (folder / "README.md").read_text()
    assert "model-index" not in card and "license: mit" in card and "# My model" in card
    assert "these are not held-out scores" in " ".join(card.split())
    assert "`data/train.jsonl` and `data/dev.jsonl` (a final fit" in card


def test_language_is_not_guessed_and_training_curve_is_shown(tmp_path):
    folder = classifier_folder(tmp_path)
    write_model_card(folder, training_curve="training_curve.png")
    card = (folder / "README.md").read_text()
    assert "language:" not in card
    assert "![training loss and dev micro-F1 per epoch](training_curve.png)" in card


def test_training_curve_png(tmp_path):
    from typed_bert.metrics import plot_training_curve

    log = [{"epoch": 0.5, "loss": 1.2}, {"epoch": 1.0, "eval_micro_f1": 0.4}, {"epoch": 1.5, "loss": 0.8}]
    path = plot_training_curve(log, tmp_path / "curve.png", "m on dev.jsonl")
    image = matplotlib.image.imread(path)  # a PNG that decodes, of a drawn figure (not one flat colour)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert len(np.unique(image.reshape(-1, image.shape[2]), axis=0)) > 10


def test_the_cards_tokenizer_call_is_silent_with_stdin_closed(tmp_path):
    """The snippet's `AutoTokenizer.from_pretrained(repo, trust_remote_code=True)` on a TypedBert folder: no prompt,
    no model-type warning (without the flag transformers 5 asks on stdin whether to run the folder's code)."""
    import subprocess
    import sys

    from transformers import AutoTokenizer

    from tests.conftest import minilm_path

    folder = classifier_folder(tmp_path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    write_model_card(folder, repo_id="org/m")
    assert 'AutoTokenizer.from_pretrained("org/m", trust_remote_code=True' in (folder / "README.md").read_text()
    call = "from transformers import AutoTokenizer\n"
    call += f"AutoTokenizer.from_pretrained({str(folder)!r}, trust_remote_code=True)"
    result = subprocess.run(
        [sys.executable, "-c", call], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "" and "Do you wish" not in result.stderr and "model of type" not in result.stderr


def test_the_card_says_which_input_mode_and_why(tmp_path):
    default = save_tiny_classifier(tmp_path / "default", input_mode="markers+embeddings")
    write_model_card(default, repo_id="org/m")
    card = " ".join((default / "README.md").read_text().split())
    assert "input mode `markers+embeddings`" in card
    assert "typed-bert's default" in card and "level with typed markers on SciERC" in card
    embeddings = save_tiny_classifier(tmp_path / "embeddings")
    write_model_card(embeddings, repo_id="org/m")
    card = " ".join((embeddings / "README.md").read_text().split())
    assert "input mode `typed-embeddings`: entity type + role embeddings" in card
    assert "typed-bert's default" not in card and "5 points behind typed markers on SciERC" in card
    markers = save_tiny_classifier(tmp_path / "markers", input_mode="typed-markers")
    write_model_card(markers, repo_id="org/m")
    card = " ".join((markers / "README.md").read_text().split())
    assert "input mode `typed-markers`: typed markers in the text (Zhou & Chen)" in card
    assert "typed-bert's default" not in card
