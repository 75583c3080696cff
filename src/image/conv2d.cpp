#include "conv2d.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "vitscope/nn/linear.hpp"
#include "vitscope/nn/parallel.hpp"

namespace vitscope::image::conv {

namespace {

constexpr float kBatchNormEps = 1e-5f;   // BatchNorm2d's and FrozenBatchNorm2d's eps
constexpr std::size_t kElementGrain = 1 << 14;

void relu_in_place(std::vector<float>& x) {
  parallel_for(x.size(), kElementGrain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) x[i] = std::max(x[i], 0.0f);
  });
}

// Input coordinate of kernel tap t at output position o, or -1 in the padding.
long tap(std::size_t o, std::size_t t, const FoldedConv2d& conv, std::size_t size) {
  const long at = static_cast<long>(o * conv.stride + t * conv.dilation) - static_cast<long>(conv.padding);
  return at >= 0 && at < static_cast<long>(size) ? at : -1;
}

// x (B,H,W,C) -> cols (B*Ho*Wo, k*k*C): one row per output pixel laid out (ky, kx, c) like the
// folded weight, so each tap is one contiguous copy of C floats; zeros in the padding.
void im2col(const ChannelsLast& x, const FoldedConv2d& conv, std::size_t Ho, std::size_t Wo,
            float* cols) {
  const std::size_t k = conv.kernel_size, C = x.C, K = k * k * C;
  parallel_for(x.B * Ho, 4, [&](std::size_t begin, std::size_t end) {
    for (std::size_t item = begin; item < end; ++item) {
      const std::size_t b = item / Ho, oy = item % Ho;
      for (std::size_t ox = 0; ox < Wo; ++ox) {
        float* row = cols + (item * Wo + ox) * K;
        for (std::size_t ky = 0; ky < k; ++ky) {
          const long y = tap(oy, ky, conv, x.H);
          for (std::size_t kx = 0; kx < k; ++kx) {
            float* dst = row + (ky * k + kx) * C;
            const long xx = y < 0 ? -1 : tap(ox, kx, conv, x.W);
            if (xx < 0) {
              std::fill(dst, dst + C, 0.0f);
            } else {
              const float* pixel = x.data.data() + ((b * x.H + y) * x.W + xx) * C;
              std::copy(pixel, pixel + C, dst);
            }
          }
        }
      }
    }
  });
}

}  // namespace

ChannelsLast to_channels_last(const Tensor4& x) {
  ChannelsLast out{std::vector<float>(x.size()), x.shape(0), x.shape(2), x.shape(3), x.shape(1)};
  const std::size_t S = out.H * out.W;
  parallel_for(out.B * S, 1024, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      const std::size_t b = i / S, s = i % S;
      for (std::size_t c = 0; c < out.C; ++c) out.data[i * out.C + c] = x.data()[(b * out.C + c) * S + s];
    }
  });
  return out;
}

Tensor4 to_channels_first(const ChannelsLast& x) {
  Tensor4 out = Tensor4::from_shape({x.B, x.C, x.H, x.W});
  const std::size_t S = x.H * x.W;
  parallel_for(x.B * x.C, 16, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      const std::size_t b = i / x.C, c = i % x.C;
      for (std::size_t s = 0; s < S; ++s) out.data()[i * S + s] = x.data[(b * S + s) * x.C + c];
    }
  });
  return out;
}

std::size_t output_size(std::size_t size, std::size_t kernel, std::size_t stride,
                        std::size_t padding, std::size_t dilation) {
  const long span = static_cast<long>(size + 2 * padding) - static_cast<long>(dilation * (kernel - 1)) - 1;
  return span < 0 ? 0 : static_cast<std::size_t>(span) / stride + 1;
}

