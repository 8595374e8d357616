namespace LlmGateway.Configuration;

/// <summary>The whole gateway policy: the <c>Gateway</c> section of config/gateway.json.</summary>
public sealed record GatewayOptions
{
    public const string SectionName = "Gateway";

    /// <summary>Redis connection string; empty means every store is in memory.</summary>
    public string? Redis { get; init; }

    /// <summary>Bearer key for /admin; from the environment (Gateway__AdminKey), never the committed file.</summary>
    public string? AdminKey { get; init; }

    /// <summary>A file that receives the audit trail (rejections, admin actions, tool calls) as JSON lines; read at start-up.</summary>
    public string? AuditLog { get; init; }

    public Dictionary<string, ProviderOptions> Providers { get; init; } = new(StringComparer.Ordinal);
    public Dictionary<string, ModelOptions> Models { get; init; } = new(StringComparer.Ordinal);
    public List<KeyOptions> Keys { get; init; } = [];
    public Dictionary<string, UserOptions> Users { get; init; } = new(StringComparer.Ordinal);
    public UserOptions UserDefaults { get; init; } = new();
    public Dictionary<string, TeamOptions> Teams { get; init; } = new(StringComparer.Ordinal);
    public RunOptions Runs { get; init; } = new();
    public CacheOptions Cache { get; init; } = new();
    public ResilienceOptions Resilience { get; init; } = new();
    public Dictionary<string, ToolOptions> Tools { get; init; } = new(StringComparer.Ordinal);

    /// <summary>How repeated tool calls with one Idempotency-Key are answered.</summary>
    public IdempotencyOptions Idempotency { get; init; } = new();

    /// <summary>Human approval of tool calls (rules with Approval: true).</summary>
    public ApprovalsOptions Approvals { get; init; } = new();

    public LimitsOptions Limits { get; init; } = new();
    public StoreOptions Store { get; init; } = new();
    public OtlpOptions Otlp { get; init; } = new();

    /// <summary>OpenTelemetry traces of LLM and tool calls.</summary>
    public TracingOptions Tracing { get; init; } = new();
    public MetricsExportOptions Metrics { get; init; } = new();
    public MockLlmOptions MockLlm { get; init; } = new();
}

/// <summary>What /metrics (and OTLP) export besides the gateway's own llm_gateway_* metrics; read at start-up.</summary>
public sealed record MetricsExportOptions
{
    /// <summary>
    /// Also export ASP.NET Core's and HttpClient's per-request meters (http_server_*, http_client_*). Off by default:
    /// they repeat what llm_gateway_request_duration_seconds and llm_gateway_upstream_duration_seconds measure, and
    /// recording them cost ~4 µs per call (~8 % of the gateway's CPU per request). Kestrel's connection meters and
    /// the runtime's (GC, thread pool) are always exported.
    /// </summary>
    public bool FrameworkMeters { get; init; }

    /// <summary>
    /// A port of its own for /metrics (on the same addresses as the gateway's): /metrics is then served there only,
    /// and nothing else is. 0 (default): /metrics on the gateway's port. Read at start-up.
    /// </summary>
    public int Port { get; init; }

    /// <summary>With <see cref="Port"/>: also answer /healthz and /readyz there (they stay on the gateway's port too).</summary>
    public bool Probes { get; init; }

    /// <summary>A bearer token /metrics requires (<c>Authorization: Bearer …</c>); empty = none. From the environment.</summary>
    public string? Key { get; init; }
}

/// <summary>Optional OTLP export of the same metrics /metrics serves, for an OpenTelemetry collector; read at start-up.</summary>
public sealed record OtlpOptions
{
    /// <summary>The collector's metrics URL, e.g. http://collector:4318/v1/metrics (OTLP over HTTP/protobuf); empty = off.</summary>
    public string? Endpoint { get; init; }

    /// <summary>How often metrics are pushed.</summary>
    public TimeSpan Interval { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Headers sent with every export (e.g. an API key of the collector); never logged.</summary>
    public Dictionary<string, string> Headers { get; init; } = new(StringComparer.OrdinalIgnoreCase);
}

/// <summary>What the budget and rate-limit store does when Redis cannot answer in time.</summary>
public enum StoreFailurePolicy
{
    /// <summary>Refuse the call with 503 store_unavailable: no spend without accounting.</summary>
    Deny,

    /// <summary>Let the call through unaccounted; it is logged and counted.</summary>
    Allow,
}

/// <summary>The budget/limit store (in memory, or Redis when Gateway:Redis is set).</summary>
public sealed record StoreOptions
{
    /// <summary>
    /// PEM file of the certificate authority (or the self-signed certificate) that issued Redis's TLS certificate, for a
    /// Redis whose issuer is not in the machine's trust store (self-hosted with a private CA). Managed Redis presents
    /// publicly trusted certificates and needs none. Read at start-up; use with <c>ssl=true</c> in Gateway:Redis.
    /// </summary>
    public string? TlsCaFile { get; init; }

