#include "couchrepd/multipart.h"

#include <doctest/doctest.h>
#include <openssl/evp.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace couchrepd {
namespace {

// --- Recorded CouchDB 3.4.3 exchanges (format: tests/fixtures/couchdb-3.4/README.md) ---

struct Recording {
  std::string request_head;  // the "> ..." lines
  std::string request_body;
  std::string response_head;  // status line and headers
  std::string response_body;
};

Recording LoadRecording(const std::string& name) {
  std::ifstream in(std::string(COUCHREPD_TEST_FIXTURES_DIR) + "/couchdb-3.4/" + name,
                   std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing fixture " << name);
  std::ostringstream content;
  content << in.rdbuf();
  const std::string data = content.str();
  Recording r;
  size_t pos = data.find('\n') + 1;  // the "# description" line
  size_t request_length = 0;
  bool has_body = false;
  for (;;) {
    size_t eol = data.find('\n', pos);
    REQUIRE(eol != std::string::npos);
    std::string line = data.substr(pos, eol - pos);
    pos = eol + 1;
    if (line == ">") {
      has_body = true;
      break;
    }
    if (line.empty()) break;
    r.request_head += line + "\n";
    if (line.starts_with("> Content-Length: ")) request_length = std::stoul(line.substr(18));
  }
  if (has_body) {
    r.request_body = data.substr(pos, request_length);
    pos += request_length;
    REQUIRE(data.substr(pos, 2) == "\n\n");
    pos += 2;
  }
  size_t head_end = data.find("\n\n", pos);
  REQUIRE(head_end != std::string::npos);
  r.response_head = data.substr(pos, head_end - pos);
  r.response_body = data.substr(head_end + 2);
  return r;
}

// The value of header `name` in a recorded head ("Name: value" lines, request
// lines prefixed with "> ").
std::string HeaderIn(const std::string& head, const std::string& name) {
  std::istringstream lines(head);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("> ")) line = line.substr(2);
    if (line.starts_with(name + ": ")) return line.substr(name.size() + 2);
  }
  FAIL("no header " << name);
  return "";
}

std::string Md5Digest(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  REQUIRE(EVP_Digest(data.data(), data.size(), md, &md_len, EVP_md5(), nullptr) == 1);
  unsigned char b64[64];
  int n = EVP_EncodeBlock(b64, md, static_cast<int>(md_len));
  return "md5-" + std::string(reinterpret_cast<const char*>(b64), static_cast<size_t>(n));
}

// --- The withatt document of the recordings ---

const std::string kJsonBranchB =
    R"({"_id":"withatt","_rev":"2-c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1","type":"withatt","branch":"b","step":2,"_revisions":{"start":2,"ids":["c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1","8220b30d9bc2d912b77ad2dec9650322"]},"_attachments":{"attachment.bin":{"content_type":"application/octet-stream","revpos":2,"digest":"md5-MUvsAogY0aOPV6RoIXSzXw==","length":34,"follows":true},"note.txt":{"content_type":"text/plain","revpos":2,"digest":"md5-VDhD0wRg1SSnAgcfuo6Jhg==","length":52,"follows":true,"encoding":"gzip","encoded_length":71}}})";
const std::string kJsonBranchA =
    R"({"_id":"withatt","_rev":"2-f7204cfd976774221506005e1448e88a","type":"withatt","branch":"a","step":2,"_revisions":{"start":2,"ids":["f7204cfd976774221506005e1448e88a","8220b30d9bc2d912b77ad2dec9650322"]},"_attachments":{"attachment.bin":{"content_type":"application/octet-stream","revpos":1,"digest":"md5-4FIJArLEjbVOtiw5YjVtEA==","length":45,"follows":true}}})";
// Branch a as a bare JSON part when atts_since makes its attachment a stub (19).
const std::string kJsonBranchAStub =
    R"({"_id":"withatt","_rev":"2-f7204cfd976774221506005e1448e88a","type":"withatt","branch":"a","step":2,"_revisions":{"start":2,"ids":["f7204cfd976774221506005e1448e88a","8220b30d9bc2d912b77ad2dec9650322"]},"_attachments":{"attachment.bin":{"content_type":"application/octet-stream","revpos":1,"digest":"md5-4FIJArLEjbVOtiw5YjVtEA==","length":45,"stub":true}}})";
// The 45-byte binary of branch a: NUL, CR LF, 0xFF and a fake boundary line.
const std::string kBinA(
    "\x00\x01\x02\x03\xff\xfe\xfd\r\n--notaboundary\r\n\x7f\x80"
    "binary-att-v1\x00\x00"
    "END",
    45);
const std::string kBinB("\x00\x10 0\xc3(\r\nsecond-branch-attachment\xff\x00", 34);

