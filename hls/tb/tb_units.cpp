// Testbench of the nonlinear units, bit-exact against edgemoe.sim.units.
//
// Usage: tb_units UNIT IN.bin OUT.bin
// IN holds little-endian int64 values, OUT receives int64 values:
//   exp2      x (raw attn_score, <= 0)            -> mant, n, prob   per x
//   recip     s (>= 1)                            -> y, p            per s
//   rsqrt     v (>= 1, 2 * LN_STAT_F frac bits)   -> y, h            per v
//   gelu      x (raw act)                         -> gelu(x)
//   layernorm gamma[D], beta[D], then tokens x[D] -> normalised tokens
//   softmax   rows of NUM_TOKENS scores           -> softmax rows (act), V = identity
//   softmax_v V (NUM_TOKENS x HEAD_DIM), then rows of NUM_TOKENS scores -> softmax rows
//   scale     acc, addend, table word, in F, out F -> the epilogue's sum before saturation
//             (scale.h: addend aligned, then rounded by the call's shifts)
// Built by tests/hls/test_hls_units.py with the parameter header of the build under test;
// also usable as a Vitis csim testbench (csim argv).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "edgemoe/attention.h"
#include "edgemoe/exp2.h"
#include "edgemoe/gelu.h"
#include "edgemoe/layernorm.h"
#include "edgemoe/newton.h"
#include "edgemoe/scale.h"

using namespace edgemoe;  // NOLINT

static std::vector<int64_t> read_all(const char* path) {
  std::vector<int64_t> v;
  FILE* f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(2);
  }
  int64_t x;
  while (fread(&x, sizeof x, 1, f) == 1) {
    v.push_back(x);
  }
  fclose(f);
  return v;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: tb_units UNIT IN.bin OUT.bin\n");
    return 2;
  }
  const char* unit = argv[1];
  const std::vector<int64_t> in = read_all(argv[2]);
  std::vector<int64_t> out;
  // one split copy of each exp2 table, as a row unit or an expert lane has (exp2.h)
  static exp2_entry_t rom[1][2][EXP2_HALF];
  if (!strcmp(unit, "exp2")) {
    exp2_rom_fill<1>(EXP2_TABLE, rom);
    for (int64_t x : in) {
      wide_t mant, n;
      exp2_parts<ATTN_SCORE_F>(x, mant, n, rom[0]);
      out.push_back(mant);
      out.push_back(n);
      out.push_back(exp2_prob<ATTN_SCORE_F>(x, rom[0]));
    }
  } else if (!strcmp(unit, "recip")) {
    for (int64_t s : in) {
      wide_t y;
      int p;
      reciprocal(s, y, p, RECIP_SEED);
      out.push_back(y);
      out.push_back(p);
    }
  } else if (!strcmp(unit, "rsqrt")) {
    for (int64_t v : in) {
      wide_t y;
      int h;
      rsqrt<2 * LN_STAT_F>(v, y, h);
      out.push_back(y);
      out.push_back(h);
    }
  } else if (!strcmp(unit, "scale")) {
    ScaleTable table;
    for (size_t i = 0; i + 5 <= in.size(); i += 5) {
      table.word[0] = edgemoe::uint<16>(in[i + 2]);
      const LinearShift sh = linear_shift(scale_of(table, 0), int(in[i + 3]), int(in[i + 4]));
      out.push_back(scale_round(wide_t(in[i]) + (wide_t(in[i + 1]) << sh.addend), sh.out));
    }
  } else if (!strcmp(unit, "gelu")) {
    for (int64_t x : in) {
      out.push_back(gelu<ACT_F>(x));
    }
  } else if (!strcmp(unit, "layernorm")) {
    static param_t g[EMBED_DIM], b[EMBED_DIM];
    static act_t x[EMBED_DIM], y[EMBED_DIM];
    for (int d = 0; d < EMBED_DIM; ++d) {
      g[d] = in[d];
      b[d] = in[EMBED_DIM + d];
    }
    for (size_t t = 2 * EMBED_DIM; t + EMBED_DIM <= in.size(); t += EMBED_DIM) {
      for (int d = 0; d < EMBED_DIM; ++d) {
        x[d] = in[t + d];
      }
      layernorm_token<EMBED_DIM, LN_LANES>(x, g, b, y);
      for (int d = 0; d < EMBED_DIM; ++d) {
        out.push_back(y[d]);
      }
    }
  } else if (!strcmp(unit, "softmax")) {
    // Each row: NUM_TOKENS scores; values are one-hot rows (1.0 in attn_qkv), so the
    // output of row r reads back its HEAD_DIM first probabilities.
    static act_t v[HEAD_DIM];
    static act_t res[HEAD_DIM];
    exp2_rom_fill<1>(EXP2_TABLE_ATTN, rom);
    for (size_t r = 0; r + NUM_TOKENS <= in.size(); r += NUM_TOKENS) {
      SoftmaxRow row;
      softmax_row_init(row);
      for (int j = 0; j < NUM_TOKENS; ++j) {
        for (int d = 0; d < HEAD_DIM; ++d) {
          v[d] = (d == j) ? act_t(wide_t(1) << ATTN_QKV_F) : act_t(0);
        }
        softmax_row_update(row, attn_score_t(in[r + j]), v, rom[0]);
      }
      softmax_row_finish(row, res);
      for (int d = 0; d < HEAD_DIM; ++d) {
        out.push_back(res[d]);
      }
    }
  } else if (!strcmp(unit, "softmax_v")) {
    // V given: NUM_TOKENS rows of HEAD_DIM raw attn_qkv values first, then rows of
    // NUM_TOKENS scores (the accumulators at the extremes of V)
    static act_t vv[NUM_TOKENS][HEAD_DIM];
    static act_t res[HEAD_DIM];
    exp2_rom_fill<1>(EXP2_TABLE_ATTN, rom);
    const size_t nv = size_t(NUM_TOKENS) * HEAD_DIM;
    for (size_t i = 0; i < nv && i < in.size(); ++i) {
      vv[i / HEAD_DIM][i % HEAD_DIM] = act_t(in[i]);
    }
    for (size_t r = nv; r + NUM_TOKENS <= in.size(); r += NUM_TOKENS) {
      SoftmaxRow row;
      softmax_row_init(row);
      for (int j = 0; j < NUM_TOKENS; ++j) {
        softmax_row_update(row, attn_score_t(in[r + j]), vv[j], rom[0]);
      }
      softmax_row_finish(row, res);
      for (int d = 0; d < HEAD_DIM; ++d) {
        out.push_back(res[d]);
      }
    }
  } else {
    fprintf(stderr, "unknown unit %s\n", unit);
    return 2;
  }
  FILE* f = fopen(argv[3], "wb");
  if (!f || fwrite(out.data(), sizeof(int64_t), out.size(), f) != out.size()) {
    fprintf(stderr, "cannot write %s\n", argv[3]);
    return 2;
  }
  fclose(f);
  return 0;
}
