# Vivado batch flow: the HLS IP -> a ZCU104 block design -> edgemoe.bit + edgemoe.hwh.
#
#   vivado -mode batch -source scripts/vivado/build_overlay.tcl     (`make bitstream` does this)
#
# Settings come from the environment:
#   EDGEMOE_IP_REPO        folder with the exported IP's component.xml (required;
#                          `make hls` leaves it in build/hls/edgemoe_top/solution1/impl/ip)
#   EDGEMOE_VIVADO_BUILD   project folder (default ./vivado)
#   EDGEMOE_OVERLAY_DIR    where edgemoe.bit and edgemoe.hwh land, side by side (default ./overlay)
#   EDGEMOE_PL_MHZ         PL clock, MHz (default 300)
#   EDGEMOE_JOBS           parallel implementation jobs (default 4)
#   EDGEMOE_IMPL_STRATEGY  implementation strategy (default Performance_ExplorePostRoutePhysOpt)
#   EDGEMOE_MAX_UTIL       highest DSP / BRAM / URAM / LUT use after synthesis, percent
#                          (default 85): checked before placement starts
#
# Block design: Zynq UltraScale+ PS with the ZCU104 board preset; the kernel's
# s_axi_control on M_AXI_HPM0_FPD; each m_axi bundle through its own SmartConnect
# to its own HP port, but gmem_maps, which shares gmem_scratch's (below); one PL clock
# for everything. The board part is looked up in the installed board files
# (get_board_parts -latest_file_version, UG835), the PL clock the PS really makes
# (IOPLL / integer divisors) is read back and printed, synthesis runs first and its
# utilisation is checked before placement, then implementation with a performance
# strategy. Exits non-zero when the board files are missing, a run fails,
# utilisation is over the limit or timing is missed (WNS or WHS below zero).

proc env_or {name default} {
    if {[info exists ::env($name)] && [string trim $::env($name)] ne ""} {
        return [string trim $::env($name)]
    }
    return $default
}

proc fail {msg} {
    puts stderr "build_overlay.tcl: $msg"
    exit 1
}

set part       xczu7ev-ffvc1156-2-e
set kernel_vlnv xilinx.com:hls:edgemoe_top:1.0
set design     edgemoe
set ip_repo    [env_or EDGEMOE_IP_REPO ""]
set build      [file normalize [env_or EDGEMOE_VIVADO_BUILD vivado]]
set out        [file normalize [env_or EDGEMOE_OVERLAY_DIR overlay]]
set pl_mhz     [env_or EDGEMOE_PL_MHZ 300]
set jobs       [env_or EDGEMOE_JOBS 4]
set strategy   [env_or EDGEMOE_IMPL_STRATEGY Performance_ExplorePostRoutePhysOpt]
set max_util   [env_or EDGEMOE_MAX_UTIL 85]
# The kernel's m_axi bundles with an HP port of their own, in the order of
# edgemoe.host.contracts.kernel.ARGS, and the HP port each one gets (S_AXI_HP<n>_FPD = the
# PS's S_AXI_GP<n+2>).
set bundles    {gmem_weights gmem_images gmem_output gmem_scratch}
set hp_ports   {0 1 2 3}
# Bundles on another one's SmartConnect (a further slave interface) and HP port: guest ->
# host. gmem_maps (the task decoder's feature maps) addresses the scratch buffer again, so
# it goes where gmem_scratch goes; the two take turns on that port (the SmartConnect
# arbitrates where they overlap).
set shared     [dict create gmem_maps gmem_scratch]

if {$ip_repo eq "" || ![file exists [file join $ip_repo component.xml]]} {
    fail "no exported IP in '$ip_repo' (set EDGEMOE_IP_REPO; run `make hls` first)"
}

# ---- project ----
create_project -force $design $build -part $part
# The newest installed ZCU104 board files (a fixed version string fails where another
# one is installed): UG835 get_board_parts -latest_file_version.
set board_part [lindex [lsort [get_board_parts -quiet -latest_file_version {xilinx.com:zcu104:*}]] end]
if {$board_part eq ""} {
    fail "no ZCU104 board files (xilinx.com:zcu104): install them from the Vivado board store\
(Tools > Vivado Store > Boards) or set board.repoPaths"
}
puts "build_overlay.tcl: board part $board_part"
set_property board_part $board_part [current_project]
set_property ip_repo_paths [list [file normalize $ip_repo]] [current_project]
update_ip_catalog
create_bd_design $design

