#include "vitscope/image/position.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include <xtensor/xview.hpp>

#include "vitscope/error.hpp"

namespace vitscope::image {

namespace {

constexpr double kTwoPi = 6.283185307179586;
constexpr double kTemperature = 10000.0;
constexpr double kBicubicA = -0.75;  // PyTorch's cubic convolution constant

double cubic_near(double x) { return ((kBicubicA + 2) * x - (kBicubicA + 3)) * x * x + 1; }  // |x| <= 1
double cubic_far(double x) {  // 1 < |x| < 2
  return ((kBicubicA * x - 5 * kBicubicA) * x + 8 * kBicubicA) * x - 4 * kBicubicA;
}

// The source position of an output index, and the four tap weights around it (taps at
// floor - 1 .. floor + 2), as PyTorch's area_pixel_compute_source_index with cubic = true.
struct CubicTaps {
  long first;
  std::array<double, 4> weight;
};

// scale: input pixels per output pixel.
CubicTaps cubic_taps(std::size_t out_index, double scale) {
  const double real = scale * (static_cast<double>(out_index) + 0.5) - 0.5;
  const double floor = std::floor(real);
  const double t = real - floor;
  return {static_cast<long>(floor) - 1, {cubic_far(t + 1), cubic_near(t), cubic_near(1 - t), cubic_far(2 - t)}};
}

std::size_t clamp_index(long i, std::size_t size) {
  return static_cast<std::size_t>(std::clamp<long>(i, 0, static_cast<long>(size) - 1));
}

}  // namespace

Tensor4 position_embedding_sine(const xt::xtensor<bool, 3>& token_mask, std::size_t E) {
  if (E % 4 != 0) {
    throw Error("bad_options", "sine position embedding needs d_model divisible by 4, got " +
                                   std::to_string(E));
  }
  const std::size_t B = token_mask.shape(0), h = token_mask.shape(1), w = token_mask.shape(2);
  const std::size_t feats = E / 2;
  std::vector<double> dim_t(feats);
  for (std::size_t i = 0; i < feats; ++i) {
    dim_t[i] = std::pow(kTemperature, 2.0 * static_cast<double>(i / 2) / static_cast<double>(feats));
  }
  Tensor4 pos = Tensor4::from_shape({B, E, h, w});
  std::vector<double> y_embed(h * w), x_embed(h * w);
  for (std::size_t b = 0; b < B; ++b) {
    // Cumulative counts of real tokens down each column and along each row, normalised by the
    // last one so every image spans (0, 2π] whatever its padding.
    for (std::size_t i = 0; i < h; ++i) {
      for (std::size_t j = 0; j < w; ++j) {
        const double real = token_mask(b, i, j) ? 0.0 : 1.0;
        y_embed[i * w + j] = real + (i > 0 ? y_embed[(i - 1) * w + j] : 0.0);
        x_embed[i * w + j] = real + (j > 0 ? x_embed[i * w + j - 1] : 0.0);
      }
    }
    for (std::size_t s = 0; s < h * w; ++s) {
      const std::size_t i = s / w, j = s % w;
      const double y = y_embed[s] / (y_embed[(h - 1) * w + j] + 1e-6) * kTwoPi;
      const double x = x_embed[s] / (x_embed[i * w + w - 1] + 1e-6) * kTwoPi;
      // Channels [0, E/2) encode y, [E/2, E) encode x; even channels sin, odd channels cos.
      for (std::size_t c = 0; c < feats; ++c) {
        const double ay = y / dim_t[c], ax = x / dim_t[c];
        pos.data()[((b * E + c) * h * w) + s] = static_cast<float>(c % 2 ? std::cos(ay) : std::sin(ay));
        pos.data()[((b * E + feats + c) * h * w) + s] =
            static_cast<float>(c % 2 ? std::cos(ax) : std::sin(ax));
      }
    }
  }
  return pos;
}

Tensor3 interpolate_bicubic(const Tensor3& planes, std::size_t out_h, std::size_t out_w,
                            const std::array<double, 2>* scale_factor) {
  const std::size_t E = planes.shape(0), in_h = planes.shape(1), in_w = planes.shape(2);
  const double scale_h = scale_factor ? 1.0 / (*scale_factor)[0] : double(in_h) / double(out_h);
  const double scale_w = scale_factor ? 1.0 / (*scale_factor)[1] : double(in_w) / double(out_w);
  Tensor3 out = Tensor3::from_shape({E, out_h, out_w});
  for (std::size_t y = 0; y < out_h; ++y) {
    const CubicTaps ty = cubic_taps(y, scale_h);
    for (std::size_t x = 0; x < out_w; ++x) {
      const CubicTaps tx = cubic_taps(x, scale_w);
      for (std::size_t e = 0; e < E; ++e) {
        const float* plane = planes.data() + e * in_h * in_w;
        double value = 0.0;
        for (int r = 0; r < 4; ++r) {
          const float* row = plane + clamp_index(ty.first + r, in_h) * in_w;
          double row_value = 0.0;
          for (int k = 0; k < 4; ++k) row_value += tx.weight[k] * row[clamp_index(tx.first + k, in_w)];
          value += ty.weight[r] * row_value;
        }
        out(e, y, x) = static_cast<float>(value);
      }
    }
  }
  return out;
}

Tensor4 position_embedding_learned(const Tensor4& pos_embed, std::size_t h, std::size_t w,
                                   const std::vector<std::array<std::size_t, 2>>& grids,
                                   GridResize resize) {
  const std::size_t E = pos_embed.shape(1), gh = pos_embed.shape(2), gw = pos_embed.shape(3);
  const Tensor3 trained = xt::view(pos_embed, 0, xt::all(), xt::all(), xt::all());
  Tensor4 pos = xt::zeros<float>({grids.size(), E, h, w});
  for (std::size_t b = 0; b < grids.size(); ++b) {
    const auto [hb, wb] = grids[b];
    // DINO's 0.1 keeps floor(g * scale_factor) at the wanted size despite rounding.
    const std::array<double, 2> dino_scale = {(hb + 0.1) / gh, (wb + 0.1) / gw};
    const Tensor3 placed =
        (hb == gh && wb == gw)
            ? trained
            : interpolate_bicubic(trained, hb, wb, resize == GridResize::dino ? &dino_scale : nullptr);
    for (std::size_t e = 0; e < E; ++e) {
      for (std::size_t i = 0; i < hb; ++i) {
        std::copy_n(&placed(e, i, 0), wb, &pos(b, e, i, 0));
      }
    }
  }
  return pos;
}

}  // namespace vitscope::image
