// Rolling-window generation on llama.cpp (see mdllm/generate.hpp).
#include "mdllm/generate.hpp"
#include "mdllm/gguf_keys.hpp"
#include "../core/parallel.hpp"

#include <llama.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <type_traits>
#include <limits>
#include <map>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>

namespace mdllm::generation {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// llama.cpp logs every load detail to stderr; keep only errors.
void quiet_log(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

void init_backend_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
  });
}

// A llama_batch that frees itself; tokens are added one at a time.
class Batch {
 public:
  explicit Batch(int32_t capacity) : batch_(llama_batch_init(capacity, 0, 1)), capacity_(capacity) {}
  ~Batch() { llama_batch_free(batch_); }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  void clear() { batch_.n_tokens = 0; }
  void add(llama_token token, llama_pos pos, llama_seq_id seq, bool logits) {
    if (batch_.n_tokens >= capacity_) throw std::logic_error("llama batch overflow");
    const int32_t i = batch_.n_tokens++;
    batch_.token[i] = token;
    batch_.pos[i] = pos;
    batch_.n_seq_id[i] = 1;
    batch_.seq_id[i][0] = seq;
    batch_.logits[i] = logits;
  }
  int32_t size() const { return batch_.n_tokens; }
  const llama_batch& get() const { return batch_; }

 private:
  llama_batch batch_;
  int32_t capacity_;
};

// A context sized for one job; freed with it.
struct Context {
  llama_context* ctx = nullptr;
  ~Context() {
    if (ctx) llama_free(ctx);
  }
};

void decode(llama_context* ctx, const Batch& batch) {
  if (batch.size() == 0) return;
  const int32_t rc = llama_decode(ctx, batch.get());
  if (rc != 0) throw std::runtime_error("llama_decode failed with status " + std::to_string(rc));
}

void check_layout(const FrameLayout& layout, int32_t vocab) {
  if (layout.residues <= 0) throw std::invalid_argument("frame layout: residues must be positive");
  if (layout.structure_begin < 0 || layout.structure_end > vocab || layout.structure_begin >= layout.structure_end)
    throw std::invalid_argument("frame layout: structure-token range outside the model's vocabulary of " +
                                std::to_string(vocab));
  if (layout.separator < 0 || layout.separator >= vocab)
    throw std::invalid_argument("frame layout: separator outside the model's vocabulary");
  if (layout.has_fine()) {
    // fine_end is <f_none>'s id, so it must be in the vocabulary too.
    if (layout.fine_begin < 0 || layout.fine_end >= vocab ||
        (layout.fine_begin < layout.structure_end && layout.structure_begin <= layout.fine_end))
      throw std::invalid_argument("frame layout: fine-token range (and <f_none> after it) outside the vocabulary or overlapping the structure tokens");
    if (static_cast<int64_t>(layout.fine_after.size()) != layout.structure_end - layout.structure_begin)
      throw std::invalid_argument("frame layout: fine_after needs one flag per structure token");
  }
}

// Fine tokens beside structure tokens (one entry each, -1 where none): present exactly where the layout's
// fine_after says, inside its fine range; none at all without fine codes.
void check_fine(const FrameLayout& layout, const std::vector<int32_t>& tokens, const std::vector<int32_t>& fine,
                const char* what) {
  if (!layout.has_fine()) {
    if (!fine.empty()) throw std::invalid_argument(std::string(what) + ": fine tokens for a layout without fine codes");
    return;
  }
  if (fine.size() != tokens.size())
    throw std::invalid_argument(std::string(what) + ": need one fine entry per structure token (-1: none), got " +
                                std::to_string(fine.size()) + " for " + std::to_string(tokens.size()));
  for (size_t i = 0; i < tokens.size(); ++i) {
    const bool wants = layout.fine_after[tokens[i] - layout.structure_begin] != 0;
    if (wants != (fine[i] >= 0) || (fine[i] >= 0 && (fine[i] < layout.fine_begin || fine[i] >= layout.fine_end)))
      throw std::invalid_argument(std::string(what) + ": fine token " + std::to_string(fine[i]) + " at " +
                                  std::to_string(i) + " does not fit its structure token " + std::to_string(tokens[i]));
  }
}

void check_tokens(const std::vector<int32_t>& tokens, int32_t begin, int32_t end, const char* what) {
  for (int32_t t : tokens)
    if (t < begin || t >= end)
      throw std::invalid_argument(std::string(what) + ": token id " + std::to_string(t) + " outside [" +
                                  std::to_string(begin) + ", " + std::to_string(end) + ")");
}

}  // namespace

struct Model::Impl {
  llama_model* model = nullptr;
  const llama_vocab* vocab = nullptr;
  int threads = 0;
  int gpu_layers = 0;
  int64_t frame_span = 0;  // mdllm.frame_span: rotary positions per frame, 0 for plain positions

  // llama.cpp's rope_freq_scale for frames of `frame_tokens` tokens (separator included): the model's
  // positions are scaled so that a frame spans frame_span of them in every protein (0: the model's own scale).
  float rope_scale(int64_t frame_tokens) const {
    return frame_span > 0 ? static_cast<float>(static_cast<double>(frame_span) / static_cast<double>(frame_tokens))
                          : 0.0f;
  }

  ~Impl() {
    if (model) llama_model_free(model);
  }

