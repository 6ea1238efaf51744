// Limited-memory BFGS (Nocedal & Wright, Numerical Optimization, algorithms 7.4 and 7.5) with a
// backtracking Armijo line search; private to the core. Double precision, no allocation per step.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace mdllm::detail {

struct LbfgsResult {
  double f;
  double max_gradient;
  int32_t iterations;
  int32_t evaluations;  // of f and its gradient
};

// Four partial sums: the compiler keeps them in vector registers without reassociating one sum.
inline double dot(const double* a, const double* b, int64_t n) {
  double s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) s[k] += a[i + k] * b[i + k];
  for (; i < n; ++i) s[0] += a[i] * b[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

inline double max_abs(const double* a, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i]));
  return m;
}

class Lbfgs {
 public:
  // max_move: the largest change of one variable in a trial step.
  Lbfgs(int64_t n, int memory, double max_move)
      : n_(n), m_(std::max(memory, 1)), max_move_(max_move), s_(m_ * n), y_(m_ * n), rho_(m_), alpha_(m_),
        g_(n), d_(n), x_new_(n), g_new_(n) {}

  // Minimises fg(x, grad) -> f from x (updated in place) until no gradient component exceeds
  // gradient_tol, max_iter iterations pass, no step along the search direction lowers f, or 2 max_iter
  // evaluations are spent (where line searches keep failing, e.g. around a dihedral of collinear
  // atoms, progress is too slow to be worth more).
  template <class Fn>
  LbfgsResult minimize(Fn&& fg, double* x, int32_t max_iter, double gradient_tol) {
    double* g = g_.data();
    double f = fg(x, g);
    int32_t evaluations = 1;
    int stored = 0, newest = -1;
    int32_t it = 0;
    for (; it < max_iter && evaluations < 2 * max_iter && max_abs(g, n_) > gradient_tol; ++it) {
      direction(g, stored, newest);
      double slope = dot(g, d_.data(), n_);
      if (!(slope < 0)) {  // not downhill (e.g. curvature pairs from a discontinuous term): restart
        stored = 0;
        direction(g, stored, newest);
        slope = dot(g, d_.data(), n_);
      }
      // Without curvature information the first step has length 0.1 (Å in the refinement; a guess).
      // No trial step moves a coordinate more than max_move: where the energy is steep (a dihedral of
      // nearly collinear atoms) the full step would be far off and cost many halvings to come back.
      double step = stored ? 1.0 : 0.1 / std::sqrt(dot(d_.data(), d_.data(), n_));
      step = std::min(step, max_move_ / max_abs(d_.data(), n_));
      double f_new = 0;
      bool moved = false;
      for (int tries = 0; tries < 20; ++tries) {
        for (int64_t i = 0; i < n_; ++i) x_new_[i] = x[i] + step * d_[i];
        f_new = fg(x_new_.data(), g_new_.data());
        ++evaluations;
        if (f_new <= f + 1e-4 * step * slope) {
          moved = true;
          break;
        }
        // minimiser of the quadratic through f, slope and f_new, kept within [0.1, 0.5] of the step
        const double q = -slope * step * step / (2 * (f_new - f - slope * step));
        step = std::clamp(std::isfinite(q) ? q : 0.5 * step, 0.1 * step, 0.5 * step);
      }
      if (!moved) {
        if (stored == 0) break;  // steepest descent cannot lower f either: a (numerical) minimum
        stored = 0;              // stale curvature: try once more from steepest descent
        --it;
        continue;
      }
      // keep s = x_new - x, y = g_new - g only when the curvature s.y is positive (Armijo alone
      // does not guarantee it)
      double sy = 0, ss = 0, yy = 0;
      for (int64_t i = 0; i < n_; ++i) {
        const double si = x_new_[i] - x[i], yi = g_new_[i] - g[i];
        sy += si * yi;
        ss += si * si;
        yy += yi * yi;
      }
      if (sy > 1e-12 * std::sqrt(ss * yy)) {
        newest = (newest + 1) % m_;
        double* s = &s_[newest * n_];
        double* y = &y_[newest * n_];
        for (int64_t i = 0; i < n_; ++i) {
          s[i] = x_new_[i] - x[i];
          y[i] = g_new_[i] - g[i];
        }
        rho_[newest] = 1.0 / sy;
        stored = std::min(stored + 1, m_);
      }
      std::copy(x_new_.begin(), x_new_.end(), x);
      std::copy(g_new_.begin(), g_new_.end(), g);
      f = f_new;
    }
    return {f, max_abs(g, n_), it, evaluations};
  }

 private:
  // d = -H g by the two-loop recursion over the `stored` newest pairs, H0 = (s.y / y.y) I.
  void direction(const double* g, int stored, int newest) {
    double* d = d_.data();
    for (int64_t i = 0; i < n_; ++i) d[i] = -g[i];
    for (int k = 0; k < stored; ++k) {
      const int j = (newest - k + m_) % m_;
      alpha_[j] = rho_[j] * dot(&s_[j * n_], d, n_);
      const double* y = &y_[j * n_];
      for (int64_t i = 0; i < n_; ++i) d[i] -= alpha_[j] * y[i];
    }
    if (stored) {
      const double* y = &y_[newest * n_];
      const double gamma = 1.0 / (rho_[newest] * dot(y, y, n_));
      for (int64_t i = 0; i < n_; ++i) d[i] *= gamma;
    }
    for (int k = stored - 1; k >= 0; --k) {
      const int j = (newest - k + m_) % m_;
      const double beta = rho_[j] * dot(&y_[j * n_], d, n_);
      const double* s = &s_[j * n_];
      for (int64_t i = 0; i < n_; ++i) d[i] += (alpha_[j] - beta) * s[i];
    }
  }

  int64_t n_;
  int m_;
  double max_move_;
  std::vector<double> s_, y_, rho_, alpha_, g_, d_, x_new_, g_new_;
};

}  // namespace mdllm::detail
