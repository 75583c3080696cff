#include "vitscope/io/checksum.hpp"

#include <algorithm>
#include <array>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace vitscope::io {

namespace {

// Slicing by 8: table k holds the CRC of a byte followed by k zero bytes, so eight bytes fold
// into the CRC with eight independent lookups instead of eight dependent ones.
struct CrcTables {
  std::array<std::array<std::uint32_t, 256>, 8> table{};
  CrcTables() {
    constexpr std::uint32_t kReversedPolynomial = 0xEDB88320u;
    for (std::uint32_t n = 0; n < 256; ++n) {
      std::uint32_t c = n;
      for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? kReversedPolynomial ^ (c >> 1) : c >> 1;
      table[0][n] = c;
    }
    for (std::size_t k = 1; k < 8; ++k) {
      for (std::size_t n = 0; n < 256; ++n) {
        table[k][n] = (table[k - 1][n] >> 8) ^ table[0][table[k - 1][n] & 0xFF];
      }
    }
  }
};

std::uint32_t load_le32(const unsigned char* p) {
  return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
         std::uint32_t(p[3]) << 24;
}

}  // namespace

std::uint32_t crc32(const unsigned char* data, std::size_t size, std::uint32_t crc) {
  static const CrcTables tables;
  const auto& t = tables.table;
  crc = ~crc;
  for (; size >= 8; data += 8, size -= 8) {
    const std::uint32_t low = load_le32(data) ^ crc;
    const std::uint32_t high = load_le32(data + 4);
    crc = t[7][low & 0xFF] ^ t[6][(low >> 8) & 0xFF] ^ t[5][(low >> 16) & 0xFF] ^ t[4][low >> 24] ^
          t[3][high & 0xFF] ^ t[2][(high >> 8) & 0xFF] ^ t[1][(high >> 16) & 0xFF] ^ t[0][high >> 24];
  }
  for (; size > 0; ++data, --size) crc = t[0][(crc ^ *data) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

std::uint32_t adler32(const unsigned char* data, std::size_t size, std::uint32_t adler) {
  constexpr std::uint32_t kModulus = 65521;
  // The most bytes the two sums take before the second can overflow 32 bits (RFC 1950's NMAX),
  // a multiple of 16.
  constexpr std::size_t kBytesBeforeModulus = 5552;
  std::uint32_t a = adler & 0xFFFF;
  std::uint32_t b = adler >> 16;
#if defined(__SSE2__)
  // 16 bytes at a time: a gains their sum, b gains 16·a for each earlier block plus the bytes
  // weighted 16, 15, ..., 1 (the number of b's additions each byte is part of).
  const __m128i zero = _mm_setzero_si128();
  const __m128i first_weights = _mm_setr_epi16(16, 15, 14, 13, 12, 11, 10, 9);
  const __m128i last_weights = _mm_setr_epi16(8, 7, 6, 5, 4, 3, 2, 1);
  while (size >= 16) {
    const std::size_t n = std::min(size, kBytesBeforeModulus) & ~std::size_t(15);
    __m128i sum = zero;          // of the bytes so far, in lanes 0 and 2
    __m128i earlier_sums = zero;  // of sum before each block
    __m128i weighted = zero;
    for (std::size_t i = 0; i < n; i += 16) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + i));
      earlier_sums = _mm_add_epi32(earlier_sums, sum);
      sum = _mm_add_epi32(sum, _mm_sad_epu8(bytes, zero));
      weighted = _mm_add_epi32(weighted, _mm_madd_epi16(_mm_unpacklo_epi8(bytes, zero), first_weights));
      weighted = _mm_add_epi32(weighted, _mm_madd_epi16(_mm_unpackhi_epi8(bytes, zero), last_weights));
    }
    alignas(16) std::uint32_t lanes[3][4];
    _mm_store_si128(reinterpret_cast<__m128i*>(lanes[0]), sum);
    _mm_store_si128(reinterpret_cast<__m128i*>(lanes[1]), earlier_sums);
    _mm_store_si128(reinterpret_cast<__m128i*>(lanes[2]), weighted);
    const std::uint64_t block_sum = std::uint64_t(lanes[0][0]) + lanes[0][2];
    const std::uint64_t earlier = std::uint64_t(lanes[1][0]) + lanes[1][2];
    const std::uint64_t weights = std::uint64_t(lanes[2][0]) + lanes[2][1] + lanes[2][2] + lanes[2][3];
    b = static_cast<std::uint32_t>((b + std::uint64_t(n) * a + 16 * earlier + weights) % kModulus);
    a = static_cast<std::uint32_t>((a + block_sum) % kModulus);
    data += n;
    size -= n;
  }
#endif
  while (size > 0) {
    const std::size_t n = std::min(size, kBytesBeforeModulus);
    for (std::size_t i = 0; i < n; ++i) {
      a += data[i];
      b += a;
    }
    a %= kModulus;
    b %= kModulus;
    data += n;
    size -= n;
  }
  return b << 16 | a;
}

}  // namespace vitscope::io
