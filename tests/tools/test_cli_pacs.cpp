// DICOM results and the PACS round trip as a hospital meets them: `pneumo predict --dicom-out`
// checked by pydicom and highdicom against the masks, overlays and answers and by dciodvfy, the
// input gate on SIIM files whose headers were edited into a lateral view, a child and a knee,
// and `pneumo pacs` against Debian's Orthanc on loopback (one pass, a second pass that does
// nothing, a watch that rides out an Orthanc restart).
#include <catch2/catch.hpp>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "../infer/common.h"
#include "cli_samples.h"
#include "pneumo/data/demo_set.h"
#include "pneumo/data/dicom.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using pneumo::testing::predictions_by_id;
using pneumo::testing::read_file;
using pneumo::testing::sample_dicoms;
using pneumo::testing::run_command;
using pneumo::testing::run_pneumo;
using pneumo::testing::TempDir;
using pneumo::testing::write_file;
using Catch::Matchers::Contains;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kOrthanc = "/usr/sbin/Orthanc";
constexpr const char* kDicomWebPlugin = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";  // orthanc-dicomweb
constexpr const char* kDciodvfy = "/usr/bin/dciodvfy";  // Debian's dicom3tools

// David Clunie's validator on a DICOM object pneumo wrote: no line may start with "Error". Its
// warnings are listed in the README ("DICOM results") with the reason each stays.
void check_valid_dicom(const fs::path& file) {
  INFO("dciodvfy is in Debian's dicom3tools, which tools/setup.sh --tests installs");
  REQUIRE(fs::exists(kDciodvfy));
  const auto r = run_command({kDciodvfy, file.string()});
  std::vector<std::string> errors;
  std::istringstream lines(r.out + r.err);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("Error", 0) == 0) errors.push_back(line);
  INFO(file << ":\n" << r.out << r.err);
  CHECK(errors == std::vector<std::string>{});
}

// A random network's masks are often empty at 0.5. Post-processing flags for a threshold just
// below the least confident image's top pixel: every image gets a mask, most of them partial,
// so a comparison of masks sees misplaced bits.
std::vector<std::string> revealing_thresholds(const fs::path& model, const std::vector<fs::path>& sources,
                                              const fs::path& out) {
  std::vector<std::string> args{"predict", "--model", model.string(), "--out", out.string(), "--no-masks", "--no-overlays"};
  for (const fs::path& f : sources) args.push_back(f.string());
  const auto r = run_pneumo(args);
  REQUIRE(r.exit_code == 0);
  double lowest = 1;
  std::istringstream lines(read_file(out / "predictions.jsonl"));
  for (std::string line; std::getline(lines, line);)
    if (const json j = json::parse(line); j.contains("score")) lowest = std::min(lowest, j["score"].get<double>());
  const std::string t = std::to_string(std::max(0.0, lowest - 1e-4));
  return {"--threshold", t, "--top-threshold", t, "--classifier-threshold", "0"};
}

// kind "sr": `image` is the SEG and `prediction` predict's JSON line for the image.
json check_result(const std::string& kind, const fs::path& result, const fs::path& source, const fs::path& image,
                  const std::string& prediction = "") {
  std::vector<std::string> argv{PNEUMO_REFERENCE_PYTHON, PNEUMO_SOURCE_DIR "/tests/tools/check_dicom_result.py", kind,
                                result.string(), source.string(), image.string()};
  if (!prediction.empty()) argv.push_back(prediction);
  const auto r = run_command(argv);
  INFO(result << "\n" << r.out << r.err);
  REQUIRE(!r.out.empty());
  const json verdict = json::parse(r.out);
  CHECK(verdict["problems"] == json::array());
  return verdict;
}

