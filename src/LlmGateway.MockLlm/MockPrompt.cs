using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace LlmGateway.MockLlm;

// The prompt text of a request: what reply ids hash and prompt tokens count.
internal sealed class MockPrompt(string model)
{
    // OpenAI's chat format (its cookbook, "How to count tokens with tiktoken"): 3 tokens frame each message, 1 more
    // marks a name, and 3 prime the reply.
    private const int TokensPerMessage = 3;
    private const int TokensPerName = 1;
    private const int ReplyTokens = 3;

    private readonly StringBuilder _text = new();
    private readonly Tokenizer? _tokenizer = MockTokenizers.For(model);
    private int _counted;
    private int _messages;

    public int ByteCount { get; private set; }

    public string Text => _text.ToString();

    // With the model's tokenizer: the text's tokens plus the chat framing. Otherwise OpenAI's rough rule of four
    // bytes per token. At least one.
    public int Tokens => Math.Max(1, _tokenizer is null
        ? (ByteCount + 3) / 4
        : _counted + (_messages * TokensPerMessage) + (_messages > 0 ? ReplyTokens : 0));

    // Opens a chat message: its role (and name) are counted with its framing; its content follows with AppendContent.
    public void AddMessage(string? role, string? name = null)
    {
        _messages++;
        if (_tokenizer is null)
        {
            return;
        }

        _counted += role is null ? 0 : _tokenizer.CountTokens(role);
        if (name is not null)
        {
            _counted += TokensPerName + _tokenizer.CountTokens(name);
        }
    }

    public void Append(string text)
    {
        if (text.Length == 0)
        {
            return;
        }

        if (_text.Length > 0)
        {
            _text.Append('\n');
        }

        _text.Append(text);
        ByteCount += Encoding.UTF8.GetByteCount(text);
        _counted += _tokenizer?.CountTokens(text) ?? 0;
    }

    // Appends message content — a string, or a list of parts carrying "text" — and returns its text.
    public string AppendContent(JsonElement content)
    {
        string text;
        switch (content.ValueKind)
        {
            case JsonValueKind.String:
                text = content.GetString()!;
                break;
            case JsonValueKind.Array:
                var parts = new StringBuilder();
                foreach (var part in content.EnumerateArray())
                {
                    parts.Append(part.GetString("text"));
                }

                text = parts.ToString();
                break;
            default:
                return string.Empty;
        }

        Append(text);
        return text;
    }
}
