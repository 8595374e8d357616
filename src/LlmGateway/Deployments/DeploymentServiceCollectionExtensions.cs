using LlmGateway.Configuration;
using LlmGateway.Deployments;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the choice among a model's deployments and the deployments' Rpm/Tpm store.</summary>
internal static class DeploymentServiceCollectionExtensions
{
    public static IServiceCollection AddLlmGatewayDeployments(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton(new DeploymentRandom());
        services.TryAddSingleton<DeploymentChooser>();
        services.TryAddSingleton<DeploymentMetrics>();
        services.TryAddSingleton<IDeploymentRateStore>(sp =>
        {
            var options = sp.GetRequiredService<GatewayConfigProvider>().Current.Options;
            var time = sp.GetRequiredService<TimeProvider>();
            return string.IsNullOrWhiteSpace(options.Redis)
                ? new InMemoryDeploymentRateStore(time)
                : new RedisDeploymentRateStore(sp.GetRequiredService<LlmGateway.Redis.RedisConnection>(), options.Store.KeyPrefix, options.Store.Timeout, time);
        });
        return services;
    }
}
