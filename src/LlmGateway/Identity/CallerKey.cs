using System.Collections.Frozen;
using LlmGateway.Configuration;

namespace LlmGateway.Identity;

/// <summary>Who a gateway key belongs to and what it may use. Never holds the key itself.</summary>
internal sealed record CallerKey(
    string Id,
    string User,
    string? Team,
    bool IsConfiguredUser,
    FrozenSet<string>? AllowedModels,
    KeyOptions Options,
    Budgets.CallerPolicy Policy)
{
    public bool MayUse(string model) => AllowedModels is null || AllowedModels.Contains(model);
}
