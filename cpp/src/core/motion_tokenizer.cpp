// The motion tokenizer of docs/motion_tokenizer_spec.md. Tokens must equal the numpy reference's
// (python/mdllm/tokenizer/motion.py) except at exact near-ties, so everything runs in double, each
// code's sum of squared differences is accumulated over j = 0..11 in order, and this file is
// compiled without floating-point contraction (no fused multiply-add), set by the pragma below so
// that every build of the core (CMake, pip, a plain g++ line) gets it.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "mdllm/motion_tokenizer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "horn.hpp"
#include "json.hpp"
#include "mdllm/geometry.hpp"
#include "mdllm/safetensors.hpp"
#include "parallel.hpp"
#include "vec3.hpp"

namespace mdllm {

namespace {

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

constexpr int kC = MotionTokenizer::kComponents;
constexpr double kMinLength = 1e-6;  // nm: shorter |C - CA| or rejected N - CA is a degenerate key residue

using V = detail::Vec3;
using detail::load;
inline V load(const double* p) { return {p[0], p[1], p[2]}; }

// The key, prepared once per call: its atoms in double, each residue's frame F_i = [e1 e2 e3] and its
// CA atoms about their centroid (separate x, y, z arrays, as the covariance loop wants them).
struct Key {
  std::vector<double> atoms;   // (L, 12)
  std::vector<V> e1, e2, e3;   // the columns of F_i
  std::vector<double> x, y, z;  // CA - centroid
  V centroid{0, 0, 0};
};

Key prepare_key(const float* key, int64_t n_res, const char* op) {
  for (int64_t i = 0; i < n_res * kC; ++i)
    if (!std::isfinite(key[i])) bad(std::string(op) + ": key coordinates contain NaN or infinite values");
  Key k;
  k.atoms.assign(key, key + n_res * kC);
  k.e1.resize(n_res);
  k.e2.resize(n_res);
  k.e3.resize(n_res);
  double s[3] = {0, 0, 0};
  for (int64_t i = 0; i < n_res; ++i) {
    const double* r = &k.atoms[i * kC];
    const V ca = load(r + 3);
    const auto status = detail::residue_frame(load(r), ca, load(r + 6), kMinLength, k.e1[i], k.e2[i], k.e3[i]);
    if (status == detail::FrameStatus::kCaCCoincide)
      bad(std::string(op) + ": key residue " + std::to_string(i) + " is degenerate (CA and C coincide)");
    if (status == detail::FrameStatus::kCollinear)
      bad(std::string(op) + ": key residue " + std::to_string(i) + " is degenerate (N, CA and C are collinear)");
    s[0] += ca.x;
    s[1] += ca.y;
    s[2] += ca.z;
  }
  const double n = static_cast<double>(n_res);
  k.centroid = {s[0] / n, s[1] / n, s[2] / n};
  k.x.resize(n_res);
  k.y.resize(n_res);
  k.z.resize(n_res);
  for (int64_t i = 0; i < n_res; ++i) {
    k.x[i] = k.atoms[i * kC + 3] - k.centroid.x;
    k.y[i] = k.atoms[i * kC + 4] - k.centroid.y;
    k.z[i] = k.atoms[i * kC + 5] - k.centroid.z;
  }
  return k;
}

// The unit quaternion q0 + q1 i + q2 j + q3 k rotating mobile onto reference (Horn, horn.hpp). A zero
// covariance (L = 1, or all CA in one point) gives the identity.
void horn_quaternion(const double s[3][3], double q[4]) {
  geometry::horn_max_eigen(s, q);
  double len = 0;
  for (int i = 0; i < 4; ++i) len += q[i] * q[i];
  len = std::sqrt(len);
  for (int i = 0; i < 4; ++i) q[i] /= len;
}

// The superposition of one frame on the key by CA: Z = R (X - cx) + cy.
struct Fit {
  double r[3][3];
  V cx;
};

Fit fit(const float* x, int64_t n_res, const Key& key) {
  double s[3] = {0, 0, 0};
  for (int64_t i = 0; i < n_res; ++i)
    for (int d = 0; d < 3; ++d) s[d] += x[i * kC + 3 + d];
  const double n = static_cast<double>(n_res);
  Fit f;
  f.cx = {s[0] / n, s[1] / n, s[2] / n};
  double xx = 0, xy = 0, xz = 0, yx = 0, yy = 0, yz = 0, zx = 0, zy = 0, zz = 0;
  for (int64_t i = 0; i < n_res; ++i) {
    const float* p = x + i * kC + 3;
    const double mx = p[0] - f.cx.x, my = p[1] - f.cx.y, mz = p[2] - f.cx.z;
    xx += mx * key.x[i]; xy += mx * key.y[i]; xz += mx * key.z[i];
    yx += my * key.x[i]; yy += my * key.y[i]; yz += my * key.z[i];
    zx += mz * key.x[i]; zy += mz * key.y[i]; zz += mz * key.z[i];
  }
  const double cov[3][3] = {{xx, xy, xz}, {yx, yy, yz}, {zx, zy, zz}};
  double q[4];
  horn_quaternion(cov, q);
  const double a = q[0], b = q[1], c = q[2], d = q[3];
  const double r[3][3] = {{a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)},
                          {2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)},
                          {2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d}};
  std::memcpy(f.r, r, sizeof r);
  return f;
}