// Debian's Orthanc with its storage in `dir`, HTTP on a free loopback port, no DICOM port; with
// `dicomweb`, its DICOMweb plugin at /dicom-web/.
class OrthancProcess {
 public:
  explicit OrthancProcess(const fs::path& dir, bool dicomweb = false) : dir_(dir), port_(pneumo::testing::free_tcp_port()) {
    json config{{"Name", "pneumo-test"},
                {"StorageDirectory", (dir / "storage").string()},
                {"IndexDirectory", (dir / "storage").string()},
                {"HttpPort", port_},
                {"DicomServerEnabled", false},
                {"RemoteAccessAllowed", false},
                {"AuthenticationEnabled", false},
                {"Plugins", json::array()}};
    if (dicomweb) {
      config["Plugins"] = json::array({kDicomWebPlugin});
      config["DicomWeb"] = {{"Enable", true}, {"Root", "/dicom-web/"}};
    }
    write_file(dir / "orthanc.json", config.dump(2));
    start();
  }
  ~OrthancProcess() { stop(); }

  void start() {
    pid_ = pneumo::testing::spawn_logged({kOrthanc, (dir_ / "orthanc.json").string()}, {}, dir_ / "orthanc.log");
    for (int i = 0; i < 600; ++i) {  // up to 60 s
      httplib::Client c = client();
      if (const auto r = c.Get("/system"); r && r->status == 200) return;
      if (pneumo::testing::wait_for_exit(pid_, 0.1) >= 0) break;
    }
    FAIL("Orthanc did not start:\n" << read_file(dir_ / "orthanc.log"));
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    if (pneumo::testing::wait_for_exit(pid_, 30) < 0) ::kill(pid_, SIGKILL);
    pneumo::testing::wait_for_exit(pid_, 10);
    pid_ = -1;
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60);
    return c;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string upload(const fs::path& file) const {
    const auto r = client().Post("/instances", read_file(file), "application/dicom");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    return json::parse(r->body)["ID"];
  }
  json get(const std::string& path) const {
    const auto r = client().Get(path.c_str());
    REQUIRE(r);
    INFO(path << ": " << r->body);
    REQUIRE(r->status == 200);
    return json::parse(r->body);
  }
  // The instance's mark (user metadata 9901), or null.
  json mark(const std::string& id) const {
    const auto r = client().Get(("/instances/" + id + "/metadata/9901").c_str());
    return r && r->status == 200 ? json::parse(r->body) : json();
  }

 private:
  fs::path dir_;
  int port_;
  int pid_ = -1;
};

}  // namespace

pneumo::testing::ModelRecipe without_aux_head() {
  pneumo::testing::ModelRecipe r;
  r.aux_head = false;  // the score is then the top pixel, which revealing_thresholds needs
  return r;
}

TEST_CASE("predict --dicom-out writes Segmentations, Structured Reports and Secondary Captures that pydicom and highdicom read back and dciodvfy passes") {
  TempDir dir;
  const fs::path model = pneumo::testing::write_random_checkpoint(dir / "model.ckpt", without_aux_head());
  const std::vector<fs::path> sources = sample_dicoms(dir);
  // Every sample, children too (the gate has its own test): the results are what is checked here.
  std::vector<std::string> args{"predict", "--model", model.string(), "--out", (dir / "out").string(),
                                "--dicom-out", (dir / "out/dicom").string(), "--dicom-overlay", "--explain", "--no-gate"};
  for (const std::string& a : revealing_thresholds(model, sources, dir / "first")) args.push_back(a);
  for (const fs::path& f : sources) args.push_back(f.string());
  const auto r = run_pneumo(args);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Contains(std::to_string(sources.size()) +
                             " DICOM Segmentation(s) and Structured Report(s), Secondary Capture(s)"));
  const std::map<std::string, json> predictions = predictions_by_id(dir / "out/predictions.jsonl");
  int64_t positive_pixels = 0;
  for (const fs::path& source : sources) {
    const std::string id = source.stem().string();
    const fs::path seg = dir / "out/dicom" / (id + ".seg.dcm");
    positive_pixels += check_result("seg", seg, source, dir / "out/masks" / (id + ".png"))["positive_pixels"].get<int64_t>();
    check_result("sc", dir / "out/dicom" / (id + ".sc.dcm"), source, dir / "out/overlays" / (id + ".png"));
    check_result("sr", dir / "out/dicom" / (id + ".sr.dcm"), source, seg, predictions.at(id).dump());
    check_valid_dicom(seg);
    check_valid_dicom(dir / "out/dicom" / (id + ".sc.dcm"));
    check_valid_dicom(dir / "out/dicom" / (id + ".sr.dcm"));
    CHECK(predictions.at(id)["gate"] == "accepted");
    CHECK(fs::exists(dir / "out/explanations" / (id + ".png")));
  }
  INFO("all masks empty: the comparison would not see a misplaced bit");
  CHECK(positive_pixels > 0);

  const auto refused = run_pneumo({"predict", "--model", model.string(), "--out", (dir / "o2").string(), "--dicom-overlay",
                                   sources.front().string()});
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.err, Contains("--dicom-overlay needs --dicom-out"));
}