void CheckBranchB(const OpenRevsDoc& doc) {
  CHECK(doc.json == kJsonBranchB);
  CHECK(!doc.missing);
  REQUIRE(doc.attachments.size() == 2);
  const OpenRevsAttachment& bin = doc.attachments[0];
  CHECK(bin.name == "attachment.bin");
  CHECK(bin.content_type == "application/octet-stream");
  CHECK(bin.encoding == "");
  CHECK(bin.data == kBinB);
  CHECK(Md5Digest(bin.data) == "md5-MUvsAogY0aOPV6RoIXSzXw==");
  const OpenRevsAttachment& note = doc.attachments[1];
  CHECK(note.name == "note.txt");
  CHECK(note.content_type == "text/plain");
  CHECK(note.encoding == "gzip");
  CHECK(note.data.size() == 71);  // still gzip-compressed; 52 bytes decoded
  CHECK(note.data.substr(0, 2) == "\x1f\x8b");
  // CouchDB's digest of a gzip-stored attachment is that of the encoded bytes.
  CHECK(Md5Digest(note.data) == "md5-VDhD0wRg1SSnAgcfuo6Jhg==");
}

void CheckBranchA(const OpenRevsDoc& doc) {
  CHECK(doc.json == kJsonBranchA);
  CHECK(!doc.missing);
  REQUIRE(doc.attachments.size() == 1);
  CHECK(doc.attachments[0].name == "attachment.bin");
  CHECK(doc.attachments[0].content_type == "application/octet-stream");
  CHECK(doc.attachments[0].encoding == "");
  CHECK(doc.attachments[0].data == kBinA);
  CHECK(Md5Digest(doc.attachments[0].data) == "md5-4FIJArLEjbVOtiw5YjVtEA==");
}

// A compact, comparable rendering of the reader's result.
std::string Describe(const Result<std::vector<OpenRevsDoc>>& r) {
  if (!r.ok()) return "error " + r.error().Message();
  std::string s;
  for (const OpenRevsDoc& d : *r) {
    s += "doc " + d.json + (d.missing ? " missing " + d.missing_rev : "") + "\n";
    for (const OpenRevsAttachment& a : d.attachments) {
      s += " att " + a.name + " " + a.content_type + " " + a.encoding + " " + Md5Digest(a.data) +
           " " + std::to_string(a.data.size()) + "\n";
    }
  }
  return s;
}

Result<std::vector<OpenRevsDoc>> ReadOpenRevs(const std::string& boundary,
                                              const std::vector<std::string_view>& pieces) {
  OpenRevsMultipartReader reader(boundary);
  for (std::string_view piece : pieces) {
    Status s = reader.Feed(piece);
    if (!s.ok()) return s.error();
  }
  return reader.Finish();
}

// The open_revs body read whole, split in two everywhere, and byte by byte
// gives the same documents; returns the whole-body result.
Result<std::vector<OpenRevsDoc>> ReadOpenRevsAllSplits(const Recording& rec) {
  std::optional<std::string> boundary =
      MultipartBoundary(HeaderIn(rec.response_head, "Content-Type"));
  REQUIRE(boundary);
  const std::string_view body = rec.response_body;
  Result<std::vector<OpenRevsDoc>> whole = ReadOpenRevs(*boundary, {body});
  const std::string expected = Describe(whole);
  for (size_t a = 0; a <= body.size(); ++a) {
    std::string got = Describe(ReadOpenRevs(*boundary, {body.substr(0, a), body.substr(a)}));
    if (got != expected) {
      CAPTURE(a);
      CHECK(got == expected);
      break;
    }
  }
  std::vector<std::string_view> bytes;
  for (size_t i = 0; i < body.size(); ++i) bytes.push_back(body.substr(i, 1));
  CHECK(Describe(ReadOpenRevs(*boundary, bytes)) == expected);
  return whole;
}

// --- Header values ---

TEST_CASE("MultipartBoundary, HeaderParam and MediaType") {
  CHECK(MultipartBoundary(R"(multipart/mixed; boundary="463e340d12e8eff20ec2e3b21e29cb5e")") ==
        "463e340d12e8eff20ec2e3b21e29cb5e");
  CHECK(MultipartBoundary("multipart/related; boundary=abc") == "abc");
  CHECK(MultipartBoundary("Multipart/Related;charset=utf-8;  BOUNDARY = abc ;x=y") == "abc");
  CHECK(MultipartBoundary(R"(multipart/mixed; x="a;boundary=no"; boundary="yes")") == "yes");
  CHECK(MultipartBoundary(R"(multipart/mixed; boundary="a\"b")") == "a\"b");
  CHECK(MultipartBoundary(R"(multipart/mixed; boundary="with space")") == "with space");
  CHECK(!MultipartBoundary("multipart/mixed"));
  CHECK(!MultipartBoundary("multipart/mixed; boundary="));
  CHECK(!MultipartBoundary(R"(multipart/mixed; boundary="")"));
  CHECK(!MultipartBoundary("multipart/mixed; boundary"));
  CHECK(!MultipartBoundary("multipart/mixed; notboundary=abc"));
  CHECK(!MultipartBoundary(""));
  CHECK(HeaderParam(R"(attachment; filename="note.txt")", "filename") == "note.txt");
  CHECK(HeaderParam(R"(application/json; error="true")", "error") == "true");
  CHECK(MediaType(R"( Application/JSON ; error="true")") == "application/json");
  CHECK(MediaType("multipart/related") == "multipart/related");
  CHECK(MediaType("") == "");
}

