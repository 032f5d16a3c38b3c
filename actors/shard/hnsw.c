/*  hnsw: the HNSW graph of one named vector of a shard (see hnsw.h for the
    contract and the concurrency rules).

    Written for shoal from the paper (Malkov & Yashunin, arXiv:1603.09320):
    levels drawn as floor(-ln(U) * 1/ln(M)) (§4, "mL"), greedy descent through
    the upper levels (Alg. 5), best-first search with a candidate min-heap and
    a bounded result max-heap (Alg. 2), neighbours chosen by the heuristic of
    Alg. 4 (keep a candidate only if it is closer to the base than to every
    neighbour already kept) both for a new node and when a full list has to
    shrink after a back-link. The engineering follows what makes hnswlib
    fast: level-0 lists in one flat array, a visited set of epoch tags that
    is never cleared per query, prefetching the vectors of the neighbours
    about to be measured, and per-node locks that are held briefly.

    Memory ordering: list ids and counts are written with release stores and
    read with acquire loads (plain moves on x86), so a reader that sees a
    slot in a list also sees that slot's level and upper lists, which its
    inserter wrote before linking it anywhere.
*/
#include "actors/shard/hnsw.h"
#include "common/err.h"
#include "common/log.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

//  Highest level a node can get (a draw above is clipped): with M = 2 the
//  chance of reaching it is 2^-30 per node.
#define S_MAX_LEVEL 30
//  levels [] value of a slot not in the graph.
#define S_ABSENT 0xFF
//  The entry word when the graph is empty.
#define S_NO_ENTRY UINT64_MAX
#define S_MAX_DIM 65536

#define S_MAGIC "SHOALHNS"
#define S_VERSION 1
//  magic, version, distance, dim, m, ef, seed, seq, capacity, nodes,
//  deleted, entry, max level.
#define S_HEADER_SIZE (8 + 4 * 5 + 8 + 8 + 4 * 5)
#define S_HASH_SIZE crypto_generichash_BYTES

//  A (distance, slot) pair: heap entries and candidate lists.
typedef struct {
    float dist;             //  raw distance to the query / base vector
    uint32_t slot;          //  node
} s_pair_t;

//  One thread's scratch for a search or an insert, reused through a pool so
//  the visited array is allocated once per thread, not per query.
typedef struct _s_ctx_t {
    struct _s_ctx_t *next;  //  next free context in the pool
    uint16_t *visited;      //  per slot: == tag if visited in this search
    uint32_t visited_cap;   //  slots visited [] covers
    uint16_t tag;           //  this search's epoch; 0 is never a live tag
    s_pair_t *cand;         //  candidates: min-heap on dist
    size_t cand_n;          //  entries in cand
    size_t cand_cap;        //  room in cand
    s_pair_t *res;          //  results: max-heap on dist, at most ef + 1
    size_t res_n;           //  entries in res
    size_t res_cap;         //  room in res
    s_pair_t *work;         //  sorted candidates for neighbour selection
    size_t work_cap;        //  room in work
    s_pair_t *sel;          //  selected neighbours
    size_t sel_cap;         //  room in sel
    s_pair_t *chosen;       //  insert: m neighbours chosen per level
    size_t chosen_cap;      //  room in chosen
} s_ctx_t;

struct _hnsw_t {
    distance_t distance;        //  metric
    uint32_t dim;               //  floats per vector
    uint32_t m;                 //  max links per node above level 0
    uint32_t m0;                //  max links per node at level 0 (2 * m)
    uint32_t ef_construct;      //  candidate list size while inserting
    uint64_t seed;              //  level draw seed
    double level_mult;          //  1 / ln (m)
    distance_kernel_t kernel;   //  raw SIMD kernel for the metric (distance_kernel)
    bool negate;                //  distance = -kernel (dot products)
    const float *base;          //  vectors: base + slot * stride, or
    size_t stride;              //    floats between two vectors
    hnsw_vector_fn get;         //  vectors from a callback (if not NULL)
    void *get_arg;              //  its argument
    pthread_rwlock_t grow;      //  read: search/insert/delete; write: growth
    uint32_t capacity;          //  slots the arrays below cover
    size_t stride0;             //  uint32s per node in level0: 1 + m0
    size_t stride_up;           //  uint32s per upper level list: 1 + m
    uint32_t *level0;           //  capacity * stride0: count, then m0 ids
    uint32_t **upper;           //  per slot: level * stride_up, or NULL
    uint8_t *levels;            //  per slot: top level, or S_ABSENT
    uint8_t *locks;             //  per slot: spinlock over its link lists
    uint32_t *indeg;            //  per slot (atomic): level-0 lists that hold it
    uint64_t *deleted;          //  bitmap over slots: marked deleted
    uint64_t entry;             //  atomic: top level << 32 | entry slot
    pthread_mutex_t top_lock;   //  held by an insert that raises the top
    size_t node_count;          //  atomic: slots in the graph
    size_t deleted_count;       //  atomic: of which marked deleted
    size_t upper_bytes;         //  atomic: bytes of upper lists
    pthread_mutex_t pool_lock;  //  guards pool
    s_ctx_t *pool;              //  free search contexts
};

//  --- vectors and distances ------------------------------------------------
static inline const float *
s_vec (const hnsw_t *self, uint32_t slot)
{
    if (self->get)
        return self->get (slot, self->get_arg);
    return self->base + (size_t) slot * self->stride;
}

static inline float
s_dist (const hnsw_t *self, const float *a, const float *b)
{
    float d = self->kernel (a, b, self->dim);
    return self->negate ? -d : d;
}

//  Starts loading a vector before it is measured: every line of it, up to
//  4 KB. A search is bound by memory (a random 784-float row costs ~250 ns
//  from DRAM against ~40 ns from cache), so what counts is how many rows
//  are in flight at once: the neighbours' first lines are requested
//  together, then each row in full while the one before it is measured.
//  (Stopping a squared L2 sum early once it passes the bound measured no
//  faster: a rejected neighbour crosses the bound late in its row.)
static inline void
s_prefetch_vec (const hnsw_t *self, const float *v)
{
    const char *p = (const char *) v;
    size_t bytes = (size_t) self->dim * sizeof (float);
    if (bytes > 4096)
        bytes = 4096;
    for (size_t off = 0; off < bytes; off += 64)
        __builtin_prefetch (p + off, 0, 3);
}

//  --- atomics and locks -----------------------------------------------------
static inline uint32_t
s_load (const uint32_t *p)
{
    return __atomic_load_n (p, __ATOMIC_ACQUIRE);
}

static inline void
s_store (uint32_t *p, uint32_t v)
{
    __atomic_store_n (p, v, __ATOMIC_RELEASE);
}

static inline void
s_cpu_relax (void)
{
#if defined (__x86_64__) || defined (__i386__)
    __builtin_ia32_pause ();
#elif defined (__aarch64__)
    __asm__ __volatile__ ("yield");
#endif
}

static inline void
s_lock (hnsw_t *self, uint32_t slot)
{
    uint8_t *l = &self->locks [slot];
    unsigned spins = 0;
    while (__atomic_exchange_n (l, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n (l, __ATOMIC_RELAXED)) {
            if (++spins < 64)
                s_cpu_relax ();
            else
                sched_yield ();
        }
    }
}

static inline void
s_unlock (hnsw_t *self, uint32_t slot)
{
    __atomic_store_n (&self->locks [slot], 0, __ATOMIC_RELEASE);
}

static inline uint32_t
s_level_of (const hnsw_t *self, uint32_t slot)
{
    return __atomic_load_n (&self->levels [slot], __ATOMIC_ACQUIRE);
}

