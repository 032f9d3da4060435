#!/usr/bin/env bash
# run_corpus.sh FUZZER NAME DIR...: runs a libFuzzer target once over every file of the given
# corpus folders (seeds, regressions); fails on the first crash, leak or sanitizer report.
set -uo pipefail
fuzzer="$1" name="$2"; shift 2
files=()
for d in "$@"; do
  [ -d "$d" ] || continue
  while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$d" -type f -print0)
done
[ ${#files[@]} -gt 0 ] || { echo "$name: no corpus files in $*" >&2; exit 1; }
log=$(mktemp)
here="$(cd "$(dirname "$0")" && pwd)"
# trace: HDF5 asks malloc for absurd sizes on corrupt headers and handles a null result (a clean
# refusal in the release build); let ASan return null there as malloc does.
asan=detect_leaks=1:fast_unwind_on_malloc=0; extra=()
# Memory errors inside libhdf5 itself are contained by read_trace's child process (asan-hdf5.supp).
[ "$name" = trace ] && { asan=$asan:allocator_may_return_null=1:suppressions=$here/asan-hdf5.supp; extra=(-malloc_limit_mb=1048576); }
ASAN_OPTIONS=$asan LSAN_OPTIONS=suppressions=$here/lsan.supp \
  "$fuzzer" "${extra[@]}" -runs=1 "${files[@]}" > "$log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then cat "$log"; else echo "$name: ${#files[@]} inputs, no crash"; tail -n 1 "$log"; fi
rm -f "$log"
exit $rc
