namespace LlmGateway.Tests.Operations;

/// <summary>The drift alert (LlmGatewayModelVersionChanged) against a provider that changes system_fingerprint mid-series.</summary>
public sealed partial class OperationsFilesTests
{
    private const string DriftAlertUnitTests = """
        rule_files:
          - alerts.yml
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series:
              # gpt answers as fp_a for an hour, then the provider switches it to fp_b.
              - series: 'llm_gateway_served_versions_total{instance="a",model="gpt",version="gpt-4o/fp_a"}'
                values: '1+1x60'
              - series: 'llm_gateway_served_versions_total{instance="a",model="gpt",version="gpt-4o/fp_b"}'
                values: '_x60 1+1x60'
              # A model configured at minute 60 is new, not drifted.
              - series: 'llm_gateway_served_versions_total{instance="a",model="fresh",version="fresh-1"}'
                values: '_x60 1+1x60'
            alert_rule_test:
              # Before the switch, and in the first minutes of a Prometheus with no history: nothing.
              - eval_time: 5m
                alertname: LlmGatewayModelVersionChanged
                exp_alerts: []
              - eval_time: 55m
                alertname: LlmGatewayModelVersionChanged
                exp_alerts: []
              - eval_time: 62m
                alertname: LlmGatewayModelVersionChanged
                exp_alerts:
                  - exp_labels:
                      severity: info
                      model: gpt
                      version: gpt-4o/fp_b
              # Fifteen minutes later fp_b is part of the last 24 hours.
              - eval_time: 80m
                alertname: LlmGatewayModelVersionChanged
                exp_alerts: []
        """;

    [ToolFact(Promtool)]
    public Task DriftAlert_FiresWhenTheProviderChangesSystemFingerprint_AndOnlyThen() => AssertAlertUnitTestsPassAsync(DriftAlertUnitTests);
}
