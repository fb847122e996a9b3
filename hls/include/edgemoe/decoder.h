// The task decoder (M3ViT's pup head) on the linear lane: after an image's backbone, the
// final LayerNorm (the lane's LayerNorm unit), then each convolution band by band as
// linear-unit calls on im2col rows (IN_GRID for conv_0, which reads the token grid in
// place in h; IN_RING for the others, which read their band's window from a ring in
// wide), each bilinear x2 fused into the band load of the convolution after it, and the
// 1x1 classifier's logits to the output region. This file holds the band geometry and
// the band loads and stores; the steps are the linear lane's (lanes.h: PC_DEC_*), so the
// one linear unit computes every convolution.
//
// Layout contract: edgemoe.host.contracts.decoder (bands, the ring, chunk-planar maps in
// the scratch buffer, the output region). Golden: edgemoe.sim.golden.Golden.decode.
// Contract: bit-exact.
#ifndef EDGEMOE_DECODER_H_
#define EDGEMOE_DECODER_H_

#include "edgemoe/banked.h"
#include "edgemoe/buffers.h"
#include "edgemoe/config.h"
#include "edgemoe/ddr.h"
#include "edgemoe/linear.h"

namespace edgemoe {

/// Bytes of an image's final tokens at the start of a decoding call's output region: the
/// stage's output follows them (contracts.decoder.tokens_words).
constexpr uint64_t DEC_TOKENS_BYTES = uint64_t(NUM_TOKENS) * EMBED_DIM * 4;

// (a build without a decoder never runs these steps: DEC_CHUNK is a placeholder there)
static_assert(!DEC_ANY || (DEC_CHUNK % LIN_OUT == 0 && DEC_CHUNK <= EMBED_DIM),
              "a chunk is whole output tiles of a row of x");
static_assert(!DEC_ANY || DEC_CHUNK % ROW_LANES == 0, "a full chunk is whole bus words per pixel");
static_assert((ROW_LANES & (ROW_LANES - 1)) == 0, "words per pixel: a shift");
static_assert(!DEC_ANY || (DEC_CHUNK * 2) % WORD_BYTES == 0, "a chunk's bias starts on a bus word");

/// Bus words of one pixel of a chunk of n channels.
inline int chunk_words(int n) {
  return (n + ROW_LANES - 1) / ROW_LANES;  // a shift: ROW_LANES is a power of two
}

/// Advance `at` by STEP columns of a row banked cyclic BANKS, STEP any constant: an add
/// and a compare (bank_advance takes STEP < BANKS only).
template <int BANKS, int STEP>
inline void bank_step(BankAt& at) {
#pragma HLS INLINE
  const int p = at.phase + STEP % BANKS;
  const bool wrap = p >= BANKS;
  at.phase = wrap ? p - BANKS : p;
  at.row = at.row + STEP / BANKS + (wrap ? 1 : 0);
}

/// Channels the bilinear x2 blends a cycle: the banks of x, h and wide all cycle through
/// the same UP_LANES-aligned groups, so a lane's value comes from one bank of each among
/// BANKS / UP_LANES (the rotate networks of banked.h on phases that UP_LANES divides).
constexpr int UP_LANES = Gcd<X_BANKS, Gcd<H_BANKS, WIDE_BANKS>::value>::value;

/// A walk over UP_LANES-wide column groups of a row banked cyclic BANKS: the group's first
/// column is row * BANKS + k * UP_LANES, k < BANKS / UP_LANES (a counter; the phase a
/// constant multiple of it, so each bank sees one lane per phase).
template <int BANKS>
struct LaneWalk {
  int row;
  int k;
  BankAt at() const {
#pragma HLS INLINE
    BankAt a;
    a.row = row;
    a.phase = k * UP_LANES;
    return a;
  }
  void next() {
#pragma HLS INLINE
    const bool wrap = k + 1 == BANKS / UP_LANES;
    k = wrap ? 0 : k + 1;
    row = wrap ? row + 1 : row;
  }
};

/// The LaneWalk of column c0 (a multiple of UP_LANES): one narrow division, once per walk.
template <int BANKS>
inline LaneWalk<BANKS> lane_walk(int c0) {
#pragma HLS INLINE
  const BankAt a = bank_at<BANKS, UP_LANES>(c0);
  LaneWalk<BANKS> w;
  w.row = a.row;
  w.k = a.phase / UP_LANES;  // a constant divisor of the phase: a shift or a small table
  return w;
}

/// Where the linear lane is in a task's decoder: convolution `conv`, the band at (y0, x0),
/// output chunk `chunk` of it (channels chunk * DEC_CHUNK ..).
struct DecState {
  int conv;
  int y0;
  int x0;
  int chunk;
  int loaded;  ///< the first input row below the previous full-width band's window (0: none)
};

/// Rows, columns and the window of the band at (y0, x0) of convolution `cv` (the first
/// reads the token grid, the others their ring), as the linear unit reads it; `rows`
/// returns the band's rows. The ring: input row gy at ring row k = gy % ring_rows, i.e.
/// rows (k % ring_rps) * WC .. of column slot k / ring_rps (WC the window's width), so a
/// row a band shares with the band before it stays where it is; the table's entries are
/// counters from the window's first row (one narrow division and remainder per band).
inline void dec_window(const DecConv& cv, bool first, int y0, int x0, ConvWindow& win, int& rows) {
  const int halo = cv.k >> 1;
  rows = cv.band_rows < cv.h - y0 ? cv.band_rows : cv.h - y0;
  const int cols = cv.band_cols < cv.w - x0 ? cv.band_cols : cv.w - x0;
  win.k = cv.k;
  win.c_in = cv.c_in;
  win.cp_tiles = cv.c_pad / LIN_IN;  // once per band; LIN_IN divides c_pad (a shift when 2^n)
  win.h = cv.h;
  win.w = cv.w;
  win.y0 = y0;
  win.x0 = x0;
  win.cols = cols;
  win.wy0 = y0 - halo > 0 ? y0 - halo : 0;
  win.wx0 = x0 - halo > 0 ? x0 - halo : 0;
  win.wy1 = y0 + rows + halo < cv.h ? y0 + rows + halo : cv.h;
  win.wx1 = x0 + cols + halo < cv.w ? x0 + cols + halo : cv.w;
  win.h_tiles = 0;
  const int wc = first ? cv.w : win.wx1 - win.wx0;
  // the window's first row in the ring: ring row k0, row idx of column slot `slot`
  typedef uint<8> small_t;  // map rows and ring rows (< 256: contracts.decoder checks)
  const int rps = first ? 1 : cv.ring_rps;
  const int ring = first ? 1 : cv.ring_rows;
  const int k0 = int(small_t(win.wy0) % small_t(ring));  // div: 8-bit, once per band
  int slot = int(small_t(k0) / small_t(rps));            // div: 8-bit, once per band
  int idx = k0 - slot * rps;
  const int slots = int(small_t(ring) / small_t(rps));  // div: 8-bit, once per band
dec_window_rows:
  for (int u = 0; u < DEC_WIN_ROWS; ++u) {
#pragma HLS UNROLL  // DEC_WIN_ROWS registers each (the MAC row's select)
    // 8-bit products, once per band (grid: token 1 + y * w + x)
    win.rowbase[u] = first ? 1 + u * cv.w : idx * wc;
    win.colbase[u] = first ? 0 : slot * cv.c_pad;
    const bool slot_done = idx + 1 == rps;
    idx = slot_done ? 0 : idx + 1;
    slot = slot_done ? (slot + 1 == slots ? 0 : slot + 1) : slot;
  }
}

/// Byte offset of plane `chunk` of a map of h x w pixels (chunk-planar: every plane before
/// it is a full chunk).
inline uint64_t dec_plane(int h, int w, int chunk) {
  return uint64_t(h) * uint64_t(w) * uint64_t(chunk) * (DEC_CHUNK * 4);
}

/// One map row's pixels [x0, x0 + n) of one chunk plane (n_ch channels) from DDR into
/// buffer rows `first_row + j` (j < n) at columns col0.., banked cyclic BANKS: one burst,
/// each bus word's lanes through the bank rotate network.
template <int PORT, int BANKS, int STRIDE>
inline void dec_read_pixels(const word_t* bus, uint64_t byte_off, int n, int n_ch, int first_row,
                            int col0, act_t buf[NUM_TOKENS][STRIDE]) {
#pragma HLS INLINE  // buf is a buffer of the caller's
  const int pw = chunk_words(n_ch);
  const int words = n * pw;
  const uint64_t first = byte_off / WORD_BYTES;
  count_words<PORT>(words, false);
  const BankAt at0 = bank_at<BANKS, ROW_LANES>(col0);  // once per burst
  BankAt at = at0;
  int j = 0;
  int g = 0;
dec_read_pixels_words:
  for (int i = 0; i < words; ++i) {
#pragma HLS PIPELINE II = 1  // a bus word per cycle: one burst
#pragma HLS LOOP_TRIPCOUNT min = 1 max = NUM_TOKENS * DEC_CHUNK / ROW_LANES
    act_t vals[ROW_LANES];
#pragma HLS ARRAY_PARTITION variable = vals complete dim = 1  // a bus word's lanes
    unpack_word<4, true, ROW_LANES>(bus, first + i, vals);
    const int left = n_ch - g * ROW_LANES;
    bank_walk_phased<TO_ROW, BANKS, ROW_LANES, ROW_LANES>(
        buf[first_row + j], at, left < ROW_LANES ? left : ROW_LANES, vals);
    bank_advance<BANKS, ROW_LANES>(at);
    if (++g == pw) {
      g = 0;
      ++j;
      at = at0;
    }
  }
}

/// The band's window into the ring (wide), its rows from input row `from` on (a band as
/// wide as the map after another keeps the rows they share): for each row, each chunk plane of the
/// source map in one burst per row and chunk. Without a fused x2 the window's pixels go
/// straight to the ring; with one, the two source rows of each window row (its own and
/// its neighbour, contracts.decoder.up_source_rows) go to x and h, one pixel per buffer
/// row, and the x2 is computed from them into the ring, UP_LANES channels a cycle:
/// out(2j + b) = (9 x[j] + 3 h[j] + 3 x[j'] + h[j'] + 8) >> 4 (units.upsample2x), j' the
/// column neighbour on b's side, clamped.
/// The source map is at `maps` + DEC_MAP_OFF (the buffer set's pair of maps in scratch),
/// read through PORT.
/// `copy` (the fused classifier, `cv` the classifier, `win` dec_fuse_window's): no DDR; the
/// x2's loop copies the band's second chunk (x row v, its c_in - DEC_CHUNK channels) into
/// the window's ring slot (wide row v, after the first chunk's columns) instead of
/// blending (the linear lane's own instance, `copy` a constant there: its DDR reads and
/// the blend's h reads are dead code).
template <int PORT>
inline void dec_load_window(const word_t* bus, uint64_t maps, const DecConv& cv,
                            const ConvWindow& win, int from, bool copy,
                            act_t x[NUM_TOKENS][EMBED_DIM], act_t h[NUM_TOKENS][EMBED_DIM],
                            act_t wide[NUM_TOKENS][WIDE_COLS]) {
  const int wy1 = win.wy1;
  const int wx1 = win.wx1;
  const int wc = wx1 - win.wx0;
  const uint64_t src = maps + DEC_MAP_OFF[cv.src_map];
  const int chunks = (cv.c_in + DEC_CHUNK - 1) / DEC_CHUNK;  // a few per call: 1 or 2
  // a fused x2's source columns [js0, js1) (contracts.decoder._up_cols)
  const int js0 = (win.wx0 >> 1) - 1 > 0 ? (win.wx0 >> 1) - 1 : 0;
  const int js1 = ((wx1 - 1) >> 1) + 2 < cv.src_w ? ((wx1 - 1) >> 1) + 2 : cv.src_w;
  const int sw = js1 - js0;
  // the window's rows from `from` on (the ring holds the ones above it)
  const int first_row = from > win.wy0 ? from - win.wy0 : 0;
dec_load_rows:
  for (int u = first_row; u < wy1 - win.wy0; ++u) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = DEC_WIN_ROWS
    const int gy = win.wy0 + u;
    const int ring = win.rowbase[u];
    int stage = 0;  // x / h row of chunk ch's first source pixel
  dec_load_chunks:
    for (int ch = copy ? 1 : 0; ch < chunks; ++ch) {  // a copy: the second chunk only
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 2
      const int c0 = ch * DEC_CHUNK;
      const int n_ch = cv.c_in - c0 < DEC_CHUNK ? cv.c_in - c0 : DEC_CHUNK;
      const int pw = chunk_words(n_ch);
      if (!cv.fused_up && !copy) {
        const uint64_t at = src + dec_plane(cv.src_h, cv.src_w, ch) +
                            (uint64_t(gy) * cv.src_w + win.wx0) * pw * WORD_BYTES;
        dec_read_pixels<PORT, WIDE_BANKS, WIDE_COLS>(bus, at, wc, n_ch, ring, win.colbase[u] + c0,
                                                     wide);
      } else {
        const int i = gy >> 1;
        const int i2n = (gy & 1) ? i + 1 : i - 1;
        const int i2 = i2n < 0 ? 0 : i2n >= cv.src_h ? cv.src_h - 1 : i2n;
        const uint64_t plane = src + dec_plane(cv.src_h, cv.src_w, ch);
        if (!copy) {
          dec_read_pixels<PORT, X_BANKS, EMBED_DIM>(
              bus, plane + (uint64_t(i) * cv.src_w + js0) * pw * WORD_BYTES, sw, n_ch, stage, 0, x);
          dec_read_pixels<PORT, H_BANKS, EMBED_DIM>(
              bus, plane + (uint64_t(i2) * cv.src_w + js0) * pw * WORD_BYTES, sw, n_ch, stage, 0,
              h);
        }
        // the window row's pixels of this chunk, UP_LANES channels a cycle
        const int groups = (n_ch + UP_LANES - 1) / UP_LANES;  // at most DEC_CHUNK / UP_LANES
        const LaneWalk<WIDE_BANKS> wide0 = lane_walk<WIDE_BANKS>(win.colbase[u] + c0);
        LaneWalk<WIDE_BANKS> to = wide0;
        LaneWalk<X_BANKS> xw = {0, 0};
        LaneWalk<H_BANKS> hw = {0, 0};
        int v = 0;
        int g = 0;
      dec_up_words:
        for (int n = 0; n < wc * groups; ++n) {
#pragma HLS PIPELINE II = 1  // two reads per bank of x and of h, one write per bank of wide
#pragma HLS LOOP_TRIPCOUNT min = 1 max = NUM_TOKENS * DEC_CHUNK / UP_LANES
          const int gx = win.wx0 + v;
          const int j = gx >> 1;
          const int jn_raw = (gx & 1) ? j + 1 : j - 1;
          const int jn = jn_raw < 0 ? 0 : jn_raw >= cv.src_w ? cv.src_w - 1 : jn_raw;
          const int ra = copy ? v : stage + j - js0;  // a copy: x row v, the band's pixel
          const int rb = copy ? v : stage + jn - js0;
          act_t xa[UP_LANES];  // source row i at column j, and at j'
          act_t xc[UP_LANES];
          act_t hb[UP_LANES];  // its neighbour row i' at j and j'
          act_t hd[UP_LANES];
          act_t out[UP_LANES];
#pragma HLS ARRAY_PARTITION variable = xa complete dim = 1
#pragma HLS ARRAY_PARTITION variable = xc complete dim = 1
#pragma HLS ARRAY_PARTITION variable = hb complete dim = 1
#pragma HLS ARRAY_PARTITION variable = hd complete dim = 1
#pragma HLS ARRAY_PARTITION variable = out complete dim = 1
          bank_walk_phased<FROM_ROW, X_BANKS, UP_LANES, UP_LANES>(x[ra], xw.at(), UP_LANES, xa);
          bank_walk_phased<FROM_ROW, X_BANKS, UP_LANES, UP_LANES>(x[rb], xw.at(), UP_LANES, xc);
          bank_walk_phased<FROM_ROW, H_BANKS, UP_LANES, UP_LANES>(h[ra], hw.at(), UP_LANES, hb);
          bank_walk_phased<FROM_ROW, H_BANKS, UP_LANES, UP_LANES>(h[rb], hw.at(), UP_LANES, hd);
        dec_up_lanes:
          for (int l = 0; l < UP_LANES; ++l) {
            const wide_t sum =
                9 * wide_t(xa[l]) + 3 * wide_t(hb[l]) + 3 * wide_t(xc[l]) + wide_t(hd[l]) + 8;
            out[l] = copy ? xa[l] : act_t(sum >> 4);  // floor: units.upsample2x
          }
          const int left = n_ch - g * UP_LANES;
          bank_walk_phased<TO_ROW, WIDE_BANKS, UP_LANES, UP_LANES>(
              wide[ring + v], to.at(), left < UP_LANES ? left : UP_LANES, out);
          to.next();
          xw.next();
          hw.next();
          if (++g == groups) {
            g = 0;
            ++v;
            to = wide0;
            xw = {0, 0};
            hw = {0, 0};
          }
        }
      }
      stage += sw;
    }
  }
}

