// AVX-512 leaves of vitscope's kernels (see kernels.hpp). Every function that uses AVX-512 carries
// the target attribute, so this file builds with the project's ordinary flags and the library
// runs on any x86-64 CPU: the drivers call these only when supported() says so. Nothing here
// instantiates a standard-library template, which could otherwise be merged with (and replace)
// a non-AVX-512 copy elsewhere.

#include "kernels.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#define VITSCOPE_HAVE_AVX512_KERNELS 1
#include <immintrin.h>
// GCC 12's AVX-512 intrinsic headers start zero-masked operations from an "undefined" vector,
// which -W(maybe-)uninitialized reports at every use.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#endif

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace vitscope::nn::kernels::avx512 {

#if VITSCOPE_HAVE_AVX512_KERNELS

#define VS_TARGET __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))
#define VS_TARGET_BF16 \
  __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512bf16,avx2,fma")))
#define VS_INLINE inline __attribute__((always_inline))

bool supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("fma");
}

bool bf16_supported() { return supported() && __builtin_cpu_supports("avx512bf16"); }

namespace {

VS_TARGET VS_INLINE __mmask16 first_n(std::size_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

// exp(x), relative error ~1e-7 (Cephes expf polynomial on [-ln2/2, ln2/2], scaled by 2^n with
// scalef). exp(-inf) and anything below -104 give 0, NaN stays NaN.
VS_TARGET VS_INLINE __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-110.0f), x);
  x = _mm512_min_ps(_mm512_set1_ps(88.8f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 r2 = _mm512_mul_ps(r, r);
  p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

// Exact (erf) GELU: 0.5 x (1 + erf(x / sqrt 2)), erf by Abramowitz & Stegun 7.1.26 (absolute
// error 1.5e-7, the same formula PyTorch's vectorised erf uses).
VS_TARGET VS_INLINE __m512 gelu_ps(__m512 x) {
  const __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752440f));
  const __m512 az = _mm512_abs_ps(z);
  const __m512 d = _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), az, _mm512_set1_ps(1.0f));
  __m512 t = _mm512_rcp14_ps(d);
  // One Newton step: t = t (2 - d t).
  t = _mm512_mul_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(2.0f)));
  __m512 poly = _mm512_fmadd_ps(_mm512_set1_ps(1.061405429f), t, _mm512_set1_ps(-1.453152027f));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(1.421413741f));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(-0.284496736f));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(0.254829592f));
  const __m512 e = exp_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), az), az));
  // erf(|z|) = 1 - poly * t * exp(-z^2); 1 + erf(z) = 1 +/- that.
  const __m512 erf_abs = _mm512_fnmadd_ps(_mm512_mul_ps(poly, t), e, _mm512_set1_ps(1.0f));
  const __mmask16 negative = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 erf = _mm512_mask_sub_ps(erf_abs, negative, _mm512_setzero_ps(), erf_abs);
  return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x),
                       _mm512_add_ps(_mm512_set1_ps(1.0f), erf));
}

VS_TARGET VS_INLINE __m512 apply_act(Act act, __m512 v) {
  if (act == Act::relu) return _mm512_max_ps(v, _mm512_setzero_ps());
  if (act == Act::gelu) return gelu_ps(v);
  return v;
}

VS_TARGET VS_INLINE __m512 finish(__m512 acc, float scale, const float* bias, const float* c,
                                  __mmask16 mask, const Epilogue& e) {
  if (scale != 1.0f) acc = _mm512_mul_ps(acc, _mm512_set1_ps(scale));
  if (bias) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(mask, bias));
  if (e.accumulate) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(mask, c));
  return apply_act(e.act, acc);
}

