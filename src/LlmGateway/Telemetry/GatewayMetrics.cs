using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;

namespace LlmGateway.Telemetry;

/// <summary>
/// The gateway's own instruments (CONTRACT.md, "Prometheus metrics"). Counter names omit <c>_total</c>:
/// the Prometheus bridge appends it, as OpenTelemetry's exporters do. Recording methods allocate nothing.
/// </summary>
internal sealed class GatewayMetrics
{
    public const string MeterName = "LlmGateway";

    public const int CircuitClosed = 0;
    public const int CircuitHalfOpen = 1;
    public const int CircuitOpen = 2;

    // Durations of whole requests and upstream calls reach minutes (long completions, slow providers).
    private static readonly double[] LongDurationBuckets =
        [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300];

    // The gateway's own overhead is tens of microseconds when healthy.
    private static readonly double[] OverheadBuckets =
        [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

    private static readonly double[] TimeToFirstTokenBuckets =
        [0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 60];

    private static readonly double[] ToolDurationBuckets =
        [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    private static readonly string[] StatusCodeStrings = CreateStatusCodeStrings();

    private readonly Counter<long> _requests;
    private readonly Counter<long> _tokens;
    private readonly Counter<double> _cost;
    private readonly Histogram<double> _requestDuration;
    private readonly Histogram<double> _upstreamDuration;
    private readonly Histogram<double> _overhead;
    private readonly Histogram<double> _timeToFirstToken;
    private readonly Counter<long> _rejections;
    private readonly Counter<long> _cacheRequests;
    private readonly Counter<double> _cacheSaved;
    private readonly Counter<long> _retries;
    private readonly Counter<long> _downgrades;
    private readonly Counter<long> _configReloads;
    private readonly Counter<long> _toolCalls;
    private readonly Histogram<double> _toolDuration;
    private readonly Counter<long> _idempotentReplays;
    private readonly Counter<long> _storeUnavailable;
    private long _leaseReturnsLost;
    private readonly Counter<long> _runBlocks;
    private long _leaseBlocksClosed;

    private readonly ConcurrentDictionary<string, int> _circuitStates = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, BudgetState> _budgets = new(StringComparer.Ordinal);
    private volatile string? _configVersion;
    private volatile Func<(long Bytes, int Runs)>? _recordings;

    /// <param name="auditLog">The Gateway:AuditLog file's writer, when one is configured: its drops are counted.</param>
    public GatewayMetrics(IMeterFactory meterFactory, AuditFileLoggerProvider? auditLog = null)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);

        var meter = meterFactory.Create(MeterName);

        _requests = meter.CreateCounter<long>("llm_gateway_requests", "{request}",
            "Requests answered, by caller, model and HTTP status returned to the caller.");
        _tokens = meter.CreateCounter<long>("llm_gateway_tokens", "{token}",
            "Tokens used, by caller, model and type (input, output, cached_input).");
        _cost = meter.CreateCounter<double>("llm_gateway_cost_usd", "USD",
            "Cost of upstream calls in US dollars, by caller, team and model.");
        _requestDuration = CreateDurationHistogram(meter, "llm_gateway_request_duration_seconds",
            "Time from receiving a request to completing its response, by model.", LongDurationBuckets);
        _upstreamDuration = CreateDurationHistogram(meter, "llm_gateway_upstream_duration_seconds",
            "Duration of calls to upstream providers, by provider, model and deployment.", LongDurationBuckets);
        _overhead = CreateDurationHistogram(meter, "llm_gateway_overhead_seconds",
            "Time the gateway itself adds to a request, upstream time excluded.", OverheadBuckets);
        _timeToFirstToken = CreateDurationHistogram(meter, "llm_gateway_time_to_first_token_seconds",
            "Time from receiving a streaming request to sending its first token, by model.", TimeToFirstTokenBuckets);
        _rejections = meter.CreateCounter<long>("llm_gateway_rejections", "{request}",
            "Requests rejected by the gateway, by caller and error code.");
        _cacheRequests = meter.CreateCounter<long>("llm_gateway_cache_requests", "{request}",
            "Response cache lookups, by model and result (hit, miss, bypass).");
        _cacheSaved = meter.CreateCounter<double>("llm_gateway_cache_saved_usd", "USD",
            "Upstream cost avoided by cache hits in US dollars, by model.");
        _retries = meter.CreateCounter<long>("llm_gateway_retries", "{retry}",
            "Retried upstream calls, by upstream, reason and deployment.");
        _downgrades = meter.CreateCounter<long>("llm_gateway_downgrades", "{request}",
            "Requests served by a cheaper model than asked for, by models and reason.");
        _configReloads = meter.CreateCounter<long>("llm_gateway_config_reloads", "{reload}",
            "Configuration reloads, by result (success, failure).");
        _storeUnavailable = meter.CreateCounter<long>("llm_gateway_store_unavailable", "{request}",
            "Admissions the budget store could not decide in time, by the policy applied (allowed or denied) and reason (timeout, replicas: too few acknowledged the write, error).");
        // Observed, so both exist at 0 from the first scrape: increase() then sees the first loss (a series born at 3 shows none).
        meter.CreateObservableCounter("llm_gateway_lease_returns_lost", () => Volatile.Read(ref _leaseReturnsLost), "{return}",
            "Lease block returns given up (Redis did not confirm them within 60 s, or the gateway stopped first): their calls' settled spend is not charged.");
        meter.CreateObservableCounter("llm_gateway_lease_blocks_closed_on_connection_loss", () => Volatile.Read(ref _leaseBlocksClosed), "{event}",
            "Lost Redis connections or configuration changes (fail-over, moved slots) that closed every open lease block.");
        _runBlocks = meter.CreateCounter<long>("llm_gateway_run_blocks", "{event}",
            "Exclusive run blocks (leases): runs this replica claimed, and let go (written back), by event (claimed, released).");
        _toolCalls = meter.CreateCounter<long>("llm_gateway_tool_calls", "{call}",
            "Tool calls proxied, by tool, HTTP method and status.");
        _toolDuration = CreateDurationHistogram(meter, "llm_gateway_tool_duration_seconds",
            "Duration of tool calls, by tool.", ToolDurationBuckets);
        _idempotentReplays = meter.CreateCounter<long>("llm_gateway_idempotent_replays", "{call}",
            "Tool calls answered from a stored result for a repeated idempotency key, by tool.");
        Drift = new Drift.DriftMetrics(meter);
        Runs = new LlmGateway.Runs.RunMetrics(meter);

        meter.CreateObservableCounter("llm_gateway_audit_dropped", () => auditLog?.Dropped ?? 0, "{record}",
            "Audit records not written to the Gateway:AuditLog file: its queue was full, or the gateway stopped while the file could not be written.");
        meter.CreateObservableGauge("llm_gateway_config_info", ObserveConfigInfo, unit: null,
            "The active configuration version (1 for the active version only).");
        meter.CreateObservableGauge("llm_gateway_circuit_state", ObserveCircuitStates, unit: null,
            "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open.");
        meter.CreateObservableGauge("llm_gateway_budget_spent_usd", () => ObserveBudgets(limit: false), "USD",
            "Spend in the current budget period in US dollars, by caller.");
        meter.CreateObservableGauge("llm_gateway_budget_limit_usd", () => ObserveBudgets(limit: true), "USD",
            "Budget limit for the current period in US dollars, by caller (0 means no limit).");
        meter.CreateObservableGauge("llm_gateway_recordings_bytes", () => ObserveRecordings(bytes: true), "By",
            "Bytes the run recordings kept in this gateway's memory take (Gateway:Cache:RecordingMaxBytes).");
        meter.CreateObservableGauge("llm_gateway_recordings_runs", () => ObserveRecordings(bytes: false), unit: null,
            "Run recordings kept in this gateway's memory (Gateway:Cache:RecordingMaxRuns).");
    }