/// n pixels of n_ch channels from buffer rows `first_row + j` (j < n), columns col0..,
/// banked cyclic BANKS, to DDR from a word-aligned byte offset: one burst, each bus word's
/// lanes through the bank rotate network (the twin of dec_read_pixels).
template <int PORT, int BANKS, int STRIDE>
inline void dec_write_pixels(word_t* bus, uint64_t byte_off, int n, int n_ch, int first_row,
                             int col0, const act_t buf[NUM_TOKENS][STRIDE]) {
#pragma HLS INLINE  // buf is a buffer of the caller's
  const int pw = chunk_words(n_ch);
  const int words = n * pw;
  const uint64_t first = byte_off / WORD_BYTES;
  count_words<PORT>(words, true);
  const BankAt at0 = bank_at<BANKS, ROW_LANES>(col0);  // once per burst
  BankAt at = at0;
  int j = 0;
  int g = 0;
dec_write_pixels_words:
  for (int i = 0; i < words; ++i) {
#pragma HLS PIPELINE II = 1  // a bus word per cycle: one burst
#pragma HLS LOOP_TRIPCOUNT min = 1 max = NUM_TOKENS * DEC_CHUNK / ROW_LANES
    act_t vals[ROW_LANES];
#pragma HLS ARRAY_PARTITION variable = vals complete dim = 1  // a bus word's lanes
    const int left = n_ch - g * ROW_LANES;
    const int cnt = left < ROW_LANES ? left : ROW_LANES;
    bank_walk_phased<FROM_ROW, BANKS, ROW_LANES, ROW_LANES>(buf[first_row + j], at, cnt, vals);
    bus[first + i] = pack_i32<ROW_LANES>(vals, cnt);
    bank_advance<BANKS, ROW_LANES>(at);
    if (++g == pw) {
      g = 0;
      ++j;
      at = at0;
    }
  }
}

