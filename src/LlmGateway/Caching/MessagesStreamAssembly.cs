using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LlmGateway.Caching;

/// <summary>
/// An Anthropic Messages stream assembled, event by event, into the message a non-streamed call would have answered:
/// message_start's message, each content block from its content_block_start completed by its deltas (text, a tool's
/// input JSON, thinking and its signature), message_delta's stop reason and usage. So one cache entry serves both
/// forms. A stream with an error event or a delta of a kind it does not know is not stored (it throws).
/// </summary>
internal sealed class MessagesStreamAssembly
{
    private readonly SortedDictionary<int, Block> _blocks = [];
    private JsonObject? _message;
    private JsonObject? _usage;
    private bool _stopped;

    public long Size { get; private set; }

    public void Add(ReadOnlySpan<byte> data)
    {
        Size += data.Length;
        var root = JsonNode.Parse(data) as JsonObject ?? throw new InvalidOperationException("an event that is not an object");
        switch ((string?)root["type"])
        {
            case "message_start":
                _message = root["message"] as JsonObject ?? throw new InvalidOperationException("message_start without a message");
                _usage = _message["usage"] as JsonObject;
                break;
            case "content_block_start":
                _blocks[Index(root)] = new Block(root["content_block"] as JsonObject ?? throw new InvalidOperationException("a block without content"));
                break;
            case "content_block_delta":
                if (!_blocks.TryGetValue(Index(root), out var block) || root["delta"] is not JsonObject delta)
                {
                    throw new InvalidOperationException("a delta of no block");
                }

                block.Add(delta);
                break;
            case "message_delta":
                if (_message is null)
                {
                    throw new InvalidOperationException("message_delta before message_start");
                }

                if (root["delta"] is JsonObject messageDelta)
                {
                    foreach (var (name, value) in messageDelta)
                    {
                        _message[name] = value?.DeepClone();
                    }
                }

                if (root["usage"] is JsonObject usage)
                {
                    _usage ??= [];
                    foreach (var (name, value) in usage)
                    {
                        if (value is not null)
                        {
                            _usage[name] = value.DeepClone();
                        }
                    }
                }

                break;
            case "message_stop":
                _stopped = true;
                break;
            case "ping" or "content_block_stop":
                break;
            default:
                throw new InvalidOperationException("an error or unknown event");
        }
    }

    /// <summary>The message; null unless the stream reached message_stop.</summary>
    public byte[]? Build()
    {
        if (!_stopped || _message is null)
        {
            return null;
        }

        var content = new JsonArray();
        foreach (var (_, block) in _blocks)
        {
            content.Add(block.Build());
        }

        _message["content"] = content;
        _message["usage"] = _usage?.DeepClone();
        var output = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(output))
        {
            _message.WriteTo(writer);
        }

        return output.WrittenSpan.ToArray();
    }

    private static int Index(JsonObject root) => root["index"] is JsonValue value && value.TryGetValue<int>(out var index) ? index : 0;

    private sealed class Block(JsonObject start)
    {
        private StringBuilder? _text;
        private StringBuilder? _json;
        private StringBuilder? _thinking;
        private string? _signature;

        public void Add(JsonObject delta)
        {
            switch ((string?)delta["type"])
            {
                case "text_delta":
                    (_text ??= new StringBuilder()).Append((string?)delta["text"]);
                    break;
                case "input_json_delta":
                    (_json ??= new StringBuilder()).Append((string?)delta["partial_json"]);
                    break;
                case "thinking_delta":
                    (_thinking ??= new StringBuilder()).Append((string?)delta["thinking"]);
                    break;
                case "signature_delta":
                    _signature = (string?)delta["signature"];
                    break;
                default:
                    throw new InvalidOperationException("a delta of a kind the cache does not assemble");
            }
        }

        public JsonObject Build()
        {
            var block = (JsonObject)start.DeepClone();
            if (_text is not null)
            {
                block["text"] = ((string?)block["text"] ?? string.Empty) + _text;
            }

            if (_json is not null)
            {
                block["input"] = _json.Length == 0 ? new JsonObject() : JsonNode.Parse(_json.ToString());
            }

            if (_thinking is not null)
            {
                block["thinking"] = ((string?)block["thinking"] ?? string.Empty) + _thinking;
            }

            if (_signature is not null)
            {
                block["signature"] = _signature;
            }

            return block;
        }
    }
}
