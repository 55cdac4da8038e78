from __future__ import annotations

from types import SimpleNamespace

import pytest

from routing.agents.hysteresis import level_with_hysteresis
from routing.agents.resources import (
    GpuReading,
    ResourceMonitor,
    ResourceReadings,
    ResourceThresholds,
    read_gpus,
    read_resources,
    resource_state,
)

T = ResourceThresholds()


def readings(cpu=10.0, mem=10.0, load=0.5, gpus=()):
    return ResourceReadings(cpu_pct=cpu, memory_pct=mem, load_1m=load, gpus=tuple(gpus))


@pytest.mark.parametrize(
    ("r", "state", "reason"),
    [
        (readings(), "AVAILABLE", "all readings below thresholds"),
        (readings(cpu=80), "CONSTRAINED", "cpu 80 (threshold 80)"),
        (readings(mem=85.5), "CONSTRAINED", "memory 85.5 (threshold 85)"),
        (readings(load=4.0), "CONSTRAINED", "load_1m 4 (threshold 4)"),
        (readings(cpu=96), "CRITICAL", "cpu 96 (threshold 95)"),
        (readings(gpus=[GpuReading(0, "H100", 86, 10)]), "CONSTRAINED", "gpu0 86 (threshold 85)"),
        (readings(gpus=[GpuReading(0, "H100", 5, 97)]), "CRITICAL", "gpu0 97 (threshold 95)"),
        (
            readings(gpus=[GpuReading(0, "A", 5, 5), GpuReading(1, "B", 90, 5)]),
            "CONSTRAINED",
            "gpu1 90 (threshold 85)",
        ),
    ],
)
def test_resource_states_from_readings(r, state, reason):
    assert resource_state(r, T, None) == (state, reason)


def test_thresholds_are_configurable():
    strict = ResourceThresholds(cpu_pct=50)

    assert resource_state(readings(cpu=55), strict, None)[0] == "CONSTRAINED"
    assert resource_state(readings(cpu=55), T, None)[0] == "AVAILABLE"


def test_oscillating_readings_do_not_flap():
    state = None
    seen = []
    for cpu in [79, 81, 79, 81, 78, 80.5, 76, 74, 76]:
        state, _ = resource_state(readings(cpu=cpu), T, state)
        seen.append(state)

    assert seen == [
        "AVAILABLE",
        "CONSTRAINED",
        "CONSTRAINED",
        "CONSTRAINED",
        "CONSTRAINED",
        "CONSTRAINED",
        "CONSTRAINED",
        "AVAILABLE",
        "AVAILABLE",
    ]


def test_critical_steps_down_through_constrained():
    assert resource_state(readings(cpu=91), T, "CRITICAL")[0] == "CRITICAL"
    assert resource_state(readings(cpu=89), T, "CRITICAL")[0] == "CONSTRAINED"
    assert resource_state(readings(cpu=10), T, "CRITICAL")[0] == "AVAILABLE"


@pytest.mark.parametrize(
    ("value", "previous", "expected"),
    [(81, None, 1), (79, 1, 1), (75, 1, 1), (74.9, 1, 0), (96, 0, 2), (92, 2, 2), (89, 2, 1)],
)
def test_level_with_hysteresis(value, previous, expected):
    assert level_with_hysteresis(value, (80, 95), 5, previous) == expected


class FakeNvml:
    """The subset of pynvml the probe calls, with readings chosen by the test."""

    def __init__(self, devices):
        self.devices = devices
        self.shutdowns = 0

    def nvmlInit(self):
        return None

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.devices[i]

    def nvmlDeviceGetName(self, h):
        return h["name"]

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=h["util"], memory=0)

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=h["used"], total=h["total"], free=h["total"] - h["used"])


class MissingLibraryNvml(FakeNvml):
    def nvmlInit(self):
        import pynvml

        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)


def test_gpu_readings_through_nvml():
    nvml = FakeNvml([{"name": b"NVIDIA H100", "util": 42, "used": 20, "total": 80}])

    gpus, status = read_gpus(nvml)

    assert gpus == (GpuReading(0, "NVIDIA H100", 42.0, 25.0),)
    assert status == "1 NVIDIA GPU(s)"
    assert nvml.shutdowns == 1


def test_nvml_library_absent_is_a_normal_state():
    gpus, status = read_gpus(MissingLibraryNvml([]))

    assert gpus == ()
    assert status.startswith("NVML unavailable: ")


def test_no_pynvml_module_is_a_normal_state():
    r = read_resources(nvml=None)

    assert r.gpus == ()
    assert r.gpu_status == "no NVIDIA library"
    assert 0 <= r.cpu_pct <= 100
    assert 0 < r.memory_pct <= 100
    assert r.load_1m >= 0


def test_monitor_check_with_injected_probe_and_previous_state():
    monitor = ResourceMonitor(probe=lambda: readings(cpu=78))

    held = monitor.check(previous={"": "CONSTRAINED"})
    fresh = monitor.check(previous={})

    assert (held.state, held.proceed) == ("CONSTRAINED", True)
    assert (fresh.state, fresh.reason) == ("AVAILABLE", "all readings below thresholds")
    assert held.metrics["cpu_pct"] == 78
    assert held.metrics["gpus"] == []


def test_monitor_critical_does_not_proceed():
    check = ResourceMonitor(probe=lambda: readings(mem=99)).check()

    assert (check.state, check.proceed, check.reason) == (
        "CRITICAL",
        False,
        "memory 99 (threshold 95)",
    )
