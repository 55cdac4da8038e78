"""`make run`: migrate, bootstrap, start the local model and the web server; Ctrl-C stops both.

Runs inside .venv. HOST and PORT choose where the site listens; the local model server takes a
free port of its own, so several instances (each with its own DATABASE_URL) never collide.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")


def say(message: str) -> None:
    print(message, flush=True)


def gateway_hint(host: str, port: str) -> str:
    """How to point an OpenAI client at this instance (printed at start-up, as in the README)."""
    return (
        f'==> gateway: OpenAI clients use base URL http://{host}:{port}/v1 and model "auto"\n'
        "    with a key from: .venv/bin/python manage.py apikey create --name me"
    )


def main() -> int:
    import django
    from django.core.management import call_command

    django.setup()
    from django.conf import settings

    from providers import local_model

    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    say("==> applying database migrations")
    call_command("migrate", interactive=False, verbosity=0)

    children: list[subprocess.Popen[bytes]] = []
    local_url = ""
    if local_model.runtime_installed():
        model_port = local_model.free_port()
        local_url = f"http://127.0.0.1:{model_port}/v1"
        say(f"==> starting the bundled local model (SmolLM2-135M) on {local_url}")
        log_path = settings.VAR_DIR / "local-model.log"
        server = local_model.start_server(port=model_port, log_path=log_path)
        children.append(server)
        try:
            local_model.wait_ready(local_url, server, log_path=log_path)
        except local_model.LocalModelUnavailable as exc:
            say(f"!!  local model not available: {exc}")
            local_url = ""
    else:
        say("!!  local model runtime not installed; run scripts/install_local_model.sh")

    call_command("bootstrap_local", local_model_url=local_url)
    from analytics.models import RequestLog

    if not RequestLog.objects.exists():
        say(
            "==> loading demo request history (labelled on the dashboard, which hides or deletes"
            " it; `manage.py seed_demo --wipe` removes it too)"
        )
        call_command("seed_demo", requests=2000, days=30)
    say(gateway_hint(host, port))
    say(f"==> serving http://{host}:{port}/  (Ctrl-C stops everything)")
    web = subprocess.Popen(
        # One worker: `make run` is the zero-setup default (SQLite, in-memory channel layer and
        # journal), whose state several processes could not share.
        [
            sys.executable,
            "-m",
            "orchestrator_site.serve",
            "--host",
            host,
            "--port",
            port,
            "--workers",
            "1",
        ],
        cwd=ROOT,
    )
    children.append(web)

    def stop(*_: object) -> None:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()

    def on_sigterm(*_: object) -> None:
        stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return web.wait()
    except KeyboardInterrupt:
        say("\n==> stopping")
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
