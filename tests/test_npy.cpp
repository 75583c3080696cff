#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "support.hpp"
#include "vitscope/error.hpp"
#include "vitscope/io/npy.hpp"

namespace fs = std::filesystem;
using vitscope::Shape;
using vitscope::io::NpyDType;
using vitscope::io::parse_npy;
using vitscope::io::read_npy;
using vitscope::io::write_npy;
using vitscope::test::error_code;
using vitscope::test::read_bytes;
using vitscope::test::TempDir;

namespace {

// Preamble for format major.0 with the given header length field, then header and data verbatim.
std::string npy_file(const std::string& header, const std::string& data = "", int major = 1,
                     std::uint64_t header_len = ~0ULL) {
  if (header_len == ~0ULL) header_len = header.size();
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  for (int i = 0; i < (major == 1 ? 2 : 4); ++i)
    out += static_cast<char>((header_len >> (8 * i)) & 0xFF);
  return out + header + data;
}

std::string f32_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

std::string dict(const std::string& descr, const std::string& fortran, const std::string& shape) {
  return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }\n";
}

std::string read_code(const std::string& bytes) {
  TempDir tmp;
  const std::string path = tmp.write("a.npy", bytes);
  return error_code([&] { read_npy(path); });
}

}  // namespace

TEST_CASE("npy: unreadable file", "[npy]") {
  TempDir tmp;
  CHECK(error_code([&] { read_npy(tmp.file("missing.npy")); }) == "npy_io_error");
  CHECK(error_code([&] { read_npy(tmp.path().string()); }) == "npy_io_error");
}

TEST_CASE("npy: preamble", "[npy]") {
  CHECK(read_code("") == "npy_bad_magic");
  CHECK(read_code("\x93NUMPY\x01") == "npy_bad_magic");
  CHECK(read_code("\x93NUMPZ" + npy_file(dict("<f4", "False", "()")).substr(6)) == "npy_bad_magic");
  CHECK(read_code(npy_file(dict("<f4", "False", "()"), f32_bytes({1}), 4)) == "npy_bad_magic");
  std::string minor_1 = npy_file(dict("<f4", "False", "()"), f32_bytes({1}));
  minor_1[7] = 1;
  CHECK(read_code(minor_1) == "npy_bad_magic");
  CHECK(read_code(npy_file("", "", 2).substr(0, 11)) == "npy_bad_magic");
}

TEST_CASE("npy: header length limits", "[npy]") {
  CHECK(read_code(npy_file("{}", "", 2, (1 << 20) + 1)) == "npy_bad_header");
  CHECK(read_code(npy_file("{}", "", 3, 0xFFFFFFFFULL)) == "npy_bad_header");
  CHECK(read_code(npy_file(dict("<f4", "False", "()"), "", 1, 0xFFFF)) == "npy_bad_header");
  CHECK(read_code(npy_file("{}", "", 1, 3)) == "npy_bad_header");
  // The cap applies before the file size is looked at.
  TempDir tmp;
  const std::string path =
      tmp.write("a.npy", npy_file("{}", std::string(2 << 20, ' '), 2, (1 << 20) + 1));
  try {
    read_npy(path);
    FAIL("no error thrown");
  } catch (const vitscope::Error& e) {
    CHECK(e.code() == "npy_bad_header");
    CHECK(std::string(e.what()) == path + ": header length 1048577 exceeds the 1048576-byte limit");
  }
}

TEST_CASE("npy: malformed header dict", "[npy]") {
  const std::string d = f32_bytes({1, 2});
  const char* bad[] = {
      "",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)",
      "'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
      "{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x",
      "{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}",
      "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}",
      "{'descr': '<f4', 'fortran_order': False}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
      "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
      "{descr: '<f4', 'fortran_order': False, 'shape': (2,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': [2]}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': 2}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2.0,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (None,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': ((2,),)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551616,)}",
      "{'descr': '<f\\x34', 'fortran_order': False, 'shape': (2,)}",
      "{'descr': '<f4\n', 'fortran_order': False, 'shape': (2,)}",
  };
  for (const char* header : bad) {
    INFO(header);
    CHECK(read_code(npy_file(header, d)) == "npy_bad_header");
  }
  // "((((...": deep nesting is an error, not a stack overflow.
  const std::string deep =
      "{'descr': '<f4', 'fortran_order': False, 'shape': " + std::string(100000, '(');
  CHECK(read_code(npy_file(deep, "", 2)) == "npy_bad_header");
}

