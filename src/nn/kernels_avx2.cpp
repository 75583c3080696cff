// AVX2 + FMA leaves of vitscope's kernels (see kernels.hpp), for x86-64 CPUs without AVX-512: the
// GEMM micro-tile (6 x 16) and its packing, the softmax, the exact GELU and LayerNorm, 8 floats at
// a time, with the same formulas as the AVX-512 leaves. As there, only the functions carry the
// target attribute, and nothing here instantiates a standard template.

#include "kernels.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#define VITSCOPE_HAVE_AVX2_KERNELS 1
#include <immintrin.h>
#endif

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace vitscope::nn::kernels::avx2 {

#if VITSCOPE_HAVE_AVX2_KERNELS

#define VS_TARGET __attribute__((target("avx2,fma")))
#define VS_INLINE inline __attribute__((always_inline))

bool supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

namespace {

// exp(x), as avx512::exp_ps: Cephes expf polynomial; 2^n applied as two halves so that every
// n in [-159, 128] has a normal exponent. exp(-inf) and anything below -104 give 0.
VS_TARGET VS_INLINE __m256 exp_ps(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-110.0f), x);
  x = _mm256_min_ps(_mm256_set1_ps(88.8f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i a = _mm256_srai_epi32(ni, 1);
  const __m256i b = _mm256_sub_epi32(ni, a);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 sa = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(a, bias), 23));
  const __m256 sb = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(b, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, sa), sb);
}

// Exact GELU with the Abramowitz & Stegun 7.1.26 erf, as avx512::gelu_ps.
VS_TARGET VS_INLINE __m256 gelu_ps(__m256 x) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  const __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752440f));
  const __m256 az = _mm256_andnot_ps(sign_bit, z);
  const __m256 d = _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), az, _mm256_set1_ps(1.0f));
  const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), d);
  __m256 poly = _mm256_fmadd_ps(_mm256_set1_ps(1.061405429f), t, _mm256_set1_ps(-1.453152027f));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(1.421413741f));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(-0.284496736f));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(0.254829592f));
  const __m256 e = exp_ps(_mm256_xor_ps(sign_bit, _mm256_mul_ps(az, az)));
  const __m256 erf_abs = _mm256_fnmadd_ps(_mm256_mul_ps(poly, t), e, _mm256_set1_ps(1.0f));
  const __m256 erf = _mm256_or_ps(erf_abs, _mm256_and_ps(sign_bit, z));  // sign of z
  return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x),
                       _mm256_add_ps(_mm256_set1_ps(1.0f), erf));
}

VS_TARGET VS_INLINE float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

VS_TARGET VS_INLINE double hsum_pd(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

VS_TARGET VS_INLINE float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Lanes [0, n) of 8 set, for the masked loads and stores of a partial 8-float vector.
VS_TARGET VS_INLINE __m256i first_n(std::size_t n) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n > 8 ? 8 : n)), lanes);
}

VS_TARGET VS_INLINE __m256 apply_act(Act act, __m256 v) {
  if (act == Act::relu) return _mm256_max_ps(v, _mm256_setzero_ps());
  if (act == Act::gelu) return gelu_ps(v);
  return v;
}

// One 8-column vector of a tile row through the epilogue: columns under `mask`, or all 8 when
// `full`.
VS_TARGET VS_INLINE void finish(__m256 acc, float scale, const float* bias, float* c, bool full,
                                __m256i mask, const Epilogue& e) {
  if (scale != 1.0f) acc = _mm256_mul_ps(acc, _mm256_set1_ps(scale));
  if (full) {
    if (bias) acc = _mm256_add_ps(acc, _mm256_loadu_ps(bias));
    if (e.accumulate) acc = _mm256_add_ps(acc, _mm256_loadu_ps(c));
    _mm256_storeu_ps(c, apply_act(e.act, acc));
  } else {
    if (bias) acc = _mm256_add_ps(acc, _mm256_maskload_ps(bias, mask));
    if (e.accumulate) acc = _mm256_add_ps(acc, _mm256_maskload_ps(c, mask));
    _mm256_maskstore_ps(c, mask, apply_act(e.act, acc));
  }
}

