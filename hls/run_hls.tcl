# Vitis HLS, classic Tcl flow: C-sim -> C-synthesis -> C/RTL co-sim -> IP export.
#
#   vitis_hls -f hls/run_hls.tcl                  (from any folder; `make hls` does this)
#   vitis-run --mode hls --tcl hls/run_hls.tcl    (Vitis 2024.2+, where vitis_hls is gone)
#
# Settings come from the environment (all optional):
#   EDGEMOE_HLS_STEPS       steps to run, in this order: "csim csynth cosim export"
#                           (default all four; cosim is the slow one - drop it to skip)
#   EDGEMOE_HLS_BUILD       build folder (default <repo>/build/hls); the project is
#                           <build>/edgemoe_top, reports in <build>/edgemoe_top/solution1/syn/report
#   EDGEMOE_HLS_CLOCK_NS    clock period in ns (default 3.333, 300 MHz)
#   EDGEMOE_HLS_PART        FPGA part (default xczu7ev-ffvc1156-2-e, ZCU104)
#   EDGEMOE_TB_ARGV         arguments for the testbench's main() in csim and cosim
#   EDGEMOE_PARAMS_HEADER   another generated parameter header (path); default is
#                           hls/include/edgemoe/params_default.h through config.h
#   EDGEMOE_COSIM_IMAGES    images the co-simulation testbench runs (default 1): sizes
#                           the m_axi ports' co-simulation depth (edgemoe/ddr.h)
#
# Without csynth in the steps the existing solution is reused (cosim/export only).

set here [file dirname [file normalize [info script]]]
set repo [file dirname $here]

proc env_or {name default} {
    if {[info exists ::env($name)] && [string trim $::env($name)] ne ""} {
        return [string trim $::env($name)]
    }
    return $default
}

set top        edgemoe_top
set part       [env_or EDGEMOE_HLS_PART xczu7ev-ffvc1156-2-e]
set clock_ns   [env_or EDGEMOE_HLS_CLOCK_NS 3.333]
set build      [file normalize [env_or EDGEMOE_HLS_BUILD [file join $repo build hls]]]
set steps      [env_or EDGEMOE_HLS_STEPS "csim csynth cosim export"]
set tb_argv    [env_or EDGEMOE_TB_ARGV ""]
# m_axi words are params::AXI_BITS (128) wide and every buffer starts on a word
# (64-byte tensor alignment, docs/design.md), so widen to and align on one word.
set axi_bits   128

foreach step $steps {
    if {$step ni {csim csynth cosim export}} {
        puts stderr "run_hls.tcl: unknown step '$step' (use csim csynth cosim export)"
        exit 2
    }
}

# Same flags for the kernel and the testbench; EDGEMOE_AP_TYPES makes C-sim use the
# ap_int types that synthesis uses (hls/include/edgemoe/fixed.h).
set cflags "-std=c++14 -I[file join $here include] -DEDGEMOE_AP_TYPES"
set params [env_or EDGEMOE_PARAMS_HEADER ""]
if {$params ne ""} {
    append cflags " -DEDGEMOE_PARAMS_HEADER=\\\"[file normalize $params]\\\""
}
set cosim_images [env_or EDGEMOE_COSIM_IMAGES 1]
append cflags " -DEDGEMOE_COSIM_IMAGES=$cosim_images"
set tb_cflags "$cflags -I[file join $here tb]"

file mkdir $build
set reset [expr {"csynth" in $steps ? "-reset" : ""}]
open_project {*}$reset [file join $build $top]
set_top $top
foreach f [lsort [glob -nocomplain -directory [file join $here src] *.cpp]] {
    add_files $f -cflags $cflags
}
# tb_top.cpp is the top's testbench; tb_units.cpp is a separate program (own main()).
add_files -tb [file join $here tb tb_top.cpp] -cflags $tb_cflags

open_solution {*}$reset solution1 -flow_target vivado
set_part $part
create_clock -period $clock_ns -name default
# Pointers: one m_axi adapter per bundle, 64-bit addresses taken from s_axilite
# registers (docs/design.md); DDR on the ZU+ PS is ~60 cycles away at 300 MHz.
config_interface -m_axi_offset slave -m_axi_addr64 -m_axi_latency 64 \
    -m_axi_max_widen_bitwidth $axi_bits -m_axi_alignment_byte_size [expr {$axi_bits / 8}]

# A failing step ends the run with a non-zero exit status, so `make hls` stops.
proc run_step {name script} {
    puts "run_hls.tcl: === $name ==="
    if {[catch {uplevel #0 $script} msg]} {
        puts stderr "run_hls.tcl: $name failed: $msg"
        exit 1
    }
}

set argv_opt [expr {$tb_argv eq "" ? {} : [list -argv $tb_argv]}]
if {"csim" in $steps} {
    run_step csim [list csim_design -O {*}$argv_opt]
}
if {"csynth" in $steps} {
    run_step csynth [list csynth_design]
}
if {"cosim" in $steps} {
    run_step cosim [list cosim_design -O -rtl verilog {*}$argv_opt]
}
# The IP's VLNV is the one the host binds to (edgemoe.host.contracts.kernel.VLNV).
if {"export" in $steps} {
    run_step export [list export_design -format ip_catalog -rtl verilog \
        -vendor xilinx.com -library hls -version 1.0 -ipname $top]
}
puts "run_hls.tcl: done ($steps) in [file join $build $top]"
exit
