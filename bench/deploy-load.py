#!/usr/bin/env python3
"""deploy-load: N concurrent runs of the built-in demo agent with local preview deploys.

Starts `agentgate serve` on its embedded defaults (SQLite under a temporary data dir, the demo
agent, local git, local previews), sends N messages at once and follows every stream to its
`done`. For each stream it records the longest silence between two events and how the
deployment ended in the stream (healthy, failed, or "still in progress" when the stream gave up
waiting), and the time from `version_created` to `deployment_complete`. After the streams it
reads the database: every deployment's final status, and how many job steps were retried.
Prints one JSON line.

    bench/deploy-load.py --bin target/release/agentgate --runs 200 [--toml 'extra config']
        [--postgres postgres://user:pw@127.0.0.1/postgres]  # a fresh database on that server
        [--block-publish 1.5]   # previews cannot be written for that long: deploys fail, retry
        [--restart-after 3]     # SIGTERM the gateway that long into the runs, start it again
"""
import argparse
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid

PROMPTS = ["build a todo list", "make a counter app", "build a notes app", "make a timer app"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def follow(base, token, prompt, results, lock):
    started = time.time()
    last = started
    max_gap = 0.0
    outcome = "no deployment"
    created = complete = None
    request = urllib.request.Request(
        base + "/message",
        data=json.dumps({"message": prompt}).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=900) as response:
            for raw in response:
                if not raw.startswith(b"data:"):
                    continue
                now = time.time()
                max_gap = max(max_gap, now - last)
                last = now
                message = json.loads(raw[5:]).get("message") or {}
                metadata = message.get("metadata") or {}
                kind = metadata.get("type") or metadata.get("notice")
                if kind == "version_created":
                    created = now
                elif kind == "deployment_complete":
                    outcome, complete = "healthy", now
                elif kind == "deployment_failed":
                    outcome = "failed"
                elif metadata.get("stillRunning"):
                    outcome = "still in progress"
    except Exception as e:  # a broken stream is a result, not a crash of the tool
        outcome = f"error: {e}"
    latency = complete - created if created and complete else None
    with lock:
        results.append((max_gap, outcome, latency))


def percentile(values, p):
    if not values:
        return None
    return round(values[min(len(values) - 1, int(len(values) * p))], 2)


def query(args, data_dir, database, sql):
    """Rows of `sql` from the gateway's database (SQLite file or PostgreSQL)."""
    if database:
        out = subprocess.run(["psql", database, "-At", "-F", "|", "-c", sql],
                             check=True, capture_output=True, text=True).stdout
        return [tuple(line.split("|")) for line in out.splitlines() if line]
    with sqlite3.connect(os.path.join(data_dir, "agentgate.db")) as db:
        return [tuple(str(v) for v in row) for row in db.execute(sql)]


def retried_steps(base):
    """job_steps{kind="deploy",outcome="retry"} from /metrics."""
    try:
        text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    except Exception:
        return None
    total = 0
    for line in text.splitlines():
        if line.startswith("agentgate_job_steps_total") and 'outcome="retry"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def start_server(args, config, data_dir, port, name):
    log = open(os.path.join(data_dir, name), "w")
    server = subprocess.Popen([args.bin, "serve", "--config", config], stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            break
        except Exception:
            time.sleep(0.2)
    return server


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--toml", default="", help="extra config appended to the defaults")
    parser.add_argument("--postgres", default="", help="a PostgreSQL server to create a fresh database on")
    parser.add_argument("--block-publish", type=float, default=0.0)
    parser.add_argument("--restart-after", type=float, default=0.0)
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="deploy-load-")
    port = free_port()
    database = ""
    if args.postgres:
        name = "deploy_load_" + uuid.uuid4().hex[:8]
        subprocess.run(["psql", args.postgres, "-qc", f"CREATE DATABASE {name}"], check=True)
        database = re.sub(r"/[^/]*$", "/" + name, args.postgres)
    config = os.path.join(data_dir, "config.toml")
    with open(config, "w") as f:
        f.write(
            f'[server]\nbind = "127.0.0.1:{port}"\ndata_dir = "{data_dir}"\n'
            f'[database]\nurl = "{database}"\nmax_connections = 20\n'
            f'[limits]\ndaily_messages = 100000000\n[log]\nlevel = "warn"\n{args.toml}\n'
        )
    token = subprocess.run(
        [args.bin, "token", "--user", "bench", "--config", config],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    server = start_server(args, config, data_dir, port, "server.log")
    base = f"http://127.0.0.1:{port}"
    previews = os.path.join(data_dir, "previews")
    restarted = None
    try:
        if args.block_publish:
            # A file where the previews directory was: every publish fails until it is back.
            shutil.rmtree(previews)
            open(previews, "w").close()
            def unblock():
                time.sleep(args.block_publish)
                os.remove(previews)
                os.mkdir(previews)
            threading.Thread(target=unblock).start()
        results, lock = [], threading.Lock()
        threads = [
            threading.Thread(
                target=follow,
                args=(base, token, f"{PROMPTS[i % len(PROMPTS)]} number {i}", results, lock),
            )
            for i in range(args.runs)
        ]
        started = time.time()
        for t in threads:
            t.start()
        if args.restart_after:
            time.sleep(args.restart_after)
            server.terminate()
            server.wait(timeout=120)
            restarted = time.time() - started
            server = start_server(args, config, data_dir, port, "server-2.log")
        for t in threads:
            t.join()
        wall = time.time() - started
        # Every deployment ends; after a restart the new process finishes what the old one left.
        statuses = {}
        for _ in range(600):
            statuses = dict(query(args, data_dir, database,
                                  "SELECT status, COUNT(*) FROM deployments GROUP BY status"))
            if not set(statuses) & {"queued", "building", "deploying"}:
                break
            time.sleep(0.5)
        settled = time.time() - started
        retries = retried_steps(base)
        try:
            jobs = dict(query(args, data_dir, database,
                              "SELECT status, COUNT(*) FROM jobs GROUP BY status"))
            max_attempts = query(args, data_dir, database, "SELECT MAX(attempts) FROM jobs")[0][0]
        except Exception:  # a gateway from before the job queue
            jobs, max_attempts = None, None
    finally:
        server.terminate()
        server.wait(timeout=60)
        if database:
            subprocess.run(["psql", args.postgres, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])
    gaps = sorted(r[0] for r in results)
    latencies = sorted(r[2] for r in results if r[2] is not None)
    outcomes = {}
    for _, outcome, _ in results:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(json.dumps({
        "runs": args.runs,
        "database": "postgres" if database else "sqlite",
        "wall_s": round(wall, 1),
        "outcomes": outcomes,
        "longest_silence_s": {"p50": percentile(gaps, 0.5), "p99": percentile(gaps, 0.99),
                              "max": round(gaps[-1], 2) if gaps else None},
        "version_to_healthy_s": {"p50": percentile(latencies, 0.5),
                                 "p99": percentile(latencies, 0.99),
                                 "max": round(latencies[-1], 2) if latencies else None},
        "restarted_at_s": restarted and round(restarted, 1),
        "all_settled_s": round(settled, 1),
        "deployments": statuses,
        "jobs": jobs,
        "deploy_steps_retried": retries,
        "max_job_attempts_left": max_attempts,
    }))


if __name__ == "__main__":
    main()
