/*  test_rwgate: readers share the gate, a writer excludes them, a waiting
    writer goes before readers that come after it, and a closed gate
    refuses readers (also those already waiting) instead of blocking them.
    Threads wait for conditions (a counter, rwgate_writer_waiting), never
    for time.
*/
#include "actors/shard/rwgate.h"
#include "test/unit/check_main.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

typedef struct {
    rwgate_t *gate;
    int order;              //  atomic: next sequence number
    int reader_at;          //  sequence number when the reader got in
    int writer_at;          //  sequence number when the writer got in
    int inside;             //  atomic: readers inside now
    int max_inside;         //  atomic: most readers inside at once
    int release;            //  atomic: readers may leave
    bool got;               //  the reader's rwgate_read_lock result
} s_ctx_t;

static void
s_wait_until (int *value, int at_least)
{
    while (__atomic_load_n (value, __ATOMIC_ACQUIRE) < at_least)
        sched_yield ();
}

//  Holds the gate until ctx->release, counting how many are inside at once.
static void *
s_holding_reader (void *arg)
{
    s_ctx_t *ctx = arg;
    ck_assert (rwgate_read_lock (ctx->gate));
    int now = __atomic_add_fetch (&ctx->inside, 1, __ATOMIC_ACQ_REL);
    int max = __atomic_load_n (&ctx->max_inside, __ATOMIC_ACQUIRE);
    while (now > max
           && !__atomic_compare_exchange_n (&ctx->max_inside, &max, now, false,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        ;
    s_wait_until (&ctx->release, 1);
    __atomic_sub_fetch (&ctx->inside, 1, __ATOMIC_ACQ_REL);
    rwgate_read_unlock (ctx->gate);
    return NULL;
}

static void *
s_writer (void *arg)
{
    s_ctx_t *ctx = arg;
    rwgate_write_lock (ctx->gate);
    ctx->writer_at = __atomic_fetch_add (&ctx->order, 1, __ATOMIC_ACQ_REL);
    rwgate_write_unlock (ctx->gate);
    return NULL;
}

static void *
s_late_reader (void *arg)
{
    s_ctx_t *ctx = arg;
    ctx->got = rwgate_read_lock (ctx->gate);
    if (ctx->got) {
        ctx->reader_at = __atomic_fetch_add (&ctx->order, 1, __ATOMIC_ACQ_REL);
        rwgate_read_unlock (ctx->gate);
    }
    return NULL;
}

START_TEST (test_readers_hold_the_gate_together)
{
    s_ctx_t ctx = { .gate = rwgate_new () };
    pthread_t a, b;
    pthread_create (&a, NULL, s_holding_reader, &ctx);
    pthread_create (&b, NULL, s_holding_reader, &ctx);
    //  Both get in while the other still holds it.
    s_wait_until (&ctx.max_inside, 2);
    __atomic_store_n (&ctx.release, 1, __ATOMIC_RELEASE);
    pthread_join (a, NULL);
    pthread_join (b, NULL);
    ck_assert_int_eq (ctx.max_inside, 2);
    rwgate_destroy (&ctx.gate);
    ck_assert_ptr_null (ctx.gate);
}
END_TEST

START_TEST (test_waiting_writer_goes_before_later_readers)
{
    s_ctx_t ctx = { .gate = rwgate_new () };
    pthread_t holder, writer, late;
    pthread_create (&holder, NULL, s_holding_reader, &ctx);
    s_wait_until (&ctx.inside, 1);
    ck_assert (!rwgate_writer_waiting (ctx.gate));
    pthread_create (&writer, NULL, s_writer, &ctx);
    while (!rwgate_writer_waiting (ctx.gate))
        sched_yield ();
    //  This reader comes after the writer asked: it must wait for it.
    pthread_create (&late, NULL, s_late_reader, &ctx);
    __atomic_store_n (&ctx.release, 1, __ATOMIC_RELEASE);
    pthread_join (holder, NULL);
    pthread_join (writer, NULL);
    pthread_join (late, NULL);
    ck_assert (ctx.got);
    ck_assert_int_eq (ctx.writer_at, 0);
    ck_assert_int_eq (ctx.reader_at, 1);
    ck_assert (!rwgate_writer_waiting (ctx.gate));
    rwgate_destroy (&ctx.gate);
}
END_TEST

START_TEST (test_writer_excludes_readers_until_it_leaves)
{
    s_ctx_t ctx = { .gate = rwgate_new () };
    rwgate_write_lock (ctx.gate);
    pthread_t late;
    pthread_create (&late, NULL, s_late_reader, &ctx);
    //  The reader cannot have got in: the order counter is ours to take.
    int mine = __atomic_fetch_add (&ctx.order, 1, __ATOMIC_ACQ_REL);
    rwgate_write_unlock (ctx.gate);
    pthread_join (late, NULL);
    ck_assert_int_eq (mine, 0);
    ck_assert (ctx.got);
    ck_assert_int_eq (ctx.reader_at, 1);
    rwgate_destroy (&ctx.gate);
}
END_TEST

START_TEST (test_closed_gate_refuses_waiting_and_new_readers)
{
    s_ctx_t ctx = { .gate = rwgate_new () };
    rwgate_write_lock (ctx.gate);
    pthread_t late;
    pthread_create (&late, NULL, s_late_reader, &ctx);
    rwgate_close (ctx.gate);
    pthread_join (late, NULL);      //  returns although the writer still holds it
    ck_assert (!ctx.got);
    ck_assert (!rwgate_read_lock (ctx.gate));
    rwgate_write_unlock (ctx.gate);
    ck_assert (!rwgate_read_lock (ctx.gate));
    //  The writer side still works (the main thread finishing its turn).
    rwgate_write_lock (ctx.gate);
    rwgate_write_unlock (ctx.gate);
    rwgate_destroy (&ctx.gate);
}
END_TEST

START_TEST (test_destroy_is_null_safe)
{
    rwgate_t *gate = NULL;
    rwgate_destroy (&gate);
    ck_assert_ptr_null (gate);
}
END_TEST

static Suite *
rwgate_suite (void)
{
    Suite *s = suite_create ("rwgate");
    TCase *tc = tcase_create ("gate");
    tcase_set_timeout (tc, 30);
    tcase_add_test (tc, test_readers_hold_the_gate_together);
    tcase_add_test (tc, test_waiting_writer_goes_before_later_readers);
    tcase_add_test (tc, test_writer_excludes_readers_until_it_leaves);
    tcase_add_test (tc, test_closed_gate_refuses_waiting_and_new_readers);
    tcase_add_test (tc, test_destroy_is_null_safe);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (rwgate_suite)
