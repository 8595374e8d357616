using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Budgets;

/// <summary>
/// Settlements and releases that Redis did not confirm (down, timed out, a cluster node failing over) are retried in
/// the background, so a call that finished while Redis was away is still charged once Redis is back. A finish may have
/// run although its reply was lost; its marker (see <see cref="RedisAdmissionScripts.Finish"/>: the reservation's id,
/// written by the first run, in a hash of the scope's slot) makes every repeat a no-op, so nothing is charged twice.
/// </summary>
/// <remarks>
/// Bounded: at most <see cref="MaxFinishRetries"/> wait (more are dropped, saying so), each retried about once a
/// <see cref="FinishRetryInterval"/> for <see cref="FinishRetryFor"/> after its first attempt, well within its marker's
/// life. What is still waiting when the store is disposed is lost, as is a finish abandoned after that time: its hold
/// expires by itself and its cost is not charged (logged).
/// </remarks>
internal sealed partial class RedisAdmissionStore
{
    /// <summary>Finishes waiting for a retry at most: 10,000 (~1 MB).</summary>
    internal const int MaxFinishRetries = 10_000;

    /// <summary>How long a finish is retried after its first attempt: 60 s, a marker's life less its 10 s bucket and a margin.</summary>
    internal static readonly TimeSpan FinishRetryFor = TimeSpan.FromMilliseconds(RedisAdmissionScripts.MarkerLifeMs - 30_000);

    private readonly ConcurrentQueue<RetriedFinish> _retries = new();
    private readonly CancellationTokenSource _stopping = new();
    private int _retryCount;
    private int _retrying;
    private long _finishesRetried;
    private long _finishesDropped;

    /// <summary>How often waiting finishes are tried again (real time).</summary>
    internal TimeSpan FinishRetryInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Finishes waiting to be retried.</summary>
    internal int PendingFinishes => Volatile.Read(ref _retryCount);

    /// <summary>Finishes that went through on a retry.</summary>
    internal long FinishesRetried => Interlocked.Read(ref _finishesRetried);

    /// <summary>Finishes given up: the queue was full, or Redis did not take them within <see cref="FinishRetryFor"/>.</summary>
    internal long FinishesDropped => Interlocked.Read(ref _finishesDropped);

    /// <summary>The name suffix of the marker hashes a finish first attempted now goes to: one per scope and 10 s.</summary>
    private string MarkerSuffix() => ":d" + (NowMs() / 10_000).ToString(CultureInfo.InvariantCulture);

    /// <summary>Queues a failed finish for retry; the exception to report says whether it will be.</summary>
    private AdmissionStoreUnavailableException RetryLater(PendingCall item, AdmissionStoreUnavailableException failure)
    {
        if (Interlocked.Increment(ref _retryCount) > MaxFinishRetries)
        {
            Interlocked.Decrement(ref _retryCount);
            Interlocked.Increment(ref _finishesDropped);
            return new AdmissionStoreUnavailableException($"{failure.Message} (not retried: {MaxFinishRetries} finishes already wait)", failure);
        }

        _retries.Enqueue(new RetriedFinish(item.Held, item.Numbers, item.Marker!, Stopwatch.GetTimestamp()));
        if (Interlocked.CompareExchange(ref _retrying, 1, 0) == 0)
        {
            _ = RetryFinishesAsync();
        }

        return new AdmissionStoreUnavailableException($"{failure.Message} (retried for up to {FinishRetryFor.TotalSeconds:0} s)", failure);
    }

    private async Task RetryFinishesAsync()
    {
        try
        {
            while (true)
            {
                await Task.Delay(FinishRetryInterval, _stopping.Token).ConfigureAwait(false);
                var attempts = new List<(RetriedFinish Finish, PendingCall Item, Task Sent)>();
                for (var count = _retries.Count; count > 0 && _retries.TryDequeue(out var finish); count--)
                {
                    var item = new PendingCall(finish.Held, finish.Numbers, null) { Marker = finish.Marker };
                    attempts.Add((finish, item, BoundAsync(_finishes.Enqueue(item), RedisAdmissionScripts.Finish.Name, _stopping.Token, queued: true).AsTask()));
                }

                foreach (var (finish, item, sent) in attempts)
                {
                    Exception? failure = null;
                    try
                    {
                        await sent.ConfigureAwait(false);
                        failure = item.Failure;
                    }
                    catch (AdmissionStoreUnavailableException exception)
                    {
                        failure = exception;
                    }

                    if (failure is null)
                    {
                        Interlocked.Decrement(ref _retryCount);
                        Interlocked.Increment(ref _finishesRetried);
                        RetryLog.FinishRetried(_logger, finish.Held.Id);
                    }
                    else if (Stopwatch.GetElapsedTime(finish.FirstAttempt) < FinishRetryFor)
                    {
                        _retries.Enqueue(finish);
                    }
                    else
                    {
                        Interlocked.Decrement(ref _retryCount);
                        Interlocked.Increment(ref _finishesDropped);
                        RetryLog.FinishAbandoned(_logger, finish.Held.Id, FinishRetryFor.TotalSeconds, failure.Message);
                    }
                }

                if (_retries.IsEmpty)
                {
                    Volatile.Write(ref _retrying, 0);
                    if (_retries.IsEmpty || Interlocked.CompareExchange(ref _retrying, 1, 0) != 0)
                    {
                        return;
                    }
                }
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
            // Disposed: what waits is lost (its holds expire by themselves).
        }
    }

    /// <summary>A finish waiting for a retry: the same numbers and marker as its first attempt, so a repeat is recognised.</summary>
    private sealed record RetriedFinish(RedisReservation Held, byte[] Numbers, string Marker, long FirstAttempt);
}

/// <summary>Log lines of the finish retries.</summary>
internal static partial class RetryLog
{
    [LoggerMessage(EventId = GatewayEventIds.SettleRetried, EventName = "SettleRetried", Level = LogLevel.Information, Message = "Reservation {ReservationId}: settled on a retry, once Redis answered again")]
    public static partial void FinishRetried(ILogger logger, string reservationId);

    [LoggerMessage(EventId = GatewayEventIds.SettleAbandoned, EventName = "SettleAbandoned", Level = LogLevel.Error, Message = "Reservation {ReservationId}: not settled after {Seconds} s of retries; its hold expires by itself and its cost is not charged: {Reason}")]
    public static partial void FinishAbandoned(ILogger logger, string reservationId, double seconds, string reason);
}
