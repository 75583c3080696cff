#pragma once
// --precision fp32|bf16, shared by every command that runs a model: the precision of the
// projections' GEMMs (include/vitscope/nn/kernel_level.hpp).

#include <string>

#include <CLI/CLI.hpp>

namespace vitscope::cli {

// Registers --precision on command, bound to precision, which starts at fp32.
void add_precision_option(CLI::App& command, std::string& precision);

// Makes every later GEMM run at `precision`; vitscope::Error("unsupported_precision") for bf16
// on a CPU without AVX-512 BF16.
void use_precision(const std::string& precision);

}  // namespace vitscope::cli
