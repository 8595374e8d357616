using System.Globalization;
using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Forwarding;

/// <summary>What the provider sees and what the caller is charged.</summary>
public sealed class ForwardingTests(GatewayFixture fixture) : IClassFixture<GatewayFixture>
{
    private GatewayServer Gateway => fixture.Gateway;

    [Fact]
    public async Task Forwarding_SwapsCallerKeyForProviderKey_AndKeepsOtherHeadersAndBody()
    {
        var body = Http.Chat(content: "credential check");
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", body, headers:
            [("X-Custom-Trace", "keep-me"), ("X-Run-Id", "run-42"), ("api-key", TestConfigs.Key), ("x-api-key", TestConfigs.Key), ("X-Gateway-No-Downgrade", "true")]));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var seen = fixture.Mock.Log.Snapshot().Last(r => r.Body.Contains("credential check"));
        Assert.Equal("Bearer " + TestConfigs.ProviderKey, seen.Headers["Authorization"]);
        Assert.DoesNotContain(seen.Headers.Values, v => v.Contains(TestConfigs.Key, StringComparison.Ordinal));
        Assert.Equal("keep-me", seen.Headers["X-Custom-Trace"]);
        Assert.DoesNotContain(seen.Headers.Keys, k => k.StartsWith("X-Gateway-", StringComparison.OrdinalIgnoreCase));
        Assert.False(seen.Headers.ContainsKey("api-key") || seen.Headers.ContainsKey("x-api-key") || seen.Headers.ContainsKey("X-Run-Id"));
        Assert.Equal(response.Headers.GetValues("X-Request-Id").Single(), seen.Headers["X-Request-Id"]);
        Assert.Equal(body, seen.Body);
        Assert.Equal("/v1/chat/completions", seen.Path);

        var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(response.Headers.GetValues("X-Request-Id").Single()), "call record");
        Assert.Equal("run-42", record.GetStructuredStateValue("RunId"));
        Assert.Equal("alice", record.GetStructuredStateValue("User"));
    }

    [Fact]
    public async Task TraceParent_IsPropagatedUpstream_WithTheCallersTraceId()
    {
        const string traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "traced call"), headers: ("traceparent", $"00-{traceId}-00f067aa0ba902b7-01")));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var seen = fixture.Mock.Log.Snapshot().Last(r => r.Body.Contains("traced call"));
        Assert.Contains(traceId, seen.Headers["traceparent"]);
    }

    [Fact]
    public async Task CallerRequestId_IsKeptAndPropagated()
    {
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "with my id"), headers: ("X-Request-Id", "my-request-123")));

        Assert.Equal("my-request-123", response.Headers.GetValues("X-Request-Id").Single());
        Assert.Equal("my-request-123", fixture.Mock.Log.Snapshot().Last(r => r.Body.Contains("with my id")).Headers["X-Request-Id"]);
    }

    [Fact]
    public async Task Cost_WithCachedAndReasoningTokens_IsExact()
    {
        // mock-large: input $2.50, cached input $1.25, output $10.00 per million tokens.
        // 1000 input of which 400 cached, 500 output of which 200 reasoning (reasoning is billed as output):
        // 600 × 2.50 + 400 × 1.25 + 500 × 10.00 = 7000 µ$ = $0.007.
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "mock-large"), headers:
            [("X-Mock-Usage-Prompt", "1000"), ("X-Mock-Usage-Cached", "400"), ("X-Mock-Usage-Completion", "500"), ("X-Mock-Usage-Reasoning", "200")]));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(0.007m, decimal.Parse(response.Headers.GetValues("X-Gateway-Cost-Usd").Single(), CultureInfo.InvariantCulture));
        var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(response.Headers.GetValues("X-Request-Id").Single()), "call record");
        Assert.Equal(0.007m, decimal.Parse(record.GetStructuredStateValue("CostUsd")!, CultureInfo.InvariantCulture));
        Assert.Equal("400", record.GetStructuredStateValue("CachedInputTokens"));
        Assert.Equal("200", record.GetStructuredStateValue("ReasoningTokens"));
    }

    [Fact]
    public async Task Cost_OfStream_WithKnownUsage_IsExact()
    {
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "mock-large", stream: true), headers:
            [("X-Mock-Usage-Prompt", "2000"), ("X-Mock-Usage-Cached", "1000"), ("X-Mock-Usage-Completion", "100"), ("X-Mock-Usage-Reasoning", "50")]));
        await response.Content.ReadAsStringAsync();

        // 1000 × 2.50 + 1000 × 1.25 + 100 × 10.00 = 4750 µ$.
        var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(response.Headers.GetValues("X-Request-Id").Single()), "call record");
        Assert.Equal(0.00475m, decimal.Parse(record.GetStructuredStateValue("CostUsd")!, CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task Embeddings_AndCompletions_AndResponses_AreForwardedAndCharged()
    {
        foreach (var (path, body) in new[]
        {
            ("/v1/embeddings", """{"model":"mock-embed","input":["a","b"]}"""),
            ("/v1/completions", """{"model":"mock-small","prompt":"complete this"}"""),
            ("/v1/responses", """{"model":"mock-small","input":"respond"}"""),
        })
        {
            using var response = await Gateway.Client.SendAsync(Http.Post(path, body));
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path}: {(int)response.StatusCode}");
            Assert.True(response.Headers.Contains("X-Gateway-Cost-Usd"), path);
            Assert.Equal(path, fixture.Mock.Log.Snapshot()[^1].Path);
        }
    }

    [Fact]
    public async Task Models_ListsOnlyWhatTheKeyMayUse()
    {
        var request = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        request.Headers.Authorization = new("Bearer", TestConfigs.OtherKey);
        using var response = await Gateway.Client.SendAsync(request);
        using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        Assert.Equal("list", document.RootElement.GetProperty("object").GetString());
        var ids = document.RootElement.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()!).ToArray();
        Assert.Equal(new[] { "mock-small" }, ids);
    }

    [Fact]
    public async Task Models_ForAllModelsKey_OmitsModelsWhoseProviderHasNoKey()
    {
        var request = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        request.Headers.Authorization = new("Bearer", TestConfigs.Key);
        using var response = await Gateway.Client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();

        Assert.Contains("\"mock-large\"", text);
        Assert.DoesNotContain("needs-key", text);
    }

    [Fact]
    public async Task ClientDisconnect_CancelsTheUpstreamRequest()
    {
        using var cts = new CancellationTokenSource();
        var request = Http.Post("/v1/chat/completions", Http.Chat(content: "cancel me"), headers: ("X-Mock-Latency-Ms", "1500"));
        var pending = Gateway.Client.SendAsync(request, cts.Token);
        await Http.EventuallyAsync(() => fixture.Mock.Log.Snapshot().LastOrDefault(r => r.Body.Contains("cancel me")), "the upstream request");
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending);

        var record = await Http.EventuallyAsync(() => Gateway.Logs.Calls().LastOrDefault(r => r.GetStructuredStateValue("Status") == "499"), "an aborted call record");
        Assert.Equal("ClientAborted", record.GetStructuredStateValue("Outcome"));
    }

    [Fact]
    public async Task Secrets_NeverAppearInLogs()
    {
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), headers: ("X-Mock-Status", "500")));
        using var ok = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat()));
        await Http.EventuallyAsync(() => Gateway.Logs.CallFor(ok.Headers.GetValues("X-Request-Id").Single()), "call record");

        foreach (var record in Gateway.Logs.GetSnapshot())
        {
            var text = record.Text();
            Assert.DoesNotContain(TestConfigs.Key, text);
            Assert.DoesNotContain(TestConfigs.ProviderKey, text);
        }
    }
}
