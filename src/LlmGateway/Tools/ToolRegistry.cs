using System.Collections.Concurrent;
using System.Collections.Frozen;
using LlmGateway.Configuration;
using LlmGateway.Identity;
using LlmGateway.Telemetry;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;
using Yarp.ReverseProxy.Forwarder;

namespace LlmGateway.Tools;

/// <summary>
/// The tools of the active config, compiled once per config: routes with their headers, and each key's rules per tool.
/// Each tool's isolation state (concurrency slots, circuit breaker) lives in a <see cref="ToolRuntime"/> that survives
/// reloads unless the tool's isolation settings change, so a reload does not reset an open circuit.
/// </summary>
internal sealed class ToolRegistry
{
    private readonly GatewayConfigProvider _config;
    private readonly GatewayMetrics _metrics;
    private readonly ConcurrentDictionary<string, ToolRuntime> _runtimes = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private volatile ToolSnapshot? _snapshot;

    public ToolRegistry(GatewayConfigProvider config, GatewayMetrics metrics)
    {
        _config = config;
        _metrics = metrics;
    }

    public ToolSnapshot Current
    {
        get
        {
            var config = _config.Current;
            var snapshot = _snapshot;
            if (snapshot is not null && ReferenceEquals(snapshot.Config, config))
            {
                return snapshot;
            }

            lock (_lock)
            {
                if (_snapshot is null || !ReferenceEquals(_snapshot.Config, config))
                {
                    _snapshot = Build(config);
                }

                return _snapshot;
            }
        }
    }

    private ToolSnapshot Build(GatewayConfig config)
    {
        var routes = new Dictionary<string, ToolRoute>(StringComparer.Ordinal);
        foreach (var (name, options) in config.Options.Tools)
        {
            var settings = ToolRuntimeSettings.From(options);
            var runtime = _runtimes.AddOrUpdate(
                name,
                static (n, state) => new ToolRuntime(n, state.settings, state.metrics),
                static (n, existing, state) => existing.Settings == state.settings ? existing : new ToolRuntime(n, state.settings, state.metrics),
                (settings, metrics: _metrics));
            routes[name] = new ToolRoute(name, options, runtime);
        }

        var permissions = new Dictionary<KeyOptions, FrozenDictionary<string, ToolPermissions>>(ReferenceEqualityComparer.Instance);
        foreach (var key in config.Options.Keys)
        {
            var byTool = new Dictionary<string, ToolPermissions>(StringComparer.Ordinal);
            foreach (var (tool, rules) in key.Tools)
            {
                var compiled = new List<ToolRule>(rules.Count);
                for (var i = 0; i < rules.Count; i++)
                {
                    // The validator has refused any rule that does not parse; a config that loaded has none.
                    if (ToolRule.TryParse(tool, i, rules[i], out var rule, out _))
                    {
                        compiled.Add(rule!);
                    }
                }

                byTool[tool] = new ToolPermissions([.. compiled]);
            }

            permissions[key] = byTool.ToFrozenDictionary(StringComparer.Ordinal);
        }

        return new ToolSnapshot(config, routes.ToFrozenDictionary(StringComparer.Ordinal), permissions);
    }
}

/// <summary>The tools of one config.</summary>
internal sealed class ToolSnapshot(GatewayConfig config, FrozenDictionary<string, ToolRoute> tools, Dictionary<KeyOptions, FrozenDictionary<string, ToolPermissions>> permissions)
{
    public GatewayConfig Config { get; } = config;

    public FrozenDictionary<string, ToolRoute> Tools { get; } = tools;

    /// <summary>The caller's rules for the tool; null when its key has none (it may not call the tool).</summary>
    public ToolPermissions? PermissionsFor(CallerKey caller, string tool) =>
        permissions.TryGetValue(caller.Options, out var byTool) && byTool.TryGetValue(tool, out var rules) ? rules : null;
}

/// <summary>A tool as the request path needs it.</summary>
internal sealed class ToolRoute
{
    public ToolRoute(string name, ToolOptions options, ToolRuntime runtime)
    {
        Name = name;
        Options = options;
        Runtime = runtime;
        BaseUrl = options.BaseUrl!.TrimEnd('/');
        Headers = [.. options.Headers];
    }

    public string Name { get; }

    public ToolOptions Options { get; }

    public string BaseUrl { get; }

    /// <summary>Headers the gateway adds (credentials): values never logged.</summary>
    public KeyValuePair<string, string>[] Headers { get; }

    public ToolRuntime Runtime { get; }
}

/// <summary>The settings a <see cref="ToolRuntime"/> is built from; a change rebuilds it.</summary>
internal readonly record struct ToolRuntimeSettings(TimeSpan Timeout, int MaxConcurrency, int MaxQueue, int MaxAttempts, TimeSpan MaxRetryWait, ToolBreakerOptions Breaker)
{
    public static ToolRuntimeSettings From(ToolOptions options) =>
        new(options.Timeout, options.MaxConcurrency, options.MaxQueue, options.MaxAttempts, options.MaxRetryWait, options.Breaker);
}

/// <summary>
/// One tool's isolation: a bulkhead (concurrency slots plus a short queue) and one resilience pipeline, retry around a
/// circuit breaker, so a hanging or failing tool uses its own slots and opens its own circuit, never another's.
/// </summary>
internal sealed class ToolRuntime
{
    /// <summary>The call an attempt belongs to, for the retry predicate (whether retrying it is safe).</summary>
    public static readonly ResiliencePropertyKey<ToolCall> CallKey = new("llmgw.tool-call");

    private readonly SemaphoreSlim? _slots;
    private int _queued;

