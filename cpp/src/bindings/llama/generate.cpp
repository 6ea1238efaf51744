// Thin bindings of mdllm/generate.hpp (compiled only when llama.cpp was found at build time).
#include <optional>
#include <stdexcept>

#include <pybind11/stl.h>

#include "../common.hpp"
#include "mdllm/generate.hpp"

namespace mdllm::bindings {

namespace gen = mdllm::generation;

namespace {

std::vector<int32_t> to_vector(const InI32& a) { return std::vector<int32_t>(a.data(), a.data() + a.size()); }

}  // namespace

void register_generate(py::module_& m) {
  py::class_<gen::FrameLayout>(m, "FrameLayout")
      .def(py::init([](int32_t begin, int32_t end, int32_t separator, int64_t residues, int32_t fine_begin,
                       int32_t fine_end, std::optional<InU8> fine_after) {
             gen::FrameLayout layout{begin, end, separator, residues, fine_begin, fine_end, {}};
             if (fine_after) layout.fine_after.assign(fine_after->data(), fine_after->data() + fine_after->size());
             return layout;
           }),
           py::arg("structure_begin"), py::arg("structure_end"), py::arg("separator"), py::arg("residues"),
           py::arg("fine_begin") = 0, py::arg("fine_end") = 0, py::arg("fine_after") = py::none())
      .def_readonly("structure_begin", &gen::FrameLayout::structure_begin)
      .def_readonly("structure_end", &gen::FrameLayout::structure_end)
      .def_readonly("separator", &gen::FrameLayout::separator)
      .def_readonly("residues", &gen::FrameLayout::residues)
      .def_readonly("fine_begin", &gen::FrameLayout::fine_begin)
      .def_readonly("fine_end", &gen::FrameLayout::fine_end);

  py::class_<gen::Model>(m, "LlamaModel")
      .def(py::init([](const std::string& path, int gpu_layers, int threads) {
             py::gil_scoped_release nogil;
             return new gen::Model(path, gen::ModelOptions{gpu_layers, threads});
           }),
           py::arg("path"), py::arg("gpu_layers") = 0, py::arg("threads") = 0)
      .def_property_readonly("vocab_size", &gen::Model::vocab_size)
      .def("metadata", &gen::Model::metadata)
      .def("generate", [](gen::Model& model, InI32 prefix, InI32 start, const gen::FrameLayout& layout,
                          int64_t frames, int64_t walkers, int64_t window, float temperature, int32_t top_k,
                          float top_p, float min_p, uint64_t seed, bool kv_shift, py::object progress,
                          py::object frame_check, int64_t max_tries, py::object constraint,
                          py::object link_guard, int64_t decoded_tries, py::object repair,
                          std::optional<InI32> start_fine) {
        gen::Options opt{frames, walkers, window, {temperature, top_k, top_p, min_p}, seed, kv_shift, max_tries};
        // Constrained decoding: a ChainConstraint (held alive by the caller's reference for the call)
        if (!constraint.is_none()) opt.constraint = constraint.cast<const mdllm::ChainConstraint*>();
        opt.decoded_tries = decoded_tries;
        if (!link_guard.is_none()) opt.link_guard = link_guard.cast<const mdllm::ChainConstraint*>();
        if (!repair.is_none()) opt.repair = repair.cast<const mdllm::FrameRepair*>();
        gen::Progress callback;
        if (!progress.is_none())
          callback = [progress](int64_t done) {
            py::gil_scoped_acquire gil;
            return progress(done).cast<bool>();
          };
        // The guard: frame_check(tokens (walkers, residues) int32, fine (same, or None), fresh (walkers,) bool)
        // -> accept (walkers,) bool
        gen::FrameCheck check;
        if (!frame_check.is_none())
          check = [frame_check](const int32_t* tokens, const int32_t* fine, const uint8_t* fresh, int64_t n, int64_t l,
                                uint8_t* accept) {
            py::gil_scoped_acquire gil;
            py::array_t<int32_t> t({n, l});
            py::array_t<bool> f(n);
            std::copy_n(tokens, n * l, t.mutable_data());
            py::object fine_array = py::none();
            if (fine) {
              py::array_t<int32_t> fa({n, l});
              std::copy_n(fine, n * l, fa.mutable_data());
              fine_array = fa;
            }
            for (int64_t i = 0; i < n; ++i) f.mutable_data()[i] = fresh[i] != 0;
            auto a = py::array_t<bool, py::array::c_style | py::array::forcecast>(frame_check(t, fine_array, f));
            if (a.size() != n) throw std::invalid_argument("frame_check must return one flag per walker");
            for (int64_t i = 0; i < n; ++i) accept[i] = a.data()[i] ? 1 : 0;
          };
        const auto p = to_vector(prefix), s = to_vector(start);
        const std::vector<int32_t> sf = start_fine ? to_vector(*start_fine) : std::vector<int32_t>{};
        gen::Trajectories t = [&] {
          py::gil_scoped_release nogil;
          return model.generate(p, s, layout, opt, callback, check, sf);
        }();
        py::array_t<int32_t> tokens({t.walkers, t.frames, t.residues});
        py::array_t<float> logprobs({t.walkers, t.frames, t.residues + 1});
        py::array_t<int32_t> redraws({t.walkers, t.frames});
        std::copy(t.tokens.begin(), t.tokens.end(), tokens.mutable_data());
        std::copy(t.logprobs.begin(), t.logprobs.end(), logprobs.mutable_data());
        std::copy(t.redraws.begin(), t.redraws.end(), redraws.mutable_data());
        py::array_t<int32_t> residue_redraws({t.walkers, t.frames});
        std::copy(t.residue_redraws.begin(), t.residue_redraws.end(), residue_redraws.mutable_data());
        py::dict timing;
        timing["prompt_seconds"] = t.prompt_seconds;
        timing["generate_seconds"] = t.generate_seconds;
        timing["guard_check_seconds"] = t.check_seconds;
        timing["tokens_decoded"] = t.tokens_decoded;
        if (opt.constraint) {
          timing["constraint_seconds"] = t.constraint_seconds;
          timing["constrained_draws"] = t.constrained_draws;
          timing["empty_masks"] = t.empty_masks;
          timing["allowed_codes"] = t.allowed_codes;
          timing["decoded_redraws"] = t.decoded_redraws;
          timing["decoded_kept"] = t.decoded_kept;
        }
        if (opt.repair) {
          py::array_t<int32_t> repaired({t.walkers, t.frames});
          std::copy(t.repaired.begin(), t.repaired.end(), repaired.mutable_data());
          timing["repaired"] = repaired;
          timing["repair_failed"] = t.repair_failed;
          timing["repair_judged"] = t.repair_judged;
          timing["repair_seconds"] = t.repair_seconds;
        }
        if (opt.link_guard) {
          timing["link_guard_seconds"] = t.link_guard_seconds;
          timing["link_guard_kept"] = t.link_guard_kept;
        }
        if (layout.has_fine()) {
          py::array_t<int32_t> fine({t.walkers, t.frames, t.residues});
          py::array_t<float> fine_logprobs({t.walkers, t.frames, t.residues});
          std::copy(t.fine.begin(), t.fine.end(), fine.mutable_data());
          std::copy(t.fine_logprobs.begin(), t.fine_logprobs.end(), fine_logprobs.mutable_data());
          timing["fine"] = fine;
          timing["fine_logprobs"] = fine_logprobs;
        }
        return py::make_tuple(tokens, logprobs, timing, redraws, residue_redraws);
      },
           py::arg("prefix"), py::arg("start_frames"), py::arg("layout"), py::arg("frames"), py::arg("walkers"),
           py::arg("window"), py::arg("temperature"), py::arg("top_k"), py::arg("top_p"), py::arg("min_p"),
           py::arg("seed"), py::arg("kv_shift") = true, py::arg("progress") = py::none(),
           py::arg("frame_check") = py::none(), py::arg("max_tries") = 0, py::arg("constraint") = py::none(),
           py::arg("link_guard") = py::none(), py::arg("decoded_tries") = 0, py::arg("repair") = py::none(),
           py::arg("start_fine") = py::none())
      // (frames, residues + 1) log-probabilities; with fine tokens (frames * residues, -1 where none) also
      // those of the fine tokens, (frames, residues): then a tuple.
      .def("score", [](gen::Model& model, InI32 prefix, InI32 frames, const gen::FrameLayout& layout, int64_t window,
                       std::optional<InI32> fine) {
        const auto p = to_vector(prefix), f = to_vector(frames);
        const std::vector<int32_t> fv = fine ? to_vector(*fine) : std::vector<int32_t>{};
        std::vector<float> fine_lp;
        std::vector<float> lp = [&] {
          py::gil_scoped_release nogil;
          return model.score(p, f, layout, window, fv, &fine_lp);
        }();
        const int64_t n = static_cast<int64_t>(f.size()) / layout.residues;
        py::array_t<float> out({n, layout.residues + 1});
        std::copy(lp.begin(), lp.end(), out.mutable_data());
        if (!fine) return py::object(out);
        py::array_t<float> fine_out({n, layout.residues});
        std::copy(fine_lp.begin(), fine_lp.end(), fine_out.mutable_data());
        return py::object(py::make_tuple(out, fine_out));
      }, py::arg("prefix"), py::arg("frames"), py::arg("layout"), py::arg("window"), py::arg("fine") = py::none())
      .def("raw_decode_tokens_per_second", [](gen::Model& model, int64_t batch, int64_t steps, int64_t context) {
        return [&] {
          py::gil_scoped_release nogil;
          return model.raw_decode_tokens_per_second(batch, steps, context);
        }();
      });
}

}  // namespace mdllm::bindings
