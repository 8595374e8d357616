using LlmGateway.Redis;

namespace LlmGateway.Budgets.Leases;

/// <summary>
/// The scripts of a run's exclusive block (<see cref="RunBlock"/>): a claim and a write-back, each on the run's two keys
/// (one hash slot). The run's hash gains two fields: <c>o</c> = (owner, owned until ms), present while a replica owns
/// the run, and <c>a</c> = (replica, admissions in a row, the first one's ms), written by the per-call run steps. Every per-call admission
/// script refuses a call of an owned run with the internal code 99 (see RedisAdmissionScripts.ReserveRun), so while
/// a replica owns the run nothing else admits into it.
/// </summary>
internal static class RunBlockScripts
{
    /// <summary>Numbers the claim takes, packed as little-endian doubles.</summary>
    public const int ClaimNumbers = 6;

    /// <summary>Numbers the write-back takes, packed as little-endian doubles.</summary>
    public const int SyncNumbers = 16;

    // KEYS: 1 run, 2 runx. ARGV: 1 packed now, replica id, owned-for ms, steps reserved ahead, run idle ms, admissions
    // in a row needed.
    // Returns {0} when the run may not be claimed (unknown, idle, halted, owned by another replica, not this replica's
    // calls in a row, or too many distinct requests counted), else {1, su, st, sc, ru, rt, rc, start, steps, then the
    // loop guard's counts as request hash, count pairs}. The claim sets o, clears a, and moves the run's step counter
    // ahead by the steps reserved (a replica that dies skips them: steps only grow, never repeat).
    public static readonly RedisScript Claim = new("run-claim", RedisAdmissionScripts.Prelude + """
        local nowMs, me, ttl, ahead, idle, inARow = sunpack('<dddddd', ARGV[1])
        setNow(nowMs)
        -- v: 3 r, 4 h, 5 o, 6 a
        local b = budget(KEYS[1], KEYS[2], 'x0', 'r', 'h', 'o', 'a')
        local v = b.v
        local function keep() if b.dirty then redis.call('HSET', KEYS[1], 's', state(b)) end end
        if not v[3] or v[4] or not v[6] or #v[6] ~= 24 then keep() return { 0 } end
        local start, la, refreshed, dl = sunpack('<dddd', v[3])
        local steps = #v[3] >= 40 and sunpack('<d', v[3], 33) or 0
        if start < 0 or now - la >= idle then keep() return { 0 } end
        if v[5] then
          local oid, untilMs = sunpack('<dd', v[5])
          if untilMs > now and oid ~= me then keep() return { 0 } end
        end
        local aid, an = sunpack('<ddd', v[6])
        if aid ~= me or an < inARow then keep() return { 0 } end
        -- The loop guard's counts travel to the owner; a run with very many distinct requests stays per call.
        if redis.call('HLEN', KEYS[1]) > 600 then keep() return { 0 } end
        local out = { 1, b.su, b.st, b.sc, b.ru, b.rt, b.rc, start, steps }
        local all = redis.call('HGETALL', KEYS[1])
        for i = 1, #all, 2 do
          if string.sub(all[i], 1, 2) == 'q:' then
            out[#out + 1] = string.sub(all[i], 3)
            out[#out + 1] = tonumber(all[i + 1])
          end
        end
        redis.call('HSET', KEYS[1], 's', state(b), 'o', spack('<dd', me, now + ttl), 'a', spack('<ddd', 0, 0, 0),
          'r', spack('<ddddd', start, now, refreshed, dl, steps + ahead))
        return out
        """);