static inline bool
s_is_deleted (const hnsw_t *self, uint32_t slot)
{
    uint64_t word = __atomic_load_n (&self->deleted [slot >> 6], __ATOMIC_RELAXED);
    return (word >> (slot & 63)) & 1;
}

//  The link list of slot at level: [0] = count, then the ids.
static inline uint32_t *
s_links (const hnsw_t *self, uint32_t slot, uint32_t level)
{
    if (level == 0)
        return self->level0 + (size_t) slot * self->stride0;
    uint32_t *up = __atomic_load_n (&self->upper [slot], __ATOMIC_ACQUIRE);
    return up + (size_t) (level - 1) * self->stride_up;
}

static inline uint32_t
s_max_links (const hnsw_t *self, uint32_t level)
{
    return level == 0 ? self->m0 : self->m;
}

//  Level of a new node: depends on the seed and the slot only, so a graph
//  is the same whatever order threads insert in (up to the races).
static uint32_t
s_draw_level (const hnsw_t *self, uint32_t slot)
{
    //  splitmix64 of (seed, slot)
    uint64_t x = self->seed + ((uint64_t) slot + 1) * 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    x ^= x >> 31;
    double u = (double) ((x >> 11) + 1) * 0x1p-53;      //  (0, 1]
    double level = -log (u) * self->level_mult;
    return level >= S_MAX_LEVEL ? S_MAX_LEVEL : (uint32_t) level;
}

//  --- heaps -----------------------------------------------------------------
static void *
s_grow_array (void *array, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return array;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *grown = realloc (array, n * elem);
    assert (grown);
    *cap = n;
    return grown;
}

static inline void
s_cand_push (s_ctx_t *ctx, float dist, uint32_t slot)
{
    if (ctx->cand_n == ctx->cand_cap)
        ctx->cand = s_grow_array (ctx->cand, &ctx->cand_cap, ctx->cand_n + 1,
                                  sizeof (s_pair_t));
    s_pair_t *h = ctx->cand;
    size_t i = ctx->cand_n++;
    while (i > 0) {
        size_t parent = (i - 1) >> 1;
        if (h [parent].dist <= dist)
            break;
        h [i] = h [parent];
        i = parent;
    }
    h [i] = (s_pair_t) { dist, slot };
}

static inline void
s_cand_pop (s_ctx_t *ctx)
{
    s_pair_t *h = ctx->cand;
    size_t n = --ctx->cand_n;
    if (n == 0)
        return;
    s_pair_t last = h [n];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && h [child + 1].dist < h [child].dist)
            child++;
        if (last.dist <= h [child].dist)
            break;
        h [i] = h [child];
        i = child;
    }
    h [i] = last;
}

static inline void
s_res_push (s_ctx_t *ctx, float dist, uint32_t slot)
{
    s_pair_t *h = ctx->res;
    size_t i = ctx->res_n++;
    assert (ctx->res_n <= ctx->res_cap);
    while (i > 0) {
        size_t parent = (i - 1) >> 1;
        if (h [parent].dist >= dist)
            break;
        h [i] = h [parent];
        i = parent;
    }
    h [i] = (s_pair_t) { dist, slot };
}

static inline void
s_res_pop (s_ctx_t *ctx)
{
    s_pair_t *h = ctx->res;
    size_t n = --ctx->res_n;
    if (n == 0)
        return;
    s_pair_t last = h [n];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && h [child + 1].dist > h [child].dist)
            child++;
        if (last.dist >= h [child].dist)
            break;
        h [i] = h [child];
        i = child;
    }
    h [i] = last;
}

//  Empties the result heap into out, nearest first; returns the count.
static size_t
s_res_drain (s_ctx_t *ctx, s_pair_t *out)
{
    size_t n = ctx->res_n;
    for (size_t i = n; i > 0; i--) {
        out [i - 1] = ctx->res [0];
        s_res_pop (ctx);
    }
    return n;
}

//  --- search contexts ---------------------------------------------------------
//  A context sized for the current capacity and a result list of ef. Called
//  with the grow lock read-held, so capacity cannot change under it.
static s_ctx_t *
s_ctx_get (hnsw_t *self, size_t ef)
{
    pthread_mutex_lock (&self->pool_lock);
    s_ctx_t *ctx = self->pool;
    if (ctx)
        self->pool = ctx->next;
    pthread_mutex_unlock (&self->pool_lock);
    if (!ctx) {
        ctx = calloc (1, sizeof *ctx);
        assert (ctx);
    }
    if (ctx->visited_cap < self->capacity) {
        free (ctx->visited);
        ctx->visited = calloc (self->capacity, sizeof (uint16_t));
        assert (ctx->visited);
        ctx->visited_cap = self->capacity;
        ctx->tag = 0;
    }
    ctx->res = s_grow_array (ctx->res, &ctx->res_cap, ef + 1, sizeof (s_pair_t));
    ctx->cand_n = 0;
    ctx->res_n = 0;
    return ctx;
}

static void
s_ctx_put (hnsw_t *self, s_ctx_t *ctx)
{
    pthread_mutex_lock (&self->pool_lock);
    ctx->next = self->pool;
    self->pool = ctx;
    pthread_mutex_unlock (&self->pool_lock);
}

static void
s_ctx_free (s_ctx_t *ctx)
{
    free (ctx->visited);
    free (ctx->cand);
    free (ctx->res);
    free (ctx->work);
    free (ctx->sel);
    free (ctx->chosen);
    free (ctx);
}

//  A fresh epoch: every slot reads as unvisited.
static inline uint16_t
s_ctx_new_tag (s_ctx_t *ctx)
{
    if (++ctx->tag == 0) {
        memset (ctx->visited, 0, ctx->visited_cap * sizeof (uint16_t));
        ctx->tag = 1;
    }
    return ctx->tag;
}

//  --- search ------------------------------------------------------------------
//  Greedy descent (Alg. 2 with ef = 1) from *ep at level `from` down to
//  level `to` + 1; *ep and *ep_dist become the closest node found.
static void
s_greedy (const hnsw_t *self, const float *query, uint32_t *ep, float *ep_dist,
          uint32_t from, uint32_t to)
{
    uint32_t cur = *ep;
    float cur_dist = *ep_dist;
    for (uint32_t level = from; level > to; level--) {
        bool changed = true;
        while (changed) {
            changed = false;
            const uint32_t *links = s_links (self, cur, level);
            uint32_t n = s_load (links);
            if (n > self->m)
                n = self->m;
            for (uint32_t i = 0; i < n; i++)
                __builtin_prefetch (s_vec (self, s_load (links + 1 + i)), 0, 3);
            if (n)
                s_prefetch_vec (self, s_vec (self, s_load (links + 1)));
            for (uint32_t i = 0; i < n; i++) {
                uint32_t id = s_load (links + 1 + i);
                if (i + 1 < n)
                    s_prefetch_vec (self, s_vec (self, s_load (links + 2 + i)));
                float d = s_dist (self, query, s_vec (self, id));
                if (d < cur_dist) {
                    cur_dist = d;
                    cur = id;
                    changed = true;
                }
            }
        }
    }
    *ep = cur;
    *ep_dist = cur_dist;
}

//  What a search may return: live, not excluded, and accepted by the filter.
static inline bool
s_returnable (const hnsw_t *self, uint32_t slot, uint32_t exclude,
              hnsw_accept_fn accept, void *arg)
{
    return slot != exclude && !s_is_deleted (self, slot)
        && (!accept || accept (slot, arg));
}

