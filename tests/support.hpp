#pragma once
// Shared by the tests: fixture paths and the one way results are compared with PyTorch's.

#include <cmath>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "vitscope/error.hpp"
#include "vitscope/io/npy.hpp"

namespace vitscope::test {

inline std::string fixture_path(const std::string& case_name, const std::string& file) {
  return std::string(VITSCOPE_FIXTURES_DIR) + "/" + case_name + "/" + file;
}

inline nlohmann::json read_case(const std::string& case_name) {
  std::ifstream in(fixture_path(case_name, "case.json"));
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

// Largest |actual - expected|; NaN or a different element count counts as infinite.
inline double worst_error(const float* actual, std::size_t actual_size,
                          const std::vector<float>& expected) {
  if (actual_size != expected.size()) return INFINITY;
  double worst = 0.0;
  for (std::size_t i = 0; i < actual_size; ++i) {
    const double d = std::fabs(double(actual[i]) - double(expected[i]));
    if (std::isnan(d)) return INFINITY;
    worst = std::max(worst, d);
  }
  return worst;
}

// Checks a result against a PyTorch fixture array within tolerance, printing the worst error.
template <class Tensor>
void require_close(const std::string& what, const Tensor& actual, const io::NpyArray& expected,
                   double tolerance) {
  const double worst = worst_error(actual.data(), actual.size(), expected.data);
  std::cout << what << ": worst abs error " << worst << " (tolerance " << tolerance << ")\n";
  INFO(what << ": worst abs error " << worst << ", tolerance " << tolerance);
  REQUIRE(worst <= tolerance);
}

}  // namespace vitscope::test
