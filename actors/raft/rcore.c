/*  rcore: the pure Raft core (see rcore.h). Owns one server's Raft state:
    its term and vote, its log held in memory after the latest snapshot, the
    commit and applied indexes, the leader's view of each follower
    (progress), and the outbox of messages produced since the last ready.

    The structure follows etcd-raft's: the log in memory is the union of what
    is stable (persisted, up to `stable`) and what the next ready hands out to
    persist; a leader counts its own entries towards a quorum only once they
    are stable (§10.2.1), so with a single voter a proposal commits at the
    rcore_advance that follows its save.
*/
#include "actors/raft/rcore.h"
#include "common/err.h"
#include <assert.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    S_PROBE = 0,                    //  unknown match: one append at a time
    S_REPLICATE,                    //  matching: stream appends optimistically
    S_SNAPSHOT                      //  a snapshot is on its way
} s_progress_state_t;

//  The leader's view of one voter (§3.5 nextIndex/matchIndex).
typedef struct {
    uint64_t id;                    //  voter id
    uint64_t match;                 //  highest index known replicated on it
    uint64_t next;                  //  next index to send
    int state;                      //  s_progress_state_t
    bool probe_sent;                //  S_PROBE: waiting for the answer to a probe
    uint64_t pending_snapshot;      //  S_SNAPSHOT: index of the snapshot sent
    int snapshot_elapsed;           //  S_SNAPSHOT: ticks since it was sent
    bool recent_active;             //  heard from it this election timeout (§6.2)
    bool voted;                     //  candidate: it answered our (pre-)vote
    bool granted;                   //  candidate: its answer was yes
} s_progress_t;

struct _rcore_t {
    uint64_t id;                    //  this server
    rcore_config_t config;          //  timeouts and limits (voters not kept here)
    s_progress_t *prs;              //  one per voter, sorted by id
    size_t n_prs;                   //  voters
    bool is_voter;                  //  this server is among the voters
    uint64_t rng;                   //  splitmix64 state, from the seed

    uint64_t term;                  //  currentTerm (§3.3)
    uint64_t vote;                  //  votedFor in term, 0 = none
    uint64_t commit;                //  commitIndex
    uint64_t applied;               //  lastApplied (handed out and advanced)
    uint64_t lead;                  //  known leader of term, 0 = none
    int role;                       //  rcore_role_t

    rcore_entry_t *log;             //  log [i] has index snap.index + 1 + i
    size_t n_log;                   //  entries in memory
    size_t cap_log;                 //  allocated slots
    rcore_snapshot_t snap;          //  latest snapshot (owned data)
    uint64_t stable;                //  highest index known persisted
    bool snapshot_pending;          //  snap was received and must be installed
    rcore_hard_state_t persisted;   //  hard state as last handed out durable

    int election_elapsed;           //  ticks since the last election reset
    int heartbeat_elapsed;          //  leader: ticks since the last heartbeat
    int randomized_timeout;         //  this term's election timeout (§3.4)

    rcore_msg_t *outbox;            //  messages waiting for the next ready
    size_t n_outbox;
    size_t cap_outbox;
    bool in_ready;                  //  a ready is out and not advanced yet
};

//  --------------------------------------------------------------------------
//  Small helpers

