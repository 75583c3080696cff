// Drivers of vitscope's kernels (see kernels.hpp): blocking, threading and scratch buffers around
// the AVX-512 or AVX2 leaves, and the portable cblas paths with scalar element-wise work.

#include "kernels.hpp"

#include <cblas.h>  // OpenBLAS's or BLIS's, as CMake's VITSCOPE_BLAS chose

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <type_traits>

#include "blas_threads.hpp"
#include "vitscope/error.hpp"
#include "vitscope/nn/kernel_level.hpp"
#include "vitscope/nn/parallel.hpp"

namespace vitscope::nn::kernels {

namespace {

// GEMM blocking: jobs of up to kNcMax columns of C; k blocks of up to kKcMax so a micro-kernel's
// panel of packed B (kc x NR) stays in L1; kMc rows at a time; A is read in place.
constexpr std::size_t kKcMax = 384;
constexpr std::size_t kNcMax = 256;
constexpr std::size_t kMc = 96;  // 8 tiles of 12 rows, 16 of 6
// Attention: at most kQueryBlock queries per work item, fewer for long sequences so the
// item's (queries x S) scores stay within about kScoresBytes (L2); the products with the values
// run over kKeyChunk keys at a time, so a chunk of values and of scores stays in L1.
constexpr std::size_t kQueryBlock = 48;  // a multiple of both levels' MR
constexpr std::size_t kScoresBytes = 256 * 1024;
constexpr std::size_t kKeyChunk = 256;
// Below this many multiply-adds a GEMM runs on the calling thread alone.
constexpr std::size_t kParallelMacs = std::size_t{1} << 18;

std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

// set_precision's choice, read by every GEMM.
std::atomic<Precision> gemm_precision{Precision::fp32};

Level detect_level() {
  Level cap = Level::avx512;
  if (const char* env = std::getenv("VITSCOPE_SIMD")) {
    if (std::strcmp(env, "0") == 0 || std::strcmp(env, "portable") == 0) cap = Level::portable;
    if (std::strcmp(env, "avx2") == 0) cap = Level::avx2;
  }
  if (cap == Level::avx512 && avx512::supported()) return Level::avx512;
  if (cap != Level::portable && avx2::supported()) return Level::avx2;
  return Level::portable;
}

float gelu_scalar(float x) {
  constexpr float inv_sqrt2 = 0.70710678118654752440f;
  return 0.5f * x * (1.0f + std::erf(x * inv_sqrt2));
}

void activation_scalar(Act act, float* x, std::size_t n) {
  if (act == Act::relu) {
    for (std::size_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
  } else if (act == Act::gelu) {
    for (std::size_t i = 0; i < n; ++i) x[i] = gelu_scalar(x[i]);
  }
}

// --- GEMM ----------------------------------------------------------------------------------------

void gemm_nt_blas(std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda,
                  const float* B, std::size_t ldb, const float* bias, float* C, std::size_t ldc,
                  Act act) {
  float beta = 0.0f;
  if (bias != nullptr) {
    for (std::size_t r = 0; r < M; ++r) std::copy(bias, bias + N, C + r * ldc);
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(M), static_cast<int>(N),
              static_cast<int>(K), 1.0f, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta,
              C, static_cast<int>(ldc));
  if (act == Act::none) return;
  if (ldc == N) {
    activation(act, C, M * N);
  } else {
    for (std::size_t r = 0; r < M; ++r) activation(act, C + r * ldc, N);
  }
}

// Walks the 64-byte lines of a (rows x kc) block of B (row stride ldb) and prefetches them into
// L2 a few at a time, so the next block's weights stream in while this block computes.
class BlockPrefetcher {
 public:
  BlockPrefetcher() = default;
  BlockPrefetcher(const float* base, std::size_t ldb, std::size_t rows, std::size_t kc)
      : row_(base), ldb_(ldb), rows_(rows), kc_(kc) {}

  std::size_t lines() const { return rows_ * ceil_div(kc_, kLine); }

  void next(std::size_t count) {
    for (; count > 0 && rows_ > 0; --count) {
      __builtin_prefetch(row_ + col_, 0, 2);
      col_ += kLine;
      if (col_ >= kc_) {
        col_ = 0;
        row_ += ldb_;
        --rows_;
      }
    }
  }

 private:
  static constexpr std::size_t kLine = 16;  // floats per 64-byte line
  const float* row_ = nullptr;
  std::size_t ldb_ = 0, rows_ = 0, kc_ = 0, col_ = 0;
};

// A level's leaves, for the drivers below to be written once.
struct Avx512 {
  static constexpr std::size_t MR = avx512::MR, NR = avx512::NR;
  static constexpr auto pack_b_transposed = avx512::pack_b_transposed;
  static constexpr auto micro_tile = avx512::micro_tile;
  static constexpr auto softmax_row = avx512::softmax_row;
};
struct Avx2 {
  static constexpr std::size_t MR = avx2::MR, NR = avx2::NR;
  static constexpr auto pack_b_transposed = avx2::pack_b_transposed;
  static constexpr auto micro_tile = avx2::micro_tile;
  static constexpr auto softmax_row = avx2::softmax_row;
};
static_assert(kMc % Avx512::MR == 0 && kMc % Avx2::MR == 0, "row blocks of whole tiles");

// f(Avx512{}) or f(Avx2{}), the level's leaves; false on the portable level, which has none.
template <class F>
bool with_leaves(F f) {
  switch (level()) {
    case Level::avx512:
      f(Avx512{});
      return true;
    case Level::avx2:
      f(Avx2{});
      return true;
    default:
      return false;
  }
}
static_assert(kQueryBlock % Avx512::MR == 0 && kQueryBlock % Avx2::MR == 0,
              "query blocks of whole tiles");

// In bf16 (with the Avx512 leaves only: their pairs fill 32-column panels), A is first rounded
// to pairs of bf16 (one 32-bit word per pair) and B is packed in pairs: the same blocking then
// runs over words, K counted in pairs, k blocks kept even.
template <class Leaves>
void gemm_nt_simd(std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda,
                  const float* B, std::size_t ldb, const float* bias, float* C, std::size_t ldc,
                  Act act, bool bf16) {
  constexpr std::size_t MR = Leaves::MR;
  constexpr std::size_t NR = Leaves::NR;
  std::size_t k_blocks = ceil_div(K, kKcMax);
  std::size_t kc_max = ceil_div(K, k_blocks);
  if (bf16) {
    kc_max = ceil_div(kc_max, 2) * 2;
    k_blocks = ceil_div(K, kc_max);
  }
  const auto words = [bf16](std::size_t k) { return bf16 ? ceil_div(k, 2) : k; };
  const std::size_t threads =
      M * N * K < kParallelMacs ? 1 : static_cast<std::size_t>(std::max(1, num_threads()));
  // Column jobs of whole panels, at least one per thread when there are enough panels; rows
  // are split too when there are fewer column jobs than threads.
  const std::size_t panels = ceil_div(N, NR);
  std::size_t col_jobs = ceil_div(N, kNcMax);
  if (panels >= threads) col_jobs = ceil_div(col_jobs, threads) * threads;  // balanced
  col_jobs = std::min(col_jobs, panels);
  const std::size_t panels_per_job = ceil_div(panels, col_jobs);
  col_jobs = ceil_div(panels, panels_per_job);
  const std::size_t tiles = ceil_div(M, MR);
  const std::size_t row_jobs = col_jobs >= threads ? 1 : std::min(tiles, ceil_div(threads, col_jobs));
  const std::size_t rows_per_job = ceil_div(tiles, row_jobs) * MR;
  const std::size_t jobs = col_jobs * ceil_div(M, rows_per_job);

  const float* a = A;
  std::size_t a_stride = lda;
  thread_local Scratch a_scratch;
  if (bf16) {
    a_stride = words(K);
    float* pairs = a_scratch.get(M * a_stride);
    parallel_for(M, std::max<std::size_t>(1, 16384 / a_stride), [&](std::size_t begin, std::size_t end) {
      avx512::to_bf16_pairs(A + begin * lda, lda, end - begin, K, pairs + begin * a_stride, a_stride);
    });
    a = pairs;
  }

  // Each job packs its columns of B whole (K x cols, as k blocks of panels), then walks its rows
  // in blocks of kMc: the rows' slice of C stays in L2 across the k blocks, each k block's
  // panel (kc x NR) in L1. Meanwhile the next job's columns of B stream into L2.
  const std::size_t job_b_floats = panels_per_job * NR * words(K);
  parallel_for(jobs, 1, [&](std::size_t begin, std::size_t end) {
    thread_local Scratch b_scratch;
    float* Bp = b_scratch.get(job_b_floats);
    for (std::size_t job = begin; job < end; ++job) {
      const std::size_t j0 = (job % col_jobs) * panels_per_job * NR;
      const std::size_t i0 = (job / col_jobs) * rows_per_job;
      const std::size_t cols = std::min(N, j0 + panels_per_job * NR) - j0;
      const std::size_t i_end = std::min(M, i0 + rows_per_job);
      const std::size_t cols_padded = ceil_div(cols, NR) * NR;
      for (std::size_t k0 = 0; k0 < K; k0 += kc_max) {
        const std::size_t kc = std::min(K, k0 + kc_max) - k0;
        float* panel = Bp + words(k0) * cols_padded;
        if (bf16) {
          avx512::pack_b_bf16(B + j0 * ldb + k0, ldb, cols, kc, panel);
        } else {
          Leaves::pack_b_transposed(B + j0 * ldb + k0, ldb, cols, kc, panel);
        }
      }
      BlockPrefetcher prefetch;
      if (job + 1 < end && ((job + 1) / col_jobs) * rows_per_job < M) {
        const std::size_t nj0 = ((job + 1) % col_jobs) * panels_per_job * NR;
        prefetch = BlockPrefetcher(B + nj0 * ldb, ldb,
                                   std::min(N, nj0 + panels_per_job * NR) - nj0, K);
      }
      const std::size_t calls = ceil_div(i_end - i0, MR) * k_blocks * ceil_div(cols, NR);
      const std::size_t lines_per_call = ceil_div(prefetch.lines(), calls);
      for (std::size_t ic = i0; ic < i_end; ic += kMc) {
        const std::size_t ic_end = std::min(i_end, ic + kMc);
        for (std::size_t kb = 0; kb < k_blocks; ++kb) {
          const std::size_t k0 = kb * kc_max;
          const std::size_t steps = words(std::min(K, k0 + kc_max) - k0);
          const float* bp = Bp + words(k0) * cols_padded;
          Epilogue e;
          e.accumulate = kb > 0;
          e.act = kb + 1 == k_blocks ? act : Act::none;
          for (std::size_t j = 0; j < cols; j += NR) {
            e.bias = kb == 0 && bias != nullptr ? bias + j0 + j : nullptr;
            for (std::size_t i = ic; i < ic_end; i += MR) {
              prefetch.next(lines_per_call);
              const std::size_t rows = std::min(MR, ic_end - i);
              const float* a_tile = a + i * a_stride + words(k0);
              float* c_tile = C + i * ldc + j0 + j;
              if (bf16) {
                avx512::micro_tile_bf16(rows, std::min(NR, cols - j), steps, a_tile, a_stride,
                                        bp + j * steps, NR, c_tile, ldc, e);
              } else {
                Leaves::micro_tile(rows, std::min(NR, cols - j), steps, a_tile, a_stride,
                                   bp + j * steps, NR, c_tile, ldc, e);
              }
            }
          }
        }
      }
    }
  });
}

// --- Attention -----------------------------------------------------------------------------------

const float* mask_row(const AttentionArgs& a, std::size_t n, std::size_t h, std::size_t l) {
  if (a.attn_mask == nullptr) return nullptr;
  const std::size_t plane = a.attn_mask_planes == 1 ? 0 : n * a.heads + h;
  return a.attn_mask + (plane * a.L + l) * a.S_mask;
}

const float* padding_row(const AttentionArgs& a, std::size_t n) {
  return a.key_padding == nullptr ? nullptr : a.key_padding + n * a.S_mask;
}

// Scores scratch row stride: whole 32-key panels (so whole panels of either level), and not a
// multiple of 4 KiB (rows that alias in the cache would evict each other).
std::size_t scores_stride(std::size_t S) {
  std::size_t ld = ceil_div(S, 32) * 32;
  if (ld % 1024 == 0) ld += 16;
  return ld;
}

template <class Leaves>
std::size_t packed_keys_floats_simd(const AttentionArgs& a) {
  return a.batch * a.heads * ceil_div(a.S, Leaves::NR) * Leaves::NR * a.head_dim;
}

// Keys packed per batch and head as panels of NR keys (Dh x NR): the B side of q k^T.
template <class Leaves>
void pack_keys_simd(const AttentionArgs& a, float* out) {
  constexpr std::size_t NR = Leaves::NR;
  const std::size_t nh = a.heads, Dh = a.head_dim, S = a.S;
  const std::size_t panels = ceil_div(S, NR);
  parallel_for(a.batch * nh, 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t nhx = begin; nhx < end; ++nhx) {
      const std::size_t n = nhx / nh, h = nhx % nh;
      Leaves::pack_b_transposed(a.k.data + n * a.k.stride_n + h * Dh, a.k.stride_i, S, Dh,
                                out + nhx * panels * NR * Dh);
    }
  });
}

template <class Leaves>
void attention_simd(const AttentionArgs& a) {
  constexpr std::size_t MR = Leaves::MR;
  constexpr std::size_t NR = Leaves::NR;
  const std::size_t nh = a.heads, Dh = a.head_dim, L = a.L, S = a.S;
  const std::size_t panels = ceil_div(S, NR);
  // 1. The keys packed, unless the caller packed them once for many calls.
  const float* Kp = a.k_packed;
  if (Kp == nullptr) {
    thread_local Scratch k_scratch;
    float* packed = k_scratch.get(packed_keys_floats_simd<Leaves>(a));
    pack_keys_simd<Leaves>(a, packed);
    Kp = packed;
  }
  // 2. Per (batch, head, block of queries): scores, softmax, weights times values.
  const std::size_t ldp = scores_stride(S);
  const std::size_t block =
      std::clamp(kScoresBytes / (ldp * sizeof(float)) / MR * MR, MR, kQueryBlock);
  const std::size_t blocks = ceil_div(L, block);
  const bool want_weights = a.weights != nullptr;
  parallel_for(a.batch * nh * blocks, 1, [&](std::size_t begin, std::size_t end) {
    thread_local Scratch p_scratch;
    float* P = p_scratch.get(kQueryBlock * ldp);
    float row_scale[kQueryBlock];
    for (std::size_t item = begin; item < end; ++item) {
      const std::size_t nhx = item / blocks, n = nhx / nh, h = nhx % nh;
      const std::size_t l0 = (item % blocks) * block;
      const std::size_t rows = std::min(L, l0 + block) - l0;
      const float* q = a.q.data + l0 * a.q.stride_i + n * a.q.stride_n + h * Dh;
      const float* kp = Kp + nhx * panels * NR * Dh;
      // Weights alone (rows formed from scores): the scores go straight into the weights and
      // are normalised there, the same products as row * row_scale below.
      const bool weights_only = want_weights && a.out == nullptr;
      float* scores_at = weights_only ? a.weights + (nhx * L + l0) * S : P;
      const std::size_t ld = weights_only ? S : ldp;
      Epilogue scores;
      scores.alpha = a.scale;
      for (std::size_t p = 0; p < panels; ++p) {
        const std::size_t cols = std::min(NR, S - p * NR);
        for (std::size_t t = 0; t < rows; t += MR) {
          Leaves::micro_tile(std::min(MR, rows - t), cols, Dh, q + t * a.q.stride_i, a.q.stride_i,
                             kp + p * NR * Dh, NR, scores_at + t * ld + p * NR, ld, scores);
        }
      }
      for (std::size_t r = 0; r < rows; ++r) {
        float* row = scores_at + r * ld;
        // With an output the row stays unnormalised and the factor scales the output rows,
        // whether or not the weights are wanted, so asking for them never changes the output.
        row_scale[r] = Leaves::softmax_row(row, S, mask_row(a, n, h, l0 + r), padding_row(a, n),
                                           a.S_mask, weights_only);
        if (want_weights && !weights_only) {
          float* w = a.weights + ((nhx * L) + l0 + r) * S;
          const float f = row_scale[r];
          for (std::size_t j = 0; j < S; ++j) w[j] = row[j] * f;
        }
      }
      if (a.out == nullptr) continue;
      const float* v = a.v.data + n * a.v.stride_n + h * Dh;
      float* out = a.out + l0 * a.out_stride_i + n * a.out_stride_n + h * Dh;
      Epilogue values;
      for (std::size_t s0 = 0; s0 < S; s0 += kKeyChunk) {
        const std::size_t chunk = std::min(S, s0 + kKeyChunk) - s0;
        values.accumulate = s0 > 0;  // row_scale * (a + b) as row_scale * a + row_scale * b
        for (std::size_t d = 0; d < Dh; d += NR) {
          for (std::size_t t = 0; t < rows; t += MR) {
            values.row_scale = row_scale + t;
            Leaves::micro_tile(std::min(MR, rows - t), std::min(NR, Dh - d), chunk,
                               P + t * ldp + s0, ldp, v + s0 * a.v.stride_i + d, a.v.stride_i,
                               out + t * a.out_stride_i + d, a.out_stride_i, values);
          }
        }
      }
    }
  });
}

// Softmax of one row in place after the masks; see avx512::softmax_row for the contract.
float softmax_row_scalar(float* row, std::size_t n, const float* mask, const float* padding,
                         std::size_t n_mask) {
  for (std::size_t j = 0; j < n_mask; ++j) {
    if (mask) row[j] += mask[j];
    if (padding) row[j] += padding[j];
  }
  float max = -std::numeric_limits<float>::infinity();
  for (std::size_t j = 0; j < n; ++j) max = std::max(max, row[j]);
  if (max == -std::numeric_limits<float>::infinity()) {
    std::fill(row, row + n, 0.0f);
    return 0.0f;
  }
  float sum = 0.0f;
  for (std::size_t j = 0; j < n; ++j) {
    row[j] = std::exp(row[j] - max);
    sum += row[j];
  }
  const float inv = 1.0f / sum;
  for (std::size_t j = 0; j < n; ++j) row[j] *= inv;
  return 1.0f;
}

// The portable path: the same blocking over (batch, head, query block), each work item's two
// products by cblas_sgemm. Items run on vitscope's pool with the BLAS library held to one
// thread meanwhile, so the two levels never oversubscribe the cores.
void attention_blas(const AttentionArgs& a) {
  const std::size_t N = a.batch, nh = a.heads, Dh = a.head_dim, L = a.L, S = a.S;
  const std::size_t blocks = ceil_div(L, kQueryBlock);
  const auto items = [&](std::size_t begin, std::size_t end) {
    thread_local Scratch p_scratch;
    float* P = p_scratch.get(kQueryBlock * S);
    for (std::size_t item = begin; item < end; ++item) {
      const std::size_t nhx = item / blocks, n = nhx / nh, h = nhx % nh;
      const std::size_t l0 = (item % blocks) * kQueryBlock;
      const std::size_t rows = std::min(L, l0 + kQueryBlock) - l0;
      const float* q = a.q.data + l0 * a.q.stride_i + n * a.q.stride_n + h * Dh;
      const float* k = a.k.data + n * a.k.stride_n + h * Dh;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows),
                  static_cast<int>(S), static_cast<int>(Dh), a.scale, q,
                  static_cast<int>(a.q.stride_i), k, static_cast<int>(a.k.stride_i), 0.0f, P,
                  static_cast<int>(S));
      for (std::size_t r = 0; r < rows; ++r) {
        float* row = P + r * S;
        const float* mask = mask_row(a, n, h, l0 + r);
        softmax_row_scalar(row, S, mask, padding_row(a, n), a.S_mask);
        if (a.weights) {
          std::memcpy(a.weights + ((nhx * L) + l0 + r) * S, row, S * sizeof(float));
        }
      }
      if (a.out == nullptr) continue;
      const float* v = a.v.data + n * a.v.stride_n + h * Dh;
      float* out = a.out + l0 * a.out_stride_i + n * a.out_stride_n + h * Dh;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows),
                  static_cast<int>(Dh), static_cast<int>(S), 1.0f, P, static_cast<int>(S), v,
                  static_cast<int>(a.v.stride_i), 0.0f, out, static_cast<int>(a.out_stride_i));
    }
  };
  const int threads = num_threads();
  if (threads <= 1 || in_parallel_region() || N * nh * blocks < 2) {
    items(0, N * nh * blocks);
    return;
  }
  set_blas_threads(1);
  try {
    parallel_for(N * nh * blocks, 1, items);
  } catch (...) {
    set_blas_threads(threads);
    throw;
  }
  set_blas_threads(threads);
}

}  // namespace

