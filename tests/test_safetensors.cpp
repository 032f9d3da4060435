// safetensors reader/writer, sharded index, fp16/bf16 conversion.
// The files under tests/fixtures/tiny/ were written by the Python `safetensors` library
// (tools/golden/make_tiny_hf.py); their golden.json holds values read back in Python.
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "dptq/error.hpp"
#include "dptq/half.hpp"
#include "dptq/safetensors.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using dptq::ErrorKind;
using dptq::SafetensorsFile;

namespace {

float f32(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
uint32_t bits32(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream o(p, std::ios::binary);
  o.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A raw safetensors file: header length (given or the real one), header text, `data_len` bytes.
constexpr uint64_t kRealLength = ~uint64_t{0};
std::string raw_file(const std::string& header, size_t data_len, uint64_t header_len = kRealLength) {
  const uint64_t n = header_len == kRealLength ? header.size() : header_len;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += header;
  out.append(data_len, '\x5a');
  return out;
}

// Expects opening `bytes` to throw Error(kind) whose message contains `needle` and names the file.
void expect_open_error(const fs::path& dir, const std::string& bytes, ErrorKind kind, const std::string& needle) {
  const fs::path p = dir / "bad.safetensors";
  write_bytes(p, bytes);
  try {
    SafetensorsFile f(p);
    FAIL("no error for a file expected to fail with '" << needle << "'");
  } catch (const dptq::Error& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(e.kind() == kind);
    CHECK(what.rfind(p.string() + ": ", 0) == 0);
    CHECK(what.find(needle) != std::string::npos);
    CHECK(what.find('\n') == std::string::npos);
  }
}

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename());
  return out;
}

}  // namespace

TEST_CASE("fp16 <-> fp32: exact widening and round-to-nearest-even narrowing") {
  // Every half bit pattern survives half -> float -> half (NaN stays NaN).
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = dptq::fp16_to_fp32(static_cast<uint16_t>(h));
    const uint16_t back = dptq::fp32_to_fp16(f);
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
      REQUIRE(std::isnan(f));
      REQUIRE((back & 0x7c00) == 0x7c00);
      REQUIRE((back & 0x3ff) != 0);
      REQUIRE((back & 0x8000) == (h & 0x8000));
    } else {
      REQUIRE(back == h);
    }
  }
  // Known values.
  CHECK(dptq::fp32_to_fp16(1.0f) == 0x3c00);
  CHECK(dptq::fp32_to_fp16(-2.0f) == 0xc000);
  CHECK(dptq::fp32_to_fp16(0.1f) == 0x2e66);
  CHECK(dptq::fp32_to_fp16(65504.0f) == 0x7bff);
  CHECK(dptq::fp32_to_fp16(65519.996f) == 0x7bff);
  CHECK(dptq::fp32_to_fp16(65520.0f) == 0x7c00);  // tie between 65504 (odd) and 65536 -> inf
  CHECK(dptq::fp32_to_fp16(1e10f) == 0x7c00);
  CHECK(dptq::fp32_to_fp16(-INFINITY) == 0xfc00);
  CHECK(dptq::fp32_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);  // smallest subnormal
  CHECK(dptq::fp32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);  // tie -> even (0)
  CHECK(dptq::fp32_to_fp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001);
  CHECK(dptq::fp32_to_fp16(std::ldexp(3.0f, -25)) == 0x0002);  // 1.5 ulp tie -> even (2)
  CHECK(dptq::fp32_to_fp16(-0.0f) == 0x8000);
  CHECK(dptq::fp32_to_fp16(1e-30f) == 0x0000);
  CHECK(dptq::fp16_to_fp32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(dptq::fp16_to_fp32(0x03ff) == std::ldexp(1023.0f, -24));
  CHECK(dptq::fp16_to_fp32(0x0400) == std::ldexp(1.0f, -14));

  // Every midpoint between consecutive finite halves rounds to the even one; one float ulp either
  // side rounds to the nearer one. This covers subnormals, normals and the exponent carries.
  for (uint32_t h = 0; h < 0x7bff; ++h) {
    const float lo = dptq::fp16_to_fp32(static_cast<uint16_t>(h));
    const float hi = dptq::fp16_to_fp32(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((static_cast<double>(lo) + hi) / 2);  // exact in float
    const uint16_t even = (h & 1) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h);
    REQUIRE(dptq::fp32_to_fp16(mid) == even);
    REQUIRE(dptq::fp32_to_fp16(-mid) == (even | 0x8000));
    REQUIRE(dptq::fp32_to_fp16(std::nextafter(mid, 0.0f)) == h);
    REQUIRE(dptq::fp32_to_fp16(std::nextafter(mid, 1e30f)) == h + 1);
  }
}

