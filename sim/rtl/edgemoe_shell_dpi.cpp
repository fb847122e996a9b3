// DPI-C side of the transaction-level shell (sim/rtl/edgemoe_top_shell.sv).
//
// Not synthesised. It owns the shell's copy of each m_axi buffer (filled by the
// shell's AXI read bursts), runs the kernel's C-sim on them, and tells the shell
// which bytes the kernel wrote so that exactly those go back over AXI. Built into
// one shared library with the kernel sources (edgemoe.sim.rtl.runner.build_shell_library).
//
// Buffer indices follow the m_axi pointers of edgemoe.host.contracts.kernel.ARGS:
// 0 weight bundle, 1 images, 2 output, 3 scratch, 4 maps (= edgemoe::Port). maps is the
// scratch buffer on a master of its own: the kernel gets the scratch buffer for both, so
// what it writes through either goes back through scratch's master to that one buffer.
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <utility>
#include <vector>

#include "edgemoe/edgemoe.h"

extern "C" uint32_t edgemoe_csim_run(const void* bundle, const void* images, void* output,
                                     void* scratch, uint32_t task, uint32_t num_images,
                                     uint32_t debug_stop, uint64_t* counters);

namespace {

using edgemoe::NUM_PORTS;
using edgemoe::WORD_BYTES;

/// The shell's device memory and what the last run wrote.
struct ShellMemory {
  std::vector<uint8_t> buf[NUM_PORTS];
  /// Written ranges per buffer: (first byte, bytes), whole bus words.
  std::vector<std::pair<uint64_t, uint64_t>> written[NUM_PORTS];
  /// Per-byte strobes of the written words (1: the kernel wrote this byte).
  std::vector<uint8_t> strobe[NUM_PORTS];
  /// Each buffer's address, as the host programmed it.
  uint64_t base[NUM_PORTS];
  uint64_t counters[2 * NUM_PORTS];
};

ShellMemory& memory() {
  static ShellMemory m;
  return m;
}

uint64_t round_up(uint64_t n, uint64_t to) {
  return (n + to - 1) / to * to;
}

bool valid_image_count(uint32_t n) {
  return n >= 1 && n <= edgemoe::MAX_IMAGES;
}

/// Grow a buffer to at least `bytes` (whole words), zero-filled.
void reserve(std::vector<uint8_t>& v, uint64_t bytes) {
  bytes = round_up(bytes, WORD_BYTES);
  if (v.size() < bytes) {
    v.resize(bytes, 0);
  }
}

uint32_t read_u32(const std::vector<uint8_t>& v, size_t at) {
  uint32_t x = 0;
  if (v.size() >= at + 4) {
    memcpy(&x, v.data() + at, 4);
  }
  return x;
}

/// Bytes of the output buffer a run may touch: per image the largest output region, a
/// full-width debug stage or a decoding call's tokens and stage (ddr.h COSIM_OUT_BYTES).
uint64_t output_bytes(uint32_t n) {
  return uint64_t(n) * edgemoe::COSIM_OUT_BYTES;
}

/// Bytes of scratch a run may touch: the slots an expert-major run parks its group in, or
/// the task decoder's two maps if larger (edgemoe.host.contracts.scratch.scratch_bytes).
uint64_t scratch_bytes(uint32_t n) {
  const uint64_t slots = uint64_t(n < uint32_t(edgemoe::MAX_GROUP) ? n : edgemoe::MAX_GROUP) *
                         edgemoe::SCRATCH_SLOT;
  return slots > edgemoe::DEC_SCRATCH_BYTES ? slots : edgemoe::DEC_SCRATCH_BYTES;
}

}  // namespace

