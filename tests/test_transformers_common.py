"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`) against both TypedBert classes, for
each pooling, with non-zero entity tables.

The tests come from the `tests/` folder of the installed transformers release, which its sdist on the package index
carries (`tests/test_modeling_common.py`, `tests/test_configuration_common.py`); `transformers_tests.py` finds or
fetches it. The sdist leaves out three helper modules those files import (export and generation mixins, the common
config kwargs); stand-ins are given for them, so the export and generation tests, which TypedBert (an encoder that
does not generate) would not run anyway, are absent. Without the sdist (no package index) the module fails, unless
`TYPED_BERT_SKIP_COMMON_TESTS=1` says to skip it.
"""

from __future__ import annotations

import os
import unittest

import pytest
import torch

from configuration_typed_bert import TypedBertConfig
from modeling_typed_bert import TypedBertForSequenceClassification, TypedBertModel
from tests.transformers_tests import import_common_tests

common = import_common_tests()
if common is None and os.environ.get("TYPED_BERT_SKIP_COMMON_TESTS") == "1":
    pytest.skip("TYPED_BERT_SKIP_COMMON_TESTS=1 and transformers' test sdist is not here", allow_module_level=True)
if common is None:  # a failure, not a silent skip: set TYPED_BERT_SKIP_COMMON_TESTS=1 to run without them
    pytest.fail("transformers' test sdist could not be found or fetched from the package index", pytrace=False)
ModelTesterMixin, ConfigTester, ids_tensor, random_attention_mask = common


class _NonZeroTables:
    """Fills the entity tables (rows 1: ) with noise after construction, so that every common test runs through
    tables that change the outputs; a checkpoint's tables still load over them. Everything else is the class
    under test."""

    def __init__(self, config: TypedBertConfig) -> None:
        super().__init__(config)
        embeddings = self.base_model.embeddings
        with torch.no_grad():
            for table in (embeddings.entity_type_embeddings, embeddings.entity_role_embeddings):
                table.weight[1:].normal_(0.0, 0.5)


class TypedBertModelNonZero(_NonZeroTables, TypedBertModel):
    pass


class TypedBertForSequenceClassificationNonZero(_NonZeroTables, TypedBertForSequenceClassification):
    pass


class TypedBertModelTester:
    """Tiny configs and inputs for the common tests, in the shape of transformers' `BertModelTester`."""

    def __init__(self, parent, pooling: str, batch_size: int = 13, seq_length: int = 7) -> None:
        self.parent = parent
        self.pooling = pooling
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = True
        self.vocab_size = 99
        self.hidden_size = 32
        self.num_hidden_layers = 2
        self.num_attention_heads = 4
        self.intermediate_size = 37
        self.type_vocab_size = 16
        self.num_labels = 3
        self.entity_types = ["O", "PER", "ORG", "LOC"]

    def get_config(self) -> TypedBertConfig:
        return TypedBertConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=512,
            type_vocab_size=self.type_vocab_size,
            num_labels=self.num_labels,
            entity_types=self.entity_types,
            classifier_pooling=self.pooling,
        )

    def prepare_config_and_inputs_for_common(self) -> tuple[TypedBertConfig, dict[str, torch.Tensor]]:
        shape = [self.batch_size, self.seq_length]
        roles = torch.zeros(shape, dtype=torch.long)
        roles[:, 1:3] = 1  # subject on tokens 1-2, object on token 4: every row has both
        roles[:, 4] = 2
        types = torch.where(roles > 0, ids_tensor(shape, len(self.entity_types) - 1) + 1, 0)
        inputs = {
            "input_ids": ids_tensor(shape, self.vocab_size),
            "attention_mask": random_attention_mask(shape),
            "token_type_ids": ids_tensor(shape, self.type_vocab_size),
            "entity_type_ids": types,
            "entity_role_ids": roles,
        }
        inputs["attention_mask"][:, :5] = 1  # the entity tokens are real tokens
        return self.get_config(), inputs


class _TypedBertCommonTests(ModelTesterMixin):
    pooling = "entity_start"
    all_model_classes = (TypedBertModelNonZero, TypedBertForSequenceClassificationNonZero)
    # Inputs the attention-implementation tests pass besides input_ids: entity_start pooling needs the roles.
    additional_model_inputs = ["entity_type_ids", "entity_role_ids"]

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        """As the mixin's, plus labels for the classifier, which the mixin finds by name in transformers' mappings."""
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels)
        if return_labels and issubclass(model_class, TypedBertForSequenceClassification):
            inputs_dict["labels"] = torch.zeros(self.model_tester.batch_size, dtype=torch.long)
        return inputs_dict

    def _only_the_classifier(self, test, *args):
        """Run a training test on the classifier alone. The mixin skips base models by their names in transformers'
        MODEL_MAPPING, where TypedBertModel is not; a base model has no loss to train on."""
        self.all_model_classes = (TypedBertForSequenceClassificationNonZero,)
        try:
            test(*args)
        finally:
            del self.all_model_classes

    def test_training(self) -> None:
        self._only_the_classifier(super().test_training)

    def check_training_gradient_checkpointing(self, gradient_checkpointing_kwargs=None) -> None:
        self._only_the_classifier(super().check_training_gradient_checkpointing, gradient_checkpointing_kwargs)

    def setUp(self) -> None:
        self.model_tester = TypedBertModelTester(self, self.pooling)
        self.config_tester = ConfigTester(self, config_class=TypedBertConfig, hidden_size=37)

    def test_config(self) -> None:
        self.config_tester.run_common_tests()

    def test_entity_tables_are_non_zero(self) -> None:
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            base = model.base_model
            assert torch.count_nonzero(base.embeddings.entity_type_embeddings.weight[1:]) > 0


class TypedBertEntityStartCommonTest(_TypedBertCommonTests, unittest.TestCase):
    pooling = "entity_start"


class TypedBertClsCommonTest(_TypedBertCommonTests, unittest.TestCase):
    pooling = "cls"
