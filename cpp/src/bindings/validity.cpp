// Thin bindings of mdllm/validity.hpp: sizes are checked, the GIL is released, outputs are
// allocated by the caller (mdllm.evaluate.validity).
#include "common.hpp"
#include "mdllm/validity.hpp"

#include <algorithm>

namespace mdllm::bindings {

namespace v = mdllm::validity;

void register_validity(py::module_& m) {
  m.def("check_bonds", [](InF32 xyz, int64_t f, int64_t l, py::array_t<uint8_t, py::array::c_style | py::array::forcecast> chain_end,
                          InF32 ideal, float max_z, float break_nm, py::array n_bond, py::array n_angle,
                          py::array n_breaks, py::array worst_bond, py::array worst_angle,
                          py::array worst_bond_res, py::array worst_angle_res) {
    require_size(xyz, f * l * 12, "xyz");
    require_size(chain_end, l, "chain_end");
    const v::IdealGeometry g = ideal_geometry(ideal);
    int32_t* nb = output<int32_t>(n_bond, f, "n_bond_outliers");
    int32_t* na = output<int32_t>(n_angle, f, "n_angle_outliers");
    int32_t* nk = output<int32_t>(n_breaks, f, "n_breaks");
    float* wb = output<float>(worst_bond, f, "worst_bond_z");
    float* wa = output<float>(worst_angle, f, "worst_angle_z");
    int32_t* rb = output<int32_t>(worst_bond_res, f, "worst_bond_res");
    int32_t* ra = output<int32_t>(worst_angle_res, f, "worst_angle_res");
    py::gil_scoped_release nogil;
    v::check_bonds(xyz.data(), f, l, chain_end.data(), g, max_z, break_nm, nb, na, nk, wb, wa, rb, ra);
  });
  m.def("find_clashes", [](InF32 xyz, int64_t f, int64_t l, InI32 chain_index, InF32 radius, float overlap_nm,
                           float ca_min_nm, int32_t min_separation, py::array n_clashes, py::array n_ca,
                           py::array worst_overlap, py::array worst_pair) {
    require_size(xyz, f * l * 12, "xyz");
    require_size(chain_index, l, "chain_index");
    require_size(radius, 4, "radius");
    int32_t* nc = output<int32_t>(n_clashes, f, "n_clashes");
    int32_t* nca = output<int32_t>(n_ca, f, "n_ca_clashes");
    float* wo = output<float>(worst_overlap, f, "worst_overlap");
    int32_t* wp = output<int32_t>(worst_pair, 2 * f, "worst_pair");
    py::gil_scoped_release nogil;
    v::find_clashes(xyz.data(), f, l, chain_index.data(), radius.data(), overlap_nm, ca_min_nm, min_separation,
                    nc, nca, wo, wp);
  });
}

}  // namespace mdllm::bindings
