// The unified linear unit (DESIGN.md §4.1): ONE engine, a single hardware instance,
// for every matrix product but attention's -- patch embedding, Q/K/V, proj, dense
// fc1/fc2, the gate, expert fc1/fc2. LIN_IN x LIN_OUT MACs per cycle; weights arrive
// pre-tiled from DDR (edgemoe.host.contracts.tiling: output tiles outermost, input tiles
// inside, each tile [LIN_IN][LIN_OUT]) and the next tile is fetched while the
// current one computes. A call names where its rows come from (optionally gathered
// through an expert queue) and what happens to a finished output tile: narrow and
// store (optionally through GELU), add into the residual stream, or scale by the
// gate weight and accumulate into the gathered token (MoE).
// The epilogue's shifts are per call: the binary points of the call's weight and bias
// tensors, from the bundle's scale table (scale.h), not compile-time constants.
// Golden: edgemoe.sim.golden.linear and its callers.
#ifndef EDGEMOE_LINEAR_H_
#define EDGEMOE_LINEAR_H_

#include <hls_stream.h>

#include "edgemoe/buffers.h"
#include "edgemoe/config.h"
#include "edgemoe/ddr.h"
#include "edgemoe/gelu.h"
#include "edgemoe/scale.h"

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
  OUT_DELTA,     ///< x[r] = round(g * narrow(acc + bias))  (expert fc2, expert-major: x is
                 ///< free while the images are parked; the merge adds it to the token's x)
};

/// Token rows a call moves over the output and scratch ports while it computes
/// (expert-major MoE), one bus word per cycle beside the weight word.
enum RowSide {
  SIDE_NONE = 0,  ///< nothing
  SIDE_GATHER,    ///< an expert chunk's h rows from scratch into h
  SIDE_MERGE,     ///< an expert chunk's OUT_DELTA rows (in x) added to its tokens' parked
                  ///< x in the output regions (read, add, write)
};

/// A token row of 32-bit values in bus words.
constexpr int ROW_LANES = WORD_BYTES / 4;
constexpr int ROW_WORDS = EMBED_DIM / ROW_LANES;
static_assert(ROW_WORDS * ROW_LANES == EMBED_DIM && ROW_WORDS * WORD_BYTES == SCRATCH_ROW,
              "token rows are whole bus words");

/// A bundle offset that names no tensor (offset 0 is the bundle header, never a tensor).
constexpr uint64_t NO_TENSOR = 0;

/// One call of the unit. Built field by field: linear_call() names the row source and the
/// epilogue and empties the rest; the sequencer's steps (stages.h, experts.h) fill in the
/// fields their call kind needs.
struct LinearCall {
  LinearInput in;         ///< row source
  LinearOutput out;       ///< epilogue
  int k;                  ///< input features (reduction length), <= WIDE_COLS or PATCH_DIM
  int o;                  ///< output features
  int rows;               ///< rows to process, <= NUM_TOKENS
  uint64_t w_off;         ///< byte offset of the pre-tiled weights in the bundle
  uint64_t b_off;         ///< byte offset of the padded bias, NO_TENSOR for none
  int expert;             ///< queue for IN_H_GATHER / OUT_EXPERT
  uint64_t next_w_off;    ///< weights of the call that follows, whose first tiles stream in
                          ///< during this call's last ones (e.g. the next expert); NO_TENSOR
                          ///< for none
  int next_tiles;         ///< how many weight tiles that call has
  RowSide side;           ///< rows moved meanwhile (OUT_DELTA: `expert` names the expert chunk)
  int side_expert_chunk;  ///< which of LaneBuffers::expert_chunk they are
  TensorScale scale;      ///< binary points of the weights and the addend (scale table)
};

