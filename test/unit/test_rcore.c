/*  test_rcore: the pure Raft core, single voter and small clusters driven
    through an in-test message pump (seeded; no clock, no sockets).
*/
#include "actors/raft/rcore.h"
#include "common/err.h"
#include "test/unit/check_main.h"
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define MAX_NODES 5

//  Check's ck_assert_* record every passing check (a pipe write when
//  forking); the pump's invariants are checked millions of times, so they
//  only call into Check when they fail.
#define S_CHECK(expr) do { if (!(expr)) ck_abort_msg ("invariant failed: %s", #expr); } while (0)

//  --------------------------------------------------------------------------
//  A tiny cluster: each node's "disk" (hard state + log), what it applied,
//  and a queue of messages in flight.

typedef struct {
    rcore_entry_t *items;
    size_t n, cap;
} s_entries_t;

typedef struct {
    rcore_t *core;
    rcore_hard_state_t hs;          //  persisted hard state
    rcore_snapshot_t snap;          //  persisted snapshot
    s_entries_t log;                //  persisted log after snap
    s_entries_t applied;            //  entries applied, in order
    uint64_t applied_snapshot;      //  index of the last snapshot installed
    uint64_t last_applied;          //  index of the last entry applied
    bool down;                      //  crashed: neither sends nor receives
    int group;                      //  partition group
} s_node_t;

typedef struct {
    s_node_t nodes [MAX_NODES];
    size_t n;
    uint64_t ids [MAX_NODES];
    rcore_msg_t *queue;             //  messages in flight, FIFO
    size_t n_queue, cap_queue;
    uint64_t rng;                   //  drives drops and reorders
    int drop_percent;
    uint64_t leader_of_term [4096]; //  election safety: who led each term
    size_t rejects;                 //  append rejections seen
    size_t snapshots_sent;          //  snapshot messages seen
} s_net_t;

static uint64_t
s_rand (s_net_t *net)
{
    uint64_t z = (net->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

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

static void
s_entries_free (s_entries_t *list)
{
    s_entries_truncate (list, 0);
    free (list->items);
    memset (list, 0, sizeof *list);
}

static uint64_t *
s_ids_dup (const uint64_t *ids, size_t n)
{
    if (!n)
        return NULL;
    uint64_t *copy = malloc (n * sizeof (uint64_t));
    memcpy (copy, ids, n * sizeof (uint64_t));
    return copy;
}

//  A deep copy of a snapshot: its bytes and its configuration.
static void
s_snap_copy (rcore_snapshot_t *dst, const rcore_snapshot_t *src)
{
    *dst = *src;
    dst->data = NULL;
    if (src->len) {
        dst->data = malloc (src->len);
        memcpy (dst->data, src->data, src->len);
    }
    dst->conf.voters = s_ids_dup (src->conf.voters, src->conf.n_voters);
    dst->conf.learners = s_ids_dup (src->conf.learners, src->conf.n_learners);
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
            if (src->entries [i].len) {
                dst->entries [i].data = malloc (src->entries [i].len);
                memcpy (dst->entries [i].data, src->entries [i].data, src->entries [i].len);
            }
        }
    }
    s_snap_copy (&dst->snapshot, &src->snapshot);
}

static void
s_msg_free (rcore_msg_t *m)
{
    for (size_t i = 0; i < m->n_entries; i++)
        free (m->entries [i].data);
    free (m->entries);
    s_snap_free (&m->snapshot);
}

static rcore_t *
s_core_new (s_net_t *net, size_t i, uint64_t seed, bool pre_vote)
{
    rcore_config_t config;
    rcore_config_defaults (&config);
    config.id = net->ids [i];
    config.voters = net->ids;
    config.n_voters = net->n;
    config.seed = seed;
    config.pre_vote = pre_vote;
    config.max_msg_entries = 4;         //  small, to exercise batching
    s_node_t *node = &net->nodes [i];
    rcore_storage_t storage = {
        .hard_state = node->hs,
        .snapshot = node->snap,
        .entries = node->log.items,
        .n_entries = node->log.n
    };
    //  Like the actor: the state machine restarts from the snapshot.
    config.applied = node->snap.index;
    return rcore_new (&config, &storage);
}

static s_net_t *
s_net_new (size_t n, uint64_t seed, bool pre_vote)
{
    s_net_t *net = calloc (1, sizeof (s_net_t));
    net->n = n;
    net->rng = seed;
    for (size_t i = 0; i < n; i++)
        net->ids [i] = i + 1;
    for (size_t i = 0; i < n; i++) {
        net->nodes [i].core = s_core_new (net, i, seed * 31 + i, pre_vote);
        ck_assert_ptr_nonnull (net->nodes [i].core);
    }
    return net;
}

static void
s_net_destroy (s_net_t **net_p)
{
    s_net_t *net = *net_p;
    for (size_t i = 0; i < net->n; i++) {
        rcore_destroy (&net->nodes [i].core);
        s_entries_free (&net->nodes [i].log);
        s_entries_free (&net->nodes [i].applied);
        s_snap_free (&net->nodes [i].snap);
    }
    for (size_t i = 0; i < net->n_queue; i++)
        s_msg_free (&net->queue [i]);
    free (net->queue);
    free (net);
    *net_p = NULL;
}

static void
s_enqueue (s_net_t *net, const rcore_msg_t *m)
{
    if (net->n_queue == net->cap_queue) {
        net->cap_queue = net->cap_queue ? net->cap_queue * 2 : 64;
        net->queue = realloc (net->queue, net->cap_queue * sizeof (rcore_msg_t));
    }
    s_msg_copy (&net->queue [net->n_queue++], m);
}

