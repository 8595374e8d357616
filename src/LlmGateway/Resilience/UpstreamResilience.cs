using System.Collections.Concurrent;
using LlmGateway.Budgets;
using LlmGateway.Configuration;
using LlmGateway.Deployments;
using LlmGateway.Errors;
using LlmGateway.Forwarding;
using LlmGateway.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;

namespace LlmGateway.Resilience;

/// <summary>
/// Runs the attempts of one call at one model through a Polly pipeline: retry (honouring the wait the provider asks
/// for, else exponential backoff with jitter) around, per attempt, the choice of a deployment, that deployment's
/// circuit breaker and its provider's bulkhead. A retry goes to another deployment of the model first, with no wait,
/// while one the call has not seen fail can take it; it waits only when every deployment failed for this call. A wait
/// longer than the caps, a spent retry budget or no deployment able to take the call ends the sequence at once so the
/// caller can fall back. Nothing is retried once a byte reached the caller: the transformer only reports a retryable
/// failure when it sent nothing.
/// </summary>
internal sealed partial class UpstreamResilience : IDeploymentHealth
{
    private static readonly ResiliencePropertyKey<LlmCall> CallKey = new("llmgw.call");
    private static readonly TimeSpan RetryAfterHeadroom = TimeSpan.FromMilliseconds(10);
    private static readonly ResiliencePropertyKey<ResilienceOptions> OptionsKey = new("llmgw.options");

    private readonly ConcurrentDictionary<string, Breaker> _breakers = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Bulkhead> _bulkheads = new(StringComparer.Ordinal);
    private readonly GatewayMetrics _metrics;
    private readonly ILogger<UpstreamResilience> _logger;
    private readonly TimeProvider _time;
    private readonly DeploymentChooser _chooser;
    private readonly IDeploymentRateStore _rates;
    private readonly GatewayConfigProvider _config;
    private RetryPipeline? _retry;

    public UpstreamResilience(GatewayMetrics metrics, ILogger<UpstreamResilience> logger, TimeProvider time, DeploymentChooser chooser, IDeploymentRateStore rates, GatewayConfigProvider config, DeploymentMetrics deploymentMetrics)
    {
        _metrics = metrics;
        _logger = logger;
        _time = time;
        _chooser = chooser;
        _rates = rates;
        _config = config;
        _ = deploymentMetrics; // created with the resilience layer: its gauge reads the chooser's in-flight counts
        RetryBudget = new RetryBudget(time);
        RunRetries = new RunRetryBudgets(time);
    }

    public RetryBudget RetryBudget { get; }

    /// <summary>Retries taken per run (Gateway:Resilience:MaxRetriesPerRun), bounded in runs.</summary>
    public RunRetryBudgets RunRetries { get; }

    /// <summary>The deployments' Rpm/Tpm windows (settled by the handler once the call's usage is known).</summary>
    public IDeploymentRateStore Rates => _rates;

    /// <summary>
    /// Starts the attempts at the call's current model: the caller awaits <see cref="Attempts.ExecuteAsync"/>
    /// itself, maps its outcome with <see cref="Attempts.Complete"/> and disposes the attempts.
    /// </summary>
    public Attempts Begin(ResilienceOptions options, LlmCall call, CancellationToken cancellationToken)
    {
        var pipeline = RetryPipelineFor(options);
        var context = ResilienceContextPool.Shared.Get(cancellationToken);
        context.Properties.Set(CallKey, call);
        context.Properties.Set(OptionsKey, options);
        return new Attempts(this, pipeline, context, options);
    }