/// A call reading `in` and finishing with `out`, every other field empty: no rows, no
/// tensor, no prefetch, no side move.
inline LinearCall linear_call(LinearInput in, LinearOutput out) {
  LinearCall c;
  c.in = in;
  c.out = out;
  c.k = 0;
  c.o = 0;
  c.rows = 0;
  c.w_off = NO_TENSOR;
  c.b_off = NO_TENSOR;
  c.expert = 0;
  c.next_w_off = NO_TENSOR;
  c.next_tiles = 0;
  c.side = SIDE_NONE;
  c.side_expert_chunk = 0;
  return c;
}

/// Weight tiles of a k -> o call.
constexpr int linear_tiles(int k, int o) {
  return ((k + LIN_IN - 1) / LIN_IN) * ((o + LIN_OUT - 1) / LIN_OUT);
}

/// Weight tiles in flight: the unit reads tile t from one of three tile buffers while
/// tile t + 2 streams into another, so a tile's words have a whole pass (at least a
/// tile's bus words) to arrive, longer than the m_axi read latency.
/// (LIN_AHEAD and LIN_MIN_PASS, the shortest pass -- an accumulator row is read again no
/// sooner than the MAC pipeline has written it back -- come from the parameter header.)
constexpr int LIN_TILE_BUFS = LIN_AHEAD + 1;

/// First weight tiles of a call fetched ahead by the previous call (cross-call prefetch).
struct LinearPrefetch {
  int count;       ///< tiles waiting (0: none)
  uint64_t w_off;  ///< which call's weights they are
  int buf;         ///< the tile buffer holding the first of them
};

/// Weights in one tile, and in bus words.
constexpr int LIN_TILE = LIN_IN * LIN_OUT;
constexpr int LIN_TILE_WORDS = LIN_TILE / (WORD_BYTES / 2);
/// Weight words the fetch may run ahead of the MACs: one tile (a pass's worth).
constexpr int LIN_STREAM_DEPTH = LIN_TILE_WORDS;

/// What the unit keeps from one call to the next: the tile buffers and which of them hold
/// the next call's first tiles. Owned by the top function and handed to the linear lane
/// (the unit's only caller), so no function static crosses a DATAFLOW process; cleared
/// (count = 0) at the start of every image.
struct LinearState {
  LinearPrefetch ahead;
  param_t wtile[LIN_TILE_BUFS][LIN_TILE];  ///< partitioned dim 2 by the owner
  ScaleTable scales;                       ///< the bundle's binary points, read once per call
};

static_assert(TOKEN_BIAS_W <= ACT_W, "token bias is staged in the activation buffer");

/// Input element (r, c) of a call, 0 past the last column (padded weights are 0 too).
/// The caller's c is `it * LIN_IN + i`: bank i of h, wide and pix (all cyclic LIN_IN).
inline wide_t linear_input(const LinearCall& call, const act_t h[NUM_TOKENS][EMBED_DIM],
                           const act_t wide[NUM_TOKENS][WIDE_COLS], const LaneBuffers& lane, int r,
                           int c) {
  if (c >= call.k) {
    return 0;
  }
  switch (call.in) {
    case IN_PIXELS:
      return wide_t(lane.pix[r][c]);
    case IN_H:
      return wide_t(h[r][c]);
    case IN_H_GATHER:
      return wide_t(h[lane.routing.token[call.expert][r]][c]);
    default:
      return wide_t(wide[r][c]);
  }
}

/// Whether a call's outputs go to wide (through the bank rotate network) rather than x.
inline bool writes_wide(LinearOutput out) {
  return out == OUT_QKV || out == OUT_GATE || out == OUT_GELU;
}

