#include "pneumo/data/demo_set.h"

#include <gdcmImageChangeTransferSyntax.h>
#include <gdcmImageWriter.h>
#include <gdcmJPEGCodec.h>

#include <cmath>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <opencv2/imgproc.hpp>

#include "gdcm_support.h"
#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "pneumo/core/random.h"
#include "pneumo/data/dicom.h"
#include "pneumo/data/image_io.h"
#include "pneumo/data/rle.h"

namespace pneumo::data {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kImageStream = 0xDE40;
constexpr uint64_t kUidStream = 0xD1C0;
constexpr const char* kSecondaryCapture = "1.2.840.10008.5.1.4.1.1.7";

struct Ellipse {
  cv::Point2d center;
  cv::Size2d axes;  // half-widths
  double angle = 0;
};

cv::Mat filled(const Ellipse& e, cv::Size size) {
  cv::Mat m(size, CV_32F, cv::Scalar(0));
  cv::ellipse(m, cv::Point(cvRound(e.center.x), cvRound(e.center.y)),
              cv::Size(cvRound(e.axes.width), cvRound(e.axes.height)), e.angle, 0, 360,
              cv::Scalar(1), cv::FILLED, cv::LINE_AA);
  return m;
}

// img = img * (1 - alpha) + value * alpha
void blend(cv::Mat& img, const cv::Mat& alpha, double value) {
  img = img.mul(1.0 - alpha) + alpha * value;
}

cv::Mat soft(const cv::Mat& m, double sigma) {
  cv::Mat out;
  cv::GaussianBlur(m, out, cv::Size(0, 0), sigma);
  return out;
}

// Vessel-like markings fanning out from the hilum, clipped later to the visible lung.
cv::Mat vessel_markings(cv::Size size, const Ellipse& lung, bool left, core::Rng& rng) {
  cv::Mat v(size, CV_32F, cv::Scalar(0));
  const double s = size.width;
  const cv::Point2d hilum(lung.center.x + (left ? 0.6 : -0.6) * lung.axes.width,
                          lung.center.y + 0.05 * lung.axes.height);
  const int branches = 22 + static_cast<int>(rng.randint(0, 8));
  for (int b = 0; b < branches; ++b) {
    double angle = rng.uniform(-M_PI * 0.95, M_PI * 0.95);
    cv::Point2d p = hilum;
    double thickness = rng.uniform(1.0, 2.2) * s / 256.0;
    const int steps = 6 + static_cast<int>(rng.randint(0, 6));
    for (int k = 0; k < steps; ++k) {
      angle += rng.normal(0, 0.25);
      const double step = rng.uniform(0.02, 0.05) * s;
      const cv::Point2d q(p.x + (left ? -1 : 1) * std::abs(std::cos(angle)) * step,
                          p.y + std::sin(angle) * step);
      cv::line(v, p, q, cv::Scalar(rng.uniform(0.6, 1.0)), std::max(1, cvRound(thickness)),
               cv::LINE_AA);
      p = q;
      thickness *= 0.85;
    }
  }
  return soft(v, 0.6 * s / 256.0);
}

// Posterior ribs: arcs across each hemithorax.
cv::Mat ribs(cv::Size size, const Ellipse& left_lung, const Ellipse& right_lung, core::Rng& rng) {
  cv::Mat r(size, CV_32F, cv::Scalar(0));
  const double s = size.width;
  const int count = 9;
  const double top = std::min(left_lung.center.y - left_lung.axes.height,
                              right_lung.center.y - right_lung.axes.height) - 0.02 * s;
  const double spacing = (2.1 * left_lung.axes.height) / count;
  const int thickness = std::max(1, cvRound(0.016 * s));
  for (int side = 0; side < 2; ++side) {
    const Ellipse& lung = side == 0 ? left_lung : right_lung;
    const double spine_x = 0.5 * s;
    const double outer_x = lung.center.x + (side == 0 ? -1.2 : 1.2) * lung.axes.width;
    for (int i = 0; i < count; ++i) {
      const double y0 = top + i * spacing + rng.normal(0, 0.004 * s);
      const double droop = (0.05 + 0.012 * i) * s;
      std::vector<cv::Point> curve;
      for (int k = 0; k <= 24; ++k) {
        const double t = k / 24.0;
        const double x = spine_x + t * (outer_x - spine_x);
        const double y = y0 - 0.02 * s * std::sin(M_PI * t) + droop * t * t;
        curve.emplace_back(cvRound(x), cvRound(y));
      }
      cv::polylines(r, curve, false, cv::Scalar(1), thickness, cv::LINE_AA);
    }
  }
  return soft(r, 0.8 * s / 256.0);
}

cv::Mat render(const DemoSetOptions& o, core::Rng& rng, bool pneumothorax, cv::Mat& mask_out) {
  const double s = o.size;
  const cv::Size size(o.size, o.size);
  cv::Mat img(size, CV_32F, cv::Scalar(0.06));

  const Ellipse body{{0.5 * s + rng.normal(0, 0.01 * s), 0.62 * s}, {0.47 * s, 0.66 * s}, 0};
  blend(img, soft(filled(body, size), 2.0), 0.50);
  cv::Mat vertical(size, CV_32F);
  for (int y = 0; y < o.size; ++y) vertical.row(y).setTo(0.85 + 0.3 * y / s);
  img = img.mul(vertical);

  const double lung_w = rng.uniform(0.13, 0.16) * s, lung_h = rng.uniform(0.26, 0.31) * s;
  const double lung_y = rng.uniform(0.43, 0.48) * s;
  const Ellipse left_lung{{0.5 * s - rng.uniform(0.17, 0.2) * s, lung_y}, {lung_w, lung_h},
                          rng.uniform(-6, 2)};
  const Ellipse right_lung{{0.5 * s + rng.uniform(0.17, 0.2) * s, lung_y}, {lung_w, lung_h * 0.96},
                           rng.uniform(-2, 6)};
  const double lung_value = rng.uniform(0.17, 0.24);

  // The collapsed lung, if any: the ellipse shrunk toward an anchor on its boundary.
  const int side = static_cast<int>(rng.randint(0, 1));
  const bool apical = rng.bernoulli(0.4);
  const double shrink = rng.uniform(0.55, 0.8);
  const Ellipse& sick = side == 0 ? left_lung : right_lung;
  Ellipse collapsed = sick;
  const cv::Point2d anchor =
      apical ? cv::Point2d(sick.center.x, sick.center.y + sick.axes.height)
             : cv::Point2d(sick.center.x + (side == 0 ? 1 : -1) * sick.axes.width, sick.center.y);
  collapsed.center = anchor + shrink * (sick.center - anchor);
  collapsed.axes = cv::Size2d(sick.axes.width * shrink, sick.axes.height * shrink);

  cv::Mat mask(size, CV_8UC1, cv::Scalar(0));
  for (int l = 0; l < 2; ++l) {
    const Ellipse& lung = l == 0 ? left_lung : right_lung;
    const cv::Mat field = filled(lung, size);
    blend(img, soft(field, 1.5), lung_value);
    cv::Mat visible = field.clone();  // where lung markings show
    if (pneumothorax && l == side) {
      const cv::Mat inner = filled(collapsed, size);
      const cv::Mat gap = field.mul(1.0 - inner);
      cv::Mat binary;
      cv::threshold(gap, binary, 0.5, 255, cv::THRESH_BINARY);
      binary.convertTo(mask, CV_8U);
      blend(img, gap, lung_value * 0.8);  // no lung tissue: slightly darker, no markings
      visible = inner.mul(field);
      cv::Mat pleura(size, CV_32F, cv::Scalar(0));
      cv::ellipse(pleura, cv::Point(cvRound(collapsed.center.x), cvRound(collapsed.center.y)),
                  cv::Size(cvRound(collapsed.axes.width), cvRound(collapsed.axes.height)),
                  collapsed.angle, 0, 360, cv::Scalar(1), std::max(1, cvRound(s / 256.0)),
                  cv::LINE_AA);
      img += 0.16 * soft(pleura.mul(field), 0.5);
    }
    img += 0.10 * vessel_markings(size, lung, l == 0, rng).mul(soft(visible, 1.0));
  }

  const Ellipse heart{{0.5 * s + rng.uniform(0.02, 0.05) * s, 0.6 * s}, {0.13 * s, 0.15 * s},
                      rng.uniform(-20, -5)};
  blend(img, soft(filled(heart, size), 3.0), 0.58);
  cv::Mat spine(size, CV_32F, cv::Scalar(0));
  cv::rectangle(spine, cv::Point(cvRound(0.465 * s), 0), cv::Point(cvRound(0.535 * s), o.size),
                cv::Scalar(1), cv::FILLED);
  blend(img, soft(spine, 2.5), 0.62);
  img += 0.09 * ribs(size, left_lung, right_lung, rng);
  cv::Mat clavicles(size, CV_32F, cv::Scalar(0));
  for (int c = -1; c <= 1; c += 2)
    cv::line(clavicles, cv::Point(cvRound(0.5 * s + c * 0.05 * s), cvRound(0.16 * s)),
             cv::Point(cvRound(0.5 * s + c * 0.33 * s), cvRound(0.11 * s)), cv::Scalar(1),
             std::max(1, cvRound(0.02 * s)), cv::LINE_AA);
  img += 0.12 * soft(clavicles, 1.5);

  cv::Mat noise(size, CV_32F);
  for (int y = 0; y < o.size; ++y)
    for (int x = 0; x < o.size; ++x) noise.at<float>(y, x) = static_cast<float>(rng.normal(0, 1));
  img += 0.025 * soft(noise, 1.2) + 0.01 * noise;

  mask_out = mask;
  return img;
}

std::string demo_uid(uint64_t seed, int index, uint64_t kind) {
  return fmt::format("2.25.{}", core::derive_seed(seed, kUidStream + kind, static_cast<uint64_t>(index)));
}

void put(gdcm::DataSet& ds, uint16_t group, uint16_t element, const gdcm::VR& vr, std::string value) {
  if (value.size() % 2 != 0) value += vr == gdcm::VR::UI ? '\0' : ' ';
  gdcm::DataElement de(gdcm::Tag(group, element));
  de.SetVR(vr);
  de.SetByteValue(value.data(), static_cast<uint32_t>(value.size()));
  ds.Replace(de);
}

void write_demo_dicom(const fs::path& file, const cv::Mat& pixels, const std::string& sop_uid,
                      const DemoSetOptions& o, int index) {
  detail::silence_gdcm_traces();
  // GDCM filters keep their input through an intrusive smart pointer: it must live on the heap.
  gdcm::SmartPointer<gdcm::Image> raw = new gdcm::Image;
  raw->SetNumberOfDimensions(2);
  raw->SetDimension(0, static_cast<unsigned int>(pixels.cols));
  raw->SetDimension(1, static_cast<unsigned int>(pixels.rows));
  raw->SetPixelFormat(gdcm::PixelFormat::UINT8);
  raw->SetPhotometricInterpretation(gdcm::PhotometricInterpretation::MONOCHROME2);
  raw->SetTransferSyntax(gdcm::TransferSyntax::ExplicitVRLittleEndian);
  gdcm::DataElement pixel_data(gdcm::Tag(0x7fe0, 0x0010));
  pixel_data.SetByteValue(reinterpret_cast<const char*>(pixels.data),
                          static_cast<uint32_t>(pixels.total()));
  raw->SetDataElement(pixel_data);

  gdcm::JPEGCodec codec;
  codec.SetLossless(false);
  codec.SetQuality(o.jpeg_quality);
  gdcm::ImageChangeTransferSyntax change;
  change.SetTransferSyntax(gdcm::TransferSyntax::JPEGBaselineProcess1);
  change.SetUserCodec(&codec);
  change.SetInput(*raw);
  if (!change.Change()) throw core::DataError(fmt::format("{}: JPEG compression failed", file.string()));

  gdcm::ImageWriter writer;
  writer.SetImage(change.GetOutput());
  gdcm::DataSet& ds = writer.GetFile().GetDataSet();
  put(ds, 0x0008, 0x0016, gdcm::VR::UI, kSecondaryCapture);
  put(ds, 0x0008, 0x0018, gdcm::VR::UI, sop_uid);
  put(ds, 0x0008, 0x0060, gdcm::VR::CS, "CR");
  put(ds, 0x0008, 0x0064, gdcm::VR::CS, "WSD");
  put(ds, 0x0008, 0x103e, gdcm::VR::LO, "pneumo synthetic demo");
  const int patient = index / std::max(o.images_per_patient, 1);
  put(ds, 0x0010, 0x0010, gdcm::VR::PN, fmt::format("DEMO^{:05d}", patient));
  put(ds, 0x0010, 0x0020, gdcm::VR::LO, fmt::format("DEMO{:05d}", patient));
  put(ds, 0x0010, 0x0040, gdcm::VR::CS, index % 2 == 0 ? "M" : "F");
  put(ds, 0x0010, 0x1010, gdcm::VR::AS, fmt::format("{:03d}Y", 20 + index % 60));
  put(ds, 0x0018, 0x0015, gdcm::VR::CS, "CHEST");
  put(ds, 0x0018, 0x5101, gdcm::VR::CS, "PA");
  put(ds, 0x0020, 0x000d, gdcm::VR::UI, demo_uid(o.seed, index, 1));
  put(ds, 0x0020, 0x000e, gdcm::VR::UI, demo_uid(o.seed, index, 2));
  const double spacing = 0.168 * 1024.0 / o.size;  // a SIIM film's field of view
  put(ds, 0x0028, 0x0030, gdcm::VR::DS, fmt::format("{:.4f}\\{:.4f}", spacing, spacing));

  std::ostringstream bytes;
  writer.SetStream(bytes);
  if (!writer.Write()) throw core::IoError(fmt::format("{}: DICOM encoding failed", file.string()));
  core::write_file_atomic(file, bytes.str());
}

}  // namespace

