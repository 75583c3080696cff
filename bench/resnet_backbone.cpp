// resnet_backbone: times image::ResNet's forward (pixels -> C5) on one random image. Built only
// with -DVITSCOPE_BUILD_BENCH=ON; bench/resnet_backbone.py runs it next to torchvision.
//
//   resnet_backbone MODEL.safetensors [--arch resnet50] [--dilation] [--batch B] [--height H]
//                   [--width W] [--threads K] [--repeat R] [--warmup N] [--input IN.npy]
//                   [--out C5.npy]
//
// Prints one JSON line: load and forward milliseconds (median and min of R forwards after N
// warm-up ones). --input reads the pixels (B,3,H,W) instead of drawing them; --out writes C5.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "vitscope/image/resnet.hpp"
#include "vitscope/image/threads.hpp"
#include "vitscope/io/npy.hpp"
#include "vitscope/io/safetensors.hpp"

namespace {

double milliseconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

vitscope::Tensor4 random_pixels(std::size_t B, std::size_t H, std::size_t W) {
  vitscope::Tensor4 pixels = vitscope::Tensor4::from_shape({B, 3, H, W});
  std::mt19937 rng(0);
  std::normal_distribution<float> normal;
  for (float& v : pixels) v = normal(rng);
  return pixels;
}

vitscope::Tensor4 read_pixels(const std::string& path) {
  const vitscope::io::NpyArray a = vitscope::io::read_npy(path);
  vitscope::Tensor4 pixels = vitscope::Tensor4::from_shape({a.shape.at(0), a.shape.at(1), a.shape.at(2), a.shape.at(3)});
  std::copy(a.data.begin(), a.data.end(), pixels.data());
  return pixels;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: resnet_backbone MODEL.safetensors [--arch A] [--dilation] [--batch B] "
                         "[--height H] [--width W] [--threads K] [--repeat R] [--warmup N] "
                         "[--input IN.npy] [--out C5.npy]\n");
    return 2;
  }
  const std::string model = argv[1];
  std::string arch = "resnet50", input, out;
  bool dilation = false;
  std::size_t B = 1, H = 800, W = 1066;
  int threads = 1, repeat = 5, warmup = 1;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (arg == "--arch") arch = value();
    else if (arg == "--dilation") dilation = true;
    else if (arg == "--batch") B = std::stoul(value());
    else if (arg == "--height") H = std::stoul(value());
    else if (arg == "--width") W = std::stoul(value());
    else if (arg == "--threads") threads = std::stoi(value());
    else if (arg == "--repeat") repeat = std::stoi(value());
    else if (arg == "--warmup") warmup = std::stoi(value());
    else if (arg == "--input") input = value();
    else if (arg == "--out") out = value();
    else {
      std::fprintf(stderr, "resnet_backbone: unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  vitscope::image::set_num_threads(threads);

  auto start = std::chrono::steady_clock::now();
  vitscope::image::ResNetOptions options = vitscope::image::ResNetOptions::named(arch);
  options.dilation = dilation;
  const vitscope::image::ResNet net =
      vitscope::image::load_resnet(vitscope::io::read_safetensors(model).tensors, options, "", model);
  const double load_ms = milliseconds_since(start);

  const vitscope::Tensor4 pixels = input.empty() ? random_pixels(B, H, W) : read_pixels(input);
  vitscope::Tensor4 c5;
  for (int i = 0; i < warmup; ++i) c5 = net.forward(pixels);
  std::vector<double> times;
  for (int i = 0; i < repeat; ++i) {
    start = std::chrono::steady_clock::now();
    c5 = net.forward(pixels);
    times.push_back(milliseconds_since(start));
  }
  std::sort(times.begin(), times.end());
  if (!out.empty()) {
    vitscope::io::write_npy(out, c5.data(), vitscope::Shape(c5.shape().begin(), c5.shape().end()));
  }
  std::printf("{\"threads\": %d, \"load_ms\": %.1f, \"median_ms\": %.1f, \"min_ms\": %.1f, "
              "\"c5\": [%zu, %zu, %zu, %zu]}\n",
              threads, load_ms, times.empty() ? 0.0 : times[times.size() / 2],
              times.empty() ? 0.0 : times.front(), c5.shape(0), c5.shape(1), c5.shape(2), c5.shape(3));
  return 0;
}
