/*  test_rcore: the pure Raft core, single voter and small clusters driven
    through an in-test message pump (seeded; no clock, no sockets):
    elections, replication, snapshots, membership changes with learners,
    leadership transfer, recovery snapshots. (test_rsim runs thousands of
    randomized clusters; these are the behaviours one by one.)
*/
#include "actors/raft/rcore.h"
#include "common/err.h"
#include <jansson.h>
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
    size_t founders;                //  nodes [0, founders) start as the voters;
                                    //    the others join with none
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
    config.voters = i < net->founders ? net->ids : NULL;
    config.n_voters = i < net->founders ? net->founders : 0;
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
s_net_make (size_t n, size_t founders, uint64_t seed, bool pre_vote)
{
    s_net_t *net = calloc (1, sizeof (s_net_t));
    net->n = n;
    net->founders = founders;
    net->rng = seed;
    for (size_t i = 0; i < n; i++)
        net->ids [i] = i + 1;
    for (size_t i = 0; i < n; i++) {
        net->nodes [i].core = s_core_new (net, i, seed * 31 + i, pre_vote);
        ck_assert_ptr_nonnull (net->nodes [i].core);
    }
    return net;
}

static s_net_t *
s_net_new (size_t n, uint64_t seed, bool pre_vote)
{
    return s_net_make (n, n, seed, pre_vote);
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

//  --------------------------------------------------------------------------
//  Membership (§4.1, §4.2)

static bool
s_has_id (const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids [i] == id)
            return true;
    return false;
}

//  Rounds until every live node has applied what the leader committed.
static void
s_settle (s_net_t *net, int rounds)
{
    for (int r = 0; r < rounds; r++)
        s_round (net);
}

START_TEST (test_propose_conf_builds_the_whole_configuration)
{
    rcore_t *core = s_single (1, NULL);
    uint64_t index = 0, term = 0;
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_ADD_LEARNER, 2, NULL, NULL, NULL),
                      -SH_ENOLEADER);
    rcore_tick (core);
    rcore_ready_t rd;
    //  Not before this term's no-op commits (a new leader settles first).
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_ADD_LEARNER, 2, NULL, NULL, NULL),
                      -SH_EUNAVAIL);
    while (rcore_ready (core, &rd))
        rcore_advance (core, &rd);
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_ADD_LEARNER, 2,
                                          "{\"uri\": \"http://b:6335\"}", &index, &term), 0);
    ck_assert_uint_eq (index, 2);
    ck_assert_uint_eq (term, 1);
    //  The entry names the whole configuration it leads to, and the change.
    const rcore_entry_t *e = rcore_entry (core, 2);
    ck_assert_int_eq (e->type, RCORE_ENTRY_CONF);
    json_error_t error;
    json_t *json = json_loadb ((const char *) e->data, e->len, 0, &error);
    ck_assert_ptr_nonnull (json);
    ck_assert_str_eq (json_string_value (json_object_get (json, "change")), "add_learner");
    ck_assert_int_eq (json_integer_value (json_object_get (json, "peer_id")), 2);
    ck_assert_str_eq (json_string_value (json_object_get (json, "uri")), "http://b:6335");
    ck_assert_int_eq (json_array_size (json_object_get (json, "voters")), 1);
    ck_assert_int_eq (json_integer_value (json_array_get (json_object_get (json, "learners"), 0)),
                      2);
    json_decref (json);
    //  It counts at once, committed or not.
    rcore_conf_t conf;
    rcore_conf (core, &conf);
    ck_assert_uint_eq (conf.n_voters, 1);
    ck_assert_uint_eq (conf.voters [0], 1);
    ck_assert_uint_eq (conf.n_learners, 1);
    ck_assert_uint_eq (conf.learners [0], 2);
    ck_assert (rcore_is_voter (core));
    ck_assert_int_eq (rcore_conf_at (core, 1, &conf), 0);
    ck_assert_uint_eq (conf.n_learners, 0);
    ck_assert_int_eq (rcore_conf_at (core, 3, &conf), -SH_EINVAL);

    //  One change at a time: the next waits for this one's commit.
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_ADD_LEARNER, 3, NULL, NULL, NULL),
                      -SH_EUNAVAIL);
    while (rcore_ready (core, &rd))
        rcore_advance (core, &rd);
    ck_assert_uint_eq (rcore_commit (core), 2);
    //  A learner does not count: the single voter still commits alone.
    ck_assert_int_eq (rcore_propose (core, RCORE_ENTRY_NORMAL, "x", 1, &index, NULL), 0);
    while (rcore_ready (core, &rd))
        rcore_advance (core, &rd);
    ck_assert_uint_eq (rcore_commit (core), index);

    //  What each change refuses.
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_ADD_LEARNER, 2, NULL, NULL, NULL),
                      -SH_EEXIST);
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_ADD_LEARNER, 1, NULL, NULL, NULL),
                      -SH_EEXIST);
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_PROMOTE, 9, NULL, NULL, NULL),
                      -SH_ENOTFOUND);
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_PROMOTE, 1, NULL, NULL, NULL),
                      -SH_EINVAL);
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_REMOVE, 9, NULL, NULL, NULL),
                      -SH_ENOTFOUND);
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_REMOVE, 1, NULL, NULL, NULL),
                      -SH_EINVAL);      //  the last voter
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_ADD_LEARNER, 0, NULL, NULL, NULL),
                      -SH_EINVAL);
    ck_assert_int_eq (rcore_propose_conf (core, 7, 3, NULL, NULL, NULL), -SH_EINVAL);
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_ADD_LEARNER, 3, "[1]", NULL, NULL),
                      -SH_EINVAL);
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_ADD_LEARNER, 3, "{bad", NULL, NULL),
                      -SH_EINVAL);
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_ADD_LEARNER, 3,
                                          "{\"voters\": [3]}", NULL, NULL), -SH_EINVAL);
    //  CONF entries only come from rcore_propose_conf.
    ck_assert_int_eq (rcore_propose (core, RCORE_ENTRY_CONF, "{}", 2, NULL, NULL), -SH_EINVAL);
    ck_assert_uint_eq (rcore_last_index (core), index);

    //  Promote, then remove the learner-turned-voter again.
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_PROMOTE, 2, NULL, &index, NULL), 0);
    rcore_conf (core, &conf);
    ck_assert_uint_eq (conf.n_voters, 2);
    ck_assert_uint_eq (conf.voters [1], 2);
    ck_assert_uint_eq (conf.n_learners, 0);
    //  Two voters now: node 2 must store it before it commits.
    while (rcore_ready (core, &rd))
        rcore_advance (core, &rd);
    ck_assert_uint_lt (rcore_commit (core), index);
    ck_assert_uint_eq (rcore_match (core, 2), 0);
    ck_assert_uint_eq (rcore_match (core, 1), index);
    ck_assert_uint_eq (rcore_match (core, 9), 0);
    rcore_destroy (&core);
}
END_TEST

