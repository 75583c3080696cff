// Sharded runs through the real executable: `vitscope run --shard` splits the inputs by a hash of
// their paths that adding files does not disturb, and `vitscope merge` joins the shards into the
// single run's folder or refuses, on one line, shards that are not one run.

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "cli_support.hpp"

namespace fs = std::filesystem;

namespace {

using nlohmann::json;
using vitscope::test::quote;
using vitscope::test::read_bytes;
using vitscope::test::Run;
using vitscope::test::run_cli;
using vitscope::test::TempDir;

// Small pictures and no attention views keep the many runs fast.
const std::string kFast = " --size 32 --threads 1 --attention-views none";

json read_json(const fs::path& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  return json::parse(in);
}

// names (relative to folder) as small distinct pictures.
void write_images(const fs::path& folder, const std::vector<std::string>& names) {
  std::uint64_t seed = 1;
  for (const std::string& name : names) {
    cv::Mat m(20 + static_cast<int>(seed % 7), 24, CV_8UC3);
    cv::RNG(seed++).fill(m, cv::RNG::UNIFORM, 0, 255);
    fs::create_directories((folder / name).parent_path());
    REQUIRE(cv::imwrite((folder / name).string(), m));
  }
}

std::string run_shard(const fs::path& inputs, const fs::path& out, const std::string& shard,
                      const std::string& extra = "") {
  return "run " + quote(inputs.string()) + " --out " + quote(out.string()) + kFast + " --shard " +
         shard + extra;
}

// Runs every shard of count into out; each must succeed.
void run_all_shards(const fs::path& inputs, const fs::path& out, int count) {
  for (int i = 0; i < count; ++i) {
    const Run r = run_cli(run_shard(inputs, out, std::to_string(i) + "/" + std::to_string(count)));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
  }
}

// input -> the shard whose summary lists it; every input must be listed once.
std::map<std::string, int> assignment(const fs::path& out, int count) {
  std::map<std::string, int> shard_of;
  for (int i = 0; i < count; ++i) {
    const json summary = read_json(out / ("summary.shard-" + std::to_string(i) + "-of-" +
                                          std::to_string(count) + ".json"));
    for (const json& image : summary.at("images")) {
      INFO(image.at("input"));
      CHECK(shard_of.emplace(image.at("input"), i).second);
    }
  }
  return shard_of;
}

// The 64-bit FNV-1a of the path, written out again here: changing the hash would move every
// input of a half-done run to another shard.
int expected_shard(std::string_view relative, int count) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : relative) hash = (hash ^ c) * 0x100000001b3ULL;
  return static_cast<int>(hash % static_cast<std::uint64_t>(count));
}

// Every file under folder, by its path relative to folder.
std::set<std::string> files_under(const fs::path& folder) {
  std::set<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(folder)) {
    if (entry.is_regular_file()) files.insert(fs::relative(entry.path(), folder).string());
  }
  return files;
}

// The inode of an image's features.npy. Every file is written to a temporary name and renamed
// over its own, so a file written again gets another inode than the one it replaces.
ino_t features_inode(const fs::path& out, const json& image) {
  struct stat st {};
  const fs::path path = out / image.at("outputs").at("features").get<std::string>();
  INFO(path);
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_ino;
}

// A refused merge: exit 1, one line of error, and no summary.json or gallery written.
std::string refused_merge(const fs::path& out) {
  const Run r = run_cli("merge " + quote(out.string()));
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.rfind("vitscope: error: ", 0) == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK_FALSE(fs::exists(out / "summary.json"));
  CHECK_FALSE(fs::exists(out / "index.html"));
  return r.err;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

const std::vector<std::string> kFirstImages = {"a.png", "b.png", "c.jpg", "d.png", "e.png",
                                                "sub/f.png", "sub/g.png", "sub/deeper/h.png"};

}  // namespace

TEST_CASE("run --shard: each input in the one shard FNV-1a of its path names", "[shard]") {
  TempDir dir;
  const fs::path photos = dir.path() / "photos";
  write_images(photos, kFirstImages);
  run_all_shards(photos, dir.path() / "out", 3);

  const std::map<std::string, int> shards = assignment(dir.path() / "out", 3);
  REQUIRE(shards.size() == kFirstImages.size());
  for (const auto& [input, shard] : shards) {
    INFO(input);
    CHECK(shard == expected_shard(input, 3));
  }
  // Each shard wrote its own images' folders and no summary.json or gallery.
  const std::set<std::string> files = files_under(dir.path() / "out");
  for (const std::string& name : kFirstImages) {
    CHECK(files.count("photos/" + name + "/features.npy") == 1);
  }
  CHECK(files.count("summary.json") == 0);
  CHECK(files.count("index.html") == 0);
}