    /// <summary>The drift signals' instruments (served versions, finish reasons, output length, tool choice).</summary>
    public Drift.DriftMetrics Drift { get; }

    /// <summary>The run-level instruments, observed when a run ends (outcomes, cost, calls, duration).</summary>
    public LlmGateway.Runs.RunMetrics Runs { get; }

    /// <summary>A request answered to the caller: counts it and records its duration.</summary>
    public void RecordRequest(string user, string model, int status, double seconds)
    {
        _requests.Add(1, new TagList
        {
            { TelemetryTags.User, user },
            { TelemetryTags.Model, model },
            { TelemetryTags.Status, StatusCodeString(status) },
        });
        _requestDuration.Record(seconds, new KeyValuePair<string, object?>(TelemetryTags.Model, model));
    }

    /// <summary>Token usage of one request; zero counts create no series.</summary>
    public void RecordTokens(string user, string model, long input, long output, long cachedInput)
    {
        AddTokens(user, model, TelemetryTagValues.Input, input);
        AddTokens(user, model, TelemetryTagValues.Output, output);
        AddTokens(user, model, TelemetryTagValues.CachedInput, cachedInput);
    }

    /// <summary>Anthropic's usage: uncached input, output, cache reads (type cache_read) and cache writes (type cache_write).</summary>
    public void RecordMessagesTokens(string user, string model, long input, long output, long cacheRead, long cacheWrite)
    {
        AddTokens(user, model, TelemetryTagValues.Input, input);
        AddTokens(user, model, TelemetryTagValues.Output, output);
        AddTokens(user, model, TelemetryTagValues.CacheRead, cacheRead);
        AddTokens(user, model, TelemetryTagValues.CacheWrite, cacheWrite);
    }

