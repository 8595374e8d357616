namespace LlmGateway.Tests.Operations;

/// <summary>The run success-ratio alert (LlmGatewayRunSuccessRatioLow): below 90% of reported runs over 15 minutes, per team, with at least 20 runs.</summary>
public sealed partial class OperationsFilesTests
{
    private const string RunAlertUnitTests = """
        rule_files:
          - alerts.yml
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series:
              # research: 2 successes a minute for 30 minutes, then 1 success and 1 failure a minute.
              - series: 'llm_gateway_run_outcomes_total{instance="a",team="research",outcome="success"}'
                values: '0+2x30 60+1x30'
              - series: 'llm_gateway_run_outcomes_total{instance="a",team="research",outcome="failure"}'
                values: '0x30 0+1x30'
              # Runs that idled out unreported are not failures: many of them never page.
              - series: 'llm_gateway_run_outcomes_total{instance="a",team="research",outcome="unknown"}'
                values: '0+5x61'
              # tiny: every run fails, but a failure every 5 minutes is below the 20-run minimum.
              - series: 'llm_gateway_run_outcomes_total{instance="a",team="tiny",outcome="failure"}'
                values: '0+0.2x61'
            alert_rule_test:
              - eval_time: 25m
                alertname: LlmGatewayRunSuccessRatioLow
                exp_alerts: []
              - eval_time: 55m
                alertname: LlmGatewayRunSuccessRatioLow
                exp_alerts:
                  - exp_labels:
                      severity: critical
                      team: research
        """;

    [ToolFact(Promtool)]
    public Task RunSuccessAlert_FiresBelowNinetyPercentOfReportedRuns_WithTwentyRuns_PerTeam() => AssertAlertUnitTestsPassAsync(RunAlertUnitTests);
}