TEST_CASE("run --shard: adding or removing files moves only their own results", "[shard]") {
  TempDir dir;
  const fs::path photos = dir.path() / "photos";
  write_images(photos, kFirstImages);
  run_all_shards(photos, dir.path() / "before", 4);
  const std::map<std::string, int> before = assignment(dir.path() / "before", 4);
  REQUIRE(before.size() == kFirstImages.size());

  SECTION("added files") {
    const std::vector<std::string> added = {"aa.png", "b2.png", "new/one.png", "sub/i.png",
                                            "z.jpg"};
    write_images(photos, added);
    run_all_shards(photos, dir.path() / "after", 4);
    const std::map<std::string, int> after = assignment(dir.path() / "after", 4);
    REQUIRE(after.size() == kFirstImages.size() + added.size());
    for (const auto& [input, shard] : before) {
      INFO(input);
      CHECK(after.at(input) == shard);
    }
    for (const std::string& name : added) CHECK(after.count("photos/" + name) == 1);
  }
  SECTION("removed files") {
    fs::remove(photos / "a.png");
    fs::remove_all(photos / "sub" / "deeper");
    run_all_shards(photos, dir.path() / "after", 4);
    const std::map<std::string, int> after = assignment(dir.path() / "after", 4);
    REQUIRE(after.size() == kFirstImages.size() - 2);
    for (const auto& [input, shard] : after) {
      INFO(input);
      CHECK(before.at(input) == shard);
    }
  }
}

TEST_CASE("run --shard: a shard run again redoes only what it had not finished", "[shard]") {
  TempDir dir;
  const fs::path photos = dir.path() / "photos";
  write_images(photos, kFirstImages);
  const fs::path out = dir.path() / "out";
  const std::string args = run_shard(photos, out, "1/2");
  REQUIRE(run_cli(args).exit_code == 0);
  json first = read_json(out / "summary.shard-1-of-2.json");
  const json& images = first.at("images");
  REQUIRE(images.size() >= 2);

  std::map<std::string, ino_t> inodes;
  for (const json& image : images) inodes[image.at("input")] = features_inode(out, image);
  // The first image as if the shard had stopped before it.
  const std::string unfinished = images.at(0).at("input");
  fs::remove_all(out / unfinished);

  REQUIRE(run_cli(args).exit_code == 0);
  json again = read_json(out / "summary.shard-1-of-2.json");
  for (const json& image : again.at("images")) {
    const std::string input = image.at("input");
    INFO(input);
    const ino_t now = features_inode(out, image);  // the unfinished one's is there again
    if (input != unfinished) CHECK(now == inodes.at(input));
  }
  first.erase("timings");
  again.erase("timings");
  CHECK(first == again);
}