// d[12] = F_i^T (Z[i, a] - Y[i, a]) for the four atoms of residue i of frame x.
inline void displacement(const float* x, int64_t i, const Fit& f, const Key& key, double* d) {
  for (int a = 0; a < 4; ++a) {
    const V p = load(x + i * kC + a * 3) - f.cx;
    const V z = V{f.r[0][0] * p.x + f.r[0][1] * p.y + f.r[0][2] * p.z,
                  f.r[1][0] * p.x + f.r[1][1] * p.y + f.r[1][2] * p.z,
                  f.r[2][0] * p.x + f.r[2][1] * p.y + f.r[2][2] * p.z} +
                key.centroid;
    const V diff = z - load(&key.atoms[i * kC + a * 3]);
    d[a * 3 + 0] = dot(key.e1[i], diff);
    d[a * 3 + 1] = dot(key.e2[i], diff);
    d[a * 3 + 2] = dot(key.e3[i], diff);
  }
}

// Eight codes per step of the nearest-code search (one AVX-512 register; narrower targets split it).
constexpr int64_t kWidth = 8;
typedef double f64x8 __attribute__((vector_size(kWidth * 8)));
typedef int64_t i64x8 __attribute__((vector_size(kWidth * 8)));

int64_t config_int(const detail::Json& root, const char* key, int64_t lo, int64_t hi) {
  const detail::Json* v = root.find(key);
  if (!v || !v->is_number() || v->number != std::floor(v->number) || v->number < lo || v->number > hi)
    bad(std::string("motion tokenizer config: '") + key + "' must be an integer in [" + std::to_string(lo) + ", " +
        std::to_string(hi) + "]");
  return static_cast<int64_t>(v->number);
}

}  // namespace

MotionTokenizer::MotionTokenizer(const std::string& weights_path, const std::string& config_json) {
  const detail::Json root = detail::parse_json(config_json);
  if (!root.is_object()) bad("motion tokenizer config: not a JSON object");
  for (const auto& [key, value] : root.object)
    if (key.empty() || key[0] != '_')
      if (key != "kind" && key != "codebook_size" && key != "version")
        bad("motion tokenizer config: unknown key '" + key + "'");
  const detail::Json* kind = root.find("kind");
  if (!kind || !kind->is_string() || kind->string != "motion") bad("motion tokenizer config: 'kind' must be \"motion\"");
  if (config_int(root, "version", 0, 1000) != 1) bad("motion tokenizer config: unsupported 'version' (expected 1)");
  k_ = config_int(root, "codebook_size", 1, 65536);

  const SafetensorsFile file = read_safetensors(weights_path);
  const auto it = file.tensors.find("codebook");
  if (it == file.tensors.end()) bad(weights_path + ": missing tensor codebook (not a motion tokenizer?)");
  const Tensor& codebook = it->second;
  if (codebook.dtype != "F32") bad(weights_path + ": tensor codebook has dtype " + codebook.dtype + ", expected F32");
  if (codebook.shape.size() != 2 || codebook.shape[1] != kC)
    bad(weights_path + ": tensor codebook must have shape (K, 12)");
  if (codebook.shape[0] != k_)
    bad(weights_path + ": codebook has " + std::to_string(codebook.shape[0]) + " codes, config.json says " +
        std::to_string(k_));
  if (static_cast<int64_t>(codebook.data.size()) != k_ * kC) bad(weights_path + ": tensor codebook has the wrong size");
  for (float v : codebook.data)
    if (!std::isfinite(v)) bad(weights_path + ": tensor codebook holds NaN or infinite values");

  codes_.assign(codebook.data.begin(), codebook.data.end());
  k_padded_ = (k_ + kWidth - 1) / kWidth * kWidth;
  columns_.assign(kC * k_padded_, std::numeric_limits<double>::infinity());
  for (int64_t k = 0; k < k_; ++k)
    for (int j = 0; j < kC; ++j) columns_[j * k_padded_ + k] = codes_[k * kC + j];
}

