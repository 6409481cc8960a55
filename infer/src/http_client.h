// A small blocking HTTP client over libcurl for the PACS client: one handle per client (not
// shared between threads), timeouts on everything, optional basic authentication.
#pragma once

#include <string>

#include "pneumo/core/error.h"

namespace pneumo::infer {

// A server that answers nothing or a server error: worth retrying later (unlike a 4xx).
struct ServerUnavailable : core::IoError {
  using core::IoError::IoError;
};
// The resource is not there (HTTP 404).
struct ResourceNotFound : core::IoError {
  using core::IoError::IoError;
};

struct HttpResponse {
  long status = 0;  // 0: no answer (connection refused, timed out, ...); see `error`
  std::string body;
  std::string content_type;  // the answer's Content-Type header
  std::string error;
  bool ok() const { return status >= 200 && status < 300; }
};

class HttpClient {
 public:
  // `base`: e.g. "http://127.0.0.1:8042" (no trailing slash needed); `user_password`:
  // "user:password" or empty.
  HttpClient(std::string base, std::string user_password, double timeout_s);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // `accept`: an Accept header to send, or empty.
  HttpResponse get(const std::string& path, const std::string& accept = "");
  HttpResponse post(const std::string& path, const std::string& body, const std::string& content_type);
  HttpResponse put(const std::string& path, const std::string& body, const std::string& content_type);

  const std::string& base() const { return base_; }

  // `r` when it succeeded; else throws ServerUnavailable (no answer, 5xx), UsageError (401/403:
  // `credentials_hint` says how to give them), ResourceNotFound (404) or IoError, each naming
  // the method and URL.
  HttpResponse checked(const char* method, const std::string& path, HttpResponse r,
                       const std::string& credentials_hint) const;

 private:
  HttpResponse send(const char* method, const std::string& path, const std::string* body, const std::string& content_type,
                    const std::string& accept = "");

  std::string base_, user_password_;
  double timeout_s_;
  void* curl_;  // CURL*
};

}  // namespace pneumo::infer
