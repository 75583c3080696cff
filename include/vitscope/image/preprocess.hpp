#pragma once
// Preprocessing, in the order docs/image_model.md gives (OpenCV's blobFromImages order): resize
// (and crop, by resize_mode), x/255, (x - mean) / std, to (C,H,W), pad with 0 to a multiple of p,
// batch padded to the largest. tools/reference_model.py's preprocess is the same, cv2 call for
// cv2 call.

#include <array>
#include <map>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <xtensor/xtensor.hpp>

#include "vitscope/nn/tensor.hpp"

namespace vitscope::image {

// How an image becomes the model's pixels (names as in model files and --resize-mode):
enum class ResizeMode {
  longer,        // "longer": longer side = size, aspect kept; pad to a multiple of p
  shorter_crop,  // "shorter-crop": shorter side = resize_size, centre crop size x size
                 // (torchvision's and timm's eval transform: Resize(resize_size), CenterCrop(size))
  stretch,       // "stretch": exactly size x size, aspect ignored (Hugging Face ViTImageProcessor)
  patch_crop,    // "patch-crop": as longer, then crop bottom/right to a multiple of p
                 // (DINO's visualize_attention.py)
  shorter_max,   // "shorter-max": shorter side = size unless the longer would pass max_size, then
                 // longer ~ max_size; pad to a multiple of p (DETR's evaluation: 800, 1333)
};

// OpenCV's cv::resize flags (not PIL's filters: torchvision's PIL pipeline differs slightly).
enum class Interpolation {
  area_linear,  // "area-linear": INTER_AREA when no side grows, else INTER_LINEAR
  linear,       // "linear": INTER_LINEAR both ways
  cubic,        // "cubic": INTER_CUBIC both ways, clamped to [0, 255]
};

// What a model file's resize_mode, resize_size and interpolation keys name (all optional).
struct ResizeOptions {
  ResizeMode resize_mode = ResizeMode::longer;
  int resize_size = 0;  // shorter-crop's shorter side; 0: floor(size / 0.875) (256 for 224)
  int max_size = 0;     // shorter-max's bound on the longer side; 0: DETR's 1333
  Interpolation interpolation = Interpolation::area_linear;
};

struct PreprocessOptions {
  int size = 224;        // the longer side (longer, patch-crop), the crop (shorter-crop), or both sides (stretch)
  int patch_size = 16;   // p
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f};
  std::array<float, 3> std = {0.229f, 0.224f, 0.225f};
  ResizeOptions resize;
};

// The names model files and flags use, and back.
ResizeMode parse_resize_mode(const std::string& name);  // throws Error("bad_input") naming the allowed
Interpolation parse_interpolation(const std::string& name);
std::string resize_mode_name(ResizeMode mode);
std::string interpolation_name(Interpolation interpolation);
std::vector<std::string> resize_mode_names();    // in the order the enum lists them
std::vector<std::string> interpolation_names();

// The optional keys resize_mode, resize_size, interpolation of a model file's __metadata__ (defaults
// when absent). Throws Error("bad_metadata") naming `source` and the key for a bad value.
ResizeOptions resize_options_from_metadata(const std::map<std::string, std::string>& metadata,
                                           const std::string& source);

// shorter-crop's shorter side: resize_size, or timm's floor(size / crop_pct) with crop_pct 0.875.
int effective_resize_size(const PreprocessOptions& options);
// shorter-max's bound on the longer side: max_size, or DETR's 1333.
int effective_max_size(const PreprocessOptions& options);

// rgb (CV_32FC3, [0,255]) -> the same kind of image with its longer side = size (no copy of the
// pixels when it already is): INTER_AREA when shrinking, INTER_LINEAR when enlarging, unless
// `interpolation` says otherwise.
cv::Mat resize_to_size(const cv::Mat& rgb, int size,
                       Interpolation interpolation = Interpolation::area_linear);

// The image the model sees before normalisation, and where it lies on the resized image.
struct Resized {
  cv::Mat rgb;           // CV_32FC3, [0,255]; shorter-crop's zero border (torchvision) included
  cv::Size before_crop;  // the image's size after resizing, before any crop
  cv::Rect crop;         // rgb's place on that resized image (x, y < 0 where torchvision pads)
};

// One image through resize_mode's resize and crop (steps 2a-2b of docs/image_model.md).
Resized resize_and_crop(const cv::Mat& rgb, const PreprocessOptions& options);

struct ImageBatch {
  Tensor4 pixels;                       // (B,C,H,W) normalised; 0 on padding
  xt::xtensor<bool, 3> pixel_mask;      // (B,H,W) true on padding
  std::vector<cv::Size> resized;        // per image, its pixels' size (after resize and crop, before padding)
  std::vector<cv::Size> before_crop;    // per image, its size after resizing, before any crop
  std::vector<cv::Rect> crops;          // per image, its pixels' place on the image before the crop
};

// Images of any sizes (CV_32FC3, RGB, [0,255]) -> one padded batch. H and W are multiples of p.
ImageBatch preprocess(const std::vector<cv::Mat>& rgb_images, const PreprocessOptions& options);

}  // namespace vitscope::image
