// The bf16 GEMM (set_precision(Precision::bf16)) against a double-precision reference on the
// same bf16-rounded operands: only the order of the fp32 accumulation may differ. Run where the
// CPU has AVX-512 BF16; elsewhere set_precision must refuse it.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "vitscope/error.hpp"
#include "vitscope/nn/kernel_level.hpp"
#include "vitscope/nn/linear.hpp"

using namespace vitscope;

namespace {

// fp32 -> bf16 -> fp32, rounded to nearest even (finite inputs).
float round_to_bf16(float x) {
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  bits &= 0xFFFF0000u;
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

struct PrecisionScope {
  explicit PrecisionScope(Precision p) { set_precision(p); }
  ~PrecisionScope() { set_precision(Precision::fp32); }
};

}  // namespace

TEST_CASE("bf16 GEMM: exact products of the rounded operands, fp32 accumulation", "[bf16]") {
  if (!bf16_supported()) {
    REQUIRE_THROWS_AS(set_precision(Precision::bf16), Error);
    std::cout << "bf16 not supported on this CPU (kernels: " << kernel_level() << ")\n";
    return;
  }
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  struct Shape { std::size_t m, n, k; };
  // Odd K, K over one k block (384), N off the 32-column panels, M off the 12-row tiles, and
  // shapes large enough to run on the pool.
  for (const Shape s : {Shape{1, 1, 1}, Shape{5, 7, 3}, Shape{13, 33, 385}, Shape{197, 384, 384},
                        Shape{64, 100, 1537}, Shape{850, 256, 2048}}) {
    std::vector<float> a(s.m * s.k), w(s.n * s.k), bias(s.n), out(s.m * s.n);
    for (float& x : a) x = normal(rng);
    for (float& x : w) x = normal(rng);
    for (float& x : bias) x = normal(rng);
    {
      PrecisionScope bf16(Precision::bf16);
      nn::linear_rows(a.data(), s.m, s.k, w.data(), s.n, bias.data(), out.data());
    }
    double worst = 0, worst_vs_fp32 = 0;
    for (std::size_t i = 0; i < s.m; ++i) {
      for (std::size_t j = 0; j < s.n; ++j) {
        double rounded = bias[j], exact = bias[j], magnitude = std::abs(bias[j]);
        for (std::size_t k = 0; k < s.k; ++k) {
          const double product = static_cast<double>(round_to_bf16(a[i * s.k + k])) * round_to_bf16(w[j * s.k + k]);
          rounded += product;
          exact += static_cast<double>(a[i * s.k + k]) * w[j * s.k + k];
          magnitude += std::abs(product);
        }
        worst = std::max(worst, std::abs(out[i * s.n + j] - rounded) / magnitude);
        worst_vs_fp32 = std::max(worst_vs_fp32, std::abs(out[i * s.n + j] - exact) / magnitude);
      }
    }
    std::cout << "bf16 GEMM " << s.m << "x" << s.n << "x" << s.k << ": worst error against the rounded "
              << "operands " << worst << ", against fp32 " << worst_vs_fp32 << " (of sum |a w|)\n";
    CHECK(worst <= 1e-6);          // fp32 accumulation of exact products
    CHECK(worst_vs_fp32 <= 8e-3);  // two operands rounded to 8 bits: at most 2^-8 of sum |a w|
  }
}
