"""Serve the bundled local model in the foreground: the `local-model` service of docker compose.

`python scripts/serve_local_model.py [--host H] [--port P] [--n-ctx N]` replaces itself with
llama-cpp-python's OpenAI-compatible server running SmolLM2-135M-Instruct, with exactly the
command line `make run` starts it with (`providers.local_model.start_server`), so the model a
container serves is the one the tests and `make run` serve. Needs no Django settings and no
database; the image installs the runtime (scripts/install_local_model.sh).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from providers import local_model  # noqa: E402

DEFAULT_PORT = 8080


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python scripts/serve_local_model.py")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--n-ctx", type=int, default=2048)
    return parser.parse_args(argv)


def server_argv(*, host: str, port: int, n_ctx: int) -> list[str]:
    """The server's command line: `start_server`'s flags, on the given host and port."""
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(local_model.gguf_path()),
        "--model_alias",
        local_model.MODEL_ALIAS,
        "--interrupt_requests",
        "False",
        *local_model.EMBEDDING_FLAGS,
        "--n_ctx",
        str(n_ctx),
        "--host",
        host,
        "--port",
        str(port),
    ]


def server_env(environ: dict[str, str]) -> dict[str, str]:
    """The server also reads HOST, PORT, MODEL... from the environment, which would override
    its command line; they are left out, as `start_server` does."""
    return {k: v for k, v in environ.items() if k not in local_model.SERVER_ENV_CLASHES}


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    try:
        command = server_argv(host=args.host, port=args.port, n_ctx=args.n_ctx)
    except local_model.LocalModelUnavailable as exc:
        print(f"!!  local model not available: {exc}", file=sys.stderr, flush=True)
        return 1
    print(
        f"==> serving the bundled local model ({local_model.MODEL_ALIAS}) on "
        f"http://{args.host}:{args.port}/v1",
        flush=True,
    )
    # exec: the server becomes the container's main process and receives its signals.
    os.execve(command[0], command, server_env(dict(os.environ)))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
