#!/usr/bin/env python3
"""What the schemas cannot see in deploy/: the settings the gateways get must exist and must
make a cluster (nothing kept on a gateway's own disk), and the files must agree with each other.

Run by deploy/validate.sh; prints one line per problem and exits 1 when there is any.
Usage: check_consistency.py REPO_ROOT
"""
import pathlib
import re
import sys

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib
from ruamel.yaml import YAML

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
problems = []


def problem(where, message):
    problems.append(f"{where}: {message}")


def load_yaml_documents(path):
    return [d for d in YAML(typ="safe").load_all(path.read_text()) if d is not None]


def known_settings():
    """(section, key) pairs of config/default.toml, the optional ones it shows commented out
    (`# key = ...`) included: config uses deny_unknown_fields, so any other key stops start-up."""
    text = (ROOT / "config" / "default.toml").read_text()
    known = {(s, k) for s, table in tomllib.loads(text).items() for k in table}
    section = None
    for line in text.splitlines():
        if m := re.match(r"\[(\w+)\]", line):
            section = m.group(1)
        elif m := re.match(r"#\s*(\w+)\s*=", line):
            known.add((section, m.group(1)))
    return known


KNOWN = known_settings()


def check_settings(where, env):
    """env: the AGENTGATE__* variables one gateway gets. Checks each names a setting, and that
    together they keep no state on the gateway's own disk."""
    settings = {}
    for name, value in env.items():
        if not name.startswith("AGENTGATE__"):
            continue
        parts = name[len("AGENTGATE__"):].lower().split("__")
        if len(parts) != 2 or tuple(parts) not in KNOWN:
            problem(where, f"{name} names no setting of config/default.toml (start-up would stop)")
            continue
        settings[".".join(parts)] = "" if value is None else str(value)

    def get(key):
        return settings.get(key, "")

    if not get("database.url").startswith(("postgres://", "postgresql://", "${")):
        problem(where, "database.url must be PostgreSQL: SQLite is one gateway's own disk")
    if get("storage.kind") != "s3":
        problem(where, "storage.kind must be s3: local storage is one gateway's own disk")
    for key in ("storage.bucket", "storage.access_key_id", "storage.secret_access_key"):
        if key not in settings:
            problem(where, f"{key} is required with S3 storage")
    if get("auth.mode") == "jwks":
        if not get("auth.jwks_url"):
            problem(where, "auth.jwks_url is required with auth.mode jwks")
    elif not get("auth.hs256_secret"):
        problem(where, "auth.hs256_secret must be set: a generated one lives in one data dir")
    if not get("database_provision.encryption_key"):
        problem(where, "database_provision.encryption_key must be set: a generated one lives in one data dir")
    if get("server.dev_login") != "false":
        problem(where, "server.dev_login must be false on a public bind")
    if get("webhooks.allow_loopback") != "false":
        problem(where, "webhooks.allow_loopback must be false on a public bind")
    git_host = get("git.host") or "local"
    if git_host == "local" and get("git.local_shared") != "true":
        problem(where, "git.host local keeps repositories on one gateway's disk: use github, none, or a shared git.local_dir with git.local_shared")
    if "runs.instance_id" not in settings:
        problem(where, "runs.instance_id must be set: a stable, distinct name per gateway")
    return settings


def seconds(value):
    m = re.fullmatch(r"(\d+)s", str(value))
    return int(m.group(1)) if m else int(value)


def check_compose():
    where = "deploy/compose.yaml"
    (compose,) = load_yaml_documents(DEPLOY / "compose.yaml")
    services = compose.get("services", {})
    volumes = set((compose.get("volumes") or {}).keys())
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for target, condition in (depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)):
            if target not in services:
                problem(where, f"{name} depends on {target}, which is no service")
            elif (condition or {}).get("condition") == "service_healthy" and "healthcheck" not in services[target]:
                problem(where, f"{name} waits for {target} to be healthy, which has no healthcheck")
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source and not source.startswith((".", "/")) and source not in volumes:
                problem(where, f"{name} mounts volume {source}, which is not declared")
    gateways = {n: s for n, s in services.items() if "AGENTGATE__DATABASE__URL" in (s.get("environment") or {})}
    if len(gateways) < 2:
        problem(where, f"{len(gateways)} gateway service(s): a cluster needs at least two")
    ids = {}
    for name, service in gateways.items():
        settings = check_settings(f"{where} {name}", service["environment"])
        ids.setdefault(settings.get("runs.instance_id"), []).append(name)
        grace = int(settings.get("runs.shutdown_grace_secs", "10"))
        if seconds(service.get("stop_grace_period", "10s")) <= grace:
            problem(where, f"{name}: stop_grace_period must exceed runs.shutdown_grace_secs ({grace} s)")
    for instance_id, names in ids.items():
        if len(names) > 1:
            problem(where, f"{' and '.join(names)} share runs.instance_id {instance_id}")