  // A fresh context with room for `sequences` sequences of `per_sequence` tokens each.
  void open(Context& c, int64_t sequences, int64_t per_sequence, int64_t max_batch, float rope_freq_scale = 0.0f) const {
    llama_context_params p = llama_context_default_params();
    p.rope_freq_scale = rope_freq_scale;
    const int64_t per_seq = (per_sequence + 255) / 256 * 256;
    p.n_ctx = static_cast<uint32_t>(per_seq * sequences);
    p.n_seq_max = static_cast<uint32_t>(sequences);
    p.n_batch = static_cast<uint32_t>(std::max<int64_t>(max_batch, 1));
    p.n_ubatch = std::min<uint32_t>(p.n_batch, 512);
    p.n_threads = p.n_threads_batch = threads;
    p.no_perf = true;
    // One KV stream per walker: a unified cache makes every walker attend over all walkers' cells
    // (measured 6x slower at 16 AdK walkers).
    p.kv_unified = false;
    if (gpu_layers == 0) {
      // On CPU an F32 cache without flash attention is several times faster at the long contexts of
      // whole-protein frames (measured: 1100 vs 150 tokens/s at 1100 tokens of context), and exact.
      p.type_k = p.type_v = GGML_TYPE_F32;
      p.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    }
    c.ctx = llama_init_from_model(model, p);
    if (!c.ctx) throw std::runtime_error("llama.cpp could not create a context");
    if (static_cast<int64_t>(llama_n_ctx_seq(c.ctx)) < per_sequence)
      throw std::runtime_error("llama.cpp context too small for the rolling window");
  }
};

Model::Model(const std::string& gguf_path, const ModelOptions& options) : impl_(new Impl) {
  init_backend_once();
  llama_model_params p = llama_model_default_params();
  p.n_gpu_layers = options.gpu_layers;
  // The repacked-weight (extra buffer) CPU kernels of this llama.cpp crash on Q8_0 models on AMX CPUs
  // (seen in ggml_backend_amx_mul_mat); plain CPU buffers are correct for every type.
  p.use_extra_bufts = false;
  impl_->model = llama_model_load_from_file(gguf_path.c_str(), p);
  if (!impl_->model) throw std::runtime_error(gguf_path + ": llama.cpp could not load this GGUF model");
  impl_->vocab = llama_model_get_vocab(impl_->model);
  impl_->gpu_layers = options.gpu_layers;
  const std::string span = metadata(gguf_keys::kFrameSpan);
  impl_->frame_span = span.empty() ? 0 : std::stoll(span);
  const unsigned hw = std::thread::hardware_concurrency();
  impl_->threads = options.threads > 0 ? options.threads : static_cast<int>(hw ? hw : 1);
}

Model::~Model() = default;

int32_t Model::vocab_size() const { return llama_vocab_n_tokens(impl_->vocab); }

std::string Model::metadata(const std::string& key) const {
  std::vector<char> buf(256);
  int32_t n = llama_model_meta_val_str(impl_->model, key.c_str(), buf.data(), buf.size());
  if (n < 0) return "";
  if (static_cast<size_t>(n) >= buf.size()) {
    buf.resize(n + 1);
    n = llama_model_meta_val_str(impl_->model, key.c_str(), buf.data(), buf.size());
  }
  return std::string(buf.data(), n);
}