//  Checks election safety: at most one leader per term (§3.4, Figure 3.2).
static void
s_check_leaders (s_net_t *net)
{
    for (size_t i = 0; i < net->n; i++) {
        rcore_t *core = net->nodes [i].core;
        if (!core || rcore_role (core) != RCORE_LEADER)
            continue;
        uint64_t term = rcore_term (core);
        S_CHECK ((term) < (4096));
        if (net->leader_of_term [term] == 0)
            net->leader_of_term [term] = rcore_id (core);
        S_CHECK ((net->leader_of_term [term]) == (rcore_id (core)));
    }
}

//  State machine safety: what any two nodes applied agrees index by index.
static void
s_check_applied (s_net_t *net)
{
    for (size_t a = 0; a < net->n; a++)
        for (size_t b = a + 1; b < net->n; b++) {
            s_entries_t *x = &net->nodes [a].applied, *y = &net->nodes [b].applied;
            //  Each list holds consecutive indexes, so entry i of x meets
            //  entry i + offset of y.
            if (!x->n || !y->n)
                continue;
            for (size_t i = 0; i < x->n; i++) {
                uint64_t index = x->items [i].index;
                if (index < y->items [0].index || index > y->items [y->n - 1].index)
                    continue;
                size_t j = (size_t) (index - y->items [0].index);
                S_CHECK ((y->items [j].index) == (index));
                S_CHECK ((x->items [i].term) == (y->items [j].term));
                S_CHECK ((x->items [i].len) == (y->items [j].len));
                if (x->items [i].len)
                    S_CHECK (memcmp (x->items [i].data, y->items [j].data,
                                       x->items [i].len) == 0);
            }
        }
}

//  The ready loop of one node, in the actor's order.
static void
s_process (s_net_t *net, size_t i)
{
    s_node_t *node = &net->nodes [i];
    if (!node->core || node->down)
        return;
    rcore_ready_t rd;
    while (rcore_ready (node->core, &rd)) {
        if (rd.snapshot) {
            //  As raft_store_install_snapshot: the stored log after the
            //  snapshot stays if it holds the snapshot's last entry.
            uint64_t at = rd.snapshot->index;
            size_t keep_from = 0;
            bool keep = at == node->snap.index && rd.snapshot->term == node->snap.term;
            if (at > node->snap.index && at <= node->snap.index + node->log.n
                && node->log.items [at - node->snap.index - 1].term == rd.snapshot->term) {
                keep = true;
                keep_from = (size_t) (at - node->snap.index);
            }
            if (keep) {
                for (size_t k = 0; k < keep_from; k++)
                    free (node->log.items [k].data);
                memmove (node->log.items, node->log.items + keep_from,
                         (node->log.n - keep_from) * sizeof (rcore_entry_t));
                node->log.n -= keep_from;
            }
            else
                s_entries_truncate (&node->log, 0);
            s_snap_free (&node->snap);
            s_snap_copy (&node->snap, rd.snapshot);
        }
        if (rd.n_entries) {
            //  Replace the stored suffix from the first new index on.
            uint64_t first = rd.entries [0].index;
            S_CHECK ((first) > (node->snap.index));
            size_t keep = (size_t) (first - node->snap.index - 1);
            S_CHECK ((keep) <= (node->log.n));
            s_entries_truncate (&node->log, keep);
            for (size_t k = 0; k < rd.n_entries; k++)
                s_entries_push (&node->log, &rd.entries [k]);
        }
        node->hs = rd.hard_state;
        for (size_t k = 0; k < rd.n_messages; k++) {
            if (rd.messages [k].type == RCORE_MSG_APPEND_RESP && rd.messages [k].reject)
                net->rejects++;
            if (rd.messages [k].type == RCORE_MSG_SNAPSHOT)
                net->snapshots_sent++;
            s_enqueue (net, &rd.messages [k]);
        }
        if (rd.snapshot) {
            //  "Install": the applied history is the snapshot's.
            node->applied_snapshot = rd.snapshot->index;
            node->last_applied = rd.snapshot->index;
            s_entries_truncate (&node->applied, 0);
        }
        for (size_t k = 0; k < rd.n_committed; k++) {
            const rcore_entry_t *e = &rd.committed [k];
            //  Applied in order with no gap.
            S_CHECK ((e->index) == (node->last_applied + 1));
            node->last_applied = e->index;
            //  Committed entries are durable before they are applied.
            S_CHECK ((e->index) <= (node->snap.index + node->log.n));
            s_entries_push (&node->applied, e);
        }
        rcore_advance (node->core, &rd);
    }
    s_check_leaders (net);
}

//  Snapshots a node at its applied index and drops its log up to there,
//  in memory and on its "disk", as the actor does with raft_store_compact.
static void
s_compact (s_net_t *net, size_t i)
{
    s_node_t *node = &net->nodes [i];
    uint64_t at = rcore_applied (node->core);
    if (at <= node->snap.index)
        return;
    char data [32];
    snprintf (data, sizeof data, "state@%" PRIu64, at);
    uint64_t term = rcore_entry (node->core, at)->term;
    ck_assert_int_eq (rcore_compact (node->core, at, data, strlen (data)), 0);
    size_t drop = (size_t) (at - node->snap.index);
    for (size_t k = 0; k < drop; k++)
        free (node->log.items [k].data);
    memmove (node->log.items, node->log.items + drop,
             (node->log.n - drop) * sizeof (rcore_entry_t));
    node->log.n -= drop;
    s_snap_free (&node->snap);
    rcore_snapshot_t taken = *rcore_snapshot (node->core);
    ck_assert_uint_eq (taken.index, at);
    ck_assert_uint_eq (taken.term, term);
    s_snap_copy (&node->snap, &taken);
}

//  A crashed node comes back from its persisted state only.
static void
s_restart (s_net_t *net, size_t i, uint64_t seed)
{
    s_node_t *node = &net->nodes [i];
    rcore_destroy (&node->core);
    s_entries_truncate (&node->applied, 0);
    node->last_applied = node->snap.index;
    node->applied_snapshot = node->snap.index;
    node->core = s_core_new (net, i, seed, true);
    ck_assert_ptr_nonnull (node->core);
    node->down = false;
    s_process (net, i);
}

