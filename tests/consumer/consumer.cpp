// Uses the installed package as a user would: loads a model file (io), runs its forward (nn) on
// a feature map turned into a sequence (image). Exit 0 only when the output is what it must be.
// Usage: consumer MODEL.safetensors (assets/models/tiny.safetensors: d_model 64)

#include <cmath>
#include <cstddef>
#include <iostream>

#include <xtensor/xtensor.hpp>

#include "vitscope/error.hpp"
#include "vitscope/image/sequence.hpp"
#include "vitscope/io/model_file.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: consumer MODEL.safetensors\n";
    return 2;
  }
  try {
    const vitscope::TransformerFile file = vitscope::load_transformer(argv[1]);
    const std::size_t E = static_cast<std::size_t>(file.model.options.d_model);
    const std::size_t h = 2, w = 3;

    // A (1,E,h,w) feature map of small distinct values, as a patch embedding would give.
    vitscope::Tensor4 features = vitscope::Tensor4::from_shape({1, E, h, w});
    for (std::size_t i = 0; i < features.size(); ++i) {
      features.data()[i] = std::sin(0.1f * static_cast<float>(i));
    }
    const vitscope::Tensor3 src = vitscope::image::to_sequence(features);  // (h*w,1,E)
    const vitscope::Tensor3 out = file.model.forward(src, src);

    if (out.shape(0) != h * w || out.shape(1) != 1 || out.shape(2) != E) {
      std::cerr << "consumer: output shape (" << out.shape(0) << ", " << out.shape(1) << ", "
                << out.shape(2) << "), expected (" << h * w << ", 1, " << E << ")\n";
      return 1;
    }
    for (float v : out) {
      if (!std::isfinite(v)) {
        std::cerr << "consumer: non-finite output value " << v << "\n";
        return 1;
      }
    }
    std::cout << "consumer: forward of " << argv[1] << " gave (" << h * w << ", 1, " << E
              << "), all finite\n";
    return 0;
  } catch (const vitscope::Error& e) {
    std::cerr << "consumer: " << e.what() << "\n";
    return 1;
  }
}