DemoRadiograph render_demo_radiograph(const DemoSetOptions& options, int index) {
  if (options.size < 64 || options.size > 2048)
    throw core::ConfigError(fmt::format("demo image size {} is out of range; expected 64..2048",
                                        options.size));
  core::Rng rng = core::Rng::for_sample(options.seed, kImageStream, static_cast<uint64_t>(index));
  const bool pneumothorax = rng.bernoulli(options.positive_fraction);
  DemoRadiograph out;
  const cv::Mat img = render(options, rng, pneumothorax, out.mask);
  img.convertTo(out.image, CV_8U, 255.0);  // saturates to 0..255
  return out;
}

const std::vector<std::string>& demo_classes() {
  static const std::vector<std::string> names{"Pneumothorax", "Large", "Right"};
  return names;
}

namespace {

// A classes.csv row's cells after id and patient (see demo_classes).
std::string demo_class_cells(const cv::Mat& mask) {
  const double area = cv::countNonZero(mask) / static_cast<double>(mask.total());
  if (area == 0) return "0,0,";
  const double large = 0.07;  // about the demo's median pneumothorax
  const char* size = area >= large * 1.05 ? "1" : area <= large * 0.95 ? "0" : "-1";
  const cv::Moments m = cv::moments(mask, true);
  const bool right = m.m10 / m.m00 < mask.cols / 2.0;  // the patient's right is the image's left
  return fmt::format("1,{},{}", size, right ? 1 : 0);
}

}  // namespace

