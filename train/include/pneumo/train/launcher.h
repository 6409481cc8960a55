// Starting this machine's processes of a data-parallel run the torchrun way: RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT in each one's environment. The
// launcher forwards SIGINT, SIGTERM and SIGHUP to them, stops the others when one fails (SIGTERM,
// then SIGKILL after a grace period), and reports the worst exit code of the processes that
// ended on their own. `pneumo launch` is this with a command line in front.
#pragma once

#include <string>
#include <vector>

namespace pneumo::train {

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free port on this machine (one node), else 29500
  double grace_s = 10.0;  // between SIGTERM and SIGKILL when stopping the processes
  std::string program = "/proc/self/exe";
  std::vector<std::string> arguments;  // after the program name, e.g. {"train", "demo.yaml"}
};

// One process of a supervised set: a name for messages ("rank 1", "fold 2"), its arguments
// after the program name, variables added to (or replacing) the inherited environment, and a
// file its stdout and stderr are appended to (empty: the supervisor's own).
struct ProcessJob {
  std::string name;
  std::vector<std::string> arguments;
  std::vector<std::string> environment;  // NAME=VALUE
  std::string log_file;
};

struct ProcessJobsResult {
  int worst_exit_code = 0;  // 128 + N for a signal; at least 128 + a signal the supervisor was sent
  std::vector<std::string> failed;  // names of the jobs that ended badly on their own, in the order they ended
  int started = 0;
};

// Runs the jobs in order, at most `parallel` at a time, forwarding SIGINT, SIGTERM and SIGHUP to
// the running ones. When one fails no further job starts and the running ones are stopped
// (SIGTERM, SIGKILL after `grace_s`); a signal received does the same. Throws IoError when a
// process cannot be started (the running ones are stopped first).
ProcessJobsResult run_process_jobs(const std::vector<ProcessJob>& jobs, int parallel, double grace_s,
                                   const std::string& program = "/proc/self/exe");

// Runs the processes to their end. Returns the worst exit code (128 + N for a signal; at least
// 128 + the signal the launcher itself was sent). Throws UsageError for inconsistent options,
// IoError when a process cannot be started (the started ones are stopped first).
int launch_processes(const LaunchOptions& options);

}  // namespace pneumo::train
