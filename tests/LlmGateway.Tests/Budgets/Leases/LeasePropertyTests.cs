using System.Buffers.Binary;
using CsCheck;
using LlmGateway.Budgets;
using LlmGateway.Budgets.Leases;
using LlmGateway.Configuration;
using LlmGateway.Redis;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;

namespace LlmGateway.Tests.Budgets.Leases;

/// <summary>
/// Random interleavings of admissions, settlements, releases, halts, limit changes, time and returns on three replicas
/// with leases and one without, all on one redis-server: after every step, spent plus every block and reservation held
/// in Redis stays within the limit (S + B ≤ L) for the user and the team, so spend never passes a limit; no 61-second
/// span of a rate window (alice's RPM/TPM, her key's RPM) counts more calls or tokens than its limit, and bob never has
/// more calls in flight (admitted, not finished, every replica) than his cap, nor his in-flight counter more slots.
/// A third of the calls belong to one run, whose budget and in-flight cap (decided per call on the run's keys after the
/// blocks admitted the call, or on the run block of the replica that owns the run: any per-call admission claims it) are never
/// passed either, counting what an owner has not written back yet.
/// CsCheck prints the seed of a failing case; pass it as <c>seed:</c> to replay it.
/// </summary>
[RequiresRedisServer]
public sealed class LeasePropertyTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>
{
    private static readonly DateTimeOffset Start = new(2026, 12, 3, 10, 0, 0, TimeSpan.Zero);

    private static readonly decimal[] UserLimits = [0.5m, 1m, 2m];

    private static readonly RateLimits AliceRates = new(6, 150);

    private static readonly RateLimits KeyRates = new(5, 0);

    private const int BobMaxInFlight = 2;

    private const decimal RunLimit = 0.6m;

    private const int RunMaxInFlight = 2;

    [RedisFact]
    public async Task RandomInterleavings_OnSeveralReplicas_NeverPassALimit()
    {
        var step = Gen.Select(Gen.Int[0, 12], Gen.Int[0, 3], Gen.Int[0, 1], Gen.Int[1, 30], Gen.Double[0, 1]);
        await step.Array[20, 70].SampleAsync(steps => RunAsync(steps), iter: 200, threads: 1);
        Assert.True(_runDecisionsOnBlocks >= 1, $"{_runDecisionsOnBlocks} calls of the run decided on a run block");
    }

    private long _runDecisionsOnBlocks;

