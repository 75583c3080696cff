// vitscope::io::parse_npy on arbitrary bytes: it returns an array consistent with its shape or
// throws vitscope::Error with a named code, and never reads out of bounds.

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "vitscope/io/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace vitscope::fuzz;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const vitscope::io::NpyArray array = vitscope::io::parse_npy(bytes, kName);
    std::uint64_t count = 1;
    for (const std::size_t d : array.shape) count *= d;  // cannot wrap: the parser checked it
    require(array.data.size() == count, "array data does not match its shape");
    require(count <= size, "more values than the input has bytes");
    if (array.dtype == vitscope::io::NpyDType::Bool)
      for (const float v : array.data) require(v == 0.0f || v == 1.0f, "bool value not 0 or 1");
  } catch (const vitscope::Error& e) {
    check_error(e, "npy_io_error");
  }
  return 0;
}
