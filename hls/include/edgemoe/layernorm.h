// LayerNorm of one token (DESIGN.md §3.4): one streaming pass for the statistics,
// rsqrt, then normalise the buffered token. Golden: edgemoe.sim.units.layernorm.
#ifndef EDGEMOE_LAYERNORM_H_
#define EDGEMOE_LAYERNORM_H_

#include "edgemoe/config.h"
#include "edgemoe/newton.h"

namespace edgemoe {

/// out = (x - mean) * rstd * gamma + beta over the D elements of one token.
///
/// Statistics: S1 = sum x (exact); over xs = x narrowed to ln_stat, T1 = sum xs and
/// T2 = sum xs^2; mean = round(S1 * 2^GM / D); var = round((D*T2 - T1^2) / D^2) + eps
/// (no cancellation); z = (x * 2^GM - mean) * rstd in ln_norm; out in act.
/// \tparam D elements per token
/// \tparam LANES elements handled per cycle (the activation buffers' banking)
/// \param x token, raw act
/// \param gamma, beta raw ln format
/// \param out raw act (may alias nothing)
template <int D, int LANES>
void layernorm_token(const act_t x[D], const param_t gamma[D], const param_t beta[D],
                     act_t out[D]) {
  const int GM = LN_MEAN_GUARD;
  wide_t s1 = 0;
  wide_t t1 = 0;
  wide_t t2 = 0;
ln_stats:
  for (int d0 = 0; d0 < D; d0 += LANES) {
#pragma HLS PIPELINE II = 1  // LANES elements per cycle; exact integer sums, any order
  ln_stats_lanes:
    for (int l = 0; l < LANES; ++l) {
      const int d = d0 + l;
      if (d < D) {
        const wide_t v = x[d];
        const wide_t xs = saturate<LN_STAT_W>(shift_round(v, ACT_F - LN_STAT_F));
        s1 += v;
        t1 += xs;
        t2 += xs * xs;
      }
    }
  }
  const wide_t mean = div_round(s1 << GM, D);
  const wide_t var = div_round(wide_t(D) * t2 - t1 * t1, wide_t(D) * D) + LN_EPS_RAW;
  wide_t y;
  int h;
  rsqrt<2 * LN_STAT_F>(var, y, h);
  const int zshift = ACT_F + GM + NEWTON_FRAC + h - LN_NORM_F;
ln_normalise:
  for (int d0 = 0; d0 < D; d0 += LANES) {
#pragma HLS PIPELINE II = 1  // LANES independent elements per cycle
  ln_normalise_lanes:
    for (int l = 0; l < LANES; ++l) {
      const int d = d0 + l;
      if (d < D) {
        const wide_t centred = (wide_t(x[d]) << GM) - mean;
        const wide_t z = saturate<LN_NORM_W>(shift_round(centred * y, zshift));
        const wide_t acc = z * wide_t(gamma[d]) + (wide_t(beta[d]) << LN_NORM_F);
        out[d] = saturate<ACT_W>(shift_round(acc, LN_NORM_F + LN_F - ACT_F));
      }
    }
  }
}

}  // namespace edgemoe

#endif  // EDGEMOE_LAYERNORM_H_
