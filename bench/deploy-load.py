#!/usr/bin/env python3
"""deploy-load: N concurrent runs of the built-in demo agent with local preview deploys.

Starts `agentgate serve` on its embedded defaults (SQLite under a temporary data dir, the demo
agent, local git, local previews), sends N messages at once and follows every stream to its
`done`. For each stream it records the longest silence between two events and how the
deployment ended in the stream (healthy, failed, or "still in progress" when the stream gave up
waiting), and the time from `version_created` to `deployment_complete`. Prints one JSON line.

    bench/deploy-load.py --bin target/release/agentgate --runs 200 [--toml 'extra config']
"""
import argparse
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--toml", default="", help="extra config appended to the defaults")
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="deploy-load-")
    port = free_port()
    config = os.path.join(data_dir, "config.toml")
    with open(config, "w") as f:
        f.write(
            f'[server]\nbind = "127.0.0.1:{port}"\ndata_dir = "{data_dir}"\n'
            f'[limits]\ndaily_messages = 100000000\n[log]\nlevel = "warn"\n{args.toml}\n'
        )
    token = subprocess.run(
        [args.bin, "token", "--user", "bench", "--config", config],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    log = open(os.path.join(data_dir, "server.log"), "w")
    server = subprocess.Popen([args.bin, "serve", "--config", config], stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except Exception:
                time.sleep(0.2)
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
        for t in threads:
            t.join()
        wall = time.time() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    gaps = sorted(r[0] for r in results)
    latencies = sorted(r[2] for r in results if r[2] is not None)
    outcomes = {}
    for _, outcome, _ in results:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(json.dumps({
        "runs": args.runs,
        "wall_s": round(wall, 1),
        "outcomes": outcomes,
        "longest_silence_s": {"p50": percentile(gaps, 0.5), "p99": percentile(gaps, 0.99),
                              "max": round(gaps[-1], 2) if gaps else None},
        "version_to_healthy_s": {"p50": percentile(latencies, 0.5),
                                 "p99": percentile(latencies, 0.99)},
    }))


if __name__ == "__main__":
    main()