Trajectories Model::generate(const std::vector<int32_t>& prefix, const std::vector<int32_t>& start_frames,
                             const FrameLayout& layout, const Options& opt, const Progress& progress,
                             const FrameCheck& check, const std::vector<int32_t>& start_fine) {
  const int32_t n_vocab = vocab_size();
  check_layout(layout, n_vocab);
  if (opt.walkers < 1 || opt.frames < 1 || opt.window < 1)
    throw std::invalid_argument("walkers, frames and window must be at least 1");
  const int64_t L = layout.residues, stride = L + 1, W = opt.window;
  const bool fine = layout.has_fine();
  if (start_frames.size() % L != 0)
    throw std::invalid_argument("start frames: " + std::to_string(start_frames.size()) +
                                " tokens is not a whole number of frames of " + std::to_string(L));
  check_tokens(prefix, 0, n_vocab, "prefix");
  check_tokens(start_frames, layout.structure_begin, layout.structure_end, "start frames");
  check_fine(layout, start_frames, start_fine, "start frames");
  if (opt.repair && (opt.repair->codes() != layout.structure_end - layout.structure_begin || opt.repair->residues() != L))
    throw std::invalid_argument("frame repair: built for " + std::to_string(opt.repair->residues()) + " residues and " +
                                std::to_string(opt.repair->codes()) + " codes, the frames have " + std::to_string(L) +
                                " residues and " + std::to_string(layout.structure_end - layout.structure_begin) +
                                " structure tokens");
  if (opt.repair && opt.repair->has_fine() != fine)
    throw std::invalid_argument("frame repair: fine codes attached to the repair and the layout must agree");
  for (const auto& [name, cc] : {std::pair{"constraint", opt.constraint}, std::pair{"link guard", opt.link_guard}})
    if (cc && (cc->codes() != layout.structure_end - layout.structure_begin || cc->residues() != L))
      throw std::invalid_argument(std::string(name) + ": built for " + std::to_string(cc->residues()) +
                                  " residues and " + std::to_string(cc->codes()) + " codes, the frames have " +
                                  std::to_string(L) + " residues and " +
                                  std::to_string(layout.structure_end - layout.structure_begin) + " structure tokens");

  // The prompt: prefix, then the last W start frames (with fine codes each residue's fine token or
  // <f_none> after its structure token) each closed by a separator.
  const int64_t n_start = std::min<int64_t>(start_frames.size() / L, W);
  const int64_t first_start = static_cast<int64_t>(start_frames.size() / L) - n_start;
  std::vector<int32_t> prompt(prefix);
  for (int64_t f = first_start; f < first_start + n_start; ++f) {
    for (int64_t j = 0; j < L; ++j) {
      prompt.push_back(start_frames[f * L + j]);
      if (fine) prompt.push_back(start_fine[f * L + j] >= 0 ? start_fine[f * L + j] : layout.fine_none());
    }
    prompt.push_back(layout.separator);
  }
  if (prompt.empty()) throw std::invalid_argument("need a prefix or at least one start frame");
  const int64_t P = static_cast<int64_t>(prefix.size());
  const int64_t N = opt.walkers;
  const int64_t frame_max = layout.tokens_per_frame();
  const int64_t per_sequence = P + (W + 1) * frame_max;
  const int64_t rebuild = N * per_sequence;  // naive re-evaluation submits every walker's window at once

  Context c;
  // A repaired frame is evaluated again in one batch of its tokens; with fine codes a walker may feed
  // its code and <f_none> in one batch.
  const int64_t max_batch = std::max<int64_t>({static_cast<int64_t>(prompt.size()), fine ? 2 * N : N, opt.kv_shift ? 0 : rebuild,
                                               opt.repair ? frame_max : 0});
  impl_->open(c, N, per_sequence, max_batch, impl_->rope_scale(layout.tokens_per_frame()));
  llama_memory_t mem = llama_get_memory(c.ctx);

  Trajectories out;
  out.walkers = N;
  out.frames = opt.frames;
  out.residues = L;
  out.tokens.assign(N * opt.frames * L, 0);
  out.logprobs.assign(N * opt.frames * stride, 0.0f);
  if (fine) {
    out.fine.assign(N * opt.frames * L, -1);
    out.fine_logprobs.assign(N * opt.frames * L, 0.0f);
  }

  // Evaluate the shared prompt once on sequence 0, then copy it to every walker.
  auto t0 = Clock::now();
  Batch batch(static_cast<int32_t>(std::max<int64_t>({max_batch, rebuild})));
  for (size_t i = 0; i < prompt.size(); ++i)
    batch.add(prompt[i], static_cast<llama_pos>(i), 0, i + 1 == prompt.size());
  decode(c.ctx, batch);
  std::vector<float> logits(N * n_vocab);
  const float* last = llama_get_logits_ith(c.ctx, -1);
  for (int64_t w = 0; w < N; ++w) std::memcpy(&logits[w * n_vocab], last, sizeof(float) * n_vocab);
  for (int64_t w = 1; w < N; ++w) llama_memory_seq_cp(mem, 0, static_cast<llama_seq_id>(w), -1, -1);
  out.prompt_seconds = seconds_since(t0);

  t0 = Clock::now();
  // Each walker's next position (walkers that draw fewer fine tokens run ahead within a frame), where the
  // current frame began (the same for every walker: every frame has frame_max tokens), and the complete
  // frames in context.
  std::vector<int64_t> pos(N, static_cast<int64_t>(prompt.size()));
  int64_t frame_start = 0;
  int64_t frames_in_context = n_start;
  // Tokens of each walker's visible frames (complete ones and the current one); only re-evaluation
  // needs them, KV shifting keeps them in llama.cpp's cache.
  std::vector<std::vector<int32_t>> window_tokens;
  if (!opt.kv_shift) window_tokens.assign(N, std::vector<int32_t>(prompt.begin() + P, prompt.end()));
  std::vector<sampling::Allowed> allowed(N);
  std::vector<uint64_t> walker_ids(N), steps(N);
  for (int64_t w = 0; w < N; ++w) walker_ids[w] = static_cast<uint64_t>(w);
  std::vector<int32_t> chosen(N), drawn_codes;
  std::vector<float> chosen_logprob(N);
  // Draw structure token j of the current frame for the walkers `ws` (walkers at residue j: all of them,
  // or the ones the guard sent back) from their current logits; `feed` then evaluates the drawn tokens.
  const sampling::Allowed structure{layout.structure_begin, layout.structure_end};
  std::vector<float> subset_logits, masked_logits;
  std::vector<uint8_t> code_mask(layout.structure_end - layout.structure_begin);
  constexpr float kMasked = -std::numeric_limits<float>::infinity();
  // Walker w's codes for residues 0 .. j-1 of frame f (0-based codes, as ChainConstraint takes them).
  auto codes_into = [&](int64_t w, int64_t f, int64_t j, std::vector<int32_t>& codes) {
    const int32_t* tokens = &out.tokens[(w * opt.frames + f) * L];
    codes.resize(j);
    for (int64_t i = 0; i < j; ++i) codes[i] = tokens[i] - layout.structure_begin;
    return codes.data();
  };
  auto codes_before = [&](int64_t w, int64_t f, int64_t j) { return codes_into(w, f, j, drawn_codes); };
  // Removes from one row of logits the structure codes that code_mask disallows.
  auto mask_row = [&](float* row) {
    float* codes = row + layout.structure_begin;
    for (size_t k = 0; k < code_mask.size(); ++k)
      if (!code_mask[k]) codes[k] = kMasked;
  };
  // Constrained decoding with a causal decoder: judge a walker's draw `chosen_token` of residue prefix.j
  // as it will be decoded. A rejected code is removed and the residue drawn again with fresh random
  // numbers (a step count no other draw uses): up to decoded_tries times among the masked codes (`row`,
  // the walker's masked logits), then as often among all codes (`model_row`; the code-alone mask misses
  // codes whose decoded placement passes). Returns whether the code finally in `chosen_token` passes; `rejected`
  // gets the codes sent back. Walkers are judged in parallel: a call writes only its own arguments.
  auto redraw_as_decoded = [&](ChainConstraint::DecodedPrefix& prefix, const float* model_row, float* row,
                               uint64_t step_r, const sampling::Params& params, uint64_t& walker_id,
                               int32_t& chosen_token, float& chosen_lp, std::vector<int32_t>& rejected,
                               int64_t& redraws) {
    const auto passes = [&](int32_t token) {
      return opt.constraint->allows_decoded(prefix, token - layout.structure_begin);
    };
    bool passed = passes(chosen_token);
    rejected.clear();
    for (int64_t t = 0; !passed && t < 2 * opt.decoded_tries; ++t) {
      if (t == opt.decoded_tries) {  // the whole model distribution, less the codes rejected so far
        std::copy_n(model_row, n_vocab, row);
        for (int32_t c : rejected) row[c] = kMasked;
      }
      rejected.push_back(chosen_token);
      row[chosen_token] = kMasked;
      if (std::all_of(row + layout.structure_begin, row + layout.structure_end, [&](float v) { return v == kMasked; }))
        break;  // nothing left to draw
      ++redraws;
      // Bit 61 and the try in bits 48+ (the guard's frame tries use bits 40-47).
      const uint64_t step = step_r | (uint64_t{1} << 61) | (static_cast<uint64_t>(t) << 48);
      sampling::sample(row, 1, n_vocab, &structure, params, opt.seed, &walker_id, &step, &chosen_token, &chosen_lp);
      passed = passes(chosen_token);
    }
    return passed;
  };
  // When no redraw passed: every code not yet tried is judged, most likely first, and the first that
  // passes is taken (1-25 % of all codes pass where the model's likely ones do not); `redraws` counts the
  // codes judged up to it. Codes are judged in parallel batches, each thread on its own copy of the
  // prefix; the code taken is the same as judging them one by one. Returns whether one passed (when none
  // does, the last draw is kept).
  std::vector<ChainConstraint::DecodedPrefix> scan_prefixes;
  std::vector<int32_t> scan_order;
  std::vector<uint8_t> scan_passed;
  auto scan_as_decoded = [&](const ChainConstraint::DecodedPrefix& prefix, const float* model_row,
                             const std::vector<int32_t>& rejected, int32_t& chosen_token, int64_t& redraws) {
    scan_order.clear();
    for (int32_t token = layout.structure_begin; token < layout.structure_end; ++token)
      if (token != chosen_token && std::find(rejected.begin(), rejected.end(), token) == rejected.end())
        scan_order.push_back(token);
    std::stable_sort(scan_order.begin(), scan_order.end(),
                     [&](int32_t a, int32_t b) { return model_row[a] > model_row[b]; });
    const int64_t threads = std::max(1, num_threads()), batch = 8 * threads;
    scan_prefixes.assign(threads, prefix);
    for (int64_t first = 0; first < static_cast<int64_t>(scan_order.size()); first += batch) {
      const int64_t count = std::min<int64_t>(batch, static_cast<int64_t>(scan_order.size()) - first);
      scan_passed.assign(count, 0);
      detail::parallel_for(threads, [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t)
          for (int64_t k = t; k < count; k += threads)
            scan_passed[k] = opt.constraint->allows_decoded(scan_prefixes[t],
                                                            scan_order[first + k] - layout.structure_begin);
      });
      const auto hit = std::find(scan_passed.begin(), scan_passed.end(), 1);
      if (hit != scan_passed.end()) {
        redraws += (first + (hit - scan_passed.begin())) + 1;
        chosen_token = scan_order[first + (hit - scan_passed.begin())];
        return true;
      }
    }
    redraws += static_cast<int64_t>(scan_order.size());
    return false;
  };
  // Frame repair chooses among the codes the model found likely where each residue was drawn.
  std::vector<float> frame_logits(opt.repair ? N * L * n_vocab : 0);
  const sampling::Allowed fine_range{layout.fine_begin, layout.fine_end};
  std::vector<std::pair<int64_t, int32_t>> pending;  // (walker, token) drawn, not yet evaluated
  std::vector<int32_t> fine_chosen(N);
  std::vector<float> fine_logprob(N), fine_rows;
  std::vector<uint64_t> fine_walkers(N), fine_steps(N);
  std::vector<sampling::Allowed> fine_allowed(N, fine_range);
  auto draw = [&](const std::vector<int64_t>& ws, int64_t f, int64_t j, uint64_t step_base) {
    const int64_t n = static_cast<int64_t>(ws.size());
    if (opt.repair)
      for (int64_t w : ws) std::memcpy(&frame_logits[(w * L + j) * n_vocab], &logits[w * n_vocab], sizeof(float) * n_vocab);
    const float* rows = logits.data();
    if (n != N) {
      subset_logits.resize(n * n_vocab);
      for (int64_t r = 0; r < n; ++r)
        std::memcpy(&subset_logits[r * n_vocab], &logits[ws[r] * n_vocab], sizeof(float) * n_vocab);
      rows = subset_logits.data();
    }
    std::fill(allowed.begin(), allowed.begin() + n, structure);
    for (int64_t r = 0; r < n; ++r) {
      walker_ids[r] = static_cast<uint64_t>(ws[r]);
      steps[r] = step_base + static_cast<uint64_t>(f * stride + j);
    }
    if (opt.constraint && j > 0) {
      // Constrained decoding: each walker draws from a copy of its logits without the codes that break
      // local geometry with its residues < j of this frame; the likelihood stays the model's.
      const auto tc = Clock::now();
      masked_logits.assign(rows, rows + n * n_vocab);
      for (int64_t r = 0; r < n; ++r) {
        const int64_t n_allowed = opt.constraint->mask(j, codes_before(ws[r], f, j), code_mask.data());
        ++out.constrained_draws;
        out.allowed_codes += n_allowed;
        if (n_allowed == 0) {
          ++out.empty_masks;
          continue;
        }
        mask_row(&masked_logits[r * n_vocab]);
      }
      out.constraint_seconds += seconds_since(tc);
      // A min_p far below any real probability (1e-30 of the most likely) draws in likelihood order.
      // It was added while the id-order path normalised by the least likely (here -inf) logit; since
      // that fix (sampler.cpp) the id-order path would give the same distribution, but other draws for
      // a seed, so it stays until constrained results are re-measured (bench/constrained.py).
      sampling::Params masked_params = opt.sampling;
      masked_params.min_p = std::max(masked_params.min_p, 1e-30f);
      sampling::sample(masked_logits.data(), n, n_vocab, allowed.data(), masked_params, opt.seed, walker_ids.data(),
                       steps.data(), chosen.data(), chosen_logprob.data());
      if (opt.decoded_tries > 0 && opt.constraint->decodes()) {
        const auto td = Clock::now();
        std::vector<int64_t> redraws(n, 0);
        std::vector<uint8_t> passed(n, 1);
        std::vector<ChainConstraint::DecodedPrefix> prefixes(n);
        std::vector<std::vector<int32_t>> rejected(n);
        detail::parallel_for(n, [&](int64_t begin, int64_t end) {
          std::vector<int32_t> codes;
          for (int64_t r = begin; r < end; ++r) {
            prefixes[r] = opt.constraint->decoded_prefix(j, codes_into(ws[r], f, j, codes));
            passed[r] = redraw_as_decoded(prefixes[r], rows + r * n_vocab, &masked_logits[r * n_vocab], steps[r],
                                          masked_params, walker_ids[r], chosen[r], chosen_logprob[r], rejected[r],
                                          redraws[r]);
          }
        });
        for (int64_t r = 0; r < n; ++r) {
          if (!passed[r]) passed[r] = scan_as_decoded(prefixes[r], rows + r * n_vocab, rejected[r], chosen[r], redraws[r]);
          out.decoded_kept += !passed[r], out.decoded_redraws += redraws[r];
        }
        out.constraint_seconds += seconds_since(td);
      }
      sampling::token_logprobs(rows, n, n_vocab, chosen.data(), chosen_logprob.data());
    } else {
      sampling::sample(rows, n, n_vocab, allowed.data(), opt.sampling, opt.seed, walker_ids.data(), steps.data(),
                       chosen.data(), chosen_logprob.data());
    }
    if (opt.link_guard && j > 0) {
      // Residue-level guard: a code that breaks the chain is drawn again, without the codes that would.
      const auto tc = Clock::now();
      for (int64_t r = 0; r < n; ++r) {
        const int64_t w = ws[r];
        const int32_t* drawn = codes_before(w, f, j);
        if (opt.link_guard->allows(j, drawn, chosen[r] - layout.structure_begin)) continue;
        ++out.residue_redraws[w * opt.frames + f];
        if (opt.link_guard->mask(j, drawn, code_mask.data()) == 0) {
          ++out.link_guard_kept;
          continue;
        }
        masked_logits.assign(rows + r * n_vocab, rows + (r + 1) * n_vocab);
        mask_row(masked_logits.data());
        // Fresh random numbers: a step count no other draw uses.
        const uint64_t step = steps[r] | (uint64_t{1} << 62);
        sampling::sample(masked_logits.data(), 1, n_vocab, &structure, opt.sampling, opt.seed, &walker_ids[r], &step,
                         &chosen[r], &chosen_logprob[r]);
        sampling::token_logprobs(rows + r * n_vocab, 1, n_vocab, &chosen[r], &chosen_logprob[r]);
      }
      out.link_guard_seconds += seconds_since(tc);
    }
    for (int64_t r = 0; r < n; ++r) {
      const int64_t w = ws[r];
      out.tokens[(w * opt.frames + f) * L + j] = chosen[r];
      out.logprobs[(w * opt.frames + f) * stride + j] = chosen_logprob[r];
      pending.emplace_back(w, chosen[r]);
      // A code that takes no fine code fills its fine slot at once, in the same batch.
      if (fine && !layout.fine_after[chosen[r] - layout.structure_begin]) pending.emplace_back(w, layout.fine_none());
    }
  };
  // The fine tokens of residue j for the walkers `ws` (each drew a code at j that takes one), from the
  // logits that followed their code.
  auto draw_fine = [&](const std::vector<int64_t>& ws, int64_t f, int64_t j, uint64_t step_base) {
    const int64_t m = static_cast<int64_t>(ws.size());
    fine_rows.resize(m * n_vocab);
    for (int64_t r = 0; r < m; ++r) {
      const int64_t w = ws[r];
      std::memcpy(&fine_rows[r * n_vocab], &logits[w * n_vocab], sizeof(float) * n_vocab);
      fine_walkers[r] = static_cast<uint64_t>(w);
      // Bit 59: the fine draws' own random numbers.
      fine_steps[r] = (step_base + static_cast<uint64_t>(f * stride + j)) | (uint64_t{1} << 59);
    }
    sampling::sample(fine_rows.data(), m, n_vocab, fine_allowed.data(), opt.sampling, opt.seed, fine_walkers.data(),
                     fine_steps.data(), fine_chosen.data(), fine_logprob.data());
    for (int64_t r = 0; r < m; ++r) {
      const int64_t w = ws[r];
      out.fine[(w * opt.frames + f) * L + j] = fine_chosen[r];
      out.fine_logprobs[(w * opt.frames + f) * L + j] = fine_logprob[r];
      pending.emplace_back(w, fine_chosen[r]);
    }
  };
  // The drawn tokens (one per walker, or a code and <f_none>) evaluated by llama.cpp in one batch at each
  // walker's next positions; a walker's logits are those after its last token.
  auto feed = [&] {
    batch.clear();
    for (const auto& [w, token] : pending) {
      if (!opt.kv_shift) window_tokens[w].push_back(token);
      batch.add(token, static_cast<llama_pos>(pos[w]++), static_cast<llama_seq_id>(w), true);
    }
    decode(c.ctx, batch);
    out.tokens_decoded += static_cast<int64_t>(pending.size());
    for (size_t r = 0; r < pending.size(); ++r)
      std::memcpy(&logits[pending[r].first * n_vocab], llama_get_logits_ith(c.ctx, static_cast<int32_t>(r)),
                  sizeof(float) * n_vocab);
    pending.clear();
  };
  // A whole frame for the walkers `ws`. Each walker advances one draw per llama.cpp batch: its structure
  // token of residue j, then (with fine codes, when its code takes one) its fine token, then residue j + 1
  // (a code that takes none is fed with <f_none> in one batch); walkers that drew fewer fine tokens finish
  // early and wait. Without fine codes every walker is at the same residue in every batch.
  std::vector<int64_t> at_residue(N);
  std::vector<uint8_t> at_fine(N);
  std::map<std::pair<int64_t, uint8_t>, std::vector<int64_t>> groups;
  auto draw_frame = [&](const std::vector<int64_t>& ws, int64_t f, uint64_t step_base) {
    for (int64_t w : ws) at_residue[w] = 0, at_fine[w] = 0;
    for (;;) {
      groups.clear();
      for (int64_t w : ws)
        if (at_residue[w] < L) groups[{at_residue[w], at_fine[w]}].push_back(w);
      if (groups.empty()) break;
      for (const auto& [where, group] : groups) {
        if (where.second)
          draw_fine(group, f, where.first, step_base);
        else
          draw(group, f, where.first, step_base);
      }
      feed();
      for (const auto& [where, group] : groups)
        for (int64_t w : group) {
          const int64_t j = where.first;
          if (!where.second && fine && layout.fine_after[out.tokens[(w * opt.frames + f) * L + j] - layout.structure_begin])
            at_fine[w] = 1;
          else
            ++at_residue[w], at_fine[w] = 0;
        }
    }
  };

  // Drops walker w's tokens of frame f from its current frame's start on (llama.cpp's cache, the naive
  // path's window, and the fine codes drawn), so that the frame can be drawn or evaluated again.
  auto rewind = [&](int64_t w, int64_t f) {
    llama_memory_seq_rm(mem, static_cast<llama_seq_id>(w), static_cast<llama_pos>(frame_start), -1);
    if (!opt.kv_shift) window_tokens[w].resize(window_tokens[w].size() - (pos[w] - frame_start));
    pos[w] = frame_start;
    if (fine) {
      std::fill_n(&out.fine[(w * opt.frames + f) * L], L, -1);
      std::fill_n(&out.fine_logprobs[(w * opt.frames + f) * L], L, 0.0f);
    }
  };

  // Frame repair of the walkers `ws` in frame f: codes (and fine codes) changed in parallel, then each
  // changed frame evaluated again so that llama.cpp's cache and the next logits follow the codes kept.
  out.repaired.assign(opt.repair ? N * opt.frames : 0, 0);
  std::vector<FrameRepair::Outcome> outcomes;
  std::vector<int32_t> repair_codes, repair_fine;
  std::vector<int64_t> row_of;  // batch row of each residue's structure token, then of its fine slot
  auto repair_frames = [&](const std::vector<int64_t>& ws, int64_t f) {
    const auto tr = Clock::now();
    const int64_t n = static_cast<int64_t>(ws.size());
    outcomes.assign(n, {});
    repair_codes.resize(n * L);
    repair_fine.assign(fine ? n * L : 0, -1);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < L; ++j) {
        const int64_t at = (ws[r] * opt.frames + f) * L + j;
        repair_codes[r * L + j] = out.tokens[at] - layout.structure_begin;
        if (fine && out.fine[at] >= 0) repair_fine[r * L + j] = out.fine[at] - layout.fine_begin;
      }
    detail::parallel_for(n, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        outcomes[r] = opt.repair->repair(&repair_codes[r * L], &frame_logits[ws[r] * L * n_vocab + layout.structure_begin],
                                         n_vocab, fine ? &repair_fine[r * L] : nullptr);
    });
    for (int64_t r = 0; r < n; ++r) {
      const int64_t w = ws[r];
      out.repair_judged += outcomes[r].judged;
      out.repair_failed += !outcomes[r].valid;
      out.repaired[w * opt.frames + f] = static_cast<int32_t>(outcomes[r].changed);
      if (outcomes[r].changed == 0) continue;
      // The frame's codes as kept, evaluated again with every output: each token's log-probability is then
      // the model's given the kept tokens before it (residue 0's context did not change).
      int32_t* tokens = &out.tokens[(w * opt.frames + f) * L];
      float* lp = &out.logprobs[(w * opt.frames + f) * stride];
      rewind(w, f);
      batch.clear();
      row_of.assign(2 * L, -1);
      for (int64_t j = 0; j < L; ++j) {
        tokens[j] = repair_codes[r * L + j] + layout.structure_begin;
        row_of[2 * j] = batch.size();
        batch.add(tokens[j], static_cast<llama_pos>(pos[w]++), static_cast<llama_seq_id>(w), true);
        if (!opt.kv_shift) window_tokens[w].push_back(tokens[j]);
        if (fine) {
          const bool has = repair_fine[r * L + j] >= 0;
          const int32_t id = has ? repair_fine[r * L + j] + layout.fine_begin : layout.fine_none();
          if (has) out.fine[(w * opt.frames + f) * L + j] = id;
          row_of[2 * j + 1] = batch.size();
          batch.add(id, static_cast<llama_pos>(pos[w]++), static_cast<llama_seq_id>(w), true);
          if (!opt.kv_shift) window_tokens[w].push_back(id);
        }
      }
      decode(c.ctx, batch);
      out.tokens_decoded += batch.size();
      sampling::token_logprobs(&frame_logits[w * L * n_vocab], 1, n_vocab, &tokens[0], &lp[0]);
      for (int64_t j = 0; j < L; ++j) {
        if (j > 0) {  // the token before residue j's: its fine slot, else (no fine codes) its structure token
          const int64_t before = row_of[2 * j - 1] >= 0 ? row_of[2 * j - 1] : row_of[2 * j - 2];
          sampling::token_logprobs(llama_get_logits_ith(c.ctx, static_cast<int32_t>(before)), 1, n_vocab, &tokens[j],
                                   &lp[j]);
        }
        if (fine && repair_fine[r * L + j] >= 0)
          sampling::token_logprobs(llama_get_logits_ith(c.ctx, static_cast<int32_t>(row_of[2 * j])), 1, n_vocab,
                                   &out.fine[(w * opt.frames + f) * L + j],
                                   &out.fine_logprobs[(w * opt.frames + f) * L + j]);
      }
      std::memcpy(&logits[w * n_vocab], llama_get_logits_ith(c.ctx, batch.size() - 1), sizeof(float) * n_vocab);
    }
    out.repair_seconds += seconds_since(tr);
  };

  std::vector<int64_t> everyone(N);
  for (int64_t w = 0; w < N; ++w) everyone[w] = w;
  const bool guarded = check && opt.max_tries > 0;
  out.redraws.assign(N * opt.frames, 0);
  out.residue_redraws.assign(N * opt.frames, 0);
  std::vector<float> frame_start_logits;
  std::vector<int32_t> frame_tokens, frame_fine;
  std::vector<uint8_t> fresh(N), accept(N);

  for (int64_t f = 0; f < opt.frames; ++f) {
    frame_start = pos[0];
    if (guarded) frame_start_logits = logits;
    draw_frame(everyone, f, 0);
    if (opt.repair) repair_frames(everyone, f);

    // The guard: re-draw rejected frames from the context they were drawn in.
    if (guarded) {
      std::fill(fresh.begin(), fresh.end(), 1);
      for (int64_t attempt = 1;; ++attempt) {
        frame_tokens.resize(N * L);
        frame_fine.resize(fine ? N * L : 0);
        for (int64_t w = 0; w < N; ++w) {
          std::copy_n(&out.tokens[(w * opt.frames + f) * L], L, &frame_tokens[w * L]);
          if (fine) std::copy_n(&out.fine[(w * opt.frames + f) * L], L, &frame_fine[w * L]);
        }
        std::fill(accept.begin(), accept.end(), 1);
        const auto tc = Clock::now();
        check(frame_tokens.data(), fine ? frame_fine.data() : nullptr, fresh.data(), N, L, accept.data());
        out.check_seconds += seconds_since(tc);
        if (attempt > opt.max_tries) break;
        std::vector<int64_t> again;
        for (int64_t w = 0; w < N; ++w)
          if (fresh[w] && !accept[w]) again.push_back(w);
        if (again.empty()) break;
        std::fill(fresh.begin(), fresh.end(), 0);
        for (int64_t w : again) {
          fresh[w] = 1;
          ++out.redraws[w * opt.frames + f];
          rewind(w, f);
          std::memcpy(&logits[w * n_vocab], &frame_start_logits[w * n_vocab], sizeof(float) * n_vocab);
        }
        // Each attempt has its own random numbers: a step count no plain draw reaches.
        const uint64_t step_base = static_cast<uint64_t>(attempt) << 40;
        draw_frame(again, f, step_base);
        if (opt.repair) repair_frames(again, f);
      }
    }

    // The separator closes the frame.
    std::fill(allowed.begin(), allowed.end(), sampling::Allowed{layout.separator, layout.separator + 1});
    for (int64_t w = 0; w < N; ++w) {
      walker_ids[w] = static_cast<uint64_t>(w);
      steps[w] = static_cast<uint64_t>(f * stride + L);
    }
    sampling::sample(logits.data(), N, n_vocab, allowed.data(), opt.sampling, opt.seed, walker_ids.data(),
                     steps.data(), chosen.data(), chosen_logprob.data());
    for (int64_t w = 0; w < N; ++w) {
      out.logprobs[(w * opt.frames + f) * stride + L] = chosen_logprob[w];
      if (!opt.kv_shift) window_tokens[w].push_back(chosen[w]);
    }
    const bool last = f + 1 == opt.frames;
    if (!last) {
      if (frames_in_context + 1 > W) {
        // The frame being closed would make W + 1: drop the oldest before the separator is seen.
        if (opt.kv_shift) {
          for (int64_t w = 0; w < N; ++w) {
            const auto s = static_cast<llama_seq_id>(w);
            llama_memory_seq_rm(mem, s, static_cast<llama_pos>(P), static_cast<llama_pos>(P + frame_max));
            llama_memory_seq_add(mem, s, static_cast<llama_pos>(P + frame_max), -1, static_cast<llama_pos>(-frame_max));
            pos[w] -= frame_max;
          }
        } else {
          batch.clear();
          for (int64_t w = 0; w < N; ++w) {
            const auto s = static_cast<llama_seq_id>(w);
            window_tokens[w].erase(window_tokens[w].begin(), window_tokens[w].begin() + frame_max);
            llama_memory_seq_rm(mem, s, -1, -1);
            for (int64_t i = 0; i < P; ++i) batch.add(prefix[i], static_cast<llama_pos>(i), s, false);
            // Everything visible except the separator just sampled, which is decoded below.
            for (size_t i = 0; i + 1 < window_tokens[w].size(); ++i)
              batch.add(window_tokens[w][i], static_cast<llama_pos>(P + i), s, false);
            pos[w] -= frame_max;
          }
          decode(c.ctx, batch);
          out.tokens_decoded += batch.size();
        }
        --frames_in_context;
      }
      batch.clear();
      for (int64_t w = 0; w < N; ++w)
        batch.add(chosen[w], static_cast<llama_pos>(pos[w]++), static_cast<llama_seq_id>(w), true);
      decode(c.ctx, batch);
      out.tokens_decoded += N;
      for (int64_t w = 0; w < N; ++w)
        std::memcpy(&logits[w * n_vocab], llama_get_logits_ith(c.ctx, static_cast<int32_t>(w)), sizeof(float) * n_vocab);
      ++frames_in_context;
    }
    if (progress && !progress(f + 1)) {
      out.frames = f + 1;
      break;
    }
  }
  out.generate_seconds = seconds_since(t0);
  if (out.frames < opt.frames) {  // stopped early: keep the finished frames of every walker
    auto keep = [&](auto& v, int64_t per_frame) {
      if (v.empty()) return;
      std::remove_reference_t<decltype(v)> kept(N * out.frames * per_frame);
      for (int64_t w = 0; w < N; ++w)
        std::copy_n(&v[w * opt.frames * per_frame], out.frames * per_frame, &kept[w * out.frames * per_frame]);
      v.swap(kept);
    };
    keep(out.tokens, L);
    keep(out.logprobs, stride);
    keep(out.fine, L);
    keep(out.fine_logprobs, L);
    keep(out.redraws, 1);
    keep(out.residue_redraws, 1);
    keep(out.repaired, 1);
  }
  return out;
}

