#pragma once
// .npy arrays as the tensors and masks the nn modules take, with the array's name in errors.

#include <string>

#include "vitscope/io/npy.hpp"
#include "vitscope/nn/masks.hpp"
#include "vitscope/nn/tensor.hpp"

namespace vitscope::io {

// A float32 array of rank 3; throws vitscope::Error("bad_input") otherwise.
Tensor3 to_tensor3(const NpyArray& array, const std::string& name);
Tensor4 to_tensor4(const NpyArray& array, const std::string& name);

// A float (added) or bool (true = masked) array of rank 2 (L,S) or 3 (N*nhead,L,S).
nn::AttnMask to_attn_mask(const NpyArray& array, const std::string& name);
// A float or bool array of rank 2 (N,S).
nn::KeyPaddingMask to_key_padding_mask(const NpyArray& array, const std::string& name);

// Reads path and converts; `name` is the option or input it came from.
Tensor3 read_tensor3(const std::string& path, const std::string& name);
nn::AttnMask read_attn_mask(const std::string& path, const std::string& name);
nn::KeyPaddingMask read_key_padding_mask(const std::string& path, const std::string& name);

template <class Tensor>
void write_npy(const std::string& path, const Tensor& tensor) {
  write_npy(path, tensor.data(), Shape(tensor.shape().begin(), tensor.shape().end()));
}

}  // namespace vitscope::io
