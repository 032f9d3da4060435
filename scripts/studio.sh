#!/usr/bin/env bash
# The main job: installs what is missing, builds, and opens DynamicPTQ Studio on the default model
# (SmolLM2-135M-Instruct) with WikiText-2 as evaluation text and the committed QuaRot-view trace of
# that model in the Depth and Plan panels. Arguments replace those defaults (see docs/studio.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
cmake --preset release >/dev/null
cmake --build --preset release --target dptq-studio dptq
BIN=build/release
TRACE=traces/smollm2-135m_quarot_32x512.h5
ARGS=("$@")
[ $# -eq 0 ] && [ -f "$TRACE" ] && ARGS=(--trace "$TRACE")
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  cat >&2 <<MSG
dptq-studio: no display found (DISPLAY and WAYLAND_DISPLAY are unset). Run it headless:
  xvfb-run -a $BIN/app/dptq-studio --trace $TRACE --frames 5 --wait-idle --screenshot studio.png
or use the command line on the same core:
  $BIN/cli/dptq info ~/.cache/dptq/models/SmolLM2-135M-Instruct.Q4_1.gguf
  $BIN/cli/dptq ppl ~/.cache/dptq/models/SmolLM2-135M-Instruct.Q4_1.gguf --text ../shared/data/wikitext-2-raw-test.txt --max-windows 4
MSG
  exit 2
fi
exec "$BIN/app/dptq-studio" ${ARGS[@]+"${ARGS[@]}"}
