"""docker-compose.yml, deploy/ and the README, checked without a Docker engine: parsed, and
held to what the service actually reads and serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from eventsapi.app import create_app
from eventsapi.config import SETTINGS, Settings, settings_table

ROOT = Path(__file__).resolve().parent.parent
CONFIG_VARS = {s.env for s in SETTINGS}


def test_readme_configuration_table_is_the_settings_table() -> None:
    assert settings_table() in (ROOT / "README.md").read_text()


def test_env_reference_lists_every_variable() -> None:
    text = (ROOT / "deploy/eventsapi.env.example").read_text()
    listed = set(re.findall(r"^(EVENTSAPI_[A-Z0-9_]+)=", text, re.M))
    assert listed == CONFIG_VARS


def test_compose_runs_the_service_against_initialised_influxdb2() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    influx = compose["services"]["influxdb"]
    assert influx["image"].startswith("influxdb:2.7.")
    env = influx["environment"]
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    for key in ("ORG", "BUCKET", "ADMIN_TOKEN", "USERNAME", "PASSWORD"):
        assert env[f"DOCKER_INFLUXDB_INIT_{key}"]
    assert "healthcheck" in influx and any(v.endswith(":/var/lib/influxdb2") for v in influx["volumes"])
    svc = compose["services"]["eventsapi"]
    assert svc["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}
    assert svc["depends_on"]["influxdb"]["condition"] == "service_healthy"
    senv = svc["environment"]
    assert senv["EVENTSAPI_STORE"] == (
        f"influxdb2://influxdb:8086?org={env['DOCKER_INFLUXDB_INIT_ORG']}&bucket={env['DOCKER_INFLUXDB_INIT_BUCKET']}"
    )
    assert senv["EVENTSAPI_INFLUXDB_TOKEN"] == env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    assert set(senv) <= CONFIG_VARS
    assert "/readyz" in " ".join(svc["healthcheck"]["test"])
    assert set(compose["volumes"]) == {"influxdb-data", "eventsapi-data"}


def test_dockerfile_is_slim_pinned_and_non_root() -> None:
    text = (ROOT / "deploy/Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", f) for f in froms)
    assert re.search(r"^USER 10001", text, re.M)
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for part in src.split():
            assert (ROOT / part).exists(), part
    constraints = (ROOT / "deploy/constraints.txt").read_text().splitlines()
    pins = [line for line in constraints if line and not line.startswith("#")]
    assert pins and all("==" in p for p in pins)
    names = {p.split("==")[0].lower() for p in pins}
    assert {"aiohttp", "aiohttp-cors", "influxdb-client", "pyjwt", "prometheus-client"} <= {
        n.replace("_", "-") for n in names
    }
    assert "EVENTSAPI_HOST=0.0.0.0" in text and 'ENTRYPOINT ["eventsapi"]' in text


def test_kubernetes_probes_point_at_real_routes() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy/kubernetes.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Deployment", "Service"}
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {e["name"] for e in container["env"]} <= CONFIG_VARS
    app = create_app(Settings(jwt_secret="x"))
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert {"/healthz", "/readyz"} <= paths
    assert kinds["Deployment"]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_relative_links_in_the_docs_resolve_inside_the_clone() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "deploy/README.md"]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = (page.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []


def test_env_reference_loads_under_docker_env_file_rules() -> None:
    """`docker run --env-file` takes each line as KEY=VALUE literally (no quotes, no trailing
    comments), skips blank lines and lines starting with #: the example must load as it is."""
    from eventsapi.config import load_settings

    env: dict[str, str] = {}
    for line in (ROOT / "deploy/eventsapi.env.example").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        assert "#" not in value, f"a trailing comment would become part of {key}'s value"
        env[key] = value
    settings = load_settings(env)
    assert settings.port == 8080 and settings.host == "0.0.0.0"
