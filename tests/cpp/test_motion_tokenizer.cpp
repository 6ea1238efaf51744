// The motion tokenizer on small tokenizers this test writes itself: decode adds the code's
// displacement in the key residue's frame, encode inverts decode exactly and ignores rigid motions
// of the frame, ties go to the smaller code, a chain break needs nothing special, every threading
// path gives the same tokens, and bad input, files and configs throw std::invalid_argument before any
// work.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.hpp"
#include "fixtures.hpp"
#include "mdllm/geometry.hpp"
#include "mdllm/motion_tokenizer.hpp"

namespace fs = std::filesystem;

namespace {

std::string config(int64_t k) {
  return "{\"kind\": \"motion\", \"codebook_size\": " + std::to_string(k) + ", \"version\": 1, \"_note\": \"test\"}";
}

// A tokenizer directory with this codebook (K, 12).
std::string write_tokenizer(const fs::path& dir, const std::vector<float>& codebook) {
  fs::create_directories(dir);
  const int64_t k = static_cast<int64_t>(codebook.size() / 12);
  write_safetensors((dir / "model.safetensors").string(), {f32("codebook", {k, 12}, codebook)});
  std::ofstream(dir / "config.json") << config(k);
  return dir.string();
}

template <class Fn>
bool throws_invalid(Fn&& fn) {
  try {
    fn();
  } catch (const std::invalid_argument&) {
    return true;
  }
  return false;
}

// K random codes in nm: N, C, O move by about `spread`, CA by about `ca_spread` (0: CA stays put, so
// the superposition on the key is the identity and encode must return decode's tokens exactly).
std::vector<float> random_codebook(int64_t k, double spread, double ca_spread, std::mt19937& rng) {
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<float> cb(k * 12);
  for (int64_t c = 0; c < k; ++c)
    for (int j = 0; j < 12; ++j) cb[c * 12 + j] = static_cast<float>(g(rng) * (j / 3 == 1 ? ca_spread : spread));
  return cb;
}

// A helical key chain of L residues (nm) with randomly oriented N, C, O; residues from `gap` on are
// shifted by 2 nm (a chain break).
std::vector<float> make_key(int64_t n_res, std::mt19937& rng, int64_t gap = -1) {
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<float> key(n_res * 12);
  auto offset = [&](double len) {
    double v[3] = {g(rng), g(rng), g(rng)};
    const double l = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    for (double& x : v) x *= len / l;
    return std::vector<double>(v, v + 3);
  };
  for (int64_t i = 0; i < n_res; ++i) {
    const double t = 1.745 * static_cast<double>(i);  // 100 degrees per residue
    double ca[3] = {0.23 * std::cos(t), 0.23 * std::sin(t), 0.15 * static_cast<double>(i)};
    if (gap >= 0 && i >= gap) ca[0] += 2.0;
    const auto n = offset(0.146), c = offset(0.152), o = offset(0.123);
    for (int d = 0; d < 3; ++d) {
      key[i * 12 + 0 + d] = static_cast<float>(ca[d] + n[d]);
      key[i * 12 + 3 + d] = static_cast<float>(ca[d]);
      key[i * 12 + 6 + d] = static_cast<float>(ca[d] + c[d]);
      key[i * 12 + 9 + d] = static_cast<float>(ca[d] + c[d] + o[d]);
    }
  }
  return key;
}

// key + F_i code[t[i]] for every residue, computed here independently (double).
std::vector<float> expected_decode(const std::vector<float>& key, const std::vector<float>& cb,
                                   const std::vector<int32_t>& tokens, int64_t n_res) {
  std::vector<float> out(tokens.size() * 12);
  for (size_t item = 0; item < tokens.size(); ++item) {
    const int64_t i = static_cast<int64_t>(item) % n_res;
    const float* r = &key[i * 12];
    double e1[3], u[3], e2[3], e3[3];
    for (int d = 0; d < 3; ++d) e1[d] = double(r[6 + d]) - r[3 + d], u[d] = double(r[d]) - r[3 + d];
    const double l1 = std::sqrt(e1[0] * e1[0] + e1[1] * e1[1] + e1[2] * e1[2]);
    for (double& x : e1) x /= l1;
    const double ue = u[0] * e1[0] + u[1] * e1[1] + u[2] * e1[2];
    for (int d = 0; d < 3; ++d) e2[d] = u[d] - ue * e1[d];
    const double l2 = std::sqrt(e2[0] * e2[0] + e2[1] * e2[1] + e2[2] * e2[2]);
    for (double& x : e2) x /= l2;
    e3[0] = e1[1] * e2[2] - e1[2] * e2[1];
    e3[1] = e1[2] * e2[0] - e1[0] * e2[2];
    e3[2] = e1[0] * e2[1] - e1[1] * e2[0];
    const float* c = &cb[tokens[item] * 12];
    for (int a = 0; a < 4; ++a)
      for (int d = 0; d < 3; ++d)
        out[item * 12 + a * 3 + d] =
            static_cast<float>(r[a * 3 + d] + e1[d] * c[a * 3] + e2[d] * c[a * 3 + 1] + e3[d] * c[a * 3 + 2]);
  }
  return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

}  // namespace

int main() {
  const fs::path root = fs::temp_directory_path() / ("mdllm_motion_test_" + std::to_string(std::random_device{}()));
  mdllm::set_num_threads(2);
  std::mt19937 rng(11);

  // 37 codes (not a multiple of the search width) moving N, C, O; CA fixed
  const int64_t K = 37, L = 40;
  const std::vector<float> codebook = random_codebook(K, 0.05, 0.0, rng);
  const std::string dir = write_tokenizer(root / "small", codebook);
  const mdllm::MotionTokenizer tok = mdllm::MotionTokenizer::from_directory(dir);
  CHECK(tok.codebook_size() == K);
  const std::vector<float> key = make_key(L, rng);

  std::vector<int32_t> tokens(L);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % K);
  std::vector<float> xyz(L * 12);
  tok.decode(tokens.data(), 1, L, key.data(), xyz.data());

