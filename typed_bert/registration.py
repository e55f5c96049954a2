"""Registration of TypedBert with transformers' Auto classes and pipeline registry, for a local user who asks."""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification
from transformers.pipelines import PIPELINE_REGISTRY

from configuration_typed_bert import TypedBertConfig
from modeling_typed_bert import RELATION_TASK, TypedBertForSequenceClassification, TypedBertModel
from pipeline_typed_bert import RelationClassificationPipeline


def register_typed_bert() -> None:
    """Register TypedBert with `AutoConfig`, `AutoModel`, `AutoModelForSequenceClassification` and the
    `relation-classification` pipeline, so that this process loads TypedBert folders without `trust_remote_code`.

    Nothing calls it at import: a process that loads TypedBert checkpoints with `trust_remote_code=True` then runs
    each checkpoint's own code.
    """
    AutoConfig.register(TypedBertConfig.model_type, TypedBertConfig, exist_ok=True)
    AutoModel.register(TypedBertConfig, TypedBertModel, exist_ok=True)
    AutoModelForSequenceClassification.register(TypedBertConfig, TypedBertForSequenceClassification, exist_ok=True)
    PIPELINE_REGISTRY.register_pipeline(
        RELATION_TASK, pipeline_class=RelationClassificationPipeline, pt_model=AutoModelForSequenceClassification
    )
