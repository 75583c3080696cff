#pragma once
// vitscope's compute kernels (internal to the library): the GEMM every projection uses, the
// attention core, and the element-wise work (activations, LayerNorm).
//
// Three levels sit behind one interface, the best the CPU has chosen once per process:
//  * avx512 (x86-64 CPUs with AVX-512F/BW/DQ/VL): register-blocked GEMM micro-kernels (12 x 32)
//    with fused epilogues (bias, scale, activation), vectorised exp / erf, all threaded over
//    vitscope's pool (include/vitscope/nn/parallel.hpp), whatever kernels the BLAS library
//    would pick;
//  * avx2 (x86-64 CPUs with AVX2 and FMA): the same drivers on 6 x 16 micro-kernels, softmax,
//    GELU and LayerNorm vectorised 8 wide;
//  * portable: cblas_sgemm (OpenBLAS or BLIS), scalar loops with std::exp / std::erf.
// The environment variable VITSCOPE_SIMD caps the level: 0 (portable), avx2, avx512.
// All give PyTorch's results within float rounding (well inside the 1e-4 parity bound).
// At the avx512 level, on CPUs with AVX-512 BF16, set_precision(Precision::bf16)
// (vitscope/nn/kernel_level.hpp) runs gemm_nt on bf16-rounded operands instead.

#include <cstddef>
#include <memory>

namespace vitscope::nn::kernels {

// A growable, uninitialised, 64-byte-aligned float buffer kept between calls: hot paths hold
// one per thread and use (thread_local), so layers reuse the same memory.
class Scratch {
 public:
  float* get(std::size_t n);  // at least n floats; earlier contents are not kept on growth

