#pragma once
// Classification as a user reads it: softmax probabilities of a logits row, best classes first.

#include <cstddef>
#include <string>
#include <vector>

namespace vitscope::image {

struct ClassScore {
  std::size_t index = 0;
  std::string name;
  double probability = 0;
};

// logits (K) -> the `keep` most probable classes under softmax, best first (ties by index);
// names[k] names class k ("class k" where the file names none).
std::vector<ClassScore> top_classes(const float* logits, std::size_t K,
                                    const std::vector<std::string>& names, std::size_t keep);

}  // namespace vitscope::image
