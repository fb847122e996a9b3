// The unified linear unit (docs/design.md): ONE engine, a single hardware instance,
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
  IN_GRID,      ///< a decoder convolution's im2col rows from the token grid in h (conv_0)
  IN_RING,      ///< a decoder convolution's im2col rows from its band's window in wide
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
  OUT_CONV,      ///< x[r] = ReLU(narrow(acc + bias)) to dec_feat  (a decoder convolution)
  OUT_LOGITS,    ///< x[r] = narrow(acc + bias) to dec_out  (the decoder's classifier)
  OUT_CONV_H,    ///< h[r] = as OUT_CONV (a convolution's first chunk when the classifier
                 ///< is fused: it stays on chip, in h, through the rotate network)
};

/// A decoder convolution's band as the unit reads it (IN_GRID, IN_RING; decoder.h builds
/// it). Row r of the call is band pixel (by, bx) = (r / cols, r % cols), kept as counters;
/// input tile `it` is tap (ky, kx) = ((it / cp_tiles) / k, (it / cp_tiles) % k) and
/// channels (it % cp_tiles) * LIN_IN.., also counters. The tap reads map pixel
/// (gy, gx) = (y0 + by + ky - k / 2, x0 + bx + kx - k / 2), 0 outside the map or past
/// c_in, from row rowbase[gy - wy0] + gx - wx0 of h (IN_GRID) or wide (IN_RING), column
/// colbase[gy - wy0] + channel: every column base is a multiple of LIN_IN, so lane i
/// reads bank i, as for every other input kind. The fused classifier (k = 1) reads its
/// first h_tiles channel tiles from h instead, row r, columns from 0 (decoder.h).
struct ConvWindow {
  int k;                      ///< kernel size (1 or 3)
  int c_in;                   ///< input channels; the rest of each tap's c_pad reads 0
  int cp_tiles;               ///< c_pad / LIN_IN: input tiles per tap
  int h;                      ///< map rows
  int w;                      ///< map columns
  int y0;                     ///< the band's first row
  int x0;                     ///< its first column
  int cols;                   ///< its width
  int wy0;                    ///< the window's first row
  int wx0;                    ///< its first column
  int wy1;                    ///< the row past its last (the band's loads, the ring's reuse)
  int wx1;                    ///< the column past its last
  int rowbase[DEC_WIN_ROWS];  ///< buffer row of each window row's first pixel
  int colbase[DEC_WIN_ROWS];  ///< buffer column of its first channel (a multiple of LIN_IN)
  int h_tiles;                ///< channel tiles of a tap read from h row r (0 but the fused
                              ///< classifier's)
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
  ConvWindow win;         ///< IN_GRID / IN_RING: the band and its window
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
  // no convolution: an empty map (no tap inside it) of one-pixel bands
  c.win.k = 1;
  c.win.c_in = 0;
  c.win.cp_tiles = 1;
  c.win.h = 0;
  c.win.w = 0;
  c.win.y0 = 0;
  c.win.x0 = 0;
  c.win.cols = 1;
  c.win.wy0 = 0;
  c.win.wx0 = 0;
  c.win.wy1 = 0;
  c.win.wx1 = 0;
  c.win.h_tiles = 0;
linear_call_window:
  for (int u = 0; u < DEC_WIN_ROWS; ++u) {
    c.win.rowbase[u] = 0;
    c.win.colbase[u] = 0;
  }
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

/// The shortest distance, in lin_pass iterations, from the write of a tile-buffer element
/// to its first read (see lin_compute): a fetching pass lasts at least LIN_TILE_WORDS
/// iterations and the pass between them at least LIN_MIN_PASS.
constexpr int LIN_WTILE_RAW = LIN_MIN_PASS + 1;

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

/// Input element of a call at column c of a row: 0 where `live` is false (past the last
/// column -- padded weights are 0 too -- or, for a convolution, outside the map).
/// The caller's c is `base + i` with base a multiple of LIN_IN: bank i of h, wide and pix
/// (all cyclic LIN_IN). `hr` and `wr` are the rows of h and wide the call reads (r; the
/// queued token of IN_H_GATHER; a convolution's window pixel: computed once per row by
/// the caller, not once per lane), so each buffer is read by one expression.
/// `in` is the call's row source, or IN_H for the fused classifier's h tiles.
inline act_t linear_input(LinearInput in, const act_t h[NUM_TOKENS][EMBED_DIM],
                          const act_t wide[NUM_TOKENS][WIDE_COLS], const LaneBuffers& lane, int r,
                          int hr, int wr, int c, bool live) {
#pragma HLS INLINE  // a lane of the MAC row: reads bank c % LIN_IN of a run-time row
  if (!live) {
    return 0;
  }
  switch (in) {
    case IN_PIXELS:
      return act_t(lane.pix[r][c]);  // bank: i (the caller's c = it * LIN_IN + i)
    case IN_WIDE:
    case IN_RING:
      return wide[wr][c];  // bank: i
    default:               // IN_H, IN_H_GATHER, IN_GRID
      return h[hr][c];     // bank: i
  }
}

/// Whether a call's outputs go to wide (through the bank rotate network) rather than x.
inline bool writes_wide(LinearOutput out) {
  return out == OUT_QKV || out == OUT_GATE || out == OUT_GELU;
}

/// Whether they go to h (through a rotate network of the same shape: H_BANKS == WIDE_BANKS).
inline bool writes_h(LinearOutput out) {
  return out == OUT_CONV_H;
}

/// Whether a call's epilogue reads the x element it writes (the addend of OUT_EMBED,
/// the residual of OUT_PROJ / OUT_RESIDUAL / OUT_EXPERT).
inline bool reads_x(LinearOutput out) {
  return out == OUT_EMBED || out == OUT_PROJ || out == OUT_RESIDUAL || out == OUT_EXPERT;
}

/// The x row a call's epilogue reads and writes for input row r: the staged token bias's
/// row r + 1 (OUT_EMBED), the queued token (OUT_EXPERT), or r.
inline int epilogue_row(LinearOutput out, int r, int token) {
  return out == OUT_EMBED ? r + 1 : out == OUT_EXPERT ? token : r;
}

/// The epilogue of one output value: a pure function of the lane's sum, its bias, the x
/// element it adds to (`xold`, read by the caller through the bank's one read port) and
/// the row's gate weight `g` (read once per row by the caller). Sets `x_new` (stored by
/// the caller through the bank's one write port when the call writes x) or returns the
/// value bound for wide.
/// \param sh the call's shifts (linear_shift, once per call)
/// \param copy the GELU table copy of this lane (gelu.h)
inline wide_t linear_output(LinearOutput out, const LinearShift& sh, wide_t acc, wide_t bias,
                            wide_t xold, prob_t g, int copy, act_t& x_new) {
#pragma HLS INLINE  // one lane of the unrolled epilogue
  // one sum per output, with the call's own shifts (scale.h): the addend -- the bias, or
  // the token bias staged in x for the embedding -- aligned to the accumulator, then one
  // rounding to the output's fraction bits; only the saturation differs by output
  const wide_t addend = out == OUT_EMBED ? xold : bias;
  const wide_t v = scale_round(acc + (addend << sh.addend), sh.out);
  const wide_t y = saturate<ACT_W>(v);
  // an expert output scaled by its gate weight: one PROB_W x ACT_W product for both
  // expert cases
  const wide_t gated = shift_round(wide_t(g * act_t(y)), PROB_F);
  wide_t to_wide = 0;
  switch (out) {
    case OUT_EMBED:
      x_new = act_t(y);
      break;
    case OUT_QKV:
      to_wide = saturate<ATTN_QKV_W>(v);
      break;
    case OUT_PROJ:
    case OUT_RESIDUAL:
      x_new = act_t(saturate<ACT_W>(xold + y));
      break;
    case OUT_GATE:
      to_wide = saturate<ATTN_SCORE_W>(v);
      break;
    case OUT_GELU:
      to_wide = gelu<ACT_F>(y, copy);
      break;
    case OUT_EXPERT:
      x_new = act_t(saturate<ACT_W>(xold + gated));
      break;
    case OUT_CONV:  // ReLU on the rounded sum, then the upper rail only (golden's linear)
      x_new = act_t(saturate<DEC_FEAT_W>(v < 0 ? wide_t(0) : v));
      break;
    case OUT_CONV_H:  // the same value, bound for h
      to_wide = saturate<DEC_FEAT_W>(v < 0 ? wide_t(0) : v);
      break;
    case OUT_LOGITS:
      x_new = act_t(saturate<DEC_OUT_W>(v));
      break;
    default:  // OUT_DELTA: what OUT_EXPERT adds, kept for the merge
      x_new = act_t(gated);
      break;
  }
  return to_wide;
}

/// The merge of one side-move word (see RowSide): the parked x's ROW_LANES values `xs`
/// plus this row's OUT_DELTA values, which the caller read from x's banks into `xq` (bank
/// b of x holds the lane whose column is b modulo X_BANKS); `at` is the word's first
/// column. The lanes come out of the banks through the rotate network.
inline void merge_lanes(const act_t xq[X_BANKS], BankAt at, act_t xs[ROW_LANES]) {
#pragma HLS INLINE
  act_t own[ROW_LANES];
#pragma HLS ARRAY_PARTITION variable = own complete dim = 1  // a bus word's lanes
merge_banks:
  for (int b = 0; b < X_BANKS; ++b) {
#pragma HLS UNROLL  // bank b's value goes to the one lane that lands in it
    const int l = b < at.phase ? b - at.phase + X_BANKS : b - at.phase;  // bank: lane of b
    if (l < ROW_LANES) {
      own[l] = xq[b];  // bank: b, a constant (xq is registers)
    }
  }
merge_word_lanes:
  for (int l = 0; l < ROW_LANES; ++l) {
    xs[l] = act_t(saturate<ACT_W>(wide_t(xs[l]) + wide_t(own[l])));
  }
}

/// The row inside bank b of x that a side-move word starting at `at` reads (the lane that
/// lands in bank b wrapped past the last bank: one row on), and whether any lane lands
/// there.
inline int merge_row_in_bank(BankAt at, int b, bool& used) {
#pragma HLS INLINE
  const bool wrapped = b < at.phase;
  const int l = wrapped ? b - at.phase + X_BANKS : b - at.phase;  // bank: lane of bank b
  used = l < ROW_LANES;
  return wrapped ? at.row + 1 : at.row;
}

/// An expert chunk's side move on its own (nothing computing beside it): per row, a burst
/// of ROW_WORDS words from a base known before the row's loop (UG1399 "Preconditions and
/// Limitations of Burst Transfer": consecutive words, length known before the request).
/// A merge reads the row's parked x in one loop (adding the row's OUT_DELTA values) and
/// writes it back in another, so neither loop both reads and writes the bundle.
inline void move_rows(RowSide side, const ExpertChunk& ch, word_t* output, const word_t* scratch,
                      act_t x[NUM_TOKENS][EMBED_DIM], act_t h[NUM_TOKENS][EMBED_DIM]) {
#pragma HLS INLINE           // ch is a run-time element of LaneBuffers::expert_chunk
  word_t merged[ROW_WORDS];  // one merged row between its read and its write burst
move_rows_rows:
  for (int r = 0; r < ch.rows; ++r) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = NUM_TOKENS
    if (side == SIDE_GATHER) {
      const uint64_t first = ch.h_at[r] / WORD_BYTES;
      count_words<PORT_SCRATCH>(ROW_WORDS, false);
      BankAt at = {0, 0};
    move_rows_gather:
      for (int w = 0; w < ROW_WORDS; ++w) {
#pragma HLS PIPELINE II = 1  // a bus word per cycle: one burst per row
        act_t xs[ROW_LANES];
#pragma HLS ARRAY_PARTITION variable = xs complete dim = 1
        unpack_word<4, true, ROW_LANES>(scratch, first + w, xs);
        store_lanes_at<H_BANKS, ROW_LANES>(h[r], at, ROW_LANES, xs);
        bank_advance<H_BANKS, ROW_LANES>(at);
      }
    } else {
      const uint64_t first = ch.x_at[r] / WORD_BYTES;
      count_words<PORT_OUTPUT>(ROW_WORDS, false);
      count_words<PORT_OUTPUT>(ROW_WORDS, true);
      BankAt at = {0, 0};
    move_rows_merge_read:
      for (int w = 0; w < ROW_WORDS; ++w) {
#pragma HLS PIPELINE II = 1  // a bus word per cycle: one read burst per row
        act_t xs[ROW_LANES];
        act_t own[ROW_LANES];
#pragma HLS ARRAY_PARTITION variable = xs complete dim = 1
#pragma HLS ARRAY_PARTITION variable = own complete dim = 1
        unpack_word<4, true, ROW_LANES>(output, first + w, xs);
        load_lanes_at<X_BANKS, ROW_LANES>(x[r], at, ROW_LANES, own);
        bank_advance<X_BANKS, ROW_LANES>(at);
      move_rows_lanes:
        for (int l = 0; l < ROW_LANES; ++l) {
          xs[l] = act_t(saturate<ACT_W>(wide_t(xs[l]) + wide_t(own[l])));
        }
        merged[w] = pack_i32<ROW_LANES>(xs, ROW_LANES);
      }
    move_rows_merge_write:
      for (int w = 0; w < ROW_WORDS; ++w) {
#pragma HLS PIPELINE II = 1  // a bus word per cycle: one write burst per row
        output[first + w] = merged[w];
      }
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

/// Whether the pass over tile t fetches a tile: the tile LIN_AHEAD ahead is this call's
/// or one of the next call's first `handoff`.
inline bool lin_fetches(const LinearPlan& pl, int t) {
  const int g = t + LIN_AHEAD;
  return g < pl.T || g - pl.T < pl.handoff;
}

/// The tile buffer after buffer b in the rotation (no `% LIN_TILE_BUFS`: a compare).
inline int next_tile_buf(int b) {
  return b + 1 == LIN_TILE_BUFS ? 0 : b + 1;
}

/// The MAC pipeline of one call (see linear_unit): one pass per weight tile over the rows;
/// during a pass the tile LIN_AHEAD ahead arrives from the weight stream, one word per
/// cycle, into its tile buffer.
///
/// What each memory sees per iteration (the port budget of II = 1, UG1448 200-885/200-880):
/// * x, bank b: one read (the epilogue's element, or the merge's OUT_DELTA value: one
///   address mux, `lin_x_read`) and one write (the epilogue's, `lin_x_write`);
/// * h / wide / pix, bank i: one read (the MAC row, `lin_fetch`), and h one write (the
///   gather's word, through the rotate network);
/// * the routing queue and the expert chunk: one read each of the row's token and gate
///   weight (`tok`, `g`), shared by every lane;
/// * the FIFOs: one weight word in (`ws`), one side word in (`side_in`) and, in a merge, one
///   merged word out (`side_out`): no m_axi access in this loop;
/// * GELU_ROM: copy c is read by lanes 2c and 2c + 1, one entry of each half each: two
///   reads per half-ROM, a dual-port ROM (rom_2p);
/// * acc, lane o: one read and one write; bias, bank o: one read; wtile: registers.
inline void lin_compute(const LinearCall& call, const LinearPlan& pl, hls::stream<WeightWord>& ws,
                        hls::stream<word_t>& side_in, hls::stream<word_t>& side_out,
                        act_t x[NUM_TOKENS][EMBED_DIM], act_t h[NUM_TOKENS][EMBED_DIM],
                        act_t wide[NUM_TOKENS][WIDE_COLS], LaneBuffers& lane,
                        param_t wtile[LIN_TILE_BUFS][LIN_TILE],
                        const param_t bias[OUT_TILES_MAX * LIN_OUT]) {
#pragma HLS INLINE off  // a DATAFLOW process
// the GELU table, one copy per pair of epilogue lanes, each copy's even and odd entries
// apart (gelu.h): 2 * GELU_COPIES ROMs of GELU_HALF entries, each read twice per
// iteration (UG1399 "pragma HLS array_partition"; "pragma HLS bind_storage": rom_2p)
#pragma HLS ARRAY_PARTITION variable = GELU_ROM complete dim = 1        // a copy per lane pair
#pragma HLS ARRAY_PARTITION variable = GELU_ROM complete dim = 2        // even / odd entries
#pragma HLS BIND_STORAGE variable = GELU_ROM type = rom_2p impl = bram  // two lanes a copy
  constexpr int TILE_WORDS = LIN_TILE_WORDS;
  constexpr int WEIGHTS_PER_WORD = WORD_BYTES / 2;
  static_assert(X_BANKS == LIN_OUT, "epilogue lane o is bank o of x");
  static_assert(ROW_LANES <= X_BANKS && ROW_LANES <= H_BANKS, "a side word: one round");
  // the call's accumulators: written before they are read in every call
  lin_acc_t acc[NUM_TOKENS][LIN_OUT];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 2  // LIN_OUT lanes per cycle
  act_t xseg[LIN_IN];  // pixels (8-bit unsigned) and activations both fit an act_t
#pragma HLS ARRAY_PARTITION variable = xseg complete dim = 1
  lin_acc_t sums[LIN_OUT];  // one row's LIN_OUT dot products of this tile
#pragma HLS ARRAY_PARTITION variable = sums complete dim = 1
  act_t to_wide[LIN_OUT];  // one row's outputs bound for wide, into the rotate network
#pragma HLS ARRAY_PARTITION variable = to_wide complete dim = 1
  static_assert(H_BANKS == WIDE_BANKS, "the epilogue's rotate network feeds h and wide alike");
  // out of the rotate network, per round k and bank b (entry k * WIDE_BANKS + b): the
  // value, whether one lands, its row inside the bank (one round in the default build)
  constexpr int EPI_ROUNDS = (LIN_OUT + WIDE_BANKS - 1) / WIDE_BANKS;
  constexpr int EPI_SLOTS = EPI_ROUNDS * WIDE_BANKS;
  static_assert(ROW_LANES <= H_BANKS, "the gather's word: one round");
  act_t rot[EPI_SLOTS];
  bool rot_en[EPI_SLOTS];
  int rot_row[EPI_SLOTS];
#pragma HLS ARRAY_PARTITION variable = rot complete dim = 1
#pragma HLS ARRAY_PARTITION variable = rot_en complete dim = 1
#pragma HLS ARRAY_PARTITION variable = rot_row complete dim = 1
  act_t xq[X_BANKS];  // what each bank of x gave this iteration (its one read)
#pragma HLS ARRAY_PARTITION variable = xq complete dim = 1
  act_t x_new[X_BANKS];  // what each bank of x takes (its one write)
#pragma HLS ARRAY_PARTITION variable = x_new complete dim = 1
  // per call: the shifts, where outputs go, which side move
  const int in_frac = call.in == IN_PIXELS ? PIXEL_F : call.in == IN_RING ? DEC_FEAT_F : ACT_F;
  const int out_frac = call.out == OUT_QKV      ? ATTN_QKV_F
                       : call.out == OUT_GATE   ? ATTN_SCORE_F
                       : call.out == OUT_CONV   ? DEC_FEAT_F
                       : call.out == OUT_CONV_H ? DEC_FEAT_F
                       : call.out == OUT_LOGITS ? DEC_OUT_F
                                                : ACT_F;
  const LinearShift sh = linear_shift(call.scale, in_frac, out_frac);
  // a convolution's geometry (IN_GRID / IN_RING), per call
  const bool conv = call.in == IN_GRID || call.in == IN_RING;
  const ConvWindow& win = call.win;
  const int halo = win.k >> 1;
  const bool to_x = !writes_wide(call.out) && !writes_h(call.out);
  const bool to_h = writes_h(call.out);
  const bool epi_reads_x = reads_x(call.out);
  const bool has_bias = call.b_off != NO_TENSOR;
  const bool gather = call.side == SIDE_GATHER;
  const ExpertChunk& chunk = lane.expert_chunk[call.expert & 1];
  // loop control, registered a pass ahead (the carried path is r's compare and a select)
  int r = 0;         // row of the pass
  int t = 0;         // tile of the pass
  int it = 0;        // its input tile
  int ot = 0;        // its output tile
  int rbuf = pl.b0;  // the tile buffer read: (b0 + t) % LIN_TILE_BUFS
  int wbuf = pl.b0;  // the tile buffer written: (b0 + t + LIN_AHEAD) % LIN_TILE_BUFS
lin_buf_ahead:
  for (int a = 0; a < LIN_AHEAD; ++a) {
    wbuf = next_tile_buf(wbuf);
  }
  bool fetch_now = lin_fetches(pl, 0);
  bool fetch_next = lin_fetches(pl, 1);
  int pass_last = (fetch_now ? pl.fetching : pl.plain) - 1;
  bool first = true;       // it == 0: accumulators start from zero, no clearing pass
  bool last = pl.IT == 1;  // it == IT - 1: the epilogue runs with the last MACs
  int by = 0;              // a convolution's band pixel of row r (r = by * cols + bx)
  int bx = 0;
  int ky = 0;  // and the tap and channel tile of input tile it
  int kx = 0;
  int cb = 0;
  int sr = 0;  // the side move's row and word
  int sw = 0;
  BankAt h_at = {0, 0};  // the side word's first column in h's banks and in x's
  BankAt x_at = {0, 0};
lin_pass:
  for (int step = 0; step < pl.steps; ++step) {
#pragma HLS PIPELINE II = 1  // a row of MACs (+ epilogues) and a bus word per port per cycle
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 147456
// wtile: the tile written during pass t is read from pass t + LIN_AHEAD on. A write at
// row r < TILE_WORDS of a fetching pass (>= TILE_WORDS iterations) is read no sooner than
// (TILE_WORDS - r) + LIN_MIN_PASS >= LIN_MIN_PASS + 1 iterations later: the true RAW
// distance. The write-after-read on the buffer pass t - 1 read (distance 1 when rows >
// TILE_WORDS) is left to the tool (no `false` here; UG1399 "pragma HLS dependence").
#pragma HLS DEPENDENCE variable = wtile inter RAW distance = LIN_WTILE_RAW true
#pragma HLS DEPENDENCE variable = acc inter RAW distance = LIN_MIN_PASS true  // a pass apart
    // No element of x, h or wide is touched by two iterations of one call in a way that
    // orders them (UG1399 "pragma HLS dependence": inter false only where true):
    // proof: x: each (row, column) is read-modified-written once, in one iteration (the epilogue
    //    of its output tile; OUT_EXPERT's rows are distinct tokens of one queue); the merge
    //    reads x only in a call that writes wide (fc1), never x.
    // proof: h: read by IN_H / IN_H_GATHER / IN_GRID calls and the fused classifier's h
    //    tiles, written only by the gather, which rides on an IN_WIDE call (expert fc2), and
    //    by OUT_CONV_H, an IN_RING call without h tiles.
    // proof: wide: read by IN_WIDE / IN_RING calls, written only by OUT_QKV / OUT_GATE /
    //    OUT_GELU calls, whose input is h or the pixels.
    // proof: x: OUT_CONV / OUT_LOGITS write each (row, column) once and read none.
#pragma HLS DEPENDENCE variable = x inter false
#pragma HLS DEPENDENCE variable = h inter false
#pragma HLS DEPENDENCE variable = wide inter false
    const bool computing = step < pl.total;
    const bool row_live = computing && r < call.rows;
    const bool side_now = step < pl.side_words;
    const bool merge_now = side_now && !gather;
    const bool epi_now = row_live && last;
    // per-row scalars, one read each, shared by every lane (not re-read per lane)
    int tok = 0;
    prob_t g = 0;
    if (row_live) {
      tok = lane.routing.token[call.expert][r];
      g = call.out == OUT_EXPERT ? lane.routing.weight[call.expert][r] : chunk.weight[r];
    }
    const int xr = epilogue_row(call.out, r, tok);
    // x: one read per bank -- the epilogue's element (row xr, bank o at row ot inside it)
    // or, in a merge (whose call never reads x in its epilogue: fc1), the OUT_DELTA value
    // of the side word's lane in this bank
  lin_x_read:
    for (int b = 0; b < X_BANKS; ++b) {
#pragma HLS UNROLL  // bank b, a constant
      bool used = false;
      const int m_addr = merge_row_in_bank(x_at, b, used);
      const bool epi_rd = epi_now && epi_reads_x && ot * X_BANKS + b < call.o;
      const int row = merge_now ? sr : xr;
      const int addr = merge_now ? m_addr : ot;
      xq[b] = 0;
      if (merge_now ? used : epi_rd) {
        xq[b] = x[row][addr * X_BANKS + b];  // bank: b, a constant
      }
    }
    // h's one write this iteration (the gather's word or an OUT_CONV_H row's lanes, never
    // both in one call): bank b's value, whether, its row inside the bank; h row h_row
    act_t hv[EPI_SLOTS];
    bool hen[EPI_SLOTS];
    int hbank_row[EPI_SLOTS];
#pragma HLS ARRAY_PARTITION variable = hv complete dim = 1
#pragma HLS ARRAY_PARTITION variable = hen complete dim = 1
#pragma HLS ARRAY_PARTITION variable = hbank_row complete dim = 1
  lin_h_none:
    for (int b = 0; b < EPI_SLOTS; ++b) {
      hen[b] = false;
      hv[b] = 0;
      hbank_row[b] = 0;
    }
    int h_row = sr;
    if (side_now) {  // the side move: rows neither the MACs nor the epilogue touch
      const word_t word = side_in.read();
      act_t xs[ROW_LANES];
#pragma HLS ARRAY_PARTITION variable = xs complete dim = 1  // a bus word's lanes
      unpack_word<4, true, ROW_LANES>(&word, 0, xs);
      if (gather) {
        bank_route<H_BANKS, ROW_LANES, EPI_ROUNDS>(h_at, ROW_LANES, xs, hv, hen, hbank_row);
      } else {
        merge_lanes(xq, x_at, xs);
        side_out.write(pack_i32<ROW_LANES>(xs, ROW_LANES));
      }
      bank_advance<H_BANKS, ROW_LANES>(h_at);
      bank_advance<X_BANKS, ROW_LANES>(x_at);
      if (++sw == ROW_WORDS) {
        sw = 0;
        ++sr;
        h_at.row = 0;
        h_at.phase = 0;
        x_at.row = 0;
        x_at.phase = 0;
      }
    }
    if (computing) {
      if (fetch_now && r < TILE_WORDS) {
        const WeightWord ww = ws.read();
      lin_tile_word:
        for (int l = 0; l < WEIGHTS_PER_WORD; ++l) {
          // wtile is registers (complete dim 2): r selects which through a decoder, no RAM port
          wtile[wbuf][r * WEIGHTS_PER_WORD + l] = ww.w[l];  // bank: registers
        }
      }
      if (row_live) {
        const param_t* w = wtile[rbuf];
        // a convolution's tap of this row: the map pixel, inside the map or not, and
        // where its window holds it (adds, compares and a DEC_WIN_ROWS-way select)
        const int gy = win.y0 + by + ky - halo;
        const int gx = win.x0 + bx + kx - halo;
        const bool inside = gy >= 0 && gy < win.h && gx >= 0 && gx < win.w;
        const int u = inside ? gy - win.wy0 : 0;
        const int ring_row = win.rowbase[u] + gx - win.wx0;
        const int chan = cb * LIN_IN;  // the tap's first channel of this input tile
        // the fused classifier's first channel tiles: h row r (a compare of a counter)
        const bool tile_h = cb < win.h_tiles;
        const LinearInput src = tile_h ? IN_H : call.in;
        const int base = tile_h ? chan : conv ? win.colbase[u] + chan : it * LIN_IN;
        const int hr = tile_h ? r : conv ? ring_row : call.in == IN_H_GATHER ? tok : r;
        const int wr = conv ? ring_row : r;
      lin_fetch:
        for (int i = 0; i < LIN_IN; ++i) {
          const bool live = conv ? inside && chan + i < win.c_in : it * LIN_IN + i < call.k;
          xseg[i] = linear_input(src, h, wide, lane, r, hr, wr, base + i, live);  // bank: i
        }
      lin_mac_out:
        for (int o = 0; o < LIN_OUT; ++o) {
          // the tile's products first, then the running sum once: the carried path
          // (acc read -> one add -> acc write) holds one adder, not the tree
          lin_acc_t dot = 0;
        lin_mac_in:
          for (int i = 0; i < LIN_IN; ++i) {
            // ACT_W x 16-bit: one DSP48E2 for the lean profile (27 x 18)
            dot += lin_acc_t(xseg[i] * w[i * LIN_OUT + o]);
          }
          sums[o] = first ? dot : lin_acc_t(acc[r][o] + dot);
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
            x_new[o] = 0;
            to_wide[o] = 0;
            if (col < call.o) {
              to_wide[o] = act_t(linear_output(call.out, sh, wide_t(sums[o]),
                                               has_bias ? wide_t(bias[col]) : wide_t(0),
                                               wide_t(xq[o]), g, o / 2, x_new[o]));
            }
          }
          if (to_x) {
          lin_x_write:
            for (int o = 0; o < X_BANKS; ++o) {
              if (ot * X_BANKS + o < call.o) {
                x[xr][ot * X_BANKS + o] = x_new[o];  // bank: o, a constant: the one write
              }
            }
          } else {
            // one rotate network for wide and, OUT_CONV_H, h (H_BANKS == WIDE_BANKS): bank b
            // of the one it writes takes rot[b]
            const int left = call.o - ot * LIN_OUT;
            bank_route<WIDE_BANKS, LIN_OUT, EPI_ROUNDS>(bank_at<WIDE_BANKS, LIN_OUT>(ot * LIN_OUT),
                                                        left < LIN_OUT ? left : LIN_OUT, to_wide,
                                                        rot, rot_en, rot_row);
          lin_wide_write:
            for (int b = 0; b < EPI_SLOTS; ++b) {
              if (to_h) {  // to h's one write below
                hv[b] = rot[b];
                hen[b] = rot_en[b];
                hbank_row[b] = rot_row[b];
              } else if (rot_en[b]) {
                wide[r][rot_row[b] * WIDE_BANKS + b % WIDE_BANKS] = rot[b];  // bank: b % BANKS
              }
            }
            h_row = to_h ? r : h_row;
          }
        }
      }
      // next (tile, row); input tiles run fastest within an output tile. Everything the
      // next pass needs was computed a pass ahead: the compare of r is the only carried
      // logic before the selects.
      if (r == pass_last) {
        r = 0;
        by = 0;
        bx = 0;
        ++t;
        rbuf = next_tile_buf(rbuf);
        wbuf = next_tile_buf(wbuf);
        fetch_now = fetch_next;
        pass_last = (fetch_next ? pl.fetching : pl.plain) - 1;
        fetch_next = lin_fetches(pl, t + 1);
        first = last;  // the next input tile starts an output tile after a last one
        if (last) {
          it = 0;
          ++ot;
          ky = 0;
          kx = 0;
          cb = 0;
        } else {
          ++it;
          // the next tap's channel tile: counters, no division
          const bool tap_done = cb + 1 == win.cp_tiles;
          const bool row_done = tap_done && kx + 1 == win.k;
          cb = tap_done ? 0 : cb + 1;
          kx = tap_done ? (row_done ? 0 : kx + 1) : kx;
          ky = row_done ? ky + 1 : ky;
        }
        last = it == pl.IT - 1;
      } else {
        ++r;
        const bool wrap = bx + 1 == win.cols;  // the band's next pixel
        bx = wrap ? 0 : bx + 1;
        by = wrap ? by + 1 : by;
      }
    }
  lin_h_write:
    for (int b = 0; b < EPI_SLOTS; ++b) {
      if (hen[b]) {
        // bank: b % H_BANKS, a constant: h's one write a bank and round
        h[h_row][hbank_row[b] * H_BANKS + b % H_BANKS] = hv[b];
      }
    }
  }
}

/// Side-move words in flight between the row reader and the MACs: two rows, so the next
/// row's burst is requested while the MACs take the current one.
constexpr int LIN_SIDE_DEPTH = 2 * ROW_WORDS;

/// The side move's DDR reads (see RowSide): per row, one burst of ROW_WORDS words from a
/// base known before the row's loop (UG1399 "Preconditions and Limitations of Burst
/// Transfer"), into the FIFO the MACs take one word per cycle from. Gather and merge read
/// different bundles, each in a loop of its own (no conditional access: UG1448 214-232).
/// \param base the rows' first words, copied for this process alone by linear_unit
inline void lin_side_read(RowSide side, int rows, const uint32_t base[NUM_TOKENS],
                          const word_t* output, const word_t* scratch,
                          hls::stream<word_t>& side_in) {
#pragma HLS INLINE off  // a DATAFLOW process: the one reader of `output` in the region
lin_side_read_rows:
  for (int r = 0; r < rows; ++r) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = NUM_TOKENS
    const uint64_t first = base[r];
    if (side == SIDE_GATHER) {
      count_words<PORT_SCRATCH>(ROW_WORDS, false);
    lin_side_read_gather:
      for (int w = 0; w < ROW_WORDS; ++w) {
#pragma HLS PIPELINE II = 1  // a bus word per cycle: one burst per row
        side_in.write(scratch[first + w]);
      }
    } else {
      count_words<PORT_OUTPUT>(ROW_WORDS, false);
    lin_side_read_merge:
      for (int w = 0; w < ROW_WORDS; ++w) {
#pragma HLS PIPELINE II = 1  // a bus word per cycle: one burst per row
        side_in.write(output[first + w]);
      }
    }
  }
}

/// The merge's DDR writes: the merged words the MACs hand over, per row one burst of
/// ROW_WORDS words to the row's parked x.
/// \param base the rows' first words (the same as the reader's, a copy of its own)
inline void lin_side_write(int rows, const uint32_t base[NUM_TOKENS], word_t* output,
                           hls::stream<word_t>& side_out) {
#pragma HLS INLINE off  // a DATAFLOW process: the one writer of `output` in the region
lin_side_write_rows:
  for (int r = 0; r < rows; ++r) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = NUM_TOKENS
    const uint64_t first = base[r];
    count_words<PORT_OUTPUT>(ROW_WORDS, true);
  lin_side_write_words:
    for (int w = 0; w < ROW_WORDS; ++w) {
#pragma HLS PIPELINE II = 1  // a bus word per cycle: one burst per row
      output[first + w] = side_out.read();
    }
  }
}

