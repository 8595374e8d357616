using LlmGateway.Budgets;
using LlmGateway.Configuration;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.Time.Testing;

namespace LlmGateway.Tests.Budgets;

/// <summary>
/// The semantics every <see cref="IAdmissionStore"/> must have, run once per store by the subclasses
/// (<see cref="InMemoryAdmissionStoreTests"/>, <see cref="RedisAdmissionStoreTests"/>). Time is a
/// <see cref="FakeTimeProvider"/>; nothing here sleeps.
/// </summary>
public abstract partial class AdmissionStoreContractTests : IDisposable
{
    protected static readonly TimeSpan Ttl = TimeSpan.FromMinutes(5);

    /// <summary>How long a call admitted at a whole second counts in a rate window: to its second's end plus 60 s.</summary>
    protected static readonly TimeSpan OneWindow = TimeSpan.FromSeconds(61);

    private readonly List<IAdmissionStore> _stores = [];
    private IAdmissionStore? _store;

    /// <summary>A Saturday, to make week boundaries visible: 2026-11-21 10:00:00 UTC.</summary>
    protected static readonly DateTimeOffset Start = new(2026, 11, 21, 10, 0, 0, TimeSpan.Zero);

    protected FakeTimeProvider Time { get; } = new(Start);

    /// <summary>A key prefix of its own per test, so tests sharing one redis-server never see each other's keys.</summary>
    protected AdmissionStoreOptions Options { get; } = new()
    {
        KeyPrefix = "test-" + Guid.NewGuid().ToString("N")[..12] + ":",
        OperationTimeout = TimeSpan.FromSeconds(2),
    };

    protected IAdmissionStore Store => _store ??= NewStore();

    public void Dispose()
    {
        foreach (var store in _stores)
        {
            (store as IDisposable)?.Dispose();
        }

        GC.SuppressFinalize(this);
    }

    [StoreFact]
    public async Task Reserve_WithinLimits_AdmitsAndHoldsWorstCase()
    {
        var result = await Store.ReserveAsync(Request(usd: 0.25m, tokens: 1000) with { UserBudget = new BudgetLimits(1m, 0, 0) });

        Assert.True(result.IsAdmitted);
        Assert.Null(result.ErrorCode);
        Assert.Equal(0.25m, result.Reservation.ReservedUsd);
        Assert.Equal(1000, result.Reservation.ReservedTokens);
        Assert.Equal(Time.GetUtcNow() + Ttl, result.Reservation.ExpiresAt);
        var state = await UserStateAsync();
        Assert.Equal(0.25m, state.ReservedUsd);
        Assert.Equal(1000, state.ReservedTokens);
        Assert.Equal(0m, state.SpentUsd);
        Assert.Equal(1, state.InFlight);
        Assert.Equal(new BudgetLimits(1m, 0, 0), state.Limits);
        Assert.Equal(default, result.Requests); // no rate limit configured: no x-ratelimit headers
        Assert.Equal(default, result.Tokens);
    }

    [StoreFact]
    public async Task Reserve_WhenBudgetExhausted_Rejects()
    {
        var request = Request(usd: 0.60m) with { UserBudget = new BudgetLimits(1m, 0, 0) };
        await SettleAsync(await AdmitAsync(request), 0.60m, 100);

        var result = await Store.ReserveAsync(request with { ReserveUsd = 0.50m });

        Assert.False(result.IsAdmitted);
        Assert.Equal(AdmissionRejection.BudgetExceeded, result.Rejection);
        Assert.Equal("budget_exceeded", result.ErrorCode);
        Assert.Equal(AdmissionScope.User, result.FailedScope);
        Assert.Equal(AdmissionLimit.Usd, result.FailedLimit);
        Assert.Equal(1m, result.LimitValue);
        Assert.Equal(TimeSpan.FromHours(14), result.RetryAfter); // 10:00 → midnight UTC, when the Day budget resets
        Assert.True((await Store.ReserveAsync(request with { ReserveUsd = 0.40m })).IsAdmitted);
    }

    [StoreFact]
    public async Task Reserve_WhenOthersHoldTheBudget_Rejects()
    {
        var request = Request(usd: 0.60m) with { UserBudget = new BudgetLimits(1m, 0, 0) };
        await AdmitAsync(request);

        var result = await Store.ReserveAsync(request);

        Assert.Equal(AdmissionRejection.BudgetExceeded, result.Rejection);
    }

