#include "vitscope/image/detections.hpp"

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "drawing.hpp"
#include "vitscope/error.hpp"

namespace vitscope::image {

cv::Rect2d box_in_pixels(const float* cxcywh, cv::Size size) {
  const double w = cxcywh[2] * size.width, h = cxcywh[3] * size.height;
  return {cxcywh[0] * size.width - w / 2, cxcywh[1] * size.height - h / 2, w, h};
}

std::vector<Detection> detect(const Tensor2& logits, const Tensor2& boxes,
                              const std::vector<std::string>& names, cv::Size picture,
                              double threshold) {
  const std::size_t Q = logits.shape(0), K = logits.shape(1) - 1;
  if (logits.shape(1) < 2 || boxes.shape(0) != Q || boxes.shape(1) != 4) {
    throw Error("bad_view_input", "detections need logits (Q, K+1) and boxes (Q, 4)");
  }
  std::vector<Detection> out;
  for (std::size_t q = 0; q < Q; ++q) {
    // softmax over all K+1 classes, "no object" included, then the best of the first K.
    const float* row = &logits(q, 0);
    const double top = *std::max_element(row, row + K + 1);
    double total = 0;
    for (std::size_t k = 0; k <= K; ++k) total += std::exp(row[k] - top);
    const std::size_t label = static_cast<std::size_t>(std::max_element(row, row + K) - row);
    const double score = std::exp(row[label] - top) / total;
    if (score < threshold) continue;
    out.push_back({q, label, label < names.size() ? names[label] : "class " + std::to_string(label), score,
                   box_in_pixels(&boxes(q, 0), picture)});
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Detection& a, const Detection& b) { return a.score > b.score; });
  return out;
}

cv::Mat detections_view(const cv::Mat& picture, const std::vector<Detection>& detections) {
  cv::Mat out = to_bgr8(picture);
  const int font = cv::FONT_HERSHEY_SIMPLEX;
  const double scale = std::clamp(std::min(out.rows, out.cols) / 600.0, 0.35, 1.0);
  const int thickness = std::max(2, std::min(out.rows, out.cols) / 200);
  // The least confident first, so the best boxes and labels end on top.
  for (auto d = detections.rbegin(); d != detections.rend(); ++d) {
    const cv::Vec3b c = drawing::class_colour(d->label + 1);  // colour 0 is the background's elsewhere
    const cv::Scalar colour(c[0], c[1], c[2]);
    const cv::Rect box(cv::Point(static_cast<int>(std::lround(d->box.x)), static_cast<int>(std::lround(d->box.y))),
                       cv::Point(static_cast<int>(std::lround(d->box.br().x)),
                                 static_cast<int>(std::lround(d->box.br().y))));
    cv::rectangle(out, box, colour, thickness, cv::LINE_AA);
    const std::string label = d->name + " " + std::to_string(std::lround(100 * d->score)) + "%";
    int baseline = 0;
    const cv::Size text = cv::getTextSize(label, font, scale, 1, &baseline);
    const cv::Point corner(std::clamp(box.x, 0, std::max(0, out.cols - text.width - 4)),
                           std::clamp(box.y, text.height + baseline + 2, std::max(text.height + baseline + 2, out.rows)));
    cv::rectangle(out, cv::Rect(corner.x, corner.y - text.height - baseline - 2, text.width + 4,
                                text.height + baseline + 2),
                  colour, cv::FILLED);
    cv::putText(out, label, cv::Point(corner.x + 2, corner.y - baseline - 1), font, scale,
                cv::Scalar::all(255), 1, cv::LINE_AA);
  }
  return out;
}

}  // namespace vitscope::image