    public ToolRuntime(string name, ToolRuntimeSettings settings, GatewayMetrics metrics)
    {
        Settings = settings;
        if (settings.MaxConcurrency > 0)
        {
            _slots = new SemaphoreSlim(settings.MaxConcurrency, settings.MaxConcurrency);
        }

        var upstream = "tool:" + name;
        var builder = new ResiliencePipelineBuilder<ToolAttempt>();
        if (settings.MaxAttempts > 1)
        {
            builder.AddRetry(new RetryStrategyOptions<ToolAttempt>
            {
                MaxRetryAttempts = settings.MaxAttempts - 1,
                BackoffType = DelayBackoffType.Exponential,
                Delay = TimeSpan.FromMilliseconds(100),
                MaxDelay = settings.MaxRetryWait,
                UseJitter = true,
                ShouldHandle = static args => ValueTask.FromResult(args.Outcome.Exception is null && ShouldRetry(args.Outcome.Result, args.Context)),
                DelayGenerator = args => ValueTask.FromResult(args.Outcome.Result.RetryAfter is { } after ? Min(after, settings.MaxRetryWait) : (TimeSpan?)null),
                OnRetry = args =>
                {
                    metrics.RecordRetry(upstream, args.Outcome.Result.Reason);
                    Tracing.ServerSpans.RetryWait(args.RetryDelay, args.AttemptNumber + 1, args.Outcome.Result.Reason);
                    return ValueTask.CompletedTask;
                },
            });
        }

        if (settings.Breaker.FailureRatio > 0)
        {
            builder.AddCircuitBreaker(new CircuitBreakerStrategyOptions<ToolAttempt>
            {
                FailureRatio = settings.Breaker.FailureRatio,
                MinimumThroughput = settings.Breaker.MinimumThroughput,
                SamplingDuration = settings.Breaker.SamplingDuration,
                BreakDuration = settings.Breaker.BreakDuration,
                ShouldHandle = static args => ValueTask.FromResult(args.Outcome.Exception is null && args.Outcome.Result.IsToolFailure),
                OnOpened = _ =>
                {
                    metrics.SetCircuitState(upstream, GatewayMetrics.CircuitOpen);
                    return ValueTask.CompletedTask;
                },
                OnHalfOpened = _ =>
                {
                    metrics.SetCircuitState(upstream, GatewayMetrics.CircuitHalfOpen);
                    return ValueTask.CompletedTask;
                },
                OnClosed = _ =>
                {
                    metrics.SetCircuitState(upstream, GatewayMetrics.CircuitClosed);
                    return ValueTask.CompletedTask;
                },
            });
        }

        Pipeline = builder.Build();
        RequestConfig = new ForwarderRequestConfig
        {
            // The attempt timeout is the gateway's own; YARP's activity timeout only backstops a stalled streamed body.
            ActivityTimeout = settings.Timeout + TimeSpan.FromSeconds(1),
            AllowResponseBuffering = false,
        };
    }

    public ToolRuntimeSettings Settings { get; }

    public ResiliencePipeline<ToolAttempt> Pipeline { get; }

    public ForwarderRequestConfig RequestConfig { get; }

    /// <summary>Takes a concurrency slot, waiting (at most <paramref name="wait"/>) only while the queue has room.</summary>
    public async ValueTask<bool> EnterAsync(TimeSpan wait, CancellationToken cancellationToken)
    {
        if (_slots is null || _slots.Wait(0, CancellationToken.None))
        {
            return true;
        }

        if (Interlocked.Increment(ref _queued) > Settings.MaxQueue)
        {
            Interlocked.Decrement(ref _queued);
            return false;
        }

        try
        {
            return await _slots.WaitAsync(wait, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _queued);
        }
    }

    public void Exit() => _slots?.Release();

    /// <summary>
    /// A failure is retried only where that cannot repeat a side effect: a refused connection never reached the tool;
    /// anything else (timeout, broken connection, transient status) only for idempotent methods or keyed calls.
    /// </summary>
    private static bool ShouldRetry(ToolAttempt attempt, ResilienceContext context)
    {
        if (attempt.Kind == ToolAttemptKind.ConnectionRefused)
        {
            return true;
        }

        return attempt.Kind is ToolAttemptKind.Timeout or ToolAttemptKind.ConnectionFailed or ToolAttemptKind.HeldBack
            && context.Properties.TryGetValue(CallKey, out var call) && call.RetrySafe;
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;
}

/// <summary>How one attempt ended.</summary>
internal enum ToolAttemptKind
{
    /// <summary>The tool's response went to the caller.</summary>
    Response,

    /// <summary>A transient status held back from the caller because a retry follows.</summary>
    HeldBack,
    Timeout,

    /// <summary>The connection was refused: the request provably never reached the tool.</summary>
    ConnectionRefused,
    ConnectionFailed,

    /// <summary>The response had started reaching the caller when the tool's connection broke.</summary>
    ResponseBroken,
    ClientAborted,
}

/// <summary>The result of one attempt, for the retry and circuit-breaker predicates.</summary>
internal readonly record struct ToolAttempt(ToolAttemptKind Kind, int Status = 0, TimeSpan? RetryAfter = null)
{
    /// <summary>Counts against the tool's circuit: it did not answer, or answered 5xx.</summary>
    public bool IsToolFailure => Kind switch
    {
        ToolAttemptKind.Response or ToolAttemptKind.HeldBack => Status >= 500,
        ToolAttemptKind.ClientAborted => false,
        _ => true,
    };

    public string Reason => Kind switch
    {
        ToolAttemptKind.HeldBack => Status.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ToolAttemptKind.Timeout => "timeout",
        ToolAttemptKind.ConnectionRefused => "connection_refused",
        _ => "connection_failed",
    };
}
