// Small 3-vector in double precision for the geometry kernels; private to the core.
#pragma once

#include <cmath>

namespace mdllm::detail {

struct Vec3 {
  double x = 0, y = 0, z = 0;
};

inline Vec3 load(const float* p) { return {p[0], p[1], p[2]}; }
inline void store(const Vec3& v, float* p) {
  p[0] = static_cast<float>(v.x);
  p[1] = static_cast<float>(v.y);
  p[2] = static_cast<float>(v.z);
}
inline Vec3 operator+(Vec3 a, Vec3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
inline Vec3 operator-(Vec3 a, Vec3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
inline Vec3 operator*(double s, Vec3 a) { return {s * a.x, s * a.y, s * a.z}; }
inline double dot(Vec3 a, Vec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
inline Vec3 cross(Vec3 a, Vec3 b) {
  return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}
inline double norm(Vec3 a) { return std::sqrt(dot(a, a)); }
inline Vec3 normalized(Vec3 a) { return (1.0 / norm(a)) * a; }

// Angle at b between a-b and c-b, radians; atan2 form stays accurate near 0 and pi.
inline double angle(Vec3 a, Vec3 b, Vec3 c) {
  const Vec3 u = a - b, v = c - b;
  return std::atan2(norm(cross(u, v)), dot(u, v));
}

// IUPAC dihedral of a-b-c-d in (-pi, pi].
inline double dihedral(Vec3 a, Vec3 b, Vec3 c, Vec3 d) {
  const Vec3 b1 = b - a, b2 = c - b, b3 = d - c;
  const Vec3 n1 = cross(b1, b2), n2 = cross(b2, b3);
  return std::atan2(norm(b2) * dot(b1, n2), dot(n1, n2));
}

// The same in degrees, (-180, 180], as Ramachandran grids are binned.
inline double dihedral_deg(Vec3 a, Vec3 b, Vec3 c, Vec3 d) {
  return dihedral(a, b, c, d) * 180.0 / 3.14159265358979323846;
}

// A residue's rigid frame as motion tokens use it: e1 along CA->C, e2 the part of N-CA normal to e1,
// e3 = e1 x e2. Degenerate residues (|C - CA| or that normal part shorter than min_length) are reported,
// not framed.
enum class FrameStatus { kOk, kCaCCoincide, kCollinear };
inline FrameStatus residue_frame(Vec3 n, Vec3 ca, Vec3 c, double min_length, Vec3& e1, Vec3& e2, Vec3& e3) {
  const Vec3 d = c - ca;
  const double ld = norm(d);
  if (!(ld >= min_length)) return FrameStatus::kCaCCoincide;
  e1 = {d.x / ld, d.y / ld, d.z / ld};
  const Vec3 u = n - ca;
  const Vec3 w = u - dot(u, e1) * e1;
  const double lw = norm(w);
  if (!(lw >= min_length)) return FrameStatus::kCollinear;
  e2 = {w.x / lw, w.y / lw, w.z / lw};
  e3 = cross(e1, e2);
  return FrameStatus::kOk;
}

// NeRF step: the point d with |d-c| = bond, angle(b, c, d) = theta, dihedral(a, b, c, d) = chi.
inline Vec3 place(Vec3 a, Vec3 b, Vec3 c, double bond, double theta, double chi) {
  const Vec3 bc = normalized(c - b);
  const Vec3 n = normalized(cross(b - a, bc));
  const Vec3 m = cross(n, bc);
  const double dx = -bond * std::cos(theta);
  const double dy = bond * std::sin(theta) * std::cos(chi);
  const double dz = bond * std::sin(theta) * std::sin(chi);
  return c + dx * bc + dy * m + dz * n;
}

}  // namespace mdllm::detail
