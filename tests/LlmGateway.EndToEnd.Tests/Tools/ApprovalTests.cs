using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;
using WireMock.Server;

namespace LlmGateway.EndToEnd.Tests.Tools;

/// <summary>
/// Human approval of tool calls end to end: a real gateway on Kestrel (in-memory stores, a FakeTimeProvider for the
/// approval wait), a tool API (WireMock.Net) on loopback, the operator API, and a webhook receiver that never answers.
/// </summary>
public sealed class ApprovalTests : IAsyncLifetime
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds()));
    private WireMockServer _tool = null!;
    private MockLlmServer _mock = null!;
    private HangingReceiver _hook = null!;
    private GatewayServer _gateway = null!;

    public async Task InitializeAsync()
    {
        _tool = await ToolApi.StartAsync();
        _mock = await MockLlmServer.StartAsync();
        _hook = await HangingReceiver.StartAsync();
        _gateway = await GatewayServer.StartAsync(ApprovalConfigs.Config(_tool.Url!, _mock.BaseUrl, _hook.Url), _time);
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _hook.DisposeAsync();
        await _mock.DisposeAsync();
        _tool.Stop();
        _tool.Dispose();
    }

    [Fact]
    public async Task HeldCall_Approved_ReachesToolOnce_RepeatIsReplayed_AndTheDecisionIsAudited()
    {
        var held = _gateway.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/ledger/refunds", """{"order":"A-1","amount":5}""", run: "run-approve"));
        var pending = await PendingAsync("/refunds");

        Assert.Equal("POST", pending.GetProperty("method").GetString());
        Assert.Equal("ledger", pending.GetProperty("tool").GetString());
        Assert.Equal("alice", pending.GetProperty("user").GetString());
        Assert.Equal("run-approve", pending.GetProperty("run").GetString());
        Assert.Equal("""{"order":"A-1","amount":5}""", pending.GetProperty("body_preview").GetString());
        Assert.False(held.IsCompleted);
        Assert.Equal(0, _tool.CountFor("/effects/refunds"));

        var id = pending.GetProperty("id").GetString()!;
        using var decision = await _gateway.Client.SendAsync(ApprovalConfigs.Admin(HttpMethod.Post, $"/admin/approvals/{id}/approve", """{"reason":"customer verified"}"""));
        Assert.Equal(HttpStatusCode.OK, decision.StatusCode);
        using var response = await held;
        using var repeat = await _gateway.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/ledger/refunds", """{"order":"A-1","amount":5}""", run: "run-approve"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpStatusCode.OK, repeat.StatusCode);
        Assert.Equal("true", repeat.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal(await response.Content.ReadAsStringAsync(), await repeat.Content.ReadAsStringAsync());
        Assert.Equal(1, _tool.CountFor("/effects/refunds"));

        var audit = Assert.Single(_gateway.Logs.GetSnapshot(), r => r.Id.Name == "ApprovalDecision");
        Assert.Equal(id, audit.GetStructuredStateValue("ApprovalId"));
        Assert.Equal("approved", audit.GetStructuredStateValue("Decision"));
        Assert.Equal("admin", audit.GetStructuredStateValue("DecidedBy"));
        Assert.Equal("customer verified", audit.GetStructuredStateValue("Reason"));
        Assert.Empty(await ListAsync());

        var metrics = await _gateway.Client.GetStringAsync("/metrics");
        Assert.Contains("llm_gateway_approvals_total{decision=\"approved\",tool=\"ledger\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("llm_gateway_approval_wait_seconds_count{tool=\"ledger\"}", metrics, StringComparison.Ordinal);
        Assert.Contains("\nllm_gateway_approval_oldest_pending_seconds ", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HeldCall_Denied_Gets403ApprovalDenied_WithTheApproversReason_AndNeverReachesTheTool()
    {
        var held = _gateway.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/ledger/refunds", """{"order":"B-2","amount":9000}"""));
        var id = (await PendingAsync("/refunds")).GetProperty("id").GetString()!;

        using var decision = await _gateway.Client.SendAsync(ApprovalConfigs.Admin(HttpMethod.Post, $"/admin/approvals/{id}/deny", """{"reason":"amount above policy"}""", ApprovalConfigs.Ops));
        using var response = await held;

        await Http.AssertErrorAsync(response, 403, "approval_denied", shouldRetry: false);
        var message = (await Http.ErrorOf(response)).GetProperty("message").GetString()!;
        Assert.Contains("amount above policy", message, StringComparison.Ordinal);
        Assert.Contains("ops", message, StringComparison.Ordinal);
        Assert.Equal(id, response.Headers.GetValues("X-Gateway-Approval-Id").Single());
        Assert.Equal(0, _tool.CountFor("/effects/refunds"));

        using var again = await _gateway.Client.SendAsync(ApprovalConfigs.Admin(HttpMethod.Post, $"/admin/approvals/{id}/approve"));
        await Http.AssertErrorAsync(again, 409, "approval_already_decided", shouldRetry: false);
    }

    [Fact]
    public async Task PendingPastTheWait_Gets409_ItsRepeatJoinsTheSameApproval_AndTheApprovalNeverLetsAnotherBodyThrough()
    {
        var first = await PastTheWaitAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/ledger/refunds", """{"order":"C-3","amount":7}"""));

        await Http.AssertErrorAsync(first, 409, "approval_pending", shouldRetry: true);
        Assert.True(first.Headers.RetryAfter is not null);
        var id = first.Headers.GetValues("X-Gateway-Approval-Id").Single();
        var repeat = await PastTheWaitAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/ledger/refunds", """{"order":"C-3","amount":7}"""));
        Assert.Equal(id, repeat.Headers.GetValues("X-Gateway-Approval-Id").Single());
        Assert.Equal(id, Assert.Single(await ListAsync()).GetProperty("id").GetString());

        using var decision = await _gateway.Client.SendAsync(ApprovalConfigs.Admin(HttpMethod.Post, $"/admin/approvals/{id}/approve"));
        var other = await PastTheWaitAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/ledger/refunds", """{"order":"C-3","amount":7000}"""));
        using var approved = await _gateway.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/ledger/refunds", """{"order":"C-3","amount":7}"""));

        await Http.AssertErrorAsync(other, 409, "approval_pending", shouldRetry: true);
        Assert.NotEqual(id, other.Headers.GetValues("X-Gateway-Approval-Id").Single());
        Assert.Equal(HttpStatusCode.OK, approved.StatusCode);
        var seen = Assert.Single(_tool.Requests(), r => r.Path == "/effects/refunds");
        Assert.Equal("""{"order":"C-3","amount":7}""", seen.Body);

        var metrics = await _gateway.Client.GetStringAsync("/metrics");
        Assert.Contains("llm_gateway_approvals_total{decision=\"pending_timeout\",tool=\"ledger\"} 3", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HaltingTheRun_DeniesItsHeldCall_WithRunHalted()
    {
        var held = _gateway.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/ledger/refunds", """{"order":"D-4","amount":1}""", run: "run-halt"));
        await PendingAsync("/refunds");

        using var halt = await _gateway.Client.SendAsync(ApprovalConfigs.Admin(HttpMethod.Post, "/admin/runs/run-halt/halt"));
        using var response = await held;

        Assert.Equal(HttpStatusCode.OK, halt.StatusCode);
        await Http.AssertErrorAsync(response, 403, "run_halted", shouldRetry: false);
        Assert.Equal(0, _tool.CountFor("/effects/refunds"));
        Assert.Empty(await ListAsync());
    }

    [Fact]
    public async Task RuleNamingAGroup_OnlyThatGroupsApproverSeesAndDecides()
    {
        var held = _gateway.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/ledger/payouts", """{"to":"acct-9","amount":50}"""));
        var id = (await PendingAsync("/payouts")).GetProperty("id").GetString()!;

        Assert.Empty(await ListAsync(ApprovalConfigs.Ops));
        using var byOps = await _gateway.Client.SendAsync(ApprovalConfigs.Admin(HttpMethod.Post, $"/admin/approvals/{id}/approve", key: ApprovalConfigs.Ops));
        using var byAdmin = await _gateway.Client.SendAsync(ApprovalConfigs.Admin(HttpMethod.Post, $"/admin/approvals/{id}/approve"));
        using var byAlice = await _gateway.Client.SendAsync(ApprovalConfigs.Admin(HttpMethod.Post, $"/admin/approvals/{id}/approve", key: ApprovalConfigs.Alice));
        using var opsOnRuns = await _gateway.Client.SendAsync(ApprovalConfigs.Admin(HttpMethod.Post, "/admin/runs/x/halt", key: ApprovalConfigs.Ops));
        await Http.AssertErrorAsync(byOps, 403, "permission_denied", shouldRetry: false);
        await Http.AssertErrorAsync(byAdmin, 403, "permission_denied", shouldRetry: false);
        await Http.AssertErrorAsync(byAlice, 401, "invalid_api_key", shouldRetry: false);
        await Http.AssertErrorAsync(opsOnRuns, 401, "invalid_api_key", shouldRetry: false);
        Assert.False(held.IsCompleted);

        using var byLead = await _gateway.Client.SendAsync(ApprovalConfigs.Admin(HttpMethod.Post, $"/admin/approvals/{id}/approve", key: ApprovalConfigs.FinanceLead));
        using var response = await held;

        Assert.Equal(HttpStatusCode.OK, byLead.StatusCode);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("finance-lead", Assert.Single(_gateway.Logs.GetSnapshot(), r => r.Id.Name == "ApprovalDecision").GetStructuredStateValue("DecidedBy"));
    }

    [Fact]
    public async Task Webhook_GetsTheNoticeWithoutTheBody_AndAReceiverThatNeverAnswersDelaysNothing()
    {
        var held = _gateway.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/ledger/refunds", """{"order":"E-5","secret":"s3cr3t-value"}""", run: "run-hook"));
        var id = (await PendingAsync("/refunds")).GetProperty("id").GetString()!;
        var notice = await Http.EventuallyAsync(() => _hook.Bodies.FirstOrDefault(), "the webhook notice", timeoutMs: 20000);

        using (var document = JsonDocument.Parse(notice))
        {
            var root = document.RootElement;
            Assert.Equal("approval_pending", root.GetProperty("type").GetString());
            Assert.Equal(id, root.GetProperty("id").GetString());
            Assert.Equal("ledger", root.GetProperty("tool").GetString());
            Assert.Equal("POST", root.GetProperty("method").GetString());
            Assert.Equal("/refunds", root.GetProperty("path").GetString());
            Assert.Equal("run-hook", root.GetProperty("run").GetString());
        }

        Assert.DoesNotContain("s3cr3t-value", notice, StringComparison.Ordinal);

        // The receiver has not answered (it never does); the call is approved and completes regardless.
        using var decision = await _gateway.Client.SendAsync(ApprovalConfigs.Admin(HttpMethod.Post, $"/admin/approvals/{id}/approve"));
        using var response = await held;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Single(_hook.Bodies);
    }

    /// <summary>Sends a call and moves the clock on until the gateway stops waiting for its approval.</summary>
    private async Task<HttpResponseMessage> PastTheWaitAsync(HttpRequestMessage request)
    {
        var call = _gateway.Client.SendAsync(request);
        while (!call.IsCompleted)
        {
            _time.Advance(TimeSpan.FromSeconds(10));
            await Task.WhenAny(call, Task.Delay(20));
        }

        return await call;
    }

    private async Task<JsonElement> PendingAsync(string path) =>
        await Http.EventuallyAsync(async () =>
        {
            foreach (var approval in await ListAsync())
            {
                if (approval.GetProperty("path").GetString() == path)
                {
                    return (JsonElement?)approval;
                }
            }

            return null;
        }, "a pending approval of " + path, timeoutMs: 20000);

    private async Task<List<JsonElement>> ListAsync(string key = TestConfigs.AdminKey)
    {
        using var response = await _gateway.Client.SendAsync(ApprovalConfigs.Admin(HttpMethod.Get, "/admin/approvals", key: key));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return [.. document.RootElement.GetProperty("data").EnumerateArray().Select(e => e.Clone())];
    }
}