// A micro-tile's accumulators (R rows of up to 32 columns, the second 16 under m1) through the
// epilogue into C.
template <int R>
VS_TARGET VS_INLINE void store_tile(const __m512 (&c0)[R], const __m512 (&c1)[R], float* C,
                                    std::size_t ldc, __mmask16 m0, __mmask16 m1,
                                    const Epilogue& e, const float* bias, const float* row_scale) {
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
    float* c = C + i * ldc;
    const float scale = e.alpha * (row_scale ? row_scale[i] : 1.0f);
    _mm512_mask_storeu_ps(c, m0, finish(c0[i], scale, bias, c, m0, e));
    if (m1) {
      _mm512_mask_storeu_ps(c + 16, m1,
                            finish(c1[i], scale, bias ? bias + 16 : nullptr, c + 16, m1, e));
    }
  }
}

// The register-blocked micro-kernel: C (R rows, cols <= 32) from A (element (i, k) at
// A[i * lda + k]) and B (k-th row of 32 at B + k * ldb): 2R accumulators of 16 floats, each
// A element broadcast once for two fused multiply-adds.
template <int R>
VS_TARGET VS_INLINE void tile(std::size_t K, const float* A, std::size_t lda, const float* B,
                              std::size_t ldb, float* C, std::size_t ldc, std::size_t cols,
                              const Epilogue& e, const float* bias, const float* row_scale) {
  const __mmask16 m0 = first_n(cols);
  const __mmask16 m1 = cols > 16 ? first_n(cols - 16) : static_cast<__mmask16>(0);
  __m512 c0[R] = {}, c1[R] = {};
  const float* a = A;
  const float* b = B;
  if (m1) {
    for (std::size_t k = 0; k < K; ++k) {
      const __m512 b0 = _mm512_maskz_loadu_ps(m0, b);
      const __m512 b1 = _mm512_maskz_loadu_ps(m1, b + 16);
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i * lda]);
        c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
        c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
      }
      ++a;
      b += ldb;
    }
  } else {
    for (std::size_t k = 0; k < K; ++k) {
      const __m512 b0 = _mm512_maskz_loadu_ps(m0, b);
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i) {
        c0[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i * lda]), b0, c0[i]);
      }
      ++a;
      b += ldb;
    }
  }
  store_tile<R>(c0, c1, C, ldc, m0, m1, e, bias, row_scale);
}

// 16x16 transpose in registers: r[j] (row j) -> r[c] (column c).
VS_TARGET VS_INLINE void transpose16(__m512 r[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    r[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
    t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
    t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD);
    r[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xDD);
  }
}

// Loads up to 16 rows (row j at src + j * ld) of up to 16 floats, transposes them, and stores
// column c (c < kn) as 16 floats (masked to `out_mask`) at dst + c * dst_stride.
VS_TARGET VS_INLINE void transpose_block(const float* src, std::size_t ld, std::size_t rows,
                                         std::size_t kn, float* dst, std::size_t dst_stride,
                                         __mmask16 out_mask) {
  __m512 r[16];
  const __mmask16 km = first_n(kn);
#pragma GCC unroll 16
  for (int j = 0; j < 16; ++j) {
    r[j] = static_cast<std::size_t>(j) < rows ? _mm512_maskz_loadu_ps(km, src + j * ld)
                                              : _mm512_setzero_ps();
  }
  transpose16(r);
#pragma GCC unroll 16
  for (int c = 0; c < 16; ++c) {
    if (static_cast<std::size_t>(c) < kn) _mm512_mask_storeu_ps(dst + c * dst_stride, out_mask, r[c]);
  }
}

}  // namespace

VS_TARGET void pack_b_transposed(const float* B, std::size_t ldb, std::size_t cols,
                                 std::size_t kc, float* out) {
  for (std::size_t p = 0; p * NR < cols; ++p) {
    float* panel = out + p * kc * NR;
    for (std::size_t half = 0; half < 2; ++half) {
      const std::size_t j0 = p * NR + half * 16;
      const std::size_t rows = j0 < cols ? (cols - j0 < 16 ? cols - j0 : 16) : 0;
      for (std::size_t k0 = 0; k0 < kc; k0 += 16) {
        const std::size_t kn = kc - k0 < 16 ? kc - k0 : 16;
        transpose_block(B + j0 * ldb + k0, ldb, rows, kn, panel + k0 * NR + half * 16, NR,
                        static_cast<__mmask16>(0xFFFF));
      }
    }
  }
}

