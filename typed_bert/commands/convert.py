r"""Turn a BERT-family checkpoint into a TypedBert checkpoint folder without losing any of its weights.

    python scripts/convert.py --base-model PATH_OR_HUB_ID --entity-types Peop,Org,Loc,Other --output-dir OUT \
        [--labels L1,L2,...] [--overwrite]

BERT, RoBERTa, XLM-RoBERTa, CamemBERT and ELECTRA (discriminators whose embedding_size equals hidden_size)
checkpoints convert: a base model, one saved from a masked-LM, pre-training or token-classification head (no
pooler), or a fine-tuned sequence classifier of BERT or the RoBERTa family, which keeps its classifier and labels
("cls" pooling). RoBERTa's family differs from BERT in its position ids (after the padding index), its one token-type
row and its LayerNorm eps: the converted config keeps each (position_id_offset, type_vocab_size, layer_norm_eps), and
the source tokenizer is kept. Other architectures (DeBERTa, ELECTRA with projected embeddings, ...) are refused with
the reason. Before OUT is written, the converted folder is loaded through AutoModel.from_pretrained(...,
trust_remote_code=True) in a clean interpreter and compared with the base, loaded by its own transformers class, on
a right-padded batch and on each sentence alone: if its hidden states on real tokens (or a kept classifier's logits)
differ by more than 1e-5, the command fails and writes nothing.
"""

from __future__ import annotations

import json

from configuration_typed_bert import CLASSIFIER_POOLINGS
from typed_bert.command_line import command_parser, local_path, model_path, run
from typed_bert.hub.export import convert_checkpoint

EXAMPLE = "typed-bert convert --base-model bert-base-cased --entity-types PER,ORG,LOC --output-dir typed-bert-base"


def split_names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def main(argv: list[str] | None = None) -> dict:
    parser = command_parser(__doc__, EXAMPLE)
    parser.add_argument("--base-model", required=True, type=model_path, help="BERT-family checkpoint folder or Hub id")
    parser.add_argument("--entity-types", required=True, type=split_names, help="comma-separated, e.g. PER,ORG")
    parser.add_argument("--output-dir", required=True, type=local_path)
    parser.add_argument("--labels", type=split_names, default=None, help="comma-separated relation labels")
    parser.add_argument(
        "--pooling",
        choices=list(CLASSIFIER_POOLINGS),
        default=None,
        help="default: cls for a fine-tuned BERT or RoBERTa-family sequence classifier (keeps its head), else "
        "entity_start",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output-dir")
    args = parser.parse_args(argv)
    typed_fields = {} if args.pooling is None else {"classifier_pooling": args.pooling}
    report = convert_checkpoint(
        args.base_model,
        args.entity_types,
        args.output_dir,
        labels=args.labels,
        overwrite=args.overwrite,
        **typed_fields,
    )
    print(f"converted {args.base_model} ({report['model_type']}) -> {args.output_dir} in {report['seconds']} s")
    print(
        f"position_id_offset {report['position_id_offset']}, type_vocab_size {report['type_vocab_size']}, "
        f"layer_norm_eps {report['layer_norm_eps']:g} (from the base's config)"
    )
    print(f"weights of the base not used by TypedBert: {report['unused_weights'] or 'none'}")
    print(f"weights new in TypedBert (initialised): {report['new_weights']}")
    print(f"classifier of the base kept: {report['classifier_kept']}")
    print(f"verification: AutoModel.from_pretrained(OUT, trust_remote_code=True) loaded {report['verified_with']}")
    print(f"max abs difference of hidden states from the base model: {report['max_abs_difference']:.3g}")
    if "max_abs_logit_difference" in report:
        print(f"max abs difference of the classifier's logits: {report['max_abs_logit_difference']:.3g}")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    run(main)
