// Thin bindings of mdllm/geometry.hpp: sizes are checked, the GIL is released, outputs are
// allocated by the caller (mdllm.geometry).
#include "common.hpp"
#include "mdllm/geometry.hpp"
#include "mdllm/projection.hpp"

namespace mdllm::bindings {

namespace g = mdllm::geometry;

void register_geometry(py::module_& m) {
  m.def("rigid_frames", [](InF32 xyz, int64_t f, int64_t l, py::array rot, py::array trans) {
    require_size(xyz, f * l * 12, "xyz");
    float* r = output<float>(rot, f * l * 9, "rotations");
    float* t = output<float>(trans, f * l * 3, "translations");
    py::gil_scoped_release nogil;
    g::rigid_frames(xyz.data(), f, l, r, t);
  });
  m.def("to_local", [](InF32 rot, InF32 trans, InF32 pts, int64_t f, int64_t l, int64_t p, py::array out) {
    require_size(rot, f * l * 9, "rotations");
    require_size(trans, f * l * 3, "translations");
    require_size(pts, f * l * p * 3, "points");
    float* o = output<float>(out, f * l * p * 3, "out");
    py::gil_scoped_release nogil;
    g::to_local(rot.data(), trans.data(), pts.data(), f, l, p, o);
  });
  m.def("to_global", [](InF32 rot, InF32 trans, InF32 pts, int64_t f, int64_t l, int64_t p, py::array out) {
    require_size(rot, f * l * 9, "rotations");
    require_size(trans, f * l * 3, "translations");
    require_size(pts, f * l * p * 3, "local");
    float* o = output<float>(out, f * l * p * 3, "out");
    py::gil_scoped_release nogil;
    g::to_global(rot.data(), trans.data(), pts.data(), f, l, p, o);
  });
  m.def("dihedrals", [](InF32 xyz, int64_t f, int64_t l, py::array phi, py::array psi, py::array omega) {
    require_size(xyz, f * l * 12, "xyz");
    float* a = output<float>(phi, f * l, "phi");
    float* b = output<float>(psi, f * l, "psi");
    float* c = output<float>(omega, f * l, "omega");
    py::gil_scoped_release nogil;
    g::dihedrals(xyz.data(), f, l, a, b, c);
  });
  m.def("internal_coordinates", [](InF32 xyz, int64_t f, int64_t l, py::array bonds, py::array angles,
                                   py::array torsions) {
    require_size(xyz, f * l * 12, "xyz");
    float* b = output<float>(bonds, f * l * 4, "bonds");
    float* a = output<float>(angles, f * l * 4, "angles");
    float* t = output<float>(torsions, f * l * 4, "torsions");
    py::gil_scoped_release nogil;
    g::internal_coordinates(xyz.data(), f, l, b, a, t);
  });
  m.def("nerf", [](InF32 bonds, InF32 angles, InF32 torsions, int64_t f, int64_t l, py::array xyz) {
    require_size(bonds, f * l * 4, "bonds");
    require_size(angles, f * l * 4, "angles");
    require_size(torsions, f * l * 4, "torsions");
    float* o = output<float>(xyz, f * l * 12, "xyz");
    py::gil_scoped_release nogil;
    g::nerf(bonds.data(), angles.data(), torsions.data(), f, l, o);
  });
  m.def("rmsd_to_reference", [](InF32 pts, int64_t f, int64_t n, InF32 ref, py::array out) {
    require_size(pts, f * n * 3, "points");
    require_size(ref, n * 3, "reference");
    float* o = output<float>(out, f, "rmsd");
    py::gil_scoped_release nogil;
    g::rmsd_to_reference(pts.data(), f, n, ref.data(), o);
  });
  m.def("superpose", [](py::array pts, int64_t f, int64_t n, InF32 ref, py::array out) {
    float* p = output<float>(pts, f * n * 3, "points");
    require_size(ref, n * 3, "reference");
    float* o = output<float>(out, f, "rmsd");
    py::gil_scoped_release nogil;
    g::superpose(p, f, n, ref.data(), o);
  });
  m.def("pairwise_rmsd", [](InF32 pts, int64_t f, int64_t n, py::array out) {
    require_size(pts, f * n * 3, "points");
    float* o = output<float>(out, f * f, "out");
    py::gil_scoped_release nogil;
    g::pairwise_rmsd(pts.data(), f, n, o);
  });
  m.def("project_to_key_geometry", [](InF32 xyz, int64_t f, int64_t l, InF32 key, int iterations, py::array out) {
    require_size(xyz, f * l * 12, "xyz");
    require_size(key, l * 12, "key");
    float* o = output<float>(out, f * l * 12, "out");
    py::gil_scoped_release nogil;
    mdllm::projection::project_to_key_geometry(xyz.data(), f, l, key.data(), o, iterations);
  });
}

}  // namespace mdllm::bindings
