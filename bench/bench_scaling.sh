#!/usr/bin/env bash
# Scaling, memory and profile overhead (issue 13; docs/benchmarks.md §3). One thread everywhere
# (OMP_NUM_THREADS=1, MKL_NUM_THREADS=1, bench_forward --threads 1); timed variants alternate
# (A B A B) and the best rep of each is kept. Prints markdown tables on stdout, progress on stderr.
#
#   bench/bench_scaling.sh [build-dir] [--reps 2] [--seqlens 512,1024,2048] [--sizes 0.1b,0.5b,1b]
#                          [--size-seqlen 512] [--parts 1,2,3,4] [--synth-dir build/synth]
#                          [--keep build/bench-scaling] [--tables-only]
#
# Parts:
#   1  seqlen scaling, default model: bench_forward --variants fp32,fake (W4A4KV4 QuaRot-RTN, fake
#      engine, every block 4-bit) at each seqlen, in one process per seqlen (the two variants
#      alternate rep by rep after one warm-up each), --profile-ops for the attention share.
#   2  model-size scaling: random LLaMA-shaped models (bench_synth_model, written once into
#      --synth-dir, never committed), one bench_forward process per variant and rep (fp32, fake,
#      fp32, fake, ...), each = load (+ quantize) + one warm-up + one timed forward; its peak RSS
#      and its RSS after the forwards. --no-weight-clip: RTN without the MSE clip search (same
#      forward arithmetic; the search alone would take ~10 min on 1B parameters at one thread).
#   3  peak RSS (/usr/bin/time -v) of `dptq ppl` FP and W4A4KV4 (quarot-rtn) on 2 windows x 2048
#      of WikiText-2, default model, one run each.
#   4  profile overhead: bench_profile overhead (in-process, alternating: forward with logits,
#      forward of the blocks only, profile_model) on 8 x 512 builtin windows, and the CLI:
#      `dptq profile --calib builtin --samples 8 --seqlen 512` against `dptq ppl --seqlen 512
#      --max-windows 8` (the same token count), alternating, with /usr/bin/time -v (also the
#      profile's peak RSS for part 3).
# Raw outputs (JSON, /usr/bin/time logs) stay in --keep; --tables-only prints the tables from them
# again without measuring (same options).
set -euo pipefail
B=build/release
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then B=$1; shift; fi
REPS=2 SEQLENS=512,1024,2048 SIZES=0.1b,0.5b,1b SIZE_SEQLEN=512 PARTS=1,2,3,4
SYNTH=build/synth KEEP=build/bench-scaling TABLES_ONLY=0
while [ $# -gt 0 ]; do
  if [ "$1" = --tables-only ]; then TABLES_ONLY=1; shift; continue; fi
  [ $# -ge 2 ] || { echo "bench_scaling: error: $1 needs a value" >&2; exit 2; }
  case $1 in
    --reps) REPS=$2;; --seqlens) SEQLENS=$2;; --sizes) SIZES=$2;; --size-seqlen) SIZE_SEQLEN=$2;;
    --parts) PARTS=$2;; --synth-dir) SYNTH=$2;; --keep) KEEP=$2;;
    *) echo "bench_scaling: error: unknown option $1" >&2; exit 2;;
  esac
  shift 2
done
# shellcheck source=bench/paths.sh
source "$(dirname "$0")/paths.sh"   # HERE, CACHE, M, W
die() { echo "bench_scaling: error: $*" >&2; exit 2; }
log() { echo "[bench_scaling $(date +%T)] $*" >&2; }
has_part() { [[ ",$PARTS," == *,$1,* ]]; }

[ -e "$M" ] || die "$M: not found (run scripts/setup.sh)"
[ -e "$W" ] || die "$W: not found (WikiText-2 test text expected in ../shared/data)"
for t in cli/dptq bench/bench_forward bench/bench_profile bench/bench_synth_model; do
  [ -x "$B/$t" ] || die "$B/$t: not found (cmake --build --preset release)"
done
[ -x /usr/bin/time ] || die "/usr/bin/time: not found (apt-get install time)"
mkdir -p "$KEEP" "$SYNTH"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
IFS=, read -r -a SEQ_LIST <<< "$SEQLENS"
IFS=, read -r -a SIZE_LIST <<< "$SIZES"
if [ "$TABLES_ONLY" = 0 ]; then
T0=$(date +%s)
{
  echo "start $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "commit $(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null || echo '?')" \
       "dirty files: $(git -C "$HERE/.." status --porcelain 2>/dev/null | wc -l)"
} > "$KEEP/run.txt"

