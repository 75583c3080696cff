#pragma once
// Which of the compute kernels (src/nn/kernels.hpp) this process runs, for reports.

namespace vitscope {

// "avx512", "avx2" or "portable" (the best the CPU has, capped by the environment variable
// VITSCOPE_SIMD = avx512, avx2 or 0).
const char* kernel_level();

}  // namespace vitscope