TEST_CASE("predict's input gate refuses a lateral view, a child and a knee made from a SIIM file, naming why, and --no-gate scores them") {
  TempDir dir;
  const fs::path model = pneumo::testing::write_random_checkpoint(dir / "model.ckpt", {});
  const fs::path source = sample_dicoms(dir).front();
  const fs::path in = dir / "in";
  pneumo::testing::edited_dicom_copy(source, in / "adult.dcm", {"PatientAge=045Y", "ViewPosition=PA"});
  pneumo::testing::edited_dicom_copy(source, in / "lateral.dcm", {"PatientAge=045Y", "ViewPosition=LL"});
  pneumo::testing::edited_dicom_copy(source, in / "child.dcm", {"PatientAge=006Y", "ViewPosition=PA"});
  pneumo::testing::edited_dicom_copy(source, in / "knee.dcm", {"PatientAge=045Y", "ViewPosition=PA", "BodyPartExamined=KNEE"});
  auto r = run_pneumo({"predict", "--model", model.string(), in.string(), "--out", (dir / "out").string(), "--dicom-out",
                       (dir / "out/dicom").string()});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);  // refusing is an answer, not a failure
  CHECK_THAT(r.out, Contains("1 image(s) predicted") && Contains("3 input(s) refused by the input gate"));
  CHECK_THAT(r.out, Contains("lateral.dcm: refused: lateral_view (View Position LL)"));
  CHECK_THAT(r.out, Contains("child.dcm: refused: paediatric (Patient's Age 006Y"));
  CHECK_THAT(r.out, Contains("knee.dcm: refused: body_part (Body Part Examined KNEE"));
  const std::string refused = read_file(dir / "out/refused.csv");
  CHECK_THAT(refused, Contains("lateral,") && Contains(",lateral_view,") && Contains(",paediatric,") &&
                          Contains(",body_part,") && !Contains("adult"));
  const std::map<std::string, json> predictions = predictions_by_id(dir / "out/predictions.jsonl");
  CHECK(predictions.at("adult")["gate"] == "accepted");
  CHECK(predictions.at("lateral")["gate"] == "refused: lateral_view (View Position LL)");
  CHECK_FALSE(predictions.at("lateral").contains("score"));  // never scored
  CHECK(read_file(dir / "out/submission.csv").find("child") == std::string::npos);
  CHECK(fs::exists(dir / "out/dicom/adult.seg.dcm"));
  CHECK_FALSE(fs::exists(dir / "out/dicom/lateral.seg.dcm"));
  CHECK_FALSE(fs::exists(dir / "out/dicom/child.sr.dcm"));

  // Switched off as a whole, or rule by rule in the checkpoint's config.
  r = run_pneumo({"predict", "--model", model.string(), in.string(), "--out", (dir / "all").string(), "--no-gate"});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("4 image(s) predicted"));
  r = run_pneumo({"predict", "--model", model.string(), in.string(), "--out", (dir / "some").string(), "--set",
                  "gate.min_age_years=0", "--set", "gate.body_parts=[]"});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("3 image(s) predicted") && Contains("1 input(s) refused"));
  r = run_pneumo({"predict", "--model", model.string(), in.string(), "--out", (dir / "bad").string(), "--set",
                  "gate.min_age_years=-3"});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("gate.min_age_years"));
}

