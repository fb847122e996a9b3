// Mixture of experts with patch reordering (DESIGN.md §4.3): gate -> softmax ->
// top-k (ties to the lower expert index) -> per-expert queues of (token, weight) ->
// only non-empty experts, in ascending index, each over its whole queue: fc1 + GELU,
// then fc2 scaled by the gate weight and accumulated into the token's residual.
// Golden: edgemoe.sim.golden.Golden.gate / .block.
#ifndef EDGEMOE_MOE_H_
#define EDGEMOE_MOE_H_

#include "edgemoe/buffers.h"
#include "edgemoe/config.h"
#include "edgemoe/exp2.h"
#include "edgemoe/newton.h"

namespace edgemoe {

/// Route every token from its gate logits, one token per cycle: NUM_EXPERTS exp2 units,
/// a max tree, the reciprocal and NUM_EXPERTS x NUM_EXPERTS rank comparators side by side.
/// \param logits NUM_TOKENS rows, NUM_EXPERTS raw attn_score logits (base 2)
/// \param rt queues, overwritten
template <int COLS>
void route_tokens(const act_t logits[NUM_TOKENS][COLS], Routing& rt) {
moe_clear_queues:
  for (int e = 0; e < NUM_EXPERTS; ++e) {
    rt.count[e] = 0;
  }
moe_route_token:
  for (int t = 0; t < NUM_TOKENS; ++t) {
#pragma HLS PIPELINE II = 1  // one token per cycle
    wide_t l[NUM_EXPERTS];
  moe_load:
    for (int e = 0; e < NUM_EXPERTS; ++e) {
      l[e] = logits[t][e];
    }
    wide_t m = l[0];
  moe_max:
    for (int e = 1; e < NUM_EXPERTS; ++e) {
      if (l[e] > m) {
        m = l[e];
      }
    }
    wide_t p[NUM_EXPERTS];
    wide_t sum = 0;
  moe_exp:
    for (int e = 0; e < NUM_EXPERTS; ++e) {
      p[e] = exp2_prob<ATTN_SCORE_F>(l[e] - m, EXP2_TABLE);
      sum += p[e];
    }
    wide_t y;
    int ps;
    reciprocal(sum, y, ps, RECIP_SEED);
  moe_topk:
    for (int e = 0; e < NUM_EXPERTS; ++e) {
      int rank = 0;
    moe_rank:
      for (int j = 0; j < NUM_EXPERTS; ++j) {
        if (l[j] > l[e] || (l[j] == l[e] && j < e)) {
          ++rank;
        }
      }
      if (rank < TOP_K) {
        const int n = rt.count[e];
        rt.token[e][n] = t;
        // a probability: at most 1.0 (so g * y never outgrows an activation)
        const wide_t g = shift_round(wide_t(prob_t(p[e]) * newton_t(y)), NEWTON_FRAC + ps - PROB_F);
        rt.weight[e][n] = g < 0 ? wide_t(0) : g > ONE ? wide_t(ONE) : g;
        rt.count[e] = n + 1;
      }
    }
  }
}

}  // namespace edgemoe

#endif  // EDGEMOE_MOE_H_
