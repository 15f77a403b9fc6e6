"""The precision the real engine trains in on this CPU: bf16 where the CPU computes it natively,
float32 everywhere else.

A CPU without native bf16 (AVX2 only: no AVX512-BF16, no AMX) emulates every bf16 matmul and
convolution, about 400x slower than float32 (benchmarks/engine_step.py prints both): one step
of the tiny FLUX takes minutes there instead of seconds. The built-in profiles are for GPUs and
keep bf16; wherever the engine runs on a CPU (the demo, the engine tests, the benchmarks) the
spec.training overrides of `precision_overrides()` pick the precision from the CPU at hand.

What decides it, in order:
* ``FLUXLORA_CPU_PRECISION=bf16|fp32``: an explicit choice;
* ``ONEDNN_MAX_CPU_ISA`` / ``ATEN_CPU_CAPABILITY``: torch's own caps on its kernels (set them to
  ``AVX2``/``avx2`` on a bf16 CPU to run the other class's path and measure it); a cap below
  the bf16 instructions means no native bf16, whatever the CPU has;
* the CPU's flags in /proc/cpuinfo: ``avx512_bf16`` or ``amx_bf16``.
Stdlib only: the tests' own Python reads it, not the engine's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Precision = Literal["bf16", "fp32"]
PRECISIONS: tuple[Precision, ...] = ("bf16", "fp32")
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
PRECISION_ENV = "FLUXLORA_CPU_PRECISION"
# oneDNN ISAs (its `cpu_isa` names) that include bf16 instructions; anything else caps below them.
_ONEDNN_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX10", "ALL", "DEFAULT")
# ATen's dispatch levels below AVX-512 (torch 2.6: default, avx2, avx512).
_ATEN_BELOW_AVX512 = ("default", "avx2")

# spec.training for float32: the DiT, the autoencoder, the latents and the LoRA in float32
# (`--mixed_precision no` makes the engine load every model in float32; fp8 needs bf16/fp16).
FP32_TRAINING: dict[str, Any] = {"mixedPrecision": "no", "savePrecision": "float", "fp8Base": False}


@dataclass(frozen=True)
class CpuFacts:
    model: str
    flags: frozenset[str]
    environ: Mapping[str, str]

    @property
    def has_bf16_instructions(self) -> bool:
        return bool(self.flags & BF16_FLAGS)

    @property
    def torch_capped_below_bf16(self) -> str | None:
        """The variable that keeps torch from the CPU's bf16 instructions, as `NAME=value`."""
        isa = self.environ.get("ONEDNN_MAX_CPU_ISA", "").strip()
        if isa and not isa.upper().startswith(_ONEDNN_BF16_ISAS):
            return f"ONEDNN_MAX_CPU_ISA={isa}"
        aten = self.environ.get("ATEN_CPU_CAPABILITY", "").strip()
        if aten.lower() in _ATEN_BELOW_AVX512:
            return f"ATEN_CPU_CAPABILITY={aten}"
        return None

    @property
    def native_bf16(self) -> bool:
        return self.has_bf16_instructions and self.torch_capped_below_bf16 is None

    @property
    def capability(self) -> str:
        """What the CPU offers the engine, in words (for benchmark output and test reports)."""
        if self.has_bf16_instructions:
            have = ", ".join(sorted(self.flags & BF16_FLAGS))
            cap = self.torch_capped_below_bf16
            return f"native bf16 ({have})" + (f", capped by {cap}" if cap else "")
        vector = "AVX-512" if "avx512f" in self.flags else "AVX2" if "avx2" in self.flags else "no AVX2"
        return f"{vector}, no native bf16"

    @property
    def precision(self) -> Precision:
        chosen = self.environ.get(PRECISION_ENV, "").strip().lower()
        if chosen:
            if chosen not in PRECISIONS:
                raise ValueError(f"{PRECISION_ENV}={chosen!r}: expected one of {', '.join(PRECISIONS)}")
            return chosen  # type: ignore[return-value]
        return "bf16" if self.native_bf16 else "fp32"

    def describe(self) -> dict[str, str]:
        return {"cpu": self.model, "capability": self.capability, "precision": self.precision}


def cpu_facts(cpuinfo: Path = Path("/proc/cpuinfo"), environ: Mapping[str, str] | None = None) -> CpuFacts:
    model, flags = "unknown CPU", frozenset[str]()
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return CpuFacts(model, flags, dict(os.environ if environ is None else environ))


def precision_overrides(precision: Precision) -> dict[str, Any]:
    """spec.training for this precision on a CPU: float32 settings, or nothing (the profiles' bf16)."""
    return dict(FP32_TRAINING) if precision == "fp32" else {}
