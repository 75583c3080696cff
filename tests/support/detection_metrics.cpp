#include "detection_metrics.hpp"

#include <algorithm>
#include <map>
#include <numeric>

namespace vitscope::image {

std::vector<Object> scene_objects(const Scene& scene) {
  struct Extent {
    int x0 = 1 << 30, y0 = 1 << 30, x1 = -1, y1 = -1, area = 0;
    std::uint8_t kind = 0;
  };
  std::map<int, Extent> extents;  // by instance id, in increasing order
  for (int y = 0; y < scene.instances.rows; ++y) {
    for (int x = 0; x < scene.instances.cols; ++x) {
      const int id = scene.instances.at<std::uint8_t>(y, x);
      if (id == 0) continue;
      Extent& e = extents[id];
      e.x0 = std::min(e.x0, x), e.x1 = std::max(e.x1, x), e.y0 = std::min(e.y0, y), e.y1 = std::max(e.y1, y);
      e.kind = scene.labels.at<std::uint8_t>(y, x);
      ++e.area;
    }
  }
  std::vector<Object> objects;
  for (const auto& [id, e] : extents) {
    if (e.area < kMinObjectArea) continue;
    objects.push_back({std::size_t{e.kind} - 1, cv::Rect2d(e.x0, e.y0, e.x1 - e.x0 + 1, e.y1 - e.y0 + 1)});
  }
  return objects;
}

double iou(const cv::Rect2d& a, const cv::Rect2d& b) {
  const double inter = (a & b).area();
  const double uni = a.area() + b.area() - inter;
  return uni > 0 ? inter / uni : 0;
}

namespace {

struct Ranked {
  std::size_t image, prediction;
  double score;
};

// Class c's predictions of all images, best first (stable in image, then prediction order).
std::vector<Ranked> ranked(const std::vector<ScoredImage>& images, std::size_t c) {
  std::vector<Ranked> out;
  for (std::size_t i = 0; i < images.size(); ++i) {
    std::vector<std::size_t> order(images[i].predictions.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    // predictions are best first; matching goes by query order within an image, as the Python
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return images[i].predictions[a].query < images[i].predictions[b].query;
    });
    for (std::size_t p : order) {
      if (images[i].predictions[p].label == c) out.push_back({i, p, images[i].predictions[p].score});
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const Ranked& a, const Ranked& b) { return a.score > b.score; });
  return out;
}

}  // namespace

std::vector<std::vector<int>> matched_objects(const std::vector<ScoredImage>& images, std::size_t num_classes) {
  std::vector<std::vector<int>> matched(images.size());
  std::vector<std::vector<bool>> taken(images.size());
  for (std::size_t i = 0; i < images.size(); ++i) {
    matched[i].assign(images[i].predictions.size(), -1);
    taken[i].assign(images[i].objects.size(), false);
  }
  for (std::size_t c = 0; c < num_classes; ++c) {
    for (const Ranked& r : ranked(images, c)) {
      const ScoredImage& image = images[r.image];
      int best = -1;
      double best_iou = 0.5;
      for (std::size_t o = 0; o < image.objects.size(); ++o) {
        if (image.objects[o].label != c || taken[r.image][o]) continue;
        const double overlap = iou(image.predictions[r.prediction].box, image.objects[o].box);
        if (overlap >= best_iou && (best < 0 || overlap > best_iou)) best = static_cast<int>(o), best_iou = overlap;
      }
      if (best >= 0) taken[r.image][static_cast<std::size_t>(best)] = true;
      matched[r.image][r.prediction] = best;
    }
  }
  return matched;
}

std::vector<double> average_precision(const std::vector<ScoredImage>& images, std::size_t num_classes) {
  const std::vector<std::vector<int>> matched = matched_objects(images, num_classes);
  std::vector<double> ap(num_classes, 0.0);
  for (std::size_t c = 0; c < num_classes; ++c) {
    std::size_t objects = 0;
    for (const ScoredImage& image : images) {
      objects += std::count_if(image.objects.begin(), image.objects.end(),
                               [c](const Object& o) { return o.label == c; });
    }
    const std::vector<Ranked> order = ranked(images, c);
    if (objects == 0 || order.empty()) continue;
    std::vector<double> precision, recall;
    double tp = 0;
    for (std::size_t k = 0; k < order.size(); ++k) {
      tp += matched[order[k].image][order[k].prediction] >= 0 ? 1 : 0;
      precision.push_back(tp / double(k + 1));
      recall.push_back(tp / double(objects));
    }
    // All-point interpolation: precision made non-increasing from the right.
    for (std::size_t k = precision.size() - 1; k-- > 0;) precision[k] = std::max(precision[k], precision[k + 1]);
    double previous = 0;
    for (std::size_t k = 0; k < precision.size(); ++k) {
      ap[c] += (recall[k] - previous) * precision[k];
      previous = recall[k];
    }
  }
  return ap;
}

}  // namespace vitscope::image
