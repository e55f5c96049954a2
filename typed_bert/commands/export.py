r"""Export a trained TypedBert folder (and its bundled entity model) to ONNX graphs for ONNX Runtime.

    typed-bert export --format onnx --model FOLDER --output-dir OUT [--quantize int8 --check-file DEV.jsonl]

Needs the extra: pip install "typed-bert[onnx]". Each graph is run by ONNX Runtime against the PyTorch model on real
encodings (the texts and entities of --check-file, JSON Lines of pairs or entity lists; else sentences made of the
model's entity types) and refused when a logit differs by more than 1e-4; --quantize int8 adds dynamically quantized
graphs, refused when their labels agree with PyTorch's on fewer than --min-agreement of the check file's pairs or
tokens. Nothing is written unless every graph passes. OUT is read by `typed-bert predict --model OUT` and
`typed_bert.onnx_runtime.onnx_pipeline(OUT)`.
"""

from __future__ import annotations

import json

from typed_bert.command_line import command_parser, fraction, local_path, run

EXAMPLE = "typed-bert export --format onnx --model typed-bert-conll04 --output-dir typed-bert-conll04-onnx"


def main(argv: list[str] | None = None) -> dict:
    parser = command_parser(__doc__, EXAMPLE)
    parser.add_argument("--format", required=True, choices=["onnx"])
    parser.add_argument("--model", required=True, type=local_path, help="a trained TypedBert folder")
    parser.add_argument("--output-dir", required=True, type=local_path)
    parser.add_argument("--quantize", choices=["int8"], default=None, help="add dynamically quantized graphs")
    parser.add_argument("--check-file", type=local_path, default=None, help="JSON Lines to check the graphs on")
    parser.add_argument("--min-agreement", type=fraction, default=0.95, help="int8 label agreement required")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output-dir")
    args = parser.parse_args(argv)
    from typed_bert.onnx_export import export_onnx

    report = export_onnx(args.model, args.output_dir, args.quantize == "int8", args.check_file, args.min_agreement,
                         args.overwrite)  # fmt: skip
    for model, graphs in report.items():
        for precision, check in graphs.items():
            print(f"{model} {precision}: max logit difference {check['max_logit_difference']:.2e}, label agreement "
                  f"{check['label_agreement']:.4f}, {check['bytes'] / 2**20:.1f} MiB")  # fmt: skip
    print(f"exported -> {args.output_dir}")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    run(main)
