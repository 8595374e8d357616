using LlmGateway.Configuration;

namespace LlmGateway.Budgets;

/// <summary>
/// Every limit that applies to one gateway key, resolved once per loaded config: the user's own settings,
/// falling back field by field to Gateway:UserDefaults and Gateway:Runs, the team's budget and the key's
/// rate limits. The request path only copies these into an <see cref="AdmissionRequest"/>.
/// </summary>
internal sealed record CallerPolicy(
    BudgetLimits UserBudget,
    BudgetPeriod UserBudgetPeriod,
    RateLimits UserRates,
    int UserMaxInFlight,
    BudgetLimits TeamBudget,
    BudgetPeriod TeamBudgetPeriod,
    RateLimits KeyRates,
    RunOptions Runs,
    double? DowngradeAt)
{
    public static CallerPolicy Resolve(GatewayOptions options, KeyOptions key, UserOptions? user, string? team)
    {
        var defaults = options.UserDefaults;
        var budget = user?.Budget ?? defaults.Budget;
        TeamOptions? teamOptions = null;
        if (team is not null)
        {
            options.Teams.TryGetValue(team, out teamOptions);
        }

        return new CallerPolicy(
            UserBudget: new BudgetLimits(budget?.Usd ?? 0, budget?.Tokens ?? 0, 0),
            UserBudgetPeriod: budget?.Period ?? BudgetPeriod.Day,
            UserRates: new RateLimits(user?.Rpm ?? defaults.Rpm ?? 0, user?.Tpm ?? defaults.Tpm ?? 0),
            UserMaxInFlight: user?.MaxInFlight ?? defaults.MaxInFlight ?? 0,
            TeamBudget: new BudgetLimits(teamOptions?.Budget?.Usd ?? 0, teamOptions?.Budget?.Tokens ?? 0, 0),
            TeamBudgetPeriod: teamOptions?.Budget?.Period ?? BudgetPeriod.Month,
            KeyRates: new RateLimits(key.Rpm, key.Tpm),
            Runs: user?.Runs ?? defaults.Runs ?? options.Runs,
            DowngradeAt: user?.DowngradeAt ?? defaults.DowngradeAt);
    }
}
