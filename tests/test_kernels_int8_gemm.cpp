// CUDA int8 GEMM + dequantization epilogue vs the CPU reference (gemm_math.hpp, the integer
// engine's epilogue): int32 sums are exact and the epilogue is the same fp32 operations, so y must
// agree bit for bit on both paths (cuBLASLt where its IMMA rules hold, the tiled kernel on odd
// shapes), over odd shapes, strided rows and the CPU engine's u8-code convention shifted to int8.
#include <random>

#include "dptq/error.hpp"
#include "dptq/kernels/gemm_math.hpp"
#include "dptq/kernels/int8_gemm.cuh"
#include "kernel_test_util.hpp"

using dptq::cuda::Int8GemmEpilogue;
using dptq::cuda::Int8GemmPath;
using dptq::test::DeviceBuffer;

TEST_CASE("int8_gemm rejects bad arguments before touching the GPU") {
  int8_t a[64] = {}, w[64] = {};
  int32_t acc[64] = {}, cs[8] = {};
  float y[64] = {}, s[8] = {};
  Int8GemmEpilogue ep;
  ep.a_scale = s;
  ep.w_colsum = cs;
  ep.w_scale = s;
  auto call = [&](int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldacc, Int8GemmPath path) {
    dptq::cuda::int8_gemm(a, lda, w, K, M, N, K, ep, y, N, acc, ldacc, path, nullptr);
  };
  CHECK_THROWS_AS(call(2, 4, 8, 7, 4, Int8GemmPath::Auto), dptq::Error);                  // lda < K
  CHECK_THROWS_AS(call(2, 4, 8, 8, 3, Int8GemmPath::Auto), dptq::Error);                  // ldacc < N
  CHECK_THROWS_AS(call(2, 4, 70000, 70000, 4, Int8GemmPath::Auto), dptq::Error);          // K: int32 overflow
  CHECK_THROWS_AS(call(2, 3, 8, 8, 3, Int8GemmPath::CublasLt), dptq::Error);              // N not a multiple of 4
  CHECK_THROWS_AS(call(2, 4, 6, 6, 4, Int8GemmPath::CublasLt), dptq::Error);              // K not a multiple of 4
  CHECK_THROWS_AS(call(2, 4, 8, 8, 4, static_cast<Int8GemmPath>(9)), dptq::Error);       // unknown path
  ep.w_colsum = nullptr;
  CHECK_THROWS_AS(call(2, 4, 8, 8, 4, Int8GemmPath::Auto), dptq::Error);
  CHECK(dptq::cuda::int8_gemm_cublaslt_eligible(a, 8, w, 8, 4, 8, acc, 4));
  CHECK_FALSE(dptq::cuda::int8_gemm_cublaslt_eligible(a, 9, w, 8, 4, 8, acc, 4));
  CHECK_FALSE(dptq::cuda::int8_gemm_cublaslt_eligible(a + 1, 8, w, 8, 4, 8, acc, 4));
}