// --- MultipartParser ---

struct Part {
  MultipartHeaders headers;
  std::string data;
  bool ended = false;
};

struct Collected {
  std::vector<Part> parts;
  std::optional<Error> error;
  bool done = false;
  bool misuse = false;
};

Collected ParseParts(const std::string& boundary, const std::vector<std::string_view>& pieces,
                     size_t max_header_bytes = MultipartParser::kDefaultMaxHeaderBytes) {
  Collected c;
  MultipartParser parser(boundary, max_header_bytes);
  MultipartParser::Handler h;
  h.on_part_begin = [&c](const MultipartHeaders& headers) {
    c.parts.push_back(Part{headers, "", false});
    return true;
  };
  // Calls out of order would be a parser bug; they show up in Describe.
  h.on_part_data = [&c](std::string_view data) {
    if (data.empty() || c.parts.empty() || c.parts.back().ended) c.misuse = true;
    if (!c.parts.empty()) c.parts.back().data.append(data);
    return true;
  };
  h.on_part_end = [&c]() {
    if (c.parts.empty() || c.parts.back().ended) c.misuse = true;
    if (!c.parts.empty()) c.parts.back().ended = true;
    return true;
  };
  for (std::string_view piece : pieces) {
    Status s = parser.Feed(piece, h);
    if (!s.ok()) {
      c.error = s.error();
      break;
    }
  }
  if (!c.error) {
    Status s = parser.Finish();
    if (!s.ok()) c.error = s.error();
  }
  c.done = parser.done();
  return c;
}

std::string Describe(const Collected& c) {
  std::string s;
  for (const Part& p : c.parts) {
    s += "part";
    for (const auto& [name, value] : p.headers.fields) s += " [" + name + "=" + value + "]";
    s += " data=" + p.data + (p.ended ? " end\n" : " open\n");
  }
  s += c.error ? "error " + c.error->Message() : std::string("ok");
  s += c.misuse ? " MISUSED CALLBACKS" : "";
  return s;
}

void CheckPartsAllSplits(const std::string& boundary, std::string_view body,
                         const Collected& want) {
  const std::string expected = Describe(want);
  for (size_t a = 0; a <= body.size(); ++a) {
    std::string got = Describe(ParseParts(boundary, {body.substr(0, a), body.substr(a)}));
    if (got != expected) {
      CAPTURE(a);
      CHECK(got == expected);
      return;
    }
  }
  for (size_t a = 0; a <= body.size(); a += 3) {
    for (size_t b = a; b <= body.size(); b += 5) {
      std::string got = Describe(
          ParseParts(boundary, {body.substr(0, a), body.substr(a, b - a), body.substr(b)}));
      if (got != expected) {
        CAPTURE(a);
        CAPTURE(b);
        CHECK(got == expected);
        return;
      }
    }
  }
}

TEST_CASE("MultipartParser: preamble, epilogue, empty headers, padding, folded headers") {
  const std::string body =
      "This is the preamble. --xyz is not a delimiter, nor is\r\n--xy\r\n"
      "\r\n--xyz  \t\r\n"
      "Content-Type: text/plain\r\n"
      "X-Folded: one\r\n  two\r\n"
      "\r\n"
      "first\r\n--xy z body\r\n-- xyz\r\n"
      "\r\n--xyz\r\n"
      "\r\n"
      "\r\n--xyz\r\n"
      "content-TYPE:application/json\r\n"
      "\r\n"
      "{}\r\n--xyz--  epilogue\r\n--xyz\r\nignored";
  Collected want;
  Part first;
  first.headers.fields = {{"content-type", "text/plain"}, {"x-folded", "one two"}};
  first.data = "first\r\n--xy z body\r\n-- xyz\r\n";
  first.ended = true;
  Part empty;  // no headers, no data
  empty.ended = true;
  Part json;
  json.headers.fields = {{"content-type", "application/json"}};
  json.data = "{}";
  json.ended = true;
  want.parts = {first, empty, json};
  want.done = true;
  Collected whole = ParseParts("xyz", {body});
  CHECK(Describe(whole) == Describe(want));
  CHECK(whole.done);
  CHECK(whole.parts[0].headers.Get("x-folded") == "one two");
  CHECK(!whole.parts[0].headers.Get("content-length"));
  CheckPartsAllSplits("xyz", body, want);
}

