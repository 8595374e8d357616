using System.Globalization;
using LlmGateway.Budgets;
using LlmGateway.Configuration;
using Microsoft.Extensions.Time.Testing;

namespace LlmGateway.Tests.Budgets.Interleavings;

/// <summary>
/// Plays a <see cref="Scenario"/> on several replicas of one store (one store object per replica: for Redis each on a
/// connection of its own) and collects every way the history breaks the store's promises.
/// </summary>
/// <remarks>
/// <para>Concurrent: in each round every replica runs its steps in order, all replicas at once. A limit change is a
/// config reload between rounds (the clock steps then too). Checked: (1) at the end of each round, for every user,
/// team and run and every limit (USD, tokens, calls, calls in flight), spend plus what is held is within the round's
/// limit when a call of that scope was admitted in the round (after the last admission it can only shrink), and no
/// larger than at the round's start when none was; (2) no span of 61 seconds (a call counts to the end of its second
/// plus 60 s) holds more unreleased admissions of a user or key than the RPM of the latest round in it that admitted
/// one; (3) no call is admitted that started after a halt of its user or run had returned, unless a resume started
/// since; (4) once every call is settled or released, the recorded spend (USD, tokens, calls) equals exactly the sum
/// of what the settlements said, and nothing is held.</para>
/// <para>Sequential (the differential): the same steps one at a time, the replicas taking turns, mirrored on the
/// in-memory store as reference; every decision must be the reference's.</para>
/// </remarks>
internal sealed class InterleavingRun(IAdmissionStore[] replicas, FakeTimeProvider time, Scenario scenario)
{
    private readonly Lock _lock = new();
    private readonly List<Call>[] _held = replicas.Select(_ => new List<Call>()).ToArray();
    private readonly List<Call> _calls = [];
    private readonly Dictionary<string, Control> _control = new(StringComparer.Ordinal);
    private readonly List<string> _violations = [];
    private readonly Dictionary<string, Totals> _previous = new(StringComparer.Ordinal);
    private readonly List<(long Second, Limits Limits)> _rounds = [];

    public IReadOnlyList<string> Violations => _violations;

    public int Admitted => _calls.Count;

    public async Task RunAsync(IAdmissionStore? reference = null)
    {
        for (var r = 0; r < scenario.Rounds.Length; r++)
        {
            var round = scenario.Rounds[r];
            time.Advance(TimeSpan.FromSeconds(round.AdvanceSeconds));
            var limits = scenario.Configs[round.Config];
            _rounds.Add((time.GetUtcNow().ToUnixTimeSeconds(), limits));
            var index = r;
            if (reference is null)
            {
                await Task.WhenAll(Enumerable.Range(0, replicas.Length).Select(replica => Task.Run(async () =>
                {
                    foreach (var op in round.Ops[replica])
                    {
                        await StepAsync(replica, op, index, limits, null);
                    }
                })));
            }
            else
            {
                for (var step = 0; step < round.Ops.Max(ops => ops.Length); step++)
                {
                    for (var replica = 0; replica < replicas.Length; replica++)
                    {
                        if (step < round.Ops[replica].Length)
                        {
                            await StepAsync(replica, round.Ops[replica][step], index, limits, reference);
                        }
                    }
                }
            }

            await CheckRoundAsync(index, limits);
        }

        CheckRateWindows();

        // Everything still held ends now: most settled (at nothing, part or all of the worst case), some released.
        for (var replica = 0; replica < replicas.Length; replica++)
        {
            var held = _held[replica];
            for (var i = 0; i < held.Count; i++)
            {
                await FinishAsync(replica, held[i], i % 4 == 3 ? -1 : i % 3, reference);
            }

            held.Clear();
        }

        await CheckSettledAsync(reference);
    }

