namespace LlmGateway.Configuration;

/// <summary>Checks Gateway:Providers and Gateway:Models; every error names its key path and the reason.</summary>
internal static class ModelOptionsValidator
{
    public static void Check(List<string> errors, GatewayOptions options)
    {
        const string root = GatewayOptions.SectionName;
        if (options.Providers.Count == 0)
        {
            errors.Add($"{root}:Providers: at least one provider is required");
        }

        foreach (var (name, provider) in options.Providers)
        {
            var path = $"{root}:Providers:{name}";
            if (string.IsNullOrWhiteSpace(provider.BaseUrl))
            {
                errors.Add($"{path}:BaseUrl: is required");
            }
            else if (!Uri.TryCreate(provider.BaseUrl, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            {
                errors.Add($"{path}:BaseUrl: '{provider.BaseUrl}' is not an absolute http(s) URL");
            }

            GatewayOptionsValidator.CheckNonNegative(errors, $"{path}:MaxConcurrency", provider.MaxConcurrency);
            GatewayOptionsValidator.CheckNonNegative(errors, $"{path}:MaxQueue", provider.MaxQueue);
            if (string.IsNullOrWhiteSpace(provider.AuthHeader))
            {
                errors.Add($"{path}:AuthHeader: must not be empty");
            }

            if (provider.Api is not null && !ApiDialects.TryParse(provider.Api, out _))
            {
                errors.Add($"{path}:Api: unknown API '{provider.Api}'; use {ApiDialects.OpenAiName} or {ApiDialects.AnthropicName}");
            }
        }

        foreach (var (name, model) in options.Models)
        {
            var path = $"{root}:Models:{name}";
            if (model.Deployments.Count > 0)
            {
                if (!string.IsNullOrEmpty(model.Provider))
                {
                    errors.Add($"{path}: set either Provider (one deployment) or Deployments, not both");
                }
            }
            else if (string.IsNullOrWhiteSpace(model.Provider))
            {
                errors.Add($"{path}:Provider: is required (or list Deployments)");
            }
            else if (!options.Providers.ContainsKey(model.Provider))
            {
                errors.Add($"{path}:Provider: unknown provider '{model.Provider}'");
            }

            DeploymentOptionsValidator.Check(errors, options, path, model);

            CheckPrice(errors, $"{path}:InputUsdPerMTok", model.InputUsdPerMTok, required: true);
            CheckPrice(errors, $"{path}:OutputUsdPerMTok", model.OutputUsdPerMTok, required: true);
            CheckPrice(errors, $"{path}:CachedInputUsdPerMTok", model.CachedInputUsdPerMTok, required: false);
            CheckPrice(errors, $"{path}:CacheWriteUsdPerMTok", model.CacheWriteUsdPerMTok, required: false);
            if (model.ContextWindow < 0)
            {
                errors.Add($"{path}:ContextWindow: must not be negative");
            }

            if (model.DefaultMaxOutputTokens < 0)
            {
                errors.Add($"{path}:DefaultMaxOutputTokens: must not be negative");
            }

            if (model.Tokenizer is not null && !Accounting.TokenizerNames.TryParse(model.Tokenizer, out _))
            {
                errors.Add($"{path}:Tokenizer: unknown tokenizer '{model.Tokenizer}'; use {Accounting.TokenizerNames.Choices}");
            }

            if (model.DowngradeTo is { Length: > 0 } downgrade)
            {
                if (!options.Models.ContainsKey(downgrade))
                {
                    errors.Add($"{path}:DowngradeTo: unknown model '{downgrade}'");
                }
                else
                {
                    CheckSameApi(errors, options, $"{path}:DowngradeTo", name, model, downgrade);
                }
            }

            for (var i = 0; i < model.Fallbacks.Count; i++)
            {
                if (!options.Models.ContainsKey(model.Fallbacks[i]))
                {
                    errors.Add($"{path}:Fallbacks:{i}: unknown model '{model.Fallbacks[i]}'");
                }
                else
                {
                    CheckSameApi(errors, options, $"{path}:Fallbacks:{i}", name, model, model.Fallbacks[i]);
                }
            }
        }
    }


    /// <summary>
    /// A stand-in (fallback, downgrade) gets the caller's body unchanged, so it must speak the API of the model it stands
    /// in for: an OpenAI body sent to Anthropic's /messages (or the reverse) is refused by the provider, or worse, misread.
    /// </summary>
    private static void CheckSameApi(List<string> errors, GatewayOptions options, string path, string name, ModelOptions model, string standIn)
    {
        if (DeploymentOptionsValidator.FirstProvider(model) is not { } providerName || !options.Providers.TryGetValue(providerName, out var provider)
            || DeploymentOptionsValidator.FirstProvider(options.Models[standIn]) is not { } standInProviderName || !options.Providers.TryGetValue(standInProviderName, out var standInProvider))
        {
            return;
        }

        var api = ApiDialects.Of(provider);
        var standInApi = ApiDialects.Of(standInProvider);
        if (api != standInApi)
        {
            errors.Add($"{path}: model '{standIn}' speaks the {ApiDialects.Name(standInApi)} API (provider '{standInProviderName}'), but '{name}' speaks {ApiDialects.Name(api)}; a stand-in must speak the same API as the model it stands in for");
        }
    }


    private static void CheckPrice(List<string> errors, string path, decimal? price, bool required)
    {
        if (price is null)
        {
            if (required)
            {
                errors.Add($"{path}: a price is required (use 0 for a free model)");
            }
        }
        else if (price < 0)
        {
            errors.Add($"{path}: must not be negative");
        }
    }
}
