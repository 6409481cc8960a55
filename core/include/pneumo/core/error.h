// Typed errors. Every error pneumo reports derives from pneumo::core::Error, so the CLI can
// catch one type at the top, print its message and choose the exit code.
#pragma once

#include <stdexcept>
#include <string>

namespace pneumo::core {

// Process exit codes of the `pneumo` program.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,      // a data, model, checkpoint or I/O problem
  kExitUsageOrConfig = 2 // bad command line or bad configuration
};

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  // The exit code the CLI uses when this error ends a command.
  virtual int exit_code() const { return kExitFailure; }
};

// A configuration file, key or value is wrong. Messages name `file:line:column key.path`.
class ConfigError : public Error {
 public:
  using Error::Error;
  int exit_code() const override { return kExitUsageOrConfig; }
};

// A command line that cannot be carried out as given (missing argument, bad option value).
class UsageError : public Error {
 public:
  using Error::Error;
  int exit_code() const override { return kExitUsageOrConfig; }
};

// An input file (image, mask, label table) is missing, unreadable or malformed.
class DataError : public Error {
 public:
  using Error::Error;
};

// A model cannot be built, or its weights do not fit it.
class ModelError : public Error {
 public:
  using Error::Error;
};

// A checkpoint is missing, truncated, corrupted or from an incompatible version.
class CheckpointError : public Error {
 public:
  using Error::Error;
};

// Reading or writing a file failed at the operating-system level.
class IoError : public Error {
 public:
  using Error::Error;
};

// The requested device (e.g. CUDA) or runtime feature is not available.
class DeviceError : public Error {
 public:
  using Error::Error;
};

// A process of a data-parallel run failed, was killed or stopped answering, so the
// collective operations that join the processes cannot go on.
class DistributedError : public Error {
 public:
  using Error::Error;
};

}  // namespace pneumo::core
