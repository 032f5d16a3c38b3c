/*  rcore: the pure Raft core (see rcore.h). Owns one server's Raft state:
    its term and vote, its log held in memory after the latest snapshot, the
    configurations that log holds, the commit and applied indexes, the
    leader's view of each voter and learner (progress), and the outbox of
    messages produced since the last ready.

    The structure follows etcd-raft's: the log in memory is the union of what
    is stable (persisted, up to `stable`) and what the next ready hands out to
    persist; a leader counts its own entries towards a quorum only once they
    are stable (§10.2.1), so with a single voter a proposal commits at the
    rcore_advance that follows its save.

    Membership is one server at a time (§4.1): every CONF entry names the
    whole configuration it leads to, a server uses the latest one in its log
    as soon as it is appended (committed or not), and the configuration as of
    the snapshot travels with the snapshot. Each CONF entry in memory keeps
    its parsed configuration in `confs`, so a truncation reverts to the one
    before it and rcore_conf_at answers without parsing.
*/
#include "actors/raft/rcore.h"
#include "common/err.h"
#include <assert.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    S_PROBE = 0,                    //  unknown match: one append at a time
    S_REPLICATE,                    //  matching: stream appends optimistically
    S_SNAPSHOT                      //  a snapshot is on its way
} s_progress_state_t;

//  The leader's view of one server (§3.5 nextIndex/matchIndex).
typedef struct {
    uint64_t id;                    //  server id
    bool learner;                   //  replicates only: no vote, not in quorums (§4.2.1)
    bool leaving;                   //  removed by a conf entry not yet committed:
                                    //    still sent the log so it learns it, never counted
    uint64_t match;                 //  highest index known replicated on it
    uint64_t next;                  //  next index to send
    int state;                      //  s_progress_state_t
    bool probe_sent;                //  S_PROBE: waiting for the answer to a probe
    uint64_t pending_snapshot;      //  S_SNAPSHOT: index of the snapshot sent
    int snapshot_elapsed;           //  S_SNAPSHOT: ticks since it was sent
    bool force_snapshot;            //  rcore_send_snapshot: next send is the
                                    //    snapshot with force, until it is answered
    bool recent_active;             //  heard from it this election timeout (§6.2)
    bool voted;                     //  candidate: it answered our (pre-)vote
    bool granted;                   //  candidate: its answer was yes
} s_progress_t;

//  One CONF entry of the log in memory, parsed.
typedef struct {
    uint64_t index;                 //  the entry's index
    int change;                     //  rcore_conf_change_t that made it
    uint64_t peer;                  //  the server that change is about
    rcore_conf_t conf;              //  the configuration it leads to (owned)
} s_conf_rec_t;

struct _rcore_t {
    uint64_t id;                    //  this server
    rcore_config_t config;          //  timeouts and limits (voters not kept here)
    rcore_conf_t init_conf;         //  config.voters, sorted: the configuration
                                    //    while storage holds none (owned)
    s_conf_rec_t *confs;            //  the CONF entries in the log, in order
    size_t n_confs;
    size_t cap_confs;
    s_progress_t *prs;              //  one per server of the latest configuration
    size_t n_prs;                   //    (plus a leaving one), voters first
    size_t n_voters;                //  voters among prs
    bool is_voter;                  //  this server is a voter of the latest configuration
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
    rcore_snapshot_t snap;          //  latest snapshot (owned data and conf; conf
                                    //    is init_conf's copy when none was known)
    uint64_t stable;                //  highest index known persisted
    bool snapshot_pending;          //  snap was received and must be installed
    rcore_hard_state_t persisted;   //  hard state as last handed out durable

    int election_elapsed;           //  ticks since the last election reset
    int heartbeat_elapsed;          //  leader: ticks since the last heartbeat
    int randomized_timeout;         //  this term's election timeout (§3.4)

    uint64_t pending_conf;          //  leader: index of the latest conf entry (or of
                                    //    this term's no-op); a new change waits for it
    uint64_t transferee;            //  leader: target of a running transfer, 0 = none
    int transfer_elapsed;           //  leader: ticks since the transfer began

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

static int
s_cmp_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y ? 1 : 0;
}

//  --------------------------------------------------------------------------
//  Configurations

static void
s_conf_free (rcore_conf_t *conf)
{
    free (conf->voters);
    free (conf->learners);
    memset (conf, 0, sizeof *conf);
}

static void
s_conf_copy (rcore_conf_t *dst, const rcore_conf_t *src)
{
    dst->voters = (uint64_t *) s_dup_bytes (src->voters, src->n_voters * sizeof (uint64_t));
    dst->n_voters = src->n_voters;
    dst->learners = (uint64_t *) s_dup_bytes (src->learners,
                                              src->n_learners * sizeof (uint64_t));
    dst->n_learners = src->n_learners;
}

static bool
s_conf_empty (const rcore_conf_t *conf)
{
    return conf->n_voters == 0 && conf->n_learners == 0;
}

static bool
s_ids_has (const uint64_t *ids, size_t n, uint64_t id)
{
    return n && bsearch (&id, ids, n, sizeof (uint64_t), s_cmp_u64) != NULL;
}

//  A list of ids as a configuration holds it: not 0, strictly ascending.
static bool
s_ids_valid (const uint64_t *ids, size_t n)
{
    if (n > RCORE_MAX_VOTERS || (n && !ids))
        return false;
    for (size_t i = 0; i < n; i++)
        if (ids [i] == 0 || (i > 0 && ids [i] <= ids [i - 1]))
            return false;
    return true;
}

