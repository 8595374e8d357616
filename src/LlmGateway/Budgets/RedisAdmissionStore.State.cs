using LlmGateway.Redis;
using StackExchange.Redis;

namespace LlmGateway.Budgets;

/// <summary>Halts, resumes and the admin API's views of a run and a user.</summary>
internal sealed partial class RedisAdmissionStore
{
    public ValueTask HaltRunAsync(string runId, CancellationToken cancellationToken = default) => SetRunHaltAsync(runId, true, cancellationToken);

    public ValueTask ResumeRunAsync(string runId, CancellationToken cancellationToken = default) => SetRunHaltAsync(runId, false, cancellationToken);

    public async ValueTask HaltUserAsync(string user, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(user);
        var key = Subject(_users, "u", user).Control;
        await EvaluateAsync(RedisAdmissionScripts.HaltUser, [key], [], cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask ResumeUserAsync(string user, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(user);
        var key = Subject(_users, "u", user).Control;
        await EvaluateAsync(RedisAdmissionScripts.ResumeUser, [key], [], cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The run's state in Redis. While a replica's exclusive block holds the run, Redis has its figures only as of the
    /// block's last write-back: the owner is asked to let go first, so what this answers is exact.
    /// </summary>
    public async ValueTask<RunBudgetState?> GetRunStateAsync(string runId, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(runId);
        var reply = await ReadRunStateAsync(runId, cancellationToken).ConfigureAwait(false);
        if (reply.Length == 15 && (long)reply[14] == 1)
        {
            reply = await WhileRunOwnedAsync(runId, () => ReadRunStateAsync(runId, cancellationToken), static r => r.Length == 15 && (long)r[14] == 1, cancellationToken).ConfigureAwait(false);
        }

        if (reply.Length == 0)
        {
            return null;
        }

        var start = (long)reply[5];
        var deadline = (long)reply[6];
        var user = (string?)reply[13];
        return new RunBudgetState
        {
            RunId = runId,
            User = string.IsNullOrEmpty(user) ? null : user,
            SpentUsd = UsdAmount.ToUsd((long)reply[0]),
            SpentTokens = (long)reply[1],
            Calls = (long)reply[2],
            ReservedUsd = UsdAmount.ToUsd((long)reply[3]),
            ReservedTokens = (long)reply[4],
            StartedAt = start >= 0 ? DateTimeOffset.FromUnixTimeMilliseconds(start) : null,
            Deadline = start >= 0 && deadline > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(start + deadline) : null,
            Halted = (long)reply[7] == 1,
            Limits = new BudgetLimits(UsdAmount.ToUsd((long)reply[8]), (long)reply[9], (long)reply[10]),
            LastActivityAt = DateTimeOffset.FromUnixTimeMilliseconds((long)reply[11]),
            InFlight = (int)(long)reply[12],
        };
    }

    public async ValueTask<UserBudgetState> GetUserStateAsync(string user, string periodKey, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(user);
        ArgumentException.ThrowIfNullOrEmpty(periodKey);
        var subject = Subject(_users, "u", user);
        RedisKey[] keys = [subject.Control, subject.InFlight, subject.BudgetKey(periodKey), subject.ReservationsKey(periodKey)];
        RedisValue[] args = [Number(NowMs())];
        var reply = (RedisResult[]?)await EvaluateAsync(RedisAdmissionScripts.UserState, keys, args, cancellationToken).ConfigureAwait(false) ?? [];
        var end = (long)reply[8];
        return new UserBudgetState
        {
            User = user,
            PeriodKey = periodKey,
            SpentUsd = UsdAmount.ToUsd((long)reply[0]),
            SpentTokens = (long)reply[1],
            Calls = (long)reply[2],
            ReservedUsd = UsdAmount.ToUsd((long)reply[3]),
            ReservedTokens = (long)reply[4],
            Limits = new BudgetLimits(UsdAmount.ToUsd((long)reply[5]), (long)reply[6], (long)reply[7]),
            PeriodEnd = end > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(end) : null,
            InFlight = (int)(long)reply[9],
            Halted = (long)reply[10] == 1,
        };
    }

    private async ValueTask<RedisResult[]> ReadRunStateAsync(string runId, CancellationToken cancellationToken)
    {
        var run = RunKey(runId);
        RedisKey[] keys = [run, run + "x"];
        RedisValue[] args = [Number(NowMs()), Number(_idleMs)];
        return (RedisResult[]?)await EvaluateAsync(RedisAdmissionScripts.RunState, keys, args, cancellationToken).ConfigureAwait(false) ?? [];
    }

    private async ValueTask SetRunHaltAsync(string runId, bool halt, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(runId);
        var run = RunKey(runId);
        RedisKey[] keys = [run, run + "x"];
        RedisValue[] args = [Number(NowMs()), Number(_idleMs), halt ? "1" : "0", Number(_idleMs + RunKeyRefreshMs)];
        await EvaluateAsync(RedisAdmissionScripts.HaltRun, keys, args, cancellationToken).ConfigureAwait(false);
        if (halt)
        {
            // A replica that owns the run lets go at once (its write-back would see the halt within its next sweep anyway).
            await RequestRunReleaseAsync(runId).ConfigureAwait(false);
        }
    }
}