TEST_CASE("bf16 <-> fp32: exact widening and round-to-nearest-even narrowing") {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float f = dptq::bf16_to_fp32(static_cast<uint16_t>(b));
    REQUIRE(bits32(f) == b << 16);
    if (!std::isnan(f)) REQUIRE(dptq::fp32_to_bf16(f) == b);
    else REQUIRE(std::isnan(dptq::bf16_to_fp32(dptq::fp32_to_bf16(f))));
  }
  // Midpoints between consecutive finite bf16 values (0x7f7f is the largest finite).
  for (uint32_t b = 0; b < 0x7f7f; ++b) {
    const uint32_t mid_bits = (b << 16) | 0x8000;
    const uint16_t even = (b & 1) ? static_cast<uint16_t>(b + 1) : static_cast<uint16_t>(b);
    REQUIRE(dptq::fp32_to_bf16(f32(mid_bits)) == even);
    REQUIRE(dptq::fp32_to_bf16(f32(mid_bits - 1)) == b);
    REQUIRE(dptq::fp32_to_bf16(f32(mid_bits + 1)) == b + 1);
  }
  CHECK(dptq::fp32_to_bf16(f32(0x7f7f8000)) == 0x7f80);  // rounds up to inf
  CHECK(dptq::fp32_to_bf16(1.0f) == 0x3f80);
  CHECK(dptq::fp32_to_bf16(-3.140625f) == 0xc049);
  // NaN whose payload sits only in the low bits must not become inf.
  CHECK(std::isnan(dptq::bf16_to_fp32(dptq::fp32_to_bf16(f32(0x7f800001)))));
}

