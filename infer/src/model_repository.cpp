#include "model_repository.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <opencv2/core.hpp>

#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/core/memory.h"
#include "pneumo/infer/calibration.h"

namespace pneumo::infer {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

json gate_description(const data::GateSection& g) {
  return json{{"enabled", g.enabled},          {"modalities", g.modalities},
              {"lateral_view", g.lateral_view}, {"body_parts", g.body_parts},
              {"min_age_years", g.min_age_years}, {"too_small", g.too_small},
              {"photometric", g.photometric},  {"bits_stored", g.bits_stored},
              {"blank_std", g.blank_std},      {"saturated_share", g.saturated_share}};
}

bool is_version_name(const std::string& name) {
  return !name.empty() && name.size() <= 9 &&
         std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

// The highest numbered version folder of a repository model; empty when it has none.
std::string latest_version(const fs::path& model_folder) {
  std::string best;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(model_folder, ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && is_version_name(name) && (best.empty() || std::stoll(name) > std::stoll(best))) best = name;
  }
  return best;
}

// What a version folder holds, as --model takes it: the folder itself when it is a run or CV
// folder, else its checkpoints and exports (one ensemble).
std::vector<ModelSpec> models_in(const fs::path& version_folder) {
  if (fs::exists(version_folder / "config.yaml") || fs::exists(version_folder / "ensemble.json"))
    return {{version_folder, 1.0}};
  std::vector<ModelSpec> models;
  for (const auto& e : fs::directory_iterator(version_folder))
    if (e.is_regular_file() && (e.path().extension() == ".ckpt" || e.path().extension() == ".pt"))
      models.push_back({e.path(), 1.0});
  std::sort(models.begin(), models.end(), [](const ModelSpec& a, const ModelSpec& b) { return a.path < b.path; });
  if (models.empty())
    throw core::ModelError(fmt::format("{}: holds no run folder (config.yaml), CV folder (ensemble.json), *.ckpt or "
                                       "*.pt; expected what --model takes",
                                       version_folder.string()));
  return models;
}

// One forward pass on a grey noise image of the models' input size, so that the first request
// does not pay for allocation and kernel selection.
void warm_up(const Predictor& predictor) {
  int size = 0;
  for (const Member& m : predictor.members()) size = std::max(size, m.config.data.size);
  InputImage image;
  image.file.id = "warm-up";
  image.pixels = cv::Mat(size, size, CV_8UC1);
  cv::RNG rng(7);
  rng.fill(image.pixels, cv::RNG::UNIFORM, 60, 200);
  std::vector<PreparedInput> batch;
  batch.push_back(predictor.prepare(std::move(image)));
  (void)predictor.predict(std::move(batch));
}

}  // namespace

json model_description(const Predictor& predictor, const ServeOptions& options) {
  json members = json::array();
  for (const Member& m : predictor.members()) {
    members.push_back(json{{"checkpoint", m.checkpoint.filename().string()},
                           {"model", m.script ? "exported" : m.config.model.name},
                           {"encoder", m.script ? "" : m.config.model.encoder.name},
                           {"task", m.segmenter ? "segmentation" : "classification"},
                           {"input_size", m.config.data.size},
                           {"channels", m.config.data.channels},
                           {"weight", m.weight}});
  }
  const PostprocessSection& p = predictor.postprocess();
  return json{{"members", std::move(members)},
              {"segments", predictor.has_segmenter()},
              {"window", predictor.window()},
              {"hflip", options.ensemble.hflip},
              {"cuda_graphs", options.ensemble.cuda_graphs && predictor.device().is_cuda()},
              {"device", predictor.device().str()},
              {"postprocess",
               {{"threshold", p.threshold},
                {"top_threshold", p.top_threshold},
                {"min_area", p.min_area},
                {"min_component_area", p.min_component_area},
                {"classifier_threshold", p.classifier_threshold}}},
              {"gate", gate_description(predictor.gate())},
              {"calibration", predictor.calibration() ? json::parse(calibration_to_json(*predictor.calibration()))
                                                      : json(nullptr)},
              {"batching",
               {{"max_batch", options.max_batch},
                {"max_wait_ms", options.max_wait_ms},
                {"queue", options.queue},
                {"timeout_s", options.timeout_s}}},
              {"max_upload_mb", options.max_upload_mb},
              {"rle", "SIIM-ACR: 1-based start/length pairs, column-major, relative starts"}};
}

