// C entry points of the C-sim shared library (edgemoe.sim.csim, via ctypes).
//
// Not synthesised: it only calls the top function on host memory and hands back
// the per-bundle DDR byte counters.
#include <string.h>

#include "edgemoe/edgemoe.h"

#define EDGEMOE_API __attribute__((visibility("default")))

extern "C" {

/// Bytes of one m_axi word as the kernel sees it (must equal AXI_BITS / 8).
EDGEMOE_API int edgemoe_csim_word_bytes() {
  return static_cast<int>(sizeof(edgemoe::word_t));
}

/// 1 when built with exact-width ap_int types (the synthesis arithmetic), else 0.
EDGEMOE_API int edgemoe_csim_ap_types() {
  return EDGEMOE_USE_AP_TYPES;
}

/// m_axi bundles the kernel counts DDR bytes on (edgemoe::NUM_PORTS), in pointer order.
EDGEMOE_API int edgemoe_csim_ports() {
  return edgemoe::NUM_PORTS;
}

/// Run the kernel; `scratch` is also its `maps` argument (the host hands the kernel the
/// scratch buffer's address twice: edgemoe.host.contracts.kernel). counters receives
/// 2 * NUM_PORTS values: bytes read per bundle (weights, images, output, scratch, maps),
/// then bytes written per bundle.
EDGEMOE_API uint32_t edgemoe_csim_run(const void* bundle, const void* images, void* output,
                                      void* scratch, uint32_t task, uint32_t num_images,
                                      uint32_t debug_stop, uint64_t* counters) {
  edgemoe::DdrCounters& c = edgemoe::ddr_counters();
  memset(&c, 0, sizeof(c));
  const uint32_t status = edgemoe_top(
      static_cast<const edgemoe::word_t*>(bundle), static_cast<const edgemoe::word_t*>(images),
      static_cast<edgemoe::word_t*>(output), static_cast<edgemoe::word_t*>(scratch), task,
      num_images, debug_stop, static_cast<edgemoe::word_t*>(scratch));
  for (int p = 0; p < edgemoe::NUM_PORTS; ++p) {
    counters[p] = c.read[p];
    counters[edgemoe::NUM_PORTS + p] = c.written[p];
  }
  return status;
}

}  // extern "C"
