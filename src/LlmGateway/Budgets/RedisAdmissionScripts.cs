using LlmGateway.Redis;

namespace LlmGateway.Budgets;

/// <summary>
/// The Lua scripts of <see cref="RedisAdmissionStore"/>: each operation is one script, so one round trip and atomic.
/// They mirror <see cref="InMemoryAdmissionStore"/>; change both together.
/// </summary>
/// <remarks>
/// Data layout (every key under the store's prefix; {pk} is a <see cref="BudgetPeriods"/> key). Each scope is one hash
/// whose hot counters are packed into one field with Redis's <c>struct</c> library (little-endian doubles: integers
/// below 2^53, which every amount here is, are exact), so an admission reads and writes two or three fields per
/// scope whatever the traffic. Measured with callgrind on redis-server 7.0: a hash field written costs ~4.5k
/// instructions and a number parsed ~1.8k, a packed field of eight counters ~8k in all — the unpacked layout
/// took ~1.2M Redis instructions per gateway request, this one a third of that (bench/scripts/redis_cost.py).
/// <list type="bullet">
/// <item><c>u:{user}</c>: <c>h</c> halted; <c>u</c> = (calls in flight, earliest held second, last listed second,
/// window calls, window tokens, window's oldest second); <c>x{s}</c> the calls in flight that expire at second s;
/// <c>w{b}</c> = (calls, tokens) admitted in second b.</item>
/// <item><c>b:u:{pk}:{user}</c>, <c>b:t:{pk}:{team}</c>, <c>run:{id}</c>: <c>s</c> = (spent USD in nano-dollars, tokens,
/// calls; reserved USD, tokens, calls; earliest held second; last listed second) — a run's reserved calls are its
/// in-flight count; <c>x{s}</c> = (USD, tokens, calls) held by reservations that expire at second s; <c>lu lt lc</c>
/// the limits of the latest admission; <c>pe</c> period end. A run also has <c>start la lr dl h user</c> (first
/// admission, last activity, last key-lifetime refresh, deadline ms, halted, user) and <c>q:{request hash}</c>
/// admissions per request (loop guard).</item>
/// <item>Settlement markers (<c>{scope key}:d{10-s step}</c>): a field per reservation that finished (a retry finds it
/// and does nothing), and <c>enc</c> (65 bytes, written by a batch of finishes: Redis then keeps the hash as a hash
/// table, not a list every HSETNX scans).</item>
/// <item>Held reservations: expiry is rounded up to a multiple of 10 s (<see cref="AdmissionConstants.ExpirySecond"/>:
/// a lost reservation holds up to 10 s longer, never shorter), so a scope has at most one <c>x{s}</c> per 10 s of TTL,
/// and a second's field is deleted when its last call finishes: the hashes stay small. The seconds pending are a
/// small sorted set beside the hash (<c>ux:</c>, <c>bx:</c>, <c>runx:</c>), written when a second is new, not per
/// call. When the earliest has passed, the expired seconds' amounts are given back (their gateway died or lost
/// them). A settle or release takes its amounts out of its second while that second is still held: a second is
/// given back whole, so "still there" means "not yet expired" for every reservation in it.</item>
/// <item>Rate windows (the user hash, and <c>kw:k:{key}</c> whose <c>u</c> has the same layout): a call counts from
/// its admission to the end of its second plus 60 s, so never more than the limit in any 60 s, with 61 seconds of
/// counters per subject whatever the rate (a log of every call was 1M sorted-set members per user at 18k req/s).
/// Seconds that have left are subtracted and deleted by the next call (at most once per second).</item>
/// </list>
/// Upgrading from the sorted-set layout of earlier builds: no key name of this layout holds another type under the
/// old one (the key windows moved from <c>rl:k:</c> to <c>kw:k:</c> for that), so old and new keys never collide;
/// counters of the current periods and runs start afresh, and the old keys expire by their own TTLs.
/// "None" is -1 in packed fields. Redis runs Lua single-threaded, so every redis.call, every number parsed or
/// formatted and every table a script builds is throughput taken from all replicas.
/// Time is the caller's clock (ARGV), not Redis TIME: tests move it, and replicas must run NTP-synced clocks
/// (a skew of s seconds shifts a window edge or expiry by s). Key lifetimes (PEXPIRE, relative) only collect garbage;
/// every decision uses stored timestamps.
/// </remarks>
internal static partial class RedisAdmissionScripts
{
    /// <summary>Every admission script, for loading them ahead of the first call.</summary>
    public static RedisScript[] All => [Reserve, ReserveScoped, Finish, FinishScoped, RunSteps, HaltUser, ResumeUser, HaltRun, RunState, UserState];

