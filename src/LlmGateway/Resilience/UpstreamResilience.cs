using System.Collections.Concurrent;
using LlmGateway.Configuration;
using LlmGateway.Forwarding;
using LlmGateway.Telemetry;
using Microsoft.Extensions.Logging;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;

namespace LlmGateway.Resilience;

/// <summary>
/// Runs the attempts at one upstream (provider + model) through a Polly pipeline: retry (honouring the wait
/// the provider asks for, else exponential backoff with jitter) around a circuit breaker, each attempt inside
/// the provider's bulkhead. A wait longer than the caps, a spent retry budget or an open circuit ends the
/// sequence at once so the caller can fall back. Nothing is retried once a byte reached the caller: the
/// transformer only reports a retryable failure when it sent nothing.
/// </summary>
internal sealed partial class UpstreamResilience
{
    private static readonly ResiliencePropertyKey<LlmCall> CallKey = new("llmgw.call");
    private static readonly TimeSpan RetryAfterHeadroom = TimeSpan.FromMilliseconds(10);
    private static readonly ResiliencePropertyKey<ResilienceOptions> OptionsKey = new("llmgw.options");

    private readonly ConcurrentDictionary<string, (CircuitBreakerOptions Options, int MaxAttempts, ResiliencePipeline<AttemptOutcome> Pipeline)> _pipelines = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Bulkhead> _bulkheads = new(StringComparer.Ordinal);
    private readonly GatewayMetrics _metrics;
    private readonly ILogger<UpstreamResilience> _logger;
    private readonly TimeProvider _time;

    public UpstreamResilience(GatewayMetrics metrics, ILogger<UpstreamResilience> logger, TimeProvider time)
    {
        _metrics = metrics;
        _logger = logger;
        _time = time;
        RetryBudget = new RetryBudget(time);
        RunRetries = new RunRetryBudgets(time);
    }

    public RetryBudget RetryBudget { get; }

    /// <summary>Retries taken per run (Gateway:Resilience:MaxRetriesPerRun), bounded in runs.</summary>
    public RunRetryBudgets RunRetries { get; }

    /// <summary>
    /// Starts the attempts at the call's current model: the caller awaits <see cref="Attempts.ExecuteAsync"/>
    /// itself, maps its outcome with <see cref="Attempts.Complete"/> and disposes the attempts.
    /// </summary>
    /// <remarks>
    /// Not one async method around the pipeline: every call goes async (the attempt is real I/O), so such a wrapper
    /// would allocate one more state machine per call. Without a bulkhead the pipeline awaits the attempt itself.
    /// </remarks>
    public Attempts Begin(ResilienceOptions options, LlmCall call, CancellationToken cancellationToken)
    {
        var model = call.ServedModel;
        var pipeline = PipelineFor(model.Upstream, options);
        var bulkhead = BulkheadFor(model.Provider);

        var context = ResilienceContextPool.Shared.Get(cancellationToken);
        context.Properties.Set(CallKey, call);
        context.Properties.Set(OptionsKey, options);
        return new Attempts(pipeline, bulkhead, context, options);
    }

    /// <summary>One call's attempts at one model: the pipeline, the provider's bulkhead and a pooled Polly context.</summary>
    internal readonly struct Attempts(ResiliencePipeline<AttemptOutcome> pipeline, Bulkhead? bulkhead, ResilienceContext context, ResilienceOptions options) : IDisposable
    {
        /// <summary>Runs <paramref name="attempt"/> until it delivers or the policy gives up.</summary>
        public ValueTask<Outcome<AttemptOutcome>> ExecuteAsync<TState>(Func<TState, ValueTask<Outcome<AttemptOutcome>>> attempt, TState state) =>
            bulkhead is null
                ? pipeline.ExecuteOutcomeAsync(static (_, s) => s.Attempt(s.State), context, (Attempt: attempt, State: state))
                : pipeline.ExecuteOutcomeAsync(
                    static async (ctx, s) =>
                    {
                        if (!await s.Bulkhead.TryEnterAsync(s.Options.AttemptTimeout, ctx.CancellationToken))
                        {
                            return Outcome.FromResult(new AttemptOutcome(AttemptKind.BulkheadFull, 503, null, "bulkhead"));
                        }

                        try
                        {
                            return await s.Attempt(s.State);
                        }
                        finally
                        {
                            s.Bulkhead.Exit();
                        }
                    },
                    context,
                    (Attempt: attempt, State: state, Bulkhead: bulkhead, Options: options));

        /// <summary>The outcome of <see cref="ExecuteAsync"/>, with an open circuit as an outcome of its own.</summary>
        public AttemptOutcome Complete(Outcome<AttemptOutcome> outcome)
        {
            if (outcome.Exception is BrokenCircuitException broken)
            {
                return new AttemptOutcome(AttemptKind.CircuitOpen, 503, broken.RetryAfter ?? options.CircuitBreaker.BreakDuration, "circuit_open");
            }

            if (outcome.Exception is IsolatedCircuitException)
            {
                return new AttemptOutcome(AttemptKind.CircuitOpen, 503, null, "circuit_open");
            }

            outcome.ThrowIfException();
            return outcome.Result;
        }

        /// <summary>Gives the Polly context back to its pool.</summary>
        public void Dispose() => ResilienceContextPool.Shared.Return(context);
    }

