// Internal: process-wide GDCM settings.
#pragma once

namespace pneumo::data::detail {

// Turns off GDCM's warning/error/debug traces on stderr (once per process): pneumo reports
// problems itself, naming the file and the reason.
void silence_gdcm_traces();

}  // namespace pneumo::data::detail
