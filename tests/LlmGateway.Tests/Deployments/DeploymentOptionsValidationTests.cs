using LlmGateway.Configuration;

namespace LlmGateway.Tests.Deployments;

public sealed class DeploymentOptionsValidationTests
{
    [Fact]
    public void Validate_NamesTheKeyPathOfEveryMistake()
    {
        var options = new GatewayOptions
        {
            Providers =
            {
                ["openai"] = new ProviderOptions { BaseUrl = "https://api.openai.com/v1" },
                ["claude"] = new ProviderOptions { BaseUrl = "https://api.anthropic.com/v1", Api = "anthropic" },
            },
            Models =
            {
                ["gpt-4o"] = new ModelOptions
                {
                    InputUsdPerMTok = 1,
                    OutputUsdPerMTok = 2,
                    Strategy = "round-robin",
                    Sticky = "user",
                    Deployments =
                    [
                        new DeploymentOptions { Provider = "openai", Weight = 2 },
                        new DeploymentOptions { Provider = "nowhere" },
                        new DeploymentOptions { Provider = "claude", Name = "eu" },
                        new DeploymentOptions { Provider = "openai", Weight = 0, Rpm = -1 },
                    ],
                },
                ["both"] = new ModelOptions { Provider = "openai", InputUsdPerMTok = 1, OutputUsdPerMTok = 2, Deployments = [new DeploymentOptions { Provider = "openai" }] },
                ["none"] = new ModelOptions { InputUsdPerMTok = 1, OutputUsdPerMTok = 2 },
            },
        };

        var errors = GatewayOptionsValidator.Validate(options);

        Assert.Contains("Gateway:Models:gpt-4o:Deployments:1:Provider: unknown provider 'nowhere'", errors);
        Assert.Contains(errors, e => e.StartsWith("Gateway:Models:gpt-4o:Deployments:2:Provider: provider 'claude' speaks the anthropic API", StringComparison.Ordinal));
        Assert.Contains("Gateway:Models:gpt-4o:Deployments:3:Weight: must be positive (got 0)", errors);
        Assert.Contains("Gateway:Models:gpt-4o:Deployments:3:Rpm: must not be negative", errors);
        Assert.Contains(errors, e => e.StartsWith("Gateway:Models:gpt-4o:Deployments:3:Name: the model has two deployments named 'openai'", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("Gateway:Models:gpt-4o:Strategy: unknown strategy 'round-robin'", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("Gateway:Models:gpt-4o:Sticky: unknown value 'user'", StringComparison.Ordinal));
        Assert.Contains("Gateway:Models:both: set either Provider (one deployment) or Deployments, not both", errors);
        Assert.Contains("Gateway:Models:none:Provider: is required (or list Deployments)", errors);
        Assert.Equal(9, errors.Count);
    }

    [Fact]
    public void ProviderAlone_IsOneDeploymentNamedAfterIt_AndPricesMayDifferPerDeployment()
    {
        var options = new GatewayOptions
        {
            Providers = { ["openai"] = new ProviderOptions { BaseUrl = "https://api.openai.com/v1" }, ["azure"] = new ProviderOptions { BaseUrl = "https://x.openai.azure.com/v1" } },
            Models =
            {
                ["solo"] = new ModelOptions { Provider = "openai", InputUsdPerMTok = 1, OutputUsdPerMTok = 2 },
                ["multi"] = new ModelOptions
                {
                    InputUsdPerMTok = 1,
                    OutputUsdPerMTok = 2,
                    UpstreamModel = "gpt-4o-2024",
                    Deployments = [new DeploymentOptions { Provider = "openai" }, new DeploymentOptions { Provider = "azure", UpstreamModel = "my-gpt4o", OutputUsdPerMTok = 3 }],
                },
            },
        };
        Assert.Empty(GatewayOptionsValidator.Validate(options));
        var config = new GatewayConfig(options, "v");

        var solo = Assert.Single(config.Models["solo"].Deployments);
        Assert.Equal(("openai", "openai/solo"), (solo.Name, solo.Upstream));
        var multi = config.Models["multi"];
        Assert.Equal("gpt-4o-2024", multi.Deployments[0].UpstreamModel);
        Assert.Equal("my-gpt4o", multi.Deployments[1].UpstreamModel);
        Assert.Equal(2m, multi.Deployments[0].Prices.OutputPerMTok);
        Assert.Equal(3m, multi.Deployments[1].Prices.OutputPerMTok);

        // Admission reserves at the dearest deployment's price.
        Assert.Equal(3m, multi.Prices.OutputPerMTok);
    }
}