START_TEST (test_joining_servers_wait_then_learn_then_vote)
{
    //  Node 1 founds the cluster; 2 and 3 start with no configuration.
    s_net_t *net = s_net_make (3, 1, 21, true);
    for (int r = 0; r < 50; r++)
        s_round (net);
    ck_assert_int_eq (rcore_role (net->nodes [0].core), RCORE_LEADER);
    for (size_t i = 1; i < 3; i++) {
        //  Not in any configuration: never stands, term untouched.
        ck_assert_int_eq (rcore_role (net->nodes [i].core), RCORE_FOLLOWER);
        ck_assert_uint_eq (rcore_term (net->nodes [i].core), 0);
        ck_assert (!rcore_is_voter (net->nodes [i].core));
    }
    rcore_t *lead = net->nodes [0].core;
    s_propose (net, 0, "before-2", NULL);
    ck_assert_int_eq (rcore_propose_conf (lead, RCORE_CONF_ADD_LEARNER, 2, NULL, NULL, NULL), 0);
    s_process (net, 0);
    ck_assert (!rcore_caught_up (lead, 2, 0));
    s_settle (net, 10);
    //  Node 2 took appends from a leader it did not know, and learned that
    //  it is a learner; it applied everything.
    rcore_t *two = net->nodes [1].core;
    ck_assert_uint_eq (rcore_leader (two), 1);
    ck_assert (s_applied_has (&net->nodes [1], "before-2"));
    rcore_conf_t conf;
    rcore_conf (two, &conf);
    ck_assert (s_has_id (conf.learners, conf.n_learners, 2));
    ck_assert (!rcore_is_voter (two));
    ck_assert (rcore_caught_up (lead, 2, 0));
    ck_assert_uint_eq (rcore_match (lead, 2), rcore_last_index (lead));
    ck_assert (!rcore_caught_up (lead, 1, 0));      //  a voter is not a learner
    ck_assert (!rcore_caught_up (lead, 3, 1000));   //  not a member
    //  A learner never stands, however long it hears nothing.
    net->nodes [0].down = true;
    s_settle (net, 50);
    ck_assert_int_eq (rcore_role (two), RCORE_FOLLOWER);
    ck_assert_uint_eq (rcore_term (two), 1);
    net->nodes [0].down = false;
    s_settle (net, 3);
    //  Promoted, it is a voter: with 2 voters both must store an entry.
    ck_assert_int_eq (rcore_propose_conf (lead, RCORE_CONF_PROMOTE, 2, NULL, NULL, NULL), 0);
    s_process (net, 0);
    s_settle (net, 5);
    ck_assert (rcore_is_voter (two));
    net->nodes [1].down = true;
    uint64_t index = 0;
    s_propose (net, 0, "needs-2", &index);
    s_settle (net, 3);
    ck_assert_uint_lt (rcore_commit (lead), index);
    net->nodes [1].down = false;
    s_settle (net, 3);
    ck_assert_uint_ge (rcore_commit (lead), index);
    ck_assert (s_applied_has (&net->nodes [1], "needs-2"));
    //  Node 3 was never added: it heard nothing and is still at term 0.
    ck_assert_uint_eq (rcore_term (net->nodes [2].core), 0);
    ck_assert_uint_eq (rcore_last_index (net->nodes [2].core), 0);
    s_net_destroy (&net);
}
END_TEST

