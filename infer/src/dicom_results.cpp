#include "pneumo/infer/dicom_results.h"

#include <cstdlib>
#include <ctime>
#include <sstream>
#include <memory>
#include <mutex>
#include <vector>

#include <dcmtk/config/osconfig.h>  // first, as DCMTK requires
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmfg/fgderimg.h>
#include <dcmtk/dcmfg/fgfracon.h>
#include <dcmtk/dcmfg/fgpixmsr.h>
#include <dcmtk/dcmfg/fgplanor.h>
#include <dcmtk/dcmfg/fgplanpo.h>
#include <dcmtk/dcmfg/fgseg.h>
#include <dcmtk/dcmiod/iodreferences.h>
#include <dcmtk/dcmseg/segdoc.h>
#include <dcmtk/dcmseg/segment.h>
#include <dcmtk/dcmsr/cmr/init.h>
#include <dcmtk/dcmsr/cmr/tid1500.h>
#include <dcmtk/dcmsr/dsrdoc.h>
#include <dcmtk/oflog/oflog.h>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <opencv2/imgproc.hpp>

#include "pneumo/core/build_info.h"
#include "pneumo/core/error.h"

namespace pneumo::infer {

namespace {

constexpr const char* kManufacturer = "pneumo";
constexpr const char* kSegSeriesNumber = "9901";
constexpr const char* kCaptureSeriesNumber = "9902";
constexpr const char* kReportSeriesNumber = "9903";

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw core::DataError(fmt::format("{}: {}", name, what));
}

void check(const OFCondition& condition, const std::string& name, const std::string& what) {
  if (condition.bad()) fail(name, fmt::format("{}: {}", what, condition.text()));
}

// The source file parsed by DCMTK, everything in memory.
std::unique_ptr<DcmFileFormat> parse(std::string_view bytes, const std::string& name) {
  // DCMTK's own log would print attribute values (patient data) to stderr; its conditions
  // reach the user through our messages instead.
  static std::once_flag quiet;
  std::call_once(quiet, [] { OFLog::configure(OFLogger::OFF_LOG_LEVEL); });
  auto file = std::make_unique<DcmFileFormat>();
  DcmInputBufferStream in;
  in.setBuffer(bytes.data(), static_cast<offile_off_t>(bytes.size()));
  in.setEos();
  file->transferInit();
  const OFCondition read = file->read(in, EXS_Unknown, EGL_noChange, DCM_MaxReadLength);
  file->transferEnd();
  if (read.bad()) fail(name, fmt::format("not a readable DICOM file ({})", read.text()));
  check(file->loadAllDataIntoMemory(), name, "reading its values");
  return file;
}

std::string text(DcmItem& item, const DcmTagKey& tag) {
  OFString value;
  if (item.findAndGetOFStringArray(tag, value).bad()) return "";
  return value.c_str();
}

std::string required(DcmItem& item, const DcmTagKey& tag, const std::string& name) {
  std::string value = text(item, tag);
  if (value.empty()) fail(name, fmt::format("has no {}; a result object must reference it", DcmTag(tag).getTagName()));
  return value;
}

std::string new_uid() {
  char uid[100];
  dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT);
  return uid;
}

std::string as_bytes(DcmFileFormat& file, const std::string& name) {
  const E_TransferSyntax syntax = EXS_LittleEndianExplicit;
  check(file.validateMetaInfo(syntax), name, "writing the file meta information");
  const Uint32 size = file.calcElementLength(syntax, EET_ExplicitLength) + 4096;
  std::string buffer(size, '\0');
  DcmOutputBufferStream out(buffer.data(), size);
  file.transferInit();
  const OFCondition written = file.write(out, syntax, EET_ExplicitLength, nullptr);
  file.transferEnd();
  check(written, name, "encoding the result");
  void* data = nullptr;
  offile_off_t length = 0;
  out.flushBuffer(data, length);
  buffer.resize(static_cast<size_t>(length));
  return buffer;
}