// The library is built with hidden visibility; these are what Verilator links against.
#pragma GCC visibility push(default)
extern "C" {

/// ap_start: forget the previous run's buffers.
void edgemoe_shell_begin() {
  ShellMemory& m = memory();
  for (int p = 0; p < NUM_PORTS; ++p) {
    m.buf[p].clear();
    m.written[p].clear();
    m.strobe[p].clear();
  }
}

/// ap_start: the address of a buffer (maps must repeat scratch's).
void edgemoe_shell_base(int buf, long long addr) {
  memory().base[buf] = uint64_t(addr);
}

/// Bytes to fetch first: the bundle's header (its length is in it); nothing elsewhere.
long long edgemoe_shell_head_bytes(int buf) {
  return buf == edgemoe::PORT_WEIGHTS ? edgemoe::HEADER_BYTES : 0;
}

/// Bytes of the buffer the kernel may read. The bundle: the length its header declares
/// (clamped to what this kernel build reads), or just the header when its magic is wrong.
long long edgemoe_shell_fetch_bytes(int buf, int num_images) {
  const ShellMemory& m = memory();
  switch (buf) {
    case edgemoe::PORT_WEIGHTS: {
      const std::vector<uint8_t>& b = m.buf[buf];
      if (read_u32(b, 0) != edgemoe::BUNDLE_MAGIC) {
        return edgemoe::HEADER_BYTES;
      }
      uint64_t payload = 0;
      if (b.size() >= 24) {
        memcpy(&payload, b.data() + 16, 8);
      }
      uint64_t total = uint64_t(read_u32(b, 12)) + payload;
      if (total > edgemoe::BUNDLE_BYTES) {
        total = edgemoe::BUNDLE_BYTES;
      }
      return static_cast<long long>(round_up(total, WORD_BYTES));
    }
    case edgemoe::PORT_IMAGES:
      return valid_image_count(uint32_t(num_images))
                 ? static_cast<long long>(
                       round_up(uint64_t(num_images) * edgemoe::NUM_PATCHES * edgemoe::PATCH_DIM,
                                WORD_BYTES))
                 : 0;
    default:
      return 0;  // output and scratch are written, not read; maps is scratch
  }
}

/// One beat of an AXI read burst into the buffer (word index from the buffer start).
void edgemoe_shell_put(int buf, long long word, const uint32_t* data) {
  std::vector<uint8_t>& b = memory().buf[buf];
  reserve(b, uint64_t(word + 1) * WORD_BYTES);
  memcpy(b.data() + uint64_t(word) * WORD_BYTES, data, WORD_BYTES);
}

/// Run the kernel on the fetched buffers; returns its status code.
///
/// Scratch starts empty: the kernel reads back only what it parked there itself.
/// The kernel runs twice, over outputs pre-filled with 0x00 and with 0xFF: a byte
/// it wrote reads the same after both runs, a byte it left alone does not. Those
/// bytes (and nothing else) are written back, as the real kernel would. A maps address
/// other than scratch's runs nothing and returns -1 (no kernel status), with a line on stderr.
int edgemoe_shell_run(int task, int num_images, int debug_stop) {
  ShellMemory& m = memory();
  if (m.base[edgemoe::PORT_MAPS] != m.base[edgemoe::PORT_SCRATCH]) {
    fprintf(stderr, "edgemoe shell: maps at 0x%llx is not the scratch buffer's 0x%llx\n",
            (unsigned long long)m.base[edgemoe::PORT_MAPS],
            (unsigned long long)m.base[edgemoe::PORT_SCRATCH]);
    return -1;
  }
  const uint32_t n = uint32_t(num_images);
  reserve(m.buf[edgemoe::PORT_WEIGHTS], edgemoe::BUNDLE_BYTES);
  reserve(m.buf[edgemoe::PORT_IMAGES],
          valid_image_count(n) ? uint64_t(n) * edgemoe::NUM_PATCHES * edgemoe::PATCH_DIM : 1);
  const uint64_t out_size[NUM_PORTS] = {0, 0, valid_image_count(n) ? output_bytes(n) : 1,
                                        valid_image_count(n) ? scratch_bytes(n) : 64,
                                        0};  // maps: the kernel writes them into scratch
  std::vector<uint8_t> fill[2][NUM_PORTS];
  uint32_t status[2];
  for (int pass = 0; pass < 2; ++pass) {
    for (int p = edgemoe::PORT_OUTPUT; p < NUM_PORTS; ++p) {
      fill[pass][p].assign(round_up(out_size[p], WORD_BYTES), pass ? 0xFF : 0x00);
    }
    status[pass] = edgemoe_csim_run(
        m.buf[edgemoe::PORT_WEIGHTS].data(), m.buf[edgemoe::PORT_IMAGES].data(),
        fill[pass][edgemoe::PORT_OUTPUT].data(), fill[pass][edgemoe::PORT_SCRATCH].data(),
        uint32_t(task), n, uint32_t(debug_stop), m.counters);
  }
  for (int p = edgemoe::PORT_OUTPUT; p < NUM_PORTS; ++p) {
    const std::vector<uint8_t>& a = fill[0][p];
    const std::vector<uint8_t>& b = fill[1][p];
    m.buf[p] = a;
    m.strobe[p].assign(a.size(), 0);
    m.written[p].clear();
    for (uint64_t w = 0; w < a.size() / WORD_BYTES; ++w) {
      bool any = false;
      for (int i = 0; i < WORD_BYTES; ++i) {
        const uint64_t at = w * WORD_BYTES + i;
        m.strobe[p][at] = a[at] == b[at];
        any = any || m.strobe[p][at];
      }
      if (!any) {
        continue;
      }
      if (!m.written[p].empty() &&
          m.written[p].back().first + m.written[p].back().second == w * WORD_BYTES) {
        m.written[p].back().second += WORD_BYTES;
      } else {
        m.written[p].push_back({w * WORD_BYTES, uint64_t(WORD_BYTES)});
      }
    }
  }
  return status[0] == status[1] ? int(status[0]) : -1;
}

/// The index-th written range of a buffer; returns 0 when there is none.
int edgemoe_shell_range(int buf, int index, long long* first, long long* bytes) {
  const std::vector<std::pair<uint64_t, uint64_t>>& r = memory().written[buf];
  if (index < 0 || size_t(index) >= r.size()) {
    return 0;
  }
  *first = static_cast<long long>(r[index].first);
  *bytes = static_cast<long long>(r[index].second);
  return 1;
}

/// One beat of an AXI write burst: the word's data, and its byte strobes as the return value.
int edgemoe_shell_get(int buf, long long word, uint32_t* data) {
  const ShellMemory& m = memory();
  const uint64_t at = uint64_t(word) * WORD_BYTES;
  memset(data, 0, WORD_BYTES);
  int strb = 0;
  if (at + WORD_BYTES <= m.buf[buf].size()) {
    memcpy(data, m.buf[buf].data() + at, WORD_BYTES);
    const bool tracked = at + WORD_BYTES <= m.strobe[buf].size();
    for (int i = 0; i < WORD_BYTES; ++i) {
      strb |= !tracked || m.strobe[buf][at + i] ? 1 << i : 0;
    }
  }
  return strb;
}

/// The kernel's own DDR traffic in the last run: bytes read per bundle (0..NUM_PORTS - 1),
/// then written.
long long edgemoe_shell_kernel_bytes(int index) {
  return static_cast<long long>(memory().counters[index]);
}

}  // extern "C"
#pragma GCC visibility pop
