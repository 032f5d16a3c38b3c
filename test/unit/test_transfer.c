/*  test_transfer: the source side of a stream_records transfer (probing,
    the cursor over the snapshot in id order, one seq for batches and
    forwarded writes, the window and queue bounds, acknowledgements, when
    it finishes or aborts, what each held write is released with) and the
    target's order check, including both kinds of restart. Time is passed
    in, so deadlines are tested without waiting.
*/
#include "actors/shard/transfer.h"
#include "common/err.h"
#include "test/unit/check_main.h"

#include <stdlib.h>
#include <string.h>

#define S_ITEMS 64
#define S_UNRELEASED 12345

//  Items are slots of this array; a release writes the status into its slot
//  and counts, so a second release of one item is seen.
typedef struct {
    int status [S_ITEMS];
    int releases [S_ITEMS];
} s_log_t;

static s_log_t s_log;

static void
s_release (void *item, int status, void *arg)
{
    s_log_t *log = (s_log_t *) arg;
    size_t i = (size_t) ((int *) item - log->status);
    ck_assert_uint_lt (i, S_ITEMS);
    log->status [i] = status;
    log->releases [i]++;
}

static void *
s_item (size_t i)
{
    return &s_log.status [i];
}

static bool
s_released (size_t i, int status)
{
    return s_log.releases [i] == 1 && s_log.status [i] == status;
}

static bool
s_held (size_t i)
{
    return s_log.releases [i] == 0;
}

static void
s_reset_log (void)
{
    for (size_t i = 0; i < S_ITEMS; i++) {
        s_log.status [i] = S_UNRELEASED;
        s_log.releases [i] = 0;
    }
}

static transfer_params_t
s_params (void)
{
    transfer_params_t p;
    transfer_params_default (&p);
    p.window = 4;
    p.window_bytes = 1000;
    p.batch_bytes = 100;
    p.queue_max = 8;
    p.queue_bytes = 10000;
    p.ack_timeout_ms = 1000;
    p.connect_timeout_ms = 5000;
    p.probe_ms = 100;
    p.propose_timeout_ms = 500;
    p.retry_ms = 200;
    p.outcome_timeout_ms = 3000;
    return p;
}

static pointid_t *
s_ids (const uint64_t *nums, size_t n)
{
    pointid_t *ids = (pointid_t *) calloc (n + 1, sizeof *ids);
    ck_assert_ptr_nonnull (ids);
    for (size_t i = 0; i < n; i++) {
        char text [32];
        snprintf (text, sizeof text, "%llu", (unsigned long long) nums [i]);
        ck_assert_int_eq (pointid_parse (text, &ids [i]), 0);
    }
    return ids;
}

//  A run that is STREAMING over the given ids (at time 0).
static transfer_t *
s_streaming (const transfer_params_t *p, const uint64_t *nums, size_t n)
{
    s_reset_log ();
    transfer_t *t = transfer_new (p, 7, 0, s_release, &s_log);
    ck_assert (transfer_probe_due (t, 0));
    transfer_probe_sent (t, 1, 0);
    transfer_probe_reply (t, 1, 0, 1);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_READY);
    ck_assert_int_eq (transfer_begin (t, s_ids (nums, n), n), 0);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_STREAMING);
    return t;
}

//  Sends what may go now; returns how many went, their seqs in seqs.
static size_t
s_send_all (transfer_t *t, uint64_t now, uint64_t *seqs, size_t max)
{
    size_t n = 0;
    uint64_t seq;
    bool batch;
    void *item;
    while (n < max && transfer_next_send (t, now, &seq, &batch, &item))
        seqs [n++] = seq;
    return n;
}

//  --------------------------------------------------------------------------

START_TEST (test_probes_until_the_target_answers_then_waits_for_the_snapshot)
{
    s_reset_log ();
    transfer_params_t p = s_params ();
    transfer_t *t = transfer_new (&p, 7, 1000, s_release, &s_log);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_CONNECTING);
    ck_assert (transfer_running (t));
    ck_assert (!transfer_forwarding (t));
    ck_assert (!transfer_wants_batch (t));
    ck_assert (transfer_probe_due (t, 1000));
    transfer_probe_sent (t, 1, 1000);
    ck_assert (!transfer_probe_due (t, 1050));
    transfer_probe_reply (t, 1, -SH_EUNAVAIL, 1010);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_CONNECTING);
    ck_assert (!transfer_probe_due (t, 1050));
    ck_assert (transfer_probe_due (t, 1100));
    transfer_probe_sent (t, 2, 1100);
    //  A write applied now is in the snapshot, not forwarded.
    ck_assert_uint_eq (transfer_push_write (t, 10, s_item (0), 1100), 0);
    ck_assert (s_released (0, 0));
    transfer_probe_reply (t, 1, 0, 1120);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_READY);
    ck_assert (!transfer_probe_due (t, 5000));
    ck_assert (!transfer_wants_batch (t));
    ck_assert_int_eq (transfer_begin (t, s_ids ((uint64_t []) { 3, 1, 2 }, 3), 3), 0);
    ck_assert_int_eq (transfer_begin (t, s_ids ((uint64_t []) { 3 }, 1), 1), -SH_EINVAL);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_STREAMING);
    ck_assert_uint_eq (transfer_total (t), 3);
    transfer_destroy (&t);
    ck_assert_ptr_null (t);
}
END_TEST