// Values by which the source breaks the standard (the SIIM files have PatientAge "38" and
// 19-character PixelSpacing values) would make DCMTK refuse to write the result: ages of bare
// digits become "038Y", decimal strings are rewritten within 16 characters, anything else
// invalid is emptied (it stays present, as type 2 attributes must).
void mend_values(DcmDataset& ds) {
  for (unsigned long i = 0; i < ds.card(); ++i) {
    DcmElement* e = ds.getElement(i);
    if (e == nullptr || e->ident() == EVR_SQ || e->getTag() == DCM_PixelData || e->checkValue("1-n").good()) continue;
    OFString value;
    e->getOFStringArray(value);
    std::string mended;
    const std::string text(value.c_str());
    if (e->getTag() == DCM_PatientAge && !text.empty() && text.size() <= 3 &&
        text.find_first_not_of("0123456789") == std::string::npos) {
      mended = std::string(3 - text.size(), '0') + text + "Y";
    } else if (e->ident() == EVR_DS) {
      std::stringstream parts(text);
      for (std::string part; std::getline(parts, part, '\\');) {
        char* end = nullptr;
        const double number = std::strtod(part.c_str(), &end);
        mended += (mended.empty() ? "" : "\\") + fmt::format("{:.10g}", end == part.c_str() ? 0.0 : number);
      }
    }
    e->putString(mended.c_str());
  }
}

struct Source {
  std::unique_ptr<DcmFileFormat> file;
  DcmDataset* dataset = nullptr;
  std::string sop_class, sop_instance, study, series;
  int rows = 0, columns = 0;
};

Source open_source(std::string_view bytes, const std::string& name) {
  Source s;
  s.file = parse(bytes, name);
  s.dataset = s.file->getDataset();
  mend_values(*s.dataset);
  s.sop_class = required(*s.dataset, DCM_SOPClassUID, name);
  s.sop_instance = required(*s.dataset, DCM_SOPInstanceUID, name);
  s.study = required(*s.dataset, DCM_StudyInstanceUID, name);
  s.series = required(*s.dataset, DCM_SeriesInstanceUID, name);
  Uint16 rows = 0, columns = 0;
  s.dataset->findAndGetUint16(DCM_Rows, rows);
  s.dataset->findAndGetUint16(DCM_Columns, columns);
  if (rows == 0 || columns == 0) fail(name, "has no Rows/Columns; expected a DICOM image");
  s.rows = rows;
  s.columns = columns;
  return s;
}

void check_size(const Source& s, const cv::Mat& image, const std::string& name) {
  if (image.rows != s.rows || image.cols != s.columns)
    fail(name, fmt::format("the result is {}x{} pixels but the image is {}x{}", image.cols, image.rows, s.columns, s.rows));
}

// Whether the source went through lossy compression (then so did anything derived from it).
bool lossy(DcmDataset& source) {
  if (text(source, DCM_LossyImageCompression) == "01") return true;
  const E_TransferSyntax syntax = source.getOriginalXfer();
  return DcmXfer(syntax).isEncapsulated() && DcmXfer(syntax).isLossy();
}

}  // namespace

std::string derived_uid(std::string_view source, std::string_view kind) {
  const auto fnv1a = [&](uint64_t hash) {  // FNV-1a over both, from two starting points
    for (char c : source) hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
    hash = (hash ^ 0xffU) * 0x100000001b3ULL;
    for (char c : kind) hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
    return hash;
  };
  unsigned __int128 value = (static_cast<unsigned __int128>(fnv1a(0xcbf29ce484222325ULL)) << 64) |
                            fnv1a(0x84222325cbf29ce4ULL);
  std::string digits;
  do {
    digits.insert(digits.begin(), static_cast<char>('0' + static_cast<int>(value % 10)));
    value /= 10;
  } while (value != 0);
  return "2.25." + digits;
}

