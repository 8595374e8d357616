using LlmGateway.Redis;

namespace LlmGateway.Budgets;

/// <summary>
/// The Lua scripts of <see cref="RedisAdmissionStore"/>: each operation is one script, so one round trip and atomic.
/// They mirror <see cref="InMemoryAdmissionStore"/>; change both together.
/// </summary>
/// <remarks>
/// Data layout (every key under the store's prefix; {pk} is a <see cref="BudgetPeriods"/> key). Every state is a
/// hash of counters, so an admission costs one HMGET and one HSET per scope whatever the traffic:
/// <list type="bullet">
/// <item><c>u:{user}</c>: <c>h</c> halted; <c>ic</c> calls in flight; the user's rate window (below).</item>
/// <item><c>b:u:{pk}:{user}</c>, <c>b:t:{pk}:{team}</c>, <c>run:{id}</c>: <c>su st sc</c> spent USD (nano-dollars),
/// tokens, calls; <c>ru rt rc</c> reserved USD, tokens, calls (a run's <c>rc</c> is its in-flight count); <c>lu lt lc</c>
/// the limits of the latest admission; <c>pe</c> period end. A run also has <c>start la lr dl h user</c> (first admission,
/// last activity, last key-lifetime refresh, deadline ms, halted, user) and <c>q:{request hash}</c> admissions per
/// request (loop guard).</item>
/// <item>Held reservations, in the same hash: <c>xu{s} xt{s} xc{s}</c> the USD, tokens and calls of the reservations
/// that expire at second s (the user hash keeps only <c>xc{s}</c>), and <c>xo</c> the earliest such second. The
/// seconds pending are a small sorted set beside the hash (<c>ux:</c>, <c>bx:</c>, <c>runx:</c>), written once per
/// second, not per call. When <c>xo</c> has passed, the expired seconds' amounts are given back (their gateway died
/// or lost them). A settle or release takes its amounts out of its second while that second is still held: a
/// second is given back whole, so "still there" means "not yet expired" for every reservation in it. Expiry is
/// rounded up to the whole second (a lost reservation holds up to 1 s longer; never shorter).</item>
/// <item>Rate windows (the user hash, and <c>rl:k:{key}</c>): <c>n k</c> the calls and tokens in the window,
/// <c>c{b} t{b}</c> those of second b, <c>o</c> the oldest second holding calls. A call counts from its admission to
/// the end of its second plus 60 s, so never more than the limit in any 60 s, with memory of 61 seconds per subject
/// whatever the rate (a log of every call was 1M sorted-set members per user at 18k req/s). Seconds that have left
/// are subtracted and deleted by the next call (at most once per second).</item>
/// </list>
/// Redis runs Lua single-threaded, so every redis.call and every table a script builds is throughput taken from all
/// replicas: scripts read a hash once (HMGET) and write it once (HSET), and build no per-call structures they can avoid.
/// Time is the caller's clock (ARGV), not Redis TIME: tests move it, and replicas must run NTP-synced clocks
/// (a skew of s seconds shifts a window edge or expiry by s). Key lifetimes (PEXPIRE, relative) only collect garbage;
/// every decision uses stored timestamps. Numbers are written with <c>%d</c> so no double ever reaches Redis in exponent form.
/// </remarks>
internal static class RedisAdmissionScripts
{
    private const string Prelude = """
        local now = tonumber(ARGV[1])
        local nowSec = math.floor(now / 1000)
        local function num(x) return tonumber(x) or 0 end
        local function int(x) return string.format('%d', x) end
        local function add(f, name, value) f[#f + 1] = name; f[#f + 1] = value end
        -- Gives back the reservations of hash h that expired (their seconds, listed in zset z, have passed).
        -- Returns the USD, tokens and calls they held, and the next pending second ('' if none).
        local function expire(h, z, amounts)
          local es = redis.call('ZRANGEBYSCORE', z, '-inf', nowSec, 'LIMIT', 0, 500)
          local u, t, c = 0, 0, 0
          if #es > 0 then
            local f = {}
            for i = 1, #es do
              if amounts then f[#f + 1] = 'xu' .. es[i]; f[#f + 1] = 'xt' .. es[i] end
              f[#f + 1] = 'xc' .. es[i]
            end
            local v = redis.call('HMGET', h, unpack(f))
            local j = 1
            for i = 1, #es do
              if amounts then u = u + num(v[j]); t = t + num(v[j + 1]); j = j + 2 end
              c = c + num(v[j]); j = j + 1
            end
            redis.call('HDEL', h, unpack(f))
            redis.call('ZREM', z, unpack(es))
          end
          local nx = redis.call('ZRANGE', z, 0, 0)
          return u, t, c, nx[1] or ''
        end
        -- A budget scope: hash h (see the layout) whose reservations expire at second e; extra fields follow from v[11].
        local function budget(h, z, e, ...)
          local v = redis.call('HMGET', h, 'su', 'st', 'sc', 'ru', 'rt', 'rc', 'xo', 'xu' .. e, 'xt' .. e, 'xc' .. e, ...)
          local b = { h = h, z = z, v = v, exists = (v[1] or v[4] or v[7]) and true or false,
                      su = num(v[1]), st = num(v[2]), sc = num(v[3]), ru = num(v[4]), rt = num(v[5]), rc = num(v[6]), xo = tonumber(v[7]) }
          if b.xo and b.xo <= nowSec then
            local u, t, c, nx = expire(h, z, true)
            b.ru = b.ru - u; b.rt = b.rt - t; b.rc = b.rc - c
            b.xo = tonumber(nx)
            b.dirty = true
          end
          return b
        end
        -- A rate window read from its hash values n, k, o; seconds that have left it are subtracted and deleted.
        local function window(h, n, k, o)
          local s = { h = h, n = num(n), k = num(k), o = tonumber(o) }
          if s.o and s.o <= nowSec - 61 then
            local f = {}
            for b = s.o, s.o + 60 do f[#f + 1] = 'c' .. b; f[#f + 1] = 't' .. b end
            local v = redis.call('HMGET', h, unpack(f))
            local gone = {}
            local oldest = nil
            for i = 0, 60 do
              local b = s.o + i
              local c, t = v[2 * i + 1], v[2 * i + 2]
              if b <= nowSec - 61 then
                if c or t then
                  s.n = s.n - num(c); s.k = s.k - num(t)
                  gone[#gone + 1] = 'c' .. b; gone[#gone + 1] = 't' .. b
                end
              elseif not oldest and num(c) > 0 then
                oldest = b
              end
            end
            if #gone > 0 then redis.call('HDEL', h, unpack(gone)) end
            s.o = oldest
            if not oldest then s.n = 0; s.k = 0 end
            s.dirty = true
          end
          return s
        end

        """;

