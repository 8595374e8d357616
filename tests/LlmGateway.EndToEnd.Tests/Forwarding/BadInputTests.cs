using System.Net;
using System.Text;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Forwarding;

/// <summary>Every bad input gets the contract's error, never reaches the provider when it is the caller's fault, and leaves the gateway serving.</summary>
public sealed class BadInputTests(GatewayFixture fixture) : IClassFixture<GatewayFixture>
{
    private GatewayServer Gateway => fixture.Gateway;

    public static TheoryData<string, byte[], int, string> CallerMistakes => new()
    {
        { "malformed JSON", Encoding.UTF8.GetBytes("""{"model":"mock-small","messages":[{"role":"user" """), 400, "invalid_request_error" },
        { "not an object", Encoding.UTF8.GetBytes("""["model","mock-small"]"""), 400, "invalid_request_error" },
        { "missing model", Encoding.UTF8.GetBytes("""{"messages":[{"role":"user","content":"hi"}]}"""), 400, "invalid_request_error" },
        { "model not a string", Encoding.UTF8.GetBytes("""{"model":42,"messages":[]}"""), 400, "invalid_request_error" },
        { "unknown model", Encoding.UTF8.GetBytes("""{"model":"no-such-model","messages":[]}"""), 404, "model_not_found" },
        { "invalid UTF-8", [.. "{\"model\":\"mock-small\",\"messages\":[{\"role\":\"user\",\"content\":\""u8, 0xC3, 0x28, 0xFF, .. "\"}]}"u8], 400, "invalid_request_error" },
        { "empty body", [], 400, "invalid_request_error" },
        { "trailing garbage", Encoding.UTF8.GetBytes("""{"model":"mock-small"} trailing"""), 400, "invalid_request_error" },
    };

    [Theory]
    [MemberData(nameof(CallerMistakes))]
    public async Task CallerMistake_GetsContractError_BeforeAnyUpstreamCall(string name, byte[] body, int status, string code)
    {
        var before = fixture.Mock.Log.Count;

        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", body));

        await Http.AssertErrorAsync(response, status, code, shouldRetry: false);
        Assert.True(before == fixture.Mock.Log.Count, $"{name} reached the provider");
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task OversizedBody_Gets413_WithoutReadingItAll()
    {
        var huge = Http.Chat(content: new string('x', 2 * 1024 * 1024));

        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", huge));

        await Http.AssertErrorAsync(response, 413, "request_too_large", shouldRetry: false);
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task OversizedChunkedBody_Gets413()
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(Http.Chat(content: new string('y', 2 * 1024 * 1024))))),
        };
        request.Content.Headers.ContentType = new("application/json");
        request.Headers.TransferEncodingChunked = true;
        request.Headers.Authorization = new("Bearer", TestConfigs.Key);

        using var response = await Gateway.Client.SendAsync(request);

        await Http.AssertErrorAsync(response, 413, "request_too_large", shouldRetry: false);
    }

    [Fact]
    public async Task MissingKey_Gets401()
    {
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), key: null));

        await Http.AssertErrorAsync(response, 401, "invalid_api_key", shouldRetry: false);
    }

    [Theory]
    [InlineData("has spaces in it")]
    [InlineData("semicolons;are;not;allowed")]
    public async Task InvalidRunId_Gets400(string runId)
    {
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), headers: ("X-Run-Id", runId)));

        await Http.AssertErrorAsync(response, 400, "invalid_request_error", shouldRetry: false);
    }

    [Fact]
    public async Task ProviderWithoutItsKey_Gets503WithActionableMessage_AndNoUpstreamCall()
    {
        var before = fixture.Mock.Log.Count;

        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "needs-key")));

        await Http.AssertErrorAsync(response, 503, "upstream_unavailable", shouldRetry: false);
        Assert.Contains("LLMGW_TEST_UNSET_KEY_VARIABLE", (await Http.ErrorOf(response)).GetProperty("message").GetString());
        Assert.Equal(before, fixture.Mock.Log.Count);
    }

    [Fact]
    public async Task UpstreamHtml502_BecomesUpstreamError_InOpenAiShape()
    {
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), headers: [("X-Mock-Garbage", "html"), ("X-Mock-Status", "502")]));

        await Http.AssertErrorAsync(response, 502, "upstream_error", shouldRetry: true);
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task UpstreamMalformedJson_BecomesUpstreamError_AndIsNotCharged()
    {
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), headers: ("X-Mock-Garbage", "json")));

        await Http.AssertErrorAsync(response, 502, "upstream_error", shouldRetry: true);
        var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(response.Headers.GetValues("X-Request-Id").Single()), "call record");
        Assert.Equal("UpstreamGarbage", record.GetStructuredStateValue("Outcome"));
        Assert.Equal("0", record.GetStructuredStateValue("CostUsd"));
    }

    [Fact]
    public async Task UpstreamUnreachable_Gets502UpstreamError()
    {
        await using var mock = await MockLlmServer.StartAsync();
        var deadUrl = mock.BaseUrl;
        await mock.DisposeAsync();
        await using var gateway = await GatewayServer.StartAsync(TestConfigs.Default(deadUrl));

        using var response = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat()));

        await Http.AssertErrorAsync(response, 502, "upstream_error", shouldRetry: true);
    }

    [Fact]
    public async Task UpstreamSlowerThanAttemptTimeout_Gets504()
    {
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), headers: ("X-Mock-Hang", "true")));

        await Http.AssertErrorAsync(response, 504, "upstream_timeout", shouldRetry: true);
    }

    [Fact]
    public async Task UpstreamOwn4xx_PassesThroughUnchanged()
    {
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), headers: ("X-Mock-Status", "422")));

        Assert.Equal(422, (int)response.StatusCode);
        Assert.Contains("mock injected 422", await response.Content.ReadAsStringAsync());
    }

    private async Task AssertStillServingAsync()
    {
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat()));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }
}
