using LlmGateway.Redis;

namespace LlmGateway.Budgets;

/// <summary>
/// The Lua scripts of <see cref="RedisAdmissionStore"/>: each operation is one script, so one round trip and atomic.
/// They mirror <see cref="InMemoryAdmissionStore"/> line for line; change both together.
/// </summary>
/// <remarks>
/// Data layout (every key under the store's prefix; {pk} is a <see cref="BudgetPeriods"/> key):
/// <list type="bullet">
/// <item><c>u:{user}</c> hash: <c>h</c> = halted.</item>
/// <item><c>uif:{user}</c> zset: the user's held reservation ids, scored by expiry (the in-flight count).</item>
/// <item><c>b:u:{pk}:{user}</c>, <c>b:t:{pk}:{team}</c>, <c>run:{id}</c> hashes: <c>su st sc</c> spent USD (nano-dollars),
/// tokens, calls; <c>ru rt rc</c> reserved USD, tokens, calls (a run's <c>rc</c> is its in-flight count); <c>lu lt lc</c>
/// the limits of the latest admission; <c>pe</c> period end. A run also has <c>start la lr dl h user</c> (first admission,
/// last activity, last key-lifetime refresh, deadline ms, halted, user) and <c>q:{request hash}</c> admissions per
/// request (loop guard).</item>
/// <item><c>r:u:{pk}:{user}</c>, <c>r:t:{pk}:{team}</c>, <c>runr:{id}</c> zsets: held reservations as
/// <c>id|usd|tokens</c> scored by expiry. Expired members are purged, and their amounts given back, by the next
/// script that reads the scope.</item>
/// <item><c>rl:u:{user}</c>, <c>rl:k:{key}</c> zsets and <c>rlt:…</c> hashes: the sliding-window log of each
/// rate-limit subject, <c>id|tokens</c> scored by admission time, and their total <c>_t</c>.</item>
/// </list>
/// Scripts read a hash once (HMGET) and write it once (HSET): Redis runs Lua single-threaded, so every redis.call
/// saved is throughput for all replicas. Key lifetimes are refreshed only when due (<c>lr</c>, <c>_r</c>).
/// Time is the caller's clock (ARGV), not Redis TIME: tests move it, and replicas must run NTP-synced clocks
/// (a skew of s seconds shifts a window edge or expiry by s). Key lifetimes (PEXPIRE, relative) only collect garbage;
/// every decision uses stored timestamps. Numbers are written with <c>%d</c> so no double ever reaches Redis in exponent form.
/// </remarks>
internal static class RedisAdmissionScripts
{
    private const string Prelude = """
        local function num(x) if x then return tonumber(x) or 0 end return 0 end
        local function int(x) return string.format('%d', x) end
        local function amounts(m)
          local a = string.find(m, '|', 1, true)
          local b = string.find(m, '|', a + 1, true)
          if b then return tonumber(string.sub(m, a + 1, b - 1)), tonumber(string.sub(m, b + 1)) end
          return 0, tonumber(string.sub(m, a + 1))
        end
        -- Reads a budget scope (hash h, held reservations z) and gives back what its expired reservations held.
        local function loadBudget(h, z, now, ...)
          local v = redis.call('HMGET', h, 'su', 'st', 'sc', 'ru', 'rt', 'rc', ...)
          local b = { h = h, z = z, v = v, exists = (v[1] or v[4]) and true or false,
                      su = num(v[1]), st = num(v[2]), sc = num(v[3]), ru = num(v[4]), rt = num(v[5]), rc = num(v[6]) }
          local expired = redis.call('ZRANGEBYSCORE', z, '-inf', int(now))
          if #expired > 0 then
            for i = 1, #expired do
              local u, t = amounts(expired[i])
              b.ru = b.ru - u
              b.rt = b.rt - t
            end
            b.rc = b.rc - #expired
            redis.call('ZREMRANGEBYSCORE', z, '-inf', int(now))
            redis.call('HSET', h, 'ru', int(b.ru), 'rt', int(b.rt), 'rc', int(b.rc))
          end
          return b
        end

        """;

