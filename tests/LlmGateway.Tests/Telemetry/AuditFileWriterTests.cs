using System.Text;
using LlmGateway;
using LlmGateway.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;
using static LlmGateway.Tests.Telemetry.TelemetryTestHelpers;

namespace LlmGateway.Tests.Telemetry;

/// <summary>The audit file's writer: bounded queue, drops counted, disk errors logged once and retried.</summary>
public sealed class AuditFileWriterTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("llmgw-audit-writer-").FullName;
    private readonly FakeTimeProvider _time = new();
    private readonly FakeLogger<AuditFileWriter> _log = new();

    public void Dispose()
    {
        // A test may leave the audit path a symbolic link or a directory.
        Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public void Dispose_WritesEveryQueuedLine_InOrder()
    {
        var path = Path.Combine(_directory, "nested", "audit.jsonl");
        using (var writer = new AuditFileWriter(path, capacity: 2_000, _time))
        {
            for (var i = 0; i < 1_000; i++)
            {
                Assert.True(writer.TryWrite(Line(i)));
            }
        }

        Assert.Equal(Enumerable.Range(0, 1_000).Select(Text), File.ReadAllLines(path));
    }

    [Theory]
    [InlineData("the path is a directory")]
    [InlineData("the disk is full")]
    public async Task DiskError_IsLoggedOnce_RetriedUntilTheFileIsWritable_AndNothingIsLost(string failure)
    {
        var path = Path.Combine(_directory, "audit.jsonl");
        Break(path, failure);
        using var writer = new AuditFileWriter(path, capacity: 100, _time);
        writer.SetErrorLog(_log);

        for (var i = 0; i < 5; i++)
        {
            Assert.True(writer.TryWrite(Line(i)));
        }

        // Several failed attempts, one error.
        await AdvanceUntilAsync(() => writer.FailedWrites >= 4, "four failed attempts");
        var error = Assert.Single(_log.Collector.GetSnapshot(), r => r.Level == LogLevel.Error);
        Assert.Equal(GatewayEventIds.AuditFileWriteFailed, error.Id.Id);
        Assert.Contains(path, error.Message, StringComparison.Ordinal);
        Assert.NotNull(error.Exception);

        Repair(path);
        await AdvanceUntilAsync(() => File.Exists(path) && File.ReadAllLines(path).Length == 5, "the five lines in the file");
        Assert.True(writer.TryWrite(Line(5)));
        await AdvanceUntilAsync(() => File.ReadAllLines(path).Length == 6, "a sixth line after the recovery");

        Assert.Equal(Enumerable.Range(0, 6).Select(Text), File.ReadAllLines(path));
        Assert.Single(_log.Collector.GetSnapshot(), r => r.Level == LogLevel.Error);
        Assert.Single(_log.Collector.GetSnapshot(), r => r.Id.Id == GatewayEventIds.AuditFileRecovered);
        Assert.Equal(0, writer.Dropped);
    }

    [Fact]
    public async Task FullQueue_DropsNewLines_AndCountsThem_ThenTheQueuedOnesAreWritten()
    {
        var path = Path.Combine(_directory, "audit.jsonl");
        Break(path, "the path is a directory");
        using var writer = new AuditFileWriter(path, capacity: 2, _time);

        // The writer takes line 0 and waits to retry it; two more fit in the queue, the rest are dropped.
        Assert.True(writer.TryWrite(Line(0)));
        await AdvanceUntilAsync(() => writer.FailedWrites >= 1, "the first failed attempt", advance: false);
        var accepted = Enumerable.Range(1, 10).Count(i => writer.TryWrite(Line(i)));

        Assert.Equal(2, accepted);
        Assert.Equal(8, writer.Dropped);

        Repair(path);
        await AdvanceUntilAsync(() => File.Exists(path) && File.ReadAllLines(path).Length == 3, "the three kept lines in the file");
        Assert.Equal([Text(0), Text(1), Text(2)], File.ReadAllLines(path));
        Assert.Equal(8, writer.Dropped);
    }

    [Fact]
    public async Task Dispose_WhileTheFileCannotBeWritten_CountsWhatWasNotWritten()
    {
        var path = Path.Combine(_directory, "audit.jsonl");
        Break(path, "the path is a directory");
        var writer = new AuditFileWriter(path, capacity: 10, _time) { DrainTimeout = TimeSpan.FromMilliseconds(50) };
        for (var i = 0; i < 5; i++)
        {
            writer.TryWrite(Line(i));
        }

        await AdvanceUntilAsync(() => writer.FailedWrites >= 1, "the first failed attempt", advance: false);
        writer.Dispose();

        Assert.Equal(5, writer.Dropped);
        Assert.False(writer.TryWrite(Line(5)));
        Assert.Equal(6, writer.Dropped);
    }

    [Fact]
    public async Task DroppedRecords_AreExposedAsLlmGatewayAuditDroppedTotal()
    {
        var path = Path.Combine(_directory, "audit.jsonl");
        Break(path, "the path is a directory");
        using var auditLog = new AuditFileLoggerProvider(path, capacity: 1, _time);
        using var services = new ServiceCollection().AddSingleton(auditLog).AddGatewayTelemetry().BuildServiceProvider();
        var bridge = services.GetRequiredService<MeterBridge>();
        services.GetRequiredService<GatewayMetrics>();
        var audit = auditLog.CreateLogger(AuditLog.Category);

        Assert.Equal(0, SampleValue(Scrape(bridge), "llm_gateway_audit_dropped_total"));
        AuditLog.AdminAction(audit, "halt-run", "run-0");
        await AdvanceUntilAsync(() => auditLog.Writer.FailedWrites >= 1, "the first failed attempt", advance: false);
        for (var i = 1; i <= 4; i++)
        {
            AuditLog.AdminAction(audit, "halt-run", $"run-{i}");
        }

        Assert.Equal(3, auditLog.Dropped);
        Assert.Equal(3, SampleValue(Scrape(bridge), "llm_gateway_audit_dropped_total"));
    }

    private static byte[] Line(int i) => Encoding.UTF8.GetBytes(Text(i));

    private static string Text(int i) => $"{{\"line\":{i}}}";

    private static void Break(string path, string failure)
    {
        if (failure == "the path is a directory")
        {
            Directory.CreateDirectory(path);
        }
        else
        {
            // Writes to /dev/full fail with ENOSPC, as on a full disk.
            File.CreateSymbolicLink(path, "/dev/full");
        }
    }

    private static void Repair(string path)
    {
        if (Directory.Exists(path))
        {
            Directory.Delete(path);
        }
        else
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// Moves the fake clock on by the retry delay until <paramref name="condition"/> holds. The writer runs on its own
    /// task, so it is polled (a bound on the number of rounds, not on time, ends a test that would hang).
    /// </summary>
    private async Task AdvanceUntilAsync(Func<bool> condition, string what, bool advance = true)
    {
        for (var round = 0; round < 1_000; round++)
        {
            if (condition())
            {
                return;
            }

            if (advance)
            {
                _time.Advance(AuditFileWriter.RetryDelay);
            }

            await Task.Delay(10);
        }

        Assert.Fail($"Timed out waiting for {what}.");
    }
}
