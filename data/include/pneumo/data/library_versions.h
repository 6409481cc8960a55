// Versions of the image libraries the data component runs on (as loaded at run time).
#pragma once

#include <string>

namespace pneumo::data {

std::string gdcm_version();
std::string opencv_version();

}  // namespace pneumo::data