    private async Task StepAsync(int replica, Op op, int round, Limits limits, IAdmissionStore? reference)
    {
        var store = replicas[replica];
        switch (op.Kind)
        {
            case OpKind.Reserve:
                var request = Scenario.Request(op, limits);
                var (userHalted, userEpoch) = HaltState("u" + op.User);
                var (runHalted, runEpoch) = op.Run < 0 ? (false, 0) : HaltState("r" + op.Run);
                var result = await store.ReserveAsync(request);
                if (reference is not null)
                {
                    var expected = await reference.ReserveAsync(request);
                    if (Describe(expected) != Describe(result))
                    {
                        Violation($"round {round} replica {replica} {op}: decided {Describe(result)}, the in-memory store {Describe(expected)}");
                    }

                    if (result.Reservation is { } mine && expected.Reservation is { } theirs)
                    {
                        Admit(replica, op, round, mine, theirs);
                    }
                    else if (result.Reservation is { } unmatched)
                    {
                        await store.ReleaseAsync(unmatched);
                    }
                    else if (expected.Reservation is { } unmatchedReference)
                    {
                        await reference.ReleaseAsync(unmatchedReference);
                    }

                    break;
                }

                if (result.Reservation is { } held)
                {
                    if (userHalted && HaltState("u" + op.User).Epoch == userEpoch)
                    {
                        Violation($"round {round} replica {replica} {op}: admitted although user u{op.User} was halted");
                    }

                    if (runHalted && HaltState("r" + op.Run).Epoch == runEpoch)
                    {
                        Violation($"round {round} replica {replica} {op}: admitted although run r{op.Run} was halted");
                    }

                    Admit(replica, op, round, held, null);
                }

                break;
            case OpKind.Settle or OpKind.Release:
                Call? call;
                lock (_lock)
                {
                    var list = _held[replica];
                    call = list.Count == 0 ? null : list[op.Pick % list.Count];
                    if (call is not null)
                    {
                        list.Remove(call);
                    }
                }

                if (call is not null)
                {
                    await FinishAsync(replica, call, op.Kind == OpKind.Release ? -1 : op.Mode, reference);
                }

                break;
            case OpKind.HaltRun or OpKind.HaltUser:
                var scope = op.Kind == OpKind.HaltRun ? "r" + op.Run : "u" + op.User;
                var before = HaltStarting(scope);
                await (op.Kind == OpKind.HaltRun ? store.HaltRunAsync(scope) : store.HaltUserAsync(scope));
                if (reference is not null)
                {
                    await (op.Kind == OpKind.HaltRun ? reference.HaltRunAsync(scope) : reference.HaltUserAsync(scope));
                }

                Halted(scope, before);
                break;
            default:
                var resumed = op.Kind == OpKind.ResumeRun ? "r" + op.Run : "u" + op.User;
                Resuming(resumed, +1);
                await (op.Kind == OpKind.ResumeRun ? store.ResumeRunAsync(resumed) : store.ResumeUserAsync(resumed));
                if (reference is not null)
                {
                    await (op.Kind == OpKind.ResumeRun ? reference.ResumeRunAsync(resumed) : reference.ResumeUserAsync(resumed));
                }

                Resuming(resumed, -1);
                break;
        }
    }

    private void Admit(int replica, Op op, int round, Reservation held, Reservation? mirror)
    {
        var call = new Call(replica, op.User, op.Run, op.Key, round, time.GetUtcNow().ToUnixTimeSeconds(), held, mirror);
        lock (_lock)
        {
            _held[replica].Add(call);
            _calls.Add(call);
        }
    }

    /// <summary>Settles the call at nothing (mode 0), part (1) or all (2) of its worst case, or releases it (-1).</summary>
    private async Task FinishAsync(int replica, Call call, int mode, IAdmissionStore? reference)
    {
        if (mode < 0)
        {
            call.Released = true;
            await replicas[replica].ReleaseAsync(call.Held);
            if (reference is not null)
            {
                await reference.ReleaseAsync(call.Mirror!);
            }

            return;
        }

        var (usd, tokens) = Scenario.Cost(call.Held, mode);
        call.SettledUsd = usd;
        call.SettledTokens = tokens;
        call.Settled = true;
        await replicas[replica].SettleAsync(call.Held, usd, tokens);
        if (reference is not null)
        {
            await reference.SettleAsync(call.Mirror!, usd, tokens);
        }
    }

