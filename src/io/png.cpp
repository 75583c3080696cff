#include "vitscope/io/png.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "vitscope/error.hpp"
#include "vitscope/io/checksum.hpp"
#include "vitscope/io/deflate.hpp"

namespace vitscope::io {

namespace {

constexpr std::size_t kChannels = 3;
constexpr unsigned char kPaethFilter = 4;
// The image data goes in IDAT chunks of at most this many bytes, as libpng writes them.
constexpr std::size_t kMaxIdatBytes = std::size_t(1) << 20;
// The most filtered-row bytes a thread keeps between pictures (a view of about 2000x2000).
constexpr std::size_t kKeptRowBytes = std::size_t(12) << 20;
// PNG's limit on width and height (2^31 - 1).
constexpr std::size_t kMaxSide = 0x7FFFFFFF;

void append_be32(std::string& out, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(value >> shift));
}

void append_chunk(std::string& out, const char (&type)[5], const char* data, std::size_t size) {
  append_be32(out, static_cast<std::uint32_t>(size));
  const std::size_t start = out.size();
  out.append(type, 4);
  out.append(data, size);
  const auto* typed = reinterpret_cast<const unsigned char*>(out.data() + start);
  append_be32(out, crc32(typed, size + 4));
}

// PNG 9.4's predictor, written with selects instead of branches: the residuals of a
// photograph-like view leave no branch predictable.
unsigned char paeth(int left, int up, int up_left) {
  const int to_left = std::abs(up - up_left);
  const int to_up = std::abs(left - up_left);
  const int to_up_left = std::abs(left + up - 2 * up_left);
  const int up_or_corner = to_up <= to_up_left ? up : up_left;
  return static_cast<unsigned char>(to_left <= to_up && to_left <= to_up_left ? left : up_or_corner);
}

#if defined(__SSE2__)
// paeth on 8 bytes at a time, in 16-bit lanes.
__m128i paeth_residuals(__m128i row, __m128i left, __m128i up, __m128i up_left) {
  const __m128i zero = _mm_setzero_si128();
  auto abs16 = [&](__m128i x) { return _mm_max_epi16(x, _mm_sub_epi16(zero, x)); };
  const __m128i to_left = abs16(_mm_sub_epi16(up, up_left));
  const __m128i to_up = abs16(_mm_sub_epi16(left, up_left));
  const __m128i to_up_left = abs16(_mm_sub_epi16(_mm_add_epi16(left, up), _mm_add_epi16(up_left, up_left)));
  const __m128i corner_wins = _mm_cmpgt_epi16(to_up, to_up_left);
  const __m128i up_or_corner =
      _mm_or_si128(_mm_and_si128(corner_wins, up_left), _mm_andnot_si128(corner_wins, up));
  const __m128i left_wins =
      _mm_andnot_si128(_mm_or_si128(_mm_cmpgt_epi16(to_left, to_up), _mm_cmpgt_epi16(to_left, to_up_left)),
                       _mm_set1_epi16(-1));
  const __m128i predicted = _mm_or_si128(_mm_and_si128(left_wins, left), _mm_andnot_si128(left_wins, up_or_corner));
  return _mm_sub_epi16(row, predicted);
}

// Bytes i.. of a row's residuals, 16 at a time while 16 remain; returns where it stopped.
std::size_t paeth_row_simd(const unsigned char* row, const unsigned char* above, unsigned char* dst,
                           std::size_t i, std::size_t row_bytes) {
  const __m128i zero = _mm_setzero_si128();
  auto load = [](const unsigned char* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); };
  for (; i + 16 <= row_bytes; i += 16) {
    const __m128i here = load(row + i);
    const __m128i left = load(row + i - kChannels);
    const __m128i up = load(above + i);
    const __m128i up_left = load(above + i - kChannels);
    const __m128i low = paeth_residuals(_mm_unpacklo_epi8(here, zero), _mm_unpacklo_epi8(left, zero),
                                        _mm_unpacklo_epi8(up, zero), _mm_unpacklo_epi8(up_left, zero));
    const __m128i high = paeth_residuals(_mm_unpackhi_epi8(here, zero), _mm_unpackhi_epi8(left, zero),
                                         _mm_unpackhi_epi8(up, zero), _mm_unpackhi_epi8(up_left, zero));
    // The residuals modulo 256, as PNG sends them.
    const __m128i mask = _mm_set1_epi16(0xFF);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm_packus_epi16(_mm_and_si128(low, mask), _mm_and_si128(high, mask)));
  }
  return i;
}
#endif

