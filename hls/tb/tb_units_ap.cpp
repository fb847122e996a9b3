// The unit testbench (tb_units.cpp) in the synthesis arithmetic: every sint<W> / uint<W> an
// exact-width ap_int, so a width narrower than its value would wrap and fail the sweeps
// (tests/hls/test_hls_units_ap.py). Same usage as tb_units.
#define EDGEMOE_AP_TYPES 1
#include "tb_units.cpp"  // NOLINT(build/include): the same testbench, other arithmetic
