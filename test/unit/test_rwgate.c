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

//  --- stress --------------------------------------------------------------

typedef struct {
    rwgate_t *gate;
    int readers_in;         //  atomic: readers inside now
    int writers_in;         //  atomic: writers inside now
    int bad;                //  atomic: exclusion broken
    int writer_left;        //  atomic: the main writer made all its turns
} s_stress_t;

static void
s_read_section (s_stress_t *st)
{
    __atomic_add_fetch (&st->readers_in, 1, __ATOMIC_ACQ_REL);
    if (__atomic_load_n (&st->writers_in, __ATOMIC_ACQUIRE))
        __atomic_add_fetch (&st->bad, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch (&st->readers_in, 1, __ATOMIC_ACQ_REL);
}

static void
s_write_section (s_stress_t *st)
{
    if (__atomic_add_fetch (&st->writers_in, 1, __ATOMIC_ACQ_REL) != 1
    ||  __atomic_load_n (&st->readers_in, __ATOMIC_ACQUIRE))
        __atomic_add_fetch (&st->bad, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch (&st->writers_in, 1, __ATOMIC_ACQ_REL);
}

//  The shard's main thread: turns under the write side.
static void *
s_stress_main (void *arg)
{
    s_stress_t *st = arg;
    for (int i = 0; i < 20000; i++) {
        rwgate_write_lock (st->gate);
        s_write_section (st);
        rwgate_write_unlock (st->gate);
    }
    __atomic_store_n (&st->writer_left, 1, __ATOMIC_RELEASE);
    return NULL;
}

//  The optimizer: long read sections that step aside when a writer waits,
//  and now and then a short write section (a swap, a publish).
static void *
s_stress_optimizer (void *arg)
{
    s_stress_t *st = arg;
    for (int round = 0; round < 3000; round++) {
        ck_assert (rwgate_read_lock (st->gate));
        for (int step = 0; step < 50 && !rwgate_writer_waiting (st->gate); step++)
            s_read_section (st);
        rwgate_read_unlock (st->gate);
        if (round % 3 == 0) {
            rwgate_write_lock (st->gate);
            s_write_section (st);
            rwgate_write_unlock (st->gate);
        }
    }
    return NULL;
}

//  Search workers: short read sections.
static void *
s_stress_reader (void *arg)
{
    s_stress_t *st = arg;
    for (int i = 0; i < 20000; i++) {
        ck_assert (rwgate_read_lock (st->gate));
        s_read_section (st);
        rwgate_read_unlock (st->gate);
    }
    return NULL;
}

//  A main writer, an optimizer that reads and writes, and three readers, on
//  fewer cores: every thread makes all its passes (two writers waking each
//  other and readers never lose a wake-up; a hang fails the test by its
//  timeout), and no section ever overlaps a writer's.
START_TEST (test_stress_two_writers_and_readers_all_finish)
{
    s_stress_t st = { .gate = rwgate_new () };
    pthread_t main_writer, optimizer, readers [3];
    pthread_create (&main_writer, NULL, s_stress_main, &st);
    pthread_create (&optimizer, NULL, s_stress_optimizer, &st);
    for (int i = 0; i < 3; i++)
        pthread_create (&readers [i], NULL, s_stress_reader, &st);
    pthread_join (main_writer, NULL);
    pthread_join (optimizer, NULL);
    for (int i = 0; i < 3; i++)
        pthread_join (readers [i], NULL);
    ck_assert_int_eq (st.writer_left, 1);
    ck_assert_int_eq (st.bad, 0);
    ck_assert (!rwgate_writer_waiting (st.gate));
    rwgate_destroy (&st.gate);
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
    tcase_add_test (tc, test_stress_two_writers_and_readers_all_finish);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (rwgate_suite)
