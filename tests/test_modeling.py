"""TypedBert against BERT on tiny random configs: equality at zero tables, the effect of each table, bad input."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

from modeling_typed_bert import TypedBertForSequenceClassification, TypedBertModel
from tests.conftest import tiny_config


def bert_twin(typed: TypedBertModel) -> BertModel:
    """A BertModel holding exactly the BERT weights of `typed`."""
    bert_config = BertConfig(**{k: v for k, v in typed.config.to_dict().items() if k in BertConfig().to_dict()})
    bert = BertModel(bert_config).eval()
    missing, unexpected = bert.load_state_dict(typed.state_dict(), strict=False)
    assert not missing
    assert set(unexpected) == {"entity_embeddings.type_embeddings", "entity_embeddings.role_embeddings"}
    return bert


def fill_tables(model: TypedBertModel, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for table in (model.entity_embeddings.type_embeddings, model.entity_embeddings.role_embeddings):
            table.copy_(torch.randn(table.shape, generator=generator))


def test_fresh_tables_are_zero(config):
    model = TypedBertModel(config)
    assert torch.count_nonzero(model.entity_embeddings.type_embeddings) == 0
    assert torch.count_nonzero(model.entity_embeddings.role_embeddings) == 0
    assert model.entity_embeddings.type_embeddings.shape == (4, 32)
    assert model.entity_embeddings.role_embeddings.shape == (3, 32)


def test_zero_tables_give_bert_outputs_exactly(config, batch):
    typed = TypedBertModel(config).eval()
    bert = bert_twin(typed)
    with torch.no_grad():
        expected = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        got = typed(**batch)
        got_without_ids = typed(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert torch.equal(got.last_hidden_state, expected.last_hidden_state)
    assert torch.equal(got.pooler_output, expected.pooler_output)
    assert torch.equal(got_without_ids.last_hidden_state, expected.last_hidden_state)


def test_sum_fusion_adds_type_and_role_vectors(config, batch):
    typed = TypedBertModel(config).eval()
    fill_tables(typed)
    bert = bert_twin(typed)
    tables = typed.entity_embeddings
    words = typed.embeddings.word_embeddings(batch["input_ids"])
    expected_embeds = (
        words + tables.type_embeddings[batch["entity_type_ids"]] + tables.role_embeddings[batch["entity_role_ids"]]
    )
    with torch.no_grad():
        expected = bert(inputs_embeds=expected_embeds, attention_mask=batch["attention_mask"]).last_hidden_state
        got = typed(**batch).last_hidden_state
        plain = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert (got - plain).abs().max() > 1e-2


def test_role_ids_change_outputs(config, batch):
    typed = TypedBertModel(config).eval()
    fill_tables(typed)
    swapped_roles = batch["entity_role_ids"].clone()
    swapped_roles[batch["entity_role_ids"] == 1] = 2
    swapped_roles[batch["entity_role_ids"] == 2] = 1
    with torch.no_grad():
        original = typed(**batch).last_hidden_state
        swapped = typed(**{**batch, "entity_role_ids": swapped_roles}).last_hidden_state
    assert (original - swapped).abs().max() > 1e-2


def test_absent_ids_mean_all_zero_ids(config, batch):
    typed = TypedBertModel(config).eval()
    fill_tables(typed)
    zeros = torch.zeros_like(batch["input_ids"])
    with torch.no_grad():
        absent = typed(input_ids=batch["input_ids"]).last_hidden_state
        explicit = typed(input_ids=batch["input_ids"], entity_type_ids=zeros, entity_role_ids=zeros).last_hidden_state
    torch.testing.assert_close(absent, explicit, rtol=0, atol=1e-6)


def test_mean_fusion_averages_word_type_and_role(batch):
    typed = TypedBertModel(tiny_config(entity_fusion="mean")).eval()
    fill_tables(typed)
    bert = bert_twin(typed)
    tables = typed.entity_embeddings
    words = typed.embeddings.word_embeddings(batch["input_ids"])
    mean = (
        words + tables.type_embeddings[batch["entity_type_ids"]] + tables.role_embeddings[batch["entity_role_ids"]]
    ) / 3
    with torch.no_grad():
        expected = bert(inputs_embeds=mean, attention_mask=batch["attention_mask"]).last_hidden_state
        got = typed(**batch).last_hidden_state
        summed = TypedBertModel(tiny_config(entity_fusion="sum")).eval()
        summed.load_state_dict(typed.state_dict())
        got_sum = summed(**batch).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert (got - got_sum).abs().max() > 1e-2


def test_inputs_embeds_path_matches_input_ids(config, batch):
    typed = TypedBertModel(config).eval()
    fill_tables(typed)
    embeds = typed.embeddings.word_embeddings(batch["input_ids"])
    rest = {k: v for k, v in batch.items() if k != "input_ids"}
    with torch.no_grad():
        torch.testing.assert_close(
            typed(inputs_embeds=embeds, **rest).last_hidden_state, typed(**batch).last_hidden_state, rtol=0, atol=0
        )


def test_without_entity_embeddings_is_plain_bert(batch):
    typed = TypedBertModel(tiny_config(use_entity_embeddings=False)).eval()
    assert typed.entity_embeddings is None
    bert_config = BertConfig(**{k: v for k, v in typed.config.to_dict().items() if k in BertConfig().to_dict()})
    bert = BertModel(bert_config).eval()
    bert.load_state_dict(typed.state_dict())
    with torch.no_grad():
        assert torch.equal(
            typed(**batch).last_hidden_state,
            bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state,
        )


def test_cls_classifier_matches_bert_classifier(batch):
    config = tiny_config(classifier_pooling="cls")
    typed = TypedBertForSequenceClassification(config).eval()
    bert_config = BertConfig(**{k: v for k, v in config.to_dict().items() if k in BertConfig().to_dict()})
    bert = BertForSequenceClassification(bert_config).eval()
    missing, _ = typed.load_state_dict(bert.state_dict(), strict=False)
    assert set(missing) == {"bert.entity_embeddings.type_embeddings", "bert.entity_embeddings.role_embeddings"}
    with torch.no_grad():
        assert torch.equal(
            typed(**batch).logits,
            bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
        )


def test_entity_start_pooling_reads_first_subject_and_object_tokens(config, batch):
    model = TypedBertForSequenceClassification(config).eval()
    with torch.no_grad():
        hidden = model.bert(**batch).last_hidden_state
        head = model.entity_head
        # Row 0: subject starts at 1, object at 4. Row 1: subject starts at 4, object at 1.
        pair = torch.stack([torch.cat([hidden[0, 1], hidden[0, 4]]), torch.cat([hidden[1, 4], hidden[1, 1]])])
        expected = head.out_proj(head.activation(head.dense(pair)))
        torch.testing.assert_close(model(**batch).logits, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("num_labels", "problem_type", "labels", "loss_name"),
    [
        (1, None, torch.tensor([0.5, -1.0]), "regression"),
        (3, None, torch.tensor([0, 2]), "single_label_classification"),
        (3, None, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), "multi_label_classification"),
    ],
)
def test_losses_follow_bert_rules(batch, num_labels, problem_type, labels, loss_name):
    model = TypedBertForSequenceClassification(tiny_config(num_labels=num_labels, problem_type=problem_type))
    output = model(**batch, labels=labels)
    assert model.config.problem_type == loss_name
    logits = output.logits
    if loss_name == "regression":
        expected = torch.nn.functional.mse_loss(logits.squeeze(), labels)
    elif loss_name == "single_label_classification":
        expected = torch.nn.functional.cross_entropy(logits, labels)
    else:
        expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    torch.testing.assert_close(output.loss, expected)
    output.loss.backward()
    assert model.bert.entity_embeddings.type_embeddings.grad is not None


def test_tuple_output(config, batch):
    model = TypedBertForSequenceClassification(config).eval()
    loss, logits = model(**batch, labels=torch.tensor([0, 1]), return_dict=False)
    assert logits.shape == (2, 3) and loss.ndim == 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("entity_type_ids", 4, r"entity_type_ids holds id 4, outside the valid range \[0, 3\]"),
        ("entity_type_ids", -1, r"entity_type_ids holds id -1, outside the valid range \[0, 3\]"),
        ("entity_role_ids", 3, r"entity_role_ids holds id 3, outside the valid range \[0, 2\]"),
        ("entity_role_ids", -2, r"entity_role_ids holds id -2"),
    ],
)
def test_out_of_range_ids_raise_value_error(config, batch, field, value, message):
    model = TypedBertForSequenceClassification(config).eval()
    bad = batch[field].clone()
    bad[0, 6] = value
    with pytest.raises(ValueError, match=message):
        model(**{**batch, field: bad})


@pytest.mark.parametrize("field", ["entity_type_ids", "entity_role_ids"])
def test_shape_mismatch_raises_value_error(config, batch, field):
    model = TypedBertModel(config).eval()
    with pytest.raises(
        ValueError, match=rf"{field} has shape \(2, 7\) but input_ids/inputs_embeds have shape \(2, 8\)"
    ):
        model(**{**batch, field: batch[field][:, :7]})
    embeds = model.embeddings.word_embeddings(batch["input_ids"])
    with pytest.raises(ValueError, match=rf"{field} has shape \(1, 8\)"):
        model(inputs_embeds=embeds, **{field: batch[field][:1]})


def test_float_ids_raise_value_error(config, batch):
    with pytest.raises(ValueError, match="entity_type_ids must hold integer ids, got dtype torch.float32"):
        TypedBertModel(config)(**{**batch, "entity_type_ids": batch["entity_type_ids"].float()})


def test_entity_start_without_subject_or_object_raises(config, batch):
    model = TypedBertForSequenceClassification(config).eval()
    no_object = batch["entity_role_ids"].clone()
    no_object[1][no_object[1] == 2] = 0
    with pytest.raises(ValueError, match=r"needs a object token \(entity_role_ids == 2\) in every row; rows \[1\]"):
        model(**{**batch, "entity_role_ids": no_object})
    with pytest.raises(ValueError, match="needs entity_role_ids"):
        model(input_ids=batch["input_ids"])


def test_checkpoint_without_tables_loads_with_zero_tables(tmp_path, config, batch):
    typed = TypedBertModel(config).eval()
    bert = bert_twin(typed)
    bert.save_pretrained(tmp_path)
    loaded = TypedBertModel.from_pretrained(tmp_path, entity_types=config.entity_types).eval()
    assert torch.count_nonzero(loaded.entity_embeddings.type_embeddings) == 0
    assert torch.count_nonzero(loaded.entity_embeddings.role_embeddings) == 0
    with torch.no_grad():
        expected = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        assert torch.equal(loaded(**batch).last_hidden_state, expected)


def test_trained_tables_survive_save_and_load(tmp_path, config, batch):
    model = TypedBertForSequenceClassification(config).eval()
    fill_tables(model.bert)
    model.save_pretrained(tmp_path)
    loaded = TypedBertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded.bert.entity_embeddings.type_embeddings, model.bert.entity_embeddings.type_embeddings)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)


def test_plain_bert_checkpoint_loads_with_one_clear_warning(tmp_path, config, batch):
    import logging

    bert = BertForSequenceClassification(
        BertConfig(**{k: v for k, v in config.to_dict().items() if k in BertConfig().to_dict()})
    )
    bert.save_pretrained(tmp_path)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        model = TypedBertForSequenceClassification.from_pretrained(tmp_path, entity_types=config.entity_types)
    finally:
        logger.removeHandler(handler)
    warnings = [record.getMessage() for record in records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "entity_embeddings.type_embeddings" in warnings[0] and "entity_head" in warnings[0]
    assert torch.count_nonzero(model.bert.entity_embeddings.type_embeddings) == 0
    assert torch.count_nonzero(model.bert.entity_embeddings.role_embeddings) == 0
    assert model.config.entity_types == config.entity_types


def test_checkpoint_whose_table_disagrees_with_config_fails_clearly(tmp_path, config):
    TypedBertModel(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"(?s)weight's shape disagrees with its config.*entity_types"):
        TypedBertModel.from_pretrained(tmp_path, entity_types=["O", "PER"])


def test_config_without_entity_types_cannot_load_trained_tables(tmp_path, config):
    import json

    TypedBertModel(config).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["entity_types"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"entity_types is missing or was edited cannot load the trained table"):
        TypedBertModel.from_pretrained(tmp_path)


def test_pickle_weights_are_refused_unless_opted_in(tmp_path, config, batch):
    model = TypedBertModel(config).eval()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    model.config.save_pretrained(tmp_path)
    with pytest.raises(OSError, match="safetensors|model.safetensors"):
        TypedBertModel.from_pretrained(tmp_path)
    loaded = TypedBertModel.from_pretrained(tmp_path, use_safetensors=False).eval()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).last_hidden_state, model(**batch).last_hidden_state)
