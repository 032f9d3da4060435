#!/usr/bin/env bash
# Reproduces every quantized-perplexity number of docs/results.md ("W4A4KV4 engine" section) on
# the default model. CPU, 2 threads: steps 1-4 about 2 hours, step 5 (the full-file grid, 25 rows)
# about 10 more. Every output is kept, so the script resumes where it stopped. Outputs go to
# docs/data/results/.
#   scripts/results.sh [BUILD_DIR]      (default build/release; run scripts/test.sh first)
set -euo pipefail
cd "${RESULTS_ROOT:-$(dirname "$0")/..}"
BUILD=${1:-build/release}
DPTQ="$BUILD/cli/dptq"
M=${DPTQ_MODEL:-${DPTQ_CACHE:-$HOME/.cache/dptq}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
W=../shared/data/wikitext-2-raw-test.txt
OUT=docs/data/results
TRACE=traces/smollm2-135m_quarot_32x512.h5
mkdir -p "$OUT"
log() { echo "[results $(date -u +%H:%M:%S)] $*" >&2; }

# 1. Trace in the QuaRot basis (the plans' metrics).
[ -f "$TRACE" ] || { log profile; "$DPTQ" profile "$M" --calib builtin --samples 32 --seqlen 512 --rotation quarot --out "$TRACE"; }

# FP on the same windows as the sweeps.
[ -f "$OUT/fp_8.json" ] || "$DPTQ" ppl "$M" --text "$W" --max-windows 8 --json > "$OUT/fp_8.json"

# 2. Budget sweeps on the first 8 windows of 2048 tokens (16,384 tokens) of WikiText-2 test.
#    The oracle measures each block on 4 x 512 held-out tokens at the end of the builtin
#    calibration text (never used by GPTQ) and gives the Spearman check.
sweep() {  # name method policies budgets
  [ -f "$OUT/sweep_$1.json" ] && return
  log "sweep $1"
  "$DPTQ" sweep "$M" --trace "$TRACE" --text "$W" --method "$2" --policies "$3" --budgets "$4" \
    --max-windows 8 --oracle-windows 4 --oracle-seqlen 512 --out "$OUT/sweep_$1.csv" --json > "$OUT/sweep_$1.json.tmp"
  mv "$OUT/sweep_$1.json.tmp" "$OUT/sweep_$1.json"
}
sweep quarot-rtn quarot-rtn dynamicptq,first-last,random 0,1,2,4,8
# The oracle's greedy steps cost ~30 held-out evaluations each: two steps.
sweep quarot-rtn-oracle quarot-rtn oracle 0,1,2
sweep rtn rtn dynamicptq,first-last 0,1,2,4,8
sweep quarot-gptq quarot-gptq dynamicptq,first-last 0,1,2,4,8

# 3. The real checkpoint: quantize with a DynamicPTQ plan, reload, measure; compare with the
#    simulated model on the same windows.
PLAN=$OUT/dynamicptq_k4.plan.json
[ -f "$PLAN" ] || "$DPTQ" plan "$TRACE" --policy dynamicptq --budget 4 --method quarot-rtn --out "$PLAN"
CK=$OUT/ckpt-quarot-rtn-k4
if [ ! -f "$OUT/reload.json" ]; then
  log "quantize + reload"
  rm -rf "$CK"
  "$DPTQ" quantize "$M" --plan "$PLAN" --method quarot-rtn --out "$CK" --json > "$OUT/quantize.json"
  "$DPTQ" ppl "$M" --plan "$PLAN" --method quarot-rtn --text "$W" --max-windows 8 --json > "$OUT/simulated.json"
  "$DPTQ" ppl "$CK" --text "$W" --max-windows 8 --json > "$OUT/reload.json.tmp"
  mv "$OUT/reload.json.tmp" "$OUT/reload.json"
  rm -rf "$CK"  # 100 MB; not committed
fi

# 4. Full test file (148 windows of 2048) for QuaRot-RTN alone and + DynamicPTQ k = 4.
if [ ! -f "$OUT/full_quarot-rtn.json" ]; then
  log "full file"
  "$DPTQ" sweep "$M" --trace "$TRACE" --text "$W" --method quarot-rtn --budgets 0,4 --policies dynamicptq \
    --out "$OUT/full_quarot-rtn.csv" --json > "$OUT/full_quarot-rtn.json.tmp"
  mv "$OUT/full_quarot-rtn.json.tmp" "$OUT/full_quarot-rtn.json"
fi
# 5. The rest of the grid on the full test file, one output file per row (about 25 minutes per
#    row on 2 CPU threads, plus GPTQ's calibration). Rows run most informative first, so a partial
#    run already answers "does the plan help on the full file".
full() {  # method policy budget
  local f="$OUT/full/$1_$2_k$3.json" plan=()
  [ -f "$f" ] && return
  mkdir -p "$OUT/full"
  if [ "$3" != 0 ]; then
    plan=(--plan "$OUT/full/$1_$2_k$3.plan.json")
    [ -f "${plan[1]}" ] || "$DPTQ" plan "$TRACE" --policy "$2" --budget "$3" --method "$1" --out "${plan[1]}" > /dev/null
  fi
  log "full file: $1 $2 k=$3"
  "$DPTQ" ppl "$M" --method "$1" "${plan[@]}" --text "$W" --json > "$f.tmp"
  mv "$f.tmp" "$f"
}
full quarot-rtn dynamicptq 8
full quarot-rtn first-last 4
full quarot-gptq none 0
full quarot-gptq dynamicptq 8
full rtn none 0
full rtn dynamicptq 8
full quarot-rtn first-last 8
full quarot-gptq first-last 8
full rtn first-last 8
for k in 1 2; do full quarot-rtn dynamicptq $k; full quarot-rtn first-last $k; done
for m in quarot-gptq rtn; do
  for k in 4 2 1; do full $m dynamicptq $k; full $m first-last $k; done
done
log done
python3 tools/results_table.py "$OUT"
