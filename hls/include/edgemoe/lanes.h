// The two-lane scheduler: the images of a call run on two on-chip buffer sets, in
// steps; each step runs the attention of one set's image beside the linear lane's turn
// for the other's image (everything but attention: LayerNorm, the linear unit, routing,
// parking, loading). Turns alternate, so while one image attends, the other's proj, MLP
// and next Q, K, V run on the linear unit. Every image still runs its stages in order on
// its own buffers; only the two images' stages interleave. The task decoder runs the same
// way: an image's bands are linear-lane turns, and between two of them the side lane's
// turn stores the band's outputs and loads the next band's window (decoder_io), so while
// one image's band computes the other's moves.
//
// Module hierarchy (hls/README.md): run_images -> lane_step (ONE instance, two call
// sites) -> lanes (DATAFLOW) -> side_lane | linear_lane; the linear lane is a
// sequencer whose one loop holds the only call of linear_unit (ONE engine by
// construction) and of every other unit of the lane.
// Golden: edgemoe.sim.golden.Golden.run. Contract: bit-exact.
#ifndef EDGEMOE_LANES_H_
#define EDGEMOE_LANES_H_

#include "edgemoe/attention.h"
#include "edgemoe/buffers.h"
#include "edgemoe/config.h"
#include "edgemoe/ddr.h"
#include "edgemoe/decoder.h"
#include "edgemoe/experts.h"
#include "edgemoe/linear.h"
#include "edgemoe/moe.h"
#include "edgemoe/park.h"
#include "edgemoe/stages.h"

