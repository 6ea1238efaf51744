// The context decoder of motion tokens; see mdllm/motion_context.hpp and the numpy reference
// python/mdllm/tokenizer/motion_context.py (same features in the same order, same network).
#include "mdllm/motion_context.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "mdllm/projection.hpp"
#include "mdllm/safetensors.hpp"
#include "parallel.hpp"
#include "vec3.hpp"

namespace mdllm {

namespace {

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

constexpr int kC = MotionTokenizer::kComponents;
constexpr int kClasses = 4;
constexpr double kMinLength = 1e-6;  // nm: a degenerate key residue, as MotionTokenizer refuses

using V = detail::Vec3;
using detail::dot;
using detail::norm;
inline V at(const std::vector<double>& a, int64_t i) { return {a[i], a[i + 1], a[i + 2]}; }

double gelu(double x) { return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * x * (1.0 + 0.044715 * x * x))); }

// (rows, cols) row-major -> (cols, rows) row-major.
std::vector<double> transposed(const std::vector<double>& w, int64_t rows, int64_t cols) {
  std::vector<double> t(w.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[c * rows + r] = w[r * cols + c];
  return t;
}

// out[h] = gelu(b[h] + sum_d wt[d, h] in[d]) for h < n_out; wt is (n_in, n_out), input-major.
void dense_gelu(const double* wt, const double* b, const double* in, int64_t n_in, int64_t n_out, double* out) {
  std::copy(b, b + n_out, out);
  for (int64_t d = 0; d < n_in; ++d) {
    const double v = in[d];
    const double* w = wt + d * n_out;
    for (int64_t h = 0; h < n_out; ++h) out[h] += w[h] * v;
  }
  for (int64_t h = 0; h < n_out; ++h) out[h] = gelu(out[h]);
}

std::vector<double> tensor(const SafetensorsFile& file, const std::string& path, const std::string& name,
                           const std::vector<int64_t>& shape) {
  const auto it = file.tensors.find(name);
  if (it == file.tensors.end()) bad(path + ": missing tensor " + name + " (not a motion context decoder?)");
  if (it->second.shape != shape) bad(path + ": tensor " + name + " has the wrong shape");
  for (float v : it->second.data)
    if (!std::isfinite(v)) bad(path + ": tensor " + name + " holds NaN or infinite values");
  return {it->second.data.begin(), it->second.data.end()};
}

// Segment index of each residue: consecutive residues whose key CAs are closer than the projection's
// kBreakNm (where it leaves their CA-CA distance free: a chain break).
std::vector<int64_t> key_segments(const std::vector<double>& atoms, int64_t n_res) {
  std::vector<int64_t> segment(n_res, 0);
  for (int64_t i = 1; i < n_res; ++i) {
    const V d = at(atoms, i * kC + 3) - at(atoms, (i - 1) * kC + 3);
    segment[i] = segment[i - 1] + (norm(d) < projection::kBreakNm ? 0 : 1);
  }
  return segment;
}

std::vector<double> key_atoms(const float* key, int64_t n_res) {
  std::vector<double> atoms(key, key + n_res * kC);
  for (double v : atoms)
    if (!std::isfinite(v)) bad("context decoder: key coordinates contain NaN or infinite values");
  return atoms;
}

// The key's residue frames (columns e1, e2, e3) and chain segments.
struct KeyFrames {
  std::vector<double> atoms;  // (L, 12)
  std::vector<V> e1, e2, e3;
  std::vector<int64_t> segment;
};

KeyFrames key_frames(const float* key, int64_t n_res) {
  KeyFrames k;
  k.atoms = key_atoms(key, n_res);
  k.e1.resize(n_res);
  k.e2.resize(n_res);
  k.e3.resize(n_res);
  for (int64_t i = 0; i < n_res; ++i) {
    const auto status = detail::residue_frame(at(k.atoms, i * kC), at(k.atoms, i * kC + 3), at(k.atoms, i * kC + 6),
                                              kMinLength, k.e1[i], k.e2[i], k.e3[i]);
    if (status != detail::FrameStatus::kOk)
      bad("context decoder: key residue " + std::to_string(i) + ": N, CA, C coincide or are collinear");
  }
  k.segment = key_segments(k.atoms, n_res);
  return k;
}

inline V to_local(const KeyFrames& k, int64_t i, const V& g) { return {dot(g, k.e1[i]), dot(g, k.e2[i]), dot(g, k.e3[i])}; }
inline V to_global(const KeyFrames& k, int64_t i, const double* c) {
  return (c[0] * k.e1[i] + c[1] * k.e2[i]) + c[2] * k.e3[i];
}

}  // namespace

