namespace LlmGateway.Telemetry;

/// <summary>
/// Compares label value lists element by element (ordinal), also against a span of values on the stack, so that an
/// existing series is found without allocating its key.
/// </summary>
internal sealed class LabelValuesComparer : IEqualityComparer<string[]>, IAlternateEqualityComparer<ReadOnlySpan<string>, string[]>
{
    public static readonly LabelValuesComparer Instance = new();

    public bool Equals(string[]? x, string[]? y) =>
        ReferenceEquals(x, y) || (x is not null && y is not null && Equals((ReadOnlySpan<string>)x, y));

    public int GetHashCode(string[] obj) => GetHashCode((ReadOnlySpan<string>)obj);

    public bool Equals(ReadOnlySpan<string> alternate, string[] other)
    {
        if (alternate.Length != other.Length)
        {
            return false;
        }

        for (var i = 0; i < alternate.Length; i++)
        {
            if (!string.Equals(alternate[i], other[i], StringComparison.Ordinal))
            {
                return false;
            }
        }

        return true;
    }

    public int GetHashCode(ReadOnlySpan<string> alternate)
    {
        var hash = default(HashCode);
        foreach (var value in alternate)
        {
            hash.Add(value, StringComparer.Ordinal);
        }

        return hash.ToHashCode();
    }

    public string[] Create(ReadOnlySpan<string> alternate) => alternate.ToArray();
}
