#include "precision.hpp"

#include "vitscope/nn/kernel_level.hpp"

namespace vitscope::cli {

void add_precision_option(CLI::App& command, std::string& precision) {
  precision = "fp32";
  command
      .add_option("--precision", precision,
                  "the projections' GEMMs: fp32 (exact) or bf16 (inputs and weights rounded to "
                  "bfloat16, fp32 accumulation; CPUs with AVX-512 BF16)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16"}));
}

void use_precision(const std::string& precision) {
  set_precision(precision == "bf16" ? Precision::bf16 : Precision::fp32);
}

}  // namespace vitscope::cli
