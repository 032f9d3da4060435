#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_*.cpp: libFuzzer + ASan + UBSan) for a number of executions
# and prints one row per target: executions, seconds, exec/s, corpus size, crashes.
#
#   bench/fuzz.sh [RUNS] [TARGET...]      RUNS default 1000000; TARGET default: all
#   FUZZ_MAX_TIME=1800 bench/fuzz.sh      also stop each target after this many seconds
#
# Builds fuzz/ into build/sanitize (clang), makes the seeds (fuzz/make_seeds.py), keeps the growing
# corpus in build/sanitize/corpus/<target> (resumes from it) and crash inputs in
# build/sanitize/artifacts/<target>/. A crash input, once fixed, goes to fuzz/regressions/<target>/
# (CI replays those on every run). docs/robustness.md records the figures.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-1000000}"; shift || true
B="${FUZZ_BUILD:-build/sanitize}"
ALL=(gguf safetensors tokenizer_json spm_model plan quant_config trace)
TARGETS=("${@:-${ALL[@]}}")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
CC=clang CXX=clang++ cmake -S fuzz -B "$B" -G Ninja > /dev/null || exit 2
cmake --build "$B" -j2 > "$B.build.log" 2>&1 || { tail -30 "$B.build.log"; exit 2; }
python3 fuzz/make_seeds.py "$B/seeds" --trace-seed-tool "$B/make_trace_seed" >&2 || exit 2
printf '%-15s %12s %9s %10s %8s %8s %9s\n' target executions seconds exec/s corpus crashes timeouts
status=0
for t in "${TARGETS[@]}"; do
  corpus="$B/corpus/$t" art="$B/artifacts/$t/"
  mkdir -p "$corpus" "$art"
  log="$B/fuzz_$t.log"
  start=$(date +%s.%N)
  dirs=("$corpus" "$B/seeds/$t"); [ -d "fuzz/regressions/$t" ] && dirs+=("fuzz/regressions/$t")
  # Fast stacks; HDF5-internal leaks suppressed by module (fuzz/lsan-campaign.supp says why).
  # fuzz_trace: HDF5 asks malloc for absurd sizes on corrupt headers and handles a null result:
  # ASan returns null there, as malloc does. (Trace format 1.x's variable-length strings made
  # HDF5 1.10 crash and loop; format 2.0 refuses them before any read — docs/robustness.md.)
  mode=(); asan=detect_leaks=1
  # Memory errors inside libhdf5 itself (ASan sees them only in its interceptors) are suppressed by
  # fuzz/asan-hdf5.supp: the product contains them in read_trace's child process.
  [ "$t" = trace ] && { mode=(-malloc_limit_mb=1048576); asan=$asan:allocator_may_return_null=1:suppressions=$PWD/fuzz/asan-hdf5.supp; }
  ASAN_OPTIONS=$asan LSAN_OPTIONS=suppressions=$PWD/fuzz/lsan-campaign.supp \
    "$B/fuzz_$t" "${mode[@]}" -runs="$RUNS" ${FUZZ_MAX_TIME:+-max_total_time=$FUZZ_MAX_TIME} \
    -artifact_prefix="$art" -print_final_stats=1 -rss_limit_mb=4096 -timeout=20 "${dirs[@]}" > "$log" 2>&1
  rc=$?
  secs=$(python3 -c "import time; print(f'{time.time() - $start:.0f}')")
  execs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  # fork mode prints no final stats: its last "#N" status line counts every job's executions
  [ -n "$execs" ] || execs=$(grep -aoE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  crashes=$(find "$art" -type f ! -name 'timeout-*' | wc -l)
  timeouts=$(find "$art" -type f -name 'timeout-*' | wc -l)
  [ $rc -ne 0 ] && status=1
  printf '%-15s %12s %9s %10s %8s %8s %9s\n' "$t" "${execs:-?}" "$secs" \
    "$(python3 -c "print(int(${execs:-0} / max(1, $secs)))")" "$(find "$corpus" -type f | wc -l)" "$crashes" "$timeouts"
  [ $rc -ne 0 ] && { echo "  $t: exit $rc, see $log"; grep -a -m3 -E 'ERROR|SUMMARY|deadly|abort' "$log" | sed 's/^/    /'; }
done
exit $status