static void
s_process_all (s_net_t *net)
{
    for (size_t i = 0; i < net->n; i++)
        s_process (net, i);
}

static size_t
s_index_of (s_net_t *net, uint64_t id)
{
    for (size_t i = 0; i < net->n; i++)
        if (net->ids [i] == id)
            return i;
    return net->n;
}

static bool
s_connected (s_net_t *net, size_t a, size_t b)
{
    return !net->nodes [a].down && !net->nodes [b].down
        && net->nodes [a].group == net->nodes [b].group;
}

//  Delivers what is queued now (not what the deliveries produce).
static void
s_deliver (s_net_t *net)
{
    size_t n = net->n_queue;
    rcore_msg_t *batch = net->queue;
    net->queue = NULL;
    net->n_queue = net->cap_queue = 0;
    //  Reorder a little when drops are on (a lossy network reorders too).
    if (net->drop_percent)
        for (size_t k = n; k > 1; k--) {
            size_t j = (size_t) (s_rand (net) % k);
            rcore_msg_t tmp = batch [k - 1];
            batch [k - 1] = batch [j];
            batch [j] = tmp;
        }
    for (size_t k = 0; k < n; k++) {
        rcore_msg_t *m = &batch [k];
        size_t from = s_index_of (net, m->from), to = s_index_of (net, m->to);
        bool lost = net->drop_percent && (int) (s_rand (net) % 100) < net->drop_percent;
        if (to < net->n && from < net->n && s_connected (net, from, to) && !lost) {
            S_CHECK (rcore_step (net->nodes [to].core, m) == 0);
            s_process (net, to);
            //  a lossy network duplicates too
            if (net->drop_percent && s_rand (net) % 100 < 5) {
                S_CHECK (rcore_step (net->nodes [to].core, m) == 0);
                s_process (net, to);
            }
        }
        s_msg_free (m);
    }
    free (batch);
}

static void
s_tick_all (s_net_t *net)
{
    for (size_t i = 0; i < net->n; i++)
        if (!net->nodes [i].down) {
            rcore_tick (net->nodes [i].core);
            s_process (net, i);
        }
}

//  One round: everyone ticks, then messages flow until the queue is empty.
static void
s_round (s_net_t *net)
{
    s_tick_all (net);
    for (int hops = 0; hops < 50 && net->n_queue; hops++)
        s_deliver (net);
    s_check_applied (net);
}

//  The single leader of the highest term among live nodes, or -1.
static int
s_leader (s_net_t *net)
{
    int leader = -1;
    uint64_t best = 0;
    for (size_t i = 0; i < net->n; i++) {
        rcore_t *core = net->nodes [i].core;
        if (net->nodes [i].down || rcore_role (core) != RCORE_LEADER)
            continue;
        if (rcore_term (core) > best) {
            best = rcore_term (core);
            leader = (int) i;
        }
    }
    return leader;
}

static int
s_run_until_leader (s_net_t *net, int max_rounds)
{
    for (int r = 0; r < max_rounds; r++) {
        s_round (net);
        int leader = s_leader (net);
        //  A leader counts once every live node in its group follows it.
        if (leader >= 0) {
            bool all = true;
            for (size_t i = 0; i < net->n; i++)
                if (s_connected (net, i, (size_t) leader)
                    && rcore_leader (net->nodes [i].core) != net->ids [leader])
                    all = false;
            if (all)
                return leader;
        }
    }
    return -1;
}

static void
s_propose (s_net_t *net, int leader, const char *text, uint64_t *index)
{
    int rc = rcore_propose (net->nodes [leader].core, RCORE_ENTRY_NORMAL, text, strlen (text),
                            index, NULL);
    ck_assert_int_eq (rc, 0);
    s_process (net, (size_t) leader);
}

static bool
s_applied_has (s_node_t *node, const char *text)
{
    for (size_t i = 0; i < node->applied.n; i++)
        if (node->applied.items [i].len == strlen (text)
            && memcmp (node->applied.items [i].data, text, strlen (text)) == 0)
            return true;
    return false;
}

//  Log matching (§3.5): same index and term means the same entries up to it.
static void
s_check_logs_equal (s_net_t *net, size_t a, size_t b)
{
    rcore_t *x = net->nodes [a].core, *y = net->nodes [b].core;
    ck_assert_uint_eq (rcore_last_index (x), rcore_last_index (y));
    uint64_t from = rcore_first_index (x) > rcore_first_index (y) ? rcore_first_index (x)
                                                                  : rcore_first_index (y);
    for (uint64_t i = from; i <= rcore_last_index (x); i++) {
        const rcore_entry_t *ex = rcore_entry (x, i), *ey = rcore_entry (y, i);
        ck_assert_ptr_nonnull (ex);
        ck_assert_ptr_nonnull (ey);
        ck_assert_uint_eq (ex->term, ey->term);
        ck_assert_uint_eq (ex->len, ey->len);
        if (ex->len)
            ck_assert (memcmp (ex->data, ey->data, ex->len) == 0);
    }
}

//  --------------------------------------------------------------------------
//  Single voter

static rcore_t *
s_single (uint64_t id, const rcore_storage_t *storage)
{
    static uint64_t voters [1];
    voters [0] = id;
    rcore_config_t config;
    rcore_config_defaults (&config);
    config.id = id;
    config.voters = voters;
    config.n_voters = 1;
    config.seed = 42;
    return rcore_new (&config, storage);
}

