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

/// Route every token from its gate logits.
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
    wide_t m = logits[t][0];
  moe_max:
    for (int e = 1; e < NUM_EXPERTS; ++e) {
#pragma HLS PIPELINE II = 1  // one logit per cycle
      if (wide_t(logits[t][e]) > m) {
        m = logits[t][e];
      }
    }
    wide_t p[NUM_EXPERTS];
    wide_t sum = 0;
  moe_exp:
    for (int e = 0; e < NUM_EXPERTS; ++e) {
#pragma HLS PIPELINE II = 1  // one exp2 per cycle
      p[e] = exp2_prob<ATTN_SCORE_F>(wide_t(logits[t][e]) - m);
      sum += p[e];
    }
    wide_t y;
    int ps;
    reciprocal(sum, y, ps);
  moe_topk:
    for (int e = 0; e < NUM_EXPERTS; ++e) {
#pragma HLS PIPELINE II = 1  // one expert's rank per cycle (NUM_EXPERTS comparators)
      int rank = 0;
    moe_rank:
      for (int j = 0; j < NUM_EXPERTS; ++j) {
        const wide_t lj = logits[t][j];
        const wide_t le = logits[t][e];
        if (lj > le || (lj == le && j < e)) {
          ++rank;
        }
      }
      if (rank < TOP_K) {
        const int n = rt.count[e];
        rt.token[e][n] = t;
        rt.weight[e][n] =
            saturate_unsigned<PROB_W>(shift_round(p[e] * y, NEWTON_FRAC + ps - PROB_F));
        rt.count[e] = n + 1;
      }
    }
  }
}

}  // namespace edgemoe

#endif  // EDGEMOE_MOE_H_
