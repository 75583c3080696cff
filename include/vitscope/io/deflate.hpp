#pragma once
// A zlib stream (RFC 1950) of one deflate block (RFC 1951) made for filtered image rows: Huffman
// codes fitted to the data, and runs of a repeated byte as matches at distance 1 (what zlib's
// Z_RLE strategy finds), with no search for longer-range matches. That is what makes it several
// times faster than zlib's fastest level on a view, at about the size OpenCV's PNG writer gives.

#include <cstddef>
#include <string>

namespace vitscope::io {

std::string zlib_compress(const unsigned char* data, std::size_t size);

}  // namespace vitscope::io