START_TEST (test_single_voter_becomes_leader_on_first_tick)
{
    rcore_t *core = s_single (7, NULL);
    ck_assert_ptr_nonnull (core);
    ck_assert_int_eq (rcore_role (core), RCORE_FOLLOWER);
    ck_assert_int_eq (rcore_propose (core, RCORE_ENTRY_NORMAL, "x", 1, NULL, NULL),
                      -SH_ENOLEADER);
    rcore_tick (core);
    ck_assert_int_eq (rcore_role (core), RCORE_LEADER);
    ck_assert_uint_eq (rcore_leader (core), 7);
    ck_assert_uint_eq (rcore_term (core), 1);

    //  First ready: the vote and the no-op to persist, nothing committed yet.
    rcore_ready_t rd;
    ck_assert (rcore_ready (core, &rd));
    ck_assert (rd.hard_state_changed);
    ck_assert_uint_eq (rd.hard_state.term, 1);
    ck_assert_uint_eq (rd.hard_state.vote, 7);
    ck_assert_uint_eq (rd.n_entries, 1);
    ck_assert_uint_eq (rd.entries [0].index, 1);
    ck_assert_int_eq (rd.entries [0].type, RCORE_ENTRY_NOOP);
    ck_assert_uint_eq (rd.n_committed, 0);
    ck_assert_uint_eq (rd.n_messages, 0);
    ck_assert_uint_eq (rcore_commit (core), 0);
    rcore_advance (core, &rd);

    //  Persisted: now it is committed and handed back for apply.
    ck_assert_uint_eq (rcore_commit (core), 1);
    ck_assert (rcore_ready (core, &rd));
    ck_assert_uint_eq (rd.n_entries, 0);
    ck_assert_uint_eq (rd.n_committed, 1);
    ck_assert_uint_eq (rd.hard_state.commit, 1);
    rcore_advance (core, &rd);
    ck_assert_uint_eq (rcore_applied (core), 1);
    ck_assert (!rcore_ready (core, &rd));
    rcore_destroy (&core);
    ck_assert_ptr_null (core);
}
END_TEST

START_TEST (test_single_voter_commits_proposal_only_after_advance)
{
    rcore_t *core = s_single (1, NULL);
    rcore_tick (core);
    rcore_ready_t rd;
    while (rcore_ready (core, &rd))
        rcore_advance (core, &rd);

    uint64_t index = 0, term = 0;
    ck_assert_int_eq (rcore_propose (core, RCORE_ENTRY_NORMAL, "hello", 5, &index, &term), 0);
    ck_assert_uint_eq (index, 2);
    ck_assert_uint_eq (term, 1);
    ck_assert (rcore_ready (core, &rd));
    ck_assert_uint_eq (rd.n_entries, 1);
    ck_assert_uint_eq (rd.entries [0].len, 5);
    ck_assert (memcmp (rd.entries [0].data, "hello", 5) == 0);
    ck_assert_uint_eq (rd.n_committed, 0);
    //  Not durable yet: not committed, however many ticks pass.
    ck_assert_uint_eq (rcore_commit (core), 1);
    rcore_advance (core, &rd);
    ck_assert_uint_eq (rcore_commit (core), 2);
    ck_assert (rcore_ready (core, &rd));
    ck_assert_uint_eq (rd.n_committed, 1);
    ck_assert_uint_eq (rd.committed [0].index, 2);
    ck_assert (memcmp (rd.committed [0].data, "hello", 5) == 0);
    rcore_advance (core, &rd);

    //  Two proposals in one turn go out and commit together.
    ck_assert_int_eq (rcore_propose (core, RCORE_ENTRY_NORMAL, "a", 1, &index, NULL), 0);
    ck_assert_int_eq (rcore_propose (core, RCORE_ENTRY_NORMAL, "b", 1, &index, NULL), 0);
    ck_assert_uint_eq (index, 4);
    ck_assert (rcore_ready (core, &rd));
    ck_assert_uint_eq (rd.n_entries, 2);
    rcore_advance (core, &rd);
    ck_assert (rcore_ready (core, &rd));
    ck_assert_uint_eq (rd.n_committed, 2);
    rcore_advance (core, &rd);
    ck_assert_uint_eq (rcore_applied (core), 4);

    //  Ticks as a lone leader change nothing that needs I/O.
    for (int i = 0; i < 50; i++)
        rcore_tick (core);
    ck_assert_int_eq (rcore_role (core), RCORE_LEADER);
    ck_assert (!rcore_ready (core, &rd));
    rcore_destroy (&core);
}
END_TEST

START_TEST (test_single_voter_restarts_from_storage_and_reapplies)
{
    rcore_entry_t log [3] = {
        { 1, 1, RCORE_ENTRY_NOOP, NULL, 0 },
        { 2, 1, RCORE_ENTRY_NORMAL, (uint8_t *) "one", 3 },
        { 3, 1, RCORE_ENTRY_NORMAL, (uint8_t *) "two", 3 },
    };
    rcore_storage_t storage = { { 1, 1, 2 }, { .index = 0 }, log, 3 };
    rcore_t *core = s_single (1, &storage);
    ck_assert_ptr_nonnull (core);
    ck_assert_uint_eq (rcore_term (core), 1);
    ck_assert_uint_eq (rcore_last_index (core), 3);

    //  The committed prefix is handed back for apply before any election.
    rcore_ready_t rd;
    ck_assert (rcore_ready (core, &rd));
    ck_assert_uint_eq (rd.n_committed, 2);
    ck_assert_uint_eq (rd.n_entries, 0);
    rcore_advance (core, &rd);

    rcore_tick (core);
    ck_assert_int_eq (rcore_role (core), RCORE_LEADER);
    ck_assert_uint_eq (rcore_term (core), 2);
    uint64_t applied_last = 0;
    while (rcore_ready (core, &rd)) {
        if (rd.n_committed)
            applied_last = rd.committed [rd.n_committed - 1].index;
        rcore_advance (core, &rd);
    }
    //  Entry 3 (old term) commits along with the new term's no-op (§3.6.2).
    ck_assert_uint_eq (applied_last, 4);
    ck_assert_uint_eq (rcore_entry (core, 4)->type, RCORE_ENTRY_NOOP);
    rcore_destroy (&core);
}
END_TEST