/// The epilogue of one output value. Outputs into x are stored here: column `col` is
/// `ot * LIN_OUT + o`, bank o of x (cyclic LIN_OUT). Outputs into wide (writes_wide) are
/// returned: the caller stores the tile's LIN_OUT of them through store_lanes, because
/// `ot * LIN_OUT + o` is a run-time bank of wide (cyclic LIN_IN).
inline wide_t linear_output(const LinearCall& call, act_t x[NUM_TOKENS][EMBED_DIM],
                            const LaneBuffers& lane, int r, int col, wide_t acc, wide_t bias) {
  // one sum per output, with the call's own shifts (scale.h): the addend -- the bias, or
  // the token bias staged in x for the embedding -- aligned to the accumulator, then one
  // rounding to the output's fraction bits; only the saturation differs by output
  const LinearShift sh = linear_shift(
      call.scale, call.in == IN_PIXELS ? PIXEL_F : ACT_F,
      call.out == OUT_QKV ? ATTN_QKV_F : (call.out == OUT_GATE ? ATTN_SCORE_F : ACT_F));
  const wide_t addend = call.out == OUT_EMBED ? wide_t(x[r + 1][col]) : bias;
  const wide_t v = scale_round(acc + (addend << sh.addend), sh.out);
  const wide_t y = saturate<ACT_W>(v);
  // an expert output scaled by its gate weight: one PROB_W x ACT_W product for both
  // expert cases
  const prob_t g = call.out == OUT_EXPERT ? lane.routing.weight[call.expert][r]
                                          : lane.expert_chunk[call.expert & 1].weight[r];
  const wide_t gated = shift_round(wide_t(g * act_t(y)), PROB_F);
  wide_t to_wide = 0;
  switch (call.out) {
    case OUT_EMBED:
      x[r + 1][col] = y;
      break;
    case OUT_QKV:
      to_wide = saturate<ATTN_QKV_W>(v);
      break;
    case OUT_PROJ:
    case OUT_RESIDUAL:
      x[r][col] = saturate<ACT_W>(wide_t(x[r][col]) + y);
      break;
    case OUT_GATE:
      to_wide = saturate<ATTN_SCORE_W>(v);
      break;
    case OUT_GELU:
      to_wide = gelu<ACT_F>(y);
      break;
    case OUT_EXPERT: {
      const int t = lane.routing.token[call.expert][r];
      x[t][col] = saturate<ACT_W>(wide_t(x[t][col]) + gated);
      break;
    }
    default:  // OUT_DELTA: what OUT_EXPERT adds, kept for the merge
      x[r][col] = gated;
      break;
  }
  return to_wide;
}

/// Word w of row r of an expert chunk's side move (see RowSide). The word's ROW_LANES columns
/// start at w * ROW_LANES, a run-time bank of h (cyclic LIN_IN) and of x (cyclic LIN_OUT):
/// they go through the bank rotate network (banked.h).
inline void side_word(RowSide side, const ExpertChunk& ch, int r, int w, word_t* output,
                      const word_t* scratch, act_t x[NUM_TOKENS][EMBED_DIM],
                      act_t h[NUM_TOKENS][EMBED_DIM]) {
  const uint64_t at = uint64_t(w) * WORD_BYTES;
  const int c0 = w * ROW_LANES;
  act_t xs[ROW_LANES];
#pragma HLS ARRAY_PARTITION variable = xs complete dim = 1  // a bus word's lanes
  if (side == SIDE_GATHER) {
    count_words<PORT_SCRATCH>(1, false);
    unpack_word<4, true, ROW_LANES>(scratch, (ch.h_at[r] + at) / WORD_BYTES, xs);
    store_lanes<H_BANKS, ROW_LANES, ROW_LANES>(h[r], c0, ROW_LANES, xs);
  } else {
    act_t own[ROW_LANES];
#pragma HLS ARRAY_PARTITION variable = own complete dim = 1
    count_words<PORT_OUTPUT>(1, false);
    unpack_word<4, true, ROW_LANES>(output, (ch.x_at[r] + at) / WORD_BYTES, xs);
    load_lanes<X_BANKS, ROW_LANES, ROW_LANES>(x[r], c0, ROW_LANES, own);
  side_merge_lanes:
    for (int l = 0; l < ROW_LANES; ++l) {
      xs[l] = saturate<ACT_W>(wide_t(xs[l]) + wide_t(own[l]));
    }
    count_words<PORT_OUTPUT>(1, true);
    output[(ch.x_at[r] + at) / WORD_BYTES] = pack_i32<ROW_LANES>(xs, ROW_LANES);
  }
}

