using Microsoft.Extensions.Logging.Testing;

namespace LlmGateway.EndToEnd.Tests.Infrastructure;

/// <summary>The queries tests make of the gateway's captured logs (a <see cref="FakeLogCollector"/>).</summary>
internal static class GatewayLogs
{
    /// <summary>The call records: one "LlmCall" event per finished LLM call.</summary>
    public static IReadOnlyList<FakeLogRecord> Calls(this FakeLogCollector logs) =>
        logs.GetSnapshot().Where(r => r.Id.Name == "LlmCall").ToArray();

    public static FakeLogRecord? CallFor(this FakeLogCollector logs, string requestId) =>
        logs.Calls().FirstOrDefault(r => r.GetStructuredStateValue("RequestId") == requestId);

    /// <summary>Everything a record carries as text: message, field values and exception, to search for leaks.</summary>
    public static string Text(this FakeLogRecord record) =>
        record.Message + " " + string.Join(" ", record.StructuredState?.Select(p => p.Value) ?? []) + " " + record.Exception;
}