namespace {

// Series, instance UID and lossy-compression flag of a SEG made from `source`.
void identify_segmentation(DcmSegmentation& seg, const Source& source, const std::string& sop_instance,
                           const std::string& name) {
  check(seg.getSOPCommon().setSOPInstanceUID(sop_instance.c_str()), name, "setting the SOP Instance UID");
  check(seg.getSeries().setSeriesInstanceUID(derived_uid(source.series, "pneumo SEG").c_str()), name, "the series UID");
  check(seg.getSeries().setSeriesNumber(kSegSeriesNumber), name, "the series number");
  check(seg.getSeries().setSeriesDescription("pneumo: pneumothorax segmentation"), name, "the series description");
  if (lossy(*source.dataset)) {
    const std::string ratio = text(*source.dataset, DCM_LossyImageCompressionRatio);
    const std::string method = text(*source.dataset, DCM_LossyImageCompressionMethod);
    check(seg.setLossyImageCompressionFlag(ratio.c_str(), method.empty() ? "ISO_10918_1" : method.c_str(), OFFalse),
          name, "the lossy compression flag");
  }
}

// The one segment, Pneumothorax (SNOMED CT); returns its number.
Uint16 add_pneumothorax_segment(DcmSegmentation& seg, const std::string& algorithm, const std::string& name) {
  DcmSegment* segment = nullptr;
  check(DcmSegment::create(segment, "Pneumothorax", CodeSequenceMacro("49755003", "SCT", "Morphologically Altered Structure"),
                           CodeSequenceMacro("36118008", "SCT", "Pneumothorax"), DcmSegTypes::SAT_AUTOMATIC, algorithm.c_str()),
        name, "creating the segment");
  Uint16 segment_number = 0;
  if (OFCondition added = seg.addSegment(segment, segment_number); added.bad()) {
    delete segment;
    check(added, name, "adding the segment");
  }
  return segment_number;
}

// The mask is the source image's grid, pixel for pixel: Spatial Locations Preserved (0028,135A)
// YES in the frame's Source Image item, which readers such as highdicom need to index the
// segmentation by its source. (DCMTK 3.6.7's SourceImageItem has no setter for it.)
void mark_spatial_locations_preserved(DcmItem& dataset, const std::string& name) {
  DcmItem* frame = nullptr;
  DcmItem* derivation = nullptr;
  DcmItem* source_image = nullptr;
  if (dataset.findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, frame, 0).bad() ||
      frame->findAndGetSequenceItem(DCM_DerivationImageSequence, derivation, 0).bad() ||
      derivation->findAndGetSequenceItem(DCM_SourceImageSequence, source_image, 0).bad())
    fail(name, "the segmentation has no Source Image item to mark");
  check(source_image->putAndInsertOFStringArray(DCM_SpatialLocationsPreserved, "YES"), name,
        "Spatial Locations Preserved");
}

// Pixel spacing when the source gives it (Pixel Spacing, else Imager Pixel Spacing), and the
// placeholders DCMTK needs without a frame of reference. Returns whether the source had a spacing.
bool add_geometry(DcmSegmentation& seg, const Source& source, bool frame_of_reference, const std::string& name) {
  std::string spacing = text(*source.dataset, DCM_PixelSpacing);
  if (spacing.empty()) spacing = text(*source.dataset, DCM_ImagerPixelSpacing);
  FGPixelMeasures measures;
  const bool has_spacing = !spacing.empty() && measures.setPixelSpacing(spacing.c_str(), OFFalse).good();
  if (has_spacing || !frame_of_reference) {
    if (!has_spacing) check(measures.setPixelSpacing("1\\1"), name, "pixel measures");  // a placeholder
    // Slice Thickness is 1C in the macro, but readers such as highdicom require it in the Pixel
    // Measures item: the source's when it has one, else 1 (mm; a projection image has none).
    std::string thickness = text(*source.dataset, DCM_SliceThickness);
    if (thickness.empty() || measures.setSliceThickness(thickness.c_str(), OFFalse).bad())
      check(measures.setSliceThickness("1"), name, "pixel measures");
    check(seg.addForAllFrames(measures), name, "pixel measures");
  }
  if (!frame_of_reference) {
    FGPlanePosPatient position;
    check(position.setImagePositionPatient("0", "0", "0"), name, "the plane position");
    check(seg.addForAllFrames(position), name, "the plane position");
    FGPlaneOrientationPatient orientation;
    check(orientation.setImageOrientationPatient("1", "0", "0", "0", "1", "0"), name, "the plane orientation");
    check(seg.addForAllFrames(orientation), name, "the plane orientation");
  }
  return has_spacing;
}

