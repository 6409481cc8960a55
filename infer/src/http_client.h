// A small blocking HTTP client over libcurl for the PACS client: one handle per client (not
// shared between threads), timeouts on everything, optional basic authentication.
#pragma once

#include <string>

namespace pneumo::infer {

struct HttpResponse {
  long status = 0;  // 0: no answer (connection refused, timed out, ...); see `error`
  std::string body;
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

  HttpResponse get(const std::string& path);
  HttpResponse post(const std::string& path, const std::string& body, const std::string& content_type);
  HttpResponse put(const std::string& path, const std::string& body, const std::string& content_type);

  const std::string& base() const { return base_; }

 private:
  HttpResponse send(const char* method, const std::string& path, const std::string* body, const std::string& content_type);

  std::string base_, user_password_;
  double timeout_s_;
  void* curl_;  // CURL*
};

}  // namespace pneumo::infer
