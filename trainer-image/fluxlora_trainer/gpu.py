"""GPU facts and telemetry through NVML (nvidia-ml-py); graceful when there is no GPU.

The NVML module is injectable (`Nvml(module=...)`) so tests can hand in a stand-in.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuSample:
    name: str
    utilizationPercent: float
    memoryUsedMiB: int
    memoryTotalMiB: int
    powerWatts: float

    def to_status(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Nvml:
    """A lazily initialised NVML session. `available` is False when NVML cannot start."""

    def __init__(self, module: Any | None = None) -> None:
        self._lock = threading.Lock()
        self._mod: Any | None = module
        self._handles: list[Any] = []
        self._started = False
        self.error: str | None = None

    def _start(self) -> bool:
        if self._started:
            return self.error is None
        self._started = True
        try:
            mod: Any = self._mod if self._mod is not None else importlib.import_module("pynvml")
            mod.nvmlInit()
            count = int(mod.nvmlDeviceGetCount())
            self._handles = [mod.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._mod = mod
            if not self._handles:
                self.error = "NVML reports no GPU"
        except Exception as exc:  # ImportError, NVMLError (driver missing), anything else
            self.error = f"NVML unavailable: {type(exc).__name__}: {exc}"
        if self.error:
            log.info("%s", self.error)
        return self.error is None

    @property
    def available(self) -> bool:
        with self._lock:
            return self._start()

    def facts(self) -> dict[str, Any]:
        """Static facts for repro.json: GPU names, memory, driver, CUDA driver version."""
        with self._lock:
            if not self._start():
                return {"available": False, "reason": self.error}
            mod = self._mod
            assert mod is not None
            gpus: list[dict[str, Any]] = []
            for h in self._handles:
                entry: dict[str, Any] = {"name": _safe(lambda h=h: _text(mod.nvmlDeviceGetName(h)))}
                mem = _safe(lambda h=h: mod.nvmlDeviceGetMemoryInfo(h))
                entry["memoryTotalMiB"] = int(mem.total) // (1 << 20) if mem is not None else None
                entry["uuid"] = _safe(lambda h=h: _text(mod.nvmlDeviceGetUUID(h)))
                gpus.append(entry)
            cuda = _safe(lambda: int(mod.nvmlSystemGetCudaDriverVersion()))
            return {
                "available": True,
                "count": len(gpus),
                "gpus": gpus,
                "driverVersion": _safe(lambda: _text(mod.nvmlSystemGetDriverVersion())),
                "cudaDriverVersion": f"{cuda // 1000}.{(cuda % 1000) // 10}" if isinstance(cuda, int) else None,
            }

    def sample(self) -> GpuSample | None:
        """Utilisation, memory and power, summed (memory, power) or averaged (utilisation) over GPUs."""
        with self._lock:
            if not self._start():
                return None
            mod = self._mod
            assert mod is not None
            try:
                names: list[str] = []
                util = 0.0
                used = total = 0
                power = 0.0
                for h in self._handles:
                    names.append(_text(mod.nvmlDeviceGetName(h)))
                    util += float(mod.nvmlDeviceGetUtilizationRates(h).gpu)
                    mem = mod.nvmlDeviceGetMemoryInfo(h)
                    used += int(mem.used)
                    total += int(mem.total)
                    p = _safe(lambda h=h: mod.nvmlDeviceGetPowerUsage(h))  # milliwatts; not on every GPU
                    power += float(p) / 1000.0 if p is not None else 0.0
            except Exception as exc:
                log.warning("GPU sample failed: %s", exc)
                return None
            count = len(self._handles)
            name = names[0] if count == 1 else f"{names[0]} x{count}"
            return GpuSample(
                name=name,
                utilizationPercent=round(util / count, 1),
                memoryUsedMiB=used // (1 << 20),
                memoryTotalMiB=total // (1 << 20),
                powerWatts=round(power, 1),
            )

    def close(self) -> None:
        with self._lock:
            if self._started and self.error is None and self._mod is not None:
                _safe(self._mod.nvmlShutdown)
            self._started = False
            self._handles = []
            self.error = None


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:
        return None


def module_version(name: str) -> str | None:
    """Installed distribution version (torch, accelerate, ...) without importing it."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version(name)
    except PackageNotFoundError:
        return None


__all__ = ["GpuSample", "Nvml", "module_version"]
