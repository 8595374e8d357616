using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Runs;

/// <summary>A gateway for run tests: user "agent" of team "research" (LLM and the "jira" tool), user "other".</summary>
internal static class RunConfigs
{
    public const string Agent = "sk-run-agent";
    public const string Other = "sk-run-other";

    /// <param name="prefix">Shared by replicas that share one set of runs.</param>
    public static string Gateway(string mockBaseUrl, string toolBaseUrl, string? redis, string prefix, string idleExpiry = "1.00:00:00") => $$"""
    {
      "Gateway": {
        "Redis": "{{redis ?? ""}}",
        "AdminKey": "{{TestConfigs.AdminKey}}",
        "Store": { "Timeout": "00:00:01", "KeyPrefix": "{{prefix}}" },
        "Providers": { "mock": { "BaseUrl": "{{mockBaseUrl}}/v1" } },
        "Models": { "mock-small": { "Provider": "mock", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2 } },
        "Keys": [
          { "Key": "{{Agent}}", "User": "agent", "Tools": { "jira": [ { "Allow": "GET /rest/api/2/issue/*" } ] } },
          { "Key": "{{Other}}", "User": "other" }
        ],
        "Users": { "agent": { "Team": "research" } },
        "Teams": { "research": { } },
        "Runs": { "IdleExpiry": "{{idleExpiry}}" },
        "Tools": { "jira": { "BaseUrl": "{{toolBaseUrl}}/jira" } }
      }
    }
    """;

    public static HttpRequestMessage Llm(string runId, string content) =>
        Http.Post("/v1/chat/completions", Http.Chat(content: content), Agent, ("X-Run-Id", runId));

    public static HttpRequestMessage Tool(string runId, string issue)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, $"/tools/jira/rest/api/2/issue/{issue}");
        request.Headers.Authorization = new("Bearer", Agent);
        request.Headers.Add("X-Run-Id", runId);
        return request;
    }

    public static HttpRequestMessage Outcome(string runId, string body, string? key = Agent) =>
        Http.Post($"/v1/runs/{runId}/outcome", body, key);

    /// <summary>The sum of a metric's samples in a Prometheus text scrape whose labels include every one of <paramref name="labels"/>.</summary>
    public static double Sum(string scrape, string name, params string[] labels)
    {
        var total = 0.0;
        foreach (var line in scrape.Split('\n'))
        {
            if (!line.StartsWith(name, StringComparison.Ordinal) || line.Length <= name.Length || line[name.Length] is not ('{' or ' '))
            {
                continue;
            }

            if (labels.All(l => line.Contains(l, StringComparison.Ordinal)))
            {
                total += double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return total;
    }
}
