#!/usr/bin/env python3
"""LlmGateway soak (bench/soak.sh): mixed load on 127.0.0.1 for a bounded time, then checks.

Starts redis-server (AOF on, so a restart keeps the budgets), LlmGateway.MockLlm and the gateway (Redis store) on free
loopback ports; runs worker threads sending JSON calls, streams, client-cut streams, 429 and 5xx storms (MockLlm's
X-Mock-* fault headers, on a model of their own so their circuit is not the other calls'), and tool calls (repeated
Idempotency-Keys); restarts redis-server half-way. Samples the gateway's RSS (/proc) and GC heap (its /metrics) every
5 s. Then checks:
  - memory: RSS and GC heap over the last window grow < 10 % over the window after the first minute;
  - no reservation left behind: the user's and every run's reserved_usd = 0 and in_flight = 0 once the load drained;
  - cost: llm_gateway_cost_usd_total = the cost the clients were told. A JSON call is told by its X-Gateway-Cost-Usd
    header. A stream has no such header (CONTRACT.md), so every stream, cut stream and storm call carries an X-Run-Id
    of its own and its cost is its run's spent_usd from GET /admin/runs/{id} (what the budget store charged it).
Python standard library only.
"""
import argparse
import collections
import datetime
import decimal
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

D = decimal.Decimal
KEY = "sk-soak-" + os.urandom(8).hex()
ADMIN = "adm-soak-" + os.urandom(8).hex()
USER = "soak"
SAMPLE_SECONDS = 5
WORKERS = 8
WEIGHTS = [("json", 45), ("stream", 20), ("cut", 10), ("storm429", 7), ("storm5xx", 8), ("tool", 10)]
WORDS = "the gateway keeps every budget while streams are cut and providers throttle or fail now and then".split()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child in its own process group, its output in a file; stopped by its group id only."""

    def __init__(self, name, argv, log_dir, env=None):
        self.name = name
        self.log = os.path.join(log_dir, name + ".log")
        self.out = open(self.log, "ab")
        self.p = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def stop(self, sig=signal.SIGTERM, wait=10):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
                self.p.wait(wait)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.out.close()

    def tail(self, n=30):
        with open(self.log, "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")


STARTED = []


def start(name, argv, log_dir, env=None):
    proc = Proc(name, argv, log_dir, env)
    STARTED.append(proc)
    return proc


def wait_http(port, path, proc, seconds=60, headers=None):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.p.poll() is not None:
            raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path, headers=headers or {})
            r = c.getresponse()
            r.read()
            c.close()
            if r.status < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not answer {path}:\n{proc.tail()}")


def start_redis(port, data_dir, log_dir):
    proc = start("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", data_dir, "--save", "",
                           "--appendonly", "yes", "--appendfsync", "everysec"], log_dir)
    for _ in range(100):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() == "PONG":
            return proc
        time.sleep(0.1)
    raise RuntimeError("redis-server did not start:\n" + proc.tail())


def gateway_config(redis_port, mock_port):
    return {
        "Gateway": {
            "Redis": f"127.0.0.1:{redis_port}",
            "Store": {"KeyPrefix": "soak:", "Timeout": "00:00:00.500", "ReservationTtl": "00:00:30"},
            "Providers": {"mock": {"BaseUrl": f"http://127.0.0.1:{mock_port}/v1"}},
            "Models": {
                "mock-small": {"Provider": "mock", "InputUsdPerMTok": 1.0, "OutputUsdPerMTok": 2.0, "ContextWindow": 32000},
                "mock-storm": {"Provider": "mock", "UpstreamModel": "mock-small", "InputUsdPerMTok": 3.0, "OutputUsdPerMTok": 5.0, "ContextWindow": 32000},
            },
            "Keys": [{"Key": KEY, "User": USER, "Tools": {"mock": [{"Allow": "* /**"}]}}],
            "Users": {USER: {"Budget": {"Usd": 100000, "Period": "Total"}}},
            "Resilience": {"MaxAttempts": 3, "MaxRetryWait": "00:00:01",
                           # SOAK_MAX_RETRIES_PER_RUN=0 turns the per-run retry counts off (the default is the gateway's, 10).
                           **({"MaxRetriesPerRun": int(os.environ["SOAK_MAX_RETRIES_PER_RUN"])} if os.environ.get("SOAK_MAX_RETRIES_PER_RUN") else {})},
            "Tools": {"mock": {"BaseUrl": f"http://127.0.0.1:{mock_port}"}},
        }
    }


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.status = collections.Counter()
        self.json_cost = D(0)
        self.json_told = 0
        self.runs = []
        self.replays = 0
        self.replay_misses = 0
        self.errors = collections.Counter()
        self.storm_told = {}
        self.request_of = {}

    def add(self, kind, status):
        with self.lock:
            self.status[(kind, status)] += 1


def body(stream=False, max_tokens=40):
    words = " ".join(random.choice(WORDS) for _ in range(random.randint(5, 60)))
    b = {"model": "mock-small", "messages": [{"role": "user", "content": words}], "max_tokens": max_tokens}
    if stream:
        b["stream"] = True
    return b


def worker(port, stop_at, tally, wid):
    conn = None
    n = 0
    while time.time() < stop_at:
        n += 1
        kind = random.choices([k for k, _ in WEIGHTS], [w for _, w in WEIGHTS])[0]
        headers = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
        run_id = None
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if kind == "json":
                conn.request("POST", "/v1/chat/completions", json.dumps(body()), headers)
                r = conn.getresponse()
                r.read()
                cost = r.getheader("X-Gateway-Cost-Usd")
                with tally.lock:
                    if cost is not None:
                        tally.json_cost += D(cost)
                        tally.json_told += 1
                tally.add(kind, r.status)
            elif kind in ("stream", "cut"):
                run_id = f"soak-{wid}-{n}-{kind}"
                headers["X-Run-Id"] = run_id
                if kind == "cut":
                    headers["X-Mock-Chunk-Delay-Ms"] = "20"
                with tally.lock:
                    tally.runs.append(run_id)
                conn.request("POST", "/v1/chat/completions", json.dumps(body(stream=True, max_tokens=60)), headers)
                r = conn.getresponse()
                with tally.lock:
                    tally.request_of[r.getheader("X-Request-Id")] = run_id
                if kind == "cut" and r.status == 200:
                    events = 0
                    while events < 3:
                        line = r.fp.readline()
                        if not line:
                            break
                        if line.startswith(b"data:"):
                            events += 1
                    # The client goes away mid-stream: close the socket under the response.
                    conn.sock.shutdown(socket.SHUT_RDWR)
                    conn.close()
                    conn = None
                else:
                    r.read()
                tally.add(kind, r.status)
            elif kind in ("storm429", "storm5xx"):
                run_id = f"soak-{wid}-{n}-{kind}"
                headers["X-Run-Id"] = run_id
                b = body()
                b["model"] = "mock-storm"
                if kind == "storm429":
                    headers["X-Mock-Status"] = "429"
                    headers["X-Mock-Retry-After-Ms"] = "30"
                    headers["X-Mock-Fail-Times"] = str(random.randint(1, 4))
                else:
                    headers["X-Mock-Status"] = random.choice(["500", "502", "503"])
                    headers["X-Mock-Fail-Times"] = str(random.randint(1, 4))
                headers["X-Mock-Scenario"] = run_id
                with tally.lock:
                    tally.runs.append(run_id)
                conn.request("POST", "/v1/chat/completions", json.dumps(b), headers)
                r = conn.getresponse()
                r.read()
                with tally.lock:
                    tally.request_of[r.getheader("X-Request-Id")] = run_id
                    tally.storm_told[run_id] = (r.status, r.getheader("X-Gateway-Cost-Usd"), r.getheader("X-Gateway-Attempts"), r.getheader("X-Gateway-Model"))
                tally.add(kind, r.status)
            else:
                if random.random() < 0.5:
                    conn.request("GET", "/tools/mock/v1/models", headers={"Authorization": "Bearer " + KEY})
                    r = conn.getresponse()
                    r.read()
                    tally.add("tool-get", r.status)
                else:
                    key = f"soak-{wid}-{n}"
                    headers["Idempotency-Key"] = key
                    payload = json.dumps({"model": "mock-small", "input": "tool call " + key})
                    statuses = []
                    for attempt in range(2):
                        conn.request("POST", "/tools/mock/v1/embeddings", payload, headers)
                        r = conn.getresponse()
                        r.read()
                        statuses.append(r.status)
                        if attempt == 1 and r.status == 200 and statuses[0] == 200:
                            with tally.lock:
                                if r.getheader("Idempotent-Replayed") == "true":
                                    tally.replays += 1
                                else:
                                    tally.replay_misses += 1
                    tally.add("tool-post", statuses[0])
        except (OSError, http.client.HTTPException) as e:
            with tally.lock:
                tally.errors[f"{kind}: {type(e).__name__}"] += 1
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.05)
    if conn is not None:
        conn.close()


def get_json(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers={"Authorization": "Bearer " + ADMIN})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, (json.loads(data) if data else None)


def scrape(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    return text


def metric_sum(text, name):
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def gateway_pid(proc):
    return proc.p.pid  # exec'd dotnet: the group leader is the gateway itself


def cpu_busy():
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--minutes", type=int, default=2)
    ap.add_argument("--out")
    a = ap.parse_args()
    seconds = max(60, min(600, a.minutes * 60))

    work = tempfile.mkdtemp(prefix="llmgw-soak-")
    redis_dir = os.path.join(work, "redis")
    os.makedirs(redis_dir)
    redis_port, mock_port, gw_port = free_port(), free_port(), free_port()
    cfg_path = os.path.join(work, "gateway.json")
    with open(cfg_path, "w") as f:
        json.dump(gateway_config(redis_port, mock_port), f, indent=2)

    def cleanup(*_):
        for proc in reversed(STARTED):
            proc.stop()
        STARTED.clear()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        redis = start_redis(redis_port, redis_dir, work)
        mock = start("mockllm", ["dotnet", os.path.join(a.artifacts, "bin/LlmGateway.MockLlm/release/LlmGateway.MockLlm.dll"),
                                 "--urls", f"http://127.0.0.1:{mock_port}"], work)
        wait_http(mock_port, "/v1/models", mock)
        env = dict(os.environ, Gateway__AdminKey=ADMIN, Logging__LogLevel__Default="Warning", Logging__LogLevel__LlmGateway="Warning")
        gw = start("gateway", ["dotnet", os.path.join(a.artifacts, "bin/LlmGateway/release/LlmGateway.dll"),
                               "--urls", f"http://127.0.0.1:{gw_port}", "--config", cfg_path], work, env)
        wait_http(gw_port, "/readyz", gw)
        pid = gateway_pid(gw)

        tally = Tally()
        started = time.time()
        stop_at = started + seconds
        threads = [threading.Thread(target=worker, args=(gw_port, stop_at, tally, i), daemon=True) for i in range(WORKERS)]
        for t in threads:
            t.start()

        samples = []
        restart = {"at": started + seconds / 2, "done": False}
        busy0, total0 = cpu_busy()
        next_sample = started
        while time.time() < stop_at:
            now = time.time()
            if not restart["done"] and now >= restart["at"]:
                t0 = time.time()
                subprocess.run(["redis-cli", "-p", str(redis_port), "shutdown"], capture_output=True)
                redis.p.wait(10)
                STARTED.remove(redis)
                redis.stop()
                time.sleep(2)
                redis = start_redis(redis_port, redis_dir, work)
                restart.update(done=True, offset=t0 - started, outage=time.time() - t0)
            if now >= next_sample:
                next_sample += SAMPLE_SECONDS
                try:
                    text = scrape(gw_port)
                    heap = metric_sum(text, "dotnet_gc_last_collection_heap_size_bytes")
                    old_heap = metric_sum("\n".join(l for l in text.splitlines() if "gen0" not in l and "gen1" not in l), "dotnet_gc_last_collection_heap_size_bytes")
                except OSError:
                    heap = old_heap = None
                busy, total = cpu_busy()
                load = (busy - busy0) / max(1, total - total0) * os.cpu_count()
                busy0, total0 = busy, total
                samples.append((now - started, rss_mb(pid), heap / 2**20 if heap else None, load, os.getloadavg()[0], old_heap / 2**20 if old_heap else None))
            time.sleep(0.2)
        for t in threads:
            t.join(60)
        load_end = time.time()

        # Drain: every reservation settled, released or expired (ReservationTtl 30 s covers calls cut by the restart).
        drained_after = None
        user = None
        while time.time() < load_end + 45:
            status, user = get_json(gw_port, f"/admin/users/{USER}")
            if status == 200 and D(str(user["reserved_usd"])) == 0 and user["in_flight"] == 0:
                drained_after = time.time() - load_end
                break
            time.sleep(1)

        run_cost = D(0)
        run_reserved = []
        runs_seen = 0
        by_kind = collections.defaultdict(D)
        missing = collections.Counter()
        mismatches = []
        # Every run the soak created, read over keep-alive connections from a few threads (tens of thousands of runs).
        print(f"reading {len(tally.runs)} runs from the admin API", file=sys.stderr, flush=True)
        answers = {}

        def read_runs(ids):
            c = http.client.HTTPConnection("127.0.0.1", gw_port, timeout=30)
            for rid in ids:
                c.request("GET", f"/admin/runs/{rid}", headers={"Authorization": "Bearer " + ADMIN})
                r = c.getresponse()
                data = r.read()
                answers[rid] = (r.status, json.loads(data) if r.status == 200 else None)
            c.close()

        readers = [threading.Thread(target=read_runs, args=(tally.runs[i::8],)) for i in range(8)]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        for run_id in tally.runs:
            status, run = answers[run_id]
            kind = run_id.rsplit("-", 1)[1]
            if status == 404:
                missing[kind] += 1
                continue  # refused before admission (e.g. store unavailable during the restart): never charged
            runs_seen += 1
            if run_id in tally.storm_told:
                told_storm = tally.storm_told[run_id]
                if D(told_storm[1] or "0") != D(str(run["spent_usd"])):
                    mismatches.append((run_id, told_storm, run["spent_usd"], run["calls"]))
            run_cost += D(str(run["spent_usd"]))
            by_kind[kind] += D(str(run["spent_usd"]))
            if D(str(run["reserved_usd"])) != 0 or run["in_flight"] != 0:
                run_reserved.append(run_id)

        # What the gateway logged about settlements that failed (EventId 3001, SettleFailed): the call's cost, which the
        # budget store never charged (its hold expires after ReservationTtl instead).
        settle_failed = 0
        store_unavailable = 0
        lost = D(0)
        lost_runs = D(0)
        unsettled_runs = set()
        with open(gw.log, errors="replace") as f:
            for line in f:
                if not line.startswith("{"):
                    continue
                record = json.loads(line)
                if record.get("EventId") == 3000:
                    store_unavailable += 1
                if record.get("EventId") == 3001:
                    settle_failed += 1
                    state = record.get("State", {})
                    amount = D(str(state.get("CostUsd", "0")))
                    lost += amount
                    if state.get("RequestId") in tally.request_of:
                        lost_runs += amount
                        unsettled_runs.add(tally.request_of[state["RequestId"]])
        text = scrape(gw_port)
        metrics_cost = metric_sum(text, "llm_gateway_cost_usd_total") or 0.0
        metrics_by_model = {m: sum(float(v) for v in re.findall(r'^llm_gateway_cost_usd_total\{[^}]*model="' + m + r'"[^}]*\} (\S+)$', text, re.M))
                            for m in ("mock-small", "mock-storm")}
        # A stream's cost as the gateway told it: its run's spend, or, when its settlement failed, the cost it logged.
        told = tally.json_cost + run_cost + lost_runs
        budget_spent = D(str(user["spent_usd"])) if user else None

        # Memory: the window after the first minute against the last window of the run.
        warm = min(60, seconds / 2)
        window = min(60, (seconds - warm) / 2)
        base = [s for s in samples if warm <= s[0] < warm + window]
        last = [s for s in samples if s[0] >= seconds - window]

        def growth(i):
            b = statistics.median(s[i] for s in base if s[i] is not None)
            e = statistics.median(s[i] for s in last if s[i] is not None)
            return b, e, (e - b) / b

        rss = growth(1)
        heap = growth(2)
        old = growth(5)
        checks = [
            ("RSS growth after the first minute < 10 %", rss[2] < 0.10, f"{rss[0]:.1f} MB -> {rss[1]:.1f} MB ({rss[2]:+.1%})"),
            # The long-lived heap is where a leak accumulates; the whole heap after the last GC also holds whatever gen0/gen1
            # kept at that moment, which swings by tens of percent from one GC to the next on a heap of a few MB.
            ("GC heap (gen2+LOH+POH after the last GC) growth after the first minute < 10 %", old[2] < 0.10, f"{old[0]:.1f} MB -> {old[1]:.1f} MB ({old[2]:+.1%});"
             f" whole heap after the last GC {heap[0]:.1f} MB -> {heap[1]:.1f} MB ({heap[2]:+.1%}), for information"),
            ("no reservation left behind (user)", drained_after is not None,
             f"reserved_usd 0 and in_flight 0 {drained_after:.1f} s after the load stopped" if drained_after is not None else f"still {user}"),
            ("no reservation left behind (runs)", not run_reserved, f"{runs_seen} runs read, {len(run_reserved)} with a reservation {run_reserved[:5]}"),
            ("metrics cost = cost told to clients", abs(D(repr(metrics_cost)) - told) <= D("1e-9") * max(1, told),
             f"llm_gateway_cost_usd_total {metrics_cost:.9f} vs {told:.9f} (JSON headers {tally.json_cost:.9f} over {tally.json_told} calls + run spend {run_cost:.9f} over {runs_seen} runs"
             f" + {lost_runs:.9f} logged for streams whose settlement failed)"),
            ("budget store spend = metrics cost - failed settlements", budget_spent is not None and abs(budget_spent + lost - D(repr(metrics_cost))) <= D("1e-9") * max(1, told),
             f"user spent_usd {budget_spent} + {lost:.9f} in {settle_failed} failed settlements (logged SettleFailed) vs {metrics_cost:.9f}"),
            ("storm calls: X-Gateway-Cost-Usd = their run's spend", not [m for m in mismatches if m[0] not in unsettled_runs],
             f"{len(tally.storm_told)} calls, {len([m for m in mismatches if m[0] not in unsettled_runs])} differ "
             f"{[m for m in mismatches if m[0] not in unsettled_runs][:5]}; {len([m for m in mismatches if m[0] in unsettled_runs])} more differ because their settlement failed (logged)"),
            ("repeated Idempotency-Key replayed", tally.replay_misses == 0, f"{tally.replays} replayed, {tally.replay_misses} not"),
        ]

        rev = subprocess.run(["git", "-C", a.repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", a.repo, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        lines = [
            f"# Soak, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, commit `{rev}`{' (+ uncommitted changes)' if dirty else ''}",
            "",
            f"`bench/soak.sh --minutes {a.minutes}`: {seconds} s of load from {WORKERS} client threads on 127.0.0.1; gateway (Release, Redis store "
            f"on a redis-server with AOF, restarted at {restart.get('offset', 0):.0f} s, {restart.get('outage', 0):.1f} s down), LlmGateway.MockLlm upstream."
            + (f" Resilience:MaxRetriesPerRun = {os.environ['SOAK_MAX_RETRIES_PER_RUN']} (SOAK_MAX_RETRIES_PER_RUN)." if os.environ.get("SOAK_MAX_RETRIES_PER_RUN") else ""),
            f"Machine: {os.cpu_count()} cores; other helpers' builds and tests ran meanwhile: machine CPU busy (cores, all processes, "
            f"soak included) median {statistics.median(s[3] for s in samples):.2f}, max {max(s[3] for s in samples):.2f}; "
            f"load average median {statistics.median(s[4] for s in samples):.1f}.",
            "",
            "## Checks",
            "",
            "| check | result | figures |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {name} | {'PASS' if ok else 'FAIL'} | {detail} |" for name, ok, detail in checks]
        total_calls = sum(tally.status.values())
        lines += ["", f"## Calls ({total_calls}, {total_calls / seconds:.0f}/s)", "", "| kind | status | calls |", "| --- | ---: | ---: |"]
        lines += [f"| {k} | {s} | {c} |" for (k, s), c in sorted(tally.status.items())]
        if tally.errors:
            lines += ["", "Client-side errors (connection cut or refused): " + ", ".join(f"{k} {v}" for k, v in sorted(tally.errors.items()))]
        lines += ["", f"Cost by model: metrics mock-small {metrics_by_model['mock-small']:.9f} vs told {tally.json_cost + by_kind['stream'] + by_kind['cut']:.9f} "
                  f"(JSON {tally.json_cost:.9f}, streams {by_kind['stream']:.9f}, cut streams {by_kind['cut']:.9f}); metrics mock-storm "
                  f"{metrics_by_model['mock-storm']:.9f} vs told {by_kind['storm429'] + by_kind['storm5xx']:.9f}. Runs never admitted (404): "
                  + (", ".join(f"{k} {v}" for k, v in sorted(missing.items())) or "none") + ".",
                  "", f"Gateway log: {settle_failed} SettleFailed, {store_unavailable} StoreUnavailable records.", "",
                  "## Memory (every 30 s)", "", "| s | RSS MB | GC heap MB (after last GC) | of which gen2+LOH+POH | machine busy cores |", "| ---: | ---: | ---: | ---: | ---: |"]
        for s in samples:
            if int(s[0]) % 30 < SAMPLE_SECONDS:
                lines.append(f"| {s[0]:.0f} | {s[1]:.1f} | {s[2] or 0:.1f} | {s[5] or 0:.1f} | {s[3]:.2f} |")
        report = "\n".join(lines) + "\n"
        print(report)
        if a.out:
            with open(a.out, "w") as f:
                f.write(report)
        passed = all(ok for _, ok, _ in checks)
        if not passed:
            print(f"logs kept in {work}", file=sys.stderr)
        return 0 if passed else 1
    finally:
        cleanup()
        if not os.environ.get("SOAK_KEEP") and 'passed' in locals() and passed:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
