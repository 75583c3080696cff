#pragma once
// safetensors files: 8-byte little-endian header length N, N bytes of JSON header
// ({name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__": {string: string}}), then the data.
// Reading validates the whole file before allocating tensor storage; every failure is a
// vitscope::Error whose code names it (see docs in src/io/safetensors.cpp and tests/test_safetensors.cpp).

#include <map>
#include <string>
#include <vector>

#include "vitscope/nn/tensor.hpp"

namespace vitscope::io {

// The tensors of a file are nn's NamedTensor (nn/tensor.hpp), converted to float32.
using vitscope::NamedTensor;

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;  // "__metadata__"
  std::vector<NamedTensor> tensors;             // sorted by data offset (file order)
};

// Throws vitscope::Error on an unreadable or malformed file.
SafetensorsFile read_safetensors(const std::string& path);

// The same checks and result for a file's bytes already in memory; name starts error messages.
SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& name);

// Writes F32 tensors (in the given order) and string metadata atomically: a temp file in the same
// folder, then rename. Throws vitscope::Error if it cannot write.
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata);

}  // namespace vitscope::io
