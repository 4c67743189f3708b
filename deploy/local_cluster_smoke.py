#!/usr/bin/env python3
"""Runs the gateways of deploy/compose.yaml without a container engine, and streams through
deploy/nginx.conf: three `agentgate serve` processes with the compose file's own environment
(only the database URL, the S3 endpoint and the bind address point at local services), moto as
the S3 server, the local nginx as the balancer. Then: a run streamed through the balancer, its
replay resumed with Last-Event-ID through every gateway, a presigned download link followed.

Usage: local_cluster_smoke.py AGENTGATE_BINARY POSTGRES_ADMIN_URL [--live-tail]
  --live-tail: also follow a run executing on one gateway from the others, live (needs the
  cross-gateway live tail over LISTEN/NOTIFY).
  POSTGRES_ADMIN_URL: a server where the user may create databases (a fresh one is created and
  dropped). Needs moto_server, boto3, nginx and ruamel.yaml. Exits non-zero on any failure;
  prints "cluster: N passed, 0 failed" at the end.
"""
import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from ruamel.yaml import YAML

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIVE_TAIL = "--live-tail" in sys.argv
BINARY, ADMIN_URL = [a for a in sys.argv[1:] if a != "--live-tail"][:2]
NGINX = "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else shutil.which("nginx")

processes = []
passed = failed = 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(what, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {what}")
    else:
        failed += 1
        print(f"FAIL {what} {detail}")


def start(args, env=None, log=None):
    out = open(log, "w") if log else subprocess.DEVNULL
    p = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    processes.append(p)
    return p


def wait_http(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except Exception:
            time.sleep(0.3)
    return False


def sse(port, method, path, token, body=None, headers=None):
    """(response headers, [(id, event, data)]) of one SSE request, read until the stream ends."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    h = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream", **(headers or {})}
    if body is not None:
        h["Content-Type"] = "application/json"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
    r = conn.getresponse()
    events, current = [], {}
    for raw in r:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if "data" in current:
                events.append((current.get("id"), current.get("event", "message"), current["data"]))
                if current.get("event") == "done":
                    break
            current = {}
        elif not line.startswith(":") and ":" in line:
            key, _, value = line.partition(":")
            current[key] = value[1:] if value.startswith(" ") else value
    conn.close()
    return r, events


def main():
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="agentgate-cluster-"))
    database = f"agentgate_cluster_{uuid.uuid4().hex[:8]}"
    admin = urllib.parse.urlparse(ADMIN_URL)
    database_url = admin._replace(path=f"/{database}").geturl()
    psql = ["psql", "-q", "-v", "ON_ERROR_STOP=1", ADMIN_URL, "-c"]
    subprocess.run(psql + [f"CREATE DATABASE {database}"], check=True)
    global failed
    try:
        check_kubernetes_env()
        names = run(scratch, database_url)
        check_logs(scratch, names)
    except Exception as e:
        failed += 1
        print(f"FAIL {type(e).__name__}: {e}")
    finally:
        for p in processes:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in processes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        subprocess.run(psql + [f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"])
        if failed:
            print(f"logs kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"cluster: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def run(scratch, database_url):
    # The S3 server, and the bucket create-bucket makes.
    s3_port = free_port()
    start(["moto_server", "-H", "127.0.0.1", "-p", str(s3_port)], log=scratch / "moto.log")
    if not wait_http(f"http://127.0.0.1:{s3_port}/moto-api/"):
        raise SystemExit("moto_server did not start")
    variables = {
        "POSTGRES_PASSWORD": "unused",
        "MINIO_ROOT_USER": "smoke-access-key",
        "MINIO_ROOT_PASSWORD": "smoke-secret-key",
        "AGENTGATE_HS256_SECRET": "smoke-hs256-secret-" + "x" * 32,
        "AGENTGATE_ENCRYPTION_KEY": "smoke-encryption-key-" + "y" * 32,
        "S3_ENDPOINT": f"http://127.0.0.1:{s3_port}",
    }
    import boto3

    boto3.client(
        "s3", endpoint_url=variables["S3_ENDPOINT"], region_name="us-east-1",
        aws_access_key_id=variables["MINIO_ROOT_USER"], aws_secret_access_key=variables["MINIO_ROOT_PASSWORD"],
    ).create_bucket(Bucket="agentgate")

    def interpolate(value):
        """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error}."""
        def one(m):
            name, op, arg = m.group(1), m.group(2), m.group(3)
            if name in variables:
                return variables[name]
            if op == ":-":
                return arg
            raise SystemExit(f"deploy/compose.yaml needs {name}")
        return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, str(value))

    compose = YAML(typ="safe").load((ROOT / "deploy" / "compose.yaml").read_text())
    gateways = {n: s for n, s in compose["services"].items() if "AGENTGATE__DATABASE__URL" in (s.get("environment") or {})}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGATE__")}
    ports = {}
    for name, service in gateways.items():
        env = dict(base_env)
        env.update({k: interpolate(v) for k, v in service["environment"].items()})
        ports[name] = free_port()
        # What differs from the containers: the addresses of the services on this machine.
        env["AGENTGATE__DATABASE__URL"] = database_url
        env["AGENTGATE__SERVER__BIND"] = f"127.0.0.1:{ports[name]}"
        env["AGENTGATE__SERVER__DATA_DIR"] = str(scratch / name)
        env["AGENTGATE__LOG__FORMAT"] = "pretty"
        token_env = env
        start([BINARY, "serve"], env=env, log=scratch / f"{name}.log")
        # One at a time: the first migrates the database.
        check(f"{name} healthy", wait_http(f"http://127.0.0.1:{ports[name]}/health", 90))

    # The balancer: deploy/nginx.conf with the upstreams and the port of this machine.
    lb_port = free_port()
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    names = iter(gateways)
    conf = re.sub(r"(server\s+)[\w.-]+:4444", lambda m: f"{m.group(1)}127.0.0.1:{ports[next(names)]}", conf)
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{lb_port};")
    conf = conf.replace("pid /tmp/nginx.pid;", f"pid {scratch}/nginx.pid;")
    conf = conf.replace("access_log /dev/stdout;", f"access_log {scratch}/access.log;")
    (scratch / "nginx.conf").write_text(conf)
    start([NGINX, "-p", str(scratch), "-e", "stderr", "-c", str(scratch / "nginx.conf"), "-g", "daemon off;"],
          log=scratch / "nginx.log")
    check("balancer up", wait_http(f"http://127.0.0.1:{lb_port}/lb-health", 20))
    check("/health through the balancer", wait_http(f"http://127.0.0.1:{lb_port}/health", 20))

    token = subprocess.run([BINARY, "token", "--user", "alice"], env=token_env, check=True,
                           capture_output=True, text=True).stdout.strip()

    # A run streamed through the balancer, to its end.
    r, events = sse(lb_port, "POST", "/message", token, {"message": "build a todo list"})
    run_id = r.getheader("X-Run-Id")
    app_id = r.getheader("X-App-Id")
    check("POST /message through the balancer streams", r.status == 200 and run_id, f"status {r.status}")
    ids = [int(i) for i, _, _ in events if i is not None]
    check("the stream ends with done", events and events[-1][1] == "done", str(events[-1:]))
    check("ids are 1..n in order", ids == list(range(1, len(ids) + 1)), str(ids))
    saw_version = any("version_created" in d or "deployment_complete" in d for _, _, d in events)
    check("the run made a version", saw_version)

    # Its replay, resumed after event 2, through the balancer (round robin: every gateway in
    # turn) and from each gateway directly: the same events everywhere.
    expected = [(i, e, d) for i, e, d in events if i is not None and int(i) > 2]
    check("the run has events after the second", len(expected) > 0, str(len(events)))
    for attempt in range(3):
        _, replay = sse(lb_port, "GET", f"/runs/{run_id}/events", token, headers={"Last-Event-ID": "2"})
        check(f"replay after Last-Event-ID 2 through the balancer (#{attempt + 1})", replay == expected,
              f"{len(replay)} events, expected {len(expected)}")
    for name, port in ports.items():
        _, replay = sse(port, "GET", f"/runs/{run_id}/events", token, headers={"Last-Event-ID": "2"})
        check(f"replay after Last-Event-ID 2 from {name}", replay == expected)

    # Files in S3: the presigned link of the version's archive works from any gateway.
    for name, port in list(ports.items())[:2]:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/apps/{app_id}/read-url",
                                     headers={"Authorization": f"Bearer {token}"})
        # 409 version_pending until the version's upload job has run (on any gateway).
        deadline = time.time() + 30
        read = None
        while read is None and time.time() < deadline:
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    read = json.load(resp)
            except urllib.error.HTTPError as e:
                if e.code != 409:
                    raise
                time.sleep(0.5)
        check(f"the version is in S3 within 30 s (read-url from {name})", read is not None,
              "still version_pending: see upload_version in the gateways' logs")
        if read is None:
            break
        url = read["readUrl"]
        check(f"read-url from {name} points at S3", url.startswith(variables["S3_ENDPOINT"]), url[:60])
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read()
        check(f"the presigned archive link from {name} downloads", resp.status == 200 and body[:2] == b"\x1f\x8b")

    if LIVE_TAIL:
        live_tail(ports, token)
    return list(gateways)


def check_kubernetes_env():
    """The ConfigMap and the Secret (placeholders and all) make a configuration the binary
    accepts: no unknown key, no invalid value."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGATE__")}
    for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")):
        for doc in YAML(typ="safe").load_all(path.read_text()):
            if doc and doc.get("kind") in ("ConfigMap", "Secret"):
                env.update({k: str(v) for k, v in {**(doc.get("data") or {}), **(doc.get("stringData") or {})}.items()})
    env["AGENTGATE__RUNS__INSTANCE_ID"] = "agentgate-5d9c7b8f6-x2x7q"
    result = subprocess.run([BINARY, "token", "--user", "probe"], env=env, capture_output=True, text=True)
    check("the Kubernetes ConfigMap and Secret load as a configuration", result.returncode == 0,
          result.stderr.strip()[-300:])


