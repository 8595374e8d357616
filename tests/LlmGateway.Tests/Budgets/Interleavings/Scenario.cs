using System.Globalization;
using System.Text;
using CsCheck;
using LlmGateway.Budgets;

namespace LlmGateway.Tests.Budgets.Interleavings;

/// <summary>What one simulated replica does next.</summary>
internal enum OpKind
{
    Reserve,
    Settle,
    Release,
    HaltRun,
    ResumeRun,
    HaltUser,
    ResumeUser,
}

/// <summary>
/// One step of a replica. Reserve: <see cref="User"/>, <see cref="Run"/> (-1: none), <see cref="Key"/>, a worst case of
/// <see cref="Cents"/> and <see cref="Tokens"/>. Settle and Release: the replica's held call number <see cref="Pick"/>
/// (modulo how many it holds), settled at nothing (<see cref="Mode"/> 0), part (1) or all (2) of what it reserved.
/// Halts and resumes: <see cref="Run"/> or <see cref="User"/>.
/// </summary>
internal sealed record Op(OpKind Kind, int User, int Run, int Key, int Cents, int Tokens, int Pick, int Mode)
{
    public override string ToString() => Kind switch
    {
        OpKind.Reserve => $"R(u{User},{(Run < 0 ? "-" : "r" + Run)},k{Key},{Cents}c,{Tokens}t)",
        OpKind.Settle => $"S({Pick},{Mode})",
        OpKind.Release => $"L({Pick})",
        OpKind.HaltRun or OpKind.ResumeRun => $"{Kind}(r{Run})",
        _ => $"{Kind}(u{User})",
    };
}

/// <summary>The limits of one config (cents, tokens, calls, requests per minute, calls in flight); 0 = no limit.</summary>
internal sealed record Limits(int UserCents, int UserTokens, int UserCalls, int UserInFlight, int TeamCents, int RunCents, int RunTokens, int RunCalls, int UserRpm, int KeyRpm);

/// <summary>A round: the config in force (a reload between rounds lowers or raises limits), the clock's step before it, every replica's steps.</summary>
internal sealed record Round(int Config, int AdvanceSeconds, Op[][] Ops);

/// <summary>A random history of several replicas on one store: configs, and rounds of concurrent steps.</summary>
internal sealed record Scenario(Limits[] Configs, Round[] Rounds)
{
    public const int Users = 3;
    public const int Runs = 2;
    public const int Keys = 2;

    public int Replicas => Rounds[0].Ops.Length;

    public static Gen<Scenario> Generate(int replicas)
    {
        // Limits mostly bind (a call reserves 1–20 cents, 20–400 tokens), sometimes absent.
        static Gen<int> Limit(int low, int high) => Gen.Frequency((5, Gen.Int[low, high]), (1, Gen.Const(0)));
        var limits = Gen.Select(
            Limit(30, 150), Limit(600, 3000), Limit(3, 14), Limit(2, 6), Limit(60, 300), Limit(20, 100), Limit(300, 1500), Limit(2, 8), Limit(3, 12), Limit(4, 15),
            (uc, ut, ucalls, uf, tc, rc, rt, rcalls, urpm, krpm) => new Limits(uc, ut, ucalls, uf, tc, rc, rt, rcalls, urpm, krpm));
        var reserve = Gen.Select(Gen.Int[0, Users - 1], Gen.Int[-1, Runs - 1], Gen.Int[0, Keys - 1], Gen.Int[1, 20], Gen.Int[20, 400],
            (user, run, key, cents, tokens) => new Op(OpKind.Reserve, user, run, key, cents, tokens, 0, 0));
        var settle = Gen.Select(Gen.Int[0, 50], Gen.Int[0, 2], (pick, mode) => new Op(OpKind.Settle, 0, 0, 0, 0, 0, pick, mode));
        var release = Gen.Int[0, 50].Select(pick => new Op(OpKind.Release, 0, 0, 0, 0, 0, pick, 0));
        var control = Gen.Select(Gen.Int[0, 3], Gen.Int[0, Users - 1], Gen.Int[0, Runs - 1], (kind, user, run) =>
            new Op((OpKind)((int)OpKind.HaltRun + kind), user, run, 0, 0, 0, 0, 0));
        var op = Gen.Frequency((8, reserve), (5, settle), (1, release), (1, control));
        return Gen.SelectMany(limits.Array[2, 3], configs =>
        {
            var round = Gen.Select(Gen.Int[0, configs.Length - 1], Gen.Int[0, 25], op.Array[0, 10].Array[replicas], (config, advance, ops) => new Round(config, advance, ops));
            return round.Array[2, 5].Select(rounds => new Scenario(configs, rounds));
        });
    }

    public override string ToString()
    {
        var text = new StringBuilder();
        for (var i = 0; i < Configs.Length; i++)
        {
            text.Append(CultureInfo.InvariantCulture, $"config {i}: {Configs[i]}\n");
        }

        foreach (var round in Rounds)
        {
            text.Append(CultureInfo.InvariantCulture, $"+{round.AdvanceSeconds}s config {round.Config}:");
            for (var r = 0; r < round.Ops.Length; r++)
            {
                text.Append(CultureInfo.InvariantCulture, $" [{r}] {string.Join(' ', round.Ops[r].Select(o => o.ToString()))}");
            }

            text.Append('\n');
        }

        return text.ToString();
    }

    /// <summary>The request a Reserve step makes under config <paramref name="limits"/>; every user is in team t.</summary>
    public static AdmissionRequest Request(Op op, Limits limits) => new()
    {
        User = "u" + op.User,
        UserBudget = new BudgetLimits(limits.UserCents / 100m, limits.UserTokens, limits.UserCalls),
        UserRateLimits = new RateLimits(limits.UserRpm, 0),
        UserMaxInFlight = limits.UserInFlight,
        Team = "t",
        TeamBudget = new BudgetLimits(limits.TeamCents / 100m, 0, 0),
        KeyId = "k" + op.Key,
        KeyRateLimits = new RateLimits(limits.KeyRpm, 0),
        RunId = op.Run < 0 ? null : "r" + op.Run,
        RunBudget = new BudgetLimits(limits.RunCents / 100m, limits.RunTokens, limits.RunCalls),
        ReserveUsd = op.Cents / 100m,
        ReserveTokens = op.Tokens,
        ReservationTtl = TimeSpan.FromMinutes(10),
    };

    /// <summary>What a Settle step says the call cost: nothing, part of its worst case, or all of it (never more).</summary>
    public static (decimal Usd, long Tokens) Cost(Reservation held, int mode) => mode switch
    {
        0 => (0m, 0),
        1 => (Math.Round(held.ReservedUsd * 0.37m, 4, MidpointRounding.ToZero), held.ReservedTokens * 2 / 5),
        _ => (held.ReservedUsd, held.ReservedTokens),
    };
}
