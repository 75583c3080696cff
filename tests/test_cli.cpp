// The vitscope executable, run as a user runs it: exit codes, output files and messages.

#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "cli_support.hpp"
#include "vitscope/io/npy.hpp"

namespace fs = std::filesystem;

namespace {

using vitscope::io::NpyArray;
using vitscope::io::read_npy;
using vitscope::test::fixture_path;
using vitscope::test::read_bytes;
using vitscope::test::read_case;
using vitscope::test::TempDir;
using vitscope::test::quote;
using vitscope::test::Run;
using vitscope::test::run_cli;

const std::string kTinyModel = std::string(VITSCOPE_ASSETS_DIR) + "/models/tiny.safetensors";
const std::string kTinySrc = std::string(VITSCOPE_ASSETS_DIR) + "/inputs/src.npy";

// A bad-input failure: exit 1 and exactly one "vitscope: error: ..." line on stderr.
void require_error_line(const Run& run) {
  INFO("stderr: " << run.err);
  REQUIRE(run.exit_code == 1);
  REQUIRE(run.err.rfind("vitscope: error: ", 0) == 0);
  REQUIRE(run.err.find('\n') == run.err.size() - 1);
}

// A bool .npy file (format 1.0), every element false.
void write_bool_npy(const std::string& path, const std::vector<std::size_t>& shape) {
  std::string dims;
  std::size_t count = 1;
  for (std::size_t d : shape) {
    dims += std::to_string(d) + ", ";
    count *= d;
  }
  std::string header = "{'descr': '|b1', 'fortran_order': False, 'shape': (" + dims + "), }";
  // The magic (6), version (2) and length (2) bytes plus the header end on a multiple of 64.
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  out.put(static_cast<char>(header.size() & 0xff));
  out.put(static_cast<char>(header.size() >> 8));
  out << header << std::string(count, '\0');
}

// The forward options for a fixture's inputs: each input's name is its option's, '_' for '-'.
std::string forward_input_args(const std::string& case_name, const nlohmann::json& inputs) {
  std::string args;
  for (const auto& [name, file] : inputs.items()) {
    std::string option = "--" + name;
    std::replace(option.begin(), option.end(), '_', '-');
    args += " " + option + " " + quote(fixture_path(case_name, file.get<std::string>()));
  }
  return args;
}

std::vector<std::string> transformer_cases() {
  std::vector<std::string> cases;
  for (const fs::directory_entry& entry : fs::directory_iterator(VITSCOPE_FIXTURES_DIR)) {
    const std::string name = entry.path().filename().string();
    if (fs::exists(entry.path() / "case.json") &&
        read_case(name).value("kind", "") == "transformer") {
      cases.push_back(name);
    }
  }
  std::sort(cases.begin(), cases.end());
  return cases;
}

void require_same_array(const std::string& what, const std::string& actual_path,
                        const std::string& expected_path, double tolerance) {
  const NpyArray actual = read_npy(actual_path);
  const NpyArray expected = read_npy(expected_path);
  INFO(what);
  REQUIRE(actual.shape == expected.shape);
  vitscope::test::require_close(what, actual.data, expected, tolerance);
}

std::set<std::string> file_names(const std::string& dir) {
  std::set<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    names.insert(entry.path().filename().string());
  }
  return names;
}

}  // namespace

TEST_CASE("vitscope --help exits 0 for every command", "[cli]") {
  const std::string command = GENERATE(as<std::string>{}, "", "info ", "forward ", "bench ");
  const Run run = run_cli(command + "--help");
  CHECK(run.exit_code == 0);
  CHECK(run.out.find("Usage:") != std::string::npos);
}

TEST_CASE("vitscope --version exits 0", "[cli]") {
  const Run run = run_cli("--version");
  CHECK(run.exit_code == 0);
  CHECK_FALSE(run.out.empty());
}