TEST_CASE("safetensors round trip of every dtype, metadata and layout") {
  const fs::path dir = dptq::test::scratch_dir("safetensors_roundtrip");
  const fs::path path = dir / "all.safetensors";

  std::mt19937 rng(1234);
  std::map<std::string, std::vector<uint8_t>> bytes;
  auto random_bytes = [&](size_t n) {
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = static_cast<uint8_t>(rng());
    return v;
  };
  struct Spec {
    std::string name, dtype;
    std::vector<int64_t> shape;
  };
  const std::vector<Spec> specs = {
      {"w.f64", "F64", {3, 5}},   {"w.f32", "F32", {7, 3}},  {"w.f16", "F16", {5}},
      {"w.bf16", "BF16", {3, 3}}, {"i.i64", "I64", {2}},     {"i.i32", "I32", {1, 1, 3}},
      {"i.i16", "I16", {9}},      {"i.i8", "I8", {13}},      {"u.u8", "U8", {3, 7}},
      {"b.bool", "BOOL", {5}},    {"scalar", "F32", {}},     {"empty", "F16", {0, 4}},
  };
  std::vector<dptq::WriteEntry> entries;
  for (const Spec& s : specs) {
    size_t n = dptq::safetensors_dtype_size(s.dtype);
    for (int64_t d : s.shape) n *= static_cast<size_t>(d);
    auto v = random_bytes(n);
    if (s.dtype == "BOOL")
      for (auto& b : v) b &= 1;
    bytes[s.name] = std::move(v);
  }
  for (const Spec& s : specs)
    entries.push_back({s.name, s.dtype, s.shape, bytes[s.name].data(), bytes[s.name].size()});
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "dptq \"test\" \u00e9"}};
  dptq::write_safetensors(path, entries, meta);

  SafetensorsFile f(path);
  CHECK(f.metadata() == meta);
  REQUIRE(f.tensors().size() == specs.size());
  uint64_t prev_end = 0;
  for (const auto& t : f.tensors()) {
    CHECK(t.offset >= prev_end);
    prev_end = t.offset + t.nbytes;
  }
  CHECK(prev_end == fs::file_size(path));
  for (const Spec& s : specs) {
    INFO(s.name);
    const auto* t = f.find(s.name);
    REQUIRE(t != nullptr);
    CHECK(t->dtype == s.dtype);
    CHECK(t->shape == s.shape);
    CHECK(t->nbytes == bytes[s.name].size());
    CHECK(t->offset % dptq::safetensors_dtype_size(s.dtype) == 0);  // aligned to its element size
    CHECK(std::memcmp(f.data(*t), bytes[s.name].data(), t->nbytes) == 0);
  }
  CHECK(f.find("nope") == nullptr);
  CHECK_THROWS_AS(f.get("nope"), dptq::Error);
  CHECK(f.get("scalar").numel() == 1);
  CHECK(f.get("empty").numel() == 0);

  // Header length is a multiple of 8, so the data section starts 8-byte aligned.
  std::ifstream in(path, std::ios::binary);
  uint8_t len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  CHECK(n % 8 == 0);

  // to_float32 on the float dtypes.
  std::vector<float> src = {1.0f, -2.5f, 0.1f, 65504.0f, -0.0f, 3.0e-6f};
  std::vector<uint16_t> h(src.size()), b(src.size());
  dptq::fp32_to_fp16_n(src.data(), h.data(), src.size());
  dptq::fp32_to_bf16_n(src.data(), b.data(), src.size());
  std::vector<double> d(src.begin(), src.end());
  const int64_t k = static_cast<int64_t>(src.size());
  dptq::write_safetensors(dir / "floats.safetensors",
                          {{"h", "F16", {k}, h.data(), h.size() * 2},
                           {"b", "BF16", {k}, b.data(), b.size() * 2},
                           {"f", "F32", {k}, src.data(), src.size() * 4},
                           {"d", "F64", {k}, d.data(), d.size() * 8},
                           {"i", "I32", {1}, &k, 4}});
  SafetensorsFile g(dir / "floats.safetensors");
  CHECK(g.metadata().empty());
  CHECK(g.to_float32(g.get("f")) == src);
  CHECK(g.to_float32(g.get("d")) == src);
  auto hf = g.to_float32(g.get("h"));
  auto bf = g.to_float32(g.get("b"));
  for (size_t i = 0; i < src.size(); ++i) {
    CHECK(hf[i] == dptq::fp16_to_fp32(dptq::fp32_to_fp16(src[i])));
    CHECK(bf[i] == dptq::bf16_to_fp32(dptq::fp32_to_bf16(src[i])));
  }
  CHECK_THROWS_AS(g.to_float32(g.get("i")), dptq::Error);

  // Move keeps the mapping valid.
  SafetensorsFile moved = std::move(g);
  CHECK(moved.to_float32(moved.get("f")) == src);

  // Overwriting an existing file works and leaves no temp file behind.
  dptq::write_safetensors(dir / "floats.safetensors", {{"x", "U8", {1}, "z", 1}});
  CHECK(SafetensorsFile(dir / "floats.safetensors").tensors().size() == 1);
  for (const auto& name : files_in(dir)) CHECK(name.string().find(".tmp-") == std::string::npos);
}

