// Restrained refinement of backbones (mdllm/refine.hpp). The energy term by term follows the Python
// reference (mdllm.geometry.refine, which stays the tested twin): harmonic springs to ideal
// distances, push-only springs on overlaps, a position restraint and a Ramachandran term.
#include "mdllm/refine.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "lbfgs.hpp"
#include "parallel.hpp"
#include "vec3.hpp"

namespace mdllm::refine {
namespace {

using detail::Vec3;
constexpr int N = 0, CA = 1, C = 2;

struct Spring {
  int32_t i, j;  // flat atom indices (residue * 4 + atom)
  double target_A;
};

inline Vec3 at(const double* x, int64_t atom) { return {x[3 * atom], x[3 * atom + 1], x[3 * atom + 2]}; }
inline void add(double* g, int64_t atom, Vec3 v) {
  g[3 * atom] += v.x;
  g[3 * atom + 1] += v.y;
  g[3 * atom + 2] += v.z;
}

// Everything one frame's energy needs besides the coordinates.
struct FrameTerms {
  int64_t n_res = 0;
  const double* input = nullptr;  // Å, the restraint's anchor
  std::vector<Spring> ideal;      // bonds, 1-3 distances, peptide planes
  std::vector<Spring> contacts;   // push-only
  const int32_t* rama_class = nullptr;
  const RamaField* field = nullptr;
  const Options* opt = nullptr;
};

// The ideal-distance springs of a frame; each peptide keeps the cis or trans form it has in the input.
std::vector<Spring> ideal_springs(const double* input, int64_t n_res, const IdealPair* pairs, int32_t n_pairs) {
  std::vector<uint8_t> cis(n_res, 0);
  for (int64_t r = 0; r + 1 < n_res; ++r) {
    const double omega = detail::dihedral(at(input, 4 * r + CA), at(input, 4 * r + C), at(input, 4 * r + 4 + N),
                                          at(input, 4 * r + 4 + CA));
    cis[r] = std::fabs(omega) < M_PI / 2;
  }
  std::vector<Spring> springs;
  for (int32_t p = 0; p < n_pairs; ++p) {
    const IdealPair& q = pairs[p];
    for (int64_t r = 0; r + q.offset < n_res; ++r)
      springs.push_back({static_cast<int32_t>(4 * r + q.a), static_cast<int32_t>(4 * (r + q.offset) + q.b),
                         q.offset && cis[r] ? q.cis_A : q.trans_A});
  }
  return springs;
}

// Atom pairs of residues at least 2 apart closer than their radius sum minus the allowed overlap plus
// a margin, with the distance below which they are pushed. Residue pairs whose CAs are too far apart
// for any of their atoms to meet are skipped, which is exact: each residue's reach from its CA is
// measured, not assumed.
std::vector<Spring> list_contacts(const double* x, int64_t n_res, const Options& opt) {
  const double r_max = *std::max_element(opt.radius_A, opt.radius_A + 4);
  const double reach = 2 * r_max - opt.allowed_overlap_A + opt.contact_margin_A;
  std::vector<double> spread(n_res);
  for (int64_t r = 0; r < n_res; ++r) {
    double s = 0;
    for (int a = 0; a < 4; ++a) s = std::max(s, detail::norm(at(x, 4 * r + a) - at(x, 4 * r + CA)));
    spread[r] = s;
  }
  std::vector<Spring> contacts;
  for (int64_t ri = 0; ri < n_res; ++ri) {
    const Vec3 ca_i = at(x, 4 * ri + CA);
    for (int64_t rj = ri + 2; rj < n_res; ++rj) {
      const double far = reach + spread[ri] + spread[rj];
      const Vec3 v = ca_i - at(x, 4 * rj + CA);
      if (detail::dot(v, v) >= far * far) continue;
      for (int a = 0; a < 4; ++a)
        for (int b = 0; b < 4; ++b) {
          const int64_t i = 4 * ri + a, j = 4 * rj + b;
          double limit = opt.radius_A[a] + opt.radius_A[b] - opt.allowed_overlap_A;
          if (detail::norm(at(x, i) - at(x, j)) >= limit + opt.contact_margin_A) continue;
          if (a == CA && b == CA) limit = std::max(limit, opt.ca_min_A);
          contacts.push_back({static_cast<int32_t>(i), static_cast<int32_t>(j), limit});
        }
    }
  }
  return contacts;
}

double springs(const double* x, double* g, const std::vector<Spring>& list, double weight, bool push_only) {
  double e = 0;
  for (const Spring& s : list) {
    const Vec3 v = at(x, s.i) - at(x, s.j);
    const double d = detail::norm(v) + 1e-9;
    double diff = d - s.target_A;
    if (push_only) {
      if (diff >= 0) continue;
    }
    e += diff * diff;
    const Vec3 f = (2 * weight * diff / d) * v;
    add(g, s.i, f);
    add(g, s.j, -1.0 * f);
  }
  return weight * e;
}

// Gradient of the dihedral p0-p1-p2-p3 with respect to each point (Blondel & Karplus 1996), with the
// reference's small guards against zero lengths.
void dihedral_gradient(Vec3 p0, Vec3 p1, Vec3 p2, Vec3 p3, Vec3 d[4]) {
  using detail::cross;
  using detail::dot;
  const Vec3 f = p0 - p1, g = p1 - p2, h = p3 - p2;
  const Vec3 a = cross(f, g), b = cross(h, g);
  const double g_norm = detail::norm(g) + 1e-9;
  const double a2 = dot(a, a) + 1e-9, b2 = dot(b, b) + 1e-9;
  const double fg = dot(f, g), hg = dot(h, g);
  d[0] = (-g_norm / a2) * a;
  d[3] = (g_norm / b2) * b;
  const Vec3 mix = (fg / (a2 * g_norm)) * a - (hg / (b2 * g_norm)) * b;
  d[1] = mix - d[0];
  d[2] = -1.0 * d[3] - mix;
}

// Cubic Hermite basis on [0, 1]: h[0], h[1] weigh the values at 0 and 1, h[2], h[3] the slopes;
// dh is its derivative.
struct Hermite {
  double h[4], dh[4];
  explicit Hermite(double t) {
    const double t2 = t * t, t3 = t2 * t;
    h[0] = 2 * t3 - 3 * t2 + 1, h[1] = -2 * t3 + 3 * t2, h[2] = t3 - 2 * t2 + t, h[3] = t3 - t2;
    dh[0] = 6 * t2 - 6 * t, dh[1] = -6 * t2 + 6 * t, dh[2] = 3 * t2 - 4 * t + 1, dh[3] = 3 * t2 - 2 * t;
  }
};

struct Interpolated {
  double value, d_phi, d_psi;
};

// The distance field of one class at (phi, psi) by bicubic Hermite interpolation between cell centres.
Interpolated interpolate(const RamaField& fd, int64_t offset, double phi, double psi) {
  const int64_t n = fd.bins;
  const double u = (phi + M_PI) / fd.step - 0.5, v = (psi + M_PI) / fd.step - 0.5;
  const double fu = std::floor(u), fv = std::floor(v);
  const Hermite hu(u - fu), hv(v - fv);
  const auto wrap = [n](double k) { return ((static_cast<int64_t>(k) % n) + n) % n; };
  const int64_t iu[2] = {wrap(fu), wrap(fu + 1)}, iv[2] = {wrap(fv), wrap(fv + 1)};
  Interpolated out{0, 0, 0};
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b) {
      const int64_t cell = offset + iu[a] * n + iv[b];
      // node data in grid units: value, slopes times the step, mixed slope times step squared
      const double f[4] = {fd.dist[cell], fd.d_phi[cell] * fd.step, fd.d_psi[cell] * fd.step,
                           fd.d_phi_psi[cell] * fd.step * fd.step};
      const int ku[4] = {a, a + 2, a, a + 2}, kv[4] = {b, b, b + 2, b + 2};
      for (int k = 0; k < 4; ++k) {
        out.value += f[k] * hu.h[ku[k]] * hv.h[kv[k]];
        out.d_phi += f[k] * hu.dh[ku[k]] * hv.h[kv[k]];
        out.d_psi += f[k] * hu.h[ku[k]] * hv.dh[kv[k]];
      }
    }
  out.d_phi /= fd.step;
  out.d_psi /= fd.step;
  return out;
}

// Each residue with both phi and psi is pulled toward the allowed region of its class: energy
// rama * dist(phi, psi)^2.
double ramachandran(const double* x, double* g, const FrameTerms& t) {
  const RamaField& fd = *t.field;
  const double w = t.opt->rama;
  const int64_t cells = int64_t{fd.bins} * fd.bins;
  double e = 0;
  for (int64_t r = 1; r + 1 < t.n_res; ++r) {
    const int64_t phi_atoms[4] = {4 * (r - 1) + C, 4 * r + N, 4 * r + CA, 4 * r + C};
    const int64_t psi_atoms[4] = {4 * r + N, 4 * r + CA, 4 * r + C, 4 * (r + 1) + N};
    const auto angle = [&](const int64_t* k) {
      return detail::dihedral(at(x, k[0]), at(x, k[1]), at(x, k[2]), at(x, k[3]));
    };
    const Interpolated d = interpolate(fd, t.rama_class[r] * cells, angle(phi_atoms), angle(psi_atoms));
    if (d.value <= 0) continue;  // inside the allowed region (the cubic may dip below 0 there)
    Vec3 d_phi[4], d_psi[4];  // only now: most residues are allowed and need no gradient
    dihedral_gradient(at(x, phi_atoms[0]), at(x, phi_atoms[1]), at(x, phi_atoms[2]), at(x, phi_atoms[3]), d_phi);
    dihedral_gradient(at(x, psi_atoms[0]), at(x, psi_atoms[1]), at(x, psi_atoms[2]), at(x, psi_atoms[3]), d_psi);
    e += d.value * d.value;
    const double c_phi = 2 * w * d.value * d.d_phi, c_psi = 2 * w * d.value * d.d_psi;
    for (int k = 0; k < 4; ++k) {
      add(g, phi_atoms[k], c_phi * d_phi[k]);
      add(g, psi_atoms[k], c_psi * d_psi[k]);
    }
  }
  return w * e;
}

double frame_energy(const double* x, double* g, const FrameTerms& t) {
  const Options& opt = *t.opt;
  const int64_t n = 12 * t.n_res;
  double e = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double dx = x[i] - t.input[i];
    e += dx * dx;
    g[i] = 2 * opt.restraint * dx;
  }
  e *= opt.restraint;
  e += springs(x, g, t.ideal, opt.geometry_weight, false);
  e += springs(x, g, t.contacts, opt.geometry_weight, true);
  if (t.field) e += ramachandran(x, g, t);
  return e;
}

