#include "vitscope/io/npy_tensors.hpp"

#include "vitscope/error.hpp"

namespace vitscope::io {

namespace {

void require(bool ok, const NpyArray& array, const std::string& name, const std::string& wanted) {
  if (ok) return;
  throw Error("bad_input", name + ": expected " + wanted + ", got " +
                               (array.dtype == NpyDType::Bool ? "bool " : "float32 ") +
                               shape_to_string(array.shape));
}

template <class Tensor>
Tensor from_array(const NpyArray& array) {
  typename Tensor::shape_type shape;
  std::copy(array.shape.begin(), array.shape.end(), shape.begin());
  Tensor tensor = Tensor::from_shape(shape);
  std::copy(array.data.begin(), array.data.end(), tensor.begin());
  return tensor;
}

}  // namespace

Tensor3 to_tensor3(const NpyArray& array, const std::string& name) {
  require(array.dtype == NpyDType::Float32 && array.shape.size() == 3, array, name,
          "a float32 array of rank 3");
  return from_array<Tensor3>(array);
}

Tensor4 to_tensor4(const NpyArray& array, const std::string& name) {
  require(array.dtype == NpyDType::Float32 && array.shape.size() == 4, array, name,
          "a float32 array of rank 4");
  return from_array<Tensor4>(array);
}

Tensor3 read_tensor3(const std::string& path, const std::string& name) {
  return to_tensor3(read_npy(path), name);
}

}  // namespace vitscope::io
