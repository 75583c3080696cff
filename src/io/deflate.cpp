#include "vitscope/io/deflate.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "vitscope/io/checksum.hpp"

namespace vitscope::io {

namespace {

constexpr int kEndOfBlock = 256;
constexpr int kLiteralLengthSymbols = 286;
constexpr int kDistanceSymbols = 30;
constexpr int kCodeLengthSymbols = 19;
constexpr int kMaxCodeBits = 15;
constexpr int kMaxCodeLengthBits = 7;
constexpr int kMinMatch = 3;
constexpr int kMaxMatch = 258;

// RFC 1951 3.2.5: the length symbols 257..285, each a base length and a count of extra bits.
struct LengthCode {
  std::uint16_t symbol = 0;
  std::uint8_t extra_bits = 0;
  std::uint16_t extra_value = 0;
};

constexpr std::array<int, 29> kLengthExtraBits = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                                   2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};

std::array<LengthCode, kMaxMatch + 1> make_length_codes() {
  constexpr std::array<int, 29> base = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                        31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
  const auto& extra = kLengthExtraBits;
  std::array<LengthCode, kMaxMatch + 1> codes{};
  for (int code = 0; code < 29; ++code) {
    const int last = code + 1 < 29 ? base[code + 1] - 1 : kMaxMatch;
    for (int length = base[code]; length <= std::min(last, kMaxMatch); ++length) {
      codes[length] = {static_cast<std::uint16_t>(257 + code), static_cast<std::uint8_t>(extra[code]),
                       static_cast<std::uint16_t>(length - base[code])};
    }
  }
  return codes;
}

const std::array<LengthCode, kMaxMatch + 1>& length_codes() {
  static const auto codes = make_length_codes();
  return codes;
}

// Code lengths of a Huffman code for freq, none longer than limit. Symbols of frequency 0 get
// length 0. Needs two or more used symbols, so that the code is complete (zlib's inflate refuses
// incomplete codes). Over the limit, the frequencies are halved (keeping each used symbol at 1 or
// more) and the code built again: flatter frequencies make a shallower tree.
std::vector<std::uint8_t> huffman_lengths(std::vector<std::uint32_t> freq, int limit) {
  std::vector<std::uint8_t> lengths(freq.size(), 0);
  for (;;) {
    std::vector<int> leaves;
    for (std::size_t s = 0; s < freq.size(); ++s) {
      if (freq[s] > 0) leaves.push_back(static_cast<int>(s));
    }
    std::stable_sort(leaves.begin(), leaves.end(), [&](int a, int b) { return freq[a] < freq[b]; });
    // The two-queue construction: leaves in order of weight, internal nodes in the order made,
    // which is also in order of weight; node k's parent comes after it.
    const std::size_t m = leaves.size();
    std::vector<std::uint64_t> weight(2 * m - 1);
    std::vector<std::size_t> parent(2 * m - 1, 0);
    for (std::size_t k = 0; k < m; ++k) weight[k] = freq[leaves[k]];
    std::size_t next_leaf = 0;
    std::size_t next_node = m;
    for (std::size_t made = m; made < 2 * m - 1; ++made) {
      std::size_t pick[2];
      for (std::size_t& p : pick) {
        const bool leaf = next_leaf < m && (next_node == made || weight[next_leaf] <= weight[next_node]);
        p = leaf ? next_leaf++ : next_node++;
      }
      weight[made] = weight[pick[0]] + weight[pick[1]];
      parent[pick[0]] = parent[pick[1]] = made;
    }
    std::vector<int> depth(2 * m - 1, 0);
    int deepest = 0;
    for (std::size_t k = 2 * m - 1; k-- > 0;) {
      if (k + 1 < 2 * m - 1) depth[k] = depth[parent[k]] + 1;
      if (k < m) deepest = std::max(deepest, depth[k]);
    }
    if (deepest <= limit) {
      for (std::size_t k = 0; k < m; ++k) lengths[leaves[k]] = static_cast<std::uint8_t>(depth[k]);
      return lengths;
    }
    for (std::uint32_t& f : freq) f = f > 0 ? std::max<std::uint32_t>(1, f >> 1) : 0;
  }
}

// RFC 1951 3.2.2: canonical codes from lengths, bit-reversed because deflate packs bits from the
// least significant end while Huffman codes are read from their most significant bit.
std::vector<std::uint16_t> canonical_codes(const std::vector<std::uint8_t>& lengths) {
  std::array<int, kMaxCodeBits + 1> count{};
  for (std::uint8_t length : lengths) ++count[length];
  count[0] = 0;
  std::array<int, kMaxCodeBits + 1> next{};
  for (int bits = 1, code = 0; bits <= kMaxCodeBits; ++bits) {
    code = (code + count[bits - 1]) << 1;
    next[bits] = code;
  }
  std::vector<std::uint16_t> codes(lengths.size(), 0);
  for (std::size_t s = 0; s < lengths.size(); ++s) {
    const int length = lengths[s];
    if (length == 0) continue;
    int code = next[length]++;
    int reversed = 0;
    for (int bit = 0; bit < length; ++bit, code >>= 1) reversed = reversed << 1 | (code & 1);
    codes[s] = static_cast<std::uint16_t>(reversed);
  }
  return codes;
}

struct HuffmanCode {
  std::vector<std::uint8_t> lengths;
  std::vector<std::uint16_t> codes;
};

// freq is made to hold two used symbols or more (see huffman_lengths) by counting the first
// unused ones once: a code for a symbol never sent costs a few header bits.
HuffmanCode make_code(std::vector<std::uint32_t> freq, int limit) {
  for (std::size_t s = 0, used = std::count_if(freq.begin(), freq.end(), [](auto f) { return f > 0; });
       used < 2; ++s) {
    if (freq[s] == 0) {
      freq[s] = 1;
      ++used;
    }
  }
  HuffmanCode code;
  code.lengths = huffman_lengths(std::move(freq), limit);
  code.codes = canonical_codes(code.lengths);
  return code;
}

// Writes bits from the least significant end without a branch: each flush stores the whole
// 64-bit buffer and moves on by the bytes it filled, so the output needs 8 bytes of room past its
// end. Fewer than 8 bits stay pending after a flush, so up to 56 bits can be put between flushes.
class BitWriter {
 public:
  explicit BitWriter(unsigned char* out) : out_(out) {}
  void put(std::uint64_t value, int bits) {
    pending_ |= value << count_;
    count_ += bits;
  }
  void flush() {
    std::memcpy(out_, &pending_, sizeof pending_);
    const int bytes = count_ >> 3;
    out_ += bytes;
    pending_ = bytes == 8 ? 0 : pending_ >> (8 * bytes);
    count_ &= 7;
  }
  // put and flush, for up to 56 bits.
  void write(std::uint64_t value, int bits) {
    put(value, bits);
    flush();
  }
  unsigned char* finish() {
    flush();
    if (count_ > 0) *out_++ = static_cast<unsigned char>(pending_);
    pending_ = 0;
    count_ = 0;
    return out_;
  }