/// An expert chunk's side move on its own (nothing computing beside it), a bus word per cycle.
inline void move_rows(RowSide side, const ExpertChunk& ch, word_t* output, const word_t* scratch,
                      act_t x[NUM_TOKENS][EMBED_DIM], act_t h[NUM_TOKENS][EMBED_DIM]) {
  int r = 0;
  int w = 0;
move_rows_words:
  for (int s = 0; s < ch.rows * ROW_WORDS; ++s) {
#pragma HLS PIPELINE II = 1  // a bus word per cycle
#pragma HLS LOOP_TRIPCOUNT min = 1 max = NUM_TOKENS * ROW_WORDS
#pragma HLS DEPENDENCE variable = output inter false  // each word is read and written once
    side_word(side, ch, r, w, output, scratch, x, h);
    if (++w == ROW_WORDS) {
      w = 0;
      ++r;
    }
  }
}

/// One bus word of weights, unpacked: what the fetch process hands the MACs per cycle.
struct WeightWord {
  param_t w[WORD_BYTES / 2];
};

/// The passes of one call: how many cycles each lasts and how many fetch a tile.
struct LinearPlan {
  int IT;        ///< input tiles per output tile
  int T;         ///< tiles of the call
  int b0;        ///< the tile buffer of tile 0; tile t is in (b0 + t) % LIN_TILE_BUFS
  int handoff;   ///< the next call's first tiles fetched during this call's last passes
  int plain;     ///< cycles of a pass that fetches nothing
  int fetching;  ///< cycles of a pass that fetches a tile
  int total;     ///< cycles of all passes
  int steps;     ///< pipeline iterations: the passes, or the side move if longer
  int side_words;
};

/// The weight stream of one call as bursts (UG1399 "Optimizing Burst Transfers": a
/// pipelined loop of consecutive reads from a base and length known before the loop is
/// one burst): this call's tiles LIN_AHEAD.. (the first ones are already on chip), then
/// the next call's first `handoff` tiles, in the order the passes consume them.
inline void lin_fetch_weights(const word_t* bundle, uint64_t own_off, int own_words,
                              uint64_t next_off, int next_words, hls::stream<WeightWord>& ws) {
#pragma HLS INLINE off  // a DATAFLOW process
  constexpr int PER_WORD = WORD_BYTES / 2;
lin_fetch_parts:
  for (int part = 0; part < 2; ++part) {
    const uint64_t first = (part == 0 ? own_off : next_off) / WORD_BYTES;
    const int words = part == 0 ? own_words : next_words;
    count_words<PORT_WEIGHTS>(words, false);
  lin_fetch_burst:
    for (int w = 0; w < words; ++w) {
#pragma HLS PIPELINE II = 1  // one bus word per cycle: a single burst per part
#pragma HLS LOOP_TRIPCOUNT min = 0 max = LIN_TILE_WORDS * 64
      WeightWord ww;
      unpack_word<2, true, PER_WORD>(bundle, first + w, ww.w);
      ws.write(ww);
    }
  }
}

