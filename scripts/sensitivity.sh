#!/usr/bin/env bash
# Measured sensitivity of SmolLM2-135M and the proxy screens of docs/results.md §6 (issue 12).
# Every step writes its own file under docs/data/sensitivity/ and is skipped when that file exists,
# so the script resumes where it stopped. Long: see the minutes per step in docs/results.md §6.
#
#   scripts/sensitivity.sh [BUILD]          (default build/release)
#
# Order matters (method honesty): the calibration-text measurements (step 1) are what the
# dynamics score is judged on first; the WikiText-2 measurements (step 2) come after and are never
# used to choose or tune a score.
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-build/release}"
DPTQ="$B/cli/dptq"
M="${DPTQ_MODEL:-$HOME/.cache/dptq/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
W="${DPTQ_WIKITEXT:-../shared/data/wikitext-2-raw-test.txt}"
TRACE=traces/smollm2-135m_quarot_32x512.h5   # the trace every plan of docs/results.md comes from
OUT=docs/data/sensitivity
mkdir -p "$OUT"
log() { printf '[sensitivity.sh] %s\n' "$*" >&2; }

# measure NAME ARGS...: a copy of $TRACE with the sensitivity of ARGS added, plus the proxy screen.
measure() {
  local name="$1"; shift
  local h5="$OUT/$name.h5"
  if [ ! -s "$h5" ]; then
    log "$name: dptq sensitivity $*"
    cp "$TRACE" "$h5.part.h5"
    "$DPTQ" sensitivity "$M" "$@" --out "$h5.part.h5" --json > "$OUT/$name.json.part"
    mv "$OUT/$name.json.part" "$OUT/$name.json"
    mv "$h5.part.h5" "$h5"
  fi
  if [ ! -s "$OUT/$name.proxies.json" ]; then
    "$DPTQ" report "$h5" --proxies --json > "$OUT/$name.proxies.json.part"
    mv "$OUT/$name.proxies.json.part" "$OUT/$name.proxies.json"
  fi
}

# sweep NAME METHOD POLICIES: perplexity on WikiText-2's first 8 windows (the sweeps of
# docs/results.md §5) for plans made from the calibration trace of step 1 — dynamics alone for
# dynamicptq, the calibration-text measurement for measured. Nothing of WikiText-2 enters a plan.
sweep() {
  local name="$1" method="$2" policies="$3" trace="$OUT/${2}_builtin_8x512.h5"
  [ -s "$OUT/$name.json" ] && return 0
  log "$name: dptq sweep --method $method --policies $policies"
  "$DPTQ" sweep "$M" --trace "$trace" --text "$W" --method "$method" --policies "$policies" \
    --budgets 0,1,2,4,8 --max-windows 8 --out "$OUT/$name.csv" --json > "$OUT/$name.json.part"
  mv "$OUT/$name.json.part" "$OUT/$name.json"
}

# site NAME METHOD POLICY: a site-level plan at the MAC share of 4 of 30 blocks, on the same windows.
site() {
  local name="$1" method="$2" policy="$3" trace="$OUT/${2}_builtin_8x512.h5"
  [ -s "$OUT/$name.json" ] && return 0
  log "$name: site-level $policy plan, --budget-macs $(python3 -c 'print(4/30)')"
  "$DPTQ" plan "$trace" --policy "$policy" --budget-macs "$(python3 -c 'print(4/30)')" --method "$method" \
    --out "$OUT/$name.plan.json" > /dev/null
  "$DPTQ" ppl "$M" --text "$W" --max-windows 8 --method "$method" --plan "$OUT/$name.plan.json" --json \
    > "$OUT/$name.json.part"
  mv "$OUT/$name.json.part" "$OUT/$name.json"
}

# 1. Calibration text (the built-in corpus), 8 random windows x 512 tokens, QuaRot-RTN with every
#    site (site-level plans). The default dynamics score was chosen on this (docs/metrics.md §9).
measure quarot-rtn_builtin_8x512 --method quarot-rtn --calib builtin --windows 8 --seqlen 512 --seed 1
[ -f "$W" ] || { log "no $W: stopping before the WikiText-2 steps"; exit 0; }
# 2. Perplexity of the new plans on WikiText-2's first 8 windows (dynamicptq-jr, first-last and
#    random at these budgets are in docs/data/results/sweep_*.json: same engine and windows), and
#    the site-level plans at the MAC share of 4 of 30 blocks.
sweep sweep_quarot-rtn_new quarot-rtn dynamicptq,measured
site site_quarot-rtn_dynamicptq quarot-rtn dynamicptq
site site_quarot-rtn_measured quarot-rtn measured
# The baselines again with the same build: W4A4KV4 perplexity moves by about 1% on 8 windows with
# any change of fp32 rounding (docs/benchmarks.md), so only same-build rows are compared.
sweep sweep_quarot-rtn_baselines quarot-rtn dynamicptq-jr,first-last
# 3. WikiText-2 test, its first 8 windows x 2048 tokens, blocks only: the gains a score is judged
#    against on held-out text (never used to choose one).
measure quarot-rtn_wikitext_8x2048 --method quarot-rtn --calib "$W" --sequential --windows 8 --seqlen 2048 --blocks-only
# 4. The same for QuaRot-GPTQ (blocks only).
measure quarot-gptq_builtin_8x512 --method quarot-gptq --calib builtin --windows 8 --seqlen 512 --seed 1 --blocks-only
sweep sweep_quarot-gptq_new quarot-gptq dynamicptq,measured
sweep sweep_quarot-gptq_baselines quarot-gptq dynamicptq-jr,first-last
measure quarot-gptq_wikitext_8x2048 --method quarot-gptq --calib "$W" --sequential --windows 8 --seqlen 2048 --blocks-only
log "done: $OUT"