namespace edgemoe {

/// `parked` when no image of the segment is parked (every image runs to the end).
constexpr int NOT_PARKED = DEPTH;
/// `group` of a step that runs no expert-major group (a buffer set's image has the linear lane).
constexpr int NO_GROUP = -1;

/// Where a buffer set's image is.
enum SetState {
  SET_IDLE,    ///< no image left for this buffer set
  SET_LOAD,    ///< its next image is to be loaded (embedded, or its parked x read back)
  SET_ATTN,    ///< the attention of `block` comes next (the side lane)
  SET_TAIL,    ///< the rest of `block` comes next (the linear lane)
  SET_DEC,     ///< its decoder's next band comes next (the linear lane): its window is in the ring
  SET_DEC_IO,  ///< its decoder's band I/O comes next (the side lane: DecIo)
};

/// One on-chip buffer set as the scheduler sees it: the image it holds and where that
/// image is (its arrays are a Buffers).
struct BufferSet {
  SetState state;
  uint32_t image;  ///< the image of the call in the set
  int block;       ///< its block
  bool on_chip;    ///< SET_LOAD: its x came back while the image before it parked
  uint64_t maps;   ///< its image's pair of decoder maps in scratch (set b's after set a's)
  DecState dec;    ///< SET_DEC / SET_DEC_IO: its decoder's next band
  bool dec_store;  ///< SET_DEC_IO: the band it computed last waits to be stored
  DecState done;   ///< that band (conv, y0, x0)
};

/// A buffer set at the start of a segment: `state` for `image`, from `block`; `maps` set
/// a's or set b's decoder maps.
inline BufferSet buffer_set(SetState state, uint32_t image, int block, uint64_t maps) {
  BufferSet s;
  s.state = state;
  s.image = image;
  s.block = block;
  s.on_chip = false;
  s.maps = maps;
  s.dec = {0, 0, 0, 0, 0};
  s.dec_store = false;
  s.done = s.dec;
  return s;
}

/// The part of a call the buffer sets run: images [first, last) from block `from` (from the
/// pixels when 0, else from their parked x) up to the routing of a MoE block when
/// `park` (expert-major), else to the end.
struct Segment {
  uint32_t first;
  uint32_t last;
  int from;
  bool park;
};

/// Whose proj the linear lane's last Q/K/V call of a turn fetches ahead (its first tiles).
enum AheadKind {
  AHEAD_NONE,       ///< none: the other set's image runs its own tail next
  AHEAD_OWN,        ///< the lane's own image's (the other set idle: it attends, then its tail)
  AHEAD_ATTENDING,  ///< the attending image's, block `block` (its tail comes next)
};

/// The proj a linear turn fetches ahead.
struct ProjAhead {
  AheadKind kind;
  int block;  ///< the attending image's block (AHEAD_ATTENDING)
};

/// The weights of that proj, NO_TENSOR for none; `own` is the lane's own image's block.
inline uint64_t proj_ahead(const ProjAhead& a, int own) {
  return a.kind == AHEAD_NONE ? NO_TENSOR : BLOCK[a.kind == AHEAD_OWN ? own : a.block].proj_w;
}

/// Whether the bands of decoder convolution `conv` keep their outputs on chip (the first
/// chunk in h, the second in x) for the side lane to store (decoder_io) or the fused
/// classifier: every convolution between conv_0 (whose calls read the token grid in h) and
/// the one the call returns (which goes to the output region from x, a chunk at a time).
inline bool dec_keeps(const Run& run, const DecTask& dtask, int conv) {
  return conv > 0 && conv + 1 < dtask.convs && run.dec_stop != uint32_t(dtask.conv[conv].stop);
}

/// The buffer set's next image: every second image of the segment.
inline void next_image(const Segment& seg, bool on_chip, BufferSet& s) {
  s.image += 2;
  s.on_chip = on_chip;
  s.state = s.image < seg.last ? SET_LOAD : SET_IDLE;
}

/// The linear lane's steps (its program counter): each iteration of its loop runs one.
enum LanePc {
  PC_END,          ///< the turn is over
  PC_TAIL,         ///< block s.block after its attention: proj (or a stop at attention)
  PC_LN2,          ///< LN2
  PC_GATE,         ///< the gate (MoE block)
  PC_ROUTE,        ///< routing; then park, the image's experts, or nothing
  PC_EXPERT_FC1,   ///< image-major expert e: fc1 + GELU
  PC_EXPERT_FC2,   ///< image-major expert e: fc2 scaled into x
  PC_FC1,          ///< dense fc1 + GELU
  PC_FC2,          ///< dense fc2 + residual
  PC_TAIL_END,     ///< the block is done: next block, or the final tokens
  PC_HEAD,         ///< LN1 of s.block
  PC_QKV,          ///< Q, K, V; then the set attends
  PC_WRITE,        ///< a stage to the output (`wr`), then PC_IMAGE_DONE
  PC_IMAGE_DONE,   ///< the image is done or parks: park it, the set's next image
  PC_LOAD,         ///< the set's next image: pixels, or its parked x
  PC_EMBED,        ///< patch embedding
  PC_GROUP,        ///< expert-major MoE of a parked group: queue lengths, first expert chunk
  PC_GROUP_FC1,    ///< expert chunk cur: fc1 + GELU, merging cur ^ 1 meanwhile
  PC_GROUP_FC2,    ///< expert chunk cur: fc2 scaled, gathering the next meanwhile
  PC_GROUP_MERGE,  ///< the last expert chunk's merge
  PC_DEC_NORM,     ///< the task decoder's LayerNorm (after the final tokens are written)
  PC_DEC_BAND,     ///< its convolution dec.conv's band at (dec.y0, dec.x0): the window
  PC_DEC_CONV,     ///< chunk dec.chunk of the band on the linear unit
  PC_DEC_STORE,    ///< that chunk to its map (or the output); the next chunk or band
  PC_DEC_FUSE,     ///< the fused classifier of the last convolution's band (decoder.h)
};

/// What PC_WRITE sends to the output.
enum LaneWrite {
  WR_X,     ///< x, EMBED_DIM columns
  WR_H,     ///< h, EMBED_DIM columns
  WR_QKV,   ///< wide, 3 * EMBED_DIM columns
  WR_GATE,  ///< wide, NUM_EXPERTS columns
};

/// The linear lane's turn: for buffer set s, the rest of its block and, unless its image is done
/// or parks, the next block's LN1 and Q, K, V; for a set that needs one, its next image
/// up to its first attention. With group != NO_GROUP (both sets idle), the expert-major MoE of
/// block `group` over the parked images of the segment instead.
///
/// Everything the lane does is one step of one loop, so each unit is called from exactly
/// one place: `linear_unit` has one call site (one RTL instance, UG1399 "pragma HLS
/// allocation": instances are counted per call in a function body), which is what keeps
/// the prefetched tiles of one call valid for the next.
/// \param ahead whose proj the linear lane runs after this turn (proj_ahead)
/// \param parked set to the MoE block an image parks at
/// \param lane, lin the lane's own buffers and the linear unit's state (only this process
///        touches them)
inline void linear_lane(const word_t* bundle, const word_t* images, word_t* output, word_t* scratch,
                        const Run& run, const Segment& seg, const ProjAhead& ahead, int group,
                        BufferSet& s, int& parked, Buffers& buf, LaneBuffers& lane,
                        LinearState& lin) {
#pragma HLS INLINE off  // the lane is a DATAFLOW process: a module of its own
#pragma HLS ALLOCATION function instances = linear_unit limit = 1  // ONE unified linear unit
  const int stop = run.stop;
  int pc = group != NO_GROUP     ? PC_GROUP
           : s.state == SET_TAIL ? PC_TAIL
           : s.state == SET_DEC  ? PC_DEC_BAND
           : s.state == SET_LOAD ? PC_LOAD
                                 : PC_END;
  bool from_load = pc == PC_LOAD;  // a stop while loading leaves the next image to a turn
  bool parks = false;
  LaneWrite wr = WR_X;
  int e = 0;  // image-major: the expert running
  // expert-major group
  int count[MAX_GROUP][NUM_EXPERTS];
  QueueWalk walk;
  // ddr_read stores a bus word's WORD_BYTES / 4 entries in one cycle, entry e in lane e % 4:
  // one bank per lane, so the reads of the queue lengths and of a queue are one burst at
  // II = 1 (F15; UG1448 200-885); the walk reads one entry a cycle, from any bank
#pragma HLS ARRAY_PARTITION variable = count cyclic factor = WORD_BYTES / 4 dim = 2
#pragma HLS ARRAY_PARTITION variable = walk.tok cyclic factor = WORD_BYTES / 4 dim = 1
#pragma HLS ARRAY_PARTITION variable = walk.weight cyclic factor = WORD_BYTES / 4 dim = 1
  int cur = 0;  // the expert chunk computing
  bool first_expert_chunk = true;
  // the task decoder: one band a turn; between two, the side lane's turn stores the band and
  // loads the next one's window into this set's ring (decoder_io)
  const DecTask& dtask = DECODER[run.task];
  const uint64_t dec_out = DEC_TOKENS_BYTES;  // the stage's place in the image's region
  DecState& dec = s.dec;
  ConvWindow win;  // the band being computed and its window (registers: the table's few rows)
#pragma HLS ARRAY_PARTITION variable = win.rowbase complete dim = 1
#pragma HLS ARRAY_PARTITION variable = win.colbase complete dim = 1
  int band_rows = 0;
  // a call that decodes to the logits runs the classifier inside the last convolution's
  // bands when the plan fuses it (contracts.decoder.fusable); a debug stop before does not
  const int fused_conv = dtask.fused && (run.dec_stop == 0 ||
                                         run.dec_stop == uint32_t(dtask.conv[dtask.convs - 1].stop))
                             ? dtask.convs - 2
                             : -1;
  bool logits_ready = false;  // the fused classifier's logits are in x
  const int group_size = int(seg.last - seg.first);
  const uint64_t group_out = uint64_t(seg.first) * run.out_stride;

lane_steps:
  while (pc != PC_END) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 2 * NUM_EXPERTS + 16
    const BlockOffsets& blk = BLOCK[group != NO_GROUP ? group : s.block];
    const int here = 1 + s.block * STAGES_PER_BLOCK;
    const uint64_t out_off = uint64_t(s.image) * run.out_stride;
    bool compute = false;                           // this step's linear-unit call
    LinearCall call = linear_call(IN_H, OUT_PROJ);  // this step's, when `compute`
    bool norm = false;  // this step's LayerNorm (LN1 or LN2): one LayerNorm unit
    uint64_t ln_g = 0;
    uint64_t ln_b = 0;
    RowSide move = SIDE_NONE;  // this step's side move on its own (expert-major)
    int move_expert_chunk = 0;
    bool copy = false;  // this step's copy of the fused classifier's second chunk
    switch (pc) {
      case PC_TAIL:
        if (stop == here + STAGE_ATTN) {
          wr = WR_H;
          pc = PC_WRITE;
          break;
        }
        call = proj_call(blk);
        call.scale = scale_of(lin.scales, SCALE_AT[s.block].proj);
        compute = true;
        wr = WR_X;
        pc = stop == here + STAGE_PROJ ? PC_WRITE : PC_LN2;
        break;
      case PC_LN2:
        norm = true;
        ln_g = blk.ln2_g;
        ln_b = blk.ln2_b;
        wr = WR_H;
        pc = stop == here + STAGE_LN2 ? PC_WRITE : IS_MOE[s.block] ? PC_GATE : PC_FC1;
        break;
      case PC_GATE:
        call = gate_call(blk, run.task);
        call.scale = scale_of(lin.scales, SCALE_AT[s.block].gate[run.task]);
        compute = true;
        wr = WR_GATE;
        pc = stop == here + STAGE_GATE ? PC_WRITE : PC_ROUTE;
        break;
      case PC_ROUTE:
        route_tokens<WIDE_COLS>(buf.wide, lane.routing);
        if (seg.park) {
          parks = true;
          pc = PC_IMAGE_DONE;
          break;
        }
        e = first_used(lane.routing.count);  // an unused expert is never read
        pc = e < NUM_EXPERTS ? PC_EXPERT_FC1 : PC_TAIL_END;
        break;
      case PC_EXPERT_FC1:
        call = expert_fc1_call(blk, e, lane.routing.count[e]);
        call.scale = scale_of(lin.scales, expert_scale_at(s.block, e, false));
        compute = true;
        pc = PC_EXPERT_FC2;
        break;
      case PC_EXPERT_FC2: {
        // fc2's last tiles fetch the next used expert's first ones
        const int next = next_used(lane.routing.count, e);
        call = expert_fc2_call(blk, e, lane.routing.count[e], next);
        call.scale = scale_of(lin.scales, expert_scale_at(s.block, e, true));
        compute = true;
        e = next;
        pc = e < NUM_EXPERTS ? PC_EXPERT_FC1 : PC_TAIL_END;
        break;
      }
      case PC_FC1:
        call = fc1_call(blk);
        call.scale = scale_of(lin.scales, SCALE_AT[s.block].fc1);
        compute = true;
        pc = PC_FC2;
        break;
      case PC_FC2:
        call = fc2_call(blk);
        call.scale = scale_of(lin.scales, SCALE_AT[s.block].fc2);
        compute = true;
        pc = PC_TAIL_END;
        break;
      case PC_TAIL_END:
        if (stop == here + STAGE_MLP || s.block + 1 == DEPTH) {  // a stop, or the final tokens
          wr = WR_X;
          pc = PC_WRITE;
          break;
        }
        s.block += 1;
        pc = PC_HEAD;
        break;
      case PC_HEAD:
        norm = true;
        ln_g = blk.ln1_g;
        ln_b = blk.ln1_b;
        wr = WR_H;
        pc = stop == here + STAGE_LN1 ? PC_WRITE : PC_QKV;
        break;
      case PC_QKV:
        // qkv's last passes fetch the first tiles of the proj that follows on this lane
        call = qkv_call(blk, proj_ahead(ahead, s.block));
        call.scale = scale_of(lin.scales, SCALE_AT[s.block].qkv);
        compute = true;
        wr = WR_QKV;
        if (stop == here + STAGE_QKV) {
          pc = PC_WRITE;
        } else {
          s.state = SET_ATTN;
          pc = PC_END;
        }
        break;
      case PC_WRITE:
        switch (wr) {
          case WR_X:
            write_rows<EMBED_DIM, EMBED_DIM, X_BANKS>(output, out_off, buf.x, NUM_TOKENS);
            break;
          case WR_H:
            write_rows<EMBED_DIM, EMBED_DIM, H_BANKS>(output, out_off, buf.h, NUM_TOKENS);
            break;
          case WR_QKV:
            write_rows<3 * EMBED_DIM, WIDE_COLS, WIDE_BANKS>(output, out_off, buf.wide, NUM_TOKENS);
            break;
          default:
            write_rows<NUM_EXPERTS, WIDE_COLS, WIDE_BANKS>(output, out_off, buf.wide, NUM_TOKENS);
            break;
        }
        // a decoding call: the final tokens stay at the start of the region, the decoder's
        // output follows them
        pc = run.decode ? PC_DEC_NORM : PC_IMAGE_DONE;
        break;
      case PC_DEC_NORM:
        norm = true;
        ln_g = dtask.norm_g;
        ln_b = dtask.norm_b;
        dec.conv = 0;
        dec.y0 = 0;
        dec.x0 = 0;
        dec.chunk = 0;
        dec.loaded = 0;
        pc = run.dec_stop == uint32_t(dtask.norm_stop) ? PC_DEC_STORE : PC_DEC_BAND;
        break;
      case PC_DEC_BAND: {
        const DecConv& cv = dtask.conv[dec.conv];
        // its window is in the ring (the side lane's turn before: decoder_io), or conv_0's
        // is the token grid in h
        dec_window(cv, dec.conv == 0, dec.y0, dec.x0, win, band_rows);
        // a band as wide as the map leaves its window's rows in the ring for the next
        dec.loaded = cv.band_cols == cv.w ? win.wy1 : 0;
        dec.chunk = 0;
        pc = cv.fused_up && run.dec_stop == uint32_t(cv.up_stop) ? PC_DEC_STORE : PC_DEC_CONV;
        break;
      }
      case PC_DEC_CONV: {
        const DecConv& cv = dtask.conv[dec.conv];
        call = dec_conv_call(cv, dec.conv == 0, dec.conv + 1 == dtask.convs, win, band_rows,
                             dec.chunk);
        if (dec_keeps(run, dtask, dec.conv) && dec.chunk == 0) {
          // the first chunk stays in h (for the side lane's store, or the fused classifier),
          // the second in x
          call.out = OUT_CONV_H;
        }
        call.scale = scale_of(lin.scales, cv.scale);
        compute = true;
        pc = PC_DEC_STORE;
        break;
      }
      case PC_DEC_FUSE: {
        // the band's second chunk beside its first, then the classifier over both
        const DecConv& cls = dtask.conv[dec.conv + 1];
        dec_fuse_window(dtask.conv[dec.conv], cls, dec.y0, win);
        copy = true;  // the copy, before the call
        call = dec_conv_call(cls, false, true, win, 1, 0);
        call.scale = scale_of(lin.scales, cls.scale);
        compute = true;
        logits_ready = true;
        pc = PC_DEC_STORE;
        break;
      }
      case PC_DEC_STORE: {
        // what the step before left: the LayerNorm's grid, a band's upsampled window, or a
        // chunk of a band's outputs in x
        const DecConv& cv = dtask.conv[dec.conv];
        const bool at_norm = run.dec_stop == uint32_t(dtask.norm_stop);
        const bool at_up = !at_norm && cv.fused_up && run.dec_stop == uint32_t(cv.up_stop);
        const bool last = dec.conv + 1 == dtask.convs;
        const bool to_output = last || run.dec_stop == uint32_t(cv.stop);
        const bool fusing = dec.conv == fused_conv;          // its outputs stay on chip
        const bool keeps = dec_keeps(run, dtask, dec.conv);  // for the side lane, or fusing
        const bool logits = logits_ready;
        logits_ready = false;
        if (at_norm) {
          dec_store_norm(output, out_off + dec_out, buf.h);
          pc = PC_IMAGE_DONE;
          break;
        }
        // (a fusing convolution's up stop never fuses, and it is neither the last nor a stop)
        if (at_up) {
          dec_store_ring(output, out_off + dec_out, cv, win, band_rows, buf.wide);
        } else if (logits || to_output) {
          // the stage's chunk, or the fused classifier's logits (its one chunk; the band's one
          // row): one call site of the output store
          dec_store_band<PORT_OUTPUT, X_BANKS>(output, out_off + dec_out,
                                               logits ? dtask.conv[dec.conv + 1] : cv, win,
                                               band_rows, logits ? 0 : dec.chunk, buf.x);
        } else if (keeps) {
          // nothing stored now: the band's chunks are in h and x, for the classifier or the
          // side lane's turn
        } else {  // conv_0 (its calls read the grid in h): each chunk from x, in turn
          dec_store_band<PORT_SCRATCH, X_BANKS>(scratch, s.maps + DEC_MAP_OFF[cv.dst_map], cv, win,
                                                band_rows, dec.chunk, buf.x);
        }
        // the next chunk, band, convolution, or the end
        const int chunks = (cv.c_out + DEC_CHUNK - 1) / DEC_CHUNK;
        if (!at_up && !logits && dec.chunk + 1 < chunks) {
          dec.chunk += 1;
          pc = PC_DEC_CONV;
          break;
        }
        if (fusing && !logits) {
          pc = PC_DEC_FUSE;
          break;
        }
        s.done = dec;  // the band just computed
        s.dec_store = keeps && !fusing && !at_up;
        dec.x0 += cv.band_cols;
        if (dec.x0 >= cv.w) {
          dec.x0 = 0;
          dec.y0 += cv.band_rows;
        }
        const bool conv_done = dec.y0 >= cv.h;
        if (conv_done && (last || to_output || at_up || fusing)) {
          pc = PC_IMAGE_DONE;  // the stage the call returns is out
          break;
        }
        if (conv_done) {
          dec.conv += 1;
          dec.y0 = 0;
          dec.x0 = 0;
          dec.loaded = 0;
        }
        // the next band's window (and this one's outputs) in the side lane's turn
        s.state = SET_DEC_IO;
        pc = PC_END;
        break;
      }
      case PC_IMAGE_DONE: {
        bool resumed = false;
        if (parks) {
          const uint32_t next = s.image + 2;
          resumed = next < seg.last && seg.from > 0;  // its parked x comes back as this one parks
          parked = s.block;
          park_image(output, out_off, scratch, uint64_t(s.image - seg.first) * SCRATCH_SLOT,
                     resumed, uint64_t(next) * run.out_stride, buf, lane.routing);
          parks = false;
        }
        next_image(seg, resumed, s);
        pc = (!from_load && s.state == SET_LOAD) ? PC_LOAD : PC_END;
        break;
      }
      case PC_LOAD:
        from_load = true;
        s.block = seg.from;
        if (seg.from == 0) {
          lin.ahead.count = 0;  // nothing fetched ahead survives into another image
          embed_load(bundle, images, s.image, buf, lane);
          pc = PC_EMBED;
        } else {
          if (!s.on_chip) {
            resume_image(output, out_off, buf);
          }
          // from past the last block: a decoding call's images, their final tokens back
          // from their output regions (expert-major), go on to the decoder
          const bool decode = seg.from == DEPTH;
          s.block = decode ? DEPTH - 1 : s.block;
          pc = decode ? PC_DEC_NORM : PC_HEAD;
        }
        break;
      case PC_EMBED:
        call = embed_call();
        call.scale = scale_of(lin.scales, SCALE_PATCH);
        compute = true;
        wr = WR_X;
        pc = stop == 0 ? PC_WRITE : PC_HEAD;
        break;
      case PC_GROUP: {
        lin.ahead.count = 0;
      group_counts:
        for (int b = 0; b < group_size; ++b) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_GROUP
          ddr_read<PORT_SCRATCH, 4, true>(scratch, uint64_t(b) * SCRATCH_SLOT + SCRATCH_COUNT,
                                          NUM_EXPERTS, count[b]);
        }
        start_walk(walk);
        cur = 0;
        e = next_expert_chunk(scratch, group_out, run.out_stride, group_size, count, walk,
                              lane.expert_chunk[cur]);
        move = SIDE_GATHER;  // nothing to hide it behind
        move_expert_chunk = cur;
        pc = e < NUM_EXPERTS ? PC_GROUP_FC1 : PC_GROUP_MERGE;
        break;
      }
      case PC_GROUP_FC1:
        // fc1 of expert chunk cur merges expert chunk cur ^ 1 (the one before) into its tokens' x
        call = expert_chunk_fc1_call(blk, e, lane.expert_chunk[cur].rows, !first_expert_chunk, cur);
        call.scale = scale_of(lin.scales, expert_scale_at(group, e, false));
        compute = true;
        pc = PC_GROUP_FC2;
        break;
      case PC_GROUP_FC2: {
        // the next expert chunk (this expert's next, or the next expert's first) and its weights;
        // fc2 of expert chunk cur gathers its h meanwhile
        const int next = next_expert_chunk(scratch, group_out, run.out_stride, group_size, count,
                                           walk, lane.expert_chunk[cur ^ 1]);
        call = expert_chunk_fc2_call(blk, e, lane.expert_chunk[cur].rows, cur, next);
        call.scale = scale_of(lin.scales, expert_scale_at(group, e, true));
        compute = true;
        cur ^= 1;
        e = next;
        first_expert_chunk = false;
        pc = e < NUM_EXPERTS ? PC_GROUP_FC1 : PC_GROUP_MERGE;
        break;
      }
      default:  // PC_GROUP_MERGE: the last expert chunk's merge
        move = SIDE_MERGE;
        move_expert_chunk = cur ^ 1;
        pc = PC_END;
        break;
    }
    // the units with more than one step's use, each called from this one place
    if (norm) {
      layernorm_block(bundle, ln_g, ln_b, buf);
    }
    if (move != SIDE_NONE) {
      move_rows(move, lane.expert_chunk[move_expert_chunk], output, scratch, buf.x, buf.h);
    }
    if (copy) {  // before the call: the fused classifier reads what its copy wrote (no DDR)
      dec_load_window<PORT_SCRATCH>(scratch, 0, dtask.conv[dec.conv + 1], win, 0, true, buf.x,
                                    buf.h, buf.wide);
    }
    if (compute) {
      linear_unit(call, bundle, output, scratch, buf, lane, lin.ahead, lin.wtile);
    }
  }
}

