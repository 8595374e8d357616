using System.Globalization;
using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Testing;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;

namespace LlmGateway.EndToEnd.Tests.Tools;

/// <summary>
/// /tools/{tool}/... end to end: a real gateway on Kestrel forwarding to tool APIs on real sockets — WireMock.Net
/// (<see cref="ToolApi"/>) and, for calls that must hang, a <see cref="StallingTool"/> — with the audit trail read
/// from the gateway's captured logs.
/// </summary>
public sealed class ToolGatewayTests : IAsyncLifetime
{
    private WireMockServer _tool = null!;
    private StallingTool _stalling = null!;
    private MockLlmServer _mock = null!;
    private GatewayServer _gateway = null!;

    private HttpClient Client => _gateway.Client;

    public async Task InitializeAsync()
    {
        _tool = await ToolApi.StartAsync();
        _stalling = await StallingTool.StartAsync();
        _mock = await MockLlmServer.StartAsync();
        _gateway = await GatewayServer.StartAsync(ToolConfigs.Config(_tool.Url!, _mock.BaseUrl, stallingBaseUrl: _stalling.BaseUrl));
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _mock.DisposeAsync();
        await _stalling.DisposeAsync();
        _tool.Stop();
        _tool.Dispose();
    }

    [Fact]
    public async Task AllowedGet_ReachesTool_WithToolCredential_AndWithoutCallersKey()
    {
        var request = ToolConfigs.Request(HttpMethod.Get, "/tools/jira/rest/api/2/issue/ABC-1?fields=summary", headers: [("x-api-key", ToolConfigs.Alice), ("X-Gateway-Step", "ignored-without-run")]);
        request.Headers.Remove("X-Gateway-Step");
        using var response = await Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var seen = Assert.Single(_tool.Requests());
        Assert.Equal("GET", seen.Method);
        Assert.Equal("/jira/rest/api/2/issue/ABC-1?fields=summary", seen.Path);
        Assert.Equal("Bearer " + ToolConfigs.JiraSecret, seen.Headers["Authorization"]);
        Assert.False(seen.Headers.ContainsKey("x-api-key"));
        Assert.DoesNotContain(seen.Headers.Values, v => v.Contains(ToolConfigs.Alice, StringComparison.Ordinal));
        Assert.Equal(response.Headers.GetValues("X-Request-Id").Single(), seen.Headers["X-Request-Id"]);

        var audit = AuditFor(response);
        Assert.Equal("allowed", audit.GetStructuredStateValue("Decision"));
        Assert.Equal("jira:0 GET /rest/api/2/issue/*", audit.GetStructuredStateValue("Rule"));
        Assert.Equal("alice-tools", audit.GetStructuredStateValue("KeyId"));
        Assert.Equal("200", audit.GetStructuredStateValue("Status"));
        Assert.Equal("/rest/api/2/issue/ABC-1", audit.GetStructuredStateValue("Path"));
    }