int64_t MotionContextDecoder::feature_size(int window, int spatial, int ahead) {
  const int64_t columns = window + 1 + ahead + spatial;
  return columns * 12 + (columns - 1) * 13 + kClasses;
}

MotionContextDecoder::MotionContextDecoder(const std::string& path, const MotionTokenizer& tokenizer)
    : tokenizer_(tokenizer) {
  const SafetensorsFile file = read_safetensors(path);
  auto meta_int = [&](const char* name, int fallback) {
    const auto it = file.metadata.find(name);
    if (it == file.metadata.end()) {
      if (fallback < 0) bad(path + ": no '" + name + "' in the metadata (not a motion context decoder)");
      return fallback;
    }
    try {
      return std::stoi(it->second);
    } catch (const std::exception&) {
      bad(path + ": metadata '" + name + "' is not an integer");
    }
  };
  window_ = meta_int("window", -1);
  spatial_ = meta_int("spatial", 0);
  ahead_ = meta_int("ahead", window_);
  if (window_ < 0 || window_ > 64 || ahead_ < 0 || ahead_ > 64 || spatial_ < 0 || spatial_ > 256)
    bad(path + ": window, ahead or spatial out of range");
  const auto w0 = file.tensors.find("w0");
  if (w0 == file.tensors.end() || w0->second.shape.size() != 2) bad(path + ": missing or malformed tensor w0");
  hidden_ = w0->second.shape[0];
  inputs_ = feature_size(window_, spatial_, ahead_);
  const auto w0_rows = tensor(file, path, "w0", {hidden_, inputs_});
  b0_ = tensor(file, path, "b0", {hidden_});
  const auto w1_rows = tensor(file, path, "w1", {hidden_, hidden_});
  b1_ = tensor(file, path, "b1", {hidden_});
  w2_ = tensor(file, path, "w2", {kC, hidden_});
  b2_ = tensor(file, path, "b2", {kC});
  mean_ = tensor(file, path, "mean", {inputs_});
  scale_ = tensor(file, path, "scale", {inputs_});
  // w0 and w1 kept input-major: the hidden units of a layer then accumulate in one contiguous loop
  // that vectorizes (a dot product per unit does not, without reordering its sum).
  w0t_ = transposed(w0_rows, hidden_, inputs_);
  w1t_ = transposed(w1_rows, hidden_, hidden_);
}

std::vector<int32_t> MotionContextDecoder::residue_classes(const std::string& sequence, const float* key,
                                                           int64_t n_res) {
  if (static_cast<int64_t>(sequence.size()) != n_res)
    bad("context decoder: sequence has " + std::to_string(sequence.size()) + " residues, the key frame " +
        std::to_string(n_res));
  const std::vector<int64_t> segment = key_segments(key_atoms(key, n_res), n_res);
  std::vector<int32_t> classes(n_res, 0);
  for (int64_t i = 0; i < n_res; ++i) {
    if (i + 1 < n_res && sequence[i + 1] == 'P' && segment[i + 1] == segment[i]) classes[i] = 3;
    if (sequence[i] == 'G') classes[i] = 1;
    if (sequence[i] == 'P') classes[i] = 2;
  }
  return classes;
}

