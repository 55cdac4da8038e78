"""The README shows the gateway in its quick start, links every document, and `make run`
prints the same hint."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def run_local():
    spec = importlib.util.spec_from_file_location("run_local", ROOT / "scripts" / "run_local.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_document_is_linked_from_the_readme():
    docs = sorted(p.name for p in (ROOT / "docs").glob("*.md"))

    missing = [name for name in docs if f"](docs/{name})" not in README]

    assert len(docs) >= 11
    assert missing == []


def test_the_quick_start_shows_the_gateway():
    quick_start = README.split("## Quick start", 1)[1].split("## Layout", 1)[0]

    assert 'base_url="http://127.0.0.1:8000/v1"' in quick_start
    assert "manage.py apikey create --name me" in quick_start
    assert 'model="auto"' in quick_start
    # The other three doors, each with its SDK's client pointed at the gateway.
    assert 'gateway = "http://127.0.0.1:8000"' in quick_start
    assert "anthropic.Anthropic(base_url=gateway" in quick_start
    assert "ollama.Client(host=gateway" in quick_start
    assert '"base_url": gateway, "api_version": "v1beta"' in quick_start


def test_make_run_prints_the_gateway_hint():
    assert run_local().gateway_hint("127.0.0.1", "8765") == (
        '==> gateway: OpenAI clients use base URL http://127.0.0.1:8765/v1 and model "auto"\n'
        "    with a key from: .venv/bin/python manage.py apikey create --name me"
    )
