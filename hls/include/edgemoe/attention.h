// Attention with reordering and single-pass softmax (docs/design.md).
//
// For each head, ATTN_ROWS query rows and their running state stay on chip; K and V
// are swept once per ATTN_ROWS queries, key by key, every row updating a running
// max m, sum S and accumulator (one exp2 per score, no score matrix). ATTN_P row
// units each serve ATTN_L rows in turn: a row's update (read m, |s - m|, exp2 with two
// ROM reads, an interpolating multiply and a shift, then acc * e, round, add, write) is
// a loop-carried chain estimated at 17-18 cycles at 3.33 ns (hls/README.md), so
// ATTN_L = 20 independent rows interleaved cover it: the same row's state is read again
// 20 iterations (20 cycles at II = 1) after it was read, later than it is written
// (UG1399 "pragma HLS dependence": distance). The estimate is not synthesised here; the
// report gate (scripts/check_hls_reports.py) fails the build if attn_key misses II = 1.
// K and V arrive at one row every ATTN_L cycles, whatever ATTN_P is.
// Each row unit reads its own split copy of the exp2 table (exp2.h), so attn_key's two
// table reads per unit meet two memories (hls/README.md, F2); the row state is held
// at its real widths (F10) and the finish uses ATTN_FINISH_COLS multipliers (F17).
// Golden: edgemoe.sim.units.softmax_attend and edgemoe.sim.golden.Golden.attention.
#ifndef EDGEMOE_ATTENTION_H_
#define EDGEMOE_ATTENTION_H_

#include "edgemoe/banked.h"
#include "edgemoe/buffers.h"
#include "edgemoe/config.h"
#include "edgemoe/exp2.h"
#include "edgemoe/newton.h"

