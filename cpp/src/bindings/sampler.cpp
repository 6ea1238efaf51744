// Thin bindings of mdllm/sampler.hpp.
#include <pybind11/stl.h>

#include <algorithm>
#include <optional>
#include <stdexcept>

#include "common.hpp"
#include "mdllm/chain_constraint.hpp"
#include "mdllm/frame_repair.hpp"
#include "mdllm/sampler.hpp"

namespace mdllm::bindings {

namespace s = mdllm::sampling;
using InU64 = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;
static_assert(sizeof(s::Allowed) == 2 * sizeof(int32_t), "allowed ranges are passed as (rows, 2) int32");

void register_sampler(py::module_& m) {
  // Constrained decoding of motion tokens (mdllm/chain_constraint.hpp); shapes are checked in
  // mdllm.sampling.constraint, sizes here.
  py::class_<mdllm::ChainConstraint>(m, "ChainConstraint")
      .def(py::init([](InF32 codebook, int64_t n_codes, InF32 key, int64_t n_res, InI32 classes, InU8 levels,
                       int64_t n_bins, double bin_deg, InU8 linked, double link_tolerance_nm, bool ramachandran,
                       double clash_overlap_nm, double ca_min_nm, int64_t local_reach, double neighbour_cutoff_nm,
                       double break_nm, bool link_cn, bool link_angles, bool relax_when_empty) {
             require_size(codebook, n_codes * 12, "codebook");
             require_size(key, n_res * 12, "key");
             require_size(classes, n_res, "classes");
             require_size(levels, 4 * n_bins * n_bins, "levels");
             require_size(linked, std::max<int64_t>(n_res - 1, 0), "linked");
             const mdllm::ChainConstraintParams p{link_tolerance_nm, link_cn, ramachandran,
                                                  clash_overlap_nm, ca_min_nm, local_reach,
                                                  neighbour_cutoff_nm, break_nm, link_angles, relax_when_empty};
             return new mdllm::ChainConstraint(codebook.data(), n_codes, key.data(), n_res, classes.data(),
                                               levels.data(), n_bins, bin_deg, linked.data(), p);
           }),
           py::arg("codebook"), py::arg("n_codes"), py::arg("key"), py::arg("n_res"), py::arg("classes"),
           py::arg("levels"), py::arg("n_bins"), py::arg("bin_deg"), py::arg("linked"), py::arg("link_tolerance_nm"),
           py::arg("ramachandran"), py::arg("clash_overlap_nm"), py::arg("ca_min_nm"), py::arg("local_reach"),
           py::arg("neighbour_cutoff_nm"), py::arg("break_nm"), py::arg("link_cn") = true,
           py::arg("link_angles") = true, py::arg("relax_when_empty") = true)
      .def_property_readonly("codes", &mdllm::ChainConstraint::codes)
      .def_property_readonly("residues", &mdllm::ChainConstraint::residues)
      .def("linked", &mdllm::ChainConstraint::linked)
      .def("mask", [](const mdllm::ChainConstraint& c, int64_t j, InI32 drawn, py::array allowed) {
        if (drawn.size() < j) throw std::invalid_argument("mask: need the codes of residues 0 .. j-1");
        uint8_t* out = output<uint8_t>(allowed, c.codes(), "allowed");
        py::gil_scoped_release nogil;
        return c.mask(j, drawn.data(), out);
      })
      .def("allows", [](const mdllm::ChainConstraint& c, int64_t j, InI32 drawn, int32_t code) {
        if (drawn.size() < j) throw std::invalid_argument("allows: need the codes of residues 0 .. j-1");
        return c.allows(j, drawn.data(), code);
      })
      .def(
          "attach_decoder",
          [](mdllm::ChainConstraint& c, const mdllm::MotionContextDecoder& d, std::optional<InI32> classes) {
            if (classes) require_size(*classes, c.residues(), "classes");
            c.attach_decoder(d, classes ? classes->data() : nullptr);
          },
          py::arg("decoder"), py::arg("classes"), py::keep_alive<1, 2>())
      .def_property_readonly("decodes", &mdllm::ChainConstraint::decodes)
      .def("allows_decoded", [](const mdllm::ChainConstraint& c, int64_t j, InI32 drawn) {
        if (drawn.size() <= j) throw std::invalid_argument("allows_decoded: need the codes of residues 0 .. j");
        return c.allows_decoded(j, drawn.data());
      });
  // Frame repair of motion tokens (mdllm/frame_repair.hpp); shapes are checked in mdllm.sampling.repair.
  py::class_<mdllm::FrameRepair>(m, "FrameRepair")
      .def(py::init([](const mdllm::MotionTokenizer& tokenizer, const mdllm::MotionContextDecoder* decoder, InF32 key,
                       int64_t n_res, InI32 classes, std::optional<InI32> decoder_classes, InI32 chain, InU8 levels,
                       int64_t n_bins, double bin_deg, InF32 ideal, float max_z, double break_nm,
                       double clash_overlap_nm, double ca_min_nm, int64_t min_separation, double max_rama_fraction,
                       int64_t max_changes, int64_t candidates, int64_t wide_candidates) {
             require_size(key, n_res * 12, "key");
             require_size(classes, n_res, "classes");
             if (decoder_classes) require_size(*decoder_classes, n_res, "decoder classes");
             require_size(chain, n_res, "chain");
             require_size(levels, 4 * n_bins * n_bins, "levels");
             const mdllm::validity::IdealGeometry g = ideal_geometry(ideal);
             const mdllm::FrameRepairParams p{max_z,         break_nm,          clash_overlap_nm, ca_min_nm,
                                              min_separation, max_rama_fraction, max_changes,      candidates,
                                              wide_candidates};
             return new mdllm::FrameRepair(tokenizer, decoder, key.data(), n_res, classes.data(),
                                           decoder_classes ? decoder_classes->data() : nullptr, chain.data(),
                                           levels.data(), n_bins, bin_deg, g, p);
           }),
           py::arg("tokenizer"), py::arg("decoder"), py::arg("key"), py::arg("n_res"), py::arg("classes"),
           py::arg("decoder_classes"), py::arg("chain"), py::arg("levels"), py::arg("n_bins"), py::arg("bin_deg"),
           py::arg("ideal"), py::arg("max_z"), py::arg("break_nm"), py::arg("clash_overlap_nm"), py::arg("ca_min_nm"),
           py::arg("min_separation"), py::arg("max_rama_fraction"), py::arg("max_changes"), py::arg("candidates"),
           py::arg("wide_candidates"),
           py::keep_alive<1, 2>(), py::keep_alive<1, 3>())
      .def_property_readonly("residues", &mdllm::FrameRepair::residues)
      .def_property_readonly("codes", &mdllm::FrameRepair::codes)
      .def_property_readonly("has_fine", &mdllm::FrameRepair::has_fine)
      .def("use_fine_codes", &mdllm::FrameRepair::use_fine_codes)
      .def("decode", [](const mdllm::FrameRepair& r, InI32 codes, py::array out, std::optional<InI32> fine) {
        require_size(codes, r.residues(), "codes");
        if (fine) require_size(*fine, r.residues(), "fine");
        for (int64_t i = 0; i < r.residues(); ++i)
          if (codes.data()[i] < 0 || codes.data()[i] >= r.codes()) throw std::invalid_argument("code out of range");
        float* xyz = output<float>(out, r.residues() * 12, "out");
        py::gil_scoped_release nogil;
        r.decode(codes.data(), xyz, fine ? fine->data() : nullptr);
      }, py::arg("codes"), py::arg("out"), py::arg("fine") = py::none())
      .def("faults", [](const mdllm::FrameRepair& r, InF32 xyz) {
        require_size(xyz, r.residues() * 12, "xyz");
        const auto f = r.faults(xyz.data());
        py::dict d;
        d["rama"] = f.rama;
        d["geometry"] = f.geometry;
        d["clashes"] = f.clashes;
        d["defined"] = f.defined;
        d["score"] = f.score();
        d["valid"] = f.valid(r.params().max_rama_fraction);
        return d;
      })
      .def("repair", [](const mdllm::FrameRepair& r, py::array codes, InF32 logits, std::optional<py::array> fine) {
        int32_t* c = output<int32_t>(codes, r.residues(), "codes");
        int32_t* f = fine ? output<int32_t>(*fine, r.residues(), "fine") : nullptr;
        require_size(logits, r.residues() * r.codes(), "logits");
        mdllm::FrameRepair::Outcome o;
        {
          py::gil_scoped_release nogil;
          o = r.repair(c, logits.data(), r.codes(), f);
        }
        py::dict d;
        d["changed"] = o.changed;
        d["judged"] = o.judged;
        d["valid"] = o.valid;
        d["was_valid"] = o.was_valid;
        return d;
      }, py::arg("codes"), py::arg("logits"), py::arg("fine") = py::none());
  m.def("counter_uniform", &s::counter_uniform, py::arg("seed"), py::arg("walker"), py::arg("step"));
  m.def("sample", [](InF32 logits, int64_t rows, int64_t vocab, InI32 allowed, float temperature,
                     int32_t top_k, float top_p, float min_p, uint64_t seed, InU64 walkers, InU64 steps,
                     py::array tokens, py::array logprobs) {
    require_size(logits, rows * vocab, "logits");
    require_size(allowed, rows * 2, "allowed");
    require_size(walkers, rows, "walkers");
    require_size(steps, rows, "steps");
    int32_t* tok = output<int32_t>(tokens, rows, "tokens");
    float* lp = output<float>(logprobs, rows, "logprobs");
    const auto* ranges = reinterpret_cast<const s::Allowed*>(allowed.data());
    const s::Params params{temperature, top_k, top_p, min_p};
    {  // bad input: std::invalid_argument, which module.cpp turns into MdllmError
      py::gil_scoped_release nogil;
      s::sample(logits.data(), rows, vocab, ranges, params, seed, walkers.data(), steps.data(), tok, lp);
    }
  });
  m.def("token_logprobs", [](InF32 logits, int64_t rows, int64_t vocab, InI32 tokens, py::array logprobs) {
    require_size(logits, rows * vocab, "logits");
    require_size(tokens, rows, "tokens");
    float* lp = output<float>(logprobs, rows, "logprobs");
    {  // bad input: std::invalid_argument, which module.cpp turns into MdllmError
      py::gil_scoped_release nogil;
      s::token_logprobs(logits.data(), rows, vocab, tokens.data(), lp);
    }
  });
}

}  // namespace mdllm::bindings
