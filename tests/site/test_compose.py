"""docker-compose.yml, checked without a Docker engine.

The file is read with PyYAML, its variables interpolated as `docker compose config` does, and
the result validated against the Compose specification's JSON schema (the copy check-jsonschema
ships, `vendor.compose-spec`). Then what a schema cannot see: every reference resolves, the
start-up order is `make run`'s (migrate, bootstrap, then the processes), the settings load with
exactly the environment each container gets (the Dockerfile's ENV plus the service's), web and
worker share the folder exports are written to, the local model service serves the model the
demo configuration points at, the health checks reach what they check, and
docs/deployment.md names every service, volume and variable.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from django.core.management import call_command
from django.http.request import split_domain_port, validate_host

from providers import local_model

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"

# What an operator must set, and an example value for each; every other variable has a default.
REQUIRED = {"SECRET_KEY": "compose-test-secret-key-" + "x" * 40}
APP_SERVICES = ("migrate", "bootstrap", "web", "worker", "beat")
LONG_RUNNING = ("postgres", "redis", "local-model", "web", "worker", "beat")
# Beat has no health check: it only sends tasks on a schedule, and its heartbeat task shows up
# in the web process's /health (broker component) when a worker runs it.
WITHOUT_HEALTH_CHECK = {"beat"}


class MissingVariable(Exception):
    pass


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate_text(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error}, ${VAR:+replacement}, ${VAR+replacement}."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        is_set = value is not None
        is_set_and_not_empty = bool(value)
        if op is None:
            return value or ""
        present = is_set_and_not_empty if op.startswith(":") else is_set
        if op.endswith("-"):
            return value if present and value is not None else arg
        if op.endswith("?"):
            if not present:
                raise MissingVariable(f"{name}: {arg}")
            return value or ""
        return arg if present else ""

    return _VARIABLE.sub(replace, text)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate_text(node, env)
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    return node


@cache
def raw_compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The file as `docker compose config` resolves it with `env` (anchors and merge keys
    resolved by YAML, variables interpolated)."""
    resolved: dict[str, Any] = interpolate(
        copy.deepcopy(raw_compose()), REQUIRED if env is None else env
    )
    return resolved