namespace edgemoe {

/// Query rows per sweep of K and V: ATTN_P row units x ATTN_L rows each.
constexpr int ATTN_ROWS = ATTN_P * ATTN_L;
/// K and V columns fetched per cycle: a key row arrives over ATTN_L cycles.
constexpr int ATTN_KV_PART = (HEAD_DIM + ATTN_L - 1) / ATTN_L;

/// A divisor of every column where a part of a key's K or V starts (EMBED_DIM, 2 *
/// EMBED_DIM, h * HEAD_DIM, part * ATTN_KV_PART): what the K/V rotate network may assume.
/// (A head's whole Q or output row starts at h * HEAD_DIM: grain HEAD_DIM, and with
/// HEAD_DIM a multiple of the banks, as in the default build, no rotation at all.)
constexpr int ATTN_GRAIN = Gcd<Gcd<EMBED_DIM, HEAD_DIM>::value, ATTN_KV_PART>::value;

/// Width of the running sum S and of the accumulators (and of v, which shares their
/// multiplier): ACC_ATTN_SUM_BITS and ACC_ATTN_ACC_BITS (edgemoe.host.export.hls_params).
typedef sint<ACC_ATTN_SUM_BITS> attn_sum_t;
typedef sint<ACC_ATTN_ACC_BITS> attn_acc_t;
/// acc / S before the reciprocal: |acc| <= S * 2^(ATTN_QKV_W - 1) (a mean of v), plus a
/// bit for the rounding of the rescales, so acc >> (p - ATTN_GUARD) fits this.
typedef sint<ATTN_QKV_W + ATTN_GUARD + 3> attn_mean_t;

// The row state at its real widths (hls/README.md, F10), each bound from the formats:
// - m is a score or the format minimum: ATTN_SCORE_W bits.
// - S: one key adds at most 1.0 (p <= ONE) and a rescale never grows S
//   (round(S * e / ONE) <= S for e <= ONE), so after j keys ONE <= S <= j * ONE <=
//   NUM_TOKENS * ONE: ACC_ATTN_SUM_BITS = bit_length(NUM_TOKENS * ONE) + 1 bits signed
//   (edgemoe.host.contracts.accumulators). S >= ONE once a key is in: the first key
//   either raises the max (S = 0 + ONE) or equals it (e = exp2(0) = ONE).
// - acc: likewise |acc| <= sum of |p * v| <= NUM_TOKENS * ONE * 2^(ATTN_QKV_W - 1):
//   ACC_ATTN_ACC_BITS (attn_acc in the same contract; golden proves the bound).
/// Magnitude bits of S (its sign bit is always 0): the reciprocal's input width.
constexpr int ATTN_SUM_MAG_W = Bits<uint64_t(NUM_TOKENS) * ONE>::value;
static_assert(ATTN_SUM_MAG_W <= ACC_ATTN_SUM_BITS - 1, "S fits its declared width");
/// The leading one of S at the finish: p in [PROB_F, ATTN_SUM_MAG_W - 1], so the shift of
/// acc by p - ATTN_GUARD lies in [ATTN_SHIFT_LO, ATTN_SHIFT_HI].
constexpr int ATTN_SHIFT_LO = PROB_F - ATTN_GUARD;
constexpr int ATTN_SHIFT_HI = ATTN_SUM_MAG_W - 1 - ATTN_GUARD;
static_assert(ATTN_SHIFT_LO >= 1, "acc is shifted right at the finish");
/// The finish's product narrowed to act: a constant shift.
constexpr int ATTN_OUT_SHIFT = ATTN_QKV_F + NEWTON_FRAC + ATTN_GUARD - ACT_F;
static_assert(ATTN_OUT_SHIFT >= 1, "the finish rounds");
/// The finish's product: attn_mean_t x newton_t (unsigned), and a sign bit.
constexpr int ATTN_FINISH_PROD_W = ATTN_QKV_W + ATTN_GUARD + 3 + NEWTON_FRAC + 1;

/// The finish of a row runs in ATTN_FINISH_PARTS cycles of ATTN_FINISH_COLS columns each:
/// ATTN_FINISH_COLS multipliers (attn_mean_t x newton_t), not HEAD_DIM (F17).
constexpr int ATTN_FINISH_PARTS = 2;
constexpr int ATTN_FINISH_COLS = (HEAD_DIM + ATTN_FINISH_PARTS - 1) / ATTN_FINISH_PARTS;
/// A divisor of every column where a finished part starts (h * HEAD_DIM + part * COLS).
constexpr int ATTN_FINISH_GRAIN = Gcd<HEAD_DIM, ATTN_FINISH_COLS>::value;

/// Running state of one query row of the single-pass softmax.
struct SoftmaxRow {
  attn_score_t m;            ///< running max score (raw attn_score)
  attn_sum_t sum;            ///< running sum S, PROB_F fraction bits
  attn_acc_t acc[HEAD_DIM];  ///< running sum of p * v, PROB_F + ATTN_QKV_F fraction bits
};

/// Start a row: m at the format minimum, S and acc zero.
inline void softmax_init(attn_score_t& m, attn_sum_t& sum, attn_acc_t acc[HEAD_DIM]) {
  m = attn_score_t(-(wide_t(1) << (ATTN_SCORE_W - 1)));
  sum = 0;
softmax_init_acc:
  for (int d = 0; d < HEAD_DIM; ++d) {
#pragma HLS UNROLL  // HEAD_DIM registers cleared together
    acc[d] = 0;
  }
}

inline void softmax_row_init(SoftmaxRow& row) {
  softmax_init(row.m, row.sum, row.acc);
}

/// Fold key j into a row: e = exp2(-|s - m|); when s raises the max, rescale by e and add 1,
/// else add e. S = round(S * c) + p; acc = round(acc * c) + p * v; m = max(m, s), with
/// (c, p) = (e, 1) when s raises the max and (1, e) otherwise.
/// \param s raw score of this row against key j
/// \param v value row j, raw attn_qkv
/// \param rom this row unit's own split copy of the exp2 table (exp2.h)
inline void softmax_update(attn_score_t& m, attn_sum_t& sum, attn_acc_t acc[HEAD_DIM],
                           attn_score_t s, const act_t v[HEAD_DIM],
                           const exp2_entry_t rom[2][EXP2_HALF]) {
  const bool is_new = s > m;
  // |s - m| < 2^ATTN_SCORE_W: a difference of two scores, one bit wider, then its magnitude
  const sint<ATTN_SCORE_W + 1> diff = sint<ATTN_SCORE_W + 1>(s) - m;
  const uint<ATTN_SCORE_W> dist = diff < 0 ? sint<ATTN_SCORE_W + 1>(-diff) : diff;
  const prob_t e = prob_t(exp2_prob<ATTN_SCORE_F>(-wide_t(dist), rom));
  // one multiplier per element: round(x * 1.0) is x exactly, and 1.0 * v is v shifted,
  // so a raised max rescales acc by e and otherwise e weights v -- through the same
  // ACC_ATTN_ACC_BITS x PROB_W multiplier, its operand selected first
  const sint<ACC_ATTN_SUM_BITS + PROB_W> sum_prod = sum * e;
  const sint<ACC_ATTN_SUM_BITS + 1> sum_next =
      is_new ? sint<ACC_ATTN_SUM_BITS + 1>(
                   shift_round_const<PROB_F, ACC_ATTN_SUM_BITS + PROB_W>(sum_prod) + ONE)
             : sint<ACC_ATTN_SUM_BITS + 1>(sum + e);
  check_range(sum_next, 0, uint64_t(NUM_TOKENS) * ONE, "softmax sum");  // see above
  sum = attn_sum_t(sum_next);
softmax_acc:
  for (int d = 0; d < HEAD_DIM; ++d) {
#pragma HLS UNROLL  // HEAD_DIM multiply-adds per key
    const sint<ATTN_QKV_W> vd = v[d];
    const sint<ACC_ATTN_ACC_BITS + PROB_W> prod = attn_acc_t(is_new ? acc[d] : attn_acc_t(vd)) * e;
    // larger max: round(acc * e) + v * ONE; else acc + v * e (|v * e| < 2^(ATTN_QKV_W + PROB_F),
    // so prod fits acc's width there); either sum fits ACC_ATTN_ACC_BITS (the bound above)
    const sint<ACC_ATTN_ACC_BITS + 2> rescaled =
        shift_round_const<PROB_F, ACC_ATTN_ACC_BITS + PROB_W>(prod) +
        (sint<ATTN_QKV_W + PROB_F>(vd) << PROB_F);
    const sint<ACC_ATTN_ACC_BITS + 2> weighted = acc[d] + attn_acc_t(prod);
    const sint<ACC_ATTN_ACC_BITS + 2> next = is_new ? rescaled : weighted;
    check_range(next, -(wide_t(1) << (ACC_ATTN_ACC_BITS - 1)),
                (wide_t(1) << (ACC_ATTN_ACC_BITS - 1)) - 1, "softmax acc");
    acc[d] = attn_acc_t(next);  // the adders' top bits are unused: trimmed
  }
  if (is_new) {
    m = s;
  }
}

inline void softmax_row_update(SoftmaxRow& row, attn_score_t s, const act_t v[HEAD_DIM],
                               const exp2_entry_t rom[2][EXP2_HALF]) {
  softmax_update(row.m, row.sum, row.acc, s, v, rom);
}

/// Part `part` of out = acc / S through the reciprocal unit, keeping ATTN_GUARD bits of acc:
/// columns part * ATTN_FINISH_COLS + i, i < ATTN_FINISH_COLS (those below HEAD_DIM).
/// \param out ATTN_FINISH_COLS raw act values
inline void softmax_finish_part(attn_sum_t sum, const attn_acc_t acc[HEAD_DIM], int part,
                                act_t out[ATTN_FINISH_COLS]) {
  wide_t y;
  int p;
  // ONE <= S < 2^ATTN_SUM_MAG_W (the bound above): one reciprocal per part (the parts of a
  // row are independent iterations; a copy in each keeps the loop free of a recurrence)
  check_range(sum, ONE, uint64_t(NUM_TOKENS) * ONE, "softmax sum at the finish");
  reciprocal_w<ATTN_SUM_MAG_W>(uint<ATTN_SUM_MAG_W>(sum), y, p, RECIP_SEED_ATTN);
softmax_normalise:
  for (int i = 0; i < ATTN_FINISH_COLS; ++i) {
#pragma HLS UNROLL                              // ATTN_FINISH_COLS multipliers
    const int d = part * ATTN_FINISH_COLS + i;  // bank: acc is registers, part picks 1 of 2
    if (d < HEAD_DIM) {
      const attn_acc_t a = acc[d];
      // p - ATTN_GUARD in [ATTN_SHIFT_LO, ATTN_SHIFT_HI]: a 3-bit barrel shifter (default)
      const sint<ACC_ATTN_ACC_BITS - ATTN_SHIFT_LO + 1> tw =
          shift_round_in<ACC_ATTN_ACC_BITS, ATTN_SHIFT_LO, ATTN_SHIFT_HI>(a, p - ATTN_GUARD);
      check_range(tw, -(wide_t(1) << (ATTN_QKV_W + ATTN_GUARD + 2)),
                  (wide_t(1) << (ATTN_QKV_W + ATTN_GUARD + 2)) - 1, "acc / S");
      const attn_mean_t t = attn_mean_t(tw);
      const sint<ATTN_FINISH_PROD_W> prod = t * newton_t(y);
      out[i] = act_t(saturate_to<ACT_W, ATTN_FINISH_PROD_W - ATTN_OUT_SHIFT + 1>(
          shift_round_const<ATTN_OUT_SHIFT, ATTN_FINISH_PROD_W>(prod)));
    }
  }
}

/// out = acc / S for a whole row (its parts in turn).
/// \param out HEAD_DIM raw act values
inline void softmax_finish(attn_sum_t sum, const attn_acc_t acc[HEAD_DIM], act_t out[HEAD_DIM]) {
softmax_finish_parts:
  for (int part = 0; part < ATTN_FINISH_PARTS; ++part) {
    act_t res[ATTN_FINISH_COLS];
    softmax_finish_part(sum, acc, part, res);
  softmax_finish_cols:
    for (int i = 0; i < ATTN_FINISH_COLS; ++i) {
      if (part * ATTN_FINISH_COLS + i < HEAD_DIM) {
        out[part * ATTN_FINISH_COLS + i] = res[i];
      }
    }
  }
}

inline void softmax_row_finish(const SoftmaxRow& row, act_t out[HEAD_DIM]) {
  softmax_finish(row.sum, row.acc, out);
}

/// Bits of q.k: |q_d * k_d| <= 2^(2 * ATTN_QKV_W - 2) (the format minimum squared), HEAD_DIM
/// of them, and a sign bit.
constexpr int ATTN_DOT_W = Bits<uint64_t(HEAD_DIM) << (2 * ATTN_QKV_W - 2)>::value + 1;
/// q.k (2 * ATTN_QKV_F fraction bits) down to attn_score: a constant rounding shift.
constexpr int ATTN_DOT_SHIFT = 2 * ATTN_QKV_F - ATTN_SCORE_F;
static_assert(ATTN_DOT_SHIFT >= 1 && ATTN_DOT_W <= 62, "q.k is narrowed by a right shift");

/// Score of one query row against one key row: q.k narrowed to attn_score.
inline attn_score_t attention_score(const act_t q[HEAD_DIM], const act_t k[HEAD_DIM]) {
  sint<ATTN_DOT_W> dot = 0;  // an ATTN_DOT_W-bit adder tree (the bound above)
attn_dot:
  for (int d = 0; d < HEAD_DIM; ++d) {
#pragma HLS UNROLL                     // HEAD_DIM MACs per cycle per query row
    dot += qkv_t(q[d]) * qkv_t(k[d]);  // ATTN_QKV_W x ATTN_QKV_W: one DSP48E2
  }
  return saturate_to<ATTN_SCORE_W, ATTN_DOT_W - ATTN_DOT_SHIFT + 1>(
      shift_round_const<ATTN_DOT_SHIFT, ATTN_DOT_W>(dot));
}

/// Fetch part `part` (of ATTN_L) of key row j of head h: K and V, ATTN_KV_PART columns each.
/// The part's columns start at a run-time bank of the wide buffer (cyclic WIDE_BANKS), so
/// they come through the bank rotate network (banked.h); in the key registers, column d
/// is a constant and `part` only enables it.
inline void attn_fetch_kv(const act_t qkv[NUM_TOKENS][WIDE_COLS], int j, int h, int part,
                          act_t k[HEAD_DIM], act_t v[HEAD_DIM]) {
  act_t ks[ATTN_KV_PART];
  act_t vs[ATTN_KV_PART];
#pragma HLS ARRAY_PARTITION variable = ks complete dim = 1  // the part's registers
#pragma HLS ARRAY_PARTITION variable = vs complete dim = 1
  const int d0 = part * ATTN_KV_PART;
  const int left = HEAD_DIM - d0;
  const int n = left < 0 ? 0 : left < ATTN_KV_PART ? left : ATTN_KV_PART;
  load_lanes<WIDE_BANKS, ATTN_KV_PART, ATTN_GRAIN>(qkv[j], EMBED_DIM + h * HEAD_DIM + d0, n, ks);
  load_lanes<WIDE_BANKS, ATTN_KV_PART, ATTN_GRAIN>(qkv[j], 2 * EMBED_DIM + h * HEAD_DIM + d0, n,
                                                   vs);
attn_fetch_kv_elems:
  for (int d = 0; d < HEAD_DIM; ++d) {
    if (d / ATTN_KV_PART == part) {
      k[d] = ks[d % ATTN_KV_PART];
      v[d] = vs[d % ATTN_KV_PART];
    }
  }
}

/// Multi-head attention over one image's Q/K/V.
/// \param qkv NUM_TOKENS rows of 3 * EMBED_DIM raw attn_qkv values (q | k | v, heads
///            contiguous inside each), stride WIDE_COLS
/// \param out NUM_TOKENS rows of EMBED_DIM raw act values, heads concatenated
inline void attention(const act_t qkv[NUM_TOKENS][WIDE_COLS], act_t out[NUM_TOKENS][EMBED_DIM]) {
  // each row unit's own exp2 table, split by parity: one read per memory per cycle (F2)
  exp2_entry_t exp2_rom[ATTN_P][2][EXP2_HALF];
#pragma HLS ARRAY_PARTITION variable = exp2_rom complete dim = 1  // a copy per row unit
#pragma HLS ARRAY_PARTITION variable = exp2_rom complete dim = 2  // even / odd entries
  exp2_rom_fill<ATTN_P>(EXP2_TABLE_ATTN, exp2_rom);
  // row i of a sweep (query q0 + i) lives in unit i % ATTN_P, as its row i / ATTN_P; local to
  // the attention lane (initialised at every sweep before it is read). The state is three
  // arrays, not an array of structs, so that each can be partitioned: every unit reads
  // and writes its row's m, S and all HEAD_DIM accumulators in one cycle.
  attn_score_t row_m[ATTN_L][ATTN_P];
  attn_sum_t row_sum[ATTN_L][ATTN_P];
  attn_acc_t row_acc[ATTN_L][ATTN_P][HEAD_DIM];
#pragma HLS ARRAY_PARTITION variable = row_m complete dim = 2    // ATTN_P row units
#pragma HLS ARRAY_PARTITION variable = row_sum complete dim = 2  // ATTN_P row units
#pragma HLS ARRAY_PARTITION variable = row_acc complete dim = 2  // ATTN_P row units
#pragma HLS ARRAY_PARTITION variable = row_acc complete dim = 3  // HEAD_DIM per cycle
  act_t q[ATTN_L][ATTN_P][HEAD_DIM];
#pragma HLS ARRAY_PARTITION variable = q complete dim = 2  // each unit reads its query row
#pragma HLS ARRAY_PARTITION variable = q complete dim = 3  // whole, every cycle
  act_t kv_k[2][HEAD_DIM];  // ping-pong: key j in use, key j + 1 arriving part by part
  act_t kv_v[2][HEAD_DIM];
#pragma HLS ARRAY_PARTITION variable = kv_k complete dim = 0  // both keys, every column
#pragma HLS ARRAY_PARTITION variable = kv_v complete dim = 0
  act_t res[ATTN_FINISH_COLS];
  act_t qrow[HEAD_DIM];
#pragma HLS ARRAY_PARTITION variable = res complete dim = 1  // a part's columns, registers
#pragma HLS ARRAY_PARTITION variable = qrow complete dim = 1
attn_head:
  for (int h = 0; h < NUM_HEADS; ++h) {
  attn_sweep:
    for (int q0 = 0; q0 < NUM_TOKENS; q0 += ATTN_ROWS) {
      // sweep row i = l * ATTN_P + u: counters, not i / ATTN_P and i % ATTN_P (a divider
      // for an ATTN_P that is not a power of two)
      int ql = 0;
      int qu = 0;
    attn_load_queries:
      for (int i = 0; i < ATTN_ROWS; ++i) {
#pragma HLS PIPELINE II = 2  // HEAD_DIM columns of the column-banked buffer per row
        // the head's columns start at a run-time bank of wide: the rotate network
      attn_load_query_zero:
        for (int d = 0; d < HEAD_DIM; ++d) {
          qrow[d] = 0;
        }
        if (q0 + i < NUM_TOKENS) {
          load_lanes<WIDE_BANKS, HEAD_DIM, HEAD_DIM>(qkv[q0 + i], h * HEAD_DIM, HEAD_DIM, qrow);
        }
        // unit qu: each unit's state and query are their own banks (dim 2), so every unit
        // is addressed by a constant u and only enabled at run time
      attn_load_query_units:
        for (int u = 0; u < ATTN_P; ++u) {
          if (u == qu) {
            softmax_init(row_m[ql][u], row_sum[ql][u], row_acc[ql][u]);
          attn_load_query_elems:
            for (int d = 0; d < HEAD_DIM; ++d) {
              q[ql][u][d] = qrow[d];
            }
          }
        }
        if (++qu == ATTN_P) {
          qu = 0;
          ++ql;
        }
      }
    attn_first_key:
      for (int part = 0; part < ATTN_L; ++part) {
#pragma HLS PIPELINE II = 1  // one part of key 0 a cycle, as in attn_key
        attn_fetch_kv(qkv, 0, h, part, kv_k[0], kv_v[0]);
      }
      // One sweep over the keys: cycle (j, l) updates row l of every unit with key j and
      // fetches part l of key j + 1, so K and V stream at one row per ATTN_L cycles. j and l
      // are counters (not jl / ATTN_L, jl % ATTN_L: ATTN_L = 20 would be a divider).
      int j = 0;
      int l = 0;
    attn_key:
      for (int jl = 0; jl < NUM_TOKENS * ATTN_L; ++jl) {
#pragma HLS PIPELINE II = 1  // one row update per unit per cycle
                             // a row's state is next updated ATTN_L iterations later
#pragma HLS DEPENDENCE variable = row_m inter RAW distance = ATTN_L true
#pragma HLS DEPENDENCE variable = row_sum inter RAW distance = ATTN_L true
#pragma HLS DEPENDENCE variable = row_acc inter RAW distance = ATTN_L true
        const int cur = j & 1;
        if (j + 1 < NUM_TOKENS) {
          attn_fetch_kv(qkv, j + 1, h, l, kv_k[cur ^ 1], kv_v[cur ^ 1]);
        }
      attn_unit:
        for (int r = 0; r < ATTN_P; ++r) {
#pragma HLS UNROLL  // ATTN_P row units, each with its own exp2 ROM copy
          if (q0 + l * ATTN_P + r < NUM_TOKENS) {
            softmax_update(row_m[l][r], row_sum[l][r], row_acc[l][r],
                           attention_score(q[l][r], kv_k[cur]), kv_v[cur], exp2_rom[r]);
          }
        }
        if (++l == ATTN_L) {
          l = 0;
          ++j;
        }
      }
      // Finish: each row in ATTN_FINISH_PARTS iterations of ATTN_FINISH_COLS columns, so the
      // loop has ATTN_FINISH_COLS multipliers at II = 1 (F17); row i = sl * ATTN_P + su.
      int si = 0;
      int sl = 0;
      int su = 0;
      int sp = 0;
    attn_store:
      for (int ip = 0; ip < ATTN_ROWS * ATTN_FINISH_PARTS; ++ip) {
#pragma HLS PIPELINE II = 1  // ATTN_FINISH_COLS results into the column-banked buffer
        if (q0 + si < NUM_TOKENS) {
          // the row's state from unit su: every unit read at a constant index, one selected
          attn_sum_t sum = 0;
          attn_acc_t acc[HEAD_DIM];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 1
        attn_store_units:
          for (int u = 0; u < ATTN_P; ++u) {
            if (u == su) {
              sum = row_sum[sl][u];
            attn_store_acc:
              for (int d = 0; d < HEAD_DIM; ++d) {
                acc[d] = row_acc[sl][u][d];
              }
            }
          }
          softmax_finish_part(sum, acc, sp, res);
          // the part's columns start at a run-time bank of h: the rotate network
          const int c0 = sp * ATTN_FINISH_COLS;
          const int left = HEAD_DIM - c0;
          store_lanes<H_BANKS, ATTN_FINISH_COLS, ATTN_FINISH_GRAIN>(
              out[q0 + si], h * HEAD_DIM + c0, left < ATTN_FINISH_COLS ? left : ATTN_FINISH_COLS,
              res);
        }
        if (++sp == ATTN_FINISH_PARTS) {
          sp = 0;
          ++si;
          if (++su == ATTN_P) {
            su = 0;
            ++sl;
          }
        }
      }
    }
  }
}

}  // namespace edgemoe

#endif  // EDGEMOE_ATTENTION_H_
