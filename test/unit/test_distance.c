/*  test_distance: the four kernels against a naive double-precision
    reference on odd dimensions, normalization, parsing and ranking order.
*/
#include "common/distance.h"
#include "test/unit/check_main.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

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

Suite *
distance_suite (void)
{
    Suite *s = suite_create ("distance");
    TCase *tc = tcase_create ("kernels");
    tcase_add_test (tc, test_kernels_match_double_reference_on_odd_dims);
    tcase_add_test (tc, test_kernels_handle_unaligned_pointers);
    tcase_add_test (tc, test_identical_vectors_are_at_distance_zero);
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
