#!/usr/bin/env python3
"""Redis instructions per gateway request, counted by callgrind: a figure the shared machine cannot disturb.

Starts the nginx upstream, a redis-server under `valgrind --tool=callgrind` and the gateway with every policy
on Redis (the harness's `redis` variant), all on 127.0.0.1. After a warm-up it zeroes callgrind's counters,
sends a fixed number of requests (h2load -n, 4 connections), dumps the counters and prints the instructions
Redis executed per request. Time-based figures on a noisy 2-core machine swing 2x between runs; this one
does not, so it is how changes to the admission scripts are compared. Everything it starts it stops.

    python3 bench/scripts/redis_cost.py --artifacts /tmp/bench-artifacts [--requests 2000] [--connections 4] [--leases]
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def h2load_n(port, body, headers, n, connections=4):
    cmd = ["h2load", "--h1", "-n", str(n), "-c", str(connections), "-m", "1", "-d", body, "-H", "content-type: application/json"]
    for name, value in headers:
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(f"http://127.0.0.1:{port}/v1/chat/completions")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return h.parse_h2load(result.stdout, result.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=4, help="concurrent clients; 1 = every script carries one call (no batching)")
    parser.add_argument("--leases", action="store_true", help="with leases (Gateway:Store:Leases): the user's and team's scopes on leases, "
                        "each call's run steps (admission, settlement) in the run-steps script")
    parser.add_argument("--redis-arg", action="append", default=[], help="extra redis-server arguments, e.g. --redis-arg=--hash-max-listpack-entries --redis-arg=0")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "h2load"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is required (Debian: apt-get install valgrind nghttp2-client)")

    out_dir = os.path.join(h.WORK, "callgrind")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    procs = []
    try:
        upstream_port = h.free_port()
        procs.append(h.start_upstream(upstream_port))
        redis_port = h.free_port()
        redis = h.Proc("redis-callgrind", ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/callgrind.out.%p",
                                           "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                           "--appendonly", "no", "--dir", h.WORK, *args.redis_arg])
        procs.append(redis)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                h.http("GET", f"http://127.0.0.1:{redis_port}/")  # any reply means it listens
                break
            except Exception as e:  # noqa: BLE001 — Redis answers HTTP with an error or a reset: listening
                if "Connection refused" not in str(e):
                    break
                time.sleep(0.5)
        port = h.free_port()
        config = h.gateway_config(upstream_port, policies=True, redis=f"127.0.0.1:{redis_port}")
        config["Gateway"]["Store"] = {"Timeout": "00:00:10"}  # Redis under valgrind is ~50x slower
        if args.leases:
            config["Gateway"]["Store"]["Leases"] = True
        gateway = h.start_gateway("redis-cost", args.artifacts, port, config)
        procs.append(gateway)
        body = os.path.join(h.WORK, "chat-request.json")
        shutil.copy(os.path.join(h.PAYLOADS, "chat-request.json"), body)
        headers = [("Authorization", f"Bearer {h.GATEWAY_KEY}"), ("X-Run-Id", h.RUN_ID)]
        h2load_n(port, body, headers, 300, args.connections)  # warm-up: scripts loaded, keys created

        vg_pid = redis.pid
        subprocess.run(["callgrind_control", "-z", str(vg_pid)], capture_output=True, timeout=60)
        done, ok, errors = h2load_n(port, body, headers, args.requests, args.connections)
        subprocess.run(["callgrind_control", "-d", "measured", str(vg_pid)], capture_output=True, timeout=60)
        time.sleep(1)
        dumps = [f for f in glob.glob(os.path.join(out_dir, "callgrind.out.*")) if "measured" in open(f, errors="replace").read(4096)]
        if not dumps:
            sys.exit("callgrind wrote no dump")
        text = open(dumps[-1], errors="replace").read()
        totals = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        instructions = int(totals.group(1))
        print(f"\nRedis executed {instructions / max(1, done) / 1000:.1f}k instructions per gateway request "
              f"({done} requests, {ok} 2xx, {errors} errors; reserve + settle scripts, idle cron included)")
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    main()
