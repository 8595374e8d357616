#!/usr/bin/env python3
"""Profiles one gateway variant under saturation (started by bench/profile.sh; see bench/README.md).

Starts the nginx upstream, Redis when the variant needs it and the gateway (or bare YARP) on 127.0.0.1, drives it
with wrk for a bounded time, and reports:
  - CPU µs per request of the target (and of Redis), as the harness measures it;
  - with --perf, `perf record` of the target during the load (the .NET JIT writes /tmp/perf-PID.map so managed
    frames resolve), summarised as the top symbols by self and by inclusive time;
  - with Redis, INFO commandstats over the load: which commands (also those called from Lua) took Redis's time.
Everything it starts it stops.
"""

import argparse
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def redis_cmd(port, *args):
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload.encode())
        data = b""
        s.settimeout(1)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                if data.startswith(b"$") and data.endswith(b"\r\n") and len(data) > 4:
                    header, _, rest = data.partition(b"\r\n")
                    if len(rest) >= int(header[1:]) + 2:
                        break
                if data.startswith(b"+"):
                    break
        except socket.timeout:
            pass
    return data.decode(errors="replace")


def commandstats(port):
    stats = {}
    for m in re.finditer(r"cmdstat_(\w+):calls=(\d+),usec=(\d+)", redis_cmd(port, "INFO", "commandstats")):
        stats[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return stats


def context_switches(pid):
    """Voluntary + involuntary context switches of every thread of pid so far: each is a thread going to sleep or
    being preempted, so their count per request measures hand-offs between threads (a count, not a time: the shared
    machine does not disturb it much)."""
    total = 0
    for status in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(status) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass  # a thread that ended meanwhile
    return total


def allocated_bytes(port):
    """The gateway's GC allocated bytes so far, from its /metrics (System.Runtime meter); None for bare YARP."""
    try:
        _, _, body = h.http("GET", f"http://127.0.0.1:{port}/metrics", timeout=5)
    except OSError:
        return None
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("dotnet_gc_heap_total_allocated_bytes"):
            return float(line.rsplit(" ", 1)[1])
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", default="policies", choices=["yarp", "gateway", "policies", "redis", "cache"])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--perf", action="store_true")
    parser.add_argument("--leases", action="store_true", help="redis variant: with leases (Gateway:Store:Leases)")
    parser.add_argument("--replica", action="store_true",
                        help="redis variant: Redis has a replica (its CPU is not counted, but it runs on the same cores)")
    parser.add_argument("--wait", action="store_true",
                        help="with --replica: the gateway waits for it after every script (Gateway:Store:WaitForReplicas 1)")
    parser.add_argument("--connections", type=int, default=h.SAT_CONNS, help="wrk connections (default: the harness's saturation setting)")
    parser.add_argument("--runs", type=int, default=0, help="draw X-Run-Id at random from this many runs (0: the one bench run)")
    parser.add_argument("--delay-ms", type=int, default=0, help="pause per connection between requests: with --connections, a rough fixed rate (10 connections × 5 ms ≈ 2,000 req/s)")
    parser.add_argument("--tokenizer", choices=["estimate", "o200k_base", "cl100k_base"],
                        help="the bench models' Tokenizer (default: none set, i.e. estimate by their names)")
    parser.add_argument("--context-window", type=int,
                        help="the bench models' ContextWindow; 256 makes every 0.9 KB request be counted by the tokenizer "
                             "(its byte bound, ~830, is over it; its count, ~190, within)")
    args = parser.parse_args()
    if args.seconds > 60:
        sys.exit("--seconds is capped at 60: every load run is bounded")

    procs = []
    try:
        upstream_port = h.free_port()
        procs.append(h.start_upstream(upstream_port))
        port = h.free_port()
        redis_port = None
        if args.variant == "yarp":
            target = h.start_yarp(args.artifacts, port, upstream_port)
        else:
            redis = None
            if args.variant == "redis":
                redis_port = h.free_port()
                procs.append(h.start_redis(redis_port))
                redis = f"127.0.0.1:{redis_port}"
                if args.replica:
                    procs.append(h.start_redis(h.free_port(), "redis-replica", ["--replicaof", "127.0.0.1", str(redis_port)]))
                    deadline = time.time() + 20
                    while redis_cmd(redis_port, "WAIT", "1", "1000").strip() != ":1":
                        if time.time() > deadline:
                            sys.exit("the replica did not follow the primary within 20 s")
            config = h.gateway_config(upstream_port, policies=args.variant not in ("gateway", "cache"), redis=redis,
                                      cache=args.variant == "cache", tokenizer=args.tokenizer,
                                      context_window=args.context_window, leases=args.leases)
            if args.replica and args.wait:
                config["Gateway"].setdefault("Store", {})["WaitForReplicas"] = 1
            if args.perf:
                # Managed frames resolve through /tmp/perf-PID.map, which W^X double mapping would hide.
                os.environ.update(DOTNET_PerfMapEnabled="1", DOTNET_EnableWriteXorExecute="0")
            target = h.start_gateway(f"profile-{args.variant}", args.artifacts, port, config)
        procs.append(target)
        body = os.path.join(h.WORK, "chat-request.json")
        shutil.copy(os.path.join(h.PAYLOADS, "chat-request.json"), body)
        headers = [("Authorization", f"Bearer {h.GATEWAY_KEY}"), ("Content-Type", "application/json"), ("X-Run-Id", h.RUN_ID)]
        h.log(f"warm-up {args.variant}: saturated until its JIT is done")
        warm = h.Target(args.variant, port, headers, ("/v1/chat/completions", body), None, [target], target)
        h.log(f"warmed for {h.warm_until_jitted(warm, 45)} s")

        before = commandstats(redis_port) if redis_port else {}
        perf = None
        perf_data = os.path.join(h.WORK, f"perf-{args.variant}.data")
        if args.perf:
            perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p", str(target.pid), "-o", perf_data,
                                     "--", "sleep", str(args.seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Instructions retired per request: far less disturbed by other work on a shared machine than CPU time.
        redis_proc = next((p for p in procs if p.name == "redis"), None)
        counted = {"target": target.pid, **({"redis": redis_proc.pid} if redis_proc else {})}
        stats = {name: subprocess.Popen(["perf", "stat", "-x", ",", "-e", "instructions", "-p", str(pid), "--",
                                         "sleep", str(args.seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for name, pid in counted.items()} if shutil.which("perf") and not perf else {}
        allocated_before = allocated_bytes(port) if args.variant != "yarp" else None
        switches_before = context_switches(target.pid)
        with h.CpuMeter(target, procs, redis_proc) as m:
            r = h.wrk(port, "/v1/chat/completions", body, headers, args.seconds, conns=args.connections,
                      delay_ms=args.delay_ms, runs=args.runs)
        switches_after = context_switches(target.pid)
        allocated_after = allocated_bytes(port) if allocated_before is not None else None
        instructions = {}
        for name, proc in stats.items():
            _, err = proc.communicate(timeout=args.seconds + 30)
            found = re.search(r"^(\d+),,instructions", err, re.M)
            if found:
                instructions[name] = int(found.group(1))
        if perf:
            perf.wait(timeout=args.seconds + 60)
        after = commandstats(redis_port) if redis_port else {}

        n = r["requests"]
        print(f"\n{args.variant}: {r['rps']:.0f} req/s saturated, {r['errors']} errors, "
              f"CPU {m.per_request_us(n):.1f} µs/req" +
              (f", Redis {m.per_request_us(n, 'extra'):.1f} µs/req" if redis_port else "") +
              "".join(f"; {name} {count / n / 1000:.1f}k instructions/req" for name, count in instructions.items()) +
              (f"; {(allocated_after - allocated_before) / n:.0f} bytes allocated/req"
               if allocated_before is not None and allocated_after is not None else "") +
              f"; {(switches_after - switches_before) / n:.2f} context switches/req")
        if redis_port:
            print("\nRedis commandstats during the load (per gateway request):")
            print("| command | calls/req | µs/req | µs/call |\n| --- | ---: | ---: | ---: |")
            rows = []
            for name, (calls, usec) in after.items():
                c0, u0 = before.get(name, (0, 0))
                if calls - c0 > 0:
                    rows.append((usec - u0, calls - c0, name))
            for usec, calls, name in sorted(rows, reverse=True):
                print(f"| {name} | {calls / n:.2f} | {usec / n:.2f} | {usec / calls:.2f} |")
        if perf:
            for title, extra in (("self", ["--no-children"]), ("inclusive", ["--children"])):
                out = subprocess.run(["perf", "report", "-i", perf_data, "--stdio", "--no-demangle", "-g", "none",
                                      "--percent-limit", "0.7", *extra], capture_output=True, text=True).stdout
                lines = [line for line in out.splitlines() if line.strip() and not line.startswith("#")]
                print(f"\nperf, top symbols by {title} time:")
                print("\n".join(lines[:60]))
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    main()
