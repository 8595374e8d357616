namespace LlmGateway.MockLlm;

// The shared frame of the POST endpoints: record, play faults, answer; a client that hangs up ends the request quietly.
internal abstract class MockHandler(MockRequestLog log)
{
    public async Task HandleAsync(HttpContext context)
    {
        try
        {
            using var call = await MockCall.BeginAsync(context, log);
            if (call is not null)
            {
                await RespondAsync(call);
            }
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
        }
    }

    protected abstract Task RespondAsync(MockCall call);
}
