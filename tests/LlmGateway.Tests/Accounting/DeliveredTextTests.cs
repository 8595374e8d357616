using System.Text;
using System.Text.Json;
using LlmGateway.Accounting;

namespace LlmGateway.Tests.Accounting;

public sealed class DeliveredTextTests
{
    private static void AppendDeltas(DeliveredText text, params string[] deltas)
    {
        foreach (var delta in deltas)
        {
            var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { choices = new[] { new { delta = new { content = delta } } } }));
            Assert.True(UsageReader.TryRead(json, out _, text));
        }
    }

    [Fact]
    public void CountTokens_CountsTheDeltasAsOneText_Unescaped()
    {
        using var text = new DeliveredText();
        string[] deltas = ["Bon", "jour, \"", "le monde", "\"\n", " – café ☕"];

        AppendDeltas(text, deltas);

        var whole = string.Concat(deltas);
        Assert.Equal(Encoding.UTF8.GetByteCount(whole), text.Length);
        Assert.Equal(OrdinaryTokenizers.For(TokenizerKind.O200kBase).CountTokens(whole), text.CountTokens(TokenizerKind.O200kBase));
        Assert.Equal(OrdinaryTokenizers.For(TokenizerKind.Cl100kBase).CountTokens(whole), text.CountTokens(TokenizerKind.Cl100kBase));
    }

    [Fact]
    public void Clear_ForgetsAPreviousAttempt()
    {
        using var text = new DeliveredText();
        AppendDeltas(text, "first attempt");

        text.Clear();
        AppendDeltas(text, "hello world");

        Assert.Equal(2, text.CountTokens(TokenizerKind.O200kBase));
    }

    [Fact]
    public void PastTheLimit_TheRestIsEstimated()
    {
        using var text = new DeliveredText();
        var chunk = new string('x', 64 * 1024);
        for (var i = 0; i < DeliveredText.MaxBytes / chunk.Length; i++)
        {
            AppendDeltas(text, chunk);
        }

        var kept = text.CountTokens(TokenizerKind.O200kBase);
        AppendDeltas(text, new string('y', 400));

        Assert.Equal(DeliveredText.MaxBytes, text.Length);
        Assert.Equal(kept + 100, text.CountTokens(TokenizerKind.O200kBase));
    }
}