//  A configuration from outside (storage, a snapshot message): both lists
//  valid, no id in both, and learners only beside at least one voter.
static bool
s_conf_valid (const rcore_conf_t *conf)
{
    if (!s_ids_valid (conf->voters, conf->n_voters)
        || !s_ids_valid (conf->learners, conf->n_learners))
        return false;
    if (conf->n_voters == 0 && conf->n_learners > 0)
        return false;
    for (size_t i = 0; i < conf->n_learners; i++)
        if (s_ids_has (conf->voters, conf->n_voters, conf->learners [i]))
            return false;
    return true;
}

static const char *s_change_names [RCORE_CONF_CHANGE_COUNT] = {
    [RCORE_CONF_ADD_LEARNER] = "add_learner",
    [RCORE_CONF_PROMOTE] = "promote",
    [RCORE_CONF_REMOVE] = "remove",
};

//  Reads a JSON array of ids (positive integers, ascending) into *ids.
static int
s_ids_parse (const json_t *array, uint64_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    if (!json_is_array (array) || json_array_size (array) > RCORE_MAX_VOTERS)
        return -SH_EINVAL;
    size_t count = json_array_size (array);
    if (count == 0)
        return 0;
    uint64_t *list = (uint64_t *) malloc (count * sizeof (uint64_t));
    assert (list);
    for (size_t i = 0; i < count; i++) {
        const json_t *item = json_array_get (array, i);
        if (!json_is_integer (item) || json_integer_value (item) <= 0) {
            free (list);
            return -SH_EINVAL;
        }
        list [i] = (uint64_t) json_integer_value (item);
    }
    if (!s_ids_valid (list, count)) {
        free (list);
        return -SH_EINVAL;
    }
    *ids = list;
    *n = count;
    return 0;
}

//  Parses a CONF entry (see rcore_conf_t) into rec (conf owned). The whole
//  configuration must be valid, hold at least one voter and agree with the
//  change it names. 0 or -SH_EINVAL.
static int
s_conf_parse (const uint8_t *data, size_t len, s_conf_rec_t *rec)
{
    memset (rec, 0, sizeof *rec);
    if (!data || !len)
        return -SH_EINVAL;
    json_error_t error;
    json_t *root = json_loadb ((const char *) data, len, JSON_REJECT_DUPLICATES, &error);
    if (!json_is_object (root)) {
        json_decref (root);
        return -SH_EINVAL;
    }
    int rc = 0;
    const char *change = json_string_value (json_object_get (root, "change"));
    const json_t *peer = json_object_get (root, "peer_id");
    rec->change = -1;
    for (int i = 0; change && i < RCORE_CONF_CHANGE_COUNT; i++)
        if (strcmp (change, s_change_names [i]) == 0)
            rec->change = i;
    if (rec->change < 0 || !json_is_integer (peer) || json_integer_value (peer) <= 0)
        rc = -SH_EINVAL;
    else
        rec->peer = (uint64_t) json_integer_value (peer);
    if (!rc)
        rc = s_ids_parse (json_object_get (root, "voters"), &rec->conf.voters,
                          &rec->conf.n_voters);
    if (!rc)
        rc = s_ids_parse (json_object_get (root, "learners"), &rec->conf.learners,
                          &rec->conf.n_learners);
    json_decref (root);
    if (!rc && (!s_conf_valid (&rec->conf) || rec->conf.n_voters == 0))
        rc = -SH_EINVAL;
    if (!rc) {
        bool voter = s_ids_has (rec->conf.voters, rec->conf.n_voters, rec->peer);
        bool learner = s_ids_has (rec->conf.learners, rec->conf.n_learners, rec->peer);
        if ((rec->change == RCORE_CONF_ADD_LEARNER && !learner)
            || (rec->change == RCORE_CONF_PROMOTE && !voter)
            || (rec->change == RCORE_CONF_REMOVE && (voter || learner)))
            rc = -SH_EINVAL;
    }
    if (rc)
        s_conf_free (&rec->conf);
    return rc;
}

static bool
s_conf_entry_valid (const rcore_entry_t *entry)
{
    s_conf_rec_t rec;
    if (s_conf_parse (entry->data, entry->len, &rec))
        return false;
    s_conf_free (&rec.conf);
    return true;
}

//  Builds the CONF entry text for conf made by change of peer, with extra's
//  keys. NULL if extra is not a JSON object or sets one of our keys.
static char *
s_conf_build (const rcore_conf_t *conf, int change, uint64_t peer, const char *extra)
{
    json_error_t error;
    json_t *root = extra ? json_loads (extra, JSON_REJECT_DUPLICATES, &error) : json_object ();
    if (!json_is_object (root)
        || json_object_get (root, "change") || json_object_get (root, "peer_id")
        || json_object_get (root, "voters") || json_object_get (root, "learners")) {
        json_decref (root);
        return NULL;
    }
    json_t *voters = json_array (), *learners = json_array ();
    assert (voters && learners);
    for (size_t i = 0; i < conf->n_voters; i++)
        json_array_append_new (voters, json_integer ((json_int_t) conf->voters [i]));
    for (size_t i = 0; i < conf->n_learners; i++)
        json_array_append_new (learners, json_integer ((json_int_t) conf->learners [i]));
    json_object_set_new (root, "change", json_string (s_change_names [change]));
    json_object_set_new (root, "peer_id", json_integer ((json_int_t) peer));
    json_object_set_new (root, "voters", voters);
    json_object_set_new (root, "learners", learners);
    char *text = json_dumps (root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref (root);
    assert (text);
    return text;
}

//  Copy of ids with id inserted (kept ascending); *n grows by one.
static uint64_t *
s_ids_with (const uint64_t *ids, size_t *n, uint64_t id)
{
    uint64_t *list = (uint64_t *) malloc ((*n + 1) * sizeof (uint64_t));
    assert (list);
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        if (k == i && ids [i] > id)
            list [k++] = id;
        list [k++] = ids [i];
    }
    if (k == *n)
        list [k++] = id;
    *n = k;
    return list;
}

