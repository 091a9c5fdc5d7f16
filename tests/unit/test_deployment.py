"""The deployment files under docker/ fit the code they run: compose, Dockerfile, the k8s example.

No Docker engine or cluster is needed: the files are parsed and checked against the source (the
routes streams/http/ serves, the environment variables streams/ reads, the settings' defaults,
the real Host check and tokens-file parser) and against the access rules of the contract
(loopback-only ports, required tokens, a non-root user, probes with a Host the server answers).
"""

from __future__ import annotations

import ast
import http.server
import json
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.config.settings import Settings
from streams.http.access import host_allowed
from streams.http.tokens import parse_tokens_file

ROOT = Path(__file__).resolve().parents[2]
STREAMS = ROOT / "streams"
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"

ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
REQUIRED = re.compile(r"^\$\{(?P<name>[A-Z][A-Z0-9_]*):\?[^}$]+\}$")  # ${NAME:?message}
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
SECRET_LIKE = re.compile(r"TOKEN|PASSWORD|SECRET")
SAMPLE_SECRET = "sample:" + "s" * 40  # a name:secret token, also a fine METRICS_TOKEN


# -- what the code serves and reads -----------------------------------------------------------


@cache
def served_routes() -> frozenset[str]:
    """The paths of every `@app.page("...")` view under streams/http/ (web.py and the modules it
    registers: the API views and the dashboard pages)."""
    routes = set()
    trees = [ast.parse(path.read_text()) for path in sorted((STREAMS / "http").glob("*.py"))]
    for node in (node for tree in trees for node in ast.walk(tree)):
        if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr == "page"
                and decorator.args
                and isinstance(decorator.args[0], ast.Constant)
                and isinstance(decorator.args[0].value, str)
            ):
                routes.add(decorator.args[0].value)
    return frozenset(routes)


