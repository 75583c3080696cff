#include "vitscope/image/position.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <xtensor/xview.hpp>

#include "vitscope/error.hpp"

namespace vitscope::image {

namespace {

constexpr double kTwoPi = 6.283185307179586;
constexpr double kTemperature = 10000.0;
constexpr double kBicubicA = -0.75;    // PyTorch's cubic convolution constant
constexpr double kAntialiasA = -0.5;   // its antialiased bicubic's (Keys' value, as PIL's)

// Keys' cubic convolution kernel with constant a, at distance x.
double cubic_kernel(double x, double a) {
  x = std::fabs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

// The input indices and weights one output index reads along one axis.
struct Taps {
  std::vector<std::size_t> index;
  std::vector<double> weight;
};

// upsample_bicubic2d: four taps around (o + 0.5) * scale - 0.5, indices clamped to the input
// (area_pixel_compute_source_index with cubic = true). scale: input pixels per output pixel.
Taps cubic_taps(std::size_t out_index, std::size_t in_size, double scale) {
  const double real = scale * (static_cast<double>(out_index) + 0.5) - 0.5;
  const double floor = std::floor(real);
  Taps taps;
  for (long k = -1; k <= 2; ++k) {
    const long i = static_cast<long>(floor) + k;
    taps.index.push_back(static_cast<std::size_t>(std::clamp<long>(i, 0, static_cast<long>(in_size) - 1)));
    taps.weight.push_back(cubic_kernel(real - static_cast<double>(i), kBicubicA));
  }
  return taps;
}

// _upsample_bicubic2d_aa (antialias = True): the kernel stretched by the scale when shrinking,
// its taps cut at the input's edges and renormalised (PyTorch's _compute_weights_aa).
Taps antialias_taps(std::size_t out_index, std::size_t in_size, double scale) {
  const double support = 2.0 * std::max(scale, 1.0);
  const double stretch = scale >= 1.0 ? 1.0 / scale : 1.0;
  const double centre = scale * (static_cast<double>(out_index) + 0.5);
  const long first = std::max(static_cast<long>(centre - support + 0.5), 0L);
  const long end = std::min(static_cast<long>(centre + support + 0.5), static_cast<long>(in_size));
  Taps taps;
  double total = 0;
  for (long i = first; i < end; ++i) {
    taps.index.push_back(static_cast<std::size_t>(i));
    taps.weight.push_back(cubic_kernel((static_cast<double>(i) - centre + 0.5) * stretch, kAntialiasA));
    total += taps.weight.back();
  }
  if (total != 0) {
    for (double& w : taps.weight) w /= total;
  }
  return taps;
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

const char* grid_resize_name(GridResize resize) {
  switch (resize) {
    case GridResize::size: return "size";
    case GridResize::dino: return "dino";
    case GridResize::size_antialias: return "size-antialias";
  }
  return "size";
}

Tensor3 interpolate_bicubic(const Tensor3& planes, std::size_t out_h, std::size_t out_w,
                            BicubicKind kind, const std::array<double, 2>* scale_factor) {
  const std::size_t E = planes.shape(0), in_h = planes.shape(1), in_w = planes.shape(2);
  const double scale_h = scale_factor ? 1.0 / (*scale_factor)[0] : double(in_h) / double(out_h);
  const double scale_w = scale_factor ? 1.0 / (*scale_factor)[1] : double(in_w) / double(out_w);
  const auto taps = kind == BicubicKind::antialias ? antialias_taps : cubic_taps;
  std::vector<Taps> rows, cols;
  for (std::size_t y = 0; y < out_h; ++y) rows.push_back(taps(y, in_h, scale_h));
  for (std::size_t x = 0; x < out_w; ++x) cols.push_back(taps(x, in_w, scale_w));
  // Separable: along each row first, then down each column.
  std::vector<double> along_rows(in_h * out_w);
  Tensor3 out = Tensor3::from_shape({E, out_h, out_w});
  for (std::size_t e = 0; e < E; ++e) {
    const float* plane = planes.data() + e * in_h * in_w;
    for (std::size_t i = 0; i < in_h; ++i) {
      for (std::size_t x = 0; x < out_w; ++x) {
        double value = 0;
        for (std::size_t k = 0; k < cols[x].index.size(); ++k) value += cols[x].weight[k] * plane[i * in_w + cols[x].index[k]];
        along_rows[i * out_w + x] = value;
      }
    }
    for (std::size_t y = 0; y < out_h; ++y) {
      for (std::size_t x = 0; x < out_w; ++x) {
        double value = 0;
        for (std::size_t k = 0; k < rows[y].index.size(); ++k) value += rows[y].weight[k] * along_rows[rows[y].index[k] * out_w + x];
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
    const BicubicKind kind = resize == GridResize::size_antialias ? BicubicKind::antialias : BicubicKind::plain;
    const Tensor3 placed =
        (hb == gh && wb == gw)
            ? trained
            : interpolate_bicubic(trained, hb, wb, kind, resize == GridResize::dino ? &dino_scale : nullptr);
    for (std::size_t e = 0; e < E; ++e) {
      for (std::size_t i = 0; i < hb; ++i) {
        std::copy_n(&placed(e, i, 0), wb, &pos(b, e, i, 0));
      }
    }
  }
  return pos;
}

}  // namespace vitscope::image