# ---- processing system: board preset, HPM0 for control, HP0..3 for data, one PL clock ----
set ps [create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e zynq_ultra_ps_e_0]
apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e \
    -config {apply_board_preset "1"} $ps
set ps_cfg [list \
    CONFIG.PSU__USE__M_AXI_GP0 1 \
    CONFIG.PSU__USE__M_AXI_GP1 0 \
    CONFIG.PSU__USE__M_AXI_GP2 0 \
    CONFIG.PSU__FPGA_PL0_ENABLE 1 \
    CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ $pl_mhz \
    CONFIG.PSU__USE__IRQ0 1]
foreach hp $hp_ports {
    set gp [expr {$hp + 2}]
    lappend ps_cfg CONFIG.PSU__USE__S_AXI_GP$gp 1 CONFIG.PSU__SAXIGP${gp}__DATA_WIDTH 128
}
set_property -dict $ps_cfg $ps
set clk [get_bd_pins zynq_ultra_ps_e_0/pl_clk0]
# The PS divides an IOPLL by integers, so the clock it makes is near, not at, the request
# (300 MHz -> 299.997 MHz): read it back, print it, and keep it beside the overlay.
set pl_actual [get_property CONFIG.PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ $ps]
puts "build_overlay.tcl: PL clock $pl_actual MHz (asked for $pl_mhz MHz)"
if {$pl_actual eq "" || ![string is double -strict $pl_actual]} {
    fail "could not read the PL clock back from the PS (ACT_FREQMHZ '$pl_actual')"
}
if {abs($pl_actual - $pl_mhz) > 0.01 * $pl_mhz} {
    fail "the PS makes $pl_actual MHz for a $pl_mhz MHz request (more than 1 % off)"
}

set rst [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset proc_sys_reset_0]
connect_bd_net $clk [get_bd_pins proc_sys_reset_0/slowest_sync_clk]
connect_bd_net [get_bd_pins zynq_ultra_ps_e_0/pl_resetn0] [get_bd_pins proc_sys_reset_0/ext_reset_in]
set aresetn [get_bd_pins proc_sys_reset_0/peripheral_aresetn]

# ---- the kernel ----
set kernel [create_bd_cell -type ip -vlnv $kernel_vlnv edgemoe_top_0]
connect_bd_net $clk [get_bd_pins edgemoe_top_0/ap_clk]
connect_bd_net $aresetn [get_bd_pins edgemoe_top_0/ap_rst_n]
connect_bd_net [get_bd_pins edgemoe_top_0/interrupt] [get_bd_pins zynq_ultra_ps_e_0/pl_ps_irq0]

# A SmartConnect with num_si slaves and one master, clocked and reset with the PL.
proc smartconnect {name {num_si 1}} {
    create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect $name
    set_property -dict [list CONFIG.NUM_SI $num_si CONFIG.NUM_MI 1] [get_bd_cells $name]
    connect_bd_net [get_bd_pins zynq_ultra_ps_e_0/pl_clk0] [get_bd_pins $name/aclk]
    connect_bd_net [get_bd_pins proc_sys_reset_0/peripheral_aresetn] [get_bd_pins $name/aresetn]
}

# Control: HPM0 -> SmartConnect -> s_axi_control.
smartconnect sc_control
connect_bd_intf_net [get_bd_intf_pins zynq_ultra_ps_e_0/M_AXI_HPM0_FPD] \
    [get_bd_intf_pins sc_control/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins sc_control/M00_AXI] \
    [get_bd_intf_pins edgemoe_top_0/s_axi_control]
connect_bd_net $clk [get_bd_pins zynq_ultra_ps_e_0/maxihpm0_fpd_aclk]