def _is_environment(node: ast.expr) -> bool:
    """`os.environ`, `environ`, or a parameter named `env` (Settings.from_env(env) and friends)."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ"
    return isinstance(node, ast.Name) and node.id in ("env", "environ")


def _env_keys(node: ast.AST) -> Iterator[ast.expr]:
    """The key expression of every environment read below `node`:
    `env.get(K...)`, `os.environ.get(K)`, `os.environ[K]`, `os.getenv(K)`, `getenv(K)`."""
    for child in ast.walk(node):
        if isinstance(child, ast.Call) and child.args:
            func = child.func
            reads = isinstance(func, ast.Name) and func.id == "getenv"
            if isinstance(func, ast.Attribute):
                reads = func.attr == "getenv" or (
                    func.attr == "get" and _is_environment(func.value)
                )
            if reads:
                yield child.args[0]
        elif (
            isinstance(child, ast.Subscript)
            and isinstance(child.ctx, ast.Load)
            and _is_environment(child.value)
        ):
            yield child.slice


def _constant_name(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value if ENV_NAME.match(node.value) else None
    return None


@cache
def env_names_read() -> frozenset[str]:
    """Every environment variable name the code under streams/ reads.

    Direct reads with a constant name count, and so do the calls of a helper that reads the
    variable its parameter names (`_int_setting(env, "WEB_PORT", ...)`, `get("KAFKA_...")`).
    """
    trees = [ast.parse(path.read_text()) for path in sorted(STREAMS.rglob("*.py"))]
    names: set[str] = set()
    helpers: dict[str, tuple[int, str]] = {}  # function name -> (position, name) of its parameter
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                params = [arg.arg for arg in node.args.posonlyargs + node.args.args]
                for key in _env_keys(node):
                    if isinstance(key, ast.Name) and key.id in params:
                        helpers[node.name] = (params.index(key.id), key.id)
        for key in _env_keys(tree):
            if name := _constant_name(key):
                names.add(name)
    for tree in trees:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.id if isinstance(func, ast.Name) else None
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                called = func.attr if func.value.id in ("self", "cls") else None
            if called not in helpers:
                continue
            position, param = helpers[called]
            if isinstance(func, ast.Attribute):
                position -= 1  # self/cls is not among the call's arguments
            arguments = [a for a in node.args if not isinstance(a, ast.Starred)]
            if 0 <= position < len(arguments) and (name := _constant_name(arguments[position])):
                names.add(name)
            for keyword in node.keywords:
                if keyword.arg == param and (name := _constant_name(keyword.value)):
                    names.add(name)
    return frozenset(names)


def test_the_source_scan_finds_the_settings_the_code_reads() -> None:
    # through env.get, os.environ.get, a helper's parameter, and a nested helper
    assert {
        "KAFKA_BOOTSTRAP_SERVERS",
        "STATE_DIR",
        "WEB_PORT",
        "PARTITIONS",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_PASSWORD",
        "API_ADMIN_TOKENS",
        "SMTP_HOST",
        "LOG_FORMAT",
        "ACTIVE_LEARNERS_CRASH_AT",
        "WEB_HOST",
        "WEB_ALLOWED_HOSTS",
        "API_TOKENS_FILE",
        "METRICS_TOKEN",
        "DELETION_MAX_SHARE",
    } <= env_names_read()
    assert {"/health", "/metrics", "/api/tenants"} <= served_routes()


def test_the_worker_serves_the_readiness_and_liveness_paths() -> None:
    # /ready (503 until the worker holds its partitions and restored them) is the readiness
    # probe and the image's HEALTHCHECK; /health is liveness.
    assert {"/ready", "/health"} <= served_routes()


# -- the Dockerfile ---------------------------------------------------------------------------


@cache
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of docker/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile():
        if keyword == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(rest))
    return env


def image_uid() -> int:
    users = [rest for keyword, rest in dockerfile() if keyword == "USER"]
    assert users, "the image sets no USER: it would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"USER {uid}: give a numeric uid (Kubernetes' runAsNonRoot checks it)"
    return int(uid)


def healthcheck_command() -> list[str]:
    [rest] = [rest for keyword, rest in dockerfile() if keyword == "HEALTHCHECK"]
    _, _, command = rest.partition("CMD ")
    parsed: list[str] = json.loads(command)
    return parsed


def test_the_image_runs_as_a_user_that_owns_the_state_folder() -> None:
    uid = image_uid()
    assert uid != 0
    state_dir = dockerfile_env()["STATE_DIR"]
    volume_at = next(i for i, (k, rest) in enumerate(dockerfile()) if k == "VOLUME")
    assert dockerfile()[volume_at][1] == state_dir
    # changes to a VOLUME path after the VOLUME instruction are thrown away: chown it before
    owned = [
        rest
        for keyword, rest in dockerfile()[:volume_at]
        if keyword == "RUN" and re.search(rf"chown {uid}(:\d+)? {re.escape(state_dir)}\b", rest)
    ]
    assert owned, f"no RUN chown {uid} {state_dir} before VOLUME"
    assert dockerfile_env()["WEB_PORT"] == str(Settings().web_port)
    assert ("EXPOSE", str(Settings().web_port)) in dockerfile()


def test_the_image_healthcheck_asks_ready_with_what_the_image_has() -> None:
    command = healthcheck_command()
    assert command[0] == "python", "use the image's own python, no curl or wget to install"
    assert "/ready" in " ".join(command)


class _Ready(http.server.BaseHTTPRequestHandler):
    status = 503
    hosts: list[str] = []

    def do_GET(self) -> None:
        type(self).hosts.append(f"{self.path} {self.headers['Host']}")
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(503, False), (200, True)])
def test_the_image_healthcheck_fails_until_ready_answers_200(status: int, healthy: bool) -> None:
    _Ready.status, _Ready.hosts = status, []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        command = [sys.executable, *healthcheck_command()[1:]]
        # a proxy in the environment must not take the check away from the container itself
        proxy = "http://127.0.0.1:9"
        env = {"WEB_PORT": str(server.server_address[1]), "http_proxy": proxy, "HTTP_PROXY": proxy}
        done = subprocess.run(command, env=env, capture_output=True, timeout=30, check=False)
    finally:
        server.shutdown()
        server.server_close()
    assert (done.returncode == 0) is healthy, done.stderr.decode()
    # a Host the server answers for in every configuration (the default WEB_ALLOWED_HOSTS)
    assert _Ready.hosts == ["/ready localhost"]


# -- docker/compose.yml -----------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yml").read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def own_services() -> dict[str, dict[str, Any]]:
    """The services that run this project's image (built from docker/Dockerfile)."""
    return {
        name: service
        for name, service in services().items()
        if isinstance(service.get("build"), dict)
        and service["build"].get("dockerfile") == "docker/Dockerfile"
    }


def compose_workers() -> dict[str, dict[str, Any]]:
    workers = {n: s for n, s in own_services().items() if s.get("command", [None])[0] == "worker"}
    assert workers, "compose.yml runs no worker"
    return workers


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(entry.split("=", 1) for entry in env)
    return {name: str(value) for name, value in env.items()}