  {  // decode is key + F_i code; encode inverts it exactly; decode(encode(x)) = x
    const double err = max_abs_diff(xyz, expected_decode(key, codebook, tokens, L));
    std::printf("decode vs independent key + F code: %.2e nm\n", err);
    CHECK(err < 1e-6);
    std::vector<int32_t> again(L, -1);
    tok.encode(xyz.data(), 1, L, key.data(), again.data());
    CHECK(again == tokens);
    std::vector<float> back(L * 12);
    tok.decode(again.data(), 1, L, key.data(), back.data());
    CHECK(max_abs_diff(back, xyz) < 1e-6);
    std::vector<int32_t> one_changed = tokens;
    one_changed[9] = (tokens[9] + 1) % K;
    std::vector<float> moved(L * 12);
    tok.decode(one_changed.data(), 1, L, key.data(), moved.data());
    int64_t changed_here = 0, changed_elsewhere = 0;
    for (int64_t i = 0; i < L * 12; ++i) (i / 12 == 9 ? changed_here : changed_elsewhere) += moved[i] != xyz[i];
    CHECK(changed_here >= 9);  // N, C, O of residue 9 (its CA does not move with these codes)
    CHECK(changed_elsewhere == 0);  // a different token moves its residue and nothing else
  }

  {  // several frames (split over threads by frame), one frame (split by residue), one thread: same tokens
    const int64_t F = 5;
    std::vector<int32_t> many(F * L);
    for (auto& t : many) t = static_cast<int32_t>(rng() % K);
    std::vector<float> many_xyz(F * L * 12);
    tok.decode(many.data(), F, L, key.data(), many_xyz.data());
    CHECK(max_abs_diff(many_xyz, expected_decode(key, codebook, many, L)) < 1e-6);
    std::vector<int32_t> again(F * L, -1), serial(F * L, -1), single(L, -1);
    tok.encode(many_xyz.data(), F, L, key.data(), again.data());
    CHECK(again == many);
    tok.encode(many_xyz.data() + 2 * L * 12, 1, L, key.data(), single.data());
    CHECK(std::equal(single.begin(), single.end(), many.begin() + 2 * L));
    mdllm::set_num_threads(1);
    tok.encode(many_xyz.data(), F, L, key.data(), serial.data());
    mdllm::set_num_threads(2);
    CHECK(serial == many);
    std::vector<int32_t> none(1, -7);  // zero frames: nothing written
    tok.encode(many_xyz.data(), 0, L, key.data(), none.data());
    tok.decode(many.data(), 0, L, key.data(), many_xyz.data());
    CHECK(none[0] == -7);
  }