    // KEYS: 1 u, 2 uif, 3 b:u, 4 r:u, 5 b:t, 6 r:t, 7 run, 8 runr, 9 rl:u, 10 rlt:u, 11 rl:k, 12 rlt:k
    // ARGV: 1 now, 2 id, 3 expiry, 4 ttl, 5 usd, 6 tokens, 7 hasTeam, 8 hasRun, 9 hasUserRate, 10 hasKeyRate,
    //       11-13 user limits (usd tokens calls), 14 user period end, 15-17 team limits, 18 team period end,
    //       19-21 run limits, 22 deadline, 23 max repeats, 24 request hash, 25 run max in flight, 26 user max in flight,
    //       27 user rpm, 28 user tpm, 29 key rpm, 30 key tpm, 31 window, 32 retention, 33 run idle, 34 in-flight retry,
    //       35 user, 36 run key life, 37 run key refresh, 38 rate key life, 39 rate key refresh
    // Returns: admitted, rejection, scope, limit, limit value, retry-after ms (-1 none),
    //          requests limit/remaining/reset, tokens limit/remaining/reset, user/team/run fraction (ppm).
    public static readonly RedisScript Reserve = new("reserve", Prelude + """
        local now = tonumber(ARGV[1])
        local id = ARGV[2]
        local usd = tonumber(ARGV[5])
        local tok = tonumber(ARGV[6])
        local uLimits = { tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13]) }
        local uEnd = tonumber(ARGV[14])
        local tLimits = { tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17]) }
        local tEnd = tonumber(ARGV[18])
        local rLimits = { tonumber(ARGV[19]), tonumber(ARGV[20]), tonumber(ARGV[21]) }
        local deadline = tonumber(ARGV[22])
        local maxRepeats = tonumber(ARGV[23])
        local hash = ARGV[24]
        local runMaxInFlight = tonumber(ARGV[25])
        local userMaxInFlight = tonumber(ARGV[26])
        local window = tonumber(ARGV[31])
        local retention = tonumber(ARGV[32])
        local idle = tonumber(ARGV[33])
        local inFlightRetry = tonumber(ARGV[34])

        local function fraction(b, l)
          local f = 0
          if l[1] > 0 then f = math.max(f, (b.su + b.ru) / l[1]) end
          if l[2] > 0 then f = math.max(f, (b.st + b.rt) / l[2]) end
          if l[3] > 0 then f = math.max(f, (b.sc + b.rc) / l[3]) end
          return math.floor(f * 1000000)
        end
        -- An amount of 0 never fails its limit: a free model is never blocked by a USD budget.
        local function check(b, l)
          if l[1] > 0 and usd > 0 and b.su + b.ru + usd > l[1] then return 1, l[1] end
          if l[2] > 0 and tok > 0 and b.st + b.rt + tok > l[2] then return 2, l[2] end
          if l[3] > 0 and b.sc + b.rc + 1 > l[3] then return 3, l[3] end
          return 0, 0
        end
        -- A rate-limit subject: zset z of "id|tokens" scored by admission time, hash t with the total _t.
        local function rateState(z, t, rpm, tpm)
          local v = redis.call('HMGET', t, '_t', '_r')
          local s = { z = z, t = t, rpm = rpm, tpm = tpm, tokens = num(v[1]), refreshed = v[2] and tonumber(v[2]) or -1 }
          local cutoff = int(now - window)
          local old = redis.call('ZRANGEBYSCORE', z, '-inf', cutoff)
          if #old > 0 then
            for i = 1, #old do
              local _, used = amounts(old[i])
              s.tokens = s.tokens - used
            end
            redis.call('ZREMRANGEBYSCORE', z, '-inf', cutoff)
            s.dirty = true
          end
          s.n = redis.call('ZCARD', z)
          return s
        end
        local function oldest(s)
          if s.oldest == nil then
            local e = redis.call('ZRANGE', s.z, 0, 0, 'WITHSCORES')
            s.oldest = -1
            if #e > 0 then s.oldest = tonumber(e[2]) end
          end
          return s.oldest
        end
        -- The admission time of the oldest entries whose leaving frees `need` tokens, or -1.
        local function freeingTime(s, need)
          local freed, start = 0, 0
          while true do
            local page = redis.call('ZRANGE', s.z, start, start + 99, 'WITHSCORES')
            if #page == 0 then return -1 end
            for i = 1, #page, 2 do
              local _, used = amounts(page[i])
              freed = freed + used
              if freed >= need then return tonumber(page[i + 1]) end
            end
            start = start + 100
          end
        end
        local function checkRate(s)
          if s.rpm > 0 and s.n + 1 > s.rpm then
            local e = redis.call('ZRANGE', s.z, s.n - s.rpm, s.n - s.rpm, 'WITHSCORES')
            return 4, s.rpm, tonumber(e[2]) + window - now
          end
          if s.tpm > 0 and tok > 0 and s.tokens + tok > s.tpm then
            if tok > s.tpm then return 5, s.tpm, -1 end
            local at = freeingTime(s, s.tokens + tok - s.tpm)
            if at < 0 then return 5, s.tpm, -1 end
            return 5, s.tpm, at + window - now
          end
          return 0, 0, -1
        end
        local function tighter(best, limit, remaining, s)
          if limit <= 0 then return best end
          if remaining < 0 then remaining = 0 end
          if best[1] > 0 and remaining >= best[2] then return best end
          local at = oldest(s)
          local reset = 0
          if at >= 0 then reset = at + window - now end
          return { limit, remaining, reset }
        end
        local function snapshot(us, ks)
          local rq, tk = { 0, 0, 0 }, { 0, 0, 0 }
          if us then
            rq = tighter(rq, us.rpm, us.rpm - us.n, us)
            tk = tighter(tk, us.tpm, us.tpm - us.tokens, us)
          end
          if ks then
            rq = tighter(rq, ks.rpm, ks.rpm - ks.n, ks)
            tk = tighter(tk, ks.tpm, ks.tpm - ks.tokens, ks)
          end
          return rq, tk
        end

        local fu, ft, fr = 0, 0, 0
        local us, ks
        local function result(admitted, rejection, scope, limit, value, retry, rq, tk)
          rq = rq or { 0, 0, 0 }
          tk = tk or { 0, 0, 0 }
          return { admitted, rejection, scope, limit, value, retry, rq[1], rq[2], rq[3], tk[1], tk[2], tk[3], fu, ft, fr }
        end
        local function reject(rejection, scope, limit, value, retry, rq, tk)
          if us and us.dirty then redis.call('HSET', us.t, '_t', int(us.tokens)) end
          if ks and ks.dirty then redis.call('HSET', ks.t, '_t', int(ks.tokens)) end
          return result(0, rejection, scope, limit, value, retry, rq, tk)
        end

        local ub = loadBudget(KEYS[3], KEYS[4], now, 'lu', 'lt', 'lc')
        fu = fraction(ub, uLimits)
        local tb
        if ARGV[7] == '1' then
          tb = loadBudget(KEYS[5], KEYS[6], now, 'lu', 'lt', 'lc')
          ft = fraction(tb, tLimits)
        end
        local run
        if ARGV[8] == '1' then
          local q = 'q:' .. hash
          run = loadBudget(KEYS[7], KEYS[8], now, 'lu', 'lt', 'lc', 'h', 'start', 'la', 'lr', q)
          local la = run.v[12]
          if la and now - tonumber(la) >= idle then
            -- Idle for too long: the run is forgotten and starts afresh.
            redis.call('DEL', KEYS[7], KEYS[8])
            run = { h = KEYS[7], z = KEYS[8], v = {}, exists = false, su = 0, st = 0, sc = 0, ru = 0, rt = 0, rc = 0 }
          end
          run.halted = run.v[10]
          run.start = run.v[11] and tonumber(run.v[11]) or -1
          run.refreshed = run.v[13] and tonumber(run.v[13]) or -1
          run.repeats = num(run.v[14])
          if run.v[12] then fr = fraction(run, rLimits) else run.absent = true end
        end
        redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
        local userInFlight = redis.call('ZCARD', KEYS[2])
        if ARGV[9] == '1' then us = rateState(KEYS[9], KEYS[10], tonumber(ARGV[27]), tonumber(ARGV[28])) end
        if ARGV[10] == '1' then ks = rateState(KEYS[11], KEYS[12], tonumber(ARGV[29]), tonumber(ARGV[30])) end

        -- Control first, then what no retry fixes, then what waiting fixes (same order as the in-memory store).
        if redis.call('HGET', KEYS[1], 'h') then return reject(6, 1, 0, 0, -1) end
        if run and not run.absent then
          if run.halted then return reject(5, 3, 0, 0, -1) end
          if deadline > 0 and run.start >= 0 and now >= run.start + deadline then return reject(3, 3, 7, deadline, -1) end
          if maxRepeats > 0 and hash ~= '' and run.repeats + 1 > maxRepeats then return reject(4, 3, 8, maxRepeats, -1) end
        end
        local kind, value = check(ub, uLimits)
        if kind > 0 then
          local retry = -1
          if uEnd > 0 then retry = uEnd - now end
          return reject(1, 1, kind, value, retry)
        end
        if tb then
          kind, value = check(tb, tLimits)
          if kind > 0 then
            local retry = -1
            if tEnd > 0 then retry = tEnd - now end
            return reject(1, 2, kind, value, retry)
          end
        end
        if run then
          kind, value = check(run, rLimits)
          if kind > 0 then return reject(1, 3, kind, value, -1) end
        end
        if userMaxInFlight > 0 and userInFlight + 1 > userMaxInFlight then return reject(2, 1, 6, userMaxInFlight, inFlightRetry) end
        if run and runMaxInFlight > 0 and run.rc + 1 > runMaxInFlight then return reject(2, 3, 6, runMaxInFlight, inFlightRetry) end
        local retry
        if us then
          kind, value, retry = checkRate(us)
          if kind > 0 then
            local rq, tk = snapshot(us, ks)
            return reject(2, 1, kind, value, retry, rq, tk)
          end
        end
        if ks then
          kind, value, retry = checkRate(ks)
          if kind > 0 then
            local rq, tk = snapshot(us, ks)
            return reject(2, 4, kind, value, retry, rq, tk)
          end
        end

        -- Everything fits: hold the worst case everywhere.
        local member = id .. '|' .. ARGV[5] .. '|' .. ARGV[6]
        -- fields: the hash's new values; limits written only when they changed; life > 0: period keys' lifetime.
        local function hold(b, first, fields, life)
          fields[#fields + 1] = 'ru'
          fields[#fields + 1] = int(b.ru + usd)
          fields[#fields + 1] = 'rt'
          fields[#fields + 1] = int(b.rt + tok)
          fields[#fields + 1] = 'rc'
          fields[#fields + 1] = int(b.rc + 1)
          local names = { 'lu', 'lt', 'lc' }
          for i = 1, 3 do
            if b.v[6 + i] ~= ARGV[first + i - 1] then
              fields[#fields + 1] = names[i]
              fields[#fields + 1] = ARGV[first + i - 1]
            end
          end
          redis.call('HSET', b.h, unpack(fields))
          redis.call('ZADD', b.z, ARGV[3], member)
          if life > 0 then
            if not b.exists then redis.call('PEXPIRE', b.h, int(life)) end
            if b.rc == 0 then redis.call('PEXPIRE', b.z, int(life)) end
          end
        end
        local function periodFields(b, e)
          if b.exists then return {} end
          return { 'pe', e }
        end
        hold(ub, 11, periodFields(ub, ARGV[14]), uEnd > 0 and uEnd - now + retention or 0)
        if tb then hold(tb, 15, periodFields(tb, ARGV[18]), tEnd > 0 and tEnd - now + retention or 0) end
        if run then
          local fields = { 'la', ARGV[1], 'dl', ARGV[22], 'user', ARGV[35] }
          if run.start < 0 then
            fields[#fields + 1] = 'start'
            fields[#fields + 1] = ARGV[1]
          end
          if hash ~= '' then
            fields[#fields + 1] = 'q:' .. hash
            fields[#fields + 1] = int(run.repeats + 1)
          end
          -- Key lifetimes are refreshed at most once per refresh interval, and lr records when.
          local refresh = run.refreshed < 0 or now - run.refreshed >= tonumber(ARGV[37])
          if refresh then
            fields[#fields + 1] = 'lr'
            fields[#fields + 1] = ARGV[1]
          end
          hold(run, 19, fields, 0)
          if refresh then
            redis.call('PEXPIRE', KEYS[7], ARGV[36])
            redis.call('PEXPIRE', KEYS[8], ARGV[36])
          elseif run.rc == 0 then
            redis.call('PEXPIRE', KEYS[8], ARGV[36])
          end
        end
        redis.call('ZADD', KEYS[2], ARGV[3], id)
        if userInFlight == 0 then
          redis.call('PEXPIRE', KEYS[2], ARGV[4])
        else
          redis.call('PEXPIRE', KEYS[2], ARGV[4], 'GT')
        end
        local function take(s)
          redis.call('ZADD', s.z, ARGV[1], id .. '|' .. ARGV[6])
          s.n = s.n + 1
          s.tokens = s.tokens + tok
          s.oldest = nil
          if s.n == 1 or s.refreshed < 0 or now - s.refreshed >= tonumber(ARGV[39]) then
            redis.call('HSET', s.t, '_t', int(s.tokens), '_r', ARGV[1])
            redis.call('PEXPIRE', s.z, ARGV[38])
            redis.call('PEXPIRE', s.t, ARGV[38])
          else
            redis.call('HSET', s.t, '_t', int(s.tokens))
          end
        end
        if us then take(us) end
        if ks then take(ks) end
        local rq, tk = snapshot(us, ks)
        return result(1, 0, 0, 0, 0, -1, rq, tk)
        """);

