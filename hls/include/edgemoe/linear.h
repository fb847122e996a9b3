// The unified linear unit (DESIGN.md §4.1): one engine for every matrix product but
// attention's -- patch embedding, Q/K/V, proj, dense fc1/fc2, the gate, expert
// fc1/fc2. LIN_IN x LIN_OUT MACs per cycle; weights arrive pre-tiled from DDR
// (edgemoe.host.tiling: output tiles outermost, input tiles inside, each tile
// [LIN_IN][LIN_OUT]) and the next tile is fetched while the current one computes.
// What happens to a finished output tile is the epilogue's business: narrow and
// store (optionally through GELU), add into the residual stream, or scale by a
// gate weight and accumulate into a gathered token (MoE).
// Golden: edgemoe.sim.golden.linear and its callers.
#ifndef EDGEMOE_LINEAR_H_
#define EDGEMOE_LINEAR_H_

#include "edgemoe/config.h"
#include "edgemoe/ddr.h"
#include "edgemoe/gelu.h"

namespace edgemoe {

constexpr int ceil_div(int a, int b) {
  return (a + b - 1) / b;
}

/// Rows of an on-chip buffer, optionally gathered through a token index list.
/// \tparam T element type
/// \tparam COLS row stride of the buffer
template <typename T, int COLS>
struct RowSource {
  const T (*buf)[COLS];  ///< the buffer
  const int* index;      ///< row r reads buf[index[r]], or buf[r + offset] when null
  int offset;            ///< first row when not gathered
  wide_t at(int r, int c) const { return wide_t(buf[index ? index[r] : r + offset][c]); }
};

/// acc[r][o] = sum_i in(r, i) * W[o][i] for r < rows, tile by tile; each finished
/// output tile goes to epi.apply(row, col, acc, bias_raw).
/// \tparam K input features (reduction length)
/// \tparam O output features
/// \tparam MAX_ROWS capacity of the row dimension
/// \param in input rows (K valid columns)
/// \param rows rows to process, 0..MAX_ROWS
/// \param bundle weight bundle (m_axi)
/// \param w_off byte offset of the pre-tiled weights
/// \param b_off byte offset of the padded bias vector, 0 for none
/// \param epi epilogue
template <int K, int O, int MAX_ROWS, typename Source, typename Epilogue>
void linear_unit(const Source& in, int rows, const word_t* bundle, uint64_t w_off, uint64_t b_off,
                 Epilogue& epi) {
  constexpr int IT = ceil_div(K, LIN_IN);
  constexpr int OT = ceil_div(O, LIN_OUT);
  constexpr int TILE = LIN_IN * LIN_OUT;
  static wide_t acc[MAX_ROWS][LIN_OUT];
#pragma HLS ARRAY_PARTITION variable = acc dim = 2 complete  // LIN_OUT lanes per cycle
  static param_t wtile[2][TILE];
#pragma HLS ARRAY_PARTITION variable = wtile dim = 2 complete  // a whole tile per cycle
  param_t bias[LIN_OUT];
  wide_t xseg[LIN_IN];
#pragma HLS ARRAY_PARTITION variable = xseg complete

  ddr_read<PORT_WEIGHTS, 2, true>(bundle, w_off, TILE, wtile[0]);
lin_tile:
  for (int t = 0; t < OT * IT; ++t) {
    const int ot = t / IT;
    const int it = t % IT;
    const param_t* w = wtile[t & 1];
    if (t + 1 < OT * IT) {
      // prefetch: the next tile streams in while this one computes
      ddr_read<PORT_WEIGHTS, 2, true>(bundle, w_off + uint64_t(t + 1) * TILE * 2, TILE,
                                      wtile[(t + 1) & 1]);
    }
    if (it == 0) {
      if (b_off != 0) {
        ddr_read<PORT_WEIGHTS, 2, true>(bundle, b_off + uint64_t(ot) * LIN_OUT * 2, LIN_OUT, bias);
      }
    lin_clear:
      for (int r = 0; r < rows; ++r) {
#pragma HLS PIPELINE II = 1  // LIN_OUT accumulators cleared per cycle
      lin_clear_lanes:
        for (int o = 0; o < LIN_OUT; ++o) {
          acc[r][o] = 0;
        }
      }
    }
  lin_row:
    for (int r = 0; r < rows; ++r) {
#pragma HLS PIPELINE II = 1  // one row of LIN_IN x LIN_OUT MACs per cycle
    lin_fetch:
      for (int i = 0; i < LIN_IN; ++i) {
        const int c = it * LIN_IN + i;
        xseg[i] = c < K ? in.at(r, c) : wide_t(0);
      }
    lin_mac_out:
      for (int o = 0; o < LIN_OUT; ++o) {
        wide_t sum = acc[r][o];
      lin_mac_in:
        for (int i = 0; i < LIN_IN; ++i) {
          sum += xseg[i] * wide_t(w[i * LIN_OUT + o]);
        }
        acc[r][o] = sum;
      }
    }
    if (it == IT - 1) {
    lin_epilogue:
      for (int r = 0; r < rows; ++r) {
#pragma HLS PIPELINE II = 1  // LIN_OUT outputs narrowed (and stored) per cycle
      lin_epilogue_lanes:
        for (int o = 0; o < LIN_OUT; ++o) {
          const int col = ot * LIN_OUT + o;
          if (col < O) {
            epi.apply(r, col, acc[r][o], b_off != 0 ? wide_t(bias[o]) : wide_t(0));
          }
        }
      }
    }
  }
}

/// Narrow acc + bias into a buffer: dst[row][col] = narrow(acc + bias), then GELU.
/// \tparam OUT_W, OUT_F output format
/// \tparam ACC_F fraction bits of the accumulator (input F + weight F)
/// \tparam B_F fraction bits of the bias
/// \tparam APPLY_GELU fuse GELU on the narrowed value
/// \tparam COLS row stride of dst
template <int OUT_W, int OUT_F, int ACC_F, int B_F, bool APPLY_GELU, int COLS>
struct StoreEpilogue {
  act_t (*dst)[COLS];
  void apply(int row, int col, wide_t acc, wide_t bias) {
    wide_t y = narrow<OUT_W, ACC_F, OUT_F>(acc + (bias << (ACC_F - B_F)));
    if (APPLY_GELU) {
      y = gelu<OUT_F>(y);
    }
    dst[row][col] = y;
  }
};

/// Residual add: x[row][col] = sat(x[row][col] + narrow(acc + bias)) (proj, dense fc2).
template <int ACC_F, int B_F>
struct ResidualEpilogue {
  act_t (*x)[EMBED_DIM];
  void apply(int row, int col, wide_t acc, wide_t bias) {
    const wide_t y = narrow<ACT_W, ACC_F, ACT_F>(acc + (bias << (ACC_F - B_F)));
    x[row][col] = saturate<ACT_W>(wide_t(x[row][col]) + y);
  }
};

}  // namespace edgemoe

#endif  // EDGEMOE_LINEAR_H_
