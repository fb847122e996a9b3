// Mixture of experts with patch reordering (docs/design.md): gate -> softmax ->
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

/// Magnitude bits of the routing sum: NUM_EXPERTS probabilities, each <= ONE, the largest
/// exactly ONE (exp2(0)), so ONE <= sum <= NUM_EXPERTS * ONE.
constexpr int ROUTE_SUM_W = Bits<uint64_t(NUM_EXPERTS) * ONE>::value;
/// The gate weight's rounding shift NEWTON_FRAC + ps - PROB_F, with ps (the sum's leading
/// one) in [PROB_F, ROUTE_SUM_W - 1]: [ROUTE_SHIFT_LO, ROUTE_SHIFT_HI].
constexpr int ROUTE_SHIFT_LO = NEWTON_FRAC;
constexpr int ROUTE_SHIFT_HI = NEWTON_FRAC + ROUTE_SUM_W - 1 - PROB_F;
/// A gate weight before its clamp: prob x newton mantissa, both unsigned, and a sign bit.
constexpr int ROUTE_PROD_W = PROB_W + NEWTON_FRAC + 1 + 1;

/// Route every token from its gate logits, one token per cycle: NUM_EXPERTS exp2 units
/// (each with its own split copy of the exp2 table: F3), a max tree, the reciprocal and
/// NUM_EXPERTS x NUM_EXPERTS rank comparators side by side, all at the logits' width
/// (attn_score) and the sum's (F10).
/// \param logits NUM_TOKENS rows, NUM_EXPERTS raw attn_score logits (base 2)
/// \param rt queues, overwritten
template <int COLS>
void route_tokens(const act_t logits[NUM_TOKENS][COLS], Routing& rt) {
  // two table reads per exp2 unit per token: each unit its own even and odd ROM
  exp2_entry_t exp2_rom[NUM_EXPERTS][2][EXP2_HALF];
#pragma HLS ARRAY_PARTITION variable = exp2_rom complete dim = 1  // a copy per expert lane
#pragma HLS ARRAY_PARTITION variable = exp2_rom complete dim = 2  // even / odd entries
  exp2_rom_fill<NUM_EXPERTS>(EXP2_TABLE, exp2_rom);
moe_clear_queues:
  for (int e = 0; e < NUM_EXPERTS; ++e) {
    rt.count[e] = 0;
  }
moe_route_token:
  for (int t = 0; t < NUM_TOKENS; ++t) {
#pragma HLS PIPELINE II = 1       // one token per cycle
    attn_score_t l[NUM_EXPERTS];  // the logits are raw attn_score (the gate call narrows)
  moe_load:
    for (int e = 0; e < NUM_EXPERTS; ++e) {
      l[e] = attn_score_t(logits[t][e]);
    }
    attn_score_t m = l[0];
  moe_max:
    for (int e = 1; e < NUM_EXPERTS; ++e) {
      if (l[e] > m) {
        m = l[e];
      }
    }
    prob_t p[NUM_EXPERTS];
    uint<ROUTE_SUM_W> sum = 0;
  moe_exp:
    for (int e = 0; e < NUM_EXPERTS; ++e) {
      // l[e] - m in (-2^ATTN_SCORE_W, 0]: exp2's input range
      p[e] = prob_t(exp2_prob<ATTN_SCORE_F>(wide_t(l[e]) - wide_t(m), exp2_rom[e]));
      sum += p[e];
    }
    check_range(sum, ONE, uint64_t(NUM_EXPERTS) * ONE, "routing sum");
    wide_t y;
    int ps;
    reciprocal_w<ROUTE_SUM_W>(sum, y, ps, RECIP_SEED);
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
        // a probability: at most 1.0 (so g * y never outgrows an activation); the shift
        // lies in [ROUTE_SHIFT_LO, ROUTE_SHIFT_HI] (ps above)
        const sint<ROUTE_PROD_W> prod = p[e] * newton_t(y);
        const wide_t g = shift_round_in<ROUTE_PROD_W, ROUTE_SHIFT_LO, ROUTE_SHIFT_HI>(
            prod, NEWTON_FRAC + ps - PROB_F);
        rt.weight[e][n] = g < 0 ? wide_t(0) : g > ONE ? wide_t(ONE) : g;
        rt.count[e] = n + 1;
      }
    }
  }
}

}  // namespace edgemoe

#endif  // EDGEMOE_MOE_H_
