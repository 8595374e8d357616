using System.Buffers;
using System.Globalization;
using System.Text;

namespace LlmGateway.Telemetry;

/// <summary>
/// Writes metrics in the Prometheus text exposition format 0.0.4, straight to UTF-8 bytes.
/// Families are sorted by name and series by labels, so the output is deterministic.
/// </summary>
internal static class PrometheusTextSerializer
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private const int MinimumBufferSize = 4096;

    private static readonly SearchValues<char> LabelValueEscapes = SearchValues.Create("\\\"\n");
    private static readonly SearchValues<char> HelpEscapes = SearchValues.Create("\\\n");

    private static readonly Comparison<PrometheusMetric> ByName = static (x, y) =>
    {
        var c = string.CompareOrdinal(x.PrometheusName, y.PrometheusName);
        if (c != 0)
        {
            return c;
        }

        c = string.CompareOrdinal(x.Name, y.Name);
        return c != 0 ? c : x.Type.CompareTo(y.Type);
    };

    private static readonly Comparison<PrometheusSample> ByLabels = static (x, y) => TagSet.Compare(x.Labels, y.Labels);

    public static void Write(IBufferWriter<byte> output, IReadOnlyList<PrometheusMetric> metrics)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(metrics);

        var ordered = new PrometheusMetric[metrics.Count];
        for (var i = 0; i < ordered.Length; i++)
        {
            ordered[i] = metrics[i];
        }

        Array.Sort(ordered, ByName);

        var writer = new Utf8Writer(output);
        var start = 0;
        while (start < ordered.Length)
        {
            var first = ordered[start];
            var end = start + 1;
            while (end < ordered.Length && string.Equals(ordered[end].PrometheusName, first.PrometheusName, StringComparison.Ordinal))
            {
                end++;
            }

            var samples = end - start == 1 ? first.Samples : Merge(ordered.AsSpan(start, end - start));
            if (samples.Count > 0)
            {
                samples.Sort(ByLabels);
                WriteFamily(ref writer, first, samples);
            }

            start = end;
        }

        writer.Flush();
    }

    /// <summary>
    /// The exposed family name: sanitized, with <c>_seconds</c> / <c>_bytes</c> for the units "s" / "By"
    /// and, for counters, <c>_total</c>, each appended only when not already there; gauges whose name ends
    /// in a histogram suffix (<c>_count</c>, <c>_sum</c>, <c>_bucket</c>) get <c>_current</c>.
    /// </summary>
    public static string GetMetricName(string name, string? unit, PrometheusMetricType type)
    {
        var sanitized = SanitizeMetricName(name);
        var isCounter = type == PrometheusMetricType.Counter;
        if (isCounter && sanitized.EndsWith("_total", StringComparison.Ordinal) && sanitized.Length > "_total".Length)
        {
            sanitized = sanitized[..^"_total".Length];
        }

        var unitSuffix = unit switch
        {
            "s" => "_seconds",
            "By" => "_bytes",
            _ => null,
        };

        if (unitSuffix is not null && !sanitized.EndsWith(unitSuffix, StringComparison.Ordinal))
        {
            sanitized += unitSuffix;
        }

        if (isCounter)
        {
            return sanitized + "_total";
        }

        // _count, _sum and _bucket belong to histogram (and summary) series; a gauge such as System.Runtime's
        // dotnet.assembly.count would read as part of a histogram, which promtool rejects.
        if (type == PrometheusMetricType.Gauge
            && (sanitized.EndsWith("_count", StringComparison.Ordinal)
                || sanitized.EndsWith("_sum", StringComparison.Ordinal)
                || sanitized.EndsWith("_bucket", StringComparison.Ordinal)))
        {
            return sanitized + "_current";
        }

        return sanitized;
    }

    /// <summary>Maps a name onto [a-zA-Z_:][a-zA-Z0-9_:]*: any other character becomes '_'.</summary>
    public static string SanitizeMetricName(string name) => Sanitize(name, allowColon: true);

    /// <summary>Maps a name onto [a-zA-Z_][a-zA-Z0-9_]*: any other character becomes '_'.</summary>
    public static string SanitizeLabelName(string name) => Sanitize(name, allowColon: false);

    /// <summary>Sanitized label names; null for a name that repeats an earlier one once sanitized.</summary>
    public static string?[] SanitizeLabelNames(string[] names)
    {
        var result = new string?[names.Length];
        for (var i = 0; i < names.Length; i++)
        {
            var sanitized = SanitizeLabelName(names[i]);
            result[i] = Array.IndexOf(result, sanitized, 0, i) >= 0 ? null : sanitized;
        }

        return result;
    }

    private static string Sanitize(string name, bool allowColon)
    {
        if (name.Length == 0)
        {
            return "_";
        }

        var needsPrefix = char.IsAsciiDigit(name[0]);
        var valid = !needsPrefix;
        foreach (var c in name)
        {
            if (!IsValidNameChar(c, allowColon))
            {
                valid = false;
                break;
            }
        }

        if (valid)
        {
            return name;
        }

        return string.Create(name.Length + (needsPrefix ? 1 : 0), (name, needsPrefix, allowColon), static (span, state) =>
        {
            var offset = 0;
            if (state.needsPrefix)
            {
                span[0] = '_';
                offset = 1;
            }

            for (var i = 0; i < state.name.Length; i++)
            {
                var c = state.name[i];
                span[i + offset] = IsValidNameChar(c, state.allowColon) ? c : '_';
            }
        });
    }

    private static bool IsValidNameChar(char c, bool allowColon) =>
        char.IsAsciiLetterOrDigit(c) || c == '_' || (allowColon && c == ':');

    // Instruments whose names sanitize to the same family (two meters with one instrument name) share one
    // family: the first decides the type, others of a different type are left out, duplicate series are kept once.
    private static List<PrometheusSample> Merge(ReadOnlySpan<PrometheusMetric> family)
    {
        var type = family[0].Type;
        var merged = new List<PrometheusSample>();
        foreach (var metric in family)
        {
            if (metric.Type == type)
            {
                merged.AddRange(metric.Samples);
            }
        }

        merged.Sort(ByLabels);
        var kept = 0;
        for (var i = 0; i < merged.Count; i++)
        {
            if (kept == 0 || TagSet.Compare(merged[kept - 1].Labels, merged[i].Labels) != 0)
            {
                merged[kept++] = merged[i];
            }
        }

        merged.RemoveRange(kept, merged.Count - kept);
        return merged;
    }

    private static void WriteFamily(ref Utf8Writer writer, PrometheusMetric metric, List<PrometheusSample> samples)
    {
        var name = metric.PrometheusName;
        var help = string.IsNullOrEmpty(metric.Description) ? metric.Name : metric.Description;

        writer.Write("# HELP "u8);
        writer.WriteAscii(name);
        writer.Write((byte)' ');
        writer.WriteEscaped(help, HelpEscapes);
        writer.Write((byte)'\n');

        writer.Write("# TYPE "u8);
        writer.WriteAscii(name);
        writer.Write(metric.Type switch
        {
            PrometheusMetricType.Counter => " counter\n"u8,
            PrometheusMetricType.Gauge => " gauge\n"u8,
            _ => " histogram\n"u8,
        });

        foreach (var sample in samples)
        {
            if (metric.Type == PrometheusMetricType.Histogram && sample.Bounds is { } bounds && sample.BucketCounts is { } counts)
            {
                WriteHistogram(ref writer, name, sample.Labels, bounds, counts, sample.Sum);
            }
            else
            {
                WriteSample(ref writer, name, default, sample.Labels, skipLe: false, le: null, sample.Value);
            }
        }
    }

    private static void WriteHistogram(ref Utf8Writer writer, string name, TagSet labels, double[] bounds, long[] counts, double sum)
    {
        long cumulative = 0;
        for (var i = 0; i <= bounds.Length; i++)
        {
            cumulative += counts[i];
            var le = i < bounds.Length ? bounds[i] : double.PositiveInfinity;
            WriteSample(ref writer, name, "_bucket"u8, labels, skipLe: true, le, cumulative);
        }

        WriteSample(ref writer, name, "_sum"u8, labels, skipLe: true, le: null, sum);
        WriteSample(ref writer, name, "_count"u8, labels, skipLe: true, le: null, cumulative);
    }

    private static void WriteSample(
        ref Utf8Writer writer, string name, ReadOnlySpan<byte> suffix, TagSet labels, bool skipLe, double? le, double value)
    {
        writer.WriteAscii(name);
        writer.Write(suffix);
        WriteLabels(ref writer, labels, skipLe, le);
        writer.Write((byte)' ');
        writer.WriteDouble(value);
        writer.Write((byte)'\n');
    }

    // skipLe: on every histogram line a tag named "le" would collide with (or be read as) the bucket bound.
    private static void WriteLabels(ref Utf8Writer writer, TagSet labels, bool skipLe, double? le)
    {
        if (labels.Count == 0 && le is null)
        {
            return;
        }

        var names = labels.LabelNames;
        var separator = false;
        writer.Write((byte)'{');
        for (var i = 0; i < names.Length; i++)
        {
            var labelName = names[i];

            if (labelName is null || (skipLe && labelName == "le"))
            {
                continue;
            }

            if (separator)
            {
                writer.Write((byte)',');
            }

            writer.WriteAscii(labelName);
            writer.Write("=\""u8);
            writer.WriteEscaped(labels.Values[i], LabelValueEscapes);
            writer.Write((byte)'"');
            separator = true;
        }

        if (le is { } bound)
        {
            if (separator)
            {
                writer.Write((byte)',');
            }

            writer.Write("le=\""u8);
            writer.WriteDouble(bound);
            writer.Write((byte)'"');
        }

        writer.Write((byte)'}');
    }

    /// <summary>Buffers small writes into spans obtained from the output, advancing it in large chunks.</summary>
    private ref struct Utf8Writer(IBufferWriter<byte> output)
    {
        private Span<byte> _buffer;
        private int _written;

        public void Write(byte value) => Reserve(1)[0] = value;

        public void Write(ReadOnlySpan<byte> utf8)
        {
            utf8.CopyTo(Reserve(utf8.Length));
        }

        // Names are ASCII once sanitized.
        public void WriteAscii(string text)
        {
            var destination = Reserve(text.Length);
            Encoding.ASCII.GetBytes(text, destination);
        }

        public void WriteEscaped(string text, SearchValues<char> escapes)
        {
            var remaining = text.AsSpan();
            while (true)
            {
                var index = remaining.IndexOfAny(escapes);
                if (index < 0)
                {
                    WriteUtf8(remaining);
                    return;
                }

                WriteUtf8(remaining[..index]);
                Write(remaining[index] switch
                {
                    '\\' => "\\\\"u8,
                    '"' => "\\\""u8,
                    _ => "\\n"u8,
                });
                remaining = remaining[(index + 1)..];
            }
        }

        public void WriteDouble(double value)
        {
            if (double.IsNaN(value))
            {
                Write("NaN"u8);
            }
            else if (double.IsPositiveInfinity(value))
            {
                Write("+Inf"u8);
            }
            else if (double.IsNegativeInfinity(value))
            {
                Write("-Inf"u8);
            }
            else
            {
                var destination = Reserve(32, commit: false);
                value.TryFormat(destination, out var written, default, CultureInfo.InvariantCulture);
                _written += written;
            }
        }

        public void Flush()
        {
            if (_written > 0)
            {
                output.Advance(_written);
            }

            _written = 0;
            _buffer = default;
        }

        private void WriteUtf8(ReadOnlySpan<char> text)
        {
            if (text.IsEmpty)
            {
                return;
            }

            var destination = Reserve(Encoding.UTF8.GetMaxByteCount(text.Length), commit: false);
            _written += Encoding.UTF8.GetBytes(text, destination);
        }

        // Returns room for at least `size` bytes; with commit, exactly `size` bytes are counted as written.
        private Span<byte> Reserve(int size, bool commit = true)
        {
            if (_buffer.Length - _written < size)
            {
                Flush();
                _buffer = output.GetSpan(Math.Max(size, MinimumBufferSize));
            }

            var destination = _buffer[_written..];
            if (commit)
            {
                destination = destination[..size];
                _written += size;
            }

            return destination;
        }
    }
}
