using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LlmGateway.Configuration;
using LlmGateway.Telemetry;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace LlmGateway.Tests.Operations;

/// <summary>
/// Keeps the operations files (Dockerfile, docker-compose.yml, prometheus.yml, alert rules, Grafana dashboard,
/// config schema) valid and in step with each other and with the code. Checks that need promtool (Debian package
/// 'prometheus') or docker-compose (Debian package 'docker-compose') are skipped where the tool is missing,
/// and fail instead when the CI environment variable is set.
/// </summary>
public sealed partial class OperationsFilesTests(ITestOutputHelper output)
{
    private const string Promtool = "promtool";
    private const string DockerCompose = "docker-compose";

    private static readonly string Root = FindRepositoryRoot();

    private static string AlertsPath => Path.Combine(Root, "config", "prometheus", "alerts.yml");

    private static string DashboardPath => Path.Combine(Root, "config", "grafana", "dashboards", "llm-gateway.json");

    private static string SchemaPath => Path.Combine(Root, "config", "gateway.schema.json");

    [ToolFact(Promtool)]
    public async Task AlertRules_PassPromtoolCheckRules()
    {
        var result = await RunAsync(RequireTool(Promtool), Root, "check", "rules", AlertsPath);

        Assert.True(result.ExitCode == 0, $"promtool check rules failed:\n{result.Output}");
    }

    [ToolFact(Promtool)]
    public Task AlertRules_FireOnSyntheticSeries_AndOnlyThen() => AssertAlertUnitTestsPassAsync(AlertUnitTests);

    /// <summary>
    /// Runs promtool's unit tests <paramref name="unitTests"/> against the repository's alert rules. promtool compares
    /// annotations exactly when an alert has any; the wording is not what these tests are about, so they are removed.
    /// </summary>
    private async Task AssertAlertUnitTestsPassAsync(string unitTests)
    {
        using var directory = new TempDirectory();
        File.WriteAllText(Path.Combine(directory.Path, "alerts.yml"), WithoutAnnotations(File.ReadAllText(AlertsPath)));
        File.WriteAllText(Path.Combine(directory.Path, "unit-tests.yml"), unitTests);

        var result = await RunAsync(RequireTool(Promtool), directory.Path, "test", "rules", "unit-tests.yml");

        Assert.True(result.ExitCode == 0, $"promtool test rules failed:\n{result.Output}");
    }

    [ToolFact(Promtool)]
    public async Task PrometheusConfig_WithRepositoryRulePath_PassesPromtoolCheckConfig()
    {
        // prometheus.yml names the rules file by its path inside the container; point it at the repository's copy.
        using var directory = new TempDirectory();
        var config = File.ReadAllText(Path.Combine(Root, "prometheus.yml"))
            .Replace(PrometheusRuleFile(), AlertsPath, StringComparison.Ordinal);
        var configPath = Path.Combine(directory.Path, "prometheus.yml");
        File.WriteAllText(configPath, config);

        var result = await RunAsync(RequireTool(Promtool), directory.Path, "check", "config", configPath);

        Assert.True(result.ExitCode == 0, $"promtool check config failed:\n{result.Output}");
    }

