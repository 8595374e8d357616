using LlmGateway.Drift;

namespace LlmGateway.Tests.Drift;

public sealed class AnswerSignalsTests
{
    [Fact]
    public void Read_ChatCompletion_TakesModelFingerprintFinishReasonAndToolNames()
    {
        var answer = new AnswerSignals();
        answer.Read("""{"id":"c","model":"gpt-4o-2024-08-06","system_fingerprint":"fp_abc","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"t","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"""u8);

        Assert.Equal("gpt-4o-2024-08-06/fp_abc", answer.Version);
        Assert.Equal("tool_calls", answer.FinishReason);
        Assert.Equal(["get_weather"], answer.ToolCalls!);
    }

    [Fact]
    public void Read_ChatCompletionChunks_NameComesOnceAndFinishReasonLast()
    {
        var answer = new AnswerSignals();
        answer.Read("""{"model":"gpt-4o","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t","function":{"name":"lookup","arguments":""}}]},"finish_reason":null}]}"""u8);
        answer.Read("""{"model":"gpt-4o","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]},"finish_reason":null}]}"""u8);
        answer.Read("""{"model":"gpt-4o","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"""u8);
        answer.Read("""{"model":"gpt-4o","system_fingerprint":"fp_1","choices":[],"usage":{"prompt_tokens":1}}"""u8);

        Assert.Equal("gpt-4o/fp_1", answer.Version);
        Assert.Equal("tool_calls", answer.FinishReason);
        Assert.Equal(["lookup"], answer.ToolCalls!);
    }

    [Fact]
    public void Read_AnthropicMessage_AndItsStreamEvents()
    {
        var message = new AnswerSignals();
        message.Read("""{"id":"msg","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"hi"},{"type":"tool_use","id":"tu","name":"get_weather","input":{}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":2}}"""u8);
        Assert.Equal("claude-sonnet-4-5-20250929", message.Version);
        Assert.Equal("tool_use", message.FinishReason);
        Assert.Equal(["get_weather"], message.ToolCalls!);

        var stream = new AnswerSignals();
        stream.Read("""{"type":"message_start","message":{"id":"msg","model":"claude-x","content":[],"stop_reason":null,"usage":{"input_tokens":1}}}"""u8);
        stream.Read("""{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"tu","name":"search","input":{}}}"""u8);
        stream.Read("""{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"name\":\"x\"}"}}"""u8);
        stream.Read("""{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":5}}"""u8);
        Assert.Equal("claude-x", stream.Version);
        Assert.Equal("tool_use", stream.FinishReason);
        Assert.Equal(["search"], stream.ToolCalls!);
    }

    [Fact]
    public void Read_ResponsesStream_CountsToolCallsOnceFromTheCompletedResponse()
    {
        var answer = new AnswerSignals();
        answer.Read("""{"type":"response.created","response":{"model":"gpt-4.1","status":"in_progress","output":[]}}"""u8);
        answer.Read("""{"type":"response.output_item.added","item":{"type":"function_call","name":"lookup"}}"""u8);
        answer.Read("""{"type":"response.completed","response":{"model":"gpt-4.1","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"output":[{"type":"function_call","name":"lookup","arguments":"{}"}]}}"""u8);

        Assert.Equal("gpt-4.1", answer.Version);
        Assert.Equal("max_output_tokens", answer.FinishReason);
        Assert.Equal(["lookup"], answer.ToolCalls!);
    }

    [Fact]
    public void Clear_ForgetsTheLastAttempt()
    {
        var answer = new AnswerSignals();
        answer.Read("""{"model":"m","choices":[{"finish_reason":"stop","message":{"content":"x"}}]}"""u8);
        answer.Clear();

        Assert.Null(answer.Version);
        Assert.Null(answer.FinishReason);
        Assert.Null(answer.ToolCalls);
    }
}
