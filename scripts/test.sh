#!/usr/bin/env bash
# scripts/test.sh FUZZ_SECONDS: run every test in the release build and in the ASan+UBSan
# build, then every fuzzer for a bounded time, and end with one line of counts:
#   "tests: N passed, N failed, N skipped"
# Exit status is non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
fuzz_seconds=${1:-30}
passed=0; failed=0; skipped=0

run_suite() {  # $1 = build dir, $2 = label
    local log; log=$(mktemp)
    echo "== ctest ($2) =="
    (cd "$1" && ctest -j 2 --output-on-failure --timeout 900) 2>&1 | tee "$log"
    # ctest prints "N% tests passed, F tests failed out of T" and lists skipped tests.
    local total fail skip
    total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
    fail=$(sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' "$log" | tail -1)
    skip=$(grep -c '\*\*\*Skipped\| Not Run (Skipped)\|Skipped$' "$log" || true)
    if [ -z "$total" ]; then
        total=0
        if grep -q "No tests were found" "$log"; then fail=0; else fail=1; fi
    fi
    fail=${fail:-0}
    passed=$((passed + total - fail - skip)); failed=$((failed + fail)); skipped=$((skipped + skip))
    rm -f "$log"
}

run_suite build "release"
run_suite build-asan "asan+ubsan"

echo "== fuzz (${fuzz_seconds}s per target) =="
if bash scripts/fuzz.sh build-fuzz "$fuzz_seconds"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi

echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