    // KEYS: as Reserve. ARGV: 1 now, 2 id, 3 member, 4 reserved usd, 5 reserved tokens, 6 actual usd, 7 actual tokens,
    //       8 hasTeam, 9 hasRun, 10 hasUserRate, 11 hasKeyRate, 12 user period end, 13 team period end, 14 retention,
    //       15 run key life, 16 run key refresh, 17 admission time
    public static readonly RedisScript Settle = new("settle", Prelude + """
        local now = tonumber(ARGV[1])
        local retention = tonumber(ARGV[14])
        -- Charges the actual cost; gives the reservation back unless expiry already did.
        local function settle(h, z, v, fields)
          fields[#fields + 1] = 'su'
          fields[#fields + 1] = int(num(v[1]) + tonumber(ARGV[6]))
          fields[#fields + 1] = 'st'
          fields[#fields + 1] = int(num(v[2]) + tonumber(ARGV[7]))
          fields[#fields + 1] = 'sc'
          fields[#fields + 1] = int(num(v[3]) + 1)
          if redis.call('ZREM', z, ARGV[3]) == 1 then
            fields[#fields + 1] = 'ru'
            fields[#fields + 1] = int(num(v[4]) - tonumber(ARGV[4]))
            fields[#fields + 1] = 'rt'
            fields[#fields + 1] = int(num(v[5]) - tonumber(ARGV[5]))
            fields[#fields + 1] = 'rc'
            fields[#fields + 1] = int(num(v[6]) - 1)
          end
          redis.call('HSET', h, unpack(fields))
        end
        local function settlePeriod(h, z, e)
          local v = redis.call('HMGET', h, 'su', 'st', 'sc', 'ru', 'rt', 'rc')
          settle(h, z, v, {})
          if not (v[1] or v[4]) and e > 0 and e - now + retention > 0 then redis.call('PEXPIRE', h, int(e - now + retention)) end
        end
        settlePeriod(KEYS[3], KEYS[4], tonumber(ARGV[12]))
        if ARGV[8] == '1' then settlePeriod(KEYS[5], KEYS[6], tonumber(ARGV[13])) end
        if ARGV[9] == '1' then
          local v = redis.call('HMGET', KEYS[7], 'su', 'st', 'sc', 'ru', 'rt', 'rc', 'la', 'lr')
          if v[7] then
            local refresh = not v[8] or now - tonumber(v[8]) >= tonumber(ARGV[16])
            local fields = { 'la', ARGV[1] }
            if refresh then
              fields[3] = 'lr'
              fields[4] = ARGV[1]
            end
            settle(KEYS[7], KEYS[8], v, fields)
            if refresh then
              redis.call('PEXPIRE', KEYS[7], ARGV[15])
              redis.call('PEXPIRE', KEYS[8], ARGV[15])
            end
          end
        end
        redis.call('ZREM', KEYS[2], ARGV[2])
        local function correct(z, t)
          if redis.call('ZREM', z, ARGV[2] .. '|' .. ARGV[5]) == 1 then
            redis.call('ZADD', z, ARGV[17], ARGV[2] .. '|' .. ARGV[7])
            redis.call('HINCRBY', t, '_t', int(tonumber(ARGV[7]) - tonumber(ARGV[5])))
          end
        end
        if ARGV[10] == '1' then correct(KEYS[9], KEYS[10]) end
        if ARGV[11] == '1' then correct(KEYS[11], KEYS[12]) end
        return 1
        """);