// The register-blocked micro-kernel: C (R rows, cols <= 16) from A (element (i, k) at
// A[i * lda + k]) and B (k-th row of 16 at B + k * ldb): 2R accumulators of 8 floats, each A
// element broadcast once for two fused multiply-adds. With `Full`, all 16 columns, unmasked.
template <int R, bool Full>
VS_TARGET VS_INLINE void tile(std::size_t K, const float* A, std::size_t lda, const float* B,
                              std::size_t ldb, float* C, std::size_t ldc, std::size_t cols,
                              const Epilogue& e) {
  const __m256i m0 = first_n(cols);
  const __m256i m1 = first_n(cols > 8 ? cols - 8 : 0);
  const bool two = Full || cols > 8;
  __m256 c0[R], c1[R];
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i) c0[i] = c1[i] = _mm256_setzero_ps();
  const float* a = A;
  const float* b = B;
  for (std::size_t k = 0; k < K; ++k) {
    const __m256 b0 = Full ? _mm256_loadu_ps(b) : _mm256_maskload_ps(b, m0);
    const __m256 b1 = Full ? _mm256_loadu_ps(b + 8) : _mm256_maskload_ps(b + 8, m1);
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i * lda);
      c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
      if (two) c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
    }
    ++a;
    b += ldb;
  }
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i) {
    float* c = C + i * ldc;
    const float scale = e.alpha * (e.row_scale ? e.row_scale[i] : 1.0f);
    finish(c0[i], scale, e.bias, c, Full || cols >= 8, m0, e);
    if (two) finish(c1[i], scale, e.bias ? e.bias + 8 : nullptr, c + 8, Full, m1, e);
  }
}

template <int R>
VS_TARGET VS_INLINE void tile_rows(std::size_t cols, std::size_t K, const float* A,
                                   std::size_t lda, const float* B, std::size_t ldb, float* C,
                                   std::size_t ldc, const Epilogue& e) {
  if (cols == NR) {
    tile<R, true>(K, A, lda, B, ldb, C, ldc, cols, e);
  } else {
    tile<R, false>(K, A, lda, B, ldb, C, ldc, cols, e);
  }
}

