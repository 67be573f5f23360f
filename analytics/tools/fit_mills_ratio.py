#!/usr/bin/env python3
"""Fit and verify the Mills-ratio tables of processors/src/analytics/normal.rs.

M(y) = N(-y) / phi(y) = sqrt(pi/2) * erfcx(y / sqrt(2)), for y >= 0.

Scheme (the Rust code evaluates exactly this, in this operation order):

* 0 <= y < 40: z = y + 2 (one rounded add, used only to pick the row). The row index is read
  off the bits of z: biased exponent and the top SUB_BITS = 4 mantissa bits, minus the same
  bits of 2.0. So every binade of z is split into 16 equal rows: y in [0, 2) has rows 1/8
  wide, [2, 6) 1/4, [6, 14) 1/2, [14, 30) 1 and [30, 40) 2 -- 69 rows; narrow where M is
  least polynomial-like (near 0) and wide where it is close to 1/y. A row holds a centre
  y_c and the coefficients of a degree-9 polynomial in d = y - y_c, evaluated in short
  independent chains (as normal.rs does, for latency), with c0 added last:
      inner = (c3 + c4 d) + d^2 (c5 + c6 d) + d^4 ((c7 + c8 d) + c9 d^2)
      p = c0 + (d (c1 + c2 d) + d^2 d inner)
  d = y - y_c is exact (Sterbenz) except in row 0 for y < y_c/2, where its error is below
  1e-17 of M. The centre is moved (by at most 3% of the row) to a point where M(y_c)
  is within a few thousandths of an ulp of a double, so c0 = M(y_c) carries no rounding
  error of its own: the result's error is essentially the last add's rounding (<= 1/2 ulp)
  plus a few percent of an ulp from the rest.
  c1..c9 are a weighted minimax fit (Lawson's iteratively reweighted least squares on
  Chebyshev points, relative error, c0 held fixed) in mpmath at 50 digits; they are then
  rounded to doubles one at a time, refitting the remaining ones after each rounding.
* y >= 40 (and NaN, and y so close to 40 that y + 2 rounds to 42): the asymptotic series
  u = 1/y, t = u*u, M = u * (1 - t + 3t^2 - 15t^3 + ... - 135135 t^7) (coefficients
  (-1)^k (2k-1)!!, exact integers; truncation error < 5e-20 at y = 40). One division.
  Its rounding error is bounded by ~2.8e-16 (1/y, the series' last add, the product).

Usage:
  python3 processors/tools/fit_mills_ratio.py            # fit, print the Rust tables to stdout
  python3 processors/tools/fit_mills_ratio.py --write    # fit, rewrite the generated block of
                                                         # processors/src/analytics/normal.rs
  python3 processors/tools/fit_mills_ratio.py --verify   # check the tables in normal.rs in IEEE
                                                         # double (Python floats) against mpmath

--verify parses ROWS and TAIL out of the Rust file (so it checks what ships), evaluates the
scheme with Python floats (IEEE double, correctly rounded, no FMA -- the same as Rust
without target-cpu flags) and compares with mpmath's M(y) on a dense grid of [0, 40],
random points, points within a few ulps of every row boundary, and y > 40 (about 2.4 million
points, ~3 minutes; the fit takes ~1.5 minutes). It prints the largest relative error of
every row, of the tail and overall, and exits with status 1 if that is above 3e-16.

Needs mpmath (python3 -m pip install mpmath).
"""

import argparse
import math
import os
import random
import re
import struct
import sys
import time

import mpmath as mp

HERE = os.path.dirname(os.path.abspath(__file__))
RUST_FILE = os.path.normpath(os.path.join(HERE, "..", "src", "analytics", "normal.rs"))

Z_OFFSET = 2.0  # rows are picked from the bits of y + Z_OFFSET
SUB_BITS = 4  # 2^SUB_BITS rows per binade of z
ROW_SHIFT = 52 - SUB_BITS
DEGREE = 9  # of the row polynomials
Y_END = 40.0  # the table covers [0, Y_END); Y_END + Z_OFFSET must be a row boundary
TAIL_TERMS = 8  # terms of the asymptotic series used for y >= Y_END

FIT_DPS = 50
FIT_POINTS = 96  # Chebyshev points per row for the fit
LAWSON_ITERATIONS = 60
CENTRE_CANDIDATES = 512  # each side of the midpoint
CENTRE_STEP = 2.0**-14  # of the row width


