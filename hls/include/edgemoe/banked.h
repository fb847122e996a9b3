// Access to a row of a cyclic-partitioned buffer at a column known only at run time.
//
// UG1399 "pragma HLS array_partition": with `cyclic factor = B`, element c of the
// partitioned dimension lives in bank c % B. An unrolled lane l that reads or writes
// column c0 + l with a run-time c0 therefore reaches a bank known only at run time, and
// Vitis has to connect every lane to every bank (and cannot prove two lanes apart: the
// II misses of UG1448 200-885 / 200-880). These helpers unroll over the *banks* instead:
// bank b (a compile-time constant) is written or read at the row `(c0 + l) / B` of the
// one lane l that lands in it, and the lane's value goes through a rotate network (a
// mux of B / gcd(GRAIN, B) inputs per bank, GRAIN being a known divisor of c0). Every
// subscript into the buffer is `addr * B + b`: bank b, whatever c0 is.
// With LANES > B a bank takes ROUNDS = ceil(LANES / B) accesses (the loop's II must allow
// them; the default build has one round everywhere but the attention head loads, II = 2).
#ifndef EDGEMOE_BANKED_H_
#define EDGEMOE_BANKED_H_

namespace edgemoe {

/// Greatest common divisor at compile time (a template, so no run-time recursion).
template <int A, int B>
struct Gcd {
  static constexpr int value = Gcd<B, A % B>::value;
};
template <int A>
struct Gcd<A, 0> {
  static constexpr int value = A;
};

/// c0 % BANKS for a c0 that GRAIN divides, written so that only BANKS / G phases exist.
template <int BANKS, int GRAIN>
inline int bank_phase(int c0) {
  constexpr int G = Gcd<GRAIN, BANKS>::value;
  return ((c0 / GRAIN) * (GRAIN / G) % (BANKS / G)) * G;
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
/// constant), the lanes l < n that land in it, moved in direction DIR.
/// Parameters as store_lanes; R and W carry the constness of the direction.
template <BankDir DIR, int BANKS, int LANES, int GRAIN, typename R, typename W>
inline void bank_walk(R* row, int c0, int n, W* vals) {
  constexpr int ROUNDS = (LANES + BANKS - 1) / BANKS;
  const int phase = bank_phase<BANKS, GRAIN>(c0);
bank_walk_banks:
  for (int b = 0; b < BANKS; ++b) {
#pragma HLS UNROLL  // one port per bank, its bank index b a constant
    const int first = b >= phase ? b - phase : b - phase + BANKS;  // bank: the lane for bank b
  bank_walk_rounds:
    for (int k = 0; k < ROUNDS; ++k) {
#pragma HLS UNROLL
      const int l = first + k * BANKS;  // bank: a lane index (the rotate network's select)
      if (l < n && l < LANES) {
        const int addr = (c0 + l) / BANKS;                    // bank: the row inside bank b
        BankMove<DIR>::move(row, addr * BANKS + b, vals, l);  // bank: b, a constant
      }
    }
  }
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
  bank_walk<TO_ROW, BANKS, LANES, GRAIN>(row, c0, n, vals);
}

/// vals[l] = row[c0 + l] for l < n (vals[l] for l >= n untouched), row banked cyclic BANKS.
/// Parameters as store_lanes.
template <int BANKS, int LANES, int GRAIN, typename T, typename V>
inline void load_lanes(const T* row, int c0, int n, V vals[LANES]) {
  bank_walk<FROM_ROW, BANKS, LANES, GRAIN>(row, c0, n, vals);
}

}  // namespace edgemoe

#endif  // EDGEMOE_BANKED_H_
