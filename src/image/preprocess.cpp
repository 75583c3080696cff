#include "vitscope/image/preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include <opencv2/imgproc.hpp>

#include "vitscope/io/metadata_reader.hpp"
#include "vitscope/error.hpp"

namespace vitscope::image {
namespace {

// The largest side a resize may make (as image_size's bound in model files): a very thin image's
// longer side grows by resize_size / shorter side under shorter-crop.
constexpr int kMaxSide = 1 << 14;

const std::vector<std::pair<std::string, ResizeMode>> kResizeModes = {
    {"longer", ResizeMode::longer},
    {"shorter-crop", ResizeMode::shorter_crop},
    {"stretch", ResizeMode::stretch},
    {"patch-crop", ResizeMode::patch_crop},
    {"shorter-max", ResizeMode::shorter_max}};

const std::vector<std::pair<std::string, Interpolation>> kInterpolations = {
    {"area-linear", Interpolation::area_linear},
    {"linear", Interpolation::linear},
    {"cubic", Interpolation::cubic}};

template <class Enum>
const Enum* find_name(const std::vector<std::pair<std::string, Enum>>& names,
                      const std::string& name) {
  for (const auto& [n, value] : names) {
    if (n == name) return &value;
  }
  return nullptr;
}

template <class Enum>
std::string name_of(const std::vector<std::pair<std::string, Enum>>& names, Enum value) {
  for (const auto& [n, v] : names) {
    if (v == value) return n;
  }
  return "?";
}

template <class Enum>
std::string allowed(const std::vector<std::pair<std::string, Enum>>& names) {
  std::string list;
  for (const auto& [n, value] : names) list += (list.empty() ? "" : ", ") + n;
  return list;
}

void check_image(const cv::Mat& rgb) {
  if (rgb.empty() || rgb.type() != CV_32FC3)
    throw Error("bad_input", "expected a non-empty CV_32FC3 RGB image, got " +
                                 std::to_string(rgb.cols) + "x" + std::to_string(rgb.rows) +
                                 " of OpenCV type " + std::to_string(rgb.type()));
}

void check_size(const char* what, int size) {
  if (size < 1) {
    throw Error("bad_input", std::string(what) + " must be at least 1, got " + std::to_string(size));
  }
}

std::string size_text(cv::Size s) { return std::to_string(s.width) + "x" + std::to_string(s.height); }

std::size_t round_up(int n, int multiple) {
  return static_cast<std::size_t>((n + multiple - 1) / multiple * multiple);
}

// Python's int(round(twice / 2.0)) for twice >= 0: a half rounds to the even neighbour.
int python_round_half(int twice) {
  const int down = twice / 2;
  return twice % 2 == 0 || down % 2 == 0 ? down : down + 1;
}

// cv::resize's flag: area-linear keeps today's rule (INTER_AREA only when no side grows; with
// one aspect ratio that is "when shrinking").
int cv_interpolation(Interpolation interpolation, cv::Size from, cv::Size to) {
  switch (interpolation) {
    case Interpolation::linear:
      return cv::INTER_LINEAR;
    case Interpolation::cubic:
      return cv::INTER_CUBIC;
    case Interpolation::area_linear:
      break;
  }
  return to.width <= from.width && to.height <= from.height ? cv::INTER_AREA : cv::INTER_LINEAR;
}

// rgb resized to `to`; the same pixels, not a copy, when it already has that size. Cubic
// overshoots at edges: clamped back to [0, 255], the range a decoded image has.
cv::Mat resize(const cv::Mat& rgb, cv::Size to, Interpolation interpolation) {
  if (to.width > kMaxSide || to.height > kMaxSide) {
    throw Error("bad_input", "a " + size_text(rgb.size()) + " image would be " + size_text(to) +
                                 " after resizing, over " + std::to_string(kMaxSide) +
                                 " pixels a side; try --resize-mode longer");
  }
  if (to == rgb.size()) return rgb;
  cv::Mat out;
  cv::resize(rgb, out, to, 0, 0, cv_interpolation(interpolation, rgb.size(), to));
  if (interpolation == Interpolation::cubic) {
    cv::Mat samples = out.reshape(1);  // one channel, so the scalar bounds every sample
    cv::min(samples, 255.0, samples);
    cv::max(samples, 0.0, samples);
  }
  return out;
}

// DETR's get_size_with_aspect_ratio (datasets/transforms.py), in its own arithmetic: the shorter side
// becomes size unless the longer would pass max_size, then round(max_size * short / long), Python's
// round (half to even, as nearbyint); the longer int(size * long / short), truncated.
cv::Size shorter_max_size(cv::Size from, int size, int max_size) {
  const double shorter = std::min(from.width, from.height), longer = std::max(from.width, from.height);
  if (longer / shorter * size > max_size) {
    // At least one pixel: a sliver of an image keeps a row (DETR would make it empty).
    size = std::max(1, static_cast<int>(std::nearbyint(static_cast<double>(max_size) * shorter / longer)));
  }
  if ((from.width <= from.height && from.width == size) ||
      (from.height <= from.width && from.height == size)) {
    return from;
  }
  const auto scaled = [size](int side, int other) {
    return static_cast<int>(static_cast<double>(std::int64_t{size} * side) / other);
  };
  if (from.width < from.height) return {size, scaled(from.height, from.width)};
  return {scaled(from.width, from.height), size};
}

// torchvision 0.14 _compute_resized_output_size for Resize(resize_size): the shorter side becomes
// resize_size, the longer int(resize_size * long / short) (a true division, truncated).
cv::Size shorter_side_size(cv::Size from, int resize_size) {
  const int shorter = std::min(from.width, from.height), longer = std::max(from.width, from.height);
  const double new_long = static_cast<double>(std::int64_t{resize_size} * longer) / shorter;
  if (new_long >= kMaxSide + 1) {
    throw Error("bad_input", "a " + size_text(from) + " image would be " +
                                 std::to_string(static_cast<std::int64_t>(new_long)) +
                                 " pixels long after resizing its shorter side to " +
                                 std::to_string(resize_size) + ", over " +
                                 std::to_string(kMaxSide) + "; try --resize-mode longer");
  }
  const int new_longer = static_cast<int>(new_long);
  return from.width <= from.height ? cv::Size(resize_size, new_longer)
                                   : cv::Size(new_longer, resize_size);
}

// torchvision 0.14 center_crop's window on an image of `from`: where the crop is larger, the image
// is first padded by (crop - side) // 2 on the left/top (the rest right/bottom); then
// top = int(round((H - size) / 2.0)) on the padded image, left likewise. In the unpadded image's
// coordinates: x, y < 0 where the pad lies.
cv::Rect center_crop_window(cv::Size from, int size) {
  const auto axis = [size](int side) {
    const int pad_before = size > side ? (size - side) / 2 : 0;
    const int padded = size > side ? side + (size - side) / 2 + (size - side + 1) / 2 : side;
    return python_round_half(padded - size) - pad_before;
  };
  return {axis(from.width), axis(from.height), size, size};
}

// The window of rgb; pixels outside rgb are 0 (black, before normalisation), as torchvision pads.
cv::Mat crop(const cv::Mat& rgb, const cv::Rect& window) {
  const cv::Rect inside = window & cv::Rect(0, 0, rgb.cols, rgb.rows);
  if (inside == window) return rgb(window);
  cv::Mat out(window.size(), CV_32FC3, cv::Scalar::all(0));
  if (!inside.empty()) rgb(inside).copyTo(out(inside - window.tl()));
  return out;
}

}  // namespace

ResizeMode parse_resize_mode(const std::string& name) {
  if (const ResizeMode* mode = find_name(kResizeModes, name)) return *mode;
  throw Error("bad_input", "resize mode '" + name + "' is not one of " + allowed(kResizeModes));
}

Interpolation parse_interpolation(const std::string& name) {
  if (const Interpolation* i = find_name(kInterpolations, name)) return *i;
  throw Error("bad_input",
              "interpolation '" + name + "' is not one of " + allowed(kInterpolations));
}

std::string resize_mode_name(ResizeMode mode) { return name_of(kResizeModes, mode); }

std::string interpolation_name(Interpolation interpolation) {
  return name_of(kInterpolations, interpolation);
}

std::vector<std::string> resize_mode_names() {
  std::vector<std::string> names;
  for (const auto& [name, mode] : kResizeModes) names.push_back(name);
  return names;
}

std::vector<std::string> interpolation_names() {
  std::vector<std::string> names;
  for (const auto& [name, interpolation] : kInterpolations) names.push_back(name);
  return names;
}

ResizeOptions resize_options_from_metadata(const std::map<std::string, std::string>& metadata,
                                           const std::string& source) {
  const MetadataReader read(metadata, source);
  ResizeOptions o;
  if (metadata.count("resize_mode")) {
    const ResizeMode* mode = find_name(kResizeModes, read.text("resize_mode"));
    if (!mode) {
      read.fail("resize_mode",
                "'" + read.text("resize_mode") + "' is not one of " + allowed(kResizeModes));
    }
    o.resize_mode = *mode;
  }
  if (metadata.count("resize_size")) {
    const int64_t size = read.integer("resize_size");
    if (size < 1 || size > kMaxSide) {
      read.fail("resize_size",
                std::to_string(size) + " is not in 1.." + std::to_string(kMaxSide));
    }
    o.resize_size = static_cast<int>(size);
  }
  if (metadata.count("max_size")) {
    const int64_t size = read.integer("max_size");
    if (size < 1 || size > kMaxSide) {
      read.fail("max_size", std::to_string(size) + " is not in 1.." + std::to_string(kMaxSide));
    }
    o.max_size = static_cast<int>(size);
  }
  if (metadata.count("interpolation")) {
    const Interpolation* i = find_name(kInterpolations, read.text("interpolation"));
    if (!i) {
      read.fail("interpolation",
                "'" + read.text("interpolation") + "' is not one of " + allowed(kInterpolations));
    }
    o.interpolation = *i;
  }
  return o;
}

int effective_resize_size(const PreprocessOptions& options) {
  if (options.resize.resize_size > 0) return options.resize.resize_size;
  return static_cast<int>(std::floor(options.size / 0.875));  // timm: floor(img_size / crop_pct)
}

int effective_max_size(const PreprocessOptions& options) {
  return options.resize.max_size > 0 ? options.resize.max_size : 1333;  // DETR's evaluation
}

cv::Mat resize_to_size(const cv::Mat& rgb, int size, Interpolation interpolation) {
  check_image(rgb);
  check_size("size", size);
  const double scale = static_cast<double>(size) / std::max(rgb.rows, rgb.cols);
  const cv::Size resized(std::max(1L, std::lround(rgb.cols * scale)),
                         std::max(1L, std::lround(rgb.rows * scale)));
  return resize(rgb, resized, interpolation);
}

Resized resize_and_crop(const cv::Mat& rgb, const PreprocessOptions& options) {
  check_image(rgb);
  check_size("size", options.size);
  check_size("patch_size", options.patch_size);
  const Interpolation interpolation = options.resize.interpolation;
  const int size = options.size, p = options.patch_size;
  switch (options.resize.resize_mode) {
    case ResizeMode::longer: {
      cv::Mat resized = resize_to_size(rgb, size, interpolation);
      return {resized, resized.size(), {0, 0, resized.cols, resized.rows}};
    }
    case ResizeMode::shorter_crop: {
      // Resize(resize_size) then CenterCrop(size), as torchvision.transforms.functional does.
      const int resize_size = effective_resize_size(options);
      check_size("resize_size", resize_size);
      const cv::Mat resized = resize(rgb, shorter_side_size(rgb.size(), resize_size), interpolation);
      const cv::Rect window = center_crop_window(resized.size(), size);
      return {crop(resized, window), resized.size(), window};
    }
    case ResizeMode::stretch: {
      const cv::Mat resized = resize(rgb, {size, size}, interpolation);
      return {resized, resized.size(), {0, 0, size, size}};
    }
    case ResizeMode::shorter_max: {
      const cv::Mat resized =
          resize(rgb, shorter_max_size(rgb.size(), size, effective_max_size(options)), interpolation);
      return {resized, resized.size(), {0, 0, resized.cols, resized.rows}};
    }
    case ResizeMode::patch_crop: {
      // DINO: img[:, :h - h % p, :w - w % p]. A side shorter than one patch is kept whole (DINO
      // would have no pixels left) and padded as in longer.
      const cv::Mat resized = resize_to_size(rgb, size, interpolation);
      const auto multiple = [p](int side) { return side < p ? side : side - side % p; };
      const cv::Rect window(0, 0, multiple(resized.cols), multiple(resized.rows));
      return {resized(window), resized.size(), window};
    }
  }
  throw Error("bad_input", "unknown resize mode");
}

ImageBatch preprocess(const std::vector<cv::Mat>& rgb_images, const PreprocessOptions& options) {
  if (rgb_images.empty()) throw Error("bad_input", "no images to preprocess");
  check_size("patch_size", options.patch_size);
  // Steps 2a-2b: each image as the model sees it; the batch is as large as the largest padded.
  std::vector<Resized> resized;
  std::size_t height = 0, width = 0;
  for (const cv::Mat& rgb : rgb_images) {
    resized.push_back(resize_and_crop(rgb, options));
    height = std::max(height, round_up(resized.back().rgb.rows, options.patch_size));
    width = std::max(width, round_up(resized.back().rgb.cols, options.patch_size));
  }

  ImageBatch batch;
  const std::size_t count = resized.size();
  batch.pixels = Tensor4::from_shape({count, 3, height, width});
  batch.pixels.fill(0.0f);
  batch.pixel_mask = xt::xtensor<bool, 3>::from_shape({count, height, width});
  batch.pixel_mask.fill(true);
  for (std::size_t b = 0; b < count; ++b) {
    const cv::Mat& image = resized[b].rgb;
    batch.resized.push_back(image.size());
    batch.before_crop.push_back(resized[b].before_crop);
    batch.crops.push_back(resized[b].crop);
    // Steps 3-5: normalise into the top-left corner; the rest stays 0 and masked.
    const auto cols = static_cast<std::size_t>(image.cols);
    for (int y = 0; y < image.rows; ++y) {
      const float* rgb = image.ptr<float>(y);
      const std::size_t row = static_cast<std::size_t>(y) * width;
      for (std::size_t c = 0; c < 3; ++c) {
        float* out = batch.pixels.data() + (b * 3 + c) * height * width + row;
        const float mean = options.mean[c], std = options.std[c];
        for (std::size_t x = 0; x < cols; ++x) out[x] = (rgb[3 * x + c] / 255 - mean) / std;
      }
      std::fill_n(batch.pixel_mask.data() + b * height * width + row, cols, false);
    }
  }
  return batch;
}

}  // namespace vitscope::image
