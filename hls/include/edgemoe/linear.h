// The unified linear unit (DESIGN.md §4.1): ONE engine, a single hardware instance,
// for every matrix product but attention's -- patch embedding, Q/K/V, proj, dense
// fc1/fc2, the gate, expert fc1/fc2. LIN_IN x LIN_OUT MACs per cycle; weights arrive
// pre-tiled from DDR (edgemoe.host.tiling: output tiles outermost, input tiles
// inside, each tile [LIN_IN][LIN_OUT]) and the next tile is fetched while the
// current one computes. A call names where its rows come from (optionally gathered
// through an expert queue) and what happens to a finished output tile: narrow and
// store (optionally through GELU), add into the residual stream, or scale by the
// gate weight and accumulate into the gathered token (MoE).
// Golden: edgemoe.sim.golden.linear and its callers.
#ifndef EDGEMOE_LINEAR_H_
#define EDGEMOE_LINEAR_H_

#include "edgemoe/buffers.h"
#include "edgemoe/config.h"
#include "edgemoe/ddr.h"
#include "edgemoe/gelu.h"

namespace edgemoe {

constexpr int ceil_div(int a, int b) {
  return (a + b - 1) / b;
}

/// Where the rows of a linear-unit call come from.
enum LinearInput {
  IN_PIXELS,    ///< pix: raw uint8 patches
  IN_H,         ///< h: LayerNorm or attention output
  IN_H_GATHER,  ///< h rows listed in an expert queue
  IN_WIDE,      ///< wide: MLP or expert hidden rows
};

/// What a linear-unit call does with a finished output.
enum LinearOutput {
  OUT_EMBED,     ///< x[r + 1] = narrow(acc + token bias staged in x[r + 1])
  OUT_QKV,       ///< wide = narrow to attn_qkv
  OUT_PROJ,      ///< x += narrow(acc + attention bias)  (proj)
  OUT_RESIDUAL,  ///< x += narrow(acc + bias)  (dense fc2)
  OUT_GATE,      ///< wide = narrow to attn_score (gate logits, no bias)
  OUT_GELU,      ///< wide = GELU(narrow(acc + bias))  (fc1)
  OUT_EXPERT,    ///< x[token] += round(g * narrow(acc + bias))  (expert fc2)
};

/// One call of the unit.
struct LinearCall {
  LinearInput in;       ///< row source
  LinearOutput out;     ///< epilogue
  int k;                ///< input features (reduction length), <= WIDE_COLS or PATCH_DIM
  int o;                ///< output features
  int rows;             ///< rows to process, <= NUM_TOKENS
  uint64_t w_off;       ///< byte offset of the pre-tiled weights in the bundle
  uint64_t b_off;       ///< byte offset of the padded bias, 0 for none
  int expert;           ///< queue for IN_H_GATHER / OUT_EXPERT
  uint64_t next_w_off;  ///< first weight tile of the call that follows, fetched during this
                        ///< call's last tile (e.g. the next expert); 0 for none
};

/// A first weight tile fetched ahead by the previous call (cross-call prefetch).
struct LinearPrefetch {
  bool valid;      ///< a tile is waiting
  uint64_t w_off;  ///< which call's first tile it is
  int buf;         ///< which half of the ping-pong buffer holds it
};

/// The unit's prefetch state; cleared at the start of every image.
inline LinearPrefetch& linear_prefetch() {
  static LinearPrefetch state = {false, 0, 0};
  return state;
}

// Accumulator fraction bits: input F + weight F.
constexpr int LIN_ACC_F = ACT_F + WEIGHT_F;
constexpr int PATCH_ACC_F = PIXEL_F + PATCH_WEIGHT_F;
constexpr int GATE_ACC_F = ACT_F + GATE_WEIGHT_F;
constexpr int LIN_MAX_K = PATCH_DIM > WIDE_COLS ? PATCH_DIM : WIDE_COLS;
constexpr int LIN_MAX_O = WIDE_COLS;

static_assert(TOKEN_BIAS_W <= ACT_W, "token bias is staged in the activation buffer");
static_assert(PATCH_ACC_F >= TOKEN_BIAS_F && LIN_ACC_F >= BIAS_F && LIN_ACC_F >= ATTN_BIAS_F,
              "biases align to the accumulator by a left shift");

/// Input element (r, c) of a call, 0 past the last column (padded weights are 0 too).
inline wide_t linear_input(const LinearCall& call, const Buffers& buf, int r, int c) {
  if (c >= call.k) {
    return 0;
  }
  switch (call.in) {
    case IN_PIXELS:
      return wide_t(buf.pix[r][c]);
    case IN_H:
      return wide_t(buf.h[r][c]);
    case IN_H_GATHER:
      return wide_t(buf.h[buf.routing.token[call.expert][r]][c]);
    default:
      return wide_t(buf.wide[r][c]);
  }
}

/// The epilogue of one output value.
inline void linear_output(const LinearCall& call, Buffers& buf, int r, int col, wide_t acc,
                          wide_t bias) {
  switch (call.out) {
    case OUT_EMBED: {
      const wide_t tb = buf.x[r + 1][col];
      buf.x[r + 1][col] =
          narrow<ACT_W, PATCH_ACC_F, ACT_F>(acc + (tb << (PATCH_ACC_F - TOKEN_BIAS_F)));
      break;
    }
    case OUT_QKV:
      buf.wide[r][col] =
          narrow<ATTN_QKV_W, LIN_ACC_F, ATTN_QKV_F>(acc + (bias << (LIN_ACC_F - ATTN_BIAS_F)));
      break;
    case OUT_PROJ: {
      const wide_t y = narrow<ACT_W, LIN_ACC_F, ACT_F>(acc + (bias << (LIN_ACC_F - ATTN_BIAS_F)));
      buf.x[r][col] = saturate<ACT_W>(wide_t(buf.x[r][col]) + y);
      break;
    }
    case OUT_RESIDUAL: {
      const wide_t y = narrow<ACT_W, LIN_ACC_F, ACT_F>(acc + (bias << (LIN_ACC_F - BIAS_F)));
      buf.x[r][col] = saturate<ACT_W>(wide_t(buf.x[r][col]) + y);
      break;
    }
    case OUT_GATE:
      buf.wide[r][col] = narrow<ATTN_SCORE_W, GATE_ACC_F, ATTN_SCORE_F>(acc);
      break;
    case OUT_GELU:
      buf.wide[r][col] =
          gelu<ACT_F>(narrow<ACT_W, LIN_ACC_F, ACT_F>(acc + (bias << (LIN_ACC_F - BIAS_F))));
      break;
    default: {  // OUT_EXPERT
      const wide_t y = narrow<ACT_W, LIN_ACC_F, ACT_F>(acc + (bias << (LIN_ACC_F - BIAS_F)));
      const int t = buf.routing.token[call.expert][r];
      const wide_t g = buf.routing.weight[call.expert][r];
      buf.x[t][col] = saturate<ACT_W>(wide_t(buf.x[t][col]) + shift_round(g * y, PROB_F));
      break;
    }
  }
}

/// acc[r][o] = sum_i in(r, i) * W[o][i] for r < rows, tile by tile: one pass over the rows
/// per weight tile, which also streams in the next tile (so a pass lasts at least a
/// tile's bus words: queues shorter than that are bound by the bus). The first input tile of an
/// output tile starts the accumulators from zero and the last feeds the sums straight into the
/// call's epilogue, so no pass is spent clearing accumulators or draining them.
/// \param call what to compute
/// \param bundle weight bundle (m_axi)
/// \param buf the image's on-chip buffers (read and written per the call)
inline void linear_unit(const LinearCall& call, const word_t* bundle, Buffers& buf) {
#pragma HLS INLINE off  // one engine shared by every call site
  constexpr int TILE = LIN_IN * LIN_OUT;
  constexpr int WEIGHTS_PER_WORD = WORD_BYTES / 2;
  constexpr int TILE_WORDS = TILE / WEIGHTS_PER_WORD;
  static_assert(TILE % WEIGHTS_PER_WORD == 0, "a weight tile is whole bus words");
  static wide_t acc[NUM_TOKENS][LIN_OUT];
#pragma HLS ARRAY_PARTITION variable = acc dim = 2 complete  // LIN_OUT lanes per cycle
  static param_t wtile[2][TILE];
#pragma HLS ARRAY_PARTITION variable = wtile dim = 2 complete  // a whole tile per cycle
  param_t bias[LIN_OUT];
#pragma HLS ARRAY_PARTITION variable = bias complete
  wide_t xseg[LIN_IN];
#pragma HLS ARRAY_PARTITION variable = xseg complete
  wide_t sums[LIN_OUT];  // one row's LIN_OUT dot products of this tile
#pragma HLS ARRAY_PARTITION variable = sums complete
  const int IT = ceil_div(call.k, LIN_IN);
  const int OT = ceil_div(call.o, LIN_OUT);

  LinearPrefetch& ahead = linear_prefetch();
  int b0 = 0;  // ping-pong half of tile 0
  if (ahead.valid && ahead.w_off == call.w_off) {
    b0 = ahead.buf;  // the previous call already fetched it
  } else {
    ddr_read<PORT_WEIGHTS, 2, true>(bundle, call.w_off, TILE, wtile[0]);
  }
  ahead.valid = false;
lin_tile:
  for (int t = 0; t < OT * IT; ++t) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 1024
    const int ot = t / IT;
    const int it = t % IT;
    const param_t* w = wtile[(t + b0) & 1];
    // The next tile streams into the other half, one bus word per cycle of this tile's
    // pass: the next tile of this call, or during the last one the first tile of the call
    // that follows (e.g. the next expert's weights).
    const int nb = (t + 1 + b0) & 1;
    const bool more = t + 1 < OT * IT;
    const uint64_t next_off = more ? call.w_off + uint64_t(t + 1) * TILE * 2 : call.next_w_off;
    const int fetch = (more || call.next_w_off != 0) ? TILE_WORDS : 0;
    if (!more && call.next_w_off != 0) {
      ahead.valid = true;
      ahead.w_off = call.next_w_off;
      ahead.buf = nb;
    }
    const bool first = it == 0;      // accumulators start from zero: no clearing pass
    const bool last = it == IT - 1;  // the epilogue runs in the same pass as the last MACs
    if (first && call.b_off != 0) {
      ddr_read<PORT_WEIGHTS, 2, true>(bundle, call.b_off + uint64_t(ot) * LIN_OUT * 2, LIN_OUT,
                                      bias);
    }
    const int pass = call.rows > fetch ? call.rows : fetch;  // a short queue waits for the bus
  lin_row:
    for (int r = 0; r < pass; ++r) {
#pragma HLS PIPELINE II = 1  // a row of MACs (+ epilogues) and a bus word per cycle
#pragma HLS LOOP_TRIPCOUNT min = 1 max = NUM_TOKENS
      if (r < fetch) {
        ddr_read<PORT_WEIGHTS, 2, true>(bundle, next_off + uint64_t(r) * WORD_BYTES,
                                        WEIGHTS_PER_WORD, &wtile[nb][r * WEIGHTS_PER_WORD]);
      }
      if (r >= call.rows) {
        continue;
      }
    lin_fetch:
      for (int i = 0; i < LIN_IN; ++i) {
        xseg[i] = linear_input(call, buf, r, it * LIN_IN + i);
      }
    lin_mac_init:
      for (int o = 0; o < LIN_OUT; ++o) {
        sums[o] = first ? wide_t(0) : acc[r][o];
      }
    lin_mac_in:
      for (int i = 0; i < LIN_IN; ++i) {
      lin_mac_out:
        for (int o = 0; o < LIN_OUT; ++o) {
          sums[o] += xseg[i] * wide_t(w[i * LIN_OUT + o]);
        }
      }
      if (!last) {
      lin_keep:
        for (int o = 0; o < LIN_OUT; ++o) {
          acc[r][o] = sums[o];
        }
      } else {
      lin_epilogue:
        for (int o = 0; o < LIN_OUT; ++o) {
          const int col = ot * LIN_OUT + o;
          if (col < call.o) {
            linear_output(call, buf, r, col, sums[o],
                          call.b_off != 0 ? wide_t(bias[o]) : wide_t(0));
          }
        }
      }
    }
  }
}

}  // namespace edgemoe

#endif  // EDGEMOE_LINEAR_H_