START_TEST (test_truncated_conf_entry_reverts_the_configuration)
{
    uint64_t voters [3] = { 1, 2, 3 };
    rcore_config_t config;
    rcore_config_defaults (&config);
    config.id = 3;
    config.voters = voters;
    config.n_voters = 3;
    rcore_t *core = rcore_new (&config, NULL);
    const char *add4 = "{\"change\":\"add_learner\",\"peer_id\":4,\"voters\":[1,2,3],"
                       "\"learners\":[4]}";
    rcore_entry_t entries [2] = {
        { 1, 1, RCORE_ENTRY_NOOP, NULL, 0 },
        { 2, 1, RCORE_ENTRY_CONF, (uint8_t *) add4, strlen (add4) },
    };
    rcore_msg_t app = { .type = RCORE_MSG_APPEND, .from = 1, .to = 3, .term = 1,
                        .entries = entries, .n_entries = 2 };
    ck_assert_int_eq (rcore_step (core, &app), 0);
    rcore_conf_t conf;
    rcore_conf (core, &conf);
    ck_assert_uint_eq (conf.n_learners, 1);
    ck_assert_uint_eq (conf.learners [0], 4);
    ck_assert_int_eq (rcore_conf_at (core, 1, &conf), 0);
    ck_assert_uint_eq (conf.n_learners, 0);
    ck_assert_uint_eq (conf.n_voters, 3);
    rcore_ready_t rd;
    while (rcore_ready (core, &rd))
        rcore_advance (core, &rd);

    //  A new leader's entry replaces index 2: the conf entry is gone and
    //  the configuration before it is back (§4.1).
    rcore_entry_t other [1] = { { 2, 2, RCORE_ENTRY_NORMAL, (uint8_t *) "n", 1 } };
    rcore_msg_t app2 = { .type = RCORE_MSG_APPEND, .from = 2, .to = 3, .term = 2,
                         .index = 1, .log_term = 1, .entries = other, .n_entries = 1 };
    ck_assert_int_eq (rcore_step (core, &app2), 0);
    ck_assert_int_eq (rcore_entry (core, 2)->type, RCORE_ENTRY_NORMAL);
    rcore_conf (core, &conf);
    ck_assert_uint_eq (conf.n_learners, 0);
    ck_assert_uint_eq (conf.n_voters, 3);
    ck_assert (rcore_is_voter (core));
    rcore_destroy (&core);
}
END_TEST

START_TEST (test_malformed_conf_entries_and_snapshot_confs_are_refused)
{
    uint64_t voters [3] = { 1, 2, 3 };
    rcore_config_t config;
    rcore_config_defaults (&config);
    config.id = 3;
    config.voters = voters;
    config.n_voters = 3;
    rcore_t *core = rcore_new (&config, NULL);
    const char *bad [] = {
        "not json",
        "[1,2]",
        "{\"change\":\"add_learner\",\"peer_id\":4,\"voters\":[1,2,3]}",            //  no learners
        "{\"change\":\"grow\",\"peer_id\":4,\"voters\":[1,2,3],\"learners\":[4]}",
        "{\"change\":\"add_learner\",\"peer_id\":5,\"voters\":[1,2,3],\"learners\":[4]}",
        "{\"change\":\"promote\",\"peer_id\":4,\"voters\":[1,2,3],\"learners\":[4]}",
        "{\"change\":\"remove\",\"peer_id\":3,\"voters\":[1,2,3],\"learners\":[]}",
        "{\"change\":\"add_learner\",\"peer_id\":4,\"voters\":[3,2,1],\"learners\":[4]}",
        "{\"change\":\"add_learner\",\"peer_id\":4,\"voters\":[1,1,3],\"learners\":[4]}",
        "{\"change\":\"add_learner\",\"peer_id\":4,\"voters\":[1,4],\"learners\":[4]}",
        "{\"change\":\"add_learner\",\"peer_id\":4,\"voters\":[],\"learners\":[4]}",
        "{\"change\":\"add_learner\",\"peer_id\":4,\"voters\":[0,1],\"learners\":[4]}",
        "{\"change\":\"add_learner\",\"peer_id\":4,\"voters\":[1,\"2\"],\"learners\":[4]}",
        "{\"change\":\"add_learner\",\"peer_id\":-4,\"voters\":[1],\"learners\":[4]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        rcore_entry_t entry = { 1, 1, RCORE_ENTRY_CONF, (uint8_t *) bad [i], strlen (bad [i]) };
        rcore_msg_t app = { .type = RCORE_MSG_APPEND, .from = 1, .to = 3, .term = 1,
                            .entries = &entry, .n_entries = 1 };
        ck_assert_msg (rcore_step (core, &app) == -SH_EINVAL, "accepted: %s", bad [i]);
        ck_assert_uint_eq (rcore_last_index (core), 0);
        //  ... and from storage it is a log Raft could not have made.
        rcore_storage_t storage = { .hard_state = { 1, 0, 0 }, .entries = &entry,
                                    .n_entries = 1 };
        ck_assert_ptr_null (rcore_new (&config, &storage));
    }
    //  A conf entry without data at all.
    rcore_entry_t empty = { 1, 1, RCORE_ENTRY_CONF, NULL, 0 };
    rcore_msg_t app = { .type = RCORE_MSG_APPEND, .from = 1, .to = 3, .term = 1,
                        .entries = &empty, .n_entries = 1 };
    ck_assert_int_eq (rcore_step (core, &app), -SH_EINVAL);

    //  Snapshot configurations: sorted, no id twice, learners beside voters.
    uint64_t unsorted [2] = { 3, 1 }, one [1] = { 1 }, zero [1] = { 0 };
    rcore_conf_t confs [4] = {
        { unsorted, 2, NULL, 0 },
        { one, 1, one, 1 },
        { NULL, 0, one, 1 },
        { zero, 1, NULL, 0 },
    };
    for (size_t i = 0; i < 4; i++) {
        rcore_msg_t snap = { .type = RCORE_MSG_SNAPSHOT, .from = 1, .to = 3, .term = 1,
                             .snapshot = { .index = 5, .term = 1, .conf = confs [i] } };
        ck_assert_int_eq (rcore_step (core, &snap), -SH_EINVAL);
        rcore_storage_t storage = { .hard_state = { 1, 0, 5 },
                                    .snapshot = { .index = 5, .term = 1, .conf = confs [i] } };
        ck_assert_ptr_null (rcore_new (&config, &storage));
    }
    ck_assert_uint_eq (rcore_snapshot (core)->index, 0);
    rcore_destroy (&core);
}
END_TEST