// The mask as the segment's one frame, derived from the source image, which the SEG references.
void add_mask_frame(DcmSegmentation& seg, const Source& source, const cv::Mat& mask, Uint16 segment_number,
                    const std::string& name) {
  const std::string organisation = new_uid();
  check(seg.getDimensions().addDimensionIndex(DCM_ReferencedSegmentNumber, organisation.c_str(),
                                              DCM_SegmentIdentificationSequence, "Segment"),
        name, "the dimension index");
  FGFrameContent frame_content;
  check(frame_content.setDimensionIndexValues(segment_number, 0), name, "the frame content");
  FGSegmentation frame_segment;
  check(frame_segment.setReferencedSegmentNumber(segment_number), name, "the frame's segment");
  ImageSOPInstanceReferenceMacro reference;
  check(reference.setReferencedSOPClassUID(source.sop_class.c_str()), name, "the source's SOP Class UID");
  check(reference.setReferencedSOPInstanceUID(source.sop_instance.c_str()), name, "the source's SOP Instance UID");
  std::unique_ptr<FGDerivationImage> derivation(DcmSegmentation::createDerivationImageFG(
      OFVector<ImageSOPInstanceReferenceMacro>(1, reference), "Pneumothorax segmented automatically by pneumo"));
  if (!derivation) fail(name, "could not describe the source image (Derivation Image Sequence)");
  OFVector<FGBase*> per_frame;
  per_frame.push_back(&frame_content);
  per_frame.push_back(&frame_segment);
  per_frame.push_back(derivation.get());
  cv::Mat pixels = mask.isContinuous() ? mask : mask.clone();
  check(seg.addFrame(pixels.data, segment_number, per_frame), name, "adding the mask");

  IODReferences references;
  references.add(new IODImageReference(text(*source.dataset, DCM_PatientID).c_str(), source.study.c_str(),
                                       source.series.c_str(), source.sop_instance.c_str(), source.sop_class.c_str()));
  seg.getCommonInstanceReference().addReferences(references, source.study.c_str());
}

// `tag` from the source into `target`, or present and empty when the source lacks it.
void copy_or_empty(DcmItem& source, DcmItem& target, const DcmTagKey& tag, const std::string& name) {
  DcmElement* element = nullptr;
  if (source.findAndGetElement(tag, element).good() && element != nullptr)
    check(target.insert(OFstatic_cast(DcmElement*, element->clone()), OFTrue), name, DcmTag(tag).getTagName());
  else
    check(target.insertEmptyElement(tag, OFTrue), name, DcmTag(tag).getTagName());
}

// Takes the frame-of-reference placeholders out of the written dataset again.
void remove_placeholders(DcmDataset& ds, bool has_spacing) {
  ds.findAndDeleteElement(DCM_FrameOfReferenceUID);
  ds.findAndDeleteElement(DCM_PositionReferenceIndicator);
  DcmItem* shared = nullptr;
  if (ds.findAndGetSequenceItem(DCM_SharedFunctionalGroupsSequence, shared, 0).good() && shared != nullptr) {
    shared->findAndDeleteElement(DCM_PlanePositionSequence);
    shared->findAndDeleteElement(DCM_PlaneOrientationSequence);
    if (!has_spacing) shared->findAndDeleteElement(DCM_PixelMeasuresSequence);
  }
}

}  // namespace

