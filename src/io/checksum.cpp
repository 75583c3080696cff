#include "vitscope/io/checksum.hpp"

#include <algorithm>
#include <array>

#if defined(__x86_64__)
#include <emmintrin.h>
#include <wmmintrin.h>
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

// The CRC register after data, from register (no inversions: crc32 adds them).
std::uint32_t crc_register_tables(const unsigned char* data, std::size_t size, std::uint32_t reg) {
  static const CrcTables tables;
  const auto& t = tables.table;
  for (; size >= 8; data += 8, size -= 8) {
    const std::uint32_t low = load_le32(data) ^ reg;
    const std::uint32_t high = load_le32(data + 4);
    reg = t[7][low & 0xFF] ^ t[6][(low >> 8) & 0xFF] ^ t[5][(low >> 16) & 0xFF] ^ t[4][low >> 24] ^
          t[3][high & 0xFF] ^ t[2][(high >> 8) & 0xFF] ^ t[1][(high >> 16) & 0xFF] ^ t[0][high >> 24];
  }
  for (; size > 0; ++data, --size) reg = t[0][(reg ^ *data) & 0xFF] ^ (reg >> 8);
  return reg;
}

#if defined(__x86_64__)
// Folding with carry-less multiplication (Intel's "Fast CRC Computation for Generic Polynomials
// Using PCLMULQDQ"): a 16-byte block times x^k mod P lands on the block k bits later with the same
// remainder, so the data folds into four 16-byte accumulators, 64 bytes a step, and those into
// one. Its remainder, and so the register, is the data's: the last 16 bytes and the tail go
// through the tables. The constants are x^k mod P for the reflected CRC-32 polynomial, bit-
// reversed and shifted as the paper gives them.
__attribute__((target("pclmul,sse2"))) __m128i fold(__m128i block, __m128i constants, __m128i next) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(block, constants, 0x00),
                                     _mm_clmulepi64_si128(block, constants, 0x11)),
                       next);
}

__attribute__((target("pclmul,sse2")))
std::uint32_t crc_register_folded(const unsigned char* data, std::size_t size, std::uint32_t reg) {
  auto load = [](const unsigned char* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); };
  const __m128i across_64 = _mm_set_epi64x(0x1c6e41596, 0x154442bd4);
  const __m128i across_16 = _mm_set_epi64x(0x0ccaa009e, 0x1751997d0);
  __m128i acc[4] = {_mm_xor_si128(load(data), _mm_cvtsi32_si128(static_cast<int>(reg))), load(data + 16),
                    load(data + 32), load(data + 48)};
  std::size_t i = 64;
  for (; i + 64 <= size; i += 64) {
    for (int k = 0; k < 4; ++k) acc[k] = fold(acc[k], across_64, load(data + i + 16 * k));
  }
  __m128i one = fold(fold(fold(acc[0], across_16, acc[1]), across_16, acc[2]), across_16, acc[3]);
  for (; i + 16 <= size; i += 16) one = fold(one, across_16, load(data + i));
  alignas(16) unsigned char last[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(last), one);
  return crc_register_tables(data + i, size - i, crc_register_tables(last, 16, 0));
}
#endif

}  // namespace

std::uint32_t crc32(const unsigned char* data, std::size_t size, std::uint32_t crc) {
#if defined(__x86_64__)
  // Folding needs its first 64 bytes; below a few hundred the tables are as fast.
  static const bool has_pclmul = __builtin_cpu_supports("pclmul");
  if (has_pclmul && size >= 256) return ~crc_register_folded(data, size, ~crc);
#endif
  return ~crc_register_tables(data, size, ~crc);
}

std::uint32_t adler32(const unsigned char* data, std::size_t size, std::uint32_t adler) {
  constexpr std::uint32_t kModulus = 65521;
  // The most bytes the two sums take before the second can overflow 32 bits (RFC 1950's NMAX),
  // a multiple of 16.
  constexpr std::size_t kBytesBeforeModulus = 5552;
  std::uint32_t a = adler & 0xFFFF;
  std::uint32_t b = adler >> 16;
#if defined(__x86_64__)
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