START_TEST (test_compaction_records_the_configuration_and_restores_it)
{
    rcore_t *core = s_single (1, NULL);
    rcore_ready_t rd;
    rcore_tick (core);
    while (rcore_ready (core, &rd))
        rcore_advance (core, &rd);
    //  Before any conf entry the snapshot records config.voters.
    ck_assert_int_eq (rcore_compact (core, 1, "s1", 2), 0);
    ck_assert_uint_eq (rcore_snapshot (core)->conf.n_voters, 1);
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_ADD_LEARNER, 5, NULL, NULL, NULL), 0);
    while (rcore_ready (core, &rd))
        rcore_advance (core, &rd);
    ck_assert_int_eq (rcore_propose (core, RCORE_ENTRY_NORMAL, "a", 1, NULL, NULL), 0);
    while (rcore_ready (core, &rd))
        rcore_advance (core, &rd);
    ck_assert_int_eq (rcore_propose_conf (core, RCORE_CONF_PROMOTE, 5, NULL, NULL, NULL), 0);
    ck_assert_int_eq (rcore_propose (core, RCORE_ENTRY_NORMAL, "b", 1, NULL, NULL), 0);
    while (rcore_ready (core, &rd))
        rcore_advance (core, &rd);
    //  Voters {1, 5} now: 1 alone commits no more; snapshot at 3 (learner 5).
    ck_assert_uint_eq (rcore_applied (core), 3);
    ck_assert_int_eq (rcore_compact (core, 3, "s3", 2), 0);
    const rcore_snapshot_t *snap = rcore_snapshot (core);
    ck_assert_uint_eq (snap->conf.n_voters, 1);
    ck_assert_uint_eq (snap->conf.n_learners, 1);
    ck_assert_uint_eq (snap->conf.learners [0], 5);
    rcore_conf_t conf;
    ck_assert_int_eq (rcore_conf_at (core, 2, &conf), -SH_EINVAL);     //  compacted
    ck_assert_int_eq (rcore_conf_at (core, 3, &conf), 0);
    ck_assert_uint_eq (conf.n_learners, 1);
    ck_assert_int_eq (rcore_conf_at (core, 4, &conf), 0);
    ck_assert_uint_eq (conf.n_voters, 2);

    //  Restored from that storage (snapshot conf + the conf entry after
    //  it), config.voters no longer matters.
    rcore_entry_t tail [2];
    for (uint64_t i = 4; i <= 5; i++)
        tail [i - 4] = *rcore_entry (core, i);
    rcore_storage_t storage = { .hard_state = { rcore_term (core), 1, 3 }, .snapshot = *snap,
                                .entries = tail, .n_entries = 2 };
    uint64_t nobody [1] = { 9 };
    rcore_config_t config;
    rcore_config_defaults (&config);
    config.id = 5;
    config.voters = nobody;
    config.n_voters = 1;
    rcore_t *copy = rcore_new (&config, &storage);
    ck_assert_ptr_nonnull (copy);
    rcore_conf (copy, &conf);
    ck_assert_uint_eq (conf.n_voters, 2);
    ck_assert_uint_eq (conf.voters [0], 1);
    ck_assert_uint_eq (conf.voters [1], 5);
    ck_assert (rcore_is_voter (copy));
    rcore_destroy (&copy);
    //  Without the tail it is the snapshot's: node 5 a learner.
    storage.n_entries = 0;
    storage.hard_state.commit = 3;
    copy = rcore_new (&config, &storage);
    ck_assert_ptr_nonnull (copy);
    ck_assert (!rcore_is_voter (copy));
    rcore_destroy (&copy);
    rcore_destroy (&core);
}
END_TEST

