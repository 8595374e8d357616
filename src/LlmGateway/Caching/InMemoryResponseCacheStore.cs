namespace LlmGateway.Caching;

/// <summary>
/// The cache store of a single gateway: a map with least-recently-used eviction, bounded by the bytes it holds
/// (Gateway:Cache:MemoryMaxBytes), expiring by the injected clock.
/// </summary>
internal sealed class InMemoryResponseCacheStore : IResponseCacheStore
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, LinkedListNode<Item>> _items = new(StringComparer.Ordinal);
    private readonly LinkedList<Item> _recency = new();
    private readonly TimeProvider _timeProvider;
    private readonly Func<long> _maxBytes;
    private long _bytes;

    public InMemoryResponseCacheStore(Func<long> maxBytes, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(maxBytes);
        ArgumentNullException.ThrowIfNull(timeProvider);
        _maxBytes = maxBytes;
        _timeProvider = timeProvider;
    }

    /// <summary>Bytes held now (values plus keys).</summary>
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

    public ValueTask<byte[]?> GetAsync(string key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        var now = _timeProvider.GetUtcNow();
        lock (_lock)
        {
            if (!_items.TryGetValue(key, out var node))
            {
                return ValueTask.FromResult<byte[]?>(null);
            }

            if (node.Value.ExpiresAt <= now)
            {
                RemoveNode(node);
                return ValueTask.FromResult<byte[]?>(null);
            }

            _recency.Remove(node);
            _recency.AddFirst(node);
            return ValueTask.FromResult<byte[]?>(node.Value.Value);
        }
    }

    public ValueTask SetAsync(string key, byte[] value, TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        var item = new Item(key, value, _timeProvider.GetUtcNow() + ttl);
        var max = _maxBytes();
        lock (_lock)
        {
            if (_items.TryGetValue(key, out var existing))
            {
                RemoveNode(existing);
            }

            if (item.Size > max)
            {
                return ValueTask.CompletedTask;
            }

            _items[key] = _recency.AddFirst(item);
            _bytes += item.Size;
            while (_bytes > max && _recency.Last is { } oldest)
            {
                RemoveNode(oldest);
            }
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask RemoveAsync(string key, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            if (_items.TryGetValue(key, out var node))
            {
                RemoveNode(node);
            }
        }

        return ValueTask.CompletedTask;
    }

    private void RemoveNode(LinkedListNode<Item> node)
    {
        _recency.Remove(node);
        _items.Remove(node.Value.Key);
        _bytes -= node.Value.Size;
    }

    private sealed record Item(string Key, byte[] Value, DateTimeOffset ExpiresAt)
    {
        // Keys are ASCII hex; the constant covers the node and map overhead.
        public long Size { get; } = Value.Length + Key.Length + 96;
    }
}
