// Attention with reordering and single-pass softmax (DESIGN.md §4.2).
//
// For each head, ATTN_P query rows and their accumulators stay on chip; K and V
// are swept once per block of ATTN_P queries, key by key, every row updating a
// running max m, sum S and accumulator (one exp2 per score, no score matrix).
// Golden: edgemoe.sim.units.softmax_attend and edgemoe.sim.golden.Golden.attention.
#ifndef EDGEMOE_ATTENTION_H_
#define EDGEMOE_ATTENTION_H_

#include "edgemoe/config.h"
#include "edgemoe/exp2.h"
#include "edgemoe/newton.h"

namespace edgemoe {

/// Running state of one query row of the single-pass softmax.
struct SoftmaxRow {
  wide_t m;              ///< running max score (raw attn_score)
  wide_t sum;            ///< running sum S, PROB_F fraction bits
  wide_t acc[HEAD_DIM];  ///< running sum of p * v, PROB_F + ATTN_QKV_F fraction bits
};

/// Start a row: m at the format minimum, S and acc zero.
inline void softmax_row_init(SoftmaxRow& row) {
  row.m = -(wide_t(1) << (ATTN_SCORE_W - 1));
  row.sum = 0;
softmax_init_acc:
  for (int d = 0; d < HEAD_DIM; ++d) {
#pragma HLS UNROLL  // HEAD_DIM registers cleared together
    row.acc[d] = 0;
  }
}

/// Fold key j into a row: e = exp2(-|s - m|); when s raises the max, rescale by e and add 1,
/// else add e. S = round(S * c) + p; acc = round(acc * c) + p * v; m = max(m, s).
/// \param s raw score of this row against key j
/// \param v value row j, raw attn_qkv
inline void softmax_row_update(SoftmaxRow& row, wide_t s, const act_t v[HEAD_DIM]) {
  const bool is_new = s > row.m;
  const wide_t e = exp2_prob<ATTN_SCORE_F>(-abs_wide(s - row.m));
  const wide_t c = is_new ? e : wide_t(ONE);
  const wide_t p = is_new ? wide_t(ONE) : e;
  row.sum = shift_round(row.sum * c, PROB_F) + p;
softmax_acc:
  for (int d = 0; d < HEAD_DIM; ++d) {
#pragma HLS UNROLL  // HEAD_DIM multiply-adds per key
    row.acc[d] = shift_round(row.acc[d] * c, PROB_F) + p * wide_t(v[d]);
  }
  if (is_new) {
    row.m = s;
  }
}

/// out = acc / S through the reciprocal unit, keeping ATTN_GUARD bits of acc.
/// \param out HEAD_DIM raw act values
inline void softmax_row_finish(const SoftmaxRow& row, act_t out[HEAD_DIM]) {
  wide_t y;
  int p;
  reciprocal(row.sum, y, p);
  const int OUT_SHIFT = ATTN_QKV_F + NEWTON_FRAC + ATTN_GUARD - ACT_F;
softmax_normalise:
  for (int d = 0; d < HEAD_DIM; ++d) {
#pragma HLS UNROLL
    const wide_t t = shift_round(row.acc[d], p - ATTN_GUARD);
    out[d] = saturate<ACT_W>(shift_round(t * y, OUT_SHIFT));
  }
}

/// Score of one query row against one key row: q.k narrowed to attn_score.
inline wide_t attention_score(const act_t q[HEAD_DIM], const act_t k[HEAD_DIM]) {
  wide_t dot = 0;
attn_dot:
  for (int d = 0; d < HEAD_DIM; ++d) {
#pragma HLS UNROLL  // HEAD_DIM MACs per cycle per query row
    dot += wide_t(q[d]) * wide_t(k[d]);
  }
  return narrow<ATTN_SCORE_W, 2 * ATTN_QKV_F, ATTN_SCORE_F>(dot);
}

/// Multi-head attention over one image's Q/K/V.
/// \param qkv NUM_TOKENS rows of 3 * EMBED_DIM raw attn_qkv values (q | k | v, heads
///            contiguous inside each), stride WIDE_COLS
/// \param out NUM_TOKENS rows of EMBED_DIM raw act values, heads concatenated
inline void attention(const act_t qkv[NUM_TOKENS][WIDE_COLS], act_t out[NUM_TOKENS][EMBED_DIM]) {
  static SoftmaxRow rows[ATTN_P];
  act_t q[ATTN_P][HEAD_DIM];
  act_t kv_k[HEAD_DIM];
  act_t kv_v[HEAD_DIM];
  act_t res[HEAD_DIM];
attn_head:
  for (int h = 0; h < NUM_HEADS; ++h) {
  attn_query_block:
    for (int q0 = 0; q0 < NUM_TOKENS; q0 += ATTN_P) {
    attn_load_queries:
      for (int r = 0; r < ATTN_P; ++r) {
        softmax_row_init(rows[r]);
      attn_load_query_elems:
        for (int d = 0; d < HEAD_DIM; ++d) {
          q[r][d] = (q0 + r < NUM_TOKENS) ? qkv[q0 + r][h * HEAD_DIM + d] : act_t(0);
        }
      }
      // One sweep over the keys per block of ATTN_P queries; on chip the rows start
      // staggered by one cycle so each cycle consumes exactly one K/V row.
    attn_key:
      for (int j = 0; j < NUM_TOKENS; ++j) {
      attn_key_elems:
        for (int d = 0; d < HEAD_DIM; ++d) {
          kv_k[d] = qkv[j][EMBED_DIM + h * HEAD_DIM + d];
          kv_v[d] = qkv[j][2 * EMBED_DIM + h * HEAD_DIM + d];
        }
      attn_row:
        for (int r = 0; r < ATTN_P; ++r) {
          if (q0 + r < NUM_TOKENS) {
            softmax_row_update(rows[r], attention_score(q[r], kv_k), kv_v);
          }
        }
      }
    attn_store:
      for (int r = 0; r < ATTN_P; ++r) {
        if (q0 + r < NUM_TOKENS) {
          softmax_row_finish(rows[r], res);
        attn_store_elems:
          for (int d = 0; d < HEAD_DIM; ++d) {
            out[q0 + r][h * HEAD_DIM + d] = res[d];
          }
        }
      }
    }
  }
}

}  // namespace edgemoe

#endif  // EDGEMOE_ATTENTION_H_