TEST_CASE("run --shard: auto reads the Slurm array task or the Indexed Job's index", "[shard]") {
  TempDir dir;
  const fs::path photos = dir.path() / "photos";
  write_images(photos, {"a.png"});
  const fs::path out = dir.path() / "out";
  // The environment of the ctest that runs this may be a Slurm job's: clear it for each case.
  const std::string clean = "env -u SLURM_ARRAY_TASK_ID -u SLURM_ARRAY_TASK_MIN "
                            "-u SLURM_ARRAY_TASK_MAX -u SLURM_ARRAY_TASK_COUNT "
                            "-u JOB_COMPLETION_INDEX ";
  const std::string slurm = clean + "SLURM_ARRAY_TASK_ID=6 SLURM_ARRAY_TASK_MIN=4 "
                                    "SLURM_ARRAY_TASK_MAX=7 SLURM_ARRAY_TASK_COUNT=4 ";

  CHECK(run_cli(run_shard(photos, out, "auto"), slurm).exit_code == 0);
  CHECK(fs::exists(out / "summary.shard-2-of-4.json"));
  CHECK(run_cli(run_shard(photos, out, "auto/4"), slurm).exit_code == 0);
  CHECK(run_cli(run_shard(photos, out, "auto/3"), clean + "JOB_COMPLETION_INDEX=1 ").exit_code ==
        0);
  CHECK(fs::exists(out / "summary.shard-1-of-3.json"));

  const auto usage_error = [&](const std::string& shard, const std::string& environment,
                               const std::string& says) {
    const Run r = run_cli(run_shard(photos, out, shard), environment);
    INFO(shard << ": " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(contains(r.err, says));
  };
  usage_error("auto/5", slurm, "the Slurm array has 4 tasks, not 5");
  usage_error("auto", clean + "JOB_COMPLETION_INDEX=1 ", "use --shard auto/N");
  usage_error("auto/3", clean + "JOB_COMPLETION_INDEX=3 ", "shard 3 is not one of 0 to 2");
  usage_error("auto", clean, "neither SLURM_ARRAY_TASK_ID");
  usage_error("auto", clean + "SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_MIN=0 "
                              "SLURM_ARRAY_TASK_MAX=5 SLURM_ARRAY_TASK_COUNT=3 ",
              "are not contiguous");
  usage_error("3/3", clean, "shard 3 is not one of 0 to 2");
  usage_error("0/0", clean, "the shard count must be 1 to");
  usage_error("1", clean, "expected I/N, auto or auto/N");
  usage_error("a/2", clean, "expected I/N, auto or auto/N");
}

TEST_CASE("merge: the shards joined are the single run, apart from timings", "[merge]") {
  TempDir dir;
  const fs::path photos = dir.path() / "photos";
  write_images(photos, kFirstImages);
  std::ofstream(photos / "notes.txt") << "not an image\n";
  const fs::path single = dir.path() / "single";
  const fs::path sharded = dir.path() / "sharded";
  REQUIRE(run_cli("run " + quote(photos.string()) + " --out " + quote(single.string()) + kFast)
              .exit_code == 0);
  run_all_shards(photos, sharded, 3);
  const Run merged = run_cli("merge " + quote(sharded.string()));
  INFO(merged.err);
  REQUIRE(merged.exit_code == 0);

  std::set<std::string> sharded_files = files_under(sharded);
  for (int i = 0; i < 3; ++i) {
    CHECK(sharded_files.erase("summary.shard-" + std::to_string(i) + "-of-3.json") == 1);
  }
  REQUIRE(files_under(single) == sharded_files);
  for (const std::string& file : sharded_files) {
    if (file == "summary.json") continue;
    INFO(file);
    CHECK(read_bytes((single / file).string()) == read_bytes((sharded / file).string()));
  }
  json single_summary = read_json(single / "summary.json");
  json merged_summary = read_json(sharded / "summary.json");
  CHECK(single_summary.at("timings").size() == merged_summary.at("timings").size());
  single_summary.erase("timings");
  merged_summary.erase("timings");
  CHECK(single_summary == merged_summary);
}

TEST_CASE("merge: refuses shards that are not one run, on one line", "[merge]") {
  TempDir dir;
  const fs::path photos = dir.path() / "photos";
  write_images(photos, kFirstImages);
  const fs::path out = dir.path() / "out";
  const auto run = [&](const std::string& shard, const std::string& extra = "") {
    const Run r = run_cli(run_shard(photos, out, shard, extra));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
  };

  SECTION("other settings") {
    run("0/2");
    run("1/2", " --view-format jpg");
    const std::string err = refused_merge(out);
    CHECK(contains(err, "summary.shard-0-of-2.json and summary.shard-1-of-2.json were made with "
                        "different models or settings: /settings/view_format is \"png\" and "
                        "\"jpg\""));
  }
  SECTION("another model") {
    run("0/2");
    run("1/2", " --model " + quote(std::string(VITSCOPE_ASSETS_DIR) + "/models/random.safetensors"));
    const std::string err = refused_merge(out);
    CHECK(contains(err, "different models or settings: /model is"));
    CHECK(contains(err, "random.safetensors"));
  }
  SECTION("other attention settings, which only image.json records") {
    run("0/2");
    run("1/2", " --head-fusion max");
    CHECK(contains(refused_merge(out), "/image_settings/attention"));
  }
  SECTION("missing shards, named") {
    run("0/4");
    run("2/4");
    CHECK(contains(refused_merge(out), "2 of 4 shards missing in " + out.string() +
                                           ": no summary.shard-1-of-4.json, "
                                           "summary.shard-3-of-4.json; run them, then merge again"));
  }
  SECTION("shards of two splits of the inputs") {
    run("0/2");
    run("1/2");
    run("1/3");
    CHECK(contains(refused_merge(out), "overlapping shards in " + out.string() +
                                           ": summaries of runs split 2 of 2 shards, 1 of 3 "
                                           "shards"));
  }
  SECTION("an image listed by two shards") {
    run("0/2");
    run("1/2");
    // A shard's summary edited to list an image of the other shard as well.
    const fs::path first = out / "summary.shard-0-of-2.json";
    const fs::path second = out / "summary.shard-1-of-2.json";
    json summary = read_json(second);
    const json stolen = read_json(first).at("images").at(0);
    summary["images"].push_back(stolen);
    std::ofstream(second) << summary.dump(2);
    CHECK(contains(refused_merge(out), "overlapping shards: " + stolen.at("input").get<std::string>() +
                                           " is in summary.shard-0-of-2.json and in "
                                           "summary.shard-1-of-2.json"));
  }
  SECTION("the inputs changed between shards") {
    run("0/2");
    write_images(photos, {"late.png"});
    run("1/2");
    CHECK(contains(refused_merge(out), "were run over different inputs (8 and 9 files)"));
  }
  SECTION("an interrupted shard: merged, and named") {
    run("0/2");
    run("1/2");
    // What a shard stopped by SIGTERM writes for the images it did not reach.
    const fs::path second = out / "summary.shard-1-of-2.json";
    json summary = read_json(second);
    summary["images"].back().update(
        {{"status", "skipped"}, {"error", "interrupted"}, {"outputs", json::object()}});
    std::ofstream(second) << summary.dump(2);
    const Run r = run_cli("merge " + quote(out.string()));
    INFO(r.err);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "vitscope: error: interrupted shards did not reach every image "
                          "(summary.shard-1-of-2.json); rerun them, then merge again\n"));
    CHECK(fs::exists(out / "summary.json"));  // what there is, to look at meanwhile
  }
  SECTION("no shards at all") {
    fs::create_directories(out);
    CHECK(contains(refused_merge(out), "no shard summaries (summary.shard-I-of-N.json) in"));
  }
}
