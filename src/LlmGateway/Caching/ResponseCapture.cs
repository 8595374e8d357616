using System.Buffers;
using System.Text;
using System.Text.Json;
using LlmGateway.Configuration;

namespace LlmGateway.Caching;

/// <summary>
/// Collects an answer as the relay forwards it, so a complete one can be cached or recorded: a JSON body as it is;
/// a chat or text completion stream assembled into the equivalent non-streamed completion (role, content, tool
/// calls, finish reason, usage), an Anthropic Messages stream into its message (<see cref="MessagesStreamAssembly"/>),
/// so one entry serves both forms; any other stream (/v1/responses) as its raw events.
/// Past <c>maxBytes</c> it gives up: the answer is not stored.
/// </summary>
internal sealed class ResponseCapture
{
    private readonly LlmEndpoint _endpoint;
    private readonly long _maxBytes;
    private byte[]? _json;
    private ArrayBufferWriter<byte>? _raw;
    private StreamAssembly? _stream;
    private MessagesStreamAssembly? _messages;
    private bool _failed;

    public ResponseCapture(LlmEndpoint endpoint, long maxBytes)
    {
        _endpoint = endpoint;
        _maxBytes = maxBytes;
    }

    /// <summary>A whole non-streamed 200 JSON answer.</summary>
    public void OnJson(ReadOnlySpan<byte> body)
    {
        if (body.Length > _maxBytes)
        {
            _failed = true;
            return;
        }

        _json = body.ToArray();
    }

    /// <summary>One SSE event as received from upstream, its terminating blank line included.</summary>
    public void OnEvent(ReadOnlySpan<byte> evt)
    {
        if (_failed)
        {
            return;
        }

        if (_endpoint is not (LlmEndpoint.ChatCompletions or LlmEndpoint.Completions or LlmEndpoint.Messages))
        {
            _raw ??= new ArrayBufferWriter<byte>();
            if (_raw.WrittenCount + evt.Length > _maxBytes)
            {
                _failed = true;
                return;
            }

            _raw.Write(evt);
            return;
        }

        var data = DataOf(evt);
        if (data.IsEmpty || data.SequenceEqual("[DONE]"u8))
        {
            return;
        }

        try
        {
            if (_endpoint == LlmEndpoint.Messages)
            {
                _messages ??= new MessagesStreamAssembly();
                _messages.Add(data);
                _failed |= _messages.Size > _maxBytes;
                return;
            }

            _stream ??= new StreamAssembly(_endpoint);
            _stream.Add(data);
            if (_stream.Size > _maxBytes)
            {
                _failed = true;
            }
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or FormatException)
        {
            _failed = true;
        }
    }

    /// <summary>The stored form of what was captured, or null when nothing usable was (or it grew too large).</summary>
    public (CachedBodyKind Kind, byte[] Body)? Build()
    {
        if (_failed)
        {
            return null;
        }

        if (_json is not null)
        {
            return (CachedBodyKind.Json, _json);
        }

        if (_raw is not null)
        {
            return (CachedBodyKind.Sse, _raw.WrittenSpan.ToArray());
        }

        var body = _messages?.Build() ?? _stream?.Build();
        return body is null || body.Length > _maxBytes ? null : (CachedBodyKind.Json, body);
    }

    /// <summary>The single-line data payload of an event, or empty.</summary>
    private static ReadOnlySpan<byte> DataOf(ReadOnlySpan<byte> evt)
    {
        ReadOnlySpan<byte> data = default;
        while (!evt.IsEmpty)
        {
            var newline = evt.IndexOf((byte)'\n');
            var line = newline < 0 ? evt : evt[..newline];
            evt = newline < 0 ? default : evt[(newline + 1)..];
            if (!line.IsEmpty && line[^1] == (byte)'\r')
            {
                line = line[..^1];
            }

            if (line.StartsWith("data:"u8))
            {
                data = line[5..];
                if (!data.IsEmpty && data[0] == (byte)' ')
                {
                    data = data[1..];
                }
            }
        }

        return data;
    }

    /// <summary>The state of a chat or text completion stream, chunk by chunk.</summary>
    private sealed class StreamAssembly(LlmEndpoint endpoint)
    {
        private readonly SortedDictionary<int, Choice> _choices = [];
        private string? _id;
        private long _created;
        private string? _model;
        private string? _fingerprint;
        private byte[]? _usage;

        public long Size { get; private set; }

