using LlmGateway.Configuration;
using LlmGateway.Deployments;
using LlmGateway.Telemetry;
using Polly;
using Polly.CircuitBreaker;

namespace LlmGateway.Resilience;

/// <summary>The circuit breaker of each deployment, kept across config reloads.</summary>
internal sealed partial class UpstreamResilience
{
    private Breaker BreakerFor(DeploymentRoute deployment, ResilienceOptions options)
    {
        // Rebuilt only when its settings change, so a config reload keeps every circuit's state.
        if (_breakers.TryGetValue(deployment.Upstream, out var existing) && existing.Options == options.CircuitBreaker)
        {
            return existing;
        }

        return BuildBreaker(deployment.Upstream, options.CircuitBreaker);
    }

    /// <remarks>Apart from <see cref="BreakerFor"/> so that the lambdas' closure over the upstream is only allocated when a circuit is built, not on every call.</remarks>
    private Breaker BuildBreaker(string upstream, CircuitBreakerOptions options)
    {
        var state = new CircuitBreakerStateProvider();
        Breaker? built = null;
        var pipeline = new ResiliencePipelineBuilder<AttemptOutcome> { TimeProvider = _time }
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions<AttemptOutcome>
            {
                FailureRatio = options.FailureRatio,
                SamplingDuration = options.SamplingDuration,
                MinimumThroughput = options.MinimumThroughput,
                BreakDuration = options.BreakDuration,
                StateProvider = state,

                // A provider that throttles (429) is alive; only errors and silence count against its circuit.
                ShouldHandle = static args => new ValueTask<bool>(args.Outcome.Result is { Kind: AttemptKind.Retryable, Status: not 429 }),
                OnOpened = args =>
                {
                    built!.OpenUntil = _time.GetUtcNow() + args.BreakDuration;
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
            })
            .Build();
        built = new Breaker(options, pipeline, state);
        _breakers[upstream] = built;
        _metrics.SetCircuitState(upstream, GatewayMetrics.CircuitClosed);
        return built;
    }

    /// <summary>A deployment's circuit: its pipeline, its state, and when an open circuit may close.</summary>
    private sealed class Breaker(CircuitBreakerOptions options, ResiliencePipeline<AttemptOutcome> pipeline, CircuitBreakerStateProvider state)
    {
        public CircuitBreakerOptions Options { get; } = options;

        public ResiliencePipeline<AttemptOutcome> Pipeline { get; } = pipeline;

        public CircuitBreakerStateProvider State { get; } = state;

        public DateTimeOffset OpenUntil { get; set; }
    }
}
