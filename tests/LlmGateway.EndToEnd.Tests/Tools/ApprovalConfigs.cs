using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Tools;

/// <summary>
/// A gateway config with rules that need approval: alice's POST /refunds on "ledger" (any approver) and POST /payouts
/// (the "finance" group only), served by one tool API (<see cref="ToolApi"/>) under /effects; "catalog" keeps its GET
/// answers for the run (RunCache). Approver keys: finance-lead (group finance) and ops.
/// </summary>
public static class ApprovalConfigs
{
    public const string Alice = "sk-approvals-alice";
    public const string FinanceLead = "sk-approver-finance-lead";
    public const string Ops = "sk-approver-ops";

    public static string Config(string toolBaseUrl, string mockBaseUrl, string webhookUrl = "", string? redis = null, string? keyPrefix = null, string wait = "00:00:55", string countHits = "true") => $$"""
    {
      "Gateway": {
        "Redis": "{{redis ?? ""}}",
        "AdminKey": "{{TestConfigs.AdminKey}}",
        "Store": { "Timeout": "00:00:02", "KeyPrefix": "{{keyPrefix ?? "llmgw-" + Guid.NewGuid().ToString("N") + ":"}}" },
        "Providers": { "mock": { "BaseUrl": "{{mockBaseUrl}}/v1" } },
        "Models": { "mock-small": { "Provider": "mock", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2 } },
        "Tools": {
          "ledger": { "BaseUrl": "{{toolBaseUrl}}/effects", "Timeout": "00:00:05", "Breaker": { "FailureRatio": 0 } },
          "catalog": { "BaseUrl": "{{toolBaseUrl}}/catalog", "Breaker": { "FailureRatio": 0 }, "RunCache": { "Ttl": "00:05:00", "CountHits": {{countHits}} } }
        },
        "Approvals": {
          "Wait": "{{wait}}",
          "WebhookUrl": "{{webhookUrl}}",
          "WebhookTimeout": "00:00:30",
          "Approvers": {
            "finance-lead": { "Key": "{{FinanceLead}}", "Groups": [ "finance" ] },
            "ops": { "Key": "{{Ops}}" }
          }
        },
        "Keys": [
          { "Key": "{{Alice}}", "Id": "alice-agent", "User": "alice", "Tools": {
              "ledger": [ "GET /**", { "Allow": "POST /refunds", "Approval": true }, { "Allow": "POST /payouts", "Approval": true, "Approvers": [ "finance" ] } ],
              "catalog": [ "* /**" ] } }
        ],
        "Users": { "alice": { "Runs": { "Calls": 8 } } }
      }
    }
    """;

    public static HttpRequestMessage Call(HttpMethod method, string path, string? body = null, string? run = null) =>
        ToolConfigs.Request(method, path, body, Alice, run is null ? [] : [("X-Run-Id", run)]);

    public static HttpRequestMessage Admin(HttpMethod method, string path, string? body = null, string key = TestConfigs.AdminKey)
    {
        var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new("Bearer", key);
        if (body is not null)
        {
            request.Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
        }

        return request;
    }
}