    private async Task CheckRoundAsync(int round, Limits limits)
    {
        var totals = await ReadTotalsAsync();
        foreach (var (scope, now) in totals)
        {
            var admitted = _calls.Any(c => c.Round == round && c.Touches(scope));
            var before = _previous.GetValueOrDefault(scope);
            var (usd, tokens, calls, inFlight) = scope[0] switch
            {
                'u' => (limits.UserCents / 100m, limits.UserTokens, limits.UserCalls, limits.UserInFlight),
                't' => (limits.TeamCents / 100m, 0, 0, 0),
                _ => (limits.RunCents / 100m, limits.RunTokens, limits.RunCalls, 0),
            };
            Within(scope, "USD", now.Usd, before.Usd, usd);
            Within(scope, "tokens", now.Tokens, before.Tokens, tokens);
            Within(scope, "calls", now.Calls, before.Calls, calls);
            Within(scope, "in flight", now.InFlight, before.InFlight, inFlight);
            _previous[scope] = now;

            void Within(string scope, string what, decimal value, decimal previous, decimal limit)
            {
                if (admitted ? limit > 0 && value > limit : value > previous)
                {
                    Violation($"after round {round}: {scope} {what} spent + held {value}, " + (admitted ? $"limit {limit}" : $"no admission, and {previous} before"));
                }
            }
        }
    }

    private void CheckRateWindows()
    {
        var live = _calls.Where(c => !c.Released).ToList();
        foreach (var (scope, rpm) in new[] { ("u", (Func<Limits, int>)(l => l.UserRpm)), ("k", l => l.KeyRpm) })
        {
            foreach (var group in live.GroupBy(c => scope == "u" ? c.User : c.Key))
            {
                for (var j = 0; j < _rounds.Count; j++)
                {
                    var end = _rounds[j].Second;
                    var inSpan = group.Where(c => c.Round <= j && c.Second >= end - 60).ToList();
                    var limits = inSpan.Select(c => rpm(_rounds[c.Round].Limits)).Distinct().ToList();
                    if (inSpan.Count > 0 && !limits.Contains(0) && inSpan.Count > limits.Max())
                    {
                        Violation($"{scope}{group.Key}: {inSpan.Count} calls admitted in the 61 s to round {j}, RPM {limits.Max()}");
                    }
                }
            }
        }
    }

    private async Task CheckSettledAsync(IAdmissionStore? reference)
    {
        var totals = await ReadTotalsAsync();
        foreach (var (scope, actual) in totals)
        {
            var settled = _calls.Where(c => c.Settled && c.Touches(scope)).ToList();
            var expected = new Totals(settled.Sum(c => c.SettledUsd), settled.Sum(c => c.SettledTokens), settled.Count, 0, 0);
            if (actual != expected)
            {
                Violation($"all settled: {scope} recorded {actual}, the settlements say {expected}");
            }
        }

        if (reference is not null)
        {
            var mirrored = await ReadTotalsAsync(reference);
            foreach (var (scope, actual) in totals)
            {
                if (mirrored[scope] != actual)
                {
                    Violation($"all settled: {scope} recorded {actual}, the in-memory store {mirrored[scope]}");
                }
            }
        }
    }

