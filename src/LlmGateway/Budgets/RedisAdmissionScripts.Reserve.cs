using LlmGateway.Redis;

namespace LlmGateway.Budgets;

/// <summary>The admission script (see <see cref="RedisAdmissionScripts"/>).</summary>
internal static partial class RedisAdmissionScripts
{
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
}
