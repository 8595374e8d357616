using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace LlmGateway.Budgets.Leases;

/// <summary>
/// Returns of blocks that Redis did not confirm (down, timed out, a node failing over) are retried in the background,
/// so the spend of calls settled on a block while Redis was away is still charged once it is back. A return may have
/// run although its reply was lost: its id, recorded by the script in a marker hash of the scope's slot, makes every
/// repeat a no-op, so nothing is charged twice. As the per-call store's settlements (RedisAdmissionStore.Retries.cs).
/// </summary>
/// <remarks>
/// Bounded: at most <see cref="MaxReturnRetries"/> wait (more are given up and counted in <see cref="LostReturns"/>),
/// each retried about once a <see cref="ReturnRetryInterval"/> for <see cref="RedisAdmissionStore.FinishRetryFor"/>,
/// within its marker's life (90 s). Given up, a return's held room expires by TTL and its calls' spend is not charged.
/// </remarks>
internal sealed partial class LeasedAdmissionStore
{
    /// <summary>Returns waiting for a retry at most.</summary>
    internal const int MaxReturnRetries = 10_000;

    private readonly ConcurrentQueue<PendingReturn> _returns = new();
    private readonly CancellationTokenSource _stopping = new();
    private long _returnIds;
    private int _returnCount;
    private int _returning;

    /// <summary>How often waiting returns are tried again (real time).</summary>
    internal TimeSpan ReturnRetryInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Returns waiting to be retried.</summary>
    internal int PendingReturns => Volatile.Read(ref _returnCount);

    /// <summary>A return's script keys and arguments, fixed at its first attempt so every retry is the same return.</summary>
    private sealed record PendingReturn(RedisKey[] Keys, RedisValue[] Args)
    {
        public long FirstAttempt { get; } = Stopwatch.GetTimestamp();
    }

    private string NextReturnId() => _idPrefix + "r" + Interlocked.Increment(ref _returnIds).ToString(CultureInfo.InvariantCulture);

    /// <summary>The marker hash of a scope's returns first sent now: one per scope and 10 s, in the scope's slot.</summary>
    private static string ReturnMarker(LeaseScope scope, long nowMs) =>
        scope.Budget + ":ld" + (nowMs / 10_000).ToString(CultureInfo.InvariantCulture);

    private async ValueTask ReturnAsync(PendingReturn pending)
    {
        try
        {
            await EvaluateAsync(LeaseScripts.Return, pending.Keys, pending.Args).ConfigureAwait(false);
        }
        catch (AdmissionStoreUnavailableException)
        {
            RetryLater(pending);
        }
    }

    private void RetryLater(PendingReturn pending)
    {
        if (_stopped || _stopping.IsCancellationRequested)
        {
            ReturnsLost(1, "the gateway is stopping");
            return;
        }

        if (Interlocked.Increment(ref _returnCount) > MaxReturnRetries)
        {
            Interlocked.Decrement(ref _returnCount);
            ReturnsLost(1, $"{MaxReturnRetries} returns already wait for Redis");
            return;
        }

        _returns.Enqueue(pending);
        if (Interlocked.CompareExchange(ref _returning, 1, 0) == 0)
        {
            _ = RetryReturnsAsync();
        }
    }

    private async Task RetryReturnsAsync()
    {
        try
        {
            while (true)
            {
                await Task.Delay(ReturnRetryInterval, _stopping.Token).ConfigureAwait(false);
                await RetryPendingOnceAsync().ConfigureAwait(false);
                Volatile.Write(ref _returning, 0);
                if (Volatile.Read(ref _returnCount) == 0 || Interlocked.CompareExchange(ref _returning, 1, 0) != 0)
                {
                    return;
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping: Dispose tries what waits once more.
        }
    }

    /// <summary>Sends every waiting return once; those Redis still refuses wait again, until their time is up.</summary>
    private async Task RetryPendingOnceAsync()
    {
        for (var count = _returns.Count; count > 0 && _returns.TryDequeue(out var pending); count--)
        {
            try
            {
                await EvaluateAsync(LeaseScripts.Return, pending.Keys, pending.Args).ConfigureAwait(false);
                Interlocked.Decrement(ref _returnCount);
            }
            catch (AdmissionStoreUnavailableException)
            {
                if (Stopwatch.GetElapsedTime(pending.FirstAttempt) > RedisAdmissionStore.FinishRetryFor)
                {
                    Interlocked.Decrement(ref _returnCount);
                    ReturnsLost(1, $"Redis did not confirm it within {RedisAdmissionStore.FinishRetryFor.TotalSeconds:0} s of retries");
                }
                else
                {
                    _returns.Enqueue(pending);
                }
            }
        }
    }

    /// <summary>On stop: the retry loop ends and what still waits is tried once more (bounded by the store timeout each).</summary>
    private void StopReturns(bool tryPending)
    {
        _stopping.Cancel();
        if (tryPending && !_returns.IsEmpty)
        {
            try
            {
                RetryPendingOnceAsync().Wait(_timeout * 4);
            }
            catch (AggregateException)
            {
                // Not confirmed: the holds expire by TTL.
            }
        }

        if (!_returns.IsEmpty)
        {
            ReturnsLost(_returns.Count, "the gateway stopped before Redis confirmed them");
        }

        _returns.Clear();
        _stopping.Dispose();
    }

    /// <summary>
    /// Returns given up: their calls' settled spend is not charged and their room comes back when the blocks expire.
    /// Operators see it: an error log line and <c>llm_gateway_lease_returns_lost_total</c>.
    /// </summary>
    private void ReturnsLost(long count, string reason)
    {
        Interlocked.Add(ref _lostReturns, count);
        _metrics?.LeaseReturnsLost(count);
        LeaseLog.ReturnsLost(_logger, count, reason);
    }
}

/// <summary>Log lines of the leased store.</summary>
internal static partial class LeaseLog
{
    [LoggerMessage(EventId = GatewayEventIds.LeaseReturnsLost, EventName = "LeaseReturnsLost", Level = LogLevel.Error, Message = "{Count} lease block return(s) given up ({Reason}): their calls' settled spend is not charged, and their room comes back when the blocks expire")]
    public static partial void ReturnsLost(ILogger logger, long count, string reason);

    [LoggerMessage(EventId = GatewayEventIds.LeaseBlocksClosed, EventName = "LeaseBlocksClosed", Level = LogLevel.Warning, Message = "Redis connection lost or reconfigured ({Reason}): every open lease block closed; calls go to Redis again")]
    public static partial void BlocksClosed(ILogger logger, string reason);
}