/// One chunk of the band's outputs (rows 0.. of `src`, row-major over the band: x, or h
/// for the first chunk the side lane stores, banked cyclic BANKS) to a chunk-planar map at
/// `base` (a map in scratch, or the stage's place in the output region): one burst per
/// band row.
template <int PORT, int BANKS>
inline void dec_store_band(word_t* bus, uint64_t base, const DecConv& cv, const ConvWindow& win,
                           int rows, int chunk, const act_t src[NUM_TOKENS][EMBED_DIM]) {
  const int c0 = chunk * DEC_CHUNK;
  const int n_ch = cv.c_out - c0 < DEC_CHUNK ? cv.c_out - c0 : DEC_CHUNK;
  const int pw = chunk_words(n_ch);
  const uint64_t plane = base + dec_plane(cv.h, cv.w, chunk);
dec_store_rows:
  for (int yr = 0; yr < rows; ++yr) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = NUM_TOKENS
    const uint64_t at = plane + (uint64_t(win.y0 + yr) * cv.w + win.x0) * pw * WORD_BYTES;
    dec_write_pixels<PORT, BANKS, EMBED_DIM>(bus, at, win.cols, n_ch, yr * win.cols, 0, src);
  }
}

/// A debug stop at a fused x2: the band's own pixels of the upsampled map, from the ring
/// to the output region (chunk-planar, c_in channels).
inline void dec_store_ring(word_t* output, uint64_t base, const DecConv& cv, const ConvWindow& win,
                           int rows, const act_t wide[NUM_TOKENS][WIDE_COLS]) {
  const int chunks = (cv.c_in + DEC_CHUNK - 1) / DEC_CHUNK;
dec_store_ring_rows:
  for (int yr = 0; yr < rows; ++yr) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = NUM_TOKENS
    const int u = win.y0 + yr - win.wy0;
    const int ring = win.rowbase[u] + win.x0 - win.wx0;
  dec_store_ring_chunks:
    for (int ch = 0; ch < chunks; ++ch) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 2
      const int c0 = ch * DEC_CHUNK;
      const int n_ch = cv.c_in - c0 < DEC_CHUNK ? cv.c_in - c0 : DEC_CHUNK;
      const int pw = chunk_words(n_ch);
      const uint64_t at = base + dec_plane(cv.h, cv.w, ch) +
                          (uint64_t(win.y0 + yr) * cv.w + win.x0) * pw * WORD_BYTES;
      dec_write_pixels<PORT_OUTPUT, WIDE_BANKS, WIDE_COLS>(output, at, win.cols, n_ch, ring,
                                                           win.colbase[u] + c0, wide);
    }
  }
}