inline __attribute__((always_inline)) void swap_red_blue(const unsigned char* bgr, unsigned char* rgb,
                                                         std::size_t width) {
  for (std::size_t x = 0; x < width; ++x) {
    rgb[kChannels * x] = bgr[kChannels * x + 2];
    rgb[kChannels * x + 1] = bgr[kChannels * x + 1];
    rgb[kChannels * x + 2] = bgr[kChannels * x];
  }
}

#if defined(__x86_64__)
// The compiler vectorises the stride-3 shuffle only with AVX2's byte permutes.
__attribute__((target("avx2"))) void swap_red_blue_avx2(const unsigned char* bgr, unsigned char* rgb,
                                                          std::size_t width) {
  swap_red_blue(bgr, rgb, width);
}
#endif

void bgr_to_rgb(const unsigned char* bgr, unsigned char* rgb, std::size_t width) {
#if defined(__x86_64__)
  static const bool has_avx2 = __builtin_cpu_supports("avx2");
  if (has_avx2) return swap_red_blue_avx2(bgr, rgb, width);
#endif
  swap_red_blue(bgr, rgb, width);
}

// Each row as its filter-type byte and the Paeth residuals of its RGB bytes (PNG 9.2: the byte
// to the left, above and above-left, 0 outside the image).
void filter_rows(const unsigned char* pixels, std::size_t width, std::size_t height, std::size_t row_step,
                 unsigned char* out) {
  const std::size_t row_bytes = width * kChannels;
  std::vector<unsigned char> above(row_bytes, 0);
  std::vector<unsigned char> row(row_bytes);
  for (std::size_t y = 0; y < height; ++y) {
    bgr_to_rgb(pixels + y * row_step, row.data(), width);
    unsigned char* dst = out + y * (row_bytes + 1);
    *dst++ = kPaethFilter;
    for (std::size_t i = 0; i < kChannels; ++i) dst[i] = static_cast<unsigned char>(row[i] - above[i]);
    std::size_t i = kChannels;
#if defined(__SSE2__)
    i = paeth_row_simd(row.data(), above.data(), dst, i, row_bytes);
#endif
    for (; i < row_bytes; ++i) {
      dst[i] = static_cast<unsigned char>(row[i] - paeth(row[i - kChannels], above[i], above[i - kChannels]));
    }
    std::swap(above, row);
  }
}

}  // namespace

std::string encode_png_bgr(const unsigned char* pixels, std::size_t width, std::size_t height,
                           std::size_t row_step) {
  if (width == 0 || height == 0 || width > kMaxSide || height > kMaxSide) {
    throw Error("write_failed", "a PNG needs 1 to 2^31-1 pixels a side, not " + std::to_string(width) +
                                    "x" + std::to_string(height));
  }
  // The rows go to a buffer each thread keeps, up to kKeptRowBytes: a fresh buffer the size of a
  // view is over malloc's mmap threshold, so it would be mapped and faulted in anew every time.
  const std::size_t rows_bytes = (width * kChannels + 1) * height;
  thread_local std::vector<unsigned char> kept_rows;
  std::vector<unsigned char> large_rows;
  std::vector<unsigned char>& rows = rows_bytes <= kKeptRowBytes ? kept_rows : large_rows;
  if (rows.size() < rows_bytes) rows.resize(rows_bytes);
  filter_rows(pixels, width, height, row_step, rows.data());
  const std::string compressed = zlib_compress(rows.data(), rows_bytes);

  constexpr std::size_t kChunkFraming = 12;  // length, type and CRC
  const std::size_t idat_chunks = (compressed.size() + kMaxIdatBytes - 1) / kMaxIdatBytes;
  std::string out("\x89PNG\r\n\x1a\n", 8);
  out.reserve(8 + (kChunkFraming + 13) + idat_chunks * kChunkFraming + compressed.size() + kChunkFraming);
  std::string header;
  append_be32(header, static_cast<std::uint32_t>(width));
  append_be32(header, static_cast<std::uint32_t>(height));
  header += {8, 2, 0, 0, 0};  // 8 bits per sample, truecolour, deflate, adaptive filters, no interlace
  append_chunk(out, "IHDR", header.data(), header.size());
  for (std::size_t at = 0; at < compressed.size(); at += kMaxIdatBytes) {
    append_chunk(out, "IDAT", compressed.data() + at, std::min(kMaxIdatBytes, compressed.size() - at));
  }
  append_chunk(out, "IEND", "", 0);
  return out;
}

}  // namespace vitscope::io
