"""TypedBert model configuration.

This file is uploaded to the Hugging Face Hub next to the weights and runs on the user's machine under
`trust_remote_code=True`: it imports only `transformers` (and, through it, torch).
"""

from __future__ import annotations

from transformers import BertConfig

ENTITY_FUSIONS = ("sum", "mean")
CLASSIFIER_POOLINGS = ("cls", "entity_start")
NO_ENTITY_TYPE = "O"
# Entity roles: 0 = outside both entities, 1 = subject, 2 = object.
ENTITY_ROLES = ("none", "subject", "object")
SUBJECT_ROLE = ENTITY_ROLES.index("subject")
OBJECT_ROLE = ENTITY_ROLES.index("object")


class TypedBertConfig(BertConfig):
    r"""
    Configuration of a [`TypedBertModel`]: a BERT whose input embeddings also carry the entity type and the entity
    role (subject or object) of every token, for relation extraction.

    Every argument of [`~transformers.BertConfig`] is accepted as well.

    Args:
        entity_types (`list[str]`, *optional*, defaults to `["O"]`):
            The entity type vocabulary. Index 0 is the "no entity" type given to every token outside the subject and
            object spans; the other names are the types of the data set (`PER`, `ORG`, ...). Saved in config.json
            so a published model says which types it knows.
        entity_fusion (`str`, *optional*, defaults to `"sum"`):
            How the entity vectors join the token's word vector before BERT adds the segment and position
            embeddings. `"sum"`: word + type + role. `"mean"`: word + (type + role) / 2, the entity vector being the
            mean of the type and role vectors. Both leave the word vector itself unscaled, so with zero tables (a
            converted BERT) both compute exactly what BERT computes; with trained tables `"mean"` is `"sum"` with
            the entity tables at half scale (a reparametrisation, not a different model family). Averaging all of
            BERT's embeddings would change nothing at all: the LayerNorm after the sum ignores a common scale.
        classifier_pooling (`str`, *optional*, defaults to `"entity_start"`):
            What [`TypedBertForSequenceClassification`] classifies. `"cls"`: BERT's pooled [CLS] vector.
            `"entity_start"`: the concatenated hidden states of the first subject token and the first object token
            (Baldini Soares et al. 2019; Zhou & Chen 2021), found from `entity_role_ids`. BERT's pooler is built
            only for `"cls"`: a layer that no loss reaches would break DDP and gradient checkpointing.
        use_entity_embeddings (`bool`, *optional*, defaults to `True`):
            Whether the entity type and role tables exist and are added to the input. `False` gives a plain BERT
            encoder that still uses `entity_role_ids` to find the entity start tokens for pooling: the setting of
            the typed entity marker baseline, where the entity information is in the text itself.
        entity_markers (`bool`, *optional*, defaults to `False`):
            Whether the model was trained on text with Zhou & Chen's typed entity markers ("@ * peop * Bill @");
            the relation-classification pipeline then inserts them before encoding.
    """

    model_type = "typed_bert"

    def __init__(
        self,
        entity_types: list[str] | None = None,
        entity_fusion: str = "sum",
        classifier_pooling: str = "entity_start",
        use_entity_embeddings: bool = True,
        entity_markers: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.entity_types = _checked_entity_types([NO_ENTITY_TYPE] if entity_types is None else entity_types)
        self.entity_fusion = _checked_choice("entity_fusion", entity_fusion, ENTITY_FUSIONS)
        self.classifier_pooling = _checked_choice("classifier_pooling", classifier_pooling, CLASSIFIER_POOLINGS)
        if not isinstance(use_entity_embeddings, bool):
            raise ValueError(f"use_entity_embeddings must be a bool, got {use_entity_embeddings!r}.")
        self.use_entity_embeddings = use_entity_embeddings
        if not isinstance(entity_markers, bool):
            raise ValueError(f"entity_markers must be a bool, got {entity_markers!r}.")
        self.entity_markers = entity_markers

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        """Read config.json; a plain BERT's is read as a TypedBert one (BERT's fields, no entity types yet), so that
        loading a BERT checkpoint into a TypedBert class gives one warning, the load report of the new weights."""
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        if config_dict.get("model_type") == "bert":
            config_dict = {**config_dict, "model_type": cls.model_type}
        return config_dict, kwargs

    @property
    def num_entity_types(self) -> int:
        """Rows of the entity type table: the "no entity" type plus the data set's types."""
        return len(self.entity_types)

    @property
    def num_entity_roles(self) -> int:
        """Rows of the entity role table: none, subject, object."""
        return len(ENTITY_ROLES)


def _checked_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {list(allowed)}.")
    return value


def _checked_entity_types(entity_types: object) -> list[str]:
    if isinstance(entity_types, str) or not isinstance(entity_types, (list, tuple)):
        raise ValueError(
            f"entity_types must be a list of type names with the 'no entity' type first, got {entity_types!r}."
        )
    names = list(entity_types)
    if not names:
        raise ValueError("entity_types is empty; expected at least the 'no entity' type, e.g. ['O', 'PER', 'ORG'].")
    bad = [name for name in names if not isinstance(name, str) or not name.strip()]
    if bad:
        raise ValueError(f"entity_types must be non-empty strings; got {bad!r} in {names!r}.")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"entity_types has duplicates {duplicates!r} in {names!r}; each type must appear once.")
    return names


TypedBertConfig.register_for_auto_class()

__all__ = ["TypedBertConfig"]