    [Fact]
    public async Task PostNotAllowed_Gets403NamingToolMethodAndPath_AndNeverReachesTool()
    {
        using var response = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Post, "/tools/jira/rest/api/2/issue", """{"fields":{}}"""));

        await Http.AssertErrorAsync(response, 403, "permission_denied", shouldRetry: false);
        var message = (await Http.ErrorOf(response)).GetProperty("message").GetString()!;
        Assert.Contains("'jira'", message, StringComparison.Ordinal);
        Assert.Contains("POST /rest/api/2/issue", message, StringComparison.Ordinal);
        Assert.Empty(_tool.Requests());

        var audit = AuditFor(response);
        Assert.Equal("denied", audit.GetStructuredStateValue("Decision"));
        Assert.True(string.IsNullOrEmpty(audit.GetStructuredStateValue("Rule")));
        Assert.Equal("permission_denied", audit.GetStructuredStateValue("Reason"));
    }

    [Fact]
    public async Task PathPatterns_StarIsOneSegment_DoubleStarIsAnyRest()
    {
        using var nested = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Get, "/tools/jira/rest/api/2/issue/ABC-1/comments"));
        using var search = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Get, "/tools/jira/rest/api/2/search/a/b/c"));

        Assert.Equal(HttpStatusCode.Forbidden, nested.StatusCode);
        Assert.Equal(HttpStatusCode.OK, search.StatusCode);
        Assert.Equal("jira:1 GET /rest/api/2/search/**", AuditFor(search).GetStructuredStateValue("Rule"));
    }

    [Fact]
    public async Task EncodedSlashInPath_IsRefused_BeforeMatchingOrForwarding()
    {
        using var response = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Get, "/tools/jira/rest/api/2/issue/..%2F..%2F..%2Fadmin"));

        await Http.AssertErrorAsync(response, 400, "invalid_request_error", shouldRetry: false);
        Assert.Empty(_tool.Requests());
    }

    [Fact]
    public async Task BodyConstraint_AllowsOnlyTheListedChannel()
    {
        using var allowed = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Post, "/tools/slack/chat.postMessage", """{"channel":"#engineering","text":"deployed"}"""));
        using var other = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Post, "/tools/slack/chat.postMessage", """{"channel":"#general","text":"hi all"}"""));
        using var duplicate = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Post, "/tools/slack/chat.postMessage", """{"channel":"#engineering","channel":"#general"}"""));
        using var missing = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Post, "/tools/slack/chat.postMessage", """{"text":"no channel"}"""));

        Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        await Http.AssertErrorAsync(other, 403, "permission_denied", shouldRetry: false);
        await Http.AssertErrorAsync(duplicate, 403, "permission_denied", shouldRetry: false);
        await Http.AssertErrorAsync(missing, 403, "permission_denied", shouldRetry: false);
        var seen = Assert.Single(_tool.Requests());
        Assert.Equal("/slack/api/chat.postMessage", seen.Path);
        Assert.Equal("""{"channel":"#engineering","text":"deployed"}""", seen.Body);
        Assert.Equal("Bearer " + ToolConfigs.SlackSecret, seen.Headers["Authorization"]);
        Assert.Equal("slack:0 POST /chat.postMessage (body)", AuditFor(allowed).GetStructuredStateValue("Rule"));
        Assert.Equal("denied", AuditFor(other).GetStructuredStateValue("Decision"));
    }

    [Fact]
    public async Task UnknownTool_Is404_KeyWithoutRulesForTool_Is403_NoKey_Is401()
    {
        using var unknown = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Get, "/tools/nope/x"));
        using var noRules = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Get, "/tools/jira/rest/api/2/issue/ABC-1", key: ToolConfigs.Bob));
        using var noKey = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Get, "/tools/jira/rest/api/2/issue/ABC-1", key: null));

        await Http.AssertErrorAsync(unknown, 404, "tool_not_found", shouldRetry: false);
        await Http.AssertErrorAsync(noRules, 403, "permission_denied", shouldRetry: false);
        await Http.AssertErrorAsync(noKey, 401, "invalid_api_key", shouldRetry: false);
        Assert.Empty(_tool.Requests());
        Assert.All(new[] { unknown, noRules, noKey }, r => Assert.Equal("denied", AuditFor(r).GetStructuredStateValue("Decision")));
    }

    [Fact]
    public async Task SameIdempotencyKey_FiveTimesConcurrently_ReachesToolOnce_AllGetTheSameBody()
    {
        const string body = """{"amount":100,"to":"cust_1"}""";
        // The tool takes 300 ms, so the concurrent calls arrive while the first is still in flight.
        _tool.Given(Request.Create().WithPath("/effects/refunds").UsingPost()).RespondWith(ToolApi.Answer().WithDelay(300));
        HttpRequestMessage Refund() => ToolConfigs.Request(HttpMethod.Post, "/tools/ledger/refunds", body, headers: [("Idempotency-Key", "refund-1")]);

        var responses = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Client.SendAsync(Refund())));
        using var later = await Client.SendAsync(Refund());
        var all = responses.Append(later).ToArray();

        Assert.All(all, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        var bodies = await Task.WhenAll(all.Select(r => r.Content.ReadAsStringAsync()));
        Assert.Single(bodies.Distinct());
        Assert.Equal(1, _tool.CountFor("/effects/refunds"));
        Assert.Equal(4, all.Count(r => r.Headers.TryGetValues("Idempotent-Replayed", out var v) && v.Single() == "true"));
        var answered = Assert.Single(_tool.LogEntries).ResponseMessage; // what the tool sent, with its fresh call id
        var callId = answered.Headers![ToolApi.CallHeader].ToString();
        Assert.True(Guid.TryParse(callId, out _), callId);
        Assert.All(all, r => Assert.Equal(callId, r.Headers.GetValues(ToolApi.CallHeader).Single()));
        Assert.All(bodies, b => Assert.Equal(answered.BodyData!.BodyAsString, b));
        Assert.Equal("refund-1", _tool.Requests().Single().Headers["Idempotency-Key"]);

        var audits = all.Select(AuditFor).ToArray();
        Assert.All(audits, a => Assert.Equal("allowed", a.GetStructuredStateValue("Decision")));
        Assert.Equal(4, audits.Count(a => a.GetStructuredStateValue("Replayed") == "True"));
        Assert.All(audits, a => Assert.Equal("refund-1", a.GetStructuredStateValue("IdempotencyKey")));

        using var reused = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Post, "/tools/ledger/refunds", """{"amount":999,"to":"cust_1"}""", headers: [("Idempotency-Key", "refund-1")]));
        await Http.AssertErrorAsync(reused, 422, "idempotency_key_reused", shouldRetry: false);
        Assert.Equal(1, _tool.CountFor("/effects/refunds"));
        Assert.Equal("denied", AuditFor(reused).GetStructuredStateValue("Decision"));
        foreach (var response in all)
        {
            response.Dispose();
        }
    }

    [Fact]
    public async Task StepHeader_WithRunId_DerivesTheIdempotencyKey()
    {
        HttpRequestMessage Step() => ToolConfigs.Request(HttpMethod.Post, "/tools/effects/emails", """{"to":"a@example.com"}""", headers: [("X-Run-Id", "run-steps"), ("X-Gateway-Step", "7")]);
        using var first = await Client.SendAsync(Step());
        using var second = await Client.SendAsync(Step());

        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        Assert.Equal("true", second.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal(1, _tool.CountFor("/effects/emails"));
        Assert.Equal("run:run-steps:step:7", _tool.Requests().Single().Headers["Idempotency-Key"]);
        Assert.False(_tool.Requests().Single().Headers.ContainsKey("X-Gateway-Step"));
    }

    [Fact]
    public async Task PostWithoutKey_TimingOut_IsNotRetried()
    {
        using var response = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Post, "/tools/stalling/send", """{"n":1}"""));

        await Http.AssertErrorAsync(response, 504, "upstream_timeout", shouldRetry: true);
        Assert.Equal("1", response.Headers.GetValues("X-Gateway-Attempts").Single());
        await Task.Delay(300);
        Assert.Equal(1, _stalling.CountFor("/stalling/send"));
        Assert.Equal("upstream_timeout", AuditFor(response).GetStructuredStateValue("Reason"));
        Assert.Equal("allowed", AuditFor(response).GetStructuredStateValue("Decision"));
    }

    [Fact]
    public async Task PostWithKey_TimingOut_IsRetried_AndTheToolSeesOneEffect()
    {
        // The stalling tool leaves the first request of a key unanswered and answers its repeat.
        using var response = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Post, "/tools/stalling/send", """{"n":2}""", headers: [("Idempotency-Key", "send-2")]));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("2", response.Headers.GetValues("X-Gateway-Attempts").Single());
        Assert.Equal(2, _stalling.CountFor("/stalling/send"));
        Assert.All(_stalling.Requests, r => Assert.Equal("send-2", r.Headers["Idempotency-Key"])); // one effect at an idempotent tool
        Assert.Equal("2", AuditFor(response).GetStructuredStateValue("Attempts"));
    }

    [Fact]
    public async Task GetFailingTransiently_IsRetried_PostWithoutKey_IsNot()
    {
        // Each path answers 503 once, then (its scenario moved on) the default 200.
        _tool.Given(Request.Create().WithPath("/effects/status").UsingGet()).InScenario("get").WillSetStateTo("failed once").RespondWith(Response.Create().WithStatusCode(503));
        _tool.Given(Request.Create().WithPath("/effects/charge").UsingPost()).InScenario("post").WillSetStateTo("failed once").RespondWith(Response.Create().WithStatusCode(503));
        using var get = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Get, "/tools/effects/status"));
        using var post = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Post, "/tools/effects/charge", "{}"));

        Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        Assert.Equal(2, _tool.CountFor("/effects/status"));
        Assert.Equal([503, 200], _tool.LogEntries.Where(e => e.RequestMessage.Path == "/effects/status").Select(e => Convert.ToInt32(e.ResponseMessage.StatusCode, CultureInfo.InvariantCulture)));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, post.StatusCode); // the tool's own answer, passed through
        Assert.Equal(1, _tool.CountFor("/effects/charge"));
    }

    [Fact]
    public async Task HangingTool_DoesNotDelayLlmCallsOrOtherTools_AndExtraCallsAreRefusedAtOnce()
    {
        // Two calls occupy both of the hanging tool's slots for its 3 s timeout (the tool never answers them).
        var hanging = Enumerable.Range(0, 2)
            .Select(i => Client.SendAsync(ToolConfigs.Request(HttpMethod.Post, "/tools/hanging/work", "{}")))
            .ToArray();
        await Http.EventuallyAsync(() => _stalling.CountFor("/hanging") == 2 ? "" : null, "both hanging calls at the tool");

        using var overflow = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Post, "/tools/hanging/work", "{}"));
        using var other = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Get, "/tools/jira/rest/api/2/issue/ABC-2"));
        using var llm = await Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), ToolConfigs.Alice));

        await Http.AssertErrorAsync(overflow, 503, "upstream_unavailable", shouldRetry: true);
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
        Assert.Equal(HttpStatusCode.OK, llm.StatusCode);
        Assert.All(hanging, t => Assert.False(t.IsCompleted, "a hanging call finished before the others"));
        Assert.Equal(2, _stalling.CountFor("/hanging"));

        var timedOut = await Task.WhenAll(hanging);
        foreach (var response in timedOut)
        {
            await Http.AssertErrorAsync(response, 504, "upstream_timeout", shouldRetry: true);
            response.Dispose();
        }
    }

    [Fact]
    public async Task HaltedRun_ToolCallsAreRefused_AndToolCallsConsumeTheRunsCallsCeiling()
    {
        using (await Client.SendAsync(Admin(HttpMethod.Post, "/admin/runs/run-halted/halt")))
        {
        }

        using var halted = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Get, "/tools/jira/rest/api/2/issue/ABC-1", headers: [("X-Run-Id", "run-halted")]));
        await Http.AssertErrorAsync(halted, 403, "run_halted", shouldRetry: false);
        Assert.Equal("denied", AuditFor(halted).GetStructuredStateValue("Decision"));
        Assert.Equal("run_halted", AuditFor(halted).GetStructuredStateValue("Reason"));

        // runner's runs allow 3 calls: two tool calls and one LLM call use them up.
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 2; i++)
        {
            using var call = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Post, "/tools/effects/step", $$"""{"i":{{i}}}""", ToolConfigs.Runner, ("X-Run-Id", "run-calls")));
            statuses.Add(call.StatusCode);
        }

        using (var llm = await Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), ToolConfigs.Runner, ("X-Run-Id", "run-calls"))))
        {
            statuses.Add(llm.StatusCode);
        }

        using var fourth = await Client.SendAsync(ToolConfigs.Request(HttpMethod.Post, "/tools/effects/step", """{"i":3}""", ToolConfigs.Runner, ("X-Run-Id", "run-calls")));

        Assert.All(statuses, s => Assert.Equal(HttpStatusCode.OK, s));
        await Http.AssertErrorAsync(fourth, 429, "budget_exceeded", shouldRetry: false);
        Assert.Equal(2, _tool.CountFor("/effects/step"));
        Assert.DoesNotContain(_tool.Requests(), r => r.Path.StartsWith("/jira", StringComparison.Ordinal));

        using var state = await Client.SendAsync(Admin(HttpMethod.Get, "/admin/runs/run-calls"));
        Assert.Equal(3, JsonDocument.Parse(await state.Content.ReadAsStringAsync()).RootElement.GetProperty("calls").GetInt32());
    }

    [Fact]
    public async Task EveryCall_IsAuditedOnce_AndNoSecretIsLogged()
    {
        var requests = new[]
        {
            ToolConfigs.Request(HttpMethod.Get, "/tools/jira/rest/api/2/issue/ABC-9?token=query-secret-1"),
            ToolConfigs.Request(HttpMethod.Delete, "/tools/jira/rest/api/2/issue/ABC-9"),
            ToolConfigs.Request(HttpMethod.Post, "/tools/slack/chat.postMessage", """{"channel":"#engineering"}"""),
            ToolConfigs.Request(HttpMethod.Get, "/tools/jira/x", key: "sk-not-a-gateway-key"),
        };
        var ids = new List<string>();
        foreach (var request in requests)
        {
            using var response = await Client.SendAsync(request);
            ids.Add(response.Headers.GetValues("X-Request-Id").Single());
        }

        await Http.EventuallyAsync(() => _gateway.Logs.GetSnapshot().Count(l => l.Category == "LlmGateway.Audit") >= ids.Count ? "" : null, "audit records");
        await Task.Delay(100);
        var audits = _gateway.Logs.GetSnapshot().Where(l => l.Category == "LlmGateway.Audit").ToArray();
        Assert.Equal(ids.Count, audits.Length);
        Assert.Equal(new[] { "allowed", "denied", "allowed", "denied" }, ids.Select(id => audits.Single(a => a.GetStructuredStateValue("RequestId") == id).GetStructuredStateValue("Decision") ?? "").ToArray());
        Assert.All(audits, a => Assert.Equal("ToolCall", a.Id.Name));

        var everything = string.Join("\n", _gateway.Logs.GetSnapshot().Select(l => l.Text()));
        foreach (var secret in new[] { ToolConfigs.JiraSecret, ToolConfigs.SlackSecret, ToolConfigs.Alice, "sk-not-a-gateway-key", "query-secret-1", TestConfigs.AdminKey })
        {
            Assert.DoesNotContain(secret, everything, StringComparison.Ordinal);
        }
    }

    /// <summary>The call's audit record; written as the call completes, so possibly just after the caller has the response.</summary>
    private FakeLogRecord AuditFor(HttpResponseMessage response)
    {
        var id = response.Headers.GetValues("X-Request-Id").Single();
        Http.EventuallyAsync(() => _gateway.Logs.GetSnapshot().FirstOrDefault(l => l.Category == "LlmGateway.Audit" && l.GetStructuredStateValue("RequestId") == id), "audit record of " + id).GetAwaiter().GetResult();
        return Assert.Single(_gateway.Logs.GetSnapshot(), l => l.Category == "LlmGateway.Audit" && l.GetStructuredStateValue("RequestId") == id);
    }

    private static HttpRequestMessage Admin(HttpMethod method, string path) => BudgetCalls.Admin(method, path);
}
