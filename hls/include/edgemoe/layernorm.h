// LayerNorm (docs/numerics.md): one streaming pass for the statistics, rsqrt, then
// normalise the buffered tokens. Golden: edgemoe.sim.units.layernorm.
// Every value at its real width, no run-time division, the one run-time shift bounded
// (hls/README.md, F10).
#ifndef EDGEMOE_LAYERNORM_H_
#define EDGEMOE_LAYERNORM_H_

#include "edgemoe/banked.h"
#include "edgemoe/config.h"
#include "edgemoe/newton.h"

namespace edgemoe {

// Widths (hls/README.md, F10), from the formats and D, each bound proven here and
// checked in the C-sim:
// - S1 = sum of D act values: |S1| <= D * 2^(ACT_W - 1).
// - T1 = sum of D ln_stat values: |T1| <= D * 2^(LN_STAT_W - 1) (ACC_LN_STAT_SUM_BITS).
// - T2 = sum of D squares: 0 <= T2 <= D * 2^(2 * LN_STAT_W - 2).
// - D * T2 - T1^2 is in [0, D * T2] (Cauchy-Schwarz, exact on the integers).
// - var = round((D * T2 - T1^2) / D^2) + eps <= 2^(2 * LN_STAT_W - 2) + eps (a population
//   variance is at most the largest square) and >= eps >= 1.
// - mean = round(S1 * 2^GM / D): |mean| <= 2^(ACT_W - 1 + GM).
// The two divisions by the constants 2D and 2D^2 (D = ODD * 2^TWOS) are a floor shift by
// TWOS + 1 (or 2 * TWOS + 1) and a division by the odd part (3 and 9 for D = 192): nested
// floors compose, floor(floor(n / 2^k) / ODD) = floor(n / (2^k * ODD)), so round(a / d) =
// floor((2a + d) / 2d) is unchanged. The odd division is udiv_const: restoring long division
// with a Bits<ODD>-bit remainder, no divider core and no remainder operator.
template <int D>
struct LnWidths {
  static constexpr int S1 = Bits<uint64_t(D) << (ACT_W - 1)>::value + 1;
  static constexpr int T1 = Bits<uint64_t(D) << (LN_STAT_W - 1)>::value + 1;
  static constexpr int T2 = Bits<uint64_t(D) << (2 * LN_STAT_W - 2)>::value;  // unsigned
  static constexpr int VAR = Bits<(uint64_t(1) << (2 * LN_STAT_W - 2)) + LN_EPS_RAW>::value;
  static constexpr int MEAN = ACT_W + LN_MEAN_GUARD;  // |mean| <= 2^(MEAN - 1)
  static constexpr int CENTRED = ACT_W + LN_MEAN_GUARD + 1;
  static constexpr int PROD = CENTRED + NEWTON_FRAC + 2;  // centred x newton_t
  static_assert(D != EMBED_DIM || T1 == ACC_LN_STAT_SUM_BITS,
                "T1 is the contract's LayerNorm sum (edgemoe.host.contracts.accumulators)");
};

/// floor(v / 2) for a compile-time int of either sign.
constexpr int floor_half(int v) {
  return v >= 0 ? v / 2 : -((1 - v) / 2);
}

/// The normalise pass's right shift ACT_F + GM + NEWTON_FRAC + h - LN_NORM_F, with h =
/// (p - 2 * LN_STAT_F) / 2 from rsqrt_w and its p in [lead_one(eps) - 1, VAR - 1].
template <int D>
struct LnShift {
  static constexpr int BASE = ACT_F + LN_MEAN_GUARD + NEWTON_FRAC - LN_NORM_F;
  static constexpr int LO =
      BASE + floor_half(Bits<uint64_t(LN_EPS_RAW)>::value - 2 - 2 * LN_STAT_F);
  static constexpr int HI = BASE + floor_half(LnWidths<D>::VAR - 1 - 2 * LN_STAT_F);
};

/// Per-token statistics, ready for the normalise pass: z = ((x << GM) - mean) * y >> shift.
template <int D>
struct LnStats {
  sint<LnWidths<D>::MEAN> mean;  ///< round(S1 * 2^GM / D)
  newton_t y;                    ///< rsqrt(var) mantissa, NEWTON_FRAC fraction bits
  /// right shift taking centred * y to ln_norm, in [LnShift::LO, LnShift::HI]
  uint<Bits<LnShift<D>::HI>::value> shift;
};

/// The exact sums of one token at their widths.
template <int D>
struct LnSums {
  sint<LnWidths<D>::S1> s1;
  sint<LnWidths<D>::T1> t1;
  uint<LnWidths<D>::T2> t2;
};

template <int D>
inline void ln_clear(LnSums<D>& sums) {
  sums.s1 = 0;
  sums.t1 = 0;
  sums.t2 = 0;
}

/// Add n (<= LANES) elements of one token to the exact sums S1, T1, T2.
template <int D, int LANES>
inline void ln_accumulate(const act_t v[LANES], int n, LnSums<D>& sums) {
  static_assert(ACT_F >= LN_STAT_F, "ln_stat keeps at most act's fraction bits");
ln_stats_lanes:
  for (int l = 0; l < LANES; ++l) {
    if (l < n) {
      const sint<LN_STAT_W> xs =
          saturate_to<LN_STAT_W, ACT_W + 1>(RoundShift<ACT_F - LN_STAT_F>::apply<ACT_W>(v[l]));
      sums.s1 += v[l];
      sums.t1 += xs;
      sums.t2 += xs * xs;
    }
  }
}

/// floor(q / ODD) for a signed Q-bit q and a constant odd ODD: biased to a non-negative
/// dividend by K * ODD (K = 2^(Q - 1) >= |q|), divided, unbiased: exact.
template <int Q, uint64_t ODD>
inline sint<Q> sdiv_floor_odd(sint<Q> q) {
  constexpr uint64_t K = uint64_t(1) << (Q - 1);
  constexpr int NW = Bits<(K << 1) * ODD>::value;  // q + K * ODD < 2K * ODD
  const uint<NW> biased = uint<NW>(wide_t(q) + wide_t(K * ODD));
  return sint<Q>(wide_t(udiv_const<NW, ODD>(biased)) - wide_t(K));
}

/// mean and rsqrt(var + eps) from the sums of one token.
template <int D>
inline LnStats<D> ln_finish(const LnSums<D>& sums) {
  typedef LnWidths<D> Wd;
  typedef OddPart<uint64_t(D)> Dp;
  const int GM = LN_MEAN_GUARD;
  check_range(sums.s1, -(wide_t(D) << (ACT_W - 1)), wide_t(D) << (ACT_W - 1), "LN S1");
  check_range(sums.t2, 0, wide_t(D) << (2 * LN_STAT_W - 2), "LN T2");
  LnStats<D> st;
  // mean = floor((2 * S1 * 2^GM + D) / 2D): floor by 2^(TWOS + 1), then by ODD
  const sint<Wd::S1 + GM + 2> num_mean = (sint<Wd::S1 + GM + 2>(sums.s1) << (GM + 1)) + D;
  const sint<Wd::S1 + GM + 2 - Dp::TWOS - 1> q_mean = num_mean >> (Dp::TWOS + 1);
  const wide_t mean = sdiv_floor_odd<Wd::S1 + GM + 2 - Dp::TWOS - 1, Dp::ODD>(q_mean);
  check_range(mean, -(wide_t(1) << (Wd::MEAN - 1)), (wide_t(1) << (Wd::MEAN - 1)) - 1, "LN mean");
  st.mean = mean;
  // T1 fits ACC_LN_STAT_SUM_BITS (D terms of ln_stat): one multiplier of that width
  const uint<2 * Wd::T1> t1sq = sint<Wd::T1>(sums.t1) * sint<Wd::T1>(sums.t1);
  const uint<Bits<D>::value + Wd::T2> a = uint<Bits<D>::value + Wd::T2>(sums.t2) * D - t1sq;
  // var = floor((2a + D^2) / 2D^2) + eps: floor by 2^(2 TWOS + 1), then by ODD^2
  const uint<Bits<D>::value + Wd::T2 + 1> num_var =
      (uint<Bits<D>::value + Wd::T2 + 1>(a) << 1) + uint64_t(D) * D;
  constexpr int QV = Bits<D>::value + Wd::T2 + 1 - 2 * Dp::TWOS - 1;
  const uint<QV> q_var = num_var >> (2 * Dp::TWOS + 1);
  const wide_t var = wide_t(udiv_const<QV, Dp::ODD * Dp::ODD>(q_var)) + LN_EPS_RAW;
  check_range(var, LN_EPS_RAW, (wide_t(1) << Wd::VAR) - 1, "LN var");
  wide_t y;
  int h;
  rsqrt_w<Wd::VAR, 2 * LN_STAT_F>(uint<Wd::VAR>(var), y, h);
  st.y = newton_t(y);
  const int shift = ACT_F + GM + NEWTON_FRAC + h - LN_NORM_F;
  check_range(shift, LnShift<D>::LO, LnShift<D>::HI, "LN shift");
  st.shift = shift;
  return st;
}

/// Normalise n (<= LANES) elements of one token, with their gamma and beta.
template <int D, int LANES>
inline void ln_normalise(const act_t v[LANES], const LnStats<D>& st, const param_t gamma[LANES],
                         const param_t beta[LANES], int n, act_t out[LANES]) {
  typedef LnWidths<D> Wd;
  constexpr int OUT_SHIFT = LN_NORM_F + LN_F - ACT_F;
  constexpr int ACC_W = LN_NORM_W + 16 + 1;  // z x gamma (16-bit container) + beta
  static_assert(OUT_SHIFT >= 1 && LnShift<D>::LO >= 1, "both narrowings round right shifts");
ln_normalise_lanes:
  for (int l = 0; l < LANES; ++l) {
    if (l < n) {
      // |x * 2^GM - mean| < 2^(ACT_W + GM): one more bit for the sign of the difference
      const sint<Wd::CENTRED> centred = (sint<Wd::CENTRED>(v[l]) << LN_MEAN_GUARD) - st.mean;
      const sint<Wd::PROD> prod = centred * st.y;
      // st.shift in [LnShift::LO, LnShift::HI] (LnShift): a bounded barrel shifter
      const sint<LN_NORM_W> z = saturate_to<LN_NORM_W, Wd::PROD - LnShift<D>::LO + 1>(
          shift_round_in<Wd::PROD, LnShift<D>::LO, LnShift<D>::HI>(prod, int(st.shift)));
      const sint<ACC_W> acc = z * gamma[l] + (sint<16 + LN_NORM_F>(beta[l]) << LN_NORM_F);
      out[l] = act_t(
          saturate_to<ACT_W, ACC_W - OUT_SHIFT + 1>(shift_round_const<OUT_SHIFT, ACC_W>(acc)));
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
inline void ln_normalise_group(const act_t x[D], const LnStats<D>& st, const param_t gamma[D],
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
  ln_normalise<D, LANES>(v, st, g, b, n, y);
  store_lanes<OUT_BANKS, LANES, LANES>(out, c * LANES, n, y);
}

/// Add group c of one token (x cyclic IN_BANKS) to the sums.
template <int D, int LANES, int IN_BANKS>
inline void ln_accumulate_group(const act_t x[D], int c, LnSums<D>& sums) {
  const int n = ln_group<D, LANES>(c);
  act_t v[LANES];
#pragma HLS ARRAY_PARTITION variable = v complete dim = 1  // the lanes' registers
  load_lanes<IN_BANKS, LANES, LANES>(x, c * LANES, n, v);
  ln_accumulate<D, LANES>(v, n, sums);
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
  LnSums<D> sums;
  ln_clear<D>(sums);
ln_stats:
  for (int c = 0; c * LANES < D; ++c) {
#pragma HLS PIPELINE II = 1  // LANES elements per cycle; exact integer sums, any order
    ln_accumulate_group<D, LANES, LANES>(x, c, sums);
  }
  const LnStats<D> st = ln_finish<D>(sums);
ln_normalise:
  for (int c = 0; c * LANES < D; ++c) {
#pragma HLS PIPELINE II = 1  // LANES independent elements per cycle
    ln_normalise_group<D, LANES, LANES, LANES>(x, st, gamma, beta, c, out);
  }
}

/// LayerNorm of the first `rows` tokens, as two flat pipelines over all of them (the
/// same arithmetic as layernorm_token): the statistics pass feeds one rsqrt per token
/// into a per-token table, then the normalise pass reads it. Neither pass drains
/// between tokens, so a block costs about 2 * rows * ceil(D / LANES) cycles. Token and
/// group are counters (t, c), not i / CH and i % CH (a divider unless CH is a power of two).
/// \tparam IN_BANKS, OUT_BANKS cyclic partition factors of x and out (dim 2): every
///         group of LANES columns goes through their bank rotate networks (banked.h)
template <int ROWS, int D, int LANES, int IN_BANKS, int OUT_BANKS>
void layernorm_rows(const act_t x[ROWS][D], const param_t gamma[D], const param_t beta[D],
                    act_t out[ROWS][D], int rows) {
  constexpr int CH = (D + LANES - 1) / LANES;  // cycles per token
  // written by the statistics pass before the normalise pass reads it: one entry per token
  // at its real widths (mean, y, shift: 31 + 21 + 6 bits in the default build)
  LnStats<D> st[ROWS];
  LnSums<D> sums;
  ln_clear<D>(sums);
  int t = 0;
  int c = 0;
ln_rows_stats:
  for (int i = 0; i < rows * CH; ++i) {
#pragma HLS PIPELINE II = 1  // LANES elements per cycle; one rsqrt issued per token
#pragma HLS LOOP_TRIPCOUNT min = CH max = ROWS * CH
    if (c == 0) {
      ln_clear<D>(sums);
    }
    ln_accumulate_group<D, LANES, IN_BANKS>(x[t], c, sums);
    if (c == CH - 1) {
      st[t] = ln_finish<D>(sums);
      c = 0;
      ++t;
    } else {
      ++c;
    }
  }
  t = 0;
  c = 0;
ln_rows_normalise:
  for (int i = 0; i < rows * CH; ++i) {
#pragma HLS PIPELINE II = 1  // LANES independent elements per cycle
#pragma HLS LOOP_TRIPCOUNT min = CH max = ROWS * CH
    ln_normalise_group<D, LANES, IN_BANKS, OUT_BANKS>(x[t], st[t], gamma, beta, c, out[t]);
    if (c == CH - 1) {
      c = 0;
      ++t;
    } else {
      ++c;
    }
  }
}

}  // namespace edgemoe

#endif  // EDGEMOE_LAYERNORM_H_