TEST_CASE("pacs processes each new Orthanc instance once, stores SEGs that reference it, and survives a restart") {
  if (!fs::exists(kOrthanc)) {
    WARN("Debian's orthanc is not installed; skipping the PACS round trip");
    return;
  }
  TempDir dir;
  const fs::path model = pneumo::testing::write_random_checkpoint(dir / "model.ckpt", without_aux_head());
  std::vector<fs::path> sources = sample_dicoms(dir);
  const std::vector<std::string> thresholds = revealing_thresholds(model, sources, dir / "first");
  const fs::path held_back = sources.back();  // uploaded while `pacs --watch` runs
  sources.pop_back();
  OrthancProcess orthanc(dir / "orthanc");
  std::map<std::string, fs::path> source_of;  // Orthanc ID -> file
  for (const fs::path& f : sources) source_of[orthanc.upload(f)] = f;

  // What predict says of the same files, to compare the stored masks with.
  std::vector<std::string> args{"predict", "--model", model.string(), "--out", (dir / "expected").string()};
  args.insert(args.end(), thresholds.begin(), thresholds.end());
  for (const fs::path& f : sources) args.push_back(f.string());
  args.push_back(held_back.string());
  REQUIRE(run_pneumo(args).exit_code == 0);
  // The input gate refuses the SIIM samples' children (predict and pacs share it).
  const std::map<std::string, json> expected = predictions_by_id(dir / "expected/predictions.jsonl");
  const auto refused = [&](const fs::path& f) { return expected.at(f.stem().string())["gate"] != "accepted"; };
  const auto accepted = static_cast<size_t>(std::count_if(sources.begin(), sources.end(), [&](const fs::path& f) {
    return !refused(f);
  }));
  REQUIRE(accepted > 0);

  std::vector<std::string> pacs{"pacs", "--orthanc", orthanc.url(), "--model", model.string()};
  pacs.insert(pacs.end(), thresholds.begin(), thresholds.end());
  auto r = run_pneumo(pacs);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Contains(std::to_string(accepted) + " instance(s) processed") &&
                        Contains(std::to_string(sources.size() - accepted) + " refused by the input gate"));
  const json instances = orthanc.get("/instances");
  CHECK(instances.size() == sources.size() + 2 * accepted);  // a SEG and an SR for each accepted image
  std::set<std::string> segs;
  int64_t positive_pixels = 0;
  const auto fetch = [&](const json& uid, const fs::path& file) {
    const json found = json::parse(orthanc.client()
                                       .Post("/tools/find", json{{"Level", "Instance"}, {"Query", {{"SOPInstanceUID", uid}}}}.dump(),
                                             "application/json")
                                       ->body);
    REQUIRE(found.size() == 1);
    write_file(file, orthanc.client().Get(("/instances/" + found[0].get<std::string>() + "/file").c_str())->body);
  };
  for (const auto& [id, file] : source_of) {
    const json mark = orthanc.mark(id);
    INFO(file << " " << mark.dump());
    REQUIRE(mark.is_object());
    if (refused(file)) {
      CHECK(mark["status"] == "refused");
      CHECK(mark["reason"] == expected.at(file.stem().string())["gate_reason"]);
      continue;
    }
    CHECK(mark["status"] == "done");
    CHECK(mark["gate"] == "accepted");
    segs.insert(mark["seg"].get<std::string>());
    // Find the stored SEG and SR by their UIDs and check them against the source and predict's answers.
    fetch(mark["seg"], dir / "seg.dcm");
    fetch(mark["sr"], dir / "sr.dcm");
    positive_pixels +=
        check_result("seg", dir / "seg.dcm", file, dir / "expected/masks" / (file.stem().string() + ".png"))["positive_pixels"]
            .get<int64_t>();
    check_result("sr", dir / "sr.dcm", file, dir / "seg.dcm", expected.at(file.stem().string()).dump());
  }
  CHECK(segs.size() == accepted);
  CHECK(positive_pixels > 0);

  // A second pass finds nothing to do.
  r = run_pneumo(pacs);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("0 instance(s) processed"));
  CHECK(orthanc.get("/instances").size() == sources.size() + 2 * accepted);

  // Watching: Orthanc goes away and comes back; a new image is then processed.
  std::vector<std::string> watch{PNEUMO_CLI_PATH};
  watch.insert(watch.end(), pacs.begin(), pacs.end());
  for (const char* a : {"--watch", "--poll", "0.2"}) watch.push_back(a);
  const int watcher = pneumo::testing::spawn_logged(watch, {}, dir / "watch.log");
  std::this_thread::sleep_for(std::chrono::seconds(2));
  orthanc.stop();
  for (int i = 0; i < 300 && read_file(dir / "watch.log").find("Orthanc unavailable") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK_THAT(read_file(dir / "watch.log"), Contains("Orthanc unavailable"));
  orthanc.start();
  const std::string late = orthanc.upload(held_back);
  json mark;
  for (int i = 0; i < 1200 && !mark.is_object(); ++i) {  // up to 2 minutes on a loaded machine
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    mark = orthanc.mark(late);
  }
  ::kill(watcher, SIGTERM);
  const int code = pneumo::testing::wait_for_exit(watcher, 60);
  INFO(read_file(dir / "watch.log"));
  REQUIRE(mark.is_object());
  CHECK(mark["status"] == (refused(held_back) ? "refused" : "done"));
  CHECK(code == 0);
  CHECK(orthanc.get("/instances").size() == sources.size() + 2 * accepted + (refused(held_back) ? 1 : 3));
}

