/*  test_vmarr: arrays in their own mappings keep their bytes when they grow
    (also across a move to another address), come zeroed past what was
    kept, are page aligned, zero what a shrink cut off before a regrowth,
    and refuse an impossible size without losing the array.
*/
#include "common/vmarr.h"
#include "test/unit/check_main.h"

#include <stdint.h>
#include <string.h>

static void
s_fill (uint8_t *p, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        p [i] = (uint8_t) (i * 7 + 1);
}

static void
s_check_fill (const uint8_t *p, size_t from, size_t to)
{
    size_t i = from;
    while (i < to && p [i] == (uint8_t) (i * 7 + 1))
        i++;
    ck_assert_msg (i == to, "byte %zu of [%zu, %zu) changed", i, from, to);
}

static void
s_check_zero (const uint8_t *p, size_t from, size_t to)
{
    size_t i = from;
    while (i < to && p [i] == 0)
        i++;
    ck_assert_msg (i == to, "byte %zu of [%zu, %zu) is not zero", i, from, to);
}

START_TEST (test_grows_keeping_bytes_and_zeroing_the_rest)
{
    size_t sizes [] = { 1, 100, 4095, 4096, 4097, 65536 + 3, 1 << 20, 3 << 20, 50 << 20 };
    uint8_t *p = vmarr_resize (NULL, 0, sizes [0]);
    ck_assert_ptr_nonnull (p);
    s_fill (p, 0, sizes [0]);
    for (size_t k = 1; k < sizeof sizes / sizeof sizes [0]; k++) {
        //  Another mapping right after it makes an in-place growth
        //  impossible now and then: the array must move intact.
        void *blocker = vmarr_resize (NULL, 0, 4096);
        ck_assert_ptr_nonnull (blocker);
        p = vmarr_resize (p, sizes [k - 1], sizes [k]);
        ck_assert_ptr_nonnull (p);
        ck_assert_uint_eq ((uintptr_t) p % 64, 0);
        s_check_fill (p, 0, sizes [k - 1]);
        s_check_zero (p, sizes [k - 1], sizes [k]);
        s_fill (p, sizes [k - 1], sizes [k]);
        vmarr_free (blocker, 4096);
    }
    vmarr_free (p, sizes [8]);
}
END_TEST

START_TEST (test_a_shrink_then_a_growth_reads_zeros)
{
    uint8_t *p = vmarr_resize (NULL, 0, 10000);
    s_fill (p, 0, 10000);
    p = vmarr_resize (p, 10000, 5000);         //  same last page kept
    ck_assert_ptr_nonnull (p);
    s_check_fill (p, 0, 5000);
    p = vmarr_resize (p, 5000, 5003);
    s_check_fill (p, 0, 5000);
    s_check_zero (p, 5000, 5003);
    p = vmarr_resize (p, 5003, 100);           //  pages dropped
    p = vmarr_resize (p, 100, 20000);
    s_check_fill (p, 0, 100);
    s_check_zero (p, 100, 20000);
    ck_assert_ptr_null (vmarr_resize (p, 20000, 0));
    vmarr_free (NULL, 123);
}
END_TEST

START_TEST (test_an_impossible_size_fails_and_keeps_the_array)
{
    uint8_t *p = vmarr_resize (NULL, 0, 4096);
    s_fill (p, 0, 4096);
    ck_assert_ptr_null (vmarr_resize (p, 4096, SIZE_MAX));
    ck_assert_ptr_null (vmarr_resize (p, 4096, SIZE_MAX / 2));
    ck_assert_ptr_null (vmarr_resize (NULL, 0, SIZE_MAX - 10));
    s_check_fill (p, 0, 4096);
    vmarr_free (p, 4096);
}
END_TEST

static Suite *
vmarr_suite (void)
{
    Suite *s = suite_create ("vmarr");
    TCase *tc = tcase_create ("core");
    tcase_add_test (tc, test_grows_keeping_bytes_and_zeroing_the_rest);
    tcase_add_test (tc, test_a_shrink_then_a_growth_reads_zeros);
    tcase_add_test (tc, test_an_impossible_size_fails_and_keeps_the_array);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (vmarr_suite)
