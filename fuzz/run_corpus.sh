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
ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 LSAN_OPTIONS=suppressions=$here/lsan.supp \
  "$fuzzer" -runs=1 "${files[@]}" > "$log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then cat "$log"; else echo "$name: ${#files[@]} inputs, no crash"; tail -n 1 "$log"; fi
rm -f "$log"
exit $rc