Level level() {
  static const Level detected = detect_level();
  return detected;
}

float* Scratch::get(std::size_t n) {
  if (n > size_) {
    data_.reset(static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t{64})));
    size_ = n;
  }
  return data_.get();
}

void Scratch::Free::operator()(float* p) const { ::operator delete[](p, std::align_val_t{64}); }

void gemm_nt(std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda,
             const float* B, std::size_t ldb, const float* bias, float* C, std::size_t ldc,
             Act act) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (std::size_t r = 0; r < M; ++r) {
      for (std::size_t j = 0; j < N; ++j) C[r * ldc + j] = bias ? bias[j] : 0.0f;
      activation_scalar(act, C + r * ldc, N);
    }
    return;
  }
  const bool simd = with_leaves([&](auto leaves) {
    using Leaves = decltype(leaves);
    const bool bf16 = std::is_same_v<Leaves, Avx512> && gemm_precision.load() == Precision::bf16;
    gemm_nt_simd<Leaves>(M, N, K, A, lda, B, ldb, bias, C, ldc, act, bf16);
  });
  if (!simd) gemm_nt_blas(M, N, K, A, lda, B, ldb, bias, C, ldc, act);
}

void activation(Act act, float* x, std::size_t n) {
  if (act == Act::none || n == 0) return;
  constexpr std::size_t grain = 16384;
  const Level l = level();
  parallel_for(n, grain, [&](std::size_t begin, std::size_t end) {
    if (l == Level::avx512) {
      avx512::activation(act, x + begin, end - begin);
    } else if (l == Level::avx2) {
      avx2::activation(act, x + begin, end - begin);
    } else {
      activation_scalar(act, x + begin, end - begin);
    }
  });
}

