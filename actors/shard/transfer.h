/*  transfer: a stream_records shard transfer (proto/msg.h, "Shard transfer,
    stream_records") as state machines without sockets or clock, so that
    every decision is testable: the source side (transfer_t) and the
    target side's order check (transfer_in_t). The shard actor does the I/O.

    Source side. A run starts when the consensus state lists a transfer of
    this shard from this peer and this replica is Active:

      CONNECTING  the target replica is probed (SHARD_INFO through p2p)
                  until it answers: it may be a moment before the target
                  peer has applied the start_transfer and started it, and
                  nothing of the stream may be lost to that.
      READY       it answered; the actor hands over a snapshot of the ids
                  it holds (transfer_begin), taken between its own writes.
      STREAMING   record batches (whole points in id order, from the
                  snapshot) and every write applied since, forwarded after
                  its local commit, share one sequence: seq 1, 2, ... in the
                  order they were pushed, and they are sent in that order.
                  The path to the target is first in, first out, so when
                  envelopes stay unanswered for stall_ms a probe follows
                  them: if it is answered while one sent before it is not,
                  that one was lost (a target that restarted drops what was
                  queued for it) and the run fails at once instead of at
                  the ack deadline.
                  At most `window` envelopes (and window_bytes) are sent
                  and not yet acknowledged; more wait in a queue, which
                  fails the run past queue_max / queue_bytes. A batch is
                  read only while the window has room, so a slow target
                  slows the reading instead of growing memory.
      FINISHING   the last batch and every envelope before it are
                  acknowledged: finish_transfer is proposed (retried until
                  accepted). Writes are still forwarded.
      FINISHED    the state no longer lists the transfer nor this replica:
                  the target is the shard now. Writes that still arrive
                  (a gateway with an older state) are still forwarded
                  until the supervisor stops this replica.
      ABORTING    a send failed, a reply was an error, or nothing was
                  acknowledged within ack_timeout: abort_transfer is
                  proposed (retried) until the state shows it gone.
                  Nothing more is forwarded.
      STOPPED     the state shows the transfer gone and this replica still
                  listed (our abort, or an operator's): nothing more to do.

    Held writes. Each forwarded write carries an item (the actor's: the
    client's reply) that is released exactly once with the write's fate:
    0 once the target acknowledged it, or when the source is sure to stay
    the shard's owner (no finish was proposed, or the state shows the
    transfer aborted); an error when the finish may have taken the shard
    away before the target had it. So a write acknowledged to a client is
    never lost by the move. Batch items are released (0) on their answer.

    Restarts (the choice): nothing of a run survives its process. A source
    that restarts finds the transfer in the state and starts a new run
    from seq 1; seq 1 tells the target to drop everything it holds first
    (only while it is not Active), so the restarted stream rebuilds it from
    nothing and points the earlier run sent but the source has since lost
    or deleted do not linger. A target that restarts expects seq 1 again,
    refuses the next seq of the running stream (-SH_EPROTO), and the
    source aborts.
*/
#ifndef SH_TRANSFER_H
#define SH_TRANSFER_H

#include "common/pointid.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    TRANSFER_CONNECTING,
    TRANSFER_READY,
    TRANSFER_STREAMING,
    TRANSFER_FINISHING,
    TRANSFER_FINISHED,
    TRANSFER_ABORTING,
    TRANSFER_STOPPED
} transfer_phase_t;

typedef enum {
    TRANSFER_OP_NONE = 0,
    TRANSFER_OP_FINISH,             //  {"type": "finish_transfer", ...}
    TRANSFER_OP_ABORT               //  {"type": "abort_transfer", ...}
} transfer_op_t;

typedef struct {
    size_t batch_points;            //  most points in one record batch
    size_t batch_bytes;             //  a batch stops growing past this (estimated)
    size_t window;                  //  most envelopes sent and not acknowledged
    size_t window_bytes;            //  most bytes sent and not acknowledged
    size_t batches;                 //  most batches pushed and not acknowledged
    size_t queue_max;               //  most envelopes waiting to be sent; more fails
    size_t queue_bytes;             //  most bytes waiting to be sent; more fails
    uint64_t ack_timeout_ms;        //  an envelope unanswered this long fails the run
    uint64_t connect_timeout_ms;    //  the target must answer a probe within this
    uint64_t probe_ms;              //  between probes that got no answer
    uint64_t stall_ms;              //  unanswered this long: a probe checks the stream
    uint64_t propose_timeout_ms;    //  a proposal's deadline
    uint64_t retry_ms;              //  after a proposal that failed
    uint64_t outcome_timeout_ms;    //  held writes wait this long for a finish's outcome
} transfer_params_t;