//  Copy of ids without id; *n shrinks if it was there.
static uint64_t *
s_ids_without (const uint64_t *ids, size_t *n, uint64_t id)
{
    uint64_t *list = (uint64_t *) malloc ((*n ? *n : 1) * sizeof (uint64_t));
    assert (list);
    size_t k = 0;
    for (size_t i = 0; i < *n; i++)
        if (ids [i] != id)
            list [k++] = ids [i];
    *n = k;
    return list;
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

//  The configuration in effect: the latest in the log, else the snapshot's.
static const rcore_conf_t *
s_conf_cur (const rcore_t *self)
{
    return self->n_confs ? &self->confs [self->n_confs - 1].conf : &self->snap.conf;
}

//  The configuration as of index (snap.index <= index).
static const rcore_conf_t *
s_conf_at (const rcore_t *self, uint64_t index)
{
    for (size_t i = self->n_confs; i > 0; i--)
        if (self->confs [i - 1].index <= index)
            return &self->confs [i - 1].conf;
    return &self->snap.conf;
}

//  Index of the entry that made the configuration in effect.
static uint64_t
s_conf_index (const rcore_t *self)
{
    return self->n_confs ? self->confs [self->n_confs - 1].index : self->snap.index;
}

static s_progress_t *
s_progress (const rcore_t *self, uint64_t id)
{
    for (size_t i = 0; i < self->n_prs; i++)
        if (self->prs [i].id == id)
            return &self->prs [i];
    return NULL;
}

static void
s_progress_init (const rcore_t *self, s_progress_t *pr, uint64_t id, bool learner,
                 bool leaving)
{
    const s_progress_t *old = s_progress (self, id);
    if (old)
        *pr = *old;
    else {
        memset (pr, 0, sizeof *pr);
        pr->id = id;
        pr->next = s_last_index (self) + 1;
        pr->state = S_PROBE;
        if (id == self->id)
            pr->match = self->stable;
    }
    pr->learner = learner || leaving;
    pr->leaving = leaving;
}

//  The configuration in effect changed (§4.1: a server uses the latest in
//  its log at once): progress for every voter and learner (kept for those
//  that stay), and whether this server may vote and stand.
static void
s_conf_changed (rcore_t *self)
{
    const rcore_conf_t *conf = s_conf_cur (self);
    //  A server removed by a conf entry that is not committed yet keeps
    //  getting the log until it is, so it learns that it was removed and
    //  stops standing for election (§4.2.2).
    uint64_t leaving = 0;
    if (self->n_confs) {
        const s_conf_rec_t *rec = &self->confs [self->n_confs - 1];
        if (rec->change == RCORE_CONF_REMOVE && rec->index > self->commit
            && rec->peer != self->id)
            leaving = rec->peer;
    }
    size_t n = conf->n_voters + conf->n_learners + (leaving ? 1 : 0);
    s_progress_t *prs = (s_progress_t *) calloc (n ? n : 1, sizeof (s_progress_t));
    assert (prs);
    size_t k = 0;
    for (size_t i = 0; i < conf->n_voters; i++)
        s_progress_init (self, &prs [k++], conf->voters [i], false, false);
    for (size_t i = 0; i < conf->n_learners; i++)
        s_progress_init (self, &prs [k++], conf->learners [i], true, false);
    if (leaving)
        s_progress_init (self, &prs [k++], leaving, true, true);
    free (self->prs);
    self->prs = prs;
    self->n_prs = n;
    self->n_voters = conf->n_voters;
    self->is_voter = s_ids_has (conf->voters, conf->n_voters, self->id);
    if (self->transferee && !s_ids_has (conf->voters, conf->n_voters, self->transferee))
        self->transferee = 0;
}

//  Appends a copy of entry, which must follow the last one (and be checked
//  if it is a CONF entry).
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
    if (entry->type == RCORE_ENTRY_CONF) {
        if (self->n_confs == self->cap_confs) {
            self->cap_confs = self->cap_confs ? self->cap_confs * 2 : 8;
            self->confs = (s_conf_rec_t *) realloc (self->confs,
                                                    self->cap_confs * sizeof (s_conf_rec_t));
            assert (self->confs);
        }
        s_conf_rec_t *rec = &self->confs [self->n_confs];
        int rc = s_conf_parse (entry->data, entry->len, rec);
        assert (rc == 0);
        rec->index = entry->index;
        self->n_confs++;
        s_conf_changed (self);
    }
}

//  Drops entries from index on (a conf entry among them reverts to the
//  configuration before it, §4.1).
static void
s_log_truncate (rcore_t *self, uint64_t index)
{
    assert (index > self->snap.index);
    while (s_last_index (self) >= index)
        s_entry_free (&self->log [--self->n_log]);
    if (self->stable >= index)
        self->stable = index - 1;
    bool reverted = false;
    while (self->n_confs && self->confs [self->n_confs - 1].index >= index) {
        s_conf_free (&self->confs [--self->n_confs].conf);
        reverted = true;
    }
    if (reverted)
        s_conf_changed (self);
}

//  Drops entries up to and including index (they are in a snapshot now),
//  and the conf entries among them; the caller sets snap.conf.
static void
s_log_drop_prefix (rcore_t *self, uint64_t index)
{
    assert (index >= self->snap.index);
    size_t drop = (size_t) (index - self->snap.index);
    if (drop > self->n_log)
        drop = self->n_log;
    for (size_t i = 0; i < drop; i++)
        s_entry_free (&self->log [i]);
    if (drop) {
        memmove (self->log, self->log + drop, (self->n_log - drop) * sizeof (rcore_entry_t));
        self->n_log -= drop;
    }
    size_t gone = 0;
    while (gone < self->n_confs && self->confs [gone].index <= index)
        s_conf_free (&self->confs [gone++].conf);
    if (gone) {
        memmove (self->confs, self->confs + gone,
                 (self->n_confs - gone) * sizeof (s_conf_rec_t));
        self->n_confs -= gone;
    }
}

