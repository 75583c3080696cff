// AVX2 + FMA element-wise leaves of vitscope's kernels (see kernels.hpp), for x86-64 CPUs without
// AVX-512: their GEMMs go through the BLAS library, but the softmax, the exact GELU and LayerNorm
// run here, 8 floats at a time, with the same formulas as the AVX-512 leaves. As there, only the
// functions carry the target attribute, and nothing here instantiates a standard template.

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

}  // namespace

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
float softmax_row(float*, std::size_t, const float*, const float*, std::size_t, bool) { std::abort(); }
void activation(Act, float*, std::size_t) { std::abort(); }
void layer_norm_rows(const float*, float*, std::size_t, std::size_t, const float*, const float*,
                     float) { std::abort(); }

#endif

}  // namespace vitscope::nn::kernels::avx2