VS_TARGET void micro_tile(std::size_t rows, std::size_t cols, std::size_t K, const float* A,
                          std::size_t lda, const float* B, std::size_t ldb, float* C,
                          std::size_t ldc, const Epilogue& e) {
  const float* rs = e.row_scale;
  switch (rows) {
#define VS_CASE(R)                                                       \
  case R:                                                                \
    tile<R>(K, A, lda, B, ldb, C, ldc, cols, e, e.bias, rs);   \
    break;
    VS_CASE(1) VS_CASE(2) VS_CASE(3) VS_CASE(4) VS_CASE(5) VS_CASE(6)
    VS_CASE(7) VS_CASE(8) VS_CASE(9) VS_CASE(10) VS_CASE(11) VS_CASE(12)
#undef VS_CASE
    default:
      break;
  }
}

// --- bfloat16 GEMM: the fp32 layout with each 32-bit word a pair of bf16 (k, k+1) ----------------

namespace {

// Up to 32 floats at src -> 16 words: word q holds src[2q] (low half) and src[2q+1], rounded to
// nearest even; past n, zeros.
VS_TARGET_BF16 VS_INLINE __m512 bf16_pairs(const float* src, std::size_t n) {
  const __m512 lo = _mm512_maskz_loadu_ps(first_n(n), src);
  const __m512 hi = n > 16 ? _mm512_maskz_loadu_ps(first_n(n - 16), src + 16) : _mm512_setzero_ps();
  return reinterpret_cast<__m512>(_mm512_cvtne2ps_pbh(hi, lo));
}

template <int R>
VS_TARGET_BF16 VS_INLINE void tile_bf16(std::size_t pairs, const float* A, std::size_t lda,
                                        const float* B, std::size_t ldb, float* C, std::size_t ldc,
                                        std::size_t cols, const Epilogue& e) {
  const __mmask16 m0 = first_n(cols);
  const __mmask16 m1 = cols > 16 ? first_n(cols - 16) : static_cast<__mmask16>(0);
  __m512 c0[R] = {}, c1[R] = {};
  const float* a = A;
  const float* b = B;
  for (std::size_t p = 0; p < pairs; ++p) {
    const __m512bh b0 = reinterpret_cast<__m512bh>(_mm512_loadu_ps(b));
    const __m512bh b1 = reinterpret_cast<__m512bh>(_mm512_loadu_ps(b + 16));
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const __m512bh ai = reinterpret_cast<__m512bh>(_mm512_set1_ps(a[i * lda]));
      c0[i] = _mm512_dpbf16_ps(c0[i], ai, b0);
      if (m1) c1[i] = _mm512_dpbf16_ps(c1[i], ai, b1);
    }
    ++a;
    b += ldb;
  }
  store_tile<R>(c0, c1, C, ldc, m0, m1, e, e.bias, nullptr);
}

}  // namespace

VS_TARGET_BF16 void to_bf16_pairs(const float* A, std::size_t lda, std::size_t rows, std::size_t K,
                                  float* out, std::size_t ldo) {
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t k = 0; k < K; k += 32) {
      const std::size_t kn = K - k < 32 ? K - k : 32;
      _mm512_mask_storeu_ps(out + r * ldo + k / 2, first_n((kn + 1) / 2), bf16_pairs(A + r * lda + k, kn));
    }
  }
}

