#!/usr/bin/env bash
# Runs every benchmark on the default model (CPU) and prints their JSON results.
#   bench/run_benches.sh [build-dir]      (default build/release)
set -euo pipefail
B="${1:-build/release}"
echo "== forward throughput, seqlen 2048"
"$B/bench/bench_forward" --seqlen 2048 --reps 3 --method quarot-rtn --bf16 --profile-ops  # fp32, bf16, int, fake
echo "== int8 GEMM (FBGEMM) vs fp32 vs at::_int_mm at the default model's layer shapes"
"$B/bench/bench_int_gemm" --tokens 2048 --reps 3
echo "== profiler overhead: 8 windows x 512 tokens, builtin calibration"
"$B/bench/bench_profile" overhead --samples 8 --seqlen 512 --reps 2
echo "== profiler peak RSS: 16 vs 256 windows x 128 tokens"
"$B/bench/bench_profile" rss --samples 16 --seqlen 128
"$B/bench/bench_profile" rss --samples 256 --seqlen 128
echo "== perplexity throughput: one process on all cores vs one single-thread worker per core"
"$(dirname "$0")/bench_workers.sh" "$B" --method quarot-rtn --windows-per-core 2
