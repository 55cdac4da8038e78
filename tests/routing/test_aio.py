"""Worker threads of `in_thread` calls."""

from __future__ import annotations

import os
import threading

import pytest

from core.threads import in_thread


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")
async def test_worker_threads_run_as_batch_and_the_event_loops_thread_keeps_its_policy() -> None:
    def where() -> tuple[str, int]:
        return threading.current_thread().name, os.sched_getscheduler(0)

    loops_policy = os.sched_getscheduler(0)
    name, policy = await in_thread(where)()

    assert name.startswith("orchestrator-io")
    assert policy == os.SCHED_BATCH
    assert os.sched_getscheduler(0) == loops_policy
