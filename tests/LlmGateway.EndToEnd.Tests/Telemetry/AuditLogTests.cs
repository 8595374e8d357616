using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Telemetry;

/// <summary>Gateway:AuditLog: every rejection and admin action as one JSON line, without secrets.</summary>
public sealed class AuditLogTests
{
    [Fact]
    public async Task AuditLog_RecordsEveryRejectionAndAdminAction_AsJsonLines_WithoutSecrets()
    {
        var directory = Directory.CreateTempSubdirectory("llmgw-audit-").FullName;
        var auditPath = Path.Combine(directory, "audit.jsonl");
        await using var mock = await MockLlmServer.StartAsync();
        var config = TestConfigs.Budgets(mock.BaseUrl).Replace("\"AdminKey\":", $"\"AuditLog\": \"{auditPath}\", \"AdminKey\":", StringComparison.Ordinal);
        await using (var gateway = await GatewayServer.StartAsync(config))
        {
            (await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), key: "sk-not-a-key"))).Dispose();
            (await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "no-such-model"), "sk-spender"))).Dispose();
            (await gateway.Client.SendAsync(BudgetCalls.Metered("sk-free", tokens: 10))).Dispose();
            using var halt = await gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Post, "/admin/runs/audited-run/halt"));
            Assert.Equal(HttpStatusCode.OK, halt.StatusCode);
            using var ok = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), "sk-spender"));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        // Disposing the gateway drained the audit queue to the file.
        var lines = await File.ReadAllLinesAsync(auditPath);
        var records = lines.Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var rejections = records.Where(r => r.GetProperty("event").GetString() == "Rejection").ToList();
        Assert.Equal(["invalid_api_key", "model_not_found", "budget_exceeded"], rejections.Select(r => r.GetProperty("Code").GetString()));
        Assert.Equal("spender", rejections[1].GetProperty("User").GetString());
        Assert.Equal(401, rejections[0].GetProperty("Status").GetInt32());
        var admin = Assert.Single(records, r => r.GetProperty("event").GetString() == "AdminAction");
        Assert.Equal("halt-run", admin.GetProperty("Action").GetString());
        Assert.Equal("audited-run", admin.GetProperty("Target").GetString());
        Assert.Equal(4, records.Count);

        var text = string.Join("\n", lines);
        foreach (var secret in new[] { "sk-not-a-key", "sk-spender", "sk-free", TestConfigs.AdminKey })
        {
            Assert.DoesNotContain(secret, text);
        }

        Directory.Delete(directory, recursive: true);
    }
}
