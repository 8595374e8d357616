using System.Diagnostics;

namespace LlmGateway.EndToEnd.Tests.Infrastructure;

/// <summary>Bounded waits for a condition a test depends on (a replica caught up, a fail-over done).</summary>
public static class Until
{
    /// <summary>Waits until <paramref name="condition"/> holds, polling every 50 ms; fails the test after <paramref name="seconds"/>.</summary>
    public static async Task TrueAsync(Func<bool> condition, string what, int seconds)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(seconds), $"waited {seconds} s for {what}");
            await Task.Delay(50);
        }
    }
}