START_TEST (test_new_refuses_invalid_storage_and_config)
{
    rcore_entry_t gap [2] = {
        { 1, 1, RCORE_ENTRY_NORMAL, NULL, 0 },
        { 3, 1, RCORE_ENTRY_NORMAL, NULL, 0 },
    };
    rcore_storage_t storage = { { 1, 0, 0 }, { .index = 0 }, gap, 2 };
    ck_assert_ptr_null (s_single (1, &storage));

    rcore_entry_t backwards [2] = {
        { 1, 2, RCORE_ENTRY_NORMAL, NULL, 0 },
        { 2, 1, RCORE_ENTRY_NORMAL, NULL, 0 },
    };
    rcore_storage_t s2 = { { 2, 0, 0 }, { .index = 0 }, backwards, 2 };
    ck_assert_ptr_null (s_single (1, &s2));

    rcore_entry_t one [1] = { { 1, 5, RCORE_ENTRY_NORMAL, NULL, 0 } };
    rcore_storage_t s3 = { { 2, 0, 0 }, { .index = 0 }, one, 1 };       //  term < entry's
    ck_assert_ptr_null (s_single (1, &s3));
    rcore_storage_t s4 = { { 5, 0, 9 }, { .index = 0 }, one, 1 };       //  commit past log
    ck_assert_ptr_null (s_single (1, &s4));

    rcore_config_t config;
    rcore_config_defaults (&config);
    uint64_t dup [2] = { 1, 1 };
    config.id = 1;
    config.voters = dup;
    config.n_voters = 2;
    ck_assert_ptr_null (rcore_new (&config, NULL));
    config.voters = NULL;
    ck_assert_ptr_null (rcore_new (&config, NULL));
}
END_TEST

START_TEST (test_step_refuses_malformed_messages)
{
    s_net_t *net = s_net_new (3, 5, true);
    rcore_t *core = net->nodes [0].core;
    rcore_msg_t m = { .type = RCORE_MSG_HEARTBEAT, .from = 1, .to = 1, .term = 1 };
    ck_assert_int_eq (rcore_step (core, &m), -SH_EINVAL);        //  from itself
    m.from = 0;
    ck_assert_int_eq (rcore_step (core, &m), -SH_EINVAL);        //  no sender
    m.from = 2;
    m.to = 3;
    ck_assert_int_eq (rcore_step (core, &m), -SH_EINVAL);        //  not for us
    m.to = 1;
    m.type = 77;
    ck_assert_int_eq (rcore_step (core, &m), -SH_EINVAL);        //  bad type
    m.type = RCORE_MSG_HEARTBEAT;
    m.term = 0;
    ck_assert_int_eq (rcore_step (core, &m), -SH_EINVAL);        //  no term

    rcore_entry_t entries [2] = {
        { 1, 1, RCORE_ENTRY_NORMAL, (uint8_t *) "a", 1 },
        { 3, 1, RCORE_ENTRY_NORMAL, (uint8_t *) "b", 1 },
    };
    rcore_msg_t app = { .type = RCORE_MSG_APPEND, .from = 2, .to = 1, .term = 1,
                        .index = 0, .log_term = 0, .entries = entries, .n_entries = 2 };
    ck_assert_int_eq (rcore_step (core, &app), -SH_EINVAL);      //  gap
    entries [1].index = 2;
    entries [1].term = 2;
    ck_assert_int_eq (rcore_step (core, &app), -SH_EINVAL);      //  entry past msg term
    entries [1].term = 1;
    entries [1].data = NULL;
    ck_assert_int_eq (rcore_step (core, &app), -SH_EINVAL);      //  len without data
    entries [1].data = (uint8_t *) "b";
    ck_assert_int_eq (rcore_step (core, &app), 0);               //  now well formed
    ck_assert_uint_eq (rcore_last_index (core), 2);
    ck_assert_uint_eq (rcore_leader (core), 2);
    s_net_destroy (&net);
}
END_TEST

//  --------------------------------------------------------------------------
//  Votes

START_TEST (test_vote_refused_to_candidate_with_older_log)
{
    uint64_t voters [3] = { 1, 2, 3 };
    rcore_config_t config;
    rcore_config_defaults (&config);
    config.id = 1;
    config.voters = voters;
    config.n_voters = 3;
    rcore_entry_t log [2] = {
        { 1, 1, RCORE_ENTRY_NOOP, NULL, 0 },
        { 2, 2, RCORE_ENTRY_NORMAL, (uint8_t *) "x", 1 },
    };
    rcore_storage_t storage = { { 2, 0, 1 }, { .index = 0 }, log, 2 };
    rcore_t *core = rcore_new (&config, &storage);
    ck_assert_ptr_nonnull (core);
    rcore_ready_t rd;

    //  §3.6.1: last term 1 < our last term 2: refused even at a higher term.
    rcore_msg_t vote = { .type = RCORE_MSG_VOTE, .from = 2, .to = 1, .term = 3,
                         .index = 5, .log_term = 1 };
    ck_assert_int_eq (rcore_step (core, &vote), 0);
    ck_assert_uint_eq (rcore_term (core), 3);
    ck_assert (rcore_ready (core, &rd));
    ck_assert_uint_eq (rd.n_messages, 1);
    ck_assert_int_eq (rd.messages [0].type, RCORE_MSG_VOTE_RESP);
    ck_assert (rd.messages [0].reject);
    rcore_advance (core, &rd);

    //  Same last term, shorter log: refused.
    vote.term = 4;
    vote.index = 1;
    vote.log_term = 2;
    ck_assert_int_eq (rcore_step (core, &vote), 0);
    ck_assert (rcore_ready (core, &rd));
    ck_assert (rd.messages [0].reject);
    rcore_advance (core, &rd);

    //  Same last term, as long: granted, and the vote is persisted first.
    vote.index = 2;
    ck_assert_int_eq (rcore_step (core, &vote), 0);
    ck_assert (rcore_ready (core, &rd));
    ck_assert (!rd.messages [0].reject);
    ck_assert_uint_eq (rd.messages [0].term, 4);
    ck_assert (rd.hard_state_changed);
    ck_assert_uint_eq (rd.hard_state.vote, 2);
    rcore_advance (core, &rd);

    //  §3.4: one vote per term: node 3 asking in the same term is refused.
    vote.from = 3;
    vote.index = 9;
    ck_assert_int_eq (rcore_step (core, &vote), 0);
    ck_assert (rcore_ready (core, &rd));
    ck_assert (rd.messages [0].reject);
    rcore_advance (core, &rd);
    ck_assert_uint_eq (rcore_vote (core), 2);
    rcore_destroy (&core);
}
END_TEST

