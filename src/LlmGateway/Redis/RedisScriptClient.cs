using System.Buffers;
using System.Buffers.Text;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using StackExchange.Redis;

namespace LlmGateway.Redis;

/// <summary>
/// A lean, pipelined RESP2 connection for the admission scripts: the one or two Redis calls every request makes.
/// </summary>
/// <remarks>
/// StackExchange.Redis 1.2.6 (the only version the package registry here restores) hands every command to a writer
/// thread and every reply from a reader thread to the thread pool before the caller's continuation runs: two or three
/// thread wake-ups per call, which on a busy machine are most of a round trip's CPU and its tail latency. Here the
/// caller writes its command to the socket itself (under a lock, so commands and the queue of waiting callers keep the
/// same order), one receive loop parses the replies in order, and the reply completes its caller on the receiving
/// thread. One socket, commands pipelined; no thread of its own.
/// Only what the scripts need: EVALSHA (EVAL after a NOSCRIPT), AUTH and SELECT. Configurations it does not handle
/// (TLS, several endpoints, Sentinel, proxies, renamed commands) keep using the multiplexer
/// (<see cref="TryCreate"/> returns null). A connection that fails, or whose oldest call has waited too long, is
/// closed and every call waiting on it fails (<see cref="IOException"/>: "Redis unavailable" to the stores); the
/// next call connects again.
/// </remarks>
internal sealed class RedisScriptClient : IDisposable
{
    private readonly EndPoint _endPoint;
    private readonly string? _password;
    private readonly int _database;
    private readonly TimeSpan _connectTimeout;
    private readonly TimeSpan _staleAfter;
    private readonly SemaphoreSlim _connectLock = new(1, 1);
    private volatile Connection? _connection;
    private volatile bool _disposed;

    private RedisScriptClient(EndPoint endPoint, string? password, int database, TimeSpan connectTimeout, TimeSpan staleAfter)
    {
        _endPoint = endPoint;
        _password = password;
        _database = database;
        _connectTimeout = connectTimeout;
        _staleAfter = staleAfter;
    }

