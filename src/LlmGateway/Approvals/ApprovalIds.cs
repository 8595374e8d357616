using System.Security.Cryptography;

namespace LlmGateway.Approvals;

/// <summary>
/// Approval ids: the first 24 hex digits of the binding (where the store finds the approval) and 8 random ones (which
/// approval of that binding: a later one, after the first expired, gets a new id). Safe in a URL and a Redis key.
/// </summary>
internal static class ApprovalIds
{
    private const int BindingChars = 24;

    public static string New(string binding) => binding[..BindingChars] + "-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));

    /// <summary>The binding part of an id, where its approval is stored; null when the id is not one of ours.</summary>
    public static string? Slot(string id)
    {
        if (id.Length != BindingChars + 9 || id[BindingChars] != '-')
        {
            return null;
        }

        foreach (var c in id)
        {
            if (c != '-' && !char.IsAsciiHexDigitLower(c) && !char.IsAsciiDigit(c))
            {
                return null;
            }
        }

        return id[..BindingChars];
    }

    /// <summary>The slot of a binding (SHA-256 hex).</summary>
    public static string SlotOfBinding(string binding) => binding[..BindingChars];
}