//  Best-first search at one level (Alg. 2) from ep: leaves the ef nearest
//  returnable nodes found in ctx->res. Rejected (filtered, deleted,
//  excluded) nodes are still walked through, as hnswlib does, so a filter
//  does not cut the graph into pieces.
static void
s_search_level (const hnsw_t *self, s_ctx_t *ctx, const float *query, uint32_t ep,
                float ep_dist, uint32_t level, size_t ef, uint32_t exclude,
                hnsw_accept_fn accept, void *arg)
{
    uint16_t *visited = ctx->visited;
    uint16_t tag = s_ctx_new_tag (ctx);
    uint32_t max_links = s_max_links (self, level);
    ctx->cand_n = 0;
    ctx->res_n = 0;

    visited [ep] = tag;
    s_cand_push (ctx, ep_dist, ep);
    float bound = INFINITY;     //  worst result kept, once there are any
    if (s_returnable (self, ep, exclude, accept, arg)) {
        s_res_push (ctx, ep_dist, ep);
        bound = ep_dist;
    }
    uint32_t todo [2 * HNSW_MAX_M];
    while (ctx->cand_n) {
        s_pair_t cur = ctx->cand [0];
        if (cur.dist > bound && ctx->res_n >= ef)
            break;
        s_cand_pop (ctx);

        const uint32_t *links = s_links (self, cur.slot, level);
        uint32_t n = s_load (links);
        if (n > max_links)
            n = max_links;
        size_t todo_n = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t id = s_load (links + 1 + i);
            if (visited [id] != tag) {
                visited [id] = tag;
                todo [todo_n++] = id;
            }
        }
        for (size_t j = 0; j < todo_n; j++)
            __builtin_prefetch (s_vec (self, todo [j]), 0, 3);
        if (todo_n)
            s_prefetch_vec (self, s_vec (self, todo [0]));
        for (size_t j = 0; j < todo_n; j++) {
            uint32_t id = todo [j];
            if (j + 1 < todo_n)
                s_prefetch_vec (self, s_vec (self, todo [j + 1]));
            float d = s_dist (self, query, s_vec (self, id));
            if (ctx->res_n < ef || d < bound) {
                s_cand_push (ctx, d, id);
                if (s_returnable (self, id, exclude, accept, arg)) {
                    s_res_push (ctx, d, id);
                    if (ctx->res_n > ef)
                        s_res_pop (ctx);
                    bound = ctx->res [0].dist;
                }
            }
        }
    }
}

//  --- neighbour selection -----------------------------------------------------
//  The heuristic of Alg. 4: from cands (nearest to the base first), keep a
//  candidate only if it is closer to the base than to every one kept so far,
//  up to max; fewer than max candidates are all kept (as hnswlib). Returns
//  the count written to out.
static size_t
s_select (const hnsw_t *self, const s_pair_t *cands, size_t n, size_t max,
          s_pair_t *out)
{
    if (n < max) {
        memcpy (out, cands, n * sizeof *cands);
        return n;
    }
    size_t kept = 0;
    for (size_t i = 0; i < n && kept < max; i++) {
        const float *v = s_vec (self, cands [i].slot);
        bool good = true;
        for (size_t j = 0; j < kept; j++)
            if (s_dist (self, v, s_vec (self, out [j].slot)) < cands [i].dist) {
                good = false;
                break;
            }
        if (good)
            out [kept++] = cands [i];
    }
    return kept;
}

static void
s_sort_pairs (s_pair_t *a, size_t n)
{
    //  Insertion sort: lists are at most 2 * m + a few long.
    for (size_t i = 1; i < n; i++) {
        s_pair_t x = a [i];
        size_t j = i;
        while (j > 0 && a [j - 1].dist > x.dist) {
            a [j] = a [j - 1];
            j--;
        }
        a [j] = x;
    }
}

static void
s_ctx_reserve_work (s_ctx_t *ctx, size_t n)
{
    ctx->work = s_grow_array (ctx->work, &ctx->work_cap, n, sizeof (s_pair_t));
    ctx->sel = s_grow_array (ctx->sel, &ctx->sel_cap, n, sizeof (s_pair_t));
}

//  --- level-0 in-degrees and orphans ------------------------------------------
//  A node no level-0 list holds can never be reached, so never returned,
//  not even for its own vector. The heuristic makes such orphans by itself
//  (hnswlib too: 182 of Fashion-MNIST's 60,000 points): a node close to a
//  neighbour is dropped from every list in favour of that neighbour. So
//  every level-0 list change counts, per node, how many lists hold it, and
//  the thread whose change takes a node's count to zero links it back in
//  (s_rescue).

//  Most orphans one list change can make: its old list.
#define S_MAX_ORPHANS (2 * HNSW_MAX_M)

static inline uint32_t
s_indeg (const hnsw_t *self, uint32_t slot)
{
    return __atomic_load_n (&self->indeg [slot], __ATOMIC_RELAXED);
}

static inline void
s_indeg_inc (hnsw_t *self, uint32_t slot)
{
    __atomic_add_fetch (&self->indeg [slot], 1, __ATOMIC_RELAXED);
}

//  Counts a level-0 list going from old (n_old ids) to new (n_new pairs):
//  ids that left are counted down, ids that came are counted up; those
//  whose count reached zero are added to orphans (room for S_MAX_ORPHANS).
static void
s_account (hnsw_t *self, const uint32_t *old, size_t n_old, const s_pair_t *new,
           size_t n_new, uint32_t *orphans, size_t *n_orphans)
{
    for (size_t i = 0; i < n_old; i++) {
        bool kept = false;
        for (size_t j = 0; j < n_new && !kept; j++)
            kept = new [j].slot == old [i];
        if (!kept
        &&  __atomic_sub_fetch (&self->indeg [old [i]], 1, __ATOMIC_RELAXED) == 0
        &&  *n_orphans < S_MAX_ORPHANS)
            orphans [(*n_orphans)++] = old [i];
    }
    for (size_t j = 0; j < n_new; j++) {
        bool had = false;
        for (size_t i = 0; i < n_old && !had; i++)
            had = old [i] == new [j].slot;
        if (!had)
            s_indeg_inc (self, new [j].slot);
    }
}

//  Links an orphan back in at level 0, from the nodes its own list names
//  (its nearest, nearest first): the first with room takes it; if all are
//  full, the first whose list holds a node that other lists hold too gives
//  that slot up for it, so no new orphan is made. One lock at a time; a
//  node someone else linked meanwhile is left alone.
static void
s_rescue (hnsw_t *self, uint32_t orphan)
{
    uint64_t entry = __atomic_load_n (&self->entry, __ATOMIC_ACQUIRE);
    if (entry == S_NO_ENTRY || (uint32_t) entry == orphan)
        return;
    const uint32_t *own = s_links (self, orphan, 0);
    uint32_t n = s_load (own);
    if (n > self->m0)
        n = self->m0;
    uint32_t near [2 * HNSW_MAX_M];
    for (uint32_t i = 0; i < n; i++)
        near [i] = s_load (own + 1 + i);
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; i < n; i++) {
            uint32_t host = near [i];
            if (host == orphan)
                continue;
            s_lock (self, host);
            if (s_indeg (self, orphan) > 0) {
                s_unlock (self, host);
                return;
            }
            uint32_t *links = s_links (self, host, 0);
            uint32_t count = s_load (links);
            if (count > self->m0)
                count = self->m0;
            bool done = false;
            if (pass == 0 && count < self->m0) {
                s_store (links + 1 + count, orphan);
                s_store (links, count + 1);
                done = true;
            }
            else
            if (pass == 1) {
                //  Give up the member the most other lists hold.
                uint32_t best = count, best_deg = 1;
                for (uint32_t j = 0; j < count; j++) {
                    uint32_t deg = s_indeg (self, s_load (links + 1 + j));
                    if (deg > best_deg) {
                        best = j;
                        best_deg = deg;
                    }
                }
                if (best < count) {
                    uint32_t gone = s_load (links + 1 + best);
                    s_store (links + 1 + best, orphan);
                    __atomic_sub_fetch (&self->indeg [gone], 1, __ATOMIC_RELAXED);
                    done = true;
                }
            }
            if (done)
                s_indeg_inc (self, orphan);
            s_unlock (self, host);
            if (done)
                return;
        }
}

