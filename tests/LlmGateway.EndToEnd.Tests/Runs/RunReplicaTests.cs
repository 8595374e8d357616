using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;

namespace LlmGateway.EndToEnd.Tests.Runs;

/// <summary>
/// Issue 17, run outcomes and call logs across replicas: two gateways on one real redis-server (replica A in the test
/// process, replica B a separate process), the calls of one run alternating between them.
/// </summary>
[RequiresRedisServer]
public sealed class RunReplicaTests(RedisServerFixture redis) : RunReplicasTestBase(redis, "1.00:00:00"), IClassFixture<RedisServerFixture>
{
    [RedisFact]
    public async Task RunAlternatingReplicas_StepsInOrder_CallsListed_FailureObservedOnce()
    {
        const string Run = "run-alternating";

        // A: LLM, B: LLM, A: tool, B: LLM. One counter for LLM and tool calls, shared through Redis.
        var requestIds = new List<string>();
        foreach (var (client, request) in new (HttpClient, HttpRequestMessage)[]
        {
            (A.Client, RunConfigs.Llm(Run, "step one")),
            (B.Client, RunConfigs.Llm(Run, "step two")),
            (A.Client, RunConfigs.Tool(Run, "ISSUE-3")),
            (B.Client, RunConfigs.Llm(Run, "step four")),
        })
        {
            using var response = await client.SendAsync(request);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{request.RequestUri}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
            requestIds.Add(response.Headers.GetValues("X-Request-Id").Single());
        }

        // The logs of both replicas: each call's record carries its step.
        var steps = new Dictionary<string, long>();
        foreach (var record in A.Logs.GetSnapshot().Where(r => r.Id.Name is "LlmCall" or "ToolCall" && r.GetStructuredStateValue("RunId") == Run))
        {
            steps[record.GetStructuredStateValue("RequestId")!] = long.Parse(record.GetStructuredStateValue("Step")!, System.Globalization.CultureInfo.InvariantCulture);
        }

        await Http.EventuallyAsync(() => ProcessSteps(B.Output, Run).Count == 2 ? (object?)true : null, "replica B's two call records");
        foreach (var (requestId, step) in ProcessSteps(B.Output, Run))
        {
            steps[requestId] = step;
        }

        Assert.Equal([1L, 2L, 3L, 4L], requestIds.Select(id => steps.TryGetValue(id, out var s) ? s : -1));

        // The admin API, on either replica, lists the calls in step order (the ledger is written after each answer).
        var calls = await Http.EventuallyAsync(async () =>
        {
            using var listed = await B.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, $"/admin/runs/{Run}/calls"));
            var json = JsonDocument.Parse(await listed.Content.ReadAsStringAsync()).RootElement;
            return listed.StatusCode == HttpStatusCode.OK && json.GetProperty("count").GetInt32() == 4 ? (JsonElement?)json.GetProperty("calls") : null;
        }, "the four calls in the run's list");
        Assert.Equal([1L, 2L, 3L, 4L], calls.EnumerateArray().Select(c => c.GetProperty("step").GetInt64()));
        Assert.Equal(requestIds, calls.EnumerateArray().Select(c => c.GetProperty("request_id").GetString()!));
        Assert.Equal(["llm", "llm", "tool", "llm"], calls.EnumerateArray().Select(c => c.GetProperty("kind").GetString()!));
        Assert.DoesNotContain("step one", calls.GetRawText(), StringComparison.Ordinal);
        Assert.DoesNotContain(RunConfigs.Agent, calls.GetRawText(), StringComparison.Ordinal);

        // Reported to both replicas: recorded by the first, idempotent on the second, observed once over both.
        using var first = await A.Client.SendAsync(RunConfigs.Outcome(Run, """{"outcome":"failure","reason":"tests failed"}"""));
        using var second = await B.Client.SendAsync(RunConfigs.Outcome(Run, """{"outcome":"success"}"""));
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        Assert.Equal(Run, first.Headers.GetValues("X-Run-Id").Single());
        var firstBody = JsonDocument.Parse(await first.Content.ReadAsStringAsync()).RootElement;
        var secondBody = JsonDocument.Parse(await second.Content.ReadAsStringAsync()).RootElement;
        Assert.True(firstBody.GetProperty("recorded").GetBoolean());
        Assert.False(secondBody.GetProperty("recorded").GetBoolean());
        Assert.Equal("failure", secondBody.GetProperty("outcome").GetString());

        var scrapeA = await A.Client.GetStringAsync("/metrics");
        var scrapeB = await B.Client.GetStringAsync("/metrics");
        double Both(string name, params string[] labels) => RunConfigs.Sum(scrapeA, name, labels) + RunConfigs.Sum(scrapeB, name, labels);
        Assert.Equal(1, Both("llm_gateway_run_outcomes_total", "team=\"research\"", "outcome=\"failure\""));
        Assert.Equal(0, Both("llm_gateway_run_outcomes_total", "outcome=\"success\""));
        Assert.Equal(1, Both("llm_gateway_run_calls_count", "kind=\"llm\""));
        Assert.Equal(3, Both("llm_gateway_run_calls_sum", "kind=\"llm\""));
        Assert.Equal(1, Both("llm_gateway_run_calls_sum", "kind=\"tool\""));
        Assert.Equal(1, Both("llm_gateway_run_cost_usd_count", "team=\"research\""));
        Assert.True(Both("llm_gateway_run_cost_usd_sum", "team=\"research\"") > 0);
        Assert.Equal(1, Both("llm_gateway_run_duration_seconds_count", "team=\"research\""));
    }

    [RedisFact]
    public async Task Outcome_BadBody_UnknownRun_OtherUser_AreRefused()
    {
        using (var call = await A.Client.SendAsync(RunConfigs.Llm("run-refusals", "hello")))
        {
            Assert.Equal(HttpStatusCode.OK, call.StatusCode);
        }

        using var badOutcome = await A.Client.SendAsync(RunConfigs.Outcome("run-refusals", """{"outcome":"maybe"}"""));
        await Http.AssertErrorAsync(badOutcome, 400, "invalid_request_error", shouldRetry: false);
        using var notJson = await B.Client.SendAsync(RunConfigs.Outcome("run-refusals", "outcome=success"));
        await Http.AssertErrorAsync(notJson, 400, "invalid_request_error", shouldRetry: false);
        using var noKey = await A.Client.SendAsync(RunConfigs.Outcome("run-refusals", """{"outcome":"success"}""", key: null));
        await Http.AssertErrorAsync(noKey, 401, "invalid_api_key", shouldRetry: false);
        using var unknown = await A.Client.SendAsync(RunConfigs.Outcome("run-never-seen", """{"outcome":"success"}"""));
        await Http.AssertErrorAsync(unknown, 404, "run_not_found", shouldRetry: false);
        using var other = await B.Client.SendAsync(RunConfigs.Outcome("run-refusals", """{"outcome":"success"}""", RunConfigs.Other));
        await Http.AssertErrorAsync(other, 403, "permission_denied", shouldRetry: false);
    }

    /// <summary>(request id, step) of the call and tool records of <paramref name="runId"/> in a process's JSON console log.</summary>
    private static List<(string RequestId, long Step)> ProcessSteps(string output, string runId)
    {
        var steps = new List<(string, long)>();
        foreach (var line in output.Split('\n'))
        {
            if (!line.StartsWith('{') || !line.Contains(runId, StringComparison.Ordinal))
            {
                continue;
            }

            using var record = JsonDocument.Parse(line);
            if (record.RootElement.TryGetProperty("State", out var state) && state.TryGetProperty("Step", out var step)
                && state.TryGetProperty("RunId", out var run) && run.GetString() == runId && step.ValueKind == JsonValueKind.Number)
            {
                steps.Add((state.GetProperty("RequestId").GetString()!, step.GetInt64()));
            }
        }

        return steps;
    }
}