START_TEST (test_a_target_that_never_answers_aborts_the_run)
{
    s_reset_log ();
    transfer_params_t p = s_params ();
    transfer_t *t = transfer_new (&p, 7, 1000, s_release, &s_log);
    transfer_probe_sent (t, 1, 1000);
    transfer_tick (t, 1000 + p.connect_timeout_ms - 1);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_CONNECTING);
    transfer_tick (t, 1000 + p.connect_timeout_ms);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_ABORTING);
    ck_assert_int_eq (transfer_status (t), -SH_ETIMEDOUT);
    ck_assert_int_eq (transfer_proposal_due (t, 7000), TRANSFER_OP_ABORT);
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_the_cursor_walks_the_snapshot_in_id_order)
{
    transfer_params_t p = s_params ();
    p.window = 100;
    p.window_bytes = 1u << 20;
    uint64_t nums [] = { 50, 7, 1000, 3, 42 };
    transfer_t *t = s_streaming (&p, nums, 5);
    const pointid_t *ids = NULL;
    ck_assert_uint_eq (transfer_cursor (t, &ids), 5);
    pointid_t expect;
    uint64_t sorted [] = { 3, 7, 42, 50, 1000 };
    for (size_t i = 0; i < 5; i++) {
        char text [32];
        snprintf (text, sizeof text, "%llu", (unsigned long long) sorted [i]);
        pointid_parse (text, &expect);
        ck_assert (pointid_eq (&ids [i], &expect));
    }
    ck_assert (transfer_wants_batch (t));
    //  Two ids in the first batch, one of them deleted since: one point.
    ck_assert_uint_eq (transfer_push_batch (t, 2, 1, 50, s_item (0)), 1);
    ck_assert_uint_eq (transfer_cursor (t, &ids), 3);
    char text [POINTID_TEXT_SIZE];
    pointid_format (&ids [0], text);
    ck_assert_str_eq (text, "42");
    ck_assert_uint_eq (transfer_push_batch (t, 3, 3, 50, s_item (1)), 2);
    ck_assert_uint_eq (transfer_cursor (t, &ids), 0);
    ck_assert (!transfer_wants_batch (t));
    transfer_destroy (&t);
    ck_assert (s_released (0, 0) && s_released (1, 0));
}
END_TEST