/// One linear-unit call as a DATAFLOW region: the weight stream (a burst however the
/// passes consume it: the read sits in a loop of its own, not behind the pass's condition,
/// UG1448 214-232), the side move's row reader and writer (per-row bursts), and the MAC
/// pipeline between them, joined by FIFOs. Each array and bundle has one reading and one
/// writing process (UG1448 200-992): `output` is read by the side reader and written by
/// the side writer only.
inline void lin_stream(const LinearCall& call, const LinearPlan& pl, const word_t* bundle,
                       uint64_t own_off, int own_words, int next_words, word_t* output,
                       const word_t* scratch, const uint32_t side_rd[NUM_TOKENS],
                       const uint32_t side_wr[NUM_TOKENS], int side_rows, Buffers& buf,
                       LaneBuffers& lane, param_t wtile[LIN_TILE_BUFS][LIN_TILE],
                       const param_t bias[OUT_TILES_MAX * LIN_OUT]) {
#pragma HLS INLINE off  // the DATAFLOW region stays a module
#pragma HLS DATAFLOW    // the fetch and the side reader run ahead of the MACs
  hls::stream<WeightWord> ws;
#pragma HLS STREAM variable = ws depth = LIN_STREAM_DEPTH  // one tile of words in flight
  hls::stream<word_t> side_in;
#pragma HLS STREAM variable = side_in depth = LIN_SIDE_DEPTH  // two rows in flight
  hls::stream<word_t> side_out;
#pragma HLS STREAM variable = side_out depth = ROW_WORDS  // a row: the writer's burst
  const int merge_rows = call.side == SIDE_MERGE ? side_rows : 0;
  lin_fetch_weights(bundle, own_off, own_words, call.next_w_off, next_words, ws);
  lin_side_read(call.side, side_rows, side_rd, output, scratch, side_in);
  lin_compute(call, pl, ws, side_in, side_out, buf.x, buf.h, buf.wide, lane, wtile, bias);
  lin_side_write(merge_rows, side_wr, output, side_out);
}

