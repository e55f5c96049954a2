"""Run a checkpoint the way a user would: in a fresh interpreter that has not imported this package, through the
Auto classes with `trust_remote_code=True`, so the code that runs is the code in the folder or Hub repo.

(In a process that imported `modeling_typed_bert`, transformers prefers that explicitly registered local class over
the checkpoint's own code, so an in-process check would prove nothing about the published files.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from typed_bert.errors import InputError

_SCRIPT = """
import json, sys
import torch
import transformers
from safetensors.torch import load_file, save_file
request = json.loads(sys.argv[1])
auto_class = getattr(transformers, request["auto_class"])
model = auto_class.from_pretrained(request["source"], trust_remote_code=True, **request["load_kwargs"]).eval()
outputs = {}
for index in range(request["batches"]):
    with torch.no_grad():
        output = model(**load_file(f"{request['inputs']}-{index}"))
    outputs[str(index)] = (output.logits if hasattr(output, "logits") else output.last_hidden_state).contiguous()
save_file(outputs, request["outputs"])
print(json.dumps({"module": type(model).__module__, "class": type(model).__name__}))
"""


_EXTRACT_SCRIPT = """
import json, sys
from transformers import pipeline
request = json.loads(sys.argv[1])
source, load_kwargs = request["source"], request["load_kwargs"]
classify = pipeline("relation-classification", model=source, trust_remote_code=True, **load_kwargs)
print(json.dumps([result["entities"] for result in classify(request["texts"])]))
"""


class VerificationError(InputError):
    """The checkpoint could not be loaded and run in a clean interpreter. The message is one line, naming the folder
    or repo and the child's last error line; the child's whole stderr is in `stderr` (and a note on the traceback,
    which `--debug` shows)."""

    def __init__(self, source: str | Path, auto_class: str, stderr: str) -> None:
        lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
        super().__init__(
            f"{auto_class}.from_pretrained(..., trust_remote_code=True) failed in a clean interpreter: "
            f"{lines[-1] if lines else 'no error message'}; expected a TypedBert checkpoint that loads as published "
            "(--debug shows the whole traceback)",
            source,
        )
        self.stderr = stderr
        if hasattr(self, "add_note"):  # Python >= 3.11
            self.add_note(f"stderr of the clean interpreter:\n{stderr}")


def run_in_clean_process(
    source: str | Path,
    batches: list[dict[str, torch.Tensor]],
    auto_class: str = "AutoModel",
    **load_kwargs,
) -> tuple[list[torch.Tensor], str]:
    """Load `source` with `auto_class.from_pretrained(..., trust_remote_code=True)` in a fresh interpreter and run
    each batch of inputs. Returns the logits (classifiers) or last hidden states of each batch, and the module the
    class came from. `source` is a folder when it is a `Path` (handed to the child as an absolute path: the child runs
    in another working directory, where transformers would take a relative one for a Hub repo id), else a repo id."""
    if isinstance(source, Path):
        source = source.absolute()
    with tempfile.TemporaryDirectory(prefix="typed-bert-verify-") as work:
        work = Path(work)
        for index, inputs in enumerate(batches):
            save_file({name: tensor.contiguous() for name, tensor in inputs.items()}, work / f"inputs-{index}")
        request = {
            "source": str(source),
            "auto_class": auto_class,
            "inputs": str(work / "inputs"),
            "batches": len(batches),
            "outputs": str(work / "outputs.safetensors"),
            "load_kwargs": load_kwargs,
        }
        result = subprocess.run(
            [sys.executable, "-I", "-c", _SCRIPT, json.dumps(request)], cwd=work, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise VerificationError(source, auto_class, result.stderr)
        module = json.loads(result.stdout.strip().splitlines()[-1])["module"]
        outputs = load_file(work / "outputs.safetensors")
        return [outputs[str(index)] for index in range(len(batches))], module


def extract_in_clean_process(source: str | Path, texts: list[str], **load_kwargs) -> list[list[dict]]:
    """The entities the relation-classification pipeline of `source` (a folder when a `Path`, else a repo id) finds
    in each text, run from raw text in a fresh interpreter: the bundled entity model as published."""
    if isinstance(source, Path):
        source = source.absolute()
    with tempfile.TemporaryDirectory(prefix="typed-bert-verify-") as work:
        request = {"source": str(source), "texts": texts, "load_kwargs": load_kwargs}
        result = subprocess.run(
            [sys.executable, "-I", "-c", _EXTRACT_SCRIPT, json.dumps(request)], cwd=work, capture_output=True, text=True
        )
    if result.returncode != 0:
        raise VerificationError(source, "pipeline", result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])
