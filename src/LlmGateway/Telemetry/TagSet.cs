using System.Globalization;
using System.Runtime.CompilerServices;

namespace LlmGateway.Telemetry;

/// <summary>
/// The identity of one series: tag names sorted ordinally, with their values rendered as invariant strings.
/// Immutable once built; created only when a measurement arrives for a tag set not seen before.
/// </summary>
internal sealed class TagSet
{
    public static readonly TagSet Empty = new([], []);

    private TagSet(string[] names, string[] values)
    {
        Names = names;
        Values = values;
        // Values only: the series of one instrument share their tag names, so hashing the names would not tell
        // them apart, only cost time on every measurement. Equality still compares the names.
        var hash = new HashCode();
        for (var i = 0; i < values.Length; i++)
        {
            hash.Add(string.GetHashCode(values[i].AsSpan()));
        }

        Hash = hash.ToHashCode();
    }

    public string[] Names { get; }

    public string[] Values { get; }

    public int Count => Names.Length;

    public int Hash { get; }

    /// <summary>
    /// Prometheus label names for <see cref="Names"/>, sanitized once per series; an entry is null when its
    /// sanitized name repeats an earlier one, so the serializer never writes a label twice.
    /// </summary>
    public string?[] LabelNames => field ??= PrometheusTextSerializer.SanitizeLabelNames(Names);

    /// <summary>Builds a tag set from name/value pairs in any order.</summary>
    public static TagSet Create(params ReadOnlySpan<KeyValuePair<string, string>> tags)
    {
        if (tags.IsEmpty)
        {
            return Empty;
        }

        var sorted = tags.ToArray();
        Array.Sort(sorted, static (a, b) => string.CompareOrdinal(a.Key, b.Key));
        var names = new string[sorted.Length];
        var values = new string[sorted.Length];
        for (var i = 0; i < sorted.Length; i++)
        {
            names[i] = sorted[i].Key;
            values[i] = sorted[i].Value;
        }

        return new TagSet(names, values);
    }

    /// <summary>Builds a tag set from measurement tags that are already sorted by name.</summary>
    public static TagSet FromSorted(ReadOnlySpan<KeyValuePair<string, object?>> sortedTags)
    {
        if (sortedTags.IsEmpty)
        {
            return Empty;
        }

        var names = new string[sortedTags.Length];
        var values = new string[sortedTags.Length];
        Span<char> buffer = stackalloc char[TagSetComparer.FormatBufferLength];
        for (var i = 0; i < sortedTags.Length; i++)
        {
            var value = sortedTags[i].Value;
            names[i] = sortedTags[i].Key;
            values[i] = value as string ?? FormatValue(value, buffer).ToString();
        }

        return new TagSet(names, values);
    }

    /// <summary>Ordinal comparison: by each name, then each value; a prefix sorts first.</summary>
    public static int Compare(TagSet x, TagSet y)
    {
        if (ReferenceEquals(x, y))
        {
            return 0;
        }

        var n = Math.Min(x.Count, y.Count);
        for (var i = 0; i < n; i++)
        {
            var c = string.CompareOrdinal(x.Names[i], y.Names[i]);
            if (c != 0)
            {
                return c;
            }

            c = string.CompareOrdinal(x.Values[i], y.Values[i]);
            if (c != 0)
            {
                return c;
            }
        }

        return x.Count.CompareTo(y.Count);
    }

    /// <summary>Sorts measurement tags by name in place; tag lists are short, so insertion sort.</summary>
    public static void Sort(Span<KeyValuePair<string, object?>> tags)
    {
        for (var i = 1; i < tags.Length; i++)
        {
            var current = tags[i];
            var j = i - 1;
            while (j >= 0 && string.CompareOrdinal(tags[j].Key, current.Key) > 0)
            {
                tags[j + 1] = tags[j];
                j--;
            }

            tags[j + 1] = current;
        }
    }

