/*  transfer: the source side of a stream_records shard transfer and the
    target side's order check, without sockets or clock (transfer.h tells
    the phases, what a held item's release means, and how restarts go).

    The stream is a ring of entries in seq order: pushed (queued), sent
    (in flight) or acknowledged. Entries leave from the front once
    acknowledged, so the front is always the oldest envelope not yet
    acknowledged, and seq s sits at offset s - front_seq.
*/
#include "actors/shard/transfer.h"
#include "common/err.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { S_QUEUED, S_SENT, S_ACKED } s_state_t;

typedef struct {
    uint64_t seq;                   //  its place in the stream
    s_state_t state;                //  queued, sent or acknowledged
    bool batch;                     //  a record batch (else a forwarded write)
    size_t points;                  //  batch: points in it
    size_t bytes;                   //  encoded size
    uint64_t sent_at;               //  when it was sent (ms)
    void *item;                     //  the caller's, until released (then NULL)
} s_entry_t;

struct _transfer_t {
    transfer_params_t params;       //  bounds and timeouts
    uint64_t to;                    //  the target peer
    transfer_phase_t phase;         //  where the run is
    transfer_release_fn *release;   //  hands items back
    void *arg;                      //  for release
    uint64_t started;               //  when the run began (ms)
    uint64_t probe_at;              //  when the last probe went, 0 = none yet
    bool probe_waiting;             //  the last probe is unanswered
    uint64_t check_id;              //  the stream probe in flight, 0 = none
    uint64_t check_covers;          //  the newest seq sent before it
    uint64_t check_at;              //  when it went
    uint64_t last_sent;             //  the newest seq sent
    pointid_t *ids;                 //  the snapshot, in id order
    size_t n_ids;                   //  its size (= total)
    size_t cursor;                  //  ids [cursor..] are not in a batch yet
    size_t transferred;             //  points in acknowledged batches
    uint64_t last_batch;            //  seq of the newest batch, 0 = none yet
    size_t batches_open;            //  batches pushed and not acknowledged
    s_entry_t *ring;                //  entries not acknowledged, in seq order...
    size_t cap;                     //  ...its capacity
    size_t head;                    //  index of the front entry
    size_t count;                   //  entries in it
    uint64_t front_seq;             //  seq of the front entry (when count > 0)
    uint64_t next_seq;              //  seq of the next push
    size_t inflight;                //  entries sent, not answered
    size_t inflight_bytes;          //  their bytes
    size_t queued;                  //  entries pushed, not sent
    size_t queued_bytes;            //  their bytes
    bool finish_proposed;           //  a finish went out: its outcome is the state's
    bool broken;                    //  FINISHED, but the stream failed since
    uint64_t failed_at;             //  when the stream failed, 0 = it did not
    int status;                     //  the first failure's code, 0 = none
    char reason [256];              //  and what it was about
    transfer_op_t proposal;         //  the op of the proposal in flight, or NONE
    uint64_t proposal_at;           //  when it went
    transfer_op_t accepted;         //  the op last accepted (or found gone)
    uint64_t retry_at;              //  no proposal before this
};

void
transfer_params_default (transfer_params_t *params)
{
    memset (params, 0, sizeof *params);
    params->batch_points = 512;
    params->batch_bytes = 8u << 20;
    params->window = 64;
    params->window_bytes = 32u << 20;
    params->batches = 16;
    params->queue_max = 4096;
    params->queue_bytes = 256u << 20;
    params->ack_timeout_ms = 20000;
    params->connect_timeout_ms = 30000;
    params->probe_ms = 20;
    params->stall_ms = 1000;
    params->propose_timeout_ms = 10000;
    params->retry_ms = 1000;
    params->outcome_timeout_ms = 30000;
}

