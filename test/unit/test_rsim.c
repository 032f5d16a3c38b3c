/*  test_rsim: the deterministic simulation suite for the Raft core.

    Thousands of seeded runs of 3 and 5 servers (rcore, as the raft actor
    drives it) over a simulated network that drops, delays, duplicates,
    reorders and partitions messages, with servers that crash and restart
    from what they persisted, proposals throughout, log compaction,
    membership changes (add a learner, promote it once caught up, remove a
    voter or a learner, the leader itself included, add a removed server
    back), leadership transfers and recovery snapshots. Half the runs start
    as the real cluster does (one founding voter, the others joining with no
    configuration), half with every server a voter.

    Each server's disk is modelled as raft_store keeps it (hard state, log,
    snapshot with its configuration; a save replaces the stored suffix from
    its first entry on, an installed snapshot keeps the stored log after it
    only when the log holds its last entry), the ready cycle runs in the
    actor's order (persist, send, install and apply, advance) and a crash
    can strike between any two of those. The state machine is a hash chain
    over the applied entries; a snapshot is that hash.

    After every step the suite checks Raft's safety properties (§3.6.3):
    at most one leader per term; log matching (an index and term name one
    entry and one predecessor, whichever server holds it, and logs are also
    compared whole every few steps); leader completeness (a leader holds
    every entry committed in an earlier term); state machine safety (no two
    servers commit or apply different entries, or reach different states, at
    one index; snapshots hold the state and the configuration of their
    index); commit never goes back; a server outside the voters never
    stands (but a voter whose removal is not yet committed, §4.1). Three
    times a run the network heals and every server restarts (or all but one
    that a majority can do without): a proposal must then commit on every
    member that is up within a bounded number of steps (liveness).

    A failure names its seed and step. Replay one run with
    SHOAL_RSIM_SEED=<seed> (and SHOAL_RSIM_TRACE=1 to print its events);
    SHOAL_RSIM_RUNS=<n> runs n seeds per cluster size instead of the default.
*/
#include "actors/raft/rcore.h"
#include "actors/raft/rmsg.h"
#include "common/err.h"
#include "test/unit/check_main.h"
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_NODES 5
#define S_DEFAULT_RUNS 2500         //  per cluster size
#define S_CHAOS_STEPS 200           //  steps of faults before each healing
#define S_PHASES 3                  //  chaos + healing, this many times a run
#define S_HEAL_STEPS 1000           //  bound on steps to commit once healed
#define S_FULL_CHECK_EVERY 25       //  steps between whole-log comparisons
#define S_LAG 4                     //  rcore_caught_up lag for a promotion
#define S_SNAP_MAGIC 0x72736e6170ULL

//  --------------------------------------------------------------------------
//  Lists of entries and deep copies

typedef struct {
    rcore_entry_t *items;
    size_t n, cap;
} s_entries_t;

static void
s_entries_push (s_entries_t *list, const rcore_entry_t *e)
{
    if (list->n == list->cap) {
        list->cap = list->cap ? list->cap * 2 : 16;
        list->items = realloc (list->items, list->cap * sizeof (rcore_entry_t));
    }
    rcore_entry_t *copy = &list->items [list->n++];
    *copy = *e;
    copy->data = NULL;
    if (e->len) {
        copy->data = malloc (e->len);
        memcpy (copy->data, e->data, e->len);
    }
}

static void
s_entries_truncate (s_entries_t *list, size_t n)
{
    while (list->n > n)
        free (list->items [--list->n].data);
}

//  Drops the first n entries.
static void
s_entries_drop_front (s_entries_t *list, size_t n)
{
    if (n > list->n)
        n = list->n;
    if (!n)
        return;
    for (size_t k = 0; k < n; k++)
        free (list->items [k].data);
    memmove (list->items, list->items + n, (list->n - n) * sizeof (rcore_entry_t));
    list->n -= n;
}

static void
s_entries_free (s_entries_t *list)
{
    s_entries_truncate (list, 0);
    free (list->items);
    memset (list, 0, sizeof *list);
}

static void *
s_dup (const void *data, size_t len)
{
    if (!len)
        return NULL;
    void *copy = malloc (len);
    memcpy (copy, data, len);
    return copy;
}

static void
s_snap_copy (rcore_snapshot_t *dst, const rcore_snapshot_t *src)
{
    *dst = *src;
    dst->data = s_dup (src->data, src->len);
    dst->conf.voters = s_dup (src->conf.voters, src->conf.n_voters * sizeof (uint64_t));
    dst->conf.learners = s_dup (src->conf.learners, src->conf.n_learners * sizeof (uint64_t));
}

static void
s_snap_free (rcore_snapshot_t *snap)
{
    free (snap->data);
    free (snap->conf.voters);
    free (snap->conf.learners);
    memset (snap, 0, sizeof *snap);
}

static void
s_msg_copy (rcore_msg_t *dst, const rcore_msg_t *src)
{
    *dst = *src;
    dst->entries = NULL;
    if (src->n_entries) {
        dst->entries = calloc (src->n_entries, sizeof (rcore_entry_t));
        for (size_t i = 0; i < src->n_entries; i++) {
            dst->entries [i] = src->entries [i];
            dst->entries [i].data = s_dup (src->entries [i].data, src->entries [i].len);
        }
    }
    s_snap_copy (&dst->snapshot, &src->snapshot);
}

//  --------------------------------------------------------------------------
//  Hashes