 private:
  unsigned char* out_;
  std::uint64_t pending_ = 0;
  int count_ = 0;
};

// What the block sends: every byte as a literal, except the copies in each run, which go as
// matches at distance 1 after the run's first byte. With the symbols' counts for the codes.
struct Runs {
  struct Run {
    std::size_t first_copy = 0;  // the run's first byte is sent as a literal just before
    std::size_t copies = 0;      // kMinMatch or more
  };
  std::vector<Run> runs;
  std::vector<std::uint32_t> literal_length_freq = std::vector<std::uint32_t>(kLiteralLengthSymbols, 0);
  std::vector<std::uint32_t> distance_freq = std::vector<std::uint32_t>(kDistanceSymbols, 0);
};

// Bit k of the result: data[k] == data[k + 1], for k < 64 (reads 65 bytes).
std::uint64_t repeats_next(const unsigned char* data) {
  std::uint64_t mask = 0;
#if defined(__SSE2__)
  for (int block = 0; block < 4; ++block) {
    const __m128i here = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + 16 * block));
    const __m128i next = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + 16 * block + 1));
    const auto equal = static_cast<std::uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(here, next)));
    mask |= std::uint64_t(equal) << (16 * block);
  }
#else
  for (int k = 0; k < 64; ++k) mask |= std::uint64_t(data[k] == data[k + 1]) << k;
#endif
  return mask;
}

// Literal counts kept in eight tables, a byte's table chosen by its position, so that the many
// equal residuals of a view do not wait on each other's increments of one counter.
class LiteralCounts {
 public:
  void add(const unsigned char* data, std::size_t from, std::size_t to) {
    std::size_t i = from;
    for (; i + kTables <= to; i += kTables) {
      for (std::size_t k = 0; k < kTables; ++k) ++counts_[k][data[i + k]];
    }
    for (; i < to; ++i) ++counts_[0][data[i]];
  }
  void add_to(std::vector<std::uint32_t>& freq) const {
    for (const auto& table : counts_) {
      for (int byte = 0; byte < 256; ++byte) freq[byte] += table[byte];
    }
  }

 private:
  static constexpr std::size_t kTables = 8;
  std::array<std::array<std::uint32_t, 256>, kTables> counts_{};
};