static void
s_rescue_all (hnsw_t *self, const uint32_t *orphans, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s_indeg (self, orphans [i]) == 0)
            s_rescue (self, orphans [i]);
}

//  Writes ids as the list of slot at level (caller holds the slot's lock).
static void
s_write_links (uint32_t *links, const s_pair_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s_store (links + 1 + i, ids [i].slot);
    s_store (links, (uint32_t) n);
}

//  Adds `add` (with extra_n extra entries, e.g. a new neighbour) to the list
//  of slot at level, all measured from slot; if the list overflows, it is
//  re-chosen by the heuristic. replace: drop the old list first. Takes the
//  slot's lock.
static void
s_merge_links (hnsw_t *self, s_ctx_t *ctx, uint32_t slot, uint32_t level,
               const s_pair_t *add, size_t add_n, bool replace)
{
    uint32_t max = s_max_links (self, level);
    s_ctx_reserve_work (ctx, max + add_n + 1);
    const float *base = s_vec (self, slot);
    uint32_t old [2 * HNSW_MAX_M];
    uint32_t orphans [S_MAX_ORPHANS];
    size_t n_orphans = 0;
    s_lock (self, slot);
    uint32_t *links = s_links (self, slot, level);
    uint32_t old_count = s_load (links);
    if (old_count > max)
        old_count = max;
    for (uint32_t i = 0; i < old_count; i++)
        old [i] = s_load (links + 1 + i);
    uint32_t n = replace ? 0 : old_count;
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++)
        ctx->work [total++] = (s_pair_t) { NAN, old [i] };
    size_t old_n = total;
    for (size_t i = 0; i < add_n; i++) {
        bool dup = add [i].slot == slot;
        for (size_t j = 0; j < total && !dup; j++)
            dup = ctx->work [j].slot == add [i].slot;
        if (!dup)
            ctx->work [total++] = add [i];
    }
    if (total == old_n && !replace) {
        s_unlock (self, slot);
        return;
    }
    const s_pair_t *list = ctx->work;
    size_t kept = total;
    if (total <= max) {
        //  Room for all: append in place (readers see the old count until
        //  the new ids are stored).
        for (size_t i = old_n; i < total; i++)
            s_store (links + 1 + i, ctx->work [i].slot);
        s_store (links, (uint32_t) total);
    }
    else {
        for (size_t i = 0; i < old_n; i++)
            ctx->work [i].dist = s_dist (self, base, s_vec (self, ctx->work [i].slot));
        s_sort_pairs (ctx->work, total);
        kept = s_select (self, ctx->work, total, max, ctx->sel);
        s_write_links (links, ctx->sel, kept);
        list = ctx->sel;
    }
    if (level == 0)
        s_account (self, old, old_count, list, kept, orphans, &n_orphans);
    s_unlock (self, slot);
    s_rescue_all (self, orphans, n_orphans);
}

//  Links slot (already in the graph with its level set) at levels <= its
//  level from the entry point: search ef_construct candidates per level,
//  keep m by the heuristic, and link both ways. replace: the slot's old
//  lists go (an update); else links others added meanwhile stay.
//
//  The searches run top-down (each level's nearest is the next one's entry)
//  but the links are written bottom-up, level 0 first, and at each level
//  the slot's own list before any back-link. So once another thread can
//  reach the slot at some level (through a back-link), every list it may
//  descend to from there is already written. Written top-down, as in the
//  paper, an insert that reaches the slot at level 1 while the slot's
//  level-0 list is still empty finds nothing but the slot at level 0 and
//  hangs its whole level-0 neighbourhood on it: a node linked from one
//  list only, which the next prune of that list can orphan for good.
static void
s_connect (hnsw_t *self, s_ctx_t *ctx, uint32_t slot, uint32_t level, uint64_t entry,
           bool replace)
{
    uint32_t ep = (uint32_t) entry;
    uint32_t top = (uint32_t) (entry >> 32);
    const float *q = s_vec (self, slot);
    float ep_dist = s_dist (self, q, s_vec (self, ep));
    if (level < top)
        s_greedy (self, q, &ep, &ep_dist, top, level);
    size_t ef = self->ef_construct;
    uint32_t high = level < top ? level : top;
    ctx->chosen = s_grow_array (ctx->chosen, &ctx->chosen_cap,
                                (size_t) (high + 1) * self->m, sizeof (s_pair_t));
    size_t counts [S_MAX_LEVEL + 1];
    for (uint32_t lc = high; ; lc--) {
        s_search_level (self, ctx, q, ep, ep_dist, lc, ef, slot, NULL, NULL);
        s_ctx_reserve_work (ctx, ctx->res_n + 1);
        size_t found = s_res_drain (ctx, ctx->work);
        if (found == 0 && ep != slot) {
            //  Nothing live reached (all deleted): link to the waypoint so
            //  the node stays reachable.
            ctx->work [0] = (s_pair_t) { ep_dist, ep };
            found = 1;
        }
        if (found) {
            ep = ctx->work [0].slot;
            ep_dist = ctx->work [0].dist;
        }
        counts [lc] = s_select (self, ctx->work, found, self->m,
                                ctx->chosen + (size_t) lc * self->m);
        if (lc == 0)
            break;
    }
    for (uint32_t lc = 0; lc <= high; lc++) {
        const s_pair_t *chosen = ctx->chosen + (size_t) lc * self->m;
        s_merge_links (self, ctx, slot, lc, chosen, counts [lc], replace);
        for (size_t i = 0; i < counts [lc]; i++) {
            s_pair_t back = { chosen [i].dist, slot };
            s_merge_links (self, ctx, chosen [i].slot, lc, &back, 1, false);
        }
        //  Every neighbour's heuristic may have turned the back-link down.
        if (lc == 0 && s_indeg (self, slot) == 0)
            s_rescue (self, slot);
    }
}

//  --- growth ------------------------------------------------------------------
static void
s_grow_locked (hnsw_t *self, uint64_t need)
{
    if (need <= self->capacity)
        return;
    uint64_t cap = self->capacity + self->capacity / 2;
    if (cap < need)
        cap = need;
    if (cap < 1024)
        cap = 1024;
    if (cap > HNSW_NO_SLOT)
        cap = HNSW_NO_SLOT;
    size_t old = self->capacity;
    self->level0 = realloc (self->level0, cap * self->stride0 * sizeof (uint32_t));
    self->upper = realloc (self->upper, cap * sizeof (uint32_t *));
    self->levels = realloc (self->levels, cap);
    self->locks = realloc (self->locks, cap);
    self->indeg = realloc (self->indeg, cap * sizeof (uint32_t));
    size_t words_old = (old + 63) / 64, words = (cap + 63) / 64;
    self->deleted = realloc (self->deleted, words * sizeof (uint64_t));
    assert (self->level0 && self->upper && self->levels && self->locks && self->deleted
            && self->indeg);
    memset (self->level0 + old * self->stride0, 0,
            (cap - old) * self->stride0 * sizeof (uint32_t));
    memset (self->upper + old, 0, (cap - old) * sizeof (uint32_t *));
    memset (self->levels + old, S_ABSENT, cap - old);
    memset (self->locks + old, 0, cap - old);
    memset (self->indeg + old, 0, (cap - old) * sizeof (uint32_t));
    memset (self->deleted + words_old, 0, (words - words_old) * sizeof (uint64_t));
    self->capacity = (uint32_t) cap;
}

