// Attention with reordering and single-pass softmax (DESIGN.md §4.2).
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

/// Running state of one query row of the single-pass softmax.
struct SoftmaxRow {
  wide_t m;              ///< running max score (raw attn_score)
  wide_t sum;            ///< running sum S, PROB_F fraction bits
  wide_t acc[HEAD_DIM];  ///< running sum of p * v, PROB_F + ATTN_QKV_F fraction bits
};

/// Start a row: m at the format minimum, S and acc zero.
inline void softmax_init(wide_t& m, wide_t& sum, wide_t acc[HEAD_DIM]) {
  m = -(wide_t(1) << (ATTN_SCORE_W - 1));
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
inline void softmax_update(wide_t& m, wide_t& sum, wide_t acc[HEAD_DIM], wide_t s,
                           const act_t v[HEAD_DIM]) {
  const bool is_new = s > m;
  const prob_t e = prob_t(exp2_prob<ATTN_SCORE_F>(-abs_wide(s - m), EXP2_TABLE_ATTN));
  // one multiplier per element: round(x * 1.0) is x exactly, and 1.0 * v is v shifted,
  // so a raised max rescales acc by e and otherwise e weights v -- through the same
  // ACC_ATTN_ACC_BITS x PROB_W multiplier, its operand selected first
  if (is_new) {
    sum = shift_round(wide_t(attn_sum_t(sum) * e), PROB_F) + ONE;
  } else {
    sum = sum + wide_t(e);
  }
softmax_acc:
  for (int d = 0; d < HEAD_DIM; ++d) {
#pragma HLS UNROLL  // HEAD_DIM multiply-adds per key
    const wide_t vd = v[d];
    const wide_t prod = wide_t(attn_acc_t(is_new ? acc[d] : vd) * e);
    acc[d] = is_new ? shift_round(prod, PROB_F) + (vd << PROB_F) : acc[d] + prod;
  }
  if (is_new) {
    m = s;
  }
}

inline void softmax_row_update(SoftmaxRow& row, wide_t s, const act_t v[HEAD_DIM]) {
  softmax_update(row.m, row.sum, row.acc, s, v);
}

/// out = acc / S through the reciprocal unit, keeping ATTN_GUARD bits of acc.
/// \param out HEAD_DIM raw act values
inline void softmax_finish(wide_t sum, const wide_t acc[HEAD_DIM], act_t out[HEAD_DIM]) {
  wide_t y;
  int p;
  reciprocal(sum, y, p, RECIP_SEED_ATTN);
  const int OUT_SHIFT = ATTN_QKV_F + NEWTON_FRAC + ATTN_GUARD - ACT_F;
softmax_normalise:
  for (int d = 0; d < HEAD_DIM; ++d) {
#pragma HLS UNROLL
    const wide_t t = shift_round(acc[d], p - ATTN_GUARD);
    out[d] = saturate<ACT_W>(shift_round(wide_t(attn_mean_t(t) * newton_t(y)), OUT_SHIFT));
  }
}

inline void softmax_row_finish(const SoftmaxRow& row, act_t out[HEAD_DIM]) {
  softmax_finish(row.sum, row.acc, out);
}

/// Score of one query row against one key row: q.k narrowed to attn_score.
inline wide_t attention_score(const act_t q[HEAD_DIM], const act_t k[HEAD_DIM]) {
  wide_t dot = 0;
attn_dot:
  for (int d = 0; d < HEAD_DIM; ++d) {
#pragma HLS UNROLL                             // HEAD_DIM MACs per cycle per query row
    dot += wide_t(qkv_t(q[d]) * qkv_t(k[d]));  // ATTN_QKV_W x ATTN_QKV_W: one DSP48E2
  }
  return narrow<ATTN_SCORE_W, 2 * ATTN_QKV_F, ATTN_SCORE_F>(dot);
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
  // row i of a sweep (query q0 + i) lives in unit i % ATTN_P, as its row i / ATTN_P; local to
  // the attention lane (initialised at every sweep before it is read). The state is three
  // arrays, not an array of structs, so that each can be partitioned: every unit reads
  // and writes its row's m, S and all HEAD_DIM accumulators in one cycle.
  wide_t row_m[ATTN_L][ATTN_P];
  wide_t row_sum[ATTN_L][ATTN_P];
  wide_t row_acc[ATTN_L][ATTN_P][HEAD_DIM];
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
  act_t res[HEAD_DIM];
  act_t qrow[HEAD_DIM];
#pragma HLS ARRAY_PARTITION variable = res complete dim = 1  // a head's columns, registers
#pragma HLS ARRAY_PARTITION variable = qrow complete dim = 1
attn_head:
  for (int h = 0; h < NUM_HEADS; ++h) {
  attn_sweep:
    for (int q0 = 0; q0 < NUM_TOKENS; q0 += ATTN_ROWS) {
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
        // unit i % ATTN_P: each unit's state and query are their own banks (dim 2), so
        // every unit is addressed by a constant u and only enabled at run time
      attn_load_query_units:
        for (int u = 0; u < ATTN_P; ++u) {
          if (u == i % ATTN_P) {
            softmax_init(row_m[i / ATTN_P][u], row_sum[i / ATTN_P][u], row_acc[i / ATTN_P][u]);
          attn_load_query_elems:
            for (int d = 0; d < HEAD_DIM; ++d) {
              q[i / ATTN_P][u][d] = qrow[d];
            }
          }
        }
      }
    attn_first_key:
      for (int part = 0; part < ATTN_L; ++part) {
#pragma HLS PIPELINE II = 1
        attn_fetch_kv(qkv, 0, h, part, kv_k[0], kv_v[0]);
      }
      // One sweep over the keys: cycle (j, l) updates row l of every unit with key j and
      // fetches part l of key j + 1, so K and V stream at one row per ATTN_L cycles.
    attn_key:
      for (int jl = 0; jl < NUM_TOKENS * ATTN_L; ++jl) {
#pragma HLS PIPELINE II = 1  // one row update per unit per cycle
                             // a row's state is next updated ATTN_L iterations later
#pragma HLS DEPENDENCE variable = row_m inter RAW distance = ATTN_L true
#pragma HLS DEPENDENCE variable = row_sum inter RAW distance = ATTN_L true
#pragma HLS DEPENDENCE variable = row_acc inter RAW distance = ATTN_L true
        const int j = jl / ATTN_L;
        const int l = jl % ATTN_L;
        const int cur = j & 1;
        if (j + 1 < NUM_TOKENS) {
          attn_fetch_kv(qkv, j + 1, h, l, kv_k[cur ^ 1], kv_v[cur ^ 1]);
        }
      attn_unit:
        for (int r = 0; r < ATTN_P; ++r) {
#pragma HLS UNROLL  // ATTN_P row units
          if (q0 + l * ATTN_P + r < NUM_TOKENS) {
            softmax_update(row_m[l][r], row_sum[l][r], row_acc[l][r],
                           attention_score(q[l][r], kv_k[cur]), kv_v[cur]);
          }
        }
      }
    attn_store:
      for (int i = 0; i < ATTN_ROWS; ++i) {
#pragma HLS PIPELINE II = 2  // HEAD_DIM results into the column-banked buffer per row
        if (q0 + i < NUM_TOKENS) {
          // the row's state from unit i % ATTN_P: every unit read at a constant index,
          // one selected
          wide_t sum = 0;
          wide_t acc[HEAD_DIM];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 1
        attn_store_units:
          for (int u = 0; u < ATTN_P; ++u) {
            if (u == i % ATTN_P) {
              sum = row_sum[i / ATTN_P][u];
            attn_store_acc:
              for (int d = 0; d < HEAD_DIM; ++d) {
                acc[d] = row_acc[i / ATTN_P][u][d];
              }
            }
          }
          softmax_finish(sum, acc, res);
          // the head's columns start at a run-time bank of h: the rotate network
          store_lanes<H_BANKS, HEAD_DIM, HEAD_DIM>(out[q0 + i], h * HEAD_DIM, HEAD_DIM, res);
        }
      }
    }
  }
}

}  // namespace edgemoe

#endif  // EDGEMOE_ATTENTION_H_