    private ResiliencePipeline<AttemptOutcome> PipelineFor(string upstream, ResilienceOptions options)
    {
        // Rebuilt only when its settings change, so a config reload keeps every circuit's state.
        if (_pipelines.TryGetValue(upstream, out var existing) && existing.Options == options.CircuitBreaker && existing.MaxAttempts == options.MaxAttempts)
        {
            return existing.Pipeline;
        }

        return BuildPipeline(upstream, options);
    }

    /// <remarks>Apart from <see cref="PipelineFor"/> so that the lambdas' closure over the upstream is only allocated when a pipeline is built, not on every call.</remarks>
    private ResiliencePipeline<AttemptOutcome> BuildPipeline(string upstream, ResilienceOptions options)
    {
        var breaker = options.CircuitBreaker;
        var builder = new ResiliencePipelineBuilder<AttemptOutcome> { TimeProvider = _time };
        if (options.MaxAttempts > 1)
        {
            builder.AddRetry(new RetryStrategyOptions<AttemptOutcome>
            {
                MaxRetryAttempts = options.MaxAttempts - 1,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = options.RetryBaseDelay,
                MaxDelay = options.MaxRetryWait,
                ShouldHandle = args => new ValueTask<bool>(ShouldRetry(args)),
                // Timers run on a 1 ms tick and may fire just before their due time: the headroom keeps a retry from
                // ever reaching the provider earlier than it asked.
                DelayGenerator = static args => new ValueTask<TimeSpan?>(args.Outcome.Result.RetryAfter is { } asked ? asked + RetryAfterHeadroom : null),
                OnRetry = args =>
                {
                    var call = args.Context.Properties.GetValue(CallKey, null!);
                    call.TotalRetryWait += args.RetryDelay;
                    _metrics.RecordRetry(upstream, args.Outcome.Result.Reason);
                    ResilienceLog.Retrying(_logger, call.RequestId, upstream, args.Outcome.Result.Reason, args.AttemptNumber + 1, args.RetryDelay.TotalMilliseconds);
                    Tracing.ServerSpans.RetryWait(args.RetryDelay, args.AttemptNumber + 1, args.Outcome.Result.Reason);
                    return default;
                },
            });
        }

        builder.AddCircuitBreaker(new CircuitBreakerStrategyOptions<AttemptOutcome>
        {
            FailureRatio = breaker.FailureRatio,
            SamplingDuration = breaker.SamplingDuration,
            MinimumThroughput = breaker.MinimumThroughput,
            BreakDuration = breaker.BreakDuration,

            // A provider that throttles (429) is alive; only errors and silence count against its circuit.
            ShouldHandle = static args => new ValueTask<bool>(args.Outcome.Result is { Kind: AttemptKind.Retryable, Status: not 429 }),
            OnOpened = args =>
            {
                _metrics.SetCircuitState(upstream, GatewayMetrics.CircuitOpen);
                ResilienceLog.CircuitOpened(_logger, upstream, args.BreakDuration.TotalSeconds);
                return default;
            },
            OnHalfOpened = _ =>
            {
                _metrics.SetCircuitState(upstream, GatewayMetrics.CircuitHalfOpen);
                ResilienceLog.CircuitHalfOpened(_logger, upstream);
                return default;
            },
            OnClosed = _ =>
            {
                _metrics.SetCircuitState(upstream, GatewayMetrics.CircuitClosed);
                ResilienceLog.CircuitClosed(_logger, upstream);
                return default;
            },
        });

        var pipeline = builder.Build();
        _pipelines[upstream] = (breaker, options.MaxAttempts, pipeline);
        _metrics.SetCircuitState(upstream, GatewayMetrics.CircuitClosed);
        return pipeline;
    }

