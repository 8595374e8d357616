using System.Buffers.Text;
using System.Text;

namespace LlmGateway.Redis;

/// <summary>What a RESP2 reply can be.</summary>
internal enum RespKind : byte
{
    Nil,
    Integer,
    Simple,
    Bulk,
    Error,
    Array,
}

/// <summary>One RESP2 reply: an integer, a (bulk or simple) string, an error, nil, or an array of replies.</summary>
internal readonly struct RespReply
{
    private RespReply(RespKind kind, long integer, string? text, RespReply[]? items)
    {
        Kind = kind;
        Integer = integer;
        Text = text;
        Items = items;
    }

    public RespKind Kind { get; }

    public long Integer { get; }

    /// <summary>A string's text (UTF-8 decoded) or an error's message.</summary>
    public string? Text { get; }

    public RespReply[]? Items { get; }

    public static RespReply Nil => default;

    public static RespReply FromInteger(long value) => new(RespKind.Integer, value, null, null);

    public static RespReply FromText(RespKind kind, string text) => new(kind, 0, text, null);

    public static RespReply FromArray(RespReply[] items) => new(RespKind.Array, 0, null, items);

    /// <summary>The reply as a number: an integer, or a string holding one (as Lua's numbers come back).</summary>
    public long AsInt64() => Kind switch
    {
        RespKind.Integer => Integer,
        RespKind.Bulk or RespKind.Simple when long.TryParse(Text, System.Globalization.CultureInfo.InvariantCulture, out var value) => value,
        _ => throw new InvalidCastException($"A Redis reply of kind {Kind} is not a number."),
    };

    /// <summary>
    /// Parses one whole reply from the start of <paramref name="data"/>. False when the reply is not all there yet
    /// (nothing consumed: call again with more data); a malformed reply throws.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> data, out RespReply reply, out int consumed)
    {
        consumed = 0;
        return TryParse(data, ref consumed, out reply, depth: 0);
    }

    private static bool TryParse(ReadOnlySpan<byte> data, ref int position, out RespReply reply, int depth)
    {
        reply = default;
        if (depth > 8)
        {
            throw new InvalidDataException("Redis reply nested too deeply.");
        }

        var start = position;
        if (!TryReadLine(data, ref position, out var line))
        {
            position = start;
            return false;
        }

        if (line.IsEmpty)
        {
            throw new InvalidDataException("Empty line in a Redis reply.");
        }

        var body = line[1..];
        switch (line[0])
        {
            case (byte)':':
                reply = FromInteger(ParseInteger(body));
                return true;
            case (byte)'+':
                reply = FromText(RespKind.Simple, Encoding.UTF8.GetString(body));
                return true;
            case (byte)'-':
                reply = FromText(RespKind.Error, Encoding.UTF8.GetString(body));
                return true;
            case (byte)'$':
            {
                var length = ParseInteger(body);
                if (length < 0)
                {
                    return true; // nil
                }

                if (length > int.MaxValue - 2)
                {
                    throw new InvalidDataException("Redis bulk string too long.");
                }

                if (data.Length - position < length + 2)
                {
                    position = start;
                    return false;
                }

                reply = FromText(RespKind.Bulk, Encoding.UTF8.GetString(data.Slice(position, (int)length)));
                position += (int)length + 2;
                return true;
            }

            case (byte)'*':
            {
                var count = ParseInteger(body);
                if (count < 0)
                {
                    return true; // nil array
                }

                if (count > 1_000_000)
                {
                    throw new InvalidDataException("Redis array too long.");
                }

                var items = new RespReply[count];
                for (var i = 0; i < items.Length; i++)
                {
                    if (!TryParse(data, ref position, out items[i], depth + 1))
                    {
                        position = start;
                        return false;
                    }
                }

                reply = FromArray(items);
                return true;
            }

            default:
                throw new InvalidDataException($"Unknown Redis reply type '{(char)line[0]}'.");
        }
    }

    private static bool TryReadLine(ReadOnlySpan<byte> data, ref int position, out ReadOnlySpan<byte> line)
    {
        var rest = data[position..];
        var end = rest.IndexOf((byte)'\n');
        if (end < 0)
        {
            line = default;
            return false;
        }

        if (end == 0 || rest[end - 1] != (byte)'\r')
        {
            throw new InvalidDataException("Redis reply line not ended by CRLF.");
        }

        line = rest[..(end - 1)];
        position += end + 1;
        return true;
    }

    private static long ParseInteger(ReadOnlySpan<byte> text) =>
        Utf8Parser.TryParse(text, out long value, out var used) && used == text.Length
            ? value
            : throw new InvalidDataException("Malformed integer in a Redis reply.");
}
