/*  fmtnum: shortest round-trip text of floats and doubles (see fmtnum.h).  */
#include "common/fmtnum.h"
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Powers of ten exact in a double.
static const double s_pow10 [] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
};

//  digits * 10^exp10 as the correctly rounded double (Clinger: one IEEE
//  operation on two exact operands rounds once). False outside that range.
static bool
s_exact (uint64_t digits, int exp10, double *out)
{
    if (digits >= (UINT64_C (1) << 53) || exp10 < -22 || exp10 > 22)
        return false;
    double v = (double) digits;
    *out = exp10 < 0 ? v / s_pow10 [-exp10] : v * s_pow10 [exp10];
    return true;
}

//  floor (log10 (x)) for x > 0, corrected where log10 rounds across a power.
static int
s_exp10 (double x)
{
    int e = (int) floor (log10 (x));
    if (e >= 0 && e <= 22) {
        if (x < s_pow10 [e])
            e--;
        else
        if (e + 1 <= 22 && x >= s_pow10 [e + 1])
            e++;
    }
    return e;
}

//  Value `scaled` rounded to the nearest integer, and its other neighbour,
//  nearest first: the product that made `scaled` rounded once, so the true
//  nearest is one of the two.
static void
s_candidates (double scaled, uint64_t out [2])
{
    double r = nearbyint (scaled);
    out [0] = (uint64_t) r;
    out [1] = (uint64_t) (scaled >= r ? r + 1 : r - 1);
}

//  Tries the p-digit decimals nearest the positive float x (value v, with
//  rounding bounds lo and hi, decimal exponent e): 1 and the digits if one
//  reads back as x, 0 if none does, -1 if the fast path can't decide.
static int
s_float_try (double v, double lo, double hi, int e, int p, uint64_t *digits, int *exp10)
{
    int k = p - 1 - e;              //  v * 10^k has p digits before the point
    if (k < -22 || k > 22)
        return -1;
    double scaled = k >= 0 ? v * s_pow10 [k] : v / s_pow10 [-k];
    uint64_t cand [2];
    s_candidates (scaled, cand);
    for (int i = 0; i < 2; i++) {
        double d;
        if (cand [i] == 0 || !s_exact (cand [i], -k, &d))
            continue;
        //  d is the double nearest the decimal, and the bounds are doubles,
        //  so d strictly inside means the decimal is too. On a bound the
        //  decimal may be either side of it: let strtof say.
        if (d == lo || d == hi)
            return -1;
        if (d > lo && d < hi) {
            *digits = cand [i];
            *exp10 = -k;
            return 1;
        }
    }
    return 0;
}

//  The shortest digits * 10^exp10 that strtof reads back as the positive
//  float x. False when the fast path can't decide (the caller falls back).
//  If p digits read back, so do p + 1 (append a zero), so the fewest is
//  found by bisection over 1..9 (9 always suffice for a float).
static bool
s_float_digits (float x, uint64_t *digits, int *exp10)
{
    double v = (double) x;
    //  The rounding interval's bounds: midpoints to the neighbouring floats,
    //  exact in a double (24-bit operands, one bit more).
    double lo = ((double) nextafterf (x, 0.0f) + v) / 2;
    double hi = ((double) nextafterf (x, INFINITY) + v) / 2;
    if (!isfinite (hi))
        return false;
    int e = s_exp10 (v);
    int low = 1, high = 9;
    uint64_t best = 0;
    int best_exp = 0;
    bool found = false;
    while (low <= high) {
        int p = (low + high) / 2;
        uint64_t c;
        int q;
        int rc = s_float_try (v, lo, hi, e, p, &c, &q);
        if (rc < 0)
            return false;
        if (rc > 0) {
            best = c;
            best_exp = q;
            found = true;
            high = p - 1;
        }
        else
            low = p + 1;
    }
    if (!found)
        return false;
    //  A candidate can end in 0 when log10 put the value just under a power
    //  of ten (0.0001f is 9.99999974e-5).
    while (best % 10 == 0) {
        best /= 10;
        best_exp++;
    }
    *digits = best;
    *exp10 = best_exp;
    return true;
}

//  The same for a positive double: its 15-digit rounding, if that reads back
//  exactly, with trailing zeros stripped (a double that came from a decimal
//  of 15 or fewer digits, which is what payloads and floats give).
static bool
s_double_digits (double v, uint64_t *digits, int *exp10)
{
    int e = s_exp10 (v);
    int k = 14 - e;
    if (k < -22 || k > 22)
        return false;
    double scaled = k >= 0 ? v * s_pow10 [k] : v / s_pow10 [-k];
    uint64_t cand [2];
    s_candidates (scaled, cand);
    for (int i = 0; i < 2; i++) {
        double d;
        if (cand [i] == 0 || !s_exact (cand [i], -k, &d) || d != v)
            continue;
        uint64_t c = cand [i];
        int q = -k;
        while (c % 10 == 0) {
            c /= 10;
            q++;
        }
        *digits = c;
        *exp10 = q;
        return true;
    }
    return false;
}