void layer_norm(const float* x, float* y, std::size_t rows, std::size_t width,
                const float* weight, const float* bias, float eps) {
  const std::size_t grain = std::max<std::size_t>(1, 16384 / std::max<std::size_t>(width, 1));
  const Level l = level();
  parallel_for(rows, grain, [&](std::size_t begin, std::size_t end) {
    if (l == Level::avx512) {
      avx512::layer_norm_rows(x + begin * width, y + begin * width, end - begin, width, weight,
                              bias, eps);
      return;
    }
    if (l == Level::avx2) {
      avx2::layer_norm_rows(x + begin * width, y + begin * width, end - begin, width, weight,
                            bias, eps);
      return;
    }
    for (std::size_t r = begin; r < end; ++r) {
      const float* xr = x + r * width;
      float* yr = y + r * width;
      // Two passes in double: the mean, then the biased variance around it.
      double sum = 0.0;
      for (std::size_t i = 0; i < width; ++i) sum += xr[i];
      const double mean = sum / static_cast<double>(width);
      double squares = 0.0;
      for (std::size_t i = 0; i < width; ++i) squares += (xr[i] - mean) * (xr[i] - mean);
      const double rstd = 1.0 / std::sqrt(squares / static_cast<double>(width) + eps);
      for (std::size_t i = 0; i < width; ++i) {
        yr[i] = static_cast<float>((xr[i] - mean) * rstd) * weight[i] + bias[i];
      }
    }
  });
}

