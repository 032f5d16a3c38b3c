/*  test_workers: every job submitted runs once and its result comes back
    through the worker's PUSH socket; jobs run on several threads at once;
    a stopped pool finishes the jobs it started and hands the queued ones to
    the drop callback; direct connections are served beside the jobs, each
    in order, closed when their handler says so or the pool goes; the
    default size is at least 2.
*/
#include "actors/shard/workers.h"
#include "test/unit/check_main.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define S_EP "inproc://test-workers"

typedef struct {
    int started;            //  atomic: jobs started
    int finished;           //  atomic: jobs finished
    int dropped;            //  jobs dropped (main thread)
    int gate;               //  atomic: blocking jobs may finish
    bool block;             //  jobs wait for gate
} s_ctx_t;

static void
s_job (void *job, zsock_t *out, void *arg)
{
    s_ctx_t *ctx = arg;
    __atomic_add_fetch (&ctx->started, 1, __ATOMIC_ACQ_REL);
    while (ctx->block && !__atomic_load_n (&ctx->gate, __ATOMIC_ACQUIRE))
        sched_yield ();
    zstr_sendf (out, "%d", *(int *) job);
    free (job);
    __atomic_add_fetch (&ctx->finished, 1, __ATOMIC_ACQ_REL);
}

static void
s_drop (void *job, void *arg)
{
    s_ctx_t *ctx = arg;
    ctx->dropped++;
    free (job);
}

static int *
s_int (int v)
{
    int *p = malloc (sizeof *p);
    *p = v;
    return p;
}

START_TEST (test_every_job_runs_once_and_reports_back)
{
    zsock_t *pull = zsock_new_pull ("@" S_EP "-1");
    ck_assert_ptr_nonnull (pull);
    s_ctx_t ctx = { 0 };
    workers_t *pool = workers_new (3, S_EP "-1", s_job, s_drop, &ctx);
    ck_assert_ptr_nonnull (pool);
    ck_assert_uint_eq (workers_size (pool), 3);
    enum { N = 500 };
    for (int i = 0; i < N; i++)
        workers_submit (pool, s_int (i));
    bool seen [N] = { false };
    for (int i = 0; i < N; i++) {
        char *text = zstr_recv (pull);
        ck_assert_ptr_nonnull (text);
        int v = atoi (text);
        zstr_free (&text);
        ck_assert (v >= 0 && v < N);
        ck_assert_msg (!seen [v], "job %d reported twice", v);
        seen [v] = true;
    }
    workers_destroy (&pool);
    ck_assert_ptr_null (pool);
    ck_assert_int_eq (ctx.finished, N);
    ck_assert_int_eq (ctx.dropped, 0);
    zsock_destroy (&pull);
}
END_TEST

START_TEST (test_jobs_run_at_the_same_time)
{
    zsock_t *pull = zsock_new_pull ("@" S_EP "-2");
    s_ctx_t ctx = { .block = true };
    workers_t *pool = workers_new (2, S_EP "-2", s_job, s_drop, &ctx);
    workers_submit (pool, s_int (1));
    workers_submit (pool, s_int (2));
    //  Both blocking jobs start before either may finish: two threads.
    while (__atomic_load_n (&ctx.started, __ATOMIC_ACQUIRE) < 2)
        sched_yield ();
    ck_assert_int_eq (ctx.finished, 0);
    __atomic_store_n (&ctx.gate, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++) {
        char *text = zstr_recv (pull);
        ck_assert_ptr_nonnull (text);
        zstr_free (&text);
    }
    workers_destroy (&pool);
    zsock_destroy (&pull);
}
END_TEST

START_TEST (test_stop_finishes_started_jobs_and_drops_queued_ones)
{
    zsock_t *pull = zsock_new_pull ("@" S_EP "-3");
    s_ctx_t ctx = { .block = true };
    workers_t *pool = workers_new (2, S_EP "-3", s_job, s_drop, &ctx);
    workers_submit (pool, s_int (1));
    workers_submit (pool, s_int (2));
    while (__atomic_load_n (&ctx.started, __ATOMIC_ACQUIRE) < 2)
        sched_yield ();
    //  Both threads are busy: these wait in the queue.
    for (int i = 0; i < 5; i++)
        workers_submit (pool, s_int (10 + i));
    ck_assert_uint_eq (workers_queued (pool), 5);
    workers_stop (pool);
    __atomic_store_n (&ctx.gate, 1, __ATOMIC_RELEASE);
    workers_destroy (&pool);
    ck_assert_int_eq (ctx.finished, 2);
    ck_assert_int_eq (ctx.dropped, 5);
    //  The results of the finished jobs were delivered despite the stop.
    for (int i = 0; i < 2; i++) {
        char *text = zstr_recv (pull);
        ck_assert_ptr_nonnull (text);
        ck_assert (atoi (text) == 1 || atoi (text) == 2);
        zstr_free (&text);
    }
    zsock_destroy (&pull);
}
END_TEST