void load_A(const float* xyz, int64_t n, double* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = 10.0 * static_cast<double>(xyz[i]);
}

void check_inputs(const float* xyz, int64_t n_frames, int64_t n_res, const IdealPair* pairs, int32_t n_pairs,
                  const int32_t* rama_class, const RamaField* field) {
  if (n_res < 2) throw std::invalid_argument("refinement needs at least 2 residues, got " + std::to_string(n_res));
  for (int64_t i = 0; i < n_frames * n_res * 12; ++i)
    if (!std::isfinite(xyz[i]))
      throw std::invalid_argument("backbone coordinates contain NaN or infinite values (frame " +
                                  std::to_string(i / (n_res * 12)) + ")");
  for (int32_t p = 0; p < n_pairs; ++p)
    if (pairs[p].a < 0 || pairs[p].a > 3 || pairs[p].b < 0 || pairs[p].b > 3 || pairs[p].offset < 0 ||
        pairs[p].offset > 1)
      throw std::invalid_argument("ideal pair " + std::to_string(p) + ": atoms must be 0..3 and offset 0 or 1");
  if (rama_class && field) {
    if (field->bins < 1 || !(field->step > 0))
      throw std::invalid_argument("Ramachandran field needs at least one bin and a positive step");
    for (int64_t r = 0; r < n_res; ++r)
      if (rama_class[r] < 0 || rama_class[r] >= field->n_classes)
        throw std::invalid_argument("residue " + std::to_string(r) + " has Ramachandran class " +
                                    std::to_string(rama_class[r]) + "; the field has " +
                                    std::to_string(field->n_classes) + " classes");
  }
}