// 8x8 transpose in registers: r[j] (row j) -> r[c] (column c).
VS_TARGET VS_INLINE void transpose8(__m256 r[8]) {
  __m256 t[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 2
  for (int g = 0; g < 2; ++g) {
    r[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    r[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    r[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    r[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    t[c] = _mm256_permute2f128_ps(r[c], r[4 + c], 0x20);
    t[4 + c] = _mm256_permute2f128_ps(r[c], r[4 + c], 0x31);
  }
#pragma GCC unroll 8
  for (int c = 0; c < 8; ++c) r[c] = t[c];
}

}  // namespace

VS_TARGET void pack_b_transposed(const float* B, std::size_t ldb, std::size_t cols,
                                 std::size_t kc, float* out) {
  for (std::size_t p = 0; p * NR < cols; ++p) {
    float* panel = out + p * kc * NR;
    for (std::size_t half = 0; half < 2; ++half) {
      const std::size_t j0 = p * NR + half * 8;
      const std::size_t rows = j0 < cols ? (cols - j0 < 8 ? cols - j0 : 8) : 0;
      for (std::size_t k0 = 0; k0 < kc; k0 += 8) {
        const std::size_t kn = kc - k0 < 8 ? kc - k0 : 8;
        const __m256i km = first_n(kn);
        __m256 r[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) {
          r[j] = static_cast<std::size_t>(j) < rows ? _mm256_maskload_ps(B + (j0 + j) * ldb + k0, km)
                                                    : _mm256_setzero_ps();
        }
        transpose8(r);
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) {
          if (static_cast<std::size_t>(c) < kn) _mm256_storeu_ps(panel + (k0 + c) * NR + half * 8, r[c]);
        }
      }
    }
  }
}

VS_TARGET void micro_tile(std::size_t rows, std::size_t cols, std::size_t K, const float* A,
                          std::size_t lda, const float* B, std::size_t ldb, float* C,
                          std::size_t ldc, const Epilogue& e) {
  switch (rows) {
#define VS_CASE(R)                                           \
  case R:                                                    \
    tile_rows<R>(cols, K, A, lda, B, ldb, C, ldc, e);        \
    break;
    VS_CASE(1) VS_CASE(2) VS_CASE(3) VS_CASE(4) VS_CASE(5) VS_CASE(6)
#undef VS_CASE
    default:
      break;
  }
}

VS_TARGET float softmax_row(float* row, std::size_t n, const float* mask_row,
                            const float* padding_row, std::size_t n_mask, bool normalize) {
  for (std::size_t j = 0; j < n_mask; ++j) {
    if (mask_row) row[j] += mask_row[j];
    if (padding_row) row[j] += padding_row[j];
  }
  const std::size_t full = n & ~static_cast<std::size_t>(7);
  __m256 vmax = _mm256_set1_ps(-INFINITY);
  for (std::size_t j = 0; j < full; j += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(row + j));
  float max = hmax(vmax);
  for (std::size_t j = full; j < n; ++j) max = row[j] > max ? row[j] : max;
  if (max == -INFINITY) {
    std::memset(row, 0, n * sizeof(float));
    return 0.0f;
  }
  const __m256 vm = _mm256_set1_ps(max);
  __m256 vsum = _mm256_setzero_ps();
  for (std::size_t j = 0; j < full; j += 8) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(row + j), vm));
    _mm256_storeu_ps(row + j, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  float sum = hsum(vsum);
  if (full < n) {
    float tail[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                     -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    std::memcpy(tail, row + full, (n - full) * sizeof(float));
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(tail), vm));
    _mm256_storeu_ps(tail, e);
    for (std::size_t j = full; j < n; ++j) {
      row[j] = tail[j - full];
      sum += row[j];
    }
  }
  const float inv = 1.0f / sum;
  if (!normalize) return inv;
  for (std::size_t j = 0; j < n; ++j) row[j] *= inv;
  return 1.0f;
}

VS_TARGET void activation(Act act, float* x, std::size_t n) {
  if (act == Act::none) return;
  const std::size_t full = n & ~static_cast<std::size_t>(7);
  for (std::size_t j = 0; j < full; j += 8) {
    const __m256 v = _mm256_loadu_ps(x + j);
    _mm256_storeu_ps(x + j, act == Act::relu ? _mm256_max_ps(v, _mm256_setzero_ps()) : gelu_ps(v));
  }
  if (full < n) {
    float tail[8] = {};
    std::memcpy(tail, x + full, (n - full) * sizeof(float));
    const __m256 v = _mm256_loadu_ps(tail);
    _mm256_storeu_ps(tail, act == Act::relu ? _mm256_max_ps(v, _mm256_setzero_ps()) : gelu_ps(v));
    std::memcpy(x + full, tail, (n - full) * sizeof(float));
  }
}

VS_TARGET void layer_norm_rows(const float* x, float* y, std::size_t rows, std::size_t width,
                               const float* weight, const float* bias, float eps) {
  // As the scalar path: mean, biased variance and centring in double (4 lanes), the affine part
  // in float.
  const std::size_t full = width & ~static_cast<std::size_t>(3);
  const double inv_width = 1.0 / static_cast<double>(width);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * width;
    float* yr = y + r * width;
    __m256d vsum = _mm256_setzero_pd();
    for (std::size_t j = 0; j < full; j += 4) {
      vsum = _mm256_add_pd(vsum, _mm256_cvtps_pd(_mm_loadu_ps(xr + j)));
    }
    double sum = hsum_pd(vsum);
    for (std::size_t j = full; j < width; ++j) sum += xr[j];
    const double mean = sum * inv_width;
    const __m256d vmean = _mm256_set1_pd(mean);
    __m256d vsq = _mm256_setzero_pd();
    for (std::size_t j = 0; j < full; j += 4) {
      const __m256d d = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(xr + j)), vmean);
      vsq = _mm256_fmadd_pd(d, d, vsq);
    }
    double squares = hsum_pd(vsq);
    for (std::size_t j = full; j < width; ++j) squares += (xr[j] - mean) * (xr[j] - mean);
    const double rstd = 1.0 / std::sqrt(squares * inv_width + eps);
    const __m256d vrstd = _mm256_set1_pd(rstd);
    for (std::size_t j = 0; j < full; j += 4) {
      const __m256d d = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(xr + j)), vmean);
      const __m128 n = _mm256_cvtpd_ps(_mm256_mul_pd(d, vrstd));
      _mm_storeu_ps(yr + j, _mm_fmadd_ps(n, _mm_loadu_ps(weight + j), _mm_loadu_ps(bias + j)));
    }
    for (std::size_t j = full; j < width; ++j) {
      yr[j] = static_cast<float>((xr[j] - mean) * rstd) * weight[j] + bias[j];
    }
  }
}

#else  // no AVX2 kernels in this build: the drivers never call the functions below.

bool supported() { return false; }
void pack_b_transposed(const float*, std::size_t, std::size_t, std::size_t, float*) { std::abort(); }
void micro_tile(std::size_t, std::size_t, std::size_t, const float*, std::size_t, const float*,
                std::size_t, float*, std::size_t, const Epilogue&) { std::abort(); }
float softmax_row(float*, std::size_t, const float*, const float*, std::size_t, bool) { std::abort(); }
void activation(Act, float*, std::size_t) { std::abort(); }
void layer_norm_rows(const float*, float*, std::size_t, std::size_t, const float*, const float*,
                     float) { std::abort(); }

#endif

}  // namespace vitscope::nn::kernels::avx2