    // KEYS: 1 u, 2 ux, 3 b:u, 4 bx:u, 5 b:t, 6 bx:t, 7 run, 8 runx, 9 rl:k
    // ARGV: 1 now, 2 expiry second, 3 usd, 4 tokens, 5 hasTeam, 6 hasRun, 7 hasUserRate, 8 hasKeyRate,
    //       9-11 user limits (usd tokens calls), 12 user period end, 13-15 team limits, 16 team period end,
    //       17-19 run limits, 20 deadline, 21 max repeats, 22 request hash, 23 run max in flight, 24 user max in flight,
    //       25 user rpm, 26 user tpm, 27 key rpm, 28 key tpm, 29 retention, 30 run idle, 31 in-flight retry,
    //       32 user, 33 run key life, 34 run key refresh
    // Returns: admitted, rejection, scope, limit, limit value, retry-after ms (-1 none),
    //          requests limit/remaining/reset, tokens limit/remaining/reset, user/team/run fraction (ppm).
    public static readonly RedisScript Reserve = new("reserve", Prelude + """
        local e = ARGV[2]
        local usd = tonumber(ARGV[3])
        local tok = tonumber(ARGV[4])
        local uEnd = tonumber(ARGV[12])
        local tEnd = tonumber(ARGV[16])
        local deadline = tonumber(ARGV[20])
        local maxRepeats = tonumber(ARGV[21])
        local hash = ARGV[22]
        local runMaxInFlight = tonumber(ARGV[23])
        local userMaxInFlight = tonumber(ARGV[24])
        local retention = tonumber(ARGV[29])

        local function fraction(b, first)
          local f = 0
          local lu, lt, lc = tonumber(ARGV[first]), tonumber(ARGV[first + 1]), tonumber(ARGV[first + 2])
          if lu > 0 then f = math.max(f, (b.su + b.ru) / lu) end
          if lt > 0 then f = math.max(f, (b.st + b.rt) / lt) end
          if lc > 0 then f = math.max(f, (b.sc + b.rc) / lc) end
          return math.floor(f * 1000000)
        end
        -- An amount of 0 never fails its limit: a free model is never blocked by a USD budget.
        local function check(b, first)
          local lu, lt, lc = tonumber(ARGV[first]), tonumber(ARGV[first + 1]), tonumber(ARGV[first + 2])
          if lu > 0 and usd > 0 and b.su + b.ru + usd > lu then return 1, lu end
          if lt > 0 and tok > 0 and b.st + b.rt + tok > lt then return 2, lt end
          if lc > 0 and b.sc + b.rc + 1 > lc then return 3, lc end
          return 0, 0
        end
        -- When the oldest seconds of window s, leaving it, free `need` of field c (calls) or t (tokens); -1 never.
        local function freeing(s, field, need)
          if not s.o then return -1 end
          local f = {}
          for b = s.o, nowSec do f[#f + 1] = field .. b end
          local v = redis.call('HMGET', s.h, unpack(f))
          local freed = 0
          for i = 1, #v do
            freed = freed + num(v[i])
            if freed >= need then return (s.o + i) * 1000 + 60000 end
          end
          return -1
        end
        local function checkRate(s, rpm, tpm)
          if rpm > 0 and s.n + 1 > rpm then
            local at = freeing(s, 'c', s.n + 1 - rpm)
            if at < 0 then return 4, rpm, -1 end
            return 4, rpm, at - now
          end
          if tpm > 0 and tok > 0 and s.k + tok > tpm then
            if tok > tpm then return 5, tpm, -1 end
            local at = freeing(s, 't', s.k + tok - tpm)
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
          if s.o then reset = (s.o + 1) * 1000 + 60000 - now end
          return { limit, remaining, reset }
        end
        local userRpm, userTpm, keyRpm, keyTpm = tonumber(ARGV[25]), tonumber(ARGV[26]), tonumber(ARGV[27]), tonumber(ARGV[28])
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
        local uv = redis.call('HMGET', KEYS[1], 'h', 'ic', 'xo', 'xc' .. e, 'n', 'k', 'o', 'c' .. nowSec, 't' .. nowSec)
        local inFlight, userXo, userDirty = num(uv[2]), tonumber(uv[3]), false
        if userXo and userXo <= nowSec then
          local _, _, c, nx = expire(KEYS[1], KEYS[2], false)
          inFlight = inFlight - c
          userXo = tonumber(nx)
          userDirty = true
        end
        if ARGV[7] == '1' then us = window(KEYS[1], uv[5], uv[6], uv[7]) end
        local kv
        if ARGV[8] == '1' then
          kv = redis.call('HMGET', KEYS[9], 'n', 'k', 'o', 'c' .. nowSec, 't' .. nowSec)
          ks = window(KEYS[9], kv[1], kv[2], kv[3])
        end
        local ub = budget(KEYS[3], KEYS[4], e, 'lu', 'lt', 'lc')
        local fu, ft, fr = fraction(ub, 9), 0, 0
        local tb
        if ARGV[5] == '1' then
          tb = budget(KEYS[5], KEYS[6], e, 'lu', 'lt', 'lc')
          ft = fraction(tb, 13)
        end
        local run
        if ARGV[6] == '1' then
          run = budget(KEYS[7], KEYS[8], e, 'lu', 'lt', 'lc', 'h', 'start', 'la', 'lr', 'q:' .. hash)
          local la = run.v[16]
          if la and now - tonumber(la) >= tonumber(ARGV[30]) then
            -- Idle for too long: the run is forgotten and starts afresh.
            redis.call('DEL', KEYS[7], KEYS[8])
            run = budget(KEYS[7], KEYS[8], e, 'lu', 'lt', 'lc', 'h', 'start', 'la', 'lr', 'q:' .. hash)
          end
          run.halted = run.v[14]
          run.start = run.v[15] and tonumber(run.v[15]) or -1
          run.refreshed = run.v[17] and tonumber(run.v[17]) or -1
          run.repeats = num(run.v[18])
          if run.v[16] then fr = fraction(run, 17) else run.absent = true end
        end

        local function result(admitted, rejection, scope, limit, value, retry, rq, tk)
          rq = rq or { 0, 0, 0 }
          tk = tk or { 0, 0, 0 }
          return { admitted, rejection, scope, limit, value, retry, rq[1], rq[2], rq[3], tk[1], tk[2], tk[3], fu, ft, fr }
        end
        -- A refusal still writes back what expiring and window eviction changed.
        local function flushWindow(h, s, f)
          if s and s.dirty then
            add(f, 'n', int(s.n)); add(f, 'k', int(s.k)); add(f, 'o', s.o and int(s.o) or '')
          end
          if #f > 0 then redis.call('HSET', h, unpack(f)) end
        end
        local function flushBudget(b)
          if b and b.dirty then
            redis.call('HSET', b.h, 'ru', int(b.ru), 'rt', int(b.rt), 'rc', int(b.rc), 'xo', b.xo and int(b.xo) or '')
          end
        end
        local function reject(rejection, scope, limit, value, retry, rq, tk)
          local f = {}
          if userDirty then add(f, 'ic', int(inFlight)); add(f, 'xo', userXo and int(userXo) or '') end
          flushWindow(KEYS[1], us, f)
          if ks then flushWindow(KEYS[9], ks, {}) end
          flushBudget(ub)
          flushBudget(tb)
          if run and not run.absent then flushBudget(run) end
          return result(0, rejection, scope, limit, value, retry, rq, tk)
        end

        -- Control first, then what no retry fixes, then what waiting fixes (same order as the in-memory store).
        if uv[1] then return reject(6, 1, 0, 0, -1) end
        if run and not run.absent then
          if run.halted then return reject(5, 3, 0, 0, -1) end
          if deadline > 0 and run.start >= 0 and now >= run.start + deadline then return reject(3, 3, 7, deadline, -1) end
          if maxRepeats > 0 and hash ~= '' and run.repeats + 1 > maxRepeats then return reject(4, 3, 8, maxRepeats, -1) end
        end
        local kind, value = check(ub, 9)
        if kind > 0 then
          local retry = -1
          if uEnd > 0 then retry = uEnd - now end
          return reject(1, 1, kind, value, retry)
        end
        if tb then
          kind, value = check(tb, 13)
          if kind > 0 then
            local retry = -1
            if tEnd > 0 then retry = tEnd - now end
            return reject(1, 2, kind, value, retry)
          end
        end
        if run then
          kind, value = check(run, 17)
          if kind > 0 then return reject(1, 3, kind, value, -1) end
        end
        if userMaxInFlight > 0 and inFlight + 1 > userMaxInFlight then return reject(2, 1, 6, userMaxInFlight, tonumber(ARGV[31])) end
        if run and runMaxInFlight > 0 and run.rc + 1 > runMaxInFlight then return reject(2, 3, 6, runMaxInFlight, tonumber(ARGV[31])) end
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
        local ei = tonumber(e)
        local function hold(b, first, f, life)
          add(f, 'ru', int(b.ru + usd)); add(f, 'rt', int(b.rt + tok)); add(f, 'rc', int(b.rc + 1))
          add(f, 'xu' .. e, int(num(b.v[8]) + usd)); add(f, 'xt' .. e, int(num(b.v[9]) + tok)); add(f, 'xc' .. e, int(num(b.v[10]) + 1))
          local xo = (b.xo and b.xo < ei) and b.xo or ei
          if xo ~= tonumber(b.v[7]) then add(f, 'xo', int(xo)) end
          local names = { 'lu', 'lt', 'lc' }
          for i = 1, 3 do
            if b.v[10 + i] ~= ARGV[first + i - 1] then add(f, names[i], ARGV[first + i - 1]) end
          end
          redis.call('HSET', b.h, unpack(f))
          if not b.v[10] then
            redis.call('ZADD', b.z, e, e)
            if life > 0 then redis.call('PEXPIRE', b.z, int(life)) end
          end
          if life > 0 and not b.exists then redis.call('PEXPIRE', b.h, int(life)) end
        end
        local function periodFields(b, pe)
          if b.exists then return {} end
          return { 'pe', pe }
        end
        hold(ub, 9, periodFields(ub, ARGV[12]), uEnd > 0 and uEnd - now + retention or 0)
        if tb then hold(tb, 13, periodFields(tb, ARGV[16]), tEnd > 0 and tEnd - now + retention or 0) end
        if run then
          local f = { 'la', ARGV[1], 'dl', ARGV[20], 'user', ARGV[32] }
          if run.start < 0 then add(f, 'start', ARGV[1]) end
          if hash ~= '' then add(f, 'q:' .. hash, int(run.repeats + 1)) end
          -- Key lifetimes are refreshed at most once per refresh interval, and lr records when.
          local refresh = run.refreshed < 0 or now - run.refreshed >= tonumber(ARGV[34])
          if refresh then add(f, 'lr', ARGV[1]) end
          hold(run, 17, f, 0)
          if refresh or not run.v[10] then
            redis.call('PEXPIRE', KEYS[7], ARGV[33])
            redis.call('PEXPIRE', KEYS[8], ARGV[33])
          end
        end
        local f = { 'ic', int(inFlight + 1), 'xc' .. e, int(num(uv[4]) + 1) }
        local xo = (userXo and userXo < ei) and userXo or ei
        if xo ~= tonumber(uv[3]) then add(f, 'xo', int(xo)) end
        if not uv[4] then redis.call('ZADD', KEYS[2], e, e) end
        local function take(s, h, f, c, t)
          s.n = s.n + 1
          s.k = s.k + tok
          if not s.o then s.o = nowSec end
          add(f, 'n', int(s.n)); add(f, 'k', int(s.k)); add(f, 'o', int(s.o))
          add(f, 'c' .. nowSec, int(num(c) + 1)); add(f, 't' .. nowSec, int(num(t) + tok))
          s.dirty = false
        end
        if us then take(us, KEYS[1], f, uv[8], uv[9]) end
        redis.call('HSET', KEYS[1], unpack(f))
        if ks then
          local kf = {}
          take(ks, KEYS[9], kf, kv[4], kv[5])
          redis.call('HSET', KEYS[9], unpack(kf))
        end
        local rq, tk = snapshot()
        return result(1, 0, 0, 0, 0, -1, rq, tk)
        """);

