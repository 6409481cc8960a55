// The one precompiled header shared by every pneumo target (see the top CMakeLists.txt).
// Only stable, heavy, widely used headers belong here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>
