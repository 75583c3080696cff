#include "vitscope/image/patch_embed.hpp"

#include "vitscope/error.hpp"
#include "vitscope/nn/linear.hpp"

namespace vitscope::image {

Tensor4 patch_embed(const Tensor4& pixels, const Tensor4& weight, const Tensor1& bias) {
  const std::size_t B = pixels.shape(0), C = pixels.shape(1), H = pixels.shape(2), W = pixels.shape(3);
  const std::size_t E = weight.shape(0), p = weight.shape(2);
  if (weight.shape(1) != C || H % p != 0 || W % p != 0) {
    throw Error("shape_mismatch", "patch_embed: pixels " + shape_to_string({B, C, H, W}) +
                                      " do not fit a (" + std::to_string(E) + ", " +
                                      std::to_string(weight.shape(1)) + ", p, p) kernel with p = " +
                                      std::to_string(p));
  }
  const std::size_t h = H / p, w = W / p, S = h * w, K = C * p * p;

  // im2col: one row per patch, laid out (c, ky, kx) like the kernel, so the convolution is one GEMM.
  Tensor2 patches = Tensor2::from_shape({B * S, K});
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t i = 0; i < h; ++i) {
      for (std::size_t j = 0; j < w; ++j) {
        float* row = patches.data() + ((b * h + i) * w + j) * K;
        for (std::size_t c = 0; c < C; ++c) {
          for (std::size_t ky = 0; ky < p; ++ky) {
            const float* src = pixels.data() + ((b * C + c) * H + i * p + ky) * W + j * p;
            std::copy(src, src + p, row + (c * p + ky) * p);
          }
        }
      }
    }
  }
  // (B*S, K) · (E, K)^T + bias -> (B, S, E), then channels first: (B, E, h, w).
  Tensor3 embedded = Tensor3::from_shape({B, S, E});
  nn::linear_rows(patches.data(), B * S, K, weight.data(), E, bias.data(), embedded.data());
  Tensor4 tokens = Tensor4::from_shape({B, E, h, w});
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t s = 0; s < S; ++s) {
      for (std::size_t e = 0; e < E; ++e) {
        tokens.data()[(b * E + e) * S + s] = embedded.data()[(b * S + s) * E + e];
      }
    }
  }
  return tokens;
}

}  // namespace vitscope::image
