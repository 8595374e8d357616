using System.ClientModel;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Embeddings;

namespace LlmGateway.EndToEnd.Tests.Forwarding;

/// <summary>The official OpenAI .NET SDK, unchanged but for its endpoint, against the gateway.</summary>
public sealed class OpenAiSdkTests(GatewayFixture fixture) : IClassFixture<GatewayFixture>
{
    private OpenAIClientOptions Options => new() { Endpoint = new Uri(fixture.Gateway.BaseUrl + "/v1"), NetworkTimeout = TimeSpan.FromSeconds(20) };

    [Fact]
    public async Task CompleteChat_ThroughGateway_ReturnsProviderAnswerAndUsage()
    {
        var client = new ChatClient("mock-small", new ApiKeyCredential(TestConfigs.Key), Options);

        ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("hello from the sdk")]);

        Assert.Equal("Mock reply to: hello from the sdk", completion.Content[0].Text);
        Assert.Equal("mock-small", completion.Model);
        Assert.True(completion.Usage.InputTokenCount > 0);
        Assert.Equal(7, completion.Usage.OutputTokenCount);
        var raw = client.CompleteChat([new UserChatMessage("again")]).GetRawResponse();
        Assert.Equal("mock-small", raw.Headers.TryGetValue("X-Gateway-Model", out var served) ? served : null);
        Assert.True(raw.Headers.TryGetValue("X-Gateway-Cost-Usd", out var cost) && decimal.Parse(cost!, System.Globalization.CultureInfo.InvariantCulture) > 0);
    }

    [Fact]
    public async Task CompleteChatStreaming_ThroughGateway_DeliversAllTextAndUsage()
    {
        var client = new ChatClient("mock-small", new ApiKeyCredential(TestConfigs.Key), Options);
        var text = new System.Text.StringBuilder();
        ChatTokenUsage? usage = null;

        await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("stream this please")]))
        {
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }

            usage ??= update.Usage;
        }

        Assert.Equal("Mock reply to: stream this please", text.ToString());
        Assert.NotNull(usage);
        Assert.Equal(6, usage!.OutputTokenCount);
    }

    [Fact]
    public async Task GenerateEmbedding_ThroughGateway_ReturnsVector()
    {
        var client = new EmbeddingClient("mock-embed", new ApiKeyCredential(TestConfigs.Key), Options);

        OpenAIEmbedding embedding = await client.GenerateEmbeddingAsync("embed me");

        Assert.Equal(8, embedding.ToFloats().Length);
    }

    [Fact]
    public async Task UnknownKey_SdkSurfaces401InvalidApiKey_WithoutUpstreamCall()
    {
        var before = fixture.Mock.Log.Count;
        var client = new ChatClient("mock-small", new ApiKeyCredential("sk-not-a-gateway-key"), Options);

        var ex = await Assert.ThrowsAsync<ClientResultException>(() => client.CompleteChatAsync([new UserChatMessage("hi")]));

        Assert.Equal(401, ex.Status);
        Assert.Contains("invalid_api_key", ex.GetRawResponse()!.Content.ToString());
        Assert.Equal(before, fixture.Mock.Log.Count);
    }

    [Fact]
    public async Task UnknownModel_SdkSurfaces404ModelNotFound()
    {
        var client = new ChatClient("gpt-99-imaginary", new ApiKeyCredential(TestConfigs.Key), Options);

        var ex = await Assert.ThrowsAsync<ClientResultException>(() => client.CompleteChatAsync([new UserChatMessage("hi")]));

        Assert.Equal(404, ex.Status);
        Assert.Contains("model_not_found", ex.GetRawResponse()!.Content.ToString());
    }

    [Fact]
    public async Task ModelNotAllowedForKey_SdkSurfaces403PermissionDenied()
    {
        var client = new ChatClient("mock-large", new ApiKeyCredential(TestConfigs.OtherKey), Options);

        var ex = await Assert.ThrowsAsync<ClientResultException>(() => client.CompleteChatAsync([new UserChatMessage("hi")]));

        Assert.Equal(403, ex.Status);
        Assert.Contains("permission_denied", ex.GetRawResponse()!.Content.ToString());
    }

    [Fact]
    public async Task UpstreamBadRequest_SdkSurfaces400Unchanged_AndDoesNotRetry()
    {
        var scenario = Guid.NewGuid().ToString("N");
        var options = Options;
        options.AddPolicy(new HeaderPolicy(("X-Mock-Status", "400"), ("X-Mock-Scenario", scenario)), System.ClientModel.Primitives.PipelinePosition.PerCall);
        var client = new ChatClient("mock-small", new ApiKeyCredential(TestConfigs.Key), options);

        var ex = await Assert.ThrowsAsync<ClientResultException>(() => client.CompleteChatAsync([new UserChatMessage("hi")]));

        Assert.Equal(400, ex.Status);
        Assert.Contains("mock injected 400", ex.GetRawResponse()!.Content.ToString());
        Assert.Equal(1, fixture.Mock.Log.Snapshot().Count(r => r.Headers.TryGetValue("X-Mock-Scenario", out var s) && s == scenario));
    }

    private sealed class HeaderPolicy(params (string Name, string Value)[] headers) : System.ClientModel.Primitives.PipelinePolicy
    {
        public override void Process(System.ClientModel.Primitives.PipelineMessage message, IReadOnlyList<System.ClientModel.Primitives.PipelinePolicy> pipeline, int currentIndex)
        {
            foreach (var (name, value) in headers)
            {
                message.Request.Headers.Set(name, value);
            }

            ProcessNext(message, pipeline, currentIndex);
        }

        public override ValueTask ProcessAsync(System.ClientModel.Primitives.PipelineMessage message, IReadOnlyList<System.ClientModel.Primitives.PipelinePolicy> pipeline, int currentIndex)
        {
            foreach (var (name, value) in headers)
            {
                message.Request.Headers.Set(name, value);
            }

            return ProcessNextAsync(message, pipeline, currentIndex);
        }
    }
}
