"""The one place that decides the numeric precision of backbone forward passes.

``auto`` (every command's default) picks bfloat16 autocast only where the hardware runs it
natively, and float32 everywhere else:

- CUDA: bf16 when the device supports it (``torch.cuda.is_bf16_supported``, Ampere and newer);
- x86 CPU: bf16 when it reports AVX512-BF16 or AMX-BF16 (``avx512_bf16`` / ``amx_bf16`` in
  ``/proc/cpuinfo``, else PyTorch's own cpuinfo probe);
- ARM CPU: bf16 when it reports the BF16 extension (``bf16`` in ``/proc/cpuinfo`` Features,
  or ``hw.optional.arm.FEAT_BF16`` on macOS);
- anything else: fp32.

Why a capability check and not a timing: on a CPU without native bf16 instructions oneDNN
emulates bf16 through float32 conversions, and autocast ran a ``tsm_tiny`` training step
14x slower than float32 (AMD EPYC, no AVX512-BF16); with them it is 1.6x faster. A timing
probe would cost seconds per command and be fooled by a loaded machine.

An explicit ``bf16`` is honoured everywhere (with a one-line warning where it is emulated);
an explicit ``fp32`` always is. Weights, optimizer state and outputs stay float32 either way.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import subprocess
import sys
from functools import lru_cache

from rgbtad.core.errors import RgbtadError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
_ARM = ("aarch64", "arm64", "armv8l")


def cpuinfo_flags(text: str) -> frozenset[str]:
    """The CPU feature flags in the text of /proc/cpuinfo ("flags" on x86, "Features" on ARM)."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def _read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:  # not Linux
        return ""


def _torch_probe(name: str) -> bool:
    """PyTorch's cpuinfo answer (``torch.cpu._is_avx512_bf16_supported`` etc.), where this
    torch has it."""
    import torch

    probe = getattr(torch.cpu, name, None)
    try:
        return bool(probe()) if callable(probe) else False
    except Exception:  # noqa: BLE001 - a probe that fails means "not known to be there"
        return False


def _macos_arm_bf16() -> bool:
    try:
        out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True,
                             timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return out.strip() == "1"


def native_bf16_from_flags(machine: str, flags: frozenset[str]) -> bool | None:
    """Native bfloat16 from an architecture name and its /proc/cpuinfo flags; None when the
    flags do not tell (none read, or an architecture this module does not know)."""
    machine = machine.lower()
    if not flags:
        return None
    if machine in _X86:
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    if machine in _ARM:
        return "bf16" in flags
    return None


@lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True when this CPU executes bfloat16 arithmetic natively (module doc)."""
    machine = platform.machine().lower()
    answer = native_bf16_from_flags(machine, cpuinfo_flags(_read_cpuinfo()))
    if answer is not None:
        return answer
    if machine in _X86:
        return _torch_probe("_is_avx512_bf16_supported") or _torch_probe("_is_amx_tile_supported")
    if machine in _ARM:
        return sys.platform == "darwin" and _macos_arm_bf16()
    return False


def cuda_has_bf16(device) -> bool:
    import torch

    try:
        with torch.cuda.device(device):
            return bool(torch.cuda.is_bf16_supported())
    except Exception:  # noqa: BLE001 - no usable CUDA: no bf16
        return False


def native_bf16(device) -> bool:
    """Whether `device` (a torch.device or its name) runs bfloat16 natively."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return cuda_has_bf16(device)
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def cpu_model() -> str:
    """The CPU's model name, as lscpu shows it (for recording figures)."""
    for line in _read_cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def resolve_precision(requested: str | None, device) -> str:
    """``"fp32"`` or ``"bf16"``: the precision to run on `device` for `requested` (``auto``,
    ``fp32`` or ``bf16``; None means ``auto``). Logs the decision once per process."""
    import torch

    requested = "auto" if requested is None else str(requested)
    if requested not in PRECISIONS:
        raise RgbtadError(f"unknown precision {requested!r}; choose from {', '.join(PRECISIONS)}")
    device = torch.device(device)
    native = native_bf16(device)
    chosen = ("bf16" if native else "fp32") if requested == "auto" else requested
    _announce(chosen, device.type, native)
    return chosen


@lru_cache(maxsize=None)
def _announce(chosen: str, device_type: str, native: bool) -> None:
    """One line per decision and process (a command resolves once, its stages again)."""
    where = cpu_model() if device_type == "cpu" else device_type
    support = "native bfloat16" if native else "no native bfloat16"
    if chosen == "bf16" and not native:
        log.warning("precision bf16 on %s (%s): emulated, expect it to be several times slower than fp32",
                    where, support)
    else:
        log.info("precision %s (%s: %s)", chosen, where, support)


def autocast(precision: str, device):
    """The context a backbone forward pass runs in: bfloat16 autocast for ``bf16``, nothing
    for ``fp32``. `precision` must be resolved (`resolve_precision`)."""
    import torch

    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    if precision == "fp32":
        return contextlib.nullcontext()
    raise ValueError(f"unresolved precision {precision!r}")