    // KEYS: as Reserve. ARGV: 1 now, 2 id, 3 member, 4 reserved usd, 5 reserved tokens, 6 request hash,
    //       7 hasTeam, 8 hasRun, 9 hasUserRate, 10 hasKeyRate
    public static readonly RedisScript Release = new("release", Prelude + """
        local function release(h, z, fields)
          if redis.call('ZREM', z, ARGV[3]) == 1 then
            local v = redis.call('HMGET', h, 'ru', 'rt', 'rc')
            fields[#fields + 1] = 'ru'
            fields[#fields + 1] = int(num(v[1]) - tonumber(ARGV[4]))
            fields[#fields + 1] = 'rt'
            fields[#fields + 1] = int(num(v[2]) - tonumber(ARGV[5]))
            fields[#fields + 1] = 'rc'
            fields[#fields + 1] = int(num(v[3]) - 1)
          end
          if #fields > 0 then redis.call('HSET', h, unpack(fields)) end
        end
        release(KEYS[3], KEYS[4], {})
        if ARGV[7] == '1' then release(KEYS[5], KEYS[6], {}) end
        if ARGV[8] == '1' and redis.call('HEXISTS', KEYS[7], 'la') == 1 then
          -- The call never happened: it does not count as a repeat either.
          if ARGV[6] ~= '' and redis.call('HINCRBY', KEYS[7], 'q:' .. ARGV[6], -1) <= 0 then redis.call('HDEL', KEYS[7], 'q:' .. ARGV[6]) end
          release(KEYS[7], KEYS[8], { 'la', ARGV[1] })
        end
        redis.call('ZREM', KEYS[2], ARGV[2])
        local function remove(z, t)
          if redis.call('ZREM', z, ARGV[2] .. '|' .. ARGV[5]) == 1 then
            redis.call('HINCRBY', t, '_t', int(-tonumber(ARGV[5])))
          end
        end
        if ARGV[9] == '1' then remove(KEYS[9], KEYS[10]) end
        if ARGV[10] == '1' then remove(KEYS[11], KEYS[12]) end
        return 1
        """);