    // KEYS: 1 run, 2 runx, 3 the run's write-back markers of the write-back's first 10 s (a hash, same slot, 90 s). ARGV: 1 packed now, replica id, owned-for
    // ms, spent usd, tokens, calls to add, the step counter to write (owner only), close (1/0), run key life ms, holds
    // (n), last limits known (1/0), limit usd, tokens, calls, user given (1/0), finishes (m); 2 the user; 3 the
    // write-back's id; then n holds as (expiry field, packed expiry second, usd, tokens, calls); then m finishes of
    // per-call holds as (expiry field, packed held usd, held tokens, cost usd, cost tokens, settle 1/0, request hash);
    // then the loop guard's changes as (request hash, delta) pairs.
    // Applies the owner's settled spend, the per-call holds it settled or released (as the finish script would), and on
    // a close its calls in flight as per-call holds (their settlements then go per call, to those fields) — whether or
    // not it still owns the run: they are real. Only while it owns the run does it write the step counter and extend (or,
    // closing, remove) o. A write-back whose id was applied before (its reply lost, sent again) changes nothing.
    // Returns { still owner (1/0), halted (1/0), su, st, sc, ru, rt, rc }.
    public static readonly RedisScript Sync = new("run-sync", RedisAdmissionScripts.Prelude + """
        local nowMs, me, ttl, dsu, dst, dsc, steps, closing, life, holds, hasLimits, lu, lt, lc, hasUser, finishes =
          sunpack('<' .. string.rep('d', 16), ARGV[1])
        setNow(nowMs)
        -- v: 3 r, 4 h, 5 o
        local b = budget(KEYS[1], KEYS[2], 'x0', 'r', 'h', 'o')
        local v = b.v
        local mine = false
        if v[5] then
          local oid = sunpack('<dd', v[5])
          mine = oid == me
        end
        local fresh = redis.call('HSETNX', KEYS[3], ARGV[3], 1) == 1
        redis.call('PEXPIRE', KEYS[3], 90000)
        if not fresh then
          if b.dirty then redis.call('HSET', KEYS[1], 's', state(b)) end
          return { mine and 1 or 0, v[4] and 1 or 0, b.su, b.st, b.sc, b.ru, b.rt, b.rc }
        end
        b.su = b.su + dsu; b.st = b.st + dst; b.sc = b.sc + dsc
        local ai = 4
        for i = 1, holds do
          local xf = ARGV[ai]
          local ei, u, t, n = sunpack('<dddd', ARGV[ai + 1])
          ai = ai + 2
          local cur = redis.call('HGET', KEYS[1], xf)
          local eu, et, ec = 0, 0, 0
          if cur then eu, et, ec = sunpack('<ddd', cur) end
          redis.call('HSET', KEYS[1], xf, spack('<ddd', eu + u, et + t, ec + n))
          b.ru = b.ru + u; b.rt = b.rt + t; b.rc = b.rc + n
          if b.xo == NONE or ei < b.xo then b.xo = ei end
          if b.xm ~= ei then
            redis.call('ZADD', KEYS[2], ei, ei)
            b.xm = ei
          end
        end
        for i = 1, finishes do
          local xf, hash = ARGV[ai], ARGV[ai + 2]
          local hu, ht, cu, ct, settle = sunpack('<ddddd', ARGV[ai + 1])
          ai = ai + 3
          if settle == 1 then b.su = b.su + cu; b.st = b.st + ct; b.sc = b.sc + 1 end
          local cur = redis.call('HGET', KEYS[1], xf)
          if cur then
            -- Still held (its second not passed): given back, as the finish script does.
            local eu, et, ec = sunpack('<ddd', cur)
            b.ru = b.ru - hu; b.rt = b.rt - ht; b.rc = b.rc - 1
            if ec <= 1 then redis.call('HDEL', KEYS[1], xf) else redis.call('HSET', KEYS[1], xf, spack('<ddd', eu - hu, et - ht, ec - 1)) end
          end
          if settle == 0 and hash ~= '' then
            local q = redis.call('HGET', KEYS[1], 'q:' .. hash)
            if q then redis.call('HSET', KEYS[1], 'q:' .. hash, tonumber(q) - 1) end
          end
        end
        for i = ai, #ARGV, 2 do
          redis.call('HINCRBY', KEYS[1], 'q:' .. ARGV[i], ARGV[i + 1])
        end
        local start, la, refreshed, dl, old = now, now, now, 0, 0
        if v[3] then
          start, la, refreshed, dl = sunpack('<dddd', v[3])
          old = #v[3] >= 40 and sunpack('<d', v[3], 33) or 0
        end
        local f = { 's', state(b), 'r', spack('<ddddd', start, now, now, dl, mine and steps or old) }
        if mine then
          if closing == 1 then
            redis.call('HDEL', KEYS[1], 'o')
          else
            add(f, 'o', spack('<dd', me, now + ttl))
          end
        end
        if hasLimits == 1 then add(f, 'l', spack('<ddd', lu, lt, lc)) end
        if hasUser == 1 then add(f, 'user', ARGV[2]) end
        redis.call('HSET', KEYS[1], unpack(f))
        redis.call('PEXPIRE', KEYS[1], life)
        redis.call('PEXPIRE', KEYS[2], life)
        return { mine and 1 or 0, v[4] and 1 or 0, b.su, b.st, b.sc, b.ru, b.rt, b.rc }
        """);

    public static RedisScript[] All => [Claim, Sync];
}
