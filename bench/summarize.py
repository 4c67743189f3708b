#!/usr/bin/env python3
"""Summarises bench/run.sh results (results.jsonl) as Markdown.

For each scenario and system: the median over rounds of each round's figure, with the spread
(min..max over rounds); for the relays, the added figure is computed per round against the
direct run of the same round, then summarised the same way.
"""
import json
import statistics
import sys
from collections import defaultdict

ORDER = ["direct", "nginx", "sqlite", "postgres"]


def fmt(values, unit=""):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.1f}{unit}"
    return f"{med:.1f}{unit} ({min(values):.1f}..{max(values):.1f})"


def get(row, path):
    for key in path.split("."):
        if row is None:
            return None
        row = row.get(key)
    return row


def slope_kib(hold):
    slope = hold.get("rss_per_stream_bytes")
    return f"{slope / 1024:.1f} KiB" if slope is not None else "n/a"


def steps_text(hold):
    return "; ".join(
        f"{st['streams']}: {st['ratio']}, {st['late_p99_ms']}, {st['rss_bytes'] / 1048576:.1f}"
        for st in hold["steps"])


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    by = defaultdict(dict)  # (scenario, system) -> round -> row
    for r in rows:
        by[(r["scenario"], r["system"])][r["round"]] = r
    out = []

    def relay_table(scenario, title, metrics):
        systems = [s for s in ORDER if (scenario, s) in by]
        if not systems:
            return
        rounds = len(by[(scenario, systems[0])])
        out.append(f"### {title} ({rounds} round(s); median of round values, (min..max))\n")
        head = ["system"] + [m[0] for m in metrics] + ["errors", "stalled"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        direct = by.get((scenario, "direct"), {})
        for s in systems:
            cells = [s]
            for _, key, added in metrics:
                vals, adds = [], []
                for rnd, row in by[(scenario, s)].items():
                    v = get(row, key)
                    vals.append(v)
                    d = get(direct.get(rnd), key)
                    if added and v is not None and d is not None:
                        adds.append(v - d)
                cell = fmt(vals)
                if added and s != "direct":
                    cell += f"; added {fmt(adds)}"
                cells.append(cell)
            cells.append(str(sum(r.get("errors", 0) for r in by[(scenario, s)].values())))
            cells.append(str(sum(r.get("stalled", 0) for r in by[(scenario, s)].values())))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")

    relay_table("ttfe", "Time to first event, one stream at a time (µs)", [
        ("p50 µs", "ttfe.p50_us", True), ("p99 µs", "ttfe.p99_us", True)])
    relay_table("latency", "Per-event latency, 50 streams × 200 events at 20 ms, 512 B pad (µs)", [
        ("p50 µs", "latency.p50_us", True), ("p99 µs", "latency.p99_us", True),
        ("p99.9 µs", "latency.p999_us", True), ("ttfe p50 µs", "ttfe.p50_us", True)])
    relay_table("firehose", "Firehose (CPU µs per event of the system under test)", [
        ("sut µs/event", "sut_cpu_us_per_event", False),
        ("postgres server µs/event", "aux_cpu_us_per_event", False),
        ("events/s", "events_per_s", False), ("latency p50 µs", "latency.p50_us", False)])
    cross = by.get(("cross", "postgres"), {})
    if cross:
        rows = list(cross.values())
        out.append(f"### Cross-gateway delivery: POST on gateway A, the run followed on gateway B, "
                   f"one PostgreSQL ({len(rows)} round(s); median of round values, (min..max))\n")
        out.append("| stream | p50 µs | p90 µs | p99 µs | max µs | events | errors | stalled |")
        out.append("|---|---|---|---|---|---|---|---|")
        quantiles = ("p50_us", "p90_us", "p99_us", "max_us")
        out.append("| same gateway (POST on A) | " + " | ".join(
            fmt([get(r, f"latency.{q}") for r in rows]) for q in quantiles)
            + f" | {sum(r['events'] for r in rows)} | {sum(r.get('post_errors', 0) for r in rows)}"
            f" | {sum(r['stalled'] - r['follow']['stalled'] for r in rows)} |")
        out.append("| cross gateway (followed on B) | " + " | ".join(
            fmt([get(r, f"follow.latency.{q}") for r in rows]) for q in quantiles)
            + f" | {sum(r['follow']['events'] for r in rows)} | {sum(r['follow']['errors'] for r in rows)}"
            f" | {sum(r['follow']['stalled'] for r in rows)} |")
        out.append("| added (cross − same, per round) | " + " | ".join(
            fmt([get(r, f"follow.latency.{q}") - get(r, f"latency.{q}") for r in rows])
            for q in quantiles) + " | | | |")
        untimed = sum(r.get("untimed_events", 0) for r in rows)
        out.append(f"\nEvents sent before the follow stream's head arrived (replayed, not timed): {untimed}\n")
    holds = [by[("hold", s)][1] for s in ORDER if ("hold", s) in by]
    if holds:
        out.append("### Idle streams ramp (heartbeats counted per step)\n")
        out.append("| system | streams held | RSS per stream (slope) | first failure | steps (streams: ratio, late p99 ms, RSS MiB) |")
        out.append("|---|---|---|---|---|")
        for h in holds:
            out.append(f"| {h['system']} | {h['held']} | {slope_kib(h)} | {h.get('first_failure') or ''} | {steps_text(h)} |")
        out.append("")
    tails = [by[("tail", s)][1] for s in ORDER if ("tail", s) in by]
    if tails:
        out.append("### Subscribers tailing live runs (one descriptor each on the gateway; heartbeats counted per step)\n")
        out.append("| system | runs | subscribers held | RSS per subscriber (slope) | run failures | first failure | steps (subscribers: ratio, late p99 ms, RSS MiB) |")
        out.append("|---|---|---|---|---|---|---|")
        for h in tails:
            failure = h.get("first_failure") or h.get("first_run_failure") or ""
            out.append(f"| {h['system']} | {h.get('tail_runs')} | {h['held']} | {slope_kib(h)} | "
                       f"{h.get('run_failures', 0)} | {failure} | {steps_text(h)} |")
        out.append("")
    for scenario in ("callgrind-paced", "callgrind", "callgrind-20runs"):
        cg = by.get((scenario, "inproc"), {}).get(1)
        if not cg:
            continue
        runs = cg.get("runs", 1)
        paced = f", one event every {cg['interval_us'] / 1000:g} ms" if cg.get("interval_us") else ""
        out.append(f"### Instructions per relayed event (callgrind, relay-inproc, {runs} run(s){paced})\n")
        out.append(f"- events relayed: {cg['events']}, total Ir {cg['instructions']:,}, "
                   f"fixed Ir (same runs with 0 running events) {cg['fixed_instructions']:,}")
        out.append(f"- total / events: {cg['per_event_total']:,} Ir; marginal (total − fixed) / events: "
                   f"{cg['per_event_marginal']:,} Ir\n")
    guard = by.get(("callgrind-guard", "inproc"), {}).get(1)
    if guard:
        verdict = "ok" if guard["ok"] else "**FAILED**"
        out.append(f"- regression guard (1 run): {guard['measured']:,} Ir/event against {guard['committed']:,} "
                   f"committed: {guard['change_pct']:+.1f} % (fails above +{guard['max_increase_pct']} %): {verdict}\n")
    files = by.get(("files", "files"), {}).get(1)
    if files:
        a, u = files["apply"], files["upload"]
        out.append("### Files\n")
        out.append(f"- apply {a['files']} files, {a['diff_bytes']:,} B diff: apply_patch_set "
                   f"{a['apply_patch_set_ms']} ms, git apply {a['git_apply_ms']} ms, ratio {a['ratio']}")
        out.append(f"- upload v1: {u['version1']}; v2 (one line changed): {u['version2_one_line']}\n")
        v = files.get("version")
        if v:
            out.append(f"- one-file diff to a {v['files']}-file app, diff to version_created "
                       f"({v['diffs']} each, interleaved): whole tree (before) {v['whole_tree_before']}, "
                       f"touched files (after) {v['touched_files_after']}\n")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
