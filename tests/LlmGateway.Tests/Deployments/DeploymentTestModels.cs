using LlmGateway.Configuration;
using LlmGateway.Deployments;

namespace LlmGateway.Tests.Deployments;

/// <summary>Models with deployments, built through GatewayConfig as a loaded config would be.</summary>
internal static class DeploymentTestModels
{
    public static ModelRoute Model(string? strategy = null, string? sticky = null, params DeploymentOptions[] deployments)
    {
        var options = new GatewayOptions
        {
            Providers =
            {
                ["a"] = new ProviderOptions { BaseUrl = "http://127.0.0.1:9/v1" },
                ["b"] = new ProviderOptions { BaseUrl = "http://127.0.0.1:9/v1" },
                ["c"] = new ProviderOptions { BaseUrl = "http://127.0.0.1:9/v1" },
            },
            Models =
            {
                ["m"] = new ModelOptions { InputUsdPerMTok = 1, OutputUsdPerMTok = 2, Strategy = strategy, Sticky = sticky, Deployments = [.. deployments] },
            },
        };
        Assert.Empty(GatewayOptionsValidator.Validate(options));
        return new GatewayConfig(options, "test").Models["m"];
    }

    /// <summary>Health decided by the test: deployments named in <see cref="Down"/> cannot take a call.</summary>
    public sealed class FakeHealth : IDeploymentHealth
    {
        public Dictionary<string, TimeSpan> Down { get; } = new(StringComparer.Ordinal);

        public bool CanTake(DeploymentRoute deployment, out TimeSpan? retryAfter)
        {
            retryAfter = Down.TryGetValue(deployment.Name, out var wait) ? wait : null;
            return retryAfter is null;
        }
    }
}