//  Takes the grow lock for reading with room for slot, growing first if
//  needed.
static void
s_enter (hnsw_t *self, uint64_t need)
{
    pthread_rwlock_rdlock (&self->grow);
    while (need > self->capacity) {
        pthread_rwlock_unlock (&self->grow);
        pthread_rwlock_wrlock (&self->grow);
        s_grow_locked (self, need);
        pthread_rwlock_unlock (&self->grow);
        pthread_rwlock_rdlock (&self->grow);
    }
}

static void
s_leave (hnsw_t *self)
{
    pthread_rwlock_unlock (&self->grow);
}

//  --- life cycle ----------------------------------------------------------------
static hnsw_t *
s_new (distance_t distance, uint32_t dim, uint32_t m, uint32_t ef, uint64_t seed)
{
    hnsw_t *self = calloc (1, sizeof *self);
    assert (self);
    self->distance = distance;
    self->dim = dim;
    self->m = m;
    self->m0 = 2 * m;
    self->ef_construct = ef;
    self->seed = seed;
    self->level_mult = 1.0 / log ((double) m);
    self->kernel = distance_kernel (distance);
    self->negate = distance == DIST_COSINE || distance == DIST_DOT;
    self->stride = dim;
    self->stride0 = 1 + self->m0;
    self->stride_up = 1 + self->m;
    self->entry = S_NO_ENTRY;
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init (&attr);
    //  A growing insert must not wait behind an endless stream of searches.
    pthread_rwlockattr_setkind_np (&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init (&self->grow, &attr);
    pthread_rwlockattr_destroy (&attr);
    pthread_mutex_init (&self->top_lock, NULL);
    pthread_mutex_init (&self->pool_lock, NULL);
    return self;
}

hnsw_t *
hnsw_new (distance_t distance, uint32_t dim, const hnsw_params_t *params)
{
    hnsw_params_t p = params ? *params : (hnsw_params_t) { 0 };
    if (p.m == 0)
        p.m = 16;
    if (p.ef_construct == 0)
        p.ef_construct = 100;
    if ((unsigned) distance > DIST_MANHATTAN || dim == 0 || dim > S_MAX_DIM
    ||  p.m < 2 || p.m > HNSW_MAX_M || p.ef_construct > HNSW_MAX_EF)
        return NULL;
    return s_new (distance, dim, p.m, p.ef_construct, p.seed);
}

void
hnsw_destroy (hnsw_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    hnsw_t *self = *self_p;
    for (uint32_t i = 0; i < self->capacity; i++)
        free (self->upper [i]);
    free (self->level0);
    free (self->upper);
    free (self->levels);
    free (self->locks);
    free (self->indeg);
    free (self->deleted);
    while (self->pool) {
        s_ctx_t *next = self->pool->next;
        s_ctx_free (self->pool);
        self->pool = next;
    }
    pthread_rwlock_destroy (&self->grow);
    pthread_mutex_destroy (&self->top_lock);
    pthread_mutex_destroy (&self->pool_lock);
    free (self);
    *self_p = NULL;
}

void
hnsw_set_vectors (hnsw_t *self, const float *base, size_t stride)
{
    pthread_rwlock_wrlock (&self->grow);
    self->base = base;
    self->stride = stride < self->dim ? self->dim : stride;
    self->get = NULL;
    self->get_arg = NULL;
    pthread_rwlock_unlock (&self->grow);
}

void
hnsw_set_vector_fn (hnsw_t *self, hnsw_vector_fn fn, void *arg)
{
    pthread_rwlock_wrlock (&self->grow);
    self->get = fn;
    self->get_arg = arg;
    pthread_rwlock_unlock (&self->grow);
}

int
hnsw_reserve (hnsw_t *self, uint32_t capacity)
{
    pthread_rwlock_wrlock (&self->grow);
    s_grow_locked (self, capacity);
    pthread_rwlock_unlock (&self->grow);
    return 0;
}

//  --- writes --------------------------------------------------------------------
//  Relinks a slot whose vector changed in place (hnswlib's updatePoint): each
//  old neighbour re-chooses its list among its own links, the slot's other
//  neighbours and the slot (at its new place), then the slot is connected
//  afresh from the entry point, replacing its old lists.
static void
s_relink (hnsw_t *self, s_ctx_t *ctx, uint32_t slot, uint32_t level)
{
    uint32_t max0 = self->m0;
    s_pair_t *hood = malloc ((max0 + 1) * sizeof *hood);
    assert (hood);
    for (uint32_t lc = 0; lc <= level; lc++) {
        uint32_t max = s_max_links (self, lc);
        const uint32_t *links = s_links (self, slot, lc);
        uint32_t n = s_load (links);
        if (n > max)
            n = max;
        for (uint32_t i = 0; i < n; i++)
            hood [i].slot = s_load (links + 1 + i);
        hood [n].slot = slot;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t nb = hood [i].slot;
            const float *v = s_vec (self, nb);
            //  Candidates for nb: the slot's neighbourhood (slot included)
            //  measured from nb; s_merge_links adds nb's own list.
            s_pair_t add [2 * HNSW_MAX_M + 1];
            size_t add_n = 0;
            for (uint32_t j = 0; j <= n; j++)
                if (hood [j].slot != nb)
                    add [add_n++] = (s_pair_t) {
                        s_dist (self, v, s_vec (self, hood [j].slot)), hood [j].slot };
            //  Re-choose among nb's list + add even when they fit, so a
            //  link to the moved slot that is now poor can go.
            s_ctx_reserve_work (ctx, max + add_n + 1);
            s_lock (self, nb);
            uint32_t *nl = s_links (self, nb, lc);
            uint32_t nn = s_load (nl);
            if (nn > max)
                nn = max;
            size_t total = 0;
            for (uint32_t j = 0; j < nn; j++) {
                uint32_t id = s_load (nl + 1 + j);
                if (id == slot)
                    continue;       //  re-measured through add
                ctx->work [total++] = (s_pair_t) { s_dist (self, v, s_vec (self, id)), id };
            }
            for (size_t j = 0; j < add_n; j++) {
                bool dup = false;
                for (size_t t = 0; t < total && !dup; t++)
                    dup = ctx->work [t].slot == add [j].slot;
                if (!dup)
                    ctx->work [total++] = add [j];
            }
            s_sort_pairs (ctx->work, total);
            size_t kept = s_select (self, ctx->work, total, max, ctx->sel);
            uint32_t old [2 * HNSW_MAX_M];
            for (uint32_t j = 0; j < nn; j++)
                old [j] = s_load (nl + 1 + j);
            s_write_links (nl, ctx->sel, kept);
            uint32_t orphans [S_MAX_ORPHANS];
            size_t n_orphans = 0;
            if (lc == 0)
                s_account (self, old, nn, ctx->sel, kept, orphans, &n_orphans);
            s_unlock (self, nb);
            s_rescue_all (self, orphans, n_orphans);
        }
    }
    free (hood);
    //  The slot's own lists are chosen afresh and replace the old ones; the
    //  search may still walk the old ones (the slot may be the entry).
    if (__atomic_load_n (&self->node_count, __ATOMIC_RELAXED) > 1)
        s_connect (self, ctx, slot, level,
                   __atomic_load_n (&self->entry, __ATOMIC_ACQUIRE), true);
}