    internal const string Prelude = """
        local now, nowSec
        local function setNow(ms) now = ms; nowSec = math.floor(ms / 1000) end
        local NONE = -1
        local spack, sunpack = struct.pack, struct.unpack
        local function add(f, name, value) f[#f + 1] = name; f[#f + 1] = value end
        -- The hashes a script touches, read and written through this cache: a field is read from Redis once per
        -- script, and each hash is written once, at the end (flush). A batch of admissions on the same scopes then
        -- costs one HMGET and one HSET per scope instead of one per call: each redis.call costs Redis far more than
        -- the Lua around it. Sorted sets are not cached (written rarely: once per new 10-s expiry step). A script of one
        -- call goes straight to Redis: the cache's own tables cost more than they save when nothing is shared.
        local batching = false
        local cache, touched = {}, {}
        local function entry(h)
          local c = cache[h]
          if not c then
            c = { v = {}, d = {}, ttl = false, gone = false }
            cache[h] = c
            touched[#touched + 1] = h
          end
          return c
        end
        -- HMGET: false for an absent field, as redis.call returns.
        local function hmget(h, ...)
          if not batching then return redis.call('HMGET', h, ...) end
          local c = entry(h)
          local fields = { ... }
          local miss
          if not c.gone then
            for i = 1, #fields do
              if c.v[fields[i]] == nil then
                miss = miss or {}
                miss[#miss + 1] = fields[i]
              end
            end
          end
          if miss then
            local r = redis.call('HMGET', h, unpack(miss))
            for i = 1, #miss do c.v[miss[i]] = r[i] end
          end
          -- The answer in the table of field names (the caller's own, sized already: no table grown field by field).
          for i = 1, #fields do fields[i] = c.v[fields[i]] or false end
          return fields
        end
        local function hset(h, ...)
          if not batching then return redis.call('HSET', h, ...) end
          local c = entry(h)
          local a = { ... }
          for i = 1, #a, 2 do c.v[a[i]] = a[i + 1]; c.d[a[i]] = true end
        end
        local function hdel(h, ...)
          if not batching then return redis.call('HDEL', h, ...) end
          local c = entry(h)
          local a = { ... }
          for i = 1, #a do c.v[a[i]] = false; c.d[a[i]] = true end
        end
        -- PEXPIRE, applied after the key's writes (a key written here may not exist in Redis before the flush).
        local function pexpire(k, ms)
          if not batching then return redis.call('PEXPIRE', k, ms) end
          entry(k).ttl = ms
        end
        local function del(...)
          redis.call('DEL', ...)
          if not batching then return end
          for _, k in ipairs({ ... }) do
            local c = entry(k)
            c.v = {}; c.d = {}; c.ttl = false; c.gone = true
          end
        end
        local function flush()
          for _, h in ipairs(touched) do
            local c = cache[h]
            local set, gone = {}, {}
            for f in pairs(c.d) do
              local value = c.v[f]
              if value then set[#set + 1] = f; set[#set + 1] = value else gone[#gone + 1] = f end
            end
            if #gone > 0 then redis.call('HDEL', h, unpack(gone)) end
            if #set > 0 then redis.call('HSET', h, unpack(set)) end
            if c.ttl then redis.call('PEXPIRE', h, c.ttl) end
          end
          cache, touched = {}, {}
        end
        -- Gives back the reservations of hash h that expired (their seconds, listed in zset z, have passed).
        -- Returns the USD, tokens and calls they held (amounts: packed x fields; else plain call counts) and the
        -- next pending second (NONE if none).
        local function expire(h, z, amounts)
          local es = redis.call('ZRANGEBYSCORE', z, '-inf', nowSec, 'LIMIT', 0, 500)
          local u, t, c = 0, 0, 0
          if #es > 0 then
            local f = {}
            for i = 1, #es do f[i] = 'x' .. es[i] end
            local v = hmget(h, unpack(f))
            for i = 1, #es do
              if v[i] then
                if amounts then
                  local a, b, d = sunpack('<ddd', v[i])
                  u = u + a; t = t + b; c = c + d
                else
                  c = c + tonumber(v[i])
                end
              end
            end
            hdel(h, unpack(f))
            redis.call('ZREM', z, unpack(es))
          end
          local nx = redis.call('ZRANGE', z, 0, 0)
          return u, t, c, tonumber(nx[1]) or NONE
        end
        -- A budget scope: hash h whose reservations here expire at field xe's second; extra fields follow from v[3].
        local function budget(h, z, xe, ...)
          local v = hmget(h, 's', xe, ...)
          local su, st, sc, ru, rt, rc, xo, xm = 0, 0, 0, 0, 0, 0, NONE, NONE
          if v[1] then su, st, sc, ru, rt, rc, xo, xm = sunpack('<dddddddd', v[1]) end
          -- Every field the scripts set is in the constructor: a Lua table that grows past its size is rebuilt.
          local b = { h = h, z = z, v = v, exists = v[1] and true or false, su = su, st = st, sc = sc, ru = ru, rt = rt,
                      rc = rc, xo = xo, xm = xm, dirty = false, start = -1, la = -1, refreshed = -1, dl = 0,
                      halted = false, repeats = 0, absent = false }
          if b.xo ~= NONE and b.xo <= nowSec then
            local u, t, c, nx = expire(h, z, true)
            b.ru = b.ru - u; b.rt = b.rt - t; b.rc = b.rc - c
            b.xo = nx
            b.dirty = true
          end
          return b
        end
        local function state(b) return spack('<dddddddd', b.su, b.st, b.sc, b.ru, b.rt, b.rc, b.xo, b.xm) end
        -- A user's (or key's) packed u field.
        local function subject(packed)
          if packed then return sunpack('<dddddd', packed) end
          return 0, NONE, NONE, 0, 0, NONE
        end
        -- A rate window (calls n, tokens k, oldest second o) of hash h; seconds that have left it are subtracted and deleted.
        local function window(h, n, k, o)
          local s = { h = h, n = n, k = k, o = o, dirty = false }
          if o ~= NONE and o <= nowSec - 61 then
            local f = {}
            for b = o, o + 60 do f[#f + 1] = 'w' .. b end
            local v = hmget(h, unpack(f))
            local gone, oldest = {}, NONE
            for i = 1, 61 do
              if v[i] then
                local b = o + i - 1
                local c, t = sunpack('<dd', v[i])
                if b <= nowSec - 61 then
                  s.n = s.n - c; s.k = s.k - t
                  gone[#gone + 1] = f[i]
                elseif oldest == NONE and c > 0 then
                  oldest = b
                end
              end
            end
            if #gone > 0 then hdel(h, unpack(gone)) end
            s.o = oldest
            if oldest == NONE then s.n = 0; s.k = 0 end
            s.dirty = true
          end
          return s
        end

        """;

