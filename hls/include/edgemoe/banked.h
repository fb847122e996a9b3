// Access to a row of a cyclic-partitioned buffer at a column known only at run time.
//
// UG1399 "pragma HLS array_partition": with `cyclic factor = B`, element c of the
// partitioned dimension lives in bank c % B. An unrolled lane l that reads or writes
// column c0 + l with a run-time c0 therefore reaches a bank known only at run time, and
// Vitis has to connect every lane to every bank (and cannot prove two lanes apart: the
// II misses of UG1448 200-885 / 200-880). These helpers unroll over the *banks* instead:
// bank b (a compile-time constant) is written or read at the row of the one lane l that
// lands in it, and the lane's value goes through a rotate network (a mux of
// B / gcd(GRAIN, B) inputs per bank, GRAIN being a known divisor of c0). Every subscript
// into the buffer is `addr * B + b`: bank b, whatever c0 is.
//
// The row inside bank b needs no division per bank: with c0 = q * B + phase, the lane
// landing in bank b sits at row q when b >= phase and at row q + 1 when b < phase (it
// wrapped past the last bank). So a walk divides once, narrow (bank_at: c0 / G by a
// constant, which folds when the caller forms c0 as n * GRAIN, then one division of that
// by B / G phases -- a shift when B / G is a power of two), never once per bank.
// A caller that moves along a row by a constant step keeps a BankAt and advances it
// (bank_advance: an add and a compare, no division at all).
// With LANES > B a bank takes ROUNDS = ceil(LANES / B) accesses (the loop's II must allow
// them; the default build has one round everywhere but the attention head loads, II = 2).
#ifndef EDGEMOE_BANKED_H_
#define EDGEMOE_BANKED_H_

#include "edgemoe/fixed.h"