int
hnsw_insert (hnsw_t *self, uint32_t slot)
{
    if (slot == HNSW_NO_SLOT)
        return -SH_EINVAL;
    s_enter (self, (uint64_t) slot + 1);
    s_ctx_t *ctx = s_ctx_get (self, self->ef_construct);
    uint32_t level = s_level_of (self, slot);
    if (level != S_ABSENT) {
        s_relink (self, ctx, slot, level);
        uint64_t bit = 1ULL << (slot & 63);
        uint64_t was = __atomic_fetch_and (&self->deleted [slot >> 6], ~bit,
                                           __ATOMIC_RELAXED);
        if (was & bit)
            __atomic_fetch_sub (&self->deleted_count, 1, __ATOMIC_RELAXED);
        s_ctx_put (self, ctx);
        s_leave (self);
        return 0;
    }
    level = s_draw_level (self, slot);
    if (level > 0) {
        size_t bytes = level * self->stride_up * sizeof (uint32_t);
        uint32_t *up = calloc (1, bytes);
        assert (up);
        __atomic_store_n (&self->upper [slot], up, __ATOMIC_RELEASE);
        __atomic_fetch_add (&self->upper_bytes, bytes, __ATOMIC_RELAXED);
    }
    s_store (s_links (self, slot, 0), 0);
    __atomic_store_n (&self->levels [slot], (uint8_t) level, __ATOMIC_RELEASE);

    uint64_t entry = __atomic_load_n (&self->entry, __ATOMIC_ACQUIRE);
    bool top_locked = false;
    if (entry == S_NO_ENTRY || level > (entry >> 32)) {
        //  This insert may become the entry point: one at a time.
        pthread_mutex_lock (&self->top_lock);
        top_locked = true;
        entry = __atomic_load_n (&self->entry, __ATOMIC_ACQUIRE);
        if (entry != S_NO_ENTRY && level <= (entry >> 32)) {
            pthread_mutex_unlock (&self->top_lock);
            top_locked = false;
        }
    }
    if (entry != S_NO_ENTRY)
        s_connect (self, ctx, slot, level, entry, false);
    __atomic_fetch_add (&self->node_count, 1, __ATOMIC_RELAXED);
    if (top_locked) {
        __atomic_store_n (&self->entry, (uint64_t) level << 32 | slot, __ATOMIC_RELEASE);
        pthread_mutex_unlock (&self->top_lock);
    }
    s_ctx_put (self, ctx);
    s_leave (self);
    return 0;
}

int
hnsw_delete (hnsw_t *self, uint32_t slot)
{
    if (slot == HNSW_NO_SLOT)
        return -SH_ENOTFOUND;
    pthread_rwlock_rdlock (&self->grow);
    int rc = 0;
    if (slot >= self->capacity || s_level_of (self, slot) == S_ABSENT)
        rc = -SH_ENOTFOUND;
    else {
        uint64_t bit = 1ULL << (slot & 63);
        uint64_t was = __atomic_fetch_or (&self->deleted [slot >> 6], bit,
                                          __ATOMIC_RELAXED);
        if (!(was & bit))
            __atomic_fetch_add (&self->deleted_count, 1, __ATOMIC_RELAXED);
    }
    pthread_rwlock_unlock (&self->grow);
    return rc;
}

bool
hnsw_contains (hnsw_t *self, uint32_t slot)
{
    pthread_rwlock_rdlock (&self->grow);
    bool yes = slot < self->capacity && s_level_of (self, slot) != S_ABSENT
            && !s_is_deleted (self, slot);
    pthread_rwlock_unlock (&self->grow);
    return yes;
}

//  --- reads ---------------------------------------------------------------------
size_t
hnsw_search (hnsw_t *self, const float *query, size_t k, size_t ef,
             hnsw_accept_fn accept, void *arg, hnsw_hit_t *hits)
{
    if (k == 0)
        return 0;
    pthread_rwlock_rdlock (&self->grow);
    uint64_t entry = __atomic_load_n (&self->entry, __ATOMIC_ACQUIRE);
    if (entry == S_NO_ENTRY) {
        pthread_rwlock_unlock (&self->grow);
        return 0;
    }
    //  No more results than nodes: keeps the heaps bounded by the graph.
    size_t nodes = __atomic_load_n (&self->node_count, __ATOMIC_RELAXED);
    if (nodes == 0)
        nodes = 1;
    if (ef > nodes)
        ef = nodes;
    if (k > nodes)
        k = nodes;
    if (ef < k)
        ef = k;
    s_ctx_t *ctx = s_ctx_get (self, ef);
    uint32_t ep = (uint32_t) entry;
    float ep_dist = s_dist (self, query, s_vec (self, ep));
    s_greedy (self, query, &ep, &ep_dist, (uint32_t) (entry >> 32), 0);
    s_search_level (self, ctx, query, ep, ep_dist, 0, ef, HNSW_NO_SLOT, accept, arg);
    while (ctx->res_n > k)
        s_res_pop (ctx);
    size_t n = ctx->res_n;
    for (size_t i = n; i > 0; i--) {
        hits [i - 1] = (hnsw_hit_t) { ctx->res [0].slot, ctx->res [0].dist };
        s_res_pop (ctx);
    }
    s_ctx_put (self, ctx);
    pthread_rwlock_unlock (&self->grow);
    return n;
}

size_t
hnsw_node_count (hnsw_t *self)
{
    return __atomic_load_n (&self->node_count, __ATOMIC_RELAXED);
}

size_t
hnsw_deleted_count (hnsw_t *self)
{
    return __atomic_load_n (&self->deleted_count, __ATOMIC_RELAXED);
}

size_t
hnsw_size (hnsw_t *self)
{
    size_t nodes = hnsw_node_count (self), deleted = hnsw_deleted_count (self);
    return nodes > deleted ? nodes - deleted : 0;
}

uint32_t
hnsw_dim (const hnsw_t *self)
{
    return self->dim;
}

distance_t
hnsw_distance (const hnsw_t *self)
{
    return self->distance;
}

hnsw_params_t
hnsw_params (const hnsw_t *self)
{
    return (hnsw_params_t) { self->m, self->ef_construct, self->seed };
}

size_t
hnsw_memory (hnsw_t *self)
{
    pthread_rwlock_rdlock (&self->grow);
    size_t cap = self->capacity;
    size_t bytes = sizeof *self
                 + cap * (self->stride0 * sizeof (uint32_t) + sizeof (uint32_t *) + 6)
                 + (cap + 63) / 64 * sizeof (uint64_t)
                 + __atomic_load_n (&self->upper_bytes, __ATOMIC_RELAXED);
    pthread_mutex_lock (&self->pool_lock);
    for (s_ctx_t *c = self->pool; c; c = c->next)
        bytes += sizeof *c + c->visited_cap * sizeof (uint16_t)
               + (c->cand_cap + c->res_cap + c->work_cap + c->sel_cap + c->chosen_cap)
                 * sizeof (s_pair_t);
    pthread_mutex_unlock (&self->pool_lock);
    pthread_rwlock_unlock (&self->grow);
    return bytes;
}

size_t
hnsw_unreachable (hnsw_t *self)
{
    pthread_rwlock_rdlock (&self->grow);
    uint64_t entry = __atomic_load_n (&self->entry, __ATOMIC_ACQUIRE);
    size_t nodes = __atomic_load_n (&self->node_count, __ATOMIC_RELAXED);
    size_t seen = 0;
    if (entry != S_NO_ENTRY) {
        //  Breadth-first over the level-0 lists from the entry point.
        uint8_t *mark = calloc (self->capacity, 1);
        uint32_t *queue = malloc ((size_t) self->capacity * sizeof (uint32_t));
        assert (mark && queue);
        size_t head = 0, tail = 0;
        queue [tail++] = (uint32_t) entry;
        mark [(uint32_t) entry] = 1;
        while (head < tail) {
            const uint32_t *links = s_links (self, queue [head++], 0);
            uint32_t n = s_load (links);
            if (n > self->m0)
                n = self->m0;
            for (uint32_t i = 0; i < n; i++) {
                uint32_t id = s_load (links + 1 + i);
                if (id < self->capacity && !mark [id]) {
                    mark [id] = 1;
                    queue [tail++] = id;
                }
            }
        }
        seen = tail;
        free (mark);
        free (queue);
    }
    pthread_rwlock_unlock (&self->grow);
    return nodes > seen ? nodes - seen : 0;
}

