// The DICOM readers of dicom.h as they run in this process, and the same sent to a worker
// process (dicom_isolation.h). dicom.h's functions choose between them; a worker runs the first.
#pragma once

#include <filesystem>
#include <string>

#include "pneumo/data/dicom.h"

namespace pneumo::data::detail {

DicomImage read_dicom_here(const std::filesystem::path& file, const DicomReadOptions& options);
DicomImage decode_dicom_here(std::string bytes, const std::string& name, const DicomReadOptions& options);
DicomMetadata read_dicom_header_here(const std::filesystem::path& file);
std::string read_dicom_patient_id_here(const std::filesystem::path& file);

DicomImage isolated_read_dicom(const std::filesystem::path& file, const DicomReadOptions& options);
DicomImage isolated_decode_dicom(std::string bytes, const std::string& name, const DicomReadOptions& options);
DicomMetadata isolated_read_dicom_header(const std::filesystem::path& file);
std::string isolated_read_dicom_patient_id(const std::filesystem::path& file);

}  // namespace pneumo::data::detail
