// LayerNorm (DESIGN.md §3.4): one streaming pass for the statistics, rsqrt, then
// normalise the buffered tokens. Golden: edgemoe.sim.units.layernorm.
#ifndef EDGEMOE_LAYERNORM_H_
#define EDGEMOE_LAYERNORM_H_

#include "edgemoe/banked.h"
#include "edgemoe/config.h"
#include "edgemoe/newton.h"

namespace edgemoe {

/// Per-token statistics, ready for the normalise pass: z = ((x << GM) - mean) * y >> shift.
struct LnStats {
  wide_t mean;  ///< round(S1 * 2^GM / D)
  wide_t y;     ///< rsqrt(var) mantissa, NEWTON_FRAC fraction bits
  int shift;    ///< right shift taking centred * y to ln_norm
};

/// Add n (<= LANES) elements of one token to the exact sums S1, T1, T2.
template <int LANES>
inline void ln_accumulate(const act_t v[LANES], int n, wide_t& s1, wide_t& t1, wide_t& t2) {
ln_stats_lanes:
  for (int l = 0; l < LANES; ++l) {
    if (l < n) {
      const wide_t xs = saturate<LN_STAT_W>(shift_round(wide_t(v[l]), ACT_F - LN_STAT_F));
      s1 += wide_t(v[l]);
      t1 += xs;
      t2 += wide_t(sint<LN_STAT_W>(xs) * sint<LN_STAT_W>(xs));
    }
  }
}

/// mean and rsqrt(var + eps) from the sums of one token.
template <int D>
inline LnStats ln_finish(wide_t s1, wide_t t1, wide_t t2) {
  const int GM = LN_MEAN_GUARD;
  LnStats st;
  st.mean = div_round(s1 << GM, D);
  // T1 fits ACC_LN_STAT_SUM_BITS (D terms of ln_stat): one multiplier of that width
  const wide_t t1sq = wide_t(sint<ACC_LN_STAT_SUM_BITS>(t1) * sint<ACC_LN_STAT_SUM_BITS>(t1));
  const wide_t var = div_round(wide_t(D) * t2 - t1sq, wide_t(D) * D) + LN_EPS_RAW;
  int h;
  rsqrt<2 * LN_STAT_F>(var, st.y, h);
  st.shift = ACT_F + GM + NEWTON_FRAC + h - LN_NORM_F;
  return st;
}

/// Normalise n (<= LANES) elements of one token, with their gamma and beta.
template <int LANES>
inline void ln_normalise(const act_t v[LANES], const LnStats& st, const param_t gamma[LANES],
                         const param_t beta[LANES], int n, act_t out[LANES]) {
ln_normalise_lanes:
  for (int l = 0; l < LANES; ++l) {
    if (l < n) {
      // |x * 2^GM - mean| < 2^(ACT_W + GM): one more bit for the sign of the difference
      const wide_t centred = (wide_t(v[l]) << LN_MEAN_GUARD) - st.mean;
      const wide_t prod = wide_t(sint<ACT_W + LN_MEAN_GUARD + 1>(centred) * newton_t(st.y));
      const wide_t z = saturate<LN_NORM_W>(shift_round(prod, st.shift));
      const wide_t acc = wide_t(sint<LN_NORM_W>(z) * gamma[l]) + (wide_t(beta[l]) << LN_NORM_F);
      out[l] = saturate<ACT_W>(shift_round(acc, LN_NORM_F + LN_F - ACT_F));
    }
  }
}

/// The c-th group of LANES elements of a token: how many there are (D need not be whole
/// groups).
template <int D, int LANES>
inline int ln_group(int c) {
  const int left = D - c * LANES;
  return left < LANES ? left : LANES;
}

/// Normalise group c of one token: x read through the bank rotate network of its buffer
/// (cyclic IN_BANKS), gamma/beta (cyclic LANES: static banks), out written through the
/// rotate network of its own (cyclic OUT_BANKS). See banked.h.
template <int D, int LANES, int IN_BANKS, int OUT_BANKS>
inline void ln_normalise_group(const act_t x[D], const LnStats& st, const param_t gamma[D],
                               const param_t beta[D], int c, act_t out[D]) {
  const int n = ln_group<D, LANES>(c);
  act_t v[LANES];
  param_t g[LANES];
  param_t b[LANES];
  act_t y[LANES];
#pragma HLS ARRAY_PARTITION variable = v complete dim = 1  // the lanes' registers
#pragma HLS ARRAY_PARTITION variable = g complete dim = 1
#pragma HLS ARRAY_PARTITION variable = b complete dim = 1
#pragma HLS ARRAY_PARTITION variable = y complete dim = 1
  load_lanes<IN_BANKS, LANES, LANES>(x, c * LANES, n, v);
  load_lanes<LANES, LANES, LANES>(gamma, c * LANES, n, g);
  load_lanes<LANES, LANES, LANES>(beta, c * LANES, n, b);
  ln_normalise<LANES>(v, st, g, b, n, y);
  store_lanes<OUT_BANKS, LANES, LANES>(out, c * LANES, n, y);
}

/// Add group c of one token (x cyclic IN_BANKS) to the sums.
template <int D, int LANES, int IN_BANKS>
inline void ln_accumulate_group(const act_t x[D], int c, wide_t& s1, wide_t& t1, wide_t& t2) {
  const int n = ln_group<D, LANES>(c);
  act_t v[LANES];
#pragma HLS ARRAY_PARTITION variable = v complete dim = 1  // the lanes' registers
  load_lanes<IN_BANKS, LANES, LANES>(x, c * LANES, n, v);
  ln_accumulate<LANES>(v, n, s1, t1, t2);
}

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
  wide_t s1 = 0;
  wide_t t1 = 0;
  wide_t t2 = 0;
ln_stats:
  for (int c = 0; c * LANES < D; ++c) {
#pragma HLS PIPELINE II = 1  // LANES elements per cycle; exact integer sums, any order
    ln_accumulate_group<D, LANES, LANES>(x, c, s1, t1, t2);
  }
  const LnStats st = ln_finish<D>(s1, t1, t2);
ln_normalise:
  for (int c = 0; c * LANES < D; ++c) {
#pragma HLS PIPELINE II = 1  // LANES independent elements per cycle
    ln_normalise_group<D, LANES, LANES, LANES>(x, st, gamma, beta, c, out);
  }
}