def interpolated(env: dict[str, str]) -> dict[str, str]:
    """The environment compose gives the container: `${X:?...}` set (to a sample secret),
    `${X:-default}` unset (its default)."""

    def value(match: re.Match[str]) -> str:
        return SAMPLE_SECRET if match["op"] == "?" else match["default"] or ""

    pattern = re.compile(r"\$\{[A-Z0-9_]+(?::(?P<op>[?-])(?P<default>[^}]*))?\}")
    return {name: pattern.sub(value, text) for name, text in env.items()}


def published(port: str | int | dict[str, Any]) -> tuple[str | None, str]:
    """(host address, host port) of one `ports:` entry, short or long syntax."""
    if isinstance(port, dict):
        return port.get("host_ip"), str(port.get("published", ""))
    parts = str(port).rsplit(":", 2)
    if len(parts) == 3:
        return parts[0], parts[1]
    return (None, parts[0]) if len(parts) == 2 else (None, "")


def test_compose_publishes_every_port_on_loopback_only() -> None:
    for name in ("kafka", "prometheus", "grafana"):
        assert services()[name].get("ports"), f"{name} publishes nothing"
    for name, service in services().items():
        for port in service.get("ports", []):
            address, _ = published(port)
            assert address == "127.0.0.1", f"{name}: {port!r} is published beyond 127.0.0.1"
        assert service.get("network_mode") != "host", name


def test_compose_grafana_has_no_anonymous_access_and_a_password_from_the_environment() -> None:
    env = environment(services()["grafana"])
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED", "").lower() == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    match = REQUIRED.match(env.get("GF_SECURITY_ADMIN_PASSWORD", ""))
    assert match and match["name"] == "GRAFANA_ADMIN_PASSWORD"


def test_compose_workers_refuse_to_start_without_tokens() -> None:
    for name, service in compose_workers().items():
        env = environment(service)
        for setting in ("API_ADMIN_TOKENS", "METRICS_TOKEN"):
            match = REQUIRED.match(env.get(setting, ""))
            assert match and match["name"] == setting, f"{name}: {setting} needs ${{...:?...}}"
        # the message says what to set
        assert "name:secret" in env["API_ADMIN_TOKENS"] and "32" in env["API_ADMIN_TOKENS"]


def test_compose_has_no_secret_in_clear() -> None:
    for name, service in services().items():
        for setting, value in environment(service).items():
            if SECRET_LIKE.search(setting):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}", value), (
                    f"{name}: {setting} must come from the environment, not the file"
                )


def test_compose_workers_listen_in_the_container_and_answer_their_own_names() -> None:
    for name, service in compose_workers().items():
        env = interpolated(environment(service))
        settings = Settings.from_env(env)
        # with tokens configured the server binds WEB_HOST (open mode would stay on 127.0.0.1)
        assert settings.web_bind == "0.0.0.0", name
        port = settings.web_port
        # the image's healthcheck (Host: localhost), the published port (localhost:<port>) and
        # Prometheus (Host: <service>:<port>) are answered
        for host in ("localhost", "127.0.0.1", name):
            assert host_allowed(f"{host}:{port}", settings.allowed_hosts), f"{name}: {host}"
        # the other workers call it (reports) by a name that resolves: its service name
        assert settings.advertised_host == name, name
        assert all(published(p)[1] and str(p).endswith(f":{port}") for p in service["ports"])
        assert service.get("healthcheck", {}).get("disable") is not True, name
        mounted = [volume.split(":")[1] for volume in service.get("volumes", [])]
        assert env["STATE_DIR"] in mounted, f"{name}: its STATE_DIR is on no volume of its own"


def test_compose_prometheus_scrapes_each_worker_by_name_with_the_metrics_token() -> None:
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and "/metrics" in served_routes()
    workers = compose_workers()
    [discovery] = job["dns_sd_configs"]
    assert set(discovery["names"]) == set(workers)
    ports = {int(environment(s).get("WEB_PORT", Settings().web_port)) for s in workers.values()}
    assert ports == {discovery["port"]}
    # scraped by name (a Host each worker answers for), not by the address DNS gave
    [relabel] = job["relabel_configs"]
    assert relabel["source_labels"] == ["__meta_dns_name"]
    assert relabel["target_label"] == "__address__"
    assert relabel["replacement"] == f"${{1}}:{discovery['port']}"
    # the token: compose's secret made of METRICS_TOKEN, mounted where prometheus.yml reads it
    assert job["authorization"].get("type", "Bearer") == "Bearer"
    [secret] = services()["prometheus"]["secrets"]
    assert compose()["secrets"][secret["source"]] == {"environment": "METRICS_TOKEN"}
    assert job["authorization"]["credentials_file"] == secret["target"]


