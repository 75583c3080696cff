#pragma once
// .npy arrays as the tensors the nn modules take, with the array's name in errors (masks: see
// nn::to_attn_mask and nn::to_key_padding_mask, which take an array's shape, values and dtype).

#include <string>

#include "vitscope/io/npy.hpp"
#include "vitscope/nn/tensor.hpp"

namespace vitscope::io {

// A float32 array of rank 3; throws vitscope::Error("bad_input") otherwise.
Tensor3 to_tensor3(const NpyArray& array, const std::string& name);
Tensor4 to_tensor4(const NpyArray& array, const std::string& name);

// Reads path and converts; `name` is the option or input it came from.
Tensor3 read_tensor3(const std::string& path, const std::string& name);

template <class Tensor>
void write_npy(const std::string& path, const Tensor& tensor) {
  write_npy(path, tensor.data(), Shape(tensor.shape().begin(), tensor.shape().end()));
}

}  // namespace vitscope::io
