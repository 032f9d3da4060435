#!/usr/bin/env bash
# Perplexity throughput: one `dptq ppl` process on all cores, against one single-thread process per
# core each taking its own slice of windows (`--first-window`), as scripts/results.sh runs the
# full-file grid. Both configurations evaluate the same windows with the same method, alternating
# for --reps rounds; prints one JSON object with windows/s of each (forward time only, the `seconds`
# the processes report; model loading and quantization excluded) and their ratio from one run.
#   bench/bench_workers.sh [build-dir] [--method quarot-rtn] [--windows-per-core 2] [--reps 1]
# Needs an otherwise idle machine and ../shared/data (WikiText-2).
set -euo pipefail
B=build/release
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then B=$1; shift; fi
METHOD=quarot-rtn PER_CORE=2 REPS=1
while [ $# -gt 0 ]; do
  case $1 in
    --method) METHOD=$2;; --windows-per-core) PER_CORE=$2;; --reps) REPS=$2;;
    *) echo "bench_workers: error: unknown option $1" >&2; exit 2;;
  esac
  shift 2
done
M=${DPTQ_MODEL:-${DPTQ_CACHE:-$HOME/.cache/dptq}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
W=$(dirname "$0")/../../shared/data/wikitext-2-raw-test.txt
for f in "$B/cli/dptq" "$M" "$W"; do
  [ -e "$f" ] || { echo "bench_workers: error: $f: not found" >&2; exit 2; }
done
CORES=$(nproc)
N=$(( CORES * PER_CORE ))
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
seconds() { python3 -c "import json,sys; print(max(json.load(open(f))['seconds'] for f in sys.argv[1:]))" "$@"; }

best_one=inf best_many=inf
for (( r = 0; r < REPS; r++ )); do
  OMP_NUM_THREADS=$CORES "$B/cli/dptq" ppl "$M" --text "$W" --method "$METHOD" --max-windows "$N" --json > "$TMP/one.json" 2> /dev/null
  pids=()
  for (( c = 0; c < CORES; c++ )); do
    OMP_NUM_THREADS=1 "$B/cli/dptq" ppl "$M" --text "$W" --method "$METHOD" --first-window $(( c * PER_CORE )) \
      --max-windows "$PER_CORE" --json > "$TMP/many$c.json" 2> /dev/null & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  one=$(seconds "$TMP/one.json")
  many=$(seconds "$TMP"/many*.json)
  best_one=$(python3 -c "print(min(float('$best_one'), $one))")
  best_many=$(python3 -c "print(min(float('$best_many'), $many))")
done
python3 - "$TMP" "$CORES" "$N" "$METHOD" "$best_one" "$best_many" <<'EOF'
import glob, json, math, sys
tmp, cores, n, method, one, many = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5]), float(sys.argv[6])
whole = json.load(open(f"{tmp}/one.json"))
parts = [json.load(open(f)) for f in sorted(glob.glob(f"{tmp}/many*.json"))]
nll = math.fsum(p["nll_sum"] for p in parts)
print(json.dumps({
    "bench": "workers", "method": method, "cores": cores, "windows": n, "seqlen": whole["seqlen"],
    "one_process_windows_per_s": n / one, "one_thread_workers_windows_per_s": n / many,
    "workers_over_one_process": one / many,
    "same_ppl": abs(math.exp(nll / sum(p["predicted"] for p in parts)) - whole["ppl"]) <= 1e-9 * whole["ppl"],
}, indent=2))
EOF