def f2bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def bits2f(b):
    return struct.unpack("<d", struct.pack("<Q", b))[0]


ROW_BASE = f2bits(Z_OFFSET) >> ROW_SHIFT
N_ROWS = (f2bits(Y_END + Z_OFFSET) >> ROW_SHIFT) - ROW_BASE
assert bits2f((N_ROWS + ROW_BASE) << ROW_SHIFT) == Y_END + Z_OFFSET


def row_bounds(k):
    """[lo, hi) of row k in y (exact doubles)."""
    lo = bits2f((k + ROW_BASE) << ROW_SHIFT) - Z_OFFSET
    hi = bits2f((k + 1 + ROW_BASE) << ROW_SHIFT) - Z_OFFSET
    return lo, hi


def mills(y):
    """M(y) to the current mpmath precision; y is exact (a double or an mpf), y >= 0.

    erfc(y/sqrt2) * exp(y^2/2) loses about log10(y^2) digits, so the working precision grows
    with y; from 1e4 on, 16 terms of the asymptotic series are used instead (first omitted
    term < 1e-120)."""
    y = mp.mpf(y)
    if y >= 10**4:
        t = 1 / (y * y)
        return sum((-1) ** k * double_factorial_odd(k) * t**k for k in range(16)) / y
    with mp.workdps(mp.mp.dps + 10):
        m = mp.sqrt(mp.pi / 2) * mp.erfc(y / mp.sqrt(2)) * mp.exp(y * y / 2)
    return +m


def mills_quad(y):
    """Independent check of mills(): M(y) = int_0^inf exp(-y s - s^2/2) ds."""
    y = mp.mpf(y)
    return mp.quad(lambda s: mp.exp(-y * s - s * s / 2), [0, 1 / (1 + y), 8 / (1 + y), mp.inf])


def double_factorial_odd(k):
    """(2k-1)!!, with (-1)!! = 1."""
    r = 1
    for j in range(1, 2 * k, 2):
        r *= j
    return r


TAIL = [float((-1) ** k * double_factorial_odd(k)) for k in range(TAIL_TERMS)]


# ---------------------------------------------------------------------------------------------
# The scheme in IEEE double (same operations, same order as normal.rs)


def mills_f64(y, rows, tail):
    k = (f2bits(y + Z_OFFSET) >> ROW_SHIFT) - ROW_BASE  # Rust: wrapping_sub, then ROWS.get(k)
    if 0 <= k < len(rows):
        centre, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 = rows[k]
        d = y - centre
        d2 = d * d
        d4 = d2 * d2
        inner = (c3 + c4 * d) + d2 * (c5 + c6 * d) + d4 * ((c7 + c8 * d) + c9 * d2)
        return c0 + (d * (c1 + c2 * d) + d2 * d * inner)
    u = 1.0 / y
    t = u * u
    g = tail[-1]
    for c in reversed(tail[:-1]):
        g = g * t + c
    return u * g


def row_of(y, n_rows):
    k = (f2bits(y + Z_OFFSET) >> ROW_SHIFT) - ROW_BASE
    return k if 0 <= k < n_rows else n_rows  # n_rows stands for the tail


# ---------------------------------------------------------------------------------------------
# Fit


def ulp_distance(x):
    """Distance from the mpf x to the nearest double, in ulps of that double."""
    f = float(x)
    return abs(x - mp.mpf(f)) / mp.mpf(math.ulp(f)), f


def choose_centre(lo, hi):
    """A double near the row's midpoint where M is (almost) a double: (centre, M(centre))."""
    mid = (lo + hi) / 2
    step = (hi - lo) * CENTRE_STEP
    best = None
    with mp.workdps(30):
        for j in sorted(range(-CENTRE_CANDIDATES, CENTRE_CANDIDATES + 1), key=abs):
            c = mid + j * step  # exact: few significant bits
            dist, _ = ulp_distance(mills(c))
            if best is None or dist < best[0]:
                best = (dist, c)
    c = best[1]
    dist, m0 = ulp_distance(mills(c))  # again at FIT_DPS
    return c, m0, float(dist)


