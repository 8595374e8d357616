using System.Net;
using System.Text;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Forwarding;

/// <summary>SSE relaying: incremental, byte-exact, usage-aware, and honest when a stream breaks.</summary>
public sealed class StreamingTests(GatewayFixture fixture) : IClassFixture<GatewayFixture>
{
    private GatewayServer Gateway => fixture.Gateway;

    [Fact]
    public async Task Stream_IsRelayedIncrementally_FirstChunkArrivesBeforeTheCallEnds()
    {
        var request = Http.Post("/v1/chat/completions", Http.Chat(content: "one two three four five six", stream: true), headers: ("X-Mock-Chunk-Delay-Ms", "200"));
        using var response = await Gateway.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var requestId = response.Headers.GetValues("X-Request-Id").Single();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());

        // Read up to the first content chunk.
        string? line;
        while ((line = await reader.ReadLineAsync()) is not null && !line.Contains("\"content\":\"Mock\"", StringComparison.Ordinal))
        {
        }

        Assert.NotNull(line);

        // The gateway writes its call record only after the last chunk: it must not exist yet, and the
        // mock has more chunks (200 ms apart) still to send.
        Assert.Null(Gateway.Logs.CallFor(requestId));
        var rest = await reader.ReadToEndAsync();
        Assert.Contains("data: [DONE]", rest);
        await Http.EventuallyAsync(() => Gateway.Logs.CallFor(requestId), "the call record");
    }

    [Fact]
    public async Task Stream_WithoutIncludeUsage_IsByteIdenticalToProviderStreamWithoutUsage_AndIsCharged()
    {
        var body = Http.Chat(content: "compare my bytes", stream: true);
        using var direct = new HttpClient();
        var expected = await direct.PostAsync(fixture.Mock.BaseUrl + "/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        var expectedBytes = await expected.Content.ReadAsByteArrayAsync();

        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", body));
        var actualBytes = await response.Content.ReadAsByteArrayAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(Encoding.UTF8.GetString(expectedBytes), Encoding.UTF8.GetString(actualBytes));
        Assert.DoesNotContain("usage", Encoding.UTF8.GetString(actualBytes));

        // The gateway asked upstream for usage anyway, and charged it.
        var upstreamBody = fixture.Mock.Log.Snapshot().Last(r => r.Body.Contains("compare my bytes")).Body;
        Assert.Contains("\"include_usage\":true", upstreamBody);
        var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(response.Headers.GetValues("X-Request-Id").Single()), "call record");
        Assert.Equal("False", record.GetStructuredStateValue("UsageEstimated"));
        Assert.Equal("6", record.GetStructuredStateValue("OutputTokens"));
        Assert.True(decimal.Parse(record.GetStructuredStateValue("CostUsd")!, System.Globalization.CultureInfo.InvariantCulture) > 0);
    }

    [Fact]
    public async Task Stream_WithIncludeUsage_KeepsUsageChunk_ByteIdenticalToProvider()
    {
        var body = Http.Chat(content: "usage please", stream: true, extra: ",\"stream_options\":{\"include_usage\":true}");
        using var direct = new HttpClient();
        var expected = await (await direct.PostAsync(fixture.Mock.BaseUrl + "/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"))).Content.ReadAsStringAsync();

        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", body));
        var actual = await response.Content.ReadAsStringAsync();

        Assert.Equal(expected, actual);
        Assert.Contains("\"choices\":[],\"usage\":{", actual);
        var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(response.Headers.GetValues("X-Request-Id").Single()), "call record");
        Assert.Equal("5", record.GetStructuredStateValue("OutputTokens"));
    }

    [Fact]
    public async Task Stream_SplitAcrossReads_IsReassembledIntoTheSameEvents()
    {
        var body = Http.Chat(content: "split me into halves", stream: true);
        using var whole = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", body));
        using var split = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", body, headers: ("X-Mock-Split-Events", "true")));

        Assert.Equal(await whole.Content.ReadAsStringAsync(), await split.Content.ReadAsStringAsync());
        var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(split.Headers.GetValues("X-Request-Id").Single()), "call record");
        Assert.Equal("Completed", record.GetStructuredStateValue("Outcome"));
    }

    [Fact]
    public async Task Stream_CutByUpstream_EndsWithErrorEvent_NotDone_AndChargesDeliveredOnce()
    {
        var body = Http.Chat(content: "this stream will break soon enough", stream: true);
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", body, headers: ("X-Mock-Fail-After-Chunks", "2")));
        var text = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = Http.DataEvents(text);
        Assert.DoesNotContain("[DONE]", events);
        Assert.Contains("\"code\":\"upstream_error\"", events[^1]);
        Assert.Contains("\"content\":\"Mock\"", text);

        var requestId = response.Headers.GetValues("X-Request-Id").Single();
        var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(requestId), "call record");
        Assert.Equal("StreamBroken", record.GetStructuredStateValue("Outcome"));
        Assert.Equal("True", record.GetStructuredStateValue("UsageEstimated"));
        Assert.True(decimal.Parse(record.GetStructuredStateValue("CostUsd")!, System.Globalization.CultureInfo.InvariantCulture) > 0);
        Assert.Single(Gateway.Logs.Calls(), r => r.GetStructuredStateValue("RequestId") == requestId);
    }

    [Fact]
    public async Task Stream_ProviderErrorEvent_IsPassedOnAsTheOnlyError_NotDone_AndCharged()
    {
        var body = Http.Chat(content: "this stream reports its own failure", stream: true);
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", body, headers: [("X-Mock-Fail-After-Chunks", "2"), ("X-Mock-Stream-Error", "true")]));
        var events = Http.DataEvents(await response.Content.ReadAsStringAsync());

        Assert.DoesNotContain("[DONE]", events);
        Assert.Single(events, e => e.Contains("\"error\"", StringComparison.Ordinal));
        Assert.Contains("mock stream error", events[^1]);
        var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(response.Headers.GetValues("X-Request-Id").Single()), "call record");
        Assert.Equal("StreamBroken", record.GetStructuredStateValue("Outcome"));
        Assert.True(decimal.Parse(record.GetStructuredStateValue("CostUsd")!, System.Globalization.CultureInfo.InvariantCulture) > 0);
    }

    [Fact]
    public async Task Stream_MalformedUpstreamEvents_GetContractError_AndGatewayStaysUp()
    {
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(stream: true), headers: ("X-Mock-Garbage", "sse")));

        // Nothing usable was sent before the garbage, so the caller gets a plain 502 in OpenAI's shape.
        await Http.AssertErrorAsync(response, 502, "upstream_error", shouldRetry: true);
        using var after = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat()));
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [Fact]
    public async Task Stream_CutByClient_IsStillCharged()
    {
        var request = Http.Post("/v1/chat/completions", Http.Chat(content: "a long answer that the client abandons halfway", stream: true), headers: ("X-Mock-Chunk-Delay-Ms", "150"));
        string requestId;

        // A client that really hangs up: by default SocketsHttpHandler drains an abandoned body to reuse the connection.
        using var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = new Uri(Gateway.BaseUrl) };
        using (var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            requestId = response.Headers.GetValues("X-Request-Id").Single();
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            var contentChunks = 0;
            while (contentChunks < 3 && await reader.ReadLineAsync() is { } line)
            {
                if (line.Contains("\"content\":\"", StringComparison.Ordinal) && !line.Contains("\"content\":\"\"", StringComparison.Ordinal))
                {
                    contentChunks++;
                }
            }
        }

        var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(requestId), "call record of the abandoned stream");
        Assert.Equal("ClientAborted", record.GetStructuredStateValue("Outcome"));
        Assert.True(long.Parse(record.GetStructuredStateValue("OutputTokens")!) > 0);
        Assert.True(decimal.Parse(record.GetStructuredStateValue("CostUsd")!, System.Globalization.CultureInfo.InvariantCulture) > 0);
    }

    [Fact]
    public async Task ResponsesApi_Stream_IsRelayedAndCharged()
    {
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/responses", """{"model":"mock-small","input":"respond to me","stream":true}"""));
        var text = await response.Content.ReadAsStringAsync();

        Assert.Contains("event: response.completed", text);
        var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(response.Headers.GetValues("X-Request-Id").Single()), "call record");
        Assert.Equal("Completed", record.GetStructuredStateValue("Outcome"));
        Assert.Equal("False", record.GetStructuredStateValue("UsageEstimated"));
    }
}
