using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Tools;

/// <summary>
/// A gateway config whose tools are served by one tool API (WireMock.Net, see <see cref="ToolApi"/>), each under its own
/// base path, except "hanging" and "stalling", served by a <see cref="StallingTool"/> when one is given.
/// </summary>
public static class ToolConfigs
{
    public const string Alice = "sk-tools-alice";
    public const string Bob = "sk-tools-bob";
    public const string Runner = "sk-tools-runner";
    public const string JiraSecret = "jira-secret-token-4f1e9";
    public const string SlackSecret = "xoxb-slack-secret-77aa";

    public static string Config(string toolBaseUrl, string mockBaseUrl, string? redis = null, string? keyPrefix = null, string? stallingBaseUrl = null) => $$"""
    {
      "Gateway": {
        "Redis": "{{redis ?? ""}}",
        "AdminKey": "{{TestConfigs.AdminKey}}",
        "Store": { "Timeout": "00:00:01", "KeyPrefix": "{{keyPrefix ?? "llmgw-" + Guid.NewGuid().ToString("N") + ":"}}" },
        "Providers": { "mock": { "BaseUrl": "{{mockBaseUrl}}/v1" } },
        "Models": { "mock-small": { "Provider": "mock", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2 } },
        "Tools": {
          "jira": { "BaseUrl": "{{toolBaseUrl}}/jira", "Headers": { "Authorization": "Bearer {{JiraSecret}}" } },
          "slack": { "BaseUrl": "{{toolBaseUrl}}/slack/api", "Headers": { "Authorization": "Bearer {{SlackSecret}}" } },
          "effects": { "BaseUrl": "{{toolBaseUrl}}/effects", "Timeout": "00:00:00.500", "MaxAttempts": 3, "MaxRetryWait": "00:00:00.200", "Breaker": { "FailureRatio": 0 } },
          "ledger": { "BaseUrl": "{{toolBaseUrl}}/effects", "Timeout": "00:00:05", "MaxAttempts": 3, "MaxRetryWait": "00:00:00.200", "Breaker": { "FailureRatio": 0 } },
          "stalling": { "BaseUrl": "{{stallingBaseUrl ?? toolBaseUrl}}/stalling", "Timeout": "00:00:00.500", "MaxAttempts": 3, "MaxRetryWait": "00:00:00.200", "Breaker": { "FailureRatio": 0 } },
          "hanging": { "BaseUrl": "{{stallingBaseUrl ?? toolBaseUrl}}/hanging", "Timeout": "00:00:03", "MaxAttempts": 1, "MaxConcurrency": 2, "MaxQueue": 0, "Breaker": { "FailureRatio": 0 } }
        },
        "Idempotency": { "Ttl": "00:10:00", "WaitTimeout": "00:00:05" },
        "Keys": [
          { "Key": "{{Alice}}", "Id": "alice-tools", "User": "alice", "Tools": {
              "jira": [ { "Allow": "GET /rest/api/2/issue/*" }, { "Allow": "GET /rest/api/2/search/**" } ],
              "slack": [ { "Allow": "POST /chat.postMessage", "Body": { "channel": [ "#engineering" ] } } ],
              "effects": [ { "Allow": "* /**" } ],
              "ledger": [ { "Allow": "* /**" } ],
              "stalling": [ { "Allow": "* /**" } ],
              "hanging": [ { "Allow": "* /**" } ] } },
          { "Key": "{{Bob}}", "User": "bob", "Tools": { "slack": [ { "Allow": "GET /**" } ] } },
          { "Key": "{{Runner}}", "User": "runner", "Tools": { "effects": [ { "Allow": "POST /**" } ] } }
        ],
        "Users": { "runner": { "Runs": { "Calls": 3 } } }
      }
    }
    """;

    public static HttpRequestMessage Request(HttpMethod method, string path, string? body = null, string? key = Alice, params (string Name, string Value)[] headers)
    {
        var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
        }

        if (key is not null)
        {
            request.Headers.Authorization = new("Bearer", key);
        }

        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        return request;
    }
}