VS_TARGET_BF16 void pack_b_bf16(const float* B, std::size_t ldb, std::size_t cols, std::size_t kc,
                                float* out) {
  const std::size_t pairs = (kc + 1) / 2;
  for (std::size_t p = 0; p * NR < cols; ++p) {
    float* panel = out + p * pairs * NR;
    for (std::size_t half = 0; half < 2; ++half) {
      const std::size_t j0 = p * NR + half * 16;
      const std::size_t rows = j0 < cols ? (cols - j0 < 16 ? cols - j0 : 16) : 0;
      for (std::size_t k0 = 0; k0 < kc; k0 += 32) {
        const std::size_t kn = kc - k0 < 32 ? kc - k0 : 32;
        __m512 r[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; ++j) {
          r[j] = static_cast<std::size_t>(j) < rows ? bf16_pairs(B + (j0 + j) * ldb + k0, kn)
                                                    : _mm512_setzero_ps();
        }
        transpose16(r);
        const std::size_t qn = (kn + 1) / 2;
#pragma GCC unroll 16
        for (int q = 0; q < 16; ++q) {
          if (static_cast<std::size_t>(q) < qn) _mm512_storeu_ps(panel + (k0 / 2 + q) * NR + half * 16, r[q]);
        }
      }
    }
  }
}

VS_TARGET_BF16 void micro_tile_bf16(std::size_t rows, std::size_t cols, std::size_t pairs,
                                    const float* A, std::size_t lda, const float* B,
                                    std::size_t ldb, float* C, std::size_t ldc, const Epilogue& e) {
  switch (rows) {
#define VS_CASE(R)                                          \
  case R:                                                   \
    tile_bf16<R>(pairs, A, lda, B, ldb, C, ldc, cols, e);   \
    break;
    VS_CASE(1) VS_CASE(2) VS_CASE(3) VS_CASE(4) VS_CASE(5) VS_CASE(6)
    VS_CASE(7) VS_CASE(8) VS_CASE(9) VS_CASE(10) VS_CASE(11) VS_CASE(12)
#undef VS_CASE
    default:
      break;
  }
}

VS_TARGET float softmax_row(float* row, std::size_t n, const float* mask_row,
                            const float* padding_row, std::size_t n_mask, bool normalize) {
  // 1. Masks (over the first n_mask entries), then the maximum.
  if (mask_row || padding_row) {
    for (std::size_t j = 0; j < n_mask; j += 16) {
      const __mmask16 m = first_n(n_mask - j);
      __m512 x = _mm512_maskz_loadu_ps(m, row + j);
      if (mask_row) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, mask_row + j));
      if (padding_row) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, padding_row + j));
      _mm512_mask_storeu_ps(row + j, m, x);
    }
  }
  const std::size_t full = n & ~static_cast<std::size_t>(31);
  __m512 max0 = _mm512_set1_ps(-INFINITY), max1 = max0;
  for (std::size_t j = 0; j < full; j += 32) {
    max0 = _mm512_max_ps(max0, _mm512_loadu_ps(row + j));
    max1 = _mm512_max_ps(max1, _mm512_loadu_ps(row + j + 16));
  }
  for (std::size_t j = full; j < n; j += 16) {
    const __mmask16 m = first_n(n - j);
    max0 = _mm512_mask_max_ps(max0, m, max0, _mm512_maskz_loadu_ps(m, row + j));
  }
  const float max = _mm512_reduce_max_ps(_mm512_max_ps(max0, max1));
  if (max == -INFINITY) {
    std::memset(row, 0, n * sizeof(float));
    return 0.0f;
  }
  // 2. exp(x - max) and its sum; two independent chains per step.
  const __m512 vm = _mm512_set1_ps(max);
  __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
  for (std::size_t j = 0; j < full; j += 32) {
    const __m512 e0 = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(row + j), vm));
    const __m512 e1 = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(row + j + 16), vm));
    _mm512_storeu_ps(row + j, e0);
    _mm512_storeu_ps(row + j + 16, e1);
    sum0 = _mm512_add_ps(sum0, e0);
    sum1 = _mm512_add_ps(sum1, e1);
  }
  for (std::size_t j = full; j < n; j += 16) {
    const __mmask16 m = first_n(n - j);
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + j), vm));
    _mm512_mask_storeu_ps(row + j, m, e);
    sum0 = _mm512_mask_add_ps(sum0, m, sum0, e);
  }
  const float inv = 1.0f / _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
  if (!normalize) return inv;
  const __m512 vinv = _mm512_set1_ps(inv);
  for (std::size_t j = 0; j < n; j += 16) {
    const __mmask16 m = first_n(n - j);
    _mm512_mask_storeu_ps(row + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + j), vinv));
  }
  return 1.0f;
}

