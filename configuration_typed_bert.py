"""TypedBert model configuration. Uploaded to the Hub with the weights; imports only transformers."""

from __future__ import annotations

from typing import NamedTuple

from transformers import BertConfig

CLASSIFIER_POOLINGS = ("cls", "entity_start")


class InputMode(NamedTuple):
    """What an input mode tells the model about the subject and object."""

    type_table: bool  # every entity token gets its entity type's vector
    role_table: bool  # every entity token gets its role's vector (subject or object)
    markers: bool  # typed entity markers are inserted into the text


# "typed-markers" is Zhou & Chen (2021); "plain" has no entity information in its input.
INPUT_MODES = {
    "typed-embeddings": InputMode(type_table=True, role_table=True, markers=False),
    "type-only": InputMode(type_table=True, role_table=False, markers=False),
    "role-only": InputMode(type_table=False, role_table=True, markers=False),
    "typed-markers": InputMode(type_table=False, role_table=False, markers=True),
    "markers+embeddings": InputMode(type_table=True, role_table=True, markers=True),
    "plain": InputMode(type_table=False, role_table=False, markers=False),
}
# "per_pair": one sequence per (subject, object) pair. "per_subject": one sequence per subject, its objects appended as
# marker tokens (PL-Marker's subject-oriented packing; `encoding_typed_bert.SubjectPackedPairs`).
PAIR_ENCODINGS = ("per_pair", "per_subject")
NO_ENTITY_TYPE = "O"
# Entity roles: 0 = outside both entities, 1 = subject, 2 = object.
ENTITY_ROLES = ("none", "subject", "object")
SUBJECT_ROLE = ENTITY_ROLES.index("subject")
OBJECT_ROLE = ENTITY_ROLES.index("object")
# Word shapes (`encoding_typed_bert.word_shape_ids`): the letter case of a token's word and whether the word is glued
# to the one before it (the "." of "Boise."), which an uncased WordPiece vocabulary throws away. 0: special tokens.
_CASES = ("lower", "title", "upper", "mixed", "digit", "other")
WORD_SHAPES = ("none", *_CASES, *(f"glued {case}" for case in _CASES))
# The label of pairs that hold no relation (TACRED, KLUE-RE, CoNLL04 here): not a relation when scoring or reporting.
NO_RELATION = "no_relation"


