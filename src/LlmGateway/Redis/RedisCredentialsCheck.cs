using LlmGateway.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace LlmGateway.Redis;

/// <summary>
/// At start-up, with Gateway:Redis set: connects once and stops start-up when Redis refuses the credentials (a wrong
/// <c>user=</c> / <c>password=</c> never heals by waiting), naming the setting and never the password. Redis that
/// cannot be reached does not stop start-up: the gateway starts, reports not ready and connects when Redis comes.
/// Runs before the host starts, so the refusal is a config error line, not a hosting failure with a stack trace.
/// </summary>
internal static partial class RedisCredentialsCheck
{
    private static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(5);

    /// <exception cref="GatewayConfigException">Redis refused the credentials.</exception>
    public static void Run(IServiceProvider services)
    {
        var config = services.GetRequiredService<GatewayConfigProvider>();
        if (string.IsNullOrWhiteSpace(config.Current.Options.Redis))
        {
            return;
        }

        var redis = services.GetRequiredService<RedisConnection>();
        var failure = redis.ProbeAsync(MaxWait).GetAwaiter().GetResult();
        if (failure is null)
        {
            return;
        }

        if (failure.Certificate)
        {
            throw new GatewayConfigException([
                $"{GatewayOptions.SectionName}:Redis: Redis's TLS certificate was not accepted: its issuer is not trusted here, or it does not "
                + $"name the host in sslHost= (for a private CA set {GatewayOptions.SectionName}:Store:TlsCaFile to the issuer's PEM certificate)",
            ]);
        }

        if (failure.Type == ConnectionFailureType.AuthenticationFailure)
        {
            var user = redis.Configuration.User;
            throw new GatewayConfigException([
                $"{GatewayOptions.SectionName}:Redis: Redis refused the credentials{(string.IsNullOrEmpty(user) ? "" : $" of user '{user}'")} "
                + "(check user= and password= in the connection string; the password is not shown)",
            ]);
        }

        Unreachable(services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(RedisCredentialsCheck).FullName!), failure.Type.ToString());
    }

    [LoggerMessage(EventId = GatewayEventIds.StoreUnavailable + 3, EventName = "RedisUnreachableAtStart", Level = LogLevel.Warning, Message = "Redis could not be reached at start-up ({FailureType}); the gateway starts and connects when it comes")]
    private static partial void Unreachable(ILogger logger, string failureType);
}