def services(env: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose(env)["services"]
    return found


def dockerfile_lines() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    return lines


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in dockerfile_lines():
        if line.split(maxsplit=1)[0].upper() == "ENV":
            for word in shlex.split(line.split(maxsplit=1)[1]):
                name, _, value = word.partition("=")
                env[name] = value
    return env


def dockerfile_cmd() -> list[str]:
    cmds = [line for line in dockerfile_lines() if line.split(maxsplit=1)[0].upper() == "CMD"]
    command: list[str] = json.loads(cmds[-1].split(maxsplit=1)[1])
    return command


def environment_of(service: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """A container's environment: the image's ENV, then the service's `environment`, where a
    variable without a value is passed on from `env` when set there and left out otherwise."""
    result = dockerfile_env()
    declared = service.get("environment") or {}
    if isinstance(declared, list):
        declared = dict(item.split("=", 1) if "=" in item else (item, None) for item in declared)
    for name, value in declared.items():
        if value is None:
            if name in env:
                result[name] = env[name]
            else:
                result.pop(name, None)
        else:
            result[name] = str(value)
    return result


SETTINGS_PROBE = """
import json
import orchestrator_site.settings as s
db = s.DATABASES["default"]
print(json.dumps({
    "production": s.PRODUCTION,
    "debug": s.DEBUG,
    "secret_key_set": bool(s.SECRET_KEY),
    "allowed_hosts": s.ALLOWED_HOSTS,
    "db_engine": db["ENGINE"],
    "db_host": db.get("HOST", ""),
    "redis_url": s.REDIS_URL,
    "celery_eager": s.CELERY_TASK_ALWAYS_EAGER,
    "export_dir": str(s.ORCHESTRATOR_EXPORT_DIR),
    "export_in_thread": s.ORCHESTRATOR_EXPORT_IN_THREAD,
    "var_dir": str(s.VAR_DIR),
    "metrics_token": s.ORCHESTRATOR_METRICS_TOKEN,
    "metrics_public": s.ORCHESTRATOR_METRICS_PUBLIC,
}))
"""


def settings_in(container_env: Mapping[str, str]) -> dict[str, Any]:
    """The settings a container's process loads: only its own environment, nothing of ours."""
    env = {**container_env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    done = subprocess.run(
        [sys.executable, "-c", SETTINGS_PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    declared = service.get("depends_on") or {}
    if isinstance(declared, list):
        return dict.fromkeys(declared, "service_started")
    return {
        name: (spec or {}).get("condition", "service_started") for name, spec in declared.items()
    }


def all_dependencies(name: str, found: Mapping[str, Mapping[str, Any]]) -> set[str]:
    seen: set[str] = set()
    stack = [name]
    while stack:
        for other in depends_on(found[stack.pop()]):
            if other not in seen:
                seen.add(other)
                stack.append(other)
    return seen


def named_mounts(service: Mapping[str, Any], declared: Mapping[str, Any]) -> dict[str, str]:
    """target path -> named volume, for the service's named-volume mounts."""
    mounts: dict[str, str] = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":", 1)[0]
        else:
            source, target = volume.get("source", ""), volume["target"]
            if volume.get("type", "volume") != "volume":
                continue
        if source in declared:
            mounts[target] = source
    return mounts


def volume_holding(service: Mapping[str, Any], path: str, declared: Mapping[str, Any]) -> str:
    """The named volume `path` lies on in this service's container ('' when none)."""
    best, name = "", ""
    for target, volume in named_mounts(service, declared).items():
        if PurePosixPath(path).is_relative_to(target) and len(target) > len(best):
            best, name = target, volume
    return name


def healthcheck_command(service: Mapping[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["CMD-SHELL", test]
    return list(test)


def bootstrap_local_model_url() -> str:
    command = services()["bootstrap"]["command"]
    assert command[:3] == ["python", "manage.py", "bootstrap_local"], command
    url: str = command[command.index("--local-model-url") + 1]
    return url


def compose_spec_schema() -> dict[str, Any]:
    text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text(encoding="utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_errors(document: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(compose_spec_schema())
    return sorted(
        f"{'/'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(document)
    )


# The file's form.


def test_the_compose_file_follows_the_compose_specification():
    assert compose_spec_schema()["$id"] == "compose_spec.json"

    assert schema_errors(raw_compose()) == []
    assert schema_errors(compose()) == []
    broken = compose()
    next(iter(broken["services"]["web"]["depends_on"].values()))["condition"] = "finished"
    assert schema_errors(broken) != []  # the schema does check what it is given


def test_the_only_variables_an_operator_must_set_are_the_documented_ones():
    with pytest.raises(MissingVariable, match="SECRET_KEY"):
        compose({})
    for name in REQUIRED:
        with pytest.raises(MissingVariable, match=name):
            compose({k: v for k, v in REQUIRED.items() if k != name})
    compose(REQUIRED)


def test_every_reference_resolves():
    found = compose()
    names = set(found["services"])
    declared_volumes = found.get("volumes") or {}
    used_volumes: set[str] = set()

    for name, service in found["services"].items():
        for other, condition in depends_on(service).items():
            assert other in names, f"{name} depends on {other}, which is no service"
            target = found["services"][other]
            if condition == "service_healthy":
                assert "healthcheck" in target, f"{name} waits for {other}'s health check"
            if condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{other} is a one-shot step"
        assert name not in all_dependencies(name, found["services"]), f"{name}: a cycle"
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if not source.startswith(("/", ".", "~")):
                assert source in declared_volumes, f"{name} mounts undeclared volume {source}"
                used_volumes.add(source)
        assert "build" in service or "image" in service

    assert used_volumes == set(declared_volumes)


# Start-up: the steps `make run` takes (scripts/run_local.py), in its order.


def test_the_processes_start_after_migrate_and_bootstrap():
    found = services()

    assert found["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert depends_on(found["migrate"]) == {
        "postgres": "service_healthy",
        "redis": "service_healthy",
    }
    assert depends_on(found["bootstrap"]) == {"migrate": "service_completed_successfully"}
    for name in ("web", "worker", "beat"):
        assert depends_on(found[name])["bootstrap"] == "service_completed_successfully", name
        assert {"postgres", "redis", "migrate"} <= all_dependencies(name, found)
    assert depends_on(found["web"])["local-model"] == "service_healthy"
    for name in ("migrate", "bootstrap"):
        assert found[name]["restart"] == "no"
    for name in LONG_RUNNING:
        assert found[name]["restart"] == "unless-stopped", name


def test_bootstrap_creates_the_admin_from_the_environment_and_loads_the_demo_config():
    bootstrap = services()["bootstrap"]
    assert bootstrap["command"][:3] == ["python", "manage.py", "bootstrap_local"]
    assert bootstrap_local_model_url()

    chosen = {**REQUIRED, "ORCHESTRATOR_ADMIN_USER": "root", "ORCHESTRATOR_ADMIN_PASSWORD": "pw1"}
    env = environment_of(services(chosen)["bootstrap"], chosen)
    assert env["ORCHESTRATOR_ADMIN_USER"] == "root"
    assert env["ORCHESTRATOR_ADMIN_PASSWORD"] == "pw1"
    # Unset: the user is `admin`, and the password is left out (not passed on empty), so
    # bootstrap_local generates one and keeps it in the var folder...
    env = environment_of(services()["bootstrap"], REQUIRED)
    assert env["ORCHESTRATOR_ADMIN_USER"] == "admin"
    assert "ORCHESTRATOR_ADMIN_PASSWORD" not in env
    # ... which is on the volume the other containers mount.
    declared = compose()["volumes"]
    var_dir = settings_in(env)["var_dir"]
    assert volume_holding(bootstrap, var_dir, declared)
    assert volume_holding(bootstrap, var_dir, declared) == volume_holding(
        services()["web"], var_dir, declared
    )


@pytest.mark.django_db
def test_bootstrap_as_compose_runs_it_is_idempotent_and_its_provider_url_validates(
    monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path
):
    from django.contrib.auth import get_user_model

    from providers.demo import LOCAL_PROVIDER
    from providers.models import Provider

    settings.VAR_DIR = tmp_path
    monkeypatch.setenv("ORCHESTRATOR_ADMIN_USER", "operator")
    monkeypatch.setenv("ORCHESTRATOR_ADMIN_PASSWORD", "a long compose password")
    url = bootstrap_local_model_url()
    command = services()["bootstrap"]["command"]

    for _ in range(2):
        call_command(*command[2:], stdout=open(os.devnull, "w"))  # noqa: SIM115

    users = get_user_model().objects.filter(username="operator")
    assert users.count() == 1
    assert users[0].is_superuser
    assert users[0].check_password("a long compose password")
    provider = Provider.objects.get(name=LOCAL_PROVIDER)
    assert provider.base_url == url
    assert provider.enabled
    assert provider.models.filter(name=local_model.MODEL_ALIAS).exists()
    # What the admin form and `config_import` run: the service's bare name would fail here.
    provider.full_clean(validate_unique=False, validate_constraints=False)


# The bundled local model.


def test_the_local_model_service_serves_what_the_demo_configuration_points_at():
    found = services()
    service = found["local-model"]
    command = service["command"]
    assert command[:2] == ["python", "scripts/serve_local_model.py"]
    port = int(command[command.index("--port") + 1])
    assert command[command.index("--host") + 1] == "0.0.0.0"
    aliases = service["networks"]["default"]["aliases"]

    url = urlsplit(bootstrap_local_model_url())
    assert url.hostname in {"local-model", *aliases}
    assert url.port == port
    assert url.path == "/v1"
    check = healthcheck_command(service)
    assert f"http://127.0.0.1:{port}/v1/models" in check
    assert service["image"] == found["web"]["image"]  # the image installs the runtime


def script_module() -> Any:
    path = ROOT / "scripts" / "serve_local_model.py"
    spec = importlib.util.spec_from_file_location("serve_local_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_local_model_script_runs_the_command_line_of_make_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    started: list[list[str]] = []

    class Recorded:
        def __init__(self, command: list[str], **_: Any) -> None:
            started.append(command)

    monkeypatch.setattr(local_model, "gguf_path", lambda: tmp_path / "model.gguf")
    monkeypatch.setattr(local_model.subprocess, "Popen", Recorded)
    local_model.start_server(port=8080, host="0.0.0.0")
    script = script_module()

    assert script.server_argv(host="0.0.0.0", port=8080, n_ctx=2048) == started[0]
    assert script.options([]).port == 8080
    env = script.server_env({"HOST": "web", "PORT": "8000", "KEEP": "1"})
    assert env == {"KEEP": "1"}


@pytest.mark.slow
@pytest.mark.skipif(
    not local_model.runtime_installed(), reason="local model runtime missing: make local-model"
)
def test_the_local_model_service_command_answers_its_health_check():
    """The service's command as compose runs it, on a free loopback port, with HOST and PORT
    in the environment (meant for the web process) that must not move it."""
    command = services()["local-model"]["command"]
    port = local_model.free_port()
    argv = [sys.executable, *command[1:]]
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(local_model.free_port())}
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1.0)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert answer is not None, f"no answer; exit status {process.poll()}"
        assert answer.status_code == 200
        assert [m["id"] for m in answer.json()["data"]] == [local_model.MODEL_ALIAS]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# Settings, volumes and commands.


def test_the_settings_load_in_every_app_container_with_what_production_needs():
    chosen = {**REQUIRED, "ORCHESTRATOR_METRICS_TOKEN": "scrape-me"}
    found = services(chosen)
    loaded: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}

    for name in APP_SERVICES:
        env = environment_of(found[name], chosen)
        key = tuple(sorted(env.items()))
        if key not in loaded:
            loaded[key] = settings_in(env)
        s = loaded[key]
        assert s["production"] and not s["debug"] and s["secret_key_set"], name
        assert s["allowed_hosts"], name
        assert (s["db_engine"], s["db_host"]) == ("django.db.backends.postgresql", "postgres")
        assert urlsplit(s["redis_url"]).hostname == "redis", name
        assert not s["celery_eager"] and not s["export_in_thread"], name
        assert s["metrics_token"] == "scrape-me", name
        assert s["metrics_public"] is False, name


def test_web_and_worker_share_the_folder_exports_are_written_to():
    """The worker writes a background CSV export; the web process serves its download."""
    found = services()
    declared = compose()["volumes"]
    volumes = {}
    for name in ("web", "worker"):
        s = settings_in(environment_of(found[name], REQUIRED))
        volumes[name] = volume_holding(found[name], s["export_dir"], declared)
        assert volumes[name], f"{name}: {s['export_dir']} is on no named volume"
        router_dir = str(PurePosixPath(s["var_dir"]) / "router")
        assert volume_holding(found[name], router_dir, declared) == volumes[name]
    assert volumes["web"] == volumes["worker"]


def test_web_runs_the_real_web_process_and_its_health_check_reaches_it(tmp_path: Path):
    from orchestrator_site import serve

    found = services()
    web = found["web"]
    command = web["command"]
    assert command[:3] == ["python", "-m", "orchestrator_site.serve"]
    assert command == dockerfile_cmd()
    port = serve.options(command[3:]).port
    assert f"{port}:{port}" in web["ports"]
    for name in ("worker", "beat"):
        assert found[name]["command"][:3] == ["celery", "-A", "orchestrator_site"]
        assert found[name]["command"][3] == name

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "curl").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$CURL_ARGS"\n')
    (fake / "curl").chmod(0o755)
    for allowed in ("", "orchestrator.example.com", ".example.com,localhost", "*"):
        chosen = {**REQUIRED, "ALLOWED_HOSTS": allowed}
        env = environment_of(services(chosen)["web"], chosen)
        hosts = settings_in(env)["allowed_hosts"]
        args_file = tmp_path / "args"
        kind, *check = healthcheck_command(services(chosen)["web"])
        subprocess.run(
            ["sh", "-c", check[0]] if kind == "CMD-SHELL" else check,
            env={**env, "PATH": f"{fake}:/usr/bin:/bin", "CURL_ARGS": str(args_file)},
            check=True,
            timeout=10,
        )
        args = args_file.read_text().splitlines()
        url = urlsplit(next(a for a in args if a.startswith("http")))
        assert (url.hostname, url.port, url.path) == ("127.0.0.1", port, "/health")
        assert "-f" in "".join(a for a in args if a.startswith("-") and not a.startswith("--"))
        headers = [args[i + 1] for i, a in enumerate(args) if a == "-H"]
        host = next((h.split(":", 1)[1].strip() for h in headers if h.startswith("Host:")), None)
        domain, _ = split_domain_port(host or url.netloc)
        assert validate_host(domain, hosts), (allowed, host)


def test_every_long_running_service_has_a_health_check():
    found = services()
    for name in LONG_RUNNING:
        if name in WITHOUT_HEALTH_CHECK:
            assert "healthcheck" not in found[name]
            continue
        assert "healthcheck" in found[name], name
        assert healthcheck_command(found[name])[0] in {"CMD", "CMD-SHELL"}
    worker_check = " ".join(healthcheck_command(found["worker"]))
    assert "inspect ping" in worker_check and "celery@$HOSTNAME" in worker_check


# The image.


def test_the_image_keeps_secrets_and_local_state_out_and_runs_unprivileged():
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for name in (".env", ".venv", "var", ".git"):
        assert name in ignored, name

    lines = dockerfile_lines()
    users = [line.split()[1] for line in lines if line.split()[0] == "USER"]
    assert users and users[-1] not in {"root", "0"}
    image_setup = " ".join(line for line in lines if line.startswith("RUN"))
    found = services()
    declared = compose()["volumes"]
    for target in named_mounts(found["web"], declared):
        # An empty named volume takes the owner of the folder it is mounted on in the image.
        assert f"mkdir -p {target}" in image_setup or re.search(
            rf"mkdir -p [^&]*{re.escape(target)}\b", image_setup
        ), target
        assert f"chown -R {users[-1]}:{users[-1]} {target}" in image_setup, target


# The walk-through.


def test_the_deployment_doc_walks_through_every_service_volume_and_variable():
    doc = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    section = doc.split("## docker compose", 1)[1].split("\n## ", 1)[0]
    found = compose()
    text = COMPOSE.read_text(encoding="utf-8")
    variables = {m["braced"] or m["bare"] for m in _VARIABLE.finditer(text) if not m["escaped"]}
    variables |= {
        name
        for service in raw_compose()["services"].values()
        for name, value in (service.get("environment") or {}).items()
        if value is None
    }

    missing = [f"`{name}`" for name in found["services"] if f"`{name}`" not in section]
    missing += [f"`{name}`" for name in found["volumes"] if f"`{name}`" not in section]
    missing += [f"`{name}`" for name in sorted(variables) if f"`{name}`" not in section]
    assert missing == []
    assert set(REQUIRED) <= variables
