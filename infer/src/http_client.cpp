#include "http_client.h"

#include <curl/curl.h>

#include <mutex>
#include <stdexcept>

#include <fmt/format.h>

namespace pneumo::infer {

namespace {

size_t append(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

HttpClient::HttpClient(std::string base, std::string user_password, double timeout_s)
    : base_(std::move(base)), user_password_(std::move(user_password)), timeout_s_(timeout_s) {
  while (!base_.empty() && base_.back() == '/') base_.pop_back();
  global_init();
  curl_ = curl_easy_init();
  if (curl_ == nullptr) throw std::runtime_error("libcurl: cannot create a handle");
}

HttpClient::~HttpClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

HttpResponse HttpClient::get(const std::string& path, const std::string& accept) {
  return send("GET", path, nullptr, "", accept);
}

HttpResponse HttpClient::post(const std::string& path, const std::string& body, const std::string& content_type) {
  return send("POST", path, &body, content_type);
}

HttpResponse HttpClient::put(const std::string& path, const std::string& body, const std::string& content_type) {
  return send("PUT", path, &body, content_type);
}

HttpResponse HttpClient::checked(const char* method, const std::string& path, HttpResponse r,
                                 const std::string& credentials_hint) const {
  if (r.status == 0 || r.status >= 500)
    throw ServerUnavailable(fmt::format("{} {}{}: {}", method, base_, path,
                                        r.status == 0 ? r.error : fmt::format("HTTP {}", r.status)));
  if (r.status == 401 || r.status == 403)
    throw core::UsageError(fmt::format("{} {}{}: HTTP {}; {}", method, base_, path, r.status, credentials_hint));
  if (r.status == 404) throw ResourceNotFound(fmt::format("{} {}{}: not found", method, base_, path));
  if (!r.ok()) throw core::IoError(fmt::format("{} {}{}: HTTP {}: {}", method, base_, path, r.status, r.body.substr(0, 300)));
  return r;
}

HttpResponse HttpClient::send(const char* method, const std::string& path, const std::string* body,
                              const std::string& content_type, const std::string& accept) {
  CURL* curl = static_cast<CURL*>(curl_);
  curl_easy_reset(curl);
  HttpResponse response;
  const std::string url = base_ + path;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_s_ * 1000));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response.body);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  if (!user_password_.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(curl, CURLOPT_USERPWD, user_password_.c_str());
  }
  curl_slist* headers = nullptr;
  if (body != nullptr) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
    headers = curl_slist_append(headers, ("Content-Type: " + content_type).c_str());
    headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
  }
  if (!accept.empty()) headers = curl_slist_append(headers, ("Accept: " + accept).c_str());
  if (headers != nullptr) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  const CURLcode code = curl_easy_perform(curl);
  if (code == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
    const char* type = nullptr;
    if (curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &type) == CURLE_OK && type != nullptr) response.content_type = type;
  } else {
    response.status = 0;
    response.error = curl_easy_strerror(code);
  }
  curl_slist_free_all(headers);
  return response;
}

}  // namespace pneumo::infer
