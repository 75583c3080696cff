#include "vitscope/image/views.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <numeric>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "drawing.hpp"
#include "vitscope/error.hpp"

namespace vitscope::image {

namespace {

using namespace drawing;

constexpr int kGap = 2;
// A component whose variance is below this share of the first one's is numerical noise; stretched
// to 0..255 it would look like structure.
constexpr double kMinVarianceRatio = 1e-8;

void require_view_inputs(const Tensor3& tokens, const cv::Mat& image) {
  if (tokens.size() == 0) throw Error("bad_view_input", "an empty token map has nothing to show");
  if (image.empty() || image.type() != CV_32FC3) {
    throw Error("bad_view_input", "views draw over a CV_32FC3 RGB image");
  }
}

int rows_of(const Tensor3& t) { return static_cast<int>(t.shape(1)); }
int cols_of(const Tensor3& t) { return static_cast<int>(t.shape(2)); }

// Plane c of a (C,h,w) tensor, without a copy; valid while t lives.
cv::Mat plane(const Tensor3& t, std::size_t c) {
  const std::size_t size = t.shape(1) * t.shape(2);
  return cv::Mat(rows_of(t), cols_of(t), CV_32F, const_cast<float*>(t.data()) + c * size);
}

// A few extreme tokens would otherwise squeeze every other one into a narrow band of colour.
cv::Mat stretch_percentiles(const cv::Mat& values) {
  std::vector<float> sorted(values.begin<float>(), values.end<float>());
  std::sort(sorted.begin(), sorted.end());
  const double last = static_cast<double>(sorted.size() - 1);
  const float lo = sorted[static_cast<std::size_t>(std::lround(0.01 * last))];
  const float hi = sorted[static_cast<std::size_t>(std::lround(0.99 * last))];
  return hi > lo ? stretch(values, lo, hi) : stretch_min_max(values);
}

// (E,h,w) -> (h*w, E) in double: one row per token.
cv::Mat token_rows(const Tensor3& features) {
  const cv::Mat by_channel(static_cast<int>(features.shape(0)),
                           rows_of(features) * cols_of(features), CV_32F,
                           const_cast<float*>(features.data()));
  cv::Mat rows;
  cv::Mat(by_channel.t()).convertTo(rows, CV_64F);
  return rows;
}

// The three components (h,w) CV_32F, each with its largest-magnitude loading made positive so
// that the colours do not flip between runs or images; zero when a component has no variance.
std::array<cv::Mat, 3> principal_components(const Tensor3& features) {
  const cv::Mat tokens = token_rows(features);
  // cv::PCA works on the smaller of the E×E and token×token covariances.
  const cv::PCA pca(tokens, cv::noArray(), cv::PCA::DATA_AS_ROW, 3);
  const cv::Mat projected = pca.project(tokens);
  std::array<cv::Mat, 3> components;
  for (int k = 0; k < 3; ++k) {
    cv::Mat component = cv::Mat::zeros(rows_of(features), cols_of(features), CV_32F);
    const bool has_variance =
        k < pca.eigenvalues.rows &&
        pca.eigenvalues.at<double>(k) > kMinVarianceRatio * pca.eigenvalues.at<double>(0);
    if (has_variance) {
      const cv::Mat loading = pca.eigenvectors.row(k);
      cv::Point largest;
      cv::minMaxLoc(cv::abs(loading), nullptr, nullptr, nullptr, &largest);
      const double sign = loading.at<double>(largest) < 0 ? -1.0 : 1.0;
      projected.col(k).clone().reshape(1, component.rows).convertTo(component, CV_32F, sign);
    }
    components[static_cast<std::size_t>(k)] = component;
  }
  return components;
}

std::string class_name(const std::vector<std::string>& names, std::size_t k) {
  return k < names.size() ? names[k] : "class " + std::to_string(k);
}

bool is_background(const std::vector<std::string>& names, std::size_t k) {
  if (k != 0 || names.empty()) return false;
  std::string name = names[0];
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name == "background";
}

// (h,w) CV_32S: each token's highest-scoring class, the first on ties.
cv::Mat argmax_classes(const Tensor3& logits) {
  cv::Mat classes = cv::Mat::zeros(rows_of(logits), cols_of(logits), CV_32S);
  cv::Mat best = plane(logits, 0).clone();
  for (std::size_t k = 1; k < logits.shape(0); ++k) {
    const cv::Mat better = plane(logits, k) > best;
    plane(logits, k).copyTo(best, better);
    classes.setTo(static_cast<int>(k), better);
  }
  return classes;
}

// Name and colour of each listed class, one row each, on a dark box in the top-left corner.
void draw_legend(cv::Mat& bgr, const std::vector<std::size_t>& classes,
                 const std::vector<std::string>& names) {
  const int font = cv::FONT_HERSHEY_SIMPLEX;
  const double scale = std::clamp(std::min(bgr.rows, bgr.cols) / 800.0, 0.35, 1.0);
  int baseline = 0;
  const int text_height = cv::getTextSize("Ag", font, scale, 1, &baseline).height;
  const int row = text_height + baseline + 4;
  const int pad = 4;
  int width = 0;
  for (std::size_t k : classes) {
    width = std::max(width, cv::getTextSize(class_name(names, k), font, scale, 1, &baseline).width);
  }
  const int swatch = text_height;
  cv::rectangle(
      bgr, cv::Rect(0, 0, width + swatch + 3 * pad, static_cast<int>(classes.size()) * row + pad),
      cv::Scalar(0, 0, 0), cv::FILLED);
  for (std::size_t i = 0; i < classes.size(); ++i) {
    const int top = pad + static_cast<int>(i) * row;
    const cv::Vec3b c = class_colour(classes[i]);
    cv::rectangle(bgr, cv::Rect(pad, top, swatch, swatch), cv::Scalar(c[0], c[1], c[2]),
                  cv::FILLED);
    cv::putText(bgr, class_name(names, classes[i]), cv::Point(2 * pad + swatch, top + text_height),
                font, scale, cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  }
}

}  // namespace

cv::Mat pca_view(const Tensor3& features, const cv::Mat& image, const TokenLayout& layout) {
  require_view_inputs(features, image);
  const std::array<cv::Mat, 3> components = principal_components(features);
  // First component red, second green, third blue: merged in BGR order.
  cv::Mat pca;
  cv::merge(
      std::vector<cv::Mat>{stretch_percentiles(components[2]), stretch_percentiles(components[1]),
                           stretch_percentiles(components[0])},
      pca);
  cv::Mat out;
  cv::hconcat(to_bgr8(image), tokens_to_image(pca, layout, image.size()), out);
  return out;
}

cv::Mat channels_view(const Tensor3& features, cv::Size size, std::size_t count) {
  const std::size_t shown = std::min(count, features.shape(0));
  if (features.size() == 0 || shown == 0) {
    throw Error("bad_view_input", "channels_view needs at least one channel to show");
  }
  std::vector<double> strength(features.shape(0));
  for (std::size_t c = 0; c < strength.size(); ++c) {
    strength[c] = cv::mean(cv::abs(plane(features, c)))[0];
  }
  std::vector<std::size_t> order(strength.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return strength[a] > strength[b]; });