    /// <summary>Spend plus holds of every user, of the team (the sum of its users) and of every run.</summary>
    private async Task<Dictionary<string, Totals>> ReadTotalsAsync(IAdmissionStore? store = null)
    {
        store ??= replicas[0];
        var totals = new Dictionary<string, Totals>(StringComparer.Ordinal);
        var period = BudgetPeriods.GetKey(BudgetPeriod.Day, time.GetUtcNow());
        var team = default(Totals);
        for (var u = 0; u < Scenario.Users; u++)
        {
            var state = await store.GetUserStateAsync("u" + u, period);
            var user = new Totals(state.SpentUsd + state.ReservedUsd, state.SpentTokens + state.ReservedTokens, state.Calls + state.InFlight, state.InFlight, state.ReservedUsd);
            totals["u" + u] = user;
            team = new Totals(team.Usd + user.Usd, team.Tokens + user.Tokens, team.Calls + user.Calls, team.InFlight + user.InFlight, team.Reserved + user.Reserved);
        }

        totals["t"] = team;
        for (var r = 0; r < Scenario.Runs; r++)
        {
            var state = await store.GetRunStateAsync("r" + r);
            totals["r" + r] = state is null ? default : new Totals(state.SpentUsd + state.ReservedUsd, state.SpentTokens + state.ReservedTokens, state.Calls + state.InFlight, state.InFlight, state.ReservedUsd);
        }

        return totals;
    }

    private (bool Halted, int Epoch) HaltState(string scope)
    {
        lock (_lock)
        {
            var control = ControlOf(scope);
            return (control.Halted, control.ResumesStarted);
        }
    }

    /// <summary>A halt starts: the resumes started so far, or -1 when one is running (it may reach Redis after the halt).</summary>
    private int HaltStarting(string scope)
    {
        lock (_lock)
        {
            var control = ControlOf(scope);
            return control.ResumesRunning > 0 ? -1 : control.ResumesStarted;
        }
    }

    /// <summary>
    /// A halt returned: the scope is surely halted unless a resume overlapped it — running when it started (replicas'
    /// connections race, so that resume may have run after it), started since, or still running.
    /// </summary>
    private void Halted(string scope, int resumesBefore)
    {
        lock (_lock)
        {
            var control = ControlOf(scope);
            if (resumesBefore >= 0 && control.ResumesStarted == resumesBefore && control.ResumesRunning == 0)
            {
                control.Halted = true;
            }
        }
    }

    private void Resuming(string scope, int delta)
    {
        lock (_lock)
        {
            var control = ControlOf(scope);
            control.ResumesRunning += delta;
            if (delta > 0)
            {
                control.ResumesStarted++;
                control.Halted = false;
            }
        }
    }

    private Control ControlOf(string scope)
    {
        if (!_control.TryGetValue(scope, out var control))
        {
            _control[scope] = control = new Control();
        }

        return control;
    }

    private void Violation(string message)
    {
        lock (_lock)
        {
            _violations.Add(message);
        }
    }

    private static string Describe(AdmissionResult result) => string.Create(
        CultureInfo.InvariantCulture,
        $"{result.IsAdmitted} {result.Rejection} {result.FailedScope} {result.FailedLimit} {result.LimitValue} {result.Requests} {result.SpentFractions.User:F5} {result.SpentFractions.Team:F5} {result.SpentFractions.Run:F5}");

    private sealed class Control
    {
        public bool Halted { get; set; }

        public int ResumesStarted { get; set; }

        public int ResumesRunning { get; set; }
    }

    private sealed record Call(int Replica, int User, int Run, int Key, int Round, long Second, Reservation Held, Reservation? Mirror)
    {
        public bool Released { get; set; }

        public bool Settled { get; set; }

        public decimal SettledUsd { get; set; }

        public long SettledTokens { get; set; }

        /// <summary>Whether the call counts against scope u0..u2, t (every user is in the team) or r0..r1.</summary>
        public bool Touches(string scope) => scope[0] switch
        {
            'u' => scope == "u" + User,
            't' => true,
            _ => Run >= 0 && scope == "r" + Run,
        };
    }

    private readonly record struct Totals(decimal Usd, long Tokens, long Calls, long InFlight, decimal Reserved);
}