    // KEYS: 1 run, 2 runr. ARGV: 1 now, 2 run idle, 3 '1' halt / '0' resume, 4 run key life
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

    // KEYS: 1 run, 2 runr. ARGV: 1 now, 2 run idle.
    // Returns {} for an unknown or idle-expired run, else su st sc ru rt start dl halted lu lt lc la in-flight user.
    public static readonly RedisScript RunState = new("run-state", Prelude + """
        local now = tonumber(ARGV[1])
        local la = redis.call('HGET', KEYS[1], 'la')
        if not la or now - tonumber(la) >= tonumber(ARGV[2]) then return {} end
        local b = loadBudget(KEYS[1], KEYS[2], now, 'start', 'dl', 'h', 'lu', 'lt', 'lc', 'user')
        local v = b.v
        local start = -1
        if v[7] then start = tonumber(v[7]) end
        local halted = 0
        if v[9] then halted = 1 end
        return { b.su, b.st, b.sc, b.ru, b.rt, start, num(v[8]), halted, num(v[10]), num(v[11]), num(v[12]), tonumber(la), b.rc, v[13] or '' }
        """);

    // KEYS: 1 u, 2 uif, 3 b:u, 4 r:u. ARGV: 1 now.
    // Returns su st sc ru rt lu lt lc pe in-flight halted.
    public static readonly RedisScript UserState = new("user-state", Prelude + """
        local now = tonumber(ARGV[1])
        local b = loadBudget(KEYS[3], KEYS[4], now, 'lu', 'lt', 'lc', 'pe')
        redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
        local halted = 0
        if redis.call('HGET', KEYS[1], 'h') then halted = 1 end
        return { b.su, b.st, b.sc, b.ru, b.rt, num(b.v[7]), num(b.v[8]), num(b.v[9]), num(b.v[10]), redis.call('ZCARD', KEYS[2]), halted }
        """);
}
