using System.Buffers.Binary;
using System.Globalization;
using LlmGateway.Redis;
using StackExchange.Redis;

namespace LlmGateway.Budgets.Leases;

/// <summary>Versions and their pub/sub messages, the sweep that closes and returns blocks, and the Redis calls.</summary>
internal sealed partial class LeasedAdmissionStore
{
    /// <summary>Bumps a scope's lease version, telling every replica (this one at once) to drop its blocks.</summary>
    private async ValueTask BumpAsync(string control, CancellationToken cancellationToken)
    {
        var version = (long)(await EvaluateAsync(LeaseScripts.Bump, [control], [_channelName], cancellationToken).ConfigureAwait(false));
        await InvalidateAsync(control, version).ConfigureAwait(false);
    }

    private async Task InvalidateAsync(string control, long version)
    {
        foreach (var scope in _scopes.Values)
        {
            if (scope.Control != control)
            {
                continue;
            }

            lock (scope.Gate)
            {
                scope.KnownVersion = Math.Max(scope.KnownVersion, version);
                if (scope.Open is { } open && open.Version < version)
                {
                    CloseLocked(scope, open);
                }
            }

            await FlushClosedAsync(scope).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Closes blocks whose window passed, returns closed blocks' unused room and charges open budget blocks' settled
    /// calls (timer, every SweepInterval).
    /// </summary>
    private void Sweep()
    {
        if (_stopped)
        {
            return;
        }

        var now = NowMs();
        SweepRuns(now);
        foreach (var scope in _scopes.Values)
        {
            bool flush;
            LeaseBlock? charge = null;
            lock (scope.Gate)
            {
                if (scope.Open is { } open && (now >= open.OpenUntilMs || open.Version < scope.KnownVersion))
                {
                    CloseLocked(scope, open);
                }
                else if (scope.Open is { } admitting && scope.Kind == LeaseKind.Budget && !admitting.Used.IsZero)
                {
                    charge = admitting;
                }

                flush = scope.Closed.Exists(block => !block.Used.IsZero || block.Granted != block.Held);
                if (scope.Open is null && scope.Closed.Count == 0 && scope.Granting is null && scope.PeriodEndMs > 0 && scope.PeriodEndMs < now)
                {
                    _scopes.TryRemove(scope.Id, out _);
                }
            }

            if (flush)
            {
                Observe(FlushClosedAsync(scope).AsTask());
            }

            if (charge is not null)
            {
                Observe(ChargeAsync(charge).AsTask());
            }
        }
    }

    private static void Observe(Task task) => task.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    private async Task EnsureSubscribedAsync()
    {
        if (Volatile.Read(ref _subscribed))
        {
            return;
        }

        await _subscribing.WaitAsync().ConfigureAwait(false);
        try
        {
            if (!_subscribed && !_stopped)
            {
                var connection = await _redis.ConnectAsync().ConfigureAwait(false);
                if (!_watching)
                {
                    connection.ConnectionFailed += _onConnectionFailed;
                    connection.ConfigurationChanged += _onConfigurationChanged;
                    _watching = true;
                }

                await connection.GetSubscriber().SubscribeAsync(_channel, _onMessage).WaitAsync(_timeout * 2).ConfigureAwait(false);
                Volatile.Write(ref _subscribed, true);
            }
        }
        catch (Exception exception) when (RedisConnection.IsUnavailable(exception))
        {
            // Without the messages a halt still takes effect when the blocks' window ends; the next grant tries again.
        }
        finally
        {
            _subscribing.Release();
        }
    }

    private void Unsubscribe()
    {
        var connection = _redis.ConnectAsync();
        if (_watching && connection.IsCompletedSuccessfully)
        {
            connection.Result.ConnectionFailed -= _onConnectionFailed;
            connection.Result.ConfigurationChanged -= _onConfigurationChanged;
            _watching = false;
        }

        if (Volatile.Read(ref _subscribed))
        {
            Volatile.Write(ref _subscribed, false);
            if (connection.IsCompletedSuccessfully)
            {
                // Only this store's handler goes: another store on the same connection keeps its own.
                Observe(connection.Result.GetSubscriber().UnsubscribeAsync(_channel, _onMessage));
            }
        }
    }

    /// <summary>
    /// A connection to a Redis server failed, or a server's role or the cluster's slots changed: every open block closes
    /// and admits nothing more (its calls in flight finish; its room goes back once Redis answers). After a fail-over
    /// the promoted replica may have lost the writes that set a block's room aside, so a block must not outlive the
    /// connection it was granted on: the calls admitted without Redis are then at most those already in flight, as on
    /// the per-call path. Redis's next grant decides from what the current primary holds.
    /// </summary>
    private void OnConnectionLost(string reason)
    {
        Interlocked.Increment(ref _connectionEpoch);
        foreach (var scope in _scopes.Values)
        {
            lock (scope.Gate)
            {
                if (scope.Open is { } open)
                {
                    CloseLocked(scope, open);
                }
            }
        }

        CloseAllRuns();
        _metrics?.LeaseBlocksClosedOnConnectionLoss();
        LeaseLog.BlocksClosed(_logger, reason);
        Interlocked.Increment(ref _connectionLosses);
    }

    /// <summary>"control-key version" from a grant that saw new limits, or from a halt or resume on any replica.</summary>
    private void OnMessage(RedisChannel channel, RedisValue message)
    {
        if (_stopped)
        {
            return;
        }

        var text = message.ToString();
        var space = text.LastIndexOf(' ');
        if (space <= 0 || !long.TryParse(text.AsSpan(space + 1), NumberStyles.Integer, CultureInfo.InvariantCulture, out var version))
        {
            return;
        }

        var control = text[..space];
        if (TryLetGo(control))
        {
            return;
        }

        Observe(InvalidateAsync(control, version).ContinueWith(_ => Interlocked.Increment(ref _invalidations), TaskScheduler.Default));
    }

    /// <param name="whenLate">
    /// A grant's: run with the reply if the script timed out here but Redis still ran it (slow, not gone), to give back
    /// what it set aside for a block nobody holds (it would otherwise stay set aside until the block's TTL).
    /// </param>
    private async Task<RedisResult> EvaluateAsync(RedisScript script, RedisKey[] keys, RedisValue[] args, CancellationToken cancellationToken = default, Func<long[], Task>? whenLate = null)
    {
        Interlocked.Increment(ref _scripts);
        var call = _redis.EvaluateAsync(script, keys, args);
        try
        {
            return await call.WaitAsync(_timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception exception) when (RedisConnection.IsUnavailable(exception))
        {
            RedisConnection.Observe(call);
            if (whenLate is not null && exception is TimeoutException)
            {
                RedisConnection.WhenAnswered(call, result => (long[]?)result is { Length: > 0 } reply && reply[0] > 0 ? whenLate(reply) : Task.CompletedTask);
            }

            throw new AdmissionStoreUnavailableException($"Redis did not answer {script.Name} within {_timeout.TotalMilliseconds:0} ms: {exception.Message}", exception);
        }
    }

    private static byte[] Pack(ReadOnlySpan<double> numbers)
    {
        var bytes = new byte[numbers.Length * sizeof(double)];
        for (var i = 0; i < numbers.Length; i++)
        {
            BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(i * sizeof(double)), numbers[i]);
        }

        return bytes;
    }
}
