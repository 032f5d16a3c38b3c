/*  fmtnum: numbers as JSON text, in their shortest round-trip form.

    Qdrant (serde_json + ryu) prints 0.1 for a stored float32 0.1, not
    0.100000001, and 0.30000000000000004 for that double. libc has no
    shortest-form printf, and finding it by trying %.6g .. %.9g with a strtof
    after each costs ~1.5 us a number: a 128-d vector took 0.2 ms to print.
    These find the same shortest digits with a few double operations: the
    candidate is the value scaled by an exact power of ten and rounded, and it
    is accepted only if it provably converts back (Clinger's exact fast path,
    with the rounding interval's midpoints, which are exact doubles, as the
    bounds). Anything outside the fast path's range falls back to the
    snprintf search, so the answer is always right.

    Layout as ryu's: plain digits for exponents -5 .. 15 ("0.0001",
    "123.5"), scientific otherwise ("1e-7", "1.5e16"); an integral value
    keeps ".0" so a real stays a real.
*/
#ifndef SH_FMTNUM_H
#define SH_FMTNUM_H

#include <stdbool.h>
#include <stddef.h>

#define FMTNUM_SIZE 40      //  room for any output, NUL included

//  Writes the shortest text that reads back (strtof) as f; returns its
//  length. Non-finite values write "null".
size_t fmtnum_float (float f, char *buf);
//  The same for a double (strtod).
size_t fmtnum_double (double d, char *buf);
//  fmtnum_double's fast path alone: true with the text in buf and its
//  length in *len when d is exactly a decimal of at most 15 significant
//  digits (what payloads and shortest-form floats give), or zero or not
//  finite; false (buf unspecified) when only the slow search would tell.
bool fmtnum_double_short (double d, char *buf, size_t *len);
//  The double nearest the shortest decimal of f: 0.1f -> 0.1, so that a
//  float stored in a JSON real prints as the float would.
double fmtnum_float_as_double (float f);

#endif
