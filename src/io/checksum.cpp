#include "vitscope/io/checksum.hpp"

#include <algorithm>
#include <array>

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
  // The most bytes the two sums take before the second can overflow 32 bits (RFC 1950's NMAX).
  constexpr std::size_t kBytesBeforeModulus = 5552;
  std::uint32_t a = adler & 0xFFFF;
  std::uint32_t b = adler >> 16;
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
