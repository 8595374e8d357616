namespace LlmGateway.Budgets.Leases;

/// <summary>How <see cref="LeasedAdmissionStore"/> sizes and ages its blocks.</summary>
public sealed record LeaseOptions
{
    /// <summary>
    /// A block admits new calls for at most this long after it was granted (then it is returned as its calls finish).
    /// Bounds how late a halt, resume or limit change takes effect on a replica that missed its pub/sub message, and
    /// how much settled spend a crashed replica can leave unrecorded.
    /// </summary>
    public TimeSpan Window { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>A block takes at most this fraction of the scope's room left (every replica's blocks included).</summary>
    public double Fraction { get; init; } = 0.25;

    /// <summary>Calls the first block of a scope asks for.</summary>
    public long MinCalls { get; init; } = 8;

    /// <summary>Most calls one block may serve.</summary>
    public long MaxCalls { get; init; } = 4096;

    /// <summary>
    /// A replica that admitted this many of a run's calls in a row within a second (no other replica's in between) claims the run's
    /// exclusive block and decides its calls locally until another replica, a halt or a state read asks it to let go;
    /// 0 never claims (every call of a run is decided per call).
    /// </summary>
    public long RunClaimAfter { get; init; } = 8;

    /// <summary>How often blocks whose window passed are closed and returned (real time, through the injected clock).</summary>
    public TimeSpan SweepInterval { get; init; } = TimeSpan.FromMilliseconds(250);

    internal void Validate()
    {
        if (Window <= TimeSpan.Zero || SweepInterval <= TimeSpan.Zero || Fraction is <= 0 or > 1 || MinCalls < 1 || MaxCalls < MinCalls || RunClaimAfter < 0)
        {
            throw new ArgumentException("Invalid lease options: Window and SweepInterval must be positive, Fraction in (0, 1], 1 ≤ MinCalls ≤ MaxCalls.");
        }
    }
}
