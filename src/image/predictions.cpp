#include "vitscope/image/predictions.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace vitscope::image {

std::vector<ClassScore> top_classes(const float* logits, std::size_t K,
                                    const std::vector<std::string>& names, std::size_t keep) {
  // Softmax in double, shifted by the largest logit so no exponent overflows.
  const double top = K ? *std::max_element(logits, logits + K) : 0.0;
  std::vector<double> p(K);
  double total = 0;
  for (std::size_t k = 0; k < K; ++k) total += p[k] = std::exp(double(logits[k]) - top);
  std::vector<std::size_t> order(K);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return p[a] > p[b]; });
  order.resize(std::min(keep, K));
  std::vector<ClassScore> scores;
  for (std::size_t k : order) {
    scores.push_back({k, k < names.size() ? names[k] : "class " + std::to_string(k), p[k] / total});
  }
  return scores;
}

}  // namespace vitscope::image