TEST_CASE("pacs refuses bad options and says when Orthanc cannot be reached") {
  TempDir dir;
  const fs::path model = pneumo::testing::write_random_checkpoint(dir / "model.ckpt", {});
  const std::string nobody = "http://127.0.0.1:" + std::to_string(pneumo::testing::free_tcp_port());
  auto r = run_pneumo({"pacs", "--orthanc", nobody, "--model", model.string()});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains(nobody + "/changes"));
  r = run_pneumo({"pacs", "--orthanc", "ftp://example", "--model", model.string()});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("expected a URL"));
  r = run_pneumo({"pacs", "--orthanc", nobody, "--model", model.string(), "--mark", "7"});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("1024..65535"));
}

TEST_CASE("pacs --dicomweb: QIDO-RS finds the images, WADO-RS fetches them, STOW-RS stores SEG and SR, once across runs") {
  if (!fs::exists(kOrthanc) || !fs::exists(kDicomWebPlugin)) {
    WARN("Debian's orthanc or orthanc-dicomweb is not installed; skipping the DICOMweb round trip");
    return;
  }
  TempDir dir;
  const fs::path model = pneumo::testing::write_random_checkpoint(dir / "model.ckpt", without_aux_head());
  std::vector<fs::path> sources = sample_dicoms(dir);
  sources.resize(std::min<size_t>(sources.size(), 4));
  // One of them a lateral view: refused, nothing stored for it.
  sources.push_back(pneumo::testing::edited_dicom_copy(sources.front(), dir / "lateral.dcm",
                                                      {"PatientAge=045Y", "ViewPosition=LL"}));
  OrthancProcess orthanc(dir / "orthanc", true);
  for (const fs::path& f : sources) orthanc.upload(f);
  const std::vector<std::string> thresholds = revealing_thresholds(model, sources, dir / "first");
  std::vector<std::string> args{"predict", "--model", model.string(), "--out", (dir / "expected").string()};
  args.insert(args.end(), thresholds.begin(), thresholds.end());
  for (const fs::path& f : sources) args.push_back(f.string());
  REQUIRE(run_pneumo(args).exit_code == 0);
  const std::map<std::string, json> expected = predictions_by_id(dir / "expected/predictions.jsonl");
  size_t accepted = 0;
  for (const fs::path& f : sources) accepted += expected.at(f.stem().string())["gate"] == "accepted" ? 1 : 0;
  REQUIRE(accepted > 0);
  REQUIRE(accepted < sources.size());

  std::vector<std::string> pacs{"pacs", "--dicomweb", orthanc.url() + "/dicom-web", "--model", model.string()};
  pacs.insert(pacs.end(), thresholds.begin(), thresholds.end());
  auto r = run_pneumo(pacs);
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Contains(std::to_string(accepted) + " instance(s) processed") &&
                        Contains(std::to_string(sources.size() - accepted) + " refused by the input gate"));
  CHECK(orthanc.get("/instances").size() == sources.size() + 2 * accepted);
  // Each stored SEG and SR, read back through Orthanc's REST API, checked against its source and
  // predict's answer: the SEG names its source, the SR lists the source and the SEG as evidence.
  std::map<std::string, fs::path> source_of;  // SOP Instance UID -> file
  for (const fs::path& f : sources) source_of[pneumo::data::read_dicom_header(f).sop_instance_uid] = f;
  const auto find = [&](const char* modality) {
    return json::parse(orthanc.client()
                           .Post("/tools/find", json{{"Level", "Instance"}, {"Query", {{"Modality", modality}}}}.dump(),
                                 "application/json")
                           ->body);
  };
  const json segs = find("SEG"), reports = find("SR");
  CHECK(segs.size() == accepted);
  CHECK(reports.size() == accepted);
  std::map<std::string, fs::path> seg_file;  // SEG SOP Instance UID -> its file here
  for (const json& id : segs) {
    const json tags = orthanc.get("/instances/" + id.get<std::string>() + "/simplified-tags");
    const std::string source = tags["ReferencedSeriesSequence"][0]["ReferencedInstanceSequence"][0]["ReferencedSOPInstanceUID"];
    REQUIRE(source_of.count(source) == 1);
    const fs::path file = dir / (id.get<std::string>() + ".seg.dcm");
    write_file(file, orthanc.client().Get(("/instances/" + id.get<std::string>() + "/file").c_str())->body);
    seg_file[tags["SOPInstanceUID"]] = file;
    check_result("seg", file, source_of[source], dir / "expected/masks" / (source_of[source].stem().string() + ".png"));
  }
  for (const json& id : reports) {
    const json tags = orthanc.get("/instances/" + id.get<std::string>() + "/simplified-tags");
    std::string source, seg;
    for (const json& series : tags["CurrentRequestedProcedureEvidenceSequence"][0]["ReferencedSeriesSequence"])
      for (const json& sop : series["ReferencedSOPSequence"])
        (seg_file.count(sop["ReferencedSOPInstanceUID"]) ? seg : source) = sop["ReferencedSOPInstanceUID"];
    REQUIRE(source_of.count(source) == 1);
    REQUIRE(seg_file.count(seg) == 1);
    const fs::path file = dir / (id.get<std::string>() + ".sr.dcm");
    write_file(file, orthanc.client().Get(("/instances/" + id.get<std::string>() + "/file").c_str())->body);
    check_result("sr", file, source_of[source], seg_file[seg], expected.at(source_of[source].stem().string()).dump());
  }
  // A second run finds every result in place and stores nothing.
  r = run_pneumo(pacs);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("0 instance(s) processed"));
  CHECK(orthanc.get("/instances").size() == sources.size() + 2 * accepted);
  // What is refused.
  r = run_pneumo({"pacs", "--model", model.string()});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("--orthanc URL") && Contains("--dicomweb URL"));
  r = run_pneumo({"pacs", "--dicomweb", "ftp://x", "--model", model.string()});
  CHECK(r.exit_code == 2);
}