/// LayerNorm of the first `rows` tokens, as two flat pipelines over all of them (the
/// same arithmetic as layernorm_token): the statistics pass feeds one rsqrt per token
/// into a per-token table, then the normalise pass reads it. Neither pass drains
/// between tokens, so a block costs about 2 * rows * ceil(D / LANES) cycles.
/// \tparam IN_BANKS, OUT_BANKS cyclic partition factors of x and out (dim 2): every
///         group of LANES columns goes through their bank rotate networks (banked.h)
template <int ROWS, int D, int LANES, int IN_BANKS, int OUT_BANKS>
void layernorm_rows(const act_t x[ROWS][D], const param_t gamma[D], const param_t beta[D],
                    act_t out[ROWS][D], int rows) {
  constexpr int CH = (D + LANES - 1) / LANES;  // cycles per token
  LnStats st[ROWS];  // written by the statistics pass before the normalise pass reads it
  wide_t s1 = 0;
  wide_t t1 = 0;
  wide_t t2 = 0;
ln_rows_stats:
  for (int i = 0; i < rows * CH; ++i) {
#pragma HLS PIPELINE II = 1  // LANES elements per cycle; one rsqrt issued per token
#pragma HLS LOOP_TRIPCOUNT min = CH max = ROWS * CH
    const int t = i / CH;
    const int c = i % CH;
    if (c == 0) {
      s1 = 0;
      t1 = 0;
      t2 = 0;
    }
    ln_accumulate_group<D, LANES, IN_BANKS>(x[t], c, s1, t1, t2);
    if (c == CH - 1) {
      st[t] = ln_finish<D>(s1, t1, t2);
    }
  }
ln_rows_normalise:
  for (int i = 0; i < rows * CH; ++i) {
#pragma HLS PIPELINE II = 1  // LANES independent elements per cycle
#pragma HLS LOOP_TRIPCOUNT min = CH max = ROWS * CH
    const int t = i / CH;
    ln_normalise_group<D, LANES, IN_BANKS, OUT_BANKS>(x[t], st[t], gamma, beta, i % CH, out[t]);
  }
}

}  // namespace edgemoe

#endif  // EDGEMOE_LAYERNORM_H_