ServedModel::~ServedModel() {
  batcher.reset();
  predictor.reset();
  core::return_freed_memory();  // serve keeps freed memory for its next requests; a whole model is not that
}

ModelRepository::ModelRepository(const ServeOptions& options, ServeMetrics& metrics)
    : options_(options), metrics_(metrics) {
  if (!has_repository()) {
    std::shared_ptr<ServedModel> model = load_version(options_.model_name);  // the --model ensemble: fails loudly
    metrics_.set_model(model->name, model->version, model->load_seconds, true);
    std::lock_guard<std::mutex> lock(mutex_);
    loaded_[model->name] = std::move(model);
    return;
  }
  if (!fs::is_directory(options_.model_repository))
    throw core::UsageError(fmt::format("--model-repository {}: no such folder", options_.model_repository.string()));
  const std::vector<std::string> names = repository_names();
  if (names.empty())
    throw core::UsageError(fmt::format("--model-repository {}: no model in it; expected <name>/<version>/ folders "
                                       "holding a run folder, a CV folder, checkpoints or exports",
                                       options_.model_repository.string()));
  for (const std::string& name : names) {
    try {
      load(name);
    } catch (const core::Error& e) {
      core::log::error("serve: model {} could not be loaded: {}", name, e.what());
    }
  }
}

ModelRepository::~ModelRepository() = default;

std::vector<std::string> ModelRepository::repository_names() const {
  std::vector<std::string> names;
  if (!has_repository()) return {options_.model_name};
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(options_.model_repository, ec))
    if (e.is_directory() && !latest_version(e.path()).empty()) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::shared_ptr<ServedModel> ModelRepository::load_version(const std::string& name) const {
  const auto start = Clock::now();
  auto model = std::make_shared<ServedModel>();
  model->name = name;
  EnsembleOptions ensemble = options_.ensemble;
  if (has_repository()) {
    const fs::path folder = options_.model_repository / name;
    model->version = latest_version(folder);
    if (model->version.empty())
      throw core::UsageError(fmt::format("model {}: {} has no numbered version folder", name, folder.string()));
    model->source = folder / model->version;
    ensemble.models = models_in(model->source);
  } else {
    model->version = "1";
    model->source = ensemble.models.empty() ? fs::path() : ensemble.models.front().path;
  }
  model->predictor = std::make_unique<const Predictor>(load_predictor(ensemble));
  warm_up(*model->predictor);
  model->description = model_description(*model->predictor, options_);
  model->description["name"] = name;
  model->description["version"] = model->version;
  BatcherOptions batching;
  batching.capacity = static_cast<size_t>(options_.queue);
  batching.max_batch = static_cast<size_t>(options_.max_batch);
  batching.max_wait = std::chrono::microseconds(static_cast<int64_t>(std::llround(options_.max_wait_ms * 1000)));
  const Predictor* predictor = model->predictor.get();
  ServeMetrics* metrics = &metrics_;
  model->batcher = std::make_unique<ServeBatcher>(
      [predictor, metrics](std::vector<ServeJob> jobs) {
        const auto started = Clock::now();
        std::vector<PreparedInput> inputs;
        for (ServeJob& job : jobs) {
          metrics->observe_stage("queue", std::chrono::duration<double>(started - job.submitted).count());
          inputs.push_back(std::move(job.input));
        }
        metrics->observe_batch(inputs.size());
        return predictor->predict(std::move(inputs));
      },
      batching);
  model->load_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return model;
}

std::shared_ptr<ServedModel> ModelRepository::find(const std::string& name, const std::string& version) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = loaded_.find(name);
  if (it == loaded_.end() || (!version.empty() && it->second->version != version)) return nullptr;
  return it->second;
}

