#!/usr/bin/env bash
# The sanitizer run of CI (called by scripts/test.sh after the main ctest): builds fuzz/ with clang
# and AddressSanitizer + UndefinedBehaviorSanitizer into build/sanitize, then runs its ctest:
#   san_test_tokenizer, san_test_plan, san_test_trace   the unit suites that need no LibTorch
#                                                       (tokenizers, plans, traces: the readers of
#                                                       untrusted files), sanitized
#   fuzz_<reader>_corpus                                every fuzz target once over its seeds and
#                                                       the regression inputs (fuzz/regressions/)
# The LibTorch suites are not in it: an instrumented LibTorch build would not fit CI's hour on
# 2 cores (docs/robustness.md). Skipped, with a message, when clang is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang++ > /dev/null || { echo "[sanitize] clang++ not installed: skipped" >&2; exit 0; }
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
CC=clang CXX=clang++ cmake -S fuzz -B build/sanitize -G Ninja > /dev/null
cmake --build build/sanitize -j2
ctest --test-dir build/sanitize --output-on-failure "$@"
