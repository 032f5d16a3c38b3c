/*  test_fmtnum: the fast shortest-form printer must agree with the slow,
    obviously right one (fewest %.*e digits that read back) on every kind of
    value, and its text must read back exactly.
*/
#include "common/fmtnum.h"
#include "test/unit/check_main.h"
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static uint64_t s_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
s_next (void)
{
    s_state ^= s_state << 13;
    s_state ^= s_state >> 7;
    s_state ^= s_state << 17;
    return s_state;
}

//  Reference: the fewest significant digits that read back, nearest first.
static double
s_reference (double v, bool is_float, int *digits)
{
    char text [64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf (text, sizeof text, "%.*e", prec - 1, v);
        if (is_float ? strtof (text, NULL) == (float) v : strtod (text, NULL) == v) {
            *digits = prec;
            return strtod (text, NULL);
        }
    }
    ck_abort_msg ("no reference for %g", v);
    return 0;
}

static int
s_sig_digits (const char *text)
{
    int n = 0, lead = 1, trailing = 0;
    for (const char *s = text; *s && *s != 'e'; s++) {
        if (*s < '0' || *s > '9')
            continue;
        if (lead && *s == '0')
            continue;
        lead = 0;
        n++;
        trailing = *s == '0' ? trailing + 1 : 0;
    }
    return n - trailing > 0 ? n - trailing : 1;
}

static void
s_check_float (float f)
{
    if (!isfinite (f) || f == 0)
        return;
    char text [FMTNUM_SIZE];
    size_t len = fmtnum_float (f, text);
    ck_assert_uint_eq (len, strlen (text));
    ck_assert_msg (strtof (text, NULL) == f, "%s does not read back as %.9g", text, f);
    int want_digits;
    double want = s_reference (f, true, &want_digits);
    ck_assert_msg (s_sig_digits (text) == want_digits, "%s: %d digits, shortest is %d (%.9g)",
                   text, s_sig_digits (text), want_digits, f);
    ck_assert_msg (strtod (text, NULL) == want, "%s is not the nearest shortest (%.17g)", text,
                   want);
    ck_assert_msg (fmtnum_float_as_double (f) == want, "as double %.17g != %.17g",
                   fmtnum_float_as_double (f), want);
}

static void
s_check_double (double d)
{
    if (!isfinite (d) || d == 0)
        return;
    char text [FMTNUM_SIZE];
    fmtnum_double (d, text);
    ck_assert_msg (strtod (text, NULL) == d, "%s does not read back as %.17g", text, d);
    int want_digits;
    s_reference (d, false, &want_digits);
    ck_assert_msg (s_sig_digits (text) == want_digits, "%s: %d digits, shortest is %d",
                   text, s_sig_digits (text), want_digits);
}

START_TEST (test_random_float_bit_patterns_print_shortest)
{
    for (int i = 0; i < 100000; i++) {
        uint32_t bits = (uint32_t) s_next ();
        float f;
        memcpy (&f, &bits, sizeof f);
        s_check_float (f);
    }
}
END_TEST

START_TEST (test_floats_typed_by_people_print_as_typed)
{
    const struct { float f; const char *text; } cases [] = {
        { 0.1f, "0.1" }, { -0.49304536f, "-0.49304536" }, { 1.0f, "1.0" }, { 100.0f, "100.0" },
        { 0.0001f, "0.0001" }, { 1e-7f, "1e-7" }, { 1.5e20f, "1.5e20" }, { 3.14159f, "3.14159" },
        { 16777216.0f, "16777216.0" }, { 0.3f, "0.3" }, { 2.5e-5f, "0.000025" }
    };
    char text [FMTNUM_SIZE];
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        fmtnum_float (cases [i].f, text);
        ck_assert_str_eq (text, cases [i].text);
    }
    for (int i = 0; i < 100000; i++) {
        int scale = (int) (s_next () % 12);
        float f = (float) ((double) (int64_t) (s_next () % 2000001 - 1000000) / pow (10, scale));
        s_check_float (f);
    }
    //  Near powers of ten and of two, where the interval is lopsided.
    for (int e = -30; e <= 30; e++) {
        float p = (float) pow (10, e);
        s_check_float (p);
        s_check_float (nextafterf (p, 0));
        s_check_float (nextafterf (p, INFINITY));
        s_check_float (ldexpf (1.0f, e * 4));
    }
    fmtnum_float (0.0f, text);
    ck_assert_str_eq (text, "0.0");
    fmtnum_float (NAN, text);
    ck_assert_str_eq (text, "null");
}
END_TEST

START_TEST (test_doubles_print_shortest)
{
    char text [FMTNUM_SIZE];
    fmtnum_double (0.1 + 0.2, text);
    ck_assert_str_eq (text, "0.30000000000000004");
    fmtnum_double (1.5, text);
    ck_assert_str_eq (text, "1.5");
    fmtnum_double (1e300, text);
    ck_assert_str_eq (text, "1e300");
    for (int i = 0; i < 50000; i++) {
        uint64_t bits = s_next ();
        double d;
        memcpy (&d, &bits, sizeof d);
        s_check_double (d);
        int scale = (int) (s_next () % 16);
        s_check_double ((double) (int64_t) (s_next () % 20000001 - 10000000) / pow (10, scale));
        s_check_double (fmtnum_float_as_double ((float) d));
    }
}
END_TEST

static Suite *
fmtnum_suite (void)
{
    Suite *s = suite_create ("fmtnum");
    TCase *tc = tcase_create ("fmtnum");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_random_float_bit_patterns_print_shortest);
    tcase_add_test (tc, test_floats_typed_by_people_print_as_typed);
    tcase_add_test (tc, test_doubles_print_shortest);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (fmtnum_suite)
