"""docker-compose.yml, the Dockerfile and deploy/compose/ kept honest without Docker.

Nothing here starts a container: the compose file is parsed with yaml.safe_load and checked
against the code it runs (the real typer app, cloud.settings.CloudSettings, the API's routes,
deploy/mosquitto/mosquitto.conf, the VictoriaMetrics store's flag parser) and against the files
it mounts, plus the `docker compose config`-like basics (depends_on, ports, volumes).
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from cryptography import x509
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cloud.api.main import create_app
from cloud.detection.settings import DetectionSettings
from cloud.settings import CloudSettings
from cloud.telemetry.victoria import _retention_of
from leasewatch.cli import app

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_DIR = REPO / "deploy" / "compose"
ENV_EXAMPLE = COMPOSE_DIR / "leasewatch.env.example"
COMPOSE_README = COMPOSE_DIR / "README.md"
BROKER_FILES_SCRIPT = COMPOSE_DIR / "broker_files.py"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
MOSQUITTO_CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"

EXPECTED_SERVICES = {
    "mosquitto",
    "victoriametrics",
    "postgres",
    "ingestor-1",
    "ingestor-2",
    "api",
    "simulator",
}
INGESTORS = ("ingestor-1", "ingestor-2")
CLOUD_SERVICES = ("api", *INGESTORS)
# Names that hold a secret, in a container's environment or in compose's variables.
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|(^|_)KEY$|API_KEY")
# A required substitution without a default: compose stops with the message when it is unset.
REQUIRED_SUBSTITUTION = re.compile(r"\$\{[A-Za-z_]\w*:\?[^}]+\}")
# `$$` (a literal dollar), `${NAME}`, `${NAME:-default}`, `${NAME:?message}`, `$NAME`.
_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)"
)

COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


# --- helpers --------------------------------------------------------------------------------


def _strings(node: object) -> Iterator[str]:
    """Every string value in a parsed YAML document (keys left out)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _referenced(text: str) -> set[str]:
    """Variables a compose string interpolates (`$$` escapes are the container's own)."""
    return {m["braced"] or m["bare"] for m in _INTERPOLATION.finditer(text) if m.group() != "$$"}


def compose_variables() -> set[str]:
    """Every variable docker-compose.yml takes from the environment or the env file."""
    return {name for text in _strings(COMPOSE) for name in _referenced(text)}


def compose_defaults() -> dict[str, str]:
    """The `${NAME:-default}` defaults of docker-compose.yml."""
    return {
        m["braced"]: m["arg"]
        for text in _strings(COMPOSE)
        for m in _INTERPOLATION.finditer(text)
        if m["op"] in (":-", "-")
    }


def interpolate(text: str, values: Mapping[str, str]) -> str:
    """Substitute like compose does; a required variable missing from `values` raises."""

    def one(match: re.Match[str]) -> str:
        if match.group() == "$$":
            return "$"
        name, op, arg = match["braced"] or match["bare"], match["op"], match["arg"]
        value = values.get(name)
        missing = value is None or (value == "" and op is not None and op.startswith(":"))
        if missing and op in (":?", "?"):
            raise KeyError(f"compose refuses to start: {name} unset ({arg})")
        if missing and op in (":-", "-"):
            return arg
        return value or ""

    return _INTERPOLATION.sub(one, text)


def interpolate_all(texts: Iterable[str], values: Mapping[str, str]) -> list[str]:
    """`interpolate` over many strings (the whole compose file, say)."""
    return [interpolate(text, values) for text in texts]


def sentinels() -> dict[str, str]:
    """A recognisable stand-in for every variable compose interpolates."""
    return {name: f"SUBSTITUTED{name}" for name in compose_variables()}


def read_env_example() -> list[tuple[str, str, list[str]]]:
    """(name, value, comment lines just above) for each assignment of the env example."""
    entries: list[tuple[str, str, list[str]]] = []
    comments: list[str] = []
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            comments = []
        elif line.startswith("#"):
            comments.append(line)
        else:
            name, sep, value = line.partition("=")
            assert sep, f"{ENV_EXAMPLE.name}:{number}: not NAME=value: {raw!r}"
            assert re.fullmatch(r"[A-Za-z_]\w*", name), f"{ENV_EXAMPLE.name}:{number}: {name!r}"
            entries.append((name, value, comments))
            comments = []
    return entries