//  The defaults: 512 points or 8 MiB per batch, a window of 64 envelopes or
//  32 MiB of which at most 16 batches (enough that the source reads the
//  next batches while the target applies the last ones, where 4 made the
//  two take turns; few enough that the target applies the stream in short
//  turns and forwarded writes do not wait behind the whole shard), a queue
//  of 4096 envelopes or 256 MiB, acks within 20 s, the target answering
//  within 30 s, probes every 20 ms (the target's shard actor is up ~100 ms
//  after the start_transfer: a longer gap is time the move waits, and a
//  probe of a peer whose replica is not up yet costs its p2p actor next to
//  nothing), a stream probed after
//  1 s without answers, proposals with a 10 s
//  deadline retried after 1 s, held writes failed 30 s after a stream that
//  broke while its finish was being decided.
void transfer_params_default (transfer_params_t *params);

typedef struct _transfer_t transfer_t;

//  Releases a pushed item with the fate of its envelope (see above):
//  0 or a negative SH_E code. Called exactly once per item.
typedef void (transfer_release_fn) (void *item, int status, void *arg);

//  A run towards peer `to`, CONNECTING, started at now (ms).
transfer_t *transfer_new (const transfer_params_t *params, uint64_t to, uint64_t now,
                          transfer_release_fn *release, void *arg);
//  Releases every item still held (0 if no finish was proposed, else
//  -SH_EUNAVAIL) and frees the run. NULL-safe.
void transfer_destroy (transfer_t **self_p);

transfer_phase_t transfer_phase (const transfer_t *self);
const char *transfer_phase_name (transfer_phase_t phase);
uint64_t transfer_to (const transfer_t *self);
const transfer_params_t *transfer_params (const transfer_t *self);
//  The first failure's code (0 if none) and what it was about.
int transfer_status (const transfer_t *self);
const char *transfer_reason (const transfer_t *self);

//  --- connecting -------------------------------------------------------------
//  True when a probe should go out now: CONNECTING, none unanswered or the
//  last one older than probe_ms; or forwarding, with the oldest envelope
//  in flight unanswered for stall_ms and no such probe unanswered for as
//  long.
bool transfer_probe_due (const transfer_t *self, uint64_t now);
//  A probe went out with request id `id` (the caller's, unique per run).
void transfer_probe_sent (transfer_t *self, uint64_t id, uint64_t now);
//  An answer to probe id. CONNECTING: 0 makes the run READY (any probe's);
//  an error waits for the next probe (the target may not be started yet).
//  Later: the target's own answer (0) to the newest stream probe fails the
//  run if an envelope sent before that probe is still unanswered; so does
//  -SH_EUNAVAIL (the p2p actor cannot reach the target: what was in flight
//  is lost with the link); other errors prove nothing.
void transfer_probe_reply (transfer_t *self, uint64_t id, int status, uint64_t now);
//  READY -> STREAMING with the ids the replica holds now (taken; sorted
//  here). Anything but READY: -SH_EINVAL and ids freed.
int transfer_begin (transfer_t *self, pointid_t *ids, size_t n_ids);