transfer_t *
transfer_new (const transfer_params_t *params, uint64_t to, uint64_t now,
              transfer_release_fn *release, void *arg)
{
    assert (params && release);
    transfer_t *self = (transfer_t *) calloc (1, sizeof *self);
    assert (self);
    self->params = *params;
    if (self->params.window == 0)
        self->params.window = 1;
    if (self->params.batch_points == 0)
        self->params.batch_points = 1;
    if (self->params.batches == 0)
        self->params.batches = 1;
    self->to = to;
    self->phase = TRANSFER_CONNECTING;
    self->release = release;
    self->arg = arg;
    self->started = now;
    self->next_seq = 1;
    self->front_seq = 1;
    return self;
}

//  --------------------------------------------------------------------------
//  The ring

static s_entry_t *
s_at (transfer_t *self, size_t offset)
{
    assert (offset < self->count);
    return &self->ring [(self->head + offset) % self->cap];
}

static s_entry_t *
s_find (transfer_t *self, uint64_t seq)
{
    if (self->count == 0 || seq < self->front_seq || seq - self->front_seq >= self->count)
        return NULL;
    return s_at (self, (size_t) (seq - self->front_seq));
}

static s_entry_t *
s_append (transfer_t *self)
{
    if (self->count == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 64;
        s_entry_t *ring = (s_entry_t *) calloc (cap, sizeof *ring);
        assert (ring);
        for (size_t i = 0; i < self->count; i++)
            ring [i] = *s_at (self, i);
        free (self->ring);
        self->ring = ring;
        self->cap = cap;
        self->head = 0;
    }
    if (self->count == 0)
        self->front_seq = self->next_seq;
    s_entry_t *entry = &self->ring [(self->head + self->count) % self->cap];
    self->count++;
    memset (entry, 0, sizeof *entry);
    entry->seq = self->next_seq++;
    return entry;
}

//  Drops acknowledged entries off the front.
static void
s_pop_acked (transfer_t *self)
{
    while (self->count && s_at (self, 0)->state == S_ACKED) {
        self->head = (self->head + 1) % self->cap;
        self->count--;
        self->front_seq++;
    }
}

static void
s_release (transfer_t *self, s_entry_t *entry, int status)
{
    void *item = entry->item;
    entry->item = NULL;
    if (item)
        self->release (item, status, self->arg);
}

//  Releases every entry's item with status and empties the stream.
static void
s_release_all (transfer_t *self, int status)
{
    //  Take the entries out first: a release may look at the run.
    size_t count = self->count;
    s_entry_t *taken = (s_entry_t *) calloc (count + 1, sizeof *taken);
    assert (taken);
    for (size_t i = 0; i < count; i++)
        taken [i] = *s_at (self, i);
    self->head = 0;
    self->count = 0;
    self->front_seq = self->next_seq;
    self->inflight = self->inflight_bytes = 0;
    self->queued = self->queued_bytes = 0;
    self->batches_open = 0;
    for (size_t i = 0; i < count; i++)
        s_release (self, &taken [i], status);
    free (taken);
}

//  The fate of a write held when the run ends without an acknowledgement:
//  the source stays the owner unless a finish may have moved the shard.
static int
s_unacked_status (const transfer_t *self)
{
    return self->finish_proposed || self->phase == TRANSFER_FINISHED ? -SH_EUNAVAIL : 0;
}

