from __future__ import annotations

from types import SimpleNamespace

import pytest

from routing.agents.hysteresis import level_with_hysteresis
from routing.agents.resources import (
    GpuReading,
    IoCounters,
    ResourceMonitor,
    ResourceReadings,
    ResourceThresholds,
    io_rates,
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


def test_monitor_critical_recommends_the_cloud_and_never_blocks():
    check = ResourceMonitor(probe=lambda: readings(mem=99)).check()

    assert (check.state, check.proceed, check.recommend, check.reason) == (
        "CRITICAL",
        True,
        "cloud",
        "memory 99 (threshold 95)",
    )
    calm = ResourceMonitor(probe=lambda: readings(mem=50)).check()
    assert (calm.state, calm.recommend) == ("AVAILABLE", "")


def test_io_rates_are_measured_between_two_counter_readings():
    before = IoCounters(at=10.0, net_sent=0, net_recv=1_000_000, disk_read=0, disk_write=None)
    after = IoCounters(
        at=12.0, net_sent=2_500_000, net_recv=1_000_000, disk_read=8_000_000, disk_write=5
    )

    # 2.5 MB sent in 2 s = 10 Mbit/s; 8 MB read in 2 s = 4 MB/s; no earlier write counter.
    assert io_rates(before, after) == (10.0, 0.0, 4.0, None)
    assert io_rates(None, after) == (None, None, None, None)
    reset = IoCounters(at=13.0, net_sent=1, net_recv=1_000_000, disk_read=8_000_000, disk_write=5)
    assert io_rates(after, reset) == (None, 0.0, 0.0, 0.0)


def test_io_is_judged_only_where_a_threshold_is_set():
    busy = ResourceReadings(
        cpu_pct=10, memory_pct=10, load_1m=0.1, net_recv_mbps=900.0, disk_write_mbs=30.0
    )

    assert resource_state(busy, ResourceThresholds(), None) == (
        "AVAILABLE",
        "all readings below thresholds",
    )
    assert resource_state(busy, ResourceThresholds(net_mbps=500), None) == (
        "CONSTRAINED",
        "net_mbps 900 (threshold 500)",
    )
    assert resource_state(busy, ResourceThresholds(net_mbps=500, critical_net_mbps=800), None) == (
        "CRITICAL",
        "net_mbps 900 (threshold 800)",
    )
    assert resource_state(busy, ResourceThresholds(disk_mbs=25), None) == (
        "CONSTRAINED",
        "disk_mbs 30 (threshold 25)",
    )
    # Left by a tenth of the threshold: 46 MB/s against 50 stays constrained, 44 does not.
    held = ResourceReadings(cpu_pct=10, memory_pct=10, load_1m=0.1, disk_read_mbs=46.0)
    assert resource_state(held, ResourceThresholds(disk_mbs=50), "CONSTRAINED")[0] == "CONSTRAINED"
    left = ResourceReadings(cpu_pct=10, memory_pct=10, load_1m=0.1, disk_read_mbs=44.0)
    assert resource_state(left, ResourceThresholds(disk_mbs=50), "CONSTRAINED")[0] == "AVAILABLE"


def test_the_real_monitor_reports_io_rates_from_its_second_check():
    monitor = ResourceMonitor()
    monitor.initialize()

    metrics = monitor.check().metrics

    for key in ("net_sent_mbps", "net_recv_mbps"):
        assert isinstance(metrics[key], float) and metrics[key] >= 0
