namespace LlmGateway.Accounting;

/// <summary>
/// Token estimates where no tokenizer is available (none restores here). OpenAI's tokenizers average
/// about 4 characters of English text per token, so bytes of text / 4 is used. For ASCII text this is close
/// (a few percent); for non-Latin scripts UTF-8 takes 2-3 bytes per character and the estimate runs high.
/// Estimates only ever size reservations and charge cut streams that carried no usage; whenever the
/// upstream reports usage, that is what is charged.
/// </summary>
internal static class TokenEstimator
{
    public const int BytesPerToken = 4;

    /// <summary>Per-message framing tokens of chat formats (role markers and separators).</summary>
    public const int TokensPerMessage = 4;

    public static long FromTextBytes(long bytes) => bytes <= 0 ? 0 : (bytes + BytesPerToken - 1) / BytesPerToken;

    public static long Prompt(long textBytes, int messages) => FromTextBytes(textBytes) + ((long)messages * TokensPerMessage);
}