std::vector<float> Model::score(const std::vector<int32_t>& prefix, const std::vector<int32_t>& frames,
                                const FrameLayout& layout, int64_t window, const std::vector<int32_t>& fine_tokens,
                                std::vector<float>* fine_logprobs) {
  const int32_t n_vocab = vocab_size();
  check_layout(layout, n_vocab);
  const int64_t L = layout.residues, stride = L + 1;
  const bool fine = layout.has_fine();
  if (window < 1) throw std::invalid_argument("window must be at least 1");
  if (frames.empty() || frames.size() % L != 0)
    throw std::invalid_argument("frames: need a whole, non-zero number of frames of " + std::to_string(L) + " tokens");
  if (prefix.empty()) throw std::invalid_argument("scoring needs a non-empty prefix");
  check_tokens(prefix, 0, n_vocab, "prefix");
  check_tokens(frames, layout.structure_begin, layout.structure_end, "frames");
  check_fine(layout, frames, fine_tokens, "frames");
  const int64_t n_frames = frames.size() / L, P = prefix.size(), frame_max = layout.tokens_per_frame() - 1;

  Context c;
  impl_->open(c, 1, P + (window + 1) * (frame_max + 1), std::max<int64_t>(P, frame_max), impl_->rope_scale(layout.tokens_per_frame()));
  llama_memory_t mem = llama_get_memory(c.ctx);
  Batch batch(static_cast<int32_t>(std::max<int64_t>(P, frame_max)));
  for (int64_t i = 0; i < P; ++i) batch.add(prefix[i], static_cast<llama_pos>(i), 0, i + 1 == P);
  decode(c.ctx, batch);
  std::vector<float> previous(llama_get_logits_ith(c.ctx, -1), llama_get_logits_ith(c.ctx, -1) + n_vocab);
  std::vector<float> out(n_frames * stride);
  if (fine_logprobs) fine_logprobs->assign(fine ? n_frames * L : 0, 0.0f);
  std::vector<int32_t> ids;
  std::vector<float> rows;
  int64_t pos = P, in_context = 0;
  for (int64_t f = 0; f < n_frames; ++f) {
    // Tokens of frame f in one batch: row k of the outputs predicts token k + 1.
    ids.clear();
    for (int64_t j = 0; j < L; ++j) {
      ids.push_back(frames[f * L + j]);
      if (fine) ids.push_back(fine_tokens[f * L + j] >= 0 ? fine_tokens[f * L + j] : layout.fine_none());
    }
    const int64_t T = static_cast<int64_t>(ids.size());
    batch.clear();
    for (int64_t k = 0; k < T; ++k) batch.add(ids[k], static_cast<llama_pos>(pos + k), 0, true);
    decode(c.ctx, batch);
    rows.assign(previous.begin(), previous.end());
    rows.resize((T + 1) * n_vocab);
    for (int64_t k = 0; k < T; ++k) {
      const float* r = llama_get_logits_ith(c.ctx, static_cast<int32_t>(k));
      std::copy(r, r + n_vocab, rows.begin() + (k + 1) * n_vocab);
    }
    ids.push_back(layout.separator);
    std::vector<float> lp(T + 1);
    sampling::token_logprobs(rows.data(), T + 1, n_vocab, ids.data(), lp.data());
    // Structure tokens and the separator; with fine codes each residue's slot follows its token (<f_none>
    // has no likelihood of its own: the code decides it).
    const int64_t per_residue = fine ? 2 : 1;
    for (int64_t j = 0; j < L; ++j) {
      out[f * stride + j] = lp[per_residue * j];
      if (fine_logprobs && fine && fine_tokens[f * L + j] >= 0) (*fine_logprobs)[f * L + j] = lp[2 * j + 1];
    }
    out[f * stride + L] = lp[T];
    pos += T;
    if (in_context + 1 > window) {  // same eviction point as generation: before the separator
      llama_memory_seq_rm(mem, 0, static_cast<llama_pos>(P), static_cast<llama_pos>(P + T + 1));
      llama_memory_seq_add(mem, 0, static_cast<llama_pos>(P + T + 1), -1, static_cast<llama_pos>(-(T + 1)));
      pos -= T + 1;
      --in_context;
    }
    batch.clear();
    batch.add(layout.separator, static_cast<llama_pos>(pos), 0, true);
    decode(c.ctx, batch);
    const float* r = llama_get_logits_ith(c.ctx, 0);
    previous.assign(r, r + n_vocab);
    ++pos;
    ++in_context;
  }
  return out;
}