DicomResult make_segmentation(std::string_view bytes, const std::string& name, const cv::Mat& mask,
                              const std::string& algorithm, const std::string& instance_uid) {
  if (mask.type() != CV_8UC1) fail(name, "the mask must be 8-bit single channel");
  Source source = open_source(bytes, name);
  check_size(source, mask, name);

  const IODGeneralEquipmentModule::EquipmentInfo equipment(kManufacturer, "pneumo", "1", algorithm.c_str());
  // Content Creator's Name is a person's (PN); an algorithm made this one, and it is named in the
  // segment and the equipment instead, so the name stays empty (type 2).
  const ContentIdentificationMacro content("1", "PNEUMOTHORAX", "Pneumothorax segmented automatically", "");
  DcmSegmentation* created = nullptr;
  check(DcmSegmentation::createBinarySegmentation(created, static_cast<Uint16>(mask.rows), static_cast<Uint16>(mask.cols),
                                                  equipment, content),
        name, "creating the segmentation");
  std::unique_ptr<DcmSegmentation> seg(created);
  check(seg->importFromSourceImage(*source.dataset), name, "taking over the patient and study");
  // A projection X-ray has no Frame of Reference, and then a SEG must not have one (nor plane
  // position/orientation) either. DCMTK 3.6.7 insists on them when writing, so placeholders are
  // given here and taken out of the written dataset below.
  const bool frame_of_reference = !text(*source.dataset, DCM_FrameOfReferenceUID).empty();
  if (!frame_of_reference)
    check(seg->getFrameOfReference().setFrameOfReferenceUID(new_uid().c_str()), name, "the frame of reference");
  const std::string sop_instance = instance_uid.empty() ? new_uid() : instance_uid;
  identify_segmentation(*seg, source, sop_instance, name);
  const Uint16 segment_number = add_pneumothorax_segment(*seg, algorithm, name);
  const bool has_spacing = add_geometry(*seg, source, frame_of_reference, name);
  add_mask_frame(*seg, source, mask, segment_number, name);

  DcmFileFormat out;
  check(seg->writeDataset(*out.getDataset()), name, "writing the segmentation");
  if (!frame_of_reference) remove_placeholders(*out.getDataset(), has_spacing);
  mark_spatial_locations_preserved(*out.getDataset(), name);
  // Without Image Orientation (Patient), the General Image module needs Patient Orientation
  // (type 2C): the mask is the source's pixel grid, so it has the source's orientation.
  copy_or_empty(*source.dataset, *out.getDataset(), DCM_PatientOrientation, name);
  return {as_bytes(out, name), sop_instance};
}

