using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;
using Xunit;

namespace LlmGateway.EndToEnd.Tests.Redis;

/// <summary>
/// The cluster fail-over tests' load: two gateway replicas on one cluster, <see cref="Users"/> users (<c>f0</c>…) with
/// large day budgets, workers sending metered calls to both replicas in turn until stopped (at most 2 minutes), and what
/// the clients were told each call cost. A user's keys share the hash tag <c>{u:name}</c> (one slot), so a user is on
/// the killed master (the victim) or not. Every reply must be 200, or 503 <c>store_unavailable</c> for a victim user;
/// anything else is collected in <see cref="Unexpected"/>.
/// </summary>
internal sealed class ClusterFailoverLoad(RedisClusterFixture cluster, bool[] onVictim)
{
    public const int Users = 12;
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);
    private readonly ConcurrentDictionary<int, decimal> _told = new();
    private readonly ConcurrentBag<string> _unexpected = [];
    private int _calls;
    private int _victimRefused;
    private int _othersServedWhileDown;
    private int _victimServed;
    private volatile bool _down;

    public IReadOnlyCollection<string> Unexpected => _unexpected;

    public int Calls => Volatile.Read(ref _calls);

    /// <summary>503 <c>store_unavailable</c> to victim users.</summary>
    public int VictimRefused => Volatile.Read(ref _victimRefused);

    /// <summary>Answers to the other users while <see cref="Down"/> was set when the call started and ended.</summary>
    public int OthersServedWhileDown => Volatile.Read(ref _othersServedWhileDown);

    /// <summary>Answers to victim users since <see cref="ResetVictimServed"/>.</summary>
    public int VictimServed => Volatile.Read(ref _victimServed);

    public bool Down
    {
        get => _down;
        set => _down = value;
    }

    /// <summary>The master that owns user 0's slot, and which users share it.</summary>
    public static (int Victim, bool[] OnVictim) PickVictim(RedisClusterFixture cluster)
    {
        var owners = Enumerable.Range(0, Users).Select(u => cluster.OwnerOf(cluster.Slot("{u:f" + u + "}"))).ToArray();
        var onVictim = owners.Select(o => o == owners[0]).ToArray();
        Assert.Contains(false, onVictim);
        return (owners[0], onVictim);
    }

    /// <summary>The surviving masters serve their slots while one is down (the default refuses every key then).</summary>
    public static void AllowPartialCoverage(RedisClusterFixture cluster)
    {
        foreach (var reply in cluster.OnEveryNode("CONFIG SET cluster-require-full-coverage no"))
        {
            Assert.StartsWith("+OK", reply, StringComparison.Ordinal);
        }
    }

    /// <summary>A gateway on the cluster; <paramref name="store"/> adds settings to <c>Gateway:Store</c> (JSON members, comma first).</summary>
    public static string Config(RedisClusterFixture cluster, MockLlmServer mock, string prefix, string store = "") => $$"""
    {
      "Gateway": {
        "Redis": "{{cluster.ConnectionString}}",
        "AdminKey": "{{TestConfigs.AdminKey}}",
        "Store": { "OnUnavailable": "Deny", "Timeout": "00:00:00.500", "KeyPrefix": "{{prefix}}"{{store}} },
        "Providers": { "mock": { "BaseUrl": "{{mock.BaseUrl}}/v1" } },
        "Models": { "metered": { "Provider": "mock", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 1000, "DefaultMaxOutputTokens": 10 } },
        "Keys": [ {{string.Join(", ", Enumerable.Range(0, Users).Select(u => $$"""{ "Key": "sk-f{{u}}", "User": "f{{u}}" }"""))}} ],
        "Users": { {{string.Join(", ", Enumerable.Range(0, Users).Select(u => $$""" "f{{u}}": { "Budget": { "Usd": 1000.0, "Period": "Day" } } """))}} }
      }
    }
    """;

    /// <summary>Six workers, until <paramref name="stop"/> (or 2 minutes each): a bound on calls could run out while a node was still coming back.</summary>
    public Task[] Start(GatewayServer a, GatewayServer b, CancellationToken stop) =>
        Enumerable.Range(0, 6).Select(w => Task.Run(() => WorkAsync(w, a, b, stop))).ToArray();

    public void ResetVictimServed() => Interlocked.Exchange(ref _victimServed, 0);

    public async Task Until(Func<bool> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < Bound, $"waited {Bound.TotalSeconds:0} s for {what} ({Calls} calls, {VictimRefused} refused on the victim, "
                + $"{VictimServed} served there since, {OthersServedWhileDown} served elsewhere while it was down)");
            await Task.Delay(50);
        }
    }

    /// <summary>
    /// No drift: every user's spend comes to exactly what their clients were told (settlements that failed while a node
    /// was away are retried in the background). Holds are not checked: an admission that ran on the master just before it
    /// died, its reply lost, was refused to its client and holds until its TTL, as documented.
    /// </summary>
    public async Task AssertNoDriftAsync(GatewayServer gateway)
    {
        for (var u = 0; u < Users; u++)
        {
            var told = _told.GetValueOrDefault(u);
            var last = -1m;
            var clock = Stopwatch.StartNew();
            while (last != told && clock.Elapsed < Bound)
            {
                using var response = await gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, "/admin/users/f" + u));
                last = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("spent_usd").GetDecimal();
                if (last != told)
                {
                    await Task.Delay(200);
                }
            }

            Assert.True(last == told, $"f{u} (on the victim: {onVictim[u]}): spent {last}, told {told}");
        }
    }

    public string Summary(int victim) =>
        $"victim node {victim} (port {cluster.Ports[victim]}) owns {onVictim.Count(v => v)} of {Users} users; {Calls} calls, "
        + $"{VictimRefused} refused 503 on its slots, {OthersServedWhileDown} served on the other nodes while it was down";

    private async Task WorkAsync(int worker, GatewayServer a, GatewayServer b, CancellationToken stop)
    {
        var bound = Stopwatch.StartNew();
        for (var i = 0; !stop.IsCancellationRequested && bound.Elapsed < TimeSpan.FromMinutes(2); i++)
        {
            var user = ((worker * 7) + i) % Users;
            var tokens = 1 + (i % 5);
            var down = _down;
            using var response = await (i % 2 == 0 ? a : b).Client.SendAsync(BudgetCalls.Metered("sk-f" + user, tokens: tokens, content: $"w{worker} {i}"), CancellationToken.None);
            Interlocked.Increment(ref _calls);
            if (response.StatusCode == HttpStatusCode.OK)
            {
                _told.AddOrUpdate(user, tokens * 0.001m, (_, sum) => sum + (tokens * 0.001m));
                if (down && _down && !onVictim[user])
                {
                    Interlocked.Increment(ref _othersServedWhileDown);
                }

                if (onVictim[user])
                {
                    Interlocked.Increment(ref _victimServed);
                }
            }
            else if (response.StatusCode == HttpStatusCode.ServiceUnavailable && onVictim[user])
            {
                var code = (await Http.ErrorOf(response)).GetProperty("code").GetString();
                if (code != "store_unavailable")
                {
                    _unexpected.Add($"f{user}: 503 {code}");
                }

                Interlocked.Increment(ref _victimRefused);
            }
            else
            {
                _unexpected.Add($"f{user} (on the victim: {onVictim[user]}, node down: {down}): {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(CancellationToken.None)}");
            }
        }
    }
}