//  Decimal digits of v into d (no NUL); returns how many.
static int
s_utoa (uint64_t v, char *d)
{
    char tmp [24];
    int n = 0;
    do {
        tmp [n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        d [i] = tmp [n - 1 - i];
    return n;
}

//  Lays out digits * 10^exp10 as ryu does; returns the length.
static size_t
s_layout (bool negative, uint64_t digits, int exp10, char *buf)
{
    char d [24];
    int n = s_utoa (digits, d);
    char *p = buf;
    if (negative)
        *p++ = '-';
    int kk = n + exp10;             //  digits before the decimal point
    if (exp10 >= 0 && kk <= 16) {
        memcpy (p, d, (size_t) n);
        p += n;
        for (int i = 0; i < exp10; i++)
            *p++ = '0';
        memcpy (p, ".0", 2);
        p += 2;
    }
    else
    if (kk > 0 && kk <= 16) {
        memcpy (p, d, (size_t) kk);
        p += kk;
        *p++ = '.';
        memcpy (p, d + kk, (size_t) (n - kk));
        p += n - kk;
    }
    else
    if (kk > -5 && kk <= 0) {
        memcpy (p, "0.", 2);
        p += 2;
        for (int i = 0; i < -kk; i++)
            *p++ = '0';
        memcpy (p, d, (size_t) n);
        p += n;
    }
    else {
        *p++ = d [0];
        if (n > 1) {
            *p++ = '.';
            memcpy (p, d + 1, (size_t) (n - 1));
            p += n - 1;
        }
        p += sprintf (p, "e%d", kk - 1);
    }
    *p = 0;
    return (size_t) (p - buf);
}

//  The slow, always-right way: fewest %.*g digits that read back.
static size_t
s_fallback (double v, bool is_float, char *buf)
{
    char text [FMTNUM_SIZE];
    //  From 1 digit for doubles too: a subnormal holds fewer than 15.
    for (int prec = 1; prec <= 17; prec++) {
        snprintf (text, sizeof text, "%.*e", prec - 1, v);
        if (is_float ? strtof (text, NULL) == (float) v : strtod (text, NULL) == v)
            break;
    }
    //  Re-lay "d.ddde±x" into digits and an exponent so every path prints
    //  the same way.
    bool negative = text [0] == '-';
    const char *s = text + negative;
    uint64_t digits = 0;
    int n_frac = 0;
    bool after_point = false;
    for (; *s && *s != 'e'; s++) {
        if (*s == '.') {
            after_point = true;
            continue;
        }
        digits = digits * 10 + (uint64_t) (*s - '0');
        n_frac += after_point;
    }
    int exp10 = (*s == 'e' ? atoi (s + 1) : 0) - n_frac;
    while (digits && digits % 10 == 0) {
        digits /= 10;
        exp10++;
    }
    return s_layout (negative, digits, exp10, buf);
}

size_t
fmtnum_float (float f, char *buf)
{
    if (!isfinite (f))
        return (size_t) sprintf (buf, "null");
    if (f == 0)
        return (size_t) sprintf (buf, signbit (f) ? "-0.0" : "0.0");
    uint64_t digits;
    int exp10;
    if (s_float_digits (fabsf (f), &digits, &exp10))
        return s_layout (f < 0, digits, exp10, buf);
    return s_fallback ((double) f, true, buf);
}

bool
fmtnum_double_short (double d, char *buf, size_t *len)
{
    if (!isfinite (d))
        *len = (size_t) sprintf (buf, "null");
    else
    if (d == 0)
        *len = (size_t) sprintf (buf, signbit (d) ? "-0.0" : "0.0");
    else {
        uint64_t digits;
        int exp10;
        if (!s_double_digits (fabs (d), &digits, &exp10))
            return false;
        *len = s_layout (d < 0, digits, exp10, buf);
    }
    return true;
}

size_t
fmtnum_double (double d, char *buf)
{
    size_t len;
    if (fmtnum_double_short (d, buf, &len))
        return len;
    return s_fallback (d, false, buf);
}

double
fmtnum_float_as_double (float f)
{
    if (!isfinite (f) || f == 0)
        return (double) f;
    uint64_t digits;
    int exp10;
    double d;
    if (s_float_digits (fabsf (f), &digits, &exp10) && s_exact (digits, exp10, &d))
        return f < 0 ? -d : d;
    char text [FMTNUM_SIZE];
    fmtnum_float (f, text);
    return strtod (text, NULL);
}
