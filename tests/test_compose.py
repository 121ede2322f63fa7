"""docker-compose.yml and the Dockerfile, checked against the code (no Docker engine runs here).

The file is parsed as Compose would after interpolating ``${...}``; its names are compared with the
real ones: ``Settings`` fields for ``CELLAR_*``, the typer app's commands for ``cellar ...``, Ray's
own CLI for ``ray ...``, the Dockerfile's ``ARG``s and ``COPY`` sources, pyproject's packages.
"""

from __future__ import annotations

import re
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
import typer.main
import yaml
from sqlalchemy.engine import make_url

from service.cli import app
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
#: what the operator must export (the file refuses to start without it)
ENVIRONMENT = {"CELLAR_API_KEY": "compose-test-key"}
CELLAR_SERVICES = {"migrate", "api", "ray-head", "ray-worker", "ray-gpu-worker"}

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` (``$$`` is a literal ``$``)."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        value = env.get(name)
        if op in (":-", "-") and (value is None or (op == ":-" and value == "")):
            return arg
        if op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise AssertionError(f"compose refuses to start without {name}: {arg}")
        return value or ""

    return _VARIABLE.sub(replace, text.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), ENVIRONMENT))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def commands(service: dict[str, Any]) -> list[list[str]]:
    """The service's command as argument lists, one per ``&&``-joined step of an ``sh -c``."""
    command = service["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(part) for part in command]
    if argv[:2] == ["sh", "-c"]:
        assert len(argv) == 3, argv
        steps = [shlex.split(step) for step in argv[2].split("&&")]
        return [step[1:] if step[0] == "exec" else step for step in steps]
    return [argv]


def parse(group: click.Group, argv: list[str]) -> click.Context:
    """Parse ``argv`` (after the program name) with a real click CLI; fail on what it refuses."""
    name, *args = argv
    assert name in group.commands, f"no such subcommand {name!r}; the CLI has {sorted(group.commands)}"
    try:
        return group.commands[name].make_context(name, list(args))
    except click.ClickException as error:
        raise AssertionError(f"{' '.join(argv)}: {error.format_message()}") from None


def cellar_command(argv: list[str]) -> click.Context:
    assert argv[0] == "cellar", argv
    return parse(typer.main.get_command(app), argv[1:])  # type: ignore[arg-type]


def ray_command(argv: list[str]) -> click.Context:
    from ray.scripts.scripts import cli

    assert argv[0] == "ray", argv
    return parse(cli, argv[1:])


def ray_head_port(services: dict[str, dict[str, Any]]) -> int:
    (argv,) = commands(services["ray-head"])
    return int(ray_command(argv).params["port"])


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def test_the_services_start_in_order(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"postgres", *CELLAR_SERVICES}
    needs = {
        name: {dep: spec["condition"] for dep, spec in s.get("depends_on", {}).items()} for name, s in services.items()
    }
    assert needs == {
        "postgres": {},
        "migrate": {"postgres": "service_healthy"},
        "ray-head": {},
        "ray-worker": {"ray-head": "service_healthy"},
        "ray-gpu-worker": {"ray-head": "service_healthy"},
        "api": {"migrate": "service_completed_successfully", "ray-head": "service_healthy"},
    }
    assert services["migrate"]["restart"] == "no"  # one-shot: a restart loop would never "complete"
    assert [p for s in services.values() for p in s.get("profiles", [])] == ["gpu"]
    assert services["ray-gpu-worker"]["profiles"] == ["gpu"]


def test_postgres_is_health_checked_with_its_own_user_and_database(services: dict[str, dict[str, Any]]) -> None:
    postgres = services["postgres"]
    check = postgres["healthcheck"]
    assert check["test"][0] == "CMD-SHELL" and check["retries"] >= 5
    argv = shlex.split(check["test"][1])
    env = environment(postgres)
    assert argv[0] == "pg_isready"
    assert argv[argv.index("-U") + 1] == env["POSTGRES_USER"] and argv[argv.index("-d") + 1] == env["POSTGRES_DB"]


def test_every_cellar_variable_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    prefix = Settings.model_config["env_prefix"]
    known = {prefix + name.upper() for name in Settings.model_fields}
    used = {key for s in services.values() for key in environment(s) if key.startswith(prefix)}
    assert used and used <= known, f"not settings: {sorted(used - known)}"
    # and Settings reads them: the API's environment makes a valid Settings
    api_env = environment(services["api"])
    settings = Settings(**{k[len(prefix) :].lower(): v for k, v in api_env.items() if k.startswith(prefix)})
    assert settings.ray_address == api_env["CELLAR_RAY_ADDRESS"]


def test_the_store_is_the_postgres_service(services: dict[str, dict[str, Any]]) -> None:
    postgres = environment(services["postgres"])
    urls = {name: environment(services[name])["CELLAR_DATABASE_URL"] for name in ("migrate", "api")}
    assert urls["migrate"] == urls["api"]  # the API serves the schema migrate created
    url = make_url(urls["api"])
    assert url.drivername == "postgresql+psycopg"  # psycopg 3 is what requirements.txt installs
    assert (url.host, url.port or 5432) == ("postgres", 5432)
    assert (url.username, url.password, url.database) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )


def test_migrate_and_api_run_real_cellar_commands(services: dict[str, dict[str, Any]]) -> None:
    assert commands(services["migrate"]) == [["cellar", "migrate"]]
    cellar_command(commands(services["migrate"])[0])
    *before, serve = commands(services["api"])
    context = cellar_command(serve)
    assert context.command.name == "serve" and context.params["host"] == "0.0.0.0"
    # the published container port is the one `cellar serve` listens on
    published = [str(p).rsplit(":", 1) for p in services["api"]["ports"]]
    assert [int(container) for _, container in published] == [context.params["port"]]
    check = " ".join(services["api"]["healthcheck"]["test"])
    assert f"127.0.0.1:{context.params['port']}/healthz" in check
    assert [step[:2] for step in before] == [["ray", "start"]]


def test_the_api_and_the_workers_join_the_ray_head(services: dict[str, dict[str, Any]]) -> None:
    port = ray_head_port(services)
    (head,) = commands(services["ray-head"])
    head_options = ray_command(head).params
    assert head_options["head"] and head_options["block"] and head_options["num_cpus"] == 0
    address = environment(services["api"])["CELLAR_RAY_ADDRESS"]
    host, _, address_port = address.rpartition(":")
    assert host == "ray-head" and host in services and int(address_port) == port
    health = ray_command(services["ray-head"]["healthcheck"]["test"][1:]).params
    assert health["address"].rsplit(":", 1)[1] == str(port)
    # the API's own node (a Ray driver needs one on its machine) takes no trials
    (api_node,) = commands(services["api"])[:-1]
    api_options = ray_command(api_node).params
    assert api_options["address"] == address and api_options["num_cpus"] == 0 and api_options["num_gpus"] == 0
    for name in ("ray-worker", "ray-gpu-worker"):
        (argv,) = commands(services[name])
        options = ray_command(argv).params
        assert options["address"] == address and options["block"] and not options["head"], name
    for name in ("api", "ray-head", "ray-worker", "ray-gpu-worker"):  # NOTES: consistently, or nodes refuse
        assert environment(services[name])["RAY_AUTH_MODE"] == "disabled", name


def test_the_gpu_worker_reserves_the_gpus_it_declares(services: dict[str, dict[str, Any]]) -> None:
    gpu = services["ray-gpu-worker"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    (argv,) = commands(gpu)
    assert ray_command(argv).params["num_gpus"] == device["count"]
    torch_index = gpu["build"]["args"]["TORCH_INDEX_URL"]
    assert "/whl/cu" in torch_index  # a CUDA build of torch; the CPU workers keep the CPU one
    assert gpu["image"] != services["ray-worker"]["image"]
    for name in CELLAR_SERVICES - {"ray-gpu-worker"}:
        assert "deploy" not in services[name] or "resources" not in services[name]["deploy"], name


def test_the_cellar_services_build_this_repository_s_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    arguments = set(re.findall(r"^ARG\s+(\w+)", DOCKERFILE.read_text(), re.MULTILINE))
    for name in CELLAR_SERVICES:
        build = services[name]["build"]
        assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE, name
        assert set(build.get("args", {})) <= arguments, name
    # one image for the API and the CPU workers: a driver and its workers run the same code
    assert len({services[name]["image"] for name in CELLAR_SERVICES - {"ray-gpu-worker"}}) == 1


def test_the_dockerfile_installs_what_the_project_is() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^FROM\s+python:(\d+)\.(\d+)", text, re.MULTILINE)
    assert base is not None
    assert (int(base[1]), int(base[2])) == sys.version_info[:2]  # the Python the pins were resolved on
    copied = [source for line in re.findall(r"^COPY\s+(.+)$", text, re.MULTILINE) for source in line.split()[:-1]]
    assert all((ROOT / source).exists() for source in copied), copied
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= set(copied), f"packages not copied into the image: {packages - set(copied)}"
    assert {"requirements.txt", "constraints.txt", "pyproject.toml"} <= set(copied)
    constraints = (ROOT / "constraints.txt").read_text().split()
    torch_pin = next(line for line in constraints if line.startswith("torch=="))
    assert f'"{torch_pin}"' in text and "-c constraints.txt -r requirements.txt" in text
    cmd = re.search(r"^CMD\s+(\[.*\])$", text, re.MULTILINE)
    assert cmd is not None
    cellar_command(yaml.safe_load(cmd[1]))
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv/" in ignored and ".git/" in ignored