double Model::raw_decode_tokens_per_second(int64_t batch_size, int64_t steps, int64_t context) {
  if (batch_size < 1 || steps < 1 || context < 1) throw std::invalid_argument("batch, steps and context must be positive");
  Context c;
  impl_->open(c, batch_size, context + steps, std::max(context, batch_size));
  llama_memory_t mem = llama_get_memory(c.ctx);
  const int32_t token = 0;
  Batch batch(static_cast<int32_t>(std::max(context, batch_size)));
  for (int64_t i = 0; i < context; ++i) batch.add(token, static_cast<llama_pos>(i), 0, false);
  decode(c.ctx, batch);
  for (int64_t w = 1; w < batch_size; ++w) llama_memory_seq_cp(mem, 0, static_cast<llama_seq_id>(w), -1, -1);
  const auto t0 = Clock::now();
  for (int64_t s = 0; s < steps; ++s) {
    batch.clear();
    for (int64_t w = 0; w < batch_size; ++w)
      batch.add(token, static_cast<llama_pos>(context + s), static_cast<llama_seq_id>(w), true);
    decode(c.ctx, batch);
    llama_get_logits_ith(c.ctx, 0);
  }
  return static_cast<double>(batch_size * steps) / seconds_since(t0);
}

}  // namespace mdllm::generation
