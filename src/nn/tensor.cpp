#include "vitscope/nn/tensor.hpp"

namespace vitscope {

std::string shape_to_string(const Shape& shape) {
  std::string out = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + ")";
}

}  // namespace vitscope
