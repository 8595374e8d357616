using System.Collections.Concurrent;
using Microsoft.ML.Tokenizers;

namespace LlmGateway.MockLlm;

// The tokenizer OpenAI uses for a model name, as Microsoft.ML.Tokenizers maps it (gpt-4o → o200k_base, gpt-4 →
// cl100k_base, ...): prompts to such models are counted as the real provider counts them. Null for other names,
// whose prompts keep the rough four bytes per token.
internal static class MockTokenizers
{
    // Model names come from requests: remember only so many.
    private const int MaxNames = 256;

    private static readonly ConcurrentDictionary<string, Tokenizer?> ByModel = new(StringComparer.Ordinal);

    public static Tokenizer? For(string model)
    {
        if (ByModel.TryGetValue(model, out var known))
        {
            return known;
        }

        Tokenizer? tokenizer;
        try
        {
            // The BPE data load once per encoding and are shared by every tokenizer made from them.
            tokenizer = TiktokenTokenizer.CreateForModel(model);
        }
        catch (NotSupportedException)
        {
            tokenizer = null;
        }

        if (ByModel.Count < MaxNames)
        {
            ByModel.TryAdd(model, tokenizer);
        }

        return tokenizer;
    }
}