    /// <summary>Prefix of every Redis key, so several gateways can share one Redis.</summary>
    public string KeyPrefix { get; init; } = "llmgw:";

    /// <summary>Longest time one admission or settlement may take before the policy applies (default 100 ms).</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMilliseconds(100);

    public StoreFailurePolicy OnUnavailable { get; init; } = StoreFailurePolicy.Deny;

    /// <summary>How long a reservation holds if its gateway dies before settling it (default 10 minutes).</summary>
    public TimeSpan ReservationTtl { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// In-memory store (no Gateway:Redis): most runs tracked at once (default 250,000; ~620 bytes each). Read at start-up.
    /// When full, runs idle past Runs:IdleExpiry are swept, then a call that would start a new run is refused with a
    /// retryable 503 store_full; runs already tracked go on. A tracked run is never evicted: that would forget its spend.
    /// </summary>
    public int MaxRuns { get; init; } = 250_000;

    /// <summary>
    /// Redis only: admit budget-only calls on leased blocks of each user's and team's remaining budget instead of one
    /// script per call (docs/redis-scale-out.md, README "Leases"). Off by default. Read at start-up.
    /// </summary>
    public bool Leases { get; init; }

    /// <summary>
    /// With <see cref="Leases"/>: a replica that admitted this many of a run's calls in a row within a second (no other replica's in
    /// between) owns the run and decides its calls locally until asked to let go (docs/redis-scale-out.md, "Runs:
    /// exclusive run blocks"). Default 8; 0 never claims a run. Read at start-up.
    /// </summary>
    public int LeaseRunClaimAfter { get; init; } = 8;

    /// <summary>
    /// Redis only: after every script (admissions, settlements, leases, halts, run ledger, idempotency claims, recordings,
    /// their indexes, approvals, the in-run tool cache's generations;
    /// not the response cache or plain commands, see README),
    /// wait until this many replicas acknowledge its writes (Redis WAIT, pipelined after the script, for at most half of
    /// <see cref="Timeout"/>: a shortfall is known while the caller still waits, so what the script took is given back
    /// at once). 0 (the default) never waits: a fail-over then loses the writes the old primary had not
    /// yet replicated, and with them spend the clients were told about. With 1 or more, a write too few replicas hold
    /// counts as the store being unavailable (<see cref="OnUnavailable"/>), and what it admitted is given back.
    /// Read at start-up.
    /// </summary>
    public int WaitForReplicas { get; init; }
}

/// <summary>A gateway key: who the caller is and what it may use.</summary>
public sealed record KeyOptions
{
    /// <summary>The key in plain text (development only).</summary>
    public string? Key { get; init; }

    /// <summary>Hex SHA-256 of the key: what production configs should hold.</summary>
    public string? KeySha256 { get; init; }

    /// <summary>A name for the key in logs and audits; defaults to the first 8 hex digits of its hash.</summary>
    public string? Id { get; init; }

    public string? User { get; init; }

    /// <summary>Models this key may use; empty means all.</summary>
    public List<string> Models { get; init; } = [];

    /// <summary>Allow rules per tool (a tool with no rules cannot be called with this key).</summary>
    public Dictionary<string, List<ToolRuleOptions>> Tools { get; init; } = new(StringComparer.Ordinal);

    public int Rpm { get; init; }
    public int Tpm { get; init; }

    /// <summary>May record runs with X-Gateway-Record (default false: 403 permission_denied, recordings take memory).</summary>
    public bool AllowRecord { get; init; }
}

/// <summary>Per-user policy.</summary>
public sealed record UserOptions
{
    public string? Team { get; init; }
    public BudgetOptions? Budget { get; init; }
    public int? Rpm { get; init; }
    public int? Tpm { get; init; }
    public double? DowngradeAt { get; init; }

    /// <summary>At most this many of the user's calls in flight at once; beyond, 429 rate_limit_exceeded.</summary>
    public int? MaxInFlight { get; init; }

    public RunOptions? Runs { get; init; }
}

public sealed record TeamOptions
{
    public BudgetOptions? Budget { get; init; }
}

/// <summary>A spending limit over a period; 0 or absent means no limit.</summary>
public sealed record BudgetOptions
{
    public decimal Usd { get; init; }
    public long Tokens { get; init; }
    public BudgetPeriod Period { get; init; } = BudgetPeriod.Day;
}

public enum BudgetPeriod
{
    Day,
    Week,
    Month,
    Total,
}

/// <summary>Per-run limits, keyed by X-Run-Id.</summary>
public sealed record RunOptions
{
    public decimal Usd { get; init; }
    public long Tokens { get; init; }
    public int Calls { get; init; }
    public TimeSpan? Deadline { get; init; }
    public int MaxRepeats { get; init; }

