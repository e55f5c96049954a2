"""typed-bert: BERT with entity-type and entity-role embeddings for relation extraction.

The model code itself lives in the four top-level modules that are uploaded with every checkpoint
(`configuration_typed_bert`, `modeling_typed_bert`, `encoding_typed_bert`, `pipeline_typed_bert`); this package
re-exports them and adds what a local user runs: data loading and checking (`typed_bert.data`), metrics, training
(`typed_bert.training`, `TypedBertTrainer`, `RelationTrainer`), evaluation, the publishing side (`typed_bert.hub`,
installed from the repository's `hub/`) and the `typed-bert` command (`typed_bert.cli`, `typed_bert.commands`).

Names are imported on first use, so `import typed_bert` (and every command) stays light until a name is needed,
and registers nothing: `typed_bert.register_typed_bert()` registers TypedBert with the Auto classes and the
`relation-classification` pipeline, so that local folders load without `trust_remote_code`.
"""

import importlib

_EXPORTS = {
    "TypedBertConfig": "configuration_typed_bert",
    "TypedBertModel": "modeling_typed_bert",
    "TypedBertForSequenceClassification": "modeling_typed_bert",
    "TypedBertPreTrainedModel": "modeling_typed_bert",
    "register_typed_bert": "typed_bert.registration",
    "TypedBertDataCollator": "typed_bert.batching",
    "add_typed_entity_markers": "encoding_typed_bert",
    "encode_relation": "encoding_typed_bert",
    "encode_relations": "typed_bert.batching",
    "RelationClassificationPipeline": "pipeline_typed_bert",
    "TypedBertTrainer": "typed_bert.trainer",
    "RelationTrainer": "typed_bert.trainer",
    "TrainingSettings": "typed_bert.training",
    "train": "typed_bert.training",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'typed_bert' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
