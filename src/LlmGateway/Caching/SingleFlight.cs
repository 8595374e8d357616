using System.Collections.Concurrent;

namespace LlmGateway.Caching;

/// <summary>
/// In-process single-flight of cache misses: the first miss of a key leads (goes upstream), identical misses that
/// arrive while it is in flight wait for its answer instead of making their own call.
/// </summary>
internal sealed class SingleFlight
{
    private readonly ConcurrentDictionary<string, TaskCompletionSource<CachedAnswer?>> _flights = new(StringComparer.Ordinal);

    /// <summary>Number of keys in flight now.</summary>
    public int Count => _flights.Count;

    /// <summary>True when the caller leads the flight of <paramref name="key"/>; otherwise <paramref name="pending"/> is the leader's answer to come.</summary>
    public bool TryLead(string key, out TaskCompletionSource<CachedAnswer?> flight)
    {
        var mine = new TaskCompletionSource<CachedAnswer?>(TaskCreationOptions.RunContinuationsAsynchronously);
        flight = _flights.GetOrAdd(key, mine);
        return ReferenceEquals(flight, mine);
    }

    /// <summary>Ends a flight the caller leads, handing its answer (null: none to share) to the waiters.</summary>
    public void Complete(string key, TaskCompletionSource<CachedAnswer?> flight, CachedAnswer? answer)
    {
        _flights.TryRemove(new KeyValuePair<string, TaskCompletionSource<CachedAnswer?>>(key, flight));
        flight.TrySetResult(answer);
    }
}