MotionTokenizer MotionTokenizer::from_directory(const std::string& directory) {
  return MotionTokenizer(directory + "/model.safetensors", detail::read_text_file(directory + "/config.json"));
}

namespace {

// Codes (K, 12) as the search reads them: (12, K rounded up to the vector width), component j of every code
// contiguous, the padding +inf so that it is never the nearest.
std::vector<double> as_columns(const std::vector<double>& codes, int64_t k, int64_t k_padded) {
  std::vector<double> columns(kC * k_padded, std::numeric_limits<double>::infinity());
  for (int64_t c = 0; c < k; ++c)
    for (int j = 0; j < kC; ++j) columns[j * k_padded + c] = codes[c * kC + j];
  return columns;
}

// argmin_k sum_{j=0..11} (d[j] - code[k][j])^2, ties to the smaller k. Each lane keeps the first
// (smallest) code of its best value; the lanes are then merged by (value, index). The padding codes
// score +inf and never win.
int32_t nearest_in(const double* col, int64_t stride, const double* d) {
  f64x8 best = f64x8{} + std::numeric_limits<double>::infinity();
  i64x8 best_k = i64x8{} + int64_t{0};
  i64x8 k_lanes = {0, 1, 2, 3, 4, 5, 6, 7};
  double dj[kC];
  std::copy(d, d + kC, dj);
  for (int64_t k = 0; k < stride; k += kWidth) {
    f64x8 c;  // loaded by memcpy, not by a helper: a function returning a 64-byte vector has no stable ABI
    std::memcpy(&c, col + k, sizeof c);
    const f64x8 t0 = dj[0] - c;
    f64x8 s = t0 * t0;  // 0 + t0^2, exactly
    for (int j = 1; j < kC; ++j) {
      std::memcpy(&c, col + j * stride + k, sizeof c);
      const f64x8 t = dj[j] - c;
      s = s + t * t;
    }
    const i64x8 less = s < best;
    best = less ? s : best;
    best_k = less ? k_lanes : best_k;
    k_lanes += kWidth;
  }
  double value = best[0];
  int64_t index = best_k[0];
  for (int l = 1; l < kWidth; ++l)
    if (best[l] < value || (best[l] == value && best_k[l] < index)) {
      value = best[l];
      index = best_k[l];
    }
  return static_cast<int32_t>(index);
}

}  // namespace

int32_t MotionTokenizer::nearest(const double* d) const { return nearest_in(columns_.data(), k_padded_, d); }

void MotionTokenizer::load_fine(const std::string& path) {
  const SafetensorsFile file = read_safetensors(path);
  const auto codebook = file.tensors.find("codebook"), follows = file.tensors.find("follows");
  if (codebook == file.tensors.end() || follows == file.tensors.end())
    bad(path + ": needs tensors codebook and follows (not a fine-code file?)");
  const auto meta = file.metadata.find("format");
  if (meta == file.metadata.end() || meta->second != "mdllm-motion-fine")
    bad(path + ": metadata format is not mdllm-motion-fine");
  const Tensor& c = codebook->second;
  const Tensor& f = follows->second;
  if (c.shape.size() != 2 || c.shape[1] != kC || c.shape[0] < 1) bad(path + ": tensor codebook must have shape (K2, 12)");
  if (f.shape.size() != 1 || f.shape[0] != k_)
    bad(path + ": tensor follows must have one entry per code of this tokenizer (" + std::to_string(k_) + ")");
  for (float v : c.data)
    if (!std::isfinite(v)) bad(path + ": tensor codebook holds NaN or infinite values");
  k2_ = c.shape[0];
  fine_codes_.assign(c.data.begin(), c.data.end());
  k2_padded_ = (k2_ + kWidth - 1) / kWidth * kWidth;
  fine_columns_ = as_columns(fine_codes_, k2_, k2_padded_);
  follows_.resize(k_);
  for (int64_t k = 0; k < k_; ++k) follows_[k] = f.data[k] > 0.5f;
}

void MotionTokenizer::check_fine(const int32_t* tokens, const int32_t* fine, int64_t n) const {
  if (!has_fine()) bad("fine codes given, but none loaded");
  for (int64_t i = 0; i < n; ++i)
    if ((follows_[tokens[i]] != 0) != (fine[i] >= 0) || fine[i] >= k2_)
      bad("fine code " + std::to_string(fine[i]) + " at " + std::to_string(i) + " does not fit its code " +
          std::to_string(tokens[i]));
}