  {  // tokens ignore a global rotation and translation of the frame
    const std::vector<float> moved = rigid_motion(xyz);
    std::vector<int32_t> again(L, -1);
    tok.encode(moved.data(), 1, L, key.data(), again.data());
    CHECK(again == tokens);
    // the key itself encodes to the code nearest to zero displacement
    double best = 1e300;
    int32_t zero_code = -1;
    for (int64_t k = 0; k < K; ++k) {
      double s = 0;
      for (int j = 0; j < 12; ++j) s += double(codebook[k * 12 + j]) * codebook[k * 12 + j];
      if (s < best) best = s, zero_code = static_cast<int32_t>(k);
    }
    const std::vector<float> key_moved = rigid_motion(key);
    tok.encode(key_moved.data(), 1, L, key.data(), again.data());
    CHECK(std::all_of(again.begin(), again.end(), [&](int32_t t) { return t == zero_code; }));
  }

  {  // codes that move CA too: the superposition then moves the frame a little, tokens still come back
    const int64_t k2 = 300;
    const std::vector<float> cb2 = random_codebook(k2, 0.08, 0.01, rng);
    const mdllm::MotionTokenizer t2 = mdllm::MotionTokenizer::from_directory(write_tokenizer(root / "ca", cb2));
    const int64_t n = 120, F = 3;
    const std::vector<float> k2key = make_key(n, rng);
    std::vector<int32_t> t(F * n);
    for (auto& v : t) v = static_cast<int32_t>(rng() % k2);
    std::vector<float> x(F * n * 12);
    t2.decode(t.data(), F, n, k2key.data(), x.data());
    const std::vector<float> moved = rigid_motion(x);
    std::vector<int32_t> again(F * n, -1);
    t2.encode(moved.data(), F, n, k2key.data(), again.data());
    CHECK(again == t);
  }

  {  // a chain break (residues 15.. shifted by 2 nm) needs nothing special
    const std::vector<float> broken = make_key(L, rng, 15);
    std::vector<float> x(L * 12);
    tok.decode(tokens.data(), 1, L, broken.data(), x.data());
    CHECK(max_abs_diff(x, expected_decode(broken, codebook, tokens, L)) < 1e-6);
    const std::vector<float> moved = rigid_motion(x);
    std::vector<int32_t> again(L, -1);
    tok.encode(moved.data(), 1, L, broken.data(), again.data());
    CHECK(again == tokens);
  }

  {  // the shortest chains: one residue round-trips; two give in-range tokens
    std::vector<float> one_key(key.begin(), key.begin() + 12), x(12);
    std::vector<int32_t> t{5}, back{-1};
    tok.decode(t.data(), 1, 1, one_key.data(), x.data());
    tok.encode(x.data(), 1, 1, one_key.data(), back.data());
    CHECK(back == t);
    std::vector<float> two_key(key.begin(), key.begin() + 24), x2(24);
    std::vector<int32_t> t2{3, 30}, back2{-1, -1};
    tok.decode(t2.data(), 1, 2, two_key.data(), x2.data());
    tok.encode(x2.data(), 1, 2, two_key.data(), back2.data());
    CHECK(back2[0] >= 0 && back2[0] < K && back2[1] >= 0 && back2[1] < K);
  }

  {  // ties go to the smaller code: codes 3, 7, 11 and 19 are the same (other lanes, other steps)
    std::vector<float> cb = random_codebook(24, 0.05, 0.0, rng);
    for (int j = 0; j < 12; ++j) cb[7 * 12 + j] = cb[11 * 12 + j] = cb[19 * 12 + j] = cb[3 * 12 + j];
    const mdllm::MotionTokenizer tied = mdllm::MotionTokenizer::from_directory(write_tokenizer(root / "tied", cb));
    std::vector<int32_t> t(L);
    for (int64_t i = 0; i < L; ++i) t[i] = std::vector<int32_t>{3, 7, 11, 19}[i % 4];
    std::vector<float> x(L * 12);
    tied.decode(t.data(), 1, L, key.data(), x.data());
    std::vector<int32_t> again(L, -1);
    tied.encode(x.data(), 1, L, key.data(), again.data());
    CHECK(std::all_of(again.begin(), again.end(), [](int32_t v) { return v == 3; }));
  }