def solve_weighted(a_rows, rhs, weights, free):
    """Weighted least squares over the columns listed in `free`."""
    n = len(free)
    ata = mp.matrix(n, n)
    atb = mp.matrix(n, 1)
    for row, b, w in zip(a_rows, rhs, weights):
        r = [row[j] for j in free]
        for i in range(n):
            wr = w * r[i]
            atb[i] += wr * b
            for j in range(i, n):
                ata[i, j] += wr * r[j]
    for i in range(n):
        for j in range(i):
            ata[i, j] = ata[j, i]
    x = mp.lu_solve(ata, atb)
    return [x[i] for i in range(n)]


def fit_row(k):
    """Centre and the DEGREE + 1 double coefficients of row k, and its fit diagnostics."""
    lo, hi = row_bounds(k)
    centre, c0, centre_dist = choose_centre(lo, hi)
    lo_m, hi_m = mp.mpf(lo), mp.mpf(hi)
    h = (hi_m - lo_m) / 2  # a power of two: scaling by it is exact
    # Chebyshev extreme points, a hair beyond the row: y + 2 can round onto the next row
    pad = (hi_m - lo_m) * mp.mpf(2) ** -40
    a, b = lo_m - pad if lo > 0 else lo_m, hi_m + pad
    ys = [(a + b) / 2 - (b - a) / 2 * mp.cos(mp.pi * i / (FIT_POINTS - 1)) for i in range(FIT_POINTS)]
    ms = [mills(y) for y in ys]
    # unknowns: a_j = c_j * h^j (j = 1..DEGREE); relative error e = (c0 + sum a_j s^j - M) / M
    s = [(y - centre) / h for y in ys]
    a_rows = [[si**j / mi for j in range(1, DEGREE + 1)] for si, mi in zip(s, ms)]
    rhs = [(mi - c0) / mi for mi in ms]

    def residuals(coef):
        out = []
        for row, r in zip(a_rows, rhs):
            v = sum(row[j] * coef[j] for j in range(DEGREE))
            out.append(v - r)
        return out

    free = list(range(DEGREE))
    weights = [mp.mpf(1)] * FIT_POINTS
    for _ in range(LAWSON_ITERATIONS):
        coef = solve_weighted(a_rows, rhs, weights, free)
        res = residuals(coef)
        weights = [w * abs(e) for w, e in zip(weights, res)]
        total = sum(weights)
        weights = [w / total for w in weights]
    minimax = max(abs(e) for e in residuals(coef))

    # round to doubles one coefficient at a time, refitting the rest with the Lawson weights
    fixed = []
    for j in range(DEGREE):
        cj = float(coef[j] / h ** (j + 1))
        fixed.append(mp.mpf(cj) * h ** (j + 1))
        rest = list(range(j + 1, DEGREE))
        if rest:
            rhs_j = [r - sum(row[i] * fixed[i] for i in range(j + 1)) for row, r in zip(a_rows, rhs)]
            sol = solve_weighted(a_rows, rhs_j, weights, rest)
            coef = fixed + sol
    coeffs = [c0] + [float(fixed[j] / h ** (j + 1)) for j in range(DEGREE)]
    return {
        "k": k,
        "lo": lo,
        "hi": hi,
        "centre": centre,
        "coeffs": coeffs,
        "centre_ulps": centre_dist,
        "minimax": float(minimax),
    }


def exact_poly_error(row, lo, hi, n=400):
    """Max relative error of the row's double polynomial evaluated exactly (fit + coefficient
    rounding, no evaluation rounding)."""
    c = mp.mpf(row[0])
    worst = mp.mpf(0)
    for i in range(n + 1):
        y = mp.mpf(lo) + (mp.mpf(hi) - lo) * i / n
        d = y - c
        p = mp.mpf(row[DEGREE + 1])
        for j in range(DEGREE, 0, -1):
            p = p * d + row[j]
        worst = max(worst, abs(p / mills(y) - 1))
    return float(worst)


def tail_truncation_error():
    """First omitted term of the series at y = Y_END, relative."""
    return double_factorial_odd(TAIL_TERMS) / Y_END ** (2 * TAIL_TERMS)


# ---------------------------------------------------------------------------------------------
# Rust source


def rust_float(x):
    """Shortest round-trip literal (no clippy::excessive_precision), Rust exponent style."""
    s = repr(float(x))
    if "e" in s:
        mant, exp = s.split("e")
        if "." not in mant:
            mant += ".0"
        s = "%se%d" % (mant, int(exp))
    return s


