"""docker-compose.yml, deploy/Dockerfile and the README stay valid and true to the code.

No Docker engine runs the tests, so this is what keeps the compose file honest: the Compose
Specification schema, env names the settings really read, ports, health and CLI commands.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from pydantic import AliasChoices, AliasPath
from pydantic_settings import BaseSettings

from shared.settings import CommonSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"
README = ROOT / "README.md"

# compose service -> where its settings class lives.
SETTINGS_CLASSES = {
    "ingest": ("services.ingest.settings", "IngestSettings"),
    "matcher": ("services.matcher.settings", "MatcherSettings"),
    "notifier": ("services.notifier.settings", "NotifierSettings"),
}

# Variables read by the interpreter or by libraries, never by expertmatch's settings.
READ_OUTSIDE_SETTINGS = {
    "HF_HUB_OFFLINE",  # huggingface_hub: the model comes from site-packages only
    "TRANSFORMERS_OFFLINE",  # transformers, same reason
    "TOKENIZERS_PARALLELISM",  # tokenizers: no fork warning under uvicorn
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
}


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def settings_class(service: str) -> type[BaseSettings]:
    """The service's settings class, or a skip while that service has not landed yet."""
    module_name, class_name = SETTINGS_CLASSES[service]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            pytest.skip(f"{module_name} does not exist yet")
        raise
    return getattr(module, class_name)


def env_names(cls: type[BaseSettings]) -> set[str]:
    """Every environment variable a settings class reads, upper-cased (reads are case-insensitive)."""
    prefix = cls.model_config.get("env_prefix", "")
    names: set[str] = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias or field.alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                names.add(choice if isinstance(choice, str) else str(choice.path[0]))
        elif isinstance(alias, AliasPath):
            names.add(str(alias.path[0]))
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(prefix + field_name)
    return {name.upper() for name in names}


def environment(service: dict) -> dict[str, str]:
    """A compose service's environment, whichever of the two syntaxes it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def dockerfile_path(service: dict) -> Path:
    build = service["build"]
    context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
    return context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    pairs = []
    for line in filter(None, (line.strip() for line in joined.splitlines())):
        instruction, _, args = line.partition(" ")
        pairs.append((instruction.upper(), args.strip()))
    return pairs


def dockerfile_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile_instructions(path):
        if instruction == "ENV":
            env.update(token.split("=", 1) for token in shlex.split(args) if "=" in token)
    return env


def expertmatch_services(compose: dict) -> dict[str, dict]:
    """The services built from this repository's Dockerfile."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def test_compose_file_follows_the_compose_specification():
    if not COMPOSE_SCHEMA.exists():
        pytest.skip(f"no Compose Specification schema at {COMPOSE_SCHEMA}")
    from jsonschema import Draft7Validator

    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert "draft-07" in schema["$schema"], "the schema moved off Draft 7: pick its validator"
    Draft7Validator.check_schema(schema)
    validator = Draft7Validator(schema)
    compose = load_compose()

    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []

    # The schema is strict enough to catch a misspelt key: this check can fail.
    broken = copy.deepcopy(compose)
    broken["services"]["ingest"]["healthchek"] = broken["services"]["ingest"].pop("healthcheck")
    assert list(validator.iter_errors(broken))


def test_env_names_are_found_the_way_pydantic_settings_reads_them(monkeypatch):
    names = env_names(CommonSettings)
    assert {"KAFKA_BOOTSTRAP_SERVERS", "EXPERTMATCH_API_KEYS", "EXPERTMATCH_DATA_DIR"} <= names
    for name in names:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("kafka_bootstrap_servers", "broker.example:9092")
    assert CommonSettings().kafka_bootstrap_servers == "broker.example:9092"


