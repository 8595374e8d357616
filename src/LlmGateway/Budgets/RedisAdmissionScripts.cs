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
internal static class RedisAdmissionScripts
{
    private const string Prelude = """
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
            c = { v = {}, d = {} }
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
          local out = {}
          for i = 1, #fields do out[i] = c.v[fields[i]] or false end
          return out
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
            c.v = {}; c.d = {}; c.ttl = nil; c.gone = true
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

    // Admits a batch of calls, in order, as if each were its own script: the store sends the admissions that queued
    // while the previous batch was in flight together, and the hash cache (Prelude) makes calls on the same scopes
    // share their reads and writes.
    // KEYS: 9 per call: 1 u, 2 ux, 3 b:u, 4 bx:u, 5 b:t, 6 bx:t, 7 run, 8 runx, 9 kw:k
    // ARGV: 5 per call: 1 the numbers below packed as 32 little-endian doubles, 2 request hash, 3 user, 4 the expiry
    //       second's field name ('x' .. second), 5 the admission second's ('w' .. second): formatting a number in Lua
    //       costs Redis ~0.5 µs, the caller next to nothing.
    //       now, expiry second, usd, tokens, hasTeam, hasRun, hasUserRate, hasKeyRate (1/0), user limits (usd tokens
    //       calls), user period end, team limits, team period end, run limits, deadline, max repeats, run max in
    //       flight, user max in flight, user rpm, user tpm, key rpm, key tpm, retention, run idle, in-flight retry,
    //       run key life, run key refresh
    // Returns 15 numbers per call: admitted, rejection, scope, limit, limit value, retry-after ms (-1 none),
    //          requests limit/remaining/reset, tokens limit/remaining/reset, user/team/run fraction (ppm).
    public static readonly RedisScript Reserve = new("reserve", Prelude + """
        local numbers = '<' .. string.rep('d', 32)
        local function reserveOne(KEYS, blob, hash, user, xe, wn)
        -- Every number arrives packed: one argument and no string parsing (each costs more than a field read).
        local nowMs, ei, usd, tok, hasTeam, hasRun, hasUserRate, hasKeyRate, uLu, uLt, uLc, uEnd, tLu, tLt, tLc, tEnd,
              rLu, rLt, rLc, deadline, maxRepeats, runMaxInFlight, userMaxInFlight, userRpm, userTpm, keyRpm, keyTpm,
              retention, idle, inFlightRetry, runLife, refreshEvery = sunpack(numbers, blob)
        setNow(nowMs)
        local e = ei

