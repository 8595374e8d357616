using System.Collections.Frozen;
using System.Text.Json;
using LlmGateway.Configuration;

namespace LlmGateway.Tools;

/// <summary>
/// One compiled allow rule of a key for a tool: <c>METHOD /path/pattern</c> (METHOD may be <c>*</c>; in the path
/// <c>*</c> matches exactly one segment and a final <c>**</c> any rest, including nothing), optionally constrained on
/// JSON body fields. Literal segments compare ordinally: URL paths are case-sensitive.
/// </summary>
internal sealed class ToolRule
{
    private const string AnySegment = "*";
    private const string AnyRest = "**";

    private readonly string? _method;
    private readonly string[] _segments;
    private readonly bool _endsWithRest;
    private readonly BodyConstraint[] _body;

    private ToolRule(string tool, int index, string text, string? method, string[] segments, bool endsWithRest, BodyConstraint[] body)
    {
        Description = body.Length == 0 ? $"{tool}:{index} {text}" : $"{tool}:{index} {text} (body)";
        _method = method;
        _segments = segments;
        _endsWithRest = endsWithRest;
        _body = body;
    }

    /// <summary>Which rule allowed a call, for the audit log: <c>tool:index METHOD /pattern</c>.</summary>
    public string Description { get; }

    public bool HasBodyConstraints => _body.Length > 0;

    /// <summary>A call this rule allows is held for a person's approval (<c>"Approval": true</c>).</summary>
    public bool RequiresApproval { get; private init; }

    /// <summary>Who may decide (approver names or groups); empty: any approver.</summary>
    public string[] Approvers { get; private init; } = [];

    /// <summary>The rule's own ApprovalTtl; null: Gateway:Approvals:ApprovalTtl.</summary>
    public TimeSpan? ApprovalTtl { get; private init; }

    /// <summary>Parses a rule; the error names what is wrong (the caller adds the key path).</summary>
    public static bool TryParse(string tool, int index, ToolRuleOptions options, out ToolRule? rule, out string? error)
    {
        rule = null;
        var text = options.Allow?.Trim();
        if (string.IsNullOrEmpty(text))
        {
            error = "Allow: is required, e.g. \"GET /rest/api/2/issue/*\"";
            return false;
        }

        var space = text.IndexOf(' ', StringComparison.Ordinal);
        if (space <= 0)
        {
            error = $"Allow: '{text}' must be \"METHOD /path/pattern\"";
            return false;
        }

        var method = text[..space].ToUpperInvariant();
        var pattern = text[(space + 1)..].Trim();
        if (method != AnySegment && !IsToken(method))
        {
            error = $"Allow: '{method}' is not an HTTP method (or *)";
            return false;
        }

        if (!pattern.StartsWith('/'))
        {
            error = $"Allow: the path pattern '{pattern}' must start with /";
            return false;
        }

        if (pattern.Contains('?', StringComparison.Ordinal) || pattern.Contains(' ', StringComparison.Ordinal))
        {
            error = $"Allow: the path pattern '{pattern}' may not contain a query or spaces";
            return false;
        }

        var segments = SplitPath(pattern);
        var endsWithRest = false;
        for (var i = 0; i < segments.Length; i++)
        {
            var segment = segments[i];
            if (segment == AnyRest)
            {
                if (i != segments.Length - 1)
                {
                    error = $"Allow: ** may only end the path pattern '{pattern}'";
                    return false;
                }

                endsWithRest = true;
            }
            else if (segment != AnySegment && segment.Contains('*', StringComparison.Ordinal))
            {
                error = $"Allow: '{segment}' in '{pattern}': * and ** stand for whole segments only";
                return false;
            }
        }

        if (endsWithRest)
        {
            segments = segments[..^1];
        }

        var body = new List<BodyConstraint>();
        foreach (var (field, values) in options.Body)
        {
            if (string.IsNullOrWhiteSpace(field) || field.Split('.').Any(string.IsNullOrEmpty))
            {
                error = $"Body:{field}: is not a field name (use dots for nested fields: a.b)";
                return false;
            }

            if (values is null || values.Count == 0)
            {
                error = $"Body:{field}: list at least one allowed value";
                return false;
            }

            body.Add(new BodyConstraint(field.Split('.'), values.ToFrozenSet(StringComparer.Ordinal)));
        }

        rule = new ToolRule(tool, index, $"{method} {pattern}", method == AnySegment ? null : method, segments, endsWithRest, [.. body])
        {
            RequiresApproval = options.Approval,
            Approvers = [.. options.Approvers],
            ApprovalTtl = options.ApprovalTtl,
        };
        error = null;
        return true;
    }

    /// <summary>True when the method and path fit (body constraints aside); <paramref name="path"/> comes from <see cref="SplitPath"/>.</summary>
    public bool MatchesRoute(string method, string[] path)
    {
        if (_method is not null && !string.Equals(_method, method, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        if (path.Length < _segments.Length || (!_endsWithRest && path.Length != _segments.Length))
        {
            return false;
        }

        for (var i = 0; i < _segments.Length; i++)
        {
            var expected = _segments[i];
            if (expected == AnySegment ? path[i].Length == 0 : !string.Equals(expected, path[i], StringComparison.Ordinal))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>A path's segments: "/" has none, "/a/b" has a and b, "/a/" has a and an empty one.</summary>
    public static string[] SplitPath(string path)
    {
        var trimmed = path.StartsWith('/') ? path[1..] : path;
        return trimmed.Length == 0 ? [] : trimmed.Split('/');
    }

    /// <summary>
    /// True when every body constraint holds: the field is present and every occurrence of it (JSON allows the
    /// same member twice, and tools differ on which one they read) has an allowed value.
    /// </summary>
    public bool MatchesBody(JsonElement root)
    {
        foreach (var constraint in _body)
        {
            var found = 0;
            if (!constraint.Holds(root, 0, ref found) || found == 0)
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsToken(string method)
    {
        foreach (var c in method)
        {
            if (!char.IsAsciiLetterUpper(c) && c != '-')
            {
                return false;
            }
        }

        return method.Length > 0;
    }

    private sealed record BodyConstraint(string[] Path, FrozenSet<string> Allowed)
    {
        public bool Holds(JsonElement element, int depth, ref int found)
        {
            if (element.ValueKind != JsonValueKind.Object)
            {
                return true;
            }

            foreach (var property in element.EnumerateObject())
            {
                if (!property.NameEquals(Path[depth]))
                {
                    continue;
                }

                if (depth == Path.Length - 1)
                {
                    found++;
                    if (!Allowed.Contains(Text(property.Value)))
                    {
                        return false;
                    }
                }
                else
                {
                    if (property.Value.ValueKind != JsonValueKind.Object)
                    {
                        return false;
                    }

                    if (!Holds(property.Value, depth + 1, ref found))
                    {
                        return false;
                    }
                }
            }

            return true;
        }

        private static string Text(JsonElement value) => value.ValueKind switch
        {
            JsonValueKind.String => value.GetString()!,
            JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null => value.GetRawText(),

            // Objects and arrays never equal a configured value.
            _ => "\u0000" + value.ValueKind,
        };
    }
}