    [ToolFact(Promtool)]
    public async Task Dashboard_EveryExpression_IsValidPromQL()
    {
        var expressions = DashboardExpressions();
        Assert.NotEmpty(expressions);

        // Recording rules are the cheapest way to have promtool parse arbitrary expressions.
        var rules = new StringBuilder("groups:\n  - name: dashboard\n    rules:\n");
        for (var i = 0; i < expressions.Count; i++)
        {
            rules.Append(FormattableString.Invariant($"      - record: dashboard:expr_{i}\n"));
            rules.Append("        expr: ").Append(JsonSerializer.Serialize(WithTemplateVariablesReplaced(expressions[i].Expr))).Append('\n');
        }

        using var directory = new TempDirectory();
        var rulesPath = Path.Combine(directory.Path, "dashboard-rules.yml");
        File.WriteAllText(rulesPath, rules.ToString());

        var result = await RunAsync(RequireTool(Promtool), directory.Path, "check", "rules", rulesPath);

        Assert.True(result.ExitCode == 0, $"promtool rejected a dashboard expression:\n{result.Output}\n---\n{rules}");
        Assert.Contains($"{expressions.Count} rules found", result.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Dashboard_IsProvisionable_WithPrometheusDatasourceAndUniquePanelIds()
    {
        using var dashboard = JsonDocument.Parse(File.ReadAllText(DashboardPath));
        var root = dashboard.RootElement;
        Assert.Equal(39, root.GetProperty("schemaVersion").GetInt32());
        Assert.False(string.IsNullOrEmpty(root.GetProperty("uid").GetString()));

        var ids = new HashSet<int>();
        foreach (var panel in Panels(root))
        {
            var title = panel.GetProperty("title").GetString();
            Assert.True(ids.Add(panel.GetProperty("id").GetInt32()), $"duplicate panel id in '{title}'");
            var grid = panel.GetProperty("gridPos");
            Assert.True(grid.GetProperty("x").GetInt32() + grid.GetProperty("w").GetInt32() <= 24, $"panel '{title}' is wider than the grid");
            if (panel.GetProperty("type").GetString() == "row")
            {
                continue;
            }

            Assert.Equal("prometheus", panel.GetProperty("datasource").GetProperty("uid").GetString());
            Assert.True(panel.GetProperty("targets").GetArrayLength() > 0, $"panel '{title}' has no query");
            foreach (var target in panel.GetProperty("targets").EnumerateArray())
            {
                Assert.Equal("prometheus", target.GetProperty("datasource").GetProperty("uid").GetString());
            }
        }

        var datasource = File.ReadAllText(Path.Combine(Root, "config", "grafana", "provisioning", "datasources", "prometheus.yml"));
        Assert.Matches(@"(?m)^\s*uid:\s*prometheus\s*$", datasource);
    }

    [Fact]
    public void DashboardAndAlerts_UseOnlyMetricsTheGatewayExports()
    {
        var exported = ExportedGatewayMetricNames();
        var used = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var (_, expr) in DashboardExpressions())
        {
            used.UnionWith(MetricNames(expr));
        }

        foreach (Match match in ExprLine().Matches(File.ReadAllText(AlertsPath)))
        {
            used.UnionWith(MetricNames(match.Value));
        }

        Assert.NotEmpty(used);
        var unknown = used.Where(name => !exported.Contains(name)).ToList();
        Assert.True(unknown.Count == 0, $"not exported by GatewayMetrics: {string.Join(", ", unknown)}; exported: {string.Join(", ", exported)}");
    }

    [ToolFact(DockerCompose)]
    public async Task DockerCompose_Config_Succeeds()
    {
        var withoutKey = await RunAsync(RequireTool(DockerCompose), Root, [], "-f", "docker-compose.yml", "config");
        var result = await RunAsync(RequireTool(DockerCompose), Root, [("LLMGATEWAY_DEMO_KEY", "sk-gw-compose-test")], "-f", "docker-compose.yml", "config");

        // The demo key comes from the environment: without it compose refuses to start the stack.
        Assert.NotEqual(0, withoutKey.ExitCode);
        Assert.Contains("LLMGATEWAY_DEMO_KEY", withoutKey.Output, StringComparison.Ordinal);
        Assert.True(result.ExitCode == 0, $"docker-compose config failed:\n{result.Output}");
        foreach (var service in new[] { "gateway", "mockllm", "redis", "prometheus", "grafana" })
        {
            Assert.Contains($"  {service}:", result.Output, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("config/gateway.json")]
    [InlineData("config/gateway.docker.json")]
    public void Config_ParsesLoadsAndMatchesSchema(string relativePath)
    {
        var bytes = File.ReadAllBytes(Path.Combine(Root, relativePath));
        using var config = JsonDocument.Parse(bytes);
        using var schema = JsonDocument.Parse(File.ReadAllText(SchemaPath));
        var gatewayProperties = Resolve(schema.RootElement, schema.RootElement.GetProperty("properties").GetProperty("Gateway")).GetProperty("properties");

        foreach (var key in config.RootElement.GetProperty("Gateway").EnumerateObject())
        {
            Assert.True(gatewayProperties.TryGetProperty(key.Name, out _), $"{relativePath}: Gateway:{key.Name} is not in the schema");
        }

        var errors = SchemaErrors(config.RootElement, schema.RootElement);
        Assert.True(errors.Count == 0, $"{relativePath} does not match config/gateway.schema.json:\n" + string.Join("\n", errors));
        if (relativePath.EndsWith("docker.json", StringComparison.Ordinal))
        {
            // The compose stack's demo key comes from the environment (docker-compose.yml); the file holds none.
            var noKey = Assert.Throws<GatewayConfigException>(() => GatewayConfigLoader.Load(bytes, new ConfigurationBuilder().Build()));
            Assert.Contains(noKey.Errors, e => e.StartsWith("Gateway:Keys:0", StringComparison.Ordinal));
            GatewayConfigLoader.Load(bytes, new ConfigurationBuilder().AddInMemoryCollection([new("Gateway:Keys:0:Key", "sk-gw-from-env-1")]).Build());
            return;
        }

        GatewayConfigLoader.Load(bytes, new ConfigurationBuilder().Build());
    }

    [Theory]
    [InlineData("Cache", "Tll", "\"01:00:00\"")]
    [InlineData("Providers:mock", "BaseUri", "\"http://127.0.0.1:9/v1\"")]
    [InlineData("Users:demo:Budget", "Perod", "\"Day\"")]
    [InlineData("Users:demo:Budget", "Period", "\"Year\"")]
    [InlineData("Runs", "Deadline", "\"ten minutes\"")]
    [InlineData("Resilience", "MaxAttempts", "\"three\"")]
    [InlineData("MockLlm", "Enabled", "\"maybe\"")]
    public void Schema_AndGateway_BothRejectTheSameMistake(string section, string key, string valueJson)
    {
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(Root, "config", "gateway.json")))!;
        var node = config["Gateway"]!;
        foreach (var part in section.Split(':'))
        {
            node = node[part]!;
        }

        node[key] = JsonNode.Parse(valueJson);
        var bytes = Encoding.UTF8.GetBytes(config.ToJsonString());
        using var document = JsonDocument.Parse(bytes);
        using var schema = JsonDocument.Parse(File.ReadAllText(SchemaPath));

        Assert.NotEmpty(SchemaErrors(document.RootElement, schema.RootElement));
        Assert.Throws<GatewayConfigException>(() => GatewayConfigLoader.Load(bytes, new ConfigurationBuilder().Build()));
    }

    [Fact]
    public void Schema_MatchesGatewayOptionsRecords()
    {
        using var schema = JsonDocument.Parse(File.ReadAllText(SchemaPath));
        var errors = new List<string>();

        CompareType(typeof(GatewayOptions), schema.RootElement.GetProperty("properties").GetProperty("Gateway"), schema.RootElement, "Gateway", errors, []);

        Assert.True(errors.Count == 0, "config/gateway.schema.json differs from GatewayOptions.cs:\n" + string.Join("\n", errors));
    }

    [Fact]
    public void PortsAndPaths_AgreeAcrossDockerfileComposePrometheusAndConfig()
    {
        var dockerfile = File.ReadAllText(Path.Combine(Root, "Dockerfile"));
        var compose = File.ReadAllText(Path.Combine(Root, "docker-compose.yml"));
        var prometheus = File.ReadAllText(Path.Combine(Root, "prometheus.yml"));
        using var dockerConfig = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "config", "gateway.docker.json")));
        var gatewayConfig = dockerConfig.RootElement.GetProperty("Gateway");

        // Gateway: the port the image listens on is the one exposed, published and scraped.
        var exposed = Match(dockerfile, @"(?m)^EXPOSE\s+(\d+)\s*$");
        Assert.Equal(exposed, Match(dockerfile, @"ASPNETCORE_URLS=http://0\.0\.0\.0:(\d+)"));
        Assert.Matches(@"(?m)^ENTRYPOINT\s+\[""dotnet"",\s*""LlmGateway\.dll""\]", dockerfile);
        Assert.Matches(@"(?m)^WORKDIR /app\s*$", dockerfile);
        Assert.Matches(@"(?m)^COPY config/ \./config/\s*$", dockerfile);

        var gateway = ServiceBlock(compose, "gateway");
        Assert.Equal(exposed, Match(gateway, @"-\s*""?\d+:(\d+)""?"));
        var configPath = Match(gateway, @"LLMGATEWAY_CONFIG:\s*(\S+)");
        Assert.StartsWith("/app/config/", configPath, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(Root, "config", configPath["/app/config/".Length..])), $"{configPath} is not in config/");

        // Metrics: scraped on the gateway's metrics port, which compose exposes to its network and never publishes.
        Assert.Equal("/metrics", Match(prometheus, @"metrics_path:\s*(\S+)"));
        var metricsPort = gatewayConfig.GetProperty("Metrics").GetProperty("Port").GetInt32().ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.NotEqual(exposed, metricsPort);
        Assert.Equal($"gateway:{metricsPort}", Match(prometheus, @"targets:\s*\[\s*[""']?(gateway:\d+)"));
        Assert.Matches($@"expose:\s*\n\s*-\s*""?{metricsPort}""?", gateway);
        Assert.DoesNotMatch($@"-\s*""?\d+:{metricsPort}""?", gateway);

        // No key published in the repository serves on 0.0.0.0: the demo key comes from the environment.
        Assert.DoesNotContain("sk-gw-demo", File.ReadAllText(Path.Combine(Root, "config", "gateway.docker.json")), StringComparison.Ordinal);
        Assert.Matches(@"Gateway__Keys__0__Key:\s*\$\{LLMGATEWAY_DEMO_KEY:\?", gateway);

        // MockLlm and Redis: the addresses in the docker config are compose services listening there.
        var mockUrl = new Uri(gatewayConfig.GetProperty("Providers").GetProperty("mock").GetProperty("BaseUrl").GetString()!);
        Assert.Equal("mockllm", mockUrl.Host);
        Assert.Matches($@"LlmGateway\.MockLlm\.dll"",\s*""--urls"",\s*""http://0\.0\.0\.0:{mockUrl.Port}""", ServiceBlock(compose, "mockllm"));
        Assert.False(gatewayConfig.GetProperty("MockLlm").GetProperty("Enabled").GetBoolean());
        Assert.Equal("redis:6379", gatewayConfig.GetProperty("Redis").GetString());
        Assert.Matches(@"image:\s*redis:", ServiceBlock(compose, "redis"));

        // Prometheus: the rules file prometheus.yml names is where compose mounts the repository's alerts.yml.
        var prometheusService = ServiceBlock(compose, "prometheus");
        Assert.Contains($"./config/prometheus/alerts.yml:{PrometheusRuleFile()}", prometheusService, StringComparison.Ordinal);
        Assert.Contains("./prometheus.yml:/etc/prometheus/prometheus.yml", prometheusService, StringComparison.Ordinal);
        var prometheusPort = Match(prometheusService, @"-\s*""?\d+:(\d+)""?");

        // Grafana: the datasource reaches Prometheus' container port; the dashboards are where the provider looks.
        var datasource = File.ReadAllText(Path.Combine(Root, "config", "grafana", "provisioning", "datasources", "prometheus.yml"));
        Assert.Equal($"http://prometheus:{prometheusPort}", Match(datasource, @"url:\s*(\S+)"));
        var grafana = ServiceBlock(compose, "grafana");
        Assert.Contains("./config/grafana/provisioning:/etc/grafana/provisioning", grafana, StringComparison.Ordinal);
        var dashboardsMount = Match(grafana, @"\./config/grafana/dashboards:([^:\s]+)");
        var providers = File.ReadAllText(Path.Combine(Root, "config", "grafana", "provisioning", "dashboards", "dashboards.yml"));
        Assert.Equal(dashboardsMount, Match(providers, @"path:\s*(\S+)"));
    }

    // ---- promtool unit tests for the alert rules

    private const string AlertUnitTests = """
        rule_files:
          - alerts.yml
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series:
              # 100 requests a minute, 20 of them 503: 80% success.
              - series: 'llm_gateway_requests_total{user="alice",model="m",status="200"}'
                values: '0+80x40'
              - series: 'llm_gateway_requests_total{user="alice",model="m",status="503"}'
                values: '0+20x40'
              # alice: 0.2 USD a minute = 12 USD/hour; bob: 0.6 USD/hour.
              - series: 'llm_gateway_cost_usd_total{user="alice",team="t",model="m"}'
                values: '0+0.2x90'
              - series: 'llm_gateway_cost_usd_total{user="bob",team="t",model="m"}'
                values: '0+0.01x90'
              - series: 'llm_gateway_circuit_state{upstream="openai"}'
                values: '2x10'
              - series: 'llm_gateway_circuit_state{upstream="mock"}'
                values: '0x10'
              - series: 'llm_gateway_budget_spent_usd{user="alice"}'
                values: '9.5x5'
              - series: 'llm_gateway_budget_limit_usd{user="alice"}'
                values: '10x5'
              # A limit of 0 means no limit: never "over 90%".
              - series: 'llm_gateway_budget_spent_usd{user="nolimit"}'
                values: '100x5'
              - series: 'llm_gateway_budget_limit_usd{user="nolimit"}'
                values: '0x5'
              # Every overhead observation falls between 5 and 10 ms.
              - series: 'llm_gateway_overhead_seconds_bucket{le="0.005"}'
                values: '0x20'
              - series: 'llm_gateway_overhead_seconds_bucket{le="0.01"}'
                values: '0+100x20'
              - series: 'llm_gateway_overhead_seconds_bucket{le="+Inf"}'
                values: '0+100x20'
            alert_rule_test:
              - eval_time: 30m
                alertname: LlmGatewaySuccessRatioLow
                exp_alerts:
                  - exp_labels: { severity: critical }
              - eval_time: 80m
                alertname: LlmGatewayUserSpendRateHigh
                exp_alerts:
                  - exp_labels: { severity: warning, user: alice }
              - eval_time: 4m
                alertname: LlmGatewayCircuitOpen
                exp_alerts: []
              - eval_time: 6m
                alertname: LlmGatewayCircuitOpen
                exp_alerts:
                  - exp_labels: { severity: critical, upstream: openai }
              - eval_time: 2m
                alertname: LlmGatewayBudgetNearlySpent
                exp_alerts:
                  - exp_labels: { severity: warning, user: alice }
              - eval_time: 18m
                alertname: LlmGatewayOverheadHigh
                exp_alerts:
                  - exp_labels: { severity: warning }
          - interval: 1m
            input_series:
              # An approval pending since minute 0 on two replicas (the same shared store): 60 s older each minute.
              - series: 'llm_gateway_approval_oldest_pending_seconds{instance="a"}'
                values: '0+60x20'
              - series: 'llm_gateway_approval_oldest_pending_seconds{instance="b"}'
                values: '0+60x20'
            alert_rule_test:
              - eval_time: 10m
                alertname: LlmGatewayApprovalPendingTooLong
                exp_alerts: []
              - eval_time: 11m
                alertname: LlmGatewayApprovalPendingTooLong
                exp_alerts:
                  - exp_labels: { severity: warning }
          - interval: 1m
            input_series:
              # One request a minute, half of them failing: too little traffic to page anyone.
              - series: 'llm_gateway_requests_total{user="alice",model="m",status="200"}'
                values: '0+0.5x40'
              - series: 'llm_gateway_requests_total{user="alice",model="m",status="429"}'
                values: '0+0.5x40'
            alert_rule_test:
              - eval_time: 30m
                alertname: LlmGatewaySuccessRatioLow
                exp_alerts: []
        """;

    // ---- dashboard and metric names

    private static List<(string Panel, string Expr)> DashboardExpressions()
    {
        using var dashboard = JsonDocument.Parse(File.ReadAllText(DashboardPath));
        var expressions = new List<(string, string)>();
        foreach (var panel in Panels(dashboard.RootElement))
        {
            if (!panel.TryGetProperty("targets", out var targets))
            {
                continue;
            }

            foreach (var target in targets.EnumerateArray())
            {
                if (target.TryGetProperty("expr", out var expr))
                {
                    expressions.Add((panel.GetProperty("title").GetString()!, expr.GetString()!));
                }
            }
        }

        return expressions;
    }

    private static List<JsonElement> Panels(JsonElement dashboard)
    {
        var panels = new List<JsonElement>();
        Collect(dashboard.GetProperty("panels"));
        return panels;

        void Collect(JsonElement list)
        {
            foreach (var panel in list.EnumerateArray())
            {
                panels.Add(panel.Clone());
                if (panel.TryGetProperty("panels", out var nested))
                {
                    Collect(nested);
                }
            }
        }
    }

    /// <summary>Grafana's range variables become a duration, every other variable ($user, ${model}, [[x]]) a match-all regex.</summary>
    private static string WithTemplateVariablesReplaced(string expr) =>
        TemplateVariable().Replace(RangeVariable().Replace(expr, "5m"), ".*");

    private static IEnumerable<string> MetricNames(string expr) =>
        GatewayMetricName().Matches(expr).Select(m => m.Value);

    /// <summary>The series names GatewayMetrics produces once serialized: counters get _total, histograms _bucket/_sum/_count.</summary>
    private static SortedSet<string> ExportedGatewayMetricNames()
    {
        var names = new SortedSet<string>(StringComparer.Ordinal);
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, _) =>
            {
                if (instrument.Meter.Name != GatewayMetrics.MeterName)
                {
                    return;
                }

                var type = instrument.GetType().GetGenericTypeDefinition();
                if (type == typeof(Counter<>) || type == typeof(ObservableCounter<>))
                {
                    names.Add(instrument.Name + "_total");
                }
                else if (type == typeof(Histogram<>))
                {
                    names.UnionWith([instrument.Name + "_bucket", instrument.Name + "_sum", instrument.Name + "_count"]);
                }
                else
                {
                    names.Add(instrument.Name);
                }
            },
        };
        listener.Start();

        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        _ = new GatewayMetrics(services.GetRequiredService<IMeterFactory>());
        _ = new LlmGateway.Approvals.ApprovalMetrics(services.GetRequiredService<IMeterFactory>(), TimeProvider.System);
        _ = new LlmGateway.Deployments.DeploymentMetrics(services.GetRequiredService<IMeterFactory>(), new LlmGateway.Deployments.DeploymentChooser(new LlmGateway.Deployments.DeploymentRandom()));
        return names;
    }

    // ---- JSON schema

    /// <summary>Walks a config record type and its schema together: same property names, matching types.</summary>
    private static void CompareType(Type type, JsonElement node, JsonElement root, string path, List<string> errors, HashSet<Type> visited)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (type == typeof(TimeSpan))
        {
            ExpectRef(node, "Duration", path, errors);
            return;
        }

        node = Resolve(root, node);
        var expected = type switch
        {
            _ when type == typeof(string) => "string",
            _ when type == typeof(bool) => "boolean",
            _ when type == typeof(int) || type == typeof(long) => "integer",
            _ when type == typeof(decimal) || type == typeof(double) => "number",
            _ when type.IsEnum => "string",
            _ when type.IsGenericType && type.GetGenericTypeDefinition() == typeof(List<>) => "array",
            _ => "object",
        };

        // A oneOf (e.g. a tool rule given as a string or as an object) must offer a branch of the record's type.
        if (node.TryGetProperty("oneOf", out var branches))
        {
            foreach (var branch in branches.EnumerateArray())
            {
                var resolved = Resolve(root, branch);
                if (resolved.TryGetProperty("type", out var branchType) && branchType.GetString() == expected)
                {
                    node = resolved;
                    break;
                }
            }
        }
        var actual = node.TryGetProperty("type", out var t) ? t.GetString() : null;
        if (actual != expected)
        {
            errors.Add($"{path}: schema type '{actual}', {type.Name} needs '{expected}'");
            return;
        }

        if (type.IsEnum)
        {
            var names = node.TryGetProperty("enum", out var e) ? e.EnumerateArray().Select(v => v.GetString()).ToArray() : [];
            if (!names.SequenceEqual(Enum.GetNames(type)))
            {
                errors.Add($"{path}: enum [{string.Join(", ", names)}] differs from {type.Name} [{string.Join(", ", Enum.GetNames(type))}]");
            }
        }
        else if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(List<>))
        {
            CompareType(type.GetGenericArguments()[0], node.GetProperty("items"), root, path + "[]", errors, visited);
        }
        else if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(Dictionary<,>))
        {
            if (!node.TryGetProperty("additionalProperties", out var values) || values.ValueKind != JsonValueKind.Object)
            {
                errors.Add($"{path}: a dictionary needs additionalProperties with the value schema");
                return;
            }

            CompareType(type.GetGenericArguments()[1], values, root, path + ":*", errors, visited);
        }
        else if (type.IsClass && type != typeof(string))
        {
            if (!visited.Add(type))
            {
                return;
            }

            if (!node.TryGetProperty("additionalProperties", out var additional) || additional.ValueKind != JsonValueKind.False)
            {
                errors.Add($"{path}: the binder rejects unknown keys (ErrorOnUnknownConfiguration): set additionalProperties to false");
            }

            var properties = type.GetProperties(BindingFlags.Public | BindingFlags.Instance);
            var schemaProperties = node.GetProperty("properties");
            foreach (var property in properties)
            {
                if (schemaProperties.TryGetProperty(property.Name, out var propertySchema))
                {
                    CompareType(property.PropertyType, propertySchema, root, $"{path}:{property.Name}", errors, visited);
                }
                else
                {
                    errors.Add($"{path}:{property.Name}: missing from the schema");
                }
            }

            foreach (var name in schemaProperties.EnumerateObject().Select(p => p.Name))
            {
                if (!properties.Any(p => p.Name == name))
                {
                    errors.Add($"{path}:{name}: in the schema but not in {type.Name}");
                }
            }
        }
    }

    private static void ExpectRef(JsonElement node, string definition, string path, List<string> errors)
    {
        if (!node.TryGetProperty("$ref", out var reference) || reference.GetString() != "#/$defs/" + definition)
        {
            errors.Add($"{path}: expected {{\"$ref\": \"#/$defs/{definition}\"}}");
        }
    }

    private static JsonElement Resolve(JsonElement root, JsonElement node)
    {
        while (node.TryGetProperty("$ref", out var reference))
        {
            var name = reference.GetString()!;
            Assert.StartsWith("#/$defs/", name, StringComparison.Ordinal);
            node = root.GetProperty("$defs").GetProperty(name["#/$defs/".Length..]);
        }

        return node;
    }

    /// <summary>The subset of JSON Schema 2020-12 that gateway.schema.json uses; enough to check the committed configs.</summary>
    private static List<string> SchemaErrors(JsonElement value, JsonElement root)
    {
        var errors = new List<string>();
        Check(value, root, "$");
        return errors;

        void Check(JsonElement value, JsonElement schema, string path)
        {
            schema = Resolve(root, schema);
            if (schema.TryGetProperty("oneOf", out var branches))
            {
                var matching = 0;
                var before = errors.Count;
                foreach (var branch in branches.EnumerateArray())
                {
                    Check(value, branch, path);
                    if (errors.Count == before)
                    {
                        matching++;
                    }

                    errors.RemoveRange(before, errors.Count - before);
                }

                if (matching != 1)
                {
                    errors.Add($"{path}: matches {matching} of the oneOf branches, not exactly one");
                }

                return;
            }
            if (schema.TryGetProperty("type", out var type) && !HasType(value, type.GetString()!))
            {
                errors.Add($"{path}: not of type {type.GetString()}");
                return;
            }

            if (schema.TryGetProperty("enum", out var values) && !values.EnumerateArray().Any(v => JsonElement.DeepEquals(v, value)))
            {
                errors.Add($"{path}: {value.GetRawText()} is not one of {values.GetRawText()}");
            }

            if (value.ValueKind == JsonValueKind.String)
            {
                var text = value.GetString()!;
                if (schema.TryGetProperty("pattern", out var pattern) && !Regex.IsMatch(text, pattern.GetString()!))
                {
                    errors.Add($"{path}: '{text}' does not match {pattern.GetString()}");
                }

                if (schema.TryGetProperty("minLength", out var minLength) && text.Length < minLength.GetInt32())
                {
                    errors.Add($"{path}: shorter than {minLength.GetInt32()}");
                }
            }

            if (value.ValueKind == JsonValueKind.Number)
            {
                var number = value.GetDouble();
                if ((schema.TryGetProperty("minimum", out var min) && number < min.GetDouble())
                    || (schema.TryGetProperty("maximum", out var max) && number > max.GetDouble())
                    || (schema.TryGetProperty("exclusiveMinimum", out var exclusiveMin) && number <= exclusiveMin.GetDouble()))
                {
                    errors.Add($"{path}: {number} is out of range");
                }
            }

            if (value.ValueKind == JsonValueKind.Array && schema.TryGetProperty("items", out var items))
            {
                var i = 0;
                foreach (var item in value.EnumerateArray())
                {
                    Check(item, items, $"{path}[{i++}]");
                }
            }

            if (value.ValueKind == JsonValueKind.Object)
            {
                CheckObject(value, schema, path);
            }

            if (schema.TryGetProperty("oneOf", out var oneOf))
            {
                var matches = oneOf.EnumerateArray().Count(alternative => SchemaErrorsAgainst(value, alternative) == 0);
                if (matches != 1)
                {
                    errors.Add($"{path}: matches {matches} of the oneOf alternatives, not exactly one");
                }
            }
        }

        void CheckObject(JsonElement value, JsonElement schema, string path)
        {
            var hasProperties = schema.TryGetProperty("properties", out var properties);
            var hasAdditional = schema.TryGetProperty("additionalProperties", out var additional);
            foreach (var property in value.EnumerateObject())
            {
                if (hasProperties && properties.TryGetProperty(property.Name, out var propertySchema))
                {
                    Check(property.Value, propertySchema, $"{path}.{property.Name}");
                }
                else if (hasAdditional && additional.ValueKind == JsonValueKind.False)
                {
                    errors.Add($"{path}.{property.Name}: unknown key");
                }
                else if (hasAdditional && additional.ValueKind == JsonValueKind.Object)
                {
                    Check(property.Value, additional, $"{path}.{property.Name}");
                }
            }

            if (schema.TryGetProperty("required", out var required))
            {
                foreach (var name in required.EnumerateArray().Select(r => r.GetString()!))
                {
                    if (!value.TryGetProperty(name, out _))
                    {
                        errors.Add($"{path}.{name}: required");
                    }
                }
            }

            if (schema.TryGetProperty("minProperties", out var minProperties) && value.EnumerateObject().Count() < minProperties.GetInt32())
            {
                errors.Add($"{path}: needs at least {minProperties.GetInt32()} entries");
            }
        }

        int SchemaErrorsAgainst(JsonElement value, JsonElement alternative)
        {
            var before = errors.Count;
            Check(value, alternative, "");
            var found = errors.Count - before;
            errors.RemoveRange(before, found);
            return found;
        }
    }

    private static bool HasType(JsonElement value, string type) => type switch
    {
        "object" => value.ValueKind == JsonValueKind.Object,
        "array" => value.ValueKind == JsonValueKind.Array,
        "string" => value.ValueKind == JsonValueKind.String,
        "boolean" => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "number" => value.ValueKind == JsonValueKind.Number,
        "integer" => value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out _),
        "null" => value.ValueKind == JsonValueKind.Null,
        _ => throw new InvalidOperationException($"unsupported schema type '{type}'"),
    };

    // ---- YAML and text helpers (no YAML parser in the test project: the files are small and regular)

    private static string PrometheusRuleFile() =>
        Match(File.ReadAllText(Path.Combine(Root, "prometheus.yml")), @"(?m)^rule_files:\s*\n\s*-\s*(\S+)");

    /// <summary>The lines of one service in docker-compose.yml (from "  name:" to the next line indented two or less).</summary>
    private static string ServiceBlock(string compose, string service)
    {
        var lines = compose.Split('\n');
        var start = Array.FindIndex(lines, l => l.TrimEnd() == $"  {service}:");
        Assert.True(start >= 0, $"docker-compose.yml has no service '{service}'");
        var block = new StringBuilder();
        for (var i = start + 1; i < lines.Length; i++)
        {
            var line = lines[i];
            if (line.Trim().Length > 0 && !line.StartsWith("   ", StringComparison.Ordinal))
            {
                break;
            }

            block.Append(line).Append('\n');
        }

        return block.ToString();
    }

    /// <summary>Drops every "annotations:" mapping (and its more-indented lines) from a rules file.</summary>
    private static string WithoutAnnotations(string rules)
    {
        var result = new StringBuilder();
        int? skipDeeperThan = null;
        foreach (var line in rules.Split('\n'))
        {
            var indent = line.Length - line.TrimStart().Length;
            if (skipDeeperThan is { } depth && (line.Trim().Length == 0 || indent > depth))
            {
                continue;
            }

            skipDeeperThan = null;
            if (line.Trim() == "annotations:")
            {
                skipDeeperThan = indent;
                continue;
            }

            result.Append(line).Append('\n');
        }

        return result.ToString();
    }

    private static string Match(string text, string pattern)
    {
        var match = Regex.Match(text, pattern);
        Assert.True(match.Success, $"no match for /{pattern}/ in:\n{text}");
        return match.Groups[1].Value;
    }

    [GeneratedRegex(@"\$__(rate_interval|interval|range)(_ms|_s)?")]
    private static partial Regex RangeVariable();

    [GeneratedRegex(@"\$\{\w+(:\w+)?\}|\$\w+|\[\[\w+\]\]")]
    private static partial Regex TemplateVariable();

    [GeneratedRegex(@"\bllm_gateway_[a-z0-9_]+")]
    private static partial Regex GatewayMetricName();

    [GeneratedRegex(@"(?ms)^\s*expr:.*?(?=^\s*(for|labels|annotations):)")]
    private static partial Regex ExprLine();

    // ---- processes and tools

    private static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "LlmGateway.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"LlmGateway.sln not found above {AppContext.BaseDirectory}");
    }

    internal static string? FindTool(string name)
    {
        foreach (var directory in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator))
        {
            var candidate = Path.Combine(directory, name);
            if (directory.Length > 0 && File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>Only reached without the tool when CI is set (see <see cref="ToolFactAttribute"/>): then it is a failure.</summary>
    private static string RequireTool(string name) =>
        FindTool(name) ?? throw new InvalidOperationException($"{name} is required in CI but is not on PATH (Debian package '{(name == Promtool ? "prometheus" : name)}').");

    private Task<(int ExitCode, string Output)> RunAsync(string fileName, string workingDirectory, params string[] arguments) =>
        RunAsync(fileName, workingDirectory, [], arguments);

    private async Task<(int ExitCode, string Output)> RunAsync(string fileName, string workingDirectory, (string Name, string Value)[] environment, params string[] arguments)
    {
        var start = new ProcessStartInfo(fileName, arguments)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment.Remove("LLMGATEWAY_DEMO_KEY");
        foreach (var (name, value) in environment)
        {
            start.Environment[name] = value;
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{fileName} {string.Join(' ', arguments)} did not finish within 2 minutes");
        }

        var text = (await stdout + await stderr).Trim();
        output.WriteLine($"$ {Path.GetFileName(fileName)} {string.Join(' ', arguments)} (exit {process.ExitCode})\n{text}");
        return (process.ExitCode, text);
    }

    private sealed class TempDirectory : IDisposable
    {
        public TempDirectory() => Directory.CreateDirectory(Path);

        public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"llmgateway-ops-{Guid.NewGuid():N}");

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}

/// <summary>
/// A fact that needs a command-line tool on PATH: skipped, saying which package to install, where the tool is
/// missing, unless the CI environment variable is set (then it runs and fails).
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class ToolFactAttribute : FactAttribute
{
    public ToolFactAttribute(string tool)
    {
        Tool = tool;
        if (OperationsFilesTests.FindTool(tool) is null && string.IsNullOrEmpty(Environment.GetEnvironmentVariable("CI")))
        {
            Skip = $"{tool} is not on PATH (set CI to make this a failure)";
        }
    }

    public string Tool { get; }
}