TEST_CASE("npy: header parsing is tolerant of layout", "[npy]") {
  const std::string d = f32_bytes({1, 2, 3, 4, 5, 6});
  const char* good[] = {
      "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}",
      "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(2,3)}",
      "  {  'descr' : '<f4' ,\t'fortran_order' : False , 'shape' : ( 2 , 3 , ) , }  \n",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': ((2), 3), }",
  };
  for (const char* header : good) {
    INFO(header);
    TempDir tmp;
    const auto a = read_npy(tmp.write("a.npy", npy_file(header, d)));
    CHECK(a.shape == Shape{2, 3});
    CHECK(a.data == std::vector<float>{1, 2, 3, 4, 5, 6});
  }
  TempDir tmp;
  for (const int major : {2, 3}) {
    const auto a = read_npy(tmp.write(
        "a.npy", npy_file(dict("<f4", "False", "(5,)"), f32_bytes({1, 2, 3, 4, 5}), major)));
    CHECK(a.shape == Shape{5});
    CHECK(a.data == std::vector<float>{1, 2, 3, 4, 5});
  }
  const auto scalar =
      read_npy(tmp.write("a.npy", npy_file(dict("<f4", "False", "()"), f32_bytes({-0.5f}))));
  CHECK(scalar.shape.empty());
  CHECK(scalar.data == std::vector<float>{-0.5f});
}

TEST_CASE("npy: only float32 and bool", "[npy]") {
  for (const char* descr : {"<f8", ">f4", "=f4", "<f2", "<i4", "|u1", "|b2", "<U4", "f4"}) {
    INFO(descr);
    CHECK(read_code(npy_file(dict(descr, "False", "(1,)"), std::string(4, '\0'))) ==
          "npy_unsupported_dtype");
  }
  CHECK(read_code(npy_file("{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (1,)}",
                           std::string(4, '\0'))) == "npy_unsupported_dtype");
  TempDir tmp;
  const std::string path =
      tmp.write("a.npy", npy_file(dict("<f8", "False", "(1,)"), std::string(8, '\0')));
  try {
    read_npy(path);
    FAIL("no error thrown");
  } catch (const vitscope::Error& e) {
    CHECK(std::string(e.what()) ==
          path + ": dtype '<f8' is not supported; need float32 ('<f4') or bool ('|b1')");
  }
}

TEST_CASE("npy: Fortran order is rejected", "[npy]") {
  CHECK(read_code(npy_file(dict("<f4", "True", "(2, 2)"), f32_bytes({1, 2, 3, 4}))) ==
        "npy_fortran_order");
}

TEST_CASE("npy: data size must match the shape", "[npy]") {
  CHECK(read_code(npy_file(dict("<f4", "False", "(2, 3)"), f32_bytes({1, 2, 3, 4, 5}))) ==
        "npy_size_mismatch");
  CHECK(read_code(npy_file(dict("<f4", "False", "(2,)"), f32_bytes({1, 2}) + "x")) ==
        "npy_size_mismatch");
  CHECK(read_code(npy_file(dict("<f4", "False", "()"), "")) == "npy_size_mismatch");
  CHECK(read_code(npy_file(dict("|b1", "False", "(3,)"), "\x01\x00")) == "npy_size_mismatch");
  CHECK(read_code(npy_file(dict("<f4", "False", "(4294967296, 4294967296)"), "")) ==
        "npy_size_mismatch");
  CHECK(read_code(npy_file(dict("<f4", "False", "(4611686018427387904,)"), "")) ==
        "npy_size_mismatch");
  TempDir tmp;
  const auto empty =
      read_npy(tmp.write("a.npy", npy_file(dict("<f4", "False", "(4294967296, 4294967296, 0)"))));
  CHECK(empty.shape == Shape{4294967296ULL, 4294967296ULL, 0});
  CHECK(empty.data.empty());
}

