#include "pneumo/data/fingerprint.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <opencv2/core.hpp>

#include "pneumo/core/error.h"
#include "pneumo/core/ordered_workers.h"
#include "pneumo/core/progress.h"
#include "pneumo/data/dicom.h"
#include "pneumo/data/image_io.h"

namespace pneumo::data {

namespace fs = std::filesystem;

namespace {

// What one image contributes.
struct ImageFacts {
  int rows = 0, columns = 0, bits = 8;
  std::string format, photometric, patient;
  std::optional<double> spacing_mm;
  std::optional<double> area_fraction;     // positives
  std::array<int64_t, 256> histogram{};    // sampled images only
  bool sampled = false;
};

// A PNG's size and bit depth from its IHDR chunk, nothing decoded.
void read_png_facts(const fs::path& file, ImageFacts& facts) {
  const PngHeader header = read_png_header(file);
  facts.columns = header.width;
  facts.rows = header.height;
  facts.bits = header.bits;
  facts.format = "PNG";
  facts.photometric = header.grey ? "PNG grey" : "PNG colour";
}

void read_header(const IndexEntry& entry, ImageFacts& facts) {
  const std::string extension = [&] {
    std::string e = entry.file.extension().string();
    std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return std::tolower(c); });
    return e;
  }();
  if (extension == ".png") {
    read_png_facts(entry.file, facts);
  } else if (is_png_or_jpeg(entry.file)) {
    const cv::Mat image = read_grey_image(entry.file);  // a JPEG header says no more than this
    facts.rows = image.rows;
    facts.columns = image.cols;
    facts.format = "JPEG";
    facts.photometric = "JPEG";
  } else {
    const DicomMetadata m = read_dicom_header(entry.file);
    facts.rows = m.rows;
    facts.columns = m.columns;
    facts.bits = m.bits_stored;
    facts.format = "DICOM";
    facts.photometric = m.photometric.empty() ? "(none)" : m.photometric;
    facts.spacing_mm = m.pixel_spacing_row_mm;
    facts.patient = m.patient_id;
  }
  if (!entry.patient.empty()) facts.patient = entry.patient;
}

ImageFacts facts_of(const Dataset& dataset, int64_t i, bool sampled) {
  const IndexEntry& entry = dataset.index().entries[static_cast<size_t>(i)];
  ImageFacts facts;
  read_header(entry, facts);
  if (entry.positive && dataset.has_masks()) {
    const cv::Mat mask = dataset.masks().mask(entry.image_id, facts.rows, facts.columns);
    facts.area_fraction = static_cast<double>(cv::countNonZero(mask)) / (static_cast<double>(facts.rows) * facts.columns);
  }
  if (sampled) {
    facts.sampled = true;
    cv::Mat image = dataset.load(i).image;
    if (image.depth() != CV_8U) image.convertTo(image, CV_8U, 255.0);
    for (int r = 0; r < image.rows; ++r) {
      const uint8_t* row = image.ptr<uint8_t>(r);
      for (int c = 0; c < image.cols * image.channels(); ++c) ++facts.histogram[row[c]];
    }
  }
  return facts;
}

// The value at quantile q of a histogram over bin centres (v / 255).
double histogram_quantile(const std::array<int64_t, 256>& histogram, int64_t total, double q) {
  const auto target = static_cast<int64_t>(std::ceil(q * static_cast<double>(total)));
  int64_t seen = 0;
  for (size_t v = 0; v < histogram.size(); ++v) {
    seen += histogram[v];
    if (seen >= std::max<int64_t>(target, 1)) return static_cast<double>(v) / 255.0;
  }
  return 1.0;
}

Quantiles histogram_quantiles(const std::array<int64_t, 256>& histogram) {
  int64_t total = 0;
  for (int64_t n : histogram) total += n;
  Quantiles q;
  q.count = total;
  if (total == 0) return q;
  q.min = histogram_quantile(histogram, total, 0.0);
  q.p5 = histogram_quantile(histogram, total, 0.05);
  q.p10 = histogram_quantile(histogram, total, 0.10);
  q.p25 = histogram_quantile(histogram, total, 0.25);
  q.p50 = histogram_quantile(histogram, total, 0.50);
  q.p75 = histogram_quantile(histogram, total, 0.75);
  q.p95 = histogram_quantile(histogram, total, 0.95);
  q.max = histogram_quantile(histogram, total, 1.0);
  return q;
}

// Mean and standard deviation of the histogram's pixel values (v / 255).
std::pair<double, double> histogram_moments(const std::array<int64_t, 256>& histogram) {
  double n = 0, sum = 0, squares = 0;
  for (size_t v = 0; v < histogram.size(); ++v) {
    const double x = static_cast<double>(v) / 255.0, k = static_cast<double>(histogram[v]);
    n += k;
    sum += k * x;
    squares += k * x * x;
  }
  if (n == 0) return {0.0, 0.0};
  const double mean = sum / n;
  return {mean, std::sqrt(std::max(0.0, squares / n - mean * mean))};
}

std::string count_list(const std::map<std::string, int64_t>& counts) {
  std::vector<std::pair<std::string, int64_t>> sorted(counts.begin(), counts.end());
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string text;
  for (size_t i = 0; i < sorted.size() && i < 4; ++i)
    text += fmt::format("{}{} ({})", i == 0 ? "" : ", ", sorted[i].first, sorted[i].second);
  if (sorted.size() > 4) text += fmt::format(", and {} more", sorted.size() - 4);
  return text;
}