class TypedBertConfig(BertConfig):
    r"""
    Configuration of a [`TypedBertModel`]: a BERT whose input embeddings also carry the entity type and the entity
    role (subject or object) of every token, for relation extraction.

    Every argument of [`~transformers.BertConfig`] is accepted as well.

    Args:
        entity_types (`list[str]`, *optional*, defaults to `["O"]`):
            The entity type vocabulary; index 0 is the "no entity" type of every token outside the entities.
        classifier_pooling (`str`, *optional*, defaults to `"entity_start"`):
            What [`TypedBertForSequenceClassification`] classifies: `"cls"`, BERT's pooled [CLS] vector (the pooler
            exists only then), or `"entity_start"`, the first subject token's and first object token's states
            (Baldini Soares et al. 2019; Zhou & Chen 2021), found from `entity_role_ids`.
        input_mode (`str`, *optional*, defaults to `"typed-embeddings"`):
            What the model is told about the subject and object (`INPUT_MODES`): both entity tables, one of them
            (`"type-only"`, `"role-only"`), Zhou & Chen's typed entity markers in the text (`"typed-markers"`), the
            markers and both tables (`"markers+embeddings"`) or nothing (`"plain"`). Only the tables a mode uses exist.
        pair_encoding (`str`, *optional*, defaults to `"per_pair"`):
            How the pairs of a text are encoded: `"per_pair"`, one sequence per (subject, object) pair, or
            `"per_subject"`, one per subject with its objects appended as marker tokens (PL-Marker's packing; needs
            `entity_start` pooling and no markers in the text).
        entity_model (`str`, *optional*):
            The subfolder holding the entity model (typically `"entities"`) with which the pipeline extracts from raw
            text. None: entities are given with each text.
        word_shapes (`bool`, *optional*, defaults to `False`):
            Whether the input embeddings also carry the shape of each token's word (`WORD_SHAPES`), a table that
            starts at zero; the pipelines compute the ids from the text.
        position_id_offset (`int`, *optional*, defaults to 0):
            The position id of the first token when no `position_ids` are given: 0 for BERT, 2 for a checkpoint
            converted from RoBERTa's family (`pad_token_id + 1`).
        max_span_width (`int`, *optional*, defaults to 14):
            The longest candidate entity of [`TypedBertForSpanClassification`], in words: the rows of its width table.
    """

    model_type = "typed_bert"

    def __init__(
        self,
        entity_types: list[str] | None = None,
        classifier_pooling: str = "entity_start",
        input_mode: str = "typed-embeddings",
        pair_encoding: str = "per_pair",
        position_id_offset: int = 0,
        entity_model: str | None = None,
        word_shapes: bool = False,
        max_span_width: int = 14,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.entity_types = _checked_entity_types([NO_ENTITY_TYPE] if entity_types is None else entity_types)
        self.classifier_pooling = _checked_choice("classifier_pooling", classifier_pooling, CLASSIFIER_POOLINGS)
        self.input_mode = _checked_choice("input_mode", input_mode, tuple(INPUT_MODES))
        self.pair_encoding = _checked_choice("pair_encoding", pair_encoding, PAIR_ENCODINGS)
        if pair_encoding == "per_subject" and (self.entity_markers or classifier_pooling != "entity_start"):
            raise ValueError(
                f"pair_encoding='per_subject' reads the subject's first token and each object's markers: it needs "
                f"classifier_pooling='entity_start' and an input mode without markers in the text, got "
                f"classifier_pooling={classifier_pooling!r}, input_mode={self.input_mode!r}."
            )
        if not isinstance(position_id_offset, int) or not 0 <= position_id_offset < self.max_position_embeddings:
            raise ValueError(
                f"position_id_offset={position_id_offset!r} must be an int in [0, max_position_embeddings="
                f"{self.max_position_embeddings})."
            )
        self.position_id_offset = position_id_offset
        if entity_model is not None and (not isinstance(entity_model, str) or not entity_model.isidentifier()):
            raise ValueError(f"entity_model={entity_model!r} must be the name of a subfolder such as 'entities'.")
        self.entity_model = entity_model
        if not isinstance(word_shapes, bool):
            raise ValueError(f"word_shapes={word_shapes!r} must be a bool.")
        self.word_shapes = word_shapes
        if not isinstance(max_span_width, int) or isinstance(max_span_width, bool) or max_span_width < 1:
            raise ValueError(f"max_span_width={max_span_width!r} must be an int of at least 1 (words).")
        self.max_span_width = max_span_width

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        """Read config.json, a plain BERT's as a TypedBert one (BERT's fields, no entity types yet)."""
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

    @property
    def num_word_shapes(self) -> int:
        """Rows of the word shape table: "none" (special tokens) plus the shapes."""
        return len(WORD_SHAPES)

    @property
    def max_sequence_length(self) -> int:
        """The most tokens a sequence may have: the position table's rows after `position_id_offset`."""
        return self.max_position_embeddings - self.position_id_offset

    @property
    def use_entity_type_embeddings(self) -> bool:
        """Whether the input mode has the entity type table."""
        return INPUT_MODES[self.input_mode].type_table

    @property
    def use_entity_role_embeddings(self) -> bool:
        """Whether the input mode has the entity role table."""
        return INPUT_MODES[self.input_mode].role_table

    @property
    def use_entity_embeddings(self) -> bool:
        """Whether the input mode has either entity table."""
        return self.use_entity_type_embeddings or self.use_entity_role_embeddings

    @property
    def entity_markers(self) -> bool:
        """Whether the text gets typed entity markers before encoding."""
        return INPUT_MODES[self.input_mode].markers


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

__all__ = ["INPUT_MODES", "InputMode", "TypedBertConfig"]
