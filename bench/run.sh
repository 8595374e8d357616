#!/usr/bin/env bash
# LlmGateway benchmark harness. See bench/README.md.
#
#   bench/run.sh                      full load run (~10 min): builds, starts everything on 127.0.0.1, prints and
#                                     writes bench/results/<date>-<sha>.md and bench/results/latest.md
#   bench/run.sh --quick              the same, shorter phases (~2-3 min)
#   bench/run.sh --peers              also Portkey's open-source gateway (npm, into bench/.work/peers)
#   bench/run.sh --scenarios a,b      only some of: direct nginx yarp gateway deployments policies redis cache stream scaling bodies portkey
#   bench/run.sh --micro              BenchmarkDotNet micro-benchmarks instead of the load run
#   bench/run.sh --no-build           reuse the last Release build
#   bench/run.sh --baseline REV       also run the policies and Redis scenarios (with and without leases, budgets only
#                                     with leases) on the gateway built from git REV
#                                     (a commit, tag or branch), side by side in the same run: before/after figures
#
# Builds go to $BENCH_ARTIFACTS (default /tmp/bench-artifacts) so they never touch the repo's obj/ folders.
set -euo pipefail

export PYTHONDONTWRITEBYTECODE=1
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
WORK_DIR="$BENCH_DIR/.work"
ARTIFACTS="${BENCH_ARTIFACTS:-/tmp/bench-artifacts}"

quick=0 peers=0 micro=0 build=1 scenarios="" baseline=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --peers) peers=1 ;;
    --micro) micro=1 ;;
    --no-build) build=0 ;;
    --scenarios) scenarios="${2:?--scenarios needs a comma-separated list}"; shift ;;
    --scenarios=*) scenarios="${1#*=}" ;;
    --baseline) baseline="${2:?--baseline needs a git revision}"; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

need() {
  local missing=()
  for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "missing: ${missing[*]}. On Debian: apt-get install nginx-light wrk nghttp2-client redis-server python3 (and the .NET 10 SDK)" >&2
    exit 1
  fi
}

mkdir -p "$WORK_DIR" "$BENCH_DIR/results"
# One run at a time: two would measure each other, and share the list of processes to stop.
exec 9>"$WORK_DIR/lock"
if ! flock -n 9; then
  echo "another bench/run.sh is running (lock: $WORK_DIR/lock)" >&2
  exit 1
fi
: > "$WORK_DIR/pids"

# Stop whatever the harness started (each recorded as its own process group), even on Ctrl-C or a crash.
harness_pid=""
cleanup() {
  local pgid
  # The harness stops what it started on its way out; give it ten seconds, then stop the leftovers here.
  if [[ -n "$harness_pid" ]] && kill -0 "$harness_pid" 2>/dev/null; then
    kill -TERM "$harness_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$harness_pid" 2>/dev/null || break; sleep 0.2; done
  fi
  if [[ -f "$WORK_DIR/pids" ]]; then
    while read -r pgid; do
      [[ -n "$pgid" ]] && kill -TERM -- "-$pgid" 2>/dev/null || true
    done < "$WORK_DIR/pids"
    sleep 0.5
    while read -r pgid; do
      [[ -n "$pgid" ]] && kill -KILL -- "-$pgid" 2>/dev/null || true
    done < "$WORK_DIR/pids"
    : > "$WORK_DIR/pids"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Others may be editing the sources: a failed build is retried once after a minute.
build_project() {
  local project="$1"
  echo "[bench] dotnet build $project -c Release"
  if ! dotnet build "$REPO_DIR/$project" -c Release --artifacts-path "$ARTIFACTS" -nologo -v quiet -clp:ErrorsOnly; then
    echo "[bench] build of $project failed; retrying in 60 s" >&2
    sleep 60
    dotnet build "$REPO_DIR/$project" -c Release --artifacts-path "$ARTIFACTS" -nologo -v quiet -clp:ErrorsOnly
  fi
}

if [[ $micro -eq 1 ]]; then
  need dotnet python3
  [[ $build -eq 1 ]] && build_project bench/Micro
  out="$WORK_DIR/micro"
  rm -rf "$out"
  # In-process toolchain: BenchmarkDotNet would otherwise generate and build a project next to the sources.
  (cd "$WORK_DIR" && dotnet "$ARTIFACTS/bin/LlmGateway.Benchmarks/release/LlmGateway.Benchmarks.dll" \
    --filter '*' --job short --inProcess --artifacts "$out")
  python3 "$BENCH_DIR/scripts/micro_report.py" "$out"
  exit 0
fi

need dotnet python3 nginx h2load wrk redis-server
if [[ $build -eq 1 ]]; then
  build_project src/LlmGateway
  build_project bench/BareYarp
fi

args=(--artifacts "$ARTIFACTS")
if [[ -n "$baseline" ]]; then
  # The baseline's source in a worktree of its own under bench/.work, built into its own artifacts folder.
  base_src="$WORK_DIR/baseline-src"
  git -C "$REPO_DIR" worktree remove --force "$base_src" >/dev/null 2>&1 || rm -rf "$base_src"
  git -C "$REPO_DIR" worktree add --detach "$base_src" "$baseline" >/dev/null
  dotnet build "$base_src/src/LlmGateway" -c Release --artifacts-path "$ARTIFACTS-baseline" -nologo -v quiet -clp:ErrorsOnly
  git -C "$REPO_DIR" worktree remove --force "$base_src" >/dev/null
  args+=(--baseline "$ARTIFACTS-baseline")
fi
[[ $quick -eq 1 ]] && args+=(--quick)
[[ $peers -eq 1 ]] && args+=(--peers)
[[ -n "$scenarios" ]] && args+=(--scenarios "$scenarios")
# In the background and waited for, so that a signal reaches the trap at once rather than after the run.
python3 "$BENCH_DIR/scripts/harness.py" "${args[@]}" &
harness_pid=$!
wait "$harness_pid"
