#pragma once
// Which of the compute kernels (src/nn/kernels.hpp) this process runs, for reports.

namespace vitscope {

// "avx512", "avx2" or "portable" (the best the CPU has, capped by the environment variable
// VITSCOPE_SIMD = avx512, avx2 or 0).
const char* kernel_level();

// The precision of every GEMM that nn::linear_rows runs (Linear layers, attention in_proj and
// out_proj, the feed-forward, patch embeddings and convolutions), set for the process. fp32 is
// the default and the exact path. bf16 rounds the GEMM's inputs and weights to bfloat16 (8
// significant bits, nearest even) and accumulates in fp32 with AVX-512 BF16 instructions, for
// about 1.8 times the GEMM throughput. Attention scores, softmax, LayerNorm and everything else
// stay fp32.
enum class Precision { fp32, bf16 };

// Whether this CPU (at the AVX-512 level, see VITSCOPE_SIMD) runs the bf16 GEMM.
bool bf16_supported();

// Throws vitscope::Error("unsupported_precision") for bf16 where bf16_supported() is false.
void set_precision(Precision precision);
Precision precision();

const char* to_string(Precision precision);

}  // namespace vitscope
