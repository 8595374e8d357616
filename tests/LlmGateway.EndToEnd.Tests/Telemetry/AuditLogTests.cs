using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using Microsoft.Extensions.Logging;

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

    [Fact]
    public async Task AuditLog_WhenTheFileCannotBeWritten_LogsOnce_KeepsServing_AndWritesOnceItCan()
    {
        var directory = Directory.CreateTempSubdirectory("llmgw-audit-").FullName;
        var auditPath = Path.Combine(directory, "audit.jsonl");
        Directory.CreateDirectory(auditPath);
        await using var mock = await MockLlmServer.StartAsync();
        var config = TestConfigs.Budgets(mock.BaseUrl).Replace("\"AdminKey\":", $"\"AuditLog\": \"{auditPath}\", \"AdminKey\":", StringComparison.Ordinal);
        await using var gateway = await GatewayServer.StartAsync(config);

        (await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), key: "sk-not-a-key"))).Dispose();
        (await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "no-such-model"), "sk-spender"))).Dispose();
        await Http.EventuallyAsync(() => gateway.Logs.GetSnapshot().FirstOrDefault(r => r.Id.Name == "AuditFileWriteFailed"), "the audit file's error");

        // The gateway keeps answering, nothing is dropped yet, and the failure was logged once for all the retries.
        using (var ok = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), "sk-spender")))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        Assert.Contains("llm_gateway_audit_dropped_total 0\n", await gateway.Client.GetStringAsync("/metrics"));
        Directory.Delete(auditPath);
        var lines = await Http.EventuallyAsync(
            () => File.Exists(auditPath) && File.ReadAllLines(auditPath) is { Length: 2 } written ? written : null,
            "the two rejections in the audit file");
        Assert.Equal(["invalid_api_key", "model_not_found"], lines.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("Code").GetString()));
        var error = Assert.Single(gateway.Logs.GetSnapshot(), r => r.Id.Name == "AuditFileWriteFailed");
        Assert.Equal(LogLevel.Error, error.Level);
        Assert.Contains(auditPath, error.Message, StringComparison.Ordinal);
        await Http.EventuallyAsync(() => gateway.Logs.GetSnapshot().FirstOrDefault(r => r.Id.Name == "AuditFileRecovered"), "the recovery's log line");

        Directory.Delete(directory, recursive: true);
    }
}