DicomResult make_secondary_capture(std::string_view bytes, const std::string& name, const cv::Mat& overlay,
                                   const std::string& algorithm, const std::string& instance_uid) {
  if (overlay.type() != CV_8UC3) fail(name, "the overlay must be 8-bit, 3 channels");
  Source source = open_source(bytes, name);
  check_size(source, overlay, name);

  DcmFileFormat out;
  DcmDataset& ds = *out.getDataset();
  // Patient and study as in the source, so the PACS files it with the X-ray.
  for (const DcmTagKey& tag : {DCM_SpecificCharacterSet, DCM_PatientName, DCM_PatientID, DCM_PatientBirthDate, DCM_PatientSex,
                               DCM_StudyInstanceUID, DCM_StudyDate, DCM_StudyTime, DCM_StudyID, DCM_AccessionNumber,
                               DCM_ReferringPhysicianName, DCM_StudyDescription}) {
    DcmElement* element = nullptr;
    if (source.dataset->findAndGetElement(tag, element).good() && element != nullptr)
      ds.insert(OFstatic_cast(DcmElement*, element->clone()), OFTrue);
    else if (tag != DCM_SpecificCharacterSet && tag != DCM_StudyDescription)
      ds.insertEmptyElement(tag);  // type 2: present, maybe empty
  }
  const std::string sop_instance = instance_uid.empty() ? new_uid() : instance_uid;
  const std::time_t seconds = std::time(nullptr);
  std::tm now{};
  localtime_r(&seconds, &now);  // (fmt 12 dropped fmt::localtime)
  const std::string date = fmt::format("{:%Y%m%d}", now), time = fmt::format("{:%H%M%S}", now);
  const std::vector<std::pair<DcmTagKey, std::string>> values{
      {DCM_SOPClassUID, UID_SecondaryCaptureImageStorage},
      {DCM_SOPInstanceUID, sop_instance},
      {DCM_SeriesInstanceUID, derived_uid(source.series, "pneumo SC")},
      {DCM_Modality, "OT"},
      {DCM_SeriesNumber, kCaptureSeriesNumber},
      {DCM_SeriesDescription, "pneumo: pneumothorax overlay"},
      {DCM_InstanceNumber, "1"},
      {DCM_ConversionType, "WSD"},
      {DCM_ImageType, "DERIVED\\SECONDARY"},
      {DCM_Manufacturer, kManufacturer},
      {DCM_SoftwareVersions, algorithm},
      {DCM_ContentDate, date},
      {DCM_ContentTime, time},
      {DCM_DerivationDescription, "Pneumothorax probability (heat map) and predicted outline (yellow) by pneumo"},
      {DCM_BurnedInAnnotation, "YES"},
      {DCM_PhotometricInterpretation, "RGB"},
  };
  for (const auto& [tag, value] : values) check(ds.putAndInsertString(tag, value.c_str()), name, "writing the capture");
  copy_or_empty(*source.dataset, ds, DCM_PatientOrientation, name);
  // General Series: the body part and laterality of what the capture shows, the source's. When the
  // source names neither, Laterality (type 2C for paired body parts) is present and empty.
  for (const DcmTagKey& tag : {DCM_BodyPartExamined, DCM_Laterality}) {
    DcmElement* element = nullptr;
    if (source.dataset->findAndGetElement(tag, element).good() && element != nullptr)
      ds.insert(OFstatic_cast(DcmElement*, element->clone()), OFTrue);
  }
  if (!ds.tagExists(DCM_BodyPartExamined) && !ds.tagExists(DCM_Laterality)) ds.insertEmptyElement(DCM_Laterality);
  if (lossy(*source.dataset)) check(ds.putAndInsertString(DCM_LossyImageCompression, "01"), name, "the lossy flag");
  for (const auto& [tag, value] : std::vector<std::pair<DcmTagKey, Uint16>>{{DCM_SamplesPerPixel, 3},
                                                                           {DCM_PlanarConfiguration, 0},
                                                                           {DCM_Rows, static_cast<Uint16>(overlay.rows)},
                                                                           {DCM_Columns, static_cast<Uint16>(overlay.cols)},
                                                                           {DCM_BitsAllocated, 8},
                                                                           {DCM_BitsStored, 8},
                                                                           {DCM_HighBit, 7},
                                                                           {DCM_PixelRepresentation, 0}})
    check(ds.putAndInsertUint16(tag, value), name, "writing the capture");
  DcmItem* item = nullptr;
  check(ds.findOrCreateSequenceItem(DCM_SourceImageSequence, item, 0), name, "the source reference");
  check(item->putAndInsertString(DCM_ReferencedSOPClassUID, source.sop_class.c_str()), name, "the source reference");
  check(item->putAndInsertString(DCM_ReferencedSOPInstanceUID, source.sop_instance.c_str()), name, "the source reference");
  cv::Mat rgb;
  cv::cvtColor(overlay, rgb, cv::COLOR_BGR2RGB);
  check(ds.putAndInsertUint8Array(DCM_PixelData, rgb.data, static_cast<unsigned long>(rgb.total() * 3)), name,
        "the pixel data");
  return {as_bytes(out, name), sop_instance};
}

