#!/usr/bin/env python3
"""LlmGateway load harness (started by bench/run.sh; see bench/README.md).

Starts an nginx upstream and every selected target (direct, nginx proxy, bare YARP, the gateway in several
configurations, optionally Portkey) on 127.0.0.1, measures them in interleaved rounds of bounded load, then
the stream, scaling and body-size phases, stops everything it started and writes a markdown report. Only the
Python standard library, nginx, h2load, wrk and redis-server are used.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(BENCH)
WORK = os.path.join(BENCH, ".work")
PAYLOADS = os.path.join(BENCH, "payloads")
SCRIPTS = os.path.join(BENCH, "scripts")
PIDS_FILE = os.path.join(WORK, "pids")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Load shape. The fixed rate is the 2,000 req/s, spread over 20 HTTP/1.1 connections.
RATE = int(os.environ.get("BENCH_RATE", "2000"))
RATE_CONNS = 20
STREAM_RATE = int(os.environ.get("BENCH_STREAM_RATE", "1000"))
STREAM_CONNS = 10
BODY_RATE = 100
BODY_CONNS = 4
SAT_THREADS = 1
SAT_CONNS = 32
SCALE_CONNS = 10
SCALE_DELAY_MS = 10  # ~1,000 req/s with 10 connections
NOISY_CORES = 0.3  # other processes' CPU above which a measurement is flagged
BODY_SIZES = [("1 KB", 1024), ("100 KB", 100 * 1024), ("1 MB", 1024 * 1024)]

PROFILES = {
    # Seconds per phase. Fixed-rate and saturation runs are split into `rounds` that visit every target in
    # turn, and each figure is the median over rounds: a burst of other work on a shared machine then
    # spoils one round of every target rather than all of one target's figures.
    # `settle` is an unmeasured second at the fixed rate before each measured round (the target has been idle
    # while the others were measured); body_warm likewise before each body size.
    "quick": dict(warmup=2, jit_cap=24, rounds=2, fixed=3, settle=1, sat=2, stream_fixed=3, ttfb_n=300, scale_rounds=1, scale=2,
                  body=2, body_warm=1, fill_cap=30),
    "full": dict(warmup=5, jit_cap=45, rounds=5, fixed=5, settle=1, sat=3, stream_fixed=6, ttfb_n=1000, scale_rounds=3, scale=3,
                 body=6, body_warm=2, fill_cap=45),
}

GATEWAY_KEY = "sk-bench-harness-0001"
RUN_ID = "bench-run-1"
TARGET_ORDER = ["direct", "nginx", "yarp", "gateway", "deployments", "policies", "policies-base", "redis", "redis-base", "redis-leases",
                "redis-leases-base", "redis-budgets", "redis-budgets-leases", "redis-budgets-leases-base", "redis-cluster", "redis-cluster-leases", "cache", "portkey"]
# Redis scenarios: every policy (X-Run-Id on each call), or budgets only (user and team, no run header), with leases or not;
# the cluster ones on a 3-master Redis Cluster on loopback (every policy), its three nodes' CPU and commands summed.
REDIS_SCENARIOS = ("redis", "redis-leases", "redis-budgets", "redis-budgets-leases", "redis-cluster", "redis-cluster-leases")
# Targets run only with --baseline: the same scenarios on another build of the gateway, measured in the same run.
BASELINE_KEYS = {"policies-base": "policies", "redis-base": "redis", "redis-leases-base": "redis-leases",
                 "redis-budgets-leases-base": "redis-budgets-leases"}
EXTRA_PHASES = ["stream", "scaling", "bodies"]
LABELS = {
    "direct": "direct to upstream",
    "nginx": "nginx reverse proxy",
    "yarp": "bare YARP",
    "gateway": "gateway, pass-through",
    "deployments": "gateway, pass-through, model on 4 deployments",
    "policies": "gateway, policies (in-memory)",
    "redis": "gateway, policies (Redis)",
    "policies-base": "baseline build: policies (in-memory)",
    "redis-base": "baseline build: policies (Redis)",
    "redis-leases-base": "baseline build: policies (Redis, leases)",
    "redis-budgets-leases-base": "baseline build: budgets only (Redis, leases)",
    "redis-leases": "gateway, policies (Redis, leases)",
    "redis-budgets": "gateway, budgets only (Redis)",
    "redis-budgets-leases": "gateway, budgets only (Redis, leases)",
    "redis-cluster": "gateway, policies (3-master Redis Cluster)",
    "redis-cluster-leases": "gateway, policies (3-master Redis Cluster, leases)",
    "cache": "gateway, cache hit",
    "portkey": "Portkey 1.15 (peer)",
}


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


# ---------------------------------------------------------------- processes

def proc_stat(pid):
    """(ppid, utime+stime ticks) of one process, or None when it is gone."""
    try:
        text = read(f"/proc/{pid}/stat").decode()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def proc_status_kb(pid, key):
    try:
        for line in read(f"/proc/{pid}/status").decode().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_tree(root):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st:
                children.setdefault(st[0], []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


class Proc:
    """A process group this harness started; measured as the whole process tree."""

    def __init__(self, name, cmd, env=None, cwd=None):
        self.name = name
        self.log_path = os.path.join(WORK, "logs", f"{name}.log")
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        self.log_file = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.popen = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=full_env, cwd=cwd or WORK, start_new_session=True)
        with open(PIDS_FILE, "a") as f:
            f.write(f"{self.popen.pid}\n")

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def cpu_seconds(self):
        return sum((proc_stat(p) or (0, 0))[1] for p in process_tree(self.pid)) / CLK_TCK

    def peak_rss_mb(self):
        return sum(proc_status_kb(p, "VmHWM") for p in process_tree(self.pid)) / 1024

    def rss_mb(self):
        return sum(proc_status_kb(p, "VmRSS") for p in process_tree(self.pid)) / 1024

    def stop(self):
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        self.log_file.close()
        self._forget()

    def _forget(self):
        """Drops this group from the list run.sh's exit trap kills: once stopped, its id may be reused."""
        try:
            with open(PIDS_FILE) as f:
                remaining = [line for line in f.read().split() if line != str(self.pid)]
            write(PIDS_FILE, "".join(f"{pid}\n" for pid in remaining))
        except OSError:
            pass

    def tail(self, lines=15):
        try:
            return "\n".join(read(self.log_path).decode(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def http(method, url, body=None, headers=None, timeout=5):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_ready(url, proc=None, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited during start-up:\n{proc.tail()}")
        try:
            http("GET", url, timeout=2)
            return
        except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout} s" + (f":\n{proc.tail()}" if proc else ""))


# ---------------------------------------------------------------- servers

def nginx_conf(name, server_block):
    base = os.path.join(WORK, name)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
daemon off;
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {base}/client_body;
    proxy_temp_path {base}/proxy;
    fastcgi_temp_path {base}/fastcgi;
    uwsgi_temp_path {base}/uwsgi;
    scgi_temp_path {base}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_max_body_size 16m;
    client_body_buffer_size 2m;
{server_block}
}}
"""


def start_nginx(name, server_block, port):
    base = os.path.join(WORK, name)
    conf = os.path.join(base, "nginx.conf")
    write(conf, nginx_conf(name, server_block))
    proc = Proc(name, ["nginx", "-p", base + "/", "-c", conf, "-e", os.path.join(base, "error.log")])
    wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


def nginx_literal(data):
    text = data.decode()
    assert "'" not in text and "\\" not in text, "payloads must not contain quotes or backslashes for nginx"
    return "'" + text.replace("\n", "\\n") + "'"


def start_upstream(port):
    """nginx returning a fixed chat completion and a fixed SSE stream (the bytes in bench/payloads)."""
    block = f"""    server {{
        listen 127.0.0.1:{port};
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 {nginx_literal(read(os.path.join(PAYLOADS, 'chat-response.json')))};
        }}
        location = /stream/v1/chat/completions {{
            # Too long for a config token: served as a file; POST gets 405 from the static module, which
            # error_page turns into a GET of the same file with status 200.
            default_type text/event-stream;
            add_header Cache-Control no-cache;
            alias {os.path.join(PAYLOADS, 'chat-stream.sse')};
            error_page 405 =200 $uri;
        }}
        location = /nginx_status {{ stub_status; }}
        location = /healthz {{ return 200 'ok'; }}
        location / {{ return 404; }}
    }}"""
    return start_nginx("nginx-upstream", block, port)


def start_nginx_proxy(port, upstream_port):
    block = f"""    upstream llm {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location /v1/ {{ proxy_pass http://llm; }}
        location /stream/ {{ proxy_pass http://llm; proxy_buffering off; }}
        location = /healthz {{ return 200 'ok'; }}
    }}"""
    return start_nginx("nginx-proxy", block, port)


def upstream_requests(upstream_port):
    """nginx's total request counter (stub_status), to see whether the upstream was called."""
    _, _, body = http("GET", f"http://127.0.0.1:{upstream_port}/nginx_status")
    return int(body.decode().splitlines()[2].split()[2])


def gateway_config(upstream_port, policies, redis=None, cache=False, tokenizer=None, context_window=None, budgets_only=False, leases=False, deployments=0):
    models = {
        # A context window large enough for the 1 MB prompt of the body-size runs (~260k estimated tokens).
        "bench-model": {"Provider": "upstream", "InputUsdPerMTok": 1.0, "OutputUsdPerMTok": 2.0, "ContextWindow": 2000000, "DefaultMaxOutputTokens": 1024},
        "bench-stream": {"Provider": "upstream-stream", "InputUsdPerMTok": 1.0, "OutputUsdPerMTok": 2.0, "ContextWindow": 2000000, "DefaultMaxOutputTokens": 1024},
    }
    for model in models.values():
        # The bench models' names imply no tokenizer (estimate); profile.py can set one, and a window that makes
        # every request be counted (the prompt's byte bound over it, its count within).
        if tokenizer:
            model["Tokenizer"] = tokenizer
        if context_window:
            model["ContextWindow"] = context_window
    gateway = {
        "Redis": redis or "",
        "Providers": {
            "upstream": {"BaseUrl": f"http://127.0.0.1:{upstream_port}/v1"},
            "upstream-stream": {"BaseUrl": f"http://127.0.0.1:{upstream_port}/stream/v1"},
        },
        "Models": models,
        "Keys": [{"Key": GATEWAY_KEY, "Id": "bench", "User": "bench"}],
        "Cache": {"Enabled": cache, "Ttl": "01:00:00", "Scope": "User"},
        "MockLlm": {"Enabled": False},
    }
    if deployments:
        # The same upstream behind n providers (n keys of one API): the model picks one per call (weighted, the
        # default strategy), each with its own circuit and in-flight count. Weights differ so the draw is not trivial.
        for i in range(deployments):
            gateway["Providers"][f"upstream-{i}"] = {"BaseUrl": f"http://127.0.0.1:{upstream_port}/v1"}
        bench = models["bench-model"]
        del bench["Provider"]
        bench["Deployments"] = [{"Provider": f"upstream-{i}", "Weight": i + 1} for i in range(deployments)]
    if leases:
        gateway["Store"] = {"Leases": True}
    if policies and budgets_only:
        # The user's and team's budgets only (what leases cover): no rates, caps or run limits, and no X-Run-Id.
        gateway["Users"] = {"bench": {"Budget": {"Usd": 1000000000, "Period": "Day"}, "Team": "bench-team"}}
        gateway["Teams"] = {"bench-team": {"Budget": {"Usd": 1000000000, "Period": "Month"}}}
        gateway["Limits"] = {"MaxRequestUsd": 1000}
    elif policies:
        # Every limit on, none reachable in a bench run: the cost of checking them is what is measured.
        user = {"Budget": {"Usd": 1000000000, "Period": "Day"}, "Rpm": 100000000, "Tpm": 2000000000, "MaxInFlight": 100000}
        gateway["Users"] = {"bench": dict(user, Team="bench-team")}
        gateway["Teams"] = {"bench-team": {"Budget": {"Usd": 1000000000, "Period": "Month"}}}
        gateway["UserDefaults"] = user
        gateway["Runs"] = {"Usd": 1000000, "Tokens": 1000000000000, "Calls": 1000000000, "Deadline": "1.00:00:00",
                           "MaxRepeats": 1000000000, "MaxInFlight": 100000, "MaxInputTokens": 100000000}
        gateway["Limits"] = {"MaxRequestUsd": 1000}
    return {"Gateway": gateway}


def start_gateway(name, artifacts, port, config):
    path = os.path.join(WORK, f"{name}.gateway.json")
    write(path, json.dumps(config, indent=2))
    dll = os.path.join(artifacts, "bin", "LlmGateway", "release", "LlmGateway.dll")
    env = {
        # The per-call Information record is off for the bench (see README): only warnings are logged.
        "Logging__LogLevel__Default": "Warning",
        "Logging__LogLevel__LlmGateway": "Warning",
        "ASPNETCORE_ENVIRONMENT": "Production",
    }
    proc = Proc(name, ["dotnet", dll, "--urls", f"http://127.0.0.1:{port}", "--config", path], env=env)
    wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


def start_yarp(artifacts, port, upstream_port):
    dll = os.path.join(artifacts, "bin", "BareYarp", "release", "BareYarp.dll")
    proc = Proc("bare-yarp", ["dotnet", dll, "--urls", f"http://127.0.0.1:{port}", "--upstream", f"http://127.0.0.1:{upstream_port}"],
                env={"ASPNETCORE_ENVIRONMENT": "Production"})
    wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


def start_redis(port, name="redis", extra=()):
    proc = Proc(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                       "--dir", WORK, "--protected-mode", "yes", *extra])
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("redis-server did not start:\n" + proc.tail())


class ProcGroup:
    """Several processes measured as one (a Redis Cluster's nodes): CPU and RSS summed."""

    def __init__(self, procs):
        self.procs = procs

    def alive(self):
        return all(p.alive() for p in self.procs)

    def cpu_seconds(self):
        return sum(p.cpu_seconds() for p in self.procs if p.alive())

    def stop(self):
        for p in self.procs:
            p.stop()


def cluster_port():
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 < 65536:
            try:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                pass


def start_redis_cluster(masters=3):
    """A Redis Cluster of `masters` nodes on loopback (no replicas), each in a directory of its own; ready when every
    node reports cluster_state:ok. Returns (ProcGroup, ports)."""
    ports, procs = [], []
    try:
        for _ in range(masters):
            port = cluster_port()
            directory = os.path.join(WORK, f"cluster-{port}")
            os.makedirs(directory, exist_ok=True)
            procs.append(Proc(f"redis-cluster-{port}", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                                        "--appendonly", "no", "--cluster-enabled", "yes", "--cluster-config-file",
                                                        os.path.join(directory, "nodes.conf"), "--dir", directory]))
            ports.append(port)
        for port in ports:
            wait_redis(port, procs)
        create = subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0",
                                 "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if create.returncode != 0:
            raise RuntimeError("redis-cli --cluster create failed: " + (create.stdout + create.stderr)[-400:])
        deadline = time.time() + 30
        while time.time() < deadline:
            states = [subprocess.run(["redis-cli", "-p", str(p), "cluster", "info"], capture_output=True, text=True, timeout=5).stdout for p in ports]
            if all("cluster_state:ok" in st for st in states):
                return ProcGroup(procs), ports
            time.sleep(0.2)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
    except Exception:
        for p in procs:
            p.stop()
        raise


def wait_redis(port, procs):
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"redis-server on {port} did not start:\n" + "\n".join(p.tail() for p in procs))