    /// <summary>
    /// Renders a tag value as the string the series is keyed and exposed by, without allocating for
    /// strings, booleans and numbers; <paramref name="buffer"/> must hold at least 64 chars.
    /// </summary>
    public static ReadOnlySpan<char> FormatValue(object? value, Span<char> buffer)
    {
        switch (value)
        {
            case null:
                return [];
            case string s:
                return s;
            case bool b:
                return b ? "true" : "false";

            // Status codes and ports, on every HTTP measurement: formatted without the interface dispatch below.
            case int i when i.TryFormat(buffer, out var digits, default, CultureInfo.InvariantCulture):
                return buffer[..digits];
            case ISpanFormattable f when f.TryFormat(buffer, out var written, default, CultureInfo.InvariantCulture):
                return buffer[..written];
            default:
                return Convert.ToString(value, CultureInfo.InvariantCulture);
        }
    }
}

/// <summary>Measurement tags, sorted by name, used to look a series up without building a <see cref="TagSet"/>.</summary>
internal readonly ref struct SortedTags(ReadOnlySpan<KeyValuePair<string, object?>> tags)
{
    public readonly ReadOnlySpan<KeyValuePair<string, object?>> Tags = tags;
}

/// <summary>Equality for <see cref="TagSet"/>, and between a stored set and incoming <see cref="SortedTags"/>.</summary>
internal sealed class TagSetComparer : IEqualityComparer<TagSet>, IAlternateEqualityComparer<SortedTags, TagSet>
{
    public const int FormatBufferLength = 64;

    public static readonly TagSetComparer Instance = new();

    public bool Equals(TagSet? x, TagSet? y)
    {
        if (ReferenceEquals(x, y))
        {
            return true;
        }

        if (x is null || y is null || x.Hash != y.Hash || x.Count != y.Count)
        {
            return false;
        }

        return x.Names.AsSpan().SequenceEqual(y.Names) && x.Values.AsSpan().SequenceEqual(y.Values);
    }

    public int GetHashCode(TagSet obj) => obj.Hash;

    public bool Equals(SortedTags alternate, TagSet other)
    {
        var tags = alternate.Tags;
        if (tags.Length != other.Count)
        {
            return false;
        }

        var names = other.Names;
        var values = other.Values;
        for (var i = 0; i < tags.Length; i++)
        {
            // Most values are strings, often the very instance the series stores: compared without formatting.
            if (!string.Equals(tags[i].Key, names[i], StringComparison.Ordinal)
                || !(tags[i].Value is string text ? string.Equals(text, values[i], StringComparison.Ordinal) : FormattedEquals(tags[i].Value, values[i])))
            {
                return false;
            }
        }

        return true;
    }

    // Must agree with TagSet.Hash: both hash the same value chars (names are left out there too).
    public int GetHashCode(SortedTags alternate)
    {
        var tags = alternate.Tags;
        var hash = new HashCode();
        for (var i = 0; i < tags.Length; i++)
        {
            hash.Add(tags[i].Value is string text ? string.GetHashCode(text.AsSpan()) : FormattedHash(tags[i].Value));
        }

        return hash.ToHashCode();
    }

    private static bool FormattedEquals(object? value, string stored)
    {
        Span<char> buffer = stackalloc char[FormatBufferLength];
        return TagSet.FormatValue(value, buffer).SequenceEqual(stored);
    }

    private static int FormattedHash(object? value)
    {
        Span<char> buffer = stackalloc char[FormatBufferLength];
        return string.GetHashCode(TagSet.FormatValue(value, buffer));
    }

    public TagSet Create(SortedTags alternate) => TagSet.FromSorted(alternate.Tags);
}

/// <summary>Stack room for the tags of one measurement, so sorting them does not allocate.</summary>
[InlineArray(Length)]
internal struct TagBuffer
{
    public const int Length = 8;

    private KeyValuePair<string, object?> _element0;
}
