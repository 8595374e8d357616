using System.Globalization;
using System.Text.Json;
using static LlmGateway.MockLlm.MockLlmConstants;

namespace LlmGateway.MockLlm;

// Token counts of one reply; each can be overridden by an X-Mock-Usage-* header.
internal readonly record struct MockUsage(int PromptTokens, int CompletionTokens, int CachedTokens, int ReasoningTokens)
{
    public int TotalTokens => PromptTokens + CompletionTokens;

    public static MockUsage Create(IHeaderDictionary headers, int promptTokens, int completionTokens)
        => new(
            Override(headers, UsagePrompt) ?? promptTokens,
            Override(headers, UsageCompletion) ?? completionTokens,
            Override(headers, UsageCached) ?? 0,
            Override(headers, UsageReasoning) ?? 0);

    public void WriteChat(Utf8JsonWriter writer)
    {
        writer.WriteStartObject("usage");
        writer.WriteNumber("prompt_tokens", PromptTokens);
        writer.WriteNumber("completion_tokens", CompletionTokens);
        writer.WriteNumber("total_tokens", TotalTokens);
        writer.WriteStartObject("prompt_tokens_details");
        writer.WriteNumber("cached_tokens", CachedTokens);
        writer.WriteEndObject();
        writer.WriteStartObject("completion_tokens_details");
        writer.WriteNumber("reasoning_tokens", ReasoningTokens);
        writer.WriteEndObject();
        writer.WriteEndObject();
    }

    public void WriteCompletions(Utf8JsonWriter writer)
    {
        writer.WriteStartObject("usage");
        writer.WriteNumber("prompt_tokens", PromptTokens);
        writer.WriteNumber("completion_tokens", CompletionTokens);
        writer.WriteNumber("total_tokens", TotalTokens);
        writer.WriteEndObject();
    }

    public void WriteResponses(Utf8JsonWriter writer)
    {
        writer.WriteStartObject("usage");
        writer.WriteNumber("input_tokens", PromptTokens);
        writer.WriteStartObject("input_tokens_details");
        writer.WriteNumber("cached_tokens", CachedTokens);
        writer.WriteEndObject();
        writer.WriteNumber("output_tokens", CompletionTokens);
        writer.WriteStartObject("output_tokens_details");
        writer.WriteNumber("reasoning_tokens", ReasoningTokens);
        writer.WriteEndObject();
        writer.WriteNumber("total_tokens", TotalTokens);
        writer.WriteEndObject();
    }

    public static int? Override(IHeaderDictionary headers, string name)
        => int.TryParse(headers[name].ToString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= 0
            ? value
            : null;
}
