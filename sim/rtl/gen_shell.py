"""Generate ``edgemoe_top_shell.sv``: a transaction-level shell of the exported kernel top.

The shell has exactly the port list Vitis HLS gives ``edgemoe_top`` (``ap_clk``,
``ap_rst_n``, ``interrupt``, the ``s_axi_control`` AXI4-Lite slave and one AXI4
master ``m_axi_<bundle>`` per m_axi bundle) and behaves like it on the bus: a real
s_axilite register file with ``ap_ctrl_hs`` semantics at the offsets of
:func:`edgemoe.host.contracts.regmap.kernel_register_map`, and real AXI4 bursts on the
masters. It is *not* the kernel's RTL: on ``ap_start`` it reads every input
buffer into memory owned by DPI-C (``edgemoe_shell_dpi.cpp``), runs the C-sim of
the kernel there in zero simulated time, and writes back, in bursts, exactly the
bytes the kernel wrote. It lets the cocotb bench run in CI, where Vitis is absent.

Everything that depends on the kernel's argument list (ports, register decode,
one master per bundle) is generated from :data:`edgemoe.host.contracts.kernel.ARGS`, like
the register map. The output is committed; a test fails when it is stale.

Usage: ``python -m edgemoe.sim.rtl.gen_shell [--out FILE]``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from edgemoe.host.contracts.kernel import ARGS, TOP, Arg
from edgemoe.host.contracts.regmap import CTRL, GIE, IER, ISR, RegisterMap, register_map
from edgemoe.host.contracts.tiling import DEFAULT_TILING

HERE = Path(__file__).resolve().parent
SHELL_SV = HERE / "edgemoe_top_shell.sv"
SHELL_MODULE = f"{TOP}_shell"
#: Address bits of every m_axi port (``config_interface -m_axi_addr64``).
M_AXI_ADDR_BITS = 64
#: Bits of the s_axilite data bus.
S_AXI_DATA_BITS = 32


@dataclass(frozen=True)
class Port:
    """One port of the top.

    Attributes
    ----------
    name : str
        Full port name, e.g. ``m_axi_gmem_weights_ARADDR``.
    direction : str
        ``"input"`` or ``"output"``.
    width : int
        Bits.
    """

    name: str
    direction: str
    width: int


def s_axi_signals(addr_bits: int) -> list[tuple[str, str, int]]:
    """``(suffix, direction, width)`` of the AXI4-Lite slave, in Vitis HLS's order."""
    d = S_AXI_DATA_BITS
    return [
        ("AWVALID", "input", 1),
        ("AWREADY", "output", 1),
        ("AWADDR", "input", addr_bits),
        ("WVALID", "input", 1),
        ("WREADY", "output", 1),
        ("WDATA", "input", d),
        ("WSTRB", "input", d // 8),
        ("ARVALID", "input", 1),
        ("ARREADY", "output", 1),
        ("ARADDR", "input", addr_bits),
        ("RVALID", "output", 1),
        ("RREADY", "input", 1),
        ("RDATA", "output", d),
        ("RRESP", "output", 2),
        ("BVALID", "output", 1),
        ("BREADY", "input", 1),
        ("BRESP", "output", 2),
    ]


#: AXI4 master signals that carry IDs or user bits: the exported Verilog has them
#: (1 bit wide); the packaged IP hides them (``C_M_AXI_*_ENABLE_ID_PORTS false``), so
#: a ``.hwh`` does not list them.
ID_USER = {"AWID", "AWUSER", "WID", "WUSER", "ARID", "ARUSER", "RID", "RUSER", "BID", "BUSER"}


def m_axi_signals(data_bits: int) -> list[tuple[str, str, int]]:
    """``(suffix, direction, width)`` of one AXI4 master, in Vitis HLS's order.

    Lock is two bits wide, as Vitis HLS declares it.
    """
    a, d = M_AXI_ADDR_BITS, data_bits
    o, i = "output", "input"
    aw = [(f"AW{s}", o, w) for s, w in _ax_fields(a)]
    ar = [(f"AR{s}", o, w) for s, w in _ax_fields(a)]
    aw[1] = ("AWREADY", i, 1)
    ar[1] = ("ARREADY", i, 1)
    return [
        *aw,
        ("WVALID", o, 1),
        ("WREADY", i, 1),
        ("WDATA", o, d),
        ("WSTRB", o, d // 8),
        ("WLAST", o, 1),
        ("WID", o, 1),
        ("WUSER", o, 1),
        *ar,
        ("RVALID", i, 1),
        ("RREADY", o, 1),
        ("RDATA", i, d),
        ("RLAST", i, 1),
        ("RID", i, 1),
        ("RUSER", i, 1),
        ("RRESP", i, 2),
        ("BVALID", i, 1),
        ("BREADY", o, 1),
        ("BRESP", i, 2),
        ("BID", i, 1),
        ("BUSER", i, 1),
    ]


def _ax_fields(addr_bits: int) -> list[tuple[str, int]]:
    return [
        ("VALID", 1),
        ("READY", 1),
        ("ADDR", addr_bits),
        ("ID", 1),
        ("LEN", 8),
        ("SIZE", 3),
        ("BURST", 2),
        ("LOCK", 2),
        ("CACHE", 4),
        ("PROT", 3),
        ("QOS", 4),
        ("REGION", 4),
        ("USER", 1),
    ]


def pointer_args(args: tuple[Arg, ...] = ARGS) -> list[Arg]:
    """The m_axi pointer arguments, in declaration order (= the DPI-C buffer index)."""
    return [a for a in args if a.kind == "ptr"]


def ports(args: tuple[Arg, ...] = ARGS, data_bits: int = DEFAULT_TILING.axi_bits) -> list[Port]:
    """The top's port list, as Vitis HLS exports it for ``args``."""
    rm = register_map(args)
    out = [Port("ap_clk", "input", 1), Port("ap_rst_n", "input", 1)]
    out += [Port(f"s_axi_control_{s}", d, w) for s, d, w in s_axi_signals(rm.addr_width)]
    out.append(Port("interrupt", "output", 1))
    for a in pointer_args(args):
        out += [Port(f"m_axi_{a.bundle}_{s}", d, w) for s, d, w in m_axi_signals(data_bits)]
    return out


# ---- SystemVerilog text ----


def _decl(p: Port) -> str:
    rng = f"[{p.width - 1}:0] " if p.width > 1 else ""
    return f"    {p.direction:<6} logic {rng}{p.name}"


def _master(data_bits: int) -> str:
    """The AXI4 master engine shared by every bundle (depends only on the data width)."""
    return MASTER_SV.replace("@DATA_W@", str(data_bits)).replace("@STRB_W@", str(data_bits // 8))


def _top(args: tuple[Arg, ...], data_bits: int, rm: RegisterMap) -> str:
    ptrs = pointer_args(args)
    scalars = [a for a in args if a.kind != "ptr"]
    aw = rm.addr_width
    lines: list[str] = []
    w = lines.append
    w(f"module {SHELL_MODULE} (")
    w(",\n".join(_decl(p) for p in ports(args, data_bits)))
    w(");")
    w("")
    w("  // ---- s_axilite register map (edgemoe.host.contracts.regmap.kernel_register_map) ----")
    w(f"  localparam int ADDR_W = {aw};")
    consts = {"CTRL": CTRL, "GIE": GIE, "IER": IER, "ISR": ISR}
    for r in rm.registers:
        for i, (_, off) in enumerate(r.parts):
            consts[f"{r.name.upper()}_DATA_{i}"] = off
    for name, off in consts.items():
        w(f"  localparam logic [ADDR_W-1:0] ADDR_{name} = {aw}'h{off:02X};")
    w(f"  localparam int NBUF = {len(ptrs)};  // m_axi bundles = DPI-C buffers, in ARGS order")
    w("")
    w("  // Argument registers (host-written) and their copies taken at ap_start.")
    for a in ptrs:
        w(f"  logic [63:0] arg_{a.name}, run_{a.name};")
    for a in scalars:
        w(f"  logic [31:0] arg_{a.name}, run_{a.name};")
    w("  logic [31:0] ap_return;")
    w("")
    body = TOP_BODY_SV
    write_cases, read_cases = [], []
    for a in ptrs:
        for i in range(2):
            hi, lo = 32 * i + 31, 32 * i
            write_cases.append(
                f"          ADDR_{a.name.upper()}_DATA_{i}: "
                f"arg_{a.name}[{hi}:{lo}] <= strobe(arg_{a.name}[{hi}:{lo}]);"
            )
            read_cases.append(
                f"          ADDR_{a.name.upper()}_DATA_{i}: s_axi_control_RDATA <= "
                f"arg_{a.name}[{hi}:{lo}];"
            )
    for a in scalars:
        write_cases.append(
            f"          ADDR_{a.name.upper()}_DATA_0: arg_{a.name} <= strobe(arg_{a.name});"
        )
        read_cases.append(
            f"          ADDR_{a.name.upper()}_DATA_0: s_axi_control_RDATA <= arg_{a.name};"
        )
    latch = [f"          run_{a.name} <= arg_{a.name};" for a in args]
    bases = [
        f"          edgemoe_shell_base({i}, longint'(arg_{a.name}));" for i, a in enumerate(ptrs)
    ]
    resets = [f"      arg_{a.name} <= '0;" for a in args]
    body = (
        body.replace("@WRITE_CASES@", "\n".join(write_cases))
        .replace("@READ_CASES@", "\n".join(read_cases))
        .replace("@LATCH_ARGS@", "\n".join(latch))
        .replace("@BASES@", "\n".join(bases))
        .replace("@RESET_ARGS@", "\n".join(resets))
    )
    run_args = ", ".join(f"run_{a.name}" for a in scalars)
    body = body.replace("@RUN_ARGS@", run_args)
    lines.append(body)
    w("  // ---- one AXI4 master per m_axi bundle ----")
    for i, a in enumerate(ptrs):
        p = f"m_axi_{a.bundle}"
        conns = [
            ".clk(ap_clk)",
            ".rst_n(ap_rst_n)",
            f".cmd_read(cmd_read[{i}])",
            f".cmd_write(cmd_write[{i}])",
            f".cmd_base(run_{a.name})",
            ".cmd_first(cmd_first)",
            ".cmd_last(cmd_last)",
            f".busy(busy[{i}])",
            f".bus_error(bus_error[{i}])",
        ]
        conns += [f".{s}({p}_{s})" for s, _, _ in m_axi_signals(data_bits)]
        w(f"  // {a.name}: {a.doc}")
        w(f"  edgemoe_shell_axi_master #(.BUF({i})) u_{a.bundle} (")
        w(",\n".join(f"      {c}" for c in conns))
        w("  );")
        w("")
    w("endmodule")
    return "\n".join(lines)


def generate(args: tuple[Arg, ...] = ARGS, data_bits: int = DEFAULT_TILING.axi_bits) -> str:
    """The whole ``edgemoe_top_shell.sv`` text."""
    rm = register_map(args)
    return "\n".join(
        [
            HEADER_SV.replace("@TOP@", TOP).replace("@MODULE@", SHELL_MODULE),
            _master(data_bits),
            _top(args, data_bits, rm),
            "",
        ]
    )


HEADER_SV = """\
// Generated by edgemoe.sim.rtl.gen_shell from edgemoe.host.contracts.kernel.ARGS -- do not edit;
// regenerate with `python -m edgemoe.sim.rtl.gen_shell`.
//
// @MODULE@: a TRANSACTION-LEVEL SHELL of the HLS kernel @TOP@, NOT synthesised RTL
// and not synthesisable (it calls C++ through DPI-C). Same ports as the Vitis HLS
// export, a real s_axilite register file (ap_ctrl_hs) and real AXI4 bursts on every
// m_axi bundle; the computation is the kernel's C-sim (sim/rtl/edgemoe_shell_dpi.cpp).
// On ap_start it reads each input buffer whole (the bundle's length from its header),
// runs the kernel, then writes back the bytes the kernel wrote. One burst at a time
// per bundle, at most 256 beats, never across a 4 KB boundary. maps is the scratch
// buffer on a second master: the DPI-C side refuses another address.
`timescale 1ns / 1ps

// verilator lint_off UNUSEDSIGNAL
// verilator lint_off DECLFILENAME
// verilator lint_off SYMRSVDWORD
"""

MASTER_SV = """\
// One AXI4 master (m_axi bundle) of the shell, moving bytes between the bus and the
// DPI-C buffer BUF: reads [cmd_first, cmd_last) of the buffer at cmd_base, or writes
// back every range the kernel wrote. Buffers start on a bus word (docs/design.md 4.5).
module edgemoe_shell_axi_master #(
    parameter int BUF = 0  // DPI-C buffer index: the pointer's position among the m_axi args
) (
    input  logic        clk,
    input  logic        rst_n,
    input  logic        cmd_read,   // pulse: fetch [cmd_first, cmd_last) into the buffer
    input  logic        cmd_write,  // pulse: write the kernel's written ranges back
    input  logic [63:0] cmd_base,   // buffer address
    input  logic [63:0] cmd_first,  // byte offsets in the buffer
    input  logic [63:0] cmd_last,
    output logic        busy,
    output logic        bus_error,  // sticky: a response other than OKAY
    output logic        AWVALID,
    input  logic        AWREADY,
    output logic [63:0] AWADDR,
    output logic        AWID,
    output logic [ 7:0] AWLEN,
    output logic [ 2:0] AWSIZE,
    output logic [ 1:0] AWBURST,
    output logic [ 1:0] AWLOCK,
    output logic [ 3:0] AWCACHE,
    output logic [ 2:0] AWPROT,
    output logic [ 3:0] AWQOS,
    output logic [ 3:0] AWREGION,
    output logic        AWUSER,
    output logic        WVALID,
    input  logic        WREADY,
    output logic [@DATA_W@-1:0] WDATA,
    output logic [@STRB_W@-1:0] WSTRB,
    output logic        WLAST,
    output logic        WID,
    output logic        WUSER,
    output logic        ARVALID,
    input  logic        ARREADY,
    output logic [63:0] ARADDR,
    output logic        ARID,
    output logic [ 7:0] ARLEN,
    output logic [ 2:0] ARSIZE,
    output logic [ 1:0] ARBURST,
    output logic [ 1:0] ARLOCK,
    output logic [ 3:0] ARCACHE,
    output logic [ 2:0] ARPROT,
    output logic [ 3:0] ARQOS,
    output logic [ 3:0] ARREGION,
    output logic        ARUSER,
    input  logic        RVALID,
    output logic        RREADY,
    input  logic [@DATA_W@-1:0] RDATA,
    input  logic        RLAST,
    input  logic        RID,
    input  logic        RUSER,
    input  logic [ 1:0] RRESP,
    input  logic        BVALID,
    output logic        BREADY,
    input  logic [ 1:0] BRESP,
    input  logic        BID,
    input  logic        BUSER
);
  localparam int WB = @STRB_W@;  // bytes per beat
  localparam int LB = $clog2(WB);

  import "DPI-C" function void edgemoe_shell_put(input int buf_id, input longint word,
                                                 input bit [@DATA_W@-1:0] data);
  import "DPI-C" function int edgemoe_shell_get(input int buf_id, input longint word,
                                                output bit [@DATA_W@-1:0] data);
  import "DPI-C" function int edgemoe_shell_range(input int buf_id, input int index,
                                                  output longint first, output longint bytes);

  // Fixed attributes, as Vitis HLS drives them: INCR bursts of full words, cacheable
  // and modifiable (CACHE 0011), no lock/QoS/region, ID and user bits 0.
  assign AWID = 1'b0;
  assign AWSIZE = 3'(LB);
  assign AWBURST = 2'b01;
  assign AWLOCK = 2'b00;
  assign AWCACHE = 4'b0011;
  assign AWPROT = 3'b000;
  assign AWQOS = 4'b0000;
  assign AWREGION = 4'b0000;
  assign AWUSER = 1'b0;
  assign WID = 1'b0;
  assign WUSER = 1'b0;
  assign ARID = 1'b0;
  assign ARSIZE = 3'(LB);
  assign ARBURST = 2'b01;
  assign ARLOCK = 2'b00;
  assign ARCACHE = 4'b0011;
  assign ARPROT = 3'b000;
  assign ARQOS = 4'b0000;
  assign ARREGION = 4'b0000;
  assign ARUSER = 1'b0;

  typedef enum logic [2:0] {
    IDLE,
    RD_ADDR,
    RD_DATA,
    WR_RANGE,
    WR_ADDR,
    WR_DATA,
    WR_RESP
  } state_t;
  state_t state;
  logic [63:0] base, cur, last;  // buffer address; byte offsets of this burst and the end
  logic [ 8:0] beats, beat;  // beats of this burst (1..256); beats done
  int range_index;

  assign busy = state != IDLE;

  // Beats of the next burst from byte offset `from` to `to`: at most 256, and
  // never across a 4 KB boundary (AXI4).
  function automatic logic [8:0] burst_beats(input logic [63:0] addr, input logic [63:0] from,
                                             input logic [63:0] to);
    logic [63:0] words, to_page;
    words = (to - from + 64'(WB - 1)) >> LB;
    to_page = (64'd4096 - {52'd0, addr[11:0]}) >> LB;
    if (to_page < words) words = to_page;
    return words > 64'd256 ? 9'd256 : words[8:0];
  endfunction

  always_ff @(posedge clk) begin : engine
    logic [8:0] n;
    logic [63:0] next;
    longint first, bytes;
    bit [@DATA_W@-1:0] data;
    int strb;
    if (!rst_n) begin
      state <= IDLE;
      AWVALID <= 1'b0;
      WVALID <= 1'b0;
      WLAST <= 1'b0;
      BREADY <= 1'b0;
      ARVALID <= 1'b0;
      RREADY <= 1'b0;
      bus_error <= 1'b0;
    end else begin
      case (state)
        IDLE: begin
          base <= cmd_base;
          if (cmd_read && cmd_first < cmd_last) begin
            n = burst_beats(cmd_base + cmd_first, cmd_first, cmd_last);
            cur <= cmd_first;
            last <= cmd_last;
            beats <= n;
            ARADDR <= cmd_base + cmd_first;
            ARLEN <= 8'(n - 9'd1);
            ARVALID <= 1'b1;
            state <= RD_ADDR;
          end else if (cmd_write) begin
            range_index <= 0;
            state <= WR_RANGE;
          end
        end
        RD_ADDR:
        if (ARREADY) begin
          ARVALID <= 1'b0;
          RREADY <= 1'b1;
          beat <= '0;
          state <= RD_DATA;
        end
        RD_DATA:
        if (RVALID) begin
          edgemoe_shell_put(BUF, longint'((cur >> LB) + 64'(beat)), RDATA);
          if (RRESP != 2'b00) bus_error <= 1'b1;
          beat <= beat + 9'd1;
          if (RLAST) begin
            RREADY <= 1'b0;
            next = cur + (64'(beats) << LB);
            cur <= next;
            if (next >= last) begin
              state <= IDLE;
            end else begin
              n = burst_beats(base + next, next, last);
              beats <= n;
              ARADDR <= base + next;
              ARLEN <= 8'(n - 9'd1);
              ARVALID <= 1'b1;
              state <= RD_ADDR;
            end
          end
        end
        WR_RANGE:
        if (edgemoe_shell_range(BUF, range_index, first, bytes) != 0) begin
          range_index <= range_index + 1;
          n = burst_beats(base + 64'(first), 64'(first), 64'(first + bytes));
          cur <= 64'(first);
          last <= 64'(first + bytes);
          beats <= n;
          AWADDR <= base + 64'(first);
          AWLEN <= 8'(n - 9'd1);
          AWVALID <= 1'b1;
          state <= WR_ADDR;
        end else begin
          state <= IDLE;
        end
        WR_ADDR:
        if (AWREADY) begin
          AWVALID <= 1'b0;
          strb = edgemoe_shell_get(BUF, longint'(cur >> LB), data);
          WDATA <= data;
          WSTRB <= @STRB_W@'(strb);
          WLAST <= beats == 9'd1;
          WVALID <= 1'b1;
          beat <= 9'd1;
          state <= WR_DATA;
        end
        WR_DATA:
        if (WREADY) begin
          if (WLAST) begin
            WVALID <= 1'b0;
            WLAST <= 1'b0;
            BREADY <= 1'b1;
            state <= WR_RESP;
          end else begin
            strb = edgemoe_shell_get(BUF, longint'((cur >> LB) + 64'(beat)), data);
            WDATA <= data;
            WSTRB <= @STRB_W@'(strb);
            WLAST <= beat + 9'd1 == beats;
            beat <= beat + 9'd1;
          end
        end
        WR_RESP:
        if (BVALID) begin
          BREADY <= 1'b0;
          if (BRESP != 2'b00) bus_error <= 1'b1;
          next = cur + (64'(beats) << LB);
          cur <= next;
          if (next >= last) begin
            state <= WR_RANGE;
          end else begin
            n = burst_beats(base + next, next, last);
            beats <= n;
            AWADDR <= base + next;
            AWLEN <= 8'(n - 9'd1);
            AWVALID <= 1'b1;
            state <= WR_ADDR;
          end
        end
        default: state <= IDLE;
      endcase
    end
  end
endmodule

"""

TOP_BODY_SV = """\
  import "DPI-C" function void edgemoe_shell_begin();
  import "DPI-C" function void edgemoe_shell_base(input int buf_id, input longint addr);
  import "DPI-C" function longint edgemoe_shell_head_bytes(input int buf_id);
  import "DPI-C" function longint edgemoe_shell_fetch_bytes(input int buf_id,
                                                            input int num_images);
  import "DPI-C" function int edgemoe_shell_run(input int task_id, input int num_images,
                                                input int debug_stop);

  // ---- AXI4-Lite channels (one transaction at a time, as Vitis HLS's adapter) ----
  typedef enum logic [1:0] {
    WR_IDLE,
    WR_DATA,
    WR_RESP
  } wstate_t;
  wstate_t wstate;
  logic [ADDR_W-1:0] waddr;
  logic rvalid;
  assign s_axi_control_AWREADY = wstate == WR_IDLE;
  assign s_axi_control_WREADY = wstate == WR_DATA;
  assign s_axi_control_BVALID = wstate == WR_RESP;
  assign s_axi_control_BRESP = 2'b00;
  assign s_axi_control_ARREADY = !rvalid;
  assign s_axi_control_RVALID = rvalid;
  assign s_axi_control_RRESP = 2'b00;
  wire w_hs = s_axi_control_WVALID && s_axi_control_WREADY;
  wire ar_hs = s_axi_control_ARVALID && s_axi_control_ARREADY;

  always_ff @(posedge ap_clk) begin
    if (!ap_rst_n) begin
      wstate <= WR_IDLE;
      rvalid <= 1'b0;
    end else begin
      case (wstate)
        WR_IDLE:
        if (s_axi_control_AWVALID) begin
          waddr <= s_axi_control_AWADDR;
          wstate <= WR_DATA;
        end
        WR_DATA: if (s_axi_control_WVALID) wstate <= WR_RESP;
        WR_RESP: if (s_axi_control_BREADY) wstate <= WR_IDLE;
        default: wstate <= WR_IDLE;
      endcase
      if (ar_hs) rvalid <= 1'b1;
      else if (s_axi_control_RREADY) rvalid <= 1'b0;
    end
  end

  function automatic logic [31:0] strobe(input logic [31:0] old);
    for (int b = 0; b < 4; b++) begin
      if (s_axi_control_WSTRB[b]) old[8*b+:8] = s_axi_control_WDATA[8*b+:8];
    end
    return old;
  endfunction

  // ---- control: ap_ctrl_hs, interrupts, the run sequence ----
  typedef enum logic [3:0] {
    S_IDLE,
    S_HEAD,
    S_HEAD_WAIT,
    S_BODY,
    S_BODY_WAIT,
    S_RUN,
    S_WRITE_WAIT,
    S_DONE
  } state_t;
  state_t state;
  logic ap_start, ap_done, ap_idle, ap_ready, auto_restart, gie;
  logic [1:0] ier, isr;  // bit 0 ap_done, bit 1 ap_ready
  logic [NBUF-1:0] cmd_read, cmd_write, busy, bus_error;
  logic [63:0] cmd_first, cmd_last;
  int buf_id;

  assign interrupt = gie && (isr != 2'b00);

  always_ff @(posedge ap_clk) begin
    logic [1:0] isr_set;
    isr_set = 2'b00;
    if (!ap_rst_n) begin
      state <= S_IDLE;
      ap_start <= 1'b0;
      ap_done <= 1'b0;
      ap_idle <= 1'b1;
      ap_ready <= 1'b0;
      auto_restart <= 1'b0;
      gie <= 1'b0;
      ier <= 2'b00;
      isr <= 2'b00;
      ap_return <= '0;
      cmd_read <= '0;
      cmd_write <= '0;
@RESET_ARGS@
    end else begin
      // Host reads: ap_done and ap_ready are clear-on-read.
      if (ar_hs) begin
        s_axi_control_RDATA <= '0;
        case (s_axi_control_ARADDR)
          ADDR_CTRL: begin
            s_axi_control_RDATA <= {24'd0, auto_restart, 3'd0, ap_ready, ap_idle, ap_done,
                                    ap_start};
            ap_done <= 1'b0;
            ap_ready <= 1'b0;
          end
          ADDR_GIE: s_axi_control_RDATA <= {31'd0, gie};
          ADDR_IER: s_axi_control_RDATA <= {30'd0, ier};
          ADDR_ISR: s_axi_control_RDATA <= {30'd0, isr};
          ADDR_AP_RETURN_DATA_0: s_axi_control_RDATA <= ap_return;
@READ_CASES@
          default: ;
        endcase
      end
      // Host writes: ap_start is set by a 1 and cleared by the kernel; ISR toggles on write.
      if (w_hs) begin
        case (waddr)
          ADDR_CTRL:
          if (s_axi_control_WSTRB[0]) begin
            if (s_axi_control_WDATA[0]) ap_start <= 1'b1;
            auto_restart <= s_axi_control_WDATA[7];
          end
          ADDR_GIE: if (s_axi_control_WSTRB[0]) gie <= s_axi_control_WDATA[0];
          ADDR_IER: if (s_axi_control_WSTRB[0]) ier <= s_axi_control_WDATA[1:0];
          ADDR_ISR: if (s_axi_control_WSTRB[0]) isr <= isr ^ s_axi_control_WDATA[1:0];
@WRITE_CASES@
          default: ;
        endcase
      end

      cmd_read <= '0;
      cmd_write <= '0;
      case (state)
        S_IDLE:
        if (ap_start) begin
@LATCH_ARGS@
          ap_idle <= 1'b0;
          edgemoe_shell_begin();
          // every buffer's address: the C side knows which two masters share a buffer
@BASES@
          buf_id <= 0;
          state <= S_HEAD;
        end
        // Per buffer: the head first (the bundle's header, which gives its length), then the rest.
        S_HEAD: begin
          cmd_first <= '0;
          cmd_last <= 64'(edgemoe_shell_head_bytes(buf_id));
          cmd_read[buf_id] <= 1'b1;
          state <= S_HEAD_WAIT;
        end
        S_HEAD_WAIT: if (cmd_read == '0 && !busy[buf_id]) state <= S_BODY;
        S_BODY: begin
          cmd_first <= 64'(edgemoe_shell_head_bytes(buf_id));
          cmd_last <= 64'(edgemoe_shell_fetch_bytes(buf_id, int'(run_num_images)));
          cmd_read[buf_id] <= 1'b1;
          state <= S_BODY_WAIT;
        end
        S_BODY_WAIT:
        if (cmd_read == '0 && !busy[buf_id]) begin
          if (buf_id == NBUF - 1) begin
            state <= S_RUN;
          end else begin
            buf_id <= buf_id + 1;
            state <= S_HEAD;
          end
        end
        // The kernel, in zero simulated time; then every bundle writes back what it wrote.
        S_RUN: begin
          ap_return <= edgemoe_shell_run(@RUN_ARGS@);
          cmd_write <= '1;
          state <= S_WRITE_WAIT;
        end
        S_WRITE_WAIT: if (cmd_write == '0 && busy == '0) state <= S_DONE;
        S_DONE: begin
          ap_done <= 1'b1;
          ap_ready <= 1'b1;
          ap_idle <= 1'b1;
          if (!auto_restart) ap_start <= 1'b0;
          isr_set = ier;
          state <= S_IDLE;
        end
        default: state <= S_IDLE;
      endcase
      if (isr_set != 2'b00) begin
        isr <= (w_hs && waddr == ADDR_ISR ? isr ^ s_axi_control_WDATA[1:0] : isr) | isr_set;
      end
    end
  end
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=SHELL_SV)
    ns = ap.parse_args(argv)
    ns.out.write_text(generate())
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