static uint64_t
s_mix (uint64_t h, uint64_t v)
{
    uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t
s_hash_bytes (const void *data, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    const uint8_t *p = (const uint8_t *) data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p [i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t
s_entry_hash (const rcore_entry_t *e)
{
    return s_mix (s_mix (s_mix (e->index, e->term), e->type), s_hash_bytes (e->data, e->len));
}

static uint64_t
s_conf_hash (const rcore_conf_t *conf)
{
    uint64_t h = s_mix (conf->n_voters, conf->n_learners);
    for (size_t i = 0; i < conf->n_voters; i++)
        h = s_mix (h, conf->voters [i]);
    for (size_t i = 0; i < conf->n_learners; i++)
        h = s_mix (h, ~conf->learners [i]);
    return h;
}

//  --------------------------------------------------------------------------
//  The simulation

//  What the run knows about one log index, across all servers.
typedef struct {
    uint64_t term, hash, prev;      //  an entry seen at this index, and its predecessor's term
    bool conf;                      //  it is a CONF entry
} s_seen_t;

typedef struct {
    s_seen_t *seen;                 //  one per term seen at this index (log matching)
    size_t n_seen, cap_seen;
    bool committed;                 //  some server committed an entry here
    uint64_t term, hash;            //  that entry
    uint64_t commit_term;           //  lowest term in which a server knew it committed
    bool applied;                   //  some server applied it
    uint64_t state;                 //  the state machine's hash after it
    bool has_conf;                  //  a server with a known configuration applied it
    uint64_t conf;                  //  hash of that configuration (rcore_conf_at)
} s_slot_t;

typedef struct {
    uint64_t id;
    rcore_t *core;                  //  NULL while down
    bool founder;                   //  starts with the initial voters
    int group;                      //  partition group
    //  the disk
    rcore_hard_state_t hs;
    rcore_snapshot_t snap;
    s_entries_t log;                //  entries after snap.index
    //  the state machine
    uint64_t sm_index;              //  last index applied
    uint64_t sm_state;              //  hash chain up to it
    uint64_t seen_commit;           //  commit at the last check while up
    bool led_removed;               //  was a leader outside its own configuration
} s_node_t;

typedef struct {
    rcore_msg_t msg;
    uint64_t at;                    //  step at which it arrives
} s_flight_t;

typedef struct {
    size_t elections, commits, proposals, compactions, snapshots_installed, recoveries,
           transfers, conf_changes, crashes, ready_crashes, restarts, messages, dropped,
           rmsg_round_trips;
    size_t conf_reverted;           //  a conf entry seen at an index that committed another
    size_t removed_leaders;         //  leaders that stepped down after their own removal
    size_t resets;                  //  recoveries that took a state machine back
    size_t catch_ups;               //  snapshots installed on an empty state machine
    size_t transfers_done;          //  the target led the next term
    size_t heals, heals_minority;   //  liveness checks (with a server left down)
    size_t heal_steps_max;          //  most steps a heal took to commit everywhere
} s_stats_t;

typedef struct {
    uint64_t seed;
    uint64_t rng;
    uint64_t step;
    size_t n;
    bool bootstrap;                 //  one founder, the others join
    bool pre_vote;
    bool chaos;                     //  faults and actions on
    int drop_pct, dup_pct, max_delay, ready_crash_per_mille;
    size_t max_inflight;
    s_node_t nodes [S_MAX_NODES];
    uint64_t init [S_MAX_NODES];    //  the founders' initial voters
    size_t n_init;
    s_flight_t *flights;
    size_t n_flights, cap_flights;
    uint64_t *leaders;              //  leaders [term]: the one leader seen in term
    size_t cap_leaders;
    s_slot_t *slots;                //  slots [index]
    size_t cap_slots;
    uint64_t max_committed;
    uint64_t proposal_seq;
    uint64_t transfer_target;       //  the last transfer asked for, and in which term
    uint64_t transfer_term;
    bool trace;
    s_stats_t stats;
} s_sim_t;

static s_sim_t *s_sim;              //  the run in progress, for failure messages
static s_stats_t s_totals;

static void
s_fail (const char *what, int line)
{
    fprintf (stderr, "rsim: FAILED seed=%" PRIu64 " step=%" PRIu64 " (line %d): %s\n"
             "rsim: replay with SHOAL_RSIM_SEED=%" PRIu64 " SHOAL_RSIM_TRACE=1\n",
             s_sim->seed, s_sim->step, line, what, s_sim->seed);
    ck_abort_msg ("rsim seed=%" PRIu64 " step=%" PRIu64 " line %d: %s", s_sim->seed,
                  s_sim->step, line, what);
}

//  Check's ck_assert_* records every passing check; these run millions of
//  times, so they call into Check only when they fail.
#define S_CHECK(expr) do { if (!(expr)) s_fail (#expr, __LINE__); } while (0)

static void
s_trace (s_sim_t *sim, const char *format, ...)
{
    if (!sim->trace)
        return;
    va_list args;
    va_start (args, format);
    fprintf (stderr, "[%4" PRIu64 "] ", sim->step);
    vfprintf (stderr, format, args);
    fprintf (stderr, "\n");
    va_end (args);
}

static uint64_t
s_rand (s_sim_t *sim)
{
    uint64_t z = (sim->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t
s_below (s_sim_t *sim, uint64_t n)
{
    return n ? s_rand (sim) % n : 0;
}

static s_slot_t *
s_slot (s_sim_t *sim, uint64_t index)
{
    if (index >= sim->cap_slots) {
        size_t cap = sim->cap_slots ? sim->cap_slots : 256;
        while (cap <= index)
            cap *= 2;
        sim->slots = realloc (sim->slots, cap * sizeof (s_slot_t));
        memset (sim->slots + sim->cap_slots, 0, (cap - sim->cap_slots) * sizeof (s_slot_t));
        sim->cap_slots = cap;
    }
    return &sim->slots [index];
}

static s_node_t *
s_node (s_sim_t *sim, uint64_t id)
{
    return id >= 1 && id <= sim->n ? &sim->nodes [id - 1] : NULL;
}

//  --------------------------------------------------------------------------
//  The disk, as raft_store keeps it

static void
s_disk_install (s_node_t *node, const rcore_snapshot_t *snap)
{
    //  raft_store_install_snapshot: keep the stored log after the snapshot
    //  only if it holds the snapshot's last entry.
    uint64_t at = snap->index;
    bool keep = at == node->snap.index && snap->term == node->snap.term;
    size_t drop = 0;
    if (at > node->snap.index && at <= node->snap.index + node->log.n
        && node->log.items [at - node->snap.index - 1].term == snap->term) {
        keep = true;
        drop = (size_t) (at - node->snap.index);
    }
    if (keep)
        s_entries_drop_front (&node->log, drop);
    else
        s_entries_truncate (&node->log, 0);
    s_snap_free (&node->snap);
    s_snap_copy (&node->snap, snap);
}

static void
s_disk_save (s_node_t *node, const rcore_ready_t *rd)
{
    if (rd->n_entries) {
        //  raft_store_save replaces the stored suffix from the first entry
        //  on; a gap would make the next load refuse the log.
        uint64_t first = rd->entries [0].index;
        S_CHECK (first > node->snap.index);
        S_CHECK (first <= node->snap.index + node->log.n + 1);
        s_entries_truncate (&node->log, (size_t) (first - node->snap.index - 1));
        for (size_t k = 0; k < rd->n_entries; k++)
            s_entries_push (&node->log, &rd->entries [k]);
    }
    if (rd->hard_state_changed || rd->n_entries)
        node->hs = rd->hard_state;
}

//  --------------------------------------------------------------------------
//  The state machine: a hash chain; a snapshot is (index, hash)

typedef struct {
    uint64_t magic, index, state;
} s_sm_image_t;

static void
s_sm_install (s_sim_t *sim, s_node_t *node, const rcore_snapshot_t *snap)
{
    s_sm_image_t image;
    S_CHECK (snap->len == sizeof image);
    memcpy (&image, snap->data, sizeof image);
    S_CHECK (image.magic == S_SNAP_MAGIC);
    S_CHECK (image.index == snap->index);
    s_slot_t *slot = s_slot (sim, snap->index);
    //  The snapshot is some server's applied state: the run saw it.
    S_CHECK (slot->applied);
    S_CHECK (slot->state == image.state);
    S_CHECK (slot->term == snap->term);
    if (slot->has_conf && (snap->conf.n_voters || snap->conf.n_learners))
        S_CHECK (s_conf_hash (&snap->conf) == slot->conf);
    node->sm_index = image.index;
    node->sm_state = image.state;
}

//  The first server to commit an entry at slot's index says which it is.
static void
s_slot_commit (s_sim_t *sim, s_slot_t *slot, uint64_t term, uint64_t hash)
{
    slot->committed = true;
    slot->term = term;
    slot->hash = hash;
    for (size_t v = 0; v < slot->n_seen; v++)
        if (slot->seen [v].conf && slot->seen [v].term != term) {
            sim->stats.conf_reverted++;
            break;
        }
}

static void
s_sm_apply (s_sim_t *sim, s_node_t *node, const rcore_entry_t *e)
{
    //  Applied in order, without a gap.
    S_CHECK (e->index == node->sm_index + 1);
    uint64_t hash = s_entry_hash (e);
    node->sm_state = s_mix (node->sm_state, hash);
    node->sm_index = e->index;
    s_slot_t *slot = s_slot (sim, e->index);
    //  State machine safety: one entry, one state per index.
    if (slot->applied) {
        S_CHECK (slot->term == e->term);
        S_CHECK (slot->hash == hash);
        S_CHECK (slot->state == node->sm_state);
    }
    else {
        if (slot->committed) {
            S_CHECK (slot->term == e->term);
            S_CHECK (slot->hash == hash);
        }
        else
            s_slot_commit (sim, slot, e->term, hash);
        slot->applied = true;
        slot->state = node->sm_state;
    }
    //  Every server that knows a configuration there knows the same one.
    rcore_conf_t conf;
    S_CHECK (rcore_conf_at (node->core, e->index, &conf) == 0);
    if (conf.n_voters || conf.n_learners) {
        if (slot->has_conf)
            S_CHECK (slot->conf == s_conf_hash (&conf));
        slot->has_conf = true;
        slot->conf = s_conf_hash (&conf);
    }
}

//  --------------------------------------------------------------------------
//  Servers: start, crash, the ready cycle

static void
s_start (s_sim_t *sim, s_node_t *node)
{
    rcore_config_t config;
    rcore_config_defaults (&config);
    config.id = node->id;
    //  A founder starts with the initial voters; a joining server with none
    //  (it waits for a leader to add it).
    config.voters = node->founder ? sim->init : NULL;
    config.n_voters = node->founder ? sim->n_init : 0;
    config.seed = s_rand (sim);
    config.pre_vote = sim->pre_vote;
    config.max_msg_entries = 8;
    config.max_inflight = sim->max_inflight;
    config.applied = node->snap.index;      //  the state machine restarts from the snapshot
    rcore_storage_t storage = {
        .hard_state = node->hs,
        .snapshot = node->snap,
        .entries = node->log.items,
        .n_entries = node->log.n
    };
    node->core = rcore_new (&config, &storage);
    //  Whatever was persisted, at whatever moment the crash came, loads.
    S_CHECK (node->core != NULL);
    node->sm_index = 0;
    node->sm_state = 0;
    if (node->snap.index)
        s_sm_install (sim, node, &node->snap);
    node->seen_commit = rcore_commit (node->core);
}

static void
s_crash (s_sim_t *sim, s_node_t *node, const char *when)
{
    s_trace (sim, "crash %" PRIu64 " %s", node->id, when);
    rcore_destroy (&node->core);
}

static void s_send (s_sim_t *sim, const rcore_msg_t *m);

//  Log matching, as entries reach a log: an index and term name one entry
//  and one predecessor term, on every server (§3.5).
static void
s_check_new_entries (s_sim_t *sim, s_node_t *node, const rcore_ready_t *rd)
{
    for (size_t k = 0; k < rd->n_entries; k++) {
        const rcore_entry_t *e = &rd->entries [k];
        uint64_t prev = 0;
        if (k > 0)
            prev = rd->entries [k - 1].term;
        else
        if (e->index > 1) {
            const rcore_entry_t *before = rcore_entry (node->core, e->index - 1);
            const rcore_snapshot_t *snap = rcore_snapshot (node->core);
            S_CHECK (before || snap->index == e->index - 1);
            prev = before ? before->term : snap->term;
        }
        uint64_t hash = s_entry_hash (e);
        s_slot_t *slot = s_slot (sim, e->index);
        bool found = false;
        for (size_t i = 0; i < slot->n_seen; i++)
            if (slot->seen [i].term == e->term) {
                S_CHECK (slot->seen [i].hash == hash);
                S_CHECK (slot->seen [i].prev == prev);
                found = true;
            }
        if (!found) {
            if (slot->n_seen == slot->cap_seen) {
                slot->cap_seen = slot->cap_seen ? slot->cap_seen * 2 : 2;
                slot->seen = realloc (slot->seen, slot->cap_seen * sizeof (s_seen_t));
            }
            slot->seen [slot->n_seen++] = (s_seen_t) { e->term, hash, prev,
                                                       e->type == RCORE_ENTRY_CONF };
        }
    }
}

//  Picks where (if at all) a crash strikes this ready: 0 none, 1 after the
//  snapshot is saved, 2 after the save, 3 after the sends.
static int
s_crash_point (s_sim_t *sim)
{
    if (!sim->chaos || (int) s_below (sim, 1000) >= sim->ready_crash_per_mille)
        return 0;
    return 1 + (int) s_below (sim, 3);
}

//  The ready cycle of one server, in the actor's order.
static void
s_process (s_sim_t *sim, s_node_t *node)
{
    rcore_ready_t rd;
    while (node->core && rcore_ready (node->core, &rd)) {
        int crash = s_crash_point (sim);
        //  1. persist: the snapshot, then the hard state and entries
        if (rd.snapshot) {
            S_CHECK (rd.snapshot->index >= node->snap.index);
            s_disk_install (node, rd.snapshot);
        }
        if (crash == 1 && rd.snapshot) {
            sim->stats.ready_crashes++;
            s_crash (sim, node, "after saving a snapshot");
            return;
        }
        s_check_new_entries (sim, node, &rd);
        s_disk_save (node, &rd);
        if (crash == 2) {
            sim->stats.ready_crashes++;
            s_crash (sim, node, "after a save, before sending");
            return;
        }
        //  2. send, only once it is durable
        for (size_t k = 0; k < rd.n_messages; k++)
            s_send (sim, &rd.messages [k]);
        if (crash == 3) {
            sim->stats.ready_crashes++;
            s_crash (sim, node, "after sending, before applying");
            return;
        }
        //  3. install and apply
        if (rd.snapshot) {
            sim->stats.snapshots_installed++;
            if (node->sm_index > rd.snapshot->index)
                sim->stats.resets++;
            if (node->sm_index == 0)
                sim->stats.catch_ups++;
            s_trace (sim, "%" PRIu64 " installs snapshot %" PRIu64 " (applied %" PRIu64 ")",
                     node->id, rd.snapshot->index, node->sm_index);
            s_sm_install (sim, node, rd.snapshot);
        }
        for (size_t k = 0; k < rd.n_committed; k++)
            s_sm_apply (sim, node, &rd.committed [k]);
        //  Committed entries are durable before they are applied.
        if (rd.n_committed)
            S_CHECK (rd.committed [rd.n_committed - 1].index
                     <= node->snap.index + node->log.n);
        rcore_advance (node->core, &rd);
    }
}

static void
s_restart (s_sim_t *sim, s_node_t *node)
{
    s_trace (sim, "restart %" PRIu64, node->id);
    sim->stats.restarts++;
    s_start (sim, node);
    s_process (sim, node);
}

//  The state machine image at the server's applied index, saved with the
//  configuration as of there, then the core compacted (as s_compact in
//  the raft actor).
static void
s_compact (s_sim_t *sim, s_node_t *node)
{
    uint64_t at = rcore_applied (node->core);
    if (at <= node->snap.index)
        return;
    S_CHECK (node->sm_index == at);
    s_sm_image_t image = { S_SNAP_MAGIC, at, node->sm_state };
    const rcore_entry_t *entry = rcore_entry (node->core, at);
    S_CHECK (entry != NULL);
    uint64_t term = entry->term;
    rcore_conf_t conf;
    S_CHECK (rcore_conf_at (node->core, at, &conf) == 0);
    rcore_snapshot_t snap = { .index = at, .term = term, .data = (uint8_t *) &image,
                              .len = sizeof image, .conf = conf };
    //  raft_store_compact: the snapshot, and the log up to it dropped
    size_t drop = (size_t) (at - node->snap.index);
    S_CHECK (drop <= node->log.n);
    s_entries_drop_front (&node->log, drop);
    s_snap_free (&node->snap);
    s_snap_copy (&node->snap, &snap);
    S_CHECK (rcore_compact (node->core, at, &image, sizeof image) == 0);
    const rcore_snapshot_t *taken = rcore_snapshot (node->core);
    S_CHECK (taken->index == at && taken->term == term);
    S_CHECK (s_conf_hash (&taken->conf) == s_conf_hash (&node->snap.conf)
             || (conf.n_voters == 0 && conf.n_learners == 0));
    sim->stats.compactions++;
}

//  --------------------------------------------------------------------------
//  The network

static bool
s_msg_equal (const rcore_msg_t *a, const rcore_msg_t *b)
{
    if (a->type != b->type || a->from != b->from || a->to != b->to || a->term != b->term
        || a->index != b->index || a->log_term != b->log_term || a->commit != b->commit
        || a->reject != b->reject || a->reject_hint != b->reject_hint || a->force != b->force
        || a->n_entries != b->n_entries)
        return false;
    for (size_t i = 0; i < a->n_entries; i++)
        if (s_entry_hash (&a->entries [i]) != s_entry_hash (&b->entries [i]))
            return false;
    const rcore_snapshot_t *x = &a->snapshot, *y = &b->snapshot;
    return x->index == y->index && x->term == y->term && x->len == y->len
        && (!x->len || memcmp (x->data, y->data, x->len) == 0)
        && s_conf_hash (&x->conf) == s_conf_hash (&y->conf);
}

static void
s_flight_add (s_sim_t *sim, const rcore_msg_t *m)
{
    if (sim->n_flights == sim->cap_flights) {
        sim->cap_flights = sim->cap_flights ? sim->cap_flights * 2 : 64;
        sim->flights = realloc (sim->flights, sim->cap_flights * sizeof (s_flight_t));
    }
    s_flight_t *f = &sim->flights [sim->n_flights++];
    //  Some messages cross the wire as the raft actor sends them (rmsg),
    //  and must arrive as they left.
    if (s_below (sim, 8) == 0) {
        json_t *json = rmsg_encode (m);
        S_CHECK (json != NULL);
        S_CHECK (rmsg_decode (json, &f->msg) == 0);
        json_decref (json);
        S_CHECK (s_msg_equal (m, &f->msg));
        sim->stats.rmsg_round_trips++;
    }
    else
        s_msg_copy (&f->msg, m);
    f->at = sim->step + s_below (sim, (uint64_t) sim->max_delay + 1);
}

static void
s_send (s_sim_t *sim, const rcore_msg_t *m)
{
    sim->stats.messages++;
    if (m->type == RCORE_MSG_SNAPSHOT && m->force)
        sim->stats.recoveries++;
    if ((int) s_below (sim, 100) < sim->drop_pct) {
        sim->stats.dropped++;
        return;
    }
    s_flight_add (sim, m);
    if ((int) s_below (sim, 100) < sim->dup_pct)
        s_flight_add (sim, m);
}

//  Delivers every message due by now, in random order (a reordering
//  network); a down receiver or a partition loses it.
static void
s_deliver (s_sim_t *sim)
{
    size_t due = 0;
    for (size_t i = 0; i < sim->n_flights; i++)
        if (sim->flights [i].at <= sim->step) {
            s_flight_t tmp = sim->flights [due];
            sim->flights [due++] = sim->flights [i];
            sim->flights [i] = tmp;
        }
    if (!due)
        return;
    s_flight_t *batch = malloc (due * sizeof (s_flight_t));
    memcpy (batch, sim->flights, due * sizeof (s_flight_t));
    memmove (sim->flights, sim->flights + due, (sim->n_flights - due) * sizeof (s_flight_t));
    sim->n_flights -= due;
    for (size_t k = due; k > 1; k--) {
        size_t j = (size_t) s_below (sim, k);
        s_flight_t tmp = batch [k - 1];
        batch [k - 1] = batch [j];
        batch [j] = tmp;
    }
    for (size_t k = 0; k < due; k++) {
        rcore_msg_t *m = &batch [k].msg;
        s_node_t *from = s_node (sim, m->from), *to = s_node (sim, m->to);
        S_CHECK (from && to);
        if (to->core && from->group == to->group) {
            S_CHECK (rcore_step (to->core, m) == 0);
            s_process (sim, to);
        }
        rmsg_free (m);
    }
    free (batch);
}

//  --------------------------------------------------------------------------
//  Checks after every step

//  The one leader of the highest term among servers that are up, or NULL.
static s_node_t *
s_leader (s_sim_t *sim)
{
    s_node_t *leader = NULL;
    for (size_t i = 0; i < sim->n; i++) {
        s_node_t *node = &sim->nodes [i];
        if (node->core && rcore_role (node->core) == RCORE_LEADER
            && (!leader || rcore_term (node->core) > rcore_term (leader->core)))
            leader = node;
    }
    return leader;
}

//  Leader completeness (§3.6.3): every entry committed in a term before
//  the leader's is in its log (or under its snapshot).
static void
s_check_new_leader (s_sim_t *sim, s_node_t *node)
{
    rcore_t *core = node->core;
    uint64_t term = rcore_term (core);
    uint64_t snap = rcore_snapshot (core)->index;
    for (uint64_t i = snap + 1; i <= sim->max_committed; i++) {
        s_slot_t *slot = s_slot (sim, i);
        if (!slot->committed || slot->commit_term == 0 || slot->commit_term >= term)
            continue;
        const rcore_entry_t *e = rcore_entry (core, i);
        S_CHECK (e != NULL);
        S_CHECK (e->term == slot->term);
        S_CHECK (s_entry_hash (e) == slot->hash);
    }
}

static bool
s_ids_has (const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids [i] == id)
            return true;
    return false;
}

//  The latest conf entry in the log removes this voter and is not known
//  committed: it may still stand (§4.1, Figure 4.6).
static bool
s_removal_pending (rcore_t *core)
{
    uint64_t first = rcore_first_index (core);
    for (uint64_t i = rcore_last_index (core); i >= first && i > 0; i--) {
        const rcore_entry_t *e = rcore_entry (core, i);
        if (e->type != RCORE_ENTRY_CONF)
            continue;
        rcore_conf_t now, before;
        rcore_conf_at (core, i, &now);
        bool removed = !s_ids_has (now.voters, now.n_voters, rcore_id (core))
                    && !s_ids_has (now.learners, now.n_learners, rcore_id (core));
        if (!removed || i <= rcore_commit (core))
            return false;
        S_CHECK (rcore_conf_at (core, i - 1, &before) == 0);
        return s_ids_has (before.voters, before.n_voters, rcore_id (core));
    }
    return false;
}

static void
s_check_step (s_sim_t *sim)
{
    for (size_t i = 0; i < sim->n; i++) {
        s_node_t *node = &sim->nodes [i];
        rcore_t *core = node->core;
        if (!core)
            continue;
        uint64_t term = rcore_term (core);
        int role = rcore_role (core);
        //  Election safety: at most one leader per term (§3.4).
        if (role == RCORE_LEADER) {
            if (term >= sim->cap_leaders) {
                size_t cap = sim->cap_leaders ? sim->cap_leaders : 64;
                while (cap <= term)
                    cap *= 2;
                sim->leaders = realloc (sim->leaders, cap * sizeof (uint64_t));
                memset (sim->leaders + sim->cap_leaders, 0,
                        (cap - sim->cap_leaders) * sizeof (uint64_t));
                sim->cap_leaders = cap;
            }
            if (sim->leaders [term] == 0) {
                sim->leaders [term] = node->id;
                sim->stats.elections++;
                s_trace (sim, "%" PRIu64 " leads term %" PRIu64, node->id, term);
                s_check_new_leader (sim, node);
                if (node->id == sim->transfer_target && term == sim->transfer_term + 1)
                    sim->stats.transfers_done++;
            }
            S_CHECK (sim->leaders [term] == node->id);
            if (!rcore_is_voter (core))
                node->led_removed = true;
        }
        else
        if (node->led_removed) {
            //  §4.2.2: it stepped down once its removal committed.
            node->led_removed = false;
            rcore_conf_t conf;
            rcore_conf (core, &conf);
            if (!rcore_is_voter (core) && !s_ids_has (conf.learners, conf.n_learners, node->id)) {
                sim->stats.removed_leaders++;
                s_trace (sim, "%" PRIu64 " stepped down, removed", node->id);
            }
        }
        //  Only voters stand (a learner, a joining or a removed server never).
        if (role == RCORE_CANDIDATE || role == RCORE_PRE_CANDIDATE)
            S_CHECK (rcore_is_voter (core) || s_removal_pending (core));
        uint64_t commit = rcore_commit (core);
        const rcore_snapshot_t *snap = rcore_snapshot (core);
        S_CHECK (commit <= rcore_last_index (core));
        S_CHECK (rcore_applied (core) <= commit);
        S_CHECK (snap->index <= commit);
        //  Commit never goes back while the server is up.
        S_CHECK (commit >= node->seen_commit);
        for (uint64_t k = node->seen_commit + 1; k <= commit; k++) {
            s_slot_t *slot = s_slot (sim, k);
            //  Committed in this server's term at the latest.
            if (slot->commit_term == 0 || term < slot->commit_term)
                slot->commit_term = term;
            const rcore_entry_t *e = rcore_entry (core, k);
            if (!e)
                continue;       //  under the snapshot: checked when installed
            uint64_t hash = s_entry_hash (e);
            if (slot->committed) {
                S_CHECK (slot->term == e->term);
                S_CHECK (slot->hash == hash);
            }
            else
                s_slot_commit (sim, slot, e->term, hash);
        }
        if (commit > sim->max_committed) {
            sim->stats.commits += commit - sim->max_committed;
            sim->max_committed = commit;
        }
        node->seen_commit = commit;
    }
}

//  Log matching, whole: where two logs agree on an index and term, they
//  agree on every entry before it (§3.5).
static void
s_check_logs (s_sim_t *sim)
{
    for (size_t a = 0; a < sim->n; a++)
        for (size_t b = a + 1; b < sim->n; b++) {
            rcore_t *x = sim->nodes [a].core, *y = sim->nodes [b].core;
            if (!x || !y)
                continue;
            uint64_t lo = rcore_first_index (x) > rcore_first_index (y)
                        ? rcore_first_index (x) : rcore_first_index (y);
            uint64_t hi = rcore_last_index (x) < rcore_last_index (y)
                        ? rcore_last_index (x) : rcore_last_index (y);
            uint64_t agree = 0;
            for (uint64_t i = hi; i >= lo && i > 0; i--)
                if (rcore_entry (x, i)->term == rcore_entry (y, i)->term) {
                    agree = i;
                    break;
                }
            for (uint64_t i = lo; i <= agree; i++)
                S_CHECK (s_entry_hash (rcore_entry (x, i)) == s_entry_hash (rcore_entry (y, i)));
        }
}

//  --------------------------------------------------------------------------
//  Actions

static s_node_t *
s_pick (s_sim_t *sim, bool up)
{
    s_node_t *choice [S_MAX_NODES];
    size_t n = 0;
    for (size_t i = 0; i < sim->n; i++)
        if ((sim->nodes [i].core != NULL) == up)
            choice [n++] = &sim->nodes [i];
    return n ? choice [s_below (sim, n)] : NULL;
}

static void
s_propose (s_sim_t *sim, s_node_t *leader)
{
    char text [48];
    snprintf (text, sizeof text, "op-%" PRIu64 "-%" PRIu64, sim->seed, ++sim->proposal_seq);
    int rc = rcore_propose (leader->core, RCORE_ENTRY_NORMAL, text, strlen (text), NULL, NULL);
    //  Refused only while a leadership transfer runs (§3.10).
    S_CHECK (rc == 0 || (rc == -SH_EUNAVAIL && rcore_transferee (leader->core)));
    if (rc == 0)
        sim->stats.proposals++;
    s_process (sim, leader);
}

//  One membership change at the leader, of whatever kind fits the
//  configuration: add a server that is not a member (again, if it was
//  removed), promote a learner that caught up, remove a learner or a
//  voter (the leader too).
static void
s_change_membership (s_sim_t *sim, s_node_t *leader)
{
    rcore_t *core = leader->core;
    rcore_conf_t conf;
    rcore_conf (core, &conf);
    uint64_t add [S_MAX_NODES], promote [S_MAX_NODES], remove [S_MAX_NODES];
    size_t n_add = 0, n_promote = 0, n_remove = 0;
    for (size_t i = 0; i < sim->n; i++) {
        uint64_t id = sim->nodes [i].id;
        bool voter = false, learner = false;
        for (size_t k = 0; k < conf.n_voters; k++)
            voter |= conf.voters [k] == id;
        for (size_t k = 0; k < conf.n_learners; k++)
            learner |= conf.learners [k] == id;
        if (!voter && !learner)
            add [n_add++] = id;
        if (learner && rcore_caught_up (core, id, S_LAG))
            promote [n_promote++] = id;
        if (learner || (voter && conf.n_voters > 1))
            remove [n_remove++] = id;
    }
    int change;
    uint64_t peer;
    uint64_t kind = s_below (sim, 10);
    if (n_promote && kind < 5) {
        change = RCORE_CONF_PROMOTE;
        peer = promote [s_below (sim, n_promote)];
    }
    else
    if (n_add && (kind < 8 || !n_remove)) {
        change = RCORE_CONF_ADD_LEARNER;
        peer = add [s_below (sim, n_add)];
    }
    else
    if (n_remove && (conf.n_voters + conf.n_learners > 2 || kind == 9)) {
        change = RCORE_CONF_REMOVE;
        peer = remove [s_below (sim, n_remove)];
    }
    else
        return;
    char extra [64];
    snprintf (extra, sizeof extra, "{\"uri\": \"sim://%" PRIu64 "\"}", peer);
    uint64_t index = 0;
    int rc = rcore_propose_conf (core, change, peer, change == RCORE_CONF_ADD_LEARNER
                                                     ? extra : NULL, &index, NULL);
    //  One change at a time, none during a transfer (§4.1, §3.10).
    S_CHECK (rc == 0 || rc == -SH_EUNAVAIL);
    if (rc == 0) {
        sim->stats.conf_changes++;
        s_trace (sim, "%" PRIu64 " proposes %s of %" PRIu64 " at %" PRIu64, leader->id,
                 change == RCORE_CONF_ADD_LEARNER ? "add_learner"
                 : change == RCORE_CONF_PROMOTE ? "promote" : "remove", peer, index);
        rcore_conf (core, &conf);
        S_CHECK (conf.n_voters >= 1);
    }
    s_process (sim, leader);
}

static void
s_transfer (s_sim_t *sim, s_node_t *leader)
{
    rcore_conf_t conf;
    rcore_conf (leader->core, &conf);
    if (conf.n_voters < 2)
        return;
    uint64_t target = conf.voters [s_below (sim, conf.n_voters)];
    int rc = rcore_transfer_leader (leader->core, target);
    if (target == leader->id)
        S_CHECK (rc == -SH_ENOTFOUND);
    else {
        S_CHECK (rc == 0);
        S_CHECK (rcore_transferee (leader->core) == target);
        sim->stats.transfers++;
        sim->transfer_target = target;
        sim->transfer_term = rcore_term (leader->core);
        s_trace (sim, "%" PRIu64 " transfers leadership to %" PRIu64, leader->id, target);
    }
    s_process (sim, leader);
}

//  POST /cluster/recover: the leader compacts, then sends a member its
//  snapshot to reset from.
static void
s_recover (s_sim_t *sim, s_node_t *leader)
{
    s_compact (sim, leader);
    rcore_conf_t conf;
    rcore_conf (leader->core, &conf);
    uint64_t members [2 * S_MAX_NODES];
    size_t n = 0;
    for (size_t k = 0; k < conf.n_voters; k++)
        if (conf.voters [k] != leader->id)
            members [n++] = conf.voters [k];
    for (size_t k = 0; k < conf.n_learners; k++)
        members [n++] = conf.learners [k];
    if (!n)
        return;
    uint64_t peer = members [s_below (sim, n)];
    int rc = rcore_send_snapshot (leader->core, peer);
    S_CHECK (rc == 0 || (rc == -SH_EINVAL && rcore_snapshot (leader->core)->index == 0));
    if (rc == 0)
        s_trace (sim, "%" PRIu64 " sends a recovery snapshot to %" PRIu64, leader->id, peer);
    s_process (sim, leader);
}

static void
s_chaos (s_sim_t *sim)
{
    uint64_t x = s_below (sim, 1000);
    s_node_t *leader = s_leader (sim);
    if (x < 10) {
        for (size_t i = 0; i < sim->n; i++)
            sim->nodes [i].group = (int) s_below (sim, 2);
        s_trace (sim, "partition");
    }
    else
    if (x < 25) {
        for (size_t i = 0; i < sim->n; i++)
            sim->nodes [i].group = 0;
    }
    else
    if (x < 35) {
        s_node_t *node = s_pick (sim, true);
        if (node) {
            sim->stats.crashes++;
            s_crash (sim, node, "between steps");
        }
    }
    else
    if (x < 60) {
        s_node_t *node = s_pick (sim, false);
        if (node)
            s_restart (sim, node);
    }
    else
    if (x < 110) {
        s_node_t *node = s_pick (sim, true);
        if (node)
            s_compact (sim, node);
    }
    else
    if (x < 145 && leader)
        s_change_membership (sim, leader);
    else
    if (x < 152 && leader)
        s_transfer (sim, leader);
    else
    if (x < 160 && leader)
        s_recover (sim, leader);
    leader = s_leader (sim);
    if (leader && s_below (sim, 100) < 30)
        s_propose (sim, leader);
}

//  One step of logical time: the faults and actions, a tick everywhere,
//  the messages due; then the checks.
static void
s_step (s_sim_t *sim)
{
    sim->step++;
    if (sim->chaos)
        s_chaos (sim);
    for (size_t i = 0; i < sim->n; i++) {
        s_node_t *node = &sim->nodes [i];
        if (!node->core)
            continue;
        rcore_tick (node->core);
        s_process (sim, node);
    }
    s_deliver (sim);
    s_check_step (sim);
    if (sim->step % S_FULL_CHECK_EVERY == 0)
        s_check_logs (sim);
}

//  Every server's state, for a failure's report.
static void
s_dump (s_sim_t *sim)
{
    for (size_t i = 0; i < sim->n; i++) {
        s_node_t *node = &sim->nodes [i];
        if (!node->core) {
            fprintf (stderr, "rsim: %" PRIu64 " down\n", node->id);
            continue;
        }
        rcore_t *core = node->core;
        rcore_conf_t conf;
        rcore_conf (core, &conf);
        char voters [128] = "", learners [128] = "";
        for (size_t k = 0; k < conf.n_voters; k++)
            snprintf (voters + strlen (voters), sizeof voters - strlen (voters), " %" PRIu64,
                      conf.voters [k]);
        for (size_t k = 0; k < conf.n_learners; k++)
            snprintf (learners + strlen (learners), sizeof learners - strlen (learners),
                      " %" PRIu64, conf.learners [k]);
        fprintf (stderr, "rsim: %" PRIu64 " %s term=%" PRIu64 " vote=%" PRIu64 " lead=%"
                 PRIu64 " commit=%" PRIu64 " applied=%" PRIu64 " last=%" PRIu64 " (term %"
                 PRIu64 ") snap=%" PRIu64 " voters=[%s] learners=[%s]\n", node->id,
                 rcore_role_name (rcore_role (core)), rcore_term (core), rcore_vote (core),
                 rcore_leader (core), rcore_commit (core), rcore_applied (core),
                 rcore_last_index (core),
                 rcore_last_index (core) > rcore_snapshot (core)->index
                 ? rcore_entry (core, rcore_last_index (core))->term
                 : rcore_snapshot (core)->term,
                 rcore_snapshot (core)->index, voters, learners);
    }
}

//  Whether server x may stay down through a heal: every voter set found in
//  the servers' logs (and snapshots), its own included, that counts x
//  still has a majority up without it. (All servers are up when asked.)
static bool
s_may_stay_down (s_sim_t *sim, uint64_t x)
{
    for (size_t i = 0; i < sim->n; i++) {
        rcore_t *core = sim->nodes [i].core;
        S_CHECK (core != NULL);
        for (uint64_t k = rcore_snapshot (core)->index; k <= rcore_last_index (core); k++) {
            const rcore_entry_t *e = rcore_entry (core, k);
            if (k > rcore_snapshot (core)->index && e->type != RCORE_ENTRY_CONF)
                continue;
            rcore_conf_t conf;
            S_CHECK (rcore_conf_at (core, k, &conf) == 0);
            if (s_ids_has (conf.voters, conf.n_voters, x) && conf.n_voters < 3)
                return false;
        }
    }
    return true;
}

//  Liveness: with the network healed and every server up, a proposal
//  commits on every member (voter or learner) within S_HEAL_STEPS.
static void
s_heal (s_sim_t *sim)
{
    sim->chaos = false;
    int drop = sim->drop_pct, dup = sim->dup_pct, delay = sim->max_delay;
    sim->drop_pct = 0;
    sim->dup_pct = 0;
    sim->max_delay = 1;
    s_trace (sim, "heal");
    for (size_t i = 0; i < sim->n; i++) {
        sim->nodes [i].group = 0;
        if (!sim->nodes [i].core)
            s_restart (sim, &sim->nodes [i]);
    }
    //  Half the time one server stays down, if a majority remains without it.
    s_node_t *down = NULL;
    if (s_below (sim, 2) == 0) {
        s_node_t *x = &sim->nodes [s_below (sim, sim->n)];
        if (s_may_stay_down (sim, x->id)) {
            down = x;
            s_crash (sim, x, "for the heal");
            sim->stats.heals_minority++;
        }
    }
    sim->stats.heals++;
    uint64_t marker = 0, marker_term = 0;
    bool done = false;
    int k;
    for (k = 0; k < S_HEAL_STEPS && !done; k++) {
        s_step (sim);
        if (sim->trace && k % 20 == 0)
            s_dump (sim);
        s_node_t *leader = s_leader (sim);
        if (!leader)
            continue;
        uint64_t term = rcore_term (leader->core);
        if (marker_term != term) {
            uint64_t index = 0;
            char text [48];
            snprintf (text, sizeof text, "marker-%" PRIu64 "-%" PRIu64, sim->seed, sim->step);
            if (rcore_propose (leader->core, RCORE_ENTRY_NORMAL, text, strlen (text), &index,
                               NULL) == 0) {
                marker = index;
                marker_term = term;
                s_process (sim, leader);
            }
            continue;
        }
        s_slot_t *slot = s_slot (sim, marker);
        if (!slot->applied || slot->term != marker_term)
            continue;
        rcore_conf_t conf;
        rcore_conf (leader->core, &conf);
        done = true;
        for (size_t v = 0; v < conf.n_voters + conf.n_learners; v++) {
            uint64_t id = v < conf.n_voters ? conf.voters [v] : conf.learners [v - conf.n_voters];
            s_node_t *node = s_node (sim, id);
            S_CHECK (node && (node->core || node == down));
            if (node->core && node->sm_index < marker)
                done = false;
        }
    }
    if ((size_t) k > sim->stats.heal_steps_max)
        sim->stats.heal_steps_max = (size_t) k;
    s_trace (sim, "healed in %d steps", k);
    if (!done) {
        s_dump (sim);
        s_fail ("liveness: no proposal committed on every member after healing", __LINE__);
    }
    s_check_logs (sim);
    sim->drop_pct = drop;
    sim->dup_pct = dup;
    sim->max_delay = delay;
    sim->chaos = true;
}

//  --------------------------------------------------------------------------
//  Runs

static void
s_run (uint64_t seed, size_t n, bool trace)
{
    s_sim_t *sim = calloc (1, sizeof (s_sim_t));
    s_sim = sim;
    sim->seed = seed;
    sim->rng = seed * 0x2545f4914f6cdd1dULL + n;
    sim->n = n;
    sim->trace = trace;
    sim->bootstrap = s_below (sim, 2) == 0;
    sim->pre_vote = s_below (sim, 4) != 0;
    sim->drop_pct = (int) s_below (sim, 21);
    sim->dup_pct = (int) s_below (sim, 6);
    sim->max_delay = (int) s_below (sim, 4);
    sim->ready_crash_per_mille = (int) s_below (sim, 4);
    sim->max_inflight = s_below (sim, 2) ? 1024 : 4;
    sim->n_init = sim->bootstrap ? 1 : n;
    for (size_t i = 0; i < n; i++) {
        s_node_t *node = &sim->nodes [i];
        node->id = i + 1;
        node->founder = !sim->bootstrap || i == 0;
        if (i < sim->n_init)
            sim->init [i] = node->id;
    }
    s_trace (sim, "seed=%" PRIu64 " n=%zu bootstrap=%d pre_vote=%d drop=%d%% dup=%d%% "
             "delay<=%d ready_crash=%d/1000 inflight=%zu", seed, n, sim->bootstrap,
             sim->pre_vote, sim->drop_pct, sim->dup_pct, sim->max_delay,
             sim->ready_crash_per_mille, sim->max_inflight);
    for (size_t i = 0; i < n; i++)
        s_start (sim, &sim->nodes [i]);
    sim->chaos = true;
    for (int phase = 0; phase < S_PHASES; phase++) {
        for (int k = 0; k < S_CHAOS_STEPS; k++)
            s_step (sim);
        s_heal (sim);
    }

    s_stats_t *st = &sim->stats;
    s_totals.elections += st->elections;
    s_totals.commits += st->commits;
    s_totals.proposals += st->proposals;
    s_totals.compactions += st->compactions;
    s_totals.snapshots_installed += st->snapshots_installed;
    s_totals.recoveries += st->recoveries;
    s_totals.transfers += st->transfers;
    s_totals.conf_changes += st->conf_changes;
    s_totals.crashes += st->crashes;
    s_totals.ready_crashes += st->ready_crashes;
    s_totals.restarts += st->restarts;
    s_totals.messages += st->messages;
    s_totals.dropped += st->dropped;
    s_totals.rmsg_round_trips += st->rmsg_round_trips;
    s_totals.conf_reverted += st->conf_reverted;
    s_totals.removed_leaders += st->removed_leaders;
    s_totals.resets += st->resets;
    s_totals.catch_ups += st->catch_ups;
    s_totals.transfers_done += st->transfers_done;
    s_totals.heals += st->heals;
    s_totals.heals_minority += st->heals_minority;
    if (st->heal_steps_max > s_totals.heal_steps_max)
        s_totals.heal_steps_max = st->heal_steps_max;

    for (size_t i = 0; i < n; i++) {
        s_node_t *node = &sim->nodes [i];
        rcore_destroy (&node->core);
        s_entries_free (&node->log);
        s_snap_free (&node->snap);
    }
    for (size_t i = 0; i < sim->n_flights; i++)
        rmsg_free (&sim->flights [i].msg);
    free (sim->flights);
    for (size_t i = 0; i < sim->cap_slots; i++)
        free (sim->slots [i].seen);
    free (sim->slots);
    free (sim->leaders);
    free (sim);
    s_sim = NULL;
}

static uint64_t
s_env_u64 (const char *name, uint64_t otherwise)
{
    const char *text = getenv (name);
    if (!text || !*text)
        return otherwise;
    char *end = NULL;
    unsigned long long value = strtoull (text, &end, 10);
    return end && *end == '\0' ? (uint64_t) value : otherwise;
}

//  Seeds of size n: odd ones run 3 servers, even ones 5.
static void
s_runs (size_t n)
{
    memset (&s_totals, 0, sizeof s_totals);
    uint64_t one = s_env_u64 ("SHOAL_RSIM_SEED", 0);
    bool trace = s_env_u64 ("SHOAL_RSIM_TRACE", 0) != 0;
    size_t runs = 0;
    if (one) {
        if ((one % 2 == 1) == (n == 3)) {
            s_run (one, n, trace);
            runs = 1;
        }
    }
    else {
        uint64_t count = s_env_u64 ("SHOAL_RSIM_RUNS", S_DEFAULT_RUNS);
        for (uint64_t r = 0; r < count; r++) {
            s_run (2 * r + (n == 3 ? 1 : 2), n, trace);
            runs++;
        }
    }
    const s_stats_t *t = &s_totals;
    fprintf (stderr, "rsim: %zu runs of %zu servers: %zu elections, %zu proposals, "
             "%zu entries committed, %zu conf changes (%zu conf entries overwritten, %zu "
             "leaders removed), %zu transfers (%zu took over), %zu compactions, %zu "
             "snapshots installed (%zu catch-ups, %zu recovery sends, %zu resets), %zu "
             "crashes + %zu mid-ready, %zu restarts, %zu messages (%zu dropped, %zu through "
             "rmsg), %zu heals (%zu with a server down, at most %zu steps)\n",
             runs, n, t->elections, t->proposals, t->commits, t->conf_changes,
             t->conf_reverted, t->removed_leaders, t->transfers, t->transfers_done,
             t->compactions, t->snapshots_installed, t->catch_ups, t->recoveries, t->resets,
             t->crashes, t->ready_crashes, t->restarts, t->messages, t->dropped,
             t->rmsg_round_trips, t->heals, t->heals_minority, t->heal_steps_max);
    if (runs) {
        //  The runs did what they are for (a suite that drove nothing would
        //  pass every check).
        ck_assert_uint_gt (s_totals.elections, runs);
        ck_assert_uint_gt (s_totals.commits, runs);
        if (runs >= 100) {
            ck_assert_uint_gt (s_totals.conf_changes, runs);
            ck_assert_uint_gt (s_totals.transfers, 0);
            ck_assert_uint_gt (s_totals.recoveries, 0);
            ck_assert_uint_gt (s_totals.snapshots_installed, 0);
            ck_assert_uint_gt (s_totals.ready_crashes, 0);
            ck_assert_uint_gt (s_totals.conf_reverted, 0);
            ck_assert_uint_gt (s_totals.removed_leaders, 0);
            ck_assert_uint_gt (s_totals.resets, 0);
            ck_assert_uint_gt (s_totals.catch_ups, 0);
            ck_assert_uint_gt (s_totals.transfers_done, 0);
            ck_assert_uint_gt (s_totals.heals_minority, 0);
        }
    }
}

START_TEST (test_three_server_runs_keep_safety_and_liveness)
{
    s_runs (3);
}
END_TEST

START_TEST (test_five_server_runs_keep_safety_and_liveness)
{
    s_runs (5);
}
END_TEST

Suite *
rsim_suite (void)
{
    Suite *s = suite_create ("rsim");
    TCase *tc = tcase_create ("sim");
    //  Generous for the default runs (meson's own timeout is the limit
    //  there); unbounded when more runs are asked for.
    bool custom = getenv ("SHOAL_RSIM_RUNS") || getenv ("SHOAL_RSIM_SEED");
    tcase_set_timeout (tc, custom ? 1e6 : 115);
    tcase_add_test (tc, test_three_server_runs_keep_safety_and_liveness);
    tcase_add_test (tc, test_five_server_runs_keep_safety_and_liveness);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (rsim_suite)