//  --- persistence ---------------------------------------------------------------
//  File: header (S_HEADER_SIZE bytes, little-endian), levels (one byte per
//  slot below capacity, S_ABSENT if none), the deleted bitmap (capacity
//  bits, LSB first), then for every slot in the graph in slot order its
//  lists from level 0 up (a u32 count and count u32 ids), and last a
//  BLAKE2b hash (crypto_generichash, 32 bytes) of everything before it.

#define S_IO_BUF (1 << 20)

//  Buffered file I/O that hashes what passes through it: whole buffers go
//  to fwrite/fread and the hash, not one id at a time.
typedef struct {
    FILE *file;                         //  open file
    crypto_generichash_state hash;      //  over every byte put / taken so far
    bool hashing;                       //  read: taken bytes still go to the hash
    uint8_t *buf;                       //  S_IO_BUF bytes
    size_t len;                         //  write: bytes waiting; read: bytes in buf
    size_t pos;                         //  read: bytes of buf taken
    size_t hashed;                      //  read: bytes of buf hashed
    bool failed;                        //  a read or write failed / ran short
} s_io_t;

static void
s_io_init (s_io_t *io, FILE *file)
{
    *io = (s_io_t) { .file = file, .hashing = true, .buf = malloc (S_IO_BUF) };
    assert (io->buf);
    crypto_generichash_init (&io->hash, NULL, 0, S_HASH_SIZE);
}

//  Write side: hashes and writes what is waiting.
static void
s_io_flush (s_io_t *io)
{
    if (io->len && !io->failed) {
        crypto_generichash_update (&io->hash, io->buf, io->len);
        if (fwrite (io->buf, 1, io->len, io->file) != io->len)
            io->failed = true;
    }
    io->len = 0;
}

static void
s_put (s_io_t *io, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len && !io->failed) {
        if (io->len == S_IO_BUF)
            s_io_flush (io);
        size_t n = S_IO_BUF - io->len < len ? S_IO_BUF - io->len : len;
        memcpy (io->buf + io->len, p, n);
        io->len += n;
        p += n;
        len -= n;
    }
}

//  Read side: hashes the bytes of buf taken and not yet hashed.
static void
s_io_hash_taken (s_io_t *io)
{
    if (io->hashing && io->pos > io->hashed)
        crypto_generichash_update (&io->hash, io->buf + io->hashed, io->pos - io->hashed);
    io->hashed = io->pos;
}

static bool
s_get (s_io_t *io, void *data, size_t len)
{
    uint8_t *p = data;
    while (len) {
        if (io->failed)
            return false;
        if (io->pos == io->len) {
            s_io_hash_taken (io);
            io->len = fread (io->buf, 1, S_IO_BUF, io->file);
            io->pos = io->hashed = 0;
            if (io->len == 0) {
                io->failed = true;
                return false;
            }
        }
        size_t n = io->len - io->pos < len ? io->len - io->pos : len;
        memcpy (p, io->buf + io->pos, n);
        io->pos += n;
        p += n;
        len -= n;
    }
    return true;
}

static void
s_put_u32 (s_io_t *io, uint32_t v)
{
    uint8_t b [4] = { (uint8_t) v, (uint8_t) (v >> 8), (uint8_t) (v >> 16),
                      (uint8_t) (v >> 24) };
    s_put (io, b, 4);
}

static void
s_put_u64 (s_io_t *io, uint64_t v)
{
    s_put_u32 (io, (uint32_t) v);
    s_put_u32 (io, (uint32_t) (v >> 32));
}

static uint32_t
s_get_u32 (s_io_t *io)
{
    uint8_t b [4] = { 0 };
    s_get (io, b, 4);
    return (uint32_t) b [0] | (uint32_t) b [1] << 8 | (uint32_t) b [2] << 16
         | (uint32_t) b [3] << 24;
}

static uint64_t
s_get_u64 (s_io_t *io)
{
    uint64_t lo = s_get_u32 (io);
    return lo | (uint64_t) s_get_u32 (io) << 32;
}

static int
s_fsync_dir_of (const char *path)
{
    char *copy = strdup (path);
    assert (copy);
    int fd = open (dirname (copy), O_RDONLY | O_DIRECTORY);
    free (copy);
    if (fd < 0)
        return -SH_EIO;
    int rc = fsync (fd) == 0 ? 0 : -SH_EIO;
    close (fd);
    return rc;
}

int
hnsw_save (hnsw_t *self, const char *path, uint64_t covered_seq)
{
    size_t len = strlen (path);
    char *tmp = malloc (len + 5);
    assert (tmp);
    memcpy (tmp, path, len);
    memcpy (tmp + len, ".tmp", 5);
    FILE *file = fopen (tmp, "wb");
    if (!file) {
        log_warn ("hnsw: cannot create %s: %s", tmp, strerror (errno));
        free (tmp);
        return -SH_EIO;
    }
    s_io_t io;
    s_io_init (&io, file);

    //  No writer runs beside a save (hnsw.h), so the arrays stay where they
    //  are: the grow lock is taken only to read where that is, not held
    //  while the file is written (hnsw_set_vectors, which a shard's writer
    //  calls holding its gate, would wait for the whole save).
    pthread_rwlock_rdlock (&self->grow);
    uint32_t cap = self->capacity;
    pthread_rwlock_unlock (&self->grow);
    //  Only slots up to the last one in the graph are written.
    while (cap > 0 && self->levels [cap - 1] == S_ABSENT)
        cap--;
    uint64_t entry = __atomic_load_n (&self->entry, __ATOMIC_ACQUIRE);
    uint32_t nodes = 0, deleted = 0;
    for (uint32_t i = 0; i < cap; i++)
        if (self->levels [i] != S_ABSENT) {
            nodes++;
            deleted += s_is_deleted (self, i);
        }
    s_put (&io, S_MAGIC, 8);
    s_put_u32 (&io, S_VERSION);
    s_put_u32 (&io, (uint32_t) self->distance);
    s_put_u32 (&io, self->dim);
    s_put_u32 (&io, self->m);
    s_put_u32 (&io, self->ef_construct);
    s_put_u64 (&io, self->seed);
    s_put_u64 (&io, covered_seq);
    s_put_u32 (&io, cap);
    s_put_u32 (&io, nodes);
    s_put_u32 (&io, deleted);
    s_put_u32 (&io, entry == S_NO_ENTRY ? HNSW_NO_SLOT : (uint32_t) entry);
    s_put_u32 (&io, entry == S_NO_ENTRY ? 0 : (uint32_t) (entry >> 32));
    s_put (&io, self->levels, cap);
    for (uint32_t i = 0; i < cap; i += 8) {
        uint8_t byte = 0;
        for (uint32_t b = 0; b < 8 && i + b < cap; b++)
            byte |= (uint8_t) (s_is_deleted (self, i + b) << b);
        s_put (&io, &byte, 1);
    }
    for (uint32_t i = 0; i < cap && !io.failed; i++) {
        uint32_t level = self->levels [i];
        if (level == S_ABSENT)
            continue;
        for (uint32_t lc = 0; lc <= level; lc++) {
            const uint32_t *links = s_links (self, i, lc);
            uint32_t n = s_load (links);
            uint32_t max = s_max_links (self, lc);
            if (n > max)
                n = max;
            uint8_t list [4 * (1 + 2 * HNSW_MAX_M)];
            for (uint32_t j = 0; j <= n; j++) {
                uint32_t v = j ? s_load (links + j) : n;
                list [4 * j] = (uint8_t) v;
                list [4 * j + 1] = (uint8_t) (v >> 8);
                list [4 * j + 2] = (uint8_t) (v >> 16);
                list [4 * j + 3] = (uint8_t) (v >> 24);
            }
            s_put (&io, list, 4 * ((size_t) n + 1));
        }
    }

    s_io_flush (&io);
    free (io.buf);
    uint8_t hash [S_HASH_SIZE];
    crypto_generichash_final (&io.hash, hash, sizeof hash);
    if (!io.failed && fwrite (hash, 1, sizeof hash, file) != sizeof hash)
        io.failed = true;
    if (fflush (file) != 0 || fsync (fileno (file)) != 0)
        io.failed = true;
    if (fclose (file) != 0)
        io.failed = true;
    int rc = 0;
    if (io.failed || rename (tmp, path) != 0) {
        log_warn ("hnsw: cannot write %s: %s", path, strerror (errno));
        unlink (tmp);
        rc = -SH_EIO;
    }
    else
        rc = s_fsync_dir_of (path);
    free (tmp);
    return rc;
}