// Where the next run starts at or after i (a byte followed by kMinMatch copies of itself or more),
// or size. 64 bytes are checked at a time with one mask; a run that crosses the end of the 64 is
// found from the next 64 on, at the cost of one more literal.
std::size_t next_run_head(const unsigned char* data, std::size_t i, std::size_t size) {
  for (; i + 65 <= size; i += 64) {
    const std::uint64_t repeats = repeats_next(data + i);
    const std::uint64_t heads = repeats & (repeats >> 1) & (repeats >> 2);
    if (heads != 0) return i + static_cast<std::size_t>(__builtin_ctzll(heads));
  }
  for (; i + kMinMatch < size; ++i) {
    if (data[i + 1] == data[i] && data[i + 2] == data[i] && data[i + 3] == data[i]) return i;
  }
  return size;
}

// The first byte after head that differs from data[head], or size. 16 bytes at a time: the flat
// parts of a view are runs thousands of bytes long.
std::size_t run_end(const unsigned char* data, std::size_t head, std::size_t size) {
  std::size_t end = head + 1;
#if defined(__SSE2__)
  const __m128i byte = _mm_set1_epi8(static_cast<char>(data[head]));
  for (; end + 16 <= size; end += 16) {
    const __m128i here = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + end));
    const auto same = static_cast<std::uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(here, byte)));
    if (same != 0xFFFF) return end + static_cast<std::size_t>(__builtin_ctz(~same));
  }
#endif
  while (end < size && data[end] == data[head]) ++end;
  return end;
}

// Calls match(length) for the matches a run of `copies` copies goes out as (258 at most each);
// returns how many copies are left over, fewer than kMinMatch, to go as literals.
template <class Match>
std::size_t split_run(std::size_t copies, Match&& match) {
  for (; copies >= kMinMatch; copies -= std::min<std::size_t>(copies, kMaxMatch)) {
    match(std::min<std::size_t>(copies, kMaxMatch));
  }
  return copies;
}

Runs find_runs(const unsigned char* data, std::size_t size) {
  const auto& lengths = length_codes();
  Runs r;
  LiteralCounts literals;
  for (std::size_t i = 0; i < size;) {
    const std::size_t head = next_run_head(data, i, size);
    literals.add(data, i, std::min(head + 1, size));
    if (head == size) break;
    const std::size_t end = run_end(data, head, size);
    const std::size_t copies = end - head - 1;
    r.runs.push_back({head + 1, copies});
    const std::size_t left = split_run(copies, [&](std::size_t length) {
      ++r.literal_length_freq[lengths[length].symbol];
      ++r.distance_freq[0];
    });
    literals.add(data, end - left, end);  // the last one or two copies, too few for a match
    i = end;
  }
  literals.add_to(r.literal_length_freq);
  r.literal_length_freq[kEndOfBlock] = 1;
  return r;
}

// The number of symbols up to the last one used, at least minimum.
std::size_t used_prefix(const std::vector<std::uint8_t>& lengths, std::size_t minimum) {
  std::size_t n = lengths.size();
  while (n > minimum && lengths[n - 1] == 0) --n;
  return n;
}

// RFC 1951 3.2.7: the header of a dynamic block, its two codes' lengths sent with a third code.
// The lengths go one symbol each (no 16/17/18 repeats): a view's block is megabytes long, so the
// few bytes that repeats would save do not matter.
void write_dynamic_header(BitWriter& bits, const HuffmanCode& literal_length, const HuffmanCode& distance) {
  const std::size_t literal_count = used_prefix(literal_length.lengths, 257);
  const std::size_t distance_count = used_prefix(distance.lengths, 1);
  std::vector<std::uint8_t> sequence(literal_length.lengths.begin(),
                                     literal_length.lengths.begin() + literal_count);
  sequence.insert(sequence.end(), distance.lengths.begin(), distance.lengths.begin() + distance_count);
  std::vector<std::uint32_t> freq(kCodeLengthSymbols, 0);
  for (std::uint8_t length : sequence) ++freq[length];
  const HuffmanCode code_length = make_code(freq, kMaxCodeLengthBits);

  constexpr std::array<int, kCodeLengthSymbols> order = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                                         11, 4,  12, 3, 13, 2, 14, 1, 15};
  std::size_t order_count = kCodeLengthSymbols;
  while (order_count > 4 && code_length.lengths[order[order_count - 1]] == 0) --order_count;

  bits.write(static_cast<std::uint32_t>(literal_count - 257), 5);
  bits.write(static_cast<std::uint32_t>(distance_count - 1), 5);
  bits.write(static_cast<std::uint32_t>(order_count - 4), 4);
  for (std::size_t k = 0; k < order_count; ++k) bits.write(code_length.lengths[order[k]], 3);
  for (std::uint8_t length : sequence) bits.write(code_length.codes[length], code_length.lengths[length]);
}

// The bits of each literal and of each match length with its extra bits and the code of distance
// 1 after them, so that a match is one put. A match fits 32 bits because the distance code has
// two symbols (make_code), so its codes are 1 bit long.
struct SymbolBits {
  std::array<std::pair<std::uint32_t, int>, 256> literal{};
  std::array<std::pair<std::uint32_t, int>, kMaxMatch + 1> match{};
};