TEST_CASE("info describes the tiny model", "[cli]") {
  const Run text = run_cli("info " + quote(kTinyModel));
  REQUIRE(text.exit_code == 0);
  CHECK(text.out.find("d_model: 64\n") != std::string::npos);
  CHECK(text.out.find("parameters: ") != std::string::npos);

  const Run json = run_cli("info --json " + quote(kTinyModel));
  REQUIRE(json.exit_code == 0);
  const nlohmann::json info = nlohmann::json::parse(json.out);
  CHECK(info.at("architecture") == "Transformer");
  CHECK(info.at("d_model") == 64);
  for (const char* field : {"nhead", "num_encoder_layers", "num_decoder_layers", "dim_feedforward",
                            "activation", "layer_norm_eps", "batch_first", "norm_first",
                            "encoder_norm", "decoder_norm", "parameters"}) {
    INFO(field);
    CHECK(info.contains(field));
  }
  CHECK(info.at("parameters").get<std::size_t>() > 0);
  CHECK(info.at("metadata").at("d_model") == "64");
}

TEST_CASE("forward matches PyTorch on every transformer fixture, attention included", "[cli]") {
  const std::vector<std::string> cases = transformer_cases();
  REQUIRE(cases.size() >= 3);
  for (const std::string& case_name : cases) {
    INFO("case " << case_name);
    const nlohmann::json spec = read_case(case_name);
    const double tolerance = spec.at("tolerance").get<double>();
    TempDir dir;
    const Run run = run_cli(
        "forward --model " + quote(fixture_path(case_name, spec.at("model").get<std::string>())) +
        forward_input_args(case_name, spec.at("inputs")) + " --out " + quote(dir.file("out.npy")) +
        " --attn-dir " + quote(dir.file("attn")) + " --threads 1");
    INFO("stderr: " << run.err);
    REQUIRE(run.exit_code == 0);
    require_same_array(case_name + " out", dir.file("out.npy"),
                       fixture_path(case_name, spec.at("expected").get<std::string>()), tolerance);

    std::set<std::string> expected_files;
    for (const auto& [module, file] : spec.at("attention").items()) {
      expected_files.insert(module + ".npy");
      require_same_array(case_name + " " + module, dir.file("attn/" + module + ".npy"),
                         fixture_path(case_name, file.get<std::string>()), tolerance);
    }
    CHECK(file_names(dir.file("attn")) == expected_files);  // one file per module that ran
  }
}

TEST_CASE("a model that adds positions in every attention refuses to run without them", "[cli]") {
  const std::string case_name = "transformer_detr_positions";
  const nlohmann::json spec = read_case(case_name);
  const std::string model = quote(fixture_path(case_name, spec.at("model").get<std::string>()));
  const auto input = [&](const char* name) {
    return quote(fixture_path(case_name, spec.at("inputs").at(name).get<std::string>()));
  };
  TempDir dir;
  const std::string out = " --out " + quote(dir.file("out.npy"));
  const Run no_pos = run_cli("forward --model " + model + " --src " + input("src") + " --tgt " +
                             input("tgt") + out);
  CHECK(no_pos.exit_code == 2);
  CHECK(no_pos.err.find("give --pos") != std::string::npos);
  const Run no_query_pos = run_cli("forward --model " + model + " --src " + input("src") + " --tgt " +
                                   input("tgt") + " --pos " + input("pos") + out);
  CHECK(no_query_pos.exit_code == 2);
  CHECK(no_query_pos.err.find("give --query-pos") != std::string::npos);
  const Run wrong_shape = run_cli("forward --model " + model + " --src " + input("src") + " --tgt " +
                                  input("tgt") + " --pos " + input("tgt") + " --query-pos " +
                                  input("query_pos") + out);
  CHECK(wrong_shape.exit_code == 1);
  CHECK(wrong_shape.err.find("--pos") != std::string::npos);
  const Run info = run_cli("info " + model);
  CHECK(info.out.find("position_mode") != std::string::npos);
}

