// DDR access over the m_axi bundles: burst reads and writes of packed words, and
// (C-sim only) the byte counters per bundle that edgemoe.sim.csim returns.
#ifndef EDGEMOE_DDR_H_
#define EDGEMOE_DDR_H_

#include "edgemoe/banked.h"
#include "edgemoe/config.h"

#ifndef __SYNTHESIS__
#include <string.h>
#endif

namespace edgemoe {

/// m_axi bundles, in the order of the top function's pointer arguments.
enum Port {
  PORT_WEIGHTS = 0,
  PORT_IMAGES = 1,
  PORT_OUTPUT = 2,
  PORT_SCRATCH = 3,
  PORT_MAPS = 4,
  NUM_PORTS = 5
};

constexpr int WORD_BYTES = AXI_BITS / 8;

// Words of each m_axi port that a co-simulation's testbench hands the kernel, for the
// INTERFACE pragmas' `depth` (UG1399 "pragma HLS interface": without it co-simulation
// assumes one element behind the pointer). The testbench (hls/tb/tb_top.cpp) allocates
// at least this much; EDGEMOE_COSIM_IMAGES is the number of images it runs (make hls
// passes HLS_TB_IMAGES).
#ifndef EDGEMOE_COSIM_IMAGES
#define EDGEMOE_COSIM_IMAGES 1
#endif
constexpr int COSIM_IMAGES = EDGEMOE_COSIM_IMAGES;
constexpr int COSIM_GROUP = COSIM_IMAGES < MAX_GROUP ? COSIM_IMAGES : MAX_GROUP;
constexpr int DEPTH_WEIGHTS = int((BUNDLE_BYTES + WORD_BYTES - 1) / WORD_BYTES);
constexpr int DEPTH_IMAGES = COSIM_IMAGES * NUM_PATCHES * PATCH_DIM / WORD_BYTES;
constexpr uint64_t COSIM_OUT_BYTES =
    uint64_t(NUM_TOKENS) * MAX_STAGE_WIDTH * 4 > DEC_OUTPUT_WORDS * 4
        ? uint64_t(NUM_TOKENS) * MAX_STAGE_WIDTH * 4
        : DEC_OUTPUT_WORDS * 4;  // a decoding call's region
constexpr int DEPTH_OUTPUT = int(COSIM_IMAGES * COSIM_OUT_BYTES / WORD_BYTES);
constexpr uint64_t COSIM_SCRATCH_BYTES = COSIM_GROUP * SCRATCH_SLOT > DEC_SCRATCH_BYTES
                                             ? COSIM_GROUP * SCRATCH_SLOT
                                             : DEC_SCRATCH_BYTES;  // or the decoder's maps
constexpr int DEPTH_SCRATCH = int(COSIM_SCRATCH_BYTES / WORD_BYTES);

// The m_axi adapters' bursts (UG1399 "Controlling AXI4 Burst Behavior"): outstanding
// requests x burst length words cover the ~64-cycle DDR latency (4 x 64 = 256 words in
// flight) while the adapter's FIFO (outstanding x length x word = 4 KB) fits one BRAM36
// per direction; a read-only port keeps its write side at the minimum, and the other way.
constexpr int AXI_BURST = 64;
constexpr int AXI_OUTSTANDING = 4;

#ifndef __SYNTHESIS__
/// Bytes that crossed each bundle since the last reset (C-sim instrumentation).
struct DdrCounters {
  uint64_t read[NUM_PORTS];
  uint64_t written[NUM_PORTS];
};

inline DdrCounters& ddr_counters() {
  static DdrCounters counters = {{0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}};
  return counters;
}
#endif

/// Count words moved on a port (no hardware).
template <int PORT>
inline void count_words(uint64_t words, bool write) {
#ifndef __SYNTHESIS__
  if (write) {
    ddr_counters().written[PORT] += words * WORD_BYTES;
  } else {
    ddr_counters().read[PORT] += words * WORD_BYTES;
  }
#else
  (void)words;
  (void)write;
#endif
}

/// Words of a burst of n elements of BYTES bytes, counted on PORT (C-sim).
template <int PORT, int BYTES>
inline int burst_words(int n, bool write) {
  constexpr int PER_WORD = WORD_BYTES / BYTES;
  const int words = (n + PER_WORD - 1) / PER_WORD;
  count_words<PORT>(words, write);
  return words;
}

#if !EDGEMOE_USE_AP_TYPES
/// C-sim fast path: element i of little-endian BYTES-byte elements from `base` (the bus
/// words are little-endian limbs, checked in the tests), sign-extended when SIGNED.
template <int BYTES, bool SIGNED, typename T>
inline T le_element(const unsigned char* base, int i) {
  if (BYTES == 1) {
    return SIGNED ? T(static_cast<int8_t>(base[i])) : T(base[i]);
  } else if (BYTES == 2) {
    uint16_t v;
    memcpy(&v, base + 2 * i, 2);
    return SIGNED ? T(static_cast<int16_t>(v)) : T(v);
  }
  uint32_t v;
  memcpy(&v, base + 4 * i, 4);
  return SIGNED ? T(static_cast<int32_t>(v)) : T(v);
}
#else
/// Lane l of a bus word: BYTES bytes, sign-extended when SIGNED.
template <int BYTES, bool SIGNED, typename T>
inline T word_lane(const word_t& word, int l) {
  const ap_uint<8 * BYTES> bits = word.range(8 * BYTES * l + 8 * BYTES - 1, 8 * BYTES * l);
  return SIGNED ? T(ap_int<8 * BYTES>(bits)) : T(bits);
}
#endif

/// Read n little-endian elements of BYTES bytes each (1, 2 or 4), sign-extended when
/// SIGNED, starting at a word-aligned byte offset, in one burst.
/// \tparam PORT bundle, for the C-sim counters
/// \tparam BYTES element size
/// \tparam SIGNED sign-extend (true) or zero-extend
/// \param bus m_axi pointer
/// \param byte_off byte offset, a multiple of WORD_BYTES
/// \param n elements to read
/// \param dst destination, n elements
template <int PORT, int BYTES, bool SIGNED, typename T>
void ddr_read(const word_t* bus, uint64_t byte_off, int n, T* dst) {
#pragma HLS INLINE  // dst is often a run-time sub-array (F14): resolved in the caller
  const uint64_t first = byte_off / WORD_BYTES;
  const int words = burst_words<PORT, BYTES>(n, false);
#if !EDGEMOE_USE_AP_TYPES
  (void)words;  // counted; the fast path goes element by element
  const unsigned char* base = reinterpret_cast<const unsigned char*>(bus + first);
ddr_read_fast:
  for (int e = 0; e < n; ++e) {
    dst[e] = le_element<BYTES, SIGNED, T>(base, e);
  }
#else
  constexpr int PER_WORD = WORD_BYTES / BYTES;
ddr_read_words:
  for (int w = 0; w < words; ++w) {
#pragma HLS PIPELINE II = 1  // one bus word per cycle: a single burst
    const word_t word = bus[first + w];
  ddr_read_lanes:
    for (int l = 0; l < PER_WORD; ++l) {
      // every destination is partitioned cyclic PER_WORD (or finer, or complete) by its
      // owner, so a word's lanes meet distinct banks (F15)
      const int e = w * PER_WORD + l;  // bank: e % PER_WORD = l, a constant
      if (e < n) {
        dst[e] = word_lane<BYTES, SIGNED, T>(word, l);
      }
    }
  }
#endif
}

/// Unpack bus word `word` (an index, not a byte offset) into PER_WORD elements of BYTES
/// bytes each, sign-extended when SIGNED. No counting: the caller counts its burst.
template <int BYTES, bool SIGNED, int PER_WORD, typename T>
inline void unpack_word(const word_t* bus, uint64_t word, T dst[PER_WORD]) {
  static_assert(PER_WORD * BYTES == WORD_BYTES, "a whole bus word");
#if !EDGEMOE_USE_AP_TYPES
  const unsigned char* base = reinterpret_cast<const unsigned char*>(bus + word);
unpack_fast:
  for (int l = 0; l < PER_WORD; ++l) {
    dst[l] = le_element<BYTES, SIGNED, T>(base, l);
  }
#else
  const word_t bits = bus[word];
unpack_lanes:
  for (int l = 0; l < PER_WORD; ++l) {
    dst[l] = word_lane<BYTES, SIGNED, T>(bits, l);
  }
#endif
}

/// Pack vals[at + l], l < PER_WORD, 32-bit raw values (two's complement), into one bus
/// word; lanes from n on are 0.
template <int PER_WORD, typename T>
inline word_t pack_i32(const T* vals, int at, int n) {
  word_t word = 0;
pack_i32_lanes:
  for (int l = 0; l < PER_WORD; ++l) {
    const int e = at + l;  // bank: vals unbanked (ports bound II), or regs with at = 0
    const ap_int<32> v = (e < n) ? ap_int<32>(wide_t(vals[e])) : ap_int<32>(0);
    word.range(32 * l + 31, 32 * l) = ap_uint<32>(v);
  }
  return word;
}

/// Pack PER_WORD 32-bit raw values (registers) into one bus word (lanes past n are 0).
template <int PER_WORD, typename T>
inline word_t pack_i32(const T vals[PER_WORD], int n) {
  return pack_i32<PER_WORD>(vals, 0, n);
}

/// Write n 32-bit words of raw values (two's complement) at a word-aligned offset.
template <int PORT, typename T>
void ddr_write_i32(word_t* bus, uint64_t byte_off, int n, const T* src) {
#pragma HLS INLINE  // src is often a run-time sub-array (F14): resolved in the caller
  constexpr int PER_WORD = WORD_BYTES / 4;
  const uint64_t first = byte_off / WORD_BYTES;
  const int words = burst_words<PORT, 4>(n, true);
ddr_write_words:
  for (int w = 0; w < words; ++w) {
#pragma HLS PIPELINE II = 1  // one bus word per cycle: a single burst
    bus[first + w] = pack_i32<PER_WORD>(src, w * PER_WORD, n);
  }
}

/// ddr_read into a row banked cyclic BANKS (dim of dst): one bus word per cycle, its
/// elements stored through the bank rotate network, so each bank's index is a constant
/// whatever the word's first column (banked.h).
template <int PORT, int BYTES, bool SIGNED, int BANKS, typename T>
void ddr_read_banked(const word_t* bus, uint64_t byte_off, int n, T* dst) {
#pragma HLS INLINE  // dst is often a run-time row of a banked buffer (F14)
  constexpr int PER_WORD = WORD_BYTES / BYTES;
  const uint64_t first = byte_off / WORD_BYTES;
  const int words = burst_words<PORT, BYTES>(n, false);
ddr_read_banked_words:
  for (int w = 0; w < words; ++w) {
#pragma HLS PIPELINE II = 1  // one bus word per cycle: a single burst
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 64
    T vals[PER_WORD];
#pragma HLS ARRAY_PARTITION variable = vals complete dim = 1
    unpack_word<BYTES, SIGNED, PER_WORD>(bus, first + w, vals);
    const int left = n - w * PER_WORD;
    store_lanes<BANKS, PER_WORD, PER_WORD>(dst, w * PER_WORD, left < PER_WORD ? left : PER_WORD,
                                           vals);
  }
}

/// ddr_write_i32 from a row banked cyclic BANKS: each bus word's elements come through
/// the bank rotate network (banked.h).
template <int PORT, int BANKS, typename T>
void ddr_write_banked(word_t* bus, uint64_t byte_off, int n, const T* src) {
#pragma HLS INLINE  // src is often a run-time row of a banked buffer (F14)
  constexpr int PER_WORD = WORD_BYTES / 4;
  const uint64_t first = byte_off / WORD_BYTES;
  const int words = burst_words<PORT, 4>(n, true);
ddr_write_banked_words:
  for (int w = 0; w < words; ++w) {
#pragma HLS PIPELINE II = 1  // one bus word per cycle: a single burst
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 64
    T vals[PER_WORD];
#pragma HLS ARRAY_PARTITION variable = vals complete dim = 1
    const int left = n - w * PER_WORD;
    const int cnt = left < PER_WORD ? left : PER_WORD;
    load_lanes<BANKS, PER_WORD, PER_WORD>(src, w * PER_WORD, cnt, vals);
    bus[first + w] = pack_i32<PER_WORD>(vals, cnt);
  }
}

/// ddr_read_banked over `rows` consecutive rows of COLS elements each, stored contiguously
/// from byte_off (row r at byte_off + r * COLS * BYTES) into dst[r] (banked cyclic BANKS on
/// its columns): ONE pipelined loop over every word of every row, so the whole block is
/// one burst and the pipeline fills once, not once per row (F13). The row and the word
/// in it are counters (a division by the words per row would be a divider).
template <int PORT, int BYTES, bool SIGNED, int BANKS, int COLS, int STRIDE, typename T>
void ddr_read_rows_banked(const word_t* bus, uint64_t byte_off, int rows, T (*dst)[STRIDE]) {
#pragma HLS INLINE  // dst is a buffer of the caller's (F14)
  static_assert((COLS * BYTES) % WORD_BYTES == 0, "rows are whole bus words");
  constexpr int PER_WORD = WORD_BYTES / BYTES;
  constexpr int WPR = COLS / PER_WORD;  // words per row
  const uint64_t first = byte_off / WORD_BYTES;
  const int words = rows * WPR;
  count_words<PORT>(words, false);
  int r = 0;
  int w = 0;
ddr_read_rows_words:
  for (int i = 0; i < words; ++i) {
#pragma HLS PIPELINE II = 1  // one bus word per cycle: one burst for the whole block
#pragma HLS LOOP_TRIPCOUNT min = WPR max = NUM_TOKENS * WPR
    T vals[PER_WORD];
#pragma HLS ARRAY_PARTITION variable = vals complete dim = 1  // a bus word's lanes
    unpack_word<BYTES, SIGNED, PER_WORD>(bus, first + i, vals);
    store_lanes<BANKS, PER_WORD, PER_WORD>(dst[r], w * PER_WORD, PER_WORD, vals);
    if (++w == WPR) {
      w = 0;
      ++r;
    }
  }
}

/// ddr_write_banked over `rows` consecutive rows of COLS 32-bit values from src[r] (banked
/// cyclic BANKS on its columns) to one contiguous region: one pipelined loop, one burst (F13).
template <int PORT, int BANKS, int COLS, int STRIDE, typename T>
void ddr_write_rows_banked(word_t* bus, uint64_t byte_off, int rows, const T (*src)[STRIDE]) {
#pragma HLS INLINE  // src is a buffer of the caller's (F14)
  constexpr int PER_WORD = WORD_BYTES / 4;
  static_assert(COLS % PER_WORD == 0, "rows are whole bus words");
  constexpr int WPR = COLS / PER_WORD;
  const uint64_t first = byte_off / WORD_BYTES;
  const int words = rows * WPR;
  count_words<PORT>(words, true);
  int r = 0;
  int w = 0;
ddr_write_rows_words:
  for (int i = 0; i < words; ++i) {
#pragma HLS PIPELINE II = 1  // one bus word per cycle: one burst for the whole block
#pragma HLS LOOP_TRIPCOUNT min = WPR max = NUM_TOKENS * WPR
    T vals[PER_WORD];
#pragma HLS ARRAY_PARTITION variable = vals complete dim = 1  // a bus word's lanes
    load_lanes<BANKS, PER_WORD, PER_WORD>(src[r], w * PER_WORD, PER_WORD, vals);
    bus[first + i] = pack_i32<PER_WORD>(vals, PER_WORD);
    if (++w == WPR) {
      w = 0;
      ++r;
    }
  }
}

}  // namespace edgemoe

#endif  // EDGEMOE_DDR_H_
