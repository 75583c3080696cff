#pragma once
// The two checksums a PNG file carries: CRC-32 over each chunk (ISO 3309, as PNG and gzip use it)
// and Adler-32 over the zlib stream's uncompressed bytes (RFC 1950).

#include <cstddef>
#include <cstdint>

namespace vitscope::io {

// crc: the CRC of the bytes before these (0 to start), so a CRC can be taken in pieces.
std::uint32_t crc32(const unsigned char* data, std::size_t size, std::uint32_t crc = 0);

// adler: the checksum of the bytes before these (1 to start).
std::uint32_t adler32(const unsigned char* data, std::size_t size, std::uint32_t adler = 1);

}  // namespace vitscope::io