START_TEST (test_prevote_does_not_change_terms)
{
    s_net_t *net = s_net_new (3, 11, true);
    rcore_t *core = net->nodes [0].core;
    rcore_campaign (core);
    ck_assert_int_eq (rcore_role (core), RCORE_PRE_CANDIDATE);
    ck_assert_uint_eq (rcore_term (core), 0);
    rcore_ready_t rd;
    ck_assert (rcore_ready (core, &rd));
    ck_assert_uint_eq (rd.n_messages, 2);
    ck_assert_int_eq (rd.messages [0].type, RCORE_MSG_PREVOTE);
    ck_assert_uint_eq (rd.messages [0].term, 1);
    rcore_msg_t copy;
    s_msg_copy (&copy, &rd.messages [0]);
    rcore_advance (core, &rd);

    //  The voter grants without adopting the term or recording a vote.
    rcore_t *voter = net->nodes [copy.to - 1].core;
    ck_assert_int_eq (rcore_step (voter, &copy), 0);
    ck_assert_uint_eq (rcore_term (voter), 0);
    ck_assert_uint_eq (rcore_vote (voter), 0);
    ck_assert (rcore_ready (voter, &rd));
    ck_assert_int_eq (rd.messages [0].type, RCORE_MSG_PREVOTE_RESP);
    ck_assert (!rd.messages [0].reject);
    rcore_msg_t grant;
    s_msg_copy (&grant, &rd.messages [0]);
    rcore_advance (voter, &rd);

    //  One grant plus its own makes a quorum of 3: the real election starts.
    ck_assert_int_eq (rcore_step (core, &grant), 0);
    ck_assert_int_eq (rcore_role (core), RCORE_CANDIDATE);
    ck_assert_uint_eq (rcore_term (core), 1);
    ck_assert_uint_eq (rcore_vote (core), 1);
    s_msg_free (&copy);
    s_msg_free (&grant);
    s_net_destroy (&net);
}
END_TEST

//  --------------------------------------------------------------------------
//  Clusters through the pump

START_TEST (test_three_nodes_elect_one_leader_and_replicate)
{
    s_net_t *net = s_net_new (3, 1234, true);
    int leader = s_run_until_leader (net, 200);
    ck_assert_int_ge (leader, 0);
    uint64_t term = rcore_term (net->nodes [leader].core);
    for (size_t i = 0; i < 3; i++) {
        ck_assert_uint_eq (rcore_term (net->nodes [i].core), term);
        ck_assert_uint_eq (rcore_leader (net->nodes [i].core), net->ids [leader]);
    }
    char text [32];
    for (int k = 0; k < 10; k++) {
        snprintf (text, sizeof text, "op-%d", k);
        s_propose (net, leader, text, NULL);
    }
    for (int r = 0; r < 5; r++)
        s_round (net);
    //  Every node applied all ten, in the same order, under one leader.
    for (size_t i = 0; i < 3; i++) {
        ck_assert_uint_eq (rcore_commit (net->nodes [i].core),
                           rcore_last_index (net->nodes [leader].core));
        for (int k = 0; k < 10; k++) {
            snprintf (text, sizeof text, "op-%d", k);
            ck_assert (s_applied_has (&net->nodes [i], text));
        }
        s_check_logs_equal (net, i, (size_t) leader);
    }
    ck_assert_uint_eq (rcore_term (net->nodes [leader].core), term);
    s_net_destroy (&net);
}
END_TEST

START_TEST (test_five_nodes_elect_without_prevote_too)
{
    s_net_t *net = s_net_new (5, 99, false);
    int leader = s_run_until_leader (net, 300);
    ck_assert_int_ge (leader, 0);
    s_propose (net, leader, "x", NULL);
    for (int r = 0; r < 3; r++)
        s_round (net);
    for (size_t i = 0; i < 5; i++)
        ck_assert (s_applied_has (&net->nodes [i], "x"));
    s_net_destroy (&net);
}
END_TEST

START_TEST (test_follower_does_not_commit_until_leader_says)
{
    s_net_t *net = s_net_new (3, 7, true);
    int leader = s_run_until_leader (net, 200);
    ck_assert_int_ge (leader, 0);
    size_t f = ((size_t) leader + 1) % 3;
    uint64_t index = 0;
    s_propose (net, leader, "late", &index);
    //  One hop: the follower has the entry but not its commit.
    s_deliver (net);
    ck_assert_uint_eq (rcore_last_index (net->nodes [f].core), index);
    ck_assert_uint_lt (rcore_commit (net->nodes [f].core), index);
    ck_assert (!s_applied_has (&net->nodes [f], "late"));
    for (int r = 0; r < 3; r++)
        s_round (net);
    ck_assert (s_applied_has (&net->nodes [f], "late"));
    s_net_destroy (&net);
}
END_TEST