    [StoreFact]
    public async Task Reserve_200ConcurrentAgainstOneDollar_AdmitsExactlyWhatFits()
    {
        const decimal Cost = 0.03m;
        var request = Request(usd: Cost) with { UserBudget = new BudgetLimits(1.00m, 0, 0), Team = "sales", TeamBudget = new BudgetLimits(5m, 0, 0) };
        await Store.PingAsync();
        var start = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        var calls = Enumerable.Range(0, 200).Select(_ => Task.Run(async () =>
        {
            await start.Task;
            var result = await Store.ReserveAsync(request);
            if (result.IsAdmitted)
            {
                await Store.SettleAsync(result.Reservation, Cost, 100);
            }

            return result;
        })).ToArray();
        start.SetResult();
        var results = await Task.WhenAll(calls);

        var admitted = results.Count(r => r.IsAdmitted);
        Assert.Equal((int)decimal.Floor(1.00m / Cost), admitted);
        Assert.All(results.Where(r => !r.IsAdmitted), r => Assert.Equal(AdmissionRejection.BudgetExceeded, r.Rejection));
        var state = await UserStateAsync();
        Assert.True(state.SpentUsd <= 1.00m);
        Assert.Equal(admitted * Cost, state.SpentUsd);
        Assert.Equal(admitted, state.Calls);
        Assert.Equal(0m, state.ReservedUsd);
        Assert.Equal(0, state.InFlight);
    }

    [StoreFact]
    public async Task Settle_ManyAtOnce_EveryOneCharged()
    {
        // 300 calls of two users and two runs settled and released concurrently (the Redis store sends settlements
        // that queue while one is in flight together, in one script): each is applied exactly once.
        var requests = Enumerable.Range(0, 300).Select(i => Request(usd: 0.01m, tokens: 100) with
        {
            User = i % 2 == 0 ? "alice" : "bob",
            RunId = $"run-{i % 2}",
            UserRateLimits = new RateLimits(10_000, 10_000_000),
            RequestHash = $"h{i}",
            RunMaxRepeats = 5,
        }).ToList();
        var reservations = await Task.WhenAll(requests.Select(async r => (await Store.ReserveAsync(r)).Reservation!));

        await Task.WhenAll(reservations.Select(async (reservation, i) =>
        {
            await Task.Yield();
            if (i % 3 == 0)
            {
                await Store.ReleaseAsync(reservation);
            }
            else
            {
                await Store.SettleAsync(reservation, 0.004m, 40);
            }
        }));

        foreach (var (user, run, parity) in new[] { ("alice", "run-0", 0), ("bob", "run-1", 1) })
        {
            var settled = Enumerable.Range(0, 300).Count(i => i % 2 == parity && i % 3 != 0);
            var state = await UserStateAsync(user);
            Assert.Equal(settled, state.Calls);
            Assert.Equal(0.004m * settled, state.SpentUsd);
            Assert.Equal(0m, state.ReservedUsd);
            Assert.Equal(0, state.InFlight);
            var runState = (await Store.GetRunStateAsync(run))!;
            Assert.Equal(settled, runState.Calls);
            Assert.Equal(40 * settled, runState.SpentTokens);
            Assert.Equal(0, runState.InFlight);
        }

        // The window holds exactly the settled calls, with their actual tokens.
        var next = await Store.ReserveAsync(requests[0] with { ReserveTokens = 0, RequestHash = "fresh" });
        var aliceSettled = Enumerable.Range(0, 300).Count(i => i % 2 == 0 && i % 3 != 0);
        Assert.Equal(10_000 - aliceSettled - 1, next.Requests.Remaining);
        Assert.Equal(10_000_000 - (40 * aliceSettled), next.Tokens.Remaining);
    }

    [StoreFact]
    public async Task Settle_ReplacesReservationByActualCost()
    {
        var request = Request(usd: 0.50m, tokens: 5000) with { UserBudget = new BudgetLimits(1m, 100_000, 0), RunId = "run-1" };
        var reservation = await AdmitAsync(request);

        await Store.SettleAsync(reservation, 0.10m, 1200);

        var user = await UserStateAsync();
        Assert.Equal(0.10m, user.SpentUsd);
        Assert.Equal(1200, user.SpentTokens);
        Assert.Equal(1, user.Calls);
        Assert.Equal(0m, user.ReservedUsd);
        Assert.Equal(0, user.ReservedTokens);
        Assert.Equal(0, user.InFlight);
        var run = await Store.GetRunStateAsync("run-1");
        Assert.NotNull(run);
        Assert.Equal(0.10m, run.SpentUsd);
        Assert.Equal(1200, run.SpentTokens);
        Assert.Equal(1, run.Calls);
        Assert.Equal(0, run.InFlight);
    }

    [StoreFact]
    public async Task Settle_CorrectsTokensPerMinuteByTheDifference()
    {
        var request = Request(tokens: 1000) with { UserRateLimits = new RateLimits(0, 10_000) };

        var first = await Store.ReserveAsync(request);
        // A call counts until the end of its second plus 60 s: admitted at a whole second, for 61 s.
        Assert.Equal(new RateLimitSnapshot(10_000, 9000, OneWindow), first.Tokens);
        await Store.SettleAsync(first.Reservation!, 0.001m, 300);
        Time.Advance(TimeSpan.FromSeconds(1));
        var second = await Store.ReserveAsync(request);

        Assert.Equal(10_000 - 300 - 1000, second.Tokens.Remaining);
        Assert.Equal(TimeSpan.FromSeconds(60), second.Tokens.ResetAfter);
    }

