#!/usr/bin/env bash
# FP perplexity throughput against peers (issue 13): `dptq ppl` fp32 and bf16, HF transformers fp32
# on the same GGUF (bench/peer_transformers_ppl.py, reference venv) and llama.cpp's llama-perplexity
# (scripts/build-llama-cpp.sh) on the same file, plus llama.cpp on an F32 copy of the same weights
# (made once by llama-quantize into the cache). Same text, seqlen, N windows and thread count for
# all; the variants alternate rep by rep (A B C ... A B C ...), the best rep of each is kept.
#   bench/bench_peers.sh [build-dir] [--windows 2] [--threads 1] [--reps 2] [--seqlen 2048]
#                        [--variants dptq-fp32,dptq-bf16,transformers,llama-q4_1,llama-f32]
# Timed: each tool's own evaluation time, model loading and tokenization excluded —
#   dptq / transformers: the `seconds` they report (forward passes + NLL of the windows);
#   llama.cpp: the time between its log lines "calculating perplexity over N chunks" and "Final
#   estimate" (log timestamps; the decode of the N chunks + NLL; llama_perf_context_print's
#   "prompt eval time" is not used: with the async CPU scheduler it reads ~1 ms). llama-perplexity
#   scores only the second half of each window (and computes logits only there), so its tokens/s
#   is tokens processed (N x seqlen) per second and its perplexity is not comparable to the others'.
# Also printed: the whole process's wall time (load + tokenization + evaluation).
# Prints a markdown table and, with --json FILE, writes every rep's numbers to FILE.
set -euo pipefail
B=build/release
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then B=$1; shift; fi
WINDOWS=2 THREADS=1 REPS=2 SEQLEN=2048 JSON=""
VARIANTS=dptq-fp32,dptq-bf16,transformers,llama-q4_1,llama-f32
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || { echo "bench_peers: error: $1 needs a value" >&2; exit 2; }
  case $1 in
    --windows) WINDOWS=$2;; --threads) THREADS=$2;; --reps) REPS=$2;; --seqlen) SEQLEN=$2;;
    --variants) VARIANTS=$2;; --json) JSON=$2;;
    *) echo "bench_peers: error: unknown option $1" >&2; exit 2;;
  esac
  shift 2
done
# shellcheck source=bench/paths.sh
source "$(dirname "$0")/paths.sh"   # HERE, CACHE, M, W
PY=$CACHE/refvenv/bin/python
LLAMA=$CACHE/llama.cpp-build/bin/llama-perplexity
QUANT=$CACHE/llama.cpp-build/bin/llama-quantize
MF32=$CACHE/models/$(basename "${M%.gguf}").F32.gguf
die() { echo "bench_peers: error: $*" >&2; exit 2; }

[ -e "$M" ] || die "$M: not found (run scripts/setup.sh)"
[ -e "$W" ] || die "$W: not found (WikiText-2 test text expected in ../shared/data)"
IFS=, read -r -a VS <<< "$VARIANTS"
for v in "${VS[@]}"; do
  case $v in
    dptq-fp32|dptq-bf16) [ -x "$B/cli/dptq" ] || die "$B/cli/dptq: not found (build it: cmake --preset release && cmake --build --preset release)";;
    transformers) [ -x "$PY" ] || die "$PY: not found (run scripts/setup.sh --refvenv)";;
    llama-q4_1) [ -x "$LLAMA" ] || die "$LLAMA: not found (run scripts/build-llama-cpp.sh)";;
    llama-f32) { [ -x "$LLAMA" ] && [ -x "$QUANT" ]; } || die "$LLAMA or $QUANT: not found (run scripts/build-llama-cpp.sh)";;
    *) die "unknown variant $v (dptq-fp32, dptq-bf16, transformers, llama-q4_1, llama-f32)";;
  esac
