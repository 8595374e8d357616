using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using LlmGateway.MockLlm;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;

namespace LlmGateway.EndToEnd.Tests.MockLlm;

public sealed class MockLlmTests : IAsyncLifetime
{
    private const string ChatBody = """{"model":"mock-small","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello there"}]}""";
    private const string StreamBody = """{"model":"mock-small","stream":true,"messages":[{"role":"user","content":"one two three"}]}""";
    private const string StreamWithUsageBody = """{"model":"mock-small","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"one two three"}]}""";

    private WebApplication _app = null!;
    private HttpClient _client = null!;
    private MockRequestLog _log = null!;

    public async Task InitializeAsync()
    {
        // The empty builder reads no appsettings.json, so nothing in the test output folder can move the listener.
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().UseUrls("http://127.0.0.1:0");
        builder.Services.AddRoutingCore();
        builder.Services.AddMockLlm();
        _app = builder.Build();
        _app.MapMockLlm();
        _app.MapMockLlm("/prefixed");
        await _app.StartAsync();

        _client = new HttpClient { BaseAddress = new Uri(_app.Urls.First()) };
        _log = _app.Services.GetRequiredService<MockRequestLog>();
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _app.DisposeAsync();
    }

    [Fact]
    public async Task ChatCompletion_SameRequestTwice_ReturnsSameOpenAiShapedBytes()
    {
        var first = await PostAsync("/v1/chat/completions", ChatBody);
        var second = await PostAsync("/v1/chat/completions", ChatBody);

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        var bytes = await first.Content.ReadAsByteArrayAsync();
        Assert.Equal(bytes, await second.Content.ReadAsByteArrayAsync());

        using var json = JsonDocument.Parse(bytes);
        var root = json.RootElement;
        Assert.StartsWith("chatcmpl-", root.GetProperty("id").GetString());
        Assert.Equal("chat.completion", root.GetProperty("object").GetString());
        Assert.Equal(1700000000, root.GetProperty("created").GetInt64());
        Assert.Equal("mock-small", root.GetProperty("model").GetString());
        var choice = root.GetProperty("choices")[0];
        Assert.Equal("Mock reply to: Hello there", choice.GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
        var usage = root.GetProperty("usage");
        Assert.Equal(5, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(5, usage.GetProperty("prompt_tokens").GetInt32()); // 20 bytes of content / 4
        Assert.Equal(0, usage.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
    }

    [Fact]
    public async Task ChatCompletion_OpenAiModel_CountsThePromptAsOpenAiDoes()
    {
        var response = await PostAsync("/v1/chat/completions", """{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","name":"ann","content":"Hello there, how are you?"}]}""");

        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var o200k = Microsoft.ML.Tokenizers.TiktokenTokenizer.CreateForEncoding("o200k_base");
        int Count(string text) => o200k.CountTokens(text);

        // OpenAI's cookbook: 3 per message, role and content, 1 and the name's tokens for a name, 3 for the reply.
        var expected = 3 + (3 + Count("system") + Count("Be brief.")) + (3 + Count("user") + Count("Hello there, how are you?") + 1 + Count("ann"));
        Assert.Equal(expected, json.RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task ChatStream_WithIncludeUsage_DiffersOnlyByUsageChunkAndNullUsage()
    {
        var plain = await (await PostAsync("/v1/chat/completions", StreamBody)).Content.ReadAsStringAsync();
        var response = await PostAsync("/v1/chat/completions", StreamWithUsageBody);
        var withUsage = await response.Content.ReadAsStringAsync();

        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        Assert.True(response.Headers.TransferEncodingChunked); // no Content-Length
        Assert.DoesNotContain("usage", plain);
        Assert.EndsWith("data: [DONE]\n\n", withUsage);

        var events = withUsage.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        var usageEvent = Assert.Single(events, e => e.Contains("\"choices\":[]", StringComparison.Ordinal));
        Assert.Contains("\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":6,", usageEvent);
        var stripped = string.Join("\n\n", events.Where(e => e != usageEvent)).Replace(",\"usage\":null}", "}", StringComparison.Ordinal) + "\n\n";
        Assert.Equal(plain, stripped);

        var content = new StringBuilder();
        foreach (var data in events.Where(e => e != "data: [DONE]"))
        {
            using var chunk = JsonDocument.Parse(data["data: ".Length..]);
            foreach (var choice in chunk.RootElement.GetProperty("choices").EnumerateArray())
            {
                if (choice.GetProperty("delta").TryGetProperty("content", out var text))
                {
                    content.Append(text.GetString());
                }
            }
        }

        Assert.Equal("Mock reply to: one two three", content.ToString());
    }

    [Fact]
    public async Task FailTimes_FailsFirstRequestsOfScenario_ThenSucceeds()
    {
        var headers = new Dictionary<string, string>
        {
            ["X-Mock-Status"] = "429",
            ["X-Mock-Fail-Times"] = "1",
            ["X-Mock-Scenario"] = "fail-once",
            ["X-Mock-Retry-After"] = "2",
            ["X-Mock-Retry-After-Ms"] = "1500",
        };

        var failed = await PostAsync("/v1/chat/completions", ChatBody, headers);
        await Task.Delay(50);
        var succeeded = await PostAsync("/v1/chat/completions", ChatBody, headers);

        Assert.Equal(HttpStatusCode.TooManyRequests, failed.StatusCode);
        Assert.Equal("2", failed.Headers.GetValues("Retry-After").Single());
        Assert.Equal("1500", failed.Headers.GetValues("retry-after-ms").Single());
        using var error = JsonDocument.Parse(await failed.Content.ReadAsStringAsync());
        Assert.Equal("rate_limit_exceeded", error.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(HttpStatusCode.OK, succeeded.StatusCode);

        var records = _log.Snapshot();
        Assert.Equal(2, _log.CountFor("/v1/chat/completions"));
        Assert.True(records[1].ReceivedAt - records[0].ReceivedAt >= TimeSpan.FromMilliseconds(45));
        Assert.Equal("fail-once", records[0].Headers["x-mock-scenario"]);
    }

    [Fact]
    public async Task Latency_IsWaitedAfterTheRequestIsRecorded()
    {
        var stopwatch = Stopwatch.StartNew();
        var responseTask = PostAsync("/v1/chat/completions", ChatBody, new() { ["X-Mock-Latency-Ms"] = "300" });
        while (_log.Count == 0)
        {
            await Task.Delay(10);
        }

        Assert.False(responseTask.IsCompleted);
        var response = await responseTask;

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(stopwatch.Elapsed >= TimeSpan.FromMilliseconds(290));
    }

    [Fact]
    public async Task FailAfterChunks_CutsStreamWithoutDone()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent(StreamBody, Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("X-Mock-Fail-After-Chunks", "2");
        using var response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());

        var received = new StringBuilder();
        await Assert.ThrowsAnyAsync<IOException>(async () =>
        {
            while (await reader.ReadLineAsync() is { } line)
            {
                received.AppendLine(line);
            }
        });

        var lines = received.ToString().Split('\n');
        Assert.Equal(2, lines.Count(l => l.Contains("\"delta\":{\"content\"", StringComparison.Ordinal)));
        Assert.DoesNotContain(lines, l => l.Contains("[DONE]", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Embeddings_Base64_DecodesToUnitVectorsOfRequestedDimensions()
    {
        var response = await PostAsync("/v1/embeddings", """{"model":"mock-embedding","input":["a","b"],"dimensions":16,"encoding_format":"base64"}""");

        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var data = json.RootElement.GetProperty("data");
        Assert.Equal(2, data.GetArrayLength());
        foreach (var item in data.EnumerateArray())
        {
            var bytes = Convert.FromBase64String(item.GetProperty("embedding").GetString()!);
            Assert.Equal(16 * sizeof(float), bytes.Length);
            var sumOfSquares = 0d;
            for (var i = 0; i < bytes.Length; i += sizeof(float))
            {
                var value = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(i));
                sumOfSquares += value * value;
            }

            Assert.InRange(sumOfSquares, 0.999, 1.001);
        }

        Assert.Equal(2, json.RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task ResponsesStream_EndsWithCompletedEventCarryingUsage_AndNoDone()
    {
        var response = await PostAsync("/v1/responses", """{"model":"mock-small","input":"Hi","stream":true}""");
        var text = await response.Content.ReadAsStringAsync();

        var events = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("event: response.created\n", events[0]);
        Assert.Equal(4, events.Count(e => e.StartsWith("event: response.output_text.delta\n", StringComparison.Ordinal)));
        Assert.StartsWith("event: response.completed\n", events[^1]);
        Assert.DoesNotContain("[DONE]", text);

        using var completed = JsonDocument.Parse(events[^1].Split("\ndata: ")[1]);
        var result = completed.RootElement.GetProperty("response");
        Assert.Equal("completed", result.GetProperty("status").GetString());
        Assert.Equal("Mock reply to: Hi", result.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(4, result.GetProperty("usage").GetProperty("output_tokens").GetInt32());
    }

    [Fact]
    public async Task MalformedBody_Returns400_AndIsStillRecorded()
    {
        var response = await PostAsync("/v1/chat/completions", "{\"model\":");

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var record = Assert.Single(_log.Snapshot());
        Assert.Equal("{\"model\":", record.Body);
        Assert.Null(record.Model);
    }

    [Fact]
    public async Task PrefixedMap_ServesTheSameApi_AndTheLogEndpointsListAndClear()
    {
        var response = await PostAsync("/prefixed/v1/chat/completions", ChatBody);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(1, _log.CountFor("/prefixed/v1/chat/completions"));

        using var list = JsonDocument.Parse(await _client.GetStringAsync("/prefixed/mock/requests"));
        Assert.Equal("mock-small", list.RootElement[0].GetProperty("model").GetString());

        var cleared = await _client.DeleteAsync("/mock/requests");
        Assert.Equal(HttpStatusCode.NoContent, cleared.StatusCode);
        Assert.Equal(0, _log.Count);
    }

    private Task<HttpResponseMessage> PostAsync(string path, string body, Dictionary<string, string>? headers = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        foreach (var (name, value) in headers ?? [])
        {
            request.Headers.Add(name, value);
        }

        return _client.SendAsync(request);
    }
}
