#include "mdllm/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "parallel.hpp"

namespace mdllm::sampling {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// log of the softmax normaliser, sum_j exp(l_j), computed stably.
double log_partition(const float* row, int64_t n_vocab) {
  const float m = *std::max_element(row, row + n_vocab);
  double s = 0;
  for (int64_t j = 0; j < n_vocab; ++j) s += std::exp(static_cast<double>(row[j]) - m);
  return m + std::log(s);
}

struct Candidate {
  float logit;
  int32_t id;
};

// Higher logit first; equal logits by lower id, so the order (and the draw) is deterministic.
bool more_likely(const Candidate& a, const Candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

int32_t sample_row(const float* row, Allowed allowed, const Params& p, double u,
                   std::vector<Candidate>& cand, std::vector<double>& prob) {
  cand.clear();
  for (int32_t id = allowed.begin; id < allowed.end; ++id) cand.push_back({row[id], id});
  if (p.temperature <= 0.0f)
    return std::min_element(cand.begin(), cand.end(), more_likely)->id;
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < cand.size()) {
    std::nth_element(cand.begin(), cand.begin() + p.top_k - 1, cand.end(), more_likely);
    cand.resize(p.top_k);
  }
  // Tokens are drawn in order of likelihood when top-p or min-p need it, else in id order.
  const bool needs_order = p.top_p < 1.0f || p.min_p > 0.0f;
  if (needs_order)
    std::sort(cand.begin(), cand.end(), more_likely);
  else if (cand.size() < static_cast<size_t>(allowed.end - allowed.begin))  // top-k reordered them
    std::sort(cand.begin(), cand.end(), [](const Candidate& a, const Candidate& b) { return a.id < b.id; });
  // The most likely candidate: first under more_likely, i.e. min_element (max_element would give the
  // least likely, and exp((logit - top) / T) could overflow at low temperature).
  const float top = needs_order ? cand.front().logit
                                : std::min_element(cand.begin(), cand.end(), more_likely)->logit;
  prob.resize(cand.size());
  double total = 0;
  size_t kept = cand.size();
  for (size_t i = 0; i < cand.size(); ++i) {
    prob[i] = std::exp((static_cast<double>(cand[i].logit) - top) / p.temperature);
    if (p.min_p > 0.0f && prob[i] < p.min_p) {  // sorted: every later token is rarer still
      kept = i;
      break;
    }
    total += prob[i];
  }
  if (p.top_p < 1.0f) {
    double cumulative = 0;
    for (size_t i = 0; i < kept; ++i) {
      cumulative += prob[i];
      if (cumulative >= p.top_p * total) {
        kept = i + 1;
        total = cumulative;
        break;
      }
    }
  }
  double target = u * total, cumulative = 0;
  for (size_t i = 0; i < kept; ++i) {
    cumulative += prob[i];
    if (target < cumulative) return cand[i].id;
  }
  return cand[kept - 1].id;  // u * total rounded up to the last boundary
}

}  // namespace

double counter_uniform(uint64_t seed, uint64_t walker, uint64_t step) {
  const uint64_t h = splitmix64(splitmix64(splitmix64(seed) ^ walker) ^ step);
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

void sample(const float* logits, int64_t n_rows, int64_t n_vocab, const Allowed* allowed,
            const Params& params, uint64_t seed, const uint64_t* walkers, const uint64_t* steps,
            int32_t* tokens, float* logprobs) {
  for (int64_t r = 0; r < n_rows; ++r)
    if (allowed[r].begin < 0 || allowed[r].end > n_vocab || allowed[r].begin >= allowed[r].end)
      throw std::invalid_argument("allowed token range [" + std::to_string(allowed[r].begin) + ", " +
                                  std::to_string(allowed[r].end) + ") is empty or outside the vocabulary of " +
                                  std::to_string(n_vocab));
  if (!(params.temperature >= 0.0f) || params.top_k < 0 || !(params.top_p > 0.0f && params.top_p <= 1.0f) ||
      !(params.min_p >= 0.0f && params.min_p <= 1.0f))
    throw std::invalid_argument("sampling parameters out of range (temperature >= 0, top_k >= 0, "
                                "0 < top_p <= 1, 0 <= min_p <= 1)");
  // One thread is faster for a handful of rows; spread larger batches.
  detail::parallel_for(n_rows, [&](int64_t begin, int64_t end) {
    std::vector<Candidate> cand;
    std::vector<double> prob;
    for (int64_t r = begin; r < end; ++r) {
      const float* row = logits + r * n_vocab;
      const double u = counter_uniform(seed, walkers[r], steps[r]);
      const int32_t token = sample_row(row, allowed[r], params, u, cand, prob);
      tokens[r] = token;
      logprobs[r] = static_cast<float>(row[token] - log_partition(row, n_vocab));
    }
  }, 8);
}

void token_logprobs(const float* logits, int64_t n_rows, int64_t n_vocab, const int32_t* tokens,
                    float* logprobs) {
  for (int64_t r = 0; r < n_rows; ++r)
    if (tokens[r] < 0 || tokens[r] >= n_vocab)
      throw std::invalid_argument("token id " + std::to_string(tokens[r]) + " outside the vocabulary of " +
                                  std::to_string(n_vocab));
  detail::parallel_for(n_rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* row = logits + r * n_vocab;
      logprobs[r] = static_cast<float>(row[tokens[r]] - log_partition(row, n_vocab));
    }
  }, 8);
}

}  // namespace mdllm::sampling