START_TEST (test_removed_leader_steps_down_once_committed)
{
    s_net_t *net = s_net_new (3, 31, true);
    int leader = s_run_until_leader (net, 200);
    ck_assert_int_ge (leader, 0);
    rcore_t *old = net->nodes [leader].core;
    uint64_t me = net->ids [leader];
    s_settle (net, 2);
    uint64_t index = 0;
    ck_assert_int_eq (rcore_propose_conf (old, RCORE_CONF_REMOVE, me, NULL, &index, NULL), 0);
    //  §4.2.2: it leads on until the entry commits, without counting itself.
    ck_assert_int_eq (rcore_role (old), RCORE_LEADER);
    ck_assert (!rcore_is_voter (old));
    s_process (net, (size_t) leader);
    for (int r = 0; r < 5; r++)
        s_round (net);
    ck_assert_uint_ge (rcore_commit (old), index);
    ck_assert_int_eq (rcore_role (old), RCORE_FOLLOWER);
    //  The others elect one of themselves; the removed one never stands.
    int next = -1;
    for (int r = 0; r < 100 && next < 0; r++) {
        s_round (net);
        next = s_leader (net);
        ck_assert_int_ne (rcore_role (old), RCORE_CANDIDATE);
        ck_assert_int_ne (rcore_role (old), RCORE_PRE_CANDIDATE);
    }
    ck_assert_int_ge (next, 0);
    ck_assert_int_ne (next, leader);
    s_propose (net, next, "after", NULL);
    s_settle (net, 3);
    for (size_t i = 0; i < 3; i++)
        if ((int) i != leader)
            ck_assert (s_applied_has (&net->nodes [i], "after"));
    rcore_conf_t conf;
    rcore_conf (net->nodes [next].core, &conf);
    ck_assert_uint_eq (conf.n_voters, 2);
    ck_assert (!s_has_id (conf.voters, conf.n_voters, me));
    s_net_destroy (&net);
}
END_TEST

START_TEST (test_learners_do_not_count_for_commit)
{
    //  Voters {1, 2}, learner 3: with 2 down nothing commits, whatever 3 holds.
    s_net_t *net = s_net_make (3, 2, 41, true);
    int leader = -1;
    for (int r = 0; r < 100 && leader < 0; r++) {
        s_round (net);
        leader = s_leader (net);
    }
    ck_assert_int_ge (leader, 0);
    s_settle (net, 2);
    rcore_t *lead = net->nodes [leader].core;
    ck_assert_int_eq (rcore_propose_conf (lead, RCORE_CONF_ADD_LEARNER, 3, NULL, NULL, NULL), 0);
    s_process (net, (size_t) leader);
    s_settle (net, 3);
    size_t other = leader == 0 ? 1 : 0;
    net->nodes [other].down = true;
    uint64_t index = 0;
    s_propose (net, leader, "stuck", &index);
    for (int r = 0; r < 3; r++)
        s_round (net);
    ck_assert_uint_eq (rcore_match (lead, 3), index);
    ck_assert_uint_lt (rcore_commit (lead), index);
    //  §6.2: with 2 silent the leader steps down; the learner never stands.
    for (int r = 0; r < 30; r++)
        s_round (net);
    ck_assert_int_ne (rcore_role (lead), RCORE_LEADER);
    ck_assert_int_eq (rcore_role (net->nodes [2].core), RCORE_FOLLOWER);
    s_net_destroy (&net);
}
END_TEST

//  --------------------------------------------------------------------------
//  Leadership transfer (§3.10) and the §4.2.3 check

START_TEST (test_transfer_hands_leadership_to_the_target)
{
    s_net_t *net = s_net_new (3, 51, true);
    int leader = s_run_until_leader (net, 200);
    ck_assert_int_ge (leader, 0);
    rcore_t *lead = net->nodes [leader].core;
    uint64_t term = rcore_term (lead);
    size_t target = ((size_t) leader + 1) % 3;
    ck_assert_int_eq (rcore_transfer_leader (net->nodes [target].core, 1), -SH_ENOLEADER);
    ck_assert_int_eq (rcore_transfer_leader (lead, net->ids [leader]), -SH_ENOTFOUND);
    ck_assert_int_eq (rcore_transfer_leader (lead, 9), -SH_ENOTFOUND);
    //  The target is behind: the leader brings it up to date first.
    net->nodes [target].down = true;
    s_propose (net, leader, "while-down", NULL);
    s_settle (net, 2);
    net->nodes [target].down = false;
    ck_assert_int_eq (rcore_transfer_leader (lead, net->ids [target]), 0);
    ck_assert_uint_eq (rcore_transferee (lead), net->ids [target]);
    ck_assert_int_eq (rcore_propose (lead, RCORE_ENTRY_NORMAL, "no", 2, NULL, NULL),
                      -SH_EUNAVAIL);
    ck_assert_int_eq (rcore_propose_conf (lead, RCORE_CONF_ADD_LEARNER, 4, NULL, NULL, NULL),
                      -SH_EUNAVAIL);
    s_process (net, (size_t) leader);
    for (int r = 0; r < 5 && rcore_role (net->nodes [target].core) != RCORE_LEADER; r++)
        s_round (net);
    //  The target won the next term at once, though the other follower had
    //  just heard from the old leader (force beats §4.2.3's check).
    ck_assert_int_eq (rcore_role (net->nodes [target].core), RCORE_LEADER);
    ck_assert_uint_eq (rcore_term (net->nodes [target].core), term + 1);
    ck_assert_int_eq (rcore_role (lead), RCORE_FOLLOWER);
    ck_assert_uint_eq (rcore_transferee (lead), 0);
    ck_assert (s_applied_has (&net->nodes [target], "while-down"));
    s_net_destroy (&net);
}
END_TEST

