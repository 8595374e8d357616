using LlmGateway.Redis;

namespace LlmGateway.Runs;

/// <summary>The Lua scripts of <see cref="RedisRunLedger"/>; each touches the keys of one run (one hash slot) or <c>runs:active</c>.</summary>
internal static class RedisRunScripts
{
    /// <summary>Arguments of <see cref="Record"/> before the calls.</summary>
    public const int RecordFixedArgs = 5;

    /// <summary>Arguments of <see cref="Record"/> per call.</summary>
    public const int RecordArgsPerCall = 6;

    /// <summary>
    /// Adds a batch of one run's calls (in queued order) to its totals and ring, in one round trip. The keys' expiry is
    /// refreshed only when the batch's newest call is <c>refresh</c> or more away from the last refresh (field
    /// <c>exp</c>), not on every batch: the calls list lives <c>idle + 2 x refresh</c> from a refresh, so it still
    /// outlives the run's last call by the idle time (with replica clocks up to <c>refresh</c> apart).
    /// </summary>
    // KEYS: 1 log, 2 calls. ARGV: 1 idle ms, 2 log life ms, 3 calls life ms, 4 refresh ms, 5 cap; then per call:
    // now ms, user, team, 'llm' | 'tool', cost nano-USD, entry ('' for a call the ring trims off anyway).
    public static readonly RedisScript Record = new("run-record", """
        local idle, refresh, cap = tonumber(ARGV[1]), tonumber(ARGV[4]), tonumber(ARGV[5])
        local v = redis.call('HMGET', KEYS[1], 'last', 'end', 'exp')
        local last, ended, exp = tonumber(v[1]), v[2], tonumber(v[3])
        local counts, cost, newest, entries = {llm = 0, tool = 0}, 0, nil, {}
        for i = 6, #ARGV, 6 do
          local now = tonumber(ARGV[i])
          if last and now - last >= idle then
            -- Idle past its expiry (and ended by a sweep, or about to be): the same id starts a new run.
            redis.call('DEL', KEYS[1], KEYS[2])
            last, ended, exp = nil, false, nil
            counts, cost, entries = {llm = 0, tool = 0}, 0, {}
          end
          if not last then
            redis.call('HSET', KEYS[1], 'start', now, 'user', ARGV[i + 1], 'team', ARGV[i + 2])
            last = now
          elseif now > last then
            last = now
          end
          if not ended then
            counts[ARGV[i + 3]] = counts[ARGV[i + 3]] + 1
            cost = cost + tonumber(ARGV[i + 4])
          end
          if not newest or now > newest then newest = now end
          if ARGV[i + 5] ~= '' then entries[#entries + 1] = ARGV[i + 5] end
        end
        if counts.llm > 0 then redis.call('HINCRBY', KEYS[1], 'llm', counts.llm) end
        if counts.tool > 0 then redis.call('HINCRBY', KEYS[1], 'tool', counts.tool) end
        if cost > 0 then redis.call('HINCRBY', KEYS[1], 'cost', string.format('%d', cost)) end
        local fresh = exp and math.abs(newest - exp) < refresh
        if fresh then
          redis.call('HSET', KEYS[1], 'last', last)
        else
          redis.call('HSET', KEYS[1], 'last', last, 'exp', newest)
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
        end
        if #entries > 0 then
          local length = redis.call('RPUSH', KEYS[2], unpack(entries))
          if length > cap then redis.call('LTRIM', KEYS[2], -cap, -1) end
          -- A new list (first batch, or the list expired on its own) gets its expiry now.
          if not fresh or length == #entries then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
        end
        return 1
        """);

    // KEYS: 1 log. ARGV: 1 now ms, 2 idle ms, 3 outcome, 4 the reporting user ('' for the idle sweep).
    // Returns {0} unknown run, {1, start, last, user, team, llm, tool, cost} ended now, {2, outcome} ended before,
    // {3} another user's run, {4} not idle (sweep only).
    public static readonly RedisScript End = new("run-end", """
        local v = redis.call('HMGET', KEYS[1], 'start', 'last', 'end', 'user', 'team', 'llm', 'tool', 'cost')
        if not v[1] then return {0} end
        local idled = tonumber(ARGV[1]) - tonumber(v[2]) >= tonumber(ARGV[2])
        if ARGV[4] ~= '' then
          if idled then return {0} end
          if v[4] ~= ARGV[4] then return {3} end
        elseif not idled then
          return {4}
        end
        if v[3] then return {2, v[3]} end
        redis.call('HSET', KEYS[1], 'end', ARGV[3])
        return {1, v[1], v[2], v[4], v[5] or '', v[6] or '0', v[7] or '0', v[8] or '0'}
        """);

    // KEYS: 1 runs:active. ARGV: 1 run id, 2 cutoff ms. Removes the run unless a call made it active again.
    public static readonly RedisScript ForgetIdle = new("run-forget-idle", """
        local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
        if s and tonumber(s) <= tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
        return 1
        """);
}
