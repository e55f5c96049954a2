"""Where and in which precision to run: what `--device auto` and `--precision auto` pick."""

from __future__ import annotations

from pathlib import Path

import torch

# --precision / --dtype: auto picks bf16 where the hardware has bf16 units (see pick_precision).
PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_HELP = (
    "auto: bf16 autocast on CUDA GPUs that support it and on CPUs with bf16 units (AVX512-BF16, AMX), else fp32; the "
    "model is saved in fp32 either way"
)


def pick_device(name: str) -> str:
    """`--device`: `auto` picks cuda, then mps, then cpu; any other name is used as given."""
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def pick_precision(name: str, device: str) -> str:
    """`--precision`: `auto` is bf16 (autocast; the weights stay fp32) on CUDA GPUs that support it and on CPUs with
    bf16 units (AVX512-BF16 or AMX-BF16), fp32 elsewhere; `fp32` and `bf16` are used as given."""
    if name != "auto":
        return name
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device == "cpu":
        capabilities = cpu_capabilities()
        return "bf16" if capabilities.get("avx512_bf16") or capabilities.get("amx_bf16") else "fp32"
    return "fp32"


def cpu_capabilities() -> dict:
    """The CPU's instruction sets as torch sees them (empty before torch 2.10)."""
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    return get_capabilities() if get_capabilities else {}


def cpu_description() -> str:
    """The CPU's model name and its bf16 units, for benchmark reports: "Intel(R) Xeon(R) Processor (AMX-BF16)"."""
    name = "unknown CPU"
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), name)
    except OSError:
        pass
    capabilities = cpu_capabilities()
    units = "AMX-BF16" if capabilities.get("amx_bf16") else "AVX512-BF16" if capabilities.get("avx512_bf16") else ""
    return f"{name} ({units or 'no bf16 units'})"