# Data: m_axi_<bundle> -> its own SmartConnect -> its own HP port; a shared bundle on the
# next slave interface of its host's SmartConnect (assign_bd_address maps its address
# space to the same HP port's DDR as its host's).
foreach bundle $bundles hp $hp_ports {
    set guests {}
    dict for {guest host} $shared {
        if {$host eq $bundle} {
            lappend guests $guest
        }
    }
    smartconnect sc_$bundle [expr {1 + [llength $guests]}]
    connect_bd_intf_net [get_bd_intf_pins edgemoe_top_0/m_axi_$bundle] \
        [get_bd_intf_pins sc_$bundle/S00_AXI]
    set si 0
    foreach guest $guests {
        connect_bd_intf_net [get_bd_intf_pins edgemoe_top_0/m_axi_$guest] \
            [get_bd_intf_pins sc_$bundle/[format S%02d_AXI [incr si]]]
    }
    connect_bd_intf_net [get_bd_intf_pins sc_$bundle/M00_AXI] \
        [get_bd_intf_pins zynq_ultra_ps_e_0/S_AXI_HP${hp}_FPD]
    connect_bd_net $clk [get_bd_pins zynq_ultra_ps_e_0/saxihp${hp}_fpd_aclk]
}

assign_bd_address
validate_bd_design
save_bd_design

# ---- synthesis, implementation, bitstream ----
set bd_file [get_files $design.bd]
generate_target all $bd_file
set wrapper [make_wrapper -files $bd_file -top]
add_files -norecurse $wrapper
set_property top ${design}_wrapper [current_fileset]
update_compile_order -fileset sources_1

# Synthesis first: its utilisation is checked before placement starts.
launch_runs synth_1 -jobs $jobs
wait_on_runs synth_1
set synth [get_runs synth_1]
if {[get_property PROGRESS $synth] ne "100%"} {
    fail "synthesis failed: [get_property STATUS $synth] (see $build/$design.runs/synth_1)"
}
open_run synth_1
report_utilization -file [file join $build utilization_synth.rpt]
set util [report_utilization -return_string]

# Util% of a site type in report_utilization's tables (| Site Type | Used | ... | Util% |).
proc util_pct {report site} {
    foreach line [split $report "\n"] {
        set cells [lmap c [split [string trim $line " |"] |] {string trim $c}]
        if {[lindex $cells 0] eq $site && [string is double -strict [lindex $cells end]]} {
            return [lindex $cells end]
        }
    }
    return ""
}
foreach site {DSPs {Block RAM Tile} URAM {CLB LUTs*} {CLB LUTs}} {
    set pct [util_pct $util $site]
    if {$pct eq ""} {
        continue
    }
    puts "build_overlay.tcl: $site $pct % after synthesis"
    if {$pct > $max_util} {
        fail "$site at $pct % after synthesis (limit $max_util %): see\
[file join $build utilization_synth.rpt]"
    }
}
close_design

set impl [get_runs impl_1]
set_property strategy $strategy $impl
launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_runs impl_1
if {[get_property PROGRESS $impl] ne "100%"} {
    fail "implementation failed: [get_property STATUS $impl] (see $build/$design.runs/impl_1)"
}

# ---- timing: any negative setup or hold slack fails the build ----
set wns [get_property STATS.WNS $impl]
set whs [get_property STATS.WHS $impl]
open_run impl_1
report_timing_summary -file [file join $build timing_summary.rpt]
puts "build_overlay.tcl: WNS $wns ns, WHS $whs ns at $pl_actual MHz"
if {$wns < 0 || $whs < 0} {
    fail "timing missed (WNS $wns ns, WHS $whs ns): see [file join $build timing_summary.rpt]"
}

# ---- the overlay: .bit and .hwh with the same base name, as PYNQ loads them ----
set bit [file join $build $design.runs impl_1 ${design}_wrapper.bit]
set hwh [file join $build $design.gen sources_1 bd $design hw_handoff $design.hwh]
if {![file exists $hwh]} {
    # Vivado before 2020.2 kept generated BD files under .srcs
    set hwh [file join $build $design.srcs sources_1 bd $design hw_handoff $design.hwh]
}
file mkdir $out
file copy -force $bit [file join $out edgemoe.bit]
file copy -force $hwh [file join $out edgemoe.hwh]
set f [open [file join $out pl_clock_mhz.txt] w]
puts $f $pl_actual
close $f
puts "build_overlay.tcl: overlay in $out (edgemoe.bit, edgemoe.hwh; PL clock $pl_actual MHz)"
exit 0