TEST_CASE("bad input files exit 1 with one error line", "[cli]") {
  TempDir dir;

  SECTION("missing model") {
    require_error_line(run_cli("info " + quote(dir.file("missing.safetensors"))));
    require_error_line(run_cli("forward --model " + quote(dir.file("missing.safetensors")) +
                               " --src " + quote(kTinySrc) + " --out " + quote(dir.file("o.npy"))));
  }
  SECTION("truncated model") {
    const std::string bytes = read_bytes(kTinyModel);
    std::ofstream(dir.file("truncated.safetensors"), std::ios::binary)
        << bytes.substr(0, bytes.size() / 2);
    require_error_line(run_cli("info " + quote(dir.file("truncated.safetensors"))));
  }
  SECTION("garbage model") {
    std::ofstream(dir.file("garbage.safetensors"), std::ios::binary) << "not a safetensors file";
    require_error_line(run_cli("info " + quote(dir.file("garbage.safetensors"))));
  }
  SECTION("src with the wrong feature dimension") {
    const std::vector<float> values(2 * 3 * 5, 0.5f);
    vitscope::io::write_npy(dir.file("src.npy"), values.data(), {2, 3, 5});
    const Run run = run_cli("forward --model " + quote(kTinyModel) + " --src " +
                            quote(dir.file("src.npy")) + " --out " + quote(dir.file("o.npy")));
    require_error_line(run);
    CHECK(run.err.find(dir.file("src.npy")) != std::string::npos);  // names the file
    CHECK(run.err.find("(2, 3, 5)") != std::string::npos);          // and its shape
    CHECK_FALSE(fs::exists(dir.file("o.npy")));
  }
  SECTION("bool mask of the wrong shape") {
    write_bool_npy(dir.file("mask.npy"), {3, 4});  // tiny's src is 16 long
    const Run run = run_cli("forward --model " + quote(kTinyModel) + " --src " + quote(kTinySrc) +
                            " --src-mask " + quote(dir.file("mask.npy")) + " --out " +
                            quote(dir.file("o.npy")));
    require_error_line(run);
    CHECK(run.err.find("--src-mask") != std::string::npos);
    CHECK(run.err.find("(3, 4)") != std::string::npos);
  }
}

TEST_CASE("usage errors exit 2", "[cli]") {
  TempDir dir;
  const std::string tiny_forward = "forward --model " + quote(kTinyModel) + " --src " +
                                   quote(kTinySrc) + " --out " + quote(dir.file("o.npy"));

  CHECK(run_cli(tiny_forward + " --no-such-option").exit_code == 2);
  CHECK(run_cli("forward --src " + quote(kTinySrc)).exit_code == 2);  // missing required
  CHECK(run_cli("bench --model " + quote(kTinyModel) + " --src-len 0").exit_code == 2);
  CHECK(run_cli("bench --model " + quote(kTinyModel) + " --src-len x").exit_code == 2);
  CHECK(run_cli("").exit_code == 2);  // no command

  SECTION("a target mask without --tgt") {
    write_bool_npy(dir.file("mask.npy"), {16, 16});
    CHECK(run_cli(tiny_forward + " --tgt-mask " + quote(dir.file("mask.npy"))).exit_code == 2);
  }
  SECTION("--tgt for an encoder-only model") {
    const std::string model = fixture_path("transformer_encoder_only", "model.safetensors");
    const std::string src = fixture_path("transformer_encoder_only", "src.npy");
    const Run run = run_cli("forward --model " + quote(model) + " --src " + quote(src) + " --tgt " +
                            quote(src) + " --out " + quote(dir.file("o.npy")));
    CHECK(run.exit_code == 2);
    CHECK(run.err.find("no decoder") != std::string::npos);
  }
}

TEST_CASE("bench prints one JSON object", "[cli]") {
  const std::string length = GENERATE(as<std::string>{}, "", " --tgt-len 4");
  const Run run =
      run_cli("bench --model " + quote(kTinyModel) + " --repeat 2 --src-len 8" + length);
  REQUIRE(run.exit_code == 0);
  const nlohmann::json report = nlohmann::json::parse(run.out);
  for (const char* field : {"load_ms", "forward_ms", "forward_ms_min", "repeat", "threads", "batch",
                            "src_len", "tgt_len", "peak_rss_mb"}) {
    INFO(field);
    CHECK(report.at(field).is_number());
  }
  CHECK(report.at("repeat") == 2);
  CHECK(report.at("src_len") == 8);
  CHECK(report.at("tgt_len") == (length.empty() ? 0 : 4));
}