struct MotionContextDecoder::Layout {
  KeyFrames key;
  int64_t n_res = 0, cols = 0, statics = 0;
  std::vector<int64_t> nb;  // (L, cols) neighbour columns: the chain window (residue itself at column window), then the nearest
  std::vector<char> ok;     // (L, cols) real neighbours
  std::vector<double> fixed;  // (L, statics) key geometry around each residue, then its class (one-hot)
};

std::shared_ptr<const MotionContextDecoder::Layout> MotionContextDecoder::layout(const float* key, int64_t n_res,
                                                                               const int32_t* classes) const {
  if (n_res < 1) bad("context decoder: need at least one residue");
  if (classes)
    for (int64_t i = 0; i < n_res; ++i)
      if (classes[i] < 0 || classes[i] >= kClasses) bad("context decoder: Ramachandran class out of range");
  auto out = std::make_shared<Layout>();
  Layout& lay = *out;
  lay.key = key_frames(key, n_res);
  const KeyFrames& k = lay.key;
  const int64_t cols = window_ + 1 + ahead_ + spatial_;
  lay.n_res = n_res;
  lay.cols = cols;
  lay.nb.assign(n_res * cols, 0);
  lay.ok.assign(n_res * cols, 0);
  for (int64_t i = 0; i < n_res; ++i) {
    std::vector<char> seen(n_res, 0);
    seen[i] = 1;
    for (int64_t o = -window_; o <= ahead_; ++o) {
      const int64_t j = std::clamp<int64_t>(i + o, 0, n_res - 1);
      const bool real = i + o >= 0 && i + o < n_res && k.segment[j] == k.segment[i];
      lay.nb[i * cols + o + window_] = j;
      lay.ok[i * cols + o + window_] = real;
      if (real) seen[j] = 1;
    }
    if (spatial_ == 0) continue;
    std::vector<double> dist(n_res);
    for (int64_t j = 0; j < n_res; ++j) {
      const V d = at(k.atoms, j * kC + 3) - at(k.atoms, i * kC + 3);
      dist[j] = seen[j] ? std::numeric_limits<double>::infinity() : norm(d);
    }
    std::vector<int64_t> order(n_res);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return dist[a] < dist[b]; });
    for (int64_t s = 0; s < spatial_ && s < n_res; ++s) {
      lay.nb[i * cols + window_ + 1 + ahead_ + s] = order[s];
      lay.ok[i * cols + window_ + 1 + ahead_ + s] = std::isfinite(dist[order[s]]);
    }
  }
  // The key geometry around each residue: the same for every frame.
  lay.statics = (cols - 1) * 13 + kClasses;
  lay.fixed.assign(n_res * lay.statics, 0.0);
  for (int64_t i = 0; i < n_res; ++i) {
    double* f = &lay.fixed[i * lay.statics];
    int64_t n = 0;
    for (int64_t c = 0; c < cols; ++c) {
      if (c == window_) continue;
      const int64_t j = lay.nb[i * cols + c];
      const double m = lay.ok[i * cols + c] ? 1.0 : 0.0;
      for (int a = 0; a < 4; ++a) {
        const V l = to_local(k, i, at(k.atoms, j * kC + a * 3) - at(k.atoms, i * kC + 3));
        f[n * 12 + a * 3] = l.x * m;
        f[n * 12 + a * 3 + 1] = l.y * m;
        f[n * 12 + a * 3 + 2] = l.z * m;
      }
      f[(cols - 1) * 12 + n] = m;
      ++n;
    }
    f[(cols - 1) * 13 + (classes ? classes[i] : 0)] = 1.0;
  }
  return out;
}

