using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Caching;

/// <summary>Record a run's answers with X-Gateway-Record, replay them with X-Gateway-Replay-Of while the provider is down.</summary>
public sealed class RunReplayTests : IAsyncLifetime
{
    private MockLlmServer? _mock;
    private GatewayServer _gateway = null!;

    public async Task InitializeAsync()
    {
        _mock = await MockLlmServer.StartAsync();
        _gateway = await GatewayServer.StartAsync(CacheConfigs.Enabled(_mock.BaseUrl));
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await StopMockAsync();
    }

    private async Task StopMockAsync()
    {
        if (_mock is not null)
        {
            await _mock.DisposeAsync();
            _mock = null;
        }
    }

    // Five steps: non-deterministic chat (never cached), a stream, an embedding, a completion and a tool-call chat.
    private static readonly (string Path, string Body)[] Steps =
    [
        ("/v1/chat/completions", Http.Chat(content: "step one")),
        ("/v1/chat/completions", Http.Chat(content: "step two", stream: true)),
        ("/v1/embeddings", """{"model":"mock-embed","input":"step three"}"""),
        ("/v1/completions", """{"model":"mock-small","prompt":"step four"}"""),
        ("/v1/chat/completions", Http.Chat(content: "step five", extra: ",\"max_tokens\":3")),
    ];

