#pragma once
// Tensor aliases used across vitscope: fixed-rank, row-major float tensors.

#include <cstddef>
#include <string>
#include <vector>

#include <xtensor/xtensor.hpp>

namespace vitscope {

using Tensor1 = xt::xtensor<float, 1>;
using Tensor2 = xt::xtensor<float, 2>;
using Tensor3 = xt::xtensor<float, 3>;
using Tensor4 = xt::xtensor<float, 4>;

using Shape = std::vector<std::size_t>;

// "(2, 3, 4)": for error messages.
std::string shape_to_string(const Shape& shape);

// A tensor under its state_dict name, as model files store it (io::read_safetensors returns
// these, F16 and BF16 widened to float32).
struct NamedTensor {
  std::string name;
  Shape shape;
  std::vector<float> data;  // row-major, product(shape) values
};

}  // namespace vitscope