void
transfer_destroy (transfer_t **self_p)
{
    transfer_t *self = *self_p;
    if (!self)
        return;
    s_release_all (self, s_unacked_status (self));
    free (self->ring);
    free (self->ids);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Accessors

transfer_phase_t
transfer_phase (const transfer_t *self)
{
    return self->phase;
}

const char *
transfer_phase_name (transfer_phase_t phase)
{
    switch (phase) {
        case TRANSFER_CONNECTING: return "connecting";
        case TRANSFER_READY: return "ready";
        case TRANSFER_STREAMING: return "streaming";
        case TRANSFER_FINISHING: return "finishing";
        case TRANSFER_FINISHED: return "finished";
        case TRANSFER_ABORTING: return "aborting";
        case TRANSFER_STOPPED: return "stopped";
    }
    return "unknown";
}

uint64_t
transfer_to (const transfer_t *self)
{
    return self->to;
}

const transfer_params_t *
transfer_params (const transfer_t *self)
{
    return &self->params;
}

int
transfer_status (const transfer_t *self)
{
    return self->status;
}

const char *
transfer_reason (const transfer_t *self)
{
    return self->reason;
}

bool
transfer_running (const transfer_t *self)
{
    return self->phase <= TRANSFER_FINISHING || self->phase == TRANSFER_ABORTING;
}

size_t
transfer_total (const transfer_t *self)
{
    return self->n_ids;
}

size_t
transfer_transferred (const transfer_t *self)
{
    return self->transferred;
}

size_t
transfer_inflight (const transfer_t *self)
{
    return self->inflight;
}

size_t
transfer_queued (const transfer_t *self)
{
    return self->queued;
}

//  --------------------------------------------------------------------------
//  Connecting

//  The oldest entry sent and not answered, or NULL.
static s_entry_t *
s_oldest_sent (const transfer_t *self)
{
    for (size_t i = 0; i < self->count && self->inflight; i++) {
        s_entry_t *entry = &self->ring [(self->head + i) % self->cap];
        if (entry->state == S_QUEUED)
            break;
        if (entry->state == S_SENT)
            return entry;
    }
    return NULL;
}

bool
transfer_probe_due (const transfer_t *self, uint64_t now)
{
    if (self->phase == TRANSFER_CONNECTING)
        return !self->probe_waiting || now >= self->probe_at + self->params.probe_ms;
    if (!transfer_forwarding (self) || !self->inflight)
        return false;
    if (self->check_id && now < self->check_at + self->params.stall_ms)
        return false;
    const s_entry_t *oldest = s_oldest_sent (self);
    return oldest && now >= oldest->sent_at + self->params.stall_ms;
}

void
transfer_probe_sent (transfer_t *self, uint64_t id, uint64_t now)
{
    if (self->phase == TRANSFER_CONNECTING) {
        self->probe_at = now;
        self->probe_waiting = true;
        return;
    }
    self->check_id = id;
    self->check_covers = self->last_sent;
    self->check_at = now;
}

void
transfer_probe_reply (transfer_t *self, uint64_t id, int status, uint64_t now)
{
    if (self->phase == TRANSFER_CONNECTING) {
        if (status == 0)
            self->phase = TRANSFER_READY;
        //  An error (the target not started, or its peer not knowing it
        //  yet) waits out probe_ms before the next probe.
        return;
    }
    if (id == 0 || id != self->check_id)
        return;                     //  a late answer to an earlier probe
    self->check_id = 0;
    if (status == -SH_EUNAVAIL) {
        //  The p2p actor could not send it: the target's peer is down or
        //  its replica gone, and a link that dropped dropped what was
        //  queued on it too.
        transfer_fail (self, status, "the target is unreachable", now);
        return;
    }
    if (status)
        return;                     //  a deadline: the ack deadline decides
    //  The target answered the probe, so it has answered everything sent
    //  before it: an envelope still unanswered never reached it.
    s_entry_t *oldest = s_oldest_sent (self);
    if (oldest && oldest->seq <= self->check_covers) {
        char reason [128];
        snprintf (reason, sizeof reason, "seq %" PRIu64 " was lost on the way to the target "
                  "(it restarted?)", oldest->seq);
        transfer_fail (self, -SH_EPROTO, reason, now);
    }
}

static int
s_cmp_ids (const void *a, const void *b)
{
    return pointid_cmp ((const pointid_t *) a, (const pointid_t *) b);
}

int
transfer_begin (transfer_t *self, pointid_t *ids, size_t n_ids)
{
    if (self->phase != TRANSFER_READY) {
        free (ids);
        return -SH_EINVAL;
    }
    if (n_ids > 1)
        qsort (ids, n_ids, sizeof *ids, s_cmp_ids);
    free (self->ids);
    self->ids = ids;
    self->n_ids = n_ids;
    self->cursor = 0;
    self->phase = TRANSFER_STREAMING;
    return 0;
}

//  --------------------------------------------------------------------------
//  The stream

bool
transfer_forwarding (const transfer_t *self)
{
    return self->phase == TRANSFER_STREAMING || self->phase == TRANSFER_FINISHING
        || (self->phase == TRANSFER_FINISHED && !self->broken);
}

bool
transfer_refuses_writes (const transfer_t *self)
{
    return (self->phase == TRANSFER_ABORTING && self->finish_proposed)
        || (self->phase == TRANSFER_FINISHED && self->broken);
}

bool
transfer_wants_batch (const transfer_t *self)
{
    if (self->phase != TRANSFER_STREAMING)
        return false;
    if (self->cursor >= self->n_ids && self->last_batch)
        return false;
    if (self->batches_open >= self->params.batches)
        return false;
    size_t open = self->inflight + self->queued;
    if (open == 0)
        return true;
    size_t bytes = self->inflight_bytes + self->queued_bytes;
    return open < self->params.window
        && bytes + self->params.batch_bytes <= self->params.window_bytes;
}

size_t
transfer_cursor (const transfer_t *self, const pointid_t **ids)
{
    *ids = self->ids ? self->ids + self->cursor : NULL;
    return self->n_ids - self->cursor;
}

uint64_t
transfer_next_seq (const transfer_t *self)
{
    return self->next_seq;
}

static uint64_t
s_push (transfer_t *self, bool batch, size_t points, size_t bytes, void *item)
{
    s_entry_t *entry = s_append (self);
    entry->state = S_QUEUED;
    entry->batch = batch;
    entry->points = points;
    entry->bytes = bytes;
    entry->item = item;
    self->queued++;
    self->queued_bytes += bytes;
    return entry->seq;
}

uint64_t
transfer_push_batch (transfer_t *self, size_t n_ids, size_t n_points, size_t bytes,
                     void *item)
{
    if (self->phase != TRANSFER_STREAMING) {
        if (item)
            self->release (item, 0, self->arg);
        return 0;
    }
    size_t left = self->n_ids - self->cursor;
    self->cursor += n_ids < left ? n_ids : left;
    self->batches_open++;
    self->last_batch = s_push (self, true, n_points, bytes, item);
    return self->last_batch;
}

uint64_t
transfer_push_write (transfer_t *self, size_t bytes, void *item, uint64_t now)
{
    if (!transfer_forwarding (self)) {
        if (item)
            self->release (item, transfer_refuses_writes (self) ? -SH_EUNAVAIL : 0,
                           self->arg);
        return 0;
    }
    uint64_t seq = s_push (self, false, 0, bytes, item);
    if (self->queued > self->params.queue_max || self->queued_bytes > self->params.queue_bytes) {
        char reason [160];
        snprintf (reason, sizeof reason, "the target is too slow: %zu envelopes (%zu bytes) "
                  "waiting to be sent", self->queued, self->queued_bytes);
        transfer_fail (self, -SH_EUNAVAIL, reason, now);
        return 0;
    }
    return seq;
}

bool
transfer_next_send (transfer_t *self, uint64_t now, uint64_t *seq, bool *is_batch,
                    void **item)
{
    if (!self->queued || !transfer_forwarding (self))
        return false;
    s_entry_t *entry = s_at (self, self->count - self->queued);
    assert (entry->state == S_QUEUED);
    if (self->inflight >= self->params.window
        || (self->inflight
            && self->inflight_bytes + entry->bytes > self->params.window_bytes))
        return false;
    entry->state = S_SENT;
    entry->sent_at = now;
    self->queued--;
    self->queued_bytes -= entry->bytes;
    self->inflight++;
    self->inflight_bytes += entry->bytes;
    self->last_sent = entry->seq;
    *seq = entry->seq;
    *is_batch = entry->batch;
    *item = entry->item;
    return true;
}

//  STREAMING with every batch pushed and everything up to the last one
//  acknowledged: time to finish.
static void
s_check_caught_up (transfer_t *self)
{
    if (self->phase != TRANSFER_STREAMING || self->cursor < self->n_ids || !self->last_batch
        || self->batches_open)
        return;
    if (self->count && self->front_seq <= self->last_batch)
        return;
    self->phase = TRANSFER_FINISHING;
    self->proposal = TRANSFER_OP_NONE;
    self->accepted = TRANSFER_OP_NONE;
    self->retry_at = 0;
}

int
transfer_ack (transfer_t *self, uint64_t seq, int status, uint64_t now)
{
    s_entry_t *entry = s_find (self, seq);
    if (!entry || entry->state != S_SENT)
        return -SH_ENOTFOUND;
    if (status) {
        char reason [96];
        snprintf (reason, sizeof reason, "the target answered seq %" PRIu64 " with an error",
                  seq);
        transfer_fail (self, status, reason, now);
        return 0;
    }
    entry->state = S_ACKED;
    self->inflight--;
    self->inflight_bytes -= entry->bytes;
    if (entry->batch) {
        self->batches_open--;
        self->transferred += entry->points;
    }
    s_release (self, entry, 0);
    s_pop_acked (self);
    s_check_caught_up (self);
    return 0;
}

void
transfer_fail (transfer_t *self, int status, const char *reason, uint64_t now)
{
    if (status == 0)
        status = -SH_EINTERNAL;
    if (self->phase == TRANSFER_ABORTING || self->phase == TRANSFER_STOPPED
        || (self->phase == TRANSFER_FINISHED && self->broken))
        return;
    if (!self->status) {
        self->status = status;
        snprintf (self->reason, sizeof self->reason, "%s", reason ? reason : "");
    }
    self->failed_at = now ? now : 1;
    if (self->phase == TRANSFER_FINISHED) {
        //  The target owns the shard: what it did not acknowledge may be
        //  lost, and what comes next cannot reach it.
        self->broken = true;
        s_release_all (self, -SH_EUNAVAIL);
        return;
    }
    self->phase = TRANSFER_ABORTING;
    self->proposal = TRANSFER_OP_NONE;
    self->accepted = TRANSFER_OP_NONE;
    self->retry_at = 0;
    if (!self->finish_proposed) {
        //  No finish can happen: the source stays the owner of every
        //  write it applied.
        s_release_all (self, 0);
        return;
    }
    //  The finish may win or the abort: held writes wait for the state.
    //  Nothing queued will be sent; late answers to what was sent still
    //  count.
}

void
transfer_tick (transfer_t *self, uint64_t now)
{
    if (self->phase == TRANSFER_CONNECTING
        && now >= self->started + self->params.connect_timeout_ms) {
        transfer_fail (self, -SH_ETIMEDOUT, "the target replica did not answer", now);
        return;
    }
    s_entry_t *oldest = s_oldest_sent (self);
    if (oldest && now >= oldest->sent_at + self->params.ack_timeout_ms) {
        //  The oldest sent is the first to expire.
        char reason [96];
        snprintf (reason, sizeof reason, "seq %" PRIu64 " was not acknowledged in time",
                  oldest->seq);
        transfer_fail (self, -SH_ETIMEDOUT, reason, now);
    }
    if (self->phase == TRANSFER_ABORTING && self->finish_proposed && self->count
        && now >= self->failed_at + self->params.outcome_timeout_ms)
        s_release_all (self, -SH_ETIMEDOUT);
    if (self->proposal != TRANSFER_OP_NONE
        && now >= self->proposal_at + self->params.propose_timeout_ms + self->params.retry_ms) {
        //  The answer is overdue (the raft actor answers by the deadline):
        //  ask again.
        self->proposal = TRANSFER_OP_NONE;
        self->retry_at = now;
    }
}

//  --------------------------------------------------------------------------
//  Consensus

transfer_op_t
transfer_proposal_due (const transfer_t *self, uint64_t now)
{
    transfer_op_t op = self->phase == TRANSFER_FINISHING ? TRANSFER_OP_FINISH
                     : self->phase == TRANSFER_ABORTING ? TRANSFER_OP_ABORT
                     : TRANSFER_OP_NONE;
    if (op == TRANSFER_OP_NONE || self->proposal != TRANSFER_OP_NONE || self->accepted == op
        || now < self->retry_at)
        return TRANSFER_OP_NONE;
    return op;
}

void
transfer_proposal_sent (transfer_t *self, transfer_op_t op, uint64_t now)
{
    self->proposal = op;
    self->proposal_at = now;
    if (op == TRANSFER_OP_FINISH)
        self->finish_proposed = true;
}

void
transfer_proposal_reply (transfer_t *self, transfer_op_t op, int status, uint64_t now)
{
    if (op != self->proposal)
        return;                     //  not the one in flight (a late answer)
    self->proposal = TRANSFER_OP_NONE;
    if (status == 0 || status == -SH_ENOTFOUND)
        self->accepted = op;
    else
        self->retry_at = now + self->params.retry_ms;
}

void
transfer_on_state (transfer_t *self, bool listed, bool replica_listed, uint64_t now)
{
    (void) now;
    if (listed || self->phase == TRANSFER_STOPPED || self->phase == TRANSFER_FINISHED)
        return;
    if (replica_listed) {
        //  Aborted (by us or an operator): this replica stays the shard's.
        self->phase = TRANSFER_STOPPED;
        s_release_all (self, 0);
        return;
    }
    if (!self->finish_proposed && self->phase != TRANSFER_FINISHING) {
        //  This replica was dropped without a finish of ours (a peer
        //  removed by force): nothing held can be vouched for.
        self->phase = TRANSFER_STOPPED;
        s_release_all (self, -SH_EUNAVAIL);
        return;
    }
    bool intact = self->phase == TRANSFER_FINISHING;
    self->phase = TRANSFER_FINISHED;
    if (!intact) {
        self->broken = true;
        s_release_all (self, -SH_EUNAVAIL);
    }
}

//  --------------------------------------------------------------------------
//  The target side

int
transfer_in_check (transfer_in_t *in, uint64_t from, uint64_t seq, bool active, char *err,
                   size_t errlen)
{
    if (from == 0 || seq == 0) {
        snprintf (err, errlen, "\"transfer\" needs a positive \"seq\" and \"from\"");
        return -SH_EPROTO;
    }
    if (seq == 1) {
        if (active) {
            snprintf (err, errlen, "transfer from peer %" PRIu64 " starts over, but this "
                      "replica is Active and is not emptied", from);
            return -SH_EPROTO;
        }
        in->from = from;
        in->next = 2;
        return 1;
    }
    if (in->from != from || in->next != seq) {
        if (in->from == 0)
            snprintf (err, errlen, "transfer from peer %" PRIu64 ": got seq %" PRIu64
                      ", expected the stream to start at seq 1", from, seq);
        else
        if (in->from != from)
            snprintf (err, errlen, "transfer from peer %" PRIu64 ": got seq %" PRIu64
                      " while the stream from peer %" PRIu64 " runs", from, seq, in->from);
        else
            snprintf (err, errlen, "transfer from peer %" PRIu64 ": got seq %" PRIu64
                      ", expected seq %" PRIu64, from, seq, in->next);
        return -SH_EPROTO;
    }
    in->next++;
    return 0;
}