START_TEST (test_partitioned_leader_is_replaced_and_its_entries_discarded)
{
    s_net_t *net = s_net_new (3, 2024, true);
    int old = s_run_until_leader (net, 200);
    ck_assert_int_ge (old, 0);
    s_propose (net, old, "kept", NULL);
    for (int r = 0; r < 3; r++)
        s_round (net);
    uint64_t old_term = rcore_term (net->nodes [old].core);

    //  Cut the leader off; what it takes now can never commit.
    net->nodes [old].group = 1;
    s_propose (net, old, "lost-1", NULL);
    s_propose (net, old, "lost-2", NULL);
    int leader = -1;
    for (int r = 0; r < 200 && (leader < 0
                                || rcore_role (net->nodes [old].core) == RCORE_LEADER); r++) {
        s_round (net);
        for (size_t i = 0; i < 3; i++)
            if ((int) i != old && rcore_role (net->nodes [i].core) == RCORE_LEADER)
                leader = (int) i;
    }
    ck_assert_int_ge (leader, 0);
    ck_assert_uint_gt (rcore_term (net->nodes [leader].core), old_term);
    //  §6.2: without a quorum the old leader stepped down by itself.
    ck_assert_int_ne (rcore_role (net->nodes [old].core), RCORE_LEADER);
    ck_assert_int_eq (rcore_propose (net->nodes [old].core, RCORE_ENTRY_NORMAL, "no", 2,
                                     NULL, NULL), -SH_ENOLEADER);
    s_propose (net, leader, "new", NULL);
    for (int r = 0; r < 3; r++)
        s_round (net);

    //  Heal: the old leader follows and its uncommitted entries are replaced.
    net->nodes [old].group = 0;
    for (int r = 0; r < 30; r++)
        s_round (net);
    for (size_t i = 0; i < 3; i++) {
        ck_assert (s_applied_has (&net->nodes [i], "kept"));
        ck_assert (s_applied_has (&net->nodes [i], "new"));
        ck_assert (!s_applied_has (&net->nodes [i], "lost-1"));
        ck_assert (!s_applied_has (&net->nodes [i], "lost-2"));
        s_check_logs_equal (net, i, (size_t) leader);
    }
    //  §9.6: with pre-vote, the returning node did not depose the leader.
    ck_assert_int_eq (rcore_role (net->nodes [leader].core), RCORE_LEADER);
    s_net_destroy (&net);
}
END_TEST

START_TEST (test_isolated_follower_with_prevote_does_not_inflate_term)
{
    s_net_t *net = s_net_new (3, 55, true);
    int leader = s_run_until_leader (net, 200);
    ck_assert_int_ge (leader, 0);
    size_t f = ((size_t) leader + 1) % 3;
    uint64_t term = rcore_term (net->nodes [leader].core);
    net->nodes [f].group = 1;
    for (int r = 0; r < 100; r++)
        s_round (net);
    //  It kept asking for pre-votes, never moving to a new term.
    ck_assert_uint_eq (rcore_term (net->nodes [f].core), term);
    net->nodes [f].group = 0;
    for (int r = 0; r < 5; r++)
        s_round (net);
    ck_assert_int_eq (rcore_role (net->nodes [leader].core), RCORE_LEADER);
    ck_assert_uint_eq (rcore_term (net->nodes [leader].core), term);
    ck_assert_uint_eq (rcore_leader (net->nodes [f].core), net->ids [leader]);
    s_net_destroy (&net);
}
END_TEST

START_TEST (test_fast_backtracking_skips_a_conflicting_term_at_once)
{
    //  Node 1 and 3 share a log whose tail is term 3; node 2 has a long
    //  uncommitted tail from term 2 that must be replaced.
    s_net_t *net = s_net_new (3, 3, true);
    for (size_t i = 0; i < 3; i++) {
        rcore_destroy (&net->nodes [i].core);
        s_node_t *node = &net->nodes [i];
        for (uint64_t k = 1; k <= 40; k++) {
            uint64_t t = k <= 3 ? 1 : (i == 1 ? 2 : 3);
            rcore_entry_t e = { k, t, RCORE_ENTRY_NORMAL, (uint8_t *) "e", 1 };
            s_entries_push (&node->log, &e);
        }
        node->hs = (rcore_hard_state_t) { i == 1 ? 2 : 3, 0, 3 };
        node->core = s_core_new (net, i, 77 + i, true);
        ck_assert_ptr_nonnull (node->core);
    }
    s_process_all (net);
    rcore_campaign (net->nodes [0].core);
    s_process (net, 0);
    for (int hops = 0; hops < 50 && net->n_queue; hops++)
        s_deliver (net);
    ck_assert_int_eq (rcore_role (net->nodes [0].core), RCORE_LEADER);
    //  One rejection from node 2 moved the leader straight to index 3.
    ck_assert_uint_le (net->rejects, 1);
    for (int r = 0; r < 20; r++)
        s_round (net);
    s_check_logs_equal (net, 0, 1);
    s_check_logs_equal (net, 0, 2);
    ck_assert_uint_eq (rcore_commit (net->nodes [1].core), rcore_last_index (net->nodes [0].core));
    s_net_destroy (&net);
}
END_TEST

START_TEST (test_lagging_follower_catches_up_from_snapshot)
{
    s_net_t *net = s_net_new (3, 808, true);
    int leader = s_run_until_leader (net, 200);
    ck_assert_int_ge (leader, 0);
    size_t f = ((size_t) leader + 1) % 3;
    net->nodes [f].down = true;
    char text [32];
    for (int k = 0; k < 30; k++) {
        snprintf (text, sizeof text, "v%d", k);
        s_propose (net, leader, text, NULL);
        s_round (net);
    }
    rcore_t *lc = net->nodes [leader].core;
    uint64_t at = rcore_applied (lc);
    ck_assert_int_eq (rcore_compact (lc, at, "SNAP", 4), 0);
    ck_assert_uint_eq (rcore_first_index (lc), at + 1);
    ck_assert_int_eq (rcore_compact (lc, at, "SNAP", 4), -SH_EINVAL);     //  not past it
    //  The follower comes back: its entries are gone from the leader.
    net->nodes [f].down = false;
    s_propose (net, leader, "after", NULL);
    for (int r = 0; r < 30; r++)
        s_round (net);
    ck_assert_uint_ge (net->snapshots_sent, 1);
    ck_assert_uint_eq (net->nodes [f].applied_snapshot, at);
    ck_assert_uint_eq (net->nodes [f].snap.len, 4);
    ck_assert (memcmp (net->nodes [f].snap.data, "SNAP", 4) == 0);
    ck_assert (s_applied_has (&net->nodes [f], "after"));
    ck_assert_uint_eq (rcore_commit (net->nodes [f].core), rcore_commit (lc));
    s_net_destroy (&net);
}
END_TEST

