using LlmGateway.Deployments;

namespace LlmGateway.Configuration;

/// <summary>Checks a model's Deployments, Strategy and Sticky; every error names its key path (Models:NAME:Deployments:i:FIELD).</summary>
internal static class DeploymentOptionsValidator
{
    /// <summary>The provider of the model's first deployment (or its Provider): the API the model speaks.</summary>
    public static string? FirstProvider(ModelOptions model) =>
        model.Deployments.Count > 0 ? model.Deployments[0].Provider : model.Provider;

    public static void Check(List<string> errors, GatewayOptions options, string path, ModelOptions model)
    {
        if (model.Strategy is not null && !DeploymentStrategies.TryParse(model.Strategy, out _))
        {
            errors.Add($"{path}:Strategy: unknown strategy '{model.Strategy}'; use {DeploymentStrategies.WeightedName} or {DeploymentStrategies.LeastBusyName}");
        }

        if (model.Sticky is not null && !string.Equals(model.Sticky, DeploymentStrategies.StickyRun, StringComparison.OrdinalIgnoreCase))
        {
            errors.Add($"{path}:Sticky: unknown value '{model.Sticky}'; use {DeploymentStrategies.StickyRun} (or leave it out)");
        }

        if (model.Deployments.Count > DeploymentRoute.MaxPerModel)
        {
            errors.Add($"{path}:Deployments: at most {DeploymentRoute.MaxPerModel} deployments per model");
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        ApiDialect? first = null;
        string? firstProvider = null;
        for (var i = 0; i < model.Deployments.Count; i++)
        {
            var deployment = model.Deployments[i];
            var at = $"{path}:Deployments:{i}";
            if (string.IsNullOrWhiteSpace(deployment.Provider))
            {
                errors.Add($"{at}:Provider: is required");
            }
            else if (!options.Providers.TryGetValue(deployment.Provider, out var provider))
            {
                errors.Add($"{at}:Provider: unknown provider '{deployment.Provider}'");
            }
            else
            {
                var api = ApiDialects.Of(provider);
                if (first is null)
                {
                    first = api;
                    firstProvider = deployment.Provider;
                }
                else if (api != first)
                {
                    errors.Add($"{at}:Provider: provider '{deployment.Provider}' speaks the {ApiDialects.Name(api)} API, but '{firstProvider}' (Deployments:0) speaks {ApiDialects.Name(first.Value)}; every deployment of a model must speak the same API");
                }
            }

            var name = deployment.Name is { Length: > 0 } given ? given : deployment.Provider;
            if (deployment.Name is not null && (deployment.Name.Length == 0 || deployment.Name.Length > 64 || deployment.Name.Any(c => c <= ' ' || c >= 127 || c is '{' or '}' or ':' or '/')))
            {
                errors.Add($"{at}:Name: '{deployment.Name}' must be 1-64 printable ASCII characters without spaces, braces, ':' or '/'");
            }
            else if (name is not null && !names.Add(name))
            {
                errors.Add($"{at}:Name: the model has two deployments named '{name}'; give deployments on one provider distinct Names");
            }

            if (!(deployment.Weight > 0) || double.IsInfinity(deployment.Weight))
            {
                errors.Add($"{at}:Weight: must be positive (got {deployment.Weight})");
            }

            GatewayOptionsValidator.CheckNonNegative(errors, $"{at}:Rpm", deployment.Rpm);
            GatewayOptionsValidator.CheckNonNegative(errors, $"{at}:Tpm", deployment.Tpm);
            CheckPrice(errors, $"{at}:InputUsdPerMTok", deployment.InputUsdPerMTok);
            CheckPrice(errors, $"{at}:CachedInputUsdPerMTok", deployment.CachedInputUsdPerMTok);
            CheckPrice(errors, $"{at}:CacheWriteUsdPerMTok", deployment.CacheWriteUsdPerMTok);
            CheckPrice(errors, $"{at}:OutputUsdPerMTok", deployment.OutputUsdPerMTok);
        }
    }

    private static void CheckPrice(List<string> errors, string path, decimal? price)
    {
        if (price < 0)
        {
            errors.Add($"{path}: must not be negative");
        }
    }
}