    // KEYS: 1 u. A user's halt: every admission of theirs is refused until it is lifted.
    public static readonly RedisScript HaltUser = new("halt-user", "redis.call('HSET', KEYS[1], 'h', 1) return 1");

    // KEYS: 1 u.
    public static readonly RedisScript ResumeUser = new("resume-user", "redis.call('HDEL', KEYS[1], 'h') return 1");

    // KEYS: 1 run, 2 runx. ARGV: 1 now, 2 run idle, 3 '1' halt / '0' resume, 4 run key life
    public static readonly RedisScript HaltRun = new("halt-run", """
        local now = tonumber(ARGV[1])
        local r = redis.call('HGET', KEYS[1], 'r')
        local start, la, refreshed, dl = -1, -1, -1, 0
        if r then start, la, refreshed, dl = struct.unpack('<dddd', r) end
        if r and now - la >= tonumber(ARGV[2]) then
          redis.call('DEL', KEYS[1], KEYS[2])
          r = false
          start, dl = -1, 0
        end
        if ARGV[3] == '1' then
          redis.call('HSET', KEYS[1], 'h', '1', 'r', struct.pack('<dddd', start, now, now, dl) .. (r and string.sub(r, 33) or ''))
          redis.call('PEXPIRE', KEYS[1], ARGV[4])
          redis.call('PEXPIRE', KEYS[2], ARGV[4])
        elseif r then
          redis.call('HDEL', KEYS[1], 'h')
        end
        return 1
        """);

