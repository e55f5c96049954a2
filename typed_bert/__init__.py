"""typed-bert: BERT with entity-type and entity-role embeddings for relation extraction.

The model code itself lives in the four top-level modules that are uploaded with every checkpoint
(`configuration_typed_bert`, `modeling_typed_bert`, `encoding_typed_bert`, `pipeline_typed_bert`); this package
re-exports them and adds the publishing side (`typed_bert.hub`), the command line (`typed_bert.scripts`, the
`typed-bert` command) and `TypedBertTrainer`.

Importing `typed_bert` registers TypedBert with the Auto classes and the `relation-classification` pipeline, so a
local folder loads without `trust_remote_code` (the explicit way for local code; the uploaded files register
nothing). Loading with `trust_remote_code=True` still runs each checkpoint's own code.
"""

from configuration_typed_bert import TypedBertConfig
from encoding_typed_bert import TypedBertDataCollator, add_typed_entity_markers, encode_relation, encode_relations
from modeling_typed_bert import (
    TypedBertForSequenceClassification,
    TypedBertModel,
    TypedBertPreTrainedModel,
    register_typed_bert,
)
from pipeline_typed_bert import RelationClassificationPipeline
from typed_bert.trainer import TypedBertTrainer

register_typed_bert()

__all__ = [
    "RelationClassificationPipeline",
    "TypedBertConfig",
    "TypedBertDataCollator",
    "TypedBertForSequenceClassification",
    "TypedBertModel",
    "TypedBertPreTrainedModel",
    "TypedBertTrainer",
    "add_typed_entity_markers",
    "encode_relation",
    "encode_relations",
    "register_typed_bert",
]
