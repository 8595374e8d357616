using System.Text;
using System.Text.Json;

namespace LlmGateway.MockLlm;

// The prompt text of a request: what reply ids hash and prompt tokens count.
internal sealed class MockPrompt
{
    private readonly StringBuilder _text = new();

    public int ByteCount { get; private set; }

    public string Text => _text.ToString();

    // OpenAI's rough rule of four bytes per token; at least one.
    public int Tokens => Math.Max(1, (ByteCount + 3) / 4);

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
