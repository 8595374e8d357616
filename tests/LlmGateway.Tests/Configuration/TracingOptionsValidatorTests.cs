using System.Text;
using LlmGateway.Configuration;
using Microsoft.Extensions.Configuration;

namespace LlmGateway.Tests.Configuration;

public sealed class TracingOptionsValidatorTests
{
    private static string Config(string tracing) => $$"""
    {
      "Gateway": {
        "Providers": { "p": { "BaseUrl": "http://127.0.0.1:9/v1" } },
        "Models": { "m": { "Provider": "p", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2 } },
        "Keys": [ { "Key": "sk-1", "User": "u" } ],
        "Tracing": {{tracing}}
      }
    }
    """;

    private static GatewayConfig Load(string json) => GatewayConfigLoader.Load(Encoding.UTF8.GetBytes(json), new ConfigurationBuilder().Build());

    [Fact]
    public void Defaults_AreOff_WithTheFullRatioAndNoContent()
    {
        var tracing = Load(Config("{}")).Options.Tracing;

        Assert.Null(tracing.OtlpEndpoint);
        Assert.Equal(1.0, tracing.Sampler);
        Assert.False(tracing.CaptureContent);
    }

    [Fact]
    public void ValidSettings_Load()
    {
        var tracing = Load(Config("""{ "OtlpEndpoint": "http://jaeger:4318/v1/traces", "Sampler": 0.25, "CaptureContent": true }""")).Options.Tracing;

        Assert.Equal("http://jaeger:4318/v1/traces", tracing.OtlpEndpoint);
        Assert.Equal(0.25, tracing.Sampler);
        Assert.True(tracing.CaptureContent);
    }

    [Theory]
    [InlineData("""{ "Sampler": 1.5 }""", "Gateway:Tracing:Sampler: must be a ratio from 0 to 1")]
    [InlineData("""{ "Sampler": -0.1 }""", "Gateway:Tracing:Sampler: must be a ratio from 0 to 1")]
    [InlineData("""{ "OtlpEndpoint": "jaeger:4318" }""", "Gateway:Tracing:OtlpEndpoint: 'jaeger:4318' is not an absolute http(s) URL")]
    [InlineData("""{ "OtlpEndpoint": "/v1/traces" }""", "Gateway:Tracing:OtlpEndpoint: '/v1/traces' is not an absolute http(s) URL")]
    public void InvalidSettings_AreRejected_NamingTheKeyPath(string tracing, string error)
    {
        var errors = Assert.Throws<GatewayConfigException>(() => Load(Config(tracing))).Errors;

        Assert.Contains(errors, e => e.StartsWith(error, StringComparison.Ordinal));
    }
}