  const int n = static_cast<int>(shown);
  const int grid_cols = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n))));
  const int grid_rows = (n + grid_cols - 1) / grid_cols;
  const int h = rows_of(features), w = cols_of(features);
  const int factor =
      std::max(1, std::min((size.width - (grid_cols - 1) * kGap) / (grid_cols * w),
                           (size.height - (grid_rows - 1) * kGap) / (grid_rows * h)));
  const int tile_w = w * factor, tile_h = h * factor;
  cv::Mat out(grid_rows * tile_h + (grid_rows - 1) * kGap,
              grid_cols * tile_w + (grid_cols - 1) * kGap, CV_8UC3, cv::Scalar(255, 255, 255));
  for (int i = 0; i < n; ++i) {
    const cv::Rect tile((i % grid_cols) * (tile_w + kGap), (i / grid_cols) * (tile_h + kGap),
                        tile_w, tile_h);
    enlarge(viridis(stretch_min_max(plane(features, order[static_cast<std::size_t>(i)]))), factor)
        .copyTo(out(tile));
  }
  return out;
}

cv::Mat token_norm_view(const Tensor3& features, const cv::Mat& image, const TokenLayout& layout) {
  require_view_inputs(features, image);
  cv::Mat squares = cv::Mat::zeros(rows_of(features), cols_of(features), CV_32F);
  for (std::size_t c = 0; c < features.shape(0); ++c) {
    cv::accumulateSquare(plane(features, c), squares);
  }
  cv::Mat norms;
  cv::sqrt(squares, norms);
  return blend(to_bgr8(image),
               tokens_to_image(viridis(stretch_min_max(norms)), layout, image.size()));
}

cv::Mat class_overlay_view(const Tensor3& logits, const cv::Mat& image, const TokenLayout& layout,
                           const std::vector<std::string>& class_names) {
  require_view_inputs(logits, image);
  const cv::Mat classes = argmax_classes(logits);
  std::vector<cv::Vec3b> palette(logits.shape(0));
  for (std::size_t k = 0; k < palette.size(); ++k) palette[k] = class_colour(k);
  cv::Mat colours(classes.size(), CV_8UC3);
  cv::Mat shown(classes.size(), CV_8U);
  std::vector<bool> present(palette.size(), false);
  for (int y = 0; y < classes.rows; ++y) {
    for (int x = 0; x < classes.cols; ++x) {
      const auto k = static_cast<std::size_t>(classes.at<int>(y, x));
      colours.at<cv::Vec3b>(y, x) = palette[k];
      const bool visible = !is_background(class_names, k);
      shown.at<uchar>(y, x) = visible ? 255 : 0;
      present[k] = present[k] || visible;
    }
  }
  std::vector<std::size_t> legend;
  for (std::size_t k = 0; k < present.size(); ++k) {
    if (present[k]) legend.push_back(k);
  }
  cv::Mat out = to_bgr8(image);
  blend(out, tokens_to_image(colours, layout, image.size()))
      .copyTo(out, tokens_to_image(shown, layout, image.size()));
  if (!legend.empty()) draw_legend(out, legend, class_names);
  return out;
}

}  // namespace vitscope::image