  {  // a large codebook (K = 4096) on noisy frames: frame-split, residue-split and serial agree
    const int64_t kb = 4096, n = 214;
    const std::vector<float> cb = random_codebook(kb, 0.05, 0.01, rng);
    const mdllm::MotionTokenizer big = mdllm::MotionTokenizer::from_directory(write_tokenizer(root / "big", cb));
    const std::vector<float> bkey = make_key(n, rng);
    std::vector<int32_t> t(2 * n);
    for (auto& v : t) v = static_cast<int32_t>(rng() % kb);
    std::vector<float> x(2 * n * 12);
    big.decode(t.data(), 2, n, bkey.data(), x.data());
    std::normal_distribution<float> noise(0.0f, 0.02f);
    for (auto& v : x) v += noise(rng);
    std::vector<int32_t> two(2 * n), one(n), serial(2 * n);
    big.encode(x.data(), 2, n, bkey.data(), two.data());
    big.encode(x.data() + n * 12, 1, n, bkey.data(), one.data());
    mdllm::set_num_threads(1);
    big.encode(x.data(), 2, n, bkey.data(), serial.data());
    mdllm::set_num_threads(2);
    CHECK(two == serial);
    CHECK(std::equal(one.begin(), one.end(), two.begin() + n));
    int64_t matched = 0;
    for (int64_t i = 0; i < 2 * n; ++i) matched += two[i] == t[i];
    std::printf("K=4096, 0.02 nm noise: %lld of %lld tokens recovered\n", static_cast<long long>(matched),
                static_cast<long long>(2 * n));
  }

  {  // bad input: nothing is written
    std::vector<int32_t> t(L * 2, 0), out(L * 2, -1);
    std::vector<float> x(L * 2 * 12, 0.0f), two(L * 2 * 12);
    std::copy(xyz.begin(), xyz.end(), two.begin());
    std::copy(xyz.begin(), xyz.end(), two.begin() + L * 12);
    const std::vector<float> x_before = x;
    t[L + 3] = static_cast<int32_t>(K);
    CHECK(throws_invalid([&] { tok.decode(t.data(), 2, L, key.data(), x.data()); }));
    t[L + 3] = -1;
    CHECK(throws_invalid([&] { tok.decode(t.data(), 2, L, key.data(), x.data()); }));
    CHECK(x == x_before);
    t[L + 3] = 0;
    CHECK(throws_invalid([&] { tok.decode(t.data(), 1, 0, key.data(), x.data()); }));
    CHECK(throws_invalid([&] { tok.decode(t.data(), -1, L, key.data(), x.data()); }));
    CHECK(throws_invalid([&] { tok.encode(two.data(), 1, 0, key.data(), out.data()); }));
    CHECK(throws_invalid([&] { tok.encode(two.data(), -1, L, key.data(), out.data()); }));
    std::vector<float> nan_frames = two;
    nan_frames[L * 12 + 17] = NAN;  // in the second frame: the first must not be encoded either
    CHECK(throws_invalid([&] { tok.encode(nan_frames.data(), 2, L, key.data(), out.data()); }));
    nan_frames[L * 12 + 17] = INFINITY;
    CHECK(throws_invalid([&] { tok.encode(nan_frames.data(), 2, L, key.data(), out.data()); }));
    CHECK(std::all_of(out.begin(), out.end(), [](int32_t v) { return v == -1; }));
    std::vector<float> bad_key = key;
    bad_key[5] = NAN;
    CHECK(throws_invalid([&] { tok.encode(two.data(), 2, L, bad_key.data(), out.data()); }));
    CHECK(throws_invalid([&] { tok.decode(t.data(), 2, L, bad_key.data(), x.data()); }));
    bad_key = key;
    for (int d = 0; d < 3; ++d) bad_key[7 * 12 + 6 + d] = bad_key[7 * 12 + 3 + d];  // C on CA
    CHECK(throws_invalid([&] { tok.encode(two.data(), 2, L, bad_key.data(), out.data()); }));
    CHECK(throws_invalid([&] { tok.decode(t.data(), 2, L, bad_key.data(), x.data()); }));
    bad_key = key;
    for (int d = 0; d < 3; ++d)  // N on the CA-C line
      bad_key[7 * 12 + d] = 2.0f * bad_key[7 * 12 + 3 + d] - bad_key[7 * 12 + 6 + d];
    CHECK(throws_invalid([&] { tok.encode(two.data(), 2, L, bad_key.data(), out.data()); }));
    CHECK(throws_invalid([&] { tok.decode(t.data(), 2, L, bad_key.data(), x.data()); }));
    CHECK(std::all_of(out.begin(), out.end(), [](int32_t v) { return v == -1; }));
    CHECK(x == x_before);
    std::vector<float> flat(L * 2 * 12, 0.5f);  // a degenerate frame (not the key) is fine
    tok.encode(flat.data(), 2, L, key.data(), out.data());
    CHECK(std::all_of(out.begin(), out.end(), [&](int32_t v) { return v >= 0 && v < K; }));
  }

