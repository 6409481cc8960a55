#include <catch2/catch.hpp>

#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/core/run_dir.h"
#include "test_support.h"

using namespace pneumo::core;
using pneumo::testing::read_file;
using pneumo::testing::TempDir;
using pneumo::testing::write_file;
using Catch::Matchers::Contains;

TEST_CASE("a run folder is created once and never silently overwritten") {
  TempDir root;
  const RunDirectory run = RunDirectory::create(root.path(), "demo", "first");
  CHECK(run.path() == root / "demo/first");
  CHECK(std::filesystem::is_directory(run.path()));
  write_file(run.file("keep.txt"), "precious");

  CHECK_THROWS_AS(RunDirectory::create(root.path(), "demo", "first"), UsageError);
  CHECK_THROWS_WITH(RunDirectory::create(root.path(), "demo", "first"),
                    Contains("already exists") && Contains("--overwrite"));
  CHECK(read_file(run.file("keep.txt")) == "precious");

  const RunDirectory again = RunDirectory::create(root.path(), "demo", "first", true);
  CHECK_FALSE(std::filesystem::exists(again.file("keep.txt")));
}

TEST_CASE("unnamed runs get distinct timestamp names") {
  TempDir root;
  const RunDirectory a = RunDirectory::create(root.path(), "demo");
  const RunDirectory b = RunDirectory::create(root.path(), "demo");
  CHECK(a.path() != b.path());
  CHECK(a.path().parent_path() == root / "demo");
  CHECK(a.path().filename().string().size() >= 15);  // YYYYmmdd-HHMMSS
}

TEST_CASE("run and experiment names must be plain folder names") {
  TempDir root;
  for (const char* bad : {"..", "a/b", "-x", "."}) {
    INFO(bad);
    CHECK_THROWS_AS(RunDirectory::create(root.path(), bad, "r"), ConfigError);
    CHECK_THROWS_AS(RunDirectory::create(root.path(), "e", bad), ConfigError);
  }
  CHECK_THROWS_AS(RunDirectory::create(root.path(), "", "r"), ConfigError);
}

TEST_CASE("starting a run writes its config and logs to its log file") {
  TempDir root;
  const RunDirectory run = RunDirectory::create(root.path(), "demo", "r1");
  run.start("experiment: {name: demo}\n");
  log::info("hello {}", 42);
  log::debug("not shown at info level");
  close_log_file();
  CHECK(read_file(run.config_file()) == "experiment: {name: demo}\n");
  const std::string log_text = read_file(run.log_file());
  CHECK_THAT(log_text, Contains("info    hello 42"));
  CHECK_THAT(log_text, !Contains("not shown"));
  CHECK(RunDirectory::open(run.path()).path() == run.path());
  CHECK_THROWS_AS(RunDirectory::open(root.path()), UsageError);
}