START_TEST (test_integers_sort_before_uuids_in_the_snapshot)
{
    s_reset_log ();
    transfer_params_t p = s_params ();
    transfer_t *t = transfer_new (&p, 7, 0, s_release, &s_log);
    transfer_probe_reply (t, 1, 0, 0);
    pointid_t *ids = (pointid_t *) calloc (3, sizeof *ids);
    pointid_parse ("550e8400-e29b-41d4-a716-446655440000", &ids [0]);
    ck_assert_int_eq (pointid_parse ("9007199254740993", &ids [1]), 0);
    pointid_parse ("0", &ids [2]);
    ck_assert_int_eq (transfer_begin (t, ids, 3), 0);
    const pointid_t *cur;
    ck_assert_uint_eq (transfer_cursor (t, &cur), 3);
    char text [POINTID_TEXT_SIZE];
    pointid_format (&cur [0], text);
    ck_assert_str_eq (text, "0");
    pointid_format (&cur [1], text);
    ck_assert_str_eq (text, "9007199254740993");
    pointid_format (&cur [2], text);
    ck_assert_str_eq (text, "550e8400-e29b-41d4-a716-446655440000");
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_an_empty_shard_still_sends_one_batch_then_finishes)
{
    transfer_params_t p = s_params ();
    transfer_t *t = s_streaming (&p, NULL, 0);
    ck_assert (transfer_wants_batch (t));
    ck_assert_uint_eq (transfer_push_batch (t, 0, 0, 20, s_item (0)), 1);
    ck_assert (!transfer_wants_batch (t));
    uint64_t seqs [8];
    ck_assert_uint_eq (s_send_all (t, 10, seqs, 8), 1);
    ck_assert_uint_eq (seqs [0], 1);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_STREAMING);
    ck_assert_int_eq (transfer_ack (t, 1, 0, 20), 0);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_FINISHING);
    ck_assert_int_eq (transfer_proposal_due (t, 20), TRANSFER_OP_FINISH);
    ck_assert_uint_eq (transfer_total (t), 0);
    ck_assert_uint_eq (transfer_transferred (t), 0);
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_batches_and_forwarded_writes_share_one_seq_in_push_order)
{
    transfer_params_t p = s_params ();
    p.window = 100;
    p.window_bytes = 1u << 20;
    uint64_t nums [] = { 1, 2, 3, 4 };
    transfer_t *t = s_streaming (&p, nums, 4);
    ck_assert (transfer_forwarding (t));
    ck_assert_uint_eq (transfer_next_seq (t), 1);
    ck_assert_uint_eq (transfer_push_batch (t, 2, 2, 40, s_item (0)), 1);
    ck_assert_uint_eq (transfer_next_seq (t), 2);
    ck_assert_uint_eq (transfer_push_write (t, 10, s_item (1), 5), 2);
    ck_assert_uint_eq (transfer_push_write (t, 10, s_item (2), 5), 3);
    ck_assert_uint_eq (transfer_push_batch (t, 2, 2, 40, s_item (3)), 4);
    uint64_t seq;
    bool batch;
    void *item;
    ck_assert (transfer_next_send (t, 6, &seq, &batch, &item));
    ck_assert (batch && seq == 1 && item == s_item (0));
    ck_assert (transfer_next_send (t, 6, &seq, &batch, &item));
    ck_assert (!batch && seq == 2 && item == s_item (1));
    ck_assert (transfer_next_send (t, 6, &seq, &batch, &item));
    ck_assert (item == s_item (2));
    ck_assert (transfer_next_send (t, 6, &seq, &batch, &item));
    ck_assert (batch && seq == 4 && item == s_item (3));
    ck_assert (!transfer_next_send (t, 6, &seq, &batch, &item));
    ck_assert_uint_eq (transfer_inflight (t), 4);
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_the_window_bounds_what_is_sent_and_not_acknowledged)
{
    transfer_params_t p = s_params ();          //  window 4, 1000 bytes
    uint64_t nums [] = { 1 };
    transfer_t *t = s_streaming (&p, nums, 1);
    ck_assert_uint_eq (transfer_push_batch (t, 1, 1, 10, s_item (0)), 1);
    for (size_t i = 1; i <= 5; i++)
        ck_assert_uint_eq (transfer_push_write (t, 10, s_item (i), 0), i + 1);
    uint64_t seqs [16];
    ck_assert_uint_eq (s_send_all (t, 1, seqs, 16), 4);
    ck_assert_uint_eq (transfer_queued (t), 2);
    ck_assert (s_held (1) && s_held (2));
    //  Out of order: seq 3 first. It is released; seq 2 still holds the window.
    ck_assert_int_eq (transfer_ack (t, 3, 0, 2), 0);
    ck_assert (s_released (2, 0));
    ck_assert (s_held (1));
    ck_assert_uint_eq (s_send_all (t, 2, seqs, 16), 1);
    ck_assert_uint_eq (seqs [0], 5);
    //  An answer twice, or to a seq never sent: ignored.
    ck_assert_int_eq (transfer_ack (t, 3, 0, 3), -SH_ENOTFOUND);
    ck_assert_int_eq (transfer_ack (t, 6, 0, 3), -SH_ENOTFOUND);
    ck_assert_int_eq (transfer_ack (t, 99, 0, 3), -SH_ENOTFOUND);
    ck_assert_int_eq (transfer_ack (t, 1, 0, 3), 0);
    ck_assert_int_eq (transfer_ack (t, 2, 0, 3), 0);
    ck_assert_uint_eq (s_send_all (t, 3, seqs, 16), 1);
    ck_assert_uint_eq (seqs [0], 6);
    ck_assert_uint_eq (transfer_transferred (t), 1);
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_the_window_bounds_bytes_but_always_lets_one_envelope_go)
{
    transfer_params_t p = s_params ();          //  1000 bytes
    uint64_t nums [] = { 1 };
    transfer_t *t = s_streaming (&p, nums, 1);
    transfer_push_batch (t, 1, 1, 5000, s_item (0));
    transfer_push_write (t, 600, s_item (1), 0);
    uint64_t seqs [4];
    ck_assert_uint_eq (s_send_all (t, 0, seqs, 4), 1);   //  alone, though too big
    ck_assert_int_eq (transfer_ack (t, 1, 0, 1), 0);
    ck_assert_uint_eq (s_send_all (t, 1, seqs, 4), 1);
    ck_assert_uint_eq (seqs [0], 2);
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_batches_wait_for_room_while_writes_keep_coming)
{
    transfer_params_t p = s_params ();          //  window 4
    uint64_t nums [] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    transfer_t *t = s_streaming (&p, nums, 8);
    ck_assert (transfer_wants_batch (t));
    transfer_push_batch (t, 1, 1, 10, NULL);
    for (size_t i = 0; i < 3; i++)
        transfer_push_write (t, 10, s_item (i), 0);
    ck_assert (!transfer_wants_batch (t));
    uint64_t seqs [8];
    ck_assert_uint_eq (s_send_all (t, 0, seqs, 8), 4);
    ck_assert (!transfer_wants_batch (t));
    transfer_ack (t, 1, 0, 1);
    ck_assert (transfer_wants_batch (t));
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_finishes_when_everything_up_to_the_last_batch_is_acknowledged)
{
    transfer_params_t p = s_params ();
    uint64_t nums [] = { 1, 2 };
    transfer_t *t = s_streaming (&p, nums, 2);
    transfer_push_batch (t, 1, 1, 10, NULL);                   //  1
    transfer_push_write (t, 10, s_item (0), 0);                //  2
    transfer_push_batch (t, 1, 1, 10, NULL);                   //  3 (last)
    transfer_push_write (t, 10, s_item (1), 0);                //  4
    uint64_t seqs [8];
    ck_assert_uint_eq (s_send_all (t, 0, seqs, 8), 4);
    transfer_ack (t, 1, 0, 1);
    transfer_ack (t, 3, 0, 1);
    //  seq 2 (before the last batch) is not acknowledged yet.
    ck_assert_int_eq (transfer_phase (t), TRANSFER_STREAMING);
    ck_assert_int_eq (transfer_proposal_due (t, 1), TRANSFER_OP_NONE);
    transfer_ack (t, 2, 0, 2);
    //  seq 4 may still be on its way: its reply stays held, writes go on.
    ck_assert_int_eq (transfer_phase (t), TRANSFER_FINISHING);
    ck_assert (transfer_running (t));
    ck_assert (transfer_forwarding (t));
    ck_assert (s_held (1));
    ck_assert_uint_eq (transfer_transferred (t), 2);
    ck_assert_uint_eq (transfer_total (t), 2);

    ck_assert_int_eq (transfer_proposal_due (t, 2), TRANSFER_OP_FINISH);
    transfer_proposal_sent (t, TRANSFER_OP_FINISH, 2);
    ck_assert_int_eq (transfer_proposal_due (t, 3), TRANSFER_OP_NONE);
    //  No leader yet: asked again after retry_ms.
    transfer_proposal_reply (t, TRANSFER_OP_FINISH, -SH_ENOLEADER, 10);
    ck_assert_int_eq (transfer_proposal_due (t, 10 + p.retry_ms - 1), TRANSFER_OP_NONE);
    ck_assert_int_eq (transfer_proposal_due (t, 10 + p.retry_ms), TRANSFER_OP_FINISH);
    transfer_proposal_sent (t, TRANSFER_OP_FINISH, 10 + p.retry_ms);
    transfer_proposal_reply (t, TRANSFER_OP_FINISH, 0, 300);
    ck_assert_int_eq (transfer_proposal_due (t, 5000), TRANSFER_OP_NONE);

    //  A write while the state has not shown the outcome yet.
    ck_assert_uint_eq (transfer_push_write (t, 10, s_item (2), 301), 5);
    transfer_on_state (t, true, true, 302);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_FINISHING);
    //  Applied: the transfer and this replica are gone.
    transfer_on_state (t, false, false, 303);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_FINISHED);
    ck_assert (!transfer_running (t));
    ck_assert (transfer_forwarding (t));
    ck_assert (!transfer_refuses_writes (t));
    ck_assert (s_held (1) && s_held (2));
    ck_assert_uint_eq (s_send_all (t, 304, seqs, 8), 1);
    transfer_ack (t, 4, 0, 305);
    transfer_ack (t, 5, 0, 305);
    ck_assert (s_released (1, 0) && s_released (2, 0));
    //  Still forwarding what a late gateway sends.
    ck_assert_uint_eq (transfer_push_write (t, 10, s_item (3), 306), 6);
    transfer_destroy (&t);
    ck_assert (s_released (3, -SH_EUNAVAIL));
}
END_TEST

