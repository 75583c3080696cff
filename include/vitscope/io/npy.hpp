#pragma once
// NumPy .npy files (format 1.0/2.0/3.0), C order. Read: '<f4' and '|b1' (bool); write: '<f4'.

#include <string>
#include <vector>

#include "vitscope/nn/tensor.hpp"

namespace vitscope::io {

enum class NpyDType { Float32, Bool };

struct NpyArray {
  NpyDType dtype = NpyDType::Float32;
  Shape shape;
  std::vector<float> data;  // row-major; bool arrays hold 1.0f for true, 0.0f for false
};

// Throws vitscope::Error (codes npy_*) for unreadable, malformed, Fortran-order or other-dtype files.
NpyArray read_npy(const std::string& path);

// The same checks and result for a file's bytes already in memory; name starts error messages.
NpyArray parse_npy(const std::string& bytes, const std::string& name);

// Writes a float32 array atomically (temp file in the same folder, then rename).
void write_npy(const std::string& path, const float* data, const Shape& shape);

}  // namespace vitscope::io
