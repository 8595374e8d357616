#!/usr/bin/env bash
# LlmGateway soak test (issue 14). See bench/README.md, "Soak".
#
#   bench/soak.sh                 2-minute trial (the default): builds, starts redis-server, MockLlm and the gateway
#                                 on free 127.0.0.1 ports, runs the mixed load, checks, prints the report
#   bench/soak.sh --minutes N     N minutes of load (1-10; the soak is bounded to 10)
#   bench/soak.sh --out FILE      also write the report (markdown) to FILE
#   bench/soak.sh --no-build      reuse the last build in $SOAK_ARTIFACTS
#
# Exit code 0 when every check passed, 1 when one failed, 2 on a usage or start-up error.
# Builds go to $SOAK_ARTIFACTS (default /tmp/soak-artifacts), never into the repo's obj/ folders.
set -euo pipefail

export PYTHONDONTWRITEBYTECODE=1
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
ARTIFACTS="${SOAK_ARTIFACTS:-/tmp/soak-artifacts}"

minutes=2 build=1 out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minutes) minutes="${2:?--minutes needs a number}"; shift ;;
    --minutes=*) minutes="${1#*=}" ;;
    --out) out="${2:?--out needs a file}"; shift ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if ! [[ "$minutes" =~ ^[0-9]+$ ]] || (( minutes < 1 || minutes > 10 )); then
  echo "--minutes must be a whole number from 1 to 10 (the soak is bounded to 10 minutes)" >&2
  exit 2
fi
for tool in dotnet redis-server redis-cli python3; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done

if (( build )); then
  for project in src/LlmGateway src/LlmGateway.MockLlm; do
    dotnet build "$REPO_DIR/$project" -c Release --artifacts-path "$ARTIFACTS" -v quiet -nologo >/dev/null
  done
fi

args=(--artifacts "$ARTIFACTS" --minutes "$minutes" --repo "$REPO_DIR")
[[ -n "$out" ]] && args+=(--out "$out")
# soak.py stops what it started (each process in its own group) on exit, Ctrl-C included.
exec python3 "$BENCH_DIR/scripts/soak.py" "${args[@]}"
