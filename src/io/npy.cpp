// Reading checks in this order; the first failing check decides the one error code:
//   npy_io_error          the file cannot be opened or read (never for parse_npy)
//   npy_bad_magic         shorter than the preamble, no "\x93NUMPY" magic, or a version other
//                         than 1.0, 2.0, 3.0
//   npy_bad_header        header length over the cap (65535 for 1.0, 1 MiB for 2.0/3.0) or past the
//                         end of the file; not a dict literal; keys other than exactly descr,
//                         fortran_order, shape; fortran_order not True/False; shape not a tuple of
//                         non-negative integers that fit in 64 bits
//   npy_unsupported_dtype descr is anything but '<f4' or '|b1'
//   npy_fortran_order     fortran_order is True
//   npy_size_mismatch     data bytes != product(shape) * itemsize, or that product overflows
//   npy_invalid_bool      a '|b1' data byte other than 0 or 1

#include "vitscope/io/npy.hpp"

#include <cctype>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>

#include "binary_file.hpp"
#include "vitscope/io/atomic_file.hpp"

namespace vitscope::io {
namespace {

using detail::ByteSource;
using detail::element_count;
using detail::fail;

const std::string kMagic = "\x93NUMPY";
const std::string kIoError = "npy_io_error";
constexpr std::uint64_t kMaxHeaderV2 = 1 << 20;

// The subset of Python literals that npy headers use: str, int, True/False/None, tuple, list.
struct PyValue {
  enum class Kind { String, Int, True, False, None, Tuple, List };
  Kind kind = Kind::None;
  std::string text;
  std::uint64_t number = 0;
  std::vector<PyValue> items;
};

class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  std::map<std::string, PyValue> parse_dict() {
    std::map<std::string, PyValue> dict;
    skip_space();
    expect('{');
    while (true) {
      skip_space();
      if (consume('}')) break;
      const std::string key = parse_string();
      skip_space();
      expect(':');
      if (!dict.emplace(key, parse_value(0)).second) error("repeats key '" + key + "'");
      skip_space();
      if (consume(',')) continue;
      expect('}');
      break;
    }
    skip_space();
    if (pos_ != s_.size()) error("has extra text after the dict");
    return dict;
  }

 private:
  // Deep enough for any real descr; the limit stops "((((..." from exhausting the stack.
  static constexpr int kMaxDepth = 32;

