// The torsion-codebook tokenizer of docs/torsion_tokenizer_spec.md. Tokens must equal the PyTorch
// reference's bit for bit, so every sum and product below follows the spec's order, divisions stay
// divisions, and this file is compiled without floating-point contraction (no fused multiply-add;
// see CMakeLists.txt).
#include "mdllm/torsion_tokenizer.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "json.hpp"
#include "mdllm/geometry.hpp"
#include "mdllm/safetensors.hpp"
#include "parallel.hpp"

namespace mdllm {

namespace {

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

struct V {
  double x, y, z;
};
inline V operator+(V a, V b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
inline V operator-(V a, V b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
inline V operator*(double s, V a) { return {s * a.x, s * a.y, s * a.z}; }
inline double dot(V a, V b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
inline V cross(V a, V b) { return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x}; }
inline double norm(V a) { return std::sqrt(dot(a, a)); }
inline V unit(V a) {
  const double l = norm(a);
  return {a.x / l, a.y / l, a.z / l};
}
inline double dist2(V a, V b) { return dot(a - b, a - b); }

// The NeRF frame at c for the atom after a, b, c: bc along the last bond, n normal to the plane abc.
struct Axes {
  V bc, m, n;
};
inline Axes axes(V a, V b, V c) {
  const V bc = unit(c - b);
  const V n = unit(cross(b - a, bc));
  return {bc, cross(n, bc), n};
}
// c + along bc + dm m + dn n, summed left to right as the spec writes it.
inline V put(V c, const Axes& f, double along, double dm, double dn) {
  return ((c + along * f.bc) + dm * f.m) + dn * f.n;
}

// Plain pointers to the per-code offsets, so the loops over codes see contiguous arrays.
struct Codes {
  double ca_along, c_along, o_along, n_along;
  const double *__restrict ca_m, *__restrict ca_n, *__restrict c_m, *__restrict c_n;
  const double *__restrict o_m, *__restrict o_n, *__restrict n_m, *__restrict n_n;
};

// A residue built from code k: CA, C, O and the next residue's N.
struct Residue {
  V ca, c, o, next_n;
};

// O and the next N of code k on a residue whose N, CA, C are fixed.
inline Residue finish(const Codes& s, V n, V ca, V c, int64_t k) {
  const Axes f = axes(n, ca, c);
  return {ca, c, put(c, f, s.o_along, s.o_m[k], s.o_n[k]), put(c, f, s.n_along, s.n_m[k], s.n_n[k])};
}

// Residue i > 0 from code k after the previous residue's CA and C and this residue's N; f_ca is
// axes(prev CA, prev C, N), the same for every code.
inline Residue grow(const Codes& s, const Axes& f_ca, V prev_c, V n, int64_t k) {
  const V ca = put(n, f_ca, s.ca_along, s.ca_m[k], s.ca_n[k]);
  const V c = put(ca, axes(prev_c, n, ca), s.c_along, s.c_m[k], s.c_n[k]);
  return finish(s, n, ca, c, k);
}

// A partial chain of the beam search: its cost so far and the atoms the next residue hangs on.
struct Hypothesis {
  double cost;
  V ca, c, n;  // CA, C of the last residue built; N of the next one
};

// The target atoms of residue i in the canonical frame; next_n is residue i+1's N (unused at the end).
struct Target {
  V ca, c, o, next_n;
};

// err[k - k0] for codes [k0, k1) on hypothesis h at residue i > 0. The loop body is branch-free
// arithmetic on contiguous arrays, which the compiler vectorises.
template <bool Last>
void errors(const Codes& s, const Hypothesis& h, const Target& t, int64_t k0, int64_t k1, double* __restrict err) {
  const Axes f = axes(h.ca, h.c, h.n);
  for (int64_t k = k0; k < k1; ++k) {
    const Residue r = grow(s, f, h.c, h.n, k);
    double e = dist2(r.ca, t.ca) + dist2(r.c, t.c);
    e = e + dist2(r.o, t.o);
    if (!Last) e = e + dist2(r.next_n, t.next_n);
    err[k - k0] = e;
  }
}

// The same at residue 0, whose N, CA and C are the start frame for every code.
void first_errors(const Codes& s, V n0, V ca0, V c0, const Target& t, bool last, int64_t k0, int64_t k1,
                  double* err) {
  for (int64_t k = k0; k < k1; ++k) {
    const Residue r = finish(s, n0, ca0, c0, k);
    double e = 0.0;
    e = e + dist2(r.o, t.o);
    if (!last) e = e + dist2(r.next_n, t.next_n);
    err[k - k0] = e;
  }
}

// A candidate: total cost and index c = h K + k.
struct Pick {
  double total;
  int64_t c;
};
inline bool before(const Pick& a, const Pick& b) { return a.total < b.total || (a.total == b.total && a.c < b.c); }

// The best `width` candidates seen so far, ordered by (total, c), by running insertion. Candidates
// must be offered in increasing c, so an equal total never displaces an earlier one. A NaN total
// (only from a collinear, degenerate geometry) ranks last, as +inf.
class Best {
 public:
  Best(Pick* slots, int width) : p_(slots), width_(width) {}
  void offer(double total, int64_t c) {
    if (n_ == width_ && !(total < worst_)) return;  // the common case: one compare
    if (std::isnan(total)) total = std::numeric_limits<double>::infinity();
    int j = n_ < width_ ? n_++ : width_ - 1;
    for (; j > 0 && total < p_[j - 1].total; --j) p_[j] = p_[j - 1];
    p_[j] = {total, c};
    worst_ = p_[n_ - 1].total;
  }
  int size() const { return n_; }

 private:
  Pick* p_;
  int width_, n_ = 0;
  double worst_ = std::numeric_limits<double>::infinity();
};

constexpr int64_t kBlock = 256;  // codes scored per pass: the error buffer stays in L1

int64_t config_int(const detail::Json& root, const char* key, int64_t lo, int64_t hi) {
  const detail::Json* v = root.find(key);
  if (!v || !v->is_number() || v->number != std::floor(v->number) || v->number < lo || v->number > hi)
    bad(std::string("torsion tokenizer config: '") + key + "' must be an integer in [" + std::to_string(lo) + ", " +
        std::to_string(hi) + "]");
  return static_cast<int64_t>(v->number);
}

const Tensor& tensor(const SafetensorsFile& file, const std::string& path, const char* name) {
  const auto it = file.tensors.find(name);
  if (it == file.tensors.end()) bad(path + ": missing tensor " + name + " (not a torsion tokenizer?)");
  if (it->second.dtype != "F32") bad(path + ": tensor " + name + " has dtype " + it->second.dtype + ", expected F32");
  for (float v : it->second.data)
    if (!std::isfinite(v)) bad(path + ": tensor " + name + " holds NaN or infinite values");
  return it->second;
}

}  // namespace

TorsionTokenizer::TorsionTokenizer(const std::string& weights_path, const std::string& config_json) {
  const detail::Json root = detail::parse_json(config_json);
  if (!root.is_object()) bad("torsion tokenizer config: not a JSON object");
  for (const auto& [key, value] : root.object)
    if (key.empty() || key[0] != '_')
      if (key != "kind" && key != "codebook_size" && key != "beam_width" && key != "version")
        bad("torsion tokenizer config: unknown key '" + key + "'");
  const detail::Json* kind = root.find("kind");
  if (!kind || !kind->is_string() || kind->string != "torsion")
    bad("torsion tokenizer config: 'kind' must be \"torsion\"");
  if (config_int(root, "version", 0, 1000) != 1) bad("torsion tokenizer config: unsupported 'version' (expected 1)");
  k_ = config_int(root, "codebook_size", 2, 65536);
  beam_ = static_cast<int>(config_int(root, "beam_width", 1, 64));

  const SafetensorsFile file = read_safetensors(weights_path);
  const Tensor& codebook = tensor(file, weights_path, "codebook");
  const Tensor& geometry = tensor(file, weights_path, "geometry");
  if (codebook.shape.size() != 2 || codebook.shape[1] != 3)
    bad(weights_path + ": tensor codebook must have shape (K, 3)");
  if (codebook.shape[0] != k_)
    bad(weights_path + ": codebook has " + std::to_string(codebook.shape[0]) + " codes, config.json says " +
        std::to_string(k_));
  if (geometry.shape != std::vector<int64_t>{8}) bad(weights_path + ": tensor geometry must have shape (8,)");

  const std::vector<float>& g = geometry.data;
  const double b_nca = g[0], b_cac = g[1], b_cn = g[2], b_co = g[3];
  const double a_ncac = g[4], a_cacn = g[5], a_cnca = g[6], a_caco = g[7];
  // per-code offsets of one NeRF step: (len sin(ang)) cos t and (len sin(ang)) sin t
  auto step = [&](double len, double ang, int col, double sign) {
    detail::TorsionStep s;
    s.along = -len * std::cos(ang);
    const double radial = len * std::sin(ang);
    for (int64_t k = 0; k < k_; ++k) {
      const double t = codebook.data[k * 3 + col];
      s.m.push_back(radial * (sign * std::cos(t)));  // sign -1: torsion psi + pi for O
      s.n.push_back(radial * (sign * std::sin(t)));
    }
    return s;
  };
  ca_ = step(b_nca, a_cnca, 0, 1.0);
  c_ = step(b_cac, a_ncac, 1, 1.0);
  o_ = step(b_co, a_caco, 2, -1.0);
  n_ = step(b_cn, a_cacn, 2, 1.0);
  ca0_[0] = b_nca;
  c0_[0] = b_nca + b_cac * -std::cos(a_ncac);
  c0_[1] = 0.0 + b_cac * std::sin(a_ncac);
  c0_[2] = 0.0 + b_cac * 0.0;
}

TorsionTokenizer TorsionTokenizer::from_directory(const std::string& directory) {
  return TorsionTokenizer(directory + "/model.safetensors", detail::read_text_file(directory + "/config.json"));
}

namespace {

// Residue 0's frame (origin o, axes e1, e2, e3) of one input frame in Angstrom; throws when N, CA
// and C of residue 0 do not span a plane.
struct Canonical {
  V o, e1, e2, e3;
};
Canonical canonical(const float* xyz) {
  auto atom = [&](int a) { return V{xyz[a * 3] * 10.0, xyz[a * 3 + 1] * 10.0, xyz[a * 3 + 2] * 10.0}; };
  const V o = atom(0), ca = atom(1), c = atom(2);
  const V d = ca - o;
  const double ld = norm(d);
  if (ld < 1e-6) bad("encode: degenerate first residue (N and CA coincide)");
  const V e1 = {d.x / ld, d.y / ld, d.z / ld};
  const V v = c - ca;
  const V w = v - dot(v, e1) * e1;
  const double lw = norm(w);
  if (lw < 1e-6) bad("encode: degenerate first residue (N, CA and C are collinear)");
  const V e2 = {w.x / lw, w.y / lw, w.z / lw};
  return {o, e1, e2, cross(e1, e2)};
}

}  // namespace

void TorsionTokenizer::encode_frame(const float* xyz, int64_t L, int32_t* tokens, bool par) const {
  const Codes s{ca_.along, c_.along, o_.along, n_.along, ca_.m.data(), ca_.n.data(), c_.m.data(), c_.n.data(),
                o_.m.data(),  o_.n.data(),  n_.m.data(), n_.n.data()};
  const int64_t K = k_;
  const int B = beam_;
  const V n0{0.0, 0.0, 0.0}, ca0{ca0_[0], ca0_[1], ca0_[2]}, c0{c0_[0], c0_[1], c0_[2]};

  // the input in residue 0's frame, Angstrom: targets[i] = CA, C, O of i and N of i+1
  const Canonical f = canonical(xyz);
  auto local = [&](int64_t i, int a) {
    const float* p = xyz + (i * 4 + a) * 3;
    const V d = V{p[0] * 10.0, p[1] * 10.0, p[2] * 10.0} - f.o;
    return V{dot(d, f.e1), dot(d, f.e2), dot(d, f.e3)};
  };
  std::vector<Target> targets(L);
  for (int64_t i = 0; i < L; ++i)
    targets[i] = {local(i, 1), local(i, 2), local(i, 3), i + 1 < L ? local(i + 1, 0) : V{0.0, 0.0, 0.0}};

  std::vector<Hypothesis> hyps{{0.0, ca0, c0, n0}}, next;
  std::vector<int32_t> parent(L * B), token(L * B);  // per residue and kept hypothesis, for backtracking
  // with `par`, the candidates of one residue are split into chunks, each keeps its own best B, merged after
  const int64_t max_chunks = par ? 4 * num_threads() : 1;
  std::vector<Pick> chunk_best(max_chunks * B), merged;
  std::vector<int> chunk_size(max_chunks);

  for (int64_t i = 0; i < L; ++i) {
    const Target& t = targets[i];
    const bool last = i == L - 1;
    const int64_t n_cand = static_cast<int64_t>(hyps.size()) * K;
    // the best B candidates among [c0, c1) into chunk slot `slot`
    auto best_of = [&](int64_t c_begin, int64_t c_end, int64_t slot) {
      double err[kBlock];
      Best best(&chunk_best[slot * B], B);
      for (int64_t c = c_begin; c < c_end;) {
        const int64_t h = c / K, k0 = c % K, k1 = std::min({K, k0 + kBlock, k0 + (c_end - c)});
        if (i == 0) first_errors(s, n0, ca0, c0, t, last, k0, k1, err);
        else if (last) errors<true>(s, hyps[h], t, k0, k1, err);
        else errors<false>(s, hyps[h], t, k0, k1, err);
        const double cost = hyps[h].cost;
        for (int64_t k = k0; k < k1; ++k) best.offer(cost + err[k - k0], h * K + k);
        c += k1 - k0;
      }
      chunk_size[slot] = best.size();
    };
    const int64_t chunks = std::max<int64_t>(1, std::min(max_chunks, n_cand / 1024));
    if (chunks == 1) best_of(0, n_cand, 0);
    else
      detail::parallel_for(chunks, [&](int64_t begin, int64_t end) {
        for (int64_t ch = begin; ch < end; ++ch) best_of(n_cand * ch / chunks, n_cand * (ch + 1) / chunks, ch);
      });
    merged.clear();
    for (int64_t ch = 0; ch < chunks; ++ch)
      merged.insert(merged.end(), &chunk_best[ch * B], &chunk_best[ch * B] + chunk_size[ch]);
    if (chunks > 1) std::sort(merged.begin(), merged.end(), before);
    const int64_t keep = std::min<int64_t>(B, n_cand);
    merged.resize(keep);

    // the kept candidates become the hypotheses, rebuilt with the very arithmetic that scored them
    next.clear();
    for (int64_t j = 0; j < keep; ++j) {
      const int64_t h = merged[j].c / K, k = merged[j].c % K;
      const Hypothesis& p = hyps[h];
      const Residue r = i == 0 ? finish(s, n0, ca0, c0, k) : grow(s, axes(p.ca, p.c, p.n), p.c, p.n, k);
      next.push_back({merged[j].total, r.ca, r.c, r.next_n});
      parent[i * B + j] = static_cast<int32_t>(h);
      token[i * B + j] = static_cast<int32_t>(k);
    }
    hyps.swap(next);
  }
  for (int64_t i = L - 1, j = 0; i >= 0; --i) {  // from the best final hypothesis back to residue 0
    tokens[i] = token[i * B + j];
    j = parent[i * B + j];
  }
}

void TorsionTokenizer::decode_frame(const int32_t* tokens, int64_t L, float* xyz) const {
  const Codes s{ca_.along, c_.along, o_.along, n_.along, ca_.m.data(), ca_.n.data(), c_.m.data(), c_.n.data(),
                o_.m.data(),  o_.n.data(),  n_.m.data(), n_.n.data()};
  V n{0.0, 0.0, 0.0}, prev_ca{}, prev_c{};
  for (int64_t i = 0; i < L; ++i) {
    const int64_t k = tokens[i];
    const Residue r = i == 0 ? finish(s, n, V{ca0_[0], ca0_[1], ca0_[2]}, V{c0_[0], c0_[1], c0_[2]}, k)
                             : grow(s, axes(prev_ca, prev_c, n), prev_c, n, k);
    const V atoms[4] = {n, r.ca, r.c, r.o};
    for (int a = 0; a < 4; ++a) {  // Angstrom -> nm
      float* out = xyz + (i * 4 + a) * 3;
      out[0] = static_cast<float>(atoms[a].x * 0.1);
      out[1] = static_cast<float>(atoms[a].y * 0.1);
      out[2] = static_cast<float>(atoms[a].z * 0.1);
    }
    prev_ca = r.ca;
    prev_c = r.c;
    n = r.next_n;
  }
}

void TorsionTokenizer::encode(const float* xyz, int64_t n_frames, int64_t n_res, int32_t* tokens) const {
  if (n_frames < 0 || n_res < 1) bad("encode: need at least one residue");
  for (int64_t i = 0; i < n_frames * n_res * 12; ++i)
    if (!std::isfinite(xyz[i])) bad("encode: coordinates contain NaN or infinite values");
  for (int64_t f = 0; f < n_frames; ++f) canonical(xyz + f * n_res * 12);  // degenerate frames throw here
  if (n_frames < num_threads()) {  // few frames: spread each frame's candidates over the cores instead
    for (int64_t f = 0; f < n_frames; ++f) encode_frame(xyz + f * n_res * 12, n_res, tokens + f * n_res, true);
    return;
  }
  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    for (int64_t f = begin; f < end; ++f) encode_frame(xyz + f * n_res * 12, n_res, tokens + f * n_res, false);
  });
}

void TorsionTokenizer::decode(const int32_t* tokens, int64_t n_frames, int64_t n_res, float* xyz) const {
  if (n_frames < 0 || n_res < 1) bad("decode: need at least one residue");
  for (int64_t i = 0; i < n_frames * n_res; ++i)
    if (tokens[i] < 0 || tokens[i] >= k_)
      bad("decode: token " + std::to_string(tokens[i]) + " is out of range for this tokenizer (codebook size " +
          std::to_string(k_) + ")");
  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    for (int64_t f = begin; f < end; ++f) decode_frame(tokens + f * n_res, n_res, xyz + f * n_res * 12);
  });
}

}  // namespace mdllm
