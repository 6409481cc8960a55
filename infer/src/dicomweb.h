// The three DICOMweb services (PS3.18) as `pneumo pacs --dicomweb URL` uses them, over libcurl:
// QIDO-RS to find instances, WADO-RS to fetch one, STOW-RS to store results. `URL` is the
// service's root, e.g. http://127.0.0.1:8042/dicom-web for Orthanc's DICOMweb plugin.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "http_client.h"

namespace pneumo::infer {

// What QIDO-RS says of an instance (the attributes pacs asks it to include).
struct DicomWebInstance {
  std::string study, series, sop_instance, sop_class, modality, manufacturer;
  int rows = 0;  // 0: not an image (or not said)
};

class DicomWeb {
 public:
  DicomWeb(std::string root, std::string credentials, double timeout_s);

  // QIDO-RS /instances: `limit` instances from `offset`, in the server's order.
  std::vector<DicomWebInstance> search_instances(size_t offset, size_t limit);
  // QIDO-RS /instances?SOPInstanceUID=...: whether the server holds that instance.
  bool has_instance(const std::string& sop_instance_uid);
  // WADO-RS: the instance as a DICOM file (the first part of the multipart answer).
  std::string retrieve(const DicomWebInstance& instance);
  // STOW-RS: stores the DICOM files in one request; throws IoError naming any the server refused.
  void store(const std::vector<std::string>& files);

  const std::string& root() const { return http_.base(); }

 private:
  HttpClient http_;
};

// The parts of a multipart body (RFC 2046) whose Content-Type header names the boundary; each
// part's content without its headers. Throws DataError for a body that is not that.
std::vector<std::string> multipart_parts(std::string_view body, const std::string& content_type);

// `parts` as a multipart/related body with `boundary`, each part of Content-Type `type`.
std::string multipart_related(const std::vector<std::string>& parts, const std::string& boundary, const std::string& type);

// The instances of a QIDO-RS answer (DICOM JSON, PS3.18 F.2). Throws DataError when it is not.
std::vector<DicomWebInstance> parse_qido_instances(const std::string& json_text);

}  // namespace pneumo::infer
