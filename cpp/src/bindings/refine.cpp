// Thin bindings of mdllm/refine.hpp: sizes are checked, the GIL is released, outputs are allocated by
// the caller (mdllm.geometry.refine, which also builds the ideal pairs and the Ramachandran field).
#include "common.hpp"
#include "mdllm/refine.hpp"

#include <pybind11/stl.h>

#include <vector>

namespace mdllm::bindings {

namespace r = mdllm::refine;
using InF64 = py::array_t<double, py::array::c_style | py::array::forcecast>;

namespace {

// pairs: (P, 5) rows of atom a, atom b, residue offset, trans distance, cis distance (Å)
std::vector<r::IdealPair> ideal_pairs(const InF64& pairs) {
  if (pairs.ndim() != 2 || pairs.shape(1) != 5) throw py::value_error("pairs: expected shape (P, 5)");
  std::vector<r::IdealPair> out;
  for (py::ssize_t p = 0; p < pairs.shape(0); ++p)
    out.push_back({static_cast<int32_t>(pairs.at(p, 0)), static_cast<int32_t>(pairs.at(p, 1)),
                   static_cast<int32_t>(pairs.at(p, 2)), pairs.at(p, 3), pairs.at(p, 4)});
  return out;
}

// The Ramachandran term is on when rama_class has L entries, off when it is empty; grids: (4, classes,
// n, n) distance, its phi, psi and mixed derivatives.
r::RamaField rama_field(const InI32& rama_class, const InF64& grids, double step, int64_t l) {
  r::RamaField field;
  if (rama_class.size() == 0) return field;
  require_size(rama_class, l, "rama_class");
  if (grids.ndim() != 4 || grids.shape(0) != 4 || grids.shape(2) != grids.shape(3))
    throw py::value_error("rama grids: expected shape (4, classes, n, n)");
  const int64_t size = grids.size() / 4;
  field = {grids.data(), grids.data() + size, grids.data() + 2 * size, grids.data() + 3 * size,
           static_cast<int32_t>(grids.shape(1)), static_cast<int32_t>(grids.shape(2)), step};
  return field;
}

r::Options options(const py::dict& o) {
  r::Options opt;
  for (auto [key, value] : o) {
    const auto k = key.cast<std::string>();
    if (k == "geometry_weight") opt.geometry_weight = value.cast<double>();
    else if (k == "restraint") opt.restraint = value.cast<double>();
    else if (k == "rama") opt.rama = value.cast<double>();
    else if (k == "radius_A") {
      const auto v = value.cast<std::vector<double>>();
      if (v.size() != 4) throw py::value_error("radius_A: expected 4 radii (N, CA, C, O)");
      std::copy(v.begin(), v.end(), opt.radius_A);
    } else if (k == "allowed_overlap_A") opt.allowed_overlap_A = value.cast<double>();
    else if (k == "ca_min_A") opt.ca_min_A = value.cast<double>();
    else if (k == "contact_margin_A") opt.contact_margin_A = value.cast<double>();
    else if (k == "iterations") opt.iterations = value.cast<int32_t>();
    else if (k == "rounds") opt.rounds = value.cast<int32_t>();
    else if (k == "memory") opt.memory = value.cast<int32_t>();
    else if (k == "max_step_A") opt.max_step_A = value.cast<double>();
    else if (k == "gradient_tol") opt.gradient_tol = value.cast<double>();
    else throw py::value_error("unknown refinement option '" + k + "'");
  }
  return opt;
}

}  // namespace

void register_refine(py::module_& m) {
  m.def("refine", [](InF32 xyz, int64_t f, int64_t l, InF64 pairs, InI32 rama_class, InF64 dist, double step,
                     py::dict opts, py::array out, py::array energy, py::array iterations, py::array evaluations,
                     py::array max_gradient) {
    require_size(xyz, f * l * 12, "xyz");
    const auto p = ideal_pairs(pairs);
    const r::RamaField field = rama_field(rama_class, dist, step, l);
    const r::Options opt = options(opts);
    float* o = output<float>(out, f * l * 12, "out");
    double* e = output<double>(energy, f, "energy");
    int32_t* it = output<int32_t>(iterations, f, "iterations");
    int32_t* ev = output<int32_t>(evaluations, f, "evaluations");
    double* mg = output<double>(max_gradient, f, "max_gradient");
    std::vector<r::FrameStats> stats(f);
    {
      py::gil_scoped_release nogil;
      r::refine(xyz.data(), f, l, p.data(), static_cast<int32_t>(p.size()), field.dist ? rama_class.data() : nullptr,
                field.dist ? &field : nullptr, opt, o, stats.data());
    }
    for (int64_t k = 0; k < f; ++k) {
      e[k] = stats[k].energy;
      it[k] = stats[k].iterations;
      ev[k] = stats[k].evaluations;
      mg[k] = stats[k].max_gradient;
    }
  });
  m.def("refine_energy", [](InF32 xyz, InF32 input, int64_t f, int64_t l, InF64 pairs, InI32 rama_class,
                            InF64 dist, double step, py::dict opts, py::array energy, py::array grad) {
    require_size(xyz, f * l * 12, "xyz");
    require_size(input, f * l * 12, "input");
    const auto p = ideal_pairs(pairs);
    const r::RamaField field = rama_field(rama_class, dist, step, l);
    const r::Options opt = options(opts);
    double* e = output<double>(energy, f, "energy");
    double* g = output<double>(grad, f * l * 12, "grad");
    py::gil_scoped_release nogil;
    r::energy(xyz.data(), input.data(), f, l, p.data(), static_cast<int32_t>(p.size()),
              field.dist ? rama_class.data() : nullptr, field.dist ? &field : nullptr, opt, e, g);
  });
}

}  // namespace mdllm::bindings
