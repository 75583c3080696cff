#pragma once
// Whether this test process checks parity in bf16: VITSCOPE_TEST_PRECISION=bf16, set by ctest's
// *_parity_bf16 entries (main.cpp sets the precision, support.hpp's require_close the bound).

#include <cstdlib>
#include <string>

namespace vitscope::test {

inline bool bf16_parity() {
  const char* precision = std::getenv("VITSCOPE_TEST_PRECISION");
  return precision != nullptr && std::string(precision) == "bf16";
}

}  // namespace vitscope::test