def test_compose_sets_only_settings_the_code_reads() -> None:
    for name, service in own_services().items():
        unknown = set(environment(service)) - env_names_read()
        assert not unknown, f"compose service {name} sets {sorted(unknown)}, which no code reads"
    # the interpreter reads PYTHON*; everything else the image sets must be ours
    image_env = {name for name in dockerfile_env() if not name.startswith("PYTHON")}
    assert image_env <= env_names_read(), image_env - env_names_read()


# -- docker/k8s/ ------------------------------------------------------------------------------


@cache
def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every document of docker/k8s/*.yaml, by file name."""
    loaded = {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for path in sorted(K8S.glob("*.yaml"))
    }
    assert loaded, "no docker/k8s/*.yaml"
    return loaded


def objects(kind: str) -> list[dict[str, Any]]:
    return [doc for docs in manifests().values() for doc in docs if doc.get("kind") == kind]


def one(kind: str) -> dict[str, Any]:
    [found] = objects(kind)
    return found


def workloads() -> list[dict[str, Any]]:
    return objects("StatefulSet") + objects("Deployment")


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    found: list[dict[str, Any]] = spec["containers"] + spec.get("initContainers", [])
    return found


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Name -> the env entry; ConfigMap keys (envFrom) as {"value": ...}."""
    env: dict[str, dict[str, Any]] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref, f"envFrom {source}: only ConfigMaps of this example are checked"
        [config] = [c for c in objects("ConfigMap") if c["metadata"]["name"] == ref["name"]]
        env.update({key: {"value": value} for key, value in config["data"].items()})
    env.update({entry["name"]: entry for entry in container.get("env", [])})
    return env


def the_worker() -> tuple[dict[str, Any], dict[str, Any]]:
    statefulset = one("StatefulSet")
    [container] = [c for c in containers(statefulset) if c.get("args", [None])[0] == "worker"]
    return statefulset, container


def web_port(env: dict[str, dict[str, Any]]) -> int:
    return int(env.get("WEB_PORT", {}).get("value", Settings().web_port))


def test_kustomization_lists_every_manifest() -> None:
    [kustomization] = manifests()["kustomization.yaml"]
    others = set(manifests()) - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == others


POD = {"metadata.name": "active-learners-worker-0", "status.podIP": "10.1.2.3"}


def pod_environment(env: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The environment a pod gets: $(NAME) expanded, downward-API values and Secrets sampled."""
    values: dict[str, str] = {}
    for name, entry in env.items():
        if "value" in entry:
            text = str(entry["value"])
            values[name] = re.sub(r"\$\(([A-Z0-9_]+)\)", lambda m: values.get(m[1], m[0]), text)
        elif "fieldRef" in entry["valueFrom"]:
            values[name] = POD[entry["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            values[name] = SAMPLE_SECRET
    return values


def test_k8s_probes_ask_ready_and_health_on_the_web_port_with_a_known_host() -> None:
    statefulset, container = the_worker()
    env = container_env(container)
    settings = Settings.from_env(pod_environment(env))
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["web"] == web_port(env) == settings.web_port
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and path in served_routes(), f"{probe}: {get['path']}"
        assert ports.get(get["port"], get["port"]) == web_port(env), f"{probe}: {get['port']}"
        # the server answers 400 to a Host it does not know: the kubelet's default is the pod IP
        headers = {h["name"].lower(): h["value"] for h in get.get("httpHeaders", [])}
        host = f"{headers.get('host')}:{settings.web_port}"
        assert host_allowed(host, settings.allowed_hosts), f"{probe} sends Host {host}"
    # the tokens file configures tokens, so the server binds WEB_HOST, beyond the pod's loopback
    assert settings.web_bind == "0.0.0.0"
    # a scrape by pod address (Prometheus' pod discovery) and by the per-pod DNS name
    pod_dns = f"{POD['metadata.name']}.{statefulset['spec']['serviceName']}"
    for host in (POD["status.podIP"], pod_dns):
        assert host_allowed(f"{host}:{settings.web_port}", settings.allowed_hosts), host
    [service] = [s for s in objects("Service") if s["spec"].get("clusterIP") == "None"]
    assert service["metadata"]["name"] == statefulset["spec"]["serviceName"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["web"]
    selector = service["spec"]["selector"]
    labels = one("StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()


def test_k8s_keeps_the_worker_state_on_a_claim_of_its_own() -> None:
    statefulset, container = the_worker()
    state_dir = container_env(container)["STATE_DIR"]["value"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claims = {t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]}
    assert mounts[state_dir] in claims


def test_k8s_tokens_file_is_a_mounted_secret_of_the_documented_format() -> None:
    statefulset, container = the_worker()
    env = container_env(container)
    assert "API_ADMIN_TOKENS" not in env and "API_READ_TOKENS" not in env  # no secret in clear
    path = Path(env["API_TOKENS_FILE"]["value"])
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent)]
    assert "subPath" not in mount, "a subPath mount never sees a rotated Secret"
    assert mount.get("readOnly") is True
    volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
    secret_name = volumes[mount["name"]]["secret"]["secretName"]
    [secret] = [s for s in objects("Secret") if s["metadata"]["name"] == secret_name]
    text = secret["stringData"][path.name]
    assert parse_tokens_file(text, "secret.yaml"), "the service reads no token from it"
    tokens = json.loads(text)
    assert set(tokens) == {"tokens"} and tokens["tokens"]
    for token in tokens["tokens"]:
        assert set(token) == {"name", "sha256", "role", "tenants"}, token
        assert isinstance(token["name"], str) and token["name"].strip()
        assert SHA256_HEX.match(token["sha256"]), token["name"]
        assert token["role"] in ("read", "admin"), token["name"]
        tenants = token["tenants"]
        assert isinstance(tenants, list) and tenants, token["name"]
        assert tenants == ["*"] or all(isinstance(t, str) and t and t != "*" for t in tenants)
    entries = tokens["tokens"]
    assert len({t["name"] for t in entries}) == len({t["sha256"] for t in entries}) == len(entries)
    metrics = env["METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert not metrics.get("optional"), "without it /metrics would be open"


def test_k8s_pods_run_as_the_image_user_without_privileges() -> None:
    uid = image_uid()
    for workload in workloads():
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == uid, name
        assert pod["securityContext"].get("fsGroup") == uid, f"{name}: volumes not writable"
        assert pod.get("automountServiceAccountToken") is False, name
        # a Service named "web" or "smtp" would set WEB_PORT or SMTP_PORT to tcp://...
        assert pod.get("enableServiceLinks") is False, name
        for container in containers(workload):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), name
            assert "memory" in resources["limits"], name
            # what the service writes besides STATE_DIR goes to /tmp, not the image
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            state_dir = container_env(container)["STATE_DIR"]["value"]
            assert {state_dir, "/tmp"} <= mounts, name


def test_k8s_sets_only_settings_the_code_reads() -> None:
    for workload in workloads():
        for container in containers(workload):
            env = container_env(container)
            # downward-API values may exist only to be spelled into another one: $(POD_IP)
            referenced = {
                name
                for entry in env.values()
                for name in re.findall(r"\$\(([A-Z0-9_]+)\)", str(entry.get("value", "")))
            }
            helpers = {name for name, e in env.items() if "fieldRef" in e.get("valueFrom", {})}
            assert helpers <= referenced, helpers - referenced
            # Kubernetes expands $(NAME) only when NAME comes earlier in the list
            order = list(env)
            for name, entry in env.items():
                for used in re.findall(r"\$\(([A-Z0-9_]+)\)", str(entry.get("value", ""))):
                    assert used in order[: order.index(name)], f"{name} uses $({used}) too early"
            unknown = set(env) - helpers - env_names_read()
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert not unknown, f"{where} sets {sorted(unknown)}, which no code reads"


def test_k8s_workers_advertise_a_name_other_pods_resolve() -> None:
    """Reports gather rows from every worker: each calls the others at their advertised host.
    A pod's bare name does not resolve from another pod; its name in the headless service does,
    and the worker must answer for it."""
    _, container = the_worker()
    env = container_env(container)
    service = one("Service")["metadata"]["name"]
    advertised = env["WEB_ADVERTISED_HOST"]["value"]
    assert advertised == f"$(POD_NAME).{service}"
    assert advertised in env["WEB_ALLOWED_HOSTS"]["value"].split(",")