def example_values() -> dict[str, str]:
    """Values of the env example, with every empty secret filled with a strong random one."""
    return {
        name: value or secrets.token_hex(16)  # letters and digits: also valid inside a URL
        for name, value, _ in read_env_example()
    }


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's `environment`, list or mapping form, as strings (not yet interpolated)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def operator_created_paths() -> set[str]:
    """Paths listed under "Files the operator creates" in deploy/compose/README.md."""
    text = COMPOSE_README.read_text(encoding="utf-8")
    section = text.split("## Files the operator creates", 1)
    assert len(section) == 2, "deploy/compose/README.md lacks 'Files the operator creates'"
    body = section[1].split("\n## ", 1)[0]
    return {p.rstrip("/") for p in re.findall(r"^- `([^`]+)`", body, flags=re.MULTILINE)}


def _relative(host_path: str) -> str:
    """A bind-mount source as a POSIX path relative to the repository (compose-file dir)."""
    resolved = (COMPOSE_FILE.parent / host_path).resolve()
    return resolved.relative_to(REPO).as_posix()


def mounts(service: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A service's volumes as {type, source, target, read_only}, short or long syntax."""
    found = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, str):
            parts = entry.split(":")
            source, target = parts[0], parts[1]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            found.append(
                {"type": kind, "source": source, "target": target, "read_only": "ro" in parts[2:]}
            )
        else:
            found.append({"read_only": False, **entry})
    return found


def host_path_of(service: Mapping[str, Any], container_path: str) -> Path | None:
    """The repository file a container path of a bind-mounted service reads, if any."""
    wanted = PurePosixPath(container_path)
    for mount in mounts(service):
        target = PurePosixPath(mount["target"])
        if mount["type"] == "bind" and wanted.is_relative_to(target):
            return REPO / _relative(mount["source"]) / wanted.relative_to(target)
    return None


def runs_leasewatch_image(service: Mapping[str, Any]) -> bool:
    """Built from this repository's Dockerfile (the leasewatch images)."""
    build = service.get("build")
    context = build if isinstance(build, str) else (build or {}).get("context")
    return context is not None and (COMPOSE_FILE.parent / context).resolve() == REPO


def cli_services() -> list[str]:
    """Services whose command is given to the image's `leasewatch` entry point."""
    return [n for n, s in SERVICES.items() if runs_leasewatch_image(s) and "entrypoint" not in s]


