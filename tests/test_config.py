import json

import pytest

from configuration_typed_bert import TypedBertConfig


def test_defaults():
    config = TypedBertConfig()
    assert config.model_type == "typed_bert"
    assert config.entity_types == ["O"]
    assert config.input_mode == "typed-embeddings"
    assert config.classifier_pooling == "entity_start"
    assert config.use_entity_embeddings is True


def test_fields_survive_save_and_load(tmp_path):
    config = TypedBertConfig(entity_types=["O", "PER", "ORG"], input_mode="type-only", classifier_pooling="cls")
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["entity_types"] == ["O", "PER", "ORG"]
    assert saved["auto_map"]["AutoConfig"] == "configuration_typed_bert.TypedBertConfig"
    loaded = TypedBertConfig.from_pretrained(tmp_path)
    fields = (loaded.entity_types, loaded.input_mode, loaded.classifier_pooling)
    assert fields == (["O", "PER", "ORG"], "type-only", "cls")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_mode": "markers"}, r"input_mode='markers' is not supported; expected one of \['typed-embeddings'"),
        ({"classifier_pooling": "mean"}, r"classifier_pooling='mean'.*\['cls', 'entity_start'\]"),
        ({"entity_types": []}, "entity_types is empty"),
        ({"entity_types": ["O", "PER", "PER"]}, r"duplicates \['PER'\]"),
        ({"entity_types": ["O", 3]}, r"non-empty strings; got \[3\]"),
        ({"entity_types": ["O", ""]}, "non-empty strings"),
        ({"entity_types": "O,PER"}, "must be a list"),
        ({"word_shapes": "yes"}, "word_shapes='yes' must be a bool"),
    ],
)
def test_invalid_values_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TypedBertConfig(**kwargs)


def test_input_modes_are_named():
    from configuration_typed_bert import INPUT_MODES, InputMode

    assert INPUT_MODES["typed-embeddings"] == InputMode(type_table=True, role_table=True, markers=False)
    config = TypedBertConfig(input_mode="markers+embeddings")
    assert (config.use_entity_type_embeddings, config.use_entity_role_embeddings, config.entity_markers) == (
        True,
        True,
        True,
    )


def test_removed_all_pairs_encoding_is_refused_clearly():
    message = r"pair_encoding='all_pairs' is not supported; expected one of \['per_pair', 'per_subject'\]"
    with pytest.raises(ValueError, match=message):
        TypedBertConfig(pair_encoding="all_pairs")