def check_logs(scratch, names):
    """A job that one gateway queued must not need files only that gateway has."""
    for name in names:
        log = re.sub(r"\x1b\[[0-9;]*m", "", (scratch / f"{name}.log").read_text())
        local = [l for l in log.splitlines() if "missing from the local cache" in l]
        check(f"{name}: no job step failed for a blob in another gateway's local cache", not local,
              local[0][:300] if local else "")


def live_tail(ports, token):
    """A run executing on gateway-1, followed from its start on every other gateway."""
    first, *others = ports.values()
    conn = http.client.HTTPConnection("127.0.0.1", first, timeout=120)
    conn.request("POST", "/message", body=json.dumps({"message": "build a todo list"}),
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    r = conn.getresponse()
    run_id = r.getheader("X-Run-Id")
    results = {}

    def follow(port):
        results[port] = sse(port, "GET", f"/runs/{run_id}/events", token)[1]

    threads = [threading.Thread(target=follow, args=(port,)) for port in others]
    for t in threads:
        t.start()
    body = r.read().decode()
    conn.close()
    for t in threads:
        t.join(130)
    own = len(re.findall(r"^id:", body, re.M))
    for port in others:
        got = results.get(port, [])
        check(f"the live tail on :{port} of a run on :{first} reaches done with every event",
              got and got[-1][1] == "done" and len(got) == own, f"{len(got)} events, the run had {own}; last: {got[-1:]}")



if __name__ == "__main__":
    main()
