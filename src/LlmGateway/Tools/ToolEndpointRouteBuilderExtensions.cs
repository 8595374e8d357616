using LlmGateway.Tools;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps the tool gateway.</summary>
public static class ToolEndpointRouteBuilderExtensions
{
    /// <summary>Maps <c>/tools/{tool}/{**path}</c> for every HTTP method.</summary>
    public static IEndpointRouteBuilder MapGatewayTools(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        var handler = endpoints.ServiceProvider.GetRequiredService<ToolCallHandler>();
        endpoints.Map(ToolConstants.Route, handler.HandleAsync);
        return endpoints;
    }
}