    private async Task RunAsync((int Kind, int Replica, int User, int Cents, double Share)[] steps)
    {
        var time = new FakeTimeProvider(Start);
        var options = new AdmissionStoreOptions { KeyPrefix = "prop-" + Guid.NewGuid().ToString("N")[..12] + ":", OperationTimeout = TimeSpan.FromSeconds(2) };
        // Any call of the run admitted per call on a leased replica claims it: claims, hand-offs (the next call on another
        // replica) and write-backs happen all the time.
        var lease = new LeaseOptions { Fraction = 0.5, MinCalls = 2, MaxCalls = 16, RunClaimAfter = 1 };
        var connections = new List<RedisConnection>();
        var replicas = new List<IAdmissionStore>();
        for (var i = 0; i < 4; i++)
        {
            var connection = new RedisConnection(redis.ConnectionString, TimeSpan.FromSeconds(5));
            connections.Add(connection);
            var perCall = new RedisAdmissionStore(connection, options, time);
            if (i < 3)
            {
                var leased = new LeasedAdmissionStore(connection, perCall, options, lease, time);
                await leased.WarmUpAsync();
                replicas.Add(leased);
            }
            else
            {
                replicas.Add(perCall);
            }
        }

        try
        {
            var users = new[] { "alice", "bob" };
            var limits = new[] { 1m, 1m };
            var ceilings = new[] { 1m, 1m };
            const decimal TeamLimit = 1.5m;
            var halted = new bool[2];
            var held = new List<(IAdmissionStore Store, Reservation Reservation, int User, bool InRun)>();
            using var client = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
            var database = client.GetDatabase();
            foreach (var (kind, replica, user, cents, share) in steps)
            {
                var store = replicas[replica];
                switch (kind)
                {
                    case <= 4:
                        var request = new AdmissionRequest
                        {
                            User = users[user],
                            UserBudget = new BudgetLimits(limits[user], 0, 0),
                            Team = "team-1",
                            TeamBudget = new BudgetLimits(TeamLimit, 0, 0),
                            UserRateLimits = user == 0 ? AliceRates : default,
                            KeyId = user == 0 ? "key-a" : null,
                            KeyRateLimits = share < 0.5 ? KeyRates : default,
                            UserMaxInFlight = user == 1 ? BobMaxInFlight : 0,
                            RunId = cents % 3 == 0 ? "run-1" : null,
                            RunBudget = new BudgetLimits(RunLimit, 0, 0),
                            RunMaxInFlight = RunMaxInFlight,
                            ReserveUsd = cents / 100m,
                            ReserveTokens = cents,
                            ReservationTtl = TimeSpan.FromMinutes(10),
                        };
                        var result = await store.ReserveAsync(request);
                        if (result.IsAdmitted)
                        {
                            held.Add((store, result.Reservation, user, request.RunId is not null));
                        }

                        break;
                    case <= 6 when held.Count > 0:
                        var settling = held[(int)(share * held.Count) % held.Count];
                        held.Remove(settling);
                        var (owner, settled, _, _) = settling;
                        await owner.SettleAsync(settled, Math.Round(settled.ReservedUsd * (decimal)share, 6), settled.ReservedTokens / 2);
                        break;
                    case 7 when held.Count > 0:
                        var releasing = held[(int)(share * held.Count) % held.Count];
                        held.Remove(releasing);
                        var (releaser, released, _, _) = releasing;
                        await releaser.ReleaseAsync(released);
                        break;
                    case 8:
                        halted[user] = !halted[user];
                        if (halted[user])
                        {
                            await store.HaltUserAsync(users[user]);

                            // The replica that halted refuses at once (others when the message reaches them).
                            var refused = await store.ReserveAsync(new AdmissionRequest { User = users[user], ReserveUsd = 0.01m, ReservationTtl = TimeSpan.FromMinutes(10) });
                            Assert.Equal(AdmissionRejection.UserHalted, refused.Rejection);
                        }
                        else
                        {
                            await store.ResumeUserAsync(users[user]);
                        }

                        break;
                    case 9:
                        var next = UserLimits[cents % UserLimits.Length];
                        ceilings[user] = Math.Max(ceilings[user], Math.Max(limits[user], next));
                        limits[user] = next;
                        break;
                    case 10:
                        // Half the time one sweep (blocks stay open and their settled calls are charged), else longer.
                        time.Advance(TimeSpan.FromMilliseconds(cents % 2 == 0 ? 250 : cents * 200));
                        break;
                    case 11:
                        // Everything finishes and every replica returns its blocks: nothing held under an older limit is left.
                        foreach (var (finishing, reservation, _, _) in held)
                        {
                            await finishing.SettleAsync(reservation, reservation.ReservedUsd, reservation.ReservedTokens);
                        }

                        held.Clear();
                        foreach (var leased in replicas.OfType<LeasedAdmissionStore>())
                        {
                            await leased.ReturnAllAsync();
                        }

                        // Nothing is held any more: every hold, block and charge of an open block was given back exactly
                        // (a charge already under way may land a moment later; a leak never does).
                        var drained = BudgetPeriods.GetKey(BudgetPeriod.Day, time.GetUtcNow());
                        var drainedMonth = BudgetPeriods.GetKey(BudgetPeriod.Month, time.GetUtcNow());
                        string[] holders = [$"{options.KeyPrefix}{{u:alice}}b:{drained}", $"{options.KeyPrefix}{{u:bob}}b:{drained}", $"{options.KeyPrefix}{{t:team-1}}b:{drainedMonth}", $"{options.KeyPrefix}{{r:run-1}}"];
                        foreach (var holder in holders)
                        {
                            var reserved = await ReservedUsdAsync(database, holder);
                            for (var wait = 0; wait < 200 && reserved != 0; wait++)
                            {
                                await Task.Delay(10);
                                reserved = await ReservedUsdAsync(database, holder);
                            }

                            Assert.True(reserved == 0, $"{holder}: {reserved} USD still held after everything finished and every block went back");
                        }

                        // From here on the bound is the current limit, or the spend if a lowered limit is already below it.
                        for (var u = 0; u < 2; u++)
                        {
                            ceilings[u] = Math.Max(limits[u], await UsedAsync(database, $"{options.KeyPrefix}{{u:{users[u]}}}b:{drained}"));
                        }

                        break;
                }

                var day = BudgetPeriods.GetKey(BudgetPeriod.Day, time.GetUtcNow());
                var month = BudgetPeriods.GetKey(BudgetPeriod.Month, time.GetUtcNow());
                for (var u = 0; u < 2; u++)
                {
                    var used = await UsedAsync(database, $"{options.KeyPrefix}{{u:{users[u]}}}b:{day}");
                    Assert.True(used <= ceilings[u], $"user {users[u]}: spent + held {used} > limit {ceilings[u]} after step {kind} on replica {replica}");
                }

                var team = await UsedAsync(database, $"{options.KeyPrefix}{{t:team-1}}b:{month}");
                Assert.True(team <= TeamLimit, $"team: spent + held {team} > limit {TeamLimit} after step {kind} on replica {replica}");

                var (calls, tokens) = await BusiestWindowAsync(database, $"{options.KeyPrefix}{{u:alice}}");
                Assert.True(calls <= AliceRates.RequestsPerMinute && tokens <= AliceRates.TokensPerMinute, $"alice's window: {calls} calls, {tokens} tokens in 61 s > {AliceRates} after step {kind} on replica {replica}");
                var (keyCalls, _) = await BusiestWindowAsync(database, $"{options.KeyPrefix}{{k:key-a}}");
                Assert.True(keyCalls <= KeyRates.RequestsPerMinute, $"key's window: {keyCalls} calls in 61 s > {KeyRates.RequestsPerMinute} after step {kind} on replica {replica}");
                // The run: Redis's figures plus what the replica that owns it (if one does) has not written back yet.
                var owned = default(RunTotals);
                foreach (var leased in replicas.OfType<LeasedAdmissionStore>())
                {
                    owned = owned.Plus(await leased.RunBlockOutstandingAsync("run-1"));
                }

                var run = await UsedAsync(database, $"{options.KeyPrefix}{{r:run-1}}") + UsdAmount.ToUsd(owned.Su + owned.Ru);
                var runInFlight = held.Count(h => h.InRun);
                var runSlots = await ReservedCallsAsync(database, $"{options.KeyPrefix}{{r:run-1}}") + owned.Rc;
                Assert.True(run <= RunLimit && runInFlight <= RunMaxInFlight && runSlots <= RunMaxInFlight, $"run: spent + held {run} (limit {RunLimit}), {runInFlight} calls in flight, {runSlots} held (cap {RunMaxInFlight}) after step {kind} on replica {replica}");
                var bobInFlight = held.Count(h => h.User == 1);
                var bobSlots = await InFlightAsync(database, $"{options.KeyPrefix}{{u:bob}}");
                Assert.True(bobInFlight <= BobMaxInFlight && bobSlots <= BobMaxInFlight, $"bob: {bobInFlight} calls in flight, {bobSlots} slots held > cap {BobMaxInFlight} after step {kind} on replica {replica}");
            }
        }
        finally
        {
            _runDecisionsOnBlocks += replicas.OfType<LeasedAdmissionStore>().Sum(r => r.RunBlockCounts.LocalDecisions);
            foreach (var replica in replicas)
            {
                (replica as IDisposable)?.Dispose();
            }

            foreach (var connection in connections)
            {
                connection.Dispose();
            }
        }
    }

