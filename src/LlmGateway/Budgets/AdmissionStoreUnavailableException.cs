namespace LlmGateway.Budgets;

/// <summary>
/// The admission store could not answer in time (Redis down, slow or restarting). The gateway maps it to
/// 503 <c>store_unavailable</c> or lets the call through, per policy; the store reconnects by itself.
/// </summary>
public sealed class AdmissionStoreUnavailableException : Exception
{
    public AdmissionStoreUnavailableException()
        : this("The budget and rate-limit store is unavailable.")
    {
    }

    public AdmissionStoreUnavailableException(string message)
        : base(message)
    {
    }

    public AdmissionStoreUnavailableException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}
