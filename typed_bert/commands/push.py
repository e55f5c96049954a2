r"""Publish a TypedBert checkpoint folder to the Hugging Face Hub (or any endpoint that speaks its protocol).

    python scripts/push.py --model OUT --repo-id org/typed-bert [--private] [--revision BRANCH] \
        [--commit-message M] [--tag v1] [--no-verify]

Uses HF_ENDPOINT and HF_TOKEN as usual. Uploads the whole folder to a temporary branch, downloads it into a fresh
cache and checks that from_pretrained(..., trust_remote_code=True) gives the local folder's logits (hidden states
through AutoModel for an encoder without labels); only then commits the same folder to --revision and tags it (v1,
v2, ...: the model card's loading snippet pins that tag).
Refuses a folder without the code files or auto_map, or with pickle files. An ONNX export (typed-bert export) is
published the same way and checked through ONNX Runtime instead (docs/serving.md).
"""

from __future__ import annotations

import json

from typed_bert.command_line import command_parser, local_path, run
from typed_bert.hub.push import push_folder

EXAMPLE = "typed-bert push --model out --repo-id org/typed-bert"


def main(argv: list[str] | None = None):
    parser = command_parser(__doc__, EXAMPLE)
    parser.add_argument("--model", required=True, type=local_path,
                        help="checkpoint folder written by train or convert, or an ONNX export")  # fmt: skip
    parser.add_argument("--repo-id", required=True, help="namespace/name")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--revision", default="main", help="branch to commit to (created if missing)")
    parser.add_argument("--commit-message", default=None)
    parser.add_argument("--tag", default=None, help="tag of the new commit (default: the next vN)")
    parser.add_argument("--no-verify", action="store_true", help="skip the download-and-compare check")
    parser.add_argument("--language", nargs="+", default=None, help="language code(s) for the model card")
    parser.add_argument(
        "--entity-model", type=local_path, default=None,
        help="first bundle this entity model folder (typed-bert train-entities) into --model as entities/",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.entity_model:
        from typed_bert.entities import bundle_entity_model

        bundle_entity_model(args.model, args.entity_model)
    result = push_folder(
        args.model,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        tag=args.tag,
        verify=not args.no_verify,
        language=args.language,
    )
    print(f"pushed {args.model} to {result.repo_id} @ {result.commit} (tag {result.tag}): {len(result.files)} files")
    if result.max_abs_difference is not None:
        # An ONNX export is run back in this process, from a fresh cache; a PyTorch folder in a clean interpreter.
        where = "in a clean interpreter" if result.verified_with.startswith("Auto") else "from a fresh cache"
        print(
            f"verified: reloaded from the Hub through {result.verified_with} {where} "
            f"({result.loaded_from}), max abs difference from the local folder {result.max_abs_difference}"
        )
    if result.entities_verified is not None:
        print(f"verified: the bundled entity model finds the same {result.entities_verified} entities from the Hub")
    print(json.dumps(result.__dict__))
    return result


if __name__ == "__main__":
    run(main)