//  Reads the lists of every node into self (levels already set): every
//  count and id is checked against the graph, so a corrupt file that
//  still hashes wrong is never followed before the hash is checked.
static int
s_load_lists (hnsw_t *self, s_io_t *io, uint32_t cap, off_t *left)
{
    for (uint32_t i = 0; i < cap; i++) {
        uint32_t level = self->levels [i];
        if (level == S_ABSENT)
            continue;
        if (level > 0) {
            size_t bytes = level * self->stride_up * sizeof (uint32_t);
            self->upper [i] = calloc (1, bytes);
            assert (self->upper [i]);
            self->upper_bytes += bytes;
        }
        for (uint32_t lc = 0; lc <= level; lc++) {
            uint32_t n = s_get_u32 (io);
            if (io->failed)
                return -SH_EIO;
            if (n > s_max_links (self, lc))
                return -SH_EPROTO;
            //  Every id is 4 bytes of what is left of the file.
            if ((off_t) n * 4 + 4 > *left)
                return -SH_EIO;
            *left -= (off_t) n * 4 + 4;
            uint32_t *links = s_links (self, i, lc);
            uint8_t list [4 * 2 * HNSW_MAX_M];
            if (!s_get (io, list, 4 * (size_t) n))
                return -SH_EIO;
            for (uint32_t j = 0; j < n; j++) {
                const uint8_t *b = list + 4 * j;
                uint32_t id = (uint32_t) b [0] | (uint32_t) b [1] << 8
                            | (uint32_t) b [2] << 16 | (uint32_t) b [3] << 24;
                if (id >= cap || id == i || self->levels [id] == S_ABSENT
                ||  self->levels [id] < lc)
                    return -SH_EPROTO;
                links [1 + j] = id;
                if (lc == 0)
                    self->indeg [id]++;
            }
            links [0] = n;
        }
    }
    return 0;
}

int
hnsw_load (const char *path, hnsw_t **self_p, uint64_t *covered_seq)
{
    *self_p = NULL;
    FILE *file = fopen (path, "rb");
    if (!file)
        return -SH_EIO;
    struct stat st;
    if (fstat (fileno (file), &st) != 0) {
        fclose (file);
        return -SH_EIO;
    }
    off_t left = st.st_size - S_HEADER_SIZE - S_HASH_SIZE;
    if (left < 0) {
        fclose (file);
        return -SH_EIO;
    }
    s_io_t io;
    s_io_init (&io, file);
    char magic [8];
    s_get (&io, magic, 8);
    uint32_t version = s_get_u32 (&io);
    uint32_t distance = s_get_u32 (&io);
    uint32_t dim = s_get_u32 (&io);
    uint32_t m = s_get_u32 (&io);
    uint32_t ef = s_get_u32 (&io);
    uint64_t seed = s_get_u64 (&io);
    uint64_t seq = s_get_u64 (&io);
    uint32_t cap = s_get_u32 (&io);
    uint32_t nodes = s_get_u32 (&io);
    uint32_t deleted = s_get_u32 (&io);
    uint32_t entry = s_get_u32 (&io);
    uint32_t top = s_get_u32 (&io);
    if (io.failed) {
        free (io.buf);
        fclose (file);
        return -SH_EIO;
    }
    if (memcmp (magic, S_MAGIC, 8) != 0 || version != S_VERSION
    ||  distance > DIST_MANHATTAN || dim == 0 || dim > S_MAX_DIM
    ||  m < 2 || m > HNSW_MAX_M || ef == 0 || ef > HNSW_MAX_EF
    ||  cap == HNSW_NO_SLOT || nodes > cap || deleted > nodes
    ||  top > S_MAX_LEVEL) {
        free (io.buf);
        fclose (file);
        return -SH_EPROTO;
    }
    //  Levels and bitmap must be in the file before anything is allocated
    //  for them (a corrupt cap cannot ask for gigabytes).
    off_t fixed = (off_t) cap + ((off_t) cap + 7) / 8;
    if (fixed > left) {
        free (io.buf);
        fclose (file);
        return -SH_EIO;
    }
    left -= fixed;
    hnsw_t *self = s_new ((distance_t) distance, dim, m, ef, seed);
    s_grow_locked (self, cap);
    int rc = 0;
    uint8_t *bits = malloc (((size_t) cap + 7) / 8 + 1);
    assert (bits);
    if (!s_get (&io, self->levels, cap) || !s_get (&io, bits, ((size_t) cap + 7) / 8))
        rc = -SH_EIO;
    //  The counts and the entry point must agree with the levels.
    uint32_t seen = 0, seen_deleted = 0, max_level = 0;
    for (uint32_t i = 0; i < cap && rc == 0; i++) {
        uint32_t level = self->levels [i];
        bool del = (bits [i / 8] >> (i % 8)) & 1;
        if (level == S_ABSENT) {
            if (del)
                rc = -SH_EPROTO;
            continue;
        }
        if (level > S_MAX_LEVEL)
            rc = -SH_EPROTO;
        seen++;
        if (level > max_level)
            max_level = level;
        if (del) {
            seen_deleted++;
            self->deleted [i >> 6] |= 1ULL << (i & 63);
        }
    }
    free (bits);
    if (rc == 0) {
        if (seen != nodes || seen_deleted != deleted)
            rc = -SH_EPROTO;
        else
        if (nodes == 0 ? entry != HNSW_NO_SLOT
                       : entry >= cap || self->levels [entry] == S_ABSENT
                         || self->levels [entry] != top || top != max_level)
            rc = -SH_EPROTO;
    }
    if (rc == 0)
        rc = s_load_lists (self, &io, cap, &left);
    if (rc == 0) {
        //  The hash covers what was taken; the file must end with it.
        uint8_t want [S_HASH_SIZE], have [S_HASH_SIZE];
        s_io_hash_taken (&io);
        io.hashing = false;
        crypto_generichash_final (&io.hash, want, sizeof want);
        if (!s_get (&io, have, sizeof have))
            rc = -SH_EIO;
        else
        if (sodium_memcmp (want, have, sizeof want) != 0
        ||  io.pos != io.len || fgetc (file) != EOF)
            rc = -SH_EPROTO;
    }
    free (io.buf);
    fclose (file);
    if (rc != 0) {
        hnsw_destroy (&self);
        return rc;
    }
    self->node_count = nodes;
    self->deleted_count = deleted;
    self->entry = nodes ? (uint64_t) top << 32 | entry : S_NO_ENTRY;
    *self_p = self;
    *covered_seq = seq;
    return 0;
}
