namespace LlmGateway.Tests.Operations;

/// <summary>The trace backend of the compose stack: the gateway pushes to Jaeger's OTLP port, Grafana reads Jaeger's query port.</summary>
public sealed partial class OperationsFilesTests
{
    [Fact]
    public void Tracing_GatewayJaegerAndGrafana_AgreeInCompose()
    {
        var compose = File.ReadAllText(Path.Combine(Root, "docker-compose.yml"));
        var gateway = ServiceBlock(compose, "gateway");
        var jaeger = ServiceBlock(compose, "jaeger");

        // The gateway sends OTLP/HTTP to the jaeger service's OTLP port, which compose exposes on its network.
        var endpoint = new Uri(Match(gateway, @"Gateway__Tracing__OtlpEndpoint:\s*(\S+)"));
        Assert.Equal("jaeger", endpoint.Host);
        Assert.Equal(4318, endpoint.Port);
        Assert.Equal("/v1/traces", endpoint.AbsolutePath);
        Assert.Matches(@"image:\s*jaegertracing/all-in-one:", jaeger);
        Assert.Matches(@"expose:\s*\n\s*-\s*""?4318""?", jaeger);
        Assert.Matches(@"depends_on:(\s*\n\s*-\s*\S+)*\s*\n\s*-\s*jaeger", gateway);

        // Grafana's Jaeger datasource is the query API of that service, published for the UI too.
        var datasource = File.ReadAllText(Path.Combine(Root, "config", "grafana", "provisioning", "datasources", "jaeger.yml"));
        Assert.Matches(@"type:\s*jaeger", datasource);
        var query = new Uri(Match(datasource, @"url:\s*(\S+)"));
        Assert.Equal("jaeger", query.Host);
        Assert.Matches($@"-\s*""?\d+:{query.Port}""?", jaeger);
    }
}
