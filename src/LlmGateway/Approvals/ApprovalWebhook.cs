using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Threading.Channels;
using LlmGateway.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace LlmGateway.Approvals;

/// <summary>
/// Sends a JSON notice of each new pending approval to Gateway:Approvals:WebhookUrl, from a bounded queue and one
/// background loop: a held call only enqueues (a full queue drops the notice and logs it), so a slow or hanging
/// receiver delays nothing. Each notice gets WebhookAttempts attempts of at most WebhookTimeout each (Polly retry and
/// timeout). The notice names the call (tool, method, path, user, run) but carries neither its body nor its query.
/// </summary>
internal sealed class ApprovalWebhook : BackgroundService
{
    private const int Capacity = 1000;

    private readonly Channel<ApprovalRecord> _queue = Channel.CreateBounded<ApprovalRecord>(new BoundedChannelOptions(Capacity)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
        SingleReader = true,
    });

    private readonly GatewayConfigProvider _config;
    private readonly TimeProvider _time;
    private readonly ILogger<ApprovalWebhook> _logger;
    private readonly ApprovalMetrics _metrics;
    private readonly HttpClient _client = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) }) { Timeout = Timeout.InfiniteTimeSpan };

    public ApprovalWebhook(GatewayConfigProvider config, TimeProvider time, ApprovalMetrics metrics, ILogger<ApprovalWebhook> logger)
    {
        _config = config;
        _time = time;
        _metrics = metrics;
        _logger = logger;
    }

    /// <summary>Queues a notice when a webhook is configured; never waits.</summary>
    public void Notify(ApprovalRecord approval)
    {
        if (string.IsNullOrEmpty(_config.Current.Options.Approvals.WebhookUrl))
        {
            return;
        }

        if (!_queue.Writer.TryWrite(approval))
        {
            ApprovalLog.WebhookDropped(_logger, approval.Id, _queue.Reader.Count);
            _metrics.RecordWebhook(ApprovalConstants.WebhookDropped);
        }
    }

    public override void Dispose()
    {
        _client.Dispose();
        base.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await foreach (var approval in _queue.Reader.ReadAllAsync(stoppingToken).ConfigureAwait(false))
            {
                await SendAsync(approval, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task SendAsync(ApprovalRecord approval, CancellationToken stoppingToken)
    {
        var options = _config.Current.Options.Approvals;
        if (string.IsNullOrEmpty(options.WebhookUrl))
        {
            return;
        }

        var body = Serialize(approval, options);
        var attempts = 0;
        var pipeline = new ResiliencePipelineBuilder { TimeProvider = _time }
            .AddRetry(new RetryStrategyOptions
            {
                MaxRetryAttempts = Math.Max(1, options.WebhookAttempts - 1),
                BackoffType = DelayBackoffType.Exponential,
                Delay = TimeSpan.FromMilliseconds(500),
                UseJitter = true,
                ShouldHandle = new PredicateBuilder().Handle<HttpRequestException>().Handle<TimeoutRejectedException>().Handle<WebhookRejectedException>(),
            })
            .AddTimeout(options.WebhookTimeout)
            .Build();
        try
        {
            await pipeline.ExecuteAsync(
                async token =>
                {
                    attempts++;
                    using var request = new HttpRequestMessage(HttpMethod.Post, options.WebhookUrl) { Content = new ByteArrayContent(body) };
                    request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
                    foreach (var (name, value) in options.WebhookHeaders)
                    {
                        request.Headers.TryAddWithoutValidation(name, value);
                    }

                    using var response = await _client.SendAsync(request, token).ConfigureAwait(false);
                    if (!response.IsSuccessStatusCode)
                    {
                        throw new WebhookRejectedException((int)response.StatusCode);
                    }
                },
                stoppingToken).ConfigureAwait(false);
            _metrics.RecordWebhook(ApprovalConstants.WebhookDelivered);
        }
        catch (Exception exception) when (exception is HttpRequestException or TimeoutRejectedException or WebhookRejectedException)
        {
            ApprovalLog.WebhookFailed(_logger, approval.Id, attempts, exception.Message);
            _metrics.RecordWebhook(ApprovalConstants.WebhookFailed);
        }
    }

    private static byte[] Serialize(ApprovalRecord approval, ApprovalsOptions options)
    {
        var request = approval.Request;
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(512);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("type", "approval_pending");
            json.WriteString("id", approval.Id);
            json.WriteString("tool", request.Tool);
            json.WriteString("method", request.Method);
            json.WriteString("path", request.Path);
            json.WriteString("user", request.User);
            json.WriteString("key", request.KeyId);
            json.WriteString("run", request.RunId);
            json.WriteNumber("body_bytes", request.BodyBytes);
            json.WriteString("created_at", approval.CreatedAt.ToString("O", CultureInfo.InvariantCulture));
            json.WriteString("expires_at", (approval.CreatedAt + options.PendingTtl).ToString("O", CultureInfo.InvariantCulture));
            json.WriteString("approve", $"/admin/approvals/{approval.Id}/approve");
            json.WriteString("deny", $"/admin/approvals/{approval.Id}/deny");
            json.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    private sealed class WebhookRejectedException(int status) : Exception($"the receiver answered {status}");
}