FrameTerms terms(const double* input, int64_t n_res, const IdealPair* pairs, int32_t n_pairs,
                 const int32_t* rama_class, const RamaField* field, const Options& opt) {
  FrameTerms t;
  t.n_res = n_res;
  t.input = input;
  t.ideal = ideal_springs(input, n_res, pairs, n_pairs);
  const bool rama = rama_class && field && opt.rama > 0 && n_res > 2;
  t.rama_class = rama ? rama_class : nullptr;
  t.field = rama ? field : nullptr;
  t.opt = &opt;
  return t;
}

}  // namespace

void refine(const float* xyz, int64_t n_frames, int64_t n_res, const IdealPair* pairs, int32_t n_pairs,
            const int32_t* rama_class, const RamaField* field, const Options& options, float* out,
            FrameStats* stats) {
  check_inputs(xyz, n_frames, n_res, pairs, n_pairs, rama_class, field);
  const int64_t n = 12 * n_res;
  const int32_t rounds = std::max(options.rounds, 1);
  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    std::vector<double> input(n), x(n);
    detail::Lbfgs lbfgs(n, options.memory, options.max_step_A);
    for (int64_t f = begin; f < end; ++f) {
      load_A(xyz + f * n, n, input.data());
      x = input;  // warm start: the decoded frame itself
      FrameTerms t = terms(input.data(), n_res, pairs, n_pairs, rama_class, field, options);
      detail::LbfgsResult total{0, 0, 0, 0};
      for (int32_t round = 0; round < rounds; ++round) {  // contacts move with the atoms
        t.contacts = list_contacts(x.data(), n_res, options);
        const auto res = lbfgs.minimize([&](const double* p, double* g) { return frame_energy(p, g, t); },
                                        x.data(), options.iterations / rounds, options.gradient_tol);
        total = {res.f, res.max_gradient, total.iterations + res.iterations, total.evaluations + res.evaluations};
      }
      for (int64_t i = 0; i < n; ++i) out[f * n + i] = static_cast<float>(x[i] / 10.0);
      if (stats) stats[f] = {total.f, total.iterations, total.evaluations, total.max_gradient};
    }
  });
}

void energy(const float* xyz, const float* input, int64_t n_frames, int64_t n_res, const IdealPair* pairs,
            int32_t n_pairs, const int32_t* rama_class, const RamaField* field, const Options& options,
            double* energy_out, double* grad) {
  check_inputs(xyz, n_frames, n_res, pairs, n_pairs, rama_class, field);
  check_inputs(input, n_frames, n_res, pairs, n_pairs, rama_class, field);
  const int64_t n = 12 * n_res;
  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    std::vector<double> x0(n), x(n), g(n);
    for (int64_t f = begin; f < end; ++f) {
      load_A(input + f * n, n, x0.data());
      load_A(xyz + f * n, n, x.data());
      FrameTerms t = terms(x0.data(), n_res, pairs, n_pairs, rama_class, field, options);
      t.contacts = list_contacts(x.data(), n_res, options);
      energy_out[f] = frame_energy(x.data(), g.data(), t);
      if (grad) std::copy(g.begin(), g.end(), grad + f * n);
    }
  });
}

}  // namespace mdllm::refine