START_TEST (test_node_restarted_from_its_storage_rejoins)
{
    s_net_t *net = s_net_new (3, 4242, true);
    int leader = s_run_until_leader (net, 200);
    ck_assert_int_ge (leader, 0);
    s_propose (net, leader, "before", NULL);
    for (int r = 0; r < 3; r++)
        s_round (net);
    //  Crash every node and restart from what it persisted.
    for (size_t i = 0; i < 3; i++)
        s_restart (net, i, 900 + i);
    for (size_t i = 0; i < net->n_queue; i++)
        s_msg_free (&net->queue [i]);
    net->n_queue = 0;
    leader = s_run_until_leader (net, 200);
    ck_assert_int_ge (leader, 0);
    s_propose (net, leader, "after", NULL);
    for (int r = 0; r < 5; r++)
        s_round (net);
    for (size_t i = 0; i < 3; i++) {
        ck_assert (s_applied_has (&net->nodes [i], "before"));
        ck_assert (s_applied_has (&net->nodes [i], "after"));
    }
    s_net_destroy (&net);
}
END_TEST

//  Seeded runs with loss, reordering, partitions and crashes; safety is
//  checked after every delivery, liveness once the network heals.
START_TEST (test_random_faults_keep_safety_and_recover)
{
    for (uint64_t seed = 1; seed <= 100; seed++) {
        size_t n = seed % 2 ? 3 : 5;
        s_net_t *net = s_net_new (n, seed, seed % 3 != 0);
        net->drop_percent = 20;
        char text [32];
        int proposals = 0;
        for (int r = 0; r < 400; r++) {
            uint64_t x = s_rand (net) % 100;
            if (x < 3) {
                //  a random partition into two groups
                for (size_t i = 0; i < n; i++)
                    net->nodes [i].group = (int) (s_rand (net) % 2);
            }
            else
            if (x < 6)
                for (size_t i = 0; i < n; i++)
                    net->nodes [i].group = 0;
            else
            if (x < 8) {
                //  a crash, or a restart from what the node persisted
                size_t i = (size_t) (s_rand (net) % n);
                if (net->nodes [i].down)
                    s_restart (net, i, seed * 1000 + (uint64_t) r);
                else
                    net->nodes [i].down = true;
            }
            else
            if (x < 10) {
                size_t i = (size_t) (s_rand (net) % n);
                if (!net->nodes [i].down)
                    s_compact (net, i);
            }
            int leader = s_leader (net);
            if (leader >= 0 && x % 4 == 0) {
                snprintf (text, sizeof text, "s%" PRIu64 "-%d", seed, proposals++);
                s_propose (net, leader, text, NULL);
            }
            s_round (net);
        }
        //  Heal and go quiet: a leader emerges and everyone converges.
        net->drop_percent = 0;
        for (size_t i = 0; i < n; i++) {
            net->nodes [i].group = 0;
            if (net->nodes [i].down)
                s_restart (net, i, seed * 1000 + 999);
        }
        int leader = s_run_until_leader (net, 300);
        if (leader < 0)
            fprintf (stderr, "no leader after healing, seed=%" PRIu64 "\n", seed);
        ck_assert_int_ge (leader, 0);
        s_propose (net, leader, "final", NULL);
        for (int r = 0; r < 20; r++)
            s_round (net);
        for (size_t i = 0; i < n; i++) {
            ck_assert (s_applied_has (&net->nodes [i], "final"));
            s_check_logs_equal (net, i, (size_t) leader);
        }
        s_net_destroy (&net);
    }
}
END_TEST

Suite *
rcore_suite (void)
{
    Suite *s = suite_create ("rcore");
    TCase *tc = tcase_create ("single");
    tcase_add_test (tc, test_single_voter_becomes_leader_on_first_tick);
    tcase_add_test (tc, test_single_voter_commits_proposal_only_after_advance);
    tcase_add_test (tc, test_single_voter_restarts_from_storage_and_reapplies);
    tcase_add_test (tc, test_new_refuses_invalid_storage_and_config);
    tcase_add_test (tc, test_step_refuses_malformed_messages);
    suite_add_tcase (s, tc);
    tc = tcase_create ("votes");
    tcase_add_test (tc, test_vote_refused_to_candidate_with_older_log);
    tcase_add_test (tc, test_prevote_does_not_change_terms);
    suite_add_tcase (s, tc);
    tc = tcase_create ("cluster");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_three_nodes_elect_one_leader_and_replicate);
    tcase_add_test (tc, test_five_nodes_elect_without_prevote_too);
    tcase_add_test (tc, test_follower_does_not_commit_until_leader_says);
    tcase_add_test (tc, test_partitioned_leader_is_replaced_and_its_entries_discarded);
    tcase_add_test (tc, test_isolated_follower_with_prevote_does_not_inflate_term);
    tcase_add_test (tc, test_fast_backtracking_skips_a_conflicting_term_at_once);
    tcase_add_test (tc, test_lagging_follower_catches_up_from_snapshot);
    tcase_add_test (tc, test_node_restarted_from_its_storage_rejoins);
    tcase_add_test (tc, test_random_faults_keep_safety_and_recover);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (rcore_suite)