  [[noreturn]] void error(const std::string& what) const {
    fail("npy_bad_header", path_,
         "header " + what + " (at header byte " + std::to_string(pos_) + ")");
  }
  void skip_space() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\r' || s_[pos_] == '\n'))
      ++pos_;
  }
  bool consume(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!consume(c)) error(std::string("lacks an expected '") + c + "'");
  }
  bool at_digit() const { return pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9'; }
  bool at_letter() const {
    return pos_ < s_.size() &&
           (std::isalpha(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_');
  }

  // Printable ASCII, no escapes: enough for npy keys and descrs, and safe to echo in messages.
  std::string parse_string() {
    if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"'))
      error("expects a quoted string");
    const char quote = s_[pos_++];
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != quote) {
      const char c = s_[pos_];
      if (c < 0x20 || c > 0x7E || c == '\\') error("has an unsupported character in a string");
      out += c;
      ++pos_;
    }
    expect(quote);
    return out;
  }

  PyValue parse_value(int depth) {
    if (depth > kMaxDepth) error("nests deeper than " + std::to_string(kMaxDepth) + " levels");
    skip_space();
    PyValue v;
    if (pos_ < s_.size() && (s_[pos_] == '\'' || s_[pos_] == '"')) {
      v.kind = PyValue::Kind::String;
      v.text = parse_string();
    } else if (at_digit()) {
      v.kind = PyValue::Kind::Int;
      while (at_digit()) {
        const auto digit = static_cast<std::uint64_t>(s_[pos_++] - '0');
        if (v.number > (std::numeric_limits<std::uint64_t>::max() - digit) / 10)
          error("has an integer that does not fit in 64 bits");
        v.number = v.number * 10 + digit;
      }
      consume('L');  // Python 2 era numpy wrote long integers such as (3L, 4L)
    } else if (consume('(')) {
      bool had_comma = false;
      v.items = parse_items(')', depth, had_comma);
      // "(5)" is just 5 in Python; only "(5,)" is a one-element tuple.
      if (v.items.size() == 1 && !had_comma) return v.items.front();
      v.kind = PyValue::Kind::Tuple;
    } else if (consume('[')) {
      bool had_comma = false;
      v.items = parse_items(']', depth, had_comma);
      v.kind = PyValue::Kind::List;
    } else if (at_letter()) {
      std::string word;
      while (at_letter() || at_digit()) word += s_[pos_++];
      if (word == "True")
        v.kind = PyValue::Kind::True;
      else if (word == "False")
        v.kind = PyValue::Kind::False;
      else if (word == "None")
        v.kind = PyValue::Kind::None;
      else
        error("has an unknown name '" + word + "'");
    } else {
      error("has an unexpected character");
    }
    return v;
  }

  std::vector<PyValue> parse_items(char close, int depth, bool& had_comma) {
    std::vector<PyValue> items;
    skip_space();
    if (consume(close)) return items;
    while (true) {
      items.push_back(parse_value(depth + 1));
      skip_space();
      if (!consume(',')) break;
      had_comma = true;
      skip_space();
      if (consume(close)) return items;
    }
    expect(close);
    return items;
  }

  const std::string& s_;
  const std::string& path_;
  std::size_t pos_ = 0;
};

struct Header {
  std::string descr;
  bool descr_is_string = false;
  bool fortran_order = false;
  Shape shape;
};

Header interpret_header(const std::string& text, const std::string& path) {
  std::map<std::string, PyValue> dict = HeaderParser(text, path).parse_dict();
  const auto bad = [&](const std::string& what) { fail("npy_bad_header", path, "header " + what); };
  if (dict.size() != 3 || !dict.count("descr") || !dict.count("fortran_order") ||
      !dict.count("shape")) {
    std::string keys;
    for (const auto& entry : dict) keys += (keys.empty() ? "'" : ", '") + entry.first + "'";
    bad("has keys {" + keys + "}; need exactly 'descr', 'fortran_order' and 'shape'");
  }
  Header h;
  const PyValue& fortran = dict["fortran_order"];
  if (fortran.kind != PyValue::Kind::True && fortran.kind != PyValue::Kind::False)
    bad("'fortran_order' is not True or False");
  h.fortran_order = fortran.kind == PyValue::Kind::True;
  const PyValue& shape = dict["shape"];
  if (shape.kind != PyValue::Kind::Tuple) bad("'shape' is not a tuple");
  for (const PyValue& d : shape.items) {
    if (d.kind != PyValue::Kind::Int)
      bad("'shape' holds something other than a non-negative integer");
    h.shape.push_back(static_cast<std::size_t>(d.number));
  }
  const PyValue& descr = dict["descr"];
  h.descr_is_string = descr.kind == PyValue::Kind::String;
  h.descr = descr.text;
  return h;
}

NpyArray parse(const ByteSource& source, const std::string& path) {
  const std::uint64_t file_size = source.size;

  const auto too_short = [&](std::uint64_t needed) {
    fail("npy_bad_magic", path,
         "file is " + std::to_string(file_size) + " bytes, shorter than the " +
             std::to_string(needed) + "-byte npy preamble");
  };
  if (file_size < 10) too_short(10);
  unsigned char pre[12];
  source.read(0, reinterpret_cast<char*>(pre), 10);
  if (std::memcmp(pre, kMagic.data(), kMagic.size()) != 0)
    fail("npy_bad_magic", path, "file does not start with the npy magic \"\\x93NUMPY\"");
  const unsigned major = pre[6];
  const unsigned minor = pre[7];
  if (major < 1 || major > 3 || minor != 0)
    fail("npy_bad_magic", path,
         "npy format version " + std::to_string(major) + "." + std::to_string(minor) +
             " is not 1.0, 2.0 or 3.0");
  std::uint64_t preamble = 10;
  std::uint64_t header_len = pre[8] | (pre[9] << 8);
  if (major >= 2) {
    preamble = 12;
    if (file_size < preamble) too_short(preamble);
    source.read(10, reinterpret_cast<char*>(pre + 10), 2);
    header_len |=
        (static_cast<std::uint64_t>(pre[10]) << 16) | (static_cast<std::uint64_t>(pre[11]) << 24);
    if (header_len > kMaxHeaderV2)
      fail("npy_bad_header", path,
           "header length " + std::to_string(header_len) + " exceeds the " +
               std::to_string(kMaxHeaderV2) + "-byte limit");
  }
  if (header_len > file_size - preamble)
    fail("npy_bad_header", path,
         "header length " + std::to_string(header_len) + " runs past the end of the " +
             std::to_string(file_size) + "-byte file");
  std::string text(static_cast<std::size_t>(header_len), '\0');
  source.read(preamble, text.data(), header_len);
  const Header h = interpret_header(text, path);

  NpyArray result;
  std::uint64_t itemsize = 4;
  if (h.descr_is_string && h.descr == "|b1") {
    result.dtype = NpyDType::Bool;
    itemsize = 1;
  } else if (!h.descr_is_string || h.descr != "<f4") {
    const std::string what =
        h.descr_is_string ? "dtype '" + h.descr + "' is" : "a structured or non-string descr is";
    fail("npy_unsupported_dtype", path,
         what + " not supported; need float32 ('<f4') or bool ('|b1')");
  }
  if (h.fortran_order)
    fail("npy_fortran_order", path, "array is in Fortran order; only C order is supported");

  const std::uint64_t data_start = preamble + header_len;
  const std::uint64_t data_bytes = file_size - data_start;
  const auto count = element_count(h.shape);
  if (!count || *count > std::numeric_limits<std::uint64_t>::max() / itemsize)
    fail("npy_size_mismatch", path,
         "shape " + shape_to_string(h.shape) + " has more bytes than fit in 64 bits");
  if (*count * itemsize != data_bytes)
    fail("npy_size_mismatch", path,
         "shape " + shape_to_string(h.shape) + " needs " + std::to_string(*count * itemsize) +
             " data bytes but the file has " + std::to_string(data_bytes));

  result.shape = h.shape;
  result.data.resize(static_cast<std::size_t>(*count));
  if (result.dtype == NpyDType::Float32) {
    source.read(data_start, reinterpret_cast<char*>(result.data.data()), data_bytes);
    return result;
  }
  std::vector<unsigned char> raw(static_cast<std::size_t>(*count));
  source.read(data_start, reinterpret_cast<char*>(raw.data()), data_bytes);
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] > 1)
      fail("npy_invalid_bool", path,
           "bool element " + std::to_string(i) + " has byte value " + std::to_string(raw[i]) +
               ", not 0 or 1");
    result.data[i] = raw[i];
  }
  return result;
}

}  // namespace