TEST_CASE("safetensors rejects malformed files with one-line errors") {
  const fs::path dir = dptq::test::scratch_dir("safetensors_malformed");
  auto t1 = [](const std::string& dtype, const std::string& shape, const std::string& offs) {
    return "\"t\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offs + "}";
  };
  const std::string good = "{" + t1("F32", "[2]", "[0,8]") + "}";

  SUBCASE("valid baseline") {
    write_bytes(dir / "ok.safetensors", raw_file(good, 8));
    SafetensorsFile f(dir / "ok.safetensors");
    CHECK(f.tensors().size() == 1);
    CHECK(f.tensors()[0].offset == 8 + good.size());
  }
  SUBCASE("empty and truncated files") {
    expect_open_error(dir, "", ErrorKind::Format, "shorter than the 8-byte header length");
    expect_open_error(dir, std::string("\x10\0\0", 3), ErrorKind::Format, "shorter than the 8-byte header length");
    expect_open_error(dir, raw_file(good, 8).substr(0, 20), ErrorKind::Format, "beyond the end of the file");
    expect_open_error(dir, raw_file(good, 4), ErrorKind::Format, "out of range");
  }
  SUBCASE("header length too large") {
    expect_open_error(dir, raw_file(good, 8, 1000), ErrorKind::Format, "beyond the end of the file");
    expect_open_error(dir, raw_file(good, 8, ~uint64_t{0} - 1), ErrorKind::Format, "beyond the end of the file");
  }
  SUBCASE("bad JSON") {
    expect_open_error(dir, raw_file("{\"t\":{", 0), ErrorKind::Format, "bad JSON header");
    expect_open_error(dir, raw_file("[1,2]", 0), ErrorKind::Format, "bad JSON header");
    expect_open_error(dir, raw_file("", 0), ErrorKind::Format, "bad JSON header");
    expect_open_error(dir, raw_file("{\"t\":3}", 0), ErrorKind::Format, "not an object");
    expect_open_error(dir, raw_file("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4), ErrorKind::Format,
                      "data_offsets");
    expect_open_error(dir, raw_file("{" + t1("F32", "[-1]", "[0,4]") + "}", 4), ErrorKind::Format,
                      "non-negative");
    expect_open_error(dir, raw_file("{" + t1("F32", "[1.5]", "[0,4]") + "}", 4), ErrorKind::Format,
                      "non-negative");
    expect_open_error(dir, raw_file("{\"__metadata__\":{\"a\":1}," + t1("F32", "[1]", "[0,4]") + "}", 4),
                      ErrorKind::Format, "__metadata__");
  }
  SUBCASE("offsets out of range, reversed, overlapping, gaps, trailing bytes") {
    expect_open_error(dir, raw_file("{" + t1("F32", "[2]", "[8,16]") + "}", 8), ErrorKind::Format, "out of range");
    expect_open_error(dir, raw_file("{" + t1("F32", "[0]", "[8,4]") + "}", 8), ErrorKind::Format,
                      "end before begin");
    expect_open_error(dir,
                      raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                               12),
                      ErrorKind::Format, "overlaps tensor 'a'");
    expect_open_error(dir,
                      raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                               12),
                      ErrorKind::Format, "gap of 4 unused bytes");
    expect_open_error(dir, raw_file(good, 12), ErrorKind::Format, "after the last tensor");
    expect_open_error(dir, raw_file("{" + t1("F32", "[2]", "[0,18446744073709551615]") + "}", 8),
                      ErrorKind::Format, "out of range");
  }
  SUBCASE("dtype / size mismatch and shape overflow") {
    expect_open_error(dir, raw_file("{" + t1("F16", "[2]", "[0,8]") + "}", 8), ErrorKind::Format,
                      "holds 8 bytes but F16 [2] needs 4");
    expect_open_error(dir, raw_file("{" + t1("F32", "[4294967296,4294967296]", "[0,8]") + "}", 8),
                      ErrorKind::Format, "overflows");
  }
  SUBCASE("unknown and unsupported dtypes") {
    expect_open_error(dir, raw_file("{" + t1("F33", "[2]", "[0,8]") + "}", 8), ErrorKind::Format,
                      "unknown dtype 'F33'");
    expect_open_error(dir, raw_file("{" + t1("F8_E4M3", "[8]", "[0,8]") + "}", 8), ErrorKind::Unsupported,
                      "dtype F8_E4M3 is not supported");
    expect_open_error(dir, raw_file("{" + t1("F8_E5M2", "[8]", "[0,8]") + "}", 8), ErrorKind::Unsupported,
                      "not supported");
  }
  SUBCASE("missing file") {
    try {
      SafetensorsFile f(dir / "absent.safetensors");
      FAIL("no error");
    } catch (const dptq::Error& e) {
      CHECK(e.kind() == ErrorKind::Io);
      CHECK(std::string(e.what()).find("absent.safetensors: cannot open") != std::string::npos);
    }
  }
}