    [StoreFact]
    public async Task TokensPerMinute_RemainingDecreasesByTokensUsed()
    {
        var request = Request(tokens: 2000) with { UserRateLimits = new RateLimits(100, 50_000) };
        var remaining = new List<long>();

        for (var i = 0; i < 3; i++)
        {
            var result = await Store.ReserveAsync(request);
            remaining.Add(result.Tokens.Remaining);
            await Store.SettleAsync(result.Reservation!, 0.001m, 500);
        }

        // Each call holds its 2000-token worst case until settled at 500: remaining drops by 500 per finished call.
        Assert.Equal([48_000, 47_500, 47_000], remaining);
        var next = await Store.ReserveAsync(request with { ReserveTokens = 0 });
        Assert.Equal(48_500, next.Tokens.Remaining);
        Assert.Equal(new RateLimitSnapshot(100, 96, OneWindow), next.Requests);
    }

    [StoreFact]
    public async Task Release_ReturnsEverything()
    {
        var request = Request(usd: 0.40m, tokens: 1000) with
        {
            UserBudget = new BudgetLimits(1m, 0, 0),
            RunId = "run-1",
            RunBudget = new BudgetLimits(0, 0, 1),
            RunMaxRepeats = 1,
            RequestHash = "h1",
            UserRateLimits = new RateLimits(1, 1000),
            UserMaxInFlight = 1,
        };
        var reservation = await AdmitAsync(request);

        await Store.ReleaseAsync(reservation);

        var user = await UserStateAsync();
        Assert.Equal(0m, user.ReservedUsd);
        Assert.Equal(0m, user.SpentUsd);
        Assert.Equal(0, user.Calls);
        Assert.Equal(0, user.InFlight);
        var run = await Store.GetRunStateAsync("run-1");
        Assert.Equal(0, run!.Calls);
        Assert.Equal(0m, run.ReservedUsd);

        // The same call fits again: budget, run calls (1), repeats (1), RPM (1), TPM and in-flight (1) all came back.
        var again = await Store.ReserveAsync(request);
        Assert.True(again.IsAdmitted, again.ErrorCode);
        Assert.Equal(new RateLimitSnapshot(1, 0, OneWindow), again.Requests);
        Assert.Equal(0, again.Tokens.Remaining);
    }

    [StoreFact]
    public async Task SettleOrRelease_SecondCall_IsNoOp()
    {
        var reservation = await AdmitAsync(Request(usd: 0.10m));

        await Store.SettleAsync(reservation, 0.10m, 10);
        await Store.SettleAsync(reservation, 0.10m, 10);
        await Store.ReleaseAsync(reservation);

        var user = await UserStateAsync();
        Assert.Equal(0.10m, user.SpentUsd);
        Assert.Equal(1, user.Calls);
    }

    [StoreFact]
    public async Task Reservation_AfterTtl_ExpiresAndReturnsBudgetAndInFlightSlot()
    {
        var request = Request(usd: 0.80m) with { UserBudget = new BudgetLimits(1m, 0, 0), UserMaxInFlight = 1, RunId = "run-1", RunMaxInFlight = 1 };
        var lost = await AdmitAsync(request);
        Assert.Equal(AdmissionRejection.BudgetExceeded, (await Store.ReserveAsync(request)).Rejection);
        Assert.Equal(AdmissionLimit.InFlight, (await Store.ReserveAsync(request with { ReserveUsd = 0.1m })).FailedLimit);

        Time.Advance(Ttl);

        Assert.Equal(0m, (await UserStateAsync()).ReservedUsd);
        Assert.Equal(0, (await UserStateAsync()).InFlight);
        Assert.Equal(0, (await Store.GetRunStateAsync("run-1"))!.InFlight);
        var next = await AdmitAsync(request);

        // The call behind the expired reservation did happen after all: settling it still charges what it cost.
        await Store.SettleAsync(lost, 0.05m, 10);
        var user = await UserStateAsync();
        Assert.Equal(0.05m, user.SpentUsd);
        Assert.Equal(0.80m, user.ReservedUsd);
        Assert.Equal(1, user.InFlight);
        await Store.ReleaseAsync(next);
    }

    [StoreFact]
    public async Task RequestsPerMinute_AdmitsExactlyNInWindow()
    {
        var request = Request() with { UserRateLimits = new RateLimits(5, 0) };
        for (var i = 0; i < 5; i++)
        {
            var admitted = await Store.ReserveAsync(request);
            Assert.True(admitted.IsAdmitted);
            Assert.Equal(4 - i, admitted.Requests.Remaining);
            Time.Advance(TimeSpan.FromSeconds(10));
        }

        var result = await Store.ReserveAsync(request); // at 50 s: five calls at 0..40 s

        Assert.Equal(AdmissionRejection.RateLimitExceeded, result.Rejection);
        Assert.Equal("rate_limit_exceeded", result.ErrorCode);
        Assert.Equal(AdmissionScope.User, result.FailedScope);
        Assert.Equal(AdmissionLimit.RequestsPerMinute, result.FailedLimit);
        Assert.Equal(5m, result.LimitValue);
        Assert.Equal(TimeSpan.FromSeconds(11), result.RetryAfter); // the call at 0 s counts until 0 s's end + 60 s = 61 s
        Assert.Equal(new RateLimitSnapshot(5, 0, TimeSpan.FromSeconds(11)), result.Requests);
        Time.Advance(TimeSpan.FromSeconds(11) - TimeSpan.FromMilliseconds(1));
        Assert.False((await Store.ReserveAsync(request)).IsAdmitted);
        Time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.True((await Store.ReserveAsync(request)).IsAdmitted);
        Assert.False((await Store.ReserveAsync(request)).IsAdmitted);
    }