    // Settle (ARGV[2] = 's': the call happened, charge what it cost) or release ('r': it never happened, undo it).
    // KEYS: as Reserve. ARGV: 1 now, 2 mode, 3 expiry second, 4 admission second, 5 reserved usd, 6 reserved tokens,
    //       7 actual usd, 8 actual tokens, 9 hasTeam, 10 hasRun, 11 hasUserRate, 12 hasKeyRate, 13 user period end,
    //       14 team period end, 15 retention, 16 run key life, 17 run key refresh, 18 request hash
    public static readonly RedisScript Finish = new("finish", Prelude + """
        local settle = ARGV[2] == 's'
        local e, a = ARGV[3], ARGV[4]
        local ru, rt = tonumber(ARGV[5]), tonumber(ARGV[6])
        local au, at = tonumber(ARGV[7]), tonumber(ARGV[8])
        -- A budget scope: charge (settle), and give the reservation back unless its second already expired.
        local function finish(h, v, f)
          if settle then
            add(f, 'su', int(num(v[1]) + au)); add(f, 'st', int(num(v[2]) + at)); add(f, 'sc', int(num(v[3]) + 1))
          end
          if v[9] then
            add(f, 'ru', int(num(v[4]) - ru)); add(f, 'rt', int(num(v[5]) - rt)); add(f, 'rc', int(num(v[6]) - 1))
            add(f, 'xu' .. e, int(num(v[7]) - ru)); add(f, 'xt' .. e, int(num(v[8]) - rt)); add(f, 'xc' .. e, int(num(v[9]) - 1))
          end
          if #f > 0 then redis.call('HSET', h, unpack(f)) end
        end
        local function period(h, pe)
          local v = redis.call('HMGET', h, 'su', 'st', 'sc', 'ru', 'rt', 'rc', 'xu' .. e, 'xt' .. e, 'xc' .. e)
          finish(h, v, {})
          if settle and not (v[1] or v[4]) and pe > 0 and pe - now + tonumber(ARGV[15]) > 0 then
            redis.call('PEXPIRE', h, int(pe - now + tonumber(ARGV[15])))
          end
        end
        period(KEYS[3], tonumber(ARGV[13]))
        if ARGV[9] == '1' then period(KEYS[5], tonumber(ARGV[14])) end
        if ARGV[10] == '1' then
          local q = 'q:' .. ARGV[18]
          local v = redis.call('HMGET', KEYS[7], 'su', 'st', 'sc', 'ru', 'rt', 'rc', 'xu' .. e, 'xt' .. e, 'xc' .. e, 'la', 'lr', q)
          if v[10] then
            local f = { 'la', ARGV[1] }
            local refresh = false
            if settle then
              refresh = not v[11] or now - tonumber(v[11]) >= tonumber(ARGV[17])
              if refresh then add(f, 'lr', ARGV[1]) end
            elseif ARGV[18] ~= '' and v[12] then
              -- The call never happened: it does not count as a repeat either.
              add(f, q, int(num(v[12]) - 1))
            end
            finish(KEYS[7], v, f)
            if refresh then
              redis.call('PEXPIRE', KEYS[7], ARGV[16])
              redis.call('PEXPIRE', KEYS[8], ARGV[16])
            end
          end
        end
        -- The user's in-flight slot and the rate windows: a settle corrects the tokens, a release takes the call out,
        -- both only while the call's second is still in the window.
        local function rate(h, v, f, n, k, o, c, t)
          local oldest = tonumber(v[o])
          if not oldest or oldest > tonumber(a) then return end
          if settle then
            add(f, 'k', int(num(v[k]) + at - rt)); add(f, 't' .. a, int(num(v[t]) + at - rt))
          else
            add(f, 'n', int(num(v[n]) - 1)); add(f, 'k', int(num(v[k]) - rt))
            if num(v[c]) <= 1 then
              -- The second's last live call: no zero-valued fields are left behind.
              redis.call('HDEL', h, 'c' .. a, 't' .. a)
            else
              add(f, 'c' .. a, int(num(v[c]) - 1)); add(f, 't' .. a, int(num(v[t]) - rt))
            end
          end
        end
        local uv = redis.call('HMGET', KEYS[1], 'ic', 'xc' .. e, 'n', 'k', 'o', 'c' .. a, 't' .. a)
        local f = {}
        if uv[2] then add(f, 'ic', int(num(uv[1]) - 1)); add(f, 'xc' .. e, int(num(uv[2]) - 1)) end
        if ARGV[11] == '1' then rate(KEYS[1], uv, f, 3, 4, 5, 6, 7) end
        if #f > 0 then redis.call('HSET', KEYS[1], unpack(f)) end
        if ARGV[12] == '1' then
          local kv = redis.call('HMGET', KEYS[9], 'n', 'k', 'o', 'c' .. a, 't' .. a)
          local kf = {}
          rate(KEYS[9], kv, kf, 1, 2, 3, 4, 5)
          if #kf > 0 then redis.call('HSET', KEYS[9], unpack(kf)) end
        end
        return 1
        """);

