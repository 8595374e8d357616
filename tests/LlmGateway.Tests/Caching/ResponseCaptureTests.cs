using System.Text;
using System.Text.Json;
using LlmGateway.Accounting;
using LlmGateway.Caching;
using LlmGateway.Configuration;

namespace LlmGateway.Tests.Caching;

public sealed class ResponseCaptureTests
{
    private const string Header = "\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\"";

    private static readonly string[] ChatStream =
    [
        $$$"""data: {{{{Header}}},"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}""",
        $$$"""data: {{{{Header}}},"choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}],"usage":null}""",
        $$$"""data: {{{{Header}}},"choices":[{"index":0,"delta":{"content":" there"},"finish_reason":null}],"usage":null}""",
        $$$"""data: {{{{Header}}},"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}""",
        $$$"""data: {{{{Header}}},"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}""",
        "data: [DONE]",
    ];

    private static ResponseCapture Capture(IEnumerable<string> events, LlmEndpoint endpoint = LlmEndpoint.ChatCompletions, long max = 1 << 20)
    {
        var capture = new ResponseCapture(endpoint, max);
        foreach (var evt in events)
        {
            capture.OnEvent(Encoding.UTF8.GetBytes(evt + "\n\n"));
        }

        return capture;
    }

    [Fact]
    public void ChatStream_AssemblesIntoACompletion()
    {
        var (kind, body) = Capture(ChatStream).Build()!.Value;

        Assert.Equal(CachedBodyKind.Json, kind);
        var root = JsonDocument.Parse(body).RootElement;
        Assert.Equal("chat.completion", root.GetProperty("object").GetString());
        var choice = root.GetProperty("choices")[0];
        Assert.Equal("Hello there", choice.GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("assistant", choice.GetProperty("message").GetProperty("role").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(5, root.GetProperty("usage").GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public void RenderedStream_ReassemblesToTheSameCompletion()
    {
        var body = Capture(ChatStream).Build()!.Value.Body;
        var answer = new CachedAnswer(LlmEndpoint.ChatCompletions, "m", CachedBodyKind.Json, body, default, 0, DateTimeOffset.UnixEpoch, DateTimeOffset.MaxValue);

        var sse = Encoding.UTF8.GetString(CachedAnswerRenderer.RenderStream(answer, includeUsage: true));
        var again = Capture(sse.Split("\n\n", StringSplitOptions.RemoveEmptyEntries)).Build()!.Value.Body;

        Assert.Equal(Encoding.UTF8.GetString(body), Encoding.UTF8.GetString(again));
        Assert.EndsWith("data: [DONE]\n\n", sse, StringComparison.Ordinal);
    }

    [Fact]
    public void ToolCallDeltas_AreJoined_AndRenderedBack()
    {
        string[] events =
        [
            $$$"""data: {{{{Header}}},"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"lookup","arguments":""}}]},"finish_reason":null}]}""",
            $$$"""data: {{{{Header}}},"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"q\":"}}]},"finish_reason":null}]}""",
            $$$"""data: {{{{Header}}},"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]},"finish_reason":null}]}""",
            $$$"""data: {{{{Header}}},"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}""",
            $$$"""data: {{{{Header}}},"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}""",
        ];

        var body = Capture(events).Build()!.Value.Body;
        var message = JsonDocument.Parse(body).RootElement.GetProperty("choices")[0].GetProperty("message");

        Assert.Equal(JsonValueKind.Null, message.GetProperty("content").ValueKind);
        var call = message.GetProperty("tool_calls")[0];
        Assert.Equal("call_1", call.GetProperty("id").GetString());
        Assert.Equal("lookup", call.GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("{\"q\":1}", call.GetProperty("function").GetProperty("arguments").GetString());

        var answer = new CachedAnswer(LlmEndpoint.ChatCompletions, "m", CachedBodyKind.Json, body, default, 0, DateTimeOffset.UnixEpoch, DateTimeOffset.MaxValue);
        var rendered = Encoding.UTF8.GetString(CachedAnswerRenderer.RenderStream(answer, includeUsage: true));
        Assert.Equal(Encoding.UTF8.GetString(body), Encoding.UTF8.GetString(Capture(rendered.Split("\n\n", StringSplitOptions.RemoveEmptyEntries)).Build()!.Value.Body));
    }

    [Fact]
    public void StreamWithoutUsage_OrWithAnError_OrTooLarge_BuildsNothing()
    {
        Assert.Null(Capture(ChatStream.Where(e => !e.Contains("total_tokens", StringComparison.Ordinal))).Build());
        Assert.Null(Capture(ChatStream.Append("""data: {"error":{"message":"boom"}}""")).Build());
        Assert.Null(Capture(ChatStream, max: 100).Build());
    }

    [Fact]
    public void ResponsesStream_IsKeptRaw_AndServesStreamsOnly()
    {
        var capture = Capture(["event: response.created\ndata: {\"type\":\"response.created\"}", "event: response.completed\ndata: {\"type\":\"response.completed\"}"], LlmEndpoint.Responses);
        var (kind, body) = capture.Build()!.Value;
        var answer = new CachedAnswer(LlmEndpoint.Responses, "m", kind, body, new TokenUsage(), 0, DateTimeOffset.UnixEpoch, DateTimeOffset.MaxValue);

        Assert.Equal(CachedBodyKind.Sse, kind);
        Assert.StartsWith("event: response.created\n", Encoding.UTF8.GetString(body), StringComparison.Ordinal);
        Assert.True(answer.CanServe(stream: true));
        Assert.False(answer.CanServe(stream: false));
    }
}