        local function fraction(b, lu, lt, lc)
          local f = 0
          if lu > 0 then f = math.max(f, (b.su + b.ru) / lu) end
          if lt > 0 then f = math.max(f, (b.st + b.rt) / lt) end
          if lc > 0 then f = math.max(f, (b.sc + b.rc) / lc) end
          return math.floor(f * 1000000)
        end
        -- An amount of 0 never fails its limit: a free model is never blocked by a USD budget.
        local function check(b, lu, lt, lc)
          if lu > 0 and usd > 0 and b.su + b.ru + usd > lu then return 1, lu end
          if lt > 0 and tok > 0 and b.st + b.rt + tok > lt then return 2, lt end
          if lc > 0 and b.sc + b.rc + 1 > lc then return 3, lc end
          return 0, 0
        end
        -- When the oldest seconds of window s, leaving it, free `need` calls (tokens: 2nd counter); -1 never.
        local function freeing(s, tokens, need)
          if s.o == NONE then return -1 end
          local f = {}
          for b = s.o, nowSec do f[#f + 1] = 'w' .. b end
          local v = hmget(s.h, unpack(f))
          local freed = 0
          for i = 1, #f do
            if v[i] then
              local c, t = sunpack('<dd', v[i])
              if tokens then freed = freed + t else freed = freed + c end
            end
            if freed >= need then return (s.o + i) * 1000 + 60000 end
          end
          return -1
        end
        local function checkRate(s, rpm, tpm)
          if rpm > 0 and s.n + 1 > rpm then
            local at = freeing(s, false, s.n + 1 - rpm)
            if at < 0 then return 4, rpm, -1 end
            return 4, rpm, at - now
          end
          if tpm > 0 and tok > 0 and s.k + tok > tpm then
            if tok > tpm then return 5, tpm, -1 end
            local at = freeing(s, true, s.k + tok - tpm)
            if at < 0 then return 5, tpm, -1 end
            return 5, tpm, at - now
          end
          return 0, 0, -1
        end
        local function tighter(best, limit, remaining, s)
          if limit <= 0 then return best end
          if remaining < 0 then remaining = 0 end
          if best[1] > 0 and remaining >= best[2] then return best end
          local reset = 0
          if s.o ~= NONE then reset = (s.o + 1) * 1000 + 60000 - now end
          return { limit, remaining, reset }
        end
        local us, ks
        local function snapshot()
          local rq, tk = { 0, 0, 0 }, { 0, 0, 0 }
          if us then
            rq = tighter(rq, userRpm, userRpm - us.n, us)
            tk = tighter(tk, userTpm, userTpm - us.k, us)
          end
          if ks then
            rq = tighter(rq, keyRpm, keyRpm - ks.n, ks)
            tk = tighter(tk, keyTpm, keyTpm - ks.k, ks)
          end
          return rq, tk
        end

        -- Read every scope once.
        local uv = hmget(KEYS[1], 'h', 'u', xe, wn)
        local inFlight, userXo, userXm, un, uk, uo = subject(uv[2])
        local userDirty = false
        if userXo ~= NONE and userXo <= nowSec then
          local _, _, c, nx = expire(KEYS[1], KEYS[2], false)
          inFlight = inFlight - c
          userXo = nx
          userDirty = true
        end
        if hasUserRate == 1 then us = window(KEYS[1], un, uk, uo) end
        local kv
        if hasKeyRate == 1 then
          kv = hmget(KEYS[9], 'u', wn)
          local _, _, _, kn, kk, ko = subject(kv[1])
          ks = window(KEYS[9], kn, kk, ko)
        end
        local ub = budget(KEYS[3], KEYS[4], xe, 'l')
        local fu, ft, fr = fraction(ub, uLu, uLt, uLc), 0, 0
        local tb
        if hasTeam == 1 then
          tb = budget(KEYS[5], KEYS[6], xe, 'l')
          ft = fraction(tb, tLu, tLt, tLc)
        end
        local run
        if hasRun == 1 then
          -- v: 3 limits, 4 halted, 5 r = (start, last activity, last key-lifetime refresh, deadline), 6 user, 7 repeats of this request
          run = budget(KEYS[7], KEYS[8], xe, 'l', 'h', 'r', 'user', 'q:' .. hash)
          if run.v[5] then
            run.start, run.la, run.refreshed, run.dl = sunpack('<dddd', run.v[5])
            if now - run.la >= idle then
              -- Idle for too long: the run is forgotten and starts afresh.
              del(KEYS[7], KEYS[8])
              run = budget(KEYS[7], KEYS[8], xe, 'l', 'h', 'r', 'user', 'q:' .. hash)
            end
          end
          if not run.v[5] then run.start, run.la, run.refreshed, run.dl = -1, -1, -1, 0 end
          run.halted = run.v[4]
          run.repeats = tonumber(run.v[7]) or 0
          if run.v[5] then fr = fraction(run, rLu, rLt, rLc) else run.absent = true end
        end

        local function result(admitted, rejection, scope, limit, value, retry, rq, tk)
          rq = rq or { 0, 0, 0 }
          tk = tk or { 0, 0, 0 }
          return { admitted, rejection, scope, limit, value, retry, rq[1], rq[2], rq[3], tk[1], tk[2], tk[3], fu, ft, fr }
        end
        -- A refusal still writes back what expiring and window eviction changed.
        local function reject(rejection, scope, limit, value, retry, rq, tk)
          if userDirty or (us and us.dirty) then
            local w = us or { n = un, k = uk, o = uo }
            hset(KEYS[1], 'u', spack('<dddddd', inFlight, userXo, userXm, w.n, w.k, w.o))
          end
          if ks and ks.dirty then hset(KEYS[9], 'u', spack('<dddddd', 0, NONE, NONE, ks.n, ks.k, ks.o)) end
          for _, b in ipairs({ ub, tb or false, run or false }) do
            if b and b.dirty then hset(b.h, 's', state(b)) end
          end
          return result(0, rejection, scope, limit, value, retry, rq, tk)
        end

        -- Control first, then what no retry fixes, then what waiting fixes (same order as the in-memory store).
        if uv[1] then return reject(6, 1, 0, 0, -1) end
        if run and not run.absent then
          if run.halted then return reject(5, 3, 0, 0, -1) end
          if deadline > 0 and run.start >= 0 and now >= run.start + deadline then return reject(3, 3, 7, deadline, -1) end
          if maxRepeats > 0 and hash ~= '' and run.repeats + 1 > maxRepeats then return reject(4, 3, 8, maxRepeats, -1) end
        end
        local kind, value = check(ub, uLu, uLt, uLc)
        if kind > 0 then
          local retry = -1
          if uEnd > 0 then retry = uEnd - now end
          return reject(1, 1, kind, value, retry)
        end
        if tb then
          kind, value = check(tb, tLu, tLt, tLc)
          if kind > 0 then
            local retry = -1
            if tEnd > 0 then retry = tEnd - now end
            return reject(1, 2, kind, value, retry)
          end
        end
        if run then
          kind, value = check(run, rLu, rLt, rLc)
          if kind > 0 then return reject(1, 3, kind, value, -1) end
        end
        if userMaxInFlight > 0 and inFlight + 1 > userMaxInFlight then return reject(2, 1, 6, userMaxInFlight, inFlightRetry) end
        if run and runMaxInFlight > 0 and run.rc + 1 > runMaxInFlight then return reject(2, 3, 6, runMaxInFlight, inFlightRetry) end
        local retry
        if us then
          kind, value, retry = checkRate(us, userRpm, userTpm)
          if kind > 0 then
            local rq, tk = snapshot()
            return reject(2, 1, kind, value, retry, rq, tk)
          end
        end
        if ks then
          kind, value, retry = checkRate(ks, keyRpm, keyTpm)
          if kind > 0 then
            local rq, tk = snapshot()
            return reject(2, 4, kind, value, retry, rq, tk)
          end
        end

        -- Everything fits: hold the worst case everywhere, each hash in one HSET.
        local function hold(b, limits, f, life)
          -- A second is listed once: when it is new, unless it is the one listed last (a second's field is deleted
          -- when its last call finishes, and comes back with the next call).
          local list = not b.v[2] and b.xm ~= ei
          b.ru = b.ru + usd; b.rt = b.rt + tok; b.rc = b.rc + 1
          if b.xo == NONE or ei < b.xo then b.xo = ei end
          if list then b.xm = ei end
          local eu, et, ec = 0, 0, 0
          if b.v[2] then eu, et, ec = sunpack('<ddd', b.v[2]) end
          add(f, 's', state(b))
          add(f, xe, spack('<ddd', eu + usd, et + tok, ec + 1))
          if b.v[3] ~= limits then add(f, 'l', limits) end
          hset(b.h, unpack(f))
          if list then
            redis.call('ZADD', b.z, e, e)
            if life > 0 then pexpire(b.z, life) end
          end
          if life > 0 and not b.exists then pexpire(b.h, life) end
        end
        local function periodFields(b, pe)
          if b.exists then return {} end
          return { 'pe', pe }
        end
        hold(ub, spack('<ddd', uLu, uLt, uLc), periodFields(ub, uEnd), uEnd > 0 and uEnd - now + retention or 0)
        if tb then hold(tb, spack('<ddd', tLu, tLt, tLc), periodFields(tb, tEnd), tEnd > 0 and tEnd - now + retention or 0) end
        if run then
          -- Key lifetimes are refreshed at most once per refresh interval, and r records when.
          local refresh = run.refreshed < 0 or now - run.refreshed >= refreshEvery
          local f = { 'r', spack('<dddd', run.start < 0 and now or run.start, now, refresh and now or run.refreshed, deadline) }
          if run.v[6] ~= user then add(f, 'user', user) end
          if hash ~= '' then add(f, 'q:' .. hash, run.repeats + 1) end
          hold(run, spack('<ddd', rLu, rLt, rLc), f, runLife)
          if refresh then
            pexpire(KEYS[7], runLife)
            pexpire(KEYS[8], runLife)
          end
        end
        local list = not uv[3] and userXm ~= ei
        if userXo == NONE or ei < userXo then userXo = ei end
        if list then
          userXm = ei
          redis.call('ZADD', KEYS[2], e, e)
        end
        local f = { xe, (tonumber(uv[3]) or 0) + 1 }
        -- A user's hash holds up to 61 rate-window fields: a value over 64 bytes makes Redis keep it as a hash
        -- table (constant-time field lookups) rather than a list it scans for every field of every HMGET and HSET.
        if not uv[2] then add(f, 'enc', string.rep('-', 65)) end
        local function take(s, f, second)
          s.n = s.n + 1
          s.k = s.k + tok
          if s.o == NONE then s.o = nowSec end
          local c, t = 0, 0
          if second then c, t = sunpack('<dd', second) end
          add(f, wn, spack('<dd', c + 1, t + tok))
        end
        local w = us or { n = un, k = uk, o = uo }
        if us then take(us, f, uv[4]) end
        add(f, 'u', spack('<dddddd', inFlight + 1, userXo, userXm, w.n, w.k, w.o))
        hset(KEYS[1], unpack(f))
        if ks then
          local kf = {}
          if not kv[1] then add(kf, 'enc', string.rep('-', 65)) end
          take(ks, kf, kv[2])
          add(kf, 'u', spack('<dddddd', 0, NONE, NONE, ks.n, ks.k, ks.o))
          hset(KEYS[9], unpack(kf))
        end
        local rq, tk = snapshot()
        return result(1, 0, 0, 0, 0, -1, rq, tk)
        end

        local out = {}
        batching = #ARGV > 5
        for i = 1, #ARGV / 5 do
          local ko, ao = (i - 1) * 9, (i - 1) * 5
          local r = reserveOne({ KEYS[ko + 1], KEYS[ko + 2], KEYS[ko + 3], KEYS[ko + 4], KEYS[ko + 5], KEYS[ko + 6], KEYS[ko + 7],
                                 KEYS[ko + 8], KEYS[ko + 9] }, ARGV[ao + 1], ARGV[ao + 2], ARGV[ao + 3], ARGV[ao + 4], ARGV[ao + 5])
          for j = 1, 15 do out[#out + 1] = r[j] end
        end
        flush()
        return out
        """);

    // Settle (mode 1: the call happened, charge what it cost) or release (0: it never happened, undo it) a batch of
    // reservations: one script for several calls, as the store sends the settlements that queued while the previous
    // batch was in flight together (EVALSHA's own cost, ~45k Redis instructions, is then paid once per batch).
    // KEYS: 9 per item, as Reserve's. ARGV: 4 per item: 1 the numbers below packed as 17 little-endian doubles,
    //       2 request hash, 3 the expiry second's field name, 4 the admission second's (as Reserve's). Numbers: now, mode, expiry second, admission second, reserved usd, reserved tokens, actual
    //       usd, actual tokens, hasTeam, hasRun, hasUserRate, hasKeyRate, user period end, team period end, retention,
    //       run key life, run key refresh
    public static readonly RedisScript Finish = new("finish", Prelude + """
        local function finishOne(ko, blob, hashArg, xe, wa)
          local nowMs, mode, e, a, ru, rt, au, at, hasTeam, hasRun, hasUserRate, hasKeyRate, uEnd, tEnd, retention, runLife,
                refreshEvery = sunpack('<' .. string.rep('d', 17), blob)
          setNow(nowMs)
          local settle = mode == 1
          local hash = hashArg
          -- A budget scope (v: 1 s, 2 x{e}): charge (settle), and give the reservation back unless its second expired.
          local function finish(h, v, f)
            local su, st, sc, r1, r2, r3, xo, xm = 0, 0, 0, 0, 0, 0, NONE, NONE
            if v[1] then su, st, sc, r1, r2, r3, xo, xm = sunpack('<dddddddd', v[1]) end
            if settle then su = su + au; st = st + at; sc = sc + 1 end
            if v[2] then
              r1 = r1 - ru; r2 = r2 - rt; r3 = r3 - 1
              local eu, et, ec = sunpack('<ddd', v[2])
              if ec <= 1 then
                -- The second's last held call: its field goes (the hash stays small), its listing stays until it expires.
                hdel(h, xe)
              else
                add(f, xe, spack('<ddd', eu - ru, et - rt, ec - 1))
              end
            end
            if settle or v[2] then add(f, 's', spack('<dddddddd', su, st, sc, r1, r2, r3, xo, xm)) end
            if #f > 0 then hset(h, unpack(f)) end
          end
          local function period(h, pe)
            local v = hmget(h, 's', xe)
            finish(h, v, {})
            if settle and not v[1] and pe > 0 and pe - now + retention > 0 then
              pexpire(h, pe - now + retention)
            end
          end
          period(KEYS[ko + 3], uEnd)
          if hasTeam == 1 then period(KEYS[ko + 5], tEnd) end
          if hasRun == 1 then
            local q = 'q:' .. hash
            local v = hmget(KEYS[ko + 7], 's', xe, 'r', q)
            if v[3] then
              local start, _, refreshed, dl = sunpack('<dddd', v[3])
              local refresh = settle and now - refreshed >= refreshEvery
              local f = { 'r', spack('<dddd', start, now, refresh and now or refreshed, dl) }
              if not settle and hash ~= '' and v[4] then
                -- The call never happened: it does not count as a repeat either.
                add(f, q, tonumber(v[4]) - 1)
              end
              finish(KEYS[ko + 7], v, f)
              if refresh then
                pexpire(KEYS[ko + 7], runLife)
                pexpire(KEYS[ko + 8], runLife)
              end
            end
          end
          -- The user's in-flight slot and the rate windows: a settle corrects the tokens, a release takes the call out,
          -- both only while the call's second is still in the window.
          local ai = a
          local function rate(h, f, n, k, o, second)
            if o == NONE or o > ai or not second then return n, k end
            local c, t = sunpack('<dd', second)
            if settle then
              add(f, wa, spack('<dd', c, t + at - rt))
              return n, k + at - rt
            end
            if c <= 1 then
              -- The second's last live call: no zero-valued field is left behind.
              hdel(h, wa)
            else
              add(f, wa, spack('<dd', c - 1, t - rt))
            end
            return n - 1, k - rt
          end
          local uv = hmget(KEYS[ko + 1], 'u', xe, wa)
          if uv[1] then
            local inFlight, xo, xm, n, k, o = subject(uv[1])
            local f = {}
            if uv[2] then
              inFlight = inFlight - 1
              if tonumber(uv[2]) <= 1 then hdel(KEYS[ko + 1], xe) else add(f, xe, tonumber(uv[2]) - 1) end
            end
            if hasUserRate == 1 then n, k = rate(KEYS[ko + 1], f, n, k, o, uv[3]) end
            add(f, 'u', spack('<dddddd', inFlight, xo, xm, n, k, o))
            hset(KEYS[ko + 1], unpack(f))
          end
          if hasKeyRate == 1 then
            local kv = hmget(KEYS[ko + 9], 'u', wa)
            if kv[1] then
              local _, _, _, n, k, o = subject(kv[1])
              local f = {}
              n, k = rate(KEYS[ko + 9], f, n, k, o, kv[2])
              add(f, 'u', spack('<dddddd', 0, NONE, NONE, n, k, o))
              hset(KEYS[ko + 9], unpack(f))
            end
          end
        end
        batching = #ARGV > 4
        for i = 1, #ARGV / 4 do finishOne((i - 1) * 9, ARGV[4 * i - 3], ARGV[4 * i - 2], ARGV[4 * i - 1], ARGV[4 * i]) end
        flush()
        return #ARGV / 4
        """);

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
          redis.call('HSET', KEYS[1], 'h', '1', 'r', struct.pack('<dddd', start, now, now, dl))
          redis.call('PEXPIRE', KEYS[1], ARGV[4])
          redis.call('PEXPIRE', KEYS[2], ARGV[4])
        elseif r then
          redis.call('HDEL', KEYS[1], 'h')
        end
        return 1
        """);

    // KEYS: 1 run, 2 runx. ARGV: 1 now, 2 run idle.
    // Returns {} for an unknown or idle-expired run, else su st sc ru rt start dl halted lu lt lc la in-flight user.
    public static readonly RedisScript RunState = new("run-state", Prelude + """
        setNow(tonumber(ARGV[1]))
        -- v: 3 r, 4 h, 5 limits, 6 user
        local b = budget(KEYS[1], KEYS[2], 'x0', 'r', 'h', 'l', 'user')
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
        return { b.su, b.st, b.sc, b.ru, b.rt, start, dl, halted, lu, lt, lc, la, b.rc, v[6] or '' }
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