@pytest.mark.parametrize("service_name", sorted(SETTINGS_CLASSES))
def test_every_variable_compose_sets_is_read_by_the_service(service_name):
    cls = settings_class(service_name)
    compose = load_compose()
    service = compose["services"][service_name]
    set_here = set(environment(service)) | set(dockerfile_env(dockerfile_path(service)))

    unread = {name for name in set_here if name.upper() not in env_names(cls) | READ_OUTSIDE_SETTINGS}
    assert unread == set(), f"{service_name} never reads {sorted(unread)}"
    # Inside a container, 127.0.0.1 is unreachable from the other containers.
    host_variable = f"{cls.model_config['env_prefix']}HOST"
    assert environment(service).get(host_variable) == "0.0.0.0", f"{service_name} must set {host_variable}=0.0.0.0"


def test_the_topics_job_sets_only_common_settings():
    service = load_compose()["services"]["topics"]
    unread = set(environment(service)) - env_names(CommonSettings) - READ_OUTSIDE_SETTINGS
    assert unread == set()


def test_services_waited_on_until_healthy_have_a_healthcheck():
    services = load_compose()["services"]
    waited_on = {
        (name, dependency, spec["condition"])
        for name, service in services.items()
        for dependency, spec in (service.get("depends_on") or {}).items()
    }
    assert waited_on, "nothing depends on anything: the start order is gone"
    for name, dependency, condition in waited_on:
        assert dependency in services, f"{name} depends on a missing service {dependency}"
        if condition == "service_healthy":
            check = services[dependency].get("healthcheck") or {}
            assert check.get("test") and not check.get("disable"), f"{dependency} has no healthcheck"
        elif condition == "service_completed_successfully":
            assert services[dependency].get("restart", "no") == "no", f"{dependency} is a one-shot job"


@pytest.mark.parametrize("service_name", sorted(SETTINGS_CLASSES))
def test_published_ports_and_healthchecks_use_the_default_port(service_name):
    port = settings_class(service_name).model_fields["port"].default
    service = load_compose()["services"][service_name]

    assert [str(p).rsplit(":", 1)[-1] for p in service["ports"]] == [str(port)]
    assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])
    exposed = {
        number
        for instruction, args in dockerfile_instructions(dockerfile_path(service))
        if instruction == "EXPOSE"
        for number in args.split()
    }
    assert str(port) in exposed


def test_the_image_is_built_from_an_existing_dockerfile_with_the_cli_as_entrypoint():
    compose = load_compose()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name, service in expertmatch_services(compose).items():
        path = dockerfile_path(service)
        assert path.is_file(), f"{name} builds from {path}, which does not exist"
        instructions = dict(dockerfile_instructions(path))
        assert json.loads(instructions["ENTRYPOINT"])[0] in scripts


def test_the_image_carries_the_topics_file_it_points_at():
    service = load_compose()["services"]["topics"]
    path = dockerfile_path(service)
    topics_file = dockerfile_env(path)["KAFKA_TOPICS_FILE"]
    copies = [args.split() for instruction, args in dockerfile_instructions(path) if instruction == "COPY"]
    workdir = dict(dockerfile_instructions(path))["WORKDIR"]
    destinations = {str(Path(workdir) / dest) for *_, dest in copies}
    assert topics_file in destinations
    assert any(src == ["deploy/topics.json"] for *src, _ in copies)


def test_every_command_is_an_expertmatch_subcommand():
    try:
        cli = importlib.import_module("services.cli")
    except ModuleNotFoundError as exc:
        if exc.name in {"services.cli"}:
            pytest.skip("services/cli.py does not exist yet")
        raise
    parser = cli.build_parser()
    for name, service in expertmatch_services(load_compose()).items():
        command = service["command"]
        argv = command if isinstance(command, list) else shlex.split(command)
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{name}: `expertmatch {' '.join(argv)}` is not a command the CLI knows")
    with pytest.raises(SystemExit):
        parser.parse_args(["no-such-command"])


@pytest.mark.parametrize("service_name", ["common", *sorted(SETTINGS_CLASSES)])
def test_the_readme_names_every_setting(service_name):
    cls = CommonSettings if service_name == "common" else settings_class(service_name)
    readme = README.read_text()
    missing = sorted(name for name in env_names(cls) if f"`{name}`" not in readme)
    assert missing == [], f"README.md does not document {missing}"