namespace {

// The codes the report uses: SNOMED CT and DICOM's own (PS3.16), no local ones.
const DSRCodedEntryValue kPneumothorax("36118008", "SCT", "Pneumothorax");
const DSRCodedEntryValue kPresent("52101004", "SCT", "Present");
const DSRCodedEntryValue kAbsent("2667000", "SCT", "Absent");
const DSRCodedEntryValue kChestRadiograph("399208008", "SCT", "Plain chest X-ray");
const DSRCodedEntryValue kProbability("122157", "DCM", "Probability");
const DSRCodedEntryValue kCalibrationMethod("122422", "DCM", "Calibration Method");

// The report's content tree: TID 1500 with one TID 1411 group about the segmented pneumothorax.
void fill_measurement_report(TID1500_MeasurementReport& report, Source& source, DcmItem& segmentation,
                             const ReportFindings& findings, const std::string& name) {
  check(report.setLanguage(CID5000_Languages::English_US, CID5001_Countries::UnitedStates), name, "the language");
  check(report.getObservationContext().addDeviceObserver(derived_uid(findings.algorithm, "pneumo device"), "pneumo",
                                                         kManufacturer, findings.algorithm.substr(0, 64)),
        name, "the observation context");
  check(report.addProcedureReported(kChestRadiograph), name, "the procedure reported");
  TID1600_ImageLibrary& library = report.getImageLibrary();
  if (!library.hasImageLibrary()) check(library.createNewImageLibrary(), name, "the image library");
  check(library.addImageGroup(), name, "the image library");
  check(library.addImageEntry(*source.dataset, TID1600_ImageLibrary::withAllDescriptors), name,
        "the source image in the image library");

  check(report.addVolumetricROIMeasurements(), name, "the measurement group");
  CMR_TID1411_in_TID1500& group = report.getVolumetricROIMeasurements();
  check(group.setTrackingIdentifier("Pneumothorax"), name, "the tracking identifier");
  check(group.setTrackingUniqueIdentifier(derived_uid(source.sop_instance, "pneumo SR tracking")), name,
        "the tracking UID");
  check(group.setFinding(kPneumothorax), name, "the finding");
  check(group.setReferencedSegment(segmentation, 1, OFFalse), name, "the SEG's segment");
  check(group.setSourceSeriesForSegmentation(source.series.c_str()), name, "the source series");
  const std::string version = PNEUMO_VERSION;
  if (findings.area_mm2) {
    const CMR_SRNumericMeasurementValue area(fmt::format("{:.6g}", *findings.area_mm2).c_str(),
                                             CID7181_AbstractMultiDimensionalImageModelComponentUnits(
                                                 CID7181_AbstractMultiDimensionalImageModelComponentUnits::SquareMillimeter));
    check(group.addMeasurement(CID7469_GenericIntensityAndSizeMeasurements::Area, area), name, "the area");
    check(group.getMeasurement().setAlgorithmIdentification(findings.algorithm.substr(0, 64).c_str(), version.c_str()),
          name, "the area's algorithm");
  }
  const CMR_SRNumericMeasurementValue probability(
      fmt::format("{:.6g}", findings.probability).c_str(),
      CID7181_AbstractMultiDimensionalImageModelComponentUnits(DSRCodedEntryValue("1", "UCUM", "no units")));
  check(group.addMeasurement(CID7469_GenericIntensityAndSizeMeasurements(kProbability), probability, OFFalse), name,
        "the probability");
  check(group.getMeasurement().setAlgorithmIdentification(findings.algorithm.substr(0, 64).c_str(), version.c_str()),
        name, "the probability's algorithm");

  check(report.addQualitativeEvaluation(kPneumothorax, findings.positive ? kPresent : kAbsent), name,
        "the finding's presence");
  check(report.addQualitativeEvaluation(kCalibrationMethod, findings.calibration.empty()
                                                                ? "none: the probability is the model's raw score"
                                                                : findings.calibration.c_str()),
        name, "the calibration method");
}

}  // namespace

