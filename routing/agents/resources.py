"""Resource monitor: CPU, memory, load average and NVIDIA GPUs of this machine.

`read_resources` is the probe (psutil, pynvml); `resource_state` is the pure judgement.
No NVIDIA library or no GPU is a normal state: the readings then hold no GPUs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

import psutil  # type: ignore[import-untyped]

from routing.agents.base import AgentCheck
from routing.agents.hysteresis import level_with_hysteresis

STATES = ("AVAILABLE", "CONSTRAINED", "CRITICAL")


@dataclass(frozen=True, slots=True)
class GpuReading:
    index: int
    name: str
    utilization_pct: float
    memory_pct: float


@dataclass(frozen=True, slots=True)
class ResourceReadings:
    cpu_pct: float
    memory_pct: float
    load_1m: float
    gpus: tuple[GpuReading, ...] = ()
    gpu_status: str = "no NVIDIA GPU"


@dataclass(frozen=True, slots=True)
class ResourceThresholds:
    cpu_pct: float = 80.0
    memory_pct: float = 85.0
    load_1m: float = 4.0
    gpu_pct: float = 85.0
    critical_cpu_pct: float = 95.0
    critical_memory_pct: float = 95.0
    critical_load_1m: float = 8.0
    critical_gpu_pct: float = 95.0
    margin_pct: float = 5.0
    margin_load: float = 0.5


def _nvml_module() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def read_gpus(nvml: Any) -> tuple[tuple[GpuReading, ...], str]:
    if nvml is None:
        return (), "no NVIDIA library"
    try:
        nvml.nvmlInit()
    except Exception as error:  # NVMLError subclasses: library or driver missing
        return (), f"NVML unavailable: {error}"
    try:
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            util = nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                GpuReading(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    utilization_pct=float(util.gpu),
                    memory_pct=round(100.0 * memory.used / memory.total, 1) if memory.total else 0,
                )
            )
        return tuple(gpus), f"{len(gpus)} NVIDIA GPU(s)" if gpus else "no NVIDIA GPU"
    finally:
        nvml.nvmlShutdown()


def read_resources(nvml: Any = _nvml_module) -> ResourceReadings:
    """The real probe. `nvml` is the pynvml module (or a factory of it); None means absent."""
    module = nvml() if callable(nvml) and not isinstance(nvml, ModuleType) else nvml
    gpus, gpu_status = read_gpus(module)
    return ResourceReadings(
        cpu_pct=float(psutil.cpu_percent(interval=None)),
        memory_pct=float(psutil.virtual_memory().percent),
        load_1m=float(psutil.getloadavg()[0]),
        gpus=gpus,
        gpu_status=gpu_status,
    )


def resource_state(
    readings: ResourceReadings, thresholds: ResourceThresholds, previous: str | None
) -> tuple[str, str]:
    """The state and the reading that decided it."""
    prev = STATES.index(previous) if previous in STATES else None
    t = thresholds
    measures: list[tuple[str, float, tuple[float, float], float]] = [
        ("cpu", readings.cpu_pct, (t.cpu_pct, t.critical_cpu_pct), t.margin_pct),
        ("memory", readings.memory_pct, (t.memory_pct, t.critical_memory_pct), t.margin_pct),
        ("load_1m", readings.load_1m, (t.load_1m, t.critical_load_1m), t.margin_load),
    ]
    for gpu in readings.gpus:
        busiest = max(gpu.utilization_pct, gpu.memory_pct)
        measures.append((f"gpu{gpu.index}", busiest, (t.gpu_pct, t.critical_gpu_pct), t.margin_pct))
    level, why = 0, "all readings below thresholds"
    for name, value, limits, margin in measures:
        this = level_with_hysteresis(value, limits, margin, prev)
        if this > level:
            level, why = this, f"{name} {value:g} (threshold {limits[this - 1]:g})"
    return STATES[level], why


class ResourceMonitor:
    name = "resources"

    def __init__(
        self,
        thresholds: ResourceThresholds | None = None,
        probe: Callable[[], ResourceReadings] = read_resources,
    ) -> None:
        self.thresholds = thresholds or ResourceThresholds()
        self.probe = probe

    def initialize(self) -> None:
        # psutil's first cpu_percent() without an interval has no reference point and reads 0.
        psutil.cpu_percent(interval=None)

    def check(self, *, previous: dict[str, str] | None = None, **_: Any) -> AgentCheck:
        readings = self.probe()
        state, reason = resource_state(readings, self.thresholds, (previous or {}).get(""))
        metrics = asdict(readings)
        metrics["gpus"] = [asdict(g) for g in readings.gpus]
        return AgentCheck(state=state, proceed=state != "CRITICAL", reason=reason, metrics=metrics)

    def shutdown(self) -> None:
        return None
