#!/usr/bin/env bash
# Runs every test (unit and end-to-end) and prints the totals alone on the last line: "N passed, N failed".
# End-to-end tests start real Kestrel servers on 127.0.0.1; Redis-backed tests start redis-server on a free
# port, and the metrics checks use promtool: `.ci/run` installs both on a fresh Debian machine.
set -uo pipefail
cd "$(dirname "$0")"

results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT

dotnet test LlmGateway.sln -c Release \
  --logger "trx" --results-directory "$results" \
  --blame-hang-timeout 5m "$@"
status=$?

passed=0
failed=0
for trx in "$results"/*.trx; do
  [ -f "$trx" ] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  p=$(echo "$counters" | sed -n 's/.* passed="\([0-9]*\)".*/\1/p')
  f=$(echo "$counters" | sed -n 's/.* failed="\([0-9]*\)".*/\1/p')
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
done

# A build failure or a crashed test host produces no counters: never report it as a pass.
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1
fi

echo "${passed} passed, ${failed} failed"
exit "$status"