/// A debug stop at the decoder's LayerNorm: the grid's tokens (h rows 1..) to the output
/// region, one burst.
inline void dec_store_norm(word_t* output, uint64_t base, const act_t h[NUM_TOKENS][EMBED_DIM]) {
  constexpr int WORDS = NUM_PATCHES * ROW_WORDS;
  const uint64_t first = base / WORD_BYTES;
  count_words<PORT_OUTPUT>(WORDS, true);
  int t = 1;
  int w = 0;
  BankAt at = {0, 0};  // word w's first column, 4 w, in h's banks
dec_store_norm_words:
  for (int i = 0; i < WORDS; ++i) {
#pragma HLS PIPELINE II = 1  // a bus word per cycle: one burst
    act_t vals[ROW_LANES];
#pragma HLS ARRAY_PARTITION variable = vals complete dim = 1
    bank_walk_phased<FROM_ROW, H_BANKS, ROW_LANES, ROW_LANES>(h[t], at, ROW_LANES, vals);
    output[first + i] = pack_i32<ROW_LANES>(vals, ROW_LANES);
    bank_advance<H_BANKS, ROW_LANES>(at);
    if (++w == ROW_WORDS) {
      w = 0;
      ++t;
      at.row = 0;
      at.phase = 0;
    }
  }
}