    [StoreFact]
    public async Task RequestsPerMinute_CallMidSecond_CountsUntilItsSecondEndsPlus60s()
    {
        var request = Request() with { UserRateLimits = new RateLimits(1, 0) };
        Time.Advance(TimeSpan.FromMilliseconds(400));
        await AdmitAsync(request); // at 0.4 s: counts until 61 s

        Time.Advance(TimeSpan.FromSeconds(60)); // 60.4 s: an exact log would have let it go at 60.4 s
        var result = await Store.ReserveAsync(request);

        Assert.Equal(AdmissionLimit.RequestsPerMinute, result.FailedLimit);
        Assert.Equal(TimeSpan.FromMilliseconds(600), result.RetryAfter);
        Time.Advance(TimeSpan.FromMilliseconds(600));
        Assert.True((await Store.ReserveAsync(request)).IsAdmitted);
    }

    [StoreFact]
    public async Task RequestsPerMinute_NeverMoreThanTheLimitInAny60Seconds()
    {
        // Bursts and pauses at random instants over five minutes, with releases: whatever the pattern, no 60 s span
        // holds more admitted calls than the limit, and a freed slot is usable again.
        const int Limit = 7;
        var request = Request() with { UserRateLimits = new RateLimits(Limit, 0) };
        var random = new Random(1234);
        var start = Time.GetUtcNow();
        var admitted = new List<DateTimeOffset>();
        while (Time.GetUtcNow() - start < TimeSpan.FromMinutes(5))
        {
            Time.Advance(TimeSpan.FromMilliseconds(random.Next(0, 4) == 0 ? random.Next(5_000, 40_000) : random.Next(0, 1_500)));
            var result = await Store.ReserveAsync(request);
            if (!result.IsAdmitted)
            {
                Assert.Equal(AdmissionLimit.RequestsPerMinute, result.FailedLimit);
                Assert.InRange(result.RetryAfter!.Value, TimeSpan.FromMilliseconds(1), TimeSpan.FromSeconds(61));
                continue;
            }

            if (random.Next(0, 5) == 0)
            {
                await Store.ReleaseAsync(result.Reservation!); // never happened: not counted
                continue;
            }

            await Store.SettleAsync(result.Reservation!, 0.001m, 10);
            admitted.Add(Time.GetUtcNow());
        }

        Assert.True(admitted.Count > 3 * Limit, $"only {admitted.Count} calls admitted: the test did not exercise the window");
        foreach (var at in admitted)
        {
            var inWindow = admitted.Count(t => t > at - TimeSpan.FromSeconds(60) && t <= at);
            Assert.True(inWindow <= Limit, $"{inWindow} calls in the 60 s up to {at:HH:mm:ss.fff}");
        }
    }

    [StoreFact]
    public async Task RequestsPerMinute_SlidingWindow_NoDoubleAtMinuteBoundary()
    {
        // 10:00:59: ten calls in the last second of a clock minute; a fixed window would admit ten more at 10:01:00.
        Time.SetUtcNow(Start.AddSeconds(59));
        var request = Request() with { UserRateLimits = new RateLimits(10, 0) };
        for (var i = 0; i < 10; i++)
        {
            await AdmitAsync(request);
        }

        Time.Advance(TimeSpan.FromSeconds(2));
        var result = await Store.ReserveAsync(request);

        Assert.Equal(AdmissionRejection.RateLimitExceeded, result.Rejection);
        Assert.Equal(TimeSpan.FromSeconds(59), result.RetryAfter); // 59 s's end + 60 s = 2 min
        Time.Advance(TimeSpan.FromSeconds(59));
        for (var i = 0; i < 10; i++)
        {
            await AdmitAsync(request);
        }

        Assert.False((await Store.ReserveAsync(request)).IsAdmitted);
    }