//  --- the stream -------------------------------------------------------------
//  True while writes the replica applies must be pushed (and their replies
//  held): STREAMING, FINISHING, FINISHED with the stream intact.
bool transfer_forwarding (const transfer_t *self);
//  True while writes must be refused (-SH_EUNAVAIL) instead of applied:
//  the stream broke and the shard may have moved (a finish was proposed)
//  or has moved, so a write applied here could be lost.
bool transfer_refuses_writes (const transfer_t *self);
//  True when the actor should read the next batch: STREAMING, ids left (or
//  no batch yet: the first batch goes even when there are no points, so
//  seq 1 always resets the target), and room in the window for one more.
bool transfer_wants_batch (const transfer_t *self);
//  The ids not yet batched, in id order (borrowed until the next call that
//  changes self); their count.
size_t transfer_cursor (const transfer_t *self, const pointid_t **ids);
//  The seq the next push gets (an envelope carries its seq in its JSON).
uint64_t transfer_next_seq (const transfer_t *self);
//  Pushes a batch made of the next n_ids ids of the cursor (n_points of
//  them still existed; bytes its encoded size). Returns its seq, or 0 if
//  the run is not STREAMING (item released with 0).
uint64_t transfer_push_batch (transfer_t *self, size_t n_ids, size_t n_points, size_t bytes,
                              void *item);
//  Pushes a forwarded write of `bytes` bytes at now. Returns its seq, or 0
//  if it was not taken: not forwarding (item released: 0, or -SH_EUNAVAIL
//  while writes are refused) or the queue is over its bounds (the run
//  fails; the item is released with the rest).
uint64_t transfer_push_write (transfer_t *self, size_t bytes, void *item, uint64_t now);
//  The next envelope to send if the window has room: true with *seq,
//  *is_batch and *item (still held by the run); false if nothing may go now.
bool transfer_next_send (transfer_t *self, uint64_t now, uint64_t *seq, bool *is_batch,
                         void **item);
//  The answer to seq: status 0 acknowledges it (its item released with 0),
//  anything else fails the run. -SH_ENOTFOUND for a seq not waiting for an
//  answer (a late answer after a failure): ignored.
int transfer_ack (transfer_t *self, uint64_t seq, int status, uint64_t now);
//  The stream failed (a send refused, an error answer, a deadline): see
//  the phases. reason is kept for logs. The first failure counts.
void transfer_fail (transfer_t *self, int status, const char *reason, uint64_t now);
//  Deadlines: acks, the connect timeout, held writes waiting for an outcome,
//  unanswered proposals.
void transfer_tick (transfer_t *self, uint64_t now);

//  --- consensus --------------------------------------------------------------
//  The op to propose now, or TRANSFER_OP_NONE.
transfer_op_t transfer_proposal_due (const transfer_t *self, uint64_t now);
void transfer_proposal_sent (transfer_t *self, transfer_op_t op, uint64_t now);
//  The raft actor's answer: 0 (accepted) or -SH_ENOTFOUND (no such
//  transfer any more) wait for the state to show the outcome; anything
//  else is retried after retry_ms.
void transfer_proposal_reply (transfer_t *self, transfer_op_t op, int status, uint64_t now);
//  What a newer state says: listed, the transfer (this shard, this peer to
//  transfer_to) is still in "transfers"; replica_listed, this replica is
//  still in the shard's replicas.
void transfer_on_state (transfer_t *self, bool listed, bool replica_listed, uint64_t now);

//  --- progress ---------------------------------------------------------------
//  True while SHARD_INFO shows the run ("transfer": {...}): from
//  CONNECTING to FINISHING, and ABORTING.
bool transfer_running (const transfer_t *self);
//  Points at the snapshot; points in acknowledged batches.
size_t transfer_total (const transfer_t *self);
size_t transfer_transferred (const transfer_t *self);
//  Envelopes sent and not answered; envelopes waiting to be sent.
size_t transfer_inflight (const transfer_t *self);
size_t transfer_queued (const transfer_t *self);

//  --- the target side ----------------------------------------------------------
//  The order of the stream a target replica is applying. Zeroed: expects
//  seq 1 (a new replica, or one that restarted).
typedef struct {
    uint64_t from;                  //  the source peer of the stream, 0 = none yet
    uint64_t next;                  //  the seq expected next from it
} transfer_in_t;

//  Checks envelope (from, seq) against the stream. 1: seq 1, a stream
//  (re)starts: drop everything the replica holds, then apply it; 0: the
//  next in order, apply it; -SH_EPROTO (message in err): a gap, a repeat,
//  another source, a bad field, or seq 1 for an Active replica (active),
//  which must never be emptied. Only 0 and 1 move the stream on.
int transfer_in_check (transfer_in_t *in, uint64_t from, uint64_t seq, bool active, char *err,
                       size_t errlen);

#endif
