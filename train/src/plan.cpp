// `pneumo plan` (plan.h): the rules that turn a fingerprint into an experiment.
#include "pneumo/train/plan.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "pneumo/core/config_schema.h"
#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/data/data_section.h"

namespace pneumo::train {

namespace {

double rounded(double value, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(value * scale) / scale;
}

std::string gib(int64_t bytes) { return fmt::format("{:.2f} GiB", static_cast<double>(bytes) / (1 << 30)); }

void propose_normalisation(ExperimentPlan& plan) {
  ExperimentConfig& c = plan.config;
  const auto channels = static_cast<size_t>(c.data.channels);
  if (!c.model.encoder.weights.empty() || !c.model.weights.empty()) {
    const std::vector<double> mean{0.485, 0.456, 0.406}, sd{0.229, 0.224, 0.225};
    c.data.mean = channels == 3 ? mean : std::vector<double>{0.449};
    c.data.std = channels == 3 ? sd : std::vector<double>{0.226};
    plan.proposals.push_back({"data.mean", "the network starts from pretrained weights: ImageNet's normalisation"
                                           + std::string(channels == 3 ? "" : " (the mean of its three channels)")});
    plan.proposals.push_back({"data.std", "as data.mean"});
    return;
  }
  const data::DatasetFingerprint& fp = plan.fingerprint;
  c.data.mean.assign(channels, rounded(fp.intensity_mean, 3));
  c.data.std.assign(channels, std::max(rounded(fp.intensity_std, 3), 0.001));
  plan.proposals.push_back({"data.mean", fmt::format("trained from scratch: the pixel mean of {} images (0..1 after "
                                                     "the grey mapping), so inputs are centred",
                                                     fp.intensity_images)});
  plan.proposals.push_back({"data.std", "their standard deviation: inputs of unit spread"});
}

void propose_grey_mapping(ExperimentPlan& plan) {
  const data::DatasetFingerprint& fp = plan.fingerprint;
  int64_t deep = 0;
  for (const auto& [bits, count] : fp.bits_stored) deep += std::stoi(bits) > 8 ? count : 0;
  if (deep == 0) return;
  plan.config.data.window = "file";
  plan.proposals.push_back({"data.window", fmt::format("{} of {} images store more than 8 bits: each file's VOI window "
                                                       "maps them as its reading station would (min..max without one)",
                                                       deep, fp.images)});
}

void propose_folds(ExperimentPlan& plan) {
  const data::DatasetFingerprint& fp = plan.fingerprint;
  data::DataSection& d = plan.config.data;
  d.folds = static_cast<int>(std::clamp<int64_t>(fp.positives / 5, 2, 5));
  d.fold = 0;
  plan.proposals.push_back(
      {"data.folds", d.folds == 5 ? std::string("five folds, as nnU-Net and the SIIM winners use")
                                  : fmt::format("only {} positives: {} folds, about {} in each validation fold (five "
                                                "folds want at least 25)",
                                                fp.positives, d.folds, fp.positives / d.folds)});
  if (fp.patients == 0) {
    plan.proposals.push_back({"data.group_by", "patients unknown (no PatientID in the images; data.patients names them "
                                               "for PNG/JPEG): folds cannot group them"});
  } else if (fp.patients_with_several_images > 0) {
    d.group_by = "patient";
    plan.proposals.push_back({"data.group_by", fmt::format("{} of {} patients have several images (up to {}): each "
                                                           "patient's images stay in one fold",
                                                           fp.patients_with_several_images, fp.patients,
                                                           fp.most_images_per_patient)});
  } else {
    d.group_by = "none";
    d.patients.clear();  // read only with group_by: patient
    plan.proposals.push_back({"data.group_by", fmt::format("each of the {} patients has one image", fp.patients)});
  }
}

void propose_size(ExperimentPlan& plan) {
  data::DataSection& d = plan.config.data;
  if (plan.fingerprint.area_fraction.count == 0) {
    plan.proposals.push_back({"data.size", "no masks (image-level labels): kept as given"});
    return;
  }
  std::string why;
  d.size = propose_input_size(plan.fingerprint, &why);
  plan.proposals.push_back({"data.size", why});
  if (plan.fingerprint.short_side.p50 > d.size) {
    d.interpolation = "area";
    plan.proposals.push_back({"data.interpolation", fmt::format("images are shrunk (median short side {:.0f} to {}): "
                                                                "area averaging does not alias",
                                                                plan.fingerprint.short_side.p50, d.size)});
  }
}

void propose_batch(ExperimentPlan& plan, BatchTrialOptions options) {
  // No batch larger than a fold's training images (drop_last would leave no step).
  const int64_t images = plan.fingerprint.images;
  const int64_t training = images - (images + plan.config.data.folds - 1) / plan.config.data.folds;
  const bool data_caps = training < options.max_batch;
  options.max_batch = std::max<int64_t>(std::min(options.max_batch, training), 1);
  plan.trial = measure_batch_size(plan.config, options);
  const BatchTrial& t = plan.trial;
  plan.config.train.batch_size = t.batch;
  const TrialStep* verified = nullptr;
  for (const TrialStep& s : t.steps)
    if (s.batch == t.batch && s.fitted) verified = &s;
  std::string why = fmt::format("measured on {}: one training step of batch {} at {}x{} held {} of the {} usable ({} "
                                "budget x {:.2g})",
                                t.device, t.batch, t.size, t.size, gib(verified->peak_bytes), gib(t.usable_bytes),
                                gib(t.budget_bytes), static_cast<double>(t.usable_bytes) / static_cast<double>(t.budget_bytes));
  if (t.predicted >= options.max_batch && t.batch * 2 > options.max_batch)
    why += data_caps ? fmt::format("; capped by the {} training images of a fold", training)
                     : fmt::format("; capped by --max-batch {}", options.max_batch);
  plan.proposals.push_back({"train.batch_size", why});
}

// Clears every doc of the tree, then sets `why` on the node at each proposal's key.
void clear_docs(core::ConfigNode& node) {
  node.set_doc("");
  for (auto& e : node.entries()) clear_docs(e.value);
  for (auto& item : node.items()) clear_docs(item);
}

core::ConfigNode* node_at(core::ConfigNode& root, const std::string& key) {
  core::ConfigNode* node = &root;
  for (size_t start = 0; node != nullptr && start <= key.size();) {
    const size_t dot = std::min(key.find('.', start), key.size());
    node = node->is_map() ? node->find(key.substr(start, dot - start)) : nullptr;
    start = dot + 1;
  }
  return node;
}

// A value on one line: scalars as they are, lists and sections in YAML's flow style.
std::string flow_text(const core::ConfigNode& node) {
  if (node.is_scalar()) return node.text().empty() ? "\"\"" : node.text();
  if (node.is_null()) return "~";
  std::vector<std::string> parts;
  for (const core::ConfigNode& item : node.items()) parts.push_back(flow_text(item));
  for (const core::ConfigEntry& e : node.entries()) parts.push_back(e.key + ": " + flow_text(e.value));
  const std::string joined = fmt::format("{}", fmt::join(parts, ", "));
  return node.is_map() ? "{" + joined + "}" : "[" + joined + "]";
}

}  // namespace

int propose_input_size(const data::DatasetFingerprint& fp, std::string* why) {
  const double share = fp.area_fraction.p10;
  const double cap = fp.short_side.p50;
  int chosen = 0;
  for (int size : kInputSizes)
    if (share * size * size >= kSmallLesionPixels) {
      chosen = size;
      break;
    }
  const int largest_within_cap = [&] {
    int best = kInputSizes[0];
    for (int size : kInputSizes)
      if (size <= cap) best = size;
    return best;
  }();
  const std::string small = fmt::format("the smallest tenth of the {} pneumothoraces covers {:.3g}% of the image",
                                        fp.area_fraction.count, 100.0 * share);
  if (chosen != 0 && chosen <= cap) {
    *why = fmt::format("{}: {:.0f} pixels at {}, at least {:.0f} (about {:.0f} x {:.0f})", small, share * chosen * chosen,
                       chosen, kSmallLesionPixels, std::sqrt(kSmallLesionPixels), std::sqrt(kSmallLesionPixels));
    return chosen;
  }
  *why = fmt::format("{}: {} pixels need at least {}; the images' median short side ({:.0f}) caps it, as upsampling "
                     "adds no detail",
                     small, kSmallLesionPixels, chosen == 0 ? fmt::format("more than {}", kInputSizes[6]) : std::to_string(chosen),
                     cap);
  return largest_within_cap;
}

std::vector<data::NegativeSharePoint> propose_negative_share(const data::DatasetFingerprint& fp, int64_t epochs,
                                                             std::string* why) {
  const int64_t negatives = fp.images - fp.positives;
  const double share = fp.positive_share();
  if (share >= 0.4 || negatives == 0 || epochs < 2) {
    *why = share >= 0.4 || negatives == 0
               ? fmt::format("{:.1f}% of the images are positive: balanced enough to draw every negative each epoch",
                             100.0 * share)
               : std::string("a single epoch: every negative");
    return {};
  }
  const double first = rounded(static_cast<double>(fp.positives) / static_cast<double>(negatives), 3);
  *why = fmt::format("{} of {} images are positive ({:.1f}%): the first epoch draws as many negatives as positives "
                     "(share {:.3g}), rising to every negative by the last epoch so the model ends at the true "
                     "prevalence",
                     fp.positives, fp.images, 100.0 * share, first);
  return {{0, first}, {epochs - 1, 1.0}};
}

ExperimentPlan plan_experiment(const ExperimentConfig& base, const PlanOptions& options) {
  ExperimentPlan plan;
  plan.config = base;
  data::validate(base.data);
  data::DataSection reading = base.data;
  reading.cache = "none";  // the sample is read at the old size: nothing worth keeping
  if (!reading.patients.empty()) reading.group_by = "patient";
  const data::Dataset dataset = data::open_dataset(reading);
  if (dataset.has_masks() && dataset.index().positive_count() == 0)
    throw core::DataError(fmt::format("{}: no image has a pneumothorax; a segmentation plan needs positives",
                                      base.data.labels.empty() ? base.data.masks : base.data.labels));
  data::FingerprintOptions fingerprint;
  fingerprint.intensity_images = options.intensity_images;
  fingerprint.threads = options.threads;
  plan.fingerprint = data::fingerprint_dataset(dataset, fingerprint);
  for (const std::string& line : data::describe(plan.fingerprint)) core::log::info("{}", line);

  propose_size(plan);
  propose_grey_mapping(plan);
  propose_normalisation(plan);
  std::string why;
  plan.config.data.negative_share = propose_negative_share(plan.fingerprint, plan.config.train.epochs, &why);
  plan.proposals.push_back({"data.negative_share", why});
  propose_folds(plan);
  propose_batch(plan, options.trial);
  return plan;
}

std::vector<std::string> describe_proposals(const ExperimentPlan& plan) {
  core::ConfigNode root = core::write_section(plan.config);
  std::vector<std::string> lines;
  for (const Proposal& p : plan.proposals) {
    const core::ConfigNode* node = node_at(root, p.key);
    std::string value = node == nullptr ? "" : flow_text(*node);
    lines.push_back(fmt::format("{}: {}  ({})", p.key, value, p.why));
  }
  return lines;
}

std::string plan_to_yaml(const ExperimentPlan& plan, const std::string& source) {
  core::ConfigNode root = core::write_section(plan.config);
  clear_docs(root);
  for (const Proposal& p : plan.proposals)
    if (core::ConfigNode* node = node_at(root, p.key)) node->set_doc("plan: " + p.why);
  std::string text = fmt::format("# Proposed by `pneumo plan` from {}.\n# An ordinary experiment file: `pneumo cv "
                                 "THIS_FILE` runs it. Keys marked `plan:` were chosen from the data;\n# the others are "
                                 "the source's (or pneumo's defaults).\n#\n# Fingerprint:\n",
                                 source);
  for (const std::string& line : data::describe(plan.fingerprint)) text += "#   " + line + "\n";
  text += "#\n# Batch size trial (training steps on synthetic batches):\n";
  for (const TrialStep& s : plan.trial.steps)
    text += fmt::format("#   batch {:>3}: {} peak, {:.2f} s{}\n", s.batch, gib(s.peak_bytes), s.seconds,
                        s.fitted ? "" : " (ran out of the budget)");
  return text + "\n" + core::to_yaml(root, true);
}

}  // namespace pneumo::train