TEST_CASE("int8_gemm matches the CPU integer engine's arithmetic bit for bit, both paths, odd shapes" *
          doctest::test_suite("gpu")) {
  DPTQ_SKIP_UNLESS_GPU();
  std::mt19937 rng(2024);
  int64_t ran_lt = 0, ran_tiled = 0;
  struct Shape {
    int64_t M, N, K;
  };
  // Odd shapes (tiled), and the model's (576, 1536 ...) shapes that cuBLASLt takes.
  for (const Shape sh : {Shape{1, 1, 1}, Shape{3, 5, 7}, Shape{17, 33, 129}, Shape{37, 576, 576}, Shape{64, 1536, 576},
                         Shape{5, 576, 1536}, Shape{128, 192, 4096}}) {
    for (int act_bits : {4, 8}) {
      for (bool with_bias : {false, true}) {
        for (Int8GemmPath path : {Int8GemmPath::Auto, Int8GemmPath::Tiled}) {
          const auto [M, N, K] = sh;
          CAPTURE(M);
          CAPTURE(N);
          CAPTURE(K);
          CAPTURE(act_bits);
          CAPTURE(with_bias);
          CAPTURE(int(path));
          const bool aligned = K % 4 == 0 && N % 4 == 0;
          const int64_t lda = aligned ? K + 4 : K + 1, ldw = aligned ? K : K + 3, ldy = N + 2,
                        ldacc = aligned ? N + 4 : N;
          // The CPU engine's convention: asymmetric activation codes u in [0, 2^b - 1] with offset
          // o = minq - z = -z, shifted to int8 (u - 128) with offset o + 128; 4-bit signed weights.
          std::uniform_int_distribution<int> du(0, (1 << act_bits) - 1), dz(0, (1 << act_bits) - 1), dw(-8, 7);
          std::vector<int8_t> a(static_cast<size_t>(M * lda), 0), w(static_cast<size_t>(N * ldw), 0);
          std::vector<int32_t> off(static_cast<size_t>(M)), colsum(static_cast<size_t>(N));
          std::vector<float> sa(static_cast<size_t>(M)), sw(static_cast<size_t>(N)), bias(static_cast<size_t>(N));
          for (int64_t t = 0; t < M; ++t) {
            off[static_cast<size_t>(t)] = -dz(rng) + 128;
            sa[static_cast<size_t>(t)] = 0.013f * float(1 + t % 7);
            for (int64_t k = 0; k < K; ++k) a[static_cast<size_t>(t * lda + k)] = int8_t(du(rng) - 128);
          }
          for (int64_t n = 0; n < N; ++n) {
            sw[static_cast<size_t>(n)] = 0.002f * float(1 + n % 11);
            bias[static_cast<size_t>(n)] = 0.25f * float(n % 5) - 0.5f;
            for (int64_t k = 0; k < K; ++k) w[static_cast<size_t>(n * ldw + k)] = int8_t(dw(rng));
          }
          dptq::kmath::int8_row_sums_ref(w.data(), ldw, N, K, colsum.data());
          std::vector<float> ref(static_cast<size_t>(M * ldy), -3.0f);
          dptq::kmath::int8_gemm_rows_ref(a.data(), lda, w.data(), ldw, M, N, K, off.data(), sa.data(), colsum.data(),
                                          sw.data(), with_bias ? bias.data() : nullptr, ref.data(), ldy);
          DeviceBuffer<int8_t> da(a), dw_(w);
          DeviceBuffer<int32_t> doff(off), dcs(colsum), dacc(static_cast<size_t>(M * ldacc));
          DeviceBuffer<float> dsa(sa), dsw(sw), dbias(bias), dy(std::vector<float>(static_cast<size_t>(M * ldy), -3.0f));
          Int8GemmEpilogue ep;
          ep.a_offset = doff.get();
          ep.a_scale = dsa.get();
          ep.w_colsum = dcs.get();
          ep.w_scale = dsw.get();
          ep.bias = with_bias ? dbias.get() : nullptr;
          const Int8GemmPath ran = dptq::cuda::int8_gemm(da.get(), lda, dw_.get(), ldw, M, N, K, ep, dy.get(), ldy,
                                                         dacc.get(), ldacc, path, nullptr);
          if (path == Int8GemmPath::Tiled) CHECK(ran == Int8GemmPath::Tiled);
          if (!aligned) CHECK(ran == Int8GemmPath::Tiled);
          (ran == Int8GemmPath::CublasLt ? ran_lt : ran_tiled) += 1;
          const auto y = dy.download();
          CHECK(dptq::test::normalized_error(y, ref) == 0.0);
          int64_t differ = 0;
          for (size_t i = 0; i < y.size(); ++i) differ += y[i] != ref[i];  // padding included
          CHECK(differ == 0);
        }
      }
    }
  }
  MESSAGE("cuBLASLt ran " << ran_lt << " problems, the tiled kernel " << ran_tiled);
  CHECK(ran_tiled > 0);
  CHECK(ran_lt > 0);  // cuBLASLt must serve the aligned model shapes, or the GPU path is the slow one
}