namespace edgemoe {

/// Column bits of any banked row (buffers.h checks every row length against it): the
/// width of the one division a walk makes.
constexpr int BANK_COL_BITS = 16;

/// Greatest common divisor at compile time (a template, so no run-time recursion).
template <int A, int B>
struct Gcd {
  static constexpr int value = Gcd<B, A % B>::value;
};
template <int A>
struct Gcd<A, 0> {
  static constexpr int value = A;
};

/// Where column c0 lies in a row banked cyclic BANKS: c0 = row * BANKS + phase.
struct BankAt {
  int row;    ///< c0 / BANKS: the row inside bank b >= phase (b < phase: row + 1)
  int phase;  ///< c0 % BANKS: the bank of column c0, a multiple of gcd(GRAIN, BANKS)
};

/// BankAt of a column c0 that GRAIN divides, 0 <= c0 < 2^BANK_COL_BITS: one narrow
/// division by BANKS / gcd(GRAIN, BANKS); only BANKS / gcd phases exist.
template <int BANKS, int GRAIN>
inline BankAt bank_at(int c0) {
#pragma HLS INLINE  // part of the caller's walk
  constexpr int G = Gcd<GRAIN, BANKS>::value;
  constexpr int PHASES = BANKS / G;
  typedef uint<BANK_COL_BITS> col_t;
  const col_t m = col_t(c0 / GRAIN) * col_t(GRAIN / G);  // c0 / G: folds for c0 = n * GRAIN
  const col_t q = m / PHASES;  // div: the walk's one division, BANK_COL_BITS wide, once per walk
  BankAt at;
  at.row = int(q);
  at.phase = int(m - q * PHASES) * G;
  return at;
}

/// Advance `at` by STEP columns (a constant): an add and a compare, no division.
template <int BANKS, int STEP>
inline void bank_advance(BankAt& at) {
#pragma HLS INLINE
  static_assert(STEP >= 0 && STEP < BANKS, "one wrap at most");
  const int p = at.phase + STEP;
  const bool wrap = p >= BANKS;
  at.phase = wrap ? p - BANKS : p;
  at.row = wrap ? at.row + 1 : at.row;
}

/// Direction of a bank walk: into the row (store_lanes) or out of it (load_lanes).
enum BankDir { TO_ROW, FROM_ROW };

/// One lane's move in a bank walk: element `at` of the row (in bank `at % BANKS`), lane l
/// of vals.
template <BankDir DIR>
struct BankMove;
template <>
struct BankMove<TO_ROW> {
  template <typename T, typename V>
  static void move(T* row, int at, const V* vals, int l) {
    row[at] = vals[l];
  }
};
template <>
struct BankMove<FROM_ROW> {
  template <typename T, typename V>
  static void move(const T* row, int at, V* vals, int l) {
    vals[l] = V(row[at]);
  }
};

/// The walk store_lanes and load_lanes share: bank by bank (each bank's index a
/// constant), the lanes l < n that land in it, moved in direction DIR, the row inside the
/// bank from `at` without a division. R and W carry the constness of the direction.
template <BankDir DIR, int BANKS, int LANES, typename R, typename W>
inline void bank_walk(R* row, BankAt at, int n, W* vals) {
#pragma HLS INLINE  // row is a run-time sub-array of the caller's buffer (x[r], wide[r])
  constexpr int ROUNDS = (LANES + BANKS - 1) / BANKS;  // div: constexpr, no hardware
bank_walk_banks:
  for (int b = 0; b < BANKS; ++b) {
#pragma HLS UNROLL  // one port per bank, its bank index b a constant
    const bool wrapped = b < at.phase;
    const int first = wrapped ? b - at.phase + BANKS : b - at.phase;  // bank: the lane for b
    const int base = wrapped ? at.row + 1 : at.row;                   // bank: the row inside bank b
  bank_walk_rounds:
    for (int k = 0; k < ROUNDS; ++k) {
#pragma HLS UNROLL
      const int l = first + k * BANKS;  // bank: a lane index (the rotate network's select)
      if (l < n && l < LANES) {
        BankMove<DIR>::move(row, (base + k) * BANKS + b, vals, l);  // bank: b, a constant
      }
    }
  }
}

/// The rotate network of a store on its own: for each bank b (a constant) and round k,
/// entry k * BANKS + b: the value bound for it (`vals[l]`, l the lane landing there),
/// whether one lands (`en`) and the row inside the bank (`row`), for lanes l < n from
/// column c0 (its BankAt); rounds past the lanes' own (OUT_ROUNDS is the caller's array
/// size) land nothing. One network can then feed the same-shaped banks of more than one
/// buffer.
template <int BANKS, int LANES, int OUT_ROUNDS, typename V>
inline void bank_route(BankAt at, int n, const V vals[LANES], V out[OUT_ROUNDS * BANKS],
                       bool en[OUT_ROUNDS * BANKS], int row[OUT_ROUNDS * BANKS]) {
#pragma HLS INLINE
  static_assert(OUT_ROUNDS * BANKS >= LANES, "every lane has a round");
bank_route_banks:
  for (int b = 0; b < BANKS; ++b) {
#pragma HLS UNROLL  // bank b, a constant
    const bool wrapped = b < at.phase;
    const int first = wrapped ? b - at.phase + BANKS : b - at.phase;  // bank: the lane for b
  bank_route_rounds:
    for (int k = 0; k < OUT_ROUNDS; ++k) {
#pragma HLS UNROLL
      const int l = first + k * BANKS;  // bank: a lane index (the rotate network's select)
      const int e = k * BANKS + b;
      row[e] = (wrapped ? at.row + 1 : at.row) + k;
      en[e] = l < n && l < LANES;
      out[e] = en[e] ? vals[l] : V(0);  // bank: the rotate network's select
    }
  }
}

/// The walk of bank_walk for a phase known to be a multiple of G (a divisor of BANKS): only PHASES
/// = BANKS / G phases exist, and the select is written per phase -- for each bank, each phase p (a
/// constant after unrolling) moves one constant lane -- so each bank (store) or lane (load) takes a
/// PHASES:1 select on `k` = phase / G (a shift for the default build's G = 4 and 8) instead of a
/// select indexed by a run-time lane or bank number (which Vitis sizes by the index's range). The
/// phase's one row step is the same.
template <BankDir DIR, int BANKS, int LANES, int G, typename R, typename W>
inline void bank_walk_phased(R* row, BankAt at, int n, W* vals) {
#pragma HLS INLINE  // row is a run-time sub-array of the caller's buffer
  static_assert(BANKS % G == 0, "G divides BANKS");
  static_assert(LANES <= BANKS, "one round");
  constexpr int PHASES = BANKS / G;
  typedef uint<BANK_COL_BITS> col_t;
  const int k = int(col_t(at.phase) / col_t(G));  // div: by a constant (a shift when G = 2^n)
bank_walk_phased_banks:
  for (int b = 0; b < BANKS; ++b) {
#pragma HLS UNROLL  // one port per bank, its bank index b a constant
  bank_walk_phased_phases:
    for (int p = 0; p < PHASES; ++p) {
#pragma HLS UNROLL  // phase p * G, a constant: the lane landing in bank b is a constant
      const bool wrapped = b < p * G;
      const int l = wrapped ? b - p * G + BANKS : b - p * G;  // a constant
      if (k == p && l < LANES && l < n) {
        BankMove<DIR>::move(row, (wrapped ? at.row + 1 : at.row) * BANKS + b, vals, l);
      }
    }
  }
}

/// row[c0 + l] = vals[l] for l < n, row banked cyclic BANKS, c0 given as its BankAt.
template <int BANKS, int LANES, typename T, typename V>
inline void store_lanes_at(T* row, BankAt at, int n, const V vals[LANES]) {
#pragma HLS INLINE
  bank_walk<TO_ROW, BANKS, LANES>(row, at, n, vals);
}

/// vals[l] = row[c0 + l] for l < n, c0 given as its BankAt (see load_lanes).
template <int BANKS, int LANES, typename T, typename V>
inline void load_lanes_at(const T* row, BankAt at, int n, V vals[LANES]) {
#pragma HLS INLINE
  bank_walk<FROM_ROW, BANKS, LANES>(row, at, n, vals);
}

/// row[c0 + l] = vals[l] for l < n, row banked cyclic BANKS.
/// \tparam BANKS the row's cyclic partition factor
/// \tparam LANES values offered (n <= LANES)
/// \tparam GRAIN a divisor of every c0 the caller passes (narrows the rotate network)
/// \param row one row of the buffer (the partitioned dimension)
/// \param c0 first column, a multiple of GRAIN
/// \param n values to store, 0..LANES
template <int BANKS, int LANES, int GRAIN, typename T, typename V>
inline void store_lanes(T* row, int c0, int n, const V vals[LANES]) {
#pragma HLS INLINE  // row is a run-time sub-array of the caller's buffer
  bank_walk<TO_ROW, BANKS, LANES>(row, bank_at<BANKS, GRAIN>(c0), n, vals);
}

/// vals[l] = row[c0 + l] for l < n (vals[l] for l >= n untouched), row banked cyclic BANKS.
/// Parameters as store_lanes.
template <int BANKS, int LANES, int GRAIN, typename T, typename V>
inline void load_lanes(const T* row, int c0, int n, V vals[LANES]) {
#pragma HLS INLINE  // row is a run-time sub-array of the caller's buffer
  bank_walk<FROM_ROW, BANKS, LANES>(row, bank_at<BANKS, GRAIN>(c0), n, vals);
}

}  // namespace edgemoe

#endif  // EDGEMOE_BANKED_H_
