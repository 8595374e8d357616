using System.Text;
using System.Text.Json;

namespace LlmGateway.MockLlm;

// One POST to a mock endpoint: its body, read and recorded, with the faults its headers ask for.
internal sealed class MockCall : IDisposable
{
    private readonly JsonDocument _document;

    private MockCall(HttpContext context, JsonDocument document, MockFaults faults)
    {
        Context = context;
        _document = document;
        Faults = faults;
        Model = Root.GetString("model") ?? MockLlmConstants.DefaultModel;
    }

    public HttpContext Context { get; }

    public IHeaderDictionary Headers => Context.Request.Headers;

    public JsonElement Root => _document.RootElement;

    public MockFaults Faults { get; }

    // The request's model, echoed in the reply.
    public string Model { get; }

    public bool Stream => Root.IsTrue("stream");

    public bool IncludeUsage => Root.GetPropertyOrDefault("stream_options").IsTrue("include_usage");

    // Records the request, then plays its faults. Null when the response has already been written.
    public static async Task<MockCall?> BeginAsync(HttpContext context, MockRequestLog log)
    {
        var body = await ReadBodyAsync(context.Request, context.RequestAborted);
        var document = TryParse(body);
        try
        {
            var root = document?.RootElement ?? default;
            Record(context, log, body, root.GetString("model"), root.IsTrue("stream"));

            var faults = MockFaults.Parse(context.Request.Headers, log);
            if (await faults.TryRespondAsync(context))
            {
                return null;
            }

            if (root.ValueKind != JsonValueKind.Object)
            {
                await MockFaults.WriteErrorAsync(context, StatusCodes.Status400BadRequest, "We could not parse the JSON body of your request.");
                return null;
            }

            var call = new MockCall(context, document!, faults);
            document = null;
            return call;
        }
        finally
        {
            document?.Dispose();
        }
    }

    public static void Record(HttpContext context, MockRequestLog log, ReadOnlySpan<byte> body, string? model, bool stream)
    {
        var request = context.Request;
        var headers = new Dictionary<string, string>(request.Headers.Count, StringComparer.OrdinalIgnoreCase);
        foreach (var header in request.Headers)
        {
            headers[header.Key] = header.Value.ToString();
        }

        log.Add(request.Method, (request.PathBase + request.Path).ToString(), model, Encoding.UTF8.GetString(body), headers, stream);
    }

    public void Dispose() => _document.Dispose();

    private static async Task<byte[]> ReadBodyAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        if (request.ContentLength is long length && length <= Array.MaxLength)
        {
            var body = new byte[length];
            await request.Body.ReadExactlyAsync(body, cancellationToken);
            return body;
        }

        using var stream = new MemoryStream();
        await request.Body.CopyToAsync(stream, cancellationToken);
        return stream.ToArray();
    }

    private static JsonDocument? TryParse(byte[] body)
    {
        try
        {
            return JsonDocument.Parse(body);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
