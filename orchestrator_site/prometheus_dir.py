"""The folder where several web workers keep their Prometheus values (`routing.metrics`).

prometheus_client's multiprocess mode is chosen in each process when prometheus_client is first
imported, from `PROMETHEUS_MULTIPROC_DIR`; each process then writes its counters to files of
its own there, and a scrape, served by any worker, sums every file. So the web process's
supervisor prepares the folder before it starts a worker (workers inherit its environment):

- `PROMETHEUS_MULTIPROC_DIR` set: that folder, emptied of earlier runs' files (a counter must
  start again from zero with the server, or it would add a dead run's requests);
- unset, with more than one worker: a new temporary folder, removed when the supervisor exits;
- unset, with one worker: nothing; the one process keeps its values in memory.

A worker that dies and is restarted leaves its files: what it counted stays counted.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prometheus_dir_prepare(*, workers: int) -> str | None:
    """Set up the folder (see the module's docstring); its path, or None when not needed."""
    path = os.environ.get(ENV, "").strip()
    if not path:
        os.environ.pop(ENV, None)  # set but empty would put the files in the working folder
        if workers == 1:
            return None
        path = tempfile.mkdtemp(prefix="orchestrator-prometheus-")
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        os.environ[ENV] = path
        return path
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))
    return path