SymbolBits symbol_bits(const HuffmanCode& literal_length, const HuffmanCode& distance) {
  SymbolBits table;
  for (int byte = 0; byte < 256; ++byte) {
    table.literal[byte] = {literal_length.codes[byte], literal_length.lengths[byte]};
  }
  const auto& lengths = length_codes();
  for (int length = kMinMatch; length <= kMaxMatch; ++length) {
    const LengthCode& code = lengths[length];
    int bits = literal_length.lengths[code.symbol];
    std::uint32_t value = literal_length.codes[code.symbol] | std::uint32_t(code.extra_value) << bits;
    bits += code.extra_bits;
    value |= std::uint32_t(distance.codes[0]) << bits;
    table.match[length] = {value, bits + distance.lengths[0]};
  }
  return table;
}

// Literals three to a flush (a literal code is at most 15 bits), their bits joined before they
// go in, so that the writer's state waits on one shift for three bytes.
void write_literals(BitWriter& bits, const SymbolBits& table, const unsigned char* data,
                    std::size_t from, std::size_t to) {
  std::size_t i = from;
  for (; i + 3 <= to; i += 3) {
    const auto& [first, first_bits] = table.literal[data[i]];
    const auto& [second, second_bits] = table.literal[data[i + 1]];
    const auto& [third, third_bits] = table.literal[data[i + 2]];
    const std::uint64_t joined = first | std::uint64_t(second) << first_bits |
                                 std::uint64_t(third) << (first_bits + second_bits);
    bits.write(joined, first_bits + second_bits + third_bits);
  }
  for (; i < to; ++i) bits.write(table.literal[data[i]].first, table.literal[data[i]].second);
}

void write_data(BitWriter& bits, const Runs& r, const HuffmanCode& literal_length,
                const HuffmanCode& distance, const unsigned char* data, std::size_t size) {
  const SymbolBits table = symbol_bits(literal_length, distance);
  std::size_t i = 0;
  for (const Runs::Run& run : r.runs) {
    write_literals(bits, table, data, i, run.first_copy);
    const std::size_t left = split_run(run.copies, [&](std::size_t length) {
      bits.write(table.match[length].first, table.match[length].second);
    });
    i = run.first_copy + run.copies - left;
  }
  write_literals(bits, table, data, i, size);
  bits.write(literal_length.codes[kEndOfBlock], literal_length.lengths[kEndOfBlock]);
}

// The bytes of the block's symbols: each symbol's count times its code's length, the lengths'
// extra bits, and a distance code for each match.
std::size_t data_bytes(const Runs& r, const HuffmanCode& literal_length, const HuffmanCode& distance) {
  std::uint64_t bits = 0;
  for (int symbol = 0; symbol < kLiteralLengthSymbols; ++symbol) {
    const int extra = symbol > kEndOfBlock ? kLengthExtraBits[symbol - kEndOfBlock - 1] : 0;
    bits += std::uint64_t(r.literal_length_freq[symbol]) * (literal_length.lengths[symbol] + extra);
  }
  bits += std::uint64_t(r.distance_freq[0]) * distance.lengths[0];
  return static_cast<std::size_t>((bits + 7) / 8);
}

}  // namespace

std::string zlib_compress(const unsigned char* data, std::size_t size) {
  const Runs runs = find_runs(data, size);
  const HuffmanCode literal_length = make_code(runs.literal_length_freq, kMaxCodeBits);
  const HuffmanCode distance = make_code(runs.distance_freq, kMaxCodeBits);

  // The block's exact size from the counts, plus the header (under 300 bytes: 19 code-length
  // lengths of 3 bits and 316 lengths of at most 7), the checksum, and the 8 bytes the bit writer
  // may store past its last byte.
  std::string out(2 + data_bytes(runs, literal_length, distance) + 300 + 4 + 8, '\0');
  auto* begin = reinterpret_cast<unsigned char*>(out.data());
  // CMF 0x78: deflate with a 32 KB window; FLG 0x01 makes CMF·256 + FLG a multiple of 31.
  begin[0] = 0x78;
  begin[1] = 0x01;
  BitWriter bits(begin + 2);
  bits.write(1, 1);  // BFINAL: the only block
  bits.write(2, 2);  // BTYPE: dynamic Huffman codes
  write_dynamic_header(bits, literal_length, distance);
  write_data(bits, runs, literal_length, distance, data, size);
  unsigned char* end = bits.finish();
  const std::uint32_t adler = adler32(data, size);
  for (int shift = 24; shift >= 0; shift -= 8) *end++ = static_cast<unsigned char>(adler >> shift);
  out.resize(static_cast<std::size_t>(end - begin));
  return out;
}

}  // namespace vitscope::io
