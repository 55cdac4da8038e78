"""The web process's command line (`python -m orchestrator_site.serve`)."""

from __future__ import annotations

import pytest

from orchestrator_site.serve import options


def test_one_worker_and_a_ten_second_shutdown_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_WORKERS", raising=False)
    monkeypatch.delenv("WEB_SHUTDOWN_TIMEOUT_S", raising=False)

    args = options(["--port", "8123"])

    assert (args.port, args.workers, args.shutdown_timeout_s) == (8123, 1, 10.0)


def test_the_environment_sets_workers_and_the_shutdown_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEB_WORKERS", "3")
    monkeypatch.setenv("WEB_SHUTDOWN_TIMEOUT_S", "2.5")

    assert (options([]).workers, options([]).shutdown_timeout_s) == (3, 2.5)
    assert options(["--workers", "1"]).workers == 1


def test_several_workers_are_refused_without_redis(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "")

    with pytest.raises(SystemExit) as exited:
        options(["--workers", "2"])

    assert exited.value.code == 2
    assert "--workers above 1 needs REDIS_URL" in capsys.readouterr().err
    assert options(["--workers", "1"]).workers == 1


@pytest.mark.parametrize("argv", [["--workers", "0"], ["--shutdown-timeout-s", "-1"]])
def test_out_of_range_values_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        options(argv)

    assert exited.value.code == 2
