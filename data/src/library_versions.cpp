#include "pneumo/data/library_versions.h"

#include <gdcmVersion.h>
#include <opencv2/core/version.hpp>
#include <opencv2/core/utility.hpp>

namespace pneumo::data {

std::string gdcm_version() { return gdcm::Version::GetVersion(); }

std::string opencv_version() { return cv::getVersionString(); }

}  // namespace pneumo::data
