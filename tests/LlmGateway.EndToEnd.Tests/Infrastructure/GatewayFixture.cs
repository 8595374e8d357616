namespace LlmGateway.EndToEnd.Tests.Infrastructure;

/// <summary>A mock provider and a gateway in front of it, shared by the tests of one class.</summary>
public sealed class GatewayFixture : IAsyncLifetime
{
    public MockLlmServer Mock { get; private set; } = null!;

    public GatewayServer Gateway { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Mock = await MockLlmServer.StartAsync();
        Gateway = await GatewayServer.StartAsync(TestConfigs.Default(Mock.BaseUrl));
    }

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await Mock.DisposeAsync();
    }
}
