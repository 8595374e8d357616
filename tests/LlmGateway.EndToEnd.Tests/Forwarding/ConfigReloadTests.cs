using System.Net;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Forwarding;

/// <summary>The config file is the gateway's policy, changed while it runs.</summary>
public sealed class ConfigReloadTests : GatewayTestBase
{
    [Fact]
    public async Task NewKeyAddedToFile_WorksWithoutRestart()
    {
        const string newKey = "sk-test-carol";
        using (var before = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), key: newKey)))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, before.StatusCode);
        }

        await Gateway.WriteConfigAsync(TestConfigs.Default(Mock.BaseUrl, extraKeys: $$""", { "Key": "{{newKey}}", "User": "carol" }"""));

        var status = await PollStatusAsync(newKey, HttpStatusCode.OK);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Contains(Gateway.Logs.GetSnapshot(), r => r.Id.Name == "ConfigReloaded");
    }

    [Fact]
    public async Task BrokenEdit_IsRejectedWithKeyPath_AndPreviousConfigKeepsServing()
    {
        var original = await File.ReadAllTextAsync(Gateway.ConfigPath);
        var broken = original.Replace("\"Provider\": \"mock\", \"InputUsdPerMTok\": 1.00", "\"Provider\": \"nowhere\", \"InputUsdPerMTok\": 1.00", StringComparison.Ordinal);
        Assert.NotEqual(original, broken);

        await Gateway.WriteConfigAsync(broken);
        var rejection = await Http.EventuallyAsync(() => Gateway.Logs.GetSnapshot().FirstOrDefault(r => r.Id.Name == "ConfigRejected"), "the rejection log");

        Assert.Contains("Gateway:Models:mock-small:Provider", rejection.Message);
        Assert.Contains("unknown provider 'nowhere'", rejection.Message);
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat()));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task InvalidJsonEdit_IsRejected_AndPreviousConfigKeepsServing()
    {
        await Gateway.WriteConfigAsync("{ \"Gateway\": { \"Providers\": ");
        var rejection = await Http.EventuallyAsync(() => Gateway.Logs.GetSnapshot().FirstOrDefault(r => r.Id.Name == "ConfigRejected"), "the rejection log");

        Assert.Contains("not valid JSON", rejection.Message);
        using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat()));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    private async Task<HttpStatusCode> PollStatusAsync(string key, HttpStatusCode wanted)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), key: key));
            if (response.StatusCode == wanted || DateTime.UtcNow > deadline)
            {
                return response.StatusCode;
            }

            await Task.Delay(100);
        }
    }
}