BEGIN = "// BEGIN GENERATED by processors/tools/fit_mills_ratio.py -- do not edit by hand"
END = "// END GENERATED"


def rust_tables(fits):
    out = [BEGIN]
    out.append("/// Rows of [`mills_ratio`] on [0, 40): `[y_c, c0, c1, ..., c9]`, M(y) ≈ Σ c_j (y − y_c)^j.")
    out.append("#[rustfmt::skip]")
    out.append("const ROWS: [[f64; %d]; %d] = [" % (DEGREE + 2, len(fits)))
    for f in fits:
        vals = [rust_float(f["centre"])] + [rust_float(c) for c in f["coeffs"]]
        out.append("    // %d: y in [%s, %s)" % (f["k"], rust_float(f["lo"]), rust_float(f["hi"])))
        lines, cur = [], "    ["
        for i, v in enumerate(vals):
            piece = v + ("," if i < len(vals) - 1 else "],")
            if len(cur) + len(piece) + 1 > 120:
                lines.append(cur.rstrip())
                cur = "     "
            cur += piece + " "
        lines.append(cur.rstrip())
        out.extend(lines)
    out.append("];")
    out.append("")
    out.append("/// The asymptotic series of y·M(y) in t = 1/y²: (−1)^k (2k−1)!!, k = 0..%d." % (TAIL_TERMS - 1))
    out.append("const TAIL: [f64; %d] = [%s];" % (TAIL_TERMS, ", ".join(rust_float(c) for c in TAIL)))
    out.append(END)
    return "\n".join(out)


def parse_rust(path):
    src = open(path, encoding="utf-8").read()
    num = r"-?\d+\.\d+(?:e-?\d+)?"
    m = re.search(r"const ROWS: \[\[f64; (\d+)\]; (\d+)\] = \[(.*?)\n\];", src, re.S)
    if not m:
        sys.exit("no ROWS table in %s" % path)
    width, n = int(m.group(1)), int(m.group(2))
    body = re.sub(r"//[^\n]*", "", m.group(3))
    vals = [float(v) for v in re.findall(num, body)]
    assert width == DEGREE + 2 and len(vals) == width * n, (width, n, len(vals))
    rows = [vals[i * width : (i + 1) * width] for i in range(n)]
    m = re.search(r"const TAIL: \[f64; (\d+)\] = \[(.*?)\];", src, re.S)
    tail = [float(v) for v in re.findall(num, m.group(2))]
    assert len(tail) == int(m.group(1))
    # the scheme's constants must agree with this script
    for pattern in (
        r"const Z_OFFSET: f64 = %s;" % re.escape(rust_float(Z_OFFSET)),
        r"const ROW_SHIFT: u32 = %d;" % ROW_SHIFT,
        r"const ROW_BASE: u64 = 0x%X;" % ROW_BASE,
    ):
        if not re.search(pattern, src):
            sys.exit("%s does not contain `%s`" % (path, pattern.replace("\\", "")))
    return rows, tail


# ---------------------------------------------------------------------------------------------
# Modes


def run_fit(path, write):
    mp.mp.dps = FIT_DPS
    t0 = time.time()
    fits = []
    worst = (0, None)
    print("row  y range            centre-ulps  minimax      exact(rounded coeffs)", file=sys.stderr)
    for k in range(N_ROWS):
        f = fit_row(k)
        row = [f["centre"]] + f["coeffs"]
        f["exact"] = exact_poly_error(row, f["lo"], f["hi"])
        worst = max(worst, (f["exact"], k))
        print(
            "%3d  [%-6g, %-6g)  %.4f       %.2e     %.2e" % (k, f["lo"], f["hi"], f["centre_ulps"], f["minimax"], f["exact"]),
            file=sys.stderr,
        )
        fits.append(f)
    print(
        "worst fit + coefficient rounding error: %.2e (row %d); tail truncation at y = %g: %.1e; %.0f s"
        % (worst[0], worst[1], Y_END, tail_truncation_error(), time.time() - t0),
        file=sys.stderr,
    )
    text = rust_tables(fits)
    if not write:
        print(text)
        return
    src = open(path, encoding="utf-8").read()
    i, j = src.find(BEGIN), src.find(END)
    if i < 0 or j < 0:
        sys.exit("no generated block in %s" % path)
    src = src[:i] + text + src[j + len(END) :]
    open(path, "w", encoding="utf-8").write(src)
    print("wrote %s" % path, file=sys.stderr)