void attention(const AttentionArgs& args) {
  if (args.batch == 0 || args.heads == 0 || args.L == 0) return;
  if (args.S == 0 || args.head_dim == 0) {
    // No keys (or empty heads): every weight is 0 and every output is 0.
    if (args.out == nullptr) return;
    for (std::size_t l = 0; l < args.L; ++l) {
      for (std::size_t n = 0; n < args.batch; ++n) {
        std::fill_n(args.out + l * args.out_stride_i + n * args.out_stride_n,
                    args.heads * args.head_dim, 0.0f);
      }
    }
    return;
  }
  if (!with_leaves([&](auto leaves) { attention_simd<decltype(leaves)>(args); })) attention_blas(args);
}

std::size_t packed_keys_floats(const AttentionArgs& args) {
  std::size_t floats = 0;
  with_leaves([&](auto leaves) { floats = packed_keys_floats_simd<decltype(leaves)>(args); });
  return floats;
}

void pack_keys(const AttentionArgs& args, float* out) {
  with_leaves([&](auto leaves) { pack_keys_simd<decltype(leaves)>(args, out); });
}

}  // namespace vitscope::nn::kernels

namespace vitscope {

const char* kernel_level() {
  switch (nn::kernels::level()) {
    case nn::kernels::Level::avx512:
      return "avx512";
    case nn::kernels::Level::avx2:
      return "avx2";
    default:
      return "portable";
  }
}

bool bf16_supported() {
  return nn::kernels::level() == nn::kernels::Level::avx512 && nn::kernels::avx512::bf16_supported();
}

void set_precision(Precision precision) {
  if (precision == Precision::bf16 && !bf16_supported()) {
    throw Error("unsupported_precision",
                std::string("bf16 needs a CPU with AVX-512 BF16 and the avx512 kernels (this process runs ") +
                    kernel_level() +
                    (nn::kernels::level() == nn::kernels::Level::avx512 ? " without AVX-512 BF16)" : ")"));
  }
  nn::kernels::gemm_precision.store(precision);
}

Precision precision() { return nn::kernels::gemm_precision.load(); }

const char* to_string(Precision precision) { return precision == Precision::bf16 ? "bf16" : "fp32"; }

}  // namespace vitscope