  {  // bad files and configs
    const fs::path d = root / "bad";
    fs::create_directories(d);
    const std::string w = (d / "model.safetensors").string();
    const auto attempt = [&](const std::vector<Entry>& entries, const std::string& cfg) {
      write_safetensors(w, entries);
      return throws_invalid([&] { mdllm::MotionTokenizer(w, cfg); });
    };
    const Entry cb = f32("codebook", {K, 12}, codebook);
    CHECK(!attempt({cb}, config(K)));                                                  // the good one loads
    CHECK(!attempt({cb, f32("extra", {2}, {1.0f, 2.0f})}, config(K)));                 // other tensors are ignored
    CHECK(attempt({f32("codes", {K, 12}, codebook)}, config(K)));                      // missing tensor
    CHECK(attempt({f32("codebook", {K * 2, 6}, codebook)}, config(K * 2)));            // wrong shape
    CHECK(attempt({f32("codebook", {K, 3, 4}, codebook)}, config(K)));                 // wrong rank
    CHECK(attempt({f32("codebook", {K * 12}, codebook)}, config(K)));                  // wrong rank
    CHECK(attempt({cb}, config(K + 1)));                                               // K mismatch
    CHECK(attempt({cb}, config(K - 1)));
    Entry half = cb;
    half.dtype = "F16";
    half.bytes.resize(cb.bytes.size() / 2);
    CHECK(attempt({half}, config(K)));                                                 // wrong dtype
    std::vector<float> nan_cb = codebook;
    nan_cb[40] = NAN;
    CHECK(attempt({f32("codebook", {K, 12}, nan_cb)}, config(K)));                     // non-finite value
    for (const std::string cfg :
         {std::string("not json"), std::string("[1]"), config(0), config(65537),
          std::string("{\"kind\": \"torsion\", \"codebook_size\": 37, \"version\": 1}"),
          std::string("{\"codebook_size\": 37, \"version\": 1}"),
          std::string("{\"kind\": \"motion\", \"codebook_size\": 37}"),
          std::string("{\"kind\": \"motion\", \"version\": 1}"),
          std::string("{\"kind\": \"motion\", \"codebook_size\": 37, \"version\": 2}"),
          std::string("{\"kind\": \"motion\", \"codebook_size\": 37.5, \"version\": 1}"),
          std::string("{\"kind\": \"motion\", \"codebook_size\": \"37\", \"version\": 1}"),
          std::string("{\"kind\": \"motion\", \"codebook_size\": 37, \"version\": 1, \"beam_width\": 4}")})
      CHECK(attempt({cb}, cfg));
    CHECK(throws_invalid([&] { mdllm::MotionTokenizer((d / "missing.safetensors").string(), config(K)); }));
    CHECK(throws_invalid([&] { mdllm::MotionTokenizer::from_directory((d / "nowhere").string()); }));
  }

  fs::remove_all(root);
  if (failures) std::printf("%d checks failed\n", failures);
  else std::printf("all motion tokenizer checks passed\n");
  return failures ? 1 : 0;
}