    [StoreFact]
    public async Task TokensPerMinute_WhenExceeded_RetryAfterUntilCapacity()
    {
        var request = Request(tokens: 600) with { UserRateLimits = new RateLimits(0, 1000) };
        await SettleAsync(await AdmitAsync(request), 0.01m, 600);
        Time.Advance(TimeSpan.FromSeconds(10));
        await SettleAsync(await AdmitAsync(request with { ReserveTokens = 300 }), 0.01m, 300);
        Time.Advance(TimeSpan.FromSeconds(10));

        var result = await Store.ReserveAsync(request with { ReserveTokens = 300 });

        Assert.Equal(AdmissionRejection.RateLimitExceeded, result.Rejection);
        Assert.Equal(AdmissionLimit.TokensPerMinute, result.FailedLimit);
        Assert.Equal(1000m, result.LimitValue);
        Assert.Equal(TimeSpan.FromSeconds(41), result.RetryAfter); // the 600 tokens at 0 s free enough at 61 s
        Assert.Equal(new RateLimitSnapshot(1000, 100, TimeSpan.FromSeconds(41)), result.Tokens);
        Time.Advance(TimeSpan.FromSeconds(41) - TimeSpan.FromMilliseconds(1));
        Assert.False((await Store.ReserveAsync(request with { ReserveTokens = 300 })).IsAdmitted);
        Time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.True((await Store.ReserveAsync(request with { ReserveTokens = 300 })).IsAdmitted);
    }

    [StoreFact]
    public async Task TokensPerMinute_RequestLargerThanLimit_RejectsWithoutRetryAfter()
    {
        var result = await Store.ReserveAsync(Request(tokens: 5000) with { UserRateLimits = new RateLimits(0, 4000) });

        Assert.Equal(AdmissionLimit.TokensPerMinute, result.FailedLimit);
        Assert.Null(result.RetryAfter);
    }

    [StoreFact]
    public async Task KeyRateLimit_AppliesPerKey()
    {
        var request = Request() with { KeyId = "key-a", KeyRateLimits = new RateLimits(2, 0), UserRateLimits = new RateLimits(10, 0) };
        await AdmitAsync(request);
        var second = await AdmitResultAsync(request);
        Assert.Equal(new RateLimitSnapshot(2, 0, OneWindow), second.Requests); // the key's limit is the tighter one

        var result = await Store.ReserveAsync(request);

        Assert.Equal(AdmissionScope.Key, result.FailedScope);
        Assert.Equal(AdmissionLimit.RequestsPerMinute, result.FailedLimit);
        Assert.True((await Store.ReserveAsync(request with { KeyId = "key-b" })).IsAdmitted);
    }

    [StoreFact]
    public async Task Halt_User_RejectsUntilResumed()
    {
        await Store.HaltUserAsync("alice");

        var result = await Store.ReserveAsync(Request());

        Assert.Equal(AdmissionRejection.UserHalted, result.Rejection);
        Assert.Equal("user_halted", result.ErrorCode);
        Assert.True((await UserStateAsync()).Halted);
        Assert.True((await Store.ReserveAsync(Request() with { User = "bob" })).IsAdmitted);
        await Store.ResumeUserAsync("alice");
        Assert.True((await Store.ReserveAsync(Request())).IsAdmitted);
        Assert.False((await UserStateAsync()).Halted);
    }

    [StoreFact]
    public async Task Halt_Run_RejectsUntilResumed()
    {
        var request = Request() with { RunId = "run-1" };
        await AdmitAsync(request);

        await Store.HaltRunAsync("run-1");
        var result = await Store.ReserveAsync(request);

        Assert.Equal(AdmissionRejection.RunHalted, result.Rejection);
        Assert.Equal("run_halted", result.ErrorCode);
        Assert.True((await Store.GetRunStateAsync("run-1"))!.Halted);
        Assert.True((await Store.ReserveAsync(request with { RunId = "run-2" })).IsAdmitted);
        await Store.ResumeRunAsync("run-1");
        Assert.True((await Store.ReserveAsync(request)).IsAdmitted);
    }

    [StoreFact]
    public async Task Halt_RunNotStartedYet_BlocksItsFirstCall()
    {
        await Store.HaltRunAsync("future");

        Assert.Equal(AdmissionRejection.RunHalted, (await Store.ReserveAsync(Request() with { RunId = "future" })).Rejection);
        var state = await Store.GetRunStateAsync("future");
        Assert.NotNull(state);
        Assert.Null(state.StartedAt);
    }

    [StoreFact]
    public async Task RunDeadline_MeasuredFromFirstCall_Rejects()
    {
        var start = Time.GetUtcNow();
        var request = Request() with { RunId = "run-1", RunDeadline = TimeSpan.FromMinutes(10) };
        await AdmitAsync(request);
        Time.Advance(TimeSpan.FromMinutes(10) - TimeSpan.FromMilliseconds(1));
        await AdmitAsync(request);
        Time.Advance(TimeSpan.FromMilliseconds(1));

        var result = await Store.ReserveAsync(request);

        Assert.Equal(AdmissionRejection.RunDeadlineExceeded, result.Rejection);
        Assert.Equal("run_deadline_exceeded", result.ErrorCode);
        Assert.Equal(600m, result.LimitValue);
        Assert.Null(result.RetryAfter);
        var state = await Store.GetRunStateAsync("run-1");
        Assert.Equal(start, state!.StartedAt);
        Assert.Equal(start.AddMinutes(10), state.Deadline);
    }

