using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.EndToEnd.Tests.Tools;
using WireMock.Server;
using Xunit.Abstractions;

namespace LlmGateway.EndToEnd.Tests.Telemetry;

/// <summary>
/// Issue 6, acceptance item 2: a real Prometheus scrapes the gateway every second while a scripted workload runs
/// (successes, embeddings, streams, cache hits, rejections, retries, a fallback, a budget downgrade, tool calls
/// with an idempotent replay, a good and a bad config reload). Then every PromQL expression of the Grafana
/// dashboard and of the alert rules is evaluated through Prometheus's HTTP API and must return data, and the
/// summed cost counter must equal the costs the clients were told. Prometheus negotiates OpenMetrics, so this is
/// also the check of that format with Prometheus's own parser.
/// </summary>
public sealed partial class PrometheusScrapeTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Job = "llm-gateway";
    private const string Alice = "sk-prom-alice";
    private const string Pauper = "sk-prom-pauper";
    private const string Broke = "sk-prom-broke";
    private const string Limited = "sk-prom-limited";

    /// <summary>Grafana's range variables become this window: wide enough to hold the whole test's 1 s samples.</summary>
    private const string Window = "1m";

    /// <summary>
    /// Dashboard or alert expressions (after variable substitution and threshold removal) that may legitimately
    /// return no data with this workload, each with its reason. Empty: every expression returns data.
    /// </summary>
    private static readonly Dictionary<string, string> NoDataAllowed = new(StringComparer.Ordinal);

    private static readonly string Root = FindRepositoryRoot();

    private WireMockServer _tool = null!;
    private MockLlmServer _mock = null!;
    private GatewayServer _gateway = null!;

    public async Task InitializeAsync()
    {
        _tool = await ToolApi.StartAsync();
        _mock = await MockLlmServer.StartAsync();
        _gateway = await GatewayServer.StartAsync(Config(_mock.BaseUrl, _tool.Url!));
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _mock.DisposeAsync();
        _tool.Stop();
        _tool.Dispose();
    }

    [PrometheusFact]
    public async Task Prometheus_ScrapesWorkload_EveryDashboardAndAlertExpressionReturnsData_CostMatchesClients()
    {
        var alertsPath = Path.Combine(Root, "config", "prometheus", "alerts.yml");

        // Loading the repository's rules file also proves this Prometheus accepts it.
        await using var prometheus = await PrometheusServer.StartAsync(new Uri(_gateway.BaseUrl).Authority, Job, alertsPath);
        await WaitForAsync(prometheus, async () => await prometheus.QueryScalarAsync($"up{{job=\"{Job}\"}}") == 1, "the first scrape of the gateway");

        // The workload runs twice with a scrape in between: a series is born in the first round and grows in the
        // second, so rate() and histogram_quantile() see an increase instead of a single sample.
        var reported = 0m;
        string scrape = "";
        for (var round = 0; round < 2; round++)
        {
            reported += await RunWorkloadAsync(round);

            // Everything the gateway counted, then the moment Prometheus has scraped all of it. Tool calls are counted
            // apart from requests and come last in a round: without their own wait, the scrape that ends round 0 may
            // predate them, leaving their series one sample (no rate) when scrapes are slow.
            scrape = await _gateway.Client.GetStringAsync("/metrics");
            var requests = SumOf(scrape, "llm_gateway_requests_total");
            var toolCalls = SumOf(scrape, "llm_gateway_tool_calls_total");
            await WaitForAsync(prometheus, async () => await prometheus.QueryScalarAsync("sum(llm_gateway_requests_total)") == requests, $"Prometheus to see all {requests} requests of round {round}");
            await WaitForAsync(prometheus, async () => await prometheus.QueryScalarAsync("sum(llm_gateway_tool_calls_total)") >= toolCalls, $"Prometheus to see all {toolCalls} tool calls of round {round}");
            var runs = SumOf(scrape, "llm_gateway_run_outcomes_total");
            await WaitForAsync(prometheus, async () => await prometheus.QueryScalarAsync("sum(llm_gateway_run_outcomes_total)") >= runs, $"Prometheus to see all {runs} ended runs of round {round}");
        }

        var cost = await prometheus.QueryScalarAsync("sum(llm_gateway_cost_usd_total)");
        Assert.NotNull(cost);
        Assert.True(reported > 0m);
        var relative = Math.Abs(cost.Value - (double)reported) / (double)reported;
        Assert.True(relative <= 1e-9, $"Prometheus sum(llm_gateway_cost_usd_total) = {cost.Value:R}, clients were told {reported} in total (relative difference {relative:E2})");

        // Prometheus asks for OpenMetrics first, and the gateway serves it: Prometheus's OpenMetrics parser read every
        // scrape (its integer bucket bounds are stored as OpenMetrics writes them, le="1.0"; the text format says "1").
        Assert.True(
            await prometheus.QueryScalarAsync("count(llm_gateway_request_duration_seconds_bucket{le=\"1.0\"})") > 0,
            "Prometheus did not scrape the gateway in the OpenMetrics format");

        // The gateway's own refusals are answers too: the success-ratio alert counts their 429s (2 rounds × budget
        // and RPM), and the 4xx error-ratio panel the unknown model's 404s (without a model label).
        Assert.Equal(4, await prometheus.QueryScalarAsync("sum(llm_gateway_requests_total{status=\"429\"})"));
        Assert.Equal(2, await prometheus.QueryScalarAsync("sum(llm_gateway_requests_total{status=\"404\", model=\"\"})"));

        var failures = new List<string>();
        var dashboard = DashboardExpressions();
        var alerts = AlertExpressions(File.ReadAllText(alertsPath));
        Assert.True(dashboard.Count >= 47, $"only {dashboard.Count} dashboard expressions found");
        Assert.True(alerts.Count >= 10, $"only {alerts.Count} alert expressions found");

        foreach (var (panel, expr) in dashboard)
        {
            await CheckAsync(prometheus, $"dashboard '{panel}'", WithTemplateVariablesReplaced(expr), failures);
        }

        foreach (var (alert, expr) in alerts)
        {
            // The rule as written must evaluate; it may legitimately be empty (its threshold is not crossed here).
            try
            {
                await prometheus.QueryAsync(expr);
            }
            catch (PromQLException ex)
            {
                failures.Add($"alert {alert}: {ex.Message}");
            }

            // Without its threshold comparisons the rule's underlying series must exist. The drift alert compares with
            // the 24 h before the last 15 minutes, which a Prometheus started seconds ago has not got (promtool plays
            // it over synthetic history: OperationsFilesTests.Drift); its current series must exist.
            var underlying = alert == "LlmGatewayModelVersionChanged" ? "max by (model, version) (llm_gateway_served_versions_total)" : WithoutThresholds(expr);
            await CheckAsync(prometheus, $"alert {alert} (thresholds removed)", underlying, failures);
        }

        Assert.True(failures.Count == 0, $"{failures.Count} expression(s) failed or returned no data:\n{string.Join("\n", failures)}\n\nGateway scrape:\n{scrape}");
    }

    private async Task CheckAsync(PrometheusServer prometheus, string what, string expr, List<string> failures)
    {
        JsonElement data;
        try
        {
            data = await prometheus.QueryAsync(expr);
        }
        catch (PromQLException ex)
        {
            failures.Add($"{what}: {ex.Message}");
            return;
        }

        var result = data.GetProperty("result");
        var hasData = data.GetProperty("resultType").GetString() switch
        {
            "vector" or "matrix" => result.GetArrayLength() > 0,
            _ => result.ValueKind == JsonValueKind.Array,
        };
        // A NaN (0/0: a ratio or quantile over rates that did not move) is no data either: the workload's second round
        // makes every counter grow between two scrapes.
        var nan = data.GetProperty("resultType").GetString() == "vector"
            && result.EnumerateArray().Any(sample => double.IsNaN(PrometheusServer.ParseValue(sample.GetProperty("value")[1].GetString()!)));
        output.WriteLine($"{(!hasData ? "NO DATA" : nan ? "NaN    " : "data   ")} {what}: {expr}\n        => {Truncate(result.GetRawText(), 300)}");
        if ((!hasData || nan) && !NoDataAllowed.ContainsKey(expr))
        {
            failures.Add($"{what}: {(hasData ? "NaN" : "no data")} for {expr} => {result.GetRawText()}");
        }
    }

    /// <summary>The scripted workload; returns the sum of the costs the gateway reported to the clients.</summary>
    /// <param name="round">0 or 1: what differs between rounds (cache content, idempotency key, RPM) depends on it.</param>
    private async Task<decimal> RunWorkloadAsync(int round)
    {
        var client = _gateway.Client;
        var reported = 0m;

        // Calls that reached the proxy (answered or failed upstream): each gets a call record once its metrics are in.
        var forwarded = new List<string>();

        async Task<HttpResponseMessage> Llm(string path, string body, string key, HttpStatusCode expected, params (string Name, string Value)[] headers)
        {
            var response = await client.SendAsync(Http.Post(path, body, key, headers));
            if (response.StatusCode is HttpStatusCode.OK or HttpStatusCode.BadGateway)
            {
                forwarded.Add(response.Headers.GetValues("X-Request-Id").Single());
            }

            Assert.True(response.StatusCode == expected, $"{path} {body}: expected {(int)expected}, got {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
            if (response.Headers.TryGetValues("X-Gateway-Cost-Usd", out var costs))
            {
                reported += decimal.Parse(costs.Single(), NumberStyles.Float, CultureInfo.InvariantCulture);
            }
            else
            {
                Assert.True(response.StatusCode != HttpStatusCode.OK, $"a 200 without X-Gateway-Cost-Usd: {body}");
            }

            return response;
        }

        // Config reloads: one accepted edit, then one rejected (the accepted config keeps serving).
        var edited = Config(_mock.BaseUrl, _tool.Url!).Replace("\"MaxRequestBodyBytes\": 1048576", $"\"MaxRequestBodyBytes\": {1048577 + round}", StringComparison.Ordinal);
        await _gateway.WriteConfigAsync(edited);
        await WaitForSampleAsync("llm_gateway_config_reloads_total{result=\"success\"}", round + 1);
        await _gateway.WriteConfigAsync(edited.Replace("\"Provider\": \"mock\"", "\"Provider\": \"opneai\"", StringComparison.Ordinal));
        await WaitForSampleAsync("llm_gateway_config_reloads_total{result=\"failure\"}", round + 1);

        // Successes: chat on two models (with cached input tokens), embeddings.
        for (var i = 0; i < 4; i++)
        {
            (await Llm("/v1/chat/completions", Http.Chat(model: i % 2 == 0 ? "mock-small" : "mock-large", content: $"call {round}.{i}"), Alice, HttpStatusCode.OK,
                ("X-Mock-Usage-Prompt", (100 + i).ToString(CultureInfo.InvariantCulture)), ("X-Mock-Usage-Completion", "37"), ("X-Mock-Usage-Cached", "10"))).Dispose();
        }

        (await Llm("/v1/embeddings", """{"model":"mock-embed","input":["a","b"]}""", Alice, HttpStatusCode.OK)).Dispose();

        // Streams: the cost is in the call record (a stream's header is sent before its usage is known).
        for (var i = 0; i < 2; i++)
        {
            using var stream = await client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: $"stream {round}.{i} one two three", stream: true), Alice));
            Assert.Equal(HttpStatusCode.OK, stream.StatusCode);
            Assert.Contains("[DONE]", await stream.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            var record = await Http.EventuallyAsync(() => _gateway.Logs.CallFor(stream.Headers.GetValues("X-Request-Id").Single()), "the stream's call record");
            reported += decimal.Parse(record.GetStructuredStateValue("CostUsd")!, NumberStyles.Float, CultureInfo.InvariantCulture);
        }

        // Cache: a deterministic request twice (miss, then hit), and a non-deterministic one (bypass).
        for (var i = 0; i < 2; i++)
        {
            using var cached = await Llm("/v1/chat/completions", Http.Chat(content: $"cache me {round}", extra: ",\"temperature\":0"), Alice, HttpStatusCode.OK);
            Assert.Equal(i == 0 ? "MISS" : "HIT", cached.Headers.GetValues("X-Gateway-Cache").Single());
        }

        (await Llm("/v1/chat/completions", Http.Chat(content: "not deterministic", extra: ",\"temperature\":0.7"), Alice, HttpStatusCode.OK)).Dispose();

        // Drift: the model asks for a tool the request declares (llm_gateway_tool_call_requests_total).
        (await Llm("/v1/chat/completions", Http.Chat(content: $"weather {round}", extra: ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}]"), Alice, HttpStatusCode.OK,
            ("X-Mock-Tool-Call", "get_weather"))).Dispose();

        // Rejections: unknown model, budget exhausted, RPM limit.
        (await Llm("/v1/chat/completions", Http.Chat(model: "no-such-model"), Alice, HttpStatusCode.NotFound)).Dispose();
        (await Llm("/v1/chat/completions", Http.Chat(), Broke, HttpStatusCode.TooManyRequests)).Dispose();
        for (var i = 0; round == 0 && i < 2; i++)
        {
            (await Llm("/v1/chat/completions", Http.Chat(content: $"limited {i}"), Limited, HttpStatusCode.OK)).Dispose();
        }

        using (var limited = await Llm("/v1/chat/completions", Http.Chat(content: $"limited {round}.2"), Limited, HttpStatusCode.TooManyRequests))
        {
            Assert.Equal("rate_limit_exceeded", (await Http.ErrorOf(limited)).GetProperty("code").GetString());
        }

        // Retries: an upstream 429 once, retried on the same model; an upstream 500 every time (all attempts, then 502).
        using (var retried = await Llm("/v1/chat/completions", Http.Chat(model: "solo", content: "retry me"), Alice, HttpStatusCode.OK,
            ("X-Mock-Status", "429"), ("X-Mock-Fail-Times", "1"), ("X-Mock-Scenario", Guid.NewGuid().ToString("N"))))
        {
            Assert.Equal("2", retried.Headers.GetValues("X-Gateway-Attempts").Single());
        }

        (await Llm("/v1/chat/completions", Http.Chat(model: "solo", content: "always failing"), Alice, HttpStatusCode.BadGateway, ("X-Mock-Status", "500"))).Dispose();

        // A fallback: the upstream asks for a wait longer than the gateway waits, so the fallback model answers.
        using (var fallback = await Llm("/v1/chat/completions", Http.Chat(model: "flaky", content: "fall back"), Alice, HttpStatusCode.OK,
            ("X-Mock-Status", "429"), ("X-Mock-Fail-Times", "1"), ("X-Mock-Scenario", Guid.NewGuid().ToString("N")), ("X-Mock-Retry-After", "30")))
        {
            Assert.Equal("fallback", fallback.Headers.GetValues("X-Gateway-Downgrade").Single());
        }

        // A budget downgrade: premium with max_tokens 10 reserves $0.10, more than pauper's $0.05; mock-small fits.
        using (var downgraded = await Llm("/v1/chat/completions", Http.Chat(model: "premium", content: "downgrade me", extra: ",\"max_tokens\":10"), Pauper, HttpStatusCode.OK))
        {
            Assert.Equal("budget", downgraded.Headers.GetValues("X-Gateway-Downgrade").Single());
            Assert.Equal("mock-small", downgraded.Headers.GetValues("X-Gateway-Model").Single());
        }

        // Tools: a GET, and a POST with an Idempotency-Key sent twice (the second is replayed).
        using (var get = await client.SendAsync(ToolConfigs.Request(HttpMethod.Get, "/tools/jira/rest/api/2/issue/ABC-1", key: Alice)))
        {
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        }

        for (var i = 0; i < 2; i++)
        {
            using var refund = await client.SendAsync(ToolConfigs.Request(HttpMethod.Post, "/tools/effects/refunds", """{"amount":1}""", Alice, ("Idempotency-Key", $"refund-prom-{round}")));
            Assert.Equal(HttpStatusCode.OK, refund.StatusCode);
            Assert.Equal(i == 1, refund.Headers.TryGetValues("Idempotent-Replayed", out var replayed) && replayed.Single() == "true");
        }

        Assert.Equal(round + 1, _tool.CountFor("/effects/refunds"));

        // Approvals: a held call, seen pending through the admin API (the pending gauges) and approved there.
        var held = client.SendAsync(ToolConfigs.Request(HttpMethod.Post, $"/tools/effects/approved/payout-{round}", """{"amount":2}""", Alice));
        string? approvalId = null;
        await Http.EventuallyAsync(async () =>
        {
            using var list = new HttpRequestMessage(HttpMethod.Get, "/admin/approvals");
            list.Headers.Authorization = new("Bearer", TestConfigs.AdminKey);
            using var listed = await client.SendAsync(list);
            using var pending = JsonDocument.Parse(await listed.Content.ReadAsStringAsync());
            var data = pending.RootElement.GetProperty("data");
            approvalId = data.GetArrayLength() > 0 ? data[0].GetProperty("id").GetString() : null;
            return approvalId is null ? null : (bool?)true;
        }, "the held call's approval", timeoutMs: 20000);
        using (var approve = new HttpRequestMessage(HttpMethod.Post, $"/admin/approvals/{approvalId}/approve"))
        {
            approve.Headers.Authorization = new("Bearer", TestConfigs.AdminKey);
            using var approved = await client.SendAsync(approve);
            Assert.Equal(HttpStatusCode.OK, approved.StatusCode);
        }

        using (var payout = await held)
        {
            Assert.Equal(HttpStatusCode.OK, payout.StatusCode);
        }

        // Runs (issue 17): one that fails and one that succeeds per round, each an LLM call and a tool call, reported
        // once their calls are in the run's list; the run metrics and the Runs row read them.
        foreach (var (run, outcome) in new[] { ($"prom-run-failed-{round}", "failure"), ($"prom-run-ok-{round}", "success") })
        {
            using (await Llm("/v1/chat/completions", Http.Chat(content: $"run step {run}"), Alice, HttpStatusCode.OK, ("X-Run-Id", run)))
            {
            }

            using (var tool = ToolConfigs.Request(HttpMethod.Get, "/tools/jira/rest/api/2/issue/RUN-1", key: Alice))
            {
                tool.Headers.Add("X-Run-Id", run);
                using var answered = await client.SendAsync(tool);
                Assert.Equal(HttpStatusCode.OK, answered.StatusCode);
            }

            await Http.EventuallyAsync(async () =>
            {
                using var listed = await client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, $"/admin/runs/{run}/calls"));
                return listed.StatusCode == HttpStatusCode.OK && JsonDocument.Parse(await listed.Content.ReadAsStringAsync()).RootElement.GetProperty("count").GetInt32() == 2 ? (bool?)true : null;
            }, $"the two calls of run {run}");
            using var reportedOutcome = await client.SendAsync(Http.Post($"/v1/runs/{run}/outcome", "{\"outcome\":\"" + outcome + "\"}", Alice));
            Assert.Equal(HttpStatusCode.OK, reportedOutcome.StatusCode);
        }

        // Every LLM call's record is written (and its metrics recorded) before the totals are read.
        await Http.EventuallyAsync(() => forwarded.All(id => _gateway.Logs.CallFor(id) is not null) ? forwarded : null, $"the call records of {forwarded.Count} forwarded calls");
        return reported;
    }

    /// <summary>Waits until one sample of the gateway's own /metrics reaches a value.</summary>
    private async Task WaitForSampleAsync(string sample, double value) =>
        await Http.EventuallyAsync(
            async () => SampleOf(await _gateway.Client.GetStringAsync("/metrics"), sample) >= value ? true : (bool?)null,
            $"{sample} to reach {value}");

    private static double SampleOf(string scrape, string sample) =>
        Regex.Match(scrape, "^" + Regex.Escape(sample) + @" (\S+)", RegexOptions.Multiline) is { Success: true } match
            ? PrometheusServer.ParseValue(match.Groups[1].Value)
            : 0;

    private static async Task WaitForAsync(PrometheusServer prometheus, Func<Task<bool>> condition, string what, int timeoutSeconds = 20)
    {
        var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Timed out waiting for {what}. Prometheus output: {prometheus.Output}");
            }

            await Task.Delay(200);
        }
    }

    /// <summary>Sum of every sample of one metric in the gateway's own exposition.</summary>
    private static double SumOf(string scrape, string name) =>
        Regex.Matches(scrape, "^" + Regex.Escape(name) + @"(\{[^}]*\})? (\S+)", RegexOptions.Multiline)
            .Sum(m => PrometheusServer.ParseValue(m.Groups[2].Value));

    private static string Config(string mockBaseUrl, string toolBaseUrl) => $$"""
    {
      "Gateway": {
        "AdminKey": "{{TestConfigs.AdminKey}}",
        "Approvals": { "Wait": "00:00:30" },
        "Providers": { "mock": { "BaseUrl": "{{mockBaseUrl}}/v1" } },
        "Models": {
          "mock-small": { "Provider": "mock", "InputUsdPerMTok": 1.00, "OutputUsdPerMTok": 2.00 },
          "mock-large": { "Provider": "mock", "InputUsdPerMTok": 2.50, "CachedInputUsdPerMTok": 1.25, "OutputUsdPerMTok": 10.00 },
          "mock-embed": { "Provider": "mock", "InputUsdPerMTok": 0.02, "OutputUsdPerMTok": 0 },
          "solo": { "Provider": "mock", "InputUsdPerMTok": 1.00, "OutputUsdPerMTok": 4.00 },
          "flaky": { "Provider": "mock", "InputUsdPerMTok": 1.00, "OutputUsdPerMTok": 4.00, "Fallbacks": [ "mock-small" ] },
          "premium": { "Provider": "mock", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 10000, "DowngradeTo": "mock-small" }
        },
        "Keys": [
          { "Key": "{{Alice}}", "User": "alice", "Tools": {
              "jira": [ { "Allow": "GET /rest/api/2/issue/*" } ],
              "effects": [ { "Allow": "POST /approved/**", "Approval": true }, { "Allow": "POST /**" } ] } },
          { "Key": "{{Pauper}}", "User": "pauper" },
          { "Key": "{{Broke}}", "User": "broke" },
          { "Key": "{{Limited}}", "User": "limited" }
        ],
        "Users": {
          "alice": { "Team": "research", "Budget": { "Usd": 100.0, "Period": "Day" } },
          "pauper": { "Team": "research", "Budget": { "Usd": 0.05, "Period": "Day" } },
          "broke": { "Budget": { "Usd": 0.000001, "Period": "Day" } },
          "limited": { "Rpm": 2 }
        },
        "Teams": { "research": { } },
        "Cache": { "Enabled": true, "Ttl": "01:00:00", "Scope": "User" },
        "Tools": {
          "jira": { "BaseUrl": "{{toolBaseUrl}}/jira" },
          "effects": { "BaseUrl": "{{toolBaseUrl}}/effects", "Timeout": "00:00:02" }
        },
        "Resilience": {
          "MaxAttempts": 3, "MaxRetryWait": "00:00:05", "RetryBaseDelay": "00:00:00.020", "AttemptTimeout": "00:00:05"
        },
        "Limits": { "MaxRequestBodyBytes": 1048576 }
      }
    }
    """;

    // ---- the expressions

    /// <summary>Every targets[].expr of the dashboard, with its panel title.</summary>
    private static List<(string Panel, string Expr)> DashboardExpressions()
    {
        using var dashboard = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "config", "grafana", "dashboards", "llm-gateway.json")));
        var expressions = new List<(string, string)>();
        Collect(dashboard.RootElement.GetProperty("panels"));
        return expressions;

        void Collect(JsonElement panels)
        {
            foreach (var panel in panels.EnumerateArray())
            {
                if (panel.TryGetProperty("targets", out var targets))
                {
                    foreach (var target in targets.EnumerateArray())
                    {
                        if (target.TryGetProperty("expr", out var expr) && !string.IsNullOrWhiteSpace(expr.GetString()))
                        {
                            expressions.Add((panel.GetProperty("title").GetString()!, expr.GetString()!));
                        }
                    }
                }

                if (panel.TryGetProperty("panels", out var nested))
                {
                    Collect(nested);
                }
            }
        }
    }

    /// <summary>
    /// Each rule's expr from the rules file, by its alert (or record) name. A small reader for the layout the file
    /// uses: <c>expr: |</c> followed by a more indented block, or <c>expr: inline</c>.
    /// </summary>
    internal static List<(string Name, string Expr)> AlertExpressions(string yaml)
    {
        var rules = new List<(string, string)>();
        var lines = yaml.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        string? name = null;
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            if (RuleName().Match(line) is { Success: true } named)
            {
                name = named.Groups[2].Value.Trim();
                continue;
            }

            if (ExprKey().Match(line) is not { Success: true } key)
            {
                continue;
            }

            var inline = key.Groups[2].Value.Trim();
            string expr;
            if (inline is "|" or "|-" or ">" or ">-")
            {
                var indent = key.Groups[1].Value.Length;
                var block = new StringBuilder();
                while (i + 1 < lines.Length && (lines[i + 1].Trim().Length == 0 || Indent(lines[i + 1]) > indent))
                {
                    block.Append(lines[++i].Trim()).Append('\n');
                }

                expr = block.ToString().Trim();
            }
            else
            {
                expr = inline;
            }

            rules.Add((name ?? $"rule {rules.Count}", expr));
        }

        return rules;

        static int Indent(string line) => line.Length - line.TrimStart(' ').Length;
    }

    /// <summary>Grafana's range variables become <see cref="Window"/>; every other variable ($user, ${model}, [[x]]) matches all.</summary>
    internal static string WithTemplateVariablesReplaced(string expr) =>
        TemplateVariable().Replace(RangeVariable().Replace(expr, Window), ".*");

    /// <summary>
    /// The alert expression without its threshold comparisons: the expression is split at its top-level
    /// <c>and</c>/<c>or</c>/<c>unless</c>, and each operand loses a trailing <c>&gt; 0.9</c>, <c>== 2</c>, <c>&gt;= 20</c>…
    /// An alert whose threshold is not crossed legitimately evaluates to nothing; what must exist is the series the
    /// threshold is compared against. Comparisons inside parentheses (filters like <c>(limit &gt; 0)</c>) stay.
    /// </summary>
    internal static string WithoutThresholds(string expr)
    {
        var parts = new List<string>();
        var operators = new List<string>();
        var depth = 0;
        var start = 0;
        char? quote = null;
        for (var i = 0; i < expr.Length; i++)
        {
            var c = expr[i];
            if (quote is { } q)
            {
                if (c == '\\')
                {
                    i++;
                }
                else if (c == q)
                {
                    quote = null;
                }

                continue;
            }

            switch (c)
            {
                case '"' or '\'' or '`':
                    quote = c;
                    continue;
                case '(' or '[' or '{':
                    depth++;
                    continue;
                case ')' or ']' or '}':
                    depth--;
                    continue;
            }

            if (depth == 0 && SetOperator().Match(expr, i) is { Success: true } op && op.Index == i && (i == 0 || !IsWordChar(expr[i - 1])))
            {
                parts.Add(expr[start..i]);
                operators.Add(op.Groups[1].Value);
                i += op.Length - 1;
                start = i + 1;
            }
        }

        parts.Add(expr[start..]);
        var result = new StringBuilder(TrailingThreshold().Replace(parts[0], "").Trim());
        for (var i = 0; i < operators.Count; i++)
        {
            result.Append(' ').Append(operators[i]).Append(' ').Append(TrailingThreshold().Replace(parts[i + 1], "").Trim());
        }

        return result.ToString();

        static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c == '_' || c == ':';
    }

    private static string Truncate(string text, int length) => text.Length <= length ? text : text[..length] + "…";

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

    [GeneratedRegex(@"\$__(rate_interval|interval|range)(_ms|_s)?")]
    private static partial Regex RangeVariable();

    [GeneratedRegex(@"\$\{\w+(:\w+)?\}|\$\w+|\[\[\w+\]\]")]
    private static partial Regex TemplateVariable();

    [GeneratedRegex(@"^\s*-?\s*(alert|record):\s*(.+)$")]
    private static partial Regex RuleName();

    [GeneratedRegex(@"^(\s*)expr:\s*(.*)$")]
    private static partial Regex ExprKey();

    [GeneratedRegex(@"\G(and|or|unless)(?![\w:])")]
    private static partial Regex SetOperator();

    [GeneratedRegex(@"\s*(==|!=|>=|<=|>|<)\s*(bool\s+)?[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")]
    private static partial Regex TrailingThreshold();
}