std::shared_ptr<ServedModel> ModelRepository::first() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return loaded_.empty() ? nullptr : loaded_.begin()->second;
}

std::shared_ptr<ServedModel> ModelRepository::load(const std::string& name) {
  const std::vector<std::string> known = repository_names();
  if (std::find(known.begin(), known.end(), name) == known.end())
    throw core::UsageError(fmt::format("no model named \"{}\" in the repository; it has: {}", name, fmt::join(known, ", ")));
  std::lock_guard<std::mutex> one_at_a_time(load_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    loading_ = name;
  }
  std::shared_ptr<ServedModel> model;
  try {
    model = load_version(name);
    core::return_freed_memory();  // what reading the checkpoint and checking the folded graph took
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(mutex_);
    loading_.clear();
    if (loaded_.count(name) == 0) unavailable_[name] = e.what();
    throw;
  }
  std::shared_ptr<ServedModel> previous;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    previous = std::exchange(loaded_[name], model);
    unavailable_.erase(name);
    loading_.clear();
  }
  if (previous && previous->version != model->version) metrics_.forget_model(name, previous->version);
  metrics_.set_model(name, model->version, model->load_seconds, true);
  core::log::info("serve: model {} version {} loaded from {} in {:.1f} s{}", name, model->version,
                  model->source.string(), model->load_seconds,
                  previous ? fmt::format(" (version {} finishes its requests in flight)", previous->version) : "");
  return model;
}

bool ModelRepository::unload(const std::string& name) {
  std::shared_ptr<ServedModel> previous;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = loaded_.find(name);
    if (it == loaded_.end()) return false;
    previous = std::move(it->second);
    loaded_.erase(it);
    unavailable_[name] = "unloaded";
  }
  metrics_.set_model(name, previous->version, previous->load_seconds, false);
  core::log::info("serve: model {} version {} unloaded (its requests in flight finish)", name, previous->version);
  return true;
}

int ModelRepository::reload_all() {
  // The loaded models, and the repository's models never loaded nor unloaded on purpose (a
  // SIGHUP also picks up models added to the folder and retries those that failed).
  const std::vector<std::string> known = repository_names();
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const std::string& name : known) {
      const auto why = unavailable_.find(name);
      if (loaded_.count(name) > 0 || why == unavailable_.end() || why->second != "unloaded") names.push_back(name);
    }
  }
  int loaded = 0;
  for (const std::string& name : names) {
    try {
      load(name);
      ++loaded;
    } catch (const std::exception& e) {
      core::log::error("serve: reloading model {} failed, the loaded version stays: {}", name, e.what());
    }
  }
  return loaded;
}

std::vector<RepositoryEntry> ModelRepository::index() const {
  std::vector<RepositoryEntry> entries;
  const std::vector<std::string> names = repository_names();
  std::lock_guard<std::mutex> lock(mutex_);
  for (const std::string& name : names) {
    RepositoryEntry e;
    e.name = name;
    if (const auto it = loaded_.find(name); it != loaded_.end()) {
      e.version = it->second->version;
      e.state = loading_ == name ? "LOADING" : "READY";
    } else {
      e.state = loading_ == name ? "LOADING" : "UNAVAILABLE";
      e.version = has_repository() ? latest_version(options_.model_repository / name) : "1";
      if (const auto why = unavailable_.find(name); why != unavailable_.end()) e.reason = why->second;
    }
    entries.push_back(std::move(e));
  }
  return entries;
}

bool ModelRepository::ready() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (loaded_.empty()) return false;
  for (const auto& [name, why] : unavailable_)
    if (why != "unloaded") return false;  // a model that should be served failed to load
  return true;  // (a version being reloaded meanwhile serves the one loaded)
}

int64_t ModelRepository::queue_depth() const {
  std::lock_guard<std::mutex> lock(mutex_);
  int64_t depth = 0;
  for (const auto& [name, model] : loaded_) depth += static_cast<int64_t>(model->batcher->waiting());
  return depth;
}

}  // namespace pneumo::infer