TEST_CASE("MultipartParser streams data, holding back only a possible delimiter start") {
  MultipartParser parser("boundary42");
  std::string delivered;
  MultipartParser::Handler h;
  h.on_part_data = [&delivered](std::string_view data) {
    delivered.append(data);
    return true;
  };
  REQUIRE(parser.Feed("--boundary42\r\nContent-Type: application/octet-stream\r\n\r\n", h).ok());
  std::string sent;
  for (int i = 0; i < 1000; ++i) {
    std::string piece = "chunk " + std::to_string(i) + " of a large attachment; ";
    sent += piece;
    REQUIRE(parser.Feed(piece, h).ok());
    REQUIRE(delivered == sent);  // nothing that cannot start a delimiter is held
  }
  // A possible delimiter start is held back until it proves to be data.
  REQUIRE(parser.Feed("tail\r\n--bound", h).ok());
  CHECK(delivered == sent + "tail");
  REQUIRE(parser.Feed("ary4", h).ok());
  CHECK(delivered == sent + "tail");
  REQUIRE(parser.Feed("X\r", h).ok());
  CHECK(delivered == sent + "tail\r\n--boundary4X");
  REQUIRE(parser.Feed("\r", h).ok());
  CHECK(delivered == sent + "tail\r\n--boundary4X\r");
  REQUIRE(parser.Feed("\n--boundary42--", h).ok());
  CHECK(delivered == sent + "tail\r\n--boundary4X\r");
  CHECK(parser.done());
  CHECK(parser.Finish().ok());
}

TEST_CASE("the recorded open_revs body 17 at the MultipartParser level") {
  const Recording rec = LoadRecording("17-open-revs-multipart-mixed.http");
  const std::string content_type = HeaderIn(rec.response_head, "Content-Type");
  std::optional<std::string> outer = MultipartBoundary(content_type);
  REQUIRE(outer == "463e340d12e8eff20ec2e3b21e29cb5e");
  Collected c = ParseParts(*outer, {rec.response_body});
  REQUIRE(!c.error);
  CHECK(c.done);
  REQUIRE(c.parts.size() == 2);
  for (const Part& p : c.parts) {
    CHECK(p.headers.fields.size() == 1);
    std::optional<std::string> inner =
        MultipartBoundary(std::string(p.headers.Get("content-type").value_or("")));
    REQUIRE(inner == "9495a8d62f565aab3e52a2b50ee6b999");  // the same for both revisions
    Collected nested = ParseParts(*inner, {p.data});
    REQUIRE(!nested.error);
    CHECK(nested.done);
    CHECK(nested.parts.size() >= 2);
    CHECK(nested.parts[1].headers.Get("content-disposition") ==
          R"(attachment; filename="attachment.bin")");
  }
  CheckPartsAllSplits(*outer, rec.response_body, c);
}

// --- open_revs readers over the recordings ---

TEST_CASE("open_revs multipart/mixed 17 (attachments=true) in every split") {
  Result<std::vector<OpenRevsDoc>> docs =
      ReadOpenRevsAllSplits(LoadRecording("17-open-revs-multipart-mixed.http"));
  REQUIRE(docs.ok());
  REQUIRE(docs->size() == 2);
  // CouchDB's order, not the requested one (f720.. was asked for first).
  CheckBranchB((*docs)[0]);
  CheckBranchA((*docs)[1]);
}

TEST_CASE("open_revs multipart/mixed 18 (no attachments=true: bodies still sent)") {
  Result<std::vector<OpenRevsDoc>> docs =
      ReadOpenRevsAllSplits(LoadRecording("18-open-revs-multipart-mixed-no-attachments.http"));
  REQUIRE(docs.ok());
  REQUIRE(docs->size() == 2);
  CheckBranchB((*docs)[0]);
  CheckBranchA((*docs)[1]);
}

TEST_CASE("open_revs multipart/mixed 19 (atts_since: one revision as a bare JSON part)") {
  Result<std::vector<OpenRevsDoc>> docs =
      ReadOpenRevsAllSplits(LoadRecording("19-open-revs-multipart-atts-since.http"));
  REQUIRE(docs.ok());
  REQUIRE(docs->size() == 2);
  CheckBranchB((*docs)[0]);
  CHECK((*docs)[1].json == kJsonBranchAStub);
  CHECK(!(*docs)[1].missing);
  CHECK((*docs)[1].attachments.empty());
}

TEST_CASE("open_revs multipart/mixed 23 (a missing revision)") {
  Result<std::vector<OpenRevsDoc>> docs =
      ReadOpenRevsAllSplits(LoadRecording("23-open-revs-missing-rev-multipart.http"));
  REQUIRE(docs.ok());
  REQUIRE(docs->size() == 2);
  CheckBranchA((*docs)[0]);
  const OpenRevsDoc& missing = (*docs)[1];
  CHECK(missing.missing);
  CHECK(missing.missing_rev == "3-99999999999999999999999999999999");
  CHECK(missing.json == R"({"missing":"3-99999999999999999999999999999999"})");
  CHECK(missing.attachments.empty());
}

