// A throwaway PKI for TLS tests, made with the openssl CLI once per test run.
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace couchrepd::testing {

// Throwaway PKI made with the openssl CLI once per run:
//   ca.pem                 a CA
//   server.pem/.key        signed by the CA for IP 127.0.0.1
//   wronghost.pem/.key     signed by the CA for DNS wrong.invalid only
//   other.pem/.key         self-signed for IP 127.0.0.1, unrelated to the CA
class TestPki {
 public:
  static const TestPki& Get() {
    static TestPki pki;
    return pki;
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  ~TestPki() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

 private:
  TestPki() {
    std::string templ = (std::filesystem::temp_directory_path() / "couchrepd-pki-XXXXXX").string();
    if (!mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed");
    dir_ = templ;
    Write("ca.cnf",
          "[req]\ndistinguished_name=dn\nx509_extensions=ext\nprompt=no\n"
          "[dn]\nCN=couchrepd test CA\n"
          "[ext]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
          "subjectKeyIdentifier=hash\n");
    Write("leaf.cnf",
          "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=couchrepd test server\n");
    Write("server.ext",
          "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
          "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n");
    Write("wronghost.ext",
          "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
          "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:wrong.invalid\n");
    Write("other.cnf",
          "[req]\ndistinguished_name=dn\nx509_extensions=ext\nprompt=no\n"
          "[dn]\nCN=127.0.0.1\n"
          "[ext]\nbasicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n");
    const std::string d = dir_.string() + "/";
    const std::string key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    Must("openssl req -x509" + key + " -days 2 -config " + d + "ca.cnf -keyout " + d +
         "ca.key -out " + d + "ca.pem");
    for (const char* leaf : {"server", "wronghost"}) {
      std::string n = d + leaf;
      Must("openssl req -new" + key + " -config " + d + "leaf.cnf -keyout " + n + ".key -out " +
           n + ".csr");
      Must("openssl x509 -req -days 2 -in " + n + ".csr -CA " + d + "ca.pem -CAkey " + d +
           "ca.key -CAcreateserial -extfile " + n + ".ext -out " + n + ".pem");
    }
    Must("openssl req -x509" + key + " -days 2 -config " + d + "other.cnf -keyout " + d +
         "other.key -out " + d + "other.pem");
  }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  static void Must(const std::string& command) {
    if (std::system((command + " >/dev/null 2>&1").c_str()) != 0) {
      throw std::runtime_error("failed: " + command);
    }
  }
  std::filesystem::path dir_;
};

}  // namespace couchrepd::testing
