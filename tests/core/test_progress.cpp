#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "pneumo/core/progress.h"

using namespace pneumo::core;
using Catch::Matchers::Contains;

TEST_CASE("durations format as m:ss or h:mm:ss") {
  CHECK(format_duration(0) == "0:00");
  CHECK(format_duration(7.4) == "0:07");
  CHECK(format_duration(723) == "12:03");
  CHECK(format_duration(3723) == "1:02:03");
  CHECK(format_duration(-5) == "0:00");
}

TEST_CASE("without a terminal, progress prints a line per 10% and a final summary") {
  double now = 0;
  std::vector<std::string> lines;
  std::vector<bool> finals;
  {
    Progress progress(
        "decode", 100, Progress::Style::kLines,
        [&](const std::string& line, bool is_final) {
          lines.push_back(line);
          finals.push_back(is_final);
        },
        [&] { return now; });
    for (int i = 0; i < 100; ++i) {
      now += 0.5;
      progress.advance(1, "loss 0.250");
    }
  }  // the destructor finishes
  REQUIRE(lines.size() == 10);  // 10%..90% and the summary
  CHECK(lines[0] == "decode 10/100  10% 2.0 it/s ETA 0:45 loss 0.250");
  CHECK_THAT(lines[8], Contains("90/100"));
  CHECK(finals.back());
  CHECK(lines.back() == "decode 100 done in 0:50 (2.0 it/s) loss 0.250");
}

TEST_CASE("without a terminal, a slow loop still prints at least every 30 seconds") {
  double now = 0;
  std::vector<std::string> lines;
  Progress progress("train", 1000, Progress::Style::kLines,
                    [&](const std::string& line, bool) { lines.push_back(line); },
                    [&] { return now; });
  now = 31;
  progress.advance(1);
  REQUIRE(lines.size() == 1);
  CHECK_THAT(lines[0], Contains("1/1000"));
  progress.finish();
  progress.finish();
  CHECK(lines.size() == 2);
}

TEST_CASE("on a terminal, progress redraws a bar with rate and ETA") {
  double now = 0;
  std::vector<std::string> lines;
  Progress progress("epoch 1", 4, Progress::Style::kBar,
                    [&](const std::string& line, bool) { lines.push_back(line); },
                    [&] { return now; });
  now = 1;
  progress.advance(2);
  REQUIRE_FALSE(lines.empty());
  CHECK(lines.back() == "epoch 1 [############............] 2/4  50% 2.0 it/s ETA 0:01");
}