/// The side lane: the attention of the image in these buffers, if it is its turn, or its
/// decoder's band I/O between two of its bands (decoder_io, through the maps port).
inline void side_lane(bool attend, bool dec_io, const DecIo& io, word_t* maps,
                      act_t wide[NUM_TOKENS][WIDE_COLS], act_t h[NUM_TOKENS][EMBED_DIM],
                      act_t x[NUM_TOKENS][EMBED_DIM]) {
#pragma HLS INLINE off  // the lane is a DATAFLOW process: a module of its own
  if (attend) {
    attention(wide, h);
  } else if (dec_io) {
    decoder_io(io, maps, x, h, wide);
  }
}

/// The two lanes side by side: they share no buffer, no port and no table (each reads its
/// own ROM copies; the side lane's decoder entries come in `io`), so each array and each
/// m_axi argument of the region has one process that reads or writes it (the side lane
/// maps, the linear lane the others: UG1448 200-992).
inline void lanes(bool attend, bool dec_io, const DecIo& io, act_t att_wide[NUM_TOKENS][WIDE_COLS],
                  act_t att_h[NUM_TOKENS][EMBED_DIM], act_t att_x[NUM_TOKENS][EMBED_DIM],
                  const word_t* bundle, const word_t* images, word_t* output, word_t* scratch,
                  word_t* maps, const Run& run, const Segment& seg, const ProjAhead& ahead,
                  int group, BufferSet& lin, int& parked, Buffers& lin_buf, LaneBuffers& lane,
                  LinearState& lin_state) {
#pragma HLS INLINE off  // the DATAFLOW region stays a module (UG1399 "pragma HLS dataflow")
#pragma HLS DATAFLOW    // one image attends or moves its bands while the other uses the linear unit
  side_lane(attend, dec_io, io, maps, att_wide, att_h, att_x);
  linear_lane(bundle, images, output, scratch, run, seg, ahead, group, lin, parked, lin_buf, lane,
              lin_state);
}