//  A direct connection's requests: one byte each, answered with the byte
//  plus one; a zero byte asks to close, EOF closes.
static bool
s_echo (int fd, void *arg)
{
    s_ctx_t *ctx = arg;
    unsigned char c;
    ssize_t n = read (fd, &c, 1);
    if (n <= 0 || c == 0)
        return false;
    __atomic_add_fetch (&ctx->started, 1, __ATOMIC_ACQ_REL);
    c++;
    return write (fd, &c, 1) == 1;
}

static int
s_dial (const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    strcpy (addr.sun_path, path);
    int fd = socket (AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge (fd, 0);
    ck_assert_int_eq (connect (fd, (struct sockaddr *) &addr, sizeof addr), 0);
    return fd;
}

START_TEST (test_direct_connections_are_served_in_order_beside_jobs)
{
    char path [64];
    const char *tmp = getenv ("TMPDIR");
    if (!tmp || !*tmp || strlen (tmp) > 40)
        tmp = "/tmp";                   //  a unix socket path is short
    snprintf (path, sizeof path, "%s/test-workers-%d.sock", tmp, (int) getpid ());
    zsock_t *pull = zsock_new_pull ("@" S_EP "-4");
    s_ctx_t ctx = { 0 };
    workers_t *pool = workers_new (2, S_EP "-4", s_job, s_drop, &ctx);
    ck_assert_int_eq (workers_listen (pool, path, s_echo), 0);
    ck_assert_int_ne (workers_listen (pool, path, s_echo), 0);     //  once only
    int a = s_dial (path), b = s_dial (path);
    for (int i = 1; i < 100; i++) {
        unsigned char c = (unsigned char) i, got = 0;
        ck_assert_int_eq (write (a, &c, 1), 1);
        ck_assert_int_eq (write (b, &c, 1), 1);
        //  Jobs still run while connections are served.
        workers_submit (pool, s_int (i));
        ck_assert_int_eq (read (a, &got, 1), 1);
        ck_assert_int_eq (got, c + 1);
        ck_assert_int_eq (read (b, &got, 1), 1);
        ck_assert_int_eq (got, c + 1);
        char *text = zstr_recv (pull);
        ck_assert_ptr_nonnull (text);
        zstr_free (&text);
    }
    //  Asked to close: the worker closes it; the other one goes on.
    unsigned char zero = 0, got = 0;
    ck_assert_int_eq (write (a, &zero, 1), 1);
    ck_assert_int_eq (read (a, &got, 1), 0);
    close (a);
    unsigned char c = 7;
    ck_assert_int_eq (write (b, &c, 1), 1);
    ck_assert_int_eq (read (b, &got, 1), 1);
    ck_assert_int_eq (got, 8);
    //  Destroying the pool closes what is left and removes the socket file.
    workers_destroy (&pool);
    ck_assert_int_eq (read (b, &got, 1), 0);
    close (b);
    ck_assert_int_ne (access (path, F_OK), 0);
    ck_assert_int_eq (__atomic_load_n (&ctx.started, __ATOMIC_ACQUIRE), 2 * 99 + 1 + 99);
    zsock_destroy (&pull);
}
END_TEST

START_TEST (test_default_count_is_at_least_two)
{
    ck_assert_uint_ge (workers_default_count (), 2);
    workers_t *pool = NULL;
    workers_destroy (&pool);
}
END_TEST

static Suite *
workers_suite (void)
{
    Suite *s = suite_create ("workers");
    TCase *tc = tcase_create ("pool");
    tcase_set_timeout (tc, 30);
    tcase_add_test (tc, test_every_job_runs_once_and_reports_back);
    tcase_add_test (tc, test_jobs_run_at_the_same_time);
    tcase_add_test (tc, test_stop_finishes_started_jobs_and_drops_queued_ones);
    tcase_add_test (tc, test_direct_connections_are_served_in_order_beside_jobs);
    tcase_add_test (tc, test_default_count_is_at_least_two);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (workers_suite)