std::string quantile_text(const Quantiles& q, double scale, const char* format) {
  auto f = [&](double v) { return fmt::format(fmt::runtime(format), v * scale); };
  return fmt::format("min {}, p10 {}, median {}, p95 {}, max {}", f(q.min), f(q.p10), f(q.p50), f(q.p95),
                     f(q.max));
}

}  // namespace

Quantiles quantiles_of(std::vector<double> values) {
  Quantiles q;
  q.count = static_cast<int64_t>(values.size());
  if (values.empty()) return q;
  std::sort(values.begin(), values.end());
  auto at = [&](double p) {
    const double rank = p * static_cast<double>(values.size() - 1);
    const auto low = static_cast<size_t>(std::floor(rank));
    const size_t high = std::min(low + 1, values.size() - 1);
    return values[low] + (rank - static_cast<double>(low)) * (values[high] - values[low]);
  };
  q.min = values.front();
  q.p5 = at(0.05);
  q.p10 = at(0.10);
  q.p25 = at(0.25);
  q.p50 = at(0.50);
  q.p75 = at(0.75);
  q.p95 = at(0.95);
  q.max = values.back();
  return q;
}

DatasetFingerprint fingerprint_dataset(const Dataset& dataset, const FingerprintOptions& options) {
  const int64_t n = dataset.size();
  std::set<int64_t> sample;
  const int64_t wanted = std::min<int64_t>(std::max(options.intensity_images, 0), n);
  for (int64_t k = 0; k < wanted; ++k) sample.insert(k * n / wanted);

  DatasetFingerprint fp;
  fp.images = n;
  std::vector<double> short_sides, spacings, areas;
  std::array<int64_t, 256> histogram{};
  std::map<std::string, int64_t> images_of_patient;
  bool patients_known = n > 0;
  core::OrderedWorkers<ImageFacts> workers(n, std::max(options.threads, 1), 4 * std::max(options.threads, 1),
                                           [&](int64_t i) { return facts_of(dataset, i, sample.count(i) != 0); });
  core::Progress progress("fingerprint", n);
  for (int64_t i = 0; i < n; ++i) {
    const ImageFacts f = *workers.next();
    fp.positives += dataset.index().entries[static_cast<size_t>(i)].positive ? 1 : 0;
    ++fp.sizes[fmt::format("{}x{}", f.columns, f.rows)];
    ++fp.bits_stored[std::to_string(f.bits)];
    ++fp.photometric[f.photometric];
    ++fp.formats[f.format];
    short_sides.push_back(std::min(f.rows, f.columns));
    if (f.spacing_mm) spacings.push_back(*f.spacing_mm);
    if (f.area_fraction) areas.push_back(*f.area_fraction);
    if (f.sampled) {
      ++fp.intensity_images;
      for (size_t v = 0; v < histogram.size(); ++v) histogram[v] += f.histogram[v];
    }
    if (f.patient.empty()) patients_known = false;
    else ++images_of_patient[f.patient];
    progress.advance();
  }
  progress.finish();
  fp.short_side = quantiles_of(std::move(short_sides));
  fp.spacing_mm = quantiles_of(std::move(spacings));
  fp.area_fraction = quantiles_of(std::move(areas));
  fp.intensity = histogram_quantiles(histogram);
  std::tie(fp.intensity_mean, fp.intensity_std) = histogram_moments(histogram);
  if (patients_known) {
    fp.patients = static_cast<int64_t>(images_of_patient.size());
    for (const auto& [patient, count] : images_of_patient) {
      fp.patients_with_several_images += count > 1 ? 1 : 0;
      fp.most_images_per_patient = std::max(fp.most_images_per_patient, count);
    }
  }
  return fp;
}

std::vector<std::string> describe(const DatasetFingerprint& fp) {
  std::vector<std::string> lines;
  lines.push_back(fmt::format("images: {}, {} positive ({:.1f}%)", fp.images, fp.positives, 100.0 * fp.positive_share()));
  lines.push_back(fmt::format("formats: {}", count_list(fp.formats)));
  lines.push_back(fmt::format("sizes (columns x rows): {}", count_list(fp.sizes)));
  lines.push_back(fmt::format("short side (pixels): {}", quantile_text(fp.short_side, 1.0, "{:.0f}")));
  lines.push_back(fmt::format("bits stored: {}", count_list(fp.bits_stored)));
  lines.push_back(fmt::format("photometric: {}", count_list(fp.photometric)));
  lines.push_back(fp.spacing_mm.count == 0
                      ? std::string("pixel spacing: not in the headers")
                      : fmt::format("pixel spacing (mm, {} images): {}", fp.spacing_mm.count,
                                    quantile_text(fp.spacing_mm, 1.0, "{:.3g}")));
  lines.push_back(fp.area_fraction.count == 0
                      ? std::string("pneumothorax area: no positive image")
                      : fmt::format("pneumothorax area (% of the image, {} positives): {}", fp.area_fraction.count,
                                    quantile_text(fp.area_fraction, 100.0, "{:.3g}")));
  lines.push_back(fmt::format("intensity (0..1 after the window, {} images): mean {:.3f}, sd {:.3f}, {}",
                              fp.intensity_images, fp.intensity_mean, fp.intensity_std,
                              quantile_text(fp.intensity, 1.0, "{:.3f}")));
  lines.push_back(fp.patients == 0
                      ? std::string("patients: unknown (no PatientID; data.patients names them for PNG/JPEG)")
                      : fmt::format("patients: {}, {} with several images (at most {})", fp.patients,
                                    fp.patients_with_several_images, fp.most_images_per_patient));
  return lines;
}

}  // namespace pneumo::data