DemoSetSummary write_demo_set(const fs::path& out, const DemoSetOptions& options) {
  if (options.count < 1)
    throw core::ConfigError(fmt::format("demo image count {} is invalid; expected >= 1", options.count));
  if (!(options.positive_fraction >= 0.0 && options.positive_fraction <= 1.0))
    throw core::ConfigError(fmt::format("positive fraction {} is invalid; expected 0..1",
                                        options.positive_fraction));
  if (options.images_per_patient < 1)
    throw core::ConfigError(fmt::format("images per patient {} is invalid; expected >= 1", options.images_per_patient));
  DemoSetSummary summary;
  summary.dicom_dir = out / "dicom";
  summary.labels_csv = out / "train-rle.csv";
  if (options.png) {
    summary.png_dir = out / "png";
    summary.masks_dir = out / "masks";
  }
  for (const fs::path& dir : {summary.dicom_dir, summary.png_dir, summary.masks_dir}) {
    std::error_code ec;
    if (!dir.empty()) fs::create_directories(dir, ec);
    if (ec) throw core::IoError(fmt::format("{}: cannot create folder: {}", dir.string(), ec.message()));
  }

  std::string csv = "ImageId,EncodedPixels\n", patients = "ImageId,PatientID\n";
  std::string classes = fmt::format("id,patient,{}\n", fmt::join(demo_classes(), ","));
  for (int i = 0; i < options.count; ++i) {
    const DemoRadiograph r = render_demo_radiograph(options, i);
    const std::string uid = demo_uid(options.seed, i, 0);
    const fs::path dicom = summary.dicom_dir / (uid + ".dcm");
    write_demo_dicom(dicom, r.image, uid, options, i);
    if (options.png) {
      write_png(summary.png_dir / (uid + ".png"), read_dicom(dicom).pixels);
      write_png(summary.masks_dir / (uid + ".png"), r.mask);
      patients += fmt::format("{},DEMO{:05d}\n", uid, i / options.images_per_patient);
    }
    classes += fmt::format("{},DEMO{:05d},{}\n", uid, i / options.images_per_patient, demo_class_cells(r.mask));
    const std::string rle = encode_rle(r.mask);
    csv += uid + "," + rle + "\n";
    summary.positives += rle != "-1";
    ++summary.images;
  }
  core::write_file_atomic(summary.labels_csv, csv);
  if (options.png) core::write_file_atomic(out / "patients.csv", patients);
  summary.classes_csv = out / "classes.csv";
  core::write_file_atomic(summary.classes_csv, classes);
  return summary;
}

}  // namespace pneumo::data