START_TEST (test_transfer_to_an_unreachable_target_is_abandoned)
{
    s_net_t *net = s_net_new (3, 61, true);
    int leader = s_run_until_leader (net, 200);
    ck_assert_int_ge (leader, 0);
    rcore_t *lead = net->nodes [leader].core;
    uint64_t term = rcore_term (lead);
    size_t target = ((size_t) leader + 2) % 3;
    s_propose (net, leader, "x", NULL);
    net->nodes [target].down = true;
    s_propose (net, leader, "y", NULL);
    ck_assert_int_eq (rcore_transfer_leader (lead, net->ids [target]), 0);
    //  Asking again for the same target is a no-op.
    ck_assert_int_eq (rcore_transfer_leader (lead, net->ids [target]), 0);
    int rounds = 0;
    while (rcore_transferee (lead) && rounds < 100) {
        s_round (net);
        rounds++;
    }
    //  Given up after an election timeout; proposals are taken again.
    ck_assert_int_le (rounds, 10);
    ck_assert_int_eq (rcore_role (lead), RCORE_LEADER);
    ck_assert_uint_eq (rcore_term (lead), term);
    ck_assert_int_eq (rcore_propose (lead, RCORE_ENTRY_NORMAL, "z", 1, NULL, NULL), 0);
    s_net_destroy (&net);
}
END_TEST

START_TEST (test_votes_ignored_within_the_election_timeout_unless_forced)
{
    uint64_t voters [3] = { 1, 2, 3 };
    rcore_config_t config;
    rcore_config_defaults (&config);
    config.id = 1;
    config.voters = voters;
    config.n_voters = 3;
    rcore_t *core = rcore_new (&config, NULL);
    rcore_ready_t rd;
    rcore_msg_t beat = { .type = RCORE_MSG_HEARTBEAT, .from = 2, .to = 1, .term = 1 };
    ck_assert_int_eq (rcore_step (core, &beat), 0);
    while (rcore_ready (core, &rd))
        rcore_advance (core, &rd);
    ck_assert_uint_eq (rcore_leader (core), 2);
    //  §4.2.3: it heard from a leader just now: a vote request (or pre-vote)
    //  for a later term is ignored: no answer, no new term.
    rcore_msg_t vote = { .type = RCORE_MSG_VOTE, .from = 3, .to = 1, .term = 2 };
    ck_assert_int_eq (rcore_step (core, &vote), 0);
    vote.type = RCORE_MSG_PREVOTE;
    ck_assert_int_eq (rcore_step (core, &vote), 0);
    ck_assert_uint_eq (rcore_term (core), 1);
    ck_assert (!rcore_ready (core, &rd));
    //  A transfer's request (force) is granted.
    vote.type = RCORE_MSG_VOTE;
    vote.force = true;
    ck_assert_int_eq (rcore_step (core, &vote), 0);
    ck_assert_uint_eq (rcore_term (core), 2);
    ck_assert_uint_eq (rcore_vote (core), 3);
    ck_assert (rcore_ready (core, &rd));
    ck_assert_int_eq (rd.messages [0].type, RCORE_MSG_VOTE_RESP);
    ck_assert (!rd.messages [0].reject);
    rcore_advance (core, &rd);
    //  After an election timeout without a leader, plain requests count again.
    for (int t = 0; t < 10; t++)
        rcore_tick (core);
    while (rcore_ready (core, &rd))
        rcore_advance (core, &rd);
    rcore_msg_t later = { .type = RCORE_MSG_VOTE, .from = 2, .to = 1,
                          .term = rcore_term (core) + 1 };
    ck_assert_int_eq (rcore_step (core, &later), 0);
    ck_assert_uint_eq (rcore_term (core), later.term);
    rcore_destroy (&core);
}
END_TEST

START_TEST (test_timeout_now_is_ignored_by_a_learner)
{
    rcore_config_t config;
    rcore_config_defaults (&config);
    config.id = 2;
    rcore_t *core = rcore_new (&config, NULL);
    ck_assert_ptr_nonnull (core);
    rcore_msg_t now = { .type = RCORE_MSG_TIMEOUT_NOW, .from = 1, .to = 2, .term = 3 };
    ck_assert_int_eq (rcore_step (core, &now), 0);
    ck_assert_int_eq (rcore_role (core), RCORE_FOLLOWER);
    ck_assert_uint_eq (rcore_term (core), 3);
    ck_assert_uint_eq (rcore_leader (core), 1);
    rcore_destroy (&core);
}
END_TEST