START_TEST (test_an_error_answer_aborts_and_the_source_keeps_every_write)
{
    transfer_params_t p = s_params ();
    uint64_t nums [] = { 1, 2, 3 };
    transfer_t *t = s_streaming (&p, nums, 3);
    transfer_push_batch (t, 1, 1, 10, s_item (0));
    transfer_push_write (t, 10, s_item (1), 0);
    transfer_push_write (t, 10, s_item (2), 0);
    uint64_t seqs [8];
    s_send_all (t, 0, seqs, 8);
    transfer_push_write (t, 10, s_item (3), 1);                //  queued? no: window 4
    transfer_push_write (t, 10, s_item (4), 1);                //  queued
    ck_assert_int_eq (transfer_ack (t, 1, 0, 2), 0);
    ck_assert_int_eq (transfer_ack (t, 2, -SH_EPROTO, 3), 0);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_ABORTING);
    ck_assert_int_eq (transfer_status (t), -SH_EPROTO);
    ck_assert (transfer_running (t));
    ck_assert (!transfer_forwarding (t));
    ck_assert (!transfer_refuses_writes (t));
    for (size_t i = 0; i <= 4; i++)
        ck_assert (s_released (i, 0));
    ck_assert_uint_eq (transfer_inflight (t) + transfer_queued (t), 0);
    ck_assert (!transfer_next_send (t, 4, &(uint64_t) { 0 }, &(bool) { false },
                                    &(void *) { NULL }));
    //  Late answers are ignored; writes now are not forwarded.
    ck_assert_int_eq (transfer_ack (t, 3, 0, 5), -SH_ENOTFOUND);
    ck_assert_uint_eq (transfer_push_write (t, 10, s_item (5), 5), 0);
    ck_assert (s_released (5, 0));
    ck_assert (!transfer_wants_batch (t));

    ck_assert_int_eq (transfer_proposal_due (t, 5), TRANSFER_OP_ABORT);
    transfer_proposal_sent (t, TRANSFER_OP_ABORT, 5);
    transfer_proposal_reply (t, TRANSFER_OP_ABORT, -SH_ETIMEDOUT, 505);
    ck_assert_int_eq (transfer_proposal_due (t, 505 + p.retry_ms), TRANSFER_OP_ABORT);
    transfer_proposal_sent (t, TRANSFER_OP_ABORT, 505 + p.retry_ms);
    transfer_proposal_reply (t, TRANSFER_OP_ABORT, 0, 800);
    ck_assert_int_eq (transfer_proposal_due (t, 9000), TRANSFER_OP_NONE);
    transfer_on_state (t, false, true, 900);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_STOPPED);
    ck_assert (!transfer_running (t));
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_no_acknowledgement_in_time_aborts)
{
    transfer_params_t p = s_params ();
    uint64_t nums [] = { 1, 2 };
    transfer_t *t = s_streaming (&p, nums, 2);
    transfer_push_batch (t, 1, 1, 10, NULL);
    transfer_push_write (t, 10, s_item (0), 0);
    uint64_t seqs [4];
    s_send_all (t, 100, seqs, 4);
    transfer_ack (t, 1, 0, 150);
    transfer_tick (t, 100 + p.ack_timeout_ms - 1);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_STREAMING);
    transfer_tick (t, 100 + p.ack_timeout_ms);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_ABORTING);
    ck_assert_int_eq (transfer_status (t), -SH_ETIMEDOUT);
    ck_assert (s_released (0, 0));
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_a_queue_past_its_bound_aborts)
{
    transfer_params_t p = s_params ();          //  window 4, queue 8
    uint64_t nums [] = { 1 };
    transfer_t *t = s_streaming (&p, nums, 1);
    transfer_push_batch (t, 1, 1, 10, NULL);
    uint64_t seqs [8];
    s_send_all (t, 0, seqs, 8);
    size_t i = 0;
    for (; i < 8; i++)
        ck_assert_uint_gt (transfer_push_write (t, 10, s_item (i), 1), 0);
    ck_assert_uint_eq (transfer_queued (t), 8);
    ck_assert_uint_eq (transfer_push_write (t, 10, s_item (i), 1), 0);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_ABORTING);
    ck_assert_int_eq (transfer_status (t), -SH_EUNAVAIL);
    for (size_t k = 0; k <= i; k++)
        ck_assert (s_released (k, 0));
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_a_queue_past_its_byte_bound_aborts)
{
    transfer_params_t p = s_params ();          //  queue 10000 bytes
    uint64_t nums [] = { 1 };
    transfer_t *t = s_streaming (&p, nums, 1);
    ck_assert_uint_gt (transfer_push_write (t, 6000, s_item (0), 0), 0);
    ck_assert_uint_eq (transfer_push_write (t, 6000, s_item (1), 0), 0);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_ABORTING);
    ck_assert (s_released (0, 0) && s_released (1, 0));
    transfer_destroy (&t);
}
END_TEST