void MotionTokenizer::encode(const float* xyz, int64_t n_frames, int64_t n_res, const float* key,
                             int32_t* tokens) const {
  encode_impl(xyz, n_frames, n_res, key, tokens, nullptr);
}

void MotionTokenizer::encode_fine(const float* xyz, int64_t n_frames, int64_t n_res, const float* key,
                                  int32_t* tokens, int32_t* fine) const {
  if (!has_fine()) bad("encode_fine: this motion tokenizer has no fine codes loaded");
  encode_impl(xyz, n_frames, n_res, key, tokens, fine);
}

void MotionTokenizer::encode_impl(const float* xyz, int64_t n_frames, int64_t n_res, const float* key,
                                  int32_t* tokens, int32_t* fine) const {
  if (n_frames < 0 || n_res < 1) bad("encode: need at least one residue and a non-negative number of frames");
  const Key k = prepare_key(key, n_res, "encode");
  for (int64_t i = 0; i < n_frames * n_res * kC; ++i)
    if (!std::isfinite(xyz[i])) bad("encode: coordinates contain NaN or infinite values");
  auto residues = [&](const float* x, const Fit& f, int32_t* out, int64_t begin, int64_t end) {
    double d[kC];
    for (int64_t i = begin; i < end; ++i) {
      displacement(x, i, f, k, d);
      out[i] = nearest(d);
      if (!fine) continue;
      int32_t* fine_out = fine + (out - tokens) + i;  // same (frame, residue) as out[i]
      *fine_out = -1;
      if (!follows_[out[i]]) continue;
      double r[kC];
      for (int j = 0; j < kC; ++j) r[j] = d[j] - codes_[static_cast<int64_t>(out[i]) * kC + j];
      *fine_out = nearest_in(fine_columns_.data(), k2_padded_, r);
    }
  };
  if (n_frames < num_threads()) {  // few frames: spread each frame's residues over the cores instead
    for (int64_t f = 0; f < n_frames; ++f) {
      const float* x = xyz + f * n_res * kC;
      const Fit fr = fit(x, n_res, k);
      detail::parallel_for(n_res, [&](int64_t begin, int64_t end) { residues(x, fr, tokens + f * n_res, begin, end); },
                           8);
    }
    return;
  }
  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    for (int64_t f = begin; f < end; ++f) {
      const float* x = xyz + f * n_res * kC;
      residues(x, fit(x, n_res, k), tokens + f * n_res, 0, n_res);
    }
  });
}

void MotionTokenizer::decode(const int32_t* tokens, int64_t n_frames, int64_t n_res, const float* key,
                             float* xyz, const int32_t* fine) const {
  if (n_frames < 0 || n_res < 1) bad("decode: need at least one residue and a non-negative number of frames");
  const Key k = prepare_key(key, n_res, "decode");
  for (int64_t i = 0; i < n_frames * n_res; ++i)
    if (tokens[i] < 0 || tokens[i] >= k_)
      bad("decode: token " + std::to_string(tokens[i]) + " is out of range for this tokenizer (codebook size " +
          std::to_string(k_) + ")");
  if (fine) check_fine(tokens, fine, n_frames * n_res);
  // X[i, a] = Y[i, a] + F_i code[a], one (frame, residue) pair per item
  detail::parallel_for(
      n_frames * n_res,
      [&](int64_t begin, int64_t end) {
        double sum[kC];
        for (int64_t item = begin; item < end; ++item) {
          const int64_t i = item % n_res;
          const double* code = &codes_[static_cast<int64_t>(tokens[item]) * kC];
          if (fine && fine[item] >= 0) {
            for (int j = 0; j < kC; ++j) sum[j] = code[j] + fine_codes_[static_cast<int64_t>(fine[item]) * kC + j];
            code = sum;
          }
          const V e1 = k.e1[i], e2 = k.e2[i], e3 = k.e3[i];
          for (int a = 0; a < 4; ++a) {
            const double* c = code + a * 3;
            const V y = load(&k.atoms[i * kC + a * 3]);
            const V p = y + ((c[0] * e1 + c[1] * e2) + c[2] * e3);
            float* out = xyz + item * kC + a * 3;
            out[0] = static_cast<float>(p.x);
            out[1] = static_cast<float>(p.y);
            out[2] = static_cast<float>(p.z);
          }
        }
      },
      256);
}

}  // namespace mdllm