def verify_points(grid, n_random, seed):
    """(label, y) pairs: the grid, random points, row boundaries, the tail."""
    rng = random.Random(seed)
    for i in range(grid):
        yield Y_END * i / grid
    for _ in range(n_random):
        yield rng.uniform(0.0, Y_END)
    for k in range(N_ROWS + 1):  # a few ulps either side of every row boundary (and of 40)
        lo, _ = row_bounds(k) if k < N_ROWS else (Y_END, None)
        x = lo
        for _ in range(64):
            yield x
            x = math.nextafter(x, math.inf)
        x = lo
        for _ in range(64):
            x = math.nextafter(x, -math.inf)
            if x >= 0:
                yield x
        for _ in range(64):
            yield lo + rng.uniform(-1e-9, 1e-9) * max(lo, 1.0) if lo > 0 else rng.uniform(0, 1e-9)
    for _ in range(n_random // 4):  # tail: log-uniform on [40, 1e8]
        yield Y_END * math.exp(rng.uniform(0.0, math.log(2.5e6)))
    for y in (Y_END, math.nextafter(Y_END, math.inf), 1e3, 1e10, 1e100, 1e300):
        yield y


def run_verify(path, grid, n_random, seed):
    mp.mp.dps = 40
    rows, tail = parse_rust(path)
    print("tables from %s: %d rows x %d, tail %d terms" % (path, len(rows), len(rows[0]), len(tail)))
    # the reference itself: erfc form vs quadrature, and M(0) = sqrt(pi/2)
    ref_check = max(abs(mills(y) / mills_quad(y) - 1) for y in (0, 0.3, 1.7, 6.5, 23, 40))
    print("reference check: erfc form vs quadrature, max relative difference %.1e" % ref_check)
    assert ref_check < 1e-25 and mills(0) == mp.sqrt(mp.pi / 2)
    mp.mp.dps = 30
    n = len(rows)
    worst = [(0.0, None)] * (n + 1)
    count = [0] * (n + 1)
    hist = {}
    t0 = time.time()
    total = 0
    for y in verify_points(grid, n_random, seed):
        r = mills_f64(y, rows, tail)
        e = abs(float(mp.mpf(r) / mills(y) - 1))
        k = row_of(y, n)
        count[k] += 1
        total += 1
        if e > worst[k][0]:
            worst[k] = (e, y)
        b = math.floor(e / 0.25e-16) if e > 0 else 0
        hist[b] = hist.get(b, 0) + 1
    print("%d points, %.0f s" % (total, time.time() - t0))
    print("row  y range          points   max rel err  at y")
    for k in range(n + 1):
        if k < n:
            lo, hi = row_bounds(k)
            label = "[%g, %g)" % (lo, hi)
        else:
            label = "[%g, inf) tail" % Y_END
        e, y = worst[k]
        print("%3s  %-16s %8d   %.3e    %r" % (k if k < n else "-", label, count[k], e, y))
    e, k = max((worst[k][0], k) for k in range(n + 1))
    print("overall max relative error: %.3e at y = %r (%s)" % (e, worst[k][1], "tail" if k == n else "row %d" % k))
    e_tab, k_tab = max((worst[k][0], k) for k in range(n))
    print("worst table row: %d, %.3e; tail: %.3e" % (k_tab, e_tab, worst[n][0]))
    print("distribution of relative errors (units of 1e-16):")
    for b in sorted(hist):
        print("  [%.2f, %.2f)  %d" % (b * 0.25, (b + 1) * 0.25, hist[b]))
    return e


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite the generated block of normal.rs")
    ap.add_argument("--verify", action="store_true", help="verify the tables in normal.rs")
    ap.add_argument("--rust", default=RUST_FILE, help="the Rust file (default: %(default)s)")
    ap.add_argument("--grid", type=int, default=2_000_000, help="grid points on [0, 40) for --verify")
    ap.add_argument("--random", type=int, default=300_000, help="random points on [0, 40) for --verify")
    ap.add_argument("--seed", type=int, default=20240601)
    args = ap.parse_args()
    if args.verify:
        e = run_verify(args.rust, args.grid, args.random, args.seed)
        sys.exit(0 if e <= 3e-16 else 1)
    run_fit(args.rust, args.write)


if __name__ == "__main__":
    main()