# shape of each synthetic size: d_model layers d_ff heads kv_heads (vocab 32000, head_dim 64)
shape_of() {
  case $1 in
    0.1b) echo "768 12 2048 12 4";;
    0.5b) echo "1536 16 4096 24 8";;
    1b) echo "2048 20 5632 32 8";;
    *) die "unknown size $1 (0.1b, 0.5b, 1b)";;
  esac
}
for s in "${SIZE_LIST[@]}"; do shape_of "$s" > /dev/null; done

# ---- part 1: seqlen scaling, default model ----------------------------------------------------
if has_part 1; then
  for s in "${SEQ_LIST[@]}"; do
    log "part 1: seqlen $s (fp32, quarot-rtn fake; warm-up + $REPS reps each, alternating)"
    "$B/bench/bench_forward" --model "$M" --seqlen "$s" --reps "$REPS" --threads 1 --method quarot-rtn \
      --variants fp32,fake --no-weight-clip --profile-ops > "$KEEP/seqlen_$s.json" 2> "$KEEP/seqlen_$s.err" \
      || { tail -3 "$KEEP/seqlen_$s.err" >&2; die "bench_forward --seqlen $s failed"; }
  done
fi

# ---- part 2: model-size scaling ---------------------------------------------------------------
if has_part 2; then
  for s in "${SIZE_LIST[@]}"; do
    read -r d L ff h kv <<< "$(shape_of "$s")"
    dir="$SYNTH/synth-d$d-L$L-ff$ff-h$h-kv$kv"
    if [ ! -d "$dir" ] || [ ! -s "$dir.json" ]; then
      rm -rf "$dir"
      log "part 2: writing $dir"
      "$B/bench/bench_synth_model" --d-model "$d" --layers "$L" --d-ff "$ff" --heads "$h" --kv-heads "$kv" \
        --out "$dir" > "$dir.json.tmp"
      mv "$dir.json.tmp" "$dir.json"
    fi
    cp "$dir.json" "$KEEP/size_$s.model.json"
    # memory: a load peaks at about twice the fp32 weights (measured), plus ~1 GiB
    need_mib=$(( $(du -sm "$dir" | cut -f1) * 2 + 1024 ))
    avail_mib=$(( $(awk '/MemAvailable/ {print $2}' /proc/meminfo) / 1024 ))
    if [ "$avail_mib" -lt "$need_mib" ]; then
      log "part 2: SKIPPING $s: needs ~$need_mib MiB, $avail_mib MiB available"
      echo "skipped: needs ~$need_mib MiB, $avail_mib MiB available" > "$KEEP/size_$s.skipped"
      continue
    fi
    rm -f "$KEEP/size_$s.skipped"
    for r in $(seq 1 "$REPS"); do
      for v in fp32 fake; do
        log "part 2: $s rep $r $v (seqlen $SIZE_SEQLEN)"
        o="$KEEP/size_$s.$v.$r"
        /usr/bin/time -v "$B/bench/bench_forward" --model "$dir" --seqlen "$SIZE_SEQLEN" --reps 1 --threads 1 \
          --method quarot-rtn --variants "$v" --no-weight-clip > "$o.json" 2> "$o.err" \
          || { tail -3 "$o.err" >&2; die "bench_forward on $dir ($v) failed"; }
      done
    done
  done
fi

# ---- part 3: peak RSS of dptq ppl FP and W4A4KV4, 2 x 2048 ------------------------------------
if has_part 3; then
  for v in fp quarot-rtn; do
    log "part 3: dptq ppl $v, 2 x 2048"
    args=(); [ "$v" = fp ] || args=(--method "$v")
    /usr/bin/time -v "$B/cli/dptq" ppl "$M" --text "$W" --seqlen 2048 --max-windows 2 "${args[@]}" --json \
      > "$KEEP/ppl_$v.json" 2> "$KEEP/ppl_$v.err" || { tail -3 "$KEEP/ppl_$v.err" >&2; die "dptq ppl $v failed"; }
  done
fi