FoldedConv2d fold_batch_norm(const std::vector<float>& conv_weight, const std::vector<float>& gamma,
                             const std::vector<float>& beta, const std::vector<float>& mean,
                             const std::vector<float>& var, FoldedConv2d conv) {
  const std::size_t O = conv.out_channels, C = conv.in_channels, kk = conv.kernel_size * conv.kernel_size;
  conv.weight.resize(O * kk * C);
  conv.bias.resize(O);
  for (std::size_t o = 0; o < O; ++o) {
    // FrozenBatchNorm2d.forward: scale = w * (rv + eps).rsqrt(); bias = b - rm * scale.
    const float scale = gamma[o] * (1.0f / std::sqrt(var[o] + kBatchNormEps));
    conv.bias[o] = beta[o] - mean[o] * scale;
    // (O,C,ky,kx) -> (O,ky,kx,C), scaled.
    for (std::size_t c = 0; c < C; ++c) {
      for (std::size_t t = 0; t < kk; ++t) {
        conv.weight[(o * kk + t) * C + c] = conv_weight[(o * C + c) * kk + t] * scale;
      }
    }
  }
  return conv;
}

ChannelsLast conv2d(const ChannelsLast& x, const FoldedConv2d& conv, bool relu) {
  const std::size_t Ho = output_size(x.H, conv.kernel_size, conv.stride, conv.padding, conv.dilation);
  const std::size_t Wo = output_size(x.W, conv.kernel_size, conv.stride, conv.padding, conv.dilation);
  const std::size_t rows = x.B * Ho * Wo, K = conv.kernel_size * conv.kernel_size * x.C;
  ChannelsLast out{std::vector<float>(rows * conv.out_channels), x.B, Ho, Wo, conv.out_channels};

  // (rows, K) · weight (out, K)^T + bias: a 1x1 stride-1 conv reads x's rows as they are.
  if (conv.kernel_size == 1 && conv.stride == 1 && conv.padding == 0) {
    nn::linear_rows(x.data.data(), rows, K, conv.weight.data(), conv.out_channels,
                    conv.bias.data(), out.data.data());
  } else {
    // Kept between calls: a fresh 100+ MB buffer per conv costs more in page faults than im2col
    // itself (measured, bench/README.md). Every entry is written by im2col.
    thread_local std::vector<float> cols;
    if (cols.size() < rows * K) cols.resize(rows * K);
    im2col(x, conv, Ho, Wo, cols.data());
    nn::linear_rows(cols.data(), rows, K, conv.weight.data(), conv.out_channels, conv.bias.data(),
                    out.data.data());
  }
  if (relu) relu_in_place(out.data);
  return out;
}

ChannelsLast max_pool_3x3_s2(const ChannelsLast& x) {
  const std::size_t Ho = output_size(x.H, 3, 2, 1, 1), Wo = output_size(x.W, 3, 2, 1, 1), C = x.C;
  ChannelsLast out{std::vector<float>(x.B * Ho * Wo * C), x.B, Ho, Wo, C};
  const FoldedConv2d window{C, C, 3, 2, 1, 1, {}, {}};
  parallel_for(x.B * Ho, 4, [&](std::size_t begin, std::size_t end) {
    for (std::size_t item = begin; item < end; ++item) {
      const std::size_t b = item / Ho, oy = item % Ho;
      for (std::size_t ox = 0; ox < Wo; ++ox) {
        float* dst = out.data.data() + (item * Wo + ox) * C;
        std::fill(dst, dst + C, -std::numeric_limits<float>::infinity());
        for (std::size_t ky = 0; ky < 3; ++ky) {
          const long y = tap(oy, ky, window, x.H);
          for (std::size_t kx = 0; kx < 3 && y >= 0; ++kx) {
            const long xx = tap(ox, kx, window, x.W);
            if (xx < 0) continue;
            const float* pixel = x.data.data() + ((b * x.H + y) * x.W + xx) * C;
            for (std::size_t c = 0; c < C; ++c) dst[c] = std::max(dst[c], pixel[c]);
          }
        }
      }
    }
  });
  return out;
}

void add_relu(ChannelsLast& out, const ChannelsLast& identity) {
  parallel_for(out.data.size(), kElementGrain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      out.data[i] = std::max(out.data[i] + identity.data[i], 0.0f);
    }
  });
}

}  // namespace vitscope::image::conv
