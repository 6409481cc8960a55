#include "pneumo/data/input_gate.h"

#include <algorithm>
#include <cctype>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <opencv2/core.hpp>

#include "pneumo/core/error.h"
#include "pneumo/core/ordered_workers.h"
#include "pneumo/data/dataset_index.h"
#include "pneumo/data/image_io.h"

namespace pneumo::data {

namespace {

std::string upper_trimmed(std::string text) {
  const auto space = [](unsigned char c) { return std::isspace(c) != 0; };
  text.erase(text.begin(), std::find_if_not(text.begin(), text.end(), space));
  text.erase(std::find_if_not(text.rbegin(), text.rend(), space).base(), text.end());
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return text;
}

bool listed(const std::vector<std::string>& list, const std::string& value) {
  const std::string wanted = upper_trimmed(value);
  return std::any_of(list.begin(), list.end(), [&](const std::string& item) { return upper_trimmed(item) == wanted; });
}

GateDecision refuse(std::string reason, std::string detail) { return {false, std::move(reason), std::move(detail)}; }

// The header rules, in the order a reader of the refusal would ask them.
std::optional<GateDecision> check_header(const GateSection& gate, const DicomMetadata& m) {
  if (!gate.modalities.empty()) {
    if (upper_trimmed(m.modality).empty()) return refuse("modality", "the DICOM has no Modality (0008,0060)");
    if (!listed(gate.modalities, m.modality))
      return refuse("modality", fmt::format("Modality {}; accepted: {}", m.modality, fmt::join(gate.modalities, ", ")));
  }
  if (gate.lateral_view) {
    static const std::vector<std::string> lateral{"LL", "RL", "LLD", "RLD", "LATERAL", "LAT"};
    if (listed(lateral, m.view_position)) return refuse("lateral_view", fmt::format("View Position {}", m.view_position));
  }
  if (!gate.body_parts.empty() && !upper_trimmed(m.body_part).empty() && !listed(gate.body_parts, m.body_part))
    return refuse("body_part",
                  fmt::format("Body Part Examined {}; accepted: {}", m.body_part, fmt::join(gate.body_parts, ", ")));
  if (gate.min_age_years > 0) {
    if (const std::optional<double> years = age_in_years(m.patient_age); years && *years < gate.min_age_years)
      return refuse("paediatric",
                    fmt::format("Patient's Age {} ({:.3g} years; the limit is {:.3g})", m.patient_age, *years,
                                gate.min_age_years));
  }
  return std::nullopt;
}

}  // namespace

std::string GateDecision::str() const {
  if (accepted) return "accepted";
  return detail.empty() ? "refused: " + reason : fmt::format("refused: {} ({})", reason, detail);
}

std::optional<double> age_in_years(const std::string& text) {
  const std::string age = upper_trimmed(text);
  if (age.empty()) return std::nullopt;
  size_t digits = 0;
  while (digits < age.size() && std::isdigit(static_cast<unsigned char>(age[digits])) != 0) ++digits;
  if (digits == 0 || digits > 3) return std::nullopt;
  const double number = std::stod(age.substr(0, digits));
  if (digits == age.size()) return number;  // bare digits (not DICOM's form, but the SIIM files'): years
  if (digits + 1 != age.size()) return std::nullopt;
  switch (age.back()) {
    case 'Y': return number;
    case 'M': return number / 12.0;
    case 'W': return number * 7.0 / 365.25;
    case 'D': return number / 365.25;
    default: return std::nullopt;
  }
}

InputFacts encoded_image_facts(std::string_view bytes, const std::string& name) {
  InputFacts facts;
  if (bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0xFF && static_cast<unsigned char>(bytes[1]) == 0xD8) {
    facts.photometric = "JPEG";
    facts.bits_stored = 8;
    return facts;
  }
  const PngHeader header = parse_png_header(bytes, name);
  facts.photometric = header.grey ? "PNG grey" : "PNG colour";
  facts.bits_stored = header.bits;
  return facts;
}

InputFacts read_input_facts(const std::filesystem::path& file) {
  InputFacts facts;
  if (!is_png_or_jpeg(file)) {
    DicomMetadata m = read_dicom_header(file);
    facts.photometric = m.photometric;
    facts.bits_stored = m.bits_stored;
    facts.dicom = std::move(m);
    return facts;
  }
  std::string extension = file.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (extension != ".png") {
    facts.photometric = "JPEG";
    return facts;
  }
  const PngHeader header = read_png_header(file);
  facts.photometric = header.grey ? "PNG grey" : "PNG colour";
  facts.bits_stored = header.bits;
  return facts;
}

GateDecision check_input(const GateSection& gate, const InputFacts& facts, const cv::Mat& grey, int model_input) {
  if (!gate.enabled) return {};
  if (facts.dicom)
    if (std::optional<GateDecision> refused = check_header(gate, *facts.dicom)) return *refused;
  if (gate.too_small && (grey.rows < model_input || grey.cols < model_input))
    return refuse("too_small", fmt::format("{}x{} pixels; the model's input is {}x{}", grey.cols, grey.rows, model_input,
                                           model_input));
  if (!gate.photometric.empty() && !listed(gate.photometric, facts.photometric))
    return refuse("photometric", fmt::format("{}; the model was trained on {}",
                                             facts.photometric.empty() ? "(none)" : facts.photometric,
                                             fmt::join(gate.photometric, ", ")));
  if (!gate.bits_stored.empty() &&
      std::find(gate.bits_stored.begin(), gate.bits_stored.end(), facts.bits_stored) == gate.bits_stored.end())
    return refuse("bit_depth", fmt::format("{} bits stored; the model was trained on {}", facts.bits_stored,
                                           fmt::join(gate.bits_stored, ", ")));
  if (!grey.empty() && grey.type() == CV_8UC1) {
    cv::Scalar mean, deviation;
    cv::meanStdDev(grey, mean, deviation);
    if (deviation[0] < gate.blank_std)
      return refuse("blank", fmt::format("grey values vary by a standard deviation of {:.2f} (of 255); the limit is {:.3g}",
                                         deviation[0], gate.blank_std));
    const double extreme = static_cast<double>(cv::countNonZero(grey == 0) + cv::countNonZero(grey == 255)) /
                           static_cast<double>(grey.total());
    if (gate.saturated_share < 1.0 && extreme > gate.saturated_share)
      return refuse("saturated", fmt::format("{:.1f}% of the pixels are black or white; the limit is {:.1f}%",
                                             100 * extreme, 100 * gate.saturated_share));
  }
  return {};
}

void record_training_inputs(GateSection& gate, const DatasetIndex& index, const std::vector<int64_t>& images,
                            int threads) {
  if (!gate.photometric.empty() && !gate.bits_stored.empty()) return;
  std::set<std::string> photometric;
  std::set<int> bits;
  core::OrderedWorkers<InputFacts> reader(static_cast<int64_t>(images.size()), threads, 4 * std::max(threads, 1),
                                          [&](int64_t k) {
                                            const IndexEntry& e = index.entries[static_cast<size_t>(images[static_cast<size_t>(k)])];
                                            InputFacts facts = read_input_facts(e.file);
                                            facts.dicom.reset();
                                            return facts;
                                          });
  while (std::optional<InputFacts> facts = reader.next()) {
    photometric.insert(facts->photometric);
    bits.insert(facts->bits_stored);
  }
  if (gate.photometric.empty()) gate.photometric.assign(photometric.begin(), photometric.end());
  if (gate.bits_stored.empty()) gate.bits_stored.assign(bits.begin(), bits.end());
}

}  // namespace pneumo::data