//  A stream that is FINISHING with finish proposed and one write in flight
//  (seq 2, item 0) and one queued (seq 3..., item 1 when window 1).
static transfer_t *
s_finish_proposed (void)
{
    transfer_params_t p = s_params ();
    p.window = 1;
    uint64_t nums [] = { 1 };
    transfer_t *t = s_streaming (&p, nums, 1);
    transfer_push_batch (t, 1, 1, 10, NULL);
    uint64_t seqs [4];
    s_send_all (t, 0, seqs, 4);
    transfer_ack (t, 1, 0, 1);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_FINISHING);
    transfer_proposal_sent (t, transfer_proposal_due (t, 1), 1);
    transfer_push_write (t, 10, s_item (0), 2);
    transfer_push_write (t, 10, s_item (1), 2);
    ck_assert_uint_eq (s_send_all (t, 2, seqs, 4), 1);
    return t;
}

START_TEST (test_a_failure_after_the_finish_was_proposed_holds_writes_until_the_outcome)
{
    s_reset_log ();
    transfer_t *t = s_finish_proposed ();
    transfer_fail (t, -SH_EUNAVAIL, "peer gone", 10);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_ABORTING);
    ck_assert (transfer_refuses_writes (t));
    ck_assert (s_held (0) && s_held (1));
    //  The abort goes at once, whatever became of the finish; the finish's
    //  answer, arriving late, is not the op in flight.
    ck_assert_int_eq (transfer_proposal_due (t, 10), TRANSFER_OP_ABORT);
    transfer_proposal_sent (t, TRANSFER_OP_ABORT, 10);
    transfer_proposal_reply (t, TRANSFER_OP_FINISH, -SH_ENOTFOUND, 11);
    ck_assert_int_eq (transfer_proposal_due (t, 100000), TRANSFER_OP_NONE);
    //  The abort won: the source stays the owner of both writes.
    transfer_on_state (t, false, true, 12);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_STOPPED);
    ck_assert (s_released (0, 0) && s_released (1, 0));
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_when_the_finish_wins_over_a_broken_stream_unacknowledged_writes_fail)
{
    s_reset_log ();
    transfer_t *t = s_finish_proposed ();
    transfer_fail (t, -SH_ETIMEDOUT, "no ack", 10);
    ck_assert_int_eq (transfer_ack (t, 2, 0, 11), 0);           //  seq 2 made it
    ck_assert (s_released (0, 0));
    transfer_on_state (t, false, false, 12);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_FINISHED);
    ck_assert (s_released (1, -SH_EUNAVAIL));
    ck_assert (transfer_refuses_writes (t));
    ck_assert (!transfer_forwarding (t));
    ck_assert_uint_eq (transfer_push_write (t, 10, s_item (2), 13), 0);
    ck_assert (s_released (2, -SH_EUNAVAIL));
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_held_writes_fail_when_the_outcome_takes_too_long)
{
    s_reset_log ();
    transfer_t *t = s_finish_proposed ();
    uint64_t wait = transfer_params (t)->outcome_timeout_ms;
    transfer_fail (t, -SH_EUNAVAIL, "peer gone", 10);
    transfer_tick (t, 10 + wait - 1);
    ck_assert (s_held (0) && s_held (1));
    transfer_tick (t, 10 + wait);
    ck_assert (s_released (0, -SH_ETIMEDOUT) && s_released (1, -SH_ETIMEDOUT));
    ck_assert_int_eq (transfer_phase (t), TRANSFER_ABORTING);
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_a_failure_after_the_move_breaks_the_stream_and_refuses_writes)
{
    s_reset_log ();
    transfer_t *t = s_finish_proposed ();
    transfer_on_state (t, false, false, 5);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_FINISHED);
    ck_assert (s_held (0) && s_held (1));
    ck_assert_int_eq (transfer_ack (t, 2, -SH_EPROTO, 6), 0);
    ck_assert (s_released (0, -SH_EUNAVAIL) && s_released (1, -SH_EUNAVAIL));
    ck_assert (transfer_refuses_writes (t));
    ck_assert_int_eq (transfer_proposal_due (t, 100000), TRANSFER_OP_NONE);
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_an_operators_abort_stops_the_run_at_once)
{
    transfer_params_t p = s_params ();
    uint64_t nums [] = { 1, 2, 3 };
    transfer_t *t = s_streaming (&p, nums, 3);
    transfer_push_batch (t, 1, 1, 10, NULL);
    transfer_push_write (t, 10, s_item (0), 0);
    uint64_t seqs [4];
    s_send_all (t, 0, seqs, 4);
    transfer_push_write (t, 10, s_item (1), 1);
    transfer_on_state (t, true, true, 2);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_STREAMING);
    transfer_on_state (t, false, true, 3);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_STOPPED);
    ck_assert (!transfer_forwarding (t) && !transfer_refuses_writes (t));
    ck_assert (s_released (0, 0) && s_released (1, 0));
    ck_assert_int_eq (transfer_proposal_due (t, 4), TRANSFER_OP_NONE);
    ck_assert (!transfer_wants_batch (t));
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_a_replica_dropped_without_a_finish_stops_and_vouches_for_nothing)
{
    transfer_params_t p = s_params ();
    uint64_t nums [] = { 1 };
    transfer_t *t = s_streaming (&p, nums, 1);
    transfer_push_write (t, 10, s_item (0), 0);
    transfer_on_state (t, false, false, 3);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_STOPPED);
    ck_assert (s_released (0, -SH_EUNAVAIL));
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_an_unanswered_proposal_is_asked_again)
{
    transfer_params_t p = s_params ();
    uint64_t nums [] = { 1 };
    transfer_t *t = s_streaming (&p, nums, 1);
    transfer_fail (t, -SH_EUNAVAIL, "gone", 0);
    transfer_proposal_sent (t, transfer_proposal_due (t, 0), 0);
    transfer_tick (t, p.propose_timeout_ms);
    ck_assert_int_eq (transfer_proposal_due (t, p.propose_timeout_ms), TRANSFER_OP_NONE);
    uint64_t late = p.propose_timeout_ms + p.retry_ms;
    transfer_tick (t, late);
    ck_assert_int_eq (transfer_proposal_due (t, late), TRANSFER_OP_ABORT);
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_destroy_releases_what_is_held_with_the_sources_fate)
{
    s_reset_log ();
    transfer_params_t p = s_params ();
    uint64_t nums [] = { 1 };
    transfer_t *t = s_streaming (&p, nums, 1);
    transfer_push_write (t, 10, s_item (0), 0);
    transfer_destroy (&t);
    ck_assert (s_released (0, 0));                  //  no finish: ours
    t = s_finish_proposed ();
    transfer_destroy (&t);
    ck_assert (s_released (0, -SH_EUNAVAIL) && s_released (1, -SH_EUNAVAIL));
    transfer_destroy (&t);                          //  NULL-safe
}
END_TEST

