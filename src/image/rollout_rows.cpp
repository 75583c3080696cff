#include "rollout_rows.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>

#include "vitscope/error.hpp"
#include "vitscope/nn/parallel.hpp"

namespace vitscope::image {

namespace {

// The (nh, rows, T) weights of a block of rows and their fused (rows, T), at most this many bytes
// at once: below glibc's largest mmap threshold (32 MiB), so that blocks reuse the heap's pages
// rather than fault in fresh ones.
constexpr std::size_t kBlockBytes = std::size_t{24} << 20;

// A float's bits, ordered as the floats are (negatives flipped below the positives): the lowest
// entries are found by counting these in two 16-bit halves, not by sorting S*S values.
std::uint32_t order_key(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

// One layer's head-fused weights over the image's T real tokens, formed a block of rows at a time.
class FusedLayer {
 public:
  FusedLayer(const ImageAttention& attention, const nn::ModulePath& path, HeadFusion fusion)
      : attention_(attention), path_(path), fusion_(fusion), T_(attention.sequence.size()) {
    const std::size_t heads = attention.scored.at(path).scores->heads();
    block_ = std::max<std::size_t>(1, kBlockBytes / ((heads + 1) * T_ * sizeof(float)));
  }

  std::size_t size() const { return T_; }

  // f(first_row, fused (rows, T)) for each block, in row order.
  template <class F>
  void for_each_block(F f) const {
    std::vector<std::size_t> rows;
    for (std::size_t r0 = 0; r0 < T_; r0 += block_) {
      rows.resize(std::min(T_, r0 + block_) - r0);
      std::iota(rows.begin(), rows.end(), r0);
      Tensor2 fused = fuse_heads(attention_.sequence_rows(path_, rows), fusion_);
      f(r0, fused);
    }
  }

 private:
  const ImageAttention& attention_;
  nn::ModulePath path_;
  HeadFusion fusion_;
  std::size_t T_ = 0, block_ = 1;
};

// The discarded entries of a layer: every key below `key`, and the first `equal` entries equal
// to it in row-major order, as attention_rollout's index-ordered ties.
struct Discard {
  std::uint32_t key = 0;
  std::size_t equal = 0;
  bool any = false;
};

constexpr std::size_t kBins = std::size_t{1} << 16;  // one per value of 16 bits of a key

// What a pass of find_discard counts: the high 16 bits of every entry, the low 16 bits of the
// entries in a window of buckets, or both.
enum class Pass {
  high,               // the high bits only
  high_and_guessed,   // and the low bits of a window around a guess at the threshold's bucket,
                      // the bucket the first block alone gives for its share of the count
  low_in_bucket,      // the low bits of one given bucket only
};

// A pass's counts, one set of tables per thread.
struct BucketCounts {
  static constexpr std::size_t kWindow = 8;  // buckets each side of the guess
  static constexpr std::size_t kGuessedBuckets = 2 * kWindow + 1;
  std::vector<std::vector<std::size_t>> high;    // per thread, kBins (or none)
  std::vector<std::vector<std::size_t>> window;  // per thread, buckets x kBins
  std::size_t window_first = 0;
  std::size_t window_buckets = 0;
};

// The layers worth a guessed window: those with at least as many entries as its tables.
bool guessed_window_pays(std::size_t T) { return T * T >= BucketCounts::kGuessedBuckets * kBins; }

std::size_t threads_for_counts() { return static_cast<std::size_t>(std::max(1, num_threads())); }

BucketCounts count_buckets(const FusedLayer& layer, std::size_t count, Pass pass, std::size_t bucket = 0) {
  const std::size_t parts = threads_for_counts();
  const bool count_high = pass != Pass::low_in_bucket;
  BucketCounts c;
  c.window_buckets = pass == Pass::high ? 0 : pass == Pass::low_in_bucket ? 1 : BucketCounts::kGuessedBuckets;
  c.window_first = bucket;
  c.high.assign(parts, std::vector<std::size_t>(count_high ? kBins : 0, 0));
  c.window.assign(parts, std::vector<std::size_t>(c.window_buckets * kBins, 0));
  const double share = static_cast<double>(count) / (static_cast<double>(layer.size()) * layer.size());
  bool placed = pass != Pass::high_and_guessed;
  layer.for_each_block([&](std::size_t, const Tensor2& fused) {
    const std::size_t n = fused.size(), step = (n + parts - 1) / parts;
    const auto scan = [&](bool high, bool window) {
      parallel_for(parts, 1, [&](std::size_t begin, std::size_t end) {
        for (std::size_t part = begin; part < end; ++part) {
          const float* v = fused.data();
          for (std::size_t e = part * step; e < std::min(n, (part + 1) * step); ++e) {
            const std::uint32_t key = order_key(v[e]);
            if (high) ++c.high[part][key >> 16];
            const std::size_t slot = (key >> 16) - c.window_first;  // wraps below the window
            if (window && slot < c.window_buckets) ++c.window[part][slot * kBins + (key & 0xFFFFu)];
          }
        }
      });
    };
    if (placed) {
      scan(count_high, c.window_buckets > 0);
      return;
    }
    // The first block: its high bits, the window placed from them, then its low bits.
    scan(true, false);
    const std::size_t wanted = std::max<std::size_t>(1, static_cast<std::size_t>(share * static_cast<double>(n)));
    std::size_t below = 0, guess = 0;
    for (;; ++guess) {
      std::size_t in_bucket = 0;
      for (const auto& h : c.high) in_bucket += h[guess];
      if (below + in_bucket >= wanted || guess + 1 == kBins) break;
      below += in_bucket;
    }
    c.window_first = guess > BucketCounts::kWindow ? guess - BucketCounts::kWindow : 0;
    placed = true;
    scan(false, true);
  });
  return c;
}

// The count-th lowest key, by a histogram of the high 16 bits, then of the low 16 within its
// bucket. On large layers the first pass also counts the low bits of a window of buckets around
// a guess, so the second pass is needed only when the bucket falls outside it.
Discard find_discard(const FusedLayer& layer, std::size_t count) {
  if (count == 0) return {};
  BucketCounts c = count_buckets(layer, count, guessed_window_pays(layer.size()) ? Pass::high_and_guessed : Pass::high);
  std::vector<std::size_t> high(kBins, 0);
  for (const auto& h : c.high) {
    for (std::size_t b = 0; b < kBins; ++b) high[b] += h[b];
  }
  std::size_t below = 0, top = 0;
  while (below + high[top] < count) below += high[top++];
  if (top - c.window_first >= c.window_buckets) {
    c = BucketCounts{};  // freed before the second pass allocates its own
    c = count_buckets(layer, count, Pass::low_in_bucket, top);
  }
  const std::size_t slot = top - c.window_first;
  std::vector<std::size_t> low(kBins, 0);
  for (const auto& w : c.window) {
    for (std::size_t b = 0; b < kBins; ++b) low[b] += w[slot * kBins + b];
  }
  std::size_t bottom = 0;
  while (below + low[bottom] < count) below += low[bottom++];
  return {static_cast<std::uint32_t>(top << 16 | bottom), count - below, true};
}

// Zeroes the discarded entries of row i (of T), `equal` of the ties at the discard key among them
// (the first ones, left to right).
void drop_entries(float* row, std::size_t T, std::size_t i, Discard discard, std::size_t equal,
                  bool keep_first) {
  for (std::size_t j = 0; j < T; ++j) {
    const std::uint32_t key = order_key(row[j]);
    const bool dropped = key < discard.key || (key == discard.key && equal > 0);
    if (key == discard.key && dropped) --equal;
    if (dropped && !(keep_first && i == 0 && j == 0)) row[j] = 0.0f;
  }
}

// vectors (R,T) -> vectors (R,T) times one rollout step: v A, where A is the layer's fused
// weights with the discarded entries zeroed and each row through add_identity_and_normalise.
// Rows are dropped and normalised in parallel; the products in parallel over columns, each
// column summed over the rows in order, so the sums do not depend on the threads.
std::vector<double> times_step(const FusedLayer& layer, Discard discard, bool keep_first,
                               const std::vector<double>& vectors, std::size_t R) {
  const std::size_t T = layer.size();
  constexpr std::size_t kColumns = 1024;  // a column chunk of R output vectors stays in L1/L2
  std::vector<double> out(R * T, 0.0);
  std::vector<std::size_t> equal;  // per row of a block: the ties at the discard key it drops
  layer.for_each_block([&](std::size_t r0, Tensor2& fused) {
    const std::size_t rows = fused.shape(0);
    // 1. Ties are dropped in row-major order: each row's share of the ties left.
    equal.assign(rows, 0);
    if (discard.any && discard.equal > 0) {
      parallel_for(rows, 1, [&](std::size_t begin, std::size_t end) {
        for (std::size_t r = begin; r < end; ++r) {
          const float* row = &fused(r, 0);
          equal[r] = static_cast<std::size_t>(std::count_if(row, row + T, [&](float v) {
            return order_key(v) == discard.key;
          }));
        }
      });
      for (std::size_t r = 0; r < rows; ++r) {
        const std::size_t drop = std::min(equal[r], discard.equal);
        equal[r] = drop;
        discard.equal -= drop;
      }
    }
    // 2. Each row dropped and normalised.
    parallel_for(rows, 1, [&](std::size_t begin, std::size_t end) {
      for (std::size_t r = begin; r < end; ++r) {
        float* row = &fused(r, 0);
        if (discard.any) drop_entries(row, T, r0 + r, discard, equal[r], keep_first);
        add_identity_and_normalise(row, r0 + r, T);
      }
    });
    // 3. out += vectors[:, rows] · block.
    parallel_for((T + kColumns - 1) / kColumns, 1, [&](std::size_t begin, std::size_t end) {
      const std::size_t j0 = begin * kColumns, j1 = std::min(T, end * kColumns);
      for (std::size_t r = 0; r < rows; ++r) {
        const float* row = &fused(r, 0);
        for (std::size_t v = 0; v < R; ++v) {
          const double weight = vectors[v * T + r0 + r];
          if (weight == 0.0) continue;
          double* to = out.data() + v * T;
          for (std::size_t j = j0; j < j1; ++j) to[j] += weight * row[j];
        }
      }
    });
  });
  return out;
}

// Columns X.. of vector v, as floats.
std::vector<float> patch_columns(const std::vector<double>& vectors, std::size_t v, std::size_t T,
                                 std::size_t X) {
  std::vector<float> out(T - X);
  for (std::size_t j = X; j < T; ++j) out[j - X] = static_cast<float>(vectors[v * T + j]);
  return out;
}

Tensor2 grid_map(const std::vector<float>& values, std::array<std::size_t, 2> grid) {
  Tensor2 map = Tensor2::from_shape({grid[0], grid[1]});
  std::copy(values.begin(), values.end(), map.begin());
  return map;
}

}  // namespace

std::size_t rollout_counts_bytes(std::size_t tokens) {
  // A small layer's two tables a thread (1 MiB) are within what the estimate rounds over.
  if (!guessed_window_pays(tokens)) return 0;
  return threads_for_counts() * (1 + BucketCounts::kGuessedBuckets) * kBins * sizeof(std::size_t);
}

std::size_t discarded_entries(std::size_t entries, float discard_ratio) {
  return static_cast<std::size_t>(std::floor(entries * discard_ratio));
}

void add_identity_and_normalise(float* row, std::size_t i, std::size_t S) {
  double total = 0;
  for (std::size_t j = 0; j < S; ++j) {
    row[j] = 0.5f * (row[j] + (i == j ? 1.0f : 0.0f));
    total += row[j];
  }
  for (std::size_t j = 0; j < S; ++j) row[j] = static_cast<float>(row[j] / total);
}

ImageRollout rollout_rows(const ImageAttention& attention, const std::vector<nn::ModulePath>& layers,
                          HeadFusion fusion, float discard_ratio, bool keep_first,
                          const std::vector<std::size_t>& point_tokens) {
  if (layers.empty()) throw Error("bad_attention_input", "rollout needs at least one layer");
  if (!(discard_ratio >= 0.0f && discard_ratio < 1.0f)) {
    throw Error("bad_attention_input", "the discard ratio must be in [0, 1)");
  }
  const std::size_t X = attention.num_prefix_tokens, T = attention.sequence.size(), S = T - X;
  // Row vectors e_t^T of the rollout R = A_n ... A_1, carried back from the last layer: the
  // points' tokens, the mean of the patch tokens' rows, and the CLS token's.
  const std::size_t P = point_tokens.size(), R = P + 1 + (keep_first ? 1 : 0);
  std::vector<double> vectors(R * T, 0.0);
  for (std::size_t p = 0; p < P; ++p) vectors[p * T + X + point_tokens.at(p)] = 1.0;
  for (std::size_t t = X; t < T; ++t) vectors[P * T + t] = 1.0 / static_cast<double>(S);
  if (keep_first) vectors[(P + 1) * T] = 1.0;
  for (auto layer = layers.rbegin(); layer != layers.rend(); ++layer) {
    if (!attention.scored.count(*layer)) {
      throw Error("bad_attention_input", "rollout needs every encoder layer captured the same way");
    }
    const FusedLayer fused(attention, *layer, fusion);
    const Discard discard = find_discard(fused, discarded_entries(T * T, discard_ratio));
    vectors = times_step(fused, discard, keep_first, vectors, R);
  }
  ImageRollout result;
  result.points = Tensor2::from_shape({P, S});
  for (std::size_t p = 0; p < P; ++p) {
    const std::vector<float> row = patch_columns(vectors, p, T, X);
    std::copy(row.begin(), row.end(), &result.points(p, 0));
  }
  result.mean = grid_map(patch_columns(vectors, P, T, X), attention.grid);
  if (keep_first) result.cls = grid_map(patch_columns(vectors, P + 1, T, X), attention.grid);
  return result;
}

}  // namespace vitscope::image
