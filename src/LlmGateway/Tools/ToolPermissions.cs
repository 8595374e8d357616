using System.Text.Json;

namespace LlmGateway.Tools;

/// <summary>The allow rules of one key for one tool, in config order. Everything they do not allow is denied.</summary>
internal sealed class ToolPermissions
{
    private readonly ToolRule[] _rules;

    public ToolPermissions(ToolRule[] rules) => _rules = rules;

    /// <summary>The first rule without body constraints that allows the call; null when none does.</summary>
    public ToolRule? FindUnconditional(string method, string[] path)
    {
        foreach (var rule in _rules)
        {
            if (!rule.HasBodyConstraints && rule.MatchesRoute(method, path))
            {
                return rule;
            }
        }

        return null;
    }

    /// <summary>True when some rule would allow the call depending on its body, so the body must be read.</summary>
    public bool NeedsBody(string method, string[] path)
    {
        foreach (var rule in _rules)
        {
            if (rule.HasBodyConstraints && rule.MatchesRoute(method, path))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The first body-constrained rule that allows the call with this body; null when none does or it is not JSON.</summary>
    public ToolRule? FindForBody(string method, string[] path, ReadOnlyMemory<byte> body)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body);
        }
        catch (JsonException)
        {
            return null;
        }

        using (document)
        {
            foreach (var rule in _rules)
            {
                if (rule.HasBodyConstraints && rule.MatchesRoute(method, path) && rule.MatchesBody(document.RootElement))
                {
                    return rule;
                }
            }
        }

        return null;
    }
}
