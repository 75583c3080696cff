// Catch2's main. With VITSCOPE_TEST_PRECISION=bf16 (ctest's *_parity_bf16 entries) the process
// runs every GEMM in bf16 and the parity checks use the bf16 bound (support.hpp); on a CPU
// without AVX-512 BF16 it exits 77, which ctest reports as skipped.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <iostream>

#include "test_precision.hpp"
#include "vitscope/nn/kernel_level.hpp"

int main(int argc, char* argv[]) {
  if (vitscope::test::bf16_parity()) {
    if (!vitscope::bf16_supported()) {
      std::cout << "bf16 not supported on this CPU (kernels: " << vitscope::kernel_level()
                << "): skipped\n";
      return 77;
    }
    vitscope::set_precision(vitscope::Precision::bf16);
  }
  return Catch::Session().run(argc, argv);
}
