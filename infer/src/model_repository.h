// The models `pneumo serve` answers with, by name and version, as Triton and KServe keep them.
//
// `--model ...` serves one model, named `--model-name` (default "pneumo"), version "1".
// `--model-repository DIR` serves every `DIR/<name>/` whose numbered version folders
// `DIR/<name>/<version>/` hold a run folder (config.yaml), a cross-validation folder
// (ensemble.json), or checkpoints (*.ckpt) and exports (*.pt), which form one ensemble; the
// highest version is the one loaded (Triton's "latest" policy).
//
// Each loaded version has its own batcher. A request takes the version loaded when it arrives
// and keeps it to the end: loading another version (POST .../load, SIGHUP) or unloading swaps
// what new requests get, while requests in flight finish on the version they started on; the
// old version is freed when its last request is answered. A version that fails to load leaves
// the one already loaded in place.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pneumo/infer/dynamic_batcher.h"
#include "pneumo/infer/predictor.h"
#include "pneumo/infer/serve.h"
#include "serve_metrics.h"

namespace pneumo::infer {

// One image on its way to a model: prepared, with when it joined the queue.
struct ServeJob {
  PreparedInput input;
  std::chrono::steady_clock::time_point submitted;
};
using ServeBatcher = DynamicBatcher<ServeJob, Prediction>;

// One loaded model version. The batcher is declared last: it stops before the predictor goes.
struct ServedModel {
  ~ServedModel();  // stops the batcher, frees the models and hands their memory back to the kernel
  std::string name, version;
  std::filesystem::path source;  // the version folder, or the first --model
  std::unique_ptr<const Predictor> predictor;
  nlohmann::ordered_json description;  // what GET /v1/model and /v2/models/<name> say
  double load_seconds = 0;
  std::unique_ptr<ServeBatcher> batcher;
};

// A model of the repository and its state, for /v2/repository/index.
struct RepositoryEntry {
  std::string name, version;
  std::string state;   // READY, UNAVAILABLE (unloaded or failed), LOADING
  std::string reason;  // why it is unavailable
};

class ModelRepository {
 public:
  // Loads every model (a model that fails to load is logged and left unavailable). Throws
  // UsageError for a repository folder that does not exist or holds no model, and the load's
  // error when the one --model ensemble cannot be loaded.
  ModelRepository(const ServeOptions& options, ServeMetrics& metrics);
  ~ModelRepository();

  // The loaded version of `name` (and `version`, when given), or null.
  std::shared_ptr<ServedModel> find(const std::string& name, const std::string& version = "") const;
  // What /v1 answers with: the --model ensemble, or the repository's first model by name.
  std::shared_ptr<ServedModel> first() const;

  // Loads the highest version of `name` from the repository (again), warms it up and swaps it
  // in. Throws UsageError for a name the repository does not have, the load's error otherwise.
  std::shared_ptr<ServedModel> load(const std::string& name);
  // Takes `name` out of service; false when it was not loaded.
  bool unload(const std::string& name);
  // Loads every model again (SIGHUP); returns how many loaded, logging those that failed.
  int reload_all();

  std::vector<RepositoryEntry> index() const;
  // True when every model that should be served is loaded and warmed up.
  bool ready() const;
  int64_t queue_depth() const;
  bool has_repository() const { return !options_.model_repository.empty(); }

 private:
  std::vector<std::string> repository_names() const;
  std::shared_ptr<ServedModel> load_version(const std::string& name) const;

  const ServeOptions& options_;
  ServeMetrics& metrics_;
  std::mutex load_mutex_;  // one load at a time
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<ServedModel>> loaded_;
  std::map<std::string, std::string> unavailable_;  // name -> why (failed or unloaded)
  std::string loading_;                             // the name being loaded, if any
};

// The description of a served ensemble (members, input sizes, thresholds, calibration, the input
// gate, batching).
nlohmann::ordered_json model_description(const Predictor& predictor, const ServeOptions& options);

}  // namespace pneumo::infer