// --- PUT new_edits=false bodies ---

Result<OpenRevsDoc> ReadRelated(const std::string& boundary,
                                const std::vector<std::string_view>& pieces) {
  MultipartRelatedReader reader(boundary);
  for (std::string_view piece : pieces) {
    Status s = reader.Feed(piece);
    if (!s.ok()) return s.error();
  }
  return reader.Finish();
}

std::string Describe(const Result<OpenRevsDoc>& r) {
  if (!r.ok()) return "error " + r.error().Message();
  return Describe(Result<std::vector<OpenRevsDoc>>(std::vector<OpenRevsDoc>{*r}));
}

// Writes `doc` back with the writer, in CouchDB's framing.
std::string Rewrite(const MultipartRelatedWriter& writer, const OpenRevsDoc& doc) {
  std::string body = writer.DocumentPart(doc.json);
  for (const OpenRevsAttachment& att : doc.attachments) {
    body += writer.AttachmentPartHeader(att.name, att.content_type, att.encoding, att.data.size());
    body += att.data;
    body += writer.AttachmentPartEnd();
  }
  return body + writer.Closing();
}

uint64_t RewriteLength(const MultipartRelatedWriter& writer, const OpenRevsDoc& doc) {
  std::vector<MultipartRelatedWriter::AttachmentInfo> infos;
  for (const OpenRevsAttachment& att : doc.attachments) {
    infos.push_back({att.name, att.content_type, att.encoding, att.data.size()});
  }
  return writer.BodyLength(doc.json.size(), infos);
}

