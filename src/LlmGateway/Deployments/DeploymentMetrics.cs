using System.Diagnostics.Metrics;
using LlmGateway.Telemetry;

namespace LlmGateway.Deployments;

/// <summary><c>llm_gateway_deployment_inflight{model,deployment}</c>: calls in flight per deployment on this replica.</summary>
internal sealed class DeploymentMetrics
{
    public DeploymentMetrics(IMeterFactory meterFactory, DeploymentChooser chooser)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);

        // The gateway's meter (the factory hands out one instance per name), so /metrics and OTLP export it as the rest.
        var meter = meterFactory.Create(GatewayMetrics.MeterName);
        meter.CreateObservableGauge("llm_gateway_deployment_inflight", () => Observe(chooser), unit: null,
            "Calls in flight per deployment of a model on this replica (what the least-busy strategy compares).");
    }

    private static IEnumerable<Measurement<int>> Observe(DeploymentChooser chooser)
    {
        foreach (var state in chooser.States)
        {
            yield return new Measurement<int>(state.InFlight, new KeyValuePair<string, object?>(TelemetryTags.Model, state.Model), new KeyValuePair<string, object?>(TelemetryTags.Deployment, state.Name));
        }
    }
}