    private async Task<(HttpStatusCode Status, string Body)> SendAsync(string path, string body, params (string, string)[] headers)
    {
        using var response = await _gateway.Client.SendAsync(Http.Post(path, body, CacheConfigs.Alice, headers));
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task RecordedRun_ReplaysIdentically_WithTheProviderStopped_AndAChangedStepMisses()
    {
        var recorded = new List<string>();
        foreach (var (path, body) in Steps)
        {
            var (status, answer) = await SendAsync(path, body, ("X-Run-Id", "rec-run"), ("X-Gateway-Record", "true"));
            Assert.Equal(HttpStatusCode.OK, status);
            recorded.Add(answer);
        }

        await Http.EventuallyAsync(async () =>
        {
            using var jsonl = await _gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, "/admin/recordings/rec-run"));
            var lines = (await jsonl.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;
            return lines == Steps.Length ? (int?)lines : null;
        }, "all steps recorded");
        await StopMockAsync();

        for (var i = 0; i < Steps.Length; i++)
        {
            using var response = await _gateway.Client.SendAsync(Http.Post(Steps[i].Path, Steps[i].Body, CacheConfigs.Alice, ("X-Run-Id", "replay-1"), ("X-Gateway-Replay-Of", "rec-run")));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal((i + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), response.Headers.GetValues("X-Gateway-Replay-Step").Single());
            var answer = await response.Content.ReadAsStringAsync();
            if (i == 1)
            {
                // A stream replays as a stream with the same text.
                Assert.Equal(Text(recorded[i]), Text(answer));
            }
            else
            {
                Assert.Equal(recorded[i], answer);
            }
        }

        // A second replay whose third step asks something else.
        await SendAsync(Steps[0].Path, Steps[0].Body, ("X-Run-Id", "replay-2"), ("X-Gateway-Replay-Of", "rec-run"));
        await SendAsync(Steps[1].Path, Steps[1].Body, ("X-Run-Id", "replay-2"), ("X-Gateway-Replay-Of", "rec-run"));
        using var changed = await _gateway.Client.SendAsync(Http.Post("/v1/embeddings", """{"model":"mock-embed","input":"something else"}""", CacheConfigs.Alice, ("X-Run-Id", "replay-2"), ("X-Gateway-Replay-Of", "rec-run")));
        await Http.AssertErrorAsync(changed, 409, "replay_miss", shouldRetry: false);
        var message = (await Http.ErrorOf(changed)).GetProperty("message").GetString();
        Assert.Contains("step 3", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AdminApi_ListsFetchesAsJsonlAndDeletesRecordings()
    {
        await SendAsync(Steps[0].Path, Steps[0].Body, ("X-Run-Id", "rec-admin"), ("X-Gateway-Record", "true"));
        await SendAsync(Steps[2].Path, Steps[2].Body, ("X-Run-Id", "rec-admin"), ("X-Gateway-Record", "true"));

        // A step is recorded as its call ends, just after its answer reached the client.
        var steps = await Http.EventuallyAsync(async () =>
        {
            using var list = await _gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, "/admin/recordings"));
            var entry = JsonDocument.Parse(await list.Content.ReadAsStringAsync()).RootElement.GetProperty("data").EnumerateArray().SingleOrDefault(e => e.GetProperty("run").GetString() == "rec-admin");
            return entry.ValueKind == JsonValueKind.Object && entry.GetProperty("steps").GetInt32() == 2 ? (int?)2 : null;
        }, "two recorded steps");
        Assert.Equal(2, steps);

        using var jsonl = await _gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, "/admin/recordings/rec-admin"));
        Assert.Equal("application/x-ndjson", jsonl.Content.Headers.ContentType!.MediaType);
        var lines = (await jsonl.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        var second = JsonDocument.Parse(lines[1]).RootElement;
        Assert.Equal(2, second.GetProperty("step").GetInt32());
        Assert.Equal("Embeddings", second.GetProperty("endpoint").GetString());
        Assert.Equal("step three", second.GetProperty("request").GetProperty("input").GetString());
        Assert.Equal("list", second.GetProperty("response").GetProperty("object").GetString());

        // The in-memory store's size, as scraped.
        var metrics = await _gateway.Client.GetStringAsync("/metrics");
        Assert.Contains("\nllm_gateway_recordings_runs 1\n", metrics, StringComparison.Ordinal);
        var bytes = metrics.Split('\n').Single(l => l.StartsWith("llm_gateway_recordings_bytes ", StringComparison.Ordinal));
        Assert.True(long.Parse(bytes.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture) > lines.Sum(l => l.Length), bytes);

        using var deleted = await _gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Delete, "/admin/recordings/rec-admin"));
        Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
        using var gone = await _gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, "/admin/recordings/rec-admin"));
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
    }

    [Fact]
    public async Task KeyWithoutAllowRecord_Recording_Is403PermissionDenied_BeforeAnyUpstreamCall()
    {
        using var response = await _gateway.Client.SendAsync(Http.Post(Steps[0].Path, Steps[0].Body, CacheConfigs.Bob, ("X-Run-Id", "bob-rec"), ("X-Gateway-Record", "true")));

        await Http.AssertErrorAsync(response, 403, "permission_denied", shouldRetry: false);
        Assert.Contains("AllowRecord", (await Http.ErrorOf(response)).GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal(0, _mock!.Log.Count);
        using var list = await _gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, "/admin/recordings"));
        Assert.Empty(JsonDocument.Parse(await list.Content.ReadAsStringAsync()).RootElement.GetProperty("data").EnumerateArray());

        // Not asking to record is no reason to refuse.
        using var plain = await _gateway.Client.SendAsync(Http.Post(Steps[0].Path, Steps[0].Body, CacheConfigs.Bob, ("X-Run-Id", "bob-rec"), ("X-Gateway-Record", "false")));
        Assert.Equal(HttpStatusCode.OK, plain.StatusCode);
    }

    [Fact]
    public async Task ReplayOfUnknownRecording_IsReplayMissAtStep1()
    {
        using var response = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), CacheConfigs.Alice, ("X-Run-Id", "r"), ("X-Gateway-Replay-Of", "never-recorded")));

        await Http.AssertErrorAsync(response, 409, "replay_miss", shouldRetry: false);
        Assert.Equal(0, _mock!.Log.Count);
    }

    [Fact]
    public async Task AnotherUser_CannotReplayTheRecording()
    {
        await SendAsync(Steps[0].Path, Steps[0].Body, ("X-Run-Id", "rec-private"), ("X-Gateway-Record", "true"));

        using var response = await _gateway.Client.SendAsync(Http.Post(Steps[0].Path, Steps[0].Body, CacheConfigs.Bob, ("X-Run-Id", "bob-run"), ("X-Gateway-Replay-Of", "rec-private")));

        await Http.AssertErrorAsync(response, 409, "replay_miss", shouldRetry: false);
    }

    private static string Text(string sse)
    {
        var text = new System.Text.StringBuilder();
        foreach (var data in Http.DataEvents(sse))
        {
            if (data != "[DONE]" && JsonDocument.Parse(data).RootElement.GetProperty("choices") is { ValueKind: JsonValueKind.Array } choices)
            {
                foreach (var choice in choices.EnumerateArray())
                {
                    if (choice.GetProperty("delta").TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String)
                    {
                        text.Append(content.GetString());
                    }
                }
            }
        }

        return text.ToString();
    }
}