/// ceil(n / SIZE) for a feature count n < 2^BANK_COL_BITS: a narrow division (once per
/// call, outside the pipeline; a shift when SIZE is a power of two).
template <int SIZE>
inline int narrow_ceil_div(int n) {
  const uint<BANK_COL_BITS> v = n + SIZE - 1;
  return int(v / SIZE);
}

/// One weight tile from the bundle into tile buffer `b`: one burst of LIN_TILE_WORDS words
/// (UG1399 "Preconditions and Limitations of Burst Transfer": base and length known before
/// the loop). The buffer is an index into wtile's undivided dimension, not a sub-array
/// handed to a helper (the run-time sub-array argument UG1448 200-197 warns about).
inline void lin_load_tile(const word_t* bundle, uint64_t off, int b,
                          param_t wtile[LIN_TILE_BUFS][LIN_TILE]) {
#pragma HLS INLINE  // a loop of linear_unit, its buffer index a run-time value
  constexpr int PER_WORD = WORD_BYTES / 2;
  const uint64_t first = off / WORD_BYTES;
  count_words<PORT_WEIGHTS>(LIN_TILE_WORDS, false);
lin_load_tile_words:
  for (int w = 0; w < LIN_TILE_WORDS; ++w) {
#pragma HLS PIPELINE II = 1  // a bus word per cycle: one burst
    param_t vals[PER_WORD];
#pragma HLS ARRAY_PARTITION variable = vals complete dim = 1
    unpack_word<2, true, PER_WORD>(bundle, first + w, vals);
  lin_load_tile_lanes:
    for (int l = 0; l < PER_WORD; ++l) {
      wtile[b][w * PER_WORD + l] = vals[l];  // bank: registers (wtile complete dim 2)
    }
  }
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
  pl.IT = narrow_ceil_div<LIN_IN>(call.k);
  const int OT = narrow_ceil_div<LIN_OUT>(call.o);
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
  int buf_t = pl.b0;  // the tile buffer of tile t: (b0 + t) % LIN_TILE_BUFS
lin_first_tiles:
  for (int t = 0; t < LIN_AHEAD && t < T; ++t) {
    if (t >= ready) {
      lin_load_tile(bundle, call.w_off + uint64_t(t) * TILE_BYTES, buf_t, wtile);
    }
    buf_t = next_tile_buf(buf_t);
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
  ahead.buf = int(uint<BANK_COL_BITS>(pl.b0 + T) % LIN_TILE_BUFS);  // once per call, narrow

  // one pipeline over every (tile, row): a pass per tile of max(rows, its fetch, the
  // accumulators' read-to-write distance) cycles
  pl.plain = call.rows > LIN_MIN_PASS ? call.rows : LIN_MIN_PASS;
  pl.fetching = pl.plain > TILE_WORDS ? pl.plain : TILE_WORDS;
  const int own_tiles = T > LIN_AHEAD ? T - LIN_AHEAD : 0;
  const int n_fetch = own_tiles + pl.handoff;  // passes that fetch
  pl.total = n_fetch * pl.fetching + (T - n_fetch) * pl.plain;
  // the side move's row bases, one copy per DATAFLOW process that needs them (the reader;
  // the writer of a merge): read from the expert chunk here, before the region
  const ExpertChunk& side = lane.expert_chunk[call.side_expert_chunk];
  const int side_rows = call.side != SIDE_NONE ? side.rows : 0;
  uint32_t side_rd[NUM_TOKENS];  // word indices: 2^32 bus words cover 64 GB
  uint32_t side_wr[NUM_TOKENS];
lin_side_bases:
  for (int r = 0; r < side_rows; ++r) {
#pragma HLS PIPELINE II = 1  // one row base per cycle (<= NUM_TOKENS cycles per call)
#pragma HLS LOOP_TRIPCOUNT min = 0 max = NUM_TOKENS
    const uint64_t at = call.side == SIDE_GATHER ? side.h_at[r] : side.x_at[r];
    side_rd[r] = uint32_t(at / WORD_BYTES);
    side_wr[r] = uint32_t(at / WORD_BYTES);
  }
  pl.side_words = side_rows * ROW_WORDS;
  pl.steps = pl.total > pl.side_words ? pl.total : pl.side_words;
  lin_stream(call, pl, bundle, call.w_off + uint64_t(LIN_AHEAD) * TILE_BYTES,
             own_tiles * TILE_WORDS, pl.handoff * TILE_WORDS, output, scratch, side_rd, side_wr,
             side_rows, buf, lane, wtile, bias);
}

}  // namespace edgemoe

#endif  // EDGEMOE_LINEAR_H_
