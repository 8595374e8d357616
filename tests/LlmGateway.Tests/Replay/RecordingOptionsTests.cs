using System.Text;
using LlmGateway.Configuration;
using Microsoft.Extensions.Configuration;

namespace LlmGateway.Tests.Replay;

/// <summary>The recording settings: Gateway:Keys[]:AllowRecord and the Gateway:Cache:Recording* bounds.</summary>
public sealed class RecordingOptionsTests
{
    private static GatewayConfig Load(string keys, string cache) => GatewayConfigLoader.Load(Encoding.UTF8.GetBytes($$"""
    {
      "Gateway": {
        "Providers": { "p": { "BaseUrl": "http://127.0.0.1:9/v1" } },
        "Models": { "m": { "Provider": "p", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2 } },
        "Keys": [ {{keys}} ],
        "Cache": { {{cache}} }
      }
    }
    """), new ConfigurationBuilder().Build());

    [Fact]
    public void Defaults_NoKeyRecords_AndTheStoreIsBounded()
    {
        var config = Load("""{ "Key": "sk-1", "User": "u" }, { "Key": "sk-2", "User": "v", "AllowRecord": true }""", "");

        Assert.Equal([false, true], config.Options.Keys.Select(k => k.AllowRecord));
        var cache = config.Options.Cache;
        Assert.Equal((128L << 20, 1000, 16L << 20), (cache.RecordingMaxBytes, cache.RecordingMaxRuns, cache.RecordingMaxRunBytes));
    }

    [Fact]
    public void NonPositiveBounds_AreRejected_NamingTheKeyPath()
    {
        var errors = Assert.Throws<GatewayConfigException>(() =>
            Load("""{ "Key": "sk-1", "User": "u" }""", "\"RecordingMaxBytes\": 0, \"RecordingMaxRuns\": -1, \"RecordingMaxRunBytes\": 0")).Errors;

        Assert.Contains("Gateway:Cache:RecordingMaxBytes: must be positive", errors);
        Assert.Contains("Gateway:Cache:RecordingMaxRuns: must be positive", errors);
        Assert.Contains("Gateway:Cache:RecordingMaxRunBytes: must be positive", errors);
    }
}
