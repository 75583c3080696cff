#include "vitscope/gallery/view_titles.hpp"

#include <utility>
#include <vector>

namespace vitscope::gallery {

namespace {

// Titles of the views a page shows, in the order it shows them; other kinds are listed as files.
const std::vector<std::pair<std::string, std::string>> kViewTitles = {
    {"classes", "Class of each token"},
    {"pca", "Features: first three principal components as RGB"},
    {"token_norm", "Features: each token's norm"},
    {"channels", "Features: the strongest channels"},
    {"attention_points", "Encoder self-attention of the token under each point (heads fused)"},
    {"attention_heads", "Head montage: fused, then every head, per point"},
    {"attention_masks", "Masks: the tokens holding the top share of each map's attention"},
    {"attention_cls", "The CLS token's attention over the patches: fused, then every head"},
    {"attention_cls_masks", "Masks: the patches holding the top share of the CLS token's attention"},
    {"attention_rollout",
     "Attention rollout through the encoder: the CLS token's (with one), per point, over all tokens"},
    {"attention_cross", "Decoder cross-attention"},
};

}  // namespace

std::string view_title(const std::string& kind) {
  const int place = view_place(kind);
  return place < 0 ? kind : kViewTitles[place].second;
}

int view_place(const std::string& kind) {
  for (std::size_t i = 0; i < kViewTitles.size(); ++i) {
    if (kViewTitles[i].first == kind) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace vitscope::gallery