    public void RecordCost(string user, string? team, string model, decimal usd)
    {
        if (usd <= 0)
        {
            return;
        }

        _cost.Add((double)usd, new TagList
        {
            { TelemetryTags.User, user },
            { TelemetryTags.Team, team },
            { TelemetryTags.Model, model },
        });
    }

    /// <param name="deployment">The deployment that served (the provider's name for a model with Provider alone).</param>
    public void RecordUpstreamDuration(string provider, string model, string deployment, double seconds) =>
        _upstreamDuration.Record(seconds, new TagList
        {
            { TelemetryTags.Provider, provider },
            { TelemetryTags.Model, model },
            { TelemetryTags.Deployment, deployment },
        });

    public void RecordOverhead(double seconds) => _overhead.Record(seconds);

    public void RecordTimeToFirstToken(string model, double seconds) =>
        _timeToFirstToken.Record(seconds, new KeyValuePair<string, object?>(TelemetryTags.Model, model));

    /// <param name="reason">The error code returned to the caller.</param>
    public void RecordRejection(string user, string reason) =>
        _rejections.Add(1, new TagList
        {
            { TelemetryTags.User, user },
            { TelemetryTags.Reason, reason },
        });

    /// <param name="result">One of <see cref="TelemetryTagValues.Hit"/>, <see cref="TelemetryTagValues.Miss"/>, <see cref="TelemetryTagValues.Bypass"/>.</param>
    public void RecordCacheRequest(string model, string result) =>
        _cacheRequests.Add(1, new TagList
        {
            { TelemetryTags.Model, model },
            { TelemetryTags.Result, result },
        });

    public void RecordCacheSaved(string model, decimal usd)
    {
        if (usd > 0)
        {
            _cacheSaved.Add((double)usd, new KeyValuePair<string, object?>(TelemetryTags.Model, model));
        }
    }

    /// <param name="deployment">The deployment whose attempt failed (the provider's name for a model with Provider alone; empty for tools).</param>
    public void RecordRetry(string upstream, string reason, string deployment = "") =>
        _retries.Add(1, new TagList
        {
            { TelemetryTags.Upstream, upstream },
            { TelemetryTags.Reason, reason },
            { TelemetryTags.Deployment, deployment },
        });

    public void RecordDowngrade(string from, string to, string reason) =>
        _downgrades.Add(1, new TagList
        {
            { TelemetryTags.From, from },
            { TelemetryTags.To, to },
            { TelemetryTags.Reason, reason },
        });

    /// <summary>The budget store could not answer an admission in time; <paramref name="allowed"/> is the policy applied.</summary>
    /// <param name="cause">What the store threw: its <see cref="Redis.StoreFailureReason"/> is the reason tag.</param>
    public void RecordStoreUnavailable(bool allowed, Exception cause) =>
        _storeUnavailable.Add(1, new KeyValuePair<string, object?>(TelemetryTags.Result, allowed ? "allowed" : "denied"),
            new KeyValuePair<string, object?>(TelemetryTags.Reason, Redis.StoreFailureReason.Of(cause)));

    /// <summary>Lease block returns given up (leased store): their calls' spend was not charged.</summary>
    public void LeaseReturnsLost(long count) => Interlocked.Add(ref _leaseReturnsLost, count);

    /// <summary>This replica claimed a run's exclusive block (<paramref name="claimed"/>) or let one go, written back.</summary>
    public void RecordRunBlock(bool claimed) =>
        _runBlocks.Add(1, new KeyValuePair<string, object?>("event", claimed ? "claimed" : "released"));

    /// <summary>A lost Redis connection or a configuration change closed every open lease block.</summary>
    public void LeaseBlocksClosedOnConnectionLoss() => Interlocked.Increment(ref _leaseBlocksClosed);

    public void RecordConfigReload(bool success) =>
        _configReloads.Add(1, new KeyValuePair<string, object?>(
            TelemetryTags.Result, success ? TelemetryTagValues.Success : TelemetryTagValues.Failure));