/// The MAC pipeline of one call (see linear_unit): one pass per weight tile over the rows;
/// during a pass the tile LIN_AHEAD ahead arrives from the weight stream, one word per
/// cycle, into its tile buffer.
inline void lin_compute(const LinearCall& call, const LinearPlan& pl, hls::stream<WeightWord>& ws,
                        word_t* output, const word_t* scratch, act_t x[NUM_TOKENS][EMBED_DIM],
                        act_t h[NUM_TOKENS][EMBED_DIM], act_t wide[NUM_TOKENS][WIDE_COLS],
                        LaneBuffers& lane, param_t wtile[LIN_TILE_BUFS][LIN_TILE],
                        const param_t bias[OUT_TILES_MAX * LIN_OUT]) {
#pragma HLS INLINE off  // a DATAFLOW process
  constexpr int TILE_WORDS = LIN_TILE_WORDS;
  constexpr int WEIGHTS_PER_WORD = WORD_BYTES / 2;
  // the call's accumulators: written before they are read in every call
  lin_acc_t acc[NUM_TOKENS][LIN_OUT];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 2  // LIN_OUT lanes per cycle
  act_t xseg[LIN_IN];  // pixels (8-bit unsigned) and activations both fit an act_t
#pragma HLS ARRAY_PARTITION variable = xseg complete dim = 1
  lin_acc_t sums[LIN_OUT];  // one row's LIN_OUT dot products of this tile
#pragma HLS ARRAY_PARTITION variable = sums complete dim = 1
  act_t to_wide[LIN_OUT];  // one row's outputs bound for wide, into the rotate network
#pragma HLS ARRAY_PARTITION variable = to_wide complete dim = 1
  const int IT = pl.IT;
  const int T = pl.T;
  const int b0 = pl.b0;
  const ExpertChunk& side = lane.expert_chunk[call.side_expert_chunk];
  int t = 0;
  int r = 0;
  int it = 0;
  int ot = 0;
  int sr = 0;  // the side move's row and word
  int sw = 0;
lin_pass:
  for (int step = 0; step < pl.steps; ++step) {
#pragma HLS PIPELINE II = 1  // a row of MACs (+ epilogues) and a bus word per port per cycle
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 147456
#pragma HLS DEPENDENCE variable = wtile inter false  // the tile being written is 2 ahead
#pragma HLS DEPENDENCE variable = acc inter RAW distance = LIN_MIN_PASS true  // a pass apart
#pragma HLS DEPENDENCE variable = output inter false  // a merged word is read and written once
    // No element of x, h or wide is touched by two iterations of one call in a way that
    // orders them (UG1399 "pragma HLS dependence": inter false only where true):
    // x: each (row, column) is read-modified-written once, in one iteration (the epilogue
    //    of its output tile; OUT_EXPERT's rows are distinct tokens of one queue); the merge
    //    reads x only in a call that writes wide (fc1), never x.
    // h: read by IN_H / IN_H_GATHER calls, written only by the gather, which rides on an
    //    IN_WIDE call (expert fc2).
    // wide: read by IN_WIDE calls, written only by OUT_QKV / OUT_GATE / OUT_GELU calls,
    //    whose input is h or the pixels.
#pragma HLS DEPENDENCE variable = x inter false
#pragma HLS DEPENDENCE variable = h inter false
#pragma HLS DEPENDENCE variable = wide inter false
    if (step < pl.side_words) {  // the side move: rows neither the MACs nor the epilogue touch
      side_word(call.side, side, sr, sw, output, scratch, x, h);
      if (++sw == ROW_WORDS) {
        sw = 0;
        ++sr;
      }
    }
    if (step >= pl.total) {
      continue;  // only the side move is left
    }
    const int g = t + LIN_AHEAD;  // global index of the tile streaming in
    const int fetch = (g < T || g - T < pl.handoff) ? TILE_WORDS : 0;
    const int pass = fetch != 0 ? pl.fetching : pl.plain;
    if (r < fetch) {
      const WeightWord ww = ws.read();
    lin_tile_word:
      for (int l = 0; l < WEIGHTS_PER_WORD; ++l) {
        // wtile is registers (complete dim 2): r selects which through a decoder, no RAM port
        wtile[(b0 + g) % LIN_TILE_BUFS][r * WEIGHTS_PER_WORD + l] = ww.w[l];  // bank: registers
      }
    }
    if (r < call.rows) {
      const param_t* w = wtile[(b0 + t) % LIN_TILE_BUFS];
      const bool first = it == 0;      // accumulators start from zero: no clearing pass
      const bool last = it == IT - 1;  // the epilogue runs in the same pass as the last MACs
    lin_fetch:
      for (int i = 0; i < LIN_IN; ++i) {
        xseg[i] = act_t(linear_input(call, h, wide, lane, r, it * LIN_IN + i));  // bank: i
      }
    lin_mac_init:
      for (int o = 0; o < LIN_OUT; ++o) {
        sums[o] = first ? lin_acc_t(0) : acc[r][o];
      }
    lin_mac_in:
      for (int i = 0; i < LIN_IN; ++i) {
      lin_mac_out:
        for (int o = 0; o < LIN_OUT; ++o) {
          // ACT_W x 16-bit: one DSP48E2 for the lean profile (27 x 18)
          sums[o] += lin_acc_t(xseg[i] * w[i * LIN_OUT + o]);
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
          const int col = ot * LIN_OUT + o;  // bank: o of x and of the bias (cyclic LIN_OUT)
          if (col < call.o) {
            to_wide[o] =
                act_t(linear_output(call, x, lane, r, col, wide_t(sums[o]),
                                    call.b_off != NO_TENSOR ? wide_t(bias[col]) : wide_t(0)));
          }
        }
        if (writes_wide(call.out)) {
          const int left = call.o - ot * LIN_OUT;
          store_lanes<WIDE_BANKS, LIN_OUT, LIN_OUT>(wide[r], ot * LIN_OUT,
                                                    left < LIN_OUT ? left : LIN_OUT, to_wide);
        }
      }
    }
    // next (tile, row); input tiles run fastest within an output tile
    if (++r == pass) {
      r = 0;
      ++t;
      if (++it == IT) {
        it = 0;
        ++ot;
      }
    }
  }
}