    [StoreFact]
    public async Task RunCalls_Ceiling_Rejects()
    {
        var request = Request() with { RunId = "run-1", RunBudget = new BudgetLimits(0, 0, 3) };
        for (var i = 0; i < 3; i++)
        {
            await SettleAsync(await AdmitAsync(request), 0.01m, 10);
        }

        var result = await Store.ReserveAsync(request);

        Assert.Equal(AdmissionRejection.BudgetExceeded, result.Rejection);
        Assert.Equal(AdmissionScope.Run, result.FailedScope);
        Assert.Equal(AdmissionLimit.Calls, result.FailedLimit);
        Assert.Equal(3m, result.LimitValue);
        Assert.Null(result.RetryAfter);
        Assert.Equal(3, (await Store.GetRunStateAsync("run-1"))!.Calls);
    }

    [StoreFact]
    public async Task RunBudget_Usd_Rejects()
    {
        var request = Request(usd: 0.30m) with { RunId = "run-1", RunBudget = new BudgetLimits(0.50m, 0, 0) };
        await AdmitAsync(request);

        var result = await Store.ReserveAsync(request);

        Assert.Equal(AdmissionScope.Run, result.FailedScope);
        Assert.Equal(AdmissionLimit.Usd, result.FailedLimit);
        Assert.Equal(0.5m, result.LimitValue);
        Assert.Equal(0.6, result.SpentFractions.Run, 6);
        Assert.True((await Store.ReserveAsync(request with { RunId = "run-2" })).IsAdmitted);
    }

    [StoreFact]
    public async Task RunBudget_FirstCallLargerThanRunBudget_Rejects()
    {
        var result = await Store.ReserveAsync(Request(usd: 0.60m) with { RunId = "run-1", RunBudget = new BudgetLimits(0.50m, 0, 0) });

        Assert.Equal(AdmissionScope.Run, result.FailedScope);
        Assert.Equal(AdmissionLimit.Usd, result.FailedLimit);
        Assert.Null(await Store.GetRunStateAsync("run-1"));
    }

    [StoreFact]
    public async Task UserBudget_Tokens_Rejects()
    {
        var request = Request(tokens: 600) with { UserBudget = new BudgetLimits(0, 1000, 0) };
        await AdmitAsync(request);

        var result = await Store.ReserveAsync(request);

        Assert.Equal(AdmissionLimit.Tokens, result.FailedLimit);
        Assert.Equal(1000m, result.LimitValue);
    }