//  --------------------------------------------------------------------------
//  The target side

START_TEST (test_the_target_applies_a_stream_only_in_order)
{
    transfer_in_t in = { 0 };
    char err [256];
    ck_assert_int_eq (transfer_in_check (&in, 3, 1, false, err, sizeof err), 1);
    ck_assert_int_eq (transfer_in_check (&in, 3, 2, false, err, sizeof err), 0);
    //  A gap, a repeat, another source: refused, and the stream stays.
    ck_assert_int_eq (transfer_in_check (&in, 3, 4, false, err, sizeof err), -SH_EPROTO);
    ck_assert_ptr_nonnull (strstr (err, "expected seq 3"));
    ck_assert_int_eq (transfer_in_check (&in, 3, 2, false, err, sizeof err), -SH_EPROTO);
    ck_assert_int_eq (transfer_in_check (&in, 9, 3, false, err, sizeof err), -SH_EPROTO);
    ck_assert_int_eq (transfer_in_check (&in, 3, 0, false, err, sizeof err), -SH_EPROTO);
    ck_assert_int_eq (transfer_in_check (&in, 0, 3, false, err, sizeof err), -SH_EPROTO);
    ck_assert_int_eq (transfer_in_check (&in, 3, 3, false, err, sizeof err), 0);
    //  After the finish the target is Active: the stream goes on.
    ck_assert_int_eq (transfer_in_check (&in, 3, 4, true, err, sizeof err), 0);
    //  ...but it is never emptied by a stream starting over.
    ck_assert_int_eq (transfer_in_check (&in, 3, 1, true, err, sizeof err), -SH_EPROTO);
    ck_assert_uint_eq (in.next, 5);
}
END_TEST

