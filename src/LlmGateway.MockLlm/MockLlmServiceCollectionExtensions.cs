using LlmGateway.MockLlm;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the services of the mock LLM provider.</summary>
public static class MockLlmServiceCollectionExtensions
{
    /// <summary>Adds the <see cref="MockRequestLog"/> the mock endpoints record into (capacity: <c>MockLlm:RequestLogCapacity</c>).</summary>
    public static IServiceCollection AddMockLlm(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton(static provider => new MockRequestLog(
            provider.GetService<TimeProvider>() ?? TimeProvider.System,
            provider.GetService<IConfiguration>()?.GetValue(MockLlmConstants.RequestLogCapacityKey, MockRequestLog.DefaultCapacity)
                ?? MockRequestLog.DefaultCapacity));
        return services;
    }
}
