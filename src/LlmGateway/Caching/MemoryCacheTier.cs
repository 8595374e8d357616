namespace LlmGateway.Caching;

/// <summary>
/// The response cache's in-process tier: answers by key with least-recently-used eviction, bounded by the bytes it
/// holds (Gateway:Cache:MemoryMaxBytes). Every entry expires at its answer's own <see cref="CachedAnswer.ExpiresAt"/>
/// by the gateway's clock, whichever tier it came from, so it is never served past the time it was stored with.
/// </summary>
/// <remarks>
/// Entries are the parsed answers, not their stored bytes: a hit here costs a map lookup, with no checksum or parse
/// (those guard bytes that crossed a network or sat in a shared store; see <see cref="CachedAnswerSerializer"/>).
/// </remarks>
internal sealed class MemoryCacheTier
{
    /// <summary>What one entry costs beyond its body and strings: the answer, the map entry, the list node, the item.</summary>
    internal const int EntryOverhead = 256;

    private readonly Lock _lock = new();
    private readonly Dictionary<string, LinkedListNode<Item>> _items = new(StringComparer.Ordinal);
    private readonly LinkedList<Item> _recency = new();
    private readonly TimeProvider _timeProvider;
    private readonly Func<long> _maxBytes;
    private long _bytes;

    public MemoryCacheTier(Func<long> maxBytes, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(maxBytes);
        ArgumentNullException.ThrowIfNull(timeProvider);
        _maxBytes = maxBytes;
        _timeProvider = timeProvider;
    }

    /// <summary>Bytes held now (an estimate: bodies, keys and model names, plus <see cref="EntryOverhead"/> each).</summary>
    public long Bytes
    {
        get
        {
            lock (_lock)
            {
                return _bytes;
            }
        }
    }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _items.Count;
            }
        }
    }

    /// <summary>The bytes an entry is counted as.</summary>
    public static long SizeOf(string key, CachedAnswer answer) => answer.Body.Length + 2L * (key.Length + answer.Model.Length) + EntryOverhead;

    /// <summary>The answer under <paramref name="key"/>, or null when there is none or it has expired.</summary>
    public CachedAnswer? Get(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        var now = _timeProvider.GetUtcNow();
        lock (_lock)
        {
            if (!_items.TryGetValue(key, out var node))
            {
                return null;
            }

            if (node.Value.Answer.ExpiresAt <= now)
            {
                RemoveNode(node);
                return null;
            }

            _recency.Remove(node);
            _recency.AddFirst(node);
            return node.Value.Answer;
        }
    }

    /// <summary>Stores (or replaces) the answer until its <see cref="CachedAnswer.ExpiresAt"/>; one already expired, or larger than the bound, is not kept.</summary>
    public void Set(string key, CachedAnswer answer)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(answer);
        var item = new Item(key, answer, SizeOf(key, answer));
        var max = _maxBytes();
        var expired = answer.ExpiresAt <= _timeProvider.GetUtcNow();
        lock (_lock)
        {
            if (_items.TryGetValue(key, out var existing))
            {
                RemoveNode(existing);
            }

            if (expired || item.Size > max)
            {
                return;
            }

            _items[key] = _recency.AddFirst(item);
            _bytes += item.Size;
            while (_bytes > max && _recency.Last is { } oldest)
            {
                RemoveNode(oldest);
            }
        }
    }

    public void Remove(string key)
    {
        lock (_lock)
        {
            if (_items.TryGetValue(key, out var node))
            {
                RemoveNode(node);
            }
        }
    }

    private void RemoveNode(LinkedListNode<Item> node)
    {
        _recency.Remove(node);
        _items.Remove(node.Value.Key);
        _bytes -= node.Value.Size;
    }

    private sealed record Item(string Key, CachedAnswer Answer, long Size);
}