START_TEST (test_a_restarted_source_starts_over_and_the_target_resets)
{
    transfer_in_t in = { 0 };
    char err [256];
    transfer_params_t p = s_params ();
    uint64_t nums [] = { 1, 2 };
    //  First run: seqs 1..3 reach the target.
    transfer_t *t = s_streaming (&p, nums, 2);
    transfer_push_batch (t, 1, 1, 10, NULL);
    transfer_push_write (t, 10, s_item (0), 0);
    transfer_push_batch (t, 1, 1, 10, NULL);
    uint64_t seqs [4];
    size_t n = s_send_all (t, 0, seqs, 4);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_ge (transfer_in_check (&in, 5, seqs [i], false, err, sizeof err), 0);
    //  The source process dies: the new run starts at seq 1 again, which
    //  the target takes as "drop everything and start over".
    transfer_destroy (&t);
    t = s_streaming (&p, nums, 2);
    ck_assert (transfer_wants_batch (t));
    ck_assert_uint_eq (transfer_push_batch (t, 2, 2, 10, NULL), 1);
    ck_assert_int_eq (transfer_in_check (&in, 5, 1, false, err, sizeof err), 1);
    ck_assert_int_eq (transfer_in_check (&in, 5, 2, false, err, sizeof err), 0);
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_a_restarted_target_refuses_the_stream_and_the_source_aborts)
{
    transfer_in_t in = { 0 };
    char err [256];
    transfer_params_t p = s_params ();
    uint64_t nums [] = { 1, 2 };
    transfer_t *t = s_streaming (&p, nums, 2);
    transfer_push_batch (t, 1, 1, 10, NULL);
    uint64_t seq;
    bool batch;
    void *item;
    ck_assert (transfer_next_send (t, 0, &seq, &batch, &item));
    ck_assert_int_eq (transfer_in_check (&in, 5, seq, false, err, sizeof err), 1);
    transfer_ack (t, seq, 0, 1);
    //  The target restarts: it knows no stream any more.
    memset (&in, 0, sizeof in);
    transfer_push_write (t, 10, s_item (0), 2);
    ck_assert (transfer_next_send (t, 2, &seq, &batch, &item));
    int rc = transfer_in_check (&in, 5, seq, false, err, sizeof err);
    ck_assert_int_eq (rc, -SH_EPROTO);
    ck_assert_ptr_nonnull (strstr (err, "start at seq 1"));
    transfer_ack (t, seq, rc, 3);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_ABORTING);
    ck_assert_int_eq (transfer_proposal_due (t, 3), TRANSFER_OP_ABORT);
    ck_assert (s_released (0, 0));
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_at_most_the_batch_window_of_batches_is_open)
{
    transfer_params_t p = s_params ();
    p.window = 100;
    p.window_bytes = 1u << 20;
    p.batches = 2;
    uint64_t nums [] = { 1, 2, 3, 4 };
    transfer_t *t = s_streaming (&p, nums, 4);
    transfer_push_batch (t, 1, 1, 10, NULL);
    ck_assert (transfer_wants_batch (t));
    transfer_push_batch (t, 1, 1, 10, NULL);
    ck_assert (!transfer_wants_batch (t));
    uint64_t seqs [4];
    ck_assert_uint_eq (s_send_all (t, 0, seqs, 4), 2);
    ck_assert (!transfer_wants_batch (t));
    transfer_ack (t, 1, 0, 1);
    ck_assert (transfer_wants_batch (t));
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_a_probe_answered_past_an_unanswered_envelope_fails_the_run_at_once)
{
    transfer_params_t p = s_params ();
    p.stall_ms = 300;
    uint64_t nums [] = { 1, 2 };
    transfer_t *t = s_streaming (&p, nums, 2);
    transfer_push_batch (t, 1, 1, 10, NULL);
    transfer_push_write (t, 10, s_item (0), 0);
    uint64_t seqs [4];
    s_send_all (t, 100, seqs, 4);
    //  Answers come in time: no probe.
    ck_assert (!transfer_probe_due (t, 399));
    transfer_ack (t, 1, 0, 150);
    ck_assert (!transfer_probe_due (t, 399));
    ck_assert (transfer_probe_due (t, 400));
    transfer_probe_sent (t, 77, 400);
    ck_assert (!transfer_probe_due (t, 699));
    //  Envelopes sent after the probe are not covered by its answer.
    transfer_push_write (t, 10, s_item (1), 450);
    s_send_all (t, 450, seqs, 4);
    //  A late answer of a connecting probe, and an error from a p2p actor,
    //  prove nothing.
    transfer_probe_reply (t, 1, 0, 500);
    transfer_probe_reply (t, 77, -SH_ETIMEDOUT, 500);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_STREAMING);
    ck_assert (transfer_probe_due (t, 700));
    transfer_probe_sent (t, 78, 700);
    transfer_probe_reply (t, 78, 0, 710);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_ABORTING);
    ck_assert_int_eq (transfer_status (t), -SH_EPROTO);
    ck_assert_ptr_nonnull (strstr (transfer_reason (t), "seq 2 was lost"));
    ck_assert (s_released (0, 0) && s_released (1, 0));
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_a_probe_answered_after_everything_before_it_is_fine)
{
    transfer_params_t p = s_params ();
    p.stall_ms = 300;
    uint64_t nums [] = { 1, 2 };
    transfer_t *t = s_streaming (&p, nums, 2);
    transfer_push_batch (t, 1, 1, 10, NULL);
    transfer_push_write (t, 10, s_item (0), 0);
    uint64_t seqs [4];
    s_send_all (t, 100, seqs, 4);
    ck_assert (transfer_probe_due (t, 400));
    transfer_probe_sent (t, 5, 400);
    transfer_push_write (t, 10, s_item (1), 410);
    s_send_all (t, 410, seqs, 4);
    transfer_ack (t, 1, 0, 420);
    transfer_ack (t, 2, 0, 420);
    transfer_probe_reply (t, 5, 0, 430);        //  seq 3 went after the probe
    ck_assert_int_eq (transfer_phase (t), TRANSFER_STREAMING);
    ck_assert (s_released (0, 0) && s_held (1));
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_a_stream_probe_that_cannot_reach_the_target_fails_the_run)
{
    transfer_params_t p = s_params ();
    p.stall_ms = 300;
    uint64_t nums [] = { 1, 2 };
    transfer_t *t = s_streaming (&p, nums, 2);
    transfer_push_batch (t, 1, 1, 10, NULL);
    uint64_t seqs [4];
    s_send_all (t, 100, seqs, 4);
    transfer_probe_sent (t, 9, 400);
    transfer_probe_reply (t, 9, -SH_EUNAVAIL, 401);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_ABORTING);
    ck_assert_int_eq (transfer_status (t), -SH_EUNAVAIL);
    transfer_destroy (&t);
}
END_TEST

