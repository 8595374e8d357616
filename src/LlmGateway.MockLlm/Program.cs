namespace LlmGateway.MockLlm;

// A named class rather than top-level statements: the gateway, which references this project, has its own Program.
internal static class Program
{
    private const string DefaultUrl = "http://127.0.0.1:9090";

    public static void Main(string[] args)
    {
        var builder = WebApplication.CreateBuilder(args);
        // --urls, ASPNETCORE_URLS or ASPNETCORE_HTTP_PORTS (set by the container images) win over the default.
        if (string.IsNullOrEmpty(builder.Configuration["urls"]) && string.IsNullOrEmpty(builder.Configuration["http_ports"]))
        {
            builder.WebHost.UseUrls(DefaultUrl);
        }

        // Two log lines per request would slow benchmarks down.
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Services.AddMockLlm();

        var app = builder.Build();
        app.MapMockLlm();
        app.Run();
    }
}
