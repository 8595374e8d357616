-- wrk script: POSTs one body to one path, optionally with X-Run-Id values drawn from a set of runs.
--   BENCH_BODY      file with the request body (required)
--   BENCH_PATH      request path (default /v1/chat/completions)
--   BENCH_HEADERS   extra headers, "Name: value" separated by "|"
--   BENCH_RUNS      number of distinct X-Run-Id values (0 = send the headers as given)
--   BENCH_MODE      "random" (default) draws a run per request; "cycle" visits run 0..N-1 in order
--   BENCH_DELAY_MS  pause per connection between requests (a rough rate cap: connections * 1000 / delay)
-- done() prints one BENCH_RESULT line of JSON for the harness.

local function read_file(path)
  local f = assert(io.open(path, "rb"), "cannot open BENCH_BODY " .. tostring(path))
  local data = f:read("*a")
  f:close()
  return data
end

local body = read_file(os.getenv("BENCH_BODY"))
local path = os.getenv("BENCH_PATH") or "/v1/chat/completions"
local runs = tonumber(os.getenv("BENCH_RUNS") or "0")
local mode = os.getenv("BENCH_MODE") or "random"
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")

local headers = { ["Content-Type"] = "application/json" }
for pair in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^|]+") do
  local name, value = string.match(pair, "^%s*([^:]+):%s*(.-)%s*$")
  if name then
    headers[name] = value
  end
end

wrk.method = "POST"
wrk.body = body
wrk.headers = headers

local counter = 0
local fixed = nil

function init(args)
  math.randomseed(os.time())
  if runs == 0 then
    fixed = wrk.format("POST", path, headers, body)
  end
end

function request()
  if fixed then
    return fixed
  end
  local id
  if mode == "cycle" then
    id = counter % runs
    counter = counter + 1
  else
    id = math.random(0, runs - 1)
  end
  headers["X-Run-Id"] = "bench-run-" .. id
  return wrk.format("POST", path, headers, body)
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

function done(summary, latency, requests)
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