START_TEST (test_the_ring_grows_past_its_first_capacity_in_order)
{
    transfer_params_t p = s_params ();
    p.window = 1000;
    p.window_bytes = 1u << 30;
    p.queue_max = 1000;
    uint64_t nums [] = { 1 };
    transfer_t *t = s_streaming (&p, nums, 1);
    transfer_push_batch (t, 1, 1, 1, NULL);
    uint64_t seqs [300];
    //  Interleave sends and acks so the ring wraps, then grows.
    for (size_t round = 0; round < 3; round++) {
        for (size_t i = 0; i < 50; i++)
            transfer_push_write (t, 1, NULL, 0);
        size_t n = s_send_all (t, 0, seqs, 300);
        for (size_t i = 0; i < n / 2; i++)
            ck_assert_int_eq (transfer_ack (t, seqs [i], 0, 0), 0);
    }
    for (size_t i = 0; i < 100; i++)
        transfer_push_write (t, 1, NULL, 0);
    size_t n = s_send_all (t, 0, seqs, 300);
    for (size_t i = 1; i < n; i++)
        ck_assert_uint_eq (seqs [i], seqs [i - 1] + 1);
    ck_assert_uint_eq (seqs [n - 1], 251);
    //  Everything still open is acknowledged in any order, and the run is
    //  caught up.
    for (uint64_t s = 251; s >= 1; s--)
        transfer_ack (t, s, 0, 1);
    ck_assert_uint_eq (transfer_inflight (t), 0);
    ck_assert_int_eq (transfer_phase (t), TRANSFER_FINISHING);
    transfer_destroy (&t);
}
END_TEST

Suite *
transfer_suite (void)
{
    Suite *s = suite_create ("transfer");
    TCase *tc = tcase_create ("source");
    tcase_add_test (tc, test_probes_until_the_target_answers_then_waits_for_the_snapshot);
    tcase_add_test (tc, test_a_target_that_never_answers_aborts_the_run);
    tcase_add_test (tc, test_the_cursor_walks_the_snapshot_in_id_order);
    tcase_add_test (tc, test_integers_sort_before_uuids_in_the_snapshot);
    tcase_add_test (tc, test_an_empty_shard_still_sends_one_batch_then_finishes);
    tcase_add_test (tc, test_batches_and_forwarded_writes_share_one_seq_in_push_order);
    tcase_add_test (tc, test_the_window_bounds_what_is_sent_and_not_acknowledged);
    tcase_add_test (tc, test_the_window_bounds_bytes_but_always_lets_one_envelope_go);
    tcase_add_test (tc, test_batches_wait_for_room_while_writes_keep_coming);
    tcase_add_test (tc, test_at_most_the_batch_window_of_batches_is_open);
    tcase_add_test (tc, test_finishes_when_everything_up_to_the_last_batch_is_acknowledged);
    tcase_add_test (tc, test_an_error_answer_aborts_and_the_source_keeps_every_write);
    tcase_add_test (tc, test_no_acknowledgement_in_time_aborts);
    tcase_add_test (tc, test_a_queue_past_its_bound_aborts);
    tcase_add_test (tc, test_a_queue_past_its_byte_bound_aborts);
    tcase_add_test (tc, test_a_failure_after_the_finish_was_proposed_holds_writes_until_the_outcome);
    tcase_add_test (tc, test_when_the_finish_wins_over_a_broken_stream_unacknowledged_writes_fail);
    tcase_add_test (tc, test_held_writes_fail_when_the_outcome_takes_too_long);
    tcase_add_test (tc, test_a_failure_after_the_move_breaks_the_stream_and_refuses_writes);
    tcase_add_test (tc, test_an_operators_abort_stops_the_run_at_once);
    tcase_add_test (tc, test_a_replica_dropped_without_a_finish_stops_and_vouches_for_nothing);
    tcase_add_test (tc, test_an_unanswered_proposal_is_asked_again);
    tcase_add_test (tc, test_a_probe_answered_past_an_unanswered_envelope_fails_the_run_at_once);
    tcase_add_test (tc, test_a_probe_answered_after_everything_before_it_is_fine);
    tcase_add_test (tc, test_a_stream_probe_that_cannot_reach_the_target_fails_the_run);
    tcase_add_test (tc, test_destroy_releases_what_is_held_with_the_sources_fate);
    tcase_add_test (tc, test_the_ring_grows_past_its_first_capacity_in_order);
    suite_add_tcase (s, tc);
    tc = tcase_create ("target");
    tcase_add_test (tc, test_the_target_applies_a_stream_only_in_order);
    tcase_add_test (tc, test_a_restarted_source_starts_over_and_the_target_resets);
    tcase_add_test (tc, test_a_restarted_target_refuses_the_stream_and_the_source_aborts);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (transfer_suite)