    /// <summary>One call's attempts at one model: the retry pipeline and a pooled Polly context.</summary>
    internal readonly struct Attempts(UpstreamResilience owner, ResiliencePipeline<AttemptOutcome> pipeline, ResilienceContext context, ResilienceOptions options) : IDisposable
    {
        /// <summary>Runs <paramref name="attempt"/> until it delivers or the policy gives up.</summary>
        public ValueTask<Outcome<AttemptOutcome>> ExecuteAsync<TState>(Func<TState, ValueTask<Outcome<AttemptOutcome>>> attempt, TState state) =>
            pipeline.ExecuteOutcomeAsync(
                static (ctx, s) => s.Owner.AttemptAsync(ctx, s.Attempt, s.State, s.Options),
                context,
                (Owner: owner, Attempt: attempt, State: state, Options: options));

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

    /// <summary>One attempt: choose a deployment, then run the attempt through its circuit and its provider's bulkhead.</summary>
    private async ValueTask<Outcome<AttemptOutcome>> AttemptAsync<TState>(ResilienceContext context, Func<TState, ValueTask<Outcome<AttemptOutcome>>> attempt, TState state, ResilienceOptions options)
    {
        var call = context.Properties.GetValue(CallKey, null!);
        var model = call.ServedModel;
        var fast = model.Deployments.Length == 1 && !model.Deployments[0].HasRateLimits;
        var (deployment, refusal) = fast
            ? (model.Deployments[0], default)
            : await ChooseAsync(call, model, context.CancellationToken).ConfigureAwait(false);
        if (deployment is null)
        {
            return Outcome.FromResult(refusal);
        }

        call.Deployment = deployment;
        var breaker = BreakerFor(deployment, options);
        var bulkhead = BulkheadFor(deployment.Provider);
        var inFlight = _chooser.StateOf(deployment);
        if (fast)
        {
            // ChooseAsync counts what it picks in flight itself.
            inFlight.Enter();
        }
        var inner = ResilienceContextPool.Shared.Get(context.CancellationToken);
        try
        {
            var outcome = bulkhead is null
                ? await breaker.Pipeline.ExecuteOutcomeAsync(static (_, s) => s.Attempt(s.State), inner, (Attempt: attempt, State: state)).ConfigureAwait(false)
                : await breaker.Pipeline.ExecuteOutcomeAsync(
                    static async (ctx, s) =>
                    {
                        if (!await s.Bulkhead.TryEnterAsync(s.Options.AttemptTimeout, ctx.CancellationToken).ConfigureAwait(false))
                        {
                            return Outcome.FromResult(new AttemptOutcome(AttemptKind.BulkheadFull, 503, null, "bulkhead"));
                        }

                        try
                        {
                            return await s.Attempt(s.State).ConfigureAwait(false);
                        }
                        finally
                        {
                            s.Bulkhead.Exit();
                        }
                    },
                    inner,
                    (Attempt: attempt, State: state, Bulkhead: bulkhead, Options: options)).ConfigureAwait(false);

            if (model.Deployments.Length > 1)
            {
                if (outcome.Exception is BrokenCircuitException or IsolatedCircuitException)
                {
                    // Opened between the choice and the attempt (or a probe is already out): another deployment may take it.
                    outcome = Outcome.FromResult(new AttemptOutcome(AttemptKind.Retryable, 503, null, "circuit_open"));
                }
                else if (outcome.Exception is null && outcome.Result.Kind == AttemptKind.BulkheadFull)
                {
                    outcome = Outcome.FromResult(new AttemptOutcome(AttemptKind.Retryable, 503, null, "bulkhead"));
                }
            }

            if (outcome.Exception is null && outcome.Result.Kind == AttemptKind.Retryable)
            {
                // A 429 or a failure here: the next attempt prefers the model's other deployments.
                call.FailedDeployments |= 1UL << deployment.Index;
            }

            return outcome;
        }
        finally
        {
            ResilienceContextPool.Shared.Return(inner);
            inFlight.Exit();
        }
    }

    private ResiliencePipeline<AttemptOutcome> RetryPipelineFor(ResilienceOptions options)
    {
        // Rebuilt only when the settings change; it holds no state (the circuits are per deployment, below).
        if (Volatile.Read(ref _retry) is { } existing && existing.Options == options)
        {
            return existing.Pipeline;
        }

        return BuildRetryPipeline(options);
    }

    private ResiliencePipeline<AttemptOutcome> BuildRetryPipeline(ResilienceOptions options)
    {
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
                // Another deployment that can take the call: go there now. Else the provider's ask; timers run on a 1 ms
                // tick and may fire just before their due time: the headroom keeps a retry from ever reaching the
                // provider earlier than it asked.
                DelayGenerator = args => new ValueTask<TimeSpan?>(
                    HasFreeDeployment(args.Context.Properties.GetValue(CallKey, null!)) ? TimeSpan.Zero
                    : args.Outcome.Result.RetryAfter is { } asked ? asked + RetryAfterHeadroom : null),
                OnRetry = args =>
                {
                    var call = args.Context.Properties.GetValue(CallKey, null!);
                    var deployment = call.Deployment ?? call.ServedModel.Deployments[0];
                    call.TotalRetryWait += args.RetryDelay;
                    _metrics.RecordRetry(deployment.Upstream, args.Outcome.Result.Reason, deployment.Name);
                    ResilienceLog.Retrying(_logger, call.RequestId, deployment.Upstream, args.Outcome.Result.Reason, args.AttemptNumber + 1, args.RetryDelay.TotalMilliseconds);
                    Tracing.ServerSpans.RetryWait(args.RetryDelay, args.AttemptNumber + 1, args.Outcome.Result.Reason);
                    return default;
                },
            });
        }

        var pipeline = builder.Build();

        // One reference, swapped whole: a reader never pairs one config's options with another's pipeline.
        Volatile.Write(ref _retry, new RetryPipeline(options, pipeline));
        return pipeline;
    }

    private sealed record RetryPipeline(ResilienceOptions Options, ResiliencePipeline<AttemptOutcome> Pipeline);

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

        // A provider asking for a longer wait than we allow is not waited for: fall back or answer now. Another
        // deployment that can take the call needs no wait at all.
        var asked = args.Outcome.Result.RetryAfter;
        if (!HasFreeDeployment(call) && (asked > options.MaxRetryWait || call.TotalRetryWait + (asked ?? options.RetryBaseDelay) > options.MaxTotalRetryWait))
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

    [LoggerMessage(EventId = GatewayEventIds.DeploymentStoreUnavailable, EventName = "DeploymentStoreUnavailable", Level = LogLevel.Warning, Message = "Request {RequestId}: the deployment rate store is unavailable; policy {Policy}: {Detail}")]
    public static partial void DeploymentStoreUnavailable(ILogger logger, string requestId, string policy, string detail);

    [LoggerMessage(EventId = GatewayEventIds.CircuitClosed, EventName = "CircuitClosed", Level = LogLevel.Information, Message = "Circuit of {Upstream} closed")]
    public static partial void CircuitClosed(ILogger logger, string upstream);
}