    /// <summary>At most this many calls of one run in flight at once.</summary>
    public int MaxInFlight { get; init; }

    /// <summary>Largest prompt (estimated tokens) one call of a run may send; beyond, 400 context_length_exceeded.</summary>
    public long MaxInputTokens { get; init; }

    /// <summary>Run state is forgotten this long after the run's last call (read at start-up).</summary>
    public TimeSpan IdleExpiry { get; init; } = TimeSpan.FromHours(24);
}

/// <summary>The response cache and the record/replay of agent runs.</summary>
public sealed record CacheOptions
{
    public bool Enabled { get; init; }

    /// <summary>How long an answer is served; X-Gateway-Cache-Ttl may shorten it for one request, never lengthen it.</summary>
    public TimeSpan Ttl { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Who may be served an answer cached for someone else: "User" (default), "Team" or "Global".</summary>
    public string Scope { get; init; } = "User";

    /// <summary>Largest answer stored (bytes of its normalized body); larger answers are not cached. Default 1 MiB.</summary>
    public long MaxEntryBytes { get; init; } = 1024 * 1024;

    /// <summary>Bytes the in-memory store may hold before it evicts the least recently used entries. Default 64 MiB.</summary>
    public long MemoryMaxBytes { get; init; } = 64 * 1024 * 1024;

    /// <summary>Charge a hit to budgets as if it had been served by the provider (default false: a hit costs 0).</summary>
    public bool ChargeHits { get; init; }

    /// <summary>How long identical concurrent misses wait for the first one's answer before going upstream themselves.</summary>
    public TimeSpan SingleFlightWait { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a recorded run (X-Gateway-Record) is kept after its last step. Default 7 days.</summary>
    public TimeSpan RecordingTtl { get; init; } = TimeSpan.FromDays(7);

    /// <summary>Bytes all recordings kept in this process's memory may take together; the least recently recorded go first. Default 128 MiB.</summary>
    public long RecordingMaxBytes { get; init; } = 128L * 1024 * 1024;

    /// <summary>Recordings kept (in memory, or in Redis's index); beyond, the least recently recorded go first. Default 1000.</summary>
    public int RecordingMaxRuns { get; init; } = 1000;

    /// <summary>Bytes one recording may take (memory and Redis); a step past it, and every later step of the run, is not recorded. Default 16 MiB.</summary>
    public long RecordingMaxRunBytes { get; init; } = 16L * 1024 * 1024;
}

/// <summary>Idempotency-Key handling of tool calls.</summary>
public sealed record IdempotencyOptions
{
    /// <summary>How long a completed response is kept and replayed (default 24 h).</summary>
    public TimeSpan Ttl { get; init; } = TimeSpan.FromHours(24);

    /// <summary>How long a repeat waits for the first call still in flight before 409 idempotency_in_progress.</summary>
    public TimeSpan WaitTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Largest response body stored for replay; a larger one is passed on and its repeats get status and headers only.</summary>
    public long MaxStoredResponseBytes { get; init; } = 1024 * 1024;

    /// <summary>
    /// In-memory store (no Gateway:Redis): most keys held at once, in flight or completed (default 100,000). Read at
    /// start-up. When full, a new key is refused with a retryable 503 store_full until entries expire; live ones are never evicted.
    /// </summary>
    public int MaxEntries { get; init; } = 100_000;

    /// <summary>In-memory store: most bytes its keys and stored responses take (default 256 MiB); read at start-up. See <see cref="MaxEntries"/>.</summary>
    public long MaxBytes { get; init; } = 256L * 1024 * 1024;
}

/// <summary>Request limits enforced before anything is forwarded.</summary>
public sealed record LimitsOptions
{
    /// <summary>Largest accepted request body; default 8 MiB.</summary>
    public long MaxRequestBodyBytes { get; init; } = 8 * 1024 * 1024;

    /// <summary>Largest non-streamed upstream response the gateway buffers to read its usage; default 64 MiB.</summary>
    public long MaxResponseBodyBytes { get; init; } = 64 * 1024 * 1024;

    /// <summary>Largest worst-case cost (USD) one request may reserve; 0 = no ceiling.</summary>
    public decimal MaxRequestUsd { get; init; }
}

/// <summary>The bundled mock provider, mapped inside the gateway for the quick start.</summary>
public sealed record MockLlmOptions
{
    public bool Enabled { get; init; }
    public string Path { get; init; } = "/mock";
}