void MotionContextDecoder::decode_residue(const Layout& lay, int64_t i, const int32_t* t, double* out,
                                          const double* extra) const {
  const KeyFrames& k = lay.key;
  const int64_t cols = lay.cols;
  std::vector<double> x(inputs_), h0(hidden_), h1(hidden_);
  double sum[kC];
  // Residue j's code vector: its code, plus its extra vector when given.
  auto vector_of = [&](int64_t j, int32_t token) -> const double* {
    const double* code = &tokenizer_.codes()[static_cast<int64_t>(token) * kC];
    if (!extra) return code;
    for (int o = 0; o < kC; ++o) sum[o] = code[o] + extra[j * kC + o];
    return sum;
  };
  for (int64_t c = 0; c < cols; ++c) {  // neighbours' codes in residue i's frame
    const int64_t j = lay.nb[i * cols + c];
    const double m = lay.ok[i * cols + c] ? 1.0 : 0.0;
    const double* code = m ? vector_of(j, t[j]) : &tokenizer_.codes()[0];  // unseen columns read no token
    for (int a = 0; a < 4; ++a) {
      const V l = to_local(k, i, to_global(k, j, code + a * 3));
      x[c * 12 + a * 3] = l.x * m;
      x[c * 12 + a * 3 + 1] = l.y * m;
      x[c * 12 + a * 3 + 2] = l.z * m;
    }
  }
  std::copy(&lay.fixed[i * lay.statics], &lay.fixed[i * lay.statics] + lay.statics, x.begin() + cols * 12);
  for (int64_t d = 0; d < inputs_; ++d) x[d] = (x[d] * 10.0 - mean_[d]) / scale_[d];
  dense_gelu(w0t_.data(), b0_.data(), x.data(), inputs_, hidden_, h0.data());
  dense_gelu(w1t_.data(), b1_.data(), h0.data(), hidden_, hidden_, h1.data());
  const double* code = vector_of(i, t[i]);
  double disp[kC];
  for (int o = 0; o < kC; ++o) {
    const double* w = &w2_[o * hidden_];
    double s = b2_[o];
    for (int64_t d = 0; d < hidden_; ++d) s += w[d] * h1[d];
    disp[o] = code[o] + s / 10.0;
  }
  for (int a = 0; a < 4; ++a) {  // placed on the key as MotionTokenizer::decode places a code
    const V p = at(k.atoms, i * kC + a * 3) + to_global(k, i, disp + a * 3);
    out[a * 3] = p.x, out[a * 3 + 1] = p.y, out[a * 3 + 2] = p.z;
  }
}

void MotionContextDecoder::decode(const int32_t* tokens, int64_t n_frames, int64_t n_res, const float* key,
                                  const int32_t* classes, float* xyz, const int32_t* fine) const {
  if (n_frames < 0 || n_res < 1) bad("context decoder: need at least one residue and a non-negative number of frames");
  for (int64_t i = 0; i < n_frames * n_res; ++i)
    if (tokens[i] < 0 || tokens[i] >= codes())
      bad("context decoder: token " + std::to_string(tokens[i]) + " is out of range (codebook size " +
          std::to_string(codes()) + ")");
  // Fine codes as each residue's extra vector (F*L*12).
  std::vector<double> extra;
  if (fine) {
    tokenizer_.check_fine(tokens, fine, n_frames * n_res);
    const std::vector<double>& fine_codes = tokenizer_.fine_codes();
    extra.assign(n_frames * n_res * kC, 0.0);
    for (int64_t i = 0; i < n_frames * n_res; ++i)
      if (fine[i] >= 0) std::copy_n(&fine_codes[static_cast<int64_t>(fine[i]) * kC], kC, &extra[i * kC]);
  }
  const auto lay = layout(key, n_res, classes);
  detail::parallel_for(
      n_frames * n_res,
      [&](int64_t begin, int64_t end) {
        double placed[kC];
        for (int64_t item = begin; item < end; ++item) {
          const int64_t frame = item / n_res;
          decode_residue(*lay, item % n_res, tokens + frame * n_res, placed,
                         extra.empty() ? nullptr : &extra[frame * n_res * kC]);
          for (int o = 0; o < kC; ++o) xyz[item * kC + o] = static_cast<float>(placed[o]);
        }
      },
      16);
}

}  // namespace mdllm
