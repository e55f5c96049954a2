"""Compare what each entity signal is worth: train every requested variant with every requested seed on the same
data, budget and base model, then report mean ± std over the seeds.

    python scripts/compare.py --base-model PATH --train-file F --validation-file F --output-dir runs/compare
        --variants typed-embeddings typed-markers --seeds 1 2 3 [-- TRAIN_ARGS...]

A variant is an `--input-mode` of train.py (typed-embeddings, type-only, role-only, typed-markers,
markers+embeddings, plain). Arguments after `--` go to every training run (the shared budget, e.g. `-- --epochs 2`);
train.py's defaults apply otherwise, `--precision auto` included (bf16 autocast where the hardware has it, CUDA when
a GPU is present). Each run is `OUT/runs/VARIANT/seed-S/` (the trained model and `run.json`), its log
`OUT/runs/VARIANT/seed-S.log`.

Resumable: a finished run is not redone, an interrupted one is started again, and a later call with more variants or
seeds adds to the same folder, whose settings (base model, data files, training arguments) must then be the same.
Every call rewrites, from all finished runs of the folder, `comparison.md` (a table of dev micro-F1, AUPRC,
precision, recall and wall time, mean ± std over seeds), `comparison.png` (the same as bars with error bars) and
`comparison.json` (every run's figures).
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from configuration_typed_bert import INPUT_MODES
from typed_bert.command_line import command_parser, local_path, model_path, run
from typed_bert.errors import InputError
from typed_bert.hardware import pick_precision
from typed_bert.hub.model_card import INPUT_MODE_DESCRIPTIONS
from typed_bert.outputs import write_text_atomically

VARIANTS = list(INPUT_MODES)

EXAMPLE = (
    "typed-bert compare --base-model typed-bert-base --train-file train.jsonl --validation-file dev.jsonl "
    "--output-dir runs/compare --variants typed-embeddings typed-markers --seeds 1 2 3 -- --epochs 4"
)
# Set by the command for each run; not allowed among the shared training arguments.
RUN_FLAGS = (*("--base-model", "--train-file", "--validation-file", "--output-dir", "--input-mode", "--seed"),)
METRICS = (
    ("micro_f1", "dev micro-F1"),
    ("auprc", "AUPRC"),
    ("micro_precision", "precision"),
    ("micro_recall", "recall"),
)
SETTINGS_FILE = "settings.json"


def parse_args(argv: list[str]):
    own, train_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = command_parser(__doc__, EXAMPLE)
    parser.add_argument(
        "--base-model", required=True, type=model_path, help="BERT-family or TypedBert checkpoint folder or Hub id"
    )
    parser.add_argument("--train-file", required=True, type=local_path)
    parser.add_argument("--validation-file", required=True, type=local_path)
    parser.add_argument("--output-dir", required=True, type=local_path)
    parser.add_argument("--variants", nargs="+", required=True, choices=VARIANTS, metavar="VARIANT")
    parser.add_argument("--seeds", nargs="+", type=int, required=True)
    args = parser.parse_args(own)
    refused = [arg for arg in train_args if arg.split("=")[0] in RUN_FLAGS]
    if refused:
        raise InputError(
            f"training arguments {refused} are set by compare for each run; expected only the shared budget after "
            "'--' (e.g. -- --epochs 4 --batch-size 32)"
        )
    if "--final-fit" in train_args:
        raise InputError(
            "training argument --final-fit trains on the validation file, whose scores compare ranks the variants by; "
            "expected runs that keep the validation file held out (compare first, then train the winner with "
            "--final-fit)"
        )
    args.train_args = train_args
    return args


def check_settings(folder: Path, settings: dict) -> None:
    """Write the folder's settings on its first run; later calls must use the same ones."""
    path = folder / SETTINGS_FILE
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps(settings, indent=2) + "\n")
        return
    saved = json.loads(path.read_text())
    differing = {key: (saved.get(key), value) for key, value in settings.items() if saved.get(key) != value}
    if differing:
        details = "; ".join(f"{key}: {old!r} here, {new!r} now" for key, (old, new) in differing.items())
        raise InputError(
            f"this folder compares runs with other settings ({details}); expected the same base model, data files "
            "and training arguments, or another --output-dir",
            path,
        )


def run_folder(output_dir: Path, variant: str, seed: int) -> Path:
    return output_dir / "runs" / variant / f"seed-{seed}"


def is_finished(folder: Path) -> bool:
    return (folder / "run.json").is_file() and (folder / "eval_results.json").is_file()


