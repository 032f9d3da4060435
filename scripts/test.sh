#!/usr/bin/env bash
# The test command: installs what is missing (scripts/setup.sh), builds (release preset, -j2,
# ccache), runs every test with ctest. Extra arguments go to ctest (e.g. -R tokenizer).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release
ctest --preset release "$@"