# ---- part 4: profile overhead -----------------------------------------------------------------
if has_part 4; then
  log "part 4: bench_profile overhead, 8 x 512, $REPS reps"
  "$B/bench/bench_profile" overhead --model "$M" --samples 8 --seqlen 512 --reps "$REPS" \
    > "$KEEP/profile_overhead.json" 2> "$KEEP/profile_overhead.err" \
    || { tail -3 "$KEEP/profile_overhead.err" >&2; die "bench_profile failed"; }
  for r in $(seq 1 "$REPS"); do
    log "part 4: CLI rep $r: dptq profile 8 x 512, dptq ppl 8 x 512"
    rm -f "$KEEP/profile.h5"
    /usr/bin/time -v "$B/cli/dptq" profile "$M" --calib builtin --samples 8 --seqlen 512 --out "$KEEP/profile.h5" \
      --json > "$KEEP/cli_profile.$r.json" 2> "$KEEP/cli_profile.$r.err" \
      || { tail -3 "$KEEP/cli_profile.$r.err" >&2; die "dptq profile failed"; }
    /usr/bin/time -v "$B/cli/dptq" ppl "$M" --text "$W" --seqlen 512 --max-windows 8 --json \
      > "$KEEP/cli_ppl512.$r.json" 2> "$KEEP/cli_ppl512.$r.err" \
      || { tail -3 "$KEEP/cli_ppl512.$r.err" >&2; die "dptq ppl 8 x 512 failed"; }
  done
  rm -f "$KEEP/profile.h5"
fi

T1=$(date +%s)
echo "end $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg) total $((T1 - T0)) s" >> "$KEEP/run.txt"
log "done in $((T1 - T0)) s; raw outputs in $KEEP"
fi  # TABLES_ONLY

# ---- tables -----------------------------------------------------------------------------------
python3 - "$KEEP" "$REPS" "$SEQLENS" "$SIZES" "$SIZE_SEQLEN" "$PARTS" <<'PY'
import glob, json, os, re, sys
keep, reps, seqlens, sizes, size_seqlen, parts = sys.argv[1:]
reps = int(reps); parts = parts.split(",")
J = lambda p: json.load(open(p))

def gnu_time(path):
    """(peak RSS MiB, wall s) from a /usr/bin/time -v log."""
    txt = open(path).read()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", txt).group(1)) / 1024
    w = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", txt).group(1).split(":")
    wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(w)))
    return rss, wall

