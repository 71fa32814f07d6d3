#!/usr/bin/env bash
# Shows that the deterministic simulation catches each hardening finding of issue 9:
# every patch here puts one old behaviour back (a faithful reintroduction), and the
# simulation must fail with it. Run from the repository root with src/ unchanged:
#   bash tests/sim/regressions/check.sh            # every patch
#   bash tests/sim/regressions/check.sh 3-*.patch  # some
# Each patch is applied to src/, the simulation run, and the patch taken back out.
# REGRESSION_TESTS picks other tests to run instead, e.g. the native ones over real HTTP:
#   REGRESSION_TESTS="--test engine_native" bash tests/sim/regressions/check.sh 1a-*.patch
set -uo pipefail
cd "$(dirname "$0")/../../.."
here=tests/sim/regressions
if ! git diff --quiet -- src; then
    echo "src/ has uncommitted changes: commit or stash them first" >&2
    exit 2
fi
patches=("$@")
[ ${#patches[@]} -gt 0 ] || patches=($(cd "$here" && ls *.patch))
missed=0
for patch in "${patches[@]}"; do
    patch=$(basename "$patch")
    git apply "$here/$patch" || { echo "$patch: does not apply"; missed=1; continue; }
    trap 'git apply -R "$here/$patch"' EXIT
    started=$(date +%s)
    out=$(cargo test -q ${REGRESSION_TESTS:---test simulation} 2>&1)
    status=$?
    git apply -R "$here/$patch"
    trap - EXIT
    took=$(( $(date +%s) - started ))
    if [ $status -eq 0 ]; then
        echo "$patch: NOT caught (the simulation passed) [${took}s]"
        missed=1
    else
        first=$(printf '%s\n' "$out" | grep -m1 -E '^(seed [0-9]+:|case [0-9]+)' | cut -c1-240)
        [ -n "$first" ] || first=$(printf '%s\n' "$out" | grep -m1 -E '(panicked|^error)' | cut -c1-240)
        tests=$(printf '%s\n' "$out" | grep -E '^    [a-z_0-9]+$' | tr -d ' ' | sort -u | tr '\n' ' ')
        echo "$patch: caught by ${tests:-?}[${took}s]"
        echo "    $first"
    fi
done
exit $missed