    // KEYS: 1 run, 2 runx. ARGV: 1 now, 2 run idle.
    // Returns {} for an unknown or idle-expired run, else su st sc ru rt start dl halted lu lt lc la in-flight user owned
    // (1: a replica's exclusive block holds the run now, and these figures are as of its last write-back).
    public static readonly RedisScript RunState = new("run-state", Prelude + """
        setNow(tonumber(ARGV[1]))
        -- v: 3 r, 4 h, 5 limits, 6 user, 7 owner
        local b = budget(KEYS[1], KEYS[2], 'x0', 'r', 'h', 'l', 'user', 'o')
        local v = b.v
        if not v[3] then flush() return {} end
        local start, la, _, dl = sunpack('<dddd', v[3])
        if now - la >= tonumber(ARGV[2]) then flush() return {} end
        if b.dirty then hset(KEYS[1], 's', state(b)) end
        flush()
        local lu, lt, lc = 0, 0, 0
        if v[5] then lu, lt, lc = sunpack('<ddd', v[5]) end
        local halted = 0
        if v[4] then halted = 1 end
        local owned = 0
        if v[7] then
          local _, untilMs = sunpack('<dd', v[7])
          if untilMs > now then owned = 1 end
        end
        return { b.su, b.st, b.sc, b.ru, b.rt, start, dl, halted, lu, lt, lc, la, b.rc, v[6] or '', owned }
        """);

    // KEYS: 1 u, 2 ux, 3 b:u, 4 bx:u. ARGV: 1 now.
    // Returns su st sc ru rt lu lt lc pe in-flight halted.
    public static readonly RedisScript UserState = new("user-state", Prelude + """
        setNow(tonumber(ARGV[1]))
        -- v: 3 limits, 4 pe
        local b = budget(KEYS[3], KEYS[4], 'x0', 'l', 'pe')
        if b.dirty then hset(KEYS[3], 's', state(b)) end
        local lu, lt, lc = 0, 0, 0
        if b.v[3] then lu, lt, lc = sunpack('<ddd', b.v[3]) end
        local uv = hmget(KEYS[1], 'h', 'u')
        local inFlight, xo, xm, n, k, o = subject(uv[2])
        if xo ~= NONE and xo <= nowSec then
          local _, _, c, nx = expire(KEYS[1], KEYS[2], false)
          inFlight = inFlight - c
          hset(KEYS[1], 'u', spack('<dddddd', inFlight, nx, xm, n, k, o))
        end
        flush()
        local halted = 0
        if uv[1] then halted = 1 end
        return { b.su, b.st, b.sc, b.ru, b.rt, lu, lt, lc, tonumber(b.v[4]) or 0, inFlight, halted }
        """);
}