/// The side lane's decoder turn of buffer set `s` (SET_DEC_IO): the band it computed last
/// (if its outputs wait) and the next one, with their table entries.
inline DecIo dec_io_of(const Run& run, const BufferSet& s) {
  const DecTask& dtask = DECODER[run.task];
  DecIo io;
  io.store = s.dec_store;
  io.st = dtask.conv[s.done.conv];
  io.st_y0 = s.done.y0;
  io.st_x0 = s.done.x0;
  io.ld = dtask.conv[s.dec.conv];
  io.ld_y0 = s.dec.y0;
  io.ld_x0 = s.dec.x0;
  io.ld_from = s.dec.loaded;
  io.maps = s.maps;
  return io;
}

/// One step: buffer set `att` attends (if that is its turn) beside set `lin`'s linear turn (or,
/// with group != NO_GROUP, the group's expert-major MoE).
inline void lane_step(const word_t* bundle, const word_t* images, word_t* output, word_t* scratch,
                      word_t* maps, const Run& run, const Segment& seg, int group, BufferSet& att,
                      Buffers& att_buf, BufferSet& lin, Buffers& lin_buf, int& parked,
                      LaneBuffers& lane, LinearState& lin_state) {
  // Not inlined, so that the ALLOCATION in run_images can share it: UG1399 (ALLOCATION)
  // limits only functions that are not inlined, and a small function may be inlined
  // automatically unless INLINE off says otherwise.
  // The cost of the sharing (hls/README.md, F11): the two call sites swap the buffer
  // sets, so each memory port of x, h and wide that both lanes use (the side lane's
  // decoder turn uses all three) takes a 2:1 mux on its address/enables (and data on the
  // port both write), and each port the instance reads a 2:1 mux on its data: about
  // 16.2 k mux bits.
#pragma HLS INLINE off
  const bool attend = att.state == SET_ATTN;
  const bool dec_io = att.state == SET_DEC_IO;
  const DecIo io = dec_io_of(run, att);
  // the linear lane's call after this turn's last qkv: the attending image's proj; with
  // the other set idle, this set's own proj (after its own attention)
  ProjAhead ahead;
  ahead.kind = attend ? AHEAD_ATTENDING : att.state == SET_IDLE ? AHEAD_OWN : AHEAD_NONE;
  ahead.block = att.block;
  lanes(attend, dec_io, io, att_buf.wide, att_buf.h, att_buf.x, bundle, images, output, scratch,
        maps, run, seg, ahead, group, lin, parked, lin_buf, lane, lin_state);
  if (attend) {
    att.state = SET_TAIL;
  }
  if (dec_io) {
    att.state = SET_DEC;  // its next band's window is in its ring
  }
}