def install_portkey():
    target = os.path.join(WORK, "peers")
    os.makedirs(target, exist_ok=True)
    shutil.copy(os.path.join(BENCH, "peers", "package.json"), os.path.join(target, "package.json"))
    entry = os.path.join(target, "node_modules", "@portkey-ai", "gateway", "build", "start-server.js")
    if not os.path.exists(entry):
        log("npm install @portkey-ai/gateway (bench/peers/package.json) ...")
        result = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=target, capture_output=True, text=True, timeout=600)
        if result.returncode != 0 or not os.path.exists(entry):
            raise RuntimeError("npm install failed: " + (result.stderr or result.stdout)[-400:])
    return entry


def start_portkey(port):
    entry = install_portkey()
    proc = Proc("portkey", ["node", entry, "--headless", f"--port={port}"], env={"NODE_ENV": "production"})
    deadline = time.time() + 60
    while time.time() < deadline:
        if not proc.alive():
            raise RuntimeError("Portkey exited:\n" + proc.tail())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("Portkey did not listen:\n" + proc.tail())


# ---------------------------------------------------------------- load

def percentile(sorted_values, p):
    if not sorted_values:
        return None
    rank = max(1, int(-(-p * len(sorted_values) // 100)))  # nearest rank
    return sorted_values[min(rank, len(sorted_values)) - 1]


def h2load_cmd(port, path, body_file, headers, conns, per_conn_rps, seconds, log_path=None):
    cmd = ["h2load", "--h1", "-c", str(conns), "-m", "1", "--rps", str(per_conn_rps), "-D", str(seconds),
           "-d", body_file, "-H", "content-type: application/json"]
    for name, value in headers:
        cmd += ["-H", f"{name}: {value}"]
    if log_path:
        cmd += ["--log-file", log_path]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    return cmd


def parse_h2load(out, err):
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not m:
        raise RuntimeError("h2load failed: " + (err or out)[-500:])
    done, ok2xx = int(m.group(3)), int(status.group(1)) if status else 0
    return done, ok2xx, done - ok2xx + int(m.group(6)) + int(m.group(7))


def h2load(port, path, body_file, headers, rate, conns, seconds, log_path=None):
    """Fixed-rate HTTP/1.1 load: `conns` connections, each sending rate/conns req/s, for `seconds`.

    h2load paces all the connections of one process with timers that fire together, which turns a fixed
    rate into bursts of `conns` simultaneous requests. With a log (the measured runs), each connection is
    its own h2load process instead, started one after another, so their phases differ and arrivals spread
    out; without one (warm-ups), one process is enough."""
    per_conn = max(1, rate // conns)
    if not log_path:
        result = subprocess.run(h2load_cmd(port, path, body_file, headers, conns, per_conn, seconds),
                                capture_output=True, text=True, timeout=seconds + 60)
        done, ok, errors = parse_h2load(result.stdout, result.stderr)
        return {"done": done, "ok": ok, "errors": errors, "seconds": seconds}
    logs = [f"{log_path}.{i}" for i in range(conns)]
    for path_i in logs:  # h2load appends to its log file: never mix in an interrupted run's lines
        if os.path.exists(path_i):
            os.remove(path_i)
    procs = []
    done = ok = errors = 0
    try:
        for i in range(conns):
            procs.append(subprocess.Popen(h2load_cmd(port, path, body_file, headers, 1, per_conn, seconds, logs[i]),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for p in procs:
            out, err = p.communicate(timeout=seconds + 60)
            d, o, e = parse_h2load(out, err)
            done, ok, errors = done + d, ok + o, errors + e
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    lat = []
    with open(log_path, "w") as merged:
        for path_i in logs:
            for line in read(path_i).decode().splitlines():
                merged.write(line + "\n")
                parts = line.split("\t")
                if len(parts) >= 3 and parts[1].startswith("2"):
                    lat.append(int(parts[2]) / 1000.0)  # ms
            os.remove(path_i)
    lat.sort()
    res = {"done": done, "ok": ok, "errors": errors, "seconds": seconds,
           "achieved_rps": len(lat) / seconds}
    for p in (50, 90, 99, 99.9):
        res[f"p{p}"] = percentile(lat, p)
    return res


def wrk(port, path, body_file, headers, seconds, threads=SAT_THREADS, conns=SAT_CONNS, runs=0, mode="random", delay_ms=0):
    env = dict(os.environ, BENCH_BODY=body_file, BENCH_PATH=path, BENCH_RUNS=str(runs), BENCH_MODE=mode,
               BENCH_DELAY_MS=str(delay_ms), BENCH_HEADERS="|".join(f"{n}: {v}" for n, v in headers))
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s", "--timeout", "10s",
           "-s", os.path.join(SCRIPTS, "post.lua"), f"http://127.0.0.1:{port}"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 60)
    m = re.search(r"BENCH_RESULT (\{.*\})", result.stdout)
    if not m:
        raise RuntimeError("wrk failed: " + (result.stderr or result.stdout)[-500:])
    r = json.loads(m.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    r["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    r["errors"] = r["non2xx"] + r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def probe_stream(port, path, headers, body, n, warm=50, max_seconds=6):
    """Sequential streamed requests on one keep-alive connection: time to the first response byte, to the
    first SSE data line, and to the end of the stream (ms). Stops after n requests or max_seconds."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    request = head.encode() + body
    sock = None
    first, data, total, errors = [], [], [], 0
    deadline = time.time() + max_seconds
    for i in range(warm + n):
        if i > warm and time.time() > deadline:
            break
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter_ns()
        sock.sendall(request)
        buf = b""
        t_first = t_data = None
        complete = False
        while True:
            chunk = sock.recv(65536)
            now = time.perf_counter_ns()
            if not chunk:
                break
            if t_first is None:
                t_first = now
            buf += chunk
            if t_data is None and b"\ndata:" in buf:
                t_data = now
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                headers_text = buf[:end].lower()
                cl = re.search(rb"\ncontent-length:\s*(\d+)", headers_text)
                if cl and len(buf) >= end + 4 + int(cl.group(1)):
                    complete = True
                elif b"chunked" in headers_text and buf.endswith(b"\r\n0\r\n\r\n"):
                    complete = True
            if complete:
                break
        ok = complete and buf.startswith(b"HTTP/1.1 200") and b"[DONE]" in buf and t_data is not None
        if not complete or b"connection: close" in buf[:buf.find(b"\r\n\r\n")].lower():
            sock.close()
            sock = None
        if not ok:
            errors += 1
            continue
        if i >= warm:
            first.append((t_first - t0) / 1e6)
            data.append((t_data - t0) / 1e6)
            total.append((now - t0) / 1e6)
    if sock:
        sock.close()
    first.sort()
    data.sort()
    total.sort()
    return {"n": len(first), "probe_errors": errors,
            "ttfb_p50": percentile(first, 50), "ttfb_p99": percentile(first, 99),
            "first_event_p50": percentile(data, 50), "first_event_p99": percentile(data, 99),
            "stream_p50": percentile(total, 50)}


# ---------------------------------------------------------------- targets

class Target:
    def __init__(self, key, port, headers, chat, stream, procs, measured, extra=None, stream_headers=None):
        self.key = key
        self.port = port
        self.headers = headers
        self.stream_headers = stream_headers or headers
        self.chat = chat          # (path, body file)
        self.stream = stream      # (path, body file)
        self.procs = procs        # everything started for this target (stopped at the end)
        self.measured = measured  # the process tree whose CPU and RSS are the target's figures
        self.extra = extra or {}  # e.g. {"redis": Proc}


def check_target(t):
    """One request of each kind must succeed before anything is measured."""
    for (path, body_file), headers in ((t.chat, t.headers), (t.stream, t.stream_headers)):
        status, _, body = http("POST", f"http://127.0.0.1:{t.port}{path}", read(body_file),
                               dict(headers, **{"Content-Type": "application/json"}), timeout=10)
        expected = b"[DONE]" if body_file.endswith("stream-request.json") or path.startswith("/stream/") else b"chat.completion"
        if status != 200 or expected not in body:
            raise RuntimeError(f"{path} answered {status}: {body[:300]!r}")


def jit_seconds(proc):
    """CPU time of the .NET tiered-compilation threads of a process tree (0 for processes without them)."""
    total = 0
    for pid in process_tree(proc.pid):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                stat = read(f"/proc/{pid}/task/{tid}/stat").decode()
            except OSError:
                continue
            if "Tiered Com" in stat[stat.index("(") + 1:stat.rindex(")")]:
                fields = stat[stat.rindex(")") + 2:].split()
                total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def warm_until_jitted(t, cap_seconds):
    """Saturates a .NET target in 3 s slices until its JIT is done: tiered compilation takes ~15 s of full load to
    settle for the gateway (CPU per request falls ~4x meanwhile, measured), and less for bare YARP, so a fixed short
    warm-up measures the gateway's half-compiled code against YARP's compiled one. Returns the seconds spent."""
    spent, quiet = 0, 0
    while spent < cap_seconds and quiet < 2:
        j0, c0 = jit_seconds(t.measured), t.measured.cpu_seconds()
        wrk(t.port, t.chat[0], t.chat[1], t.headers, 3)
        spent += 3
        jit, cpu = jit_seconds(t.measured) - j0, t.measured.cpu_seconds() - c0
        quiet = quiet + 1 if jit <= 0.03 * max(cpu, 0.01) else 0
    return spent


class CpuMeter:
    """CPU used during a phase by the measured process tree, and by everything on the machine that is not
    this harness's (other people's work on a shared machine), in cores."""

    def __init__(self, measured, ours, extra=None):
        self.measured = measured
        self.ours = ours
        self.extra = extra

    def sample(self):
        v = [int(x) for x in read("/proc/stat").decode().splitlines()[0].split()[1:]]
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        ours = sum(p.cpu_seconds() for p in self.ours if p.alive())
        ours += children.ru_utime + children.ru_stime + me.ru_utime + me.ru_stime
        return {"t": time.time(), "busy": (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK, "ours": ours,
                "measured": self.measured.cpu_seconds() if self.measured else 0.0,
                "extra": self.extra.cpu_seconds() if self.extra else 0.0}

    def __enter__(self):
        self.start = self.sample()
        return self

    def __exit__(self, *exc):
        self.end = self.sample()

    def per_request_us(self, requests, key="measured"):
        return (self.end[key] - self.start[key]) * 1e6 / max(1, requests)

    @property
    def other_cores(self):
        wall = self.end["t"] - self.start["t"]
        other = (self.end["busy"] - self.start["busy"]) - (self.end["ours"] - self.start["ours"])
        return max(0.0, other / wall)


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def fixed_round(t, prof, key, rnd, ours):
    path, body_file = t.chat
    h2load(t.port, path, body_file, t.headers, RATE, RATE_CONNS, prof["settle"])
    before = redis_calls(t.extra["redis_ports"]) if "redis_ports" in t.extra else None
    with CpuMeter(t.measured, ours, t.extra.get("redis")) as m:
        r = h2load(t.port, path, body_file, t.headers, RATE, RATE_CONNS, prof["fixed"], os.path.join(WORK, f"h2load-{key}-r{rnd}.log"))
    if before is not None:
        # Redis commands (scripts count as one each, plus what they call inside) per request served.
        after = redis_calls(t.extra["redis_ports"])
        r["redis_cmds"] = (after[0] - before[0]) / max(1, r["done"])
        r["redis_scripts"] = (after[1] - before[1]) / max(1, r["done"])
        top = sorted(((after[2].get(k, 0) - before[2].get(k, 0), k) for k in after[2] if k != "info"), reverse=True)[:8]
        log(f"{key}: Redis commands per request: " + ", ".join(f"{k} {n / max(1, r['done']):.2f}" for n, k in top if n > 0))
    r["cpu_us"] = m.per_request_us(r["done"]) if t.measured else None
    r["other_cores"] = m.other_cores
    if "redis" in t.extra:
        r["redis_cpu_us"] = m.per_request_us(r["done"], "extra")
    return r


def redis_calls(ports):
    """(calls of every command but INFO and CLUSTER, calls of EVAL/EVALSHA) so far on these nodes, from INFO commandstats."""
    total, scripts, every = 0, 0, {}
    for port in ports:
        out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "INFO", "commandstats"], capture_output=True, text=True, timeout=10).stdout
        stats = {m.group(1): int(m.group(2)) for m in re.finditer(r"cmdstat_([\w|]+):calls=(\d+)", out)}
        total += sum(v for k, v in stats.items() if k != "info" and not k.startswith("cluster"))
        scripts += stats.get("evalsha", 0) + stats.get("eval", 0)
        for k, v in stats.items():
            every[k] = every.get(k, 0) + v
    return total, scripts, every


def sat_round(t, prof, ours):
    path, body_file = t.chat
    with CpuMeter(t.measured, ours) as m:
        s = wrk(t.port, path, body_file, t.headers, prof["sat"])
    return {"rps": s["rps"], "errors": s["errors"], "other_cores": m.other_cores,
            "cpu_us": m.per_request_us(s["requests"]) if t.measured else None}


def summarise_chat(fixed, sat):
    out = {k: median([r.get(k) for r in fixed]) for k in ("p50", "p90", "p99", "p99.9", "cpu_us", "achieved_rps", "redis_cpu_us", "redis_cmds", "redis_scripts")}
    cpus = [r["cpu_us"] for r in fixed if r.get("cpu_us") is not None]
    out["cpu_min"], out["cpu_max"] = (min(cpus), max(cpus)) if cpus else (None, None)
    out["errors"] = sum(r["errors"] for r in fixed) + sum(s["errors"] for s in sat)
    out["sat_rps"] = median([s["rps"] for s in sat])
    out["sat_cpu_us"] = median([s["cpu_us"] for s in sat])
    out["sat_min"], out["sat_max"] = min(s["rps"] for s in sat), max(s["rps"] for s in sat)
    out["other_cores"] = median([r["other_cores"] for r in fixed] + [s["other_cores"] for s in sat])
    out["rounds"] = {"fixed": fixed, "saturation": sat}
    return out


def measure_stream(t, prof, key, ours):
    path, body_file = t.stream
    log(f"{key}: stream warm-up, {STREAM_RATE} req/s for {prof['stream_fixed']} s, TTFB probe x{prof['ttfb_n']}")
    h2load(t.port, path, body_file, t.stream_headers, STREAM_RATE, STREAM_CONNS, prof["warmup"])
    with CpuMeter(t.measured, ours) as m:
        r = h2load(t.port, path, body_file, t.stream_headers, STREAM_RATE, STREAM_CONNS, prof["stream_fixed"], os.path.join(WORK, f"h2load-{key}-stream.log"))
    r["cpu_us"] = m.per_request_us(r["done"]) if t.measured else None
    r["other_cores"] = m.other_cores
    r.update(probe_stream(t.port, path, t.stream_headers, read(body_file), prof["ttfb_n"]))
    return r


def gc_heap_mb(port):
    """Sum of the GC heap sizes after the last collection, from the gateway's /metrics (System.Runtime meter)."""
    try:
        _, _, body = http("GET", f"http://127.0.0.1:{port}/metrics", timeout=5)
    except OSError:
        return None
    total = None
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("dotnet_gc_last_collection_heap_size_bytes"):
            total = (total or 0) + float(line.rsplit(" ", 1)[1])
    return None if total is None else total / 1024 / 1024


def redis_used_mb(proc_port):
    """used_memory of a redis-server, from INFO memory."""
    try:
        with socket.create_connection(("127.0.0.1", proc_port), timeout=2) as s:
            s.sendall(b"INFO memory\r\n")
            data = b""
            while b"used_memory:" not in data or not data.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return int(re.search(rb"used_memory:(\d+)", data).group(1)) / 1024 / 1024
    except (OSError, AttributeError):
        return None


def measure_scaling(t, prof, key, sat_rps, ours):
    path, body_file = t.chat
    samples = {}

    def one(runs, phase):
        with CpuMeter(t.measured, ours) as m:
            r = wrk(t.port, path, body_file, t.headers, prof["scale"], conns=SCALE_CONNS, runs=runs, delay_ms=SCALE_DELAY_MS)
        samples.setdefault((runs, phase), []).append({
            "cpu_us": m.per_request_us(r["requests"]), "rps": r["rps"], "p50": r["p50_us"] / 1000,
            "p99": r["p99_us"] / 1000, "errors": r["errors"], "other_cores": m.other_cores})

    log(f"{key}: scaling, 1 and 1,000 distinct runs, {prof['scale_rounds']} rounds of {prof['scale']} s")
    for _ in range(prof["scale_rounds"]):
        one(1, "before")
        one(1000, "before")
    redis_port = t.extra["redis_ports"][0] if len(t.extra.get("redis_ports", [])) == 1 else None
    rss0, heap0 = t.measured.rss_mb(), gc_heap_mb(t.port)
    redis0 = redis_used_mb(redis_port) if redis_port else None
    fill_seconds = int(min(prof["fill_cap"], max(8, 100000 / max(1, sat_rps) * 1.3 + 2)))
    log(f"{key}: touching 100,000 runs (wrk cycling run ids, {fill_seconds} s)")
    fill = wrk(t.port, path, body_file, t.headers, fill_seconds, runs=100000, mode="cycle")
    time.sleep(1)
    rss1, heap1 = t.measured.rss_mb(), gc_heap_mb(t.port)
    redis1 = redis_used_mb(redis_port) if redis_port else None
    log(f"{key}: scaling, 1, 1,000 and 100,000 distinct runs after the fill, {prof['scale_rounds']} rounds")
    for _ in range(prof["scale_rounds"]):
        one(1, "after")
        one(1000, "after")
        one(100000, "after")
    rows = []
    for (runs, phase) in ((1, "before"), (1000, "before"), (1, "after"), (1000, "after"), (100000, "after")):
        s = samples[(runs, phase)]
        rows.append({"runs": runs, "phase": phase, "cpu_us": median([x["cpu_us"] for x in s]),
                     "cpu_min": min(x["cpu_us"] for x in s), "cpu_max": max(x["cpu_us"] for x in s),
                     "p50": median([x["p50"] for x in s]), "p99": median([x["p99"] for x in s]),
                     "rps": median([x["rps"] for x in s]), "errors": sum(x["errors"] for x in s),
                     "other_cores": median([x["other_cores"] for x in s])})
    return {"rows": rows, "fill_requests": fill["requests"], "fill_errors": fill["errors"], "fill_seconds": fill_seconds,
            "rss_delta_mb": rss1 - rss0, "heap_delta_mb": None if heap0 is None or heap1 is None else heap1 - heap0,
            "redis_delta_mb": None if redis0 is None or redis1 is None else redis1 - redis0}


def measure_bodies(targets, prof, ours):
    """Each size in turn on every target, so the targets see the same machine conditions."""
    out = {key: [] for key in targets}
    for label, size in BODY_SIZES:
        body_file = os.path.join(WORK, f"body-{size}.json")
        for key, t in targets.items():
            path = t.chat[0]
            log(f"{key}: {label} bodies at {BODY_RATE} req/s for {prof['body']} s")
            h2load(t.port, path, body_file, t.headers, BODY_RATE, BODY_CONNS, prof["body_warm"])
            with CpuMeter(t.measured, ours) as m:
                r = h2load(t.port, path, body_file, t.headers, BODY_RATE, BODY_CONNS, prof["body"], os.path.join(WORK, f"h2load-{key}-body.log"))
            r["cpu_us"] = m.per_request_us(r["done"])
            r["other_cores"] = m.other_cores
            r["label"] = label
            out[key].append(r)
    return out


def make_bodies():
    chat = read(os.path.join(PAYLOADS, "chat-request.json"))
    files = {"chat": os.path.join(WORK, "chat-request.json")}
    write(files["chat"], chat)
    request = json.loads(chat)
    stream = dict(request, model="bench-stream", stream=True)
    files["stream"] = os.path.join(WORK, "stream-request.json")
    write(files["stream"], json.dumps(stream, separators=(",", ":")))
    filler = "Please also check the parcel history for anything unusual. "
    for _, size in BODY_SIZES:
        body = dict(request)
        base = len(json.dumps(body, separators=(",", ":")))
        pad = (filler * (size // len(filler) + 1))[:max(0, size - base)]
        body["messages"] = [request["messages"][0], {"role": "user", "content": pad + request["messages"][1]["content"]}]
        write(os.path.join(WORK, f"body-{size}.json"), json.dumps(body, separators=(",", ":")))
    return files


# ---------------------------------------------------------------- report

def sh(cmd):
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (result.stdout.strip() or result.stderr.strip())
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine_facts(mode):
    cpu = "?"
    for line in read("/proc/cpuinfo").decode().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    os_name = "?"
    if os.path.exists("/etc/os-release"):
        m = re.search(r'PRETTY_NAME="([^"]+)"', read("/etc/os-release").decode())
        os_name = m.group(1) if m else "?"
    runtime = next((l.split()[1] for l in sh(["dotnet", "--list-runtimes"]).splitlines() if l.startswith("Microsoft.NETCore.App")), "?")
    sha = sh(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]) or "nogit"
    dirty = bool(sh(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"]))
    mem = re.search(r"MemTotal:\s+(\d+)", read("/proc/meminfo").decode())
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"), "day": now.strftime("%Y-%m-%d"),
        "sha": sha, "dirty": dirty, "mode": mode,
        "cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else "?",
        "kernel": platform.release(), "os": os_name,
        "dotnet": f"{runtime} (SDK {sh(['dotnet', '--version'])})",
        "nginx": sh(["nginx", "-v"]).replace("nginx version: ", ""),
        "h2load": sh(["h2load", "--version"]), "wrk": " ".join(sh(["wrk", "--version"]).split()[:2]),
        "redis": sh(["redis-server", "--version"]).split(" sha=")[0],
        "node": sh(["node", "--version"]),
        "load_before": os.getloadavg(),
    }


def fmt(v, digits=3):
    return "–" if v is None else f"{v:.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def fmt_ratio(a, b):
    r = ratio(a, b)
    return "–" if r is None else f"{r:.2f}×"


def fmt_delta(a, b):
    return "–" if a is None or b is None else f"{a - b:+.3f}"


def table_rows(add, table, columns):
    """The measured rows of a per-target table in scenario order; a target that has only a status (failed,
    unavailable, not implemented) gets its row here, with the status in the second column."""
    for key in TARGET_ORDER:
        if key not in table:
            continue
        r = table[key]
        if isinstance(r, dict):
            yield key, r
        else:
            add(f"| {LABELS[key]} | {r} |" + " |" * (columns - 2))


def render(facts, results, prof):
    chat = results["chat"]
    b = chat["yarp"] if isinstance(chat.get("yarp"), dict) else {}
    lines = []
    add = lines.append
    add(f"# LlmGateway benchmark — {facts['date']} — `{facts['sha']}`{' (working tree had uncommitted changes)' if facts['dirty'] else ''}")
    add("")
    add(f"Mode **{facts['mode']}**. Everything on 127.0.0.1 against one nginx upstream (fixed answers), load generators on the same "
        f"cores as the servers. Fixed rate: {RATE} req/s over {RATE_CONNS} HTTP/1.1 connections (h2load, one process per "
        f"connection so arrivals interleave), {prof['rounds']} rounds × {prof['fixed']} s per target after a {prof['warmup']} s warm-up and, for .NET targets, saturated load until tiered compilation is done "
        f"({', '.join(f'{k} {v} s' for k, v in results.get('warmup_s', {}).items() if isinstance(v, int)) or 'n/a'}); "
        f"saturation: wrk -t{SAT_THREADS} -c{SAT_CONNS}, {prof['rounds']} rounds × {prof['sat']} s. Rounds visit every target in turn; "
        f"each figure is the median over rounds. Latencies in ms. CPU = utime+stime of the target's processes per request "
        f"during the fixed-rate rounds (min–max over rounds), and during the saturation rounds (where wake-ups and spinning no "
        f"longer dilute it); RSS = peak (VmHWM). Ratios and deltas are against bare YARP in this run. "
        f"\"Other load\" = CPU used on the machine by processes that are not this harness's, in cores (it is a shared machine).")
    add("")
    add("| machine | |")
    add("| --- | --- |")
    add(f"| CPU | {facts['cpu']}, {facts['cores']} cores, {facts['memory_gb']} GB |")
    add(f"| OS / kernel | {facts['os']} / {facts['kernel']} |")
    add(f"| .NET | {facts['dotnet']} |")
    add(f"| tools | nginx {facts['nginx']}; {facts['h2load']}; {facts['wrk']}; {facts['redis']}; node {facts['node']} |")
    add(f"| load average before / after | {' '.join(f'{x:.2f}' for x in facts['load_before'])} / {' '.join(f'{x:.2f}' for x in facts.get('load_after', (0, 0, 0)))} |")
    add("")

    if chat:
        add(f"## Chat completion (0.9 KB request, 0.6 KB JSON answer) at {RATE} req/s")
        add("")
        add("| scenario | achieved req/s | p50 | p90 | p99 | p99.9 | p50 added | p99 added | errors |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for key, r in table_rows(add, chat, 9):
            note = "" if (r["achieved_rps"] or 0) >= RATE * 0.95 else " (could not sustain the rate)"
            base = key == "yarp"
            add(f"| {LABELS[key]} | {r['achieved_rps']:.0f}{note} | {fmt(r['p50'])} | {fmt(r['p90'])} | {fmt(r['p99'])} | {fmt(r['p99.9'])} | "
                f"{'(base)' if base else fmt_delta(r['p50'], b.get('p50'))} | {'(base)' if base else fmt_delta(r['p99'], b.get('p99'))} | {r['errors']} |")
        add("")
        add("| scenario | saturation req/s | × YARP | CPU µs/req at the fixed rate | × YARP | CPU µs/req saturated | × YARP | peak RSS MB | × YARP | other load |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for key in TARGET_ORDER:
            r = chat.get(key)
            if not isinstance(r, dict):
                continue
            cpu = f"{fmt(r['cpu_us'], 1)} ({r['cpu_min']:.0f}–{r['cpu_max']:.0f})" if r.get("cpu_us") is not None else "–"
            if key == "direct":
                cpu += " upstream nginx"
            if r.get("redis_cpu_us") is not None:
                cpu += f" + Redis {r['redis_cpu_us']:.1f}"
            if r.get("redis_cmds") is not None:
                cpu += f" ({r['redis_cmds']:.3f} Redis commands, {r['redis_scripts']:.3f} scripts per request)"
            direct = key == "direct"
            add(f"| {LABELS[key]} | {r['sat_rps']:.0f} ({r['sat_min']:.0f}–{r['sat_max']:.0f}) | {fmt_ratio(r['sat_rps'], b.get('sat_rps'))} | {cpu} | "
                f"{'–' if direct else fmt_ratio(r.get('cpu_us'), b.get('cpu_us'))} | {fmt(r.get('sat_cpu_us'), 1)} | "
                f"{'–' if direct else fmt_ratio(r.get('sat_cpu_us'), b.get('sat_cpu_us'))} | {fmt(r.get('peak_rss_mb'), 1)} | "
                f"{'–' if direct else fmt_ratio(r.get('peak_rss_mb'), b.get('peak_rss_mb'))} | {fmt(r.get('other_cores'), 2)} |")
        add("")

    streams = results["stream"]
    if streams:
        sb = streams["yarp"] if isinstance(streams.get("yarp"), dict) else {}
        add("## Streamed chat completion (21 SSE events, 5.2 KB)")
        add("")
        add(f"Time to first byte and to the first `data:` event: up to {prof['ttfb_n']} sequential requests on one connection "
            f"(a Python client; its own overhead is in every row alike). Whole-stream latency and CPU: h2load at {STREAM_RATE} req/s "
            f"for {prof['stream_fixed']} s. The gateway row is the policies (in-memory) configuration; the caller does not ask for "
            f"usage, so the gateway injects include_usage upstream and strips the usage chunk again.")
        add("")
        add("| scenario | TTFB p50 | TTFB p99 | first event p50 | first event p99 | first event added | stream p50 @rate | stream p99 @rate | CPU µs/stream | × YARP | errors |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for key, r in table_rows(add, streams, 11):
            base = key == "yarp"
            add(f"| {LABELS[key]} | {fmt(r['ttfb_p50'])} | {fmt(r['ttfb_p99'])} | {fmt(r['first_event_p50'])} | {fmt(r['first_event_p99'])} | "
                f"{'(base)' if base else fmt_delta(r['first_event_p50'], sb.get('first_event_p50'))} | {fmt(r['p50'])} | {fmt(r['p99'])} | "
                f"{fmt(r.get('cpu_us'), 1)}{' upstream nginx' if key == 'direct' else ''} | {'–' if key == 'direct' else fmt_ratio(r.get('cpu_us'), sb.get('cpu_us'))} | "
                f"{r['errors'] + r['probe_errors']} |")
        add("")

    for key, s in results["scaling"].items():
        add(f"## Scaling with distinct runs — {LABELS[key]}")
        add("")
        if not isinstance(s, dict):
            add(str(s))
            add("")
            continue
        add(f"wrk, {SCALE_CONNS} connections with a {SCALE_DELAY_MS} ms pause each (≈{SCALE_CONNS * 1000 // SCALE_DELAY_MS} req/s), "
            f"X-Run-Id drawn at random from N ids; {prof['scale_rounds']} round(s) × {prof['scale']} s per row, rows of a phase "
            f"interleaved, medians. Between the two phases, 100,000 run ids were each used once ({s['fill_requests']:,} requests in "
            f"{s['fill_seconds']} s, {s['fill_errors']} errors), so the last three rows run with 100,000 runs known to the gateway.")
        add("")
        add("| phase | runs in play | CPU µs/req (min–max) | × 1 run, same phase | p50 ms | p99 ms | req/s | errors | other load |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in s["rows"]:
            first = next(r["cpu_us"] for r in s["rows"] if r["phase"] == row["phase"])
            label = ("fresh gateway | " if row["phase"] == "before" else "100,000 runs known | ") + f"{row['runs']:,}"
            add(f"| {label} | {row['cpu_us']:.1f} ({row['cpu_min']:.0f}–{row['cpu_max']:.0f}) | {fmt_ratio(row['cpu_us'], first)} | "
                f"{row['p50']:.3f} | {row['p99']:.3f} | {row['rps']:.0f} | {row['errors']} | {row['other_cores']:.2f} |")
        add("")
        heap = "–" if s["heap_delta_mb"] is None else f"{s['heap_delta_mb']:+.1f} MB"
        redis_mem = "" if s.get("redis_delta_mb") is None else f", Redis used_memory {s['redis_delta_mb']:+.1f} MB"
        add(f"Memory for 100,000 runs (after − before the fill): gateway GC heap after last collection {heap} (from its /metrics), "
            f"gateway RSS {s['rss_delta_mb']:+.1f} MB{redis_mem}.")
        add("")

    bodies = results["bodies"]
    if bodies:
        add(f"## Request body size ({BODY_RATE} req/s, {BODY_CONNS} connections, {prof['body']} s each)")
        add("")
        keys = [k for k in TARGET_ORDER if isinstance(bodies.get(k), list)]
        add("| body | " + " | ".join(f"{LABELS[k]}: p50 | p99 | CPU µs/req" for k in keys) + " | CPU × YARP |")
        add("| --- | " + " | ".join("---: | ---: | ---:" for _ in keys) + " | ---: |")
        for i, (label, _) in enumerate(BODY_SIZES):
            cells = []
            for k in keys:
                r = bodies[k][i] if i < len(bodies[k]) else None
                if r is None:
                    cells.append("– | – | –")
                elif r["ok"] == 0:
                    cells.append(f"all {r['done']} failed | – | –")
                else:
                    cells.append(f"{fmt(r['p50'])} | {fmt(r['p99'])} | {r['cpu_us']:.1f}" + (f" ({r['errors']} errors)" if r["errors"] else ""))
            y, p = bodies.get("yarp"), bodies.get("policies")
            rr = fmt_ratio(p[i]["cpu_us"], y[i]["cpu_us"]) if isinstance(y, list) and isinstance(p, list) and i < min(len(y), len(p)) else "–"
            add(f"| {label} | " + " | ".join(cells) + f" | {rr} |")
        add("")

    add("## Targets (issue #8)")
    add("")
    add("| target | measured | verdict |")
    add("| --- | --- | --- |")
    for name, measured, ok in targets(results):
        add(f"| {name} | {measured} | {'pass' if ok is True else 'FAIL' if ok is False else 'n/a'} |")
    add("")
    for note in results["notes"]:
        add(f"- {note}")
    return "\n".join(lines) + "\n"


def targets(results):
    chat = results["chat"]
    rows = []

    def get(table, key):
        r = table.get(key)
        return r if isinstance(r, (dict, list)) else None

    y = get(chat, "yarp")

    def check(name, value, limit, show, higher_is_better=False):
        if value is None:
            rows.append((name, "not measured", None))
        else:
            rows.append((name, show(value), value >= limit if higher_is_better else value <= limit))

    for key, p50_limit, cpu_limit, sat_limit in (("policies", 0.15, 1.5, 0.7), ("redis", 0.3, 1.8, 0.5)):
        r = get(chat, key)
        label = "in-memory" if key == "policies" else "Redis"
        both = r and y
        check(f"p50 added over YARP ≤ {p50_limit} ms ({label})", r["p50"] - y["p50"] if both else None, p50_limit, lambda v: f"{v:+.3f} ms")
        check(f"p99 added over YARP ≤ 1 ms ({label})", r["p99"] - y["p99"] if both else None, 1.0, lambda v: f"{v:+.3f} ms")
        check(f"CPU/request ≤ {cpu_limit}× YARP ({label}{', gateway process alone' if key == 'redis' else ''})",
              ratio(r.get("cpu_us"), y.get("cpu_us")) if both else None, cpu_limit, lambda v: f"{v:.2f}×")
        check(f"saturation ≥ {sat_limit}× YARP ({label})", ratio(r["sat_rps"], y["sat_rps"]) if both else None, sat_limit, lambda v: f"{v:.2f}×", True)
    pk, pol = get(chat, "portkey"), get(chat, "policies")
    check("saturation ≥ 10× Portkey (in-memory)", ratio(pol["sat_rps"], pk["sat_rps"]) if pk and pol else None, 10, lambda v: f"{v:.1f}×", True)
    sp, sy = get(results["stream"], "policies"), get(results["stream"], "yarp")
    check("stream time to first event added over YARP ≤ 0.5 ms (p50)",
          sp["first_event_p50"] - sy["first_event_p50"] if sp and sy else None, 0.5, lambda v: f"{v:+.3f} ms")
    c = get(chat, "cache")
    check("cache hit p50 ≤ bare YARP p50", c["p50"] - y["p50"] if c and y else None, 0.0, lambda v: f"{v:+.3f} ms")
    check("peak RSS under load ≤ 1.3× YARP (in-memory)", ratio(pol.get("peak_rss_mb"), y.get("peak_rss_mb")) if pol and y else None, 1.3, lambda v: f"{v:.2f}×")
    sc = get(results["scaling"], "policies")
    if sc:
        mem = sc["heap_delta_mb"] if sc["heap_delta_mb"] is not None else sc["rss_delta_mb"]
        check("100,000 tracked runs cost ≤ 100 MB", mem, 100, lambda v: f"{v:+.1f} MB")
        cpus = [row["cpu_us"] for row in sc["rows"] if row["phase"] == "after"]
        check("CPU/request flat (within 10%) from 1 to 100,000 runs (interleaved rows after the fill)",
              max(cpus) / min(cpus) - 1, 0.10, lambda v: f"max/min − 1 = {v * 100:.1f}%")
    else:
        rows.append(("100,000 tracked runs cost ≤ 100 MB", "not measured", None))
        rows.append(("CPU/request flat (within 10%) from 1 to 100,000 runs (interleaved rows after the fill)", "not measured", None))
    return rows


# ---------------------------------------------------------------- main

def start_target(key, args, upstream, upstream_port, files, results):
    common = [("Authorization", f"Bearer {GATEWAY_KEY}"), ("X-Run-Id", RUN_ID)]
    baseline_chat = ("/v1/chat/completions", files["chat"])
    baseline_stream = ("/stream/v1/chat/completions", files["chat"])
    port = free_port()
    procs = []
    try:
        if key == "direct":
            return Target(key, upstream_port, common, baseline_chat, baseline_stream, [], upstream)
        if key == "nginx":
            procs.append(start_nginx_proxy(port, upstream_port))
            t = Target(key, port, common, baseline_chat, baseline_stream, procs, procs[0])
        elif key == "yarp":
            procs.append(start_yarp(args.artifacts, port, upstream_port))
            t = Target(key, port, common, baseline_chat, baseline_stream, procs, procs[0])
        elif key == "portkey":
            try:
                procs.append(start_portkey(port))
            except Exception as e:  # a peer that cannot be installed or started is reported, not fatal
                log(f"portkey unavailable: {e}")
                results["chat"][key] = "unavailable"
                results["notes"].append(f"Portkey unavailable: {str(e).splitlines()[0][:200]}")
                return None
            # Portkey forwards to x-portkey-custom-host + /chat/completions, so the stream gets its own host prefix.
            headers = [("Authorization", "Bearer sk-bench-dummy"), ("x-portkey-provider", "openai")]
            t = Target(key, port, headers + [("x-portkey-custom-host", f"http://127.0.0.1:{upstream_port}/v1")],
                       baseline_chat, ("/v1/chat/completions", files["stream"]), procs, procs[0],
                       stream_headers=headers + [("x-portkey-custom-host", f"http://127.0.0.1:{upstream_port}/stream/v1")])
        else:
            extra, redis = {}, None
            scenario = BASELINE_KEYS.get(key, key)
            artifacts = args.baseline if key in BASELINE_KEYS else args.artifacts
            if scenario.startswith("redis-cluster"):
                extra["redis"], extra["redis_ports"] = start_redis_cluster()
                procs.append(extra["redis"])
                redis = ",".join(f"127.0.0.1:{p}" for p in extra["redis_ports"])
            elif scenario in REDIS_SCENARIOS:
                redis_port = free_port()
                extra["redis"] = start_redis(redis_port)
                extra["redis_ports"] = [redis_port]
                procs.append(extra["redis"])
                redis = f"127.0.0.1:{redis_port}"
            budgets_only = scenario.startswith("redis-budgets")
            config = gateway_config(upstream_port, policies=key not in ("gateway", "deployments"), redis=redis, cache=key == "cache",
                                    budgets_only=budgets_only, leases=scenario.endswith("leases"),
                                    deployments=4 if key == "deployments" else 0)
            procs.append(start_gateway(f"gateway-{key}", artifacts, port, config))
            # The bench request has no temperature 0 or seed, so the cache would (rightly) bypass it: force it.
            headers = common + [("X-Gateway-Cache", "force")] if key == "cache" else common
            if budgets_only:
                headers = [h for h in headers if h[0] != "X-Run-Id"]
            t = Target(key, port, headers, baseline_chat, ("/v1/chat/completions", files["stream"]), procs, procs[-1], extra)
        check_target(t)
        if key == "cache":
            before = upstream_requests(upstream_port)
            for _ in range(20):
                http("POST", f"http://127.0.0.1:{port}/v1/chat/completions", read(files["chat"]), dict(headers, **{"Content-Type": "application/json"}))
            called = upstream_requests(upstream_port) - before - 1  # the stub_status request counts itself
            if called >= 20:
                log("cache: the upstream saw every request: the cache did not hit, so the row is left out")
                results["chat"][key] = "n/a (no hits)"
                results["notes"].append(f"Cache hit: with Cache:Enabled and X-Gateway-Cache: force, 20 identical requests reached the upstream {called} times: "
                                        "the cache did not hit, so the row is left empty rather than faked.")
                for p in procs:
                    p.stop()
                return None
        return t
    except Exception as e:
        log(f"{key}: FAILED to start: {e}")
        results["chat"][key] = f"failed: {str(e).splitlines()[0][:160]}"
        results["notes"].append(f"{LABELS[key]} failed to start: {str(e)[:400]}")
        for p in procs:
            p.stop()
        return None


def guarded(results, key, what, fn):
    try:
        return fn()
    except Exception as e:
        log(f"{key}: {what} FAILED: {e}")
        results["notes"].append(f"{LABELS[key]}: {what} failed: {str(e)[:300]}")
        return f"failed: {str(e).splitlines()[0][:120]}"


def main():
    # run.sh's exit trap sends SIGTERM: leave through the finally blocks, which stop what was started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--peers", action="store_true")
    parser.add_argument("--scenarios", default="")
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--baseline", default="", help="artifacts of another gateway build: its policies and Redis scenarios run beside this build's")
    args = parser.parse_args()

    mode = "quick" if args.quick else "full"
    prof = PROFILES[mode]
    selected = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in selected if s not in TARGET_ORDER + EXTRA_PHASES]
    if unknown:
        sys.exit(f"unknown scenario(s) {unknown}; choose from {', '.join(TARGET_ORDER + EXTRA_PHASES)}")
    if "portkey" in selected:
        args.peers = True
    if not selected:
        selected = [k for k in TARGET_ORDER if (k != "portkey" or args.peers) and k not in BASELINE_KEYS and k not in REDIS_SCENARIOS[1:]] + EXTRA_PHASES
    if args.baseline:
        selected += [b for b, k in BASELINE_KEYS.items() if k in selected and b not in selected]

    chat_keys = [k for k in TARGET_ORDER if k in selected]
    if chat_keys and "yarp" not in chat_keys:
        chat_keys = sorted(chat_keys + ["yarp"], key=TARGET_ORDER.index)  # every ratio needs it
    stream_keys = [k for k in ("direct", "nginx", "yarp", "policies", "portkey") if "stream" in selected and (k in chat_keys or k in ("yarp", "policies"))]
    scaling_keys = [k for k in ("policies", "redis") if "scaling" in selected and (k == "policies" or (mode == "full" and k in chat_keys))]
    body_keys = ["yarp", "policies"] if "bodies" in selected else []
    needed = [k for k in TARGET_ORDER if k in chat_keys + stream_keys + scaling_keys + body_keys]

    os.makedirs(WORK, exist_ok=True)
    write(PIDS_FILE, "")
    facts = machine_facts(mode)
    files = make_bodies()
    results = {"chat": {}, "stream": {}, "scaling": {}, "bodies": {}, "notes": []}
    started = time.time()

    upstream_port = free_port()
    upstream = start_upstream(upstream_port)
    targets_by_key = {}
    try:
        for key in needed:
            log(f"starting {LABELS[key]}")
            t = start_target(key, args, upstream, upstream_port, files, results)
            if t is not None:
                targets_by_key[key] = t
        ours = [upstream] + [p for t in targets_by_key.values() for p in t.procs]
        chat_targets = {k: t for k, t in targets_by_key.items() if k in chat_keys}

        results["warmup_s"] = {}
        for key, t in targets_by_key.items():  # also those only used by the stream, scaling or body phases
            log(f"{key}: warm-up {prof['warmup']} s at {RATE} req/s, then saturated until its JIT is done")
            guarded(results, key, "warm-up", lambda: h2load(t.port, t.chat[0], t.chat[1], t.headers, RATE, RATE_CONNS, prof["warmup"]))
            if t.measured and jit_seconds(t.measured) > 0:
                results["warmup_s"][key] = guarded(results, key, "warm-up", lambda: warm_until_jitted(t, prof["jit_cap"]))
                log(f"{key}: JIT settled after {results['warmup_s'][key]} s saturated")
            else:
                guarded(results, key, "warm-up", lambda: wrk(t.port, t.chat[0], t.chat[1], t.headers, 2))
        fixed = {k: [] for k in chat_targets}
        sat = {k: [] for k in chat_targets}
        for rnd in range(prof["rounds"]):
            log(f"fixed rate {RATE} req/s, round {rnd + 1}/{prof['rounds']}: {', '.join(chat_targets)}")
            for key, t in chat_targets.items():
                r = guarded(results, key, "fixed-rate run", lambda: fixed_round(t, prof, key, rnd, ours))
                if isinstance(r, dict):
                    fixed[key].append(r)
        for rnd in range(prof["rounds"]):
            log(f"saturation, round {rnd + 1}/{prof['rounds']}")
            for key, t in chat_targets.items():
                r = guarded(results, key, "saturation run", lambda: sat_round(t, prof, ours))
                if isinstance(r, dict):
                    sat[key].append(r)
        for key, t in chat_targets.items():
            if fixed[key] and sat[key]:
                r = summarise_chat(fixed[key], sat[key])
                r["peak_rss_mb"] = t.measured.peak_rss_mb() if t.measured else None
                results["chat"][key] = r
                log(f"{key}: p50 {fmt(r['p50'])} ms, p99 {fmt(r['p99'])} ms, saturation {r['sat_rps']:.0f} req/s, "
                    f"CPU {fmt(r['cpu_us'], 1)} us/req, errors {r['errors']}, other load {r['other_cores']:.2f} cores")
            else:
                results["chat"][key] = "failed (see notes)"

        for key in stream_keys:
            if key in targets_by_key:
                results["stream"][key] = guarded(results, key, "stream", lambda: measure_stream(targets_by_key[key], prof, key, ours))
        for key in scaling_keys:
            if key in targets_by_key:
                sat_rps = results["chat"][key]["sat_rps"] if isinstance(results["chat"].get(key), dict) else 3000
                results["scaling"][key] = guarded(results, key, "scaling", lambda: measure_scaling(targets_by_key[key], prof, key, sat_rps, ours))
        body_targets = {k: targets_by_key[k] for k in body_keys if k in targets_by_key}
        if body_targets:
            results["bodies"] = guarded(results, "policies", "body sizes", lambda: measure_bodies(body_targets, prof, ours))
            if not isinstance(results["bodies"], dict):
                results["bodies"] = {}
    finally:
        for t in reversed(list(targets_by_key.values())):
            for p in reversed(t.procs):
                p.stop()
        upstream.stop()

    redis = results["chat"].get("redis")
    if isinstance(redis, dict) and (redis.get("redis_cpu_us") or 0) < 1:
        results["notes"].append(f"Redis used {redis['redis_cpu_us']:.2f} µs of CPU per request: the gateway made (almost) no Redis calls on the request path in this build.")
    noisy = [(k, i + 1) for k, r in results["chat"].items() if isinstance(r, dict)
             for i, x in enumerate(r["rounds"]["fixed"] + r["rounds"]["saturation"]) if x["other_cores"] > NOISY_CORES]
    if noisy:
        results["notes"].append(f"{len(noisy)} measured chat runs (fixed-rate or saturation) had more than {NOISY_CORES} cores of other "
                                "work on the machine; medians damp this, but compare with a quieter run before drawing conclusions "
                                "(every round with its \"other load\" is in bench/.work/last-run.json).")
    facts["load_after"] = os.getloadavg()
    results["notes"].append(f"Run took {time.time() - started:.0f} s. Raw figures (every round): bench/.work/last-run.json; per-request h2load logs: bench/.work/h2load-*.log.")
    report = render(facts, results, prof)
    write(os.path.join(WORK, "last-run.json"), json.dumps({"facts": facts, "results": results}, indent=2, default=str))
    name = f"{facts['day']}-{facts['sha']}{'-quick' if mode == 'quick' else ''}.md"
    write(os.path.join(BENCH, "results", name), report)
    write(os.path.join(BENCH, "results", "latest.md"), report)
    print()
    print(report)
    log(f"written bench/results/{name} and bench/results/latest.md")


if __name__ == "__main__":
    main()
