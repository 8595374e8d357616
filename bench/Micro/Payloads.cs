using System.Text;

namespace LlmGateway.Benchmarks;

/// <summary>The request, response and SSE stream the load harness uses (bench/payloads), embedded.</summary>
public static class Payloads
{
    public static byte[] ChatRequest { get; } = Load("chat-request.json");

    public static byte[] ChatResponse { get; } = Load("chat-response.json");

    public static byte[] ChatStream { get; } = Load("chat-stream.sse");

    /// <summary>The data of one content chunk of the stream (the common event).</summary>
    public static byte[] ContentChunk { get; } = StreamEvent(1);

    /// <summary>The data of the usage-only chunk (choices empty, usage set).</summary>
    public static byte[] UsageChunk { get; } = StreamEvent(-2);

    /// <summary>The chat request padded to about <paramref name="bytes"/> bytes of prompt text.</summary>
    public static byte[] ChatRequestOfSize(int bytes)
    {
        var text = Encoding.UTF8.GetString(ChatRequest);
        var marker = "\"content\":\"My order";
        var at = text.IndexOf(marker, StringComparison.Ordinal) + "\"content\":\"".Length;
        var padding = new StringBuilder();
        while (padding.Length < bytes - ChatRequest.Length)
        {
            padding.Append("Please also check the parcel history for anything unusual. ");
        }

        return Encoding.UTF8.GetBytes(text.Insert(at, padding.ToString(0, Math.Max(0, bytes - ChatRequest.Length))));
    }

    private static byte[] StreamEvent(int index)
    {
        var events = Encoding.UTF8.GetString(ChatStream).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        var chosen = events[index >= 0 ? index : events.Length + index];
        return Encoding.UTF8.GetBytes(chosen["data: ".Length..]);
    }

    private static byte[] Load(string name)
    {
        using var stream = typeof(Payloads).Assembly.GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"embedded payload {name} is missing");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }
}
