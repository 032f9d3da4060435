#!/usr/bin/env bash
# One command that checks the CUDA path the first time a GPU is available (docs/kernels.md):
#   1. builds with CUDA (build/gpu, -DDPTQ_WITH_CUDA=ON),
#   2. runs every GPU suite (tests/test_kernels_*: each kernel against its CPU reference),
#   3. runs a short end-to-end pass on --device cuda and on the CPU and compares them:
#      profile 8 x 512 -> plan (dynamicptq, k = 4) -> ppl QuaRot-RTN + plan on 4 windows x 2048,
#   4. prints one summary table.
# Without a GPU it says so after the build and exits 0. Target: under 8 minutes on one datacenter
# GPU once the dependencies are cached (scripts/setup.sh).
#
#   scripts/gpu-check.sh            (uses ~/.cache/dptq; the default model; ../shared/data for text)
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
B=build/gpu
M="${DPTQ_MODEL:-$HOME/.cache/dptq/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
W="${DPTQ_WIKITEXT:-../shared/data/wikitext-2-raw-test.txt}"
OUT="$B/gpu-check"
declare -a SUMMARY
row() { SUMMARY+=("$(printf '%-46s %s' "$1" "$2")"); }
start=$(date +%s)

cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDPTQ_WITH_CUDA=ON -DDPTQ_BUILD_APP=OFF > "$B.configure.log" 2>&1 \
  || { echo "gpu-check: configure failed: $B.configure.log"; exit 1; }
cmake --build "$B" -j "$(nproc)" > "$B.build.log" 2>&1 || { echo "gpu-check: build failed: $B.build.log"; exit 1; }
row "build (nvcc, archs ${DPTQ_CUDA_ARCHS:-80;90})" "ok ($(( $(date +%s) - start )) s)"

if ! nvidia-smi -L > /dev/null 2>&1; then
  echo "gpu-check: no GPU (nvidia-smi finds none); built only. GPU suites would skip:"
  ctest --test-dir "$B" -R kernels 2>&1 | tail -3
  printf '%s\n' "${SUMMARY[@]}"
  exit 0
fi
row "device" "$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)"

# 2. GPU suites: every kernel against its CPU reference.
if ctest --test-dir "$B" -R kernels --output-on-failure > "$OUT.ctest.log" 2>&1; then
  row "GPU suites (ctest -R kernels)" "passed: $(grep -c 'Passed' "$OUT.ctest.log") suites"
else
  row "GPU suites (ctest -R kernels)" "FAILED: see $OUT.ctest.log"
fi
if grep -q "SKIPPED" "$B"/Testing/Temporary/LastTest.log 2>/dev/null; then row "GPU suites" "some cases SKIPPED: see LastTest.log"; fi

# 3. End to end on both devices.
mkdir -p "$OUT"
e2e() {  # device
  local d="$1" t0; t0=$(date +%s)
  "$B/cli/dptq" profile "$M" --calib builtin --samples 8 --seqlen 512 --rotation quarot --device "$d" --out "$OUT/$d.h5" \
    > /dev/null 2> "$OUT/$d.profile.log" || { echo "profile failed"; return 1; }
  "$B/cli/dptq" plan "$OUT/$d.h5" --policy dynamicptq --budget 4 --method quarot-rtn --out "$OUT/$d.plan.json" --json \
    > "$OUT/$d.plan.out" || { echo "plan failed"; return 1; }
  "$B/cli/dptq" ppl "$M" --text "$W" --max-windows 4 --method quarot-rtn --plan "$OUT/$d.plan.json" --device "$d" --json \
    > "$OUT/$d.ppl.json" 2> "$OUT/$d.ppl.log" || { echo "ppl failed"; return 1; }
  python3 - "$OUT/$d.plan.out" "$OUT/$d.ppl.json" "$(( $(date +%s) - t0 ))" <<'EOF'
import json, sys
plan, ppl, secs = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
blocks = " ".join(str(b["block"]) for b in plan["selected"])
print(f"ppl {ppl['ppl']:.4f}, {ppl['tokens_per_s']:.0f} tok/s, plan blocks {blocks}, {secs} s")
EOF
}
row "end to end, cuda" "$(e2e cuda)"
row "end to end, cpu" "$(e2e cpu)"
row "total" "$(( $(date +%s) - start )) s"
echo
printf '%s\n' "${SUMMARY[@]}"
echo "(CUDA runs bf16 by default, the CPU fp32: perplexities agree to about 1%, plans should match; logs in $OUT)"
