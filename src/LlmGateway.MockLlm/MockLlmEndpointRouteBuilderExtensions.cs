using LlmGateway.MockLlm;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps the mock LLM provider's OpenAI-compatible endpoints.</summary>
public static class MockLlmEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Maps <c>{prefix}/v1/chat/completions</c>, <c>/v1/completions</c>, <c>/v1/embeddings</c>, <c>/v1/responses</c>, Anthropic's <c>/v1/messages</c> (and <c>/count_tokens</c>),
    /// <c>/v1/models</c> and the request log at <c>{prefix}/mock/requests</c> (GET lists it, DELETE clears it).
    /// </summary>
    public static IEndpointRouteBuilder MapMockLlm(this IEndpointRouteBuilder endpoints, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(prefix);

        var log = endpoints.ServiceProvider.GetService<MockRequestLog>()
            ?? throw new InvalidOperationException("The mock LLM's services are not registered: call services.AddMockLlm() before MapMockLlm().");
        var configuration = endpoints.ServiceProvider.GetService<IConfiguration>();

        // Handlers are created once here, so a request allocates no delegate.
        RequestDelegate chat = new ChatCompletionsHandler(log).HandleAsync;
        RequestDelegate completions = new CompletionsHandler(log).HandleAsync;
        RequestDelegate embeddings = new EmbeddingsHandler(log).HandleAsync;
        RequestDelegate responses = new ResponsesHandler(log).HandleAsync;
        RequestDelegate messages = new MessagesHandler(log).HandleAsync;
        RequestDelegate countTokens = new CountTokensHandler(log).HandleAsync;
        RequestDelegate models = new ModelsHandler(log, configuration).HandleAsync;
        var requestLog = new RequestLogHandler(log);
        RequestDelegate listRequests = requestLog.ListAsync;
        RequestDelegate clearRequests = requestLog.Clear;

        var group = endpoints.MapGroup(prefix.TrimEnd('/'));
        group.MapPost("/v1/chat/completions", chat);
        group.MapPost("/v1/completions", completions);
        group.MapPost("/v1/embeddings", embeddings);
        group.MapPost("/v1/responses", responses);
        group.MapPost("/v1/messages", messages);
        group.MapPost("/v1/messages/count_tokens", countTokens);
        group.MapGet("/v1/models", models);
        group.MapGet("/mock/requests", listRequests);
        group.MapDelete("/mock/requests", clearRequests);
        return endpoints;
    }
}