/// The band I/O a buffer set's image waits for between two of its bands (the side lane's
/// turn, lanes.h): the band it computed last, whose output chunks are on chip (the first in
/// h, the second in x: OUT_CONV_H, OUT_CONV), to its convolution's map, then the window of
/// its next band into its ring. Built by lane_step from the set's state, outside the
/// DATAFLOW region, so the side lane reads no table of its own.
struct DecIo {
  bool store;  ///< a band's outputs wait to be stored
  DecConv st;  ///< that band's convolution
  int st_y0;   ///< and its place
  int st_x0;
  DecConv ld;  ///< the next band's convolution (never conv_0: it reads the token grid)
  int ld_y0;   ///< its place
  int ld_x0;
  int ld_from;    ///< the first window row not already in the ring (DecState::loaded)
  uint64_t maps;  ///< the buffer set's pair of maps (byte offset in scratch)
};

/// The side lane's decoder turn (DecIo) on its buffer set, through the maps port: the stored
/// band's chunks from h and x, then the next band's window into the ring (the x2's source
/// rows staged in x and h, which the store has emptied).
inline void decoder_io(const DecIo& io, word_t* maps, act_t x[NUM_TOKENS][EMBED_DIM],
                       act_t h[NUM_TOKENS][EMBED_DIM], act_t wide[NUM_TOKENS][WIDE_COLS]) {
  ConvWindow win;  // registers: the table's few rows
#pragma HLS ARRAY_PARTITION variable = win.rowbase complete dim = 1
#pragma HLS ARRAY_PARTITION variable = win.colbase complete dim = 1
  int rows = 0;
  if (io.store) {
    const uint64_t map = io.maps + DEC_MAP_OFF[io.st.dst_map];
    dec_window(io.st, false, io.st_y0, io.st_x0, win, rows);
    dec_store_band<PORT_MAPS, H_BANKS>(maps, map, io.st, win, rows, 0, h);
    if (io.st.c_out > DEC_CHUNK) {  // at most two chunks (contracts.decoder checks)
      dec_store_band<PORT_MAPS, X_BANKS>(maps, map, io.st, win, rows, 1, x);
    }
  }
  dec_window(io.ld, false, io.ld_y0, io.ld_x0, win, rows);
  dec_load_window<PORT_MAPS>(maps, io.maps, io.ld, win, io.ld_from, false, x, h, wide);
}