    /// <summary>
    /// The most calls and tokens any 61 consecutive seconds of a rate window count (its <c>w{second}</c> fields): a call
    /// counts from its second to that second plus 60, so these are the calls and tokens some admission saw at once.
    /// </summary>
    private static async Task<(long Calls, long Tokens)> BusiestWindowAsync(IDatabase database, string key)
    {
        var seconds = new List<(long Second, double Calls, double Tokens)>();
        foreach (var entry in await database.HashGetAllAsync(key))
        {
            var name = (string)entry.Name!;
            if (name.Length > 1 && name[0] == 'w' && long.TryParse(name.AsSpan(1), out var second))
            {
                var packed = (byte[])entry.Value!;
                seconds.Add((second, BinaryPrimitives.ReadDoubleLittleEndian(packed), BinaryPrimitives.ReadDoubleLittleEndian(packed.AsSpan(sizeof(double)))));
            }
        }

        long calls = 0, tokens = 0;
        foreach (var (first, _, _) in seconds)
        {
            var span = seconds.Where(s => s.Second >= first && s.Second <= first + 60).ToList();
            calls = Math.Max(calls, (long)span.Sum(s => s.Calls));
            tokens = Math.Max(tokens, (long)span.Sum(s => s.Tokens));
        }

        return (calls, tokens);
    }

    /// <summary>A user's in-flight counter (the first number of its packed <c>u</c> field): slots held by calls and blocks.</summary>
    private static async Task<long> InFlightAsync(IDatabase database, string key)
    {
        var packed = (byte[]?)await database.HashGetAsync(key, "u");
        return packed is null ? 0 : (long)BinaryPrimitives.ReadDoubleLittleEndian(packed);
    }

    /// <summary>The USD a budget hash holds (the fourth number of its packed <c>s</c> field).</summary>
    private static async Task<decimal> ReservedUsdAsync(IDatabase database, string key)
    {
        var packed = (byte[]?)await database.HashGetAsync(key, "s");
        return packed is null ? 0 : UsdAmount.ToUsd((long)BinaryPrimitives.ReadDoubleLittleEndian(packed.AsSpan(3 * sizeof(double))));
    }

    /// <summary>The calls a budget hash holds (the sixth number of its packed <c>s</c> field): a run's calls in flight.</summary>
    private static async Task<long> ReservedCallsAsync(IDatabase database, string key)
    {
        var packed = (byte[]?)await database.HashGetAsync(key, "s");
        return packed is null ? 0 : (long)BinaryPrimitives.ReadDoubleLittleEndian(packed.AsSpan(5 * sizeof(double)));
    }

    /// <summary>Spent plus reserved USD of a budget hash (its packed <c>s</c> field), as every script leaves it.</summary>
    private static async Task<decimal> UsedAsync(IDatabase database, string key)
    {
        var packed = (byte[]?)await database.HashGetAsync(key, "s");
        if (packed is null)
        {
            return 0;
        }

        var spent = BinaryPrimitives.ReadDoubleLittleEndian(packed);
        var reserved = BinaryPrimitives.ReadDoubleLittleEndian(packed.AsSpan(3 * sizeof(double)));
        return UsdAmount.ToUsd((long)(spent + reserved));
    }
}