TEST_CASE("sharded checkpoints: index.json, single file, missing shards") {
  const fs::path dir = dptq::test::scratch_dir("safetensors_index");
  const float a[2] = {1, 2}, b[3] = {3, 4, 5};
  dptq::write_safetensors(dir / "model-00001-of-00002.safetensors", {{"a", "F32", {2}, a, 8}});
  dptq::write_safetensors(dir / "model-00002-of-00002.safetensors", {{"b", "F32", {3}, b, 12}});
  auto write_index = [&](const std::string& text) { write_bytes(dir / "model.safetensors.index.json", text); };

  CHECK_THROWS_AS(dptq::read_safetensors_index(dir), dptq::Error);  // neither file yet

  write_index(R"({"metadata":{"total_size":20},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
              R"("b":"model-00002-of-00002.safetensors"}})");
  auto map = dptq::read_safetensors_index(dir);
  REQUIRE(map.size() == 2);
  CHECK(map["a"] == dir / "model-00001-of-00002.safetensors");
  CHECK(map["b"] == dir / "model-00002-of-00002.safetensors");
  SafetensorsFile s2(map["b"]);
  CHECK(s2.to_float32(s2.get("b")) == std::vector<float>{3, 4, 5});

  auto expect = [&](ErrorKind kind, const std::string& needle) {
    try {
      dptq::read_safetensors_index(dir);
      FAIL("no error for '" << needle << "'");
    } catch (const dptq::Error& e) {
      INFO(e.what());
      CHECK(e.kind() == kind);
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
  };
  write_index(R"({"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00003.safetensors"}})");
  expect(ErrorKind::Io, "shard 'model-00003.safetensors' (holding 'b') does not exist");
  write_index(R"({"weight_map":{"a":"../model-00001-of-00002.safetensors"}})");
  expect(ErrorKind::Format, "not a file inside the folder");
  write_index(R"({"weights":{}})");
  expect(ErrorKind::Format, "weight_map");
  write_index(R"({"weight_map":{"a":)");
  expect(ErrorKind::Format, "bad JSON");

  fs::remove(dir / "model.safetensors.index.json");
  dptq::write_safetensors(dir / "model.safetensors", {{"a", "F32", {2}, a, 8}, {"b", "F32", {3}, b, 12}});
  map = dptq::read_safetensors_index(dir);
  CHECK(map.size() == 2);
  CHECK(map["b"] == dir / "model.safetensors");
}

TEST_CASE("a failed write leaves nothing at the target path") {
  const fs::path dir = dptq::test::scratch_dir("safetensors_failed_write");
  const float x[4] = {1, 2, 3, 4};
  auto no_temp_files = [&] {
    for (const auto& name : files_in(dir)) CHECK(name.string().find(".tmp-") == std::string::npos);
  };
  auto expect_fail = [&](const fs::path& target, const std::vector<dptq::WriteEntry>& entries, ErrorKind kind) {
    try {
      dptq::write_safetensors(target, entries);
      FAIL("write did not fail");
    } catch (const dptq::Error& e) {
      INFO(e.what());
      CHECK(e.kind() == kind);
      CHECK(std::string(e.what()).rfind(target.string() + ": ", 0) == 0);
    }
  };
  const fs::path target = dir / "out.safetensors";
  expect_fail(target, {{"x", "F32", {3}, x, 16}}, ErrorKind::InvalidArgument);  // size mismatch
  expect_fail(target, {{"x", "F8_E4M3", {4}, x, 4}}, ErrorKind::InvalidArgument);
  expect_fail(target, {{"x", "F32", {4}, x, 16}, {"x", "F32", {4}, x, 16}}, ErrorKind::InvalidArgument);
  expect_fail(target, {{"__metadata__", "F32", {4}, x, 16}}, ErrorKind::InvalidArgument);
  expect_fail(target, {{"x", "F32", {4}, nullptr, 16}}, ErrorKind::InvalidArgument);
  CHECK_FALSE(fs::exists(target));
  no_temp_files();

  // An existing file survives a failed overwrite unchanged.
  dptq::write_safetensors(target, {{"x", "F32", {4}, x, 16}});
  const auto before = fs::file_size(target);
  expect_fail(target, {{"y", "F32", {5}, x, 16}}, ErrorKind::InvalidArgument);
  CHECK(fs::file_size(target) == before);
  CHECK(SafetensorsFile(target).find("x") != nullptr);

  // Failure after the data was written (the rename onto a non-empty directory fails): the temp
  // file is removed and the directory is untouched.
  const fs::path busy = dir / "busy.safetensors";
  fs::create_directories(busy / "inside");
  expect_fail(busy, {{"x", "F32", {4}, x, 16}}, ErrorKind::Io);
  CHECK(fs::is_directory(busy / "inside"));
  no_temp_files();

  // Missing folder.
  expect_fail(dir / "no" / "such" / "dir.safetensors", {{"x", "F32", {4}, x, 16}}, ErrorKind::Io);
  no_temp_files();
}

TEST_CASE("files written by the Python safetensors library (tiny HF fixtures)") {
  const fs::path root = dptq::test::tests_dir() / "fixtures" / "tiny";
  DPTQ_SKIP_UNLESS(fs::exists(root / "llama2_spm" / "golden.json"),
                   "tests/fixtures/tiny missing: run tools/golden/make_tiny_hf.py");
  int checked = 0;
  for (const char* name : {"llama2_spm", "llama3_rope", "mistral", "qwen2", "bf16_sharded"}) {
    INFO(name);
    const fs::path folder = root / name;
    std::ifstream in(folder / "golden.json");
    REQUIRE(in.good());
    const auto golden = nlohmann::json::parse(in);
    const auto& probes = golden.at("safetensors_probes");
    const auto map = dptq::read_safetensors_index(folder);
    CHECK(static_cast<int64_t>(map.size()) == golden.at("n_tensors").get<int64_t>());
    if (std::string(name) == "bf16_sharded") {
      std::set<fs::path> shards;
      for (const auto& [k, v] : map) shards.insert(v);
      CHECK(shards.size() >= 2);
    }
    for (const auto& probe : probes) {
      const std::string tname = probe.at("tensor");
      INFO(tname);
      REQUIRE(map.count(tname) == 1);
      SafetensorsFile f(map.at(tname));
      const auto& t = f.get(tname);
      CHECK(t.dtype == probe.at("dtype").get<std::string>());
      CHECK(t.shape == probe.at("shape").get<std::vector<int64_t>>());
      const auto values = f.to_float32(t);
      const auto expected = probe.at("first_values").get<std::vector<double>>();
      REQUIRE(values.size() >= expected.size());
      for (size_t i = 0; i < expected.size(); ++i) CHECK(values[i] == static_cast<float>(expected[i]));
      if (probe.contains("source_fp32")) {  // torch's fp32 -> bf16 rounding vs ours
        const auto src = probe.at("source_fp32").get<std::vector<double>>();
        for (size_t i = 0; i < src.size(); ++i)
          CHECK(dptq::bf16_to_fp32(dptq::fp32_to_bf16(static_cast<float>(src[i]))) == values[i]);
      }
      ++checked;
    }
    if (golden.contains("safetensors_metadata"))
      for (const auto& [k, v] : golden.at("safetensors_metadata").items()) {
        SafetensorsFile f(map.begin()->second);
        CHECK(f.metadata().at(k) == v.get<std::string>());
      }
  }
  CHECK(checked > 0);
}