    private bool ShouldRetry(RetryPredicateArguments<AttemptOutcome> args)
    {
        if (args.Outcome.Exception is not null || args.Outcome.Result.Kind != AttemptKind.Retryable)
        {
            return false;
        }

        var options = args.Context.Properties.GetValue(OptionsKey, null!);
        var call = args.Context.Properties.GetValue(CallKey, null!);
        if (args.AttemptNumber >= options.MaxAttempts - 1)
        {
            return false;
        }

        // A provider asking for a longer wait than we allow is not waited for: fall back or answer now.
        var asked = args.Outcome.Result.RetryAfter;
        if (asked > options.MaxRetryWait || call.TotalRetryWait + (asked ?? options.RetryBaseDelay) > options.MaxTotalRetryWait)
        {
            call.RetryWaitTooLong = true;
            return false;
        }

        if (call.RunId is { } run && options.MaxRetriesPerRun > 0 && !RunRetries.TryTake(run, options.MaxRetriesPerRun))
        {
            ResilienceLog.RetryRefused(_logger, call.RequestId, "the run's retry budget (Gateway:Resilience:MaxRetriesPerRun) is spent");
            return false;
        }

        if (!RetryBudget.TryTakeRetry(options.RetryBudgetRatio, options.MinRetriesPerSecond))
        {
            ResilienceLog.RetryRefused(_logger, call.RequestId, "the gateway-wide retry budget is spent (an outage is not multiplied)");
            return false;
        }

        return true;
    }

    private Bulkhead? BulkheadFor(ProviderRoute provider)
    {
        var options = provider.Options;
        if (options.MaxConcurrency <= 0)
        {
            return null;
        }

        var bulkhead = _bulkheads.GetOrAdd(provider.Name, static (_, o) => new Bulkhead(o.MaxConcurrency, o.MaxQueue), options);
        if (bulkhead.Limit != options.MaxConcurrency || bulkhead.Queue != options.MaxQueue)
        {
            // Resized by a config reload: calls already inside keep their old slots.
            bulkhead = new Bulkhead(options.MaxConcurrency, options.MaxQueue);
            _bulkheads[provider.Name] = bulkhead;
        }

        return bulkhead;
    }
}

internal static partial class ResilienceLog
{
    [LoggerMessage(EventId = GatewayEventIds.Retrying, EventName = "Retrying", Level = LogLevel.Information, Message = "Request {RequestId}: retrying {Upstream} after {Reason} (retry {Retry}) in {DelayMs} ms")]
    public static partial void Retrying(ILogger logger, string requestId, string upstream, string reason, int retry, double delayMs);

    [LoggerMessage(EventId = GatewayEventIds.RetryRefused, EventName = "RetryRefused", Level = LogLevel.Warning, Message = "Request {RequestId}: not retried: {Reason}")]
    public static partial void RetryRefused(ILogger logger, string requestId, string reason);

    [LoggerMessage(EventId = GatewayEventIds.CircuitOpened, EventName = "CircuitOpened", Level = LogLevel.Warning, Message = "Circuit of {Upstream} opened for {Seconds} s")]
    public static partial void CircuitOpened(ILogger logger, string upstream, double seconds);

    [LoggerMessage(EventId = GatewayEventIds.CircuitHalfOpened, EventName = "CircuitHalfOpened", Level = LogLevel.Information, Message = "Circuit of {Upstream} half-open: probing")]
    public static partial void CircuitHalfOpened(ILogger logger, string upstream);

    [LoggerMessage(EventId = GatewayEventIds.CircuitClosed, EventName = "CircuitClosed", Level = LogLevel.Information, Message = "Circuit of {Upstream} closed")]
    public static partial void CircuitClosed(ILogger logger, string upstream);
}
