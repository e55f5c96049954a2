"""PEFT LoRA with the README's recipe: the head and both entity tables train and are saved in the adapter."""

from __future__ import annotations

import pytest
import torch

from modeling_typed_bert import TypedBertForSequenceClassification
from tests.conftest import tiny_config

peft = pytest.importorskip("peft", reason="PEFT is a dependency of the package; the transformers 4.57 job lacks it")

RECIPE = dict(
    task_type="SEQ_CLS",
    r=4,
    lora_alpha=8,
    target_modules=["query", "key", "value"],
    modules_to_save=["entity_type_embeddings", "entity_role_embeddings"],
)


@pytest.mark.parametrize("pooling", ["entity_start", "cls"])
def test_lora_trains_and_saves_head_and_entity_tables(tmp_path, batch, pooling):
    torch.manual_seed(0)
    TypedBertForSequenceClassification(tiny_config(classifier_pooling=pooling)).save_pretrained(tmp_path / "base")
    model = peft.get_peft_model(
        TypedBertForSequenceClassification.from_pretrained(tmp_path / "base"), peft.LoraConfig(**RECIPE)
    )
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert any(".classifier.modules_to_save." in name for name in trainable)
    assert any("entity_type_embeddings.modules_to_save." in name for name in trainable)
    assert any("entity_role_embeddings.modules_to_save." in name for name in trainable)

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        model(**batch, labels=torch.tensor([1, 2])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        trained = model(**batch).logits
    tables = model.base_model.model.bert.embeddings
    for table in (tables.entity_type_embeddings, tables.entity_role_embeddings):
        assert torch.count_nonzero(table.modules_to_save["default"].weight) > 0
    model.save_pretrained(tmp_path / "adapter")

    fresh = TypedBertForSequenceClassification.from_pretrained(tmp_path / "base")
    reloaded = peft.PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, trained)
        merged = reloaded.merge_and_unload()
        torch.testing.assert_close(merged(**batch).logits, trained, rtol=0, atol=1e-5)
