"""Resource monitor: CPU, memory, load average and NVIDIA GPUs of this machine.

`read_resources` is the probe (psutil, pynvml); `resource_state` is the pure judgement.
No NVIDIA library or no GPU is a normal state: the readings then hold no GPUs.
"""

from __future__ import annotations

import time
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
    """One reading of the machine. The I/O rates are megabits per second (network) and
    megabytes per second (disk) since the previous reading; None at the first reading, or when
    the machine reports no counters."""

    cpu_pct: float
    memory_pct: float
    load_1m: float
    gpus: tuple[GpuReading, ...] = ()
    gpu_status: str = "no NVIDIA GPU"
    net_sent_mbps: float | None = None
    net_recv_mbps: float | None = None
    disk_read_mbs: float | None = None
    disk_write_mbs: float | None = None


@dataclass(frozen=True, slots=True)
class IoCounters:
    """Cumulative byte counters at one moment (psutil's network and disk counters)."""

    at: float
    net_sent: int | None
    net_recv: int | None
    disk_read: int | None
    disk_write: int | None


def read_io_counters(at: float) -> IoCounters:
    net = psutil.net_io_counters()
    try:
        disk = psutil.disk_io_counters()
    except (RuntimeError, OSError):  # no disk statistics (some containers)
        disk = None
    return IoCounters(
        at=at,
        net_sent=net.bytes_sent if net else None,
        net_recv=net.bytes_recv if net else None,
        disk_read=disk.read_bytes if disk else None,
        disk_write=disk.write_bytes if disk else None,
    )


def io_rates(
    before: IoCounters | None, after: IoCounters
) -> tuple[float | None, float | None, float | None, float | None]:
    """(net sent Mbit/s, net received Mbit/s, disk read MB/s, disk written MB/s) between two
    counter readings; None where either lacks the counter, the clock did not move, or a
    counter went backwards (a reset)."""
    if before is None or after.at <= before.at:
        return None, None, None, None
    seconds = after.at - before.at

    def rate(old: int | None, new: int | None, unit: float) -> float | None:
        if old is None or new is None or new < old:
            return None
        return round((new - old) / seconds / unit, 3)

    return (
        rate(before.net_sent, after.net_sent, 125_000),
        rate(before.net_recv, after.net_recv, 125_000),
        rate(before.disk_read, after.disk_read, 1_000_000),
        rate(before.disk_write, after.disk_write, 1_000_000),
    )


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
    # Network (Mbit/s, sent or received) and disk (MB/s, read or written) throughput; 0 leaves
    # the reading unjudged (the default: what is busy depends on the machine).
    net_mbps: float = 0.0
    critical_net_mbps: float = 0.0
    disk_mbs: float = 0.0
    critical_disk_mbs: float = 0.0


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


def read_resources(
    nvml: Any = _nvml_module,
    io_before: IoCounters | None = None,
    io_now: IoCounters | None = None,
) -> ResourceReadings:
    """The real probe. `nvml` is the pynvml module (or a factory of it); None means absent.
    The I/O rates are measured from `io_before` (the previous counters) to `io_now` (read
    here when not given)."""
    module = nvml() if callable(nvml) and not isinstance(nvml, ModuleType) else nvml
    gpus, gpu_status = read_gpus(module)
    now = io_now or read_io_counters(time.monotonic())
    sent, recv, read, written = io_rates(io_before, now)
    return ResourceReadings(
        cpu_pct=float(psutil.cpu_percent(interval=None)),
        memory_pct=float(psutil.virtual_memory().percent),
        load_1m=float(psutil.getloadavg()[0]),
        gpus=gpus,
        gpu_status=gpu_status,
        net_sent_mbps=sent,
        net_recv_mbps=recv,
        disk_read_mbs=read,
        disk_write_mbs=written,
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
    io = (
        (
            "net_mbps",
            (readings.net_sent_mbps, readings.net_recv_mbps),
            t.net_mbps,
            t.critical_net_mbps,
        ),
        (
            "disk_mbs",
            (readings.disk_read_mbs, readings.disk_write_mbs),
            t.disk_mbs,
            t.critical_disk_mbs,
        ),
    )
    for name, rates, limit, critical in io:
        known = [r for r in rates if r is not None]
        if limit > 0 and known:
            # A critical limit of 0 is never reached; the margin is a tenth of the limit.
            limits = (limit, critical if critical > 0 else float("inf"))
            measures.append((name, max(known), limits, limit / 10))
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
        self._io: IoCounters | None = None

    def initialize(self) -> None:
        # psutil's first cpu_percent() without an interval has no reference point and reads 0;
        # the I/O rates too are measured from one reading to the next.
        psutil.cpu_percent(interval=None)
        self._io = read_io_counters(time.monotonic())

    def check(self, *, previous: dict[str, str] | None = None, **_: Any) -> AgentCheck:
        if self.probe is read_resources:
            io_before, self._io = self._io, read_io_counters(time.monotonic())
            readings = read_resources(io_before=io_before, io_now=self._io)
        else:
            readings = self.probe()
        state, reason = resource_state(readings, self.thresholds, (previous or {}).get(""))
        metrics = asdict(readings)
        metrics["gpus"] = [asdict(g) for g in readings.gpus]
        # A machine at its limit should not also run the model: the cloud is recommended.
        recommend = "cloud" if state == "CRITICAL" else ""
        return AgentCheck(state=state, reason=reason, metrics=metrics, recommend=recommend)

    def shutdown(self) -> None:
        return None
