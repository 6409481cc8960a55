// The figures a benchmark measured, one JSON line each, appended to the file given with
// --summary; tools/bench.sh runs every benchmark with one file and prints them as one table.
#pragma once

#include <fstream>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace pneumo::bench {

class Summary {
 public:
  explicit Summary(std::string path) : path_(std::move(path)) {}

  // `speed_up` is pneumo's advantage: pneumo / python for rates, python / pneumo for times and
  // memory (where lower is better).
  void add(const std::string& area, const std::string& what, const std::string& unit, double python,
           double pneumo, bool higher_is_better) const {
    if (path_.empty()) return;
    const nlohmann::json row{{"area", area},
                             {"case", what},
                             {"unit", unit},
                             {"python", python},
                             {"pneumo", pneumo},
                             {"speed_up", higher_is_better ? pneumo / python : python / pneumo}};
    std::ofstream out(path_, std::ios::app);
    out << row.dump() << "\n";
    if (!out) throw std::runtime_error("cannot append to " + path_);
  }

 private:
  std::string path_;
};

}  // namespace pneumo::bench
