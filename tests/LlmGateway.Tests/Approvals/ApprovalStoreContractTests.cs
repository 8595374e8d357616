using System.Security.Cryptography;
using System.Text;
using LlmGateway.Approvals;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace LlmGateway.Tests.Approvals;

/// <summary>The semantics every <see cref="IApprovalStore"/> must have, run once per store by the subclasses.</summary>
public abstract class ApprovalStoreContractTests : IDisposable
{
    private readonly List<IApprovalStore> _stores = [];
    private IApprovalStore? _store;

    protected string Prefix { get; } = "test-" + Guid.NewGuid().ToString("N")[..12] + ":";

    protected IApprovalStore Store => _store ??= NewStore();

    /// <summary>The clock requests are stamped with (the store's own for the in-memory store).</summary>
    protected abstract TimeProvider Time { get; }

    public void Dispose()
    {
        foreach (var store in _stores)
        {
            (store as IDisposable)?.Dispose();
        }

        GC.SuppressFinalize(this);
    }

    [StoreFact]
    public async Task Open_NewBinding_IsPending_AndTheSameBindingJoinsIt()
    {
        var first = await Store.OpenAsync(Request("refund-1"));
        var repeat = await Store.OpenAsync(Request("refund-1"));

        Assert.True(first.Created);
        Assert.False(repeat.Created);
        Assert.Equal(ApprovalState.Pending, first.Approval.State);
        Assert.Equal(first.Approval.Id, repeat.Approval.Id);
        Assert.Equal("POST", repeat.Approval.Request.Method);
        Assert.Equal(["finance"], repeat.Approval.Request.Approvers);
    }

    [StoreFact]
    public async Task Open_AnotherBinding_OpensAnotherApproval()
    {
        var a = await Store.OpenAsync(Request("refund-1"));
        var b = await Store.OpenAsync(Request("refund-2"));

        Assert.True(b.Created);
        Assert.NotEqual(a.Approval.Id, b.Approval.Id);
    }

    [StoreFact]
    public async Task Decide_ApprovesOnce_ThenReportsAlreadyDecided_AndJoinsSeeTheDecision()
    {
        var opened = await Store.OpenAsync(Request("refund-3"));

        var decided = await Store.DecideAsync(new ApprovalDecision(opened.Approval.Id, true, "lead", "ok", null, Time.GetUtcNow()));
        var again = await Store.DecideAsync(new ApprovalDecision(opened.Approval.Id, false, "ops", "no", "approval_denied", Time.GetUtcNow()));
        var joined = await Store.OpenAsync(Request("refund-3"));

        Assert.Equal(ApprovalDecisionOutcome.Decided, decided.Outcome);
        Assert.Equal(ApprovalDecisionOutcome.AlreadyDecided, again.Outcome);
        Assert.Equal(ApprovalState.Approved, again.Approval!.State);
        Assert.Equal("lead", again.Approval.DecidedBy);
        Assert.False(joined.Created);
        Assert.Equal(ApprovalState.Approved, joined.Approval.State);
        Assert.Equal("ok", (await Store.GetAsync(opened.Approval.Id))!.Reason);
    }

    [StoreFact]
    public async Task Decide_Deny_KeepsTheDenialCode()
    {
        var opened = await Store.OpenAsync(Request("refund-4"));

        await Store.DecideAsync(new ApprovalDecision(opened.Approval.Id, false, "admin", "the run was halted", "run_halted", Time.GetUtcNow()));

        var denied = await Store.GetAsync(opened.Approval.Id);
        Assert.Equal(ApprovalState.Denied, denied!.State);
        Assert.Equal("run_halted", denied.DenialCode);
    }

    [StoreFact]
    public async Task Decide_UnknownOrMalformedId_IsNotFound()
    {
        var opened = await Store.OpenAsync(Request("refund-5"));
        var sameSlotOtherId = opened.Approval.Id[..^8] + "00000000";

        Assert.Equal(ApprovalDecisionOutcome.NotFound, (await Store.DecideAsync(new ApprovalDecision(sameSlotOtherId, true, "a", "r", null, Time.GetUtcNow()))).Outcome);
        Assert.Equal(ApprovalDecisionOutcome.NotFound, (await Store.DecideAsync(new ApprovalDecision("not-an-id", true, "a", "r", null, Time.GetUtcNow()))).Outcome);
        Assert.Null(await Store.GetAsync(sameSlotOtherId));
        Assert.Equal(ApprovalState.Pending, (await Store.GetAsync(opened.Approval.Id))!.State);
    }

