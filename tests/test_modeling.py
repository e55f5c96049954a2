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
    bert = BertModel(bert_config, add_pooling_layer=typed.pooler is not None).eval()
    missing, unexpected = bert.load_state_dict(typed.state_dict(), strict=False)
    assert not missing
    assert set(unexpected) == {"embeddings.entity_type_embeddings.weight", "embeddings.entity_role_embeddings.weight"}
    return bert


def fill_tables(model: TypedBertModel, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for table in tables(model):
            table.copy_(torch.randn(table.shape, generator=generator))
            table[0] = 0  # row 0 ("no entity") is fixed at zero


def tables(model: TypedBertModel) -> tuple[torch.Tensor, torch.Tensor]:
    """The entity type and role tables, `(num_entity_types, hidden)` and `(3, hidden)`."""
    embeddings = model.embeddings
    return embeddings.entity_type_embeddings.weight, embeddings.entity_role_embeddings.weight


def test_fresh_tables_are_zero_embeddings_inside_bert_embeddings(config):
    model = TypedBertModel(config)
    type_table, role_table = tables(model)
    assert torch.count_nonzero(type_table) == 0 and torch.count_nonzero(role_table) == 0
    assert type_table.shape == (4, 32) and role_table.shape == (3, 32)
    assert isinstance(model.embeddings.entity_type_embeddings, torch.nn.Embedding)
    assert model.embeddings.entity_type_embeddings.padding_idx == 0


def test_zero_tables_give_bert_outputs_exactly(config, batch):
    typed = TypedBertModel(config).eval()
    bert = bert_twin(typed)
    with torch.no_grad():
        expected = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        got = typed(**batch)
        got_without_ids = typed(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert torch.equal(got.last_hidden_state, expected.last_hidden_state)
    assert got.pooler_output is None and expected.pooler_output is None  # entity_start pooling: no pooler
    assert torch.equal(got_without_ids.last_hidden_state, expected.last_hidden_state)


def test_sum_fusion_adds_type_and_role_vectors(config, batch):
    typed = TypedBertModel(config).eval()
    fill_tables(typed)
    bert = bert_twin(typed)
    type_table, role_table = tables(typed)
    words = typed.embeddings.word_embeddings(batch["input_ids"])
    expected_embeds = words + type_table[batch["entity_type_ids"]] + role_table[batch["entity_role_ids"]]
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


def test_zero_tables_preserve_bert(batch):
    typed = TypedBertModel(tiny_config()).eval()
    bert = bert_twin(typed)
    with torch.no_grad():
        expected = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        assert torch.equal(typed(**batch).last_hidden_state, expected)


def test_entity_vectors_are_summed_into_the_word_vectors(batch):
    typed = TypedBertModel(tiny_config()).eval()
    fill_tables(typed)
    bert = bert_twin(typed)
    type_table, role_table = tables(typed)
    words = typed.embeddings.word_embeddings(batch["input_ids"])
    summed = words + type_table[batch["entity_type_ids"]] + role_table[batch["entity_role_ids"]]
    with torch.no_grad():
        expected = bert(inputs_embeds=summed, attention_mask=batch["attention_mask"]).last_hidden_state
        torch.testing.assert_close(typed(**batch).last_hidden_state, expected, rtol=0, atol=1e-6)


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
    typed = TypedBertModel(tiny_config(input_mode="plain")).eval()
    assert type(typed.embeddings).__name__ == "BertEmbeddings"
    bert_config = BertConfig(**{k: v for k, v in typed.config.to_dict().items() if k in BertConfig().to_dict()})
    bert = BertModel(bert_config, add_pooling_layer=False).eval()
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
    assert set(missing) == {
        "bert.embeddings.entity_type_embeddings.weight",
        "bert.embeddings.entity_role_embeddings.weight",
    }
    with torch.no_grad():
        assert torch.equal(
            typed(**batch).logits,
            bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
        )


def test_entity_start_pooling_reads_first_subject_and_object_tokens(config, batch):
    model = TypedBertForSequenceClassification(config).eval()
    with torch.no_grad():
        hidden = model.bert(**batch).last_hidden_state
        head = model.classifier
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
    assert model.bert.embeddings.entity_type_embeddings.weight.grad is not None


def test_tuple_output(config, batch):
    model = TypedBertForSequenceClassification(config).eval()
    loss, logits = model(**batch, labels=torch.tensor([0, 1]), return_dict=False)
    assert logits.shape == (2, 3) and loss.ndim == 0


def test_entity_start_without_role_ids_raises(config, batch):
    model = TypedBertForSequenceClassification(config).eval()
    with pytest.raises(ValueError, match="needs entity_role_ids"):
        model(input_ids=batch["input_ids"])


def test_forward_has_no_data_dependent_python_and_exports(config, batch):
    """No device-to-host sync in forward: it compiles as one graph and exports with dynamic batch and length."""
    model = TypedBertForSequenceClassification(config).eval()
    with torch.no_grad():
        expected = model(**batch).logits
        compiled = torch.compile(model, fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled(**batch).logits, expected)
        length = torch.export.Dim("seq", min=2, max=config.max_position_embeddings)
        dims = {name: {0: torch.export.Dim("batch"), 1: length} for name in batch}
        exported = torch.export.export(model, (), dict(batch), dynamic_shapes=dims, strict=False)
        torch.testing.assert_close(exported.module()(**batch).logits, expected)


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


def test_checkpoint_without_tables_loads_with_zero_tables(tmp_path, config, batch):
    typed = TypedBertModel(config).eval()
    bert = bert_twin(typed)
    bert.save_pretrained(tmp_path)
    loaded = TypedBertModel.from_pretrained(tmp_path, entity_types=config.entity_types).eval()
    assert all(torch.count_nonzero(table) == 0 for table in tables(loaded))
    with torch.no_grad():
        expected = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        assert torch.equal(loaded(**batch).last_hidden_state, expected)


def test_trained_tables_survive_save_and_load(tmp_path, config, batch):
    model = TypedBertForSequenceClassification(config).eval()
    fill_tables(model.bert)
    model.save_pretrained(tmp_path)
    loaded = TypedBertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert torch.equal(tables(loaded.bert)[0], tables(model.bert)[0])
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
    assert "entity_type_embeddings" in warnings[0] and "classifier" in warnings[0]
    assert all(torch.count_nonzero(table) == 0 for table in tables(model.bert))
    assert model.config.entity_types == config.entity_types


@pytest.mark.parametrize("edit", ["fewer entity types", "no entity types"])
def test_checkpoint_whose_table_disagrees_with_config_raises_transformers_error(tmp_path, config, edit):
    """A config.json whose entity_types no longer fit the trained table: transformers' own size-mismatch error."""
    import json

    TypedBertModel(config).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    if edit == "no entity types":
        del saved["entity_types"]
    else:
        saved["entity_types"] = ["O", "PER"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes|size mismatch"):
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


def test_entity_vectors_are_the_table_rows_of_the_ids(config, batch):
    model = TypedBertModel(config).eval()
    fill_tables(model)
    embeddings = model.embeddings
    words = embeddings.word_embeddings(batch["input_ids"])
    with torch.no_grad():
        added = embeddings.add_entity_embeddings(words, batch["entity_type_ids"], batch["entity_role_ids"])
        entity = embeddings.entity_type_embeddings(batch["entity_type_ids"])
        dense = words + entity + embeddings.entity_role_embeddings(batch["entity_role_ids"])
    assert torch.equal(added, dense)


@pytest.mark.parametrize("pooling", ["cls", "entity_start"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_every_parameter_gets_a_gradient(batch, pooling, checkpointing):
    model = TypedBertForSequenceClassification(tiny_config(classifier_pooling=pooling)).train()
    if checkpointing:
        model.gradient_checkpointing_enable()
    model(**batch, labels=torch.tensor([0, 2])).loss.backward()
    without = [name for name, parameter in model.named_parameters() if parameter.grad is None]
    assert not without
    assert (pooling == "cls") == any("pooler" in name for name, _ in model.named_parameters())


def test_forward_kwargs_carry_transformers_annotation():
    import inspect

    from transformers import BertModel as Bert
    from transformers.processing_utils import Unpack
    from transformers.utils import TransformersKwargs

    bert_kwargs = inspect.signature(Bert.forward).parameters.get("kwargs")  # transformers 4.57's has none
    for model_class in (TypedBertModel, TypedBertForSequenceClassification):
        annotation = inspect.signature(model_class.forward).parameters["kwargs"].annotation
        assert annotation == Unpack[TransformersKwargs]
        assert bert_kwargs is None or annotation == bert_kwargs.annotation