DicomResult make_structured_report(std::string_view bytes, const std::string& name, const ReportFindings& findings,
                                   std::string_view segmentation_bytes, const std::string& instance_uid) {
  Source source = open_source(bytes, name);
  const std::unique_ptr<DcmFileFormat> segmentation = parse(segmentation_bytes, name + " (its SEG)");
  static std::once_flag codes;
  std::call_once(codes, [] { CMR_ContentMappingResource::initializeAllContextGroups(); });

  TID1500_MeasurementReport report(CMR_CID7021::ImagingMeasurementReport);
  fill_measurement_report(report, source, *segmentation->getDataset(), findings, name);
  DSRDocument document(DSRTypes::DT_ComprehensiveSR);
  check(document.setTreeFromRootTemplate(report, OFTrue), name, "the report's content (TID 1500)");
  check(document.createNewSeriesInStudy(source.study.c_str()), name, "the report's series");
  check(document.setSeriesDescription("pneumo: pneumothorax findings"), name, "the series description");
  check(document.setSeriesNumber(kReportSeriesNumber), name, "the series number");
  check(document.setInstanceNumber("1"), name, "the instance number");
  check(document.setManufacturer(kManufacturer), name, "the manufacturer");
  check(document.setSoftwareVersions(findings.algorithm.substr(0, 64).c_str()), name, "the software versions");
  check(document.setCompletionFlagDescription("Pneumothorax findings of an automated algorithm, not verified"), name,
        "the completion flag description");
  // The evidence the report rests on, which every image reference in its content must be listed in.
  DcmItem& seg = *segmentation->getDataset();
  check(document.getCurrentRequestedProcedureEvidence().addItem(source.study.c_str(), source.series.c_str(),
                                                                  source.sop_class.c_str(), source.sop_instance.c_str()),
        name, "the source image as evidence");
  check(document.getCurrentRequestedProcedureEvidence().addItem(
            text(seg, DCM_StudyInstanceUID).c_str(), text(seg, DCM_SeriesInstanceUID).c_str(),
            text(seg, DCM_SOPClassUID).c_str(), text(seg, DCM_SOPInstanceUID).c_str()),
        name, "the SEG as evidence");

  DcmFileFormat out;
  DcmDataset& ds = *out.getDataset();
  check(document.write(ds), name, "writing the report");
  // Patient and study as in the source, so the PACS files it with the X-ray.
  for (const DcmTagKey& tag : {DCM_PatientName, DCM_PatientID, DCM_PatientBirthDate, DCM_PatientSex, DCM_StudyDate,
                               DCM_StudyTime, DCM_StudyID, DCM_AccessionNumber, DCM_ReferringPhysicianName}) {
    DcmElement* element = nullptr;
    if (source.dataset->findAndGetElement(tag, element).good() && element != nullptr)
      check(ds.insert(OFstatic_cast(DcmElement*, element->clone()), OFTrue), name, DcmTag(tag).getTagName());
  }
  const std::string sop_instance = instance_uid.empty() ? new_uid() : instance_uid;
  check(ds.putAndInsertString(DCM_SOPInstanceUID, sop_instance.c_str()), name, "the SOP Instance UID");
  check(ds.putAndInsertString(DCM_SeriesInstanceUID, derived_uid(source.series, "pneumo SR").c_str()), name,
        "the series UID");
  return {as_bytes(out, name), sop_instance};
}

}  // namespace pneumo::infer
