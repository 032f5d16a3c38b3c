/*  test_distance: the four kernels against a naive double-precision
    reference on odd dimensions, normalization, parsing and ranking order.

    The runtime dispatch hands out only the fastest kernel set this CPU runs,
    so every set the CPU can run (scalar, AVX2, AVX-512 here; NEON on
    aarch64) is also fetched directly through distance_kernel_for_isa () from
    common/distance_internal.h and checked on its own: against the reference
    within a relative error bound, element by element with one-hot vectors,
    at unaligned addresses, next to an unmapped page, on zero vectors and on
    values near the top of float's range.
*/
#include "common/distance.h"
#include "common/distance_internal.h"
#include "test/unit/check_main.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const uint32_t s_dims [] = { 1, 3, 15, 16, 17, 31, 128, 1023 };
#define N_DIMS (sizeof (s_dims) / sizeof (s_dims [0]))

//  xorshift: deterministic data without touching rand ()'s global state.
static uint64_t s_rng = 88172645463325252ULL;
static float
s_randf (void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (float) ((s_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void
s_fill (float *v, uint32_t dim)
{
    for (uint32_t i = 0; i < dim; i++)
        v [i] = s_randf ();
}

static double
s_ref_dot (const float *a, const float *b, uint32_t dim)
{
    double s = 0;
    for (uint32_t i = 0; i < dim; i++)
        s += (double) a [i] * b [i];
    return s;
}

static double
s_ref_l2sq (const float *a, const float *b, uint32_t dim)
{
    double s = 0;
    for (uint32_t i = 0; i < dim; i++)
        s += ((double) a [i] - b [i]) * ((double) a [i] - b [i]);
    return s;
}

static double
s_ref_l1 (const float *a, const float *b, uint32_t dim)
{
    double s = 0;
    for (uint32_t i = 0; i < dim; i++)
        s += fabs ((double) a [i] - b [i]);
    return s;
}

//  Float sums of dim terms of magnitude <= 4 drift by about dim * eps * 4.
static double
s_tol (uint32_t dim)
{
    return 1e-5 * (dim + 1) + 1e-6;
}

START_TEST (test_kernels_match_double_reference_on_odd_dims)
{
    float *a = malloc (1023 * sizeof (float));
    float *b = malloc (1023 * sizeof (float));
    for (size_t k = 0; k < N_DIMS; k++) {
        uint32_t dim = s_dims [k];
        for (int round = 0; round < 5; round++) {
            s_fill (a, dim);
            s_fill (b, dim);
            ck_assert_double_eq_tol (distance_dot (a, b, dim), s_ref_dot (a, b, dim),
                                     s_tol (dim));
            ck_assert_double_eq_tol (distance_l2sq (a, b, dim), s_ref_l2sq (a, b, dim),
                                     s_tol (dim));
            ck_assert_double_eq_tol (distance_l1 (a, b, dim), s_ref_l1 (a, b, dim),
                                     s_tol (dim));
            ck_assert_double_eq_tol (distance_score (DIST_DOT, a, b, dim),
                                     s_ref_dot (a, b, dim), s_tol (dim));
            ck_assert_double_eq_tol (distance_score (DIST_COSINE, a, b, dim),
                                     s_ref_dot (a, b, dim), s_tol (dim));
            ck_assert_double_eq_tol (distance_score (DIST_EUCLID, a, b, dim),
                                     sqrt (s_ref_l2sq (a, b, dim)), s_tol (dim));
            ck_assert_double_eq_tol (distance_score (DIST_MANHATTAN, a, b, dim),
                                     s_ref_l1 (a, b, dim), s_tol (dim));
        }
    }
    free (a);
    free (b);
}
END_TEST

START_TEST (test_kernels_handle_unaligned_pointers)
{
    //  Rows of a slot-major array start at any multiple of 4 bytes.
    float buf [40];
    s_fill (buf, 40);
    for (uint32_t off = 0; off < 3; off++) {
        const float *a = buf + off;
        const float *b = buf + 20 + off;
        ck_assert_double_eq_tol (distance_dot (a, b, 17), s_ref_dot (a, b, 17), s_tol (17));
        ck_assert_double_eq_tol (distance_l1 (a, b, 17), s_ref_l1 (a, b, 17), s_tol (17));
    }
}
END_TEST

START_TEST (test_identical_vectors_are_at_distance_zero)
{
    float a [17];
    s_fill (a, 17);
    ck_assert_float_eq (distance_l2sq (a, a, 17), 0.0f);
    ck_assert_float_eq (distance_l1 (a, a, 17), 0.0f);
    ck_assert_float_eq (distance_score (DIST_EUCLID, a, a, 17), 0.0f);
}
END_TEST

START_TEST (test_normalize_gives_unit_length)
{
    for (size_t k = 0; k < N_DIMS; k++) {
        uint32_t dim = s_dims [k];
        float v [1023];
        s_fill (v, dim);
        v [0] = 0.75f;          //  never all (near) zero
        float orig [1023];
        for (uint32_t i = 0; i < dim; i++)
            orig [i] = v [i];
        distance_normalize (v, dim);
        ck_assert_double_eq_tol (s_ref_dot (v, v, dim), 1.0, 1e-5);
        //  Same direction: cosine with the original equals its norm.
        double norm = sqrt (s_ref_dot (orig, orig, dim));
        ck_assert_double_eq_tol (s_ref_dot (v, orig, dim), norm, 1e-4 * norm);
    }
}
END_TEST

START_TEST (test_normalize_keeps_zero_vector)
{
    float v [3] = { 0, 0, 0 };
    distance_normalize (v, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert (!isnan (v [i]));
        ck_assert_float_eq (v [i], 0.0f);
    }
    float z [1] = { 0 };
    distance_normalize (z, 1);
    ck_assert_float_eq (z [0], 0.0f);
}
END_TEST

START_TEST (test_parse_accepts_exact_names_only)
{
    ck_assert_int_eq (distance_parse ("Cosine"), DIST_COSINE);
    ck_assert_int_eq (distance_parse ("Euclid"), DIST_EUCLID);
    ck_assert_int_eq (distance_parse ("Dot"), DIST_DOT);
    ck_assert_int_eq (distance_parse ("Manhattan"), DIST_MANHATTAN);
    ck_assert_int_eq (distance_parse ("cosine"), -1);
    ck_assert_int_eq (distance_parse ("Euclidean"), -1);
    ck_assert_int_eq (distance_parse ("DOT"), -1);
    ck_assert_int_eq (distance_parse (""), -1);
    ck_assert_int_eq (distance_parse (NULL), -1);
    for (int d = 0; d < 4; d++)
        ck_assert_int_eq (distance_parse (distance_name ((distance_t) d)), d);
}
END_TEST

START_TEST (test_ranking_order_per_distance)
{
    ck_assert (distance_higher_is_better (DIST_COSINE));
    ck_assert (distance_higher_is_better (DIST_DOT));
    ck_assert (!distance_higher_is_better (DIST_EUCLID));
    ck_assert (!distance_higher_is_better (DIST_MANHATTAN));
    ck_assert (distance_better (DIST_DOT, 0.9f, 0.1f));
    ck_assert (!distance_better (DIST_COSINE, 0.1f, 0.9f));
    ck_assert (distance_better (DIST_EUCLID, 0.1f, 0.9f));
    ck_assert (!distance_better (DIST_MANHATTAN, 0.9f, 0.1f));
    ck_assert (!distance_better (DIST_DOT, 0.5f, 0.5f));
}
END_TEST

START_TEST (test_sparse_dot_sums_shared_indices_only)
{
    uint32_t ai [] = { 1, 4, 7, 9 };
    float av [] = { 1.0f, 2.0f, 3.0f, 4.0f };
    uint32_t bi [] = { 0, 4, 9, 12 };
    float bv [] = { 5.0f, 0.5f, -1.0f, 8.0f };
    ck_assert_float_eq_tol (distance_sparse_dot (ai, av, 4, bi, bv, 4), 2.0f * 0.5f - 4.0f,
                            1e-6);
    ck_assert_float_eq_tol (distance_sparse_dot (bi, bv, 4, ai, av, 4), -3.0f, 1e-6);
    ck_assert_float_eq (distance_sparse_dot (ai, av, 4, bi, bv, 0), 0.0f);
    uint32_t ci [] = { 2, 3 };
    float cv [] = { 1.0f, 1.0f };
    ck_assert_float_eq (distance_sparse_dot (ai, av, 4, ci, cv, 2), 0.0f);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Every kernel set the CPU runs, called directly

//  Fastest first, as the dispatcher prefers them.
static const char *s_isas [] = { "avx512", "avx2", "neon", "scalar" };
#define N_ISAS (sizeof (s_isas) / sizeof (s_isas [0]))

//  The three raw metrics, as the distance whose kernel computes each.
static const distance_t s_metrics [] = { DIST_DOT, DIST_EUCLID, DIST_MANHATTAN };
static const char *s_metric_names [] = { "dot", "l2sq", "l1" };
#define N_METRICS 3

//  The exact raw value (double products of floats are exact) and the sum of
//  the magnitudes of its terms, which bounds the rounding error of any
//  summation order.
static double
s_ref (int metric, const float *a, const float *b, uint32_t dim, double *mag)
{
    double s = 0, m = 0;
    for (uint32_t i = 0; i < dim; i++) {
        double d = (double) a [i] - b [i];
        double t = metric == 0 ? (double) a [i] * b [i] : metric == 1 ? d * d : fabs (d);
        s += t;
        m += fabs (t);
    }
    *mag = m;
    return s;
}

//  Any summation of dim float terms is off by at most k * u * mag, k the
//  longest chain of roundings a term goes through (u = FLT_EPSILON / 2). The
//  kernels' chains are at most dim / 16 lane additions plus a few dozen for
//  the product, the tail and the final reduction; this bound is about four
//  times that, and still far below one missed or doubled term.
static double
s_bound (uint32_t dim, double mag)
{
    return (dim / 8.0 + 32) * FLT_EPSILON * mag + FLT_MIN;
}

static void
s_check_kernel (const char *isa, int metric, const float *a, const float *b,
                uint32_t dim, const char *what)
{
    distance_kernel_t k = distance_kernel_for_isa (isa, s_metrics [metric]);
    double mag;
    double want = s_ref (metric, a, b, dim, &mag);
    double got = k (a, b, dim);
    ck_assert_msg (fabs (got - want) <= s_bound (dim, mag),
                   "%s %s dim=%u (%s): got %.9g want %.9g (bound %.3g)", isa,
                   s_metric_names [metric], dim, what, got, want, s_bound (dim, mag));
}

static float *
s_aligned (size_t n)
{
    float *p = aligned_alloc (64, (n * sizeof (float) + 63) / 64 * 64);
    ck_assert_ptr_nonnull (p);
    return p;
}

START_TEST (test_kernels_exist_exactly_for_what_the_cpu_runs)
{
    ck_assert_ptr_nonnull (distance_kernel_for_isa ("scalar", DIST_DOT));
#if defined (__x86_64__)
    __builtin_cpu_init ();
    bool avx512 = __builtin_cpu_supports ("avx512f");
    bool avx2 = __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma");
    ck_assert (!!distance_kernel_for_isa ("avx512", DIST_EUCLID) == avx512);
    ck_assert (!!distance_kernel_for_isa ("avx2", DIST_EUCLID) == avx2);
    ck_assert_ptr_null (distance_kernel_for_isa ("neon", DIST_DOT));
    ck_assert_str_eq (distance_isa (), avx512 ? "avx512" : avx2 ? "avx2" : "scalar");
#elif defined (__aarch64__)
    ck_assert_ptr_nonnull (distance_kernel_for_isa ("neon", DIST_DOT));
    ck_assert_str_eq (distance_isa (), "neon");
#else
    ck_assert_str_eq (distance_isa (), "scalar");
#endif
    ck_assert_ptr_null (distance_kernel_for_isa ("sse", DIST_DOT));
    ck_assert_ptr_null (distance_kernel_for_isa ("", DIST_DOT));
    ck_assert_ptr_null (distance_kernel_for_isa (NULL, DIST_DOT));
    ck_assert_ptr_null (distance_kernel_for_isa ("scalar", (distance_t) 4));
}
END_TEST

START_TEST (test_dispatch_hands_out_the_chosen_sets_kernels)
{
    const char *isa = distance_isa ();
    ck_assert_ptr_nonnull (distance_kernel_for_isa (isa, DIST_DOT));
    for (int d = 0; d < 4; d++)
        ck_assert (distance_kernel ((distance_t) d)
                   == distance_kernel_for_isa (isa, (distance_t) d));
    //  Cosine vectors are normalized on insert: their raw value is the dot.
    ck_assert (distance_kernel (DIST_COSINE) == distance_kernel (DIST_DOT));
    ck_assert (distance_kernel (DIST_EUCLID) != distance_kernel (DIST_DOT));
    ck_assert_ptr_null (distance_kernel ((distance_t) 4));
    ck_assert_ptr_null (distance_kernel ((distance_t) -1));

    //  The public functions go through the same kernels, bit for bit.
    float a [100], b [100];
    s_fill (a, 100);
    s_fill (b, 100);
    for (uint32_t dim = 0; dim <= 100; dim++) {
        ck_assert (distance_dot (a, b, dim) == distance_kernel (DIST_DOT) (a, b, dim));
        ck_assert (distance_l2sq (a, b, dim) == distance_kernel (DIST_EUCLID) (a, b, dim));
        ck_assert (distance_l1 (a, b, dim) == distance_kernel (DIST_MANHATTAN) (a, b, dim));
        ck_assert (distance_score (DIST_EUCLID, a, b, dim)
                   == sqrtf (distance_kernel (DIST_EUCLID) (a, b, dim)));
    }
}
END_TEST

START_TEST (test_each_kernel_matches_double_reference_within_relative_bound)
{
    float *a = s_aligned (1023), *b = s_aligned (1023);
    for (uint32_t dim = 0; dim <= 1023; dim++) {
        if (dim > 300 && dim != 784 && dim != 1023)
            continue;
        s_fill (a, dim);
        s_fill (b, dim);
        for (size_t i = 0; i < N_ISAS; i++) {
            if (!distance_kernel_for_isa (s_isas [i], DIST_DOT))
                continue;
            for (int m = 0; m < N_METRICS; m++)
                s_check_kernel (s_isas [i], m, a, b, dim, "random");
        }
    }
    free (a);
    free (b);
}
END_TEST

START_TEST (test_each_kernel_sees_every_element_once_and_nothing_past_the_end)
{
    //  a is one-hot at j; both vectors are followed by NaNs. Every other term
    //  is exactly 0, so the result is exact, and one NaN read past the end,
    //  or element j skipped or counted twice, shows.
    float *a = s_aligned (300 + 64), *b = s_aligned (300 + 64), *z = s_aligned (300 + 64);
    for (uint32_t dim = 1; dim <= 300; dim++) {
        s_fill (b, dim);
        for (uint32_t i = dim; i < dim + 64; i++)
            a [i] = b [i] = z [i] = NAN;
        for (uint32_t i = 0; i < dim; i++)
            z [i] = 0;
        for (uint32_t j = 0; j < dim; j++) {
            for (uint32_t i = 0; i < dim; i++)
                a [i] = i == j ? 1.0f : 0.0f;
            float v = b [j];
            for (size_t k = 0; k < N_ISAS; k++) {
                const char *isa = s_isas [k];
                distance_kernel_t dot = distance_kernel_for_isa (isa, DIST_DOT);
                if (!dot)
                    continue;
                distance_kernel_t l2sq = distance_kernel_for_isa (isa, DIST_EUCLID);
                distance_kernel_t l1 = distance_kernel_for_isa (isa, DIST_MANHATTAN);
                ck_assert_msg (dot (a, b, dim) == v, "%s dot dim=%u j=%u", isa, dim, j);
                ck_assert_msg (dot (b, a, dim) == v, "%s dot dim=%u j=%u", isa, dim, j);
                ck_assert_msg (l2sq (a, z, dim) == 1.0f, "%s l2sq dim=%u j=%u", isa, dim, j);
                ck_assert_msg (l1 (z, a, dim) == 1.0f, "%s l1 dim=%u j=%u", isa, dim, j);
            }
        }
    }
    free (a);
    free (b);
    free (z);
}
END_TEST

START_TEST (test_each_kernel_handles_unaligned_pointers)
{
    //  Rows of a slot-major array start at any multiple of 4 bytes.
    static const uint32_t dims [] = { 1, 7, 15, 16, 17, 31, 33, 63, 64, 65, 100, 127, 128,
                                      129, 784 };
    float *abuf = s_aligned (784 + 16), *bbuf = s_aligned (784 + 16);
    s_fill (abuf, 784 + 16);
    s_fill (bbuf, 784 + 16);
    for (size_t k = 0; k < sizeof (dims) / sizeof (dims [0]); k++)
        for (uint32_t aoff = 0; aoff < 16; aoff++)
            for (uint32_t boff = 0; boff < 16; boff += 3)
                for (size_t i = 0; i < N_ISAS; i++) {
                    if (!distance_kernel_for_isa (s_isas [i], DIST_DOT))
                        continue;
                    for (int m = 0; m < N_METRICS; m++)
                        s_check_kernel (s_isas [i], m, abuf + aoff, bbuf + boff, dims [k],
                                        "unaligned");
                }
    free (abuf);
    free (bbuf);
}
END_TEST

//  A page of floats followed by an unmapped page.
static float *
s_guarded_page (size_t *floats)
{
    long ps = sysconf (_SC_PAGESIZE);
    ck_assert (ps > 0);
    char *p = mmap (NULL, 2 * (size_t) ps, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert (p != MAP_FAILED);
    ck_assert_int_eq (mprotect (p + ps, (size_t) ps, PROT_NONE), 0);
    *floats = (size_t) ps / sizeof (float);
    return (float *) p;
}

START_TEST (test_each_kernel_reads_nothing_past_the_last_element)
{
    //  Vectors that end where a mapping ends, as the last row of a mapped
    //  file does: a load past it faults and kills this test.
    size_t n;
    float *pa = s_guarded_page (&n), *pb = s_guarded_page (&n);
    s_fill (pa, (uint32_t) n);
    s_fill (pb, (uint32_t) n);
    for (uint32_t dim = 1; dim <= 1023 && dim <= n; dim++) {
        if (dim > 300 && dim != 784 && dim != 1023)
            continue;
        const float *a = pa + n - dim, *b = pb + n - dim;
        for (size_t i = 0; i < N_ISAS; i++) {
            if (!distance_kernel_for_isa (s_isas [i], DIST_DOT))
                continue;
            for (int m = 0; m < N_METRICS; m++)
                s_check_kernel (s_isas [i], m, a, b, dim, "at a page end");
        }
    }
    munmap (pa, n * sizeof (float) * 2);
    munmap (pb, n * sizeof (float) * 2);
}
END_TEST

START_TEST (test_each_kernel_gives_zero_on_zero_and_equal_vectors)
{
    float *z = s_aligned (1023), *a = s_aligned (1023);
    memset (z, 0, 1023 * sizeof (float));
    s_fill (a, 1023);
    for (size_t i = 0; i < N_ISAS; i++) {
        distance_kernel_t dot = distance_kernel_for_isa (s_isas [i], DIST_DOT);
        if (!dot)
            continue;
        distance_kernel_t l2sq = distance_kernel_for_isa (s_isas [i], DIST_EUCLID);
        distance_kernel_t l1 = distance_kernel_for_isa (s_isas [i], DIST_MANHATTAN);
        for (uint32_t dim = 0; dim <= 1023; dim++) {
            ck_assert_msg (dot (z, z, dim) == 0.0f, "%s dim=%u", s_isas [i], dim);
            ck_assert_msg (dot (a, z, dim) == 0.0f, "%s dim=%u", s_isas [i], dim);
            ck_assert_msg (l2sq (z, z, dim) == 0.0f, "%s dim=%u", s_isas [i], dim);
            ck_assert_msg (l1 (z, z, dim) == 0.0f, "%s dim=%u", s_isas [i], dim);
            ck_assert_msg (l2sq (a, a, dim) == 0.0f, "%s dim=%u", s_isas [i], dim);
            ck_assert_msg (l1 (a, a, dim) == 0.0f, "%s dim=%u", s_isas [i], dim);
            if (dim % 7 == 0) {
                s_check_kernel (s_isas [i], 1, a, z, dim, "against zero");
                s_check_kernel (s_isas [i], 2, z, a, dim, "against zero");
            }
        }
    }
    free (z);
    free (a);
}
END_TEST

START_TEST (test_each_kernel_keeps_precision_for_large_and_small_values)
{
    //  Terms near 1e34 (a 1023-term sum stays below FLT_MAX, 3.4e38), terms
    //  near 1e-30 (still normal floats), and mixed signs so the sums cancel.
    static const float scales [] = { 1e17f, 1e-15f, 3e4f };
    float *a = s_aligned (1023), *b = s_aligned (1023);
    for (size_t sc = 0; sc < sizeof (scales) / sizeof (scales [0]); sc++)
        for (uint32_t dim = 1; dim <= 1023; dim += dim < 40 ? 1 : 61) {
            for (uint32_t i = 0; i < dim; i++) {
                a [i] = s_randf () * scales [sc];
                b [i] = s_randf () * scales [sc];
            }
            for (size_t i = 0; i < N_ISAS; i++) {
                if (!distance_kernel_for_isa (s_isas [i], DIST_DOT))
                    continue;
                for (int m = 0; m < N_METRICS; m++) {
                    distance_kernel_t k =
                        distance_kernel_for_isa (s_isas [i], s_metrics [m]);
                    ck_assert (isfinite (k (a, b, dim)));
                    s_check_kernel (s_isas [i], m, a, b, dim, "scaled");
                }
            }
        }
    free (a);
    free (b);
}
END_TEST

START_TEST (test_each_kernel_propagates_nan_from_any_position)
{
    float a [130], b [130];
    for (uint32_t dim = 1; dim <= 130; dim++)
        for (uint32_t j = 0; j < dim; j += 1 + dim / 20) {
            s_fill (a, dim);
            s_fill (b, dim);
            a [j] = NAN;
            for (size_t i = 0; i < N_ISAS; i++) {
                if (!distance_kernel_for_isa (s_isas [i], DIST_DOT))
                    continue;
                for (int m = 0; m < N_METRICS; m++) {
                    distance_kernel_t k =
                        distance_kernel_for_isa (s_isas [i], s_metrics [m]);
                    ck_assert_msg (isnan (k (a, b, dim)) && isnan (k (b, a, dim)),
                                   "%s %s dim=%u j=%u", s_isas [i], s_metric_names [m],
                                   dim, j);
                }
            }
        }
}
END_TEST

Suite *
distance_suite (void)
{
    Suite *s = suite_create ("distance");
    TCase *tc = tcase_create ("kernels");
    tcase_add_test (tc, test_kernels_match_double_reference_on_odd_dims);
    tcase_add_test (tc, test_kernels_handle_unaligned_pointers);
    tcase_add_test (tc, test_identical_vectors_are_at_distance_zero);
    suite_add_tcase (s, tc);
    tc = tcase_create ("each_isa");
    tcase_add_test (tc, test_kernels_exist_exactly_for_what_the_cpu_runs);
    tcase_add_test (tc, test_dispatch_hands_out_the_chosen_sets_kernels);
    tcase_add_test (tc, test_each_kernel_matches_double_reference_within_relative_bound);
    tcase_add_test (tc, test_each_kernel_sees_every_element_once_and_nothing_past_the_end);
    tcase_add_test (tc, test_each_kernel_handles_unaligned_pointers);
    tcase_add_test (tc, test_each_kernel_reads_nothing_past_the_last_element);
    tcase_add_test (tc, test_each_kernel_gives_zero_on_zero_and_equal_vectors);
    tcase_add_test (tc, test_each_kernel_keeps_precision_for_large_and_small_values);
    tcase_add_test (tc, test_each_kernel_propagates_nan_from_any_position);
    suite_add_tcase (s, tc);
    tc = tcase_create ("normalize");
    tcase_add_test (tc, test_normalize_gives_unit_length);
    tcase_add_test (tc, test_normalize_keeps_zero_vector);
    suite_add_tcase (s, tc);
    tc = tcase_create ("names_and_order");
    tcase_add_test (tc, test_parse_accepts_exact_names_only);
    tcase_add_test (tc, test_ranking_order_per_distance);
    suite_add_tcase (s, tc);
    tc = tcase_create ("sparse");
    tcase_add_test (tc, test_sparse_dot_sums_shared_indices_only);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (distance_suite)
