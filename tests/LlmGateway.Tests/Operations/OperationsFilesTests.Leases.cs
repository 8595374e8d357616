namespace LlmGateway.Tests.Operations;

/// <summary>The lost-lease-returns alert (LlmGatewayLeaseReturnsLost): any return given up in the last 10 minutes.</summary>
public sealed partial class OperationsFilesTests
{
    private const string LeaseAlertUnitTests = """
        rule_files:
          - alerts.yml
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series:
              # Replica a: nothing lost for 20 minutes, then 3 returns given up at once; replica b never loses one.
              - series: 'llm_gateway_lease_returns_lost_total{instance="a"}'
                values: '0x20 3x30'
              - series: 'llm_gateway_lease_returns_lost_total{instance="b"}'
                values: '0x50'
            alert_rule_test:
              - eval_time: 15m
                alertname: LlmGatewayLeaseReturnsLost
                exp_alerts: []
              - eval_time: 25m
                alertname: LlmGatewayLeaseReturnsLost
                exp_alerts:
                  - exp_labels:
                      severity: warning
                      instance: a
              # Ten minutes later nothing new was lost: it resolves.
              - eval_time: 45m
                alertname: LlmGatewayLeaseReturnsLost
                exp_alerts: []
        """;

    [ToolFact(Promtool)]
    public Task LeaseReturnsLostAlert_FiresOnAnyLostReturn_PerInstance_AndResolves() => AssertAlertUnitTestsPassAsync(LeaseAlertUnitTests);
}