/// Images [first, last) of a call on the two buffer sets: step k gives the linear lane to set
/// k % 2 and the side lane to the other. Expert-major (`park`): the images run to the
/// routing of the next MoE block and park; then a step with both sets idle runs that
/// block's experts over the group on the linear lane; then the images go on from there.
inline void run_images(const word_t* bundle, const word_t* images, word_t* output, word_t* scratch,
                       word_t* maps, const Run& run, uint32_t first, uint32_t last, bool park,
                       Buffers& buf_a, Buffers& buf_b, LaneBuffers& lane, LinearState& lin_state) {
#pragma HLS ALLOCATION function instances = lane_step limit = 1  // one pair of lanes, swapped
  Segment seg = {first, last, 0, park};
  BufferSet a = buffer_set(SET_LOAD, first, 0, 0);
  BufferSet b = buffer_set(first + 1 < last ? SET_LOAD : SET_IDLE, first + 1, 0, DEC_SET_BYTES);
  int parked = NOT_PARKED;
  bool a_linear = true;  // whose turn the linear lane is
segment_steps:
  for (;;) {
#pragma HLS LOOP_TRIPCOUNT min = 2 max = 2 * (MAX_GROUP + 1) * (DEPTH + 1)
    const bool idle = a.state == SET_IDLE && b.state == SET_IDLE;
    if (idle && parked == NOT_PARKED) {
      break;  // every image wrote its output
    }
    const int group = idle ? parked : NO_GROUP;  // the parked group's experts (in buf_a)
    if (a_linear || idle) {
      lane_step(bundle, images, output, scratch, maps, run, seg, group, b, buf_b, a, buf_a, parked,
                lane, lin_state);
    } else {
      lane_step(bundle, images, output, scratch, maps, run, seg, group, a, buf_a, b, buf_b, parked,
                lane, lin_state);
    }
    a_linear = !a_linear;
    if (idle) {
      if (parked + 1 == DEPTH && !run.decode) {
        break;  // the last block: the experts left the final tokens in the output regions
      }
      // (a decoding call: the images come back from past the last block for the decoder)
      // the images go on from the block after, starting again with set a's linear turn
      seg.from = parked + 1;
      parked = NOT_PARKED;
      const int block = seg.from < DEPTH ? seg.from : DEPTH - 1;  // a valid BLOCK index
      a = buffer_set(SET_LOAD, first, block, 0);
      b = buffer_set(first + 1 < last ? SET_LOAD : SET_IDLE, first + 1, block, DEC_SET_BYTES);
      a_linear = true;
    }
  }
}

}  // namespace edgemoe

#endif  // EDGEMOE_LANES_H_