//  --------------------------------------------------------------------------
//  Recovery snapshots (POST /cluster/recover)

START_TEST (test_recovery_snapshot_resets_a_follower_and_reapplies)
{
    s_net_t *net = s_net_new (3, 71, true);
    int leader = s_run_until_leader (net, 200);
    ck_assert_int_ge (leader, 0);
    rcore_t *lead = net->nodes [leader].core;
    size_t f = ((size_t) leader + 1) % 3;
    rcore_t *fc = net->nodes [f].core;
    ck_assert_int_eq (rcore_send_snapshot (net->nodes [f].core, net->ids [leader]),
                      -SH_ENOLEADER);
    ck_assert_int_eq (rcore_send_snapshot (lead, net->ids [f]), -SH_EINVAL);   //  none yet
    char text [16];
    for (int k = 0; k < 6; k++) {
        snprintf (text, sizeof text, "r%d", k);
        s_propose (net, leader, text, NULL);
    }
    s_settle (net, 3);
    s_compact (net, (size_t) leader);
    uint64_t at = rcore_snapshot (lead)->index;
    s_propose (net, leader, "after-snap", NULL);
    s_settle (net, 3);
    uint64_t commit = rcore_commit (fc), last = rcore_last_index (fc);
    ck_assert_uint_gt (commit, at);
    ck_assert_uint_eq (rcore_applied (fc), commit);
    ck_assert_int_eq (rcore_send_snapshot (lead, 9), -SH_ENOTFOUND);
    ck_assert_int_eq (rcore_send_snapshot (lead, net->ids [leader]), -SH_ENOTFOUND);
    ck_assert_int_eq (rcore_send_snapshot (lead, net->ids [f]), 0);
    s_process (net, (size_t) leader);
    //  The snapshot goes out with force.
    bool forced = false;
    for (size_t k = 0; k < net->n_queue; k++)
        if (net->queue [k].type == RCORE_MSG_SNAPSHOT && net->queue [k].to == net->ids [f])
            forced = net->queue [k].force;
    ck_assert (forced);
    s_settle (net, 3);
    //  The follower reset its state machine from the snapshot, though its
    //  commit was past it, and applied what followed it again; its log
    //  after the snapshot stayed and its commit never went back.
    ck_assert_uint_eq (net->nodes [f].applied_snapshot, at);
    ck_assert_uint_eq (rcore_snapshot (fc)->index, at);
    ck_assert_uint_eq (rcore_first_index (fc), at + 1);
    ck_assert_uint_ge (rcore_last_index (fc), last);
    ck_assert_uint_ge (rcore_commit (fc), commit);
    ck_assert (s_applied_has (&net->nodes [f], "after-snap"));
    ck_assert_uint_eq (net->nodes [f].applied.items [0].index, at + 1);
    ck_assert (memcmp (net->nodes [f].snap.data, rcore_snapshot (lead)->data,
                       net->nodes [f].snap.len) == 0);
    //  Replication goes on as before.
    s_propose (net, leader, "later", NULL);
    s_settle (net, 3);
    ck_assert (s_applied_has (&net->nodes [f], "later"));
    s_check_logs_equal (net, f, (size_t) leader);
    s_net_destroy (&net);
}
END_TEST