static uint64_t
s_rand (rcore_t *self)
{
    //  splitmix64: tiny, seedable, good enough for timeouts
    uint64_t z = (self->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void *
s_dup_bytes (const void *data, size_t len)
{
    if (!len)
        return NULL;
    void *copy = malloc (len);
    assert (copy);
    memcpy (copy, data, len);
    return copy;
}

static void
s_entry_copy (rcore_entry_t *dst, const rcore_entry_t *src)
{
    *dst = *src;
    dst->data = (uint8_t *) s_dup_bytes (src->data, src->len);
}

static void
s_entry_free (rcore_entry_t *entry)
{
    free (entry->data);
    entry->data = NULL;
    entry->len = 0;
}

static void
s_snapshot_set (rcore_snapshot_t *dst, uint64_t index, uint64_t term, const void *data,
                size_t len)
{
    uint8_t *copy = (uint8_t *) s_dup_bytes (data, len);
    free (dst->data);
    dst->index = index;
    dst->term = term;
    dst->data = copy;
    dst->len = len;
}

static void
s_msg_free (rcore_msg_t *msg)
{
    for (size_t i = 0; i < msg->n_entries; i++)
        s_entry_free (&msg->entries [i]);
    free (msg->entries);
    free (msg->snapshot.data);
    memset (msg, 0, sizeof *msg);
}

static s_progress_t *
s_progress (rcore_t *self, uint64_t id)
{
    for (size_t i = 0; i < self->n_prs; i++)
        if (self->prs [i].id == id)
            return &self->prs [i];
    return NULL;
}

static size_t
s_quorum (const rcore_t *self)
{
    return self->n_prs / 2 + 1;
}

//  --------------------------------------------------------------------------
//  The log in memory

static uint64_t
s_last_index (const rcore_t *self)
{
    return self->snap.index + self->n_log;
}

static uint64_t
s_first_index (const rcore_t *self)
{
    return self->snap.index + 1;
}

//  Term of the entry at index, 0 if unknown (compacted away or past the end).
static uint64_t
s_term_at (const rcore_t *self, uint64_t index)
{
    if (index == self->snap.index)
        return self->snap.term;
    if (index < self->snap.index || index > s_last_index (self))
        return 0;
    return self->log [index - self->snap.index - 1].term;
}

static uint64_t
s_last_term (const rcore_t *self)
{
    return s_term_at (self, s_last_index (self));
}

static bool
s_match_term (const rcore_t *self, uint64_t index, uint64_t term)
{
    if (index < self->snap.index || index > s_last_index (self))
        return false;
    return s_term_at (self, index) == term;
}

static rcore_entry_t *
s_log_at (const rcore_t *self, uint64_t index)
{
    assert (index > self->snap.index && index <= s_last_index (self));
    return &self->log [index - self->snap.index - 1];
}

//  Appends a copy of entry, which must follow the last one.
static void
s_log_push (rcore_t *self, const rcore_entry_t *entry)
{
    assert (entry->index == s_last_index (self) + 1);
    if (self->n_log == self->cap_log) {
        self->cap_log = self->cap_log ? self->cap_log * 2 : 64;
        self->log = (rcore_entry_t *) realloc (self->log,
                                               self->cap_log * sizeof (rcore_entry_t));
        assert (self->log);
    }
    s_entry_copy (&self->log [self->n_log++], entry);
}

//  Drops entries from index on.
static void
s_log_truncate (rcore_t *self, uint64_t index)
{
    assert (index > self->snap.index);
    while (s_last_index (self) >= index)
        s_entry_free (&self->log [--self->n_log]);
    if (self->stable >= index)
        self->stable = index - 1;
}

//  Drops entries up to and including index (they are in a snapshot now).
static void
s_log_drop_prefix (rcore_t *self, uint64_t index)
{
    assert (index >= self->snap.index);
    size_t drop = (size_t) (index - self->snap.index);
    if (drop > self->n_log)
        drop = self->n_log;
    for (size_t i = 0; i < drop; i++)
        s_entry_free (&self->log [i]);
    memmove (self->log, self->log + drop, (self->n_log - drop) * sizeof (rcore_entry_t));
    self->n_log -= drop;
}

//  Largest index <= index whose term is <= term: where a follower and a
//  leader can next probe for agreement (§3.5's "fast backtracking": one
//  round trip per term instead of one per entry).
static uint64_t
s_find_conflict_by_term (const rcore_t *self, uint64_t index, uint64_t term)
{
    if (index > s_last_index (self))
        index = s_last_index (self);
    while (index > self->snap.index && s_term_at (self, index) > term)
        index--;
    return index;
}

//  --------------------------------------------------------------------------
//  Outbox

static rcore_msg_t *
s_outbox_new (rcore_t *self, int type, uint64_t to, uint64_t term)
{
    if (self->n_outbox == self->cap_outbox) {
        self->cap_outbox = self->cap_outbox ? self->cap_outbox * 2 : 16;
        self->outbox = (rcore_msg_t *) realloc (self->outbox,
                                                self->cap_outbox * sizeof (rcore_msg_t));
        assert (self->outbox);
    }
    rcore_msg_t *msg = &self->outbox [self->n_outbox++];
    memset (msg, 0, sizeof *msg);
    msg->type = type;
    msg->from = self->id;
    msg->to = to;
    msg->term = term;
    return msg;
}

static void
s_outbox_clear (rcore_t *self)
{
    for (size_t i = 0; i < self->n_outbox; i++)
        s_msg_free (&self->outbox [i]);
    self->n_outbox = 0;
}

//  --------------------------------------------------------------------------
//  Role changes

static void
s_reset_election_timer (rcore_t *self)
{
    self->election_elapsed = 0;
    //  §3.4: election timeouts are chosen randomly from a fixed interval
    //  [T, 2T) so that split votes are rare and resolved quickly
    int span = self->config.election_ticks;
    self->randomized_timeout = span + (int) (s_rand (self) % (uint64_t) span);
}

//  Common part of every role change: forget the votes and the leader's
//  bookkeeping of the previous role.
static void
s_reset (rcore_t *self, uint64_t term)
{
    if (self->term != term) {
        //  §3.3: a new term starts with no vote cast in it
        self->term = term;
        self->vote = 0;
    }
    self->lead = 0;
    self->heartbeat_elapsed = 0;
    s_reset_election_timer (self);
    for (size_t i = 0; i < self->n_prs; i++) {
        s_progress_t *pr = &self->prs [i];
        pr->match = 0;
        pr->next = s_last_index (self) + 1;
        pr->state = S_PROBE;
        pr->probe_sent = false;
        pr->pending_snapshot = 0;
        pr->snapshot_elapsed = 0;
        pr->recent_active = false;
        pr->voted = false;
        pr->granted = false;
        if (pr->id == self->id)
            pr->match = self->stable;
    }
}

static void
s_become_follower (rcore_t *self, uint64_t term, uint64_t lead)
{
    s_reset (self, term);
    self->lead = lead;
    self->role = RCORE_FOLLOWER;
}

static void s_bcast_append (rcore_t *self);
static bool s_maybe_commit (rcore_t *self);

static void
s_append_local (rcore_t *self, int type, const void *data, size_t len)
{
    rcore_entry_t entry = {
        .index = s_last_index (self) + 1,
        .term = self->term,
        .type = (uint8_t) type,
        .data = (uint8_t *) data,
        .len = len
    };
    s_log_push (self, &entry);
    s_progress_t *me = s_progress (self, self->id);
    if (me)
        me->next = entry.index + 1;
}

static void
s_become_leader (rcore_t *self)
{
    assert (self->role != RCORE_FOLLOWER);
    s_reset (self, self->term);
    self->lead = self->id;
    self->role = RCORE_LEADER;
    for (size_t i = 0; i < self->n_prs; i++)
        self->prs [i].recent_active = true;
    //  §6.4: a new leader commits a blank no-op entry at the start of its term,
    //  which is how it learns which earlier entries are committed (§3.6.2
    //  only lets it count replicas of entries from its own term).
    s_append_local (self, RCORE_ENTRY_NOOP, NULL, 0);
    s_bcast_append (self);
}

static void
s_send_vote_requests (rcore_t *self, int type, uint64_t term)
{
    for (size_t i = 0; i < self->n_prs; i++) {
        if (self->prs [i].id == self->id)
            continue;
        rcore_msg_t *msg = s_outbox_new (self, type, self->prs [i].id, term);
        //  §3.6.1: the request carries the candidate's last log index and term
        //  so a voter can refuse a candidate whose log is behind its own
        msg->index = s_last_index (self);
        msg->log_term = s_last_term (self);
    }
}

//  Records voter id's answer; returns +1 when the candidate won a quorum,
//  -1 when it lost one, 0 while undecided.
static int
s_record_vote (rcore_t *self, uint64_t id, bool granted)
{
    s_progress_t *pr = s_progress (self, id);
    if (pr && !pr->voted) {
        pr->voted = true;
        pr->granted = granted;
    }
    size_t yes = 0, no = 0;
    for (size_t i = 0; i < self->n_prs; i++) {
        if (self->prs [i].voted && self->prs [i].granted)
            yes++;
        else
        if (self->prs [i].voted)
            no++;
    }
    if (yes >= s_quorum (self))
        return 1;
    if (no >= s_quorum (self))
        return -1;
    return 0;
}

static void s_campaign (rcore_t *self, bool pre);

static void
s_campaign (rcore_t *self, bool pre)
{
    if (!self->is_voter)
        return;             //  only voters may stand (a learner never does)
    int req_type;
    uint64_t term;
    if (pre) {
        //  §9.6: the pre-vote phase asks whether the others would vote for
        //  us before any term is incremented, so a server that was cut off
        //  cannot disrupt a working cluster when it comes back.
        s_reset (self, self->term);
        self->role = RCORE_PRE_CANDIDATE;
        req_type = RCORE_MSG_PREVOTE;
        term = self->term + 1;
    }
    else {
        //  §3.4: to begin an election a follower increments its term, votes
        //  for itself and asks every other server for its vote
        s_reset (self, self->term + 1);
        self->vote = self->id;
        self->role = RCORE_CANDIDATE;
        req_type = RCORE_MSG_VOTE;
        term = self->term;
    }
    if (s_record_vote (self, self->id, true) > 0) {
        //  A quorum of one: we won already.
        if (pre)
            s_campaign (self, false);
        else
            s_become_leader (self);
        return;
    }
    s_send_vote_requests (self, req_type, term);
}

//  --------------------------------------------------------------------------
//  Leader: replication

//  Sends what follower pr needs next, if it is not paused. True if sent.
static bool
s_send_append (rcore_t *self, s_progress_t *pr)
{
    if (pr->id == self->id)
        return false;
    if (pr->state == S_SNAPSHOT || (pr->state == S_PROBE && pr->probe_sent))
        return false;
    if (pr->state == S_REPLICATE && pr->next - 1 - pr->match >= self->config.max_inflight)
        return false;       //  flow control: enough in flight already

    uint64_t prev = pr->next - 1;
    if (prev < self->snap.index) {
        //  §5.1, Figure 5.3: the entries it needs were compacted: send the
        //  snapshot instead
        if (self->snap.index == 0)
            return false;
        rcore_msg_t *msg = s_outbox_new (self, RCORE_MSG_SNAPSHOT, pr->id, self->term);
        s_snapshot_set (&msg->snapshot, self->snap.index, self->snap.term, self->snap.data,
                        self->snap.len);
        pr->state = S_SNAPSHOT;
        pr->pending_snapshot = self->snap.index;
        pr->snapshot_elapsed = 0;
        return true;
    }
    rcore_msg_t *msg = s_outbox_new (self, RCORE_MSG_APPEND, pr->id, self->term);
    //  §3.5: prevLogIndex/prevLogTerm let the follower check that its log
    //  matches ours up to there (the Log Matching Property)
    msg->index = prev;
    msg->log_term = s_term_at (self, prev);
    msg->commit = self->commit;
    uint64_t last = s_last_index (self);
    size_t count = 0, bytes = 0;
    for (uint64_t i = pr->next; i <= last && count < self->config.max_msg_entries; i++) {
        size_t len = s_log_at (self, i)->len;
        if (count > 0 && bytes + len > self->config.max_msg_bytes)
            break;
        bytes += len;
        count++;
    }
    if (count) {
        msg->entries = (rcore_entry_t *) calloc (count, sizeof (rcore_entry_t));
        assert (msg->entries);
        for (size_t i = 0; i < count; i++)
            s_entry_copy (&msg->entries [i], s_log_at (self, pr->next + i));
        msg->n_entries = count;
    }
    if (pr->state == S_REPLICATE && count)
        pr->next += count;          //  optimistic: pipeline the next batch
    else
    if (pr->state == S_PROBE)
        pr->probe_sent = true;      //  one probe at a time until it answers
    return true;
}

static void
s_bcast_append (rcore_t *self)
{
    for (size_t i = 0; i < self->n_prs; i++)
        s_send_append (self, &self->prs [i]);
}

static void
s_bcast_heartbeat (rcore_t *self)
{
    for (size_t i = 0; i < self->n_prs; i++) {
        s_progress_t *pr = &self->prs [i];
        if (pr->id == self->id)
            continue;
        rcore_msg_t *msg = s_outbox_new (self, RCORE_MSG_HEARTBEAT, pr->id, self->term);
        //  Only what is known to match on the follower may be committed
        //  there, so the commit carried is at most its match.
        msg->commit = pr->match < self->commit ? pr->match : self->commit;
    }
}

static int
s_cmp_desc (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? 1 : x > y ? -1 : 0;
}

//  §3.6.2: an entry is committed once the leader that created it has it
//  stored on a majority of servers, and only entries of the leader's own
//  term are committed by counting replicas (Figure 3.7); earlier ones are
//  committed indirectly with them.
static bool
s_maybe_commit (rcore_t *self)
{
    uint64_t matches [RCORE_MAX_VOTERS];
    for (size_t i = 0; i < self->n_prs; i++)
        matches [i] = self->prs [i].match;
    qsort (matches, self->n_prs, sizeof (uint64_t), s_cmp_desc);
    uint64_t quorum_match = matches [s_quorum (self) - 1];
    if (quorum_match > self->commit && s_term_at (self, quorum_match) == self->term) {
        self->commit = quorum_match;
        return true;
    }
    return false;
}

static bool
s_quorum_active (rcore_t *self)
{
    size_t active = 0;
    for (size_t i = 0; i < self->n_prs; i++)
        if (self->prs [i].id == self->id || self->prs [i].recent_active)
            active++;
    return active >= s_quorum (self);
}

//  --------------------------------------------------------------------------
//  Handlers

static void
s_reply_append (rcore_t *self, uint64_t to, uint64_t index)
{
    rcore_msg_t *resp = s_outbox_new (self, RCORE_MSG_APPEND_RESP, to, self->term);
    resp->index = index;
}

//  Follower side of AppendEntries (§3.5).
static int
s_handle_append (rcore_t *self, const rcore_msg_t *m)
{
    if (m->index < self->commit) {
        //  Everything up to our commit matches the leader's log already
        //  (Leader Completeness, §3.6.3); say how far we are.
        s_reply_append (self, m->from, self->commit);
        return 0;
    }
    if (!s_match_term (self, m->index, m->log_term)) {
        //  §3.5: reply false if the log has no entry at prevLogIndex whose
        //  term matches prevLogTerm. Fast backtracking: hint the highest
        //  index that might match, with its term, so the leader can skip a
        //  whole term of entries per round trip.
        uint64_t hint = m->index < s_last_index (self) ? m->index : s_last_index (self);
        hint = s_find_conflict_by_term (self, hint, m->log_term);
        rcore_msg_t *resp = s_outbox_new (self, RCORE_MSG_APPEND_RESP, m->from, self->term);
        resp->index = m->index;
        resp->reject = true;
        resp->reject_hint = hint;
        resp->log_term = s_term_at (self, hint);
        return 0;
    }
    //  §3.5: if an existing entry conflicts with a new one (same index,
    //  different terms), delete it and all that follow; append the new
    //  entries not already in the log.
    size_t first_new = m->n_entries;
    for (size_t i = 0; i < m->n_entries; i++) {
        const rcore_entry_t *e = &m->entries [i];
        if (!s_match_term (self, e->index, e->term)) {
            first_new = i;
            break;
        }
    }
    if (first_new < m->n_entries) {
        uint64_t at = m->entries [first_new].index;
        if (at <= self->commit)
            //  A leader never overwrites committed entries (§3.6.3); a
            //  message that would is not from a correct leader.
            return -SH_EINVAL;
        if (at <= s_last_index (self))
            s_log_truncate (self, at);
        for (size_t i = first_new; i < m->n_entries; i++)
            s_log_push (self, &m->entries [i]);
    }
    //  §3.5: if leaderCommit > commitIndex, set commitIndex =
    //  min(leaderCommit, index of last new entry)
    uint64_t last_new = m->index + m->n_entries;
    uint64_t commit = m->commit < last_new ? m->commit : last_new;
    if (commit > self->commit)
        self->commit = commit;
    //  The answer leaves with the next ready, after these entries are saved.
    s_reply_append (self, m->from, last_new);
    return 0;
}

static void
s_handle_heartbeat (rcore_t *self, const rcore_msg_t *m)
{
    uint64_t commit = m->commit < s_last_index (self) ? m->commit : s_last_index (self);
    if (commit > self->commit)
        self->commit = commit;
    s_outbox_new (self, RCORE_MSG_HEARTBEAT_RESP, m->from, self->term);
}

//  Follower side of InstallSnapshot (§5.1, Figure 5.3).
static void
s_handle_snapshot (rcore_t *self, const rcore_msg_t *m)
{
    const rcore_snapshot_t *s = &m->snapshot;
    if (s->index <= self->commit) {
        s_reply_append (self, m->from, self->commit);
        return;
    }
    if (s_match_term (self, s->index, s->term)) {
        //  §5.1, Figure 5.3: if the log has an entry matching the snapshot's
        //  last one, the entries after it are kept; it is all committed.
        self->commit = s->index;
        s_reply_append (self, m->from, self->commit);
        return;
    }
    //  §5.1, Figure 5.3: otherwise the whole log is discarded and the state
    //  machine is reset from the snapshot.
    while (self->n_log)
        s_entry_free (&self->log [--self->n_log]);
    s_snapshot_set (&self->snap, s->index, s->term, s->data, s->len);
    self->commit = s->index;
    self->stable = s->index;
    self->snapshot_pending = true;
    s_reply_append (self, m->from, s->index);
}

//  Leader side of the answers to appends and snapshots.
static void
s_handle_append_resp (rcore_t *self, s_progress_t *pr, const rcore_msg_t *m)
{
    pr->recent_active = true;
    if (m->reject) {
        //  Where to probe next: the follower's hint, moved back to the last
        //  index of ours whose term is not past the follower's term there.
        uint64_t probe = m->reject_hint;
        if (m->log_term > 0)
            probe = s_find_conflict_by_term (self, m->reject_hint, m->log_term);
        bool moved = false;
        if (pr->state == S_REPLICATE) {
            if (m->index > pr->match) {
                pr->next = pr->match + 1;
                pr->state = S_PROBE;
                moved = true;
            }
        }
        else
        if (pr->next - 1 == m->index) {
            //  (otherwise the rejection is stale: an older probe's)
            uint64_t next = m->index < probe + 1 ? m->index : probe + 1;
            if (next < pr->match + 1)
                next = pr->match + 1;
            if (next < 1)
                next = 1;
            pr->next = next;
            moved = true;
        }
        if (moved) {
            if (pr->state == S_SNAPSHOT)
                pr->state = S_PROBE;
            pr->probe_sent = false;
            s_send_append (self, pr);
        }
        return;
    }
    if (m->index > s_last_index (self))
        return;                 //  claims entries we never sent: not from our term
    bool updated = false;
    if (m->index > pr->match) {
        pr->match = m->index;
        updated = true;
    }
    if (pr->next < m->index + 1)
        pr->next = m->index + 1;
    pr->probe_sent = false;
    if (pr->state == S_SNAPSHOT && pr->match >= pr->pending_snapshot) {
        pr->state = S_PROBE;
        pr->pending_snapshot = 0;
    }
    if (pr->state == S_PROBE && updated) {
        //  The follower matches us up to match: stream from here on
        pr->state = S_REPLICATE;
        pr->next = pr->match + 1;
    }
    if (updated && s_maybe_commit (self))
        s_bcast_append (self);      //  followers learn the new commit
    else
        //  keep sending while there is more (or the probe found the match)
        while (pr->next <= s_last_index (self) && s_send_append (self, pr))
            if (pr->state != S_REPLICATE)
                break;
}

static void
s_handle_heartbeat_resp (rcore_t *self, s_progress_t *pr)
{
    pr->recent_active = true;
    pr->probe_sent = false;
    if (pr->state == S_REPLICATE && pr->next - 1 - pr->match >= self->config.max_inflight)
        //  The window is full and nothing came back: resend from match.
        pr->next = pr->match + 1;
    if (pr->state == S_SNAPSHOT && pr->snapshot_elapsed >= self->config.election_ticks) {
        //  The snapshot seems lost: probe again (which sends it again).
        pr->state = S_PROBE;
        pr->next = pr->match + 1;
    }
    if (pr->match < s_last_index (self))
        s_send_append (self, pr);
}

//  Answers a (pre-)vote request (§3.4, §3.6.1, §9.6).
static void
s_handle_vote (rcore_t *self, const rcore_msg_t *m)
{
    bool pre = m->type == RCORE_MSG_PREVOTE;
    //  §3.4: at most one vote per term, first come first served; a pre-vote
    //  for a later term binds nothing, so it is only refused for the log.
    bool can_vote = self->vote == m->from
                 || (self->vote == 0 && self->lead == 0)
                 || (pre && m->term > self->term);
    //  §3.6.1: grant only if the candidate's log is at least as up-to-date
    //  as ours: a later last term, or the same last term and a log at least
    //  as long.
    uint64_t last_term = s_last_term (self);
    bool up_to_date = m->log_term > last_term
                   || (m->log_term == last_term && m->index >= s_last_index (self));
    int resp_type = pre ? RCORE_MSG_PREVOTE_RESP : RCORE_MSG_VOTE_RESP;
    if (can_vote && up_to_date) {
        //  A grant carries the term asked for (for a pre-vote, the future
        //  term) so the candidate can tell it from an old round's.
        s_outbox_new (self, resp_type, m->from, m->term);
        if (!pre) {
            self->vote = m->from;
            self->election_elapsed = 0;     //  §3.4: granting resets the timer
        }
    }
    else {
        rcore_msg_t *resp = s_outbox_new (self, resp_type, m->from, self->term);
        resp->reject = true;
    }
}

static void
s_handle_vote_resp (rcore_t *self, const rcore_msg_t *m)
{
    bool pre = m->type == RCORE_MSG_PREVOTE_RESP;
    if (pre != (self->role == RCORE_PRE_CANDIDATE))
        return;             //  not the phase we are in
    uint64_t expected = pre ? self->term + 1 : self->term;
    if (!m->reject && m->term != expected)
        return;             //  an old round's answer
    int result = s_record_vote (self, m->from, !m->reject);
    if (result > 0) {
        if (pre)
            s_campaign (self, false);   //  §9.6: a pre-vote won: the real election
        else
            s_become_leader (self);     //  §3.4: votes from a majority win
    }
    else
    if (result < 0)
        s_become_follower (self, self->term, 0);
}

//  Checks a message from outside before anything trusts it.
static int
s_check_msg (const rcore_t *self, const rcore_msg_t *m)
{
    if (!m || m->type <= RCORE_MSG_NONE || m->type >= RCORE_MSG_TYPE_COUNT)
        return -SH_EINVAL;
    if (m->to != self->id || m->from == self->id || m->from == 0)
        return -SH_EINVAL;
    if (!s_progress ((rcore_t *) self, m->from))
        return -SH_EINVAL;              //  not one of our voters
    if (m->n_entries && (m->type != RCORE_MSG_APPEND || !m->entries))
        return -SH_EINVAL;
    uint64_t prev_term = m->log_term;
    for (size_t i = 0; i < m->n_entries; i++) {
        const rcore_entry_t *e = &m->entries [i];
        //  Entries follow prevLogIndex without a gap, terms never decrease
        //  along a log and never pass the leader's term (§3.5, §3.6).
        if (e->index != m->index + 1 + i || e->term < prev_term || e->term > m->term
            || e->type >= RCORE_ENTRY_TYPE_COUNT || (e->len && !e->data))
            return -SH_EINVAL;
        prev_term = e->term;
    }
    if (m->type == RCORE_MSG_SNAPSHOT
        && (m->snapshot.index == 0 || m->snapshot.term == 0
            || m->snapshot.term > m->term || (m->snapshot.len && !m->snapshot.data)))
        return -SH_EINVAL;
    if (m->term == 0)
        return -SH_EINVAL;              //  every message is sent in a term >= 1
    return 0;
}

//  --------------------------------------------------------------------------
//  Public API

void
rcore_config_defaults (rcore_config_t *config)
{
    memset (config, 0, sizeof *config);
    config->election_ticks = 10;
    config->heartbeat_ticks = 1;
    config->pre_vote = true;
    config->check_quorum = true;
    config->max_msg_entries = 64;
    config->max_msg_bytes = 1024 * 1024;
    config->max_inflight = 1024;
}

static int
s_cmp_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y ? 1 : 0;
}

rcore_t *
rcore_new (const rcore_config_t *config, const rcore_storage_t *storage)
{
    if (!config || config->id == 0 || !config->voters || config->n_voters == 0
        || config->n_voters > RCORE_MAX_VOTERS || config->election_ticks < 1
        || config->heartbeat_ticks < 1 || config->heartbeat_ticks >= config->election_ticks
        || config->max_msg_entries == 0 || config->max_inflight == 0)
        return NULL;
    uint64_t sorted [RCORE_MAX_VOTERS];
    memcpy (sorted, config->voters, config->n_voters * sizeof (uint64_t));
    qsort (sorted, config->n_voters, sizeof (uint64_t), s_cmp_u64);
    for (size_t i = 0; i < config->n_voters; i++)
        if (sorted [i] == 0 || (i > 0 && sorted [i] == sorted [i - 1]))
            return NULL;

    //  The stored state must be a log that Raft could have produced.
    rcore_storage_t empty = { { 0, 0, 0 }, { 0, 0, NULL, 0 }, NULL, 0 };
    if (!storage)
        storage = &empty;
    const rcore_snapshot_t *snap = &storage->snapshot;
    if ((snap->index == 0) != (snap->term == 0) || (snap->len && !snap->data))
        return NULL;
    if (storage->n_entries && !storage->entries)
        return NULL;
    uint64_t prev_term = snap->term;
    for (size_t i = 0; i < storage->n_entries; i++) {
        const rcore_entry_t *e = &storage->entries [i];
        if (e->index != snap->index + 1 + i || e->term < prev_term
            || e->type >= RCORE_ENTRY_TYPE_COUNT || (e->len && !e->data))
            return NULL;
        prev_term = e->term;
    }
    const rcore_hard_state_t *hs = &storage->hard_state;
    uint64_t last = snap->index + storage->n_entries;
    if (prev_term > hs->term || hs->commit > last)
        return NULL;
    if (config->applied > hs->commit && config->applied > snap->index)
        return NULL;

    rcore_t *self = (rcore_t *) calloc (1, sizeof (rcore_t));
    assert (self);
    self->id = config->id;
    self->config = *config;
    self->config.voters = NULL;
    self->rng = config->seed ^ (config->id * 0x9e3779b97f4a7c15ULL);
    self->prs = (s_progress_t *) calloc (config->n_voters, sizeof (s_progress_t));
    assert (self->prs);
    self->n_prs = config->n_voters;
    for (size_t i = 0; i < config->n_voters; i++) {
        self->prs [i].id = sorted [i];
        if (sorted [i] == config->id)
            self->is_voter = true;
    }
    s_snapshot_set (&self->snap, snap->index, snap->term, snap->data, snap->len);
    for (size_t i = 0; i < storage->n_entries; i++)
        s_log_push (self, &storage->entries [i]);
    self->stable = s_last_index (self);
    self->term = hs->term;
    self->vote = hs->vote;
    //  Everything in a snapshot is committed (§5.1).
    self->commit = hs->commit > snap->index ? hs->commit : snap->index;
    self->applied = config->applied > snap->index ? config->applied : snap->index;
    self->persisted = *hs;
    s_become_follower (self, self->term, 0);
    return self;
}

void
rcore_destroy (rcore_t **self_p)
{
    assert (self_p);
    rcore_t *self = *self_p;
    if (!self)
        return;
    s_outbox_clear (self);
    free (self->outbox);
    while (self->n_log)
        s_entry_free (&self->log [--self->n_log]);
    free (self->log);
    free (self->snap.data);
    free (self->prs);
    free (self);
    *self_p = NULL;
}

void
rcore_tick (rcore_t *self)
{
    assert (!self->in_ready);
    if (self->role == RCORE_LEADER) {
        self->heartbeat_elapsed++;
        self->election_elapsed++;
        for (size_t i = 0; i < self->n_prs; i++)
            if (self->prs [i].state == S_SNAPSHOT)
                self->prs [i].snapshot_elapsed++;
        if (self->election_elapsed >= self->config.election_ticks) {
            self->election_elapsed = 0;
            //  §6.2: a leader that has not heard from a majority within an
            //  election timeout steps down, so clients are told to retry
            //  instead of waiting on a leader that cannot commit.
            if (self->config.check_quorum && !s_quorum_active (self)) {
                s_become_follower (self, self->term, 0);
                return;
            }
            for (size_t i = 0; i < self->n_prs; i++)
                self->prs [i].recent_active = false;
        }
        if (self->heartbeat_elapsed >= self->config.heartbeat_ticks) {
            //  §3.4: the leader sends periodic heartbeats to keep its authority
            self->heartbeat_elapsed = 0;
            s_bcast_heartbeat (self);
        }
        return;
    }
    if (!self->is_voter)
        return;
    //  A lone voter has no one to wait for and no one to disrupt.
    if (self->n_prs == 1 && self->role == RCORE_FOLLOWER) {
        rcore_campaign (self);
        return;
    }
    self->election_elapsed++;
    if (self->election_elapsed >= self->randomized_timeout)
        //  §3.4: no word from a leader within the election timeout: stand
        rcore_campaign (self);
}

void
rcore_campaign (rcore_t *self)
{
    assert (!self->in_ready);
    if (self->role == RCORE_LEADER)
        return;
    s_campaign (self, self->config.pre_vote);
}

int
rcore_step (rcore_t *self, const rcore_msg_t *m)
{
    assert (!self->in_ready);
    int rc = s_check_msg (self, m);
    if (rc)
        return rc;
    bool is_vote_req = m->type == RCORE_MSG_VOTE || m->type == RCORE_MSG_PREVOTE;
    bool from_leader = m->type == RCORE_MSG_APPEND || m->type == RCORE_MSG_HEARTBEAT
                    || m->type == RCORE_MSG_SNAPSHOT;

    if (m->term > self->term) {
        if (is_vote_req && self->config.check_quorum && self->lead != 0
            && self->election_elapsed < self->config.election_ticks)
            //  §4.2.3: a server that heard from a leader within the minimum
            //  election timeout ignores vote requests, so a removed or cut-off
            //  server cannot depose a working leader.
            return 0;
        if (m->type == RCORE_MSG_PREVOTE
            || (m->type == RCORE_MSG_PREVOTE_RESP && !m->reject)) {
            //  §9.6: pre-votes (and grants of them) carry a future term and
            //  change no one's term
        }
        else
            //  §3.3: a server that sees a larger term adopts it and reverts
            //  to follower
            s_become_follower (self, m->term, from_leader ? m->from : 0);
    }
    else
    if (m->term < self->term) {
        if (m->type == RCORE_MSG_APPEND || m->type == RCORE_MSG_HEARTBEAT)
            //  A deposed leader is told the current term so it steps down
            //  (§3.3); with pre-vote it might otherwise never learn of it.
            s_outbox_new (self, RCORE_MSG_APPEND_RESP, m->from, self->term);
        else
        if (m->type == RCORE_MSG_PREVOTE) {
            rcore_msg_t *resp = s_outbox_new (self, RCORE_MSG_PREVOTE_RESP, m->from,
                                              self->term);
            resp->reject = true;
        }
        //  §3.3: any other request with a stale term is rejected/ignored
        return 0;
    }

    if (is_vote_req) {
        s_handle_vote (self, m);
        return 0;
    }
    switch (self->role) {
        case RCORE_LEADER: {
            s_progress_t *pr = s_progress (self, m->from);
            if (m->type == RCORE_MSG_APPEND_RESP)
                s_handle_append_resp (self, pr, m);
            else
            if (m->type == RCORE_MSG_HEARTBEAT_RESP)
                s_handle_heartbeat_resp (self, pr);
            //  from_leader at our own term: impossible with one leader per
            //  term (Election Safety, §3.4); ignored
            break;
        }
        case RCORE_PRE_CANDIDATE:
        case RCORE_CANDIDATE:
            if (from_leader) {
                //  §3.4: a candidate that hears from a leader of its term
                //  (or later) accepts it and returns to follower
                s_become_follower (self, m->term, m->from);
                break;          //  handled below as a follower
            }
            if (m->type == RCORE_MSG_VOTE_RESP || m->type == RCORE_MSG_PREVOTE_RESP)
                s_handle_vote_resp (self, m);
            return 0;
        default:
            break;
    }
    if (self->role != RCORE_FOLLOWER || !from_leader)
        return 0;
    self->election_elapsed = 0;
    self->lead = m->from;
    if (m->type == RCORE_MSG_APPEND)
        return s_handle_append (self, m);
    if (m->type == RCORE_MSG_HEARTBEAT)
        s_handle_heartbeat (self, m);
    else
        s_handle_snapshot (self, m);
    return 0;
}

int
rcore_propose (rcore_t *self, int type, const void *data, size_t len, uint64_t *index,
               uint64_t *term)
{
    assert (!self->in_ready);
    if (type < 0 || type >= RCORE_ENTRY_TYPE_COUNT || (len && !data))
        return -SH_EINVAL;
    if (self->role != RCORE_LEADER)
        return -SH_ENOLEADER;           //  §6.2: only the leader takes commands
    s_append_local (self, type, data, len);
    if (index)
        *index = s_last_index (self);
    if (term)
        *term = self->term;
    s_bcast_append (self);
    return 0;
}

bool
rcore_ready (rcore_t *self, rcore_ready_t *rd)
{
    assert (!self->in_ready);
    memset (rd, 0, sizeof *rd);
    rd->hard_state = (rcore_hard_state_t) { self->term, self->vote, self->commit };
    rd->hard_state_changed = rd->hard_state.term != self->persisted.term
                          || rd->hard_state.vote != self->persisted.vote
                          || rd->hard_state.commit != self->persisted.commit;
    if (self->snapshot_pending)
        rd->snapshot = &self->snap;
    if (self->stable < s_last_index (self)) {
        rd->entries = s_log_at (self, self->stable + 1);
        rd->n_entries = (size_t) (s_last_index (self) - self->stable);
    }
    rd->messages = self->outbox;
    rd->n_messages = self->n_outbox;
    uint64_t from = self->applied > self->snap.index ? self->applied : self->snap.index;
    if (self->commit > from) {
        rd->committed = s_log_at (self, from + 1);
        rd->n_committed = (size_t) (self->commit - from);
    }
    bool any = rd->hard_state_changed || rd->snapshot || rd->n_entries || rd->n_messages
            || rd->n_committed;
    self->in_ready = any;
    return any;
}

void
rcore_advance (rcore_t *self, const rcore_ready_t *rd)
{
    assert (self->in_ready);
    self->in_ready = false;
    if (rd->snapshot) {
        self->snapshot_pending = false;
        if (self->applied < rd->snapshot->index)
            self->applied = rd->snapshot->index;
    }
    if (rd->n_entries)
        self->stable = rd->entries [rd->n_entries - 1].index;
    self->persisted = rd->hard_state;
    if (rd->n_committed)
        self->applied = rd->committed [rd->n_committed - 1].index;
    s_outbox_clear (self);
    assert (self->applied <= self->commit);
    if (self->role == RCORE_LEADER) {
        //  Our own entries count towards a quorum once they are durable.
        s_progress_t *me = s_progress (self, self->id);
        if (me && self->stable > me->match) {
            me->match = self->stable;
            if (s_maybe_commit (self))
                s_bcast_append (self);
        }
    }
}

int
rcore_compact (rcore_t *self, uint64_t index, const void *data, size_t len)
{
    assert (!self->in_ready);
    if (index <= self->snap.index || index > self->applied || index > s_last_index (self)
        || (len && !data))
        return -SH_EINVAL;
    uint64_t term = s_term_at (self, index);
    s_log_drop_prefix (self, index);
    s_snapshot_set (&self->snap, index, term, data, len);
    return 0;
}

uint64_t rcore_id (const rcore_t *self) { return self->id; }
uint64_t rcore_term (const rcore_t *self) { return self->term; }
uint64_t rcore_vote (const rcore_t *self) { return self->vote; }
uint64_t rcore_leader (const rcore_t *self) { return self->lead; }
rcore_role_t rcore_role (const rcore_t *self) { return (rcore_role_t) self->role; }
uint64_t rcore_commit (const rcore_t *self) { return self->commit; }
uint64_t rcore_applied (const rcore_t *self) { return self->applied; }
uint64_t rcore_first_index (const rcore_t *self) { return s_first_index (self); }
uint64_t rcore_last_index (const rcore_t *self) { return s_last_index (self); }

const rcore_entry_t *
rcore_entry (const rcore_t *self, uint64_t index)
{
    if (index <= self->snap.index || index > s_last_index (self))
        return NULL;
    return s_log_at (self, index);
}

const rcore_snapshot_t *
rcore_snapshot (const rcore_t *self)
{
    return &self->snap;
}

const char *
rcore_role_name (int role)
{
    switch (role) {
        case RCORE_FOLLOWER: return "follower";
        case RCORE_PRE_CANDIDATE: return "pre-candidate";
        case RCORE_CANDIDATE: return "candidate";
        case RCORE_LEADER: return "leader";
        default: return "unknown";
    }
}

const char *
rcore_msg_type_name (int type)
{
    switch (type) {
        case RCORE_MSG_APPEND: return "append";
        case RCORE_MSG_APPEND_RESP: return "append_resp";
        case RCORE_MSG_VOTE: return "vote";
        case RCORE_MSG_VOTE_RESP: return "vote_resp";
        case RCORE_MSG_PREVOTE: return "prevote";
        case RCORE_MSG_PREVOTE_RESP: return "prevote_resp";
        case RCORE_MSG_HEARTBEAT: return "heartbeat";
        case RCORE_MSG_HEARTBEAT_RESP: return "heartbeat_resp";
        case RCORE_MSG_SNAPSHOT: return "snapshot";
        default: return "unknown";
    }
}
