#include "scenes.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "vitscope/error.hpp"

namespace vitscope::image {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kMinContrast = 40.0;

int uniform_int(std::mt19937& rng, int lo, int hi) {  // both ends included
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

double uniform(std::mt19937& rng, double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(rng);
}

cv::Vec3d random_colour(std::mt19937& rng) {
  return {double(uniform_int(rng, 0, 255)), double(uniform_int(rng, 0, 255)),
          double(uniform_int(rng, 0, 255))};
}

// c0 + (c1 - c0) * t per pixel, t (H,W) CV_64F.
cv::Mat mix(const cv::Vec3d& c0, const cv::Vec3d& c1, const cv::Mat& t) {
  cv::Mat out(t.size(), CV_64FC3);
  for (int y = 0; y < t.rows; ++y) {
    for (int x = 0; x < t.cols; ++x) out.at<cv::Vec3d>(y, x) = c0 + (c1 - c0) * t.at<double>(y, x);
  }
  return out;
}

// u = x cos(a) + y sin(a) over pixel centres' indices.
cv::Mat projection(cv::Size size, double angle) {
  cv::Mat u(size, CV_64F);
  for (int y = 0; y < size.height; ++y) {
    for (int x = 0; x < size.width; ++x) u.at<double>(y, x) = x * std::cos(angle) + y * std::sin(angle);
  }
  return u;
}

// Step 2 of the recipe: a gradient, a smooth colour field, stripes or noise; CV_64FC3 RGB.
cv::Mat background(std::mt19937& rng, cv::Size size) {
  switch (uniform_int(rng, 0, 3)) {
    case 0: {
      const cv::Vec3d c0 = random_colour(rng), c1 = random_colour(rng);
      cv::Mat u = projection(size, uniform(rng, 0, 2 * kPi));
      double lo = 0, hi = 0;
      cv::minMaxLoc(u, &lo, &hi);
      return mix(c0, c1, (u - lo) / (hi - lo));
    }
    case 1: {
      const int gh = uniform_int(rng, 2, 5), gw = uniform_int(rng, 2, 5);
      cv::Mat grid(gh, gw, CV_32FC3);
      for (int i = 0; i < gh; ++i) {
        for (int j = 0; j < gw; ++j) grid.at<cv::Vec3f>(i, j) = random_colour(rng);
      }
      cv::Mat field, out;
      cv::resize(grid, field, size, 0, 0, cv::INTER_CUBIC);
      field.convertTo(out, CV_64FC3);
      return cv::min(cv::max(out, 0.0), 255.0);
    }
    case 2: {
      const cv::Vec3d c0 = random_colour(rng), c1 = random_colour(rng);
      const double period = uniform(rng, 12, 48), angle = uniform(rng, 0, kPi);
      const double phase = uniform(rng, 0, 2 * kPi);
      cv::Mat t = projection(size, angle);
      t.forEach<double>([&](double& u, const int*) {
        u = 0.5 + 0.5 * std::sin(2 * kPi * u / period + phase);
      });
      return mix(c0, c1, t);
    }
    default: {
      const cv::Vec3d c0 = random_colour(rng);
      std::normal_distribution<double> noise(0.0, uniform(rng, 10, 40));
      cv::Mat out(size, CV_64FC3);
      for (int y = 0; y < size.height; ++y) {
        for (int x = 0; x < size.width; ++x) {
          cv::Vec3d& v = out.at<cv::Vec3d>(y, x);
          for (int c = 0; c < 3; ++c) v[c] = c0[c] + noise(rng);
        }
      }
      return out;
    }
  }
}

double mean_difference(const cv::Vec3d& a, const cv::Scalar& b) {
  return (std::abs(a[0] - b[0]) + std::abs(a[1] - b[1]) + std::abs(a[2] - b[2])) / 3.0;
}

// Draws one shape on the image, the label map and the instance map with the identical call.
void draw_shape(std::mt19937& rng, ShapeKind kind, int r, cv::Point centre, const cv::Scalar& colour,
                int instance, cv::Mat& image, cv::Mat& labels, cv::Mat& instances) {
  const std::array<std::pair<cv::Mat*, cv::Scalar>, 3> targets = {
      {{&image, colour},
       {&labels, cv::Scalar(static_cast<double>(kind))},
       {&instances, cv::Scalar(instance)}}};
  if (kind == ShapeKind::square || kind == ShapeKind::triangle) {
    const double angle = uniform(rng, 0, 2 * kPi);
    const int corners = kind == ShapeKind::square ? 4 : 3;
    std::vector<cv::Point> polygon;
    for (int k = 0; k < corners; ++k) {
      const double a = angle + 2 * kPi * k / corners;
      polygon.emplace_back(static_cast<int>(std::round(centre.x + r * std::cos(a))),
                           static_cast<int>(std::round(centre.y + r * std::sin(a))));
    }
    for (const auto& [target, value] : targets) {
      cv::fillPoly(*target, std::vector<std::vector<cv::Point>>{polygon}, value, cv::LINE_8);
    }
    return;
  }
  int thickness = cv::FILLED;
  if (kind == ShapeKind::ring) {
    thickness = std::max(2, static_cast<int>(std::floor(uniform(rng, 0.3, 0.5) * r + 0.5)));
  }
  for (const auto& [target, value] : targets) {
    cv::circle(*target, centre, r, value, thickness, cv::LINE_8);
  }
}

}  // namespace

Scene make_scene(std::mt19937& rng) {
  static const std::array<cv::Size, 4> sizes = {
      {{224, 224}, {224, 224}, {224, 160}, {160, 224}}};  // (W, H)
  const cv::Size size = sizes[static_cast<std::size_t>(uniform_int(rng, 0, 3))];

  // 1. Background, its mean colour kept for the shapes' contrast, then rounded to 8 bits.
  const cv::Mat bg = background(rng, size);
  const cv::Scalar mean = cv::mean(bg);
  cv::Mat image;
  bg.convertTo(image, CV_8UC3);  // rounds and saturates
  cv::Mat labels = cv::Mat::zeros(size, CV_8U), instances = cv::Mat::zeros(size, CV_8U);

  // 2. Shapes, later ones over earlier ones.
  const int n = uniform_int(rng, 2, 5);
  for (int i = 1; i <= n; ++i) {
    const auto kind = static_cast<ShapeKind>(uniform_int(rng, 1, 4));
    const int r = uniform_int(rng, 20, 60);
    const cv::Point centre(uniform_int(rng, r / 2, size.width - 1 - r / 2),
                           uniform_int(rng, r / 2, size.height - 1 - r / 2));
    cv::Vec3d colour = random_colour(rng);
    while (mean_difference(colour, mean) < kMinContrast) colour = random_colour(rng);
    draw_shape(rng, kind, r, centre, cv::Scalar(colour[0], colour[1], colour[2]), i, image, labels,
               instances);
  }

  // 3. Camera noise.
  std::normal_distribution<double> noise(0.0, uniform(rng, 0, 8));
  Scene scene{cv::Mat(size, CV_32FC3), labels, instances};
  for (int y = 0; y < size.height; ++y) {
    for (int x = 0; x < size.width; ++x) {
      const cv::Vec3b v = image.at<cv::Vec3b>(y, x);
      cv::Vec3f& out = scene.rgb.at<cv::Vec3f>(y, x);
      for (int c = 0; c < 3; ++c) {
        out[c] = static_cast<float>(std::clamp(std::round(v[c] + noise(rng)), 0.0, 255.0));
      }
    }
  }
  return scene;
}

cv::Mat majority_patches(const cv::Mat& map, int patch, int num_values) {
  if (map.type() != CV_8U || map.rows % patch != 0 || map.cols % patch != 0) {
    throw Error("bad_scene", "majority_patches needs a CV_8U map whose sides are multiples of p");
  }
  cv::Mat out(map.rows / patch, map.cols / patch, CV_32S);
  std::vector<int> counts(static_cast<std::size_t>(num_values));
  for (int i = 0; i < out.rows; ++i) {
    for (int j = 0; j < out.cols; ++j) {
      std::fill(counts.begin(), counts.end(), 0);
      for (int y = i * patch; y < (i + 1) * patch; ++y) {
        for (int x = j * patch; x < (j + 1) * patch; ++x) counts.at(map.at<uchar>(y, x)) += 1;
      }
      out.at<int>(i, j) =
          static_cast<int>(std::max_element(counts.begin(), counts.end()) - counts.begin());
    }
  }
  return out;
}

}  // namespace vitscope::image
