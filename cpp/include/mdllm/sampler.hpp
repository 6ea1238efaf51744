// Token sampling for many walkers at once: constraint mask, temperature, top-k, top-p, min-p,
// a counter-based random number per (seed, walker, step), and the log-probability of the chosen
// token under the unmodified model distribution (the trajectory's explicit likelihood).
#pragma once

#include <cstdint>

namespace mdllm::sampling {

struct Params {
  float temperature = 1.0f;  // 0 means greedy (argmax of the allowed tokens)
  int32_t top_k = 0;         // keep the k most likely allowed tokens; 0 = all
  float top_p = 1.0f;        // keep the smallest set whose probability reaches top_p; 1 = all
  float min_p = 0.0f;        // drop tokens less likely than min_p times the most likely one
};

// The allowed token ids [begin, end) of one step; structure tokens are contiguous in the
// vocabulary and the frame separator is a range of one.
struct Allowed {
  int32_t begin = 0;
  int32_t end = 0;
};

// Uniform double in [0, 1) determined by (seed, walker, step) alone (splitmix64 of their mix), so a
// walker draws the same numbers whatever batch it is decoded in.
double counter_uniform(uint64_t seed, uint64_t walker, uint64_t step);

// Sample one token per row of logits (n_rows, n_vocab). Row r uses allowed[r], the random number
// counter_uniform(seed, walkers[r], steps[r]), and writes tokens[r] and logprobs[r] (natural log of
// the chosen token's probability under softmax of the raw logits over the whole vocabulary).
// Throws std::invalid_argument if a range is empty or outside the vocabulary.
void sample(const float* logits, int64_t n_rows, int64_t n_vocab, const Allowed* allowed,
            const Params& params, uint64_t seed, const uint64_t* walkers, const uint64_t* steps,
            int32_t* tokens, float* logprobs);

// log softmax(logits)[token] for each row: the likelihood of given tokens (scoring a trajectory).
void token_logprobs(const float* logits, int64_t n_rows, int64_t n_vocab, const int32_t* tokens,
                    float* logprobs);

}  // namespace mdllm::sampling