def train_one(args, variant: str, seed: int, folder: Path, command: str) -> dict:
    """Train one run in a fresh interpreter (its log beside the folder, `seed-S.log`: train's --overwrite empties the
    folder itself); return its `run.json` record."""
    folder.mkdir(parents=True, exist_ok=True)
    train_argv = [
        *("--base-model", args.base_model, "--train-file", args.train_file),
        *("--validation-file", args.validation_file, "--output-dir", str(folder)),
        *("--input-mode", variant, "--seed", str(seed), "--overwrite"),
        *args.train_args,
    ]
    log_file = folder.with_name(f"{folder.name}.log")
    started = time.perf_counter()
    with log_file.open("w") as log:
        completed = subprocess.run(
            [sys.executable, "-m", "typed_bert.commands.train", *train_argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
    if completed.returncode != 0:
        tail = log_file.read_text().strip().splitlines()[-1:]
        raise InputError(
            f"training {variant} with seed {seed} failed (exit {completed.returncode}: {' '.join(tail)}); expected a "
            "run that finishes: see the log, fix the cause and run the same command again to resume",
            log_file,
        )
    record = {
        "variant": variant,
        "seed": seed,
        "wall_s": round(time.perf_counter() - started, 1),
        "train_args": train_argv,
        "command": command,
    }
    write_text_atomically(folder / "run.json", json.dumps(record, indent=2) + "\n")
    return record


def collect(output_dir: Path) -> list[dict]:
    """Every finished run of the folder: variant, seed, wall time and the dev metrics of its eval_results.json."""
    runs = []
    for folder in sorted((output_dir / "runs").glob("*/seed-*")):
        if not is_finished(folder):
            continue
        record = json.loads((folder / "run.json").read_text())
        results = json.loads((folder / "eval_results.json").read_text())
        runs.append({**record, **{name: results[name] for name, _ in METRICS}})
    return runs


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and sample standard deviation over seeds of each metric and the wall time, per variant, in the order of
    `VARIANTS`."""
    rows = []
    for variant in VARIANTS:
        mine = sorted((run for run in runs if run["variant"] == variant), key=lambda run: run["seed"])
        if not mine:
            continue
        row = {"variant": variant, "seeds": [run["seed"] for run in mine]}
        for name in [name for name, _ in METRICS] + ["wall_s"]:
            values = [run[name] for run in mine]
            row[name] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "values": values,
            }
        rows.append(row)
    return rows


def markdown_table(rows: list[dict], settings: dict, commands: list[str]) -> str:
    best = max(rows, key=lambda row: row["micro_f1"]["mean"])["variant"]
    header = ["variant", "what the model sees", "seeds"] + [title for _, title in METRICS] + ["wall time per run"]
    lines = [
        "# Entity signals compared",
        "",
        f"Base model `{settings['base_model']}`, trained on `{settings['train_file']}`, scored on "
        f"`{settings['validation_file']}`; training arguments: "
        f"`{' '.join(settings['train_args']) or 'the train.py defaults'}`. Mean ± sample standard deviation over "
        "the seeds; micro-F1 excludes `no_relation`. The best dev micro-F1 mean is in bold.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    for row in rows:
        cells = [f"`{row['variant']}`", INPUT_MODE_DESCRIPTIONS[row["variant"]], ", ".join(map(str, row["seeds"]))]
        for name, _ in METRICS:
            cell = f"{row[name]['mean']:.3f} ± {row[name]['std']:.3f}"
            cells.append(f"**{cell}**" if name == "micro_f1" and row["variant"] == best else cell)
        cells.append(f"{row['wall_s']['mean'] / 60:.1f} ± {row['wall_s']['std'] / 60:.1f} min")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Dev micro-F1 of each run:", ""]
    for row in rows:
        values = ", ".join(
            f"{value:.3f} (seed {seed})" for seed, value in zip(row["seeds"], row["micro_f1"]["values"], strict=True)
        )
        lines.append(f"- `{row['variant']}`: {values}")
    lines += ["", "Made by:", "", *[f"    {command}" for command in commands], ""]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> Path:
    """Grouped bars: each metric's mean per variant, with ± one standard deviation as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(rows))
    width = 0.8 / len(METRICS)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.6 * len(rows) + 2), 4.5))
    for index, (name, label) in enumerate(METRICS):
        means = [row[name]["mean"] for row in rows]
        stds = [row[name]["std"] for row in rows]
        axes.bar(x + (index - (len(METRICS) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=label)
    axes.set_xticks(x, [f"{row['variant']}\n({len(row['seeds'])} seeds)" for row in rows], fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel("dev score")
    axes.set_title(title, fontsize=10)
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_report(output_dir: Path, settings: dict) -> dict:
    runs = collect(output_dir)
    rows = summarize(runs)
    commands = sorted({run["command"] for run in runs})
    write_text_atomically(output_dir / "comparison.md", markdown_table(rows, settings, commands))
    title = f"{Path(settings['base_model']).name} on {Path(settings['validation_file']).name}: mean ± std over seeds"
    plot(rows, output_dir / "comparison.png", title)
    report = {"settings": settings, "summary": rows, "runs": runs}
    write_text_atomically(output_dir / "comparison.json", json.dumps(report, indent=2) + "\n")
    return report


def device_line() -> str:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else f"{torch.get_num_threads()} CPU threads"
    return f"device: {device} ({name}), precision auto = {pick_precision('auto', device)}"


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    settings = {
        "base_model": args.base_model,
        "train_file": args.train_file,
        "validation_file": args.validation_file,
        "train_args": args.train_args,
    }
    for path in (args.train_file, args.validation_file):
        if not Path(path).is_file():
            raise InputError("no such file; expected a JSON Lines file of relation examples", path)
    check_settings(output_dir, settings)
    command = "typed-bert compare " + shlex.join(argv)
    planned = [(variant, seed) for variant in args.variants for seed in args.seeds]
    pending = [(v, s) for v, s in planned if not is_finished(run_folder(output_dir, v, s))]
    print(f"{len(planned)} runs requested, {len(planned) - len(pending)} already finished; {device_line()}", flush=True)
    with tqdm(pending, unit="run", disable=not pending or None) as progress:
        for variant, seed in progress:
            progress.set_description(f"{variant} seed {seed}")
            folder = run_folder(output_dir, variant, seed)
            record = train_one(args, variant, seed, folder, command)
            results = json.loads((folder / "eval_results.json").read_text())
            progress.write(
                f"{variant} seed {seed}: dev micro-F1 {results['micro_f1']:.4f}, AUPRC {results['auprc']:.4f} "
                f"in {record['wall_s']:.0f} s"
            )
    report = write_report(output_dir, settings)
    print((output_dir / "comparison.md").read_text())
    print(f"wrote {output_dir / 'comparison.md'}, {output_dir / 'comparison.png'} and {output_dir / 'comparison.json'}")
    return report


if __name__ == "__main__":
    run(main)
