using LlmGateway.Tests.Shared;

namespace LlmGateway.Tests.Budgets;

/// <summary>The shared test clock (tests/Shared) the budget tests rely on; timers matter to Polly and Task.Delay users.</summary>
public sealed class ManualTimeProviderTests
{
    [Fact]
    public void Advance_MovesClockAndTimestamp()
    {
        var time = new ManualTimeProvider();
        var before = time.GetTimestamp();

        time.Advance(TimeSpan.FromSeconds(90));

        Assert.Equal(ManualTimeProvider.DefaultStart.AddSeconds(90), time.GetUtcNow());
        Assert.Equal(TimeSpan.FromSeconds(90), time.GetElapsedTime(before));
    }

    [Fact]
    public async Task Delay_CompletesOnlyWhenClockPassesDueTime()
    {
        var time = new ManualTimeProvider();
        var delay = Task.Delay(TimeSpan.FromSeconds(10), time);

        time.Advance(TimeSpan.FromSeconds(9));
        Assert.False(delay.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(1));

        await delay.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void PeriodicTimer_FiresOncePerPeriodPassed()
    {
        var time = new ManualTimeProvider();
        var fired = new List<DateTimeOffset>();
        using var timer = time.CreateTimer(_ => fired.Add(time.GetUtcNow()), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2));

        time.Advance(TimeSpan.FromSeconds(6));

        Assert.Equal([1, 3, 5], fired.Select(at => (at - ManualTimeProvider.DefaultStart).TotalSeconds));
        Assert.Equal(ManualTimeProvider.DefaultStart.AddSeconds(6), time.GetUtcNow());
    }

    [Fact]
    public void SetUtcNow_Backwards_Throws() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new ManualTimeProvider().SetUtcNow(DateTimeOffset.UnixEpoch));
}
