using LlmGateway.Budgets;
using LlmGateway.Configuration;
using LlmGateway.Forwarding;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Hosting defaults and endpoint mapping for the gateway.</summary>
public static class GatewayApplicationExtensions
{
    /// <summary>The config file used when neither --config nor LLMGATEWAY_CONFIG names one.</summary>
    public const string DefaultConfigPath = "config/gateway.json";

    /// <summary>
    /// Configures a host as the gateway: config file from <c>--config</c> / <c>LLMGATEWAY_CONFIG</c>, JSON
    /// logs, http://127.0.0.1:8080 unless URLs are given, and the gateway's services.
    /// </summary>
    public static WebApplicationBuilder AddLlmGateway(this WebApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var configPath = ResolveConfigPath(builder.Configuration["config"]);

        var urls = builder.Configuration[WebHostDefaults.ServerUrlsKey] is { Length: > 0 } given ? given : "http://127.0.0.1:8080";
        var startup = ReadStartupSettings(configPath);
        var listener = new LlmGateway.Telemetry.MetricsListener(
            int.TryParse(startup["Gateway:Metrics:Port"], out var metricsPort) ? metricsPort : 0,
            bool.TryParse(startup["Gateway:Metrics:Probes"], out var probes) && probes);
        builder.WebHost.UseUrls(LlmGateway.Telemetry.MetricsListener.WithMetricsUrls(urls, listener.Port));
        builder.Services.AddSingleton(listener);

        // The gateway caps request bodies itself (Gateway:Limits:MaxRequestBodyBytes, changeable at run time).
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Limits.MaxRequestBodySize = null);

        builder.Logging.ClearProviders();
        builder.Logging.AddJsonConsole(options =>
        {
            options.UseUtcTimestamp = true;
            options.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
        });
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Logging.AddFilter("Yarp", LogLevel.Warning);
        builder.Logging.AddFilter("System.Net.Http", LogLevel.Warning);
        if (startup["Gateway:AuditLog"] is { Length: > 0 } auditPath)
        {
            // Owned by the container, so disposed (its queue drained) after the server has stopped; GatewayMetrics
            // reads its drop count for llm_gateway_audit_dropped_total.
            builder.Services.AddSingleton(sp => new LlmGateway.Telemetry.AuditFileLoggerProvider(
                auditPath, time: sp.GetService<TimeProvider>()));
            builder.Services.AddSingleton<ILoggerProvider>(sp => sp.GetRequiredService<LlmGateway.Telemetry.AuditFileLoggerProvider>());
            builder.Services.AddHostedService<LlmGateway.Telemetry.AuditFileLogStartup>();
        }

        double? pollMs = double.TryParse(builder.Configuration["LLMGATEWAY_CONFIG_POLL_MS"], out var ms) ? ms : null;
        builder.Services.AddLlmGateway(configPath, pollMs is { } p ? TimeSpan.FromMilliseconds(p) : null);
        return builder;
    }

    /// <summary>Maps the OpenAI-compatible routes, Anthropic's Messages API, /metrics, /healthz and /readyz (and the quick-start mock when enabled).</summary>
    public static WebApplication MapLlmGateway(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);

        // Resolve the config now so a bad file stops start-up with its errors instead of failing the first request.
        var config = app.Services.GetRequiredService<GatewayConfigProvider>();
        LlmGateway.Redis.RedisCredentialsCheck.Run(app.Services);
        var proxy = app.Services.GetRequiredService<LlmProxyHandler>();
        var models = app.Services.GetRequiredService<ModelsEndpoint>();

        // Before every route: an exception anywhere becomes a 500 internal_error with the request id, never an empty reply.
        app.UseMiddleware<LlmGateway.Errors.GatewayExceptionHandler>();

        // /metrics only where it may be read (Gateway:Metrics:Port, :Key); the metrics port answers nothing else.
        app.UseMiddleware<LlmGateway.Telemetry.MetricsAccess>();

        app.MapPost("/v1/chat/completions", context => proxy.HandleAsync(context, LlmEndpoint.ChatCompletions));
        app.MapPost("/v1/completions", context => proxy.HandleAsync(context, LlmEndpoint.Completions));
        app.MapPost("/v1/embeddings", context => proxy.HandleAsync(context, LlmEndpoint.Embeddings));
        app.MapPost("/v1/responses", context => proxy.HandleAsync(context, LlmEndpoint.Responses));
        app.MapPost("/v1/messages", context => proxy.HandleAsync(context, LlmEndpoint.Messages));
        app.MapPost("/v1/messages/count_tokens", context => proxy.HandleAsync(context, LlmEndpoint.CountTokens));
        app.MapGet("/v1/models", models.HandleAsync);
        var outcomes = app.Services.GetRequiredService<LlmGateway.Runs.RunOutcomes>();
        app.MapPost("/v1/runs/{run_id}/outcome", outcomes.HandleAsync);
        app.MapGatewayTools();
        app.MapGatewayMetrics();
        app.MapGet("/healthz", () => Results.Text("ok"));
        app.MapGet("/readyz", async (IAdmissionStore store, CancellationToken ct) =>
        {
            // Ready once the config is loaded (it is, or start-up would have failed) and, with Redis configured,
            // while Redis answers: a replica that cannot enforce limits should get no traffic.
            var redis = !string.IsNullOrWhiteSpace(config.Current.Options.Redis);
            var storeOk = await store.PingAsync(ct);
            var body = new { status = storeOk ? "ready" : "store_unavailable", config = config.Current.Version, store = redis ? "redis" : "memory", store_ok = storeOk };
            return storeOk ? Results.Json(body) : Results.Json(body, statusCode: StatusCodes.Status503ServiceUnavailable);
        });
        LlmGateway.Admin.AdminEndpoints.Map(app);

        var mock = config.Current.Options.MockLlm;
        if (mock.Enabled)
        {
            app.MapMockLlm(mock.Path.TrimEnd('/'));
        }

        return app;
    }

    /// <summary>
    /// Settings fixed before the host is built (Gateway:AuditLog, the logger sink; Gateway:Metrics:Port and :Probes,
    /// the listeners), read once from the config file and the environment.
    /// </summary>
    private static IConfiguration ReadStartupSettings(string configPath)
    {
        try
        {
            return new ConfigurationBuilder().AddJsonFile(Path.GetFullPath(configPath), optional: true).AddEnvironmentVariables().Build();
        }
        catch (Exception ex) when (ex is FormatException or InvalidDataException or IOException)
        {
            // A broken file stops start-up with every reason in GatewayConfigProvider; nothing to add here.
            return new ConfigurationBuilder().Build();
        }
    }

    /// <summary>The config file: <c>--config</c>, else <c>LLMGATEWAY_CONFIG</c>, else config/gateway.json found upward.</summary>
    internal static string ResolveConfigPath(string? commandLine) =>
        commandLine ?? Environment.GetEnvironmentVariable("LLMGATEWAY_CONFIG") ?? FindDefaultConfig();

    private static string FindDefaultConfig()
    {
        // dotnet run from the repository root finds it directly; from elsewhere, look upward.
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, DefaultConfigPath);
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }
        }

        return DefaultConfigPath;
    }
}
