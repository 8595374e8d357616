using StackExchange.Redis;

namespace LlmGateway.Budgets;

/// <summary>Settlements and releases: one finish script per batch (on a cluster, one per hash slot and scope).</summary>
internal sealed partial class RedisAdmissionStore
{
    public ValueTask SettleAsync(Reservation reservation, decimal actualUsd, long actualTokens, CancellationToken cancellationToken = default) =>
        FinishAsync(reservation, settle: true, UsdAmount.ToNanosCeiling(actualUsd), Math.Max(0, actualTokens), cancellationToken);

    public ValueTask ReleaseAsync(Reservation reservation, CancellationToken cancellationToken = default) =>
        FinishAsync(reservation, settle: false, 0, 0, cancellationToken);

    /// <summary>The numbers of a settle (mode 1), release (0) or undo (2), packed (see RedisAdmissionScripts.Finish).</summary>
    private byte[] FinishNumbers(RedisReservation held, int mode, long actualUsd, long actualTokens) => Pack(
    [
        NowMs(), mode, held.ExpirySecond, held.AdmissionSecond, held.UsdNanos, held.ReservedTokens, actualUsd, actualTokens,
        Flag(held.HasTeam), Flag(held.HasRun), Flag(held.HasUserRate), Flag(held.HasKeyRate),
        held.UserPeriodEndMs, held.TeamPeriodEndMs, _retentionMs, held.RunLifeMs, RunKeyRefreshMs, held.AdmittedMs,
    ]);

    /// <summary>
    /// Whether a batch holds run-only finishes (<see cref="ReserveRunAsync"/>; retried ones come here): then it goes as
    /// scope steps, as on a cluster (on a single Redis all in one script), so they touch their run's keys only.
    /// </summary>
    private static bool HasRunOnly(List<PendingCall> batch)
    {
        foreach (var item in batch)
        {
            if (item.Held.RunOnly)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Settle or release: one script for both, as they touch the same fields, group-committed like admissions
    /// (<see cref="ScriptGroupCommit{T}"/>). The caller still waits for its own settlement, so a read after it sees it.
    /// </summary>
    private async ValueTask FinishAsync(Reservation reservation, bool settle, long actualUsd, long actualTokens, CancellationToken cancellationToken)
    {
        var held = Own(reservation);
        if (!held.TryComplete())
        {
            return;
        }

        var item = new PendingCall(held, FinishNumbers(held, settle ? 1 : 0, actualUsd, actualTokens), null) { Marker = MarkerSuffix(), IsFinish = held.RunOnly };
        try
        {
            // Retried, a run-only finish goes in the finishes' queue (as scope steps, see SendFinishesAsync).
            var queue = held.RunOnly ? _runStepQueue : _finishes;
            await BoundAsync(queue.Enqueue(item), RedisAdmissionScripts.Finish.Name, cancellationToken, queued: true).ConfigureAwait(false);
            if (item.Failure is { } failure)
            {
                throw new AdmissionStoreUnavailableException($"Redis could not run {RedisAdmissionScripts.FinishScoped.Name}: {failure.Message}", failure);
            }
        }
        catch (AdmissionStoreUnavailableException exception)
        {
            // It may have run and only its reply been lost: the retry's marker tells (see RedisAdmissionStore.Retries.cs).
            throw RetryLater(item, exception);
        }
    }

    /// <summary>One finish script for a batch of settlements and releases (on a cluster, one per hash slot).</summary>
    private async Task<RedisResult> SendFinishesAsync(List<PendingCall> batch)
    {
        if (await IsClusterAsync().ConfigureAwait(false) || HasRunOnly(batch))
        {
            return await SendScopedFinishesAsync(batch).ConfigureAwait(false);
        }

        var keys = new RedisKey[batch.Count * KeyCount];
        var args = new RedisValue[batch.Count * 6];
        for (var i = 0; i < batch.Count; i++)
        {
            var held = batch[i].Held;
            held.Keys.CopyTo(keys, i * KeyCount);
            args[6 * i] = batch[i].Numbers;
            args[(6 * i) + 1] = held.RequestHash;
            args[(6 * i) + 2] = held.ExpiryField;
            args[(6 * i) + 3] = held.WindowField;
            args[(6 * i) + 4] = (string)held.Keys[0]! + batch[i].Marker;
            args[(6 * i) + 5] = held.Id;
        }

        // Bounded from when it is sent: a batch stuck on a dead connection must not hold back the next ones.
        return await _redis.EvaluateAsync(RedisAdmissionScripts.Finish, keys, args).WaitAsync(_timeout).ConfigureAwait(false);
    }
}