    [StoreFact]
    public async Task TeamBudget_SharedByItsUsers_Rejects()
    {
        var request = Request(usd: 0.40m) with { Team = "sales", TeamBudget = new BudgetLimits(1m, 0, 0), TeamBudgetPeriod = BudgetPeriod.Month };
        await AdmitAsync(request);
        await AdmitAsync(request with { User = "bob" });

        var result = await Store.ReserveAsync(request with { User = "carol" });

        Assert.Equal(AdmissionScope.Team, result.FailedScope);
        Assert.Equal(AdmissionLimit.Usd, result.FailedLimit);
        Assert.Equal(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero) - Time.GetUtcNow(), result.RetryAfter);
        Assert.Equal(0.8, result.SpentFractions.Team, 6);
        Assert.True((await Store.ReserveAsync(request with { User = "carol", Team = "support" })).IsAdmitted);
    }

    [StoreFact]
    public async Task LoopGuard_SameRequestMoreThanMaxRepeats_Rejects()
    {
        var request = Request() with { RunId = "run-1", RunMaxRepeats = 3, RequestHash = "same-body" };
        for (var i = 0; i < 3; i++)
        {
            await SettleAsync(await AdmitAsync(request), 0.01m, 10);
        }

        var result = await Store.ReserveAsync(request);

        Assert.Equal(AdmissionRejection.LoopDetected, result.Rejection);
        Assert.Equal("loop_detected", result.ErrorCode);
        Assert.Equal(3m, result.LimitValue);
        Assert.True((await Store.ReserveAsync(request with { RequestHash = "other-body" })).IsAdmitted);
        Assert.True((await Store.ReserveAsync(request with { RunId = "run-2" })).IsAdmitted);
        Assert.True((await Store.ReserveAsync(request with { RequestHash = null })).IsAdmitted);
    }

    [StoreFact]
    public async Task LoopGuard_ReleasedCallsDoNotCount()
    {
        var request = Request() with { RunId = "run-1", RunMaxRepeats = 2, RequestHash = "same-body" };
        for (var i = 0; i < 5; i++)
        {
            await Store.ReleaseAsync(await AdmitAsync(request));
        }

        await AdmitAsync(request);
        await AdmitAsync(request);
        Assert.Equal(AdmissionRejection.LoopDetected, (await Store.ReserveAsync(request)).Rejection);
    }

    [StoreFact]
    public async Task InFlight_UserCap_RejectsUntilOneFinishes()
    {
        var request = Request() with { UserMaxInFlight = 2 };
        var first = await AdmitAsync(request);
        await AdmitAsync(request);

        var result = await Store.ReserveAsync(request);

        Assert.Equal(AdmissionRejection.RateLimitExceeded, result.Rejection);
        Assert.Equal(AdmissionScope.User, result.FailedScope);
        Assert.Equal(AdmissionLimit.InFlight, result.FailedLimit);
        Assert.Equal(2m, result.LimitValue);
        Assert.Equal(Options.InFlightRetryAfter, result.RetryAfter);
        await Store.SettleAsync(first, 0.01m, 10);
        Assert.True((await Store.ReserveAsync(request)).IsAdmitted);
    }

    [StoreFact]
    public async Task InFlight_RunCap_RejectsUntilOneFinishes()
    {
        var request = Request() with { RunId = "run-1", RunMaxInFlight = 1 };
        var first = await AdmitAsync(request);

        var result = await Store.ReserveAsync(request);

        Assert.Equal(AdmissionScope.Run, result.FailedScope);
        Assert.Equal(AdmissionLimit.InFlight, result.FailedLimit);
        Assert.True((await Store.ReserveAsync(request with { RunId = "run-2" })).IsAdmitted);
        await Store.ReleaseAsync(first);
        Assert.True((await Store.ReserveAsync(request)).IsAdmitted);
    }

    [StoreFact]
    public async Task FreeModel_NeverBlockedByUsdBudget()
    {
        var request = Request(usd: 1.00m) with { UserBudget = new BudgetLimits(1.00m, 0, 0) };
        await SettleAsync(await AdmitAsync(request), 1.00m, 100);

        var free = await Store.ReserveAsync(request with { ReserveUsd = 0m });
        var paid = await Store.ReserveAsync(request with { ReserveUsd = 0.000001m });

        Assert.True(free.IsAdmitted);
        Assert.Equal(1.0, free.SpentFractions.User, 6);
        Assert.Equal(AdmissionLimit.Usd, paid.FailedLimit);
        await Store.SettleAsync(free.Reservation, 0m, 100);
        Assert.Equal(1.00m, (await UserStateAsync()).SpentUsd);
    }

    [StoreFact]
    public async Task Period_Day_ResetsAtMidnightUtc()
    {
        Time.SetUtcNow(new DateTimeOffset(2026, 11, 21, 23, 0, 0, TimeSpan.Zero));
        var request = Request(usd: 1.00m) with { UserBudget = new BudgetLimits(1.00m, 0, 0), UserBudgetPeriod = BudgetPeriod.Day };
        await SettleAsync(await AdmitAsync(request), 1.00m, 100);
        Time.SetUtcNow(new DateTimeOffset(2026, 11, 21, 23, 59, 59, TimeSpan.Zero));

        var late = await Store.ReserveAsync(request);
        Time.Advance(TimeSpan.FromSeconds(1));
        var nextDay = await Store.ReserveAsync(request);

        Assert.Equal(TimeSpan.FromSeconds(1), late.RetryAfter);
        Assert.True(nextDay.IsAdmitted);
        Assert.Equal(1.00m, (await Store.GetUserStateAsync("alice", "d20261121")).SpentUsd);
        var today = await Store.GetUserStateAsync("alice", "d20261122");
        Assert.Equal(1.00m, today.ReservedUsd);
        Assert.Equal(new DateTimeOffset(2026, 11, 23, 0, 0, 0, TimeSpan.Zero), today.PeriodEnd);
    }

    [StoreFact]
    public async Task Period_Month_ResetsAtMonthBoundary()
    {
        Time.SetUtcNow(new DateTimeOffset(2026, 11, 30, 12, 0, 0, TimeSpan.Zero));
        var request = Request(usd: 5m) with { UserBudget = new BudgetLimits(5m, 0, 0), UserBudgetPeriod = BudgetPeriod.Month };
        await SettleAsync(await AdmitAsync(request), 5m, 100);

        var sameMonth = await Store.ReserveAsync(request with { ReserveUsd = 0.01m });
        Time.SetUtcNow(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));
        var nextMonth = await Store.ReserveAsync(request);

        Assert.Equal(AdmissionRejection.BudgetExceeded, sameMonth.Rejection);
        Assert.Equal(TimeSpan.FromHours(12), sameMonth.RetryAfter);
        Assert.True(nextMonth.IsAdmitted);
        Assert.Equal(5m, (await Store.GetUserStateAsync("alice", "m202611")).SpentUsd);
    }

    [StoreFact]
    public async Task Period_Total_NeverResets()
    {
        var request = Request(usd: 1m) with { UserBudget = new BudgetLimits(1m, 0, 0), UserBudgetPeriod = BudgetPeriod.Total };
        await SettleAsync(await AdmitAsync(request), 1m, 100);
        Time.Advance(TimeSpan.FromDays(400));

        var result = await Store.ReserveAsync(request);

        Assert.Equal(AdmissionRejection.BudgetExceeded, result.Rejection);
        Assert.Null(result.RetryAfter);
        Assert.Null((await Store.GetUserStateAsync("alice", "total")).PeriodEnd);
    }

    [StoreFact]
    public async Task SpentFractions_ReportEachScopeBeforeTheCall()
    {
        var request = Request(usd: 0.25m, tokens: 100) with
        {
            UserBudget = new BudgetLimits(1m, 0, 0),
            Team = "sales",
            TeamBudget = new BudgetLimits(10m, 0, 0),
            RunId = "run-1",
            RunBudget = new BudgetLimits(0, 1000, 0),
        };
        await SettleAsync(await AdmitAsync(request), 0.50m, 400);

        var result = await AdmitResultAsync(request);

        Assert.Equal(new BudgetFractions(0.5, 0.05, 0.4), result.SpentFractions);
        Assert.Equal(0.5, result.SpentFractions.Max);
    }

    [StoreFact]
    public async Task GetRunState_ReportsSpendReservationsAndLimits()
    {
        var request = Request(usd: 0.20m, tokens: 300) with { RunId = "run-1", RunBudget = new BudgetLimits(2m, 5000, 10), RunDeadline = TimeSpan.FromMinutes(5) };
        await SettleAsync(await AdmitAsync(request), 0.05m, 120);
        Time.Advance(TimeSpan.FromSeconds(3));
        await AdmitAsync(request);

        var state = await Store.GetRunStateAsync("run-1");

        Assert.NotNull(state);
        Assert.Equal("alice", state.User);
        Assert.Equal(0.05m, state.SpentUsd);
        Assert.Equal(120, state.SpentTokens);
        Assert.Equal(1, state.Calls);
        Assert.Equal(0.20m, state.ReservedUsd);
        Assert.Equal(300, state.ReservedTokens);
        Assert.Equal(1, state.InFlight);
        Assert.Equal(Start, state.StartedAt);
        Assert.Equal(Start.AddMinutes(5), state.Deadline);
        Assert.Equal(Time.GetUtcNow(), state.LastActivityAt);
        Assert.False(state.Halted);
        Assert.Equal(new BudgetLimits(2m, 5000, 10), state.Limits);
        Assert.Null(await Store.GetRunStateAsync("unknown"));
    }

    [StoreFact]
    public async Task RunState_AfterIdleExpiry_IsForgottenAndRestarts()
    {
        var request = Request(usd: 0.10m) with { RunId = "run-1", RunDeadline = TimeSpan.FromHours(1), RunBudget = new BudgetLimits(0, 0, 1) };
        await SettleAsync(await AdmitAsync(request), 0.10m, 10);
        Assert.Equal(AdmissionLimit.Calls, (await Store.ReserveAsync(request)).FailedLimit);

        Time.Advance(Options.RunIdleExpiry);

        Assert.Null(await Store.GetRunStateAsync("run-1"));
        await AdmitAsync(request);
        var state = await Store.GetRunStateAsync("run-1");
        Assert.Equal(Time.GetUtcNow(), state!.StartedAt);
        Assert.Equal(0, state.Calls);
    }

    [StoreFact]
    public async Task RunState_ActivityKeepsItAlive()
    {
        var request = Request() with { RunId = "run-1" };
        for (var i = 0; i < 3; i++)
        {
            await SettleAsync(await AdmitAsync(request), 0.01m, 10);
            Time.Advance(Options.RunIdleExpiry - TimeSpan.FromMinutes(1));
        }

        Assert.Equal(3, (await Store.GetRunStateAsync("run-1"))!.Calls);
    }

    [StoreFact]
    public async Task Ping_WhenStoreIsUp_ReturnsTrue() => Assert.True(await Store.PingAsync());

    protected static AdmissionRequest Request(decimal usd = 0.01m, long tokens = 100) => new()
    {
        User = "alice",
        ReserveUsd = usd,
        ReserveTokens = tokens,
        ReservationTtl = Ttl,
    };

    protected abstract IAdmissionStore CreateStore(AdmissionStoreOptions options, TimeProvider timeProvider);

    /// <summary>Another store on the same backing state: a second gateway replica (Redis), or a fresh store (memory).</summary>
    protected IAdmissionStore NewStore()
    {
        var store = CreateStore(Options, Time);
        _stores.Add(store);
        return store;
    }

    protected async Task<Reservation> AdmitAsync(AdmissionRequest request) => (await AdmitResultAsync(request)).Reservation!;

    protected async Task<AdmissionResult> AdmitResultAsync(AdmissionRequest request)
    {
        var result = await Store.ReserveAsync(request);
        Assert.True(result.IsAdmitted, $"expected admission, got {result.ErrorCode} ({result.FailedScope} {result.FailedLimit} {result.LimitValue})");
        return result;
    }

    protected ValueTask SettleAsync(Reservation reservation, decimal usd, long tokens) => Store.SettleAsync(reservation, usd, tokens);

    protected ValueTask<UserBudgetState> UserStateAsync(string user = "alice") =>
        Store.GetUserStateAsync(user, BudgetPeriods.GetKey(BudgetPeriod.Day, Time.GetUtcNow()));
}
