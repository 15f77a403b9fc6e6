"""NVML facts and telemetry with a stand-in NVML module, and without any."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from fluxlora_trainer.gpu import Nvml


class FakeNvml:
    def __init__(self, count: int = 1, fail_init: bool = False) -> None:
        self.count, self.fail_init, self.shutdown = count, fail_init, False

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-{h}"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return SimpleNamespace(total=80 * 1024 * 2**20, used=(10 + h) * 1024 * 2**20)

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return SimpleNamespace(gpu=90 + h)

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 350_500

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12040

    def nvmlShutdown(self) -> None:
        self.shutdown = True


def test_facts_and_sample() -> None:
    nv = Nvml(FakeNvml())
    facts = nv.facts()
    assert facts["available"] and facts["cudaDriverVersion"] == "12.4" and facts["driverVersion"] == "550.54.15"
    assert facts["gpus"] == [{"name": "NVIDIA H100 80GB HBM3", "memoryTotalMiB": 81920, "uuid": "GPU-0"}]
    s = nv.sample()
    assert s is not None
    assert s.to_status() == {
        "name": "NVIDIA H100 80GB HBM3",
        "utilizationPercent": 90.0,
        "memoryUsedMiB": 10240,
        "memoryTotalMiB": 81920,
        "powerWatts": 350.5,
    }


def test_two_gpus_are_summarised() -> None:
    s = Nvml(FakeNvml(count=2)).sample()
    assert s is not None and s.name.endswith(" x2")
    assert s.utilizationPercent == 90.5 and s.memoryTotalMiB == 2 * 81920 and s.powerWatts == 701.0


def test_no_gpu_is_graceful() -> None:
    nv = Nvml(FakeNvml(fail_init=True))
    assert nv.sample() is None
    facts = nv.facts()
    assert facts == {"available": False, "reason": "NVML unavailable: RuntimeError: NVML Shared Library Not Found"}
    assert Nvml(FakeNvml(count=0)).facts()["reason"] == "NVML reports no GPU"


def test_real_nvml_on_this_machine_does_not_raise() -> None:
    nv = Nvml()
    facts = nv.facts()
    assert isinstance(facts["available"], bool)
    nv.close()
