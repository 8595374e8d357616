using System.Diagnostics.Metrics;
using System.Text;
using LlmGateway.Drift;
using LlmGateway.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace LlmGateway.Tests.Drift;

public sealed class DriftMetricsTests
{
    [Fact]
    public void ServedVersion_AfterThirtyTwoDistinctValuesPerModel_CountsLaterOnesAsOther()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var metrics = new GatewayMetrics(services.GetRequiredService<IMeterFactory>());
        using var versions = new MetricCollector<long>(services.GetRequiredService<IMeterFactory>(), GatewayMetrics.MeterName, "llm_gateway_served_versions");

        for (var i = 0; i < 40; i++)
        {
            metrics.Drift.RecordServedVersion("m", $"gpt-x/fp_{i}");
        }

        // A value seen among the first 32 keeps its own label; another model has its own 32.
        metrics.Drift.RecordServedVersion("m", "gpt-x/fp_0");
        metrics.Drift.RecordServedVersion("m2", "gpt-x/fp_39");

        var labels = versions.GetMeasurementSnapshot()
            .Where(m => (string?)m.Tags["model"] == "m")
            .Select(m => (string)m.Tags["version"]!)
            .ToList();
        Assert.Equal(41, labels.Count);
        Assert.Equal(32, labels.Where(l => l != DriftMetrics.Other).Distinct().Count());
        Assert.Equal(8, labels.Count(l => l == DriftMetrics.Other));
        Assert.Equal("gpt-x/fp_0", labels[^1]);
        Assert.Equal("gpt-x/fp_31", labels[31]);
        Assert.Equal(DriftMetrics.Other, labels[32]);
        Assert.Equal("gpt-x/fp_39", versions.GetMeasurementSnapshot().Single(m => (string?)m.Tags["model"] == "m2").Tags["version"]);
    }

    [Theory]
    [InlineData("stop", "stop")]
    [InlineData("tool_calls", "tool_calls")]
    [InlineData("end_turn", "end_turn")]
    [InlineData("max_output_tokens", "max_output_tokens")]
    [InlineData("something_new", "other")]
    [InlineData("", "other")]
    public void FinishReason_OutsideTheKnownSet_IsOther(string reason, string label) =>
        Assert.Equal(label, DriftMetrics.FinishReasonLabel(reason));

    [Fact]
    public void ToolCallRequest_NotDeclaredByTheRequest_IsOther()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var metrics = new GatewayMetrics(services.GetRequiredService<IMeterFactory>());
        using var tools = new MetricCollector<long>(services.GetRequiredService<IMeterFactory>(), GatewayMetrics.MeterName, "llm_gateway_tool_call_requests");
        var answer = new AnswerSignals();
        answer.Read("""{"model":"gpt-x","choices":[{"finish_reason":"tool_calls","message":{"tool_calls":[{"function":{"name":"get_weather"}},{"function":{"name":"rm_rf"}}]}}]}"""u8);
        var body = Encoding.UTF8.GetBytes("""{"model":"m","tools":[{"type":"function","function":{"name":"get_weather"}}],"messages":[]}""");

        metrics.Drift.RecordAnswer("m", answer, 10, body);

        Assert.Equal(["get_weather", DriftMetrics.Other], tools.GetMeasurementSnapshot().Select(m => (string)m.Tags["tool"]!));
    }
}
