#!/usr/bin/env bash
# Builds llama.cpp's `llama-perplexity` and `llama-quantize` (CPU only, Release, native CPU flags)
# for the peer benchmark bench/bench_peers.sh (llama-quantize only makes an F32 copy of the model).
# The source is the llama.cpp that the PyPI sdist of llama-cpp-python vendors (vendor/llama.cpp):
# downloaded once into $DPTQ_CACHE/wheels, unpacked into
# $DPTQ_CACHE/llama.cpp-src, built in $DPTQ_CACHE/llama.cpp-build. Nothing goes into the work tree.
# Idempotent: does nothing when both binaries exist. Prints llama-perplexity's path on stdout.
#   scripts/build-llama-cpp.sh            # JOBS=1 scripts/build-llama-cpp.sh on a busy machine
set -euo pipefail
VER=0.3.36   # llama-cpp-python, PyPI sdist
SHA=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e   # sha256 of that sdist
CACHE="${DPTQ_CACHE:-$HOME/.cache/dptq}"
WHEELS="$CACHE/wheels"
SRC="$CACHE/llama.cpp-src"
BUILD="$CACHE/llama.cpp-build"
BIN="$BUILD/bin/llama-perplexity"
QBIN="$BUILD/bin/llama-quantize"
JOBS="${JOBS:-2}"
log() { printf '[build-llama-cpp] %s\n' "$*" >&2; }
die() { printf 'build-llama-cpp: error: %s\n' "$*" >&2; exit 1; }

if [ -x "$BIN" ] && [ -x "$QBIN" ]; then echo "$BIN"; exit 0; fi
for t in cmake g++ python3 tar sha256sum; do command -v "$t" >/dev/null || die "$t not found (scripts/setup.sh installs the build tools)"; done

SDIST="$WHEELS/llama_cpp_python-$VER.tar.gz"
mkdir -p "$WHEELS"
if [ ! -s "$SDIST" ]; then
  log "pip download llama-cpp-python==$VER (sdist)"
  python3 -m pip download -q --no-binary :all: --no-deps "llama-cpp-python==$VER" -d "$WHEELS" \
    || die "pip download llama-cpp-python==$VER failed (PyPI unreachable?)"
fi
[ -s "$SDIST" ] || die "expected $SDIST after pip download"
got=$(sha256sum "$SDIST" | cut -d' ' -f1)
[ -z "$SHA" ] || [ "$got" = "$SHA" ] || die "sha256 mismatch for $SDIST: $got (expected $SHA)"

if [ ! -f "$SRC/.done-$VER" ]; then
  log "unpacking vendor/llama.cpp into $SRC"
  rm -rf "$SRC.tmp"; mkdir -p "$SRC.tmp"
  tar xzf "$SDIST" -C "$SRC.tmp" --strip-components=3 "llama_cpp_python-$VER/vendor/llama.cpp"
  rm -rf "$SRC"; mv "$SRC.tmp" "$SRC"; touch "$SRC/.done-$VER"
fi

log "configuring (CPU only, Release, GGML_NATIVE) in $BUILD"
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=OFF >&2
log "building llama-perplexity and llama-quantize with -j$JOBS"
start=$(date +%s)
cmake --build "$BUILD" --target llama-perplexity llama-quantize -j"$JOBS" >&2
for b in "$BIN" "$QBIN"; do [ -x "$b" ] || die "build finished but $b is missing"; done
log "built in $(( $(date +%s) - start )) s"
echo "$BIN"
