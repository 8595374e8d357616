using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Hosting;

/// <summary>The gateway process itself, started with configs it cannot use, and its --check-config mode.</summary>
public sealed class StartupConfigErrorTests
{
    private const string UnknownKeys = """
    {
      "Gateway": {
        "Providers": { "mock": { "BaseUrl": "http://127.0.0.1:9/v1" } },
        "Models": { "m1": { "Provider": "mock", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2, "CacheWritePrice": 3, "Fallbacks": { "first": "m1" } } },
        "Keys": [ { "Key": "sk-a", "User": "a", "Colour": "red" } ],
        "Runs": { "Usd": 1, "Calls": 3, "Cals": 4 }
      }
    }
    """;

    [Fact]
    public async Task UnknownKeys_StopStartUp_WithOneLinePerKeyPath_ExitCode2_AndNoStackTrace()
    {
        var (exitCode, output) = await GatewayProcess.RunToExitAsync(UnknownKeys, "--config", "{config}", "--urls", "http://127.0.0.1:0");

        Assert.Equal(2, exitCode);
        Assert.Contains("config error: Gateway:Models:m1:CacheWritePrice: unknown key", output);
        Assert.Contains("config error: Gateway:Keys:0:Colour: unknown key", output);
        Assert.Contains("config error: Gateway:Runs:Cals: unknown key", output);
        Assert.Contains("config error: Gateway:Models:m1:Fallbacks:first: unknown key (Fallbacks is a list)", output);
        Assert.DoesNotContain("ModelOptions", output);
        Assert.DoesNotContain("   at ", output); // no stack frame
        Assert.DoesNotContain("Unhandled exception", output);
    }

    [Fact]
    public async Task WrongValueType_NamesTheKeyPath_NotADotNetType()
    {
        var config = UnknownKeys
            .Replace(", \"CacheWritePrice\": 3, \"Fallbacks\": { \"first\": \"m1\" }", "", StringComparison.Ordinal)
            .Replace(", \"Colour\": \"red\"", "", StringComparison.Ordinal)
            .Replace(", \"Cals\": 4", "", StringComparison.Ordinal)
            .Replace("\"OutputUsdPerMTok\": 2", "\"OutputUsdPerMTok\": \"2x\"", StringComparison.Ordinal);

        var (exitCode, output) = await GatewayProcess.RunToExitAsync(config, "--check-config", "{config}");

        Assert.Equal(2, exitCode);
        Assert.Contains("config error: Gateway:Models:m1:OutputUsdPerMTok: '2x' is not a number", output);
        Assert.DoesNotContain("System.Decimal", output);
    }

    [Fact]
    public async Task CheckConfig_ValidFile_ExitsZero_InvalidFile_ExitsTwoWithTheSameLines()
    {
        var valid = TestConfigs.Default("http://127.0.0.1:9");

        var ok = await GatewayProcess.RunToExitAsync(valid, "--check-config", "{config}");
        var bad = await GatewayProcess.RunToExitAsync(UnknownKeys, "--check-config", "{config}");

        Assert.True(ok.ExitCode == 0, ok.Output);
        Assert.Contains("valid (version ", ok.Output);
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("config error: Gateway:Runs:Cals: unknown key", bad.Output);
    }

    [Fact]
    public async Task MissingConfigFile_SaysSo_ExitCode2()
    {
        var (exitCode, output) = await GatewayProcess.RunToExitAsync("{}", "--config", "/nonexistent/llmgw/gateway.json", "--urls", "http://127.0.0.1:0");

        Assert.Equal(2, exitCode);
        Assert.Contains("does not exist", output);
        Assert.DoesNotContain("   at ", output);
    }
}