TEST_CASE("npy: bool arrays", "[npy]") {
  TempDir tmp;
  const auto a = read_npy(tmp.write(
      "a.npy", npy_file(dict("|b1", "False", "(2, 2)"), std::string("\x00\x01\x01\x00", 4))));
  CHECK(a.dtype == NpyDType::Bool);
  CHECK(a.shape == Shape{2, 2});
  CHECK(a.data == std::vector<float>{0, 1, 1, 0});
  CHECK(read_code(npy_file(dict("|b1", "False", "(3,)"), std::string("\x01\x02\x00", 3))) ==
        "npy_invalid_bool");
}

TEST_CASE("npy: parse_npy reads bytes as read_npy reads the file", "[npy]") {
  const std::string bytes = npy_file(dict("<f4", "False", "(2,)"), f32_bytes({1.5f, -2.0f}));
  const auto a = parse_npy(bytes, "mem.npy");
  CHECK(a.shape == Shape{2});
  CHECK(a.data == std::vector<float>{1.5f, -2.0f});
  const std::string cut = bytes.substr(0, bytes.size() - 1);
  CHECK(read_code(cut) == "npy_size_mismatch");
  try {
    parse_npy(cut, "mem.npy");
    FAIL("no error");
  } catch (const vitscope::Error& e) {
    CHECK(e.code() == "npy_size_mismatch");
    CHECK(std::string(e.what()).rfind("mem.npy: ", 0) == 0);
  }
}

TEST_CASE("npy: write then read round trip, ranks 0 to 4", "[npy]") {
  TempDir tmp;
  const std::vector<Shape> shapes = {{}, {5}, {2, 3}, {2, 1, 3}, {1, 2, 3, 2}, {0}, {3, 0, 2}};
  for (const Shape& shape : shapes) {
    INFO("shape " << vitscope::shape_to_string(shape));
    std::size_t n = 1;
    for (const std::size_t d : shape) n *= d;
    std::vector<float> data(n);
    for (std::size_t i = 0; i < n; ++i) data[i] = 0.5f * static_cast<float>(i) - 3.0f;
    const std::string path = tmp.file("r.npy");
    write_npy(path, data.data(), shape);
    const auto a = read_npy(path);
    CHECK(a.dtype == NpyDType::Float32);
    CHECK(a.shape == shape);
    CHECK(a.data == data);
    const std::string bytes = read_bytes(path);
    CHECK(bytes.size() % 64 == n * 4 % 64);
    CHECK(bytes.size() >= 64);
    CHECK(bytes[bytes.size() - n * 4 - 1] == '\n');
  }
  CHECK(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()) == 1);
}

TEST_CASE("npy: written bytes follow numpy's format 1.0 layout", "[npy]") {
  TempDir tmp;
  const std::string path = tmp.file("f.npy");
  const float data[] = {1.0f, -2.0f};
  write_npy(path, data, {2});
  const std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string expected = std::string("\x93NUMPY\x01\x00\x76\x00", 10) + header +
                               std::string(128 - 10 - header.size() - 1, ' ') + "\n" +
                               f32_bytes({1.0f, -2.0f});
  CHECK(read_bytes(path) == expected);
}

TEST_CASE("npy: writer errors", "[npy]") {
  TempDir tmp;
  CHECK(error_code([&] { write_npy(tmp.file("x.npy"), nullptr, {2}); }) == "invalid_argument");
  const float one = 1.0f;
  CHECK(error_code([&] { write_npy(tmp.file("missing/x.npy"), &one, {}); }) == "write_failed");
  CHECK(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()) == 0);
}
