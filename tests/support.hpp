#pragma once
// Shared by the tests: fixture paths and the one way results are compared with PyTorch's.

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "test_precision.hpp"
#include "vitscope/error.hpp"
#include "vitscope/io/npy.hpp"

namespace vitscope::test {

inline std::string fixture_path(const std::string& case_name, const std::string& file) {
  return std::string(VITSCOPE_FIXTURES_DIR) + "/" + case_name + "/" + file;
}

// A fresh, uniquely named directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "vitscope_test_XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // Where name goes inside the directory; creates nothing.
  std::string file(const std::string& name) const { return (path_ / name).string(); }

  // Writes bytes verbatim to name inside the directory and returns its path.
  std::string write(const std::string& name, const std::string& bytes) const {
    const std::string path = file(name);
    std::ofstream(path, std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path;
  }

 private:
  std::filesystem::path path_;
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The code of the vitscope::Error that f throws, or "no error" when it returns normally.
template <class F>
std::string error_code(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return "no error";
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

// The bf16 bound: the worst absolute error within this share of the expected array's largest
// magnitude (at least 1). Each GEMM operand is rounded to 8 significant bits.
constexpr double kBf16Relative = 0.05;

// Checks a result against a PyTorch fixture array within tolerance (the bf16 bound in a bf16
// parity run), printing the worst error.
template <class Tensor>
void require_close(const std::string& what, const Tensor& actual, const io::NpyArray& expected,
                   double tolerance) {
  if (bf16_parity()) {
    double largest = 1.0;
    for (float v : expected.data) largest = std::max(largest, double(std::fabs(v)));
    tolerance = kBf16Relative * largest;
  }
  const double worst = worst_error(actual.data(), actual.size(), expected.data);
  std::cout << what << ": worst abs error " << worst << " (tolerance " << tolerance << ")\n";
  INFO(what << ": worst abs error " << worst << ", tolerance " << tolerance);
  REQUIRE(worst <= tolerance);
}

}  // namespace vitscope::test
