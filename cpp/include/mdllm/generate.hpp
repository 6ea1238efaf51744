// Rolling-window generation of structure-token trajectories with llama.cpp.
//
// The model's text is a conditioning prefix followed by frames; a frame is `residues` structure
// tokens and one separator (with fine codes, FrameLayout, each structure token is followed by its fine
// token or <f_none>: 2 residues + 1 tokens). While a frame is generated the model sees the prefix and the last
// `window` complete frames. When a new frame would overflow the window, the oldest frame is removed
// from llama.cpp's KV cache and the later positions are shifted down, so nothing is re-evaluated.
// Many walkers (one llama.cpp sequence each) advance in one batch; each walker draws its random
// numbers from (seed, walker, step) alone. A model whose GGUF has `mdllm.frame_span` = S runs with
// rotary positions scaled by S / (tokens of a frame) (llama.cpp's rope_freq_scale), as it was trained, so
// that one frame spans S positions whatever the protein. This header does not expose llama.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mdllm/chain_constraint.hpp"
#include "mdllm/frame_repair.hpp"
#include "mdllm/sampler.hpp"

namespace mdllm::generation {

// Where frames live in the vocabulary.
struct FrameLayout {
  int32_t structure_begin = 0;  // first structure-token id
  int32_t structure_end = 0;    // one past the last structure-token id
  int32_t separator = 0;        // frame-separator id
  int64_t residues = 0;         // structure tokens per frame
  // Fine codes (mdllm.tokenizer.motion_fine; none when fine_begin == fine_end): the fine-token ids
  // [fine_begin, fine_end), and fine_after[k] = 1 for each structure code k (id - structure_begin) that
  // takes one. Every residue then has two slots, its structure token and its fine token or, where its
  // code takes none, the token fine_none() (given, never drawn): frames are 2 L + 1 tokens.
  int32_t fine_begin = 0, fine_end = 0;
  std::vector<uint8_t> fine_after;
  bool has_fine() const { return fine_end > fine_begin; }
  int32_t fine_none() const { return fine_end; }
  int64_t tokens_per_frame() const { return (has_fine() ? 2 : 1) * residues + 1; }  // separator included
};

// The sampling temperature the Python API draws motion-token models at unless told otherwise
// (mdllm.generate.MOTION_SAMPLING_TEMPERATURE); torsion-token models draw at 1, their own distribution.
inline constexpr float kMotionSamplingTemperature = 0.8f;

struct Options {
  int64_t frames = 10;   // new frames per walker
  int64_t walkers = 1;
  int64_t window = 4;    // complete frames visible while a frame is generated
  sampling::Params sampling;
  uint64_t seed = 0;
  bool kv_shift = true;  // false: re-evaluate the whole window after each eviction (reference path)
  int64_t max_tries = 0;  // guard: new draws of a rejected frame (0 = every frame is accepted)
  // Constrained decoding (motion tokens; null = off): before residue j of a frame is drawn, the
  // structure codes the constraint disallows given the walker's codes for residues < j of that frame
  // are removed (logits set to -inf in a copy). Its codes() must be the layout's structure-token count
  // and its residues() the layout's residues. Log-probabilities stay those of the unmodified model.
  // With fine codes the constraint judges the structure codes alone (a fine token, drawn after its
  // code, corrects it by a fraction of an Å). Not owned; it must outlive the call.
  const ChainConstraint* constraint = nullptr;
  // When `constraint` has a decoder attached (ChainConstraint::attach_decoder): a code drawn under its
  // mask is judged again as it will be decoded (allows_decoded); a rejected code is removed and residue j
  // drawn again, up to this many times among the masked codes and as many among all codes; then the
  // most likely code that passes is taken; when none does, the last draw is kept (counted). 0: no check.
  int64_t decoded_tries = 0;
  // The guard's chain continuity, residue by residue (motion tokens; null = off): a drawn code that
  // `link_guard` does not allow, given the walker's codes for residues < j of the frame, is drawn again
  // at once from the model's distribution without the codes it disallows (unless it allows none), so a
  // frame is not sent back whole for one broken link. Same size rules as `constraint`; not owned.
  const ChainConstraint* link_guard = nullptr;
  // Frame repair (motion tokens; null = off): once a walker has drawn a frame's structure tokens (and
  // before the guard judges it), FrameRepair::repair changes the codes of residues that carry a fault,
  // choosing among the model's most likely codes at each (its logits as the residue was drawn); the
  // walker's frame is then evaluated again by llama.cpp so the next frame sees the codes it holds, and
  // its log-probabilities become the model's of the codes kept.
  // residues() must be the layout's residues and codes() its structure-token count. Not owned.
  const FrameRepair* repair = nullptr;
};

struct Trajectories {
  int64_t walkers = 0, frames = 0, residues = 0;
  std::vector<int32_t> tokens;  // (walkers, frames, residues) structure-token ids
  std::vector<float> logprobs;  // (walkers, frames, residues + 1): each token, then the separator
  // With fine codes: (walkers, frames, residues) fine-token ids, -1 where none, and their log-probabilities
  // (0 where none). Empty otherwise.
  std::vector<int32_t> fine;
  std::vector<float> fine_logprobs;
  std::vector<int32_t> redraws;  // (walkers, frames): how often the guard rejected a draw of the frame
  // (walkers, frames): codes of the frame's draws that link_guard sent back (residue redraws), and the
  // sent-back draws kept because link_guard allowed no code at all.
  std::vector<int32_t> residue_redraws;
  int64_t link_guard_kept = 0;
  double link_guard_seconds = 0;
  double prompt_seconds = 0, generate_seconds = 0, check_seconds = 0;
  int64_t tokens_decoded = 0;   // tokens evaluated by llama.cpp after the prompt (re-evaluation included)
  // Constrained decoding: draws it masked, those whose mask was empty (every code then allowed), the
  // allowed codes summed over the masked draws, and the time spent on masks.
  int64_t constrained_draws = 0, empty_masks = 0, allowed_codes = 0;
  // The decoded check: codes it judged after the first draw (redraws and the scan), and draws kept
  // failing because no code passed.
  int64_t decoded_redraws = 0, decoded_kept = 0;
  double constraint_seconds = 0;
  // Frame repair: codes it changed per frame (walkers, frames), frames it could not make valid, codes it
  // judged, and the time it took (KV re-evaluation included).
  std::vector<int32_t> repaired;
  int64_t repair_failed = 0, repair_judged = 0;
  double repair_seconds = 0;
};

struct ModelOptions {
  int gpu_layers = 0;  // layers offloaded to a GPU when llama.cpp was built with one
  int threads = 0;     // 0 = all cores
};

// Called after every generated frame with the number of frames finished; return false to stop.
using Progress = std::function<bool(int64_t frames_done)>;

// The guard: called when every walker has drawn a frame's structure tokens, before its separator, with
// the frame of each walker (walkers, residues) as structure-token ids (and its fine-token ids, -1 where
// none, with fine codes; else null) and a mask of the walkers whose draw is new; writes accept[w]
// (1 = keep). A rejected walker draws the frame again from the same context with fresh random numbers,
// up to Options::max_tries times; the last draw is kept.
using FrameCheck = std::function<void(const int32_t* frame_tokens, const int32_t* frame_fine, const uint8_t* fresh,
                                      int64_t walkers, int64_t residues, uint8_t* accept)>;

class Model {
 public:
  explicit Model(const std::string& gguf_path, const ModelOptions& options = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  int32_t vocab_size() const;
  // A GGUF metadata value as text, or "" when the key is absent.
  std::string metadata(const std::string& key) const;

  // Generate options.frames new frames per walker after the prompt: prefix, then the last
  // `window` of the start frames (n_start, residues), with their fine tokens (same size, -1 where none)
  // when the layout has fine codes. Throws std::invalid_argument on bad input and std::runtime_error
  // when llama.cpp fails.
  Trajectories generate(const std::vector<int32_t>& prefix, const std::vector<int32_t>& start_frames,
                        const FrameLayout& layout, const Options& options, const Progress& progress = {},
                        const FrameCheck& check = {}, const std::vector<int32_t>& start_fine = {});

  // Log-probabilities (frames, residues + 1) of a given trajectory's tokens under the same
  // rolling window (teacher forcing); the first frame is conditioned on the prefix alone. With fine
  // codes, `fine` (frames, residues; -1 where none) and, when given, the fine tokens' log-probabilities
  // in *fine_logprobs (frames, residues; 0 where none).
  std::vector<float> score(const std::vector<int32_t>& prefix, const std::vector<int32_t>& frames,
                           const FrameLayout& layout, int64_t window, const std::vector<int32_t>& fine = {},
                           std::vector<float>* fine_logprobs = nullptr);

  // llama.cpp's own decode speed, without this loop: `steps` decode calls of `batch` sequences
  // with one token each, after a prompt of `context` tokens. Returns tokens per second.
  double raw_decode_tokens_per_second(int64_t batch, int64_t steps, int64_t context);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mdllm::generation
