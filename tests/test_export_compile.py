"""torch.compile of the forward pass and ONNX export with the entity ids as graph inputs."""

from __future__ import annotations

import pytest
import torch

from modeling_typed_bert import TypedBertForSequenceClassification
from tests.conftest import tiny_config

pytestmark = pytest.mark.slow

INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids", "entity_type_ids", "entity_role_ids"]


def trained_looking_model() -> TypedBertForSequenceClassification:
    torch.manual_seed(0)
    model = TypedBertForSequenceClassification(tiny_config()).eval()
    with torch.no_grad():
        model.bert.embeddings.entity_type_embeddings.weight[1:].normal_()
        model.bert.embeddings.entity_role_embeddings.weight[1:].normal_()
    return model


class LogitsOnly(torch.nn.Module):
    """Positional inputs in INPUT_NAMES order → logits: the signature an exported graph needs."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids, entity_type_ids, entity_role_ids):
        return self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            entity_type_ids=entity_type_ids,
            entity_role_ids=entity_role_ids,
        ).logits


def test_torch_compile_matches_eager(batch):
    model = trained_looking_model()
    inputs = {**batch, "token_type_ids": torch.zeros_like(batch["input_ids"])}
    with torch.no_grad():
        eager = model(**inputs).logits
        compiled = torch.compile(model)(**inputs).logits
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-5)


def test_onnx_export_matches_pytorch(tmp_path, batch):
    onnxruntime = pytest.importorskip("onnxruntime")
    model = trained_looking_model()
    inputs = {**batch, "token_type_ids": torch.zeros_like(batch["input_ids"])}
    args = tuple(inputs[name] for name in INPUT_NAMES)
    path = tmp_path / "typed_bert.onnx"
    batch_dim, sequence_dim = torch.export.Dim("batch"), torch.export.Dim("sequence", max=64)
    torch.onnx.export(
        LogitsOnly(model),
        args,
        str(path),
        input_names=INPUT_NAMES,
        output_names=["logits"],
        dynamic_shapes={name: {0: batch_dim, 1: sequence_dim} for name in INPUT_NAMES},
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == INPUT_NAMES
    with torch.no_grad():
        expected = model(**inputs).logits.numpy()
    (got,) = session.run(None, {name: inputs[name].numpy() for name in INPUT_NAMES})
    assert abs(got - expected).max() <= 1e-4
    # Another batch size and length through the same graph.
    longer = {name: torch.cat([inputs[name], inputs[name]], dim=1)[:1] for name in INPUT_NAMES}
    with torch.no_grad():
        expected = model(**longer).logits.numpy()
    (got,) = session.run(None, {name: longer[name].numpy() for name in INPUT_NAMES})
    assert abs(got - expected).max() <= 1e-4
