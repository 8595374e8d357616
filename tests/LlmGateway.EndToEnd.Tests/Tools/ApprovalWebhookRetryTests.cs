using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;

namespace LlmGateway.EndToEnd.Tests.Tools;

/// <summary>The approval webhook retries a notice its receiver (WireMock.Net on loopback) failed to take.</summary>
public sealed class ApprovalWebhookRetryTests : IAsyncLifetime
{
    private WireMockServer _tool = null!;
    private MockLlmServer _mock = null!;
    private GatewayServer _gateway = null!;

    public async Task InitializeAsync()
    {
        _tool = await ToolApi.StartAsync();
        _tool.Given(Request.Create().WithPath("/hook").UsingPost()).InScenario("hook").WillSetStateTo("failed once").RespondWith(Response.Create().WithStatusCode(500));
        _tool.Given(Request.Create().WithPath("/hook").UsingPost()).InScenario("hook").WhenStateIs("failed once").RespondWith(Response.Create().WithStatusCode(204));
        _mock = await MockLlmServer.StartAsync();
        _gateway = await GatewayServer.StartAsync(ApprovalConfigs.Config(_tool.Url!, _mock.BaseUrl, _tool.Url + "/hook", wait: "00:00:00"));
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _mock.DisposeAsync();
        _tool.Stop();
        _tool.Dispose();
    }

    [Fact]
    public async Task ANoticeTheReceiverFailedToTake_IsSentAgain_AndTheHeldCallNeverWaitedForIt()
    {
        using var response = await _gateway.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/ledger/refunds", """{"order":"W-1"}"""));
        await Http.AssertErrorAsync(response, 409, "approval_pending", shouldRetry: true);
        var id = response.Headers.GetValues("X-Gateway-Approval-Id").Single();

        var notices = await Http.EventuallyAsync(() => _tool.Requests().Where(r => r.Path == "/hook").ToArray() is { Length: 2 } two ? two : null, "the notice and its retry", timeoutMs: 20000);

        Assert.All(notices, n => Assert.Equal(id, JsonDocument.Parse(n.Body).RootElement.GetProperty("id").GetString()));
        Assert.Equal(0, _tool.CountFor("/effects/refunds"));

        // Delivered once (on its second attempt), never counted as failed.
        await Http.EventuallyAsync(async () => (await _gateway.Client.GetStringAsync("/metrics")).Contains("llm_gateway_approval_webhooks_total{result=\"delivered\"} 1", StringComparison.Ordinal) ? "ok" : null, "the delivered notice counted");
        Assert.DoesNotContain("llm_gateway_approval_webhooks_total{result=\"failed\"}", await _gateway.Client.GetStringAsync("/metrics"), StringComparison.Ordinal);
    }
}