//  Replaces the snapshot (its conf taken over; an empty one means none was
//  known, so the configuration before any is stored applies).
static void
s_snapshot_replace (rcore_t *self, uint64_t index, uint64_t term, const void *data,
                    size_t len, rcore_conf_t *conf)
{
    uint8_t *copy = (uint8_t *) s_dup_bytes (data, len);
    free (self->snap.data);
    s_conf_free (&self->snap.conf);
    self->snap.index = index;
    self->snap.term = term;
    self->snap.data = copy;
    self->snap.len = len;
    if (s_conf_empty (conf)) {
        s_conf_free (conf);
        s_conf_copy (&self->snap.conf, &self->init_conf);
    }
    else
        self->snap.conf = *conf;
    memset (conf, 0, sizeof *conf);
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
s_msg_free (rcore_msg_t *msg)
{
    for (size_t i = 0; i < msg->n_entries; i++)
        s_entry_free (&msg->entries [i]);
    free (msg->entries);
    free (msg->snapshot.data);
    s_conf_free (&msg->snapshot.conf);
    memset (msg, 0, sizeof *msg);
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
    self->transferee = 0;
    self->transfer_elapsed = 0;
    s_reset_election_timer (self);
    for (size_t i = 0; i < self->n_prs; i++) {
        s_progress_t *pr = &self->prs [i];
        pr->match = 0;
        pr->next = s_last_index (self) + 1;
        pr->state = S_PROBE;
        pr->probe_sent = false;
        pr->pending_snapshot = 0;
        pr->snapshot_elapsed = 0;
        pr->force_snapshot = false;
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
    //  §4.1 (and the fix to single-server changes published after the
    //  thesis): no conf change until an entry of this term is committed, so
    //  a conf entry left uncommitted by an earlier leader is settled first.
    self->pending_conf = s_last_index (self);
    s_bcast_append (self);
}

static void
s_send_vote_requests (rcore_t *self, int type, uint64_t term, bool force)
{
    for (size_t i = 0; i < self->n_prs; i++) {
        const s_progress_t *pr = &self->prs [i];
        if (pr->id == self->id || pr->learner)
            continue;       //  only voters are asked (§4.2.1)
        rcore_msg_t *msg = s_outbox_new (self, type, pr->id, term);
        //  §3.6.1: the request carries the candidate's last log index and term
        //  so a voter can refuse a candidate whose log is behind its own
        msg->index = s_last_index (self);
        msg->log_term = s_last_term (self);
        msg->force = force;
    }
}

static size_t
s_quorum (const rcore_t *self)
{
    return self->n_voters / 2 + 1;
}

//  Records voter id's answer; returns +1 when the candidate won a quorum,
//  -1 when it lost one, 0 while undecided. Only voters count (§4.2.1).
static int
s_record_vote (rcore_t *self, uint64_t id, bool granted)
{
    s_progress_t *pr = s_progress (self, id);
    if (pr && !pr->learner && !pr->voted) {
        pr->voted = true;
        pr->granted = granted;
    }
    size_t yes = 0, no = 0;
    for (size_t i = 0; i < self->n_prs; i++) {
        if (self->prs [i].learner || !self->prs [i].voted)
            continue;
        if (self->prs [i].granted)
            yes++;
        else
            no++;
    }
    if (yes >= s_quorum (self))
        return 1;
    if (no >= s_quorum (self))
        return -1;
    return 0;
}

//  Whether this server may stand for election: a voter of the latest
//  configuration; or a voter that the latest conf entry removes while that
//  entry is not known committed (§4.1, Figure 4.6: it may be needed to
//  commit its own removal; its own vote does not count). A learner, a
//  joining server and a server whose removal committed never stand.
static bool
s_may_stand (const rcore_t *self)
{
    if (self->is_voter)
        return true;
    if (!self->n_confs)
        return false;
    const s_conf_rec_t *rec = &self->confs [self->n_confs - 1];
    if (rec->change != RCORE_CONF_REMOVE || rec->peer != self->id || rec->index <= self->commit)
        return false;
    const rcore_conf_t *before = s_conf_at (self, rec->index - 1);
    return s_ids_has (before->voters, before->n_voters, self->id);
}

static void
s_campaign (rcore_t *self, bool pre, bool force)
{
    if (!s_may_stand (self))
        return;             //  never a learner or a removed server
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
            s_campaign (self, false, force);
        else
            s_become_leader (self);
        return;
    }
    s_send_vote_requests (self, req_type, term, force);
}

//  --------------------------------------------------------------------------
//  Leader: replication

//  Sends what pr needs next, if it is not paused. True if sent.
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
    if (pr->force_snapshot || prev < self->snap.index) {
        //  §5.1, Figure 5.3: the entries it needs were compacted (or a
        //  recovery was asked for): send the snapshot instead
        if (self->snap.index == 0)
            return false;
        rcore_msg_t *msg = s_outbox_new (self, RCORE_MSG_SNAPSHOT, pr->id, self->term);
        msg->snapshot.index = self->snap.index;
        msg->snapshot.term = self->snap.term;
        msg->snapshot.data = (uint8_t *) s_dup_bytes (self->snap.data, self->snap.len);
        msg->snapshot.len = self->snap.len;
        s_conf_copy (&msg->snapshot.conf, &self->snap.conf);
        msg->force = pr->force_snapshot;
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
//  stored on a majority of the voters, and only entries of the leader's own
//  term are committed by counting replicas (Figure 3.7); earlier ones are
//  committed indirectly with them. Learners never count (§4.2.1).
static bool
s_maybe_commit (rcore_t *self)
{
    if (self->n_voters == 0)
        return false;
    uint64_t matches [RCORE_MAX_VOTERS];
    size_t n = 0;
    for (size_t i = 0; i < self->n_prs; i++)
        if (!self->prs [i].learner)
            matches [n++] = self->prs [i].match;
    assert (n == self->n_voters);
    qsort (matches, n, sizeof (uint64_t), s_cmp_desc);
    uint64_t quorum_match = matches [s_quorum (self) - 1];
    if (quorum_match > self->commit && s_term_at (self, quorum_match) == self->term) {
        self->commit = quorum_match;
        return true;
    }
    return false;
}

//  The leader's commit moved: followers learn it, a removal that is now
//  committed stops replication to its server, and a leader that is no
//  longer in the committed configuration steps down (§4.2.2).
static void
s_leader_committed (rcore_t *self)
{
    bool had_leaving = self->n_prs && self->prs [self->n_prs - 1].leaving;
    if (had_leaving && s_conf_index (self) <= self->commit) {
        //  one last append so it sees the commit of its own removal
        s_send_append (self, &self->prs [self->n_prs - 1]);
        s_conf_changed (self);
    }
    s_bcast_append (self);
    if (!self->is_voter && s_conf_index (self) <= self->commit)
        s_become_follower (self, self->term, 0);
}

static bool
s_quorum_active (rcore_t *self)
{
    size_t active = 0;
    for (size_t i = 0; i < self->n_prs; i++)
        if (!self->prs [i].learner
            && (self->prs [i].id == self->id || self->prs [i].recent_active))
            active++;
    return self->n_voters && active >= s_quorum (self);
}

//  §3.10: the target's log matches ours: tell it to stand now.
static void
s_maybe_timeout_now (rcore_t *self, const s_progress_t *pr)
{
    if (self->transferee == pr->id && pr->match == s_last_index (self))
        s_outbox_new (self, RCORE_MSG_TIMEOUT_NOW, pr->id, self->term);
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

static void
s_reply_snapshot (rcore_t *self, uint64_t to, uint64_t index, bool reject)
{
    rcore_msg_t *resp = s_outbox_new (self, RCORE_MSG_SNAPSHOT_RESP, to, self->term);
    resp->index = index;
    resp->reject = reject;
}

//  Follower side of InstallSnapshot (§5.1, Figure 5.3), and of a recovery
//  (force): the state machine is reset from the snapshot even if it is
//  already past it, and what was committed after it is applied again.
static void
s_handle_snapshot (rcore_t *self, const rcore_msg_t *m)
{
    const rcore_snapshot_t *s = &m->snapshot;
    bool matches = s_match_term (self, s->index, s->term);
    if (!m->force) {
        if (s->index <= self->commit) {
            //  Stale or duplicate: we hold all of it committed already.
            s_reply_snapshot (self, m->from, s->index, false);
            return;
        }
        if (matches) {
            //  §5.1, Figure 5.3: if the log has an entry matching the
            //  snapshot's last one, the entries after it are kept; it is all
            //  committed.
            self->commit = s->index;
            s_reply_snapshot (self, m->from, s->index, false);
            return;
        }
    }
    else
    if (s->index < self->snap.index || (!matches && self->commit > s->index)) {
        //  A recovery never goes behind our own snapshot, and a log that
        //  does not hold the snapshot's last entry cannot have committed
        //  past it: refuse rather than lose committed entries.
        s_reply_snapshot (self, m->from, s->index, true);
        return;
    }
    rcore_conf_t conf = { 0 };
    s_conf_copy (&conf, &s->conf);
    if (matches && s->index >= self->snap.index) {
        //  A recovery whose last entry we hold: keep the log after it.
        s_log_drop_prefix (self, s->index);
        if (self->stable < s->index)
            self->stable = s->index;
    }
    else {
        //  §5.1, Figure 5.3: otherwise the whole log is discarded and the
        //  state machine is reset from the snapshot.
        while (self->n_log)
            s_entry_free (&self->log [--self->n_log]);
        while (self->n_confs)
            s_conf_free (&self->confs [--self->n_confs].conf);
        self->stable = s->index;
    }
    s_snapshot_replace (self, s->index, s->term, s->data, s->len, &conf);
    //  Commit never moves back; the state machine restarts from the
    //  snapshot, so everything committed after it is handed out again.
    if (self->commit < s->index)
        self->commit = s->index;
    self->applied = s->index;
    self->snapshot_pending = true;
    s_conf_changed (self);
    s_reply_snapshot (self, m->from, s->index, false);
}

//  Leader side of the answers to appends.
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
        if (pr->state == S_PROBE && pr->next - 1 == m->index) {
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
    if (pr->state == S_SNAPSHOT) {
        if (pr->force_snapshot || pr->match < pr->pending_snapshot)
            return;             //  an answer to an older append: wait for the snapshot's
        pr->state = S_PROBE;
        pr->pending_snapshot = 0;
        pr->force_snapshot = false;
    }
    pr->probe_sent = false;
    if (pr->state == S_PROBE && updated) {
        //  The follower matches us up to match: stream from here on
        pr->state = S_REPLICATE;
        pr->next = pr->match + 1;
    }
    if (updated && s_maybe_commit (self)) {
        //  (which may change the configuration: pr is found again)
        uint64_t id = pr->id;
        s_leader_committed (self);
        pr = s_progress (self, id);
        if (self->role != RCORE_LEADER || !pr)
            return;
    }
    else
        //  keep sending while there is more (or the probe found the match)
        while (pr->next <= s_last_index (self) && s_send_append (self, pr))
            if (pr->state != S_REPLICATE)
                break;
    s_maybe_timeout_now (self, pr);
}

//  Leader side of the answer to a snapshot.
static void
s_handle_snapshot_resp (rcore_t *self, s_progress_t *pr, const rcore_msg_t *m)
{
    pr->recent_active = true;
    if (pr->state != S_SNAPSHOT || m->index != pr->pending_snapshot) {
        //  Not the snapshot in flight. A grant still proves the follower
        //  holds our log up to there (the snapshot is committed state).
        if (!m->reject && m->index > pr->match && m->index <= s_last_index (self))
            pr->match = m->index;
        return;
    }
    if (!m->reject && m->index > pr->match)
        pr->match = m->index;
    //  Installed (or refused: a recovery behind the follower's own
    //  snapshot): back to probing from what it matches.
    pr->state = S_PROBE;
    pr->pending_snapshot = 0;
    pr->force_snapshot = false;
    pr->probe_sent = false;
    pr->next = pr->match + 1;
    if (s_maybe_commit (self)) {
        s_leader_committed (self);
        if (self->role != RCORE_LEADER)
            return;
    }
    else
        s_send_append (self, pr);
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
    s_maybe_timeout_now (self, pr);
}

//  Answers a (pre-)vote request (§3.4, §3.6.1, §9.6).
static void
s_handle_vote (rcore_t *self, const rcore_msg_t *m)
{
    bool pre = m->type == RCORE_MSG_PREVOTE;
    //  §3.4: at most one vote per term, first come first served; a pre-vote
    //  for a later term binds nothing, so it is only refused for the log.
    //  (§4.1: the candidate need not be in our configuration.)
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
            s_campaign (self, false, false);    //  §9.6: a pre-vote won: the real election
        else
            s_become_leader (self);             //  §3.4: votes from a majority win
    }
    else
    if (result < 0)
        s_become_follower (self, self->term, 0);
}

//  Checks a message from outside before anything trusts it. The sender
//  need not be in our configuration (§4.1: a joining server hears from a
//  leader it does not know yet, and votes go to any candidate).
static int
s_check_msg (const rcore_t *self, const rcore_msg_t *m)
{
    if (!m || m->type <= RCORE_MSG_NONE || m->type >= RCORE_MSG_TYPE_COUNT)
        return -SH_EINVAL;
    if (m->to != self->id || m->from == self->id || m->from == 0)
        return -SH_EINVAL;
    if (m->term == 0)
        return -SH_EINVAL;              //  every message is sent in a term >= 1
    if (m->n_entries && (m->type != RCORE_MSG_APPEND || !m->entries))
        return -SH_EINVAL;
    if (m->n_entries > UINT64_MAX - m->index)
        return -SH_EINVAL;
    uint64_t prev_term = m->log_term;
    for (size_t i = 0; i < m->n_entries; i++) {
        const rcore_entry_t *e = &m->entries [i];
        //  Entries follow prevLogIndex without a gap, terms never decrease
        //  along a log and never pass the leader's term (§3.5, §3.6).
        if (e->index != m->index + 1 + i || e->term < prev_term || e->term > m->term
            || e->type >= RCORE_ENTRY_TYPE_COUNT || (e->len && !e->data))
            return -SH_EINVAL;
        if (e->type == RCORE_ENTRY_CONF && !s_conf_entry_valid (e))
            return -SH_EINVAL;
        prev_term = e->term;
    }
    if (m->type == RCORE_MSG_SNAPSHOT
        && (m->snapshot.index == 0 || m->snapshot.term == 0
            || m->snapshot.term > m->term || (m->snapshot.len && !m->snapshot.data)
            || !s_conf_valid (&m->snapshot.conf)))
        return -SH_EINVAL;
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

rcore_t *
rcore_new (const rcore_config_t *config, const rcore_storage_t *storage)
{
    if (!config || config->id == 0 || (config->n_voters && !config->voters)
        || config->n_voters > RCORE_MAX_VOTERS || config->election_ticks < 1
        || config->heartbeat_ticks < 1 || config->heartbeat_ticks >= config->election_ticks
        || config->max_msg_entries == 0 || config->max_inflight == 0)
        return NULL;
    uint64_t sorted [RCORE_MAX_VOTERS];
    if (config->n_voters)
        memcpy (sorted, config->voters, config->n_voters * sizeof (uint64_t));
    qsort (sorted, config->n_voters, sizeof (uint64_t), s_cmp_u64);
    if (!s_ids_valid (sorted, config->n_voters))
        return NULL;

    //  The stored state must be a log that Raft could have produced.
    rcore_storage_t empty;
    memset (&empty, 0, sizeof empty);
    if (!storage)
        storage = &empty;
    const rcore_snapshot_t *snap = &storage->snapshot;
    if ((snap->index == 0) != (snap->term == 0) || (snap->len && !snap->data)
        || !s_conf_valid (&snap->conf))
        return NULL;
    if (storage->n_entries && !storage->entries)
        return NULL;
    uint64_t prev_term = snap->term;
    for (size_t i = 0; i < storage->n_entries; i++) {
        const rcore_entry_t *e = &storage->entries [i];
        if (e->index != snap->index + 1 + i || e->term < prev_term
            || e->type >= RCORE_ENTRY_TYPE_COUNT || (e->len && !e->data))
            return NULL;
        if (e->type == RCORE_ENTRY_CONF && !s_conf_entry_valid (e))
            return NULL;
        prev_term = e->term;
    }
    const rcore_hard_state_t *hs = &storage->hard_state;
    uint64_t last = snap->index + storage->n_entries;
    //  Entries are saved with the hard state in one write, so their terms
    //  never pass it; a snapshot is installed just before that write, and a
    //  crash between the two leaves it ahead (handled below).
    uint64_t entries_term = storage->n_entries ? prev_term : 0;
    if (entries_term > hs->term || hs->commit > last)
        return NULL;
    if (config->applied > hs->commit && config->applied > snap->index)
        return NULL;

    rcore_t *self = (rcore_t *) calloc (1, sizeof (rcore_t));
    assert (self);
    self->id = config->id;
    self->config = *config;
    self->config.voters = NULL;
    self->config.n_voters = 0;
    self->rng = config->seed ^ (config->id * 0x9e3779b97f4a7c15ULL);
    self->init_conf.voters = (uint64_t *) s_dup_bytes (sorted,
                                                       config->n_voters * sizeof (uint64_t));
    self->init_conf.n_voters = config->n_voters;
    rcore_conf_t conf = { 0 };
    s_conf_copy (&conf, &snap->conf);
    s_snapshot_replace (self, snap->index, snap->term, snap->data, snap->len, &conf);
    for (size_t i = 0; i < storage->n_entries; i++)
        s_log_push (self, &storage->entries [i]);
    self->stable = s_last_index (self);
    self->term = hs->term;
    self->vote = hs->vote;
    if (snap->term > hs->term) {
        //  The snapshot's leader had a later term than the one saved: the
        //  server had adopted it (and voted nothing in it, or that vote
        //  would have been saved first).
        self->term = snap->term;
        self->vote = 0;
    }
    //  Everything in a snapshot is committed (§5.1).
    self->commit = hs->commit > snap->index ? hs->commit : snap->index;
    self->applied = config->applied > snap->index ? config->applied : snap->index;
    self->persisted = *hs;
    s_conf_changed (self);
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
    while (self->n_confs)
        s_conf_free (&self->confs [--self->n_confs].conf);
    free (self->confs);
    free (self->snap.data);
    s_conf_free (&self->snap.conf);
    s_conf_free (&self->init_conf);
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
        if (self->transferee && ++self->transfer_elapsed >= self->config.election_ticks) {
            //  §3.10: the target did not take over within an election
            //  timeout: give up and take proposals again
            self->transferee = 0;
            self->transfer_elapsed = 0;
        }
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
    //  Counted by every server, voter or not: §4.2.3's check needs it.
    if (self->election_elapsed < INT_MAX)
        self->election_elapsed++;
    if (!s_may_stand (self))
        return;             //  a learner, a joining or a removed server never stands
    //  A lone voter has no one to wait for and no one to disrupt.
    if (self->is_voter && self->n_voters == 1 && self->role == RCORE_FOLLOWER) {
        rcore_campaign (self);
        return;
    }
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
    s_campaign (self, self->config.pre_vote, false);
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
                    || m->type == RCORE_MSG_SNAPSHOT || m->type == RCORE_MSG_TIMEOUT_NOW;

    if (m->term > self->term) {
        if (is_vote_req && !m->force && self->config.check_quorum && self->lead != 0
            && self->election_elapsed < self->config.election_ticks)
            //  §4.2.3: a server that heard from a leader within the minimum
            //  election timeout ignores vote requests, so a removed or cut-off
            //  server cannot depose a working leader; a leadership transfer
            //  (force) is the one exception (§3.10).
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
        if (m->type == RCORE_MSG_APPEND || m->type == RCORE_MSG_HEARTBEAT
            || m->type == RCORE_MSG_SNAPSHOT)
            //  A deposed leader is told the current term so it steps down
            //  (§3.3); with pre-vote it might otherwise never learn of it.
            s_outbox_new (self, RCORE_MSG_APPEND_RESP, m->from, self->term);
        else
        if (is_vote_req) {
            //  Figure 3.1: refused with our term, "for candidate to update
            //  itself": a candidate we never ask (it is no voter in our
            //  configuration) would otherwise never learn the term it must
            //  pass to be heard.
            int type = m->type == RCORE_MSG_VOTE ? RCORE_MSG_VOTE_RESP
                                                 : RCORE_MSG_PREVOTE_RESP;
            rcore_msg_t *resp = s_outbox_new (self, type, m->from, self->term);
            resp->reject = true;
        }
        //  §3.3: any other message with a stale term is ignored
        return 0;
    }

    if (is_vote_req) {
        s_handle_vote (self, m);
        return 0;
    }
    switch (self->role) {
        case RCORE_LEADER: {
            //  Answers from a server no longer (or not yet) in the
            //  configuration have nothing to update.
            s_progress_t *pr = s_progress (self, m->from);
            if (!pr)
                break;
            if (m->type == RCORE_MSG_APPEND_RESP)
                s_handle_append_resp (self, pr, m);
            else
            if (m->type == RCORE_MSG_HEARTBEAT_RESP)
                s_handle_heartbeat_resp (self, pr);
            else
            if (m->type == RCORE_MSG_SNAPSHOT_RESP)
                s_handle_snapshot_resp (self, pr, m);
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
    switch (m->type) {
        case RCORE_MSG_APPEND:
            return s_handle_append (self, m);
        case RCORE_MSG_HEARTBEAT:
            s_handle_heartbeat (self, m);
            break;
        case RCORE_MSG_SNAPSHOT:
            s_handle_snapshot (self, m);
            break;
        default:
            //  §3.10: the leader hands over: stand now, with a real vote
            //  (no pre-vote) that voters grant despite hearing from it
            s_campaign (self, false, true);
            break;
    }
    return 0;
}

int
rcore_propose (rcore_t *self, int type, const void *data, size_t len, uint64_t *index,
               uint64_t *term)
{
    assert (!self->in_ready);
    //  CONF entries only through rcore_propose_conf, which checks them.
    if (type < 0 || type >= RCORE_ENTRY_TYPE_COUNT || type == RCORE_ENTRY_CONF
        || (len && !data))
        return -SH_EINVAL;
    if (self->role != RCORE_LEADER)
        return -SH_ENOLEADER;           //  §6.2: only the leader takes commands
    if (self->transferee)
        return -SH_EUNAVAIL;            //  §3.10: handing over; retry at the next leader
    s_append_local (self, type, data, len);
    if (index)
        *index = s_last_index (self);
    if (term)
        *term = self->term;
    s_bcast_append (self);
    return 0;
}

int
rcore_propose_conf (rcore_t *self, int change, uint64_t peer, const char *extra,
                    uint64_t *index, uint64_t *term)
{
    assert (!self->in_ready);
    if (change < 0 || change >= RCORE_CONF_CHANGE_COUNT || peer == 0
        || peer > (uint64_t) INT64_MAX)
        return -SH_EINVAL;
    if (self->role != RCORE_LEADER)
        return -SH_ENOLEADER;
    //  §4.1: one change at a time; the next waits until the last commits.
    if (self->transferee || self->pending_conf > self->commit)
        return -SH_EUNAVAIL;
    const rcore_conf_t *cur = s_conf_cur (self);
    bool voter = s_ids_has (cur->voters, cur->n_voters, peer);
    bool learner = s_ids_has (cur->learners, cur->n_learners, peer);
    rcore_conf_t next = { 0 };
    next.n_voters = cur->n_voters;
    next.n_learners = cur->n_learners;
    switch (change) {
        case RCORE_CONF_ADD_LEARNER:
            if (voter || learner)
                return -SH_EEXIST;
            if (cur->n_learners >= RCORE_MAX_VOTERS)
                return -SH_EINVAL;
            next.voters = s_ids_without (cur->voters, &next.n_voters, 0);
            next.learners = s_ids_with (cur->learners, &next.n_learners, peer);
            break;
        case RCORE_CONF_PROMOTE:
            if (voter)
                return -SH_EINVAL;
            if (!learner)
                return -SH_ENOTFOUND;
            if (cur->n_voters >= RCORE_MAX_VOTERS)
                return -SH_EINVAL;
            next.voters = s_ids_with (cur->voters, &next.n_voters, peer);
            next.learners = s_ids_without (cur->learners, &next.n_learners, peer);
            break;
        default:
            if (!voter && !learner)
                return -SH_ENOTFOUND;
            if (voter && cur->n_voters == 1)
                return -SH_EINVAL;      //  someone must remain to decide
            next.voters = s_ids_without (cur->voters, &next.n_voters, peer);
            next.learners = s_ids_without (cur->learners, &next.n_learners, peer);
            break;
    }
    char *text = s_conf_build (&next, change, peer, extra);
    s_conf_free (&next);
    if (!text)
        return -SH_EINVAL;
    s_append_local (self, RCORE_ENTRY_CONF, text, strlen (text));
    free (text);
    self->pending_conf = s_last_index (self);
    if (index)
        *index = s_last_index (self);
    if (term)
        *term = self->term;
    //  The new configuration counts at once: removing a voter may shrink
    //  the quorum enough to commit what was waiting.
    if (s_maybe_commit (self))
        s_leader_committed (self);
    else
        s_bcast_append (self);
    return 0;
}

void
rcore_conf (const rcore_t *self, rcore_conf_t *out)
{
    *out = *s_conf_cur (self);
}

int
rcore_conf_at (const rcore_t *self, uint64_t index, rcore_conf_t *out)
{
    if (index < self->snap.index || index > s_last_index (self)) {
        memset (out, 0, sizeof *out);
        return -SH_EINVAL;
    }
    *out = *s_conf_at (self, index);
    return 0;
}

bool
rcore_is_voter (const rcore_t *self)
{
    return self->is_voter;
}

uint64_t
rcore_match (const rcore_t *self, uint64_t peer)
{
    if (self->role != RCORE_LEADER)
        return 0;
    const s_progress_t *pr = s_progress (self, peer);
    return pr && !pr->leaving ? pr->match : 0;
}

bool
rcore_caught_up (const rcore_t *self, uint64_t peer, uint64_t lag)
{
    if (self->role != RCORE_LEADER)
        return false;
    const s_progress_t *pr = s_progress (self, peer);
    return pr && pr->learner && !pr->leaving && pr->recent_active
        && s_last_index (self) - pr->match <= lag;
}

int
rcore_transfer_leader (rcore_t *self, uint64_t target)
{
    assert (!self->in_ready);
    if (self->role != RCORE_LEADER)
        return -SH_ENOLEADER;
    const rcore_conf_t *conf = s_conf_cur (self);
    if (target == self->id || !s_ids_has (conf->voters, conf->n_voters, target))
        return -SH_ENOTFOUND;
    if (self->transferee == target)
        return 0;
    self->transferee = target;
    self->transfer_elapsed = 0;
    s_progress_t *pr = s_progress (self, target);
    assert (pr);
    if (pr->match == s_last_index (self))
        s_maybe_timeout_now (self, pr);
    else
        //  §3.10: bring its log up to date first
        s_send_append (self, pr);
    return 0;
}

uint64_t
rcore_transferee (const rcore_t *self)
{
    return self->role == RCORE_LEADER ? self->transferee : 0;
}

int
rcore_send_snapshot (rcore_t *self, uint64_t peer)
{
    assert (!self->in_ready);
    if (self->role != RCORE_LEADER)
        return -SH_ENOLEADER;
    s_progress_t *pr = s_progress (self, peer);
    if (peer == self->id || !pr || pr->leaving)
        return -SH_ENOTFOUND;
    if (self->snap.index == 0)
        return -SH_EINVAL;
    pr->force_snapshot = true;
    pr->state = S_PROBE;
    pr->probe_sent = false;
    pr->pending_snapshot = 0;
    s_send_append (self, pr);
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
                s_leader_committed (self);
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
    //  The snapshot records the configuration as of its index, so a server
    //  restored or caught up from it knows its members (§5.1).
    rcore_conf_t conf = { 0 };
    s_conf_copy (&conf, s_conf_at (self, index));
    s_log_drop_prefix (self, index);
    s_snapshot_replace (self, index, term, data, len, &conf);
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
        case RCORE_MSG_SNAPSHOT_RESP: return "snapshot_resp";
        case RCORE_MSG_TIMEOUT_NOW: return "timeout_now";
        default: return "unknown";
    }
}
