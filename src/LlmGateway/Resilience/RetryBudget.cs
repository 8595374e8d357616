namespace LlmGateway.Resilience;

/// <summary>
/// The gateway-wide retry guard: over a sliding window of ten 1-second buckets, retries may be at most
/// <c>ratio</c> × requests + <c>minPerSecond</c> × 10. During an outage every request fails and wants to retry;
/// this keeps the extra load on the provider to a fraction instead of multiplying it by MaxAttempts.
/// </summary>
internal sealed class RetryBudget(TimeProvider time)
{
    private const int Buckets = 10;
    private readonly Lock _lock = new();
    private readonly long[] _requests = new long[Buckets];
    private readonly long[] _retries = new long[Buckets];
    private long _currentSecond = -1;

    public void RecordRequest()
    {
        lock (_lock)
        {
            _requests[Advance()]++;
        }
    }

    public bool TryTakeRetry(double ratio, int minPerSecond)
    {
        lock (_lock)
        {
            var bucket = Advance();
            long requests = 0, retries = 0;
            for (var i = 0; i < Buckets; i++)
            {
                requests += _requests[i];
                retries += _retries[i];
            }

            if (retries + 1 > (ratio * requests) + ((long)minPerSecond * Buckets))
            {
                return false;
            }

            _retries[bucket]++;
            return true;
        }
    }

    private int Advance()
    {
        var second = time.GetUtcNow().ToUnixTimeSeconds();
        if (second != _currentSecond)
        {
            // Clear every bucket skipped since the last call (all of them after a long pause).
            var steps = _currentSecond < 0 ? Buckets : Math.Min(Buckets, second - _currentSecond);
            for (var s = 1; s <= steps; s++)
            {
                var index = (int)((_currentSecond + s) % Buckets);
                _requests[index] = 0;
                _retries[index] = 0;
            }

            _currentSecond = second;
        }

        return (int)(second % Buckets);
    }
}
