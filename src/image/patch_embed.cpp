#include "vitscope/image/patch_embed.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "vitscope/error.hpp"
#include "vitscope/nn/linear.hpp"
#include "vitscope/nn/parallel.hpp"

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

namespace {

// A (B,H,W,C) channels-last activation: each step's im2col reads it in place.
struct ChannelsLast {
  std::vector<float> data;
  std::size_t B = 0, H = 0, W = 0, C = 0;
};

ChannelsLast to_channels_last(const Tensor4& x) {
  ChannelsLast out{std::vector<float>(x.size()), x.shape(0), x.shape(2), x.shape(3), x.shape(1)};
  for (std::size_t b = 0; b < out.B; ++b) {
    for (std::size_t c = 0; c < out.C; ++c) {
      for (std::size_t s = 0; s < out.H * out.W; ++s) {
        out.data[(b * out.H * out.W + s) * out.C + c] =
            x.data()[(b * out.C + c) * out.H * out.W + s];
      }
    }
  }
  return out;
}

Tensor4 to_channels_first(const ChannelsLast& x) {
  Tensor4 out = Tensor4::from_shape({x.B, x.C, x.H, x.W});
  for (std::size_t b = 0; b < x.B; ++b) {
    for (std::size_t s = 0; s < x.H * x.W; ++s) {
      for (std::size_t c = 0; c < x.C; ++c) {
        out.data()[(b * x.C + c) * x.H * x.W + s] = x.data[(b * x.H * x.W + s) * x.C + c];
      }
    }
  }
  return out;
}

// Conv2d(kernel 3, stride 2, padding 1) + ReLU as one GEMM: im2col rows laid out (c, ky, kx)
// like the kernel, zeros where the window leaves the input.
ChannelsLast stem_step(const ChannelsLast& x, const StemConv& conv) {
  const std::size_t Ho = x.H / 2, Wo = x.W / 2, K = x.C * 9, N = conv.weight.shape(0);
  std::vector<float> cols(x.B * Ho * Wo * K, 0.0f);
  // One output row (b, oy) per item: the copies are as much work as the GEMM for the first step.
  parallel_for(x.B * Ho, 8, [&](std::size_t begin, std::size_t end) {
    for (std::size_t item = begin; item < end; ++item) {
      const std::size_t b = item / Ho, oy = item % Ho;
      for (std::size_t ox = 0; ox < Wo; ++ox) {
        float* row = cols.data() + (item * Wo + ox) * K;
        for (std::size_t ky = 0; ky < 3; ++ky) {
          const std::size_t y = 2 * oy + ky;  // input row + 1: row -1 is the padding
          if (y == 0 || y > x.H) continue;
          for (std::size_t kx = 0; kx < 3; ++kx) {
            const std::size_t xx = 2 * ox + kx;
            if (xx == 0 || xx > x.W) continue;
            const float* pixel = x.data.data() + ((b * x.H + y - 1) * x.W + xx - 1) * x.C;
            for (std::size_t c = 0; c < x.C; ++c) row[c * 9 + ky * 3 + kx] = pixel[c];
          }
        }
      }
    }
  });
  ChannelsLast out{std::vector<float>(x.B * Ho * Wo * N), x.B, Ho, Wo, N};
  nn::linear_rows(cols.data(), x.B * Ho * Wo, K, conv.weight.data(), N, conv.bias.data(),
                  out.data.data());
  parallel_for(out.data.size(), 1 << 14, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) out.data[i] = std::max(out.data[i], 0.0f);
  });
  return out;
}

}  // namespace

Tensor4 conv_stem(const Tensor4& pixels, const std::vector<StemConv>& stem) {
  const std::size_t B = pixels.shape(0), C = pixels.shape(1), H = pixels.shape(2),
                    W = pixels.shape(3);
  const std::size_t step = std::size_t{1} << stem.size();
  std::size_t channels = C;
  for (const StemConv& conv : stem) {
    const auto& s = conv.weight.shape();
    if (s[1] != channels || s[2] != 3 || s[3] != 3 || conv.bias.size() != s[0]) {
      throw Error("shape_mismatch", "conv_stem: a " + shape_to_string(Shape(s.begin(), s.end())) +
                                        " step does not follow " + std::to_string(channels) +
                                        " channels");
    }
    channels = s[0];
  }
  if (H % step != 0 || W % step != 0) {
    throw Error("shape_mismatch", "conv_stem: pixels " + shape_to_string({B, C, H, W}) +
                                      " are not multiples of " + std::to_string(step));
  }
  ChannelsLast x = to_channels_last(pixels);
  for (const StemConv& conv : stem) x = stem_step(x, conv);
  return to_channels_first(x);
}

Tensor4 PatchEmbed::forward(const Tensor4& pixels) const {
  if (stem.empty()) return patch_embed(pixels, proj.weight, proj.bias);
  return patch_embed(conv_stem(pixels, stem), proj.weight, proj.bias);
}

}  // namespace vitscope::image