/// The weight stream beside the MACs: two processes joined by a FIFO of weight words, so
/// the stream is a burst however the passes consume it (the read sits in a loop of its
/// own, not behind the pass's condition: UG1448 214-232 on conditional accesses).
inline void lin_stream(const LinearCall& call, const LinearPlan& pl, const word_t* bundle,
                       uint64_t own_off, int own_words, int next_words, word_t* output,
                       const word_t* scratch, Buffers& buf, LaneBuffers& lane,
                       param_t wtile[LIN_TILE_BUFS][LIN_TILE],
                       const param_t bias[OUT_TILES_MAX * LIN_OUT]) {
#pragma HLS INLINE off  // the DATAFLOW region stays a module
#pragma HLS DATAFLOW    // the fetch runs ahead of the MACs by up to the FIFO's depth
  hls::stream<WeightWord> ws;
#pragma HLS STREAM variable = ws depth = LIN_STREAM_DEPTH  // one tile of words in flight
  lin_fetch_weights(bundle, own_off, own_words, call.next_w_off, next_words, ws);
  lin_compute(call, pl, ws, output, scratch, buf.x, buf.h, buf.wide, lane, wtile, bias);
}

/// acc[r][o] = sum_i in(r, i) * W[o][i] for r < rows, tile by tile: one pass over the rows
/// per weight tile, all passes of the call in one pipeline (it fills and drains once per
/// call). A pass also takes in the tile two ahead -- this call's, or the first tiles of
/// the call that follows -- one bus word per cycle from the weight stream, so it lasts at
/// least a tile's bus words: queues shorter than that are bound by the bus. The first
/// input tile of an output tile starts the accumulators from zero and the last feeds the
/// sums straight into the call's epilogue. Beside the weight word, a cycle may move a word
/// of an expert chunk's rows (call.side): the pipeline runs until both are done.
/// \param call what to compute
/// \param bundle weight bundle (m_axi)
/// \param output, scratch the other bundles, for call.side
/// \param buf the image's on-chip buffers (read and written per the call)
/// \param lane the linear lane's pixels, queues and expert chunks (per the call)
/// \param ahead, wtile the prefetch hand-off and the tile buffers (LinearState), kept from
///        call to call
inline void linear_unit(const LinearCall& call, const word_t* bundle, word_t* output,
                        const word_t* scratch, Buffers& buf, LaneBuffers& lane,
                        LinearPrefetch& ahead, param_t wtile[LIN_TILE_BUFS][LIN_TILE]) {
#pragma HLS INLINE off  // a module of its own: the one engine (UG1399 "pragma HLS inline")
  constexpr int TILE = LIN_TILE;
  constexpr int TILE_WORDS = LIN_TILE_WORDS;
  static_assert(TILE % (WORD_BYTES / 2) == 0, "a weight tile is whole bus words");
  param_t bias[OUT_TILES_MAX * LIN_OUT];
// LIN_OUT per cycle in the epilogue (bank o); the load fills it through the bank rotate
// network (ddr_read_banked), a bus word's 16-bit values starting at a run-time bank
#pragma HLS ARRAY_PARTITION variable = bias cyclic factor = LIN_OUT dim = 1
  LinearPlan pl;
  pl.IT = ceil_div(call.k, LIN_IN);
  const int OT = ceil_div(call.o, LIN_OUT);
  pl.T = OT * pl.IT;
  const int T = pl.T;
  const uint64_t TILE_BYTES = uint64_t(TILE) * 2;

  // tiles 0 and 1: fetched ahead by the previous call, or now
  pl.b0 = 0;
  int ready = 0;
  if (ahead.count > 0 && ahead.w_off == call.w_off) {
    pl.b0 = ahead.buf;
    ready = ahead.count;
  }
lin_first_tiles:
  for (int t = ready; t < LIN_AHEAD && t < T; ++t) {
    ddr_read<PORT_WEIGHTS, 2, true>(bundle, call.w_off + uint64_t(t) * TILE_BYTES, TILE,
                                    wtile[(pl.b0 + t) % LIN_TILE_BUFS]);
  }
  // the whole call's bias, ahead of the pipeline (which has the port for weight words)
  if (call.b_off != NO_TENSOR) {
    ddr_read_banked<PORT_WEIGHTS, 2, true, LIN_OUT>(bundle, call.b_off, OT * LIN_OUT, bias);
  }
  // the next call's first tiles, fetched during this call's last passes (a call of one
  // tile has no pass to spare for them)
  pl.handoff = (call.next_w_off == NO_TENSOR || T < LIN_AHEAD) ? 0
               : call.next_tiles < LIN_AHEAD                   ? call.next_tiles
                                                               : LIN_AHEAD;
  ahead.count = pl.handoff;
  ahead.w_off = call.next_w_off;
  ahead.buf = (pl.b0 + T) % LIN_TILE_BUFS;

  // one pipeline over every (tile, row): a pass per tile of max(rows, its fetch, the
  // accumulators' read-to-write distance) cycles
  pl.plain = call.rows > LIN_MIN_PASS ? call.rows : LIN_MIN_PASS;
  pl.fetching = pl.plain > TILE_WORDS ? pl.plain : TILE_WORDS;
  const int own_tiles = T > LIN_AHEAD ? T - LIN_AHEAD : 0;
  const int n_fetch = own_tiles + pl.handoff;  // passes that fetch
  pl.total = n_fetch * pl.fetching + (T - n_fetch) * pl.plain;
  pl.side_words =
      call.side != SIDE_NONE ? lane.expert_chunk[call.side_expert_chunk].rows * ROW_WORDS : 0;
  pl.steps = pl.total > pl.side_words ? pl.total : pl.side_words;
  lin_stream(call, pl, bundle, call.w_off + uint64_t(LIN_AHEAD) * TILE_BYTES,
             own_tiles * TILE_WORDS, pl.handoff * TILE_WORDS, output, scratch, buf, lane, wtile,
             bias);
}

}  // namespace edgemoe

#endif  // EDGEMOE_LINEAR_H_