NpyArray read_npy(const std::string& path) {
  return parse(detail::file_source(path, kIoError), path);
}

NpyArray parse_npy(const std::string& bytes, const std::string& name) {
  return parse(detail::memory_source(bytes, name, kIoError), name);
}

void write_npy(const std::string& path, const float* data, const Shape& shape) {
  const auto count = element_count(shape);
  if (!count || *count > std::numeric_limits<std::size_t>::max() / sizeof(float) ||
      (*count > 0 && !data))
    fail("invalid_argument", path,
         "cannot write shape " + shape_to_string(shape) + " from the given data");
  std::string shape_repr = shape_to_string(shape);
  if (shape.size() == 1)
    shape_repr.insert(shape_repr.size() - 1, ",");  // Python's (5,) tuple syntax
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_repr + ", }";
  // numpy aligns the data to 64 bytes: 10-byte preamble + header + '\n'.
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  if (header.size() > 0xFFFF)
    fail("invalid_argument", path,
         "header of " + std::to_string(header.size()) + " bytes is too long for npy 1.0");

  std::string bytes = kMagic + '\x01' + '\x00';
  bytes += static_cast<char>(header.size() & 0xFF);
  bytes += static_cast<char>(header.size() >> 8);
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(data),
               static_cast<std::size_t>(*count) * sizeof(float));
  write_file_atomically(path, bytes);
}

}  // namespace vitscope::io
