using LlmGateway.Configuration;

namespace LlmGateway.Tools;

/// <summary>
/// In-run caching of tool reads (a tool's <c>RunCache</c>): a 2xx answer to a read of a run (X-Run-Id) is kept, keyed by
/// run, tool, caller's user, method, path and query, and a repeat of the read within the run is answered from it. Any
/// other method of the run to the tool clears the run's entries for that tool (before and after it is forwarded), so a
/// write is never followed by a stale read. Never shared across runs or users. Bounded in bytes per run and tool
/// (<see cref="ToolRunCacheOptions.MaxRunBytes"/>, oldest out first) and overall (<see cref="MaxTotalBytes"/>).
/// Entries are in each process's memory; with Redis a write forwarded by any replica also invalidates the entries the
/// other replicas keep for the run (<see cref="IRunCacheGenerations"/>), so a run's repeat may miss on another replica
/// but is never answered stale.
/// </summary>
internal sealed class ToolRunCache(TimeProvider time)
{
    /// <summary>Bytes all runs' entries may take together; beyond, the oldest entries of any run go first.</summary>
    public const long MaxTotalBytes = 64L * 1024 * 1024;

    private readonly Dictionary<(string Run, string Tool), Group> _groups = [];
    private readonly LinkedList<Entry> _all = new();
    private readonly Lock _lock = new();
    private long _totalBytes;

    /// <summary>Bytes held now (for tests and gauges).</summary>
    public long TotalBytes
    {
        get
        {
            lock (_lock)
            {
                return _totalBytes;
            }
        }
    }

    /// <summary>True when the tool keeps answers to <paramref name="method"/> (GET unless its Methods say otherwise).</summary>
    public static bool IsCached(ToolRunCacheOptions options, string method)
    {
        if (options.Methods.Count == 0)
        {
            return string.Equals(method, "GET", StringComparison.OrdinalIgnoreCase);
        }

        foreach (var cached in options.Methods)
        {
            if (string.Equals(cached, method, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The kept answer, if it was stored under <paramref name="generation"/> (no write of the run to the tool since) and is fresh.</summary>
    public bool TryGet(string run, string tool, string user, string method, string pathAndQuery, long generation, out StoredToolResponse? response)
    {
        response = null;
        var now = time.GetUtcNow();
        lock (_lock)
        {
            if (!_groups.TryGetValue((run, tool), out var group) || !group.Entries.TryGetValue(EntryKey(user, method, pathAndQuery), out var entry))
            {
                return false;
            }

            if (entry.ExpiresAt <= now || entry.Generation != generation)
            {
                Remove(entry);
                return false;
            }

            response = entry.Response;
            return true;
        }
    }

    public void Store(string run, string tool, string user, string method, string pathAndQuery, long generation, StoredToolResponse response, ToolRunCacheOptions options)
    {
        var key = EntryKey(user, method, pathAndQuery);
        var bytes = Size(key, response);
        if (bytes > options.MaxRunBytes || response.Body is null || response.Body.Length > options.MaxEntryBytes)
        {
            return;
        }

        lock (_lock)
        {
            // Entries of ended runs go once expired (oldest first), or when the byte bounds need their room.
            var now = time.GetUtcNow();
            while (_all.First is { } first && first.Value.ExpiresAt <= now)
            {
                Remove(first.Value);
            }

            if (!_groups.TryGetValue((run, tool), out var group))
            {
                group = new Group(run, tool);
                _groups[(run, tool)] = group;
            }

            if (group.Entries.TryGetValue(key, out var existing))
            {
                Remove(existing);
            }

            var entry = new Entry(group, key, response, now + options.Ttl, bytes) { Generation = generation };
            entry.GroupNode = group.Order.AddLast(entry);
            entry.AllNode = _all.AddLast(entry);
            group.Entries[key] = entry;
            group.Bytes += bytes;
            _totalBytes += bytes;
            while (group.Bytes > options.MaxRunBytes && group.Order.First is { } oldest)
            {
                Remove(oldest.Value);
            }

            while (_totalBytes > MaxTotalBytes && _all.First is { } oldestOverall)
            {
                Remove(oldestOverall.Value);
            }
        }
    }

    /// <summary>Forgets every entry of the run for the tool (a write of the run went to it).</summary>
    public void Clear(string run, string tool)
    {
        lock (_lock)
        {
            if (_groups.TryGetValue((run, tool), out var group))
            {
                while (group.Order.First is { } entry)
                {
                    Remove(entry.Value);
                }
            }
        }
    }

    private void Remove(Entry entry)
    {
        var group = entry.Group;
        group.Entries.Remove(entry.Key);
        group.Order.Remove(entry.GroupNode!);
        _all.Remove(entry.AllNode!);
        group.Bytes -= entry.Bytes;
        _totalBytes -= entry.Bytes;
        if (group.Entries.Count == 0)
        {
            _groups.Remove((group.Run, group.Tool));
        }
    }

    private static string EntryKey(string user, string method, string pathAndQuery) => user + "\n" + method.ToUpperInvariant() + "\n" + pathAndQuery;

    private static long Size(string key, StoredToolResponse response)
    {
        long bytes = 64 + key.Length * 2 + (response.Body?.Length ?? 0);
        foreach (var (name, values) in response.Headers)
        {
            bytes += name.Length * 2;
            foreach (var value in values)
            {
                bytes += value.Length * 2;
            }
        }

        return bytes;
    }

    private sealed class Group(string run, string tool)
    {
        public string Run { get; } = run;

        public string Tool { get; } = tool;

        public Dictionary<string, Entry> Entries { get; } = new(StringComparer.Ordinal);

        public LinkedList<Entry> Order { get; } = new();

        public long Bytes { get; set; }
    }

    private sealed class Entry(Group group, string key, StoredToolResponse response, DateTimeOffset expiresAt, long bytes)
    {
        public Group Group { get; } = group;

        public string Key { get; } = key;

        public StoredToolResponse Response { get; } = response;

        public DateTimeOffset ExpiresAt { get; } = expiresAt;

        public long Bytes { get; } = bytes;

        public long Generation { get; init; }

        public LinkedListNode<Entry>? GroupNode { get; set; }

        public LinkedListNode<Entry>? AllNode { get; set; }
    }
}
