using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace LlmGateway.EndToEnd.Tests.Tracing;

/// <summary>
/// The spans of an agent run, collected with OpenTelemetry's in-memory exporter from a gateway on a real Kestrel socket,
/// calling the mock provider and a tool API on real sockets: the tree, the GenAI attributes, the trace rules (a caller's
/// traceparent is continued; without one a run is one trace), the traceparent sent upstream, and content capture.
/// </summary>
public sealed class TracingTests
{
    private const string Prompt = "prompt-text-that-must-stay-private-7f3a";

    [Fact]
    public async Task TwoStepRun_WithoutTraceParent_IsOneTraceOfCallSpansWithAttemptsAdmissionCacheAndTheRetryWait()
    {
        var spans = new SpanCollector();
        await using var mock = await MockLlmServer.StartAsync();
        await using var tool = await HeaderRecordingTool.StartAsync();
        await using var gateway = await GatewayServer.StartAsync(Config(mock.BaseUrl, tool.BaseUrl, captureContent: false), services: spans.Register);
        var runId = "run-trace-" + Guid.NewGuid().ToString("N");
        var scenario = "trace-retry-" + Guid.NewGuid().ToString("N");

        // Step 1: an LLM call whose first attempt gets 429 with Retry-After-Ms; the gateway waits and retries.
        using var first = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: Prompt), headers:
            [("X-Run-Id", runId), ("X-Mock-Status", "429"), ("X-Mock-Fail-Times", "1"), ("X-Mock-Scenario", scenario), ("X-Mock-Retry-After-Ms", "120")]));
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal("2", first.Headers.GetValues("X-Gateway-Attempts").Single());
        using var firstBody = JsonDocument.Parse(await first.Content.ReadAsStringAsync());

        // Step 2: a tool call of the run. Step 3: a second LLM call.
        using var toolCall = new HttpRequestMessage(HttpMethod.Get, "/tools/echo/items/1");
        toolCall.Headers.Authorization = new("Bearer", TestConfigs.Key);
        toolCall.Headers.Add("X-Run-Id", runId);
        using var toolResponse = await gateway.Client.SendAsync(toolCall);
        Assert.Equal(HttpStatusCode.OK, toolResponse.StatusCode);
        using var second = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: Prompt + " again"), headers: ("X-Run-Id", runId)));
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);

        // The run's trace id: SHA-256 of the run id, first 16 bytes. Spans end just after their answer is sent.
        var traceId = RunTraceId(runId);
        var trace = await Http.EventuallyAsync(
            () => spans.InTrace(traceId) is { } all && all.Count(s => s.Kind == ActivityKind.Server) == 3 && all.Count(s => s.Kind == ActivityKind.Client) == 4 ? all : null,
            "three gateway spans and four attempt spans in the run's trace", timeoutMs: 10000);

        var calls = trace.Where(s => s.Kind == ActivityKind.Server && s.DisplayName == "chat mock-small").OrderBy(s => s.StartTimeUtc).ToList();
        Assert.Equal(2, calls.Count);
        var toolSpan = Assert.Single(trace, s => s.Kind == ActivityKind.Server && s.DisplayName == "execute_tool echo");
        foreach (var root in calls.Append(toolSpan))
        {
            // Roots of the run's trace: no parent (not ASP.NET Core's unexported request activity).
            Assert.Equal(default, root.ParentSpanId);
            Assert.Equal("LlmGateway", root.Source.Name);
            Assert.Equal(runId, root.GetTagItem("llm_gateway.run_id"));
            Assert.Equal("alice", root.GetTagItem("llm_gateway.user"));
        }

        // Call 1: admission and cache lookup children, two attempts (429, then 200) and the wait between them.
        var call = calls[0];
        var children = trace.Where(s => s.ParentSpanId == call.SpanId).ToList();
        var admission = Assert.Single(children, s => s.DisplayName == "admission");
        Assert.Equal(ActivityKind.Internal, admission.Kind);
        var lookup = Assert.Single(children, s => s.DisplayName == "cache lookup");
        Assert.Equal("bypass", lookup.GetTagItem("llm_gateway.cache"));
        var attempts = children.Where(s => s.Kind == ActivityKind.Client).OrderBy(s => s.StartTimeUtc).ToList();
        Assert.Equal(2, attempts.Count);
        Assert.Equal(429, attempts[0].GetTagItem("http.response.status_code"));
        Assert.Equal("429", attempts[0].GetTagItem("error.type"));
        Assert.Equal(ActivityStatusCode.Error, attempts[0].Status);
        Assert.Equal(200, attempts[1].GetTagItem("http.response.status_code"));
        Assert.Equal([1, 2], attempts.Select(a => (int)a.GetTagItem("llm_gateway.attempt")!));
        Assert.True(admission.StartTimeUtc < attempts[0].StartTimeUtc && call.StartTimeUtc <= lookup.StartTimeUtc);
        var wait = Assert.Single(call.Events, e => e.Name == "retry_wait");
        var delayMs = (double)wait.Tags.Single(t => t.Key == "llm_gateway.retry.delay_ms").Value!;
        Assert.InRange(delayMs, 120, 1000);
        Assert.True(wait.Timestamp >= attempts[0].StartTimeUtc + attempts[0].Duration && wait.Timestamp <= attempts[1].StartTimeUtc);

        // GenAI attributes of call 1, against what the gateway answered.
        var usage = firstBody.RootElement.GetProperty("usage");
        Assert.Equal("chat", call.GetTagItem("gen_ai.operation.name"));
        Assert.Equal("openai", call.GetTagItem("gen_ai.system"));
        Assert.Equal("mock-small", call.GetTagItem("gen_ai.request.model"));
        Assert.Equal(firstBody.RootElement.GetProperty("model").GetString(), call.GetTagItem("gen_ai.response.model"));
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt64(), call.GetTagItem("gen_ai.usage.input_tokens"));
        Assert.Equal(usage.GetProperty("completion_tokens").GetInt64(), call.GetTagItem("gen_ai.usage.output_tokens"));
        Assert.Equal(0L, call.GetTagItem("gen_ai.usage.cache_read.input_tokens"));
        Assert.Equal(0L, call.GetTagItem("gen_ai.usage.cache_creation.input_tokens"));
        Assert.Equal(["stop"], (string[])call.GetTagItem("gen_ai.response.finish_reasons")!);
        Assert.Equal(double.Parse(first.Headers.GetValues("X-Gateway-Cost-Usd").Single(), CultureInfo.InvariantCulture), (double)call.GetTagItem("llm_gateway.cost_usd")!, 10);
        Assert.Equal("bypass", call.GetTagItem("llm_gateway.cache"));
        Assert.Equal(2, call.GetTagItem("llm_gateway.attempts"));
        Assert.Equal(200, call.GetTagItem("http.response.status_code"));

        // Upstream saw each attempt's own span as its parent: not the caller's, not HttpClient's, not ASP.NET Core's.
        var upstream = mock.Log.Snapshot().Where(r => r.Headers.TryGetValue("X-Mock-Scenario", out var s) && s == scenario).Select(r => r.Headers["traceparent"]).ToList();
        Assert.Equal(attempts.Select(a => $"00-{traceId}-{a.SpanId}-01"), upstream);
        var toolAttempt = Assert.Single(trace, s => s.Kind == ActivityKind.Client && s.ParentSpanId == toolSpan.SpanId);
        Assert.Equal($"00-{traceId}-{toolAttempt.SpanId}-01", Assert.Single(tool.Requests).TraceParent);
        Assert.Equal("echo", toolSpan.GetTagItem("gen_ai.tool.name"));
        Assert.Equal("execute_tool", toolSpan.GetTagItem("gen_ai.operation.name"));

        // Steps as the admission store counted them: LLM call, tool call, LLM call.
        Assert.Equal([1L, 2L, 3L], new[] { calls[0], toolSpan, calls[1] }.Select(s => (long?)s.GetTagItem("llm_gateway.step")));

        // Content is off by default: the prompt is in no attribute or event of any span of the run.
        Assert.DoesNotContain(trace, s => Mentions(s, "prompt-text"));
    }

    [Fact]
    public async Task CallersTraceParent_IsContinued_AndContentIsCapturedOnlyWhenConfigured()
    {
        var spans = new SpanCollector();
        await using var mock = await MockLlmServer.StartAsync();
        await using var tool = await HeaderRecordingTool.StartAsync();
        await using var gateway = await GatewayServer.StartAsync(Config(mock.BaseUrl, tool.BaseUrl, captureContent: true), services: spans.Register);
        var traceId = ActivityTraceId.CreateRandom();
        var callerSpan = ActivitySpanId.CreateRandom();
        var runId = "run-with-parent-" + Guid.NewGuid().ToString("N");

        using var response = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: Prompt), headers:
            [("X-Run-Id", runId), ("traceparent", $"00-{traceId}-{callerSpan}-01"), ("tracestate", "agent=7")]));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        var trace = await Http.EventuallyAsync(
            () => spans.InTrace(traceId) is { } all && all.Any(s => s.Kind == ActivityKind.Server) && all.Any(s => s.Kind == ActivityKind.Client) ? all : null,
            "the call's spans in the caller's trace", timeoutMs: 10000);
        var call = Assert.Single(trace, s => s.Kind == ActivityKind.Server);
        Assert.Equal(callerSpan, call.ParentSpanId);
        Assert.True(call.HasRemoteParent);
        var attempt = Assert.Single(trace, s => s.Kind == ActivityKind.Client);
        Assert.Equal(call.SpanId, attempt.ParentSpanId);

        // The run id did not start a trace of its own: the caller's trace wins.
        Assert.Empty(spans.InTrace(RunTraceId(runId)));

        // The provider saw the attempt as parent (the caller's traceparent was replaced), with the caller's tracestate.
        var seen = mock.Log.Snapshot().Last(r => r.Body.Contains(Prompt, StringComparison.Ordinal));
        Assert.Equal($"00-{traceId}-{attempt.SpanId}-01", seen.Headers["traceparent"]);
        Assert.Equal("agent=7", seen.Headers["tracestate"]);

        // Gateway:Tracing:CaptureContent: the request and the answer are on the call span.
        Assert.Contains(Prompt, (string)call.GetTagItem("llm_gateway.request.content")!, StringComparison.Ordinal);
        Assert.Contains("\"choices\"", (string)call.GetTagItem("llm_gateway.response.content")!, StringComparison.Ordinal);

        // A streamed answer: the text the caller received is the span's content (not the raw events).
        var streamTrace = ActivityTraceId.CreateRandom();
        using var stream = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: Prompt, stream: true), headers:
            [("X-Run-Id", runId), ("traceparent", $"00-{streamTrace}-{callerSpan}-01")]));
        var events = await stream.Content.ReadAsStringAsync();
        var streamed = await Http.EventuallyAsync(
            () => spans.InTrace(streamTrace).FirstOrDefault(s => s.Kind == ActivityKind.Server && s.GetTagItem("gen_ai.response.finish_reasons") is not null),
            "the streamed call's span", timeoutMs: 10000);
        var text = (string)streamed.GetTagItem("llm_gateway.response.content")!;
        Assert.False(string.IsNullOrEmpty(text));
        Assert.DoesNotContain("data:", text, StringComparison.Ordinal);
        Assert.Equal(DeltaText(events), text);
    }

    [Fact]
    public async Task OtlpEndpoint_ReceivesTheCallSpans_OverHttpProtobuf_WithTheCollectorHeaders()
    {
        var received = new ConcurrentQueue<string>();
        var keys = new ConcurrentQueue<string>();
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        await using var collector = builder.Build();
        collector.MapPost("/v1/traces", async (HttpContext context) =>
        {
            Assert.Equal("application/x-protobuf", context.Request.ContentType);
            keys.Enqueue(context.Request.Headers["x-collector-key"].ToString());
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);

            // OTLP protobuf carries span names and attribute keys and values as plain UTF-8: enough to see what was exported.
            received.Enqueue(Encoding.UTF8.GetString(body.ToArray()));
            return Results.Ok();
        });
        await collector.StartAsync();
        var collectorUrl = collector.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First();

        await using var mock = await MockLlmServer.StartAsync();
        var runId = "run-otlp-" + Guid.NewGuid().ToString("N");
        var config = Config(mock.BaseUrl, mock.BaseUrl, captureContent: false)
            .Replace("\"Sampler\": 1,", $"\"OtlpEndpoint\": \"{collectorUrl}/v1/traces\", \"OtlpHeaders\": {{ \"x-collector-key\": \"collector-secret\" }}, \"Sampler\": 1,", StringComparison.Ordinal);
        await using (var gateway = await GatewayServer.StartAsync(config))
        {
            using var response = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: Prompt), headers: ("X-Run-Id", runId)));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // Stopping the gateway flushes its batch of spans.
        var export = Assert.Single(received, body => body.Contains(runId, StringComparison.Ordinal));
        Assert.Contains("LlmGateway", export, StringComparison.Ordinal);
        Assert.Contains("chat mock-small", export, StringComparison.Ordinal);
        Assert.Contains("gen_ai.usage.output_tokens", export, StringComparison.Ordinal);
        Assert.DoesNotContain(Prompt, export, StringComparison.Ordinal);
        Assert.DoesNotContain(TestConfigs.ProviderKey, export, StringComparison.Ordinal);
        Assert.DoesNotContain(TestConfigs.Key, export, StringComparison.Ordinal);
        Assert.NotEmpty(keys);
        Assert.All(keys, key => Assert.Equal("collector-secret", key));
        await collector.StopAsync();
    }

    [Fact]
    public async Task Fallback_ShowsOnTheCallSpan_WithTheAttemptsAtBothModels()
    {
        var spans = new SpanCollector();
        await using var mock = await MockLlmServer.StartAsync();
        var config = Config(mock.BaseUrl, mock.BaseUrl, captureContent: false).Replace(
            "\"Models\": {", "\"Models\": { \"flaky\": { \"Provider\": \"mock\", \"InputUsdPerMTok\": 1, \"OutputUsdPerMTok\": 2, \"Fallbacks\": [ \"mock-small\" ] },", StringComparison.Ordinal);
        await using var gateway = await GatewayServer.StartAsync(config, services: spans.Register);
        var runId = "run-fallback-" + Guid.NewGuid().ToString("N");

        // The first three attempts (all of flaky's) answer 500; the fallback's first attempt answers.
        using var response = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "flaky"), headers:
            [("X-Run-Id", runId), ("X-Mock-Status", "500"), ("X-Mock-Fail-Times", "3"), ("X-Mock-Scenario", runId)]));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("fallback", response.Headers.GetValues("X-Gateway-Downgrade").Single());

        var trace = await Http.EventuallyAsync(
            () => spans.InTrace(RunTraceId(runId)) is { } all && all.Any(s => s.Kind == ActivityKind.Server) && all.Count(s => s.Kind == ActivityKind.Client) == 4 ? all : null,
            "the call span and its four attempts", timeoutMs: 10000);
        var call = Assert.Single(trace, s => s.Kind == ActivityKind.Server);
        Assert.Equal("chat flaky", call.DisplayName);
        Assert.Equal("flaky", call.GetTagItem("gen_ai.request.model"));
        Assert.Equal("mock-small", call.GetTagItem("llm_gateway.served_model"));
        Assert.Equal("fallback", call.GetTagItem("llm_gateway.downgrade"));
        Assert.Equal(4, call.GetTagItem("llm_gateway.attempts"));
        var attempts = trace.Where(s => s.Kind == ActivityKind.Client).OrderBy(s => s.StartTimeUtc).ToList();
        Assert.Equal([500, 500, 500, 200], attempts.Select(a => (int)a.GetTagItem("http.response.status_code")!));
        Assert.Equal(["flaky", "flaky", "flaky", "mock-small"], attempts.Select(a => (string)a.GetTagItem("gen_ai.request.model")!));
        Assert.All(attempts, a => Assert.Equal(call.SpanId, a.ParentSpanId));

        // Waits between flaky's attempts only: the fallback is tried at once.
        Assert.Equal(2, call.Events.Count(e => e.Name == "retry_wait"));
    }

    private static ActivityTraceId RunTraceId(string runId) =>
        ActivityTraceId.CreateFromString(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(runId)).AsSpan(0, 16)));

    private static bool Mentions(Activity span, string text) =>
        span.TagObjects.Any(t => Contains(t.Value, text)) || span.Events.Any(e => e.Tags.Any(t => Contains(t.Value, text))) || span.DisplayName.Contains(text, StringComparison.Ordinal);

    private static bool Contains(object? value, string text) => value switch
    {
        string s => s.Contains(text, StringComparison.Ordinal),
        string[] array => array.Any(s => s.Contains(text, StringComparison.Ordinal)),
        _ => false,
    };

    private static string Config(string mockBaseUrl, string toolBaseUrl, bool captureContent) => $$"""
    {
      "Gateway": {
        "Providers": { "mock": { "BaseUrl": "{{mockBaseUrl}}/v1", "ApiKey": "{{TestConfigs.ProviderKey}}" } },
        "Models": { "mock-small": { "Provider": "mock", "InputUsdPerMTok": 1.00, "OutputUsdPerMTok": 2.00 } },
        "Tools": { "echo": { "BaseUrl": "{{toolBaseUrl}}/echo" } },
        "Keys": [ { "Key": "{{TestConfigs.Key}}", "User": "alice", "Tools": { "echo": [ { "Allow": "GET /**" } ] } } ],
        "Resilience": { "AttemptTimeout": "00:00:05", "RetryBaseDelay": "00:00:00.050", "MaxRetriesPerRun": 0 },
        "Tracing": { "Sampler": 1, "CaptureContent": {{(captureContent ? "true" : "false")}} }
      }
    }
    """;

    /// <summary>The text of a chat completions stream: its deltas' content, in order.</summary>
    private static string DeltaText(string events)
    {
        var text = new StringBuilder();
        foreach (var line in events.Split('\n'))
        {
            if (!line.StartsWith("data: {", StringComparison.Ordinal))
            {
                continue;
            }

            using var chunk = JsonDocument.Parse(line["data: ".Length..]);
            if (chunk.RootElement.TryGetProperty("choices", out var choices) && choices.GetArrayLength() > 0
                && choices[0].TryGetProperty("delta", out var delta) && delta.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String)
            {
                text.Append(content.GetString());
            }
        }

        return text.ToString();
    }
}