    [StoreFact]
    public async Task ListPending_ListsUndecidedOnly()
    {
        var a = await Store.OpenAsync(Request("refund-6"));
        var b = await Store.OpenAsync(Request("refund-7"));
        await Store.DecideAsync(new ApprovalDecision(a.Approval.Id, true, "lead", "ok", null, Time.GetUtcNow()));

        var listing = await Store.ListPendingAsync(100);

        Assert.Equal(b.Approval.Id, Assert.Single(listing.Pending).Id);
        Assert.Empty(listing.ExpiredTools);
    }

    [StoreFact]
    public async Task PendingPastItsTtl_IsReportedExpiredOnce_AndTheBindingOpensANewApproval()
    {
        var opened = await Store.OpenAsync(Request("refund-8", pendingTtl: TimeSpan.FromMilliseconds(300)));
        await AdvanceAsync(TimeSpan.FromMilliseconds(600));

        var listing = await Store.ListPendingAsync(100);
        var again = await Store.ListPendingAsync(100);
        var reopened = await Store.OpenAsync(Request("refund-8"));

        Assert.Empty(listing.Pending);
        Assert.Single(listing.ExpiredTools);
        Assert.Empty(again.ExpiredTools);
        Assert.Null(await Store.GetAsync(opened.Approval.Id));
        Assert.True(reopened.Created);
        Assert.NotEqual(opened.Approval.Id, reopened.Approval.Id);
    }

    [StoreFact]
    public async Task ADecision_HoldsForItsTtl_ThenTheBindingNeedsANewApproval()
    {
        var opened = await Store.OpenAsync(Request("refund-9", decisionTtl: TimeSpan.FromMilliseconds(300)));
        await Store.DecideAsync(new ApprovalDecision(opened.Approval.Id, true, "lead", "ok", null, Time.GetUtcNow()));
        await AdvanceAsync(TimeSpan.FromMilliseconds(600));

        var reopened = await Store.OpenAsync(Request("refund-9"));

        Assert.True(reopened.Created);
        Assert.Equal(ApprovalState.Pending, reopened.Approval.State);
    }

    [StoreFact]
    public async Task WaitForChange_ReturnsOnceAnotherStoreInstanceDecides()
    {
        var other = NewStore();
        var opened = await Store.OpenAsync(Request("refund-10"));
        var waiting = Store.WaitForChangeAsync(opened.Approval.Id, TimeSpan.FromMinutes(5));

        await other.DecideAsync(new ApprovalDecision(opened.Approval.Id, true, "lead", "ok", null, Time.GetUtcNow()));
        await waiting;

        Assert.Equal(ApprovalState.Approved, (await Store.GetAsync(opened.Approval.Id))!.State);
    }

    protected ApprovalRequest Request(string body, TimeSpan? pendingTtl = null, TimeSpan? decisionTtl = null) => new()
    {
        Binding = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Prefix + body))),
        Tool = "ledger",
        Method = "POST",
        Path = "/refunds",
        User = "alice",
        KeyId = "alice-agent",
        RunId = "run-1",
        BodyPreview = body,
        Approvers = ["finance"],
        Now = Time.GetUtcNow(),
        PendingTtl = pendingTtl ?? TimeSpan.FromMinutes(10),
        DecisionTtl = decisionTtl ?? TimeSpan.FromMinutes(10),
    };

    protected IApprovalStore NewStore()
    {
        var store = CreateStore();
        _stores.Add(store);
        return store;
    }

    /// <summary>A store; for the in-memory store every "instance" is the same one (one process).</summary>
    protected abstract IApprovalStore CreateStore();

    /// <summary>Lets time pass for the store: the fake clock for the in-memory store, real time for Redis's expiry.</summary>
    protected abstract Task AdvanceAsync(TimeSpan time);
}

public sealed class InMemoryApprovalStoreTests : ApprovalStoreContractTests
{
    private readonly FakeTimeProvider _time = new();
    private InMemoryApprovalStore? _shared;

    protected override TimeProvider Time => _time;

    protected override IApprovalStore CreateStore() => _shared ??= new InMemoryApprovalStore(_time);

    protected override Task AdvanceAsync(TimeSpan time)
    {
        _time.Advance(time);
        return Task.CompletedTask;
    }
}

[RequiresRedisServer]
public sealed class RedisApprovalStoreTests(RedisServerFixture redis) : ApprovalStoreContractTests, IClassFixture<RedisServerFixture>
{
    protected override TimeProvider Time => TimeProvider.System;

    protected override IApprovalStore CreateStore()
    {
        if (!redis.IsRunning)
        {
            redis.Start();
        }

        return new RedisApprovalStore(redis.ConnectionString, Prefix, TimeSpan.FromSeconds(2), NullLogger.Instance);
    }

    protected override Task AdvanceAsync(TimeSpan time) => Task.Delay(time);
}