 private:
  struct Free {
    void operator()(float* p) const;
  };
  std::unique_ptr<float, Free> data_;
  std::size_t size_ = 0;
};

enum class Level { portable, avx2, avx512 };
Level level();

enum class Act { none, relu, gelu };

// C (M x N, row stride ldc) = act(A (M x K, row stride lda) * B^T + bias), B (N x K, row
// stride ldb) as torch.nn.Linear stores its weight, bias (N) or null. Threaded.
void gemm_nt(std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda,
             const float* B, std::size_t ldb, const float* bias, float* C, std::size_t ldc,
             Act act);

// In place, element-wise, threaded.
void activation(Act act, float* x, std::size_t n);

// y (rows x width) = LayerNorm(x) * weight + bias over each row; y may be x. Threaded.
void layer_norm(const float* x, float* y, std::size_t rows, std::size_t width,
                const float* weight, const float* bias, float eps);

// A sequence tensor seen per head: element (i, n, c) at data[i * stride_i + n * stride_n + c],
// where c = head * head_dim + d. Both layouts, (len, N, ·) and (N, len, ·), fit.
struct SeqView {
  const float* data = nullptr;
  std::size_t stride_i = 0;
  std::size_t stride_n = 0;
};

struct AttentionArgs {
  std::size_t batch = 0;     // N
  std::size_t heads = 0;     // nh
  std::size_t head_dim = 0;  // Dh
  std::size_t L = 0;         // queries
  std::size_t S = 0;         // keys, extra bias_kv / zero-attention keys included
  SeqView q, k, v;           // (L, N, nh*Dh), (S, N, nh*Dh), (S, N, nh*Dh)
  const float* k_packed = nullptr;  // k as pack_keys packs it, or null: packed on each call
  float* out = nullptr;      // (L, N, nh*Dh), addressed like q with out_stride_*; null: weights only
  std::size_t out_stride_i = 0;
  std::size_t out_stride_n = 0;
  float scale = 1.0f;        // scores = scale * q k^T
  // Additive masks over the first S_mask keys (the extra keys are never masked):
  const float* attn_mask = nullptr;  // (planes, L, S_mask), planes 1 or N*nh
  std::size_t attn_mask_planes = 0;
  const float* key_padding = nullptr;  // (N, S_mask)
  std::size_t S_mask = 0;
  float* weights = nullptr;  // (N, nh, L, S) softmax weights, or null: never materialised
};

// out = softmax(scale * q k^T + masks) v per batch and head, blocked over queries: the scores
// live in per-thread (block x S) scratch, never as (nh x L x S) unless weights are asked for.
// A query whose keys are all masked gets zero weights and a zero output.
void attention(const AttentionArgs& args);

// For many attention calls over the same keys (AttentionScores forms rows of weights block by
// block): the keys packed once, as attention() would pack them on each call. The floats
// pack_keys writes for args' batch, heads, head_dim, S and k; 0 on the portable level, which
// reads keys in place and ignores k_packed.
std::size_t packed_keys_floats(const AttentionArgs& args);
void pack_keys(const AttentionArgs& args, float* out);

// Epilogue of a micro-tile: acc * alpha * row_scale[i] (+ bias[j]) (+ C) -> act -> C.
struct Epilogue {
  float alpha = 1.0f;
  const float* row_scale = nullptr;
  const float* bias = nullptr;
  bool accumulate = false;
  Act act = Act::none;
};

// The AVX-512 leaves (kernels_avx512.cpp): raw pointers only, called by the drivers above.
namespace avx512 {

constexpr std::size_t MR = 12;  // rows of a micro-tile
constexpr std::size_t NR = 32;  // columns of a micro-tile (two 16-float vectors)

bool supported();

// B (N x K, ldb) rows [n0, n0+cols) and columns [k0, k0+kc) -> panels of NR columns:
// out[p * kc * NR + k * NR + j] = B[n0 + p*NR + j][k0 + k], zeros past `cols`.
void pack_b_transposed(const float* B, std::size_t ldb, std::size_t cols, std::size_t kc,
                       float* out);
// C (rows x cols) from A (rows x K, row stride lda, unpacked) and B whose k-th row of `cols`
// (<= NR) columns is at B + k * ldb. rows <= MR.
void micro_tile(std::size_t rows, std::size_t cols, std::size_t K, const float* A,
                std::size_t lda, const float* B, std::size_t ldb, float* C, std::size_t ldc,
                const Epilogue& epilogue);

// bfloat16 GEMM (AVX-512 BF16): the same panels and tiles as above, with each 32-bit word a pair
// of bf16 values (element k in the low half, k + 1 in the high half) and K counted in pairs.
bool bf16_supported();
// A (rows x K, lda) -> out (rows x ceil(K/2) words, row stride ldo), rounded to nearest even;
// an odd K's last pair has a zero high half.
void to_bf16_pairs(const float* A, std::size_t lda, std::size_t rows, std::size_t K, float* out,
                   std::size_t ldo);
// pack_b_transposed in pairs: out[p * ceil(kc/2) * NR + q * NR + j] holds B[n0 + p*NR + j][k0 + 2q]
// and [k0 + 2q + 1].
void pack_b_bf16(const float* B, std::size_t ldb, std::size_t cols, std::size_t kc, float* out);
// micro_tile over `pairs` pairs of A's and B's words, products accumulated in fp32; the
// epilogue's row_scale is not applied.
void micro_tile_bf16(std::size_t rows, std::size_t cols, std::size_t pairs, const float* A,
                     std::size_t lda, const float* B, std::size_t ldb, float* C, std::size_t ldc,
                     const Epilogue& epilogue);
// Softmax of row[0..n) in place after adding mask_row and padding_row (each null or n_mask
// long) to its first n_mask entries. Returns the factor that normalises it: with normalize the
// row is already normalised and 1 is returned; a row with every entry -inf becomes zeros and 0
// is returned.
float softmax_row(float* row, std::size_t n, const float* mask_row, const float* padding_row,
                  std::size_t n_mask, bool normalize);

void activation(Act act, float* x, std::size_t n);
void layer_norm_rows(const float* x, float* y, std::size_t rows, std::size_t width,
                     const float* weight, const float* bias, float eps);

}  // namespace avx512

// The AVX2 leaves (kernels_avx2.cpp), same contracts as their avx512 namesakes, on tiles of
// 6 x 16: 12 accumulators of 8 floats, two vectors of B and a broadcast A fill 15 of the 16
// registers.
namespace avx2 {

constexpr std::size_t MR = 6;
constexpr std::size_t NR = 16;

bool supported();
void pack_b_transposed(const float* B, std::size_t ldb, std::size_t cols, std::size_t kc,
                       float* out);
void micro_tile(std::size_t rows, std::size_t cols, std::size_t K, const float* A,
                std::size_t lda, const float* B, std::size_t ldb, float* C, std::size_t ldc,
                const Epilogue& epilogue);
float softmax_row(float* row, std::size_t n, const float* mask_row, const float* padding_row,
                  std::size_t n_mask, bool normalize);
void activation(Act act, float* x, std::size_t n);
void layer_norm_rows(const float* x, float* y, std::size_t rows, std::size_t width,
                     const float* weight, const float* bias, float eps);

}  // namespace avx2

}  // namespace vitscope::nn::kernels
