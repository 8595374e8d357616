using System.Buffers.Binary;
using System.Globalization;
using LlmGateway.Budgets;
using LlmGateway.Redis;
using StackExchange.Redis;

namespace LlmGateway.Deployments;

/// <summary>
/// The deployments' windows in Redis, shared by every replica: one hash per deployment, <c>{prefix}{d:model:deployment}</c>
/// (one key, so one hash slot: runs on Redis Cluster). The window is the gateway key's window of the admission scripts,
/// run on that hash: the same Lua (<see cref="RedisAdmissionScripts.ReserveScopes"/>' keyRead/keyCheck/keyHold and
/// <see cref="RedisAdmissionScripts.FinishScopes"/>' keyFinish), so the rules are stated once.
/// </summary>
internal sealed class RedisDeploymentRateStore(RedisConnection redis, string keyPrefix, TimeSpan timeout, TimeProvider time) : IDeploymentRateStore
{
    /// <summary>A window hash outlives its last call's 61 s by this much; only garbage collection, decisions use its stored seconds.</summary>
    private const int KeyLifeMs = 120_000;

    // The Reserve numbers: 32 doubles (see RedisAdmissionScripts.Reserve), of which the window reads now, tokens, key rpm, key tpm.
    private const int ReserveNumbers = 32;
    private const int ReserveNow = 0, ReserveTokens = 3, ReserveKeyRpm = 25, ReserveKeyTpm = 26;

    // The Finish numbers: 18 doubles: now, mode (1 settle), expiry second, admission second, reserved usd, reserved tokens, actual usd, actual tokens, ...
    private const int FinishNumbers = 18;

    public static readonly RedisScript Take = new("deployment-take", RedisAdmissionScripts.Prelude + RedisAdmissionScripts.ReserveScopes + """
        call(ARGV[1], '', '', '', ARGV[2])
        keyRead(KEYS[1])
        local rank, _, _, _, _, retry = keyCheck(99)
        if rank ~= PASS then
          -- Refused: the seconds the window purged are deleted already, so its counters must be written too.
          keyKeep()
          flush()
          return { 0, retry }
        end
        keyHold()
        flush()
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        return { 1, 0 }
        """);

    public static readonly RedisScript Settle = new("deployment-settle", RedisAdmissionScripts.Prelude + RedisAdmissionScripts.FinishScopes + """
        call(ARGV[1], '', '', ARGV[2])
        keyFinish(KEYS[1])
        flush()
        return 1
        """);

    public async ValueTask<DeploymentRateResult> TryTakeAsync(DeploymentRoute deployment, long tokens, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var second = AdmissionConstants.Second(now);
        var numbers = new byte[ReserveNumbers * sizeof(double)];
        Put(numbers, ReserveNow, now);
        Put(numbers, ReserveTokens, tokens);
        Put(numbers, ReserveKeyRpm, deployment.Rpm);
        Put(numbers, ReserveKeyTpm, deployment.Tpm);
        var reply = await EvaluateAsync(Take, KeyOf(deployment), [numbers, WindowField(second), KeyLifeMs], cancellationToken).ConfigureAwait(false);
        var values = (RedisResult[])reply!;
        if ((long)values[0] == 1)
        {
            return new DeploymentRateResult(true, new DeploymentRateTicket(second, tokens), null);
        }

        var retryMs = (long)values[1];
        return new DeploymentRateResult(false, default, retryMs < 0 ? null : TimeSpan.FromMilliseconds(Math.Max(0, retryMs)));
    }

    public async ValueTask SettleAsync(DeploymentRoute deployment, DeploymentRateTicket ticket, long usedTokens)
    {
        var numbers = new byte[FinishNumbers * sizeof(double)];
        Put(numbers, 0, time.GetUtcNow().ToUnixTimeMilliseconds());
        Put(numbers, 1, 1);
        Put(numbers, 3, ticket.Second);
        Put(numbers, 5, ticket.ReservedTokens);
        Put(numbers, 7, usedTokens);
        try
        {
            await EvaluateAsync(Settle, KeyOf(deployment), [numbers, WindowField(ticket.Second)], CancellationToken.None).ConfigureAwait(false);
        }
        catch (AdmissionStoreUnavailableException)
        {
            // The reservation stays as taken: the window over-counts this call's tokens until it leaves, never under-counts.
        }
    }

    private RedisKey KeyOf(DeploymentRoute deployment) => keyPrefix + "{d:" + deployment.Model + ":" + deployment.Name + "}";

    private static string WindowField(long second) => "w" + second.ToString(CultureInfo.InvariantCulture);

    private static void Put(byte[] numbers, int index, double value) =>
        BinaryPrimitives.WriteDoubleLittleEndian(numbers.AsSpan(index * sizeof(double)), value);

    private async ValueTask<RedisResult> EvaluateAsync(RedisScript script, RedisKey key, RedisValue[] args, CancellationToken cancellationToken)
    {
        var call = redis.EvaluateAsync(script, [key], args);
        try
        {
            return await call.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception exception) when (RedisConnection.IsUnavailable(exception))
        {
            RedisConnection.Observe(call);
            throw new AdmissionStoreUnavailableException($"The deployment rate store did not answer: {exception.GetType().Name}.", exception);
        }
    }
}