START_TEST (test_stale_snapshots_never_move_commit_back)
{
    uint64_t voters [3] = { 1, 2, 3 };
    rcore_config_t config;
    rcore_config_defaults (&config);
    config.id = 2;
    config.voters = voters;
    config.n_voters = 3;
    rcore_entry_t log [4] = {
        { 1, 1, RCORE_ENTRY_NOOP, NULL, 0 },
        { 2, 1, RCORE_ENTRY_NORMAL, (uint8_t *) "a", 1 },
        { 3, 1, RCORE_ENTRY_NORMAL, (uint8_t *) "b", 1 },
        { 4, 1, RCORE_ENTRY_NORMAL, (uint8_t *) "c", 1 },
    };
    rcore_storage_t storage = { .hard_state = { 1, 0, 4 },
                                .snapshot = { .index = 0 }, .entries = log, .n_entries = 4 };
    config.applied = 4;
    rcore_t *core = rcore_new (&config, &storage);
    ck_assert_ptr_nonnull (core);
    rcore_ready_t rd;
    uint64_t one [1] = { 1 };
    //  An old snapshot (index 2 <= commit): nothing changes, it is answered.
    rcore_msg_t snap = { .type = RCORE_MSG_SNAPSHOT, .from = 1, .to = 2, .term = 1,
                         .snapshot = { .index = 2, .term = 1, .data = (uint8_t *) "S", .len = 1,
                                       .conf = { voters, 3, NULL, 0 } } };
    ck_assert_int_eq (rcore_step (core, &snap), 0);
    ck_assert_uint_eq (rcore_commit (core), 4);
    ck_assert_uint_eq (rcore_snapshot (core)->index, 0);
    ck_assert (rcore_ready (core, &rd));
    ck_assert (!rd.snapshot);
    ck_assert_int_eq (rd.messages [0].type, RCORE_MSG_SNAPSHOT_RESP);
    ck_assert_uint_eq (rd.messages [0].index, 2);
    ck_assert (!rd.messages [0].reject);
    rcore_advance (core, &rd);

    //  Forced at 3 (the log holds it): installed, commit stays 4, 4 again.
    snap.force = true;
    snap.snapshot.index = 3;
    ck_assert_int_eq (rcore_step (core, &snap), 0);
    ck_assert_uint_eq (rcore_commit (core), 4);
    ck_assert (rcore_ready (core, &rd));
    ck_assert_ptr_nonnull (rd.snapshot);
    ck_assert_uint_eq (rd.snapshot->index, 3);
    ck_assert_uint_eq (rd.snapshot->conf.n_voters, 3);
    ck_assert_uint_eq (rd.n_committed, 1);
    ck_assert_uint_eq (rd.committed [0].index, 4);
    ck_assert_uint_eq (rd.n_entries, 0);
    rcore_advance (core, &rd);
    ck_assert_uint_eq (rcore_applied (core), 4);
    ck_assert_uint_eq (rcore_last_index (core), 4);

    //  A forced one behind our own snapshot is refused.
    snap.snapshot.index = 2;
    ck_assert_int_eq (rcore_step (core, &snap), 0);
    ck_assert (rcore_ready (core, &rd));
    ck_assert (!rd.snapshot);
    ck_assert (rd.messages [0].reject);
    rcore_advance (core, &rd);
    ck_assert_uint_eq (rcore_snapshot (core)->index, 3);

    //  One past the log (index 9, term 2): the log goes, commit moves up,
    //  the configuration is the snapshot's.
    snap.force = false;
    snap.term = 2;
    snap.snapshot = (rcore_snapshot_t) { .index = 9, .term = 2, .data = (uint8_t *) "T",
                                         .len = 1, .conf = { one, 1, NULL, 0 } };
    ck_assert_int_eq (rcore_step (core, &snap), 0);
    ck_assert_uint_eq (rcore_commit (core), 9);
    ck_assert_uint_eq (rcore_last_index (core), 9);
    ck_assert (!rcore_is_voter (core));
    ck_assert (rcore_ready (core, &rd));
    ck_assert_uint_eq (rd.snapshot->index, 9);
    ck_assert_uint_eq (rd.n_committed, 0);
    rcore_advance (core, &rd);
    rcore_destroy (&core);
}
END_TEST

START_TEST (test_snapshot_saved_ahead_of_the_hard_state_loads)
{
    //  A crash between raft_store_install_snapshot and the save of the hard
    //  state leaves a snapshot of a later term than the hard state's.
    uint64_t voters [3] = { 1, 2, 3 };
    rcore_config_t config;
    rcore_config_defaults (&config);
    config.id = 2;
    config.voters = voters;
    config.n_voters = 3;
    rcore_storage_t storage = { .hard_state = { 3, 1, 2 },
                                .snapshot = { .index = 8, .term = 5,
                                              .conf = { voters, 3, NULL, 0 } } };
    rcore_t *core = rcore_new (&config, &storage);
    ck_assert_ptr_nonnull (core);
    ck_assert_uint_eq (rcore_term (core), 5);
    ck_assert_uint_eq (rcore_vote (core), 0);
    ck_assert_uint_eq (rcore_commit (core), 8);
    rcore_destroy (&core);
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
    tc = tcase_create ("membership");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_propose_conf_builds_the_whole_configuration);
    tcase_add_test (tc, test_joining_servers_wait_then_learn_then_vote);
    tcase_add_test (tc, test_truncated_conf_entry_reverts_the_configuration);
    tcase_add_test (tc, test_malformed_conf_entries_and_snapshot_confs_are_refused);
    tcase_add_test (tc, test_compaction_records_the_configuration_and_restores_it);
    tcase_add_test (tc, test_removed_leader_steps_down_once_committed);
    tcase_add_test (tc, test_learners_do_not_count_for_commit);
    suite_add_tcase (s, tc);
    tc = tcase_create ("transfer");
    tcase_add_test (tc, test_transfer_hands_leadership_to_the_target);
    tcase_add_test (tc, test_transfer_to_an_unreachable_target_is_abandoned);
    tcase_add_test (tc, test_votes_ignored_within_the_election_timeout_unless_forced);
    tcase_add_test (tc, test_timeout_now_is_ignored_by_a_learner);
    suite_add_tcase (s, tc);
    tc = tcase_create ("recovery");
    tcase_add_test (tc, test_recovery_snapshot_resets_a_follower_and_reapplies);
    tcase_add_test (tc, test_stale_snapshots_never_move_commit_back);
    tcase_add_test (tc, test_snapshot_saved_ahead_of_the_hard_state_loads);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (rcore_suite)
