#!/usr/bin/env bash
# The test command: installs what is missing (scripts/setup.sh), builds (release preset, -j2,
# ccache), runs every test with ctest. Extra arguments go to ctest (e.g. -R tokenizer).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Share ccache hits between clones and build folders (CI builds a fresh clone each time).
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
cmake --preset release >/dev/null
cmake --build --preset release
ctest --preset release "$@"
# The sanitizer build of the torch-free readers and their suites (docs/robustness.md); not when
# ctest was asked for a subset (-R ...).
if [ $# -eq 0 ]; then scripts/sanitize.sh; fi
