using LlmGateway.Redis;

namespace LlmGateway.Budgets;

/// <summary>The run-only steps' script (see <see cref="RedisAdmissionScripts"/>).</summary>
internal static partial class RedisAdmissionScripts
{
    // The run steps of calls whose other scopes a lease decided (RedisAdmissionStore.ReserveRunAsync): admissions and
    // settlements, releases and undos of runs, in queue order in one script, so a loaded replica sends one script where
    // it would send a reserve and a finish. Each step is exactly ReserveScoped's or FinishScoped's run step (the same
    // functions), so the run's rules are stated once. On a cluster the store sends one script per hash slot.
    // A script defines its functions anew on every run, and a closure costs Redis for every local it captures (a walk
    // of the open upvalues): so only the run's functions are here, each side's inside a function of its own, called when
    // the batch has a step of that side (a batch is often all admissions or all finishes). Its closures then take the
    // Prelude's locals from the wrapper's upvalues rather than searching for them.
    // KEYS per step: the run's 2 (run, runx). ARGV per step: '3', ReserveScoped's 5 and the replica's id (an admission,
    // 7 in all), or '5' and FinishScoped's 6 (a finish, 7 in all).
    // Returns 13 numbers per step: an admission's as ReserveScoped's run step, but an admitted one's tenth number is the
    // run's admissions in a row by this replica within a second; a finish's are zeros (rank 0).
    public static readonly RedisScript RunSteps = new("run-steps", Prelude + MarkerLife + ReserveAnswer + """
        local reserveStep, finishStep
        local function reserveSide()
        """ + "\n" + ReserveCall + ReserveRun + "\n" + """
          -- As ReserveScoped's run step (a run has no rate window: its counters are 0 0 NONE), without its tables.
          reserveStep = function(ko, ao)
            call(ARGV[ao + 2], ARGV[ao + 3], ARGV[ao + 4], ARGV[ao + 5], ARGV[ao + 6])
            runRead(KEYS[ko + 1], KEYS[ko + 2])
            local rank, rejection, scope, limit, value, retry = runCheck(99)
            local u, t, c = used(run)
            if rank == 0 then
              -- The run's admissions in a row by this replica within a second (a = replica, count, first admission's
              -- ms; written until the count passes 64): the replica asks for the run's exclusive block once they reach
              -- its threshold (LeaseOptions.RunClaimAfter). A slow run (fewer a second) stays per call.
              local me, aid, an, as = tonumber(ARGV[ao + 7]), 0, 0, 0
              if run.v[9] and #run.v[9] == 24 then aid, an, as = sunpack('<ddd', run.v[9]) end
              if aid == me and now - as < 1000 then an = an + 1 else aid, an, as = me, 1, now end
              runExtra = an <= 64 and spack('<ddd', aid, an, as) or nil
              runHold()
              runExtra = nil
              answer(0, 0, 0, 0, 0, -1, u, t, c, an, 0, NONE, run.steps)
            else
              runKeep()
              answer(rank, rejection, scope, limit, value, retry, u, t, c, 0, 0, NONE, 0)
            end
          end
        end
        local function finishSide()
        """ + "\n" + FinishCall + FinishRun + "\n" + """
          finishStep = function(ko, ao)
            if first(ARGV[ao + 6], ARGV[ao + 7]) then
              call(ARGV[ao + 2], ARGV[ao + 3], ARGV[ao + 4], ARGV[ao + 5])
              runFinish(KEYS[ko + 1], KEYS[ko + 2])
            end
          end
        end
        batching = #KEYS > 2
        local SKIPPED = { 0, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0, NONE, 0 }
        local ko, ao = 0, 0
        while ao < #ARGV do
          if ARGV[ao + 1] == '3' then
            if not reserveStep then reserveSide() end
            reserveStep(ko, ao)
            ao = ao + 7
          else
            if not finishStep then finishSide() end
            finishStep(ko, ao)
            for i = 1, 13 do out[nout + i] = SKIPPED[i] end
            nout = nout + 13
            ao = ao + 7
          end
          ko = ko + 2
        end
        flush()
        return out
        """);
}