VS_TARGET void activation(Act act, float* x, std::size_t n) {
  if (act == Act::none) return;
  std::size_t j = 0;
  for (; j + 16 <= n; j += 16) _mm512_storeu_ps(x + j, apply_act(act, _mm512_loadu_ps(x + j)));
  if (j < n) {
    const __mmask16 m = first_n(n - j);
    _mm512_mask_storeu_ps(x + j, m, apply_act(act, _mm512_maskz_loadu_ps(m, x + j)));
  }
}

VS_TARGET void layer_norm_rows(const float* x, float* y, std::size_t rows, std::size_t width,
                               const float* weight, const float* bias, float eps) {
  // As the scalar path: mean, biased variance and centring in double, 8 lanes at a time, so
  // rows with a large offset keep their precision; the affine part in float.
  const double inv_width = 1.0 / static_cast<double>(width);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * width;
    float* yr = y + r * width;
    __m512d vsum = _mm512_setzero_pd();
    for (std::size_t j = 0; j < width; j += 8) {
      const __mmask8 m = static_cast<__mmask8>(first_n(width - j));
      vsum = _mm512_add_pd(vsum, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, xr + j)));
    }
    const double mean = _mm512_reduce_add_pd(vsum) * inv_width;
    const __m512d vmean = _mm512_set1_pd(mean);
    __m512d vsq = _mm512_setzero_pd();
    for (std::size_t j = 0; j < width; j += 8) {
      const __mmask8 m = static_cast<__mmask8>(first_n(width - j));
      const __m512d d =
          _mm512_maskz_sub_pd(m, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, xr + j)), vmean);
      vsq = _mm512_fmadd_pd(d, d, vsq);
    }
    const __m512d vrstd =
        _mm512_set1_pd(1.0 / std::sqrt(_mm512_reduce_add_pd(vsq) * inv_width + eps));
    for (std::size_t j = 0; j < width; j += 8) {
      const __mmask8 m = static_cast<__mmask8>(first_n(width - j));
      const __m512d d = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, xr + j)), vmean);
      const __m256 n = _mm512_cvtpd_ps(_mm512_mul_pd(d, vrstd));
      _mm256_mask_storeu_ps(yr + j, m,
                            _mm256_fmadd_ps(n, _mm256_maskz_loadu_ps(m, weight + j),
                                            _mm256_maskz_loadu_ps(m, bias + j)));
    }
  }
}

#else  // no AVX-512 kernels in this build: the drivers never call the functions below.

bool supported() { return false; }
bool bf16_supported() { return false; }
void to_bf16_pairs(const float*, std::size_t, std::size_t, std::size_t, float*, std::size_t) { std::abort(); }
void pack_b_bf16(const float*, std::size_t, std::size_t, std::size_t, float*) { std::abort(); }
void micro_tile_bf16(std::size_t, std::size_t, std::size_t, const float*, std::size_t, const float*,
                     std::size_t, float*, std::size_t, const Epilogue&) { std::abort(); }
void pack_b_transposed(const float*, std::size_t, std::size_t, std::size_t, float*) { std::abort(); }
void micro_tile(std::size_t, std::size_t, std::size_t, const float*, std::size_t, const float*,
                std::size_t, float*, std::size_t, const Epilogue&) { std::abort(); }
float softmax_row(float*, std::size_t, const float*, const float*, std::size_t, bool) { std::abort(); }
void activation(Act, float*, std::size_t) { std::abort(); }
void layer_norm_rows(const float*, float*, std::size_t, std::size_t, const float*, const float*,
                     float) { std::abort(); }

#endif

}  // namespace vitscope::nn::kernels::avx512