    /// <summary>A proxied tool call: counts it and records its duration.</summary>
    public void RecordToolCall(string tool, string method, int status, double seconds)
    {
        _toolCalls.Add(1, new TagList
        {
            { TelemetryTags.Tool, tool },
            { TelemetryTags.Method, method },
            { TelemetryTags.Status, StatusCodeString(status) },
        });
        _toolDuration.Record(seconds, new KeyValuePair<string, object?>(TelemetryTags.Tool, tool));
    }

    public void RecordIdempotentReplay(string tool) =>
        _idempotentReplays.Add(1, new KeyValuePair<string, object?>(TelemetryTags.Tool, tool));

    /// <summary>Makes <paramref name="version"/> the only version reported by <c>llm_gateway_config_info</c>.</summary>
    public void SetConfigVersion(string version)
    {
        ArgumentNullException.ThrowIfNull(version);
        _configVersion = version;
    }

    /// <param name="state"><see cref="CircuitClosed"/>, <see cref="CircuitHalfOpen"/> or <see cref="CircuitOpen"/>.</param>
    public void SetCircuitState(string upstream, int state)
    {
        ArgumentNullException.ThrowIfNull(upstream);
        _circuitStates[upstream] = state;
    }

    /// <summary>Stops reporting an upstream that is no longer configured.</summary>
    public void RemoveCircuitState(string upstream) => _circuitStates.TryRemove(upstream, out _);

    /// <summary>Spend and limit (0 = no limit) of a caller's current budget period.</summary>
    public void SetBudget(string user, double spent, double limit)
    {
        ArgumentNullException.ThrowIfNull(user);

        // Updated in place: replacing a two-double struct value would allocate a new dictionary node on every call.
        var state = _budgets.GetOrAdd(user, static _ => new BudgetState());
        lock (state)
        {
            state.Spent = spent;
            state.Limit = limit;
        }
    }

    /// <summary>Stops reporting a caller that is no longer configured.</summary>
    public void RemoveBudget(string user) => _budgets.TryRemove(user, out _);

    internal static string StatusCodeString(int status) =>
        (uint)(status - 100) < (uint)StatusCodeStrings.Length
            ? StatusCodeStrings[status - 100]
            : status.ToString(CultureInfo.InvariantCulture);

    private void AddTokens(string user, string model, string type, long count)
    {
        if (count <= 0)
        {
            return;
        }

        _tokens.Add(count, new TagList
        {
            { TelemetryTags.User, user },
            { TelemetryTags.Model, model },
            { TelemetryTags.Type, type },
        });
    }

    private static Histogram<double> CreateDurationHistogram(Meter meter, string name, string description, double[] buckets) =>
        meter.CreateHistogram(name, "s", description, tags: null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = buckets });

    /// <summary>Where the recordings gauges read the in-memory recording store's size; without one they have no series.</summary>
    public void ObserveRecordings(Func<(long Bytes, int Runs)> size) => _recordings = size;

    private IEnumerable<Measurement<long>> ObserveRecordings(bool bytes)
    {
        if (_recordings is { } size)
        {
            var (total, runs) = size();
            yield return new Measurement<long>(bytes ? total : runs);
        }
    }

    private IEnumerable<Measurement<int>> ObserveConfigInfo()
    {
        if (_configVersion is { } version)
        {
            yield return new Measurement<int>(1, new KeyValuePair<string, object?>(TelemetryTags.Version, version));
        }
    }

    private IEnumerable<Measurement<int>> ObserveCircuitStates()
    {
        foreach (var (upstream, state) in _circuitStates)
        {
            yield return new Measurement<int>(state, new KeyValuePair<string, object?>(TelemetryTags.Upstream, upstream));
        }
    }

    private IEnumerable<Measurement<double>> ObserveBudgets(bool limit)
    {
        foreach (var (user, budget) in _budgets)
        {
            double value;
            lock (budget)
            {
                value = limit ? budget.Limit : budget.Spent;
            }

            yield return new Measurement<double>(value, new KeyValuePair<string, object?>(TelemetryTags.User, user));
        }
    }

    private static string[] CreateStatusCodeStrings()
    {
        var strings = new string[500];
        for (var i = 0; i < strings.Length; i++)
        {
            strings[i] = (i + 100).ToString(CultureInfo.InvariantCulture);
        }

        return strings;
    }

    /// <summary>One caller's budget gauge; written under its own lock so spend and limit are read as a pair.</summary>
    private sealed class BudgetState
    {
        public double Spent;
        public double Limit;
    }
}
