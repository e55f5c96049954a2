"""Tiny random checkpoints of the BERT family's other members, built locally (no download), each with a tokenizer of
its own kind: byte-level BPE for RoBERTa, SentencePiece-style unigram for XLM-RoBERTa and CamemBERT, BERT's
WordPiece (MiniLM's) for ELECTRA."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from tokenizers import ByteLevelBPETokenizer, SentencePieceUnigramTokenizer
from tokenizers.processors import RobertaProcessing, TemplateProcessing

from tests.conftest import SHARED, minilm_path

CORPUS = [
    "Bill Gates founded Microsoft with Paul Allen in Albuquerque, New Mexico, in 1975.",
    "Son Heung-min's father is Son Woong-jung.",
    "John Smith works for Acme Corp in Paris; Lee Harvey Oswald shot President John F. Kennedy in Dallas.",
    "The company is based in Seattle, where its chief executive lives.",
] * 25
# Tokenizers learn CoNLL04's words too, so that the training tests' sentences fit in a few hundred tokens.
CORPUS += sorted({json.loads(line)["text"] for line in (SHARED / "data" / "conll04" / "train.jsonl").open()})
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "cls_token": "<s>",
           "sep_token": "</s>", "mask_token": "<mask>"}  # fmt: skip
SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37}
# RoBERTa's vocabulary starts <s> 0, <pad> 1, </s> 2, <unk> 3: the pad id is the padding index of its positions.
SPECIAL_IDS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
FAMILIES = ("roberta", "xlm-roberta", "camembert", "electra")


def tokenizer_class(name: str):
    """transformers 4 names the tokenizers-backed classes `...Fast`; 5 gives the plain name to that class."""
    return getattr(transformers, f"{name}Fast", None) or getattr(transformers, name)


def byte_level_bpe_tokenizer(trim_offsets: bool = True):
    backend = ByteLevelBPETokenizer()
    backend.train_from_iterator(CORPUS, vocab_size=2000, min_frequency=1, special_tokens=SPECIAL_IDS)
    backend._tokenizer.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=trim_offsets)
    return tokenizer_class("RobertaTokenizer")(tokenizer_object=backend._tokenizer, **SPECIAL)


def unigram_tokenizer(class_name: str):
    backend = SentencePieceUnigramTokenizer()
    backend.train_from_iterator(CORPUS, vocab_size=2000, special_tokens=SPECIAL_IDS, unk_token="<unk>")
    backend.post_processor = TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return tokenizer_class(class_name)(tokenizer_object=backend._tokenizer, **SPECIAL)


def save_tiny(folder: Path, family: str, head: str = "Model", **config_overrides) -> Path:
    """Save a random 2-layer, 32-wide checkpoint of `family` (its `head` class, e.g. "Model", "ForMaskedLM",
    "ForSequenceClassification") and its tokenizer to `folder`."""
    torch.manual_seed(0)
    if family == "electra":
        tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path())
        config = transformers.ElectraConfig(
            vocab_size=len(tokenizer), **{"embedding_size": 32, **SIZES, **config_overrides}
        )
        prefix = "Electra"
    else:
        prefix, tokenizer = {
            "roberta": ("Roberta", byte_level_bpe_tokenizer()),
            "xlm-roberta": ("XLMRoberta", unigram_tokenizer("XLMRobertaTokenizer")),
            "camembert": ("Camembert", unigram_tokenizer("CamembertTokenizer")),
        }[family]
        config = getattr(transformers, f"{prefix}Config")(
            vocab_size=len(tokenizer), max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
            eos_token_id=2, layer_norm_eps=1e-5, **SIZES, **config_overrides,
        )  # fmt: skip
    model = getattr(transformers, f"{prefix}{head}")(config)
    with torch.no_grad():  # position vectors far from each other: a wrong position id shows in the hidden states
        model.base_model.embeddings.position_embeddings.weight.normal_(0, 1.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