    /// <summary>A client for a plain single-endpoint configuration; null for any other (the multiplexer handles those).</summary>
    /// <param name="staleAfter">A connection whose oldest call has waited this long is given up and reconnected.</param>
    public static RedisScriptClient? TryCreate(ConfigurationOptions options, TimeSpan connectTimeout, TimeSpan staleAfter)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Ssl || options.EndPoints.Count != 1 || !string.IsNullOrEmpty(options.ServiceName) || options.Proxy != Proxy.None
            || !ReferenceEquals(options.CommandMap, CommandMap.Default))
        {
            return null;
        }

        return new RedisScriptClient(options.EndPoints[0], string.IsNullOrEmpty(options.Password) ? null : options.Password,
            options.DefaultDatabase ?? 0, connectTimeout, staleAfter);
    }

    /// <summary>Runs a script by SHA, and by source after a NOSCRIPT (first use, or Redis restarted).</summary>
    /// <param name="args">Each a <see cref="string"/> or a <see cref="byte"/> array.</param>
    /// <exception cref="IOException">Redis cannot be reached, or the connection failed while the call waited.</exception>
    /// <exception cref="RedisScriptException">Redis answered with an error.</exception>
    public async Task<RespReply> EvaluateAsync(RedisScript script, string[] keys, object[] args)
    {
        var connection = await ConnectAsync().ConfigureAwait(false);
        var reply = await connection.SendAsync(new Command(script, keys, args, bySource: false)).ConfigureAwait(false);
        if (reply.Kind == RespKind.Error && reply.Text!.StartsWith("NOSCRIPT", StringComparison.Ordinal))
        {
            reply = await connection.SendAsync(new Command(script, keys, args, bySource: true)).ConfigureAwait(false);
        }

        return reply.Kind == RespKind.Error ? throw new RedisScriptException(reply.Text!) : reply;
    }

    /// <summary>PING on the connection the scripts use.</summary>
    public async Task PingAsync()
    {
        var connection = await ConnectAsync().ConfigureAwait(false);
        var reply = await connection.SendAsync(new Command("PING", null)).ConfigureAwait(false);
        if (reply.Kind == RespKind.Error)
        {
            throw new RedisScriptException(reply.Text!);
        }
    }

    public void Dispose()
    {
        _disposed = true;
        _connection?.Fail(new ObjectDisposedException(nameof(RedisScriptClient)));
        _connection = null;
    }

    private ValueTask<Connection> ConnectAsync()
    {
        var connection = _connection;
        if (connection is not null && !connection.IsBroken && !connection.IsStale(_staleAfter))
        {
            return new ValueTask<Connection>(connection);
        }

        return new ValueTask<Connection>(ConnectSlowAsync());
    }

    private async Task<Connection> ConnectSlowAsync()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await _connectLock.WaitAsync().ConfigureAwait(false);
        try
        {
            var current = _connection;
            if (current is not null)
            {
                if (!current.IsBroken && !current.IsStale(_staleAfter))
                {
                    return current;
                }

                current.Fail(new IOException("Redis did not answer in time; the connection was given up."));
                _connection = null;
            }

            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                using (var timeout = new CancellationTokenSource(_connectTimeout))
                {
                    try
                    {
                        await socket.ConnectAsync(_endPoint, timeout.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (timeout.IsCancellationRequested)
                    {
                        throw new TimeoutException($"Connecting to Redis took over {_connectTimeout.TotalMilliseconds:0} ms.");
                    }
                }

                // Sends never block a thread: a send buffer full means Redis stopped reading, and the connection is
                // given up at once (every call on it reports Redis unavailable) rather than parking callers on it.
                socket.Blocking = false;
                var connection = new Connection(socket);
                connection.Start();
                if (_password is not null)
                {
                    await HandshakeAsync(connection, "AUTH", _password).ConfigureAwait(false);
                }

                if (_database != 0)
                {
                    await HandshakeAsync(connection, "SELECT", _database.ToString(System.Globalization.CultureInfo.InvariantCulture)).ConfigureAwait(false);
                }

                _connection = connection;
                if (_disposed)
                {
                    connection.Fail(new ObjectDisposedException(nameof(RedisScriptClient)));
                    throw new ObjectDisposedException(nameof(RedisScriptClient));
                }

                return connection;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
        finally
        {
            _connectLock.Release();
        }
    }

    private async Task HandshakeAsync(Connection connection, string command, string argument)
    {
        var reply = await connection.SendAsync(new Command(command, argument)).WaitAsync(_connectTimeout).ConfigureAwait(false);
        if (reply.Kind == RespKind.Error)
        {
            connection.Fail(new IOException("Redis refused the connection's set-up."));

            // The reply may name the password's problem, never the password itself; keep it out of messages anyway.
            throw new RedisScriptException($"Redis refused {command}: {(command == "AUTH" ? "authentication failed" : reply.Text)}");
        }
    }

    /// <summary>A command, written straight into the connection's send buffer.</summary>
    private readonly struct Command
    {
        private readonly RedisScript? _script;
        private readonly string[]? _keys;
        private readonly object[]? _args;
        private readonly bool _bySource;
        private readonly string? _name;
        private readonly string? _argument;

        public Command(RedisScript script, string[] keys, object[] args, bool bySource)
        {
            _script = script;
            _keys = keys;
            _args = args;
            _bySource = bySource;
        }

        public Command(string name, string? argument)
        {
            _name = name;
            _argument = argument;
        }

        public void WriteTo(ArrayBufferWriter<byte> writer)
        {
            if (_script is null)
            {
                WriteArrayHeader(writer, _argument is null ? 1 : 2);
                WriteBulk(writer, _name!);
                if (_argument is not null)
                {
                    WriteBulk(writer, _argument);
                }

                return;
            }

            WriteArrayHeader(writer, 3 + _keys!.Length + _args!.Length);
            if (_bySource)
            {
                WriteBulk(writer, "EVAL"u8);
                WriteBulk(writer, _script.Source);
            }
            else
            {
                WriteBulk(writer, "EVALSHA"u8);
                WriteBulk(writer, _script.HashHex);
            }

            WriteBulk(writer, _keys.Length);
            foreach (var key in _keys)
            {
                WriteBulk(writer, key);
            }

            foreach (var arg in _args)
            {
                switch (arg)
                {
                    case byte[] bytes:
                        WriteBulk(writer, bytes);
                        break;
                    case string text:
                        WriteBulk(writer, text);
                        break;
                    default:
                        throw new ArgumentException($"A script argument must be a string or bytes, not {arg?.GetType().Name ?? "null"}.");
                }
            }
        }

        private static void WriteArrayHeader(ArrayBufferWriter<byte> writer, int count)
        {
            var span = writer.GetSpan(16);
            span[0] = (byte)'*';
            Utf8Formatter.TryFormat(count, span[1..], out var written);
            span[1 + written] = (byte)'\r';
            span[2 + written] = (byte)'\n';
            writer.Advance(3 + written);
        }

        private static void WriteBulk(ArrayBufferWriter<byte> writer, ReadOnlySpan<byte> value)
        {
            var span = writer.GetSpan(value.Length + 16);
            span[0] = (byte)'$';
            Utf8Formatter.TryFormat(value.Length, span[1..], out var written);
            var at = 1 + written;
            span[at++] = (byte)'\r';
            span[at++] = (byte)'\n';
            value.CopyTo(span[at..]);
            at += value.Length;
            span[at++] = (byte)'\r';
            span[at++] = (byte)'\n';
            writer.Advance(at);
        }

        private static void WriteBulk(ArrayBufferWriter<byte> writer, string value)
        {
            var length = Encoding.UTF8.GetByteCount(value);
            var span = writer.GetSpan(length + 16);
            span[0] = (byte)'$';
            Utf8Formatter.TryFormat(length, span[1..], out var written);
            var at = 1 + written;
            span[at++] = (byte)'\r';
            span[at++] = (byte)'\n';
            at += Encoding.UTF8.GetBytes(value, span[at..]);
            span[at++] = (byte)'\r';
            span[at++] = (byte)'\n';
            writer.Advance(at);
        }

        private static void WriteBulk(ArrayBufferWriter<byte> writer, long value)
        {
            Span<byte> digits = stackalloc byte[20];
            Utf8Formatter.TryFormat(value, digits, out var written);
            WriteBulk(writer, digits[..written]);
        }
    }

    /// <summary>One socket: callers write under a lock and queue for their reply; one loop reads the replies in order.</summary>
    private sealed class Connection(Socket socket)
    {
        private readonly Socket _socket = socket;
        private readonly Lock _lock = new();
        private readonly Queue<Waiter> _waiters = new();
        private readonly ArrayBufferWriter<byte> _send = new(4096);  // only under the lock
        private Exception? _failure;

        public bool IsBroken => Volatile.Read(ref _failure) is not null;

        /// <summary>The oldest call has waited longer than <paramref name="limit"/>: Redis is hung or the link is dead.</summary>
        public bool IsStale(TimeSpan limit)
        {
            lock (_lock)
            {
                return _waiters.TryPeek(out var oldest) && Stopwatch.GetElapsedTime(oldest.SentAt) > limit;
            }
        }

        public void Start() => _ = ReadLoopAsync();

        public Task<RespReply> SendAsync(Command command)
        {
            var waiter = new Waiter(Stopwatch.GetTimestamp());
            Exception? sendFailure = null;
            lock (_lock)
            {
                if (_failure is { } failure)
                {
                    return Task.FromException<RespReply>(new IOException("The Redis connection is closed.", failure));
                }

                _send.ResetWrittenCount();
                command.WriteTo(_send);
                _waiters.Enqueue(waiter);
                try
                {
                    // Non-blocking: a full send buffer (Redis stopped reading) throws WouldBlock and fails the connection.
                    var data = _send.WrittenSpan;
                    while (!data.IsEmpty)
                    {
                        data = data[_socket.Send(data)..];
                    }
                }
                catch (Exception exception) when (exception is SocketException or ObjectDisposedException)
                {
                    sendFailure = exception;
                }
            }

            if (sendFailure is not null)
            {
                Fail(sendFailure); // fails every waiter, this one included
            }

            return waiter.Done.Task;
        }

        /// <summary>Closes the connection; every caller still waiting fails with <see cref="IOException"/>.</summary>
        public void Fail(Exception reason)
        {
            Waiter[] waiting;
            lock (_lock)
            {
                if (_failure is not null)
                {
                    return;
                }

                _failure = reason;
                waiting = [.. _waiters];
                _waiters.Clear();
            }

            _socket.Dispose();
            var failure = reason as IOException ?? new IOException("The Redis connection failed.", reason);
            foreach (var waiter in waiting)
            {
                waiter.Done.TrySetException(failure);
                RedisConnection.Observe(waiter.Done.Task);
            }
        }

        private async Task ReadLoopAsync()
        {
            var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
            var start = 0;
            var end = 0;
            var ready = new List<Waiter>();
            try
            {
                while (true)
                {
                    if (end == buffer.Length)
                    {
                        if (start > 0)
                        {
                            buffer.AsSpan(start, end - start).CopyTo(buffer);
                        }
                        else
                        {
                            var larger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                            buffer.AsSpan(0, end).CopyTo(larger);
                            ArrayPool<byte>.Shared.Return(buffer);
                            buffer = larger;
                        }

                        end -= start;
                        start = 0;
                    }

                    var read = await _socket.ReceiveAsync(buffer.AsMemory(end), SocketFlags.None).ConfigureAwait(false);
                    if (read == 0)
                    {
                        throw new IOException("Redis closed the connection.");
                    }

                    end += read;
                    while (RespReply.TryParse(buffer.AsSpan(start, end - start), out var reply, out var consumed))
                    {
                        start += consumed;
                        Waiter? waiter;
                        lock (_lock)
                        {
                            if (!_waiters.TryDequeue(out waiter))
                            {
                                throw new InvalidDataException("Redis sent a reply nobody asked for.");
                            }
                        }

                        waiter.Reply = reply;
                        ready.Add(waiter);
                    }

                    if (start == end)
                    {
                        start = end = 0;
                    }

                    PendingReply.HandOff(ready);
                    ready.Clear();
                }
            }
            catch (Exception exception)
            {
                Fail(exception);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        /// <summary>A caller waiting for the reply to the command it sent at <see cref="SentAt"/> (timestamp).</summary>
        private sealed class Waiter(long sentAt) : PendingReply
        {
            public long SentAt { get; } = sentAt;
        }
    }
}

/// <summary>Redis answered a script call with an error (other than NOSCRIPT, which the client handles).</summary>
internal sealed class RedisScriptException(string message) : Exception(message);