/// The fused classifier (contracts.decoder.fusable): the last convolution's band at row y0
/// (one row, the whole map: `cv` is that convolution) left its first output chunk in h and
/// its second in x. `win` becomes the classifier's 1x1 window over the band: its first
/// DEC_CHUNK / LIN_IN channel tiles from h, the rest from the ring slot of the band's
/// first window row, which no later band reads (its next load overwrites it), where
/// dec_load_window's copy mode puts the second chunk.
inline void dec_fuse_window(const DecConv& cv, const DecConv& cls, int y0, ConvWindow& win) {
  int rows = 0;
  dec_window(cls, false, y0, 0, win, rows);
  typedef uint<8> small_t;                           // ring rows (< 256: contracts.decoder checks)
  const int k = y0 > 0 ? y0 - 1 : cv.ring_rows - 1;  // the dead ring row (one a slot)
  const int slot = int(small_t(k) % small_t(cv.ring_rows));  // div: 8-bit, once per band
  win.rowbase[0] = 0;
  win.colbase[0] = slot * cv.c_pad;
  win.h_tiles = DEC_CHUNK / LIN_IN;
}

/// The linear-unit call of chunk `chunk` of a band: its output tiles' weights (tiled
/// output tiles outermost, so a chunk's are contiguous) and bias, into x.
inline LinearCall dec_conv_call(const DecConv& cv, bool first, bool last, const ConvWindow& win,
                                int rows, int chunk) {
  LinearCall c = linear_call(first ? IN_GRID : IN_RING, last ? OUT_LOGITS : OUT_CONV);
  const int c0 = chunk * DEC_CHUNK;
  c.k = cv.k_tiles * LIN_IN;
  c.o = cv.c_out - c0 < DEC_CHUNK ? cv.c_out - c0 : DEC_CHUNK;
  c.rows = rows * win.cols;
  constexpr uint64_t TILE_BYTES = uint64_t(LIN_IN) * LIN_OUT * 2;
  c.w_off = cv.w_off + uint64_t(chunk) * (DEC_CHUNK / LIN_OUT) * cv.k_tiles * TILE_BYTES;
  c.b_off = cv.b_off + uint64_t(c0) * 2;
  c.win = win;
  return c;
}

}  // namespace edgemoe

#endif  // EDGEMOE_DECODER_H_
