using System.Buffers;
using System.Text;
using System.Text.Json;

namespace LlmGateway.Accounting;

/// <summary>
/// The generated text delivered to the caller, kept as UTF-8 in a pooled buffer for models with a tokenizer, so a
/// call cut before the provider's usage arrived is charged by the tokens of what it received rather than by bytes / 4.
/// Keeping it costs a copy of each text delta on the relay; counting it happens only for such cut calls.
/// </summary>
internal sealed class DeliveredText : IDisposable
{
    /// <summary>Text kept per call; what is delivered beyond it is charged by the estimate.</summary>
    public const int MaxBytes = 1024 * 1024;

    private byte[]? _buffer;
    private int _length;
    private long _overflowBytes;

    /// <summary>UTF-8 bytes kept so far.</summary>
    public int Length => _length;

    /// <summary>The text kept, UTF-8 (valid until the next append or dispose).</summary>
    public ReadOnlySpan<byte> Utf8 => _buffer.AsSpan(0, _length);

    /// <summary>Forgets the text of a previous attempt.</summary>
    public void Clear()
    {
        _length = 0;
        _overflowBytes = 0;
    }

    /// <summary>Appends the string the reader is on, unescaped.</summary>
    public void Append(ref Utf8JsonReader reader)
    {
        var needed = reader.HasValueSequence ? (int)reader.ValueSequence.Length : reader.ValueSpan.Length;
        if (_length + needed > MaxBytes)
        {
            _overflowBytes += needed;
            return;
        }

        if (_buffer is null || _buffer.Length - _length < needed)
        {
            var bigger = ArrayPool<byte>.Shared.Rent(Math.Min(MaxBytes, Math.Max(_length + needed, Math.Max(1024, (_buffer?.Length ?? 0) * 2))));
            _buffer?.AsSpan(0, _length).CopyTo(bigger);
            Return();
            _buffer = bigger;
        }

        try
        {
            _length += reader.CopyString(_buffer.AsSpan(_length));
        }
        catch (InvalidOperationException)
        {
            // An escaped lone surrogate: not text a tokenizer takes.
            _overflowBytes += needed;
        }
    }

    /// <summary>Tokens of the delivered text by the tokenizer of <paramref name="kind"/>; text past <see cref="MaxBytes"/> at bytes / 4.</summary>
    public long CountTokens(TokenizerKind kind)
    {
        var overflow = PromptTokens.Estimate(_overflowBytes);
        if (_length == 0)
        {
            return overflow;
        }

        if (TextTokenCounter.For(kind) is not { } tokenizer)
        {
            return PromptTokens.Estimate(_length) + overflow;
        }

        var chars = ArrayPool<char>.Shared.Rent(_length);
        try
        {
            var count = Encoding.UTF8.GetChars(_buffer.AsSpan(0, _length), chars);
            var tally = new TokenTally(long.MaxValue, TextTokenCounter.MaxCharsPerRequest);
            TextTokenCounter.Add(tokenizer, chars.AsSpan(0, count), ref tally);
            return tally.Tokens + overflow;
        }
        finally
        {
            ArrayPool<char>.Shared.Return(chars);
        }
    }

    public void Dispose()
    {
        Return();
        _length = 0;
    }

    private void Return()
    {
        if (_buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = null;
        }
    }
}
