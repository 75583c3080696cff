// gemm_peak: single-precision GEMM throughput of vitscope's Linear (nn::linear_rows, the GEMM every
// projection uses) next to cblas_sgemm from the linked BLAS, on the shapes of the benchmark
// models' Linear layers and on 1024^3. Built only with -DVITSCOPE_BUILD_BENCH=ON; see
// bench/README.md.
//
//   gemm_peak [--threads K] [--repeat R] [M,N,K ...]
//
// Prints one line per shape: M N K, then GFLOPS (best of R runs) of vitscope and of the BLAS (and of
// vitscope in bf16, where the CPU has AVX-512 BF16).
// C (M x N) = A (M x K) * W^T, W (N x K), plus a bias, as torch.nn.Linear computes.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <cblas.h>  // OpenBLAS's or BLIS's, as CMake's VITSCOPE_BLAS chose

#include "vitscope/nn/kernel_level.hpp"
#include "vitscope/nn/linear.hpp"
#include "vitscope/nn/parallel.hpp"

namespace {

struct Shape {
  int m, n, k;
};

template <class F>
double best_seconds(F&& f, int repeat) {
  f();  // warm-up
  double best = 1e30;
  for (int i = 0; i < repeat; ++i) {
    const auto start = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, repeat = 5;
  std::vector<Shape> shapes;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (arg == "--repeat" && i + 1 < argc) {
      repeat = std::atoi(argv[++i]);
    } else {
      Shape s{};
      if (std::sscanf(arg.c_str(), "%d,%d,%d", &s.m, &s.n, &s.k) != 3 || s.m < 1 || s.n < 1 ||
          s.k < 1) {
        std::fprintf(stderr, "usage: gemm_peak [--threads K] [--repeat R] [M,N,K ...]\n");
        return 2;
      }
      shapes.push_back(s);
    }
  }
  if (shapes.empty()) {
    shapes = {
        {1024, 1024, 1024},
        // ViT-S-like, batch 1 (197 tokens) and batch 8 (1576): qkv, out_proj, linear1, linear2.
        {197, 1152, 384}, {197, 384, 384}, {197, 1536, 384}, {197, 384, 1536},
        {1576, 1152, 384}, {1576, 1536, 384}, {1576, 384, 1536},
        // DETR-like encoder (850 tokens): q+k, v, out_proj, linear1, linear2.
        {850, 512, 256}, {850, 256, 256}, {850, 2048, 256}, {850, 256, 2048},
    };
  }
  vitscope::set_num_threads(threads);
  std::mt19937 rng(0);
  std::normal_distribution<float> normal;
  // Where the CPU has AVX-512 BF16, a last column: vitscope's GEMM with --precision bf16.
  const bool bf16 = vitscope::bf16_supported();
  std::printf("# threads %d, best of %d; GFLOPS\n%6s %6s %6s %10s %10s%s\n", threads, repeat, "M", "N",
              "K", "vitscope", "blas", bf16 ? "  vitscope_bf16" : "");
  for (const Shape& s : shapes) {
    const std::size_t m = s.m, n = s.n, k = s.k;
    std::vector<float> a(m * k), w(n * k), bias(n), c(m * n);
    for (float& v : a) v = normal(rng);
    for (float& v : w) v = normal(rng);
    for (float& v : bias) v = normal(rng);
    const double flops = 2.0 * m * n * k;
    const double ours = best_seconds(
        [&] { vitscope::nn::linear_rows(a.data(), m, k, w.data(), n, bias.data(), c.data()); },
        repeat);
    const double blas = best_seconds(
        [&] {
          for (std::size_t r = 0; r < m; ++r) std::copy(bias.begin(), bias.end(), c.begin() + r * n);
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.m, s.n, s.k, 1.0f, a.data(), s.k,
                      w.data(), s.k, 1.0f, c.data(), s.n);
        },
        repeat);
    std::printf("%6d %6d %6d %10.1f %10.1f", s.m, s.n, s.k, flops / ours * 1e-9, flops / blas * 1e-9);
    if (bf16) {
      vitscope::set_precision(vitscope::Precision::bf16);
      const double ours_bf16 = best_seconds(
          [&] { vitscope::nn::linear_rows(a.data(), m, k, w.data(), n, bias.data(), c.data()); },
          repeat);
      vitscope::set_precision(vitscope::Precision::fp32);
      std::printf(" %14.1f", flops / ours_bf16 * 1e-9);
    }
    std::printf("\n");
  }
  return 0;
}