TEST_CASE("recorded PUT new_edits=false bodies 27 and 28: read, and rewritten byte for byte") {
  for (const char* name : {"27-put-new-edits-false-multipart.http",
                           "28-put-new-edits-false-multipart-gzip-att.http"}) {
    CAPTURE(name);
    const Recording rec = LoadRecording(name);
    const std::string content_type = HeaderIn(rec.request_head, "Content-Type");
    std::optional<std::string> boundary = MultipartBoundary(content_type);
    REQUIRE(boundary);
    const std::string_view body = rec.request_body;
    REQUIRE(body.size() == std::stoul(HeaderIn(rec.request_head, "Content-Length")));

    Result<OpenRevsDoc> doc = ReadRelated(*boundary, {body});
    REQUIRE(doc.ok());
    const std::string expected = Describe(doc);
    for (size_t a = 0; a <= body.size(); ++a) {
      std::string got = Describe(ReadRelated(*boundary, {body.substr(0, a), body.substr(a)}));
      if (got != expected) {
        CAPTURE(a);
        CHECK(got == expected);
        break;
      }
    }
    if (std::string_view(name).starts_with("27")) {
      REQUIRE(doc->attachments.size() == 1);
      CHECK(doc->attachments[0].data == kBinA);
      CHECK(doc->json.find(R"("_revisions":{"start":2,"ids":["f7204cfd)") != std::string::npos);
    } else {
      REQUIRE(doc->attachments.size() == 2);
      CHECK(doc->attachments[0].data == kBinB);
      CHECK(doc->attachments[1].name == "note.txt");
      CHECK(doc->attachments[1].encoding == "gzip");
      CHECK(Md5Digest(doc->attachments[1].data) == "md5-VDhD0wRg1SSnAgcfuo6Jhg==");
    }

    MultipartRelatedWriter writer(*boundary);
    CHECK(writer.ContentType() == content_type);
    CHECK(Rewrite(writer, *doc) == body);
    CHECK(RewriteLength(writer, *doc) == body.size());
  }
}

TEST_CASE("writer output is read back by the readers") {
  const std::string boundary = "0123456789abcdef0123456789abcdef";
  MultipartRelatedWriter writer(boundary);
  CHECK(writer.ContentType() == "multipart/related; boundary=\"" + boundary + "\"");
  // Data that looks like delimiters without being one, ending in a CR.
  const std::string tricky =
      "\r\n--" + boundary.substr(0, 31) + "X\r\n--" + boundary.substr(0, 20) + "\r\n-\r";
  const std::string empty;
  const std::string doc_json =
      R"({"_id":"w","_rev":"1-a","_attachments":{"we\"ird \\ name\nwith newline":{"content_type":"text/plain","length":)" +
      std::to_string(tricky.size()) +
      R"(,"follows":true},"empty":{"content_type":"","length":0,"follows":true},"stub":{"stub":true,"length":1},"z.gz":{"content_type":"application/x-thing","encoding":"gzip","length":99,"encoded_length":3,"follows":true}}})";
  std::string body = writer.DocumentPart(doc_json);
  body += writer.AttachmentPartHeader("we\"ird \\ name\nwith newline", "text/plain\r\nX-Evil: 1",
                                      "", tricky.size());
  body += tricky + writer.AttachmentPartEnd();
  body += writer.AttachmentPartHeader("empty", "", "", 0) + writer.AttachmentPartEnd();
  body += writer.AttachmentPartHeader("z.gz", "application/x-thing", "gzip");  // no length
  body += std::string("\x1f\x8b\x08", 3) + writer.AttachmentPartEnd();
  body += writer.Closing();
  CHECK(body.find("\nX-Evil") == std::string::npos);  // no header injection

  std::vector<std::string_view> pieces;
  for (size_t i = 0; i < body.size(); i += 7) pieces.push_back(std::string_view(body).substr(i, 7));
  Result<OpenRevsDoc> doc = ReadRelated(boundary, pieces);
  REQUIRE_MESSAGE(doc.ok(), doc.error().Message());
  CHECK(doc->json == doc_json);
  REQUIRE(doc->attachments.size() == 3);
  CHECK(doc->attachments[0].name == "we\"ird \\ name\nwith newline");  // from the JSON
  CHECK(doc->attachments[0].content_type == "text/plain  X-Evil: 1");
  CHECK(doc->attachments[0].data == tricky);
  CHECK(doc->attachments[1].name == "empty");
  CHECK(doc->attachments[1].content_type == "application/octet-stream");
  CHECK(doc->attachments[1].data.empty());
  CHECK(doc->attachments[2].name == "z.gz");
  CHECK(doc->attachments[2].encoding == "gzip");
  CHECK(doc->attachments[2].data == std::string("\x1f\x8b\x08", 3));

  // The same document nested in a multipart/mixed body, as open_revs sends it.
  const std::string outer = "outer-boundary";
  const std::string mixed =
      "--" + outer + "\r\nContent-Type: " + writer.ContentType() + "\r\n\r\n" + body + "\r\n--" +
      outer + "\r\nContent-Type: application/json\r\n\r\n{\"_id\":\"plain\"}\r\n--" + outer + "--";
  Result<std::vector<OpenRevsDoc>> docs = ReadOpenRevs(outer, {mixed});
  REQUIRE_MESSAGE(docs.ok(), docs.error().Message());
  REQUIRE(docs->size() == 2);
  CHECK((*docs)[0].attachments.size() == 3);
  CHECK((*docs)[0].attachments[0].data == tricky);
  CHECK((*docs)[1].json == R"({"_id":"plain"})");

  // BodyLength matches what was written when every length is given.
  OpenRevsDoc plain;
  plain.json = R"({"_id":"n"})";
  CHECK(RewriteLength(writer, plain) == Rewrite(writer, plain).size());
  CHECK(Rewrite(writer, plain) == "--" + boundary + "\r\nContent-Type: application/json\r\n\r\n" +
                                      plain.json + "\r\n--" + boundary + "--");
}

// --- Malformed input ---

void CheckError(const std::optional<Error>& e, ErrorKind kind, std::string_view code,
                std::string_view reason_part) {
  REQUIRE(e.has_value());
  CHECK(e->kind == kind);
  CHECK(e->error == code);
  CHECK_MESSAGE(e->reason.find(reason_part) != std::string::npos, e->reason);
}

std::optional<Error> OpenRevsError(const std::string& boundary, std::string_view body) {
  Result<std::vector<OpenRevsDoc>> r = ReadOpenRevs(boundary, {body});
  if (r.ok()) return std::nullopt;
  return r.error();
}

std::optional<Error> RelatedError(const std::string& boundary, std::string_view body) {
  Result<OpenRevsDoc> r = ReadRelated(boundary, {body});
  if (r.ok()) return std::nullopt;
  return r.error();
}

TEST_CASE("missing or bad boundaries") {
  CheckError(ParseParts("", {"--\r\n\r\nx\r\n----"}).error, ErrorKind::kPermanent, "bad_multipart",
             "missing multipart boundary");
  CheckError(ParseParts("a\r\nb", {"x"}).error, ErrorKind::kPermanent, "bad_multipart",
             "contains CR or LF");
  CheckError(ParseParts("abc", {"no delimiter here at all\r\n--abd\r\n"}).error,
             ErrorKind::kPermanent, "bad_multipart",
             "no multipart delimiter \"--abc\" in the 33-byte body");
  CheckError(OpenRevsError("b", "--b\r\nContent-Type: multipart/related\r\n\r\nx\r\n--b--"),
             ErrorKind::kPermanent, "bad_multipart",
             "part 1 is multipart/related without a boundary");
}

TEST_CASE("a truncated body is an error at every cut, never a crash") {
  const Recording rec = LoadRecording("17-open-revs-multipart-mixed.http");
  const std::string boundary = *MultipartBoundary(HeaderIn(rec.response_head, "Content-Type"));
  const std::string_view body = rec.response_body;
  for (size_t len = 0; len < body.size(); ++len) {
    std::optional<Error> e = OpenRevsError(boundary, body.substr(0, len));
    REQUIRE_MESSAGE(e, len);
    CHECK(e->error == "bad_multipart");
    // Once a delimiter was seen, a cut is a dropped connection.
    CHECK(e->temporary() == (len >= boundary.size() + 2));
  }
  std::optional<Error> cut = OpenRevsError(boundary, body.substr(0, body.size() / 2));
  CheckError(cut, ErrorKind::kTemporary, "bad_multipart",
             "the body ended inside a part's data before the closing delimiter");
  CheckError(ParseParts("b", {"--b\r\nContent-Type: x\r\n"}).error, ErrorKind::kTemporary,
             "bad_multipart", "the body ended inside a part's headers");
}

TEST_CASE("malformed framing and headers") {
  Collected big =
      ParseParts("b", {"--b\r\nX-Big: " + std::string(200, 'x') + "\r\n\r\ndata\r\n--b--"}, 100);
  CheckError(big.error, ErrorKind::kPermanent, "bad_multipart",
             "a part's headers are larger than max_header_bytes (100 bytes)");
  CHECK(big.parts.empty());
  // Exactly at the limit is fine (the header block and its final CRLF CRLF).
  const std::string fits = "X-A: " + std::string(100 - 9, 'x') + "\r\n\r\n";
  REQUIRE(fits.size() == 100);
  CHECK(!ParseParts("b", {"--b\r\n" + fits + "data\r\n--b--"}, 100).error);
  CHECK(
      ParseParts("b", {"--b\r\n" + fits.substr(0, 5) + "x" + fits.substr(5) + "data\r\n--b--"}, 100)
          .error);

  CheckError(ParseParts("b", {"--b\r\nNoColonHere\r\n\r\n\r\n--b--"}).error, ErrorKind::kPermanent,
             "bad_multipart", "malformed part header line \"NoColonHere\" (at offset 5)");
  CheckError(ParseParts("b", {"--b\r\n: no name\r\n\r\n\r\n--b--"}).error, ErrorKind::kPermanent,
             "bad_multipart", "malformed part header line");
  CheckError(ParseParts("b", {"--bxyz\r\n\r\n"}).error, ErrorKind::kPermanent, "bad_multipart",
             "a delimiter line goes on with unexpected bytes (at offset 3)");
  CheckError(ParseParts("b", {"--b\rX"}).error, ErrorKind::kPermanent, "bad_multipart",
             "a delimiter line does not end with CRLF (at offset 4)");
  CheckError(ParseParts("b", {"--b\r\n\r\nx\r\n--b-x"}).error, ErrorKind::kPermanent,
             "bad_multipart", "unexpected bytes");
  CheckError(ParseParts("b", {"--b \tz\r\n"}).error, ErrorKind::kPermanent, "bad_multipart",
             "unexpected bytes (at offset 5)");
}

TEST_CASE("headers over max_header_bytes: the same error at the section's offset in every split") {
  // Found by fuzz_multipart: the offset was that of the chunk being read.
  const std::string body = "--b\r\nX-Big: " + std::string(200, 'x') + "\r\n\r\ndata\r\n--b--";
  const std::string expected =
      "a part's headers are larger than max_header_bytes (100 bytes) (at offset 5)";
  for (size_t cut : {size_t{3}, size_t{5}, size_t{7}, size_t{50}, size_t{104}, size_t{110}}) {
    CAPTURE(cut);
    Collected c = ParseParts("b", {std::string_view(body).substr(0, cut),
                                   std::string_view(body).substr(cut)}, 100);
    REQUIRE(c.error);
    CHECK(c.error->reason == expected);
  }
  std::vector<std::string_view> bytes;
  for (size_t i = 0; i < body.size(); ++i) bytes.push_back(std::string_view(body).substr(i, 1));
  Collected one_by_one = ParseParts("b", bytes, 100);
  REQUIRE(one_by_one.error);
  CHECK(one_by_one.error->reason == expected);
}

TEST_CASE("parts that do not fit CouchDB's open_revs shape") {
  CheckError(OpenRevsError("b", "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--"),
             ErrorKind::kPermanent, "bad_multipart",
             "part 1 has unexpected Content-Type \"text/plain\"");
  CheckError(OpenRevsError("b", "--b\r\n\r\nhello\r\n--b--"), ErrorKind::kPermanent,
             "bad_multipart", "part 1 has unexpected Content-Type \"\"");
  CheckError(OpenRevsError("b", "--b\r\nContent-Type: application/json\r\n\r\n{\"_id\":\r\n--b--"),
             ErrorKind::kPermanent, "bad_multipart", "part 1 is not a JSON object");
  // CouchDB failing one revision in its own words.
  std::optional<Error> failed =
      OpenRevsError("b",
                    "--b\r\nContent-Type: application/json; error=\"true\"\r\n\r\n"
                    "{\"error\":\"badarg\",\"reason\":\"oops\"}\r\n--b--");
  REQUIRE(failed);
  CHECK(failed->temporary());
  CHECK(failed->Message() == "badarg: oops");

  const std::string doc_one_att =
      R"({"_id":"d","_attachments":{"a":{"content_type":"text/plain","length":3,"follows":true}}})";
  const std::string head = "--i\r\nContent-Type: application/json\r\n\r\n" + doc_one_att + "\r\n";
  CheckError(RelatedError("i", "--i\r\nContent-Type: text/plain\r\n\r\n{}\r\n--i--"),
             ErrorKind::kPermanent, "bad_multipart",
             "the first part of a multipart/related document has Content-Type \"text/plain\"");
  CheckError(RelatedError("i", head + "--i--"), ErrorKind::kPermanent, "bad_multipart",
             "1 attachments are marked \"follows\" but 0 attachment parts arrived");
  CheckError(RelatedError("i", head + "--i\r\n\r\nabc\r\n--i\r\n\r\nmore\r\n--i--"),
             ErrorKind::kPermanent, "bad_multipart", "attachment part 2 has no attachment marked");
  CheckError(RelatedError("i", head + "--i\r\n\r\nabcd\r\n--i--"), ErrorKind::kPermanent,
             "bad_multipart", "attachment \"a\" has 4 bytes, expected 3");
  CheckError(RelatedError("i", head + "--i\r\nContent-Length: 4\r\n\r\nabcd\r\n--i--"),
             ErrorKind::kPermanent, "bad_multipart",
             "attachment \"a\": Content-Length 4 but the document says 3 bytes");
  CheckError(RelatedError("i", head + "--i\r\nContent-Length: 3x\r\n\r\nabc\r\n--i--"),
             ErrorKind::kPermanent, "bad_multipart", "bad Content-Length");
  CheckError(RelatedError("i", "--i--"), ErrorKind::kPermanent, "bad_multipart", "without parts");
  CHECK(!RelatedError("i", head + "--i\r\nContent-Length: 3\r\n\r\nabc\r\n--i--"));
  // The error of a nested document is the reader's error.
  CheckError(OpenRevsError("o", "--o\r\nContent-Type: multipart/related; boundary=i\r\n\r\n" +
                                    head + "--i--\r\n--o--"),
             ErrorKind::kPermanent, "bad_multipart", "1 attachments are marked \"follows\"");
  CheckError(OpenRevsError("o", "--o\r\nContent-Type: multipart/related; boundary=i\r\n\r\n" +
                                    head + "--i\r\n\r\nab\r\n--o--"),
             ErrorKind::kPermanent, "bad_multipart",
             "part 1 (multipart/related): the body ended inside a part's data");
}

TEST_CASE("a handler returning false aborts, and the parser stays failed") {
  const std::string body = "--b\r\nX: 1\r\n\r\ndata\r\n--b--";
  for (int which = 0; which < 3; ++which) {
    MultipartParser parser("b");
    MultipartParser::Handler h;
    h.on_part_begin = [which](const MultipartHeaders&) { return which != 0; };
    h.on_part_data = [which](std::string_view) { return which != 1; };
    h.on_part_end = [which]() { return which != 2; };
    Status s = parser.Feed(body, h);
    REQUIRE(!s.ok());
    CHECK(s.error().error == "aborted");
    Status again = parser.Feed("more", h);
    REQUIRE(!again.ok());
    CHECK(again.error().reason == s.error().reason);
    CHECK(!parser.Finish().ok());
  }
  OpenRevsMultipartReader reader("b");
  Status first = reader.Feed("--b\r\nContent-Type: text/html\r\n\r\n");
  REQUIRE(!first.ok());
  Status second = reader.Feed("--b--");
  REQUIRE(!second.ok());
  CHECK(second.error().reason == first.error().reason);
  CHECK(!reader.Finish().ok());
}

TEST_CASE("mutated recordings give a result or an error, never a crash") {
  const Recording rec = LoadRecording("17-open-revs-multipart-mixed.http");
  const std::string boundary = *MultipartBoundary(HeaderIn(rec.response_head, "Content-Type"));
  std::mt19937 rng(20261123);  // fixed seed: the same cases every run
  const std::string alphabet = "-\r\n\"{}:; ab0\x00\xff";
  int errors = 0;
  for (int round = 0; round < 2000; ++round) {
    std::string body = rec.response_body;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t at = rng() % body.size();
      switch (rng() % 3) {
        case 0:
          body[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          body.erase(at, 1 + rng() % 8);
          break;
        default:
          body.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
      }
    }
    size_t cut = rng() % (body.size() + 1);
    std::string_view v = body;
    Result<std::vector<OpenRevsDoc>> r = ReadOpenRevs(boundary, {v.substr(0, cut), v.substr(cut)});
    if (!r.ok()) {
      ++errors;
      CHECK(!r.error().error.empty());
      CHECK(!r.error().reason.empty());
    }
  }
  CHECK(errors > 0);
}

}  // namespace
}  // namespace couchrepd