print(open(os.path.join(keep, "run.txt")).read().strip().replace("\n", "; "))
print()
if "1" in parts:
    print("### Seqlen scaling (default model, 1 thread, best of %d after a warm-up)\n" % reps)
    print("| seqlen | FP fp32 s | FP tokens/s | W4A4KV4 fake s | W4A4KV4 tokens/s | fake / fp32 time "
          "| attention share FP | attention share fake | lm_head + NLL share FP |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in seqlens.split(","):
        j = J(os.path.join(keep, f"seqlen_{s}.json"))
        fp, fk = j["variants"]["fp32"], j["variants"]["quarot-rtn fake"]
        def share(v, ops):
            o = v["op_seconds_per_forward"]; tot = sum(o.values())
            return sum(o.get(k, 0) for k in ops) / tot
        print(f"| {s} | {fp['best_s']:.2f} | {fp['tokens_per_s_best']:.0f} | {fk['best_s']:.2f} | "
              f"{fk['tokens_per_s_best']:.0f} | {fk['best_s'] / fp['best_s']:.2f} | "
              f"{100 * share(fp, ['attention']):.0f}% | {100 * share(fk, ['attention']):.0f}% | "
              f"{100 * share(fp, ['lm_head', 'log_softmax + nll']):.0f}% |")
    print()
if "2" in parts:
    print(f"### Model-size scaling (synthetic LLaMA shapes, vocab 32000, head_dim 64, seqlen {size_seqlen}, "
          f"1 thread; one process per variant and rep, best of {reps})\n")
    print("| size | d / layers / d_ff / heads / kv | parameters | FP fp32 tokens/s | W4A4KV4 fake tokens/s "
          "| fake / fp32 time | peak RSS FP (MiB) | peak RSS fake (MiB) | RSS after forwards FP / fake (MiB) "
          "| process wall FP / fake (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in sizes.split(","):
        mj = J(os.path.join(keep, f"size_{s}.model.json"))
        shape = f"{mj['d_model']} / {mj['n_layers']} / {mj['d_ff']} / {mj['n_heads']} / {mj['n_kv_heads']}"
        if os.path.exists(os.path.join(keep, f"size_{s}.skipped")):
            print(f"| {s} | {shape} | {mj['n_params'] / 1e6:.1f} M | " + " | ".join(["skipped"] * 7) + " |")
            continue
        best, rss, rss_end, wall = {}, {}, {}, {}
        for v, name in (("fp32", "fp32"), ("fake", "quarot-rtn fake")):
            for r in range(1, reps + 1):
                j = J(os.path.join(keep, f"size_{s}.{v}.{r}.json"))
                best[v] = min(best.get(v, 1e30), j["variants"][name]["best_s"])
                peak, w = gnu_time(os.path.join(keep, f"size_{s}.{v}.{r}.err"))
                rss[v] = max(rss.get(v, 0), peak)
                rss_end[v] = max(rss_end.get(v, 0), j.get("rss_end_mib", 0))
                wall[v] = min(wall.get(v, 1e30), w)
        tps = {v: int(size_seqlen) / best[v] for v in best}
        print(f"| {s} | {shape} | {mj['n_params'] / 1e6:.1f} M | {tps['fp32']:.1f} | {tps['fake']:.1f} | "
              f"{best['fake'] / best['fp32']:.2f} | {rss['fp32']:.0f} | {rss['fake']:.0f} | "
              f"{rss_end['fp32']:.0f} / {rss_end['fake']:.0f} | {wall['fp32']:.0f} / {wall['fake']:.0f} |")
    print()
if "3" in parts or "4" in parts:
    print("### Peak RSS of the command line (default model, /usr/bin/time -v)\n")
    print("| command | peak RSS (MiB) | process wall (s) | tool's own `seconds` |")
    print("|---|---|---|---|")
    if "3" in parts:
        for v, label in (("fp", "`dptq ppl` FP fp32, 2 × 2048"), ("quarot-rtn", "`dptq ppl --method quarot-rtn` (W4A4KV4), 2 × 2048")):
            rss, wall = gnu_time(os.path.join(keep, f"ppl_{v}.err"))
            print(f"| {label} | {rss:.0f} | {wall:.1f} | {J(os.path.join(keep, f'ppl_{v}.json'))['seconds']:.1f} |")
    if "4" in parts:
        for f, label in (("cli_profile", "`dptq profile --calib builtin --samples 8 --seqlen 512`"),
                         ("cli_ppl512", "`dptq ppl --seqlen 512 --max-windows 8` (FP)")):
            rows = [(gnu_time(os.path.join(keep, f"{f}.{r}.err")), J(os.path.join(keep, f"{f}.{r}.json"))["seconds"])
                    for r in range(1, reps + 1)]
            print(f"| {label} (best of {reps}) | {max(x[0][0] for x in rows):.0f} | {min(x[0][1] for x in rows):.1f} | "
                  f"{min(x[1] for x in rows):.1f} |")
    print()
if "4" in parts:
    j = J(os.path.join(keep, "profile_overhead.json"))
    print(f"### Profile overhead (default model, {j['samples']} × {j['seqlen']} builtin windows, {j['threads']} thread, best of {j['reps']})\n")
    print("| measured | seconds | profile / this |")
    print("|---|---|---|")
    print(f"| `bench_profile overhead`: forward with logits (what ppl computes, no NLL) | {j['forward_full_s']:.2f} | {j['ratio_profile_vs_full_forward']:.2f} |")
    print(f"| `bench_profile overhead`: forward of the blocks only (no final norm, no lm_head) | {j['forward_blocks_s']:.2f} | {j['ratio_profile_vs_blocks_forward']:.2f} |")
    print(f"| `bench_profile overhead`: profile_model | {j['profile_s']:.2f} | 1.00 |")
    p = min(J(os.path.join(keep, f"cli_profile.{r}.json"))["seconds"] for r in range(1, reps + 1))
    q = min(J(os.path.join(keep, f"cli_ppl512.{r}.json"))["seconds"] for r in range(1, reps + 1))
    print(f"| CLI: `dptq ppl` 8 × 512 (its `seconds`: forwards + NLL) | {q:.2f} | {p / q:.2f} |")
    print(f"| CLI: `dptq profile` 8 × 512 (its `seconds`) | {p:.2f} | 1.00 |")
    print()
PY
