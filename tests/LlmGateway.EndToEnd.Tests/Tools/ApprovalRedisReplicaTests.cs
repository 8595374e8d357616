using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;
using WireMock.Server;

namespace LlmGateway.EndToEnd.Tests.Tools;

/// <summary>
/// Two gateways sharing only a real redis-server (replica A in this process, replica B a separate
/// <c>dotnet LlmGateway.dll</c> process): a call held on one is decided through the other's admin API, and a write
/// of a run through one invalidates the run cache of the other.
/// </summary>
[RequiresRedisServer]
public sealed class ApprovalRedisReplicaTests : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private readonly RedisServerFixture _redis;
    private WireMockServer _tool = null!;
    private MockLlmServer _mock = null!;
    private GatewayServer _a = null!;
    private GatewayProcess _b = null!;
    private bool _bDown;

    public ApprovalRedisReplicaTests(RedisServerFixture redis) => _redis = redis;

    public async Task InitializeAsync()
    {
        if (!_redis.IsRunning)
        {
            _redis.Start();
        }

        _tool = await ToolApi.StartAsync();
        _mock = await MockLlmServer.StartAsync();
        var config = ApprovalConfigs.Config(_tool.Url!, _mock.BaseUrl, redis: _redis.ConnectionString, keyPrefix: "llmgw-approvals-" + Guid.NewGuid().ToString("N") + ":");
        _a = await GatewayServer.StartAsync(config);
        _b = await GatewayProcess.StartAsync(config);
        await _a.WaitReadyAsync();
    }

    public async Task DisposeAsync()
    {
        await _a.DisposeAsync();
        if (!_bDown)
        {
            await _b.DisposeAsync();
        }

        await _mock.DisposeAsync();
        _tool.Stop();
        _tool.Dispose();
    }

    [RedisFact]
    public async Task CallHeldOnA_ApprovedThroughB_CompletesOnce_AlthoughBWentDownRightAfter()
    {
        var held = _a.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/ledger/refunds", """{"order":"R-1","amount":5}""", run: "run-replicas"));
        var id = await PendingOnAsync(_b.Client, "run-replicas");

        using (var decision = await _b.Client.SendAsync(ApprovalConfigs.Admin(HttpMethod.Post, $"/admin/approvals/{id}/approve", """{"reason":"ok"}""")))
        {
            Assert.Equal(HttpStatusCode.OK, decision.StatusCode);
        }

        _bDown = true;
        await _b.DisposeAsync();
        using var response = await held;
        using var repeat = await _a.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/ledger/refunds", """{"order":"R-1","amount":5}""", run: "run-replicas"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("true", repeat.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal(1, _tool.CountFor("/effects/refunds"));
    }

    [RedisFact]
    public async Task RepeatOnB_JoinsTheApprovalHeldOnA_ADenialThroughB_AndAHaltThroughB_ReachTheCallsHeldOnA()
    {
        var held = _a.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/ledger/refunds", """{"order":"R-2","amount":5}""", run: "run-deny"));
        var id = await PendingOnAsync(_b.Client, "run-deny");
        var joined = _b.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/ledger/refunds", """{"order":"R-2","amount":5}""", run: "run-deny"));
        var halted = _a.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Post, "/tools/ledger/refunds", """{"order":"R-3","amount":5}""", run: "run-halt"));
        await PendingOnAsync(_b.Client, "run-halt");

        using (var denial = await _b.Client.SendAsync(ApprovalConfigs.Admin(HttpMethod.Post, $"/admin/approvals/{id}/deny", """{"reason":"duplicate refund"}""")))
        using (var halt = await _b.Client.SendAsync(ApprovalConfigs.Admin(HttpMethod.Post, "/admin/runs/run-halt/halt")))
        {
            Assert.Equal(HttpStatusCode.OK, denial.StatusCode);
            Assert.Equal(HttpStatusCode.OK, halt.StatusCode);
        }

        using var deniedOnA = await held;
        using var deniedOnB = await joined;
        using var haltedOnA = await halted;
        await Http.AssertErrorAsync(deniedOnA, 403, "approval_denied", shouldRetry: false);
        await Http.AssertErrorAsync(deniedOnB, 403, "approval_denied", shouldRetry: false);
        Assert.Equal(id, deniedOnB.Headers.GetValues("X-Gateway-Approval-Id").Single());
        Assert.Contains("duplicate refund", (await Http.ErrorOf(deniedOnA)).GetProperty("message").GetString()!, StringComparison.Ordinal);
        await Http.AssertErrorAsync(haltedOnA, 403, "run_halted", shouldRetry: false);
        Assert.Equal(0, _tool.CountFor("/effects/refunds"));
    }

    [RedisFact]
    public async Task RunCache_AWriteThroughB_InvalidatesWhatAKeepsForTheRun()
    {
        async Task<string?> ReadOnAAsync()
        {
            using var response = await _a.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Get, "/tools/catalog/items/7", run: "run-shared"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return response.Headers.TryGetValues("X-Gateway-Cache", out var values) ? values.Single() : null;
        }

        Assert.Equal("MISS", await ReadOnAAsync());
        Assert.Equal("HIT", await ReadOnAAsync());
        using (var write = await _b.Client.SendAsync(ApprovalConfigs.Call(HttpMethod.Put, "/tools/catalog/items/7", """{"name":"new"}""", run: "run-shared")))
        {
            Assert.Equal(HttpStatusCode.OK, write.StatusCode);
        }

        Assert.Equal("MISS", await ReadOnAAsync());
        Assert.Equal("HIT", await ReadOnAAsync());
        Assert.Equal(2, _tool.Requests().Count(r => r.Method == "GET"));
    }

    private static async Task<string> PendingOnAsync(HttpClient client, string run) =>
        (await Http.EventuallyAsync(async () =>
        {
            using var response = await client.SendAsync(ApprovalConfigs.Admin(HttpMethod.Get, "/admin/approvals"));
            using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            foreach (var approval in document.RootElement.GetProperty("data").EnumerateArray())
            {
                if (approval.GetProperty("run").GetString() == run)
                {
                    return (JsonElement?)approval.Clone();
                }
            }

            return null;
        }, "a pending approval of run " + run, timeoutMs: 20000)).GetProperty("id").GetString()!;
}