def parse_cli(args: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Parse and validate `leasewatch ARGS` like a real run, without running it."""
    command = typer.main.get_command(app)
    ctx = command.make_context("leasewatch", list(args))
    path: list[str] = []
    while hasattr(command, "resolve_command"):
        protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
        rest = [*protected, *ctx.args]
        name, command, rest = command.resolve_command(ctx, rest)
        assert command is not None and name is not None
        ctx = command.make_context(name, rest, parent=ctx)
        path.append(name)
    return path, ctx.params


def settings_of(service: str, monkeypatch: pytest.MonkeyPatch) -> CloudSettings:
    """CloudSettings exactly as the container would load them, secrets filled in."""
    env = environment(SERVICES[service])
    values = example_values()
    for name in [n for n in os.environ if n.startswith("LEASEWATCH_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, interpolate(value, values))
    return CloudSettings(_env_file=None)  # type: ignore[call-arg]


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: list[list[tuple[str, str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        assert stages, f"Dockerfile: {instruction} before the first FROM"
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def load_broker_files() -> ModuleType:
    """deploy/compose/broker_files.py as a module."""
    spec = importlib.util.spec_from_file_location("broker_files", BROKER_FILES_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- services and images ----------------------------------------------------------------------


def test_expected_services_exist_with_an_image_or_a_build() -> None:
    assert set(SERVICES) >= EXPECTED_SERVICES
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, f"{name}: neither image nor build"
        if "image" in service and "build" not in service:
            assert ":" in service["image"], f"{name}: pin a tag, not an implicit :latest"


def test_cloud_and_simulator_services_run_the_leasewatch_image() -> None:
    stage_names = {args.split()[-1] for stage in dockerfile_stages() for _, args in stage[:1]}
    for name in (*CLOUD_SERVICES, "simulator"):
        service = SERVICES[name]
        assert runs_leasewatch_image(service), f"{name}: not built from the repository"
        target = service["build"].get("target") if isinstance(service["build"], dict) else None
        assert target in (None, "runtime"), f"{name}: build target {target!r}"
    for name, service in SERVICES.items():
        build = service.get("build")
        if isinstance(build, dict) and "target" in build:
            assert build["target"] in stage_names, f"{name}: no Dockerfile stage {build['target']}"


@pytest.mark.parametrize("name", cli_services())
def test_service_command_is_a_real_cli_entry_point(name: str) -> None:
    command = SERVICES[name].get("command")
    assert isinstance(command, list), f"{name}: give the command as a list (exec form)"
    assert all(isinstance(arg, str) for arg in command), f"{name}: quote every argument"
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, f"{name}: leasewatch {' '.join(command)}:\n{result.output}"
    path, _ = parse_cli(command)  # option names and values validated, nothing run
    assert path, f"{name}: {command} names no subcommand"


def test_cli_check_catches_typos() -> None:
    assert CliRunner().invoke(app, ["cloud", "ingst", "--help"]).exit_code != 0
    assert CliRunner().invoke(app, ["sim", "modbus", "--asets", "20", "--help"]).exit_code != 0
    with pytest.raises(typer.BadParameter, match="less than or equal"):
        parse_cli(["sim", "modbus", "--assets", "100000"])


def test_script_services_run_a_script_of_the_repository() -> None:
    for name, service in SERVICES.items():
        if not (runs_leasewatch_image(service) and "entrypoint" in service):
            continue
        entrypoint = service["entrypoint"]
        assert entrypoint[0] == "python", f"{name}: entrypoint {entrypoint}"
        script = host_path_of(service, entrypoint[1])
        assert script is not None, f"{name}: {entrypoint[1]} is not mounted from the repository"
        assert script.is_file(), f"{name}: {script} does not exist"


def test_broker_files_service_arguments_parse() -> None:
    service = SERVICES["broker-files"]
    assert service["entrypoint"][1] == f"/setup/{BROKER_FILES_SCRIPT.name}"
    assert service.get("network_mode") == "none"
    module = load_broker_files()
    with pytest.raises(SystemExit) as exited:
        module.main([*service["command"], "--help"], env={})
    assert exited.value.code == 0
    out = service["command"][service["command"].index("--out") + 1]
    assert host_path_of(service, out) == REPO / "deploy" / "compose" / "broker"
    broker = {m["target"]: m for m in mounts(SERVICES["mosquitto"])}["/mosquitto/config"]
    assert _relative(broker["source"]) == "deploy/compose/broker"


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="needs mosquitto_passwd")
def test_broker_files_script_writes_hashed_passwords_and_acl(tmp_path: Path) -> None:
    module = load_broker_files()
    gateways = tmp_path / "gateways.txt"
    gateways.write_text("# provisioned\ngw-0001:first-gateway-pw\n\ngw-0002:second:pw:x\n")
    env = {
        "LEASEWATCH_MQTT_PASSWORD": "ingestor-secret-1",
        "MOSQUITTO_MONITOR_PASSWORD": "monitor-secret-12",
    }
    out = tmp_path / "broker"
    assert module.main(["--out", str(out), "--gateways", str(gateways)], env=env) == 0
    passwd = (out / "passwd").read_text()
    users = dict(line.split(":", 1) for line in passwd.splitlines())
    assert set(users) == {"ingestor", "monitor", "gw-0001", "gw-0002"}
    assert all(value.startswith("$7$") for value in users.values())
    assert "secret" not in passwd
    acl = (out / "acl").read_text()
    assert "\nuser gw-0002\n" in acl
    assert "\ntopic write lw/v1/gw-0002/telemetry\n" in acl
    assert (out / "passwd").stat().st_mode & 0o077 == 0


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="needs mosquitto_passwd")
def test_broker_files_script_issues_the_tls_files_once_and_keeps_the_ca_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = load_broker_files()
    service = SERVICES["broker-files"]
    command = service["command"]
    for flag, folder in (("--certs", "broker-certs"), ("--ca", "ca")):
        target = command[command.index(flag) + 1]
        assert host_path_of(service, target) == REPO / "deploy" / "compose" / folder
    env = {
        "LEASEWATCH_MQTT_PASSWORD": "ingestor-secret-1",
        "MOSQUITTO_MONITOR_PASSWORD": "monitor-secret-12",
        "MQTT_PUBLIC_HOSTS": "mqtt.example.com, 203.0.113.7",
    }
    certs, ca = tmp_path / "broker-certs", tmp_path / "ca"
    argv = ["--out", str(tmp_path / "broker"), "--certs", str(certs), "--ca", str(ca)]
    assert module.main(argv, env=env) == 0
    assert sorted(p.name for p in certs.iterdir()) == ["server.crt", "server.key"]
    assert sorted(p.name for p in ca.iterdir()) == ["ca.crt", "ca.key"]
    server = x509.load_pem_x509_certificate((certs / "server.crt").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["mqtt.example.com"]
    issued = (certs / "server.crt").read_bytes()
    assert module.main(argv, env=env) == 0
    assert (certs / "server.crt").read_bytes() == issued, "an existing certificate is kept"
    assert "kept" in capsys.readouterr().out
    no_hosts = {k: v for k, v in env.items() if k != "MQTT_PUBLIC_HOSTS"}
    fresh = ["--out", str(tmp_path / "b2"), "--certs", str(tmp_path / "c2")]
    assert module.main(fresh, env=no_hosts) == 2
    assert "MQTT_PUBLIC_HOSTS" in capsys.readouterr().err


def test_broker_files_script_refuses_weak_or_missing_secrets(tmp_path: Path) -> None:
    module = load_broker_files()
    out = tmp_path / "broker"
    weak = {"LEASEWATCH_MQTT_PASSWORD": "short", "MOSQUITTO_MONITOR_PASSWORD": "x" * 20}
    assert module.main(["--out", str(out)], env=weak) == 2
    assert module.main(["--out", str(out)], env={}) == 2
    assert not out.exists()


# --- mounts and volumes -----------------------------------------------------------------------


def test_bind_mounts_exist_or_are_created_by_the_operator() -> None:
    created = operator_created_paths()
    for name, service in SERVICES.items():
        for mount in mounts(service):
            if mount["type"] != "bind":
                continue
            source = mount["source"]
            assert not source.startswith(("/", "~")), f"{name}: absolute host path {source}"
            relative = _relative(source)
            assert (REPO / relative).exists() or relative in created, (
                f"{name}: {source} is not in the repository, and deploy/compose/README.md "
                "does not list it under 'Files the operator creates'"
            )


def test_operator_created_files_are_git_and_docker_ignored() -> None:
    created = operator_created_paths()
    assert "deploy/compose/leasewatch.env" in created
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    for path in created:
        assert path in ignored, f".dockerignore lets {path} into the build context"
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    for path in created:
        probe = path if Path(path).suffix else f"{path}/passwd"
        git = ["git", "-C", str(REPO)]
        ignored_by_git = subprocess.run(
            [*git, "check-ignore", "-q", "--no-index", probe], check=False
        )
        assert ignored_by_git.returncode == 0, f"{probe} is not git-ignored"
        tracked = subprocess.run(
            [*git, "ls-files", "--", path], check=True, capture_output=True, text=True
        )
        assert not tracked.stdout, f"{path} is committed: {tracked.stdout}"


def test_named_volumes_are_declared_and_used() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    used = {
        mount["source"]
        for service in SERVICES.values()
        for mount in mounts(service)
        if mount["type"] == "volume"
    }
    assert used <= declared, f"undeclared volumes: {used - declared}"
    assert declared <= used, f"unused volumes: {declared - used}"


# --- settings and secrets ---------------------------------------------------------------------


def test_leasewatch_variables_are_cloud_settings_fields() -> None:
    names = compose_variables() | {name for name, _, _ in read_env_example()}
    for service in SERVICES.values():
        names |= set(environment(service))
    fields = {f"LEASEWATCH_{f.upper()}" for f in CloudSettings.model_fields}
    fields |= {f"LEASEWATCH_DETECT_{f.upper()}" for f in DetectionSettings.model_fields}
    unknown = sorted(n for n in names if n.startswith("LEASEWATCH_") and n not in fields)
    assert not unknown, f"not fields of the cloud or detection settings (typos?): {unknown}"


@pytest.mark.parametrize("name", CLOUD_SERVICES)
def test_cloud_services_settings_load_as_in_the_container(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of(name, monkeypatch)
    assert settings.mode == "production"
    assert not getattr(settings, "auto_register_devices", False), "demo and tests only"
    assert settings.mqtt_host in SERVICES
    assert urlsplit(settings.telemetry_url).hostname in SERVICES
    assert urlsplit(settings.state_url).hostname in SERVICES
    listeners = broker_listeners()
    assert settings.mqtt_port in listeners, f"no broker listener on {settings.mqtt_port}"
    # Honest about TLS: the client uses it exactly when its listener has a certificate.
    assert settings.mqtt_tls == listeners[settings.mqtt_port]


def test_ingestors_share_one_group_with_distinct_client_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ingestors = [settings_of(name, monkeypatch) for name in INGESTORS]
    assert len({s.mqtt_client_id for s in ingestors}) == len(ingestors)
    assert len({s.mqtt_shared_group for s in ingestors}) == 1
    assert ingestors[0].mqtt_shared_group, "an empty group means every worker gets everything"
    for name in INGESTORS:
        assert SERVICES[name]["command"] == ["cloud", "ingest"]


def test_only_ingestors_subscribe_to_gateway_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    # A second subscriber of gateway topics would make the broker acknowledge a message with
    # 0x00 while no ingestor is subscribed (after a restart), and the gateway would drop it.
    commands = {tuple(s.get("command") or ()) for s in SERVICES.values()}
    assert ("cloud", "detect") not in commands, "the ingestors detect what they store"
    for name in INGESTORS:  # detection is on in the ingestors (LEASEWATCH_DETECT_ENABLED)
        settings_of(name, monkeypatch)  # the container's environment
        assert DetectionSettings(_env_file=None).enabled  # type: ignore[call-arg]


def test_api_listens_on_all_interfaces_of_its_published_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_of("api", monkeypatch)
    assert settings.api_host == "0.0.0.0"  # noqa: S104 - inside its container, by design
    container_ports = {port.rsplit(":", 1)[-1] for port in SERVICES["api"]["ports"]}
    assert container_ports == {str(settings.api_port)}


def test_api_healthcheck_asks_an_unauthenticated_route(monkeypatch: pytest.MonkeyPatch) -> None:
    test = " ".join(SERVICES["api"]["healthcheck"]["test"])
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", test)
    assert url is not None, f"api healthcheck: no local URL in {test!r}"
    assert int(url[1]) == settings_of("api", monkeypatch).api_port
    response = TestClient(create_app(None)).get(url[2])  # type: ignore[arg-type]
    assert response.status_code == 200, f"{url[2]} answers {response.status_code}"


def test_compose_refuses_to_start_without_any_one_secret() -> None:
    texts = list(_strings(COMPOSE))
    values = example_values()
    for secret in sorted(name for name in compose_variables() if SECRET_NAME.search(name)):
        without = {name: value for name, value in values.items() if name != secret}
        with pytest.raises(KeyError, match=secret):
            interpolate_all(texts, without)
        interpolate_all(texts, values)  # and starts with all of them


def test_no_service_holds_a_literal_secret() -> None:
    for name, service in SERVICES.items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert REQUIRED_SUBSTITUTION.fullmatch(value), (
                    f"{name}: {key} must be a ${{VAR:?message}} substitution, not {value!r}"
                )
            for url in re.findall(r"\w+://\S+", interpolate(value, sentinels())):
                password = urlsplit(url).password
                if password is not None:
                    assert password.startswith("SUBSTITUTED"), f"{name}: {key}: literal password"
                    assert SECRET_NAME.search(password), f"{name}: {key}: from {password}"
        for env_file in service.get("env_file", []):
            path = env_file if isinstance(env_file, str) else env_file["path"]
            assert _relative(path) in operator_created_paths(), f"{name}: env_file {path}"
        for text in _strings(service.get("healthcheck", {})):
            for secret in re.findall(r"-P\s+(\S+)", text):
                assert secret.strip("\"'").startswith("$$"), f"{name}: literal -P {secret}"
    for text in _strings(COMPOSE):
        for match in _INTERPOLATION.finditer(text):
            if match["braced"] and SECRET_NAME.search(match["braced"]):
                assert match["op"] == ":?", f"{match.group()}: secrets take no default"


def test_env_example_documents_every_variable_and_holds_no_secret() -> None:
    entries = read_env_example()
    names = [name for name, _, _ in entries]
    assert len(names) == len(set(names)), "variables listed twice"
    for name, value, comments in entries:
        assert comments, f"{name} has no comment explaining it"
        if SECRET_NAME.search(name):
            assert value == "", f"{name}: the example must not carry a secret"
    assert set(names) == compose_variables(), "example and docker-compose.yml disagree"
    defaults = compose_defaults()
    for name, value, _ in entries:
        if name in defaults:
            assert value == defaults[name], f"{name}: example {value!r}, compose {defaults[name]!r}"


def test_compose_refuses_to_start_with_the_example_unfilled() -> None:
    unfilled = {name: value for name, value, _ in read_env_example()}
    with pytest.raises(KeyError, match="compose refuses to start"):
        interpolate_all(_strings(COMPOSE), unfilled)


# --- docker compose config basics ------------------------------------------------------------


def _depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {target: spec.get("condition", "service_started") for target, spec in depends.items()}


def test_depends_on_targets_exist_and_can_satisfy_the_condition() -> None:
    for name, service in SERVICES.items():
        for target, condition in _depends_on(service).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            assert not SERVICES[target].get("profiles") or set(SERVICES[target]["profiles"]) <= set(
                service.get("profiles", [])
            ), f"{name} waits for profiled {target}"
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{target} has no healthcheck"
            else:
                assert condition in ("service_started", "service_completed_successfully")

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, f"depends_on cycle: {' -> '.join((*trail, name))}"
        for target in _depends_on(SERVICES[name]):
            visit(target, (*trail, name))

    for name in SERVICES:
        visit(name, ())


def broker_listeners() -> dict[int, bool]:
    """The broker config's listener ports, each with whether it speaks TLS (has a certfile)."""
    listeners: dict[int, bool] = {}
    port = None
    for line in MOSQUITTO_CONF.read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "listener":
            port = int(words[1])
            listeners[port] = False
        elif words[0] == "certfile" and port is not None:
            listeners[port] = True
    return listeners


def _container_port(service: Mapping[str, Any], host_port: str, defaults: dict[str, str]) -> str:
    for entry in service.get("ports", []):
        parts = interpolate(str(entry), defaults).partition("/")[0].split(":")
        if parts[1] == host_port:
            return parts[2]
    raise AssertionError(f"{host_port} is not published")


def test_published_ports_do_not_collide() -> None:
    defaults = compose_defaults()
    published: list[tuple[str, str, str, str]] = []
    for name, service in SERVICES.items():
        for entry in service.get("ports", []):
            spec, _, protocol = interpolate(str(entry), defaults).partition("/")
            parts = spec.split(":")
            assert len(parts) == 3, f"{name}: publish as ADDRESS:HOST:CONTAINER, not {entry}"
            published.append((parts[0], parts[1], protocol or "tcp", name))
    for index, (address, port, protocol, name) in enumerate(published):
        for other_address, other_port, other_protocol, other in published[index + 1 :]:
            everywhere = "0.0.0.0"  # noqa: S104 - a port published on every address collides
            same_address = everywhere in (address, other_address) or address == other_address
            assert not (same_address and (port, protocol) == (other_port, other_protocol)), (
                f"{name} and {other} both publish {address}:{port}/{protocol}"
            )
    tls_ports = {str(port) for port, tls in broker_listeners().items() if tls}
    for address, port, _, name in published:
        container_port = _container_port(SERVICES[name], port, defaults)
        assert address == "127.0.0.1" or (name == "mosquitto" and container_port in tls_ports), (
            f"{name} publishes {port} on {address}: only the broker's TLS listener may be public"
        )


def test_services_with_a_port_or_a_store_have_healthchecks() -> None:
    for name in ("mosquitto", "victoriametrics", "postgres", "api"):
        assert SERVICES[name].get("healthcheck", {}).get("test"), f"{name}: no healthcheck"


# --- each server as the code expects it ------------------------------------------------------


def test_mosquitto_runs_the_projects_config_and_its_files() -> None:
    service = SERVICES["mosquitto"]
    assert service["image"].startswith("eclipse-mosquitto:2")
    config_path = service["command"][service["command"].index("-c") + 1]
    assert host_path_of(service, config_path) == MOSQUITTO_CONF
    conf = dict(
        line.split(maxsplit=1)
        for line in MOSQUITTO_CONF.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    targets = {PurePosixPath(m["target"]): m for m in mounts(service)}
    for key in ("password_file", "acl_file", "certfile", "keyfile"):
        directory = PurePosixPath(conf[key]).parent
        assert directory in targets, f"{key} {conf[key]}: its directory is not mounted"
        assert targets[directory]["read_only"], f"{directory}: mount the credentials read-only"
    ca_dir = host_path_of(SERVICES["broker-files"], "/ca")
    assert all(REPO / _relative(m["source"]) != ca_dir for m in mounts(service) if "source" in m)
    persistence = PurePosixPath(conf["persistence_location"])
    assert targets[persistence]["type"] == "volume", "broker persistence needs a volume"


def test_victoriametrics_runs_with_the_flags_the_store_requires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = SERVICES["victoriametrics"]
    assert service["image"].startswith("victoriametrics/victoria-metrics:")
    flags = dict(
        arg.lstrip("-").split("=", 1)
        for arg in (interpolate(a, compose_defaults()) for a in service["command"])
    )
    assert flags["dedup.minScrapeInterval"] == "1ms"
    retention = _retention_of(flags["retentionPeriod"])
    assert retention.days >= 365, "keep at least a year"
    for name in INGESTORS:
        # What the ingestor still accepts as a reading, VictoriaMetrics must still take.
        max_age = getattr(settings_of(name, monkeypatch), "max_reading_age_days", None)
        assert max_age is None or retention.days >= max_age, f"{name}: retention < max age"
    targets = {m["target"]: m for m in mounts(service)}
    assert targets[flags["storageDataPath"]]["type"] == "volume"
    cloud_env = environment(SERVICES["api"])
    assert urlsplit(cloud_env["LEASEWATCH_TELEMETRY_URL"]).port == int(
        flags.get("httpListenAddr", ":8428").rsplit(":", 1)[1]
    )


def test_postgres_credentials_match_the_state_url() -> None:
    service = SERVICES["postgres"]
    assert service["image"] == "postgres:16"
    values = sentinels()
    env = {key: interpolate(value, values) for key, value in environment(service).items()}
    state_url = environment(SERVICES["api"])["LEASEWATCH_STATE_URL"]
    state = urlsplit(interpolate(state_url, values))
    assert state.hostname == "postgres"
    assert state.username == env["POSTGRES_USER"]
    assert state.path.lstrip("/") == env["POSTGRES_DB"]
    assert state.password == env["POSTGRES_PASSWORD"], "one variable for both sides"
    targets = {m["target"]: m for m in mounts(service)}
    assert targets["/var/lib/postgresql/data"]["type"] == "volume"


# --- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_leasewatch_image() -> None:
    stages = dockerfile_stages()
    bases = [stage[0][1].split()[0] for stage in stages]
    assert all(base == "python:3.11-slim" or base in _stage_names(stages) for base in bases)
    final = stages[-1]
    entrypoints = [args for instruction, args in final if instruction == "ENTRYPOINT"]
    assert entrypoints, "the runtime stage sets no ENTRYPOINT"
    assert yaml.safe_load(entrypoints[-1]) == ["leasewatch"], "exec form, the console script"
    users = [args for instruction, args in final if instruction == "USER"]
    assert users, "the runtime stage runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    runs = " ".join(args for stage in stages for instruction, args in stage if instruction == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs), "installs the package with pip install ."


def _stage_names(stages: list[list[tuple[str, str]]]) -> set[str]:
    return {stage[0][1].split()[-1] for stage in stages if " as " in stage[0][1].lower()}


def test_dockerfile_copies_every_package_and_the_readme() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    include = re.search(r"include = \[([^\]]*)\]", pyproject)
    assert include is not None
    packages = {name.rstrip("*") for name in re.findall(r'"([^"]+)"', include[1])}
    copied = {
        source.rstrip("/")
        for stage in dockerfile_stages()
        for instruction, args in stage
        if instruction == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    }
    assert packages | {"pyproject.toml", "README.md"} <= copied
    ignored = {line.strip().strip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    assert not ignored & copied, (
        f".dockerignore drops what the Dockerfile copies: {ignored & copied}"
    )
