// vitscope::io::parse_safetensors on arbitrary bytes: it returns tensors consistent with their
// shapes or throws vitscope::Error with a named code, and never reads out of bounds.

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "vitscope/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace vitscope::fuzz;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const vitscope::io::SafetensorsFile file = vitscope::io::parse_safetensors(bytes, kName);
    std::uint64_t values = 0;
    for (const auto& tensor : file.tensors) {
      std::uint64_t count = 1;
      for (const std::size_t d : tensor.shape) count *= d;  // cannot wrap: the parser checked it
      require(tensor.data.size() == count, "tensor data does not match its shape", tensor.name);
      values += count;
    }
    // Every value comes from at least 2 bytes of the input (F16/BF16) or 4 (F32).
    require(values * 2 <= size, "more values than the input has bytes for");
  } catch (const vitscope::Error& e) {
    check_error(e, "io_error");
  }
  return 0;
}