def check_kubernetes():
    kustomization = load_yaml_documents(KUBE / "kustomization.yaml")[0]
    listed = set(kustomization.get("resources", []))
    present = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    for name in sorted(present - listed):
        problem("deploy/kubernetes/kustomization.yaml", f"does not list {name}")
    for name in sorted(listed - present):
        problem("deploy/kubernetes/kustomization.yaml", f"lists {name}, which does not exist")

    objects = {}
    for path in sorted(KUBE.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for doc in load_yaml_documents(path):
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    deployments = [o for (kind, _), o in objects.items() if kind == "Deployment"]
    if len(deployments) != 1:
        problem("deploy/kubernetes", f"{len(deployments)} Deployments, expected one")
        return
    deployment = deployments[0]
    where = f"deploy/kubernetes Deployment {deployment['metadata']['name']}"
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    if deployment["spec"].get("replicas", 1) < 2:
        problem(where, "a cluster needs at least two replicas")

    def selects_pods(selector):
        return all(labels.get(k) == v for k, v in selector.items())

    for (kind, name), obj in objects.items():
        if kind == "Service" and not selects_pods(obj["spec"].get("selector", {})):
            problem(f"Service {name}", "selects none of the Deployment's pods")
        if kind == "Service" and obj["spec"].get("sessionAffinity", "None") != "None":
            problem(f"Service {name}", "needs no session affinity: any gateway serves any stream")
        if kind == "PodDisruptionBudget" and not selects_pods(obj["spec"]["selector"].get("matchLabels", {})):
            problem(f"PodDisruptionBudget {name}", "selects none of the Deployment's pods")
    if not any(kind == "PodDisruptionBudget" for kind, _ in objects):
        problem("deploy/kubernetes", "no PodDisruptionBudget")

    (container,) = pod["spec"]["containers"]
    env = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        obj = objects.get((kind, ref["name"]))
        if obj is None:
            problem(where, f"envFrom names {kind} {ref['name']}, which is not in deploy/kubernetes")
            continue
        env.update(obj.get("data") or {})
        env.update(obj.get("stringData") or {})
    for var in container.get("env", []):
        if var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[var["name"]] = "<pod name>"
        else:
            env[var["name"]] = var.get("value", "<from elsewhere>")
    if env.get("AGENTGATE__RUNS__INSTANCE_ID") != "<pod name>":
        problem(where, "runs.instance_id must come from the pod name (downward API)")
    settings = check_settings(where, env)

    grace = int(settings.get("runs.shutdown_grace_secs", "10"))
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pause = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0
    termination = pod["spec"].get("terminationGracePeriodSeconds", 30)
    if termination <= grace + pause:
        problem(where, f"terminationGracePeriodSeconds ({termination}) must exceed the preStop pause ({pause}) plus runs.shutdown_grace_secs ({grace})")
    readiness = container.get("readinessProbe", {}).get("httpGet", {})
    if readiness.get("path") != "/health":
        problem(where, "the readiness probe must be GET /health")
    if "livenessProbe" not in container:
        problem(where, "no liveness probe")
    if not container.get("securityContext", {}).get("readOnlyRootFilesystem"):
        problem(where, "the root filesystem must be read-only")
    if not pod["spec"].get("securityContext", {}).get("runAsNonRoot"):
        problem(where, "pods must run as non-root")


def check_nginx():
    where = "deploy/nginx.conf"
    text = re.sub(r"#.*", "", (DEPLOY / "nginx.conf").read_text())
    for directive in ("proxy_buffering off;", "proxy_http_version 1.1;", "proxy_read_timeout"):
        if directive not in text:
            problem(where, f"SSE through the balancer needs {directive.rstrip(';')}")
    for sticky in ("ip_hash", "hash ", "sticky"):
        if re.search(rf"^\s*{sticky}", text, re.M):
            problem(where, f"{sticky.strip()}: no sticky sessions, any gateway serves any stream")


def check_placeholders():
    """The committed secrets are placeholders, never real values."""
    for path in KUBE.glob("*.yaml"):
        for doc in load_yaml_documents(path):
            if doc.get("kind") == "Secret":
                for key, value in {**(doc.get("stringData") or {}), **(doc.get("data") or {})}.items():
                    if "REPLACE_ME" not in str(value):
                        problem(f"deploy/kubernetes/{path.name}", f"{key} must be a REPLACE_ME placeholder")
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if (m := re.match(r"(\w*(PASSWORD|SECRET|KEY)\w*)=(.*)", line)) and "REPLACE_ME" not in m.group(3):
            problem("deploy/.env.example", f"{m.group(1)} must be a REPLACE_ME placeholder")


check_compose()
check_kubernetes()
check_nginx()
check_placeholders()
for line in problems:
    print(line)
if problems:
    sys.exit(1)
print("consistency: ok")
