#pragma once
// The rollout of an image whose encoder layers were captured as scores: only the rows drawn are
// formed, never an (S,S) matrix. Shared with attention.cpp: the steps both rollouts take alike.

#include <cstddef>
#include <vector>

#include "vitscope/image/attention.hpp"

namespace vitscope::image {

// What rollout_rows's counting of the fused weights takes besides its block of rows, in bytes,
// for layers over `tokens` tokens.
std::size_t rollout_counts_bytes(std::size_t tokens);

// How many of a layer's `entries` fused weights the discard ratio zeroes.
std::size_t discarded_entries(std::size_t entries, float discard_ratio);

// Row i of a rollout step, its discarded entries zeroed, in place: (a + I) / 2 with the row
// renormalised to sum to 1 (summed in double).
void add_identity_and_normalise(float* row, std::size_t i, std::size_t S);

// image_rollout over `layers` (first layer first), all captured as scores.
ImageRollout rollout_rows(const ImageAttention& attention, const std::vector<nn::ModulePath>& layers,
                          HeadFusion fusion, float discard_ratio, bool keep_first,
                          const std::vector<std::size_t>& point_tokens);

}  // namespace vitscope::image