    // KEYS: 1 run, 2 runx. ARGV: 1 now, 2 run idle, 3 '1' halt / '0' resume, 4 run key life
    public static readonly RedisScript HaltRun = new("halt-run", """
        local now = tonumber(ARGV[1])
        local la = redis.call('HGET', KEYS[1], 'la')
        if la and now - tonumber(la) >= tonumber(ARGV[2]) then
          redis.call('DEL', KEYS[1], KEYS[2])
          la = false
        end
        if ARGV[3] == '1' then
          redis.call('HSET', KEYS[1], 'h', '1', 'la', ARGV[1], 'lr', ARGV[1])
          redis.call('PEXPIRE', KEYS[1], ARGV[4])
          redis.call('PEXPIRE', KEYS[2], ARGV[4])
        elseif la then
          redis.call('HDEL', KEYS[1], 'h')
        end
        return 1
        """);

    // KEYS: 1 run, 2 runx. ARGV: 1 now, 2 run idle.
    // Returns {} for an unknown or idle-expired run, else su st sc ru rt start dl halted lu lt lc la in-flight user.
    public static readonly RedisScript RunState = new("run-state", Prelude + """
        local la = redis.call('HGET', KEYS[1], 'la')
        if not la or now - tonumber(la) >= tonumber(ARGV[2]) then return {} end
        local b = budget(KEYS[1], KEYS[2], '0', 'start', 'dl', 'h', 'lu', 'lt', 'lc', 'user')
        if b.dirty then redis.call('HSET', KEYS[1], 'ru', int(b.ru), 'rt', int(b.rt), 'rc', int(b.rc), 'xo', b.xo and int(b.xo) or '') end
        local v = b.v
        local start = -1
        if v[11] then start = tonumber(v[11]) end
        local halted = 0
        if v[13] then halted = 1 end
        return { b.su, b.st, b.sc, b.ru, b.rt, start, num(v[12]), halted, num(v[14]), num(v[15]), num(v[16]), tonumber(la), b.rc, v[17] or '' }
        """);

    // KEYS: 1 u, 2 ux, 3 b:u, 4 bx:u. ARGV: 1 now.
    // Returns su st sc ru rt lu lt lc pe in-flight halted.
    public static readonly RedisScript UserState = new("user-state", Prelude + """
        local b = budget(KEYS[3], KEYS[4], '0', 'lu', 'lt', 'lc', 'pe')
        if b.dirty then redis.call('HSET', KEYS[3], 'ru', int(b.ru), 'rt', int(b.rt), 'rc', int(b.rc), 'xo', b.xo and int(b.xo) or '') end
        local uv = redis.call('HMGET', KEYS[1], 'h', 'ic', 'xo')
        local inFlight = num(uv[2])
        local xo = tonumber(uv[3])
        if xo and xo <= nowSec then
          local _, _, c, nx = expire(KEYS[1], KEYS[2], false)
          inFlight = inFlight - c
          redis.call('HSET', KEYS[1], 'ic', int(inFlight), 'xo', nx)
        end
        local halted = 0
        if uv[1] then halted = 1 end
        return { b.su, b.st, b.sc, b.ru, b.rt, num(b.v[11]), num(b.v[12]), num(b.v[13]), num(b.v[14]), inFlight, halted }
        """);
}
