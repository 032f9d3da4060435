#!/usr/bin/env bash
# Zero-shot throughput (issue 14, acceptance 3): items/s of `dptq zeroshot` (packed items, shared
# prefixes) against the transformers + lm-eval reference (tools/golden/zeroshot_reference.py, HFLM
# batches) on the same items, the same CPU threads, alternating the two for --reps rounds. Scoring
# time only (each reports its own seconds; model loading excluded). Prints one JSON object with
# items/s per task and overall, and the ratio dptq / reference, all from this one run.
#   bench/bench_zeroshot.sh [build-dir] [--tasks piqa,...] [--limit 100] [--threads 1] [--reps 1]
# Needs the reference venv (scripts/setup.sh --refvenv), ../shared/data/zeroshot and an idle machine.
set -euo pipefail
B=build/release
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then B=$1; shift; fi
TASKS=piqa,arc_easy,arc_challenge,winogrande,lambada,boolq,hellaswag LIMIT=100 THREADS=1 REPS=1
while [ $# -gt 0 ]; do
  case $1 in
    --tasks) TASKS=$2;; --limit) LIMIT=$2;; --threads) THREADS=$2;; --reps) REPS=$2;;
    *) echo "bench_zeroshot: error: unknown option $1" >&2; exit 2;;
  esac
  shift 2
done
CACHE=${DPTQ_CACHE:-$HOME/.cache/dptq}
M=${DPTQ_MODEL:-$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf}
PY=$CACHE/refvenv/bin/python
for f in "$B/cli/dptq" "$M" "$PY"; do
  [ -e "$f" ] || { echo "bench_zeroshot: error: $f: not found (scripts/setup.sh --refvenv for the reference)" >&2; exit 2; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for r in $(seq 1 "$REPS"); do
  OMP_NUM_THREADS=$THREADS "$B/cli/dptq" zeroshot "$M" --tasks "$TASKS" --limit "$LIMIT" --json > "$TMP/dptq_$r.json" 2> "$TMP/dptq_$r.log" \
    || { cat "$TMP/dptq_$r.log" >&2; exit 1; }
  OMP_NUM_THREADS=$THREADS "$PY" "$(dirname "$0")/../tools/golden/zeroshot_reference.py" --tasks "$TASKS" --limit "$LIMIT" \
    --threads "$THREADS" --examples sha256 --out "$TMP/ref_$r.json" 2> "$TMP/ref_$r.log" || { tail "$TMP/ref_$r.log" >&2; exit 1; }
done
python3 - "$TMP" "$REPS" "$THREADS" "$LIMIT" <<'PY'
import json, sys
tmp, reps, threads, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows, tot = {}, {"dptq": [0, 0.0], "reference": [0, 0.0]}
for r in range(1, reps + 1):
    d = json.load(open(f"{tmp}/dptq_{r}.json"))["tasks"]
    f = json.load(open(f"{tmp}/ref_{r}.json"))["tasks"]
    for t in d:
        row = rows.setdefault(t, {"items": 0, "dptq_s": 0.0, "reference_s": 0.0, "dptq_acc": d[t]["acc"], "reference_acc": f[t]["acc"]})
        row["items"] += d[t]["n"]; row["dptq_s"] += d[t]["seconds"]; row["reference_s"] += f[t]["seconds"]
for t, row in rows.items():
    row["dptq_items_per_s"] = row["items"] / row["dptq_s"]
    row["reference_items_per_s"] = row["items"] / row["reference_s"]
    row["ratio"] = row["reference_s"] / row["dptq_s"]
    tot["dptq"][0] += row["items"]; tot["dptq"][1] += row["dptq_s"]; tot["reference"][1] += row["reference_s"]
print(json.dumps({"threads": threads, "limit": limit, "reps": reps, "tasks": rows,
                  "dptq_items_per_s": tot["dptq"][0] / tot["dptq"][1],
                  "reference_items_per_s": tot["dptq"][0] / tot["reference"][1],
                  "ratio": tot["reference"][1] / tot["dptq"][1]}, indent=2))
PY