        public void Add(ReadOnlySpan<byte> data)
        {
            Size += data.Length;
            var reader = new Utf8JsonReader(data);
            using var document = JsonDocument.ParseValue(ref reader);
            var root = document.RootElement;
            if (root.TryGetProperty("error", out _))
            {
                throw new InvalidOperationException("the stream carried an error");
            }

            _id ??= String(root, "id");
            _model ??= String(root, "model");
            _fingerprint ??= String(root, "system_fingerprint");
            if (_created == 0 && root.TryGetProperty("created", out var created) && created.TryGetInt64(out var c))
            {
                _created = c;
            }

            if (root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
            {
                _usage = Encoding.UTF8.GetBytes(usage.GetRawText());
            }

            if (!root.TryGetProperty("choices", out var choices) || choices.ValueKind != JsonValueKind.Array)
            {
                return;
            }

            foreach (var item in choices.EnumerateArray())
            {
                var index = item.TryGetProperty("index", out var i) && i.TryGetInt32(out var n) ? n : 0;
                if (!_choices.TryGetValue(index, out var choice))
                {
                    _choices[index] = choice = new Choice();
                }

                if (String(item, "finish_reason") is { } finish)
                {
                    choice.FinishReason = finish;
                }

                if (endpoint == LlmEndpoint.Completions)
                {
                    choice.Content.Append(String(item, "text"));
                    continue;
                }

                if (!item.TryGetProperty("delta", out var delta) || delta.ValueKind != JsonValueKind.Object)
                {
                    continue;
                }

                choice.Role ??= String(delta, "role");
                if (String(delta, "content") is { } content)
                {
                    choice.HasContent = true;
                    choice.Content.Append(content);
                }

                if (String(delta, "refusal") is { } refusal)
                {
                    (choice.Refusal ??= new StringBuilder()).Append(refusal);
                }

                if (delta.TryGetProperty("tool_calls", out var calls) && calls.ValueKind == JsonValueKind.Array)
                {
                    foreach (var call in calls.EnumerateArray())
                    {
                        var callIndex = call.TryGetProperty("index", out var ci) && ci.TryGetInt32(out var cn) ? cn : choice.ToolCalls.Count;
                        if (!choice.ToolCalls.TryGetValue(callIndex, out var tool))
                        {
                            choice.ToolCalls[callIndex] = tool = new ToolCall();
                        }

                        tool.Id ??= String(call, "id");
                        tool.Type ??= String(call, "type");
                        if (call.TryGetProperty("function", out var function) && function.ValueKind == JsonValueKind.Object)
                        {
                            tool.Name.Append(String(function, "name"));
                            tool.Arguments.Append(String(function, "arguments"));
                        }
                    }
                }
            }
        }

        /// <summary>The non-streamed completion this stream amounts to; null when it had no choices or no usage.</summary>
        public byte[]? Build()
        {
            if (_choices.Count == 0 || _usage is null)
            {
                return null;
            }

            var output = new ArrayBufferWriter<byte>();
            using (var writer = new Utf8JsonWriter(output))
            {
                writer.WriteStartObject();
                writer.WriteString("id", _id);
                writer.WriteString("object", endpoint == LlmEndpoint.Completions ? "text_completion" : "chat.completion");
                writer.WriteNumber("created", _created);
                writer.WriteString("model", _model);
                if (_fingerprint is not null)
                {
                    writer.WriteString("system_fingerprint", _fingerprint);
                }

                writer.WriteStartArray("choices");
                foreach (var (index, choice) in _choices)
                {
                    writer.WriteStartObject();
                    writer.WriteNumber("index", index);
                    if (endpoint == LlmEndpoint.Completions)
                    {
                        writer.WriteString("text", choice.Content.ToString());
                    }
                    else
                    {
                        WriteMessage(writer, choice);
                    }

                    writer.WriteNull("logprobs");
                    writer.WriteString("finish_reason", choice.FinishReason);
                    writer.WriteEndObject();
                }

                writer.WriteEndArray();
                writer.WritePropertyName("usage");
                writer.WriteRawValue(_usage, skipInputValidation: true);
                writer.WriteEndObject();
            }

            return output.WrittenSpan.ToArray();
        }

        private static void WriteMessage(Utf8JsonWriter writer, Choice choice)
        {
            writer.WriteStartObject("message");
            writer.WriteString("role", choice.Role ?? "assistant");
            if (choice.HasContent && (choice.Content.Length > 0 || choice.ToolCalls.Count == 0))
            {
                writer.WriteString("content", choice.Content.ToString());
            }
            else
            {
                writer.WriteNull("content");
            }

            if (choice.Refusal is not null)
            {
                writer.WriteString("refusal", choice.Refusal.ToString());
            }

            if (choice.ToolCalls.Count > 0)
            {
                writer.WriteStartArray("tool_calls");
                foreach (var (_, tool) in choice.ToolCalls)
                {
                    writer.WriteStartObject();
                    writer.WriteString("id", tool.Id);
                    writer.WriteString("type", tool.Type ?? "function");
                    writer.WriteStartObject("function");
                    writer.WriteString("name", tool.Name.ToString());
                    writer.WriteString("arguments", tool.Arguments.ToString());
                    writer.WriteEndObject();
                    writer.WriteEndObject();
                }

                writer.WriteEndArray();
            }

            writer.WriteEndObject();
        }

        private static string? String(JsonElement element, string name) =>
            element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

        private sealed class Choice
        {
            public string? Role;
            public bool HasContent;
            public readonly StringBuilder Content = new();
            public StringBuilder? Refusal;
            public string? FinishReason;
            public readonly SortedDictionary<int, ToolCall> ToolCalls = [];
        }

        private sealed class ToolCall
        {
            public string? Id;
            public string? Type;
            public readonly StringBuilder Name = new();
            public readonly StringBuilder Arguments = new();
        }
    }
}
