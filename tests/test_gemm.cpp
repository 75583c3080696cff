// The fp32 GEMM every projection uses (nn::linear_rows) against a double-precision reference, on
// shapes that hit each edge of the kernels' blocking: rows off the 6- and 12-row tiles, columns
// off the 16- and 32-column panels, K over one k block (384), and sizes that run on the pool.
// ctest runs it again at each kernel level (VITSCOPE_SIMD=avx2, 0).

#include <algorithm>
#include <cmath>
#include <iostream>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "vitscope/nn/kernel_level.hpp"
#include "vitscope/nn/linear.hpp"

using namespace vitscope;

TEST_CASE("fp32 GEMM with bias matches a double-precision reference on every tile edge",
          "[kernels]") {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  struct Shape { std::size_t m, n, k; };
  double worst_overall = 0;
  for (const Shape s : {Shape{1, 1, 1}, Shape{5, 7, 3}, Shape{6, 16, 8}, Shape{7, 17, 9},
                        Shape{13, 33, 385}, Shape{11, 15, 64}, Shape{197, 384, 384},
                        Shape{64, 100, 1537}, Shape{850, 256, 2048}, Shape{100, 1000, 31}}) {
    std::vector<float> a(s.m * s.k), w(s.n * s.k), bias(s.n), out(s.m * s.n);
    for (float& x : a) x = normal(rng);
    for (float& x : w) x = normal(rng);
    for (float& x : bias) x = normal(rng);
    nn::linear_rows(a.data(), s.m, s.k, w.data(), s.n, bias.data(), out.data());
    double worst = 0;
    for (std::size_t i = 0; i < s.m; ++i) {
      for (std::size_t j = 0; j < s.n; ++j) {
        double exact = bias[j], magnitude = std::abs(bias[j]);
        for (std::size_t k = 0; k < s.k; ++k) {
          const double product = static_cast<double>(a[i * s.k + k]) * w[j * s.k + k];
          exact += product;
          magnitude += std::abs(product);
        }
        worst = std::max(worst, std::abs(out[i * s.n + j] - exact) / magnitude);
      }
    }
    worst_overall = std::max(worst_overall, worst);
    INFO(s.m << "x" << s.n << "x" << s.k);
    CHECK(worst <= 1e-6);  // fp32 accumulation: a few ulps of sum |a w|
  }
  std::cout << "fp32 GEMM (kernels: " << kernel_level() << "): worst error " << worst_overall
            << " of sum |a w| (tolerance 1e-6)\n";
}