done
if [[ ",$VARIANTS," == *,llama-f32,* ]] && [ ! -s "$MF32" ]; then
  echo "[bench_peers] making $MF32 (llama-quantize --allow-requantize F32: the Q4_1 weights dequantized, once)" >&2
  "$QUANT" --allow-requantize "$M" "$MF32.tmp" F32 > "$MF32.log" 2>&1 || { tail -3 "$MF32.log" >&2; die "llama-quantize failed (log: $MF32.log)"; }
  mv "$MF32.tmp" "$MF32"
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
now() { date +%s.%N; }
run_variant() {  # run_variant VARIANT REP: writes $TMP/VARIANT.REP.{out,err,wall}
  local v=$1 r=$2 o="$TMP/$1.$2" t0 rc=0
  t0=$(now)
  case $v in
    dptq-fp32|dptq-bf16)
      "$B/cli/dptq" ppl "$M" --text "$W" --seqlen "$SEQLEN" --max-windows "$WINDOWS" --dtype "${v#dptq-}" --json > "$o.out" 2> "$o.err" || rc=$?;;
    transformers)
      "$PY" "$HERE/peer_transformers_ppl.py" "$M" --text "$W" --seqlen "$SEQLEN" --max-windows "$WINDOWS" --threads "$THREADS" > "$o.out" 2> "$o.err" || rc=$?;;
    llama-q4_1|llama-f32)
      local mm=$M; [ "$v" = llama-f32 ] && mm=$MF32
      "$LLAMA" -m "$mm" -f "$W" -c "$SEQLEN" -b "$SEQLEN" --chunks "$WINDOWS" -t "$THREADS" -tb "$THREADS" \
        --log-timestamps --log-prefix > "$o.out" 2> "$o.err" || rc=$?;;
  esac
  python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(now)" > "$o.wall"
  [ "$rc" = 0 ] || { tail -5 "$o.err" >&2; die "$v failed (exit $rc)"; }
  echo "[bench_peers] rep $r $v: $(cat "$o.wall") s wall" >&2
}
for (( r = 1; r <= REPS; r++ )); do
  for v in "${VS[@]}"; do run_variant "$v" "$r"; done
done

python3 - "$TMP" "$REPS" "$WINDOWS" "$SEQLEN" "$THREADS" "$JSON" "${VS[@]}" <<'PY'
import json, re, sys
tmp, reps, windows, seqlen, threads, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
variants = sys.argv[7:]

def parse(v, r):
    base = f"{tmp}/{v}.{r}"
    wall = float(open(base + ".wall").read())
    if v.startswith("llama"):
        err = open(base + ".err").read() + open(base + ".out").read()
        ts = r"(\d+)\.(\d+)\.(\d+)\.(\d+) I "
        a = re.search(ts + r"perplexity: calculating perplexity over (\d+) chunks, n_ctx=(\d+)", err)
        b = re.search(ts + r"Final estimate: PPL = ([\d.]+)", err)
        if not a or not b:
            sys.exit(f"bench_peers: error: cannot read llama-perplexity's timestamps or PPL from {base}.err")
        t = lambda m: int(m.group(1)) * 60 + int(m.group(2)) + int(m.group(3)) / 1e3 + int(m.group(4)) / 1e6
        return {"eval_s": t(b) - t(a), "tokens": int(a.group(5)) * int(a.group(6)), "ppl": float(b.group(5)), "wall_s": wall,
                "scored": "second half of each window"}
    d = json.loads(open(base + ".out").read())
    return {"eval_s": d["seconds"], "tokens": d["tokens"], "ppl": d["ppl"], "wall_s": wall, "scored": "every position"}

runs = {v: [parse(v, r) for r in range(1, reps + 1)] for v in variants}
best = {v: min(rs, key=lambda x: x["eval_s"]) for v, rs in runs.items()}
for v, b in best.items():
    if b["tokens"] != windows * seqlen:
        sys.exit(f"bench_peers: error: {v} evaluated {b['tokens']} tokens, expected {windows * seqlen}")
ref = best.get("dptq-fp32")
names = {"dptq-fp32": "dptq ppl, fp32", "dptq-bf16": "dptq ppl, bf16 (--dtype bf16)",
         "transformers": "transformers, fp32", "llama-q4_1": "llama.cpp, Q4_1 (its quantized dot products)",
         "llama-f32": "llama.cpp, F32 copy of the same weights"}
print(f"{windows} windows x {seqlen} tokens, {threads} thread(s), best of {reps} alternating reps")
print("| variant | eval s (best) | tokens/s | vs dptq fp32 | process wall s | perplexity |")
print("|---|---|---|---|---|---|")
for v in variants:
    b = best[v]
    tps = b["tokens"] / b["eval_s"]
    ratio = f"{ref['eval_s'] / b['eval_s']:.2f}" if ref else "-"
    note = " (2nd half of windows)" if v.startswith("llama") else ""
    print(f"| {names[v]} | {b['eval_s']:.2f} | {tps:.0f} | {ratio} | {b['wall_s']:.2f} | {b['ppl']:.4f}{note} |")
if out:
    json.dump({"windows": windows, "seqlen": seqlen, "threads": threads, "reps": reps, "runs": runs, "best": best},
              open(out, "w"), indent=1)
PY
