/*  vindex: a shard's HNSW graphs, their background upkeep and their files
    (see vindex.h for who calls what under which side of the gate).

    Per dense vector the optimizer keeps a bitmap of the slots that are live
    nodes of the graph ("in graph"). The segment's indexed marks are a
    subset: nodes whose vector is still the slot's current one. Upkeep is
    then two scans: slots with a vector and no mark are inserted (a slot
    already in the graph is relinked where its new vector belongs, which is
    how hnsw_insert treats it), and in-graph slots with no mark that have no
    vector any more are deleted from the graph. Under the read side of the
    gate no write happens, so both scans see one state.

    Rebuild. When more than a fifth of a graph's nodes are deleted ones, a
    new graph is built beside it from the slots the old one holds current;
    the old one serves searches meanwhile, frozen (new points are scanned
    exactly). The swap needs the gate for writing (vindex_swap): marks of
    slots that changed since they went into the new graph are dropped, and
    the new graph carries on.

    The manifest (little-endian, BLAKE2b over everything before its last 32
    bytes):
      "SHOALVIX" u32 version, u64 covered seq, u64 file tag (the graph files
      are hnsw-<hex name>-<tag as 16 hex digits>.graph), u32 graphs, per graph:
        u16 name length, name, u32 dim, u32 distance, u32 m, u32 ef_construct,
      u32 slots, per slot: u8 live, then if live the 17-byte pointid key,
      per graph: ceil(slots / 64) u64 words: slots it held current,
      32-byte hash.
*/
#include "actors/shard/vindex.h"
#include "common/err.h"
#include "common/log.h"
#include "common/paths.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define S_MAGIC "SHOALVIX"
#define S_VERSION 1
#define S_HASH_SIZE crypto_generichash_BYTES
//  Qdrant's defaults.
#define S_DEFAULT_M 16
#define S_DEFAULT_EF 100
#define S_DEFAULT_FULL_SCAN_KB 10000
#define S_DEFAULT_INDEXING_KB 10000
//  A graph is rebuilt when more than this share of its nodes are deleted,
//  and only from this many nodes on (below, slots are reused soon enough).
#define S_REBUILD_SHARE 0.2
#define S_REBUILD_MIN_NODES 1000
//  Periodic saves: at most this often, and at most a tenth of the time.
#define S_SAVE_INTERVAL_MS 60000
//  Upkeep works at least this long before it looks at waiting writers.
#define S_MIN_WORK_MS 2
//  Slots handed to the insert threads at a time.
#define S_BATCH 256
//  Most insert threads (hnsw_config.max_indexing_threads is capped here).
#define S_MAX_THREADS 64
//  Level draws: a fixed seed, so a slot gets the same level in every run.
#define S_SEED 0x5348434f414cULL

//  One dense vector's index.
typedef struct {
    char name [64];             //  vector name
    uint32_t dim;               //  its dimension
    distance_t distance;        //  its distance
    vindex_params_t params;     //  its params
    hnsw_t *graph;              //  published atomically; NULL until built
    const float *base;          //  the segment array the graphs read
    uint64_t *ingraph;          //  bitmap: live nodes of graph
    size_t ingraph_words;       //  words in ingraph
    size_t n_ingraph;           //  bits set in ingraph
    bool enabled;               //  the indexing threshold was crossed (sticky)
    bool building;              //  a first build is running
    int64_t build_start_ms;     //  when it started
    hnsw_t *rebuild;            //  a graph being rebuilt beside graph, or NULL
    uint64_t *rebuild_has;      //  bitmap: slots inserted into rebuild
    size_t rebuild_words;       //  words in rebuild_has
    bool swap_ready;            //  rebuild holds every current slot
    uint64_t *valid;            //  load: slots the saved graph held current
    size_t valid_words;         //  words in valid
} s_vec_t;

struct _vindex_t {
    segment_t *segment;         //  the points (borrowed)
    char dir [PATHS_MAX];       //  the shard dir
    s_vec_t *vecs;              //  configured dense vectors
    size_t n_vecs;              //  entries in vecs
    uint64_t committed_seq;     //  last committed seq (main thread, under the gate)
    uint64_t saved_seq;         //  seq the last save covered (or the loaded one)
    bool dirty;                 //  atomic: graphs changed since the last save
    bool build_done;            //  a build finished since the last save
    int64_t last_save_ms;       //  monotonic time of the last save
    int64_t save_cost_ms;       //  how long it took
    //  Load hints: manifest slot -> point id, and an id -> slot table.
    pointid_t *hint_ids;        //  per manifest slot (valid where hint_live)
    uint8_t *hint_live;         //  per manifest slot: holds a point
    uint32_t n_hints;           //  manifest slots
    uint32_t *hint_table;       //  open addressing over hint_ids; UINT32_MAX empty
    size_t hint_cap;            //  cells (power of two)
    uint64_t loaded_seq;        //  the manifest's covered seq
    hnsw_t **retired;           //  graphs dropped by the main thread, freed by
                                //  the optimizer thread when no save writes them
    size_t n_retired;           //  entries in retired
    size_t cap_retired;         //  allocated
    bool saving;                //  optimizer: between save_begin and save_finish
};

//  ---------------------------------------------------------------------------
//  Helpers

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline bool
s_bit (const uint64_t *bits, size_t i)
{
    return (bits [i >> 6] >> (i & 63)) & 1;
}

static size_t
s_words (size_t slots)
{
    return (slots + 63) / 64;
}

//  Grows a bitmap to cover slots.
static void
s_bits_grow (uint64_t **bits, size_t *words, size_t slots)
{
    size_t need = s_words (slots);
    if (need <= *words)
        return;
    size_t cap = *words ? *words : 16;
    while (cap < need)
        cap *= 2;
    *bits = realloc (*bits, cap * sizeof (uint64_t));
    assert (*bits);
    memset (*bits + *words, 0, (cap - *words) * sizeof (uint64_t));
    *words = cap;
}

static s_vec_t *
s_find (vindex_t *self, const char *name)
{
    for (size_t i = 0; i < self->n_vecs; i++)
        if (strcmp (self->vecs [i].name, name ? name : "") == 0)
            return &self->vecs [i];
    return NULL;
}

static hnsw_t *
s_graph (const s_vec_t *v)
{
    return __atomic_load_n (&v->graph, __ATOMIC_ACQUIRE);
}

//  dir/file into path (PATHS_MAX); -SH_EINVAL if too long.
static int
s_file_path (const vindex_t *self, const char *file, char *path)
{
    int w = snprintf (path, PATHS_MAX, "%s/%s", self->dir, file);
    return w > 0 && w < PATHS_MAX ? 0 : -SH_EINVAL;
}

//  "hnsw-<hex of name>-<tag>.graph" in the shard dir; tag is new for every
//  save, so a save never overwrites a file the current manifest names.
static int
s_graph_path (const vindex_t *self, const char *name, uint64_t tag, char *path, size_t len)
{
    char hex [2 * 64 + 1];
    size_t n = strlen (name);
    for (size_t i = 0; i < n && i < 64; i++)
        snprintf (hex + 2 * i, 3, "%02x", (unsigned char) name [i]);
    hex [2 * (n < 64 ? n : 64)] = 0;
    int w = snprintf (path, len, "%s/hnsw-%s-%016" PRIx64 ".graph", self->dir, hex, tag);
    return w > 0 && (size_t) w < len ? 0 : -SH_EINVAL;
}

//  Main thread, write side: a save may be writing the graph (no side of the
//  gate held), so it is retired, and freed by the optimizer thread later.
static void
s_retire (vindex_t *self, hnsw_t *graph)
{
    if (!graph)
        return;
    if (self->n_retired == self->cap_retired) {
        self->cap_retired = self->cap_retired ? self->cap_retired * 2 : 4;
        self->retired = realloc (self->retired, self->cap_retired * sizeof (hnsw_t *));
        assert (self->retired);
    }
    self->retired [self->n_retired++] = graph;
}

//  Frees the graphs the main thread dropped, once no save is writing them
//  (optimizer thread, reader side).
static void
s_free_retired (vindex_t *self)
{
    for (size_t i = 0; i < self->n_retired; i++)
        hnsw_destroy (&self->retired [i]);
    self->n_retired = 0;
}

static void
s_drop_graph (vindex_t *self, s_vec_t *v)
{
    hnsw_t *graph = s_graph (v);
    __atomic_store_n (&v->graph, NULL, __ATOMIC_RELEASE);
    s_retire (self, graph);
    hnsw_destroy (&v->rebuild);
    free (v->rebuild_has);
    v->rebuild_has = NULL;
    v->rebuild_words = 0;
    v->swap_ready = false;
    free (v->ingraph);
    v->ingraph = NULL;
    v->ingraph_words = 0;
    v->n_ingraph = 0;
    __atomic_store_n (&v->enabled, false, __ATOMIC_RELAXED);
    v->building = false;
    segment_clear_indexed (self->segment, v->name);
    __atomic_store_n (&self->dirty, true, __ATOMIC_RELAXED);
}

//  ---------------------------------------------------------------------------
//  Params

static bool
s_uint_field (const json_t *obj, const char *key, uint64_t *out)
{
    const json_t *v = json_object_get (obj, key);
    if (!json_is_integer (v) || json_integer_value (v) < 0)
        return false;
    *out = (uint64_t) json_integer_value (v);
    return true;
}

static void
s_hnsw_fields (const json_t *hnsw, vindex_params_t *out)
{
    uint64_t n;
    if (s_uint_field (hnsw, "m", &n))
        out->m = n > HNSW_MAX_M ? HNSW_MAX_M : (uint32_t) n;
    if (s_uint_field (hnsw, "ef_construct", &n))
        out->ef_construct = n > HNSW_MAX_EF ? HNSW_MAX_EF : n < 4 ? 4 : (uint32_t) n;
    if (s_uint_field (hnsw, "full_scan_threshold", &n))
        out->full_scan_kb = n;
    if (s_uint_field (hnsw, "max_indexing_threads", &n))
        out->threads = n > S_MAX_THREADS ? S_MAX_THREADS : (uint32_t) n;
}

void
vindex_params_from_config (const json_t *config, const char *name, vindex_params_t *out)
{
    out->m = S_DEFAULT_M;
    out->ef_construct = S_DEFAULT_EF;
    out->full_scan_kb = S_DEFAULT_FULL_SCAN_KB;
    out->indexing_kb = S_DEFAULT_INDEXING_KB;
    out->threads = 0;
    s_hnsw_fields (json_object_get (config, "hnsw_config"), out);
    const json_t *vectors = json_object_get (json_object_get (config, "params"), "vectors");
    const json_t *own = json_is_integer (json_object_get (vectors, "size"))
                      ? (name && *name ? NULL : vectors)
                      : json_object_get (vectors, name ? name : "");
    s_hnsw_fields (json_object_get (own, "hnsw_config"), out);
    const json_t *optim = json_object_get (config, "optimizer_config");
    if (!optim)
        optim = json_object_get (config, "optimizers_config");
    uint64_t n;
    if (s_uint_field (optim, "indexing_threshold", &n))
        out->indexing_kb = n;
    else
    if (s_uint_field (optim, "indexing_threshold_kb", &n))
        out->indexing_kb = n;
}

//  ---------------------------------------------------------------------------
//  Life cycle

vindex_t *
vindex_new (segment_t *segment, const char *dir)
{
    assert (segment && dir);
    //  Save tags are random (idempotent; a failure leaves hashing usable).
    if (sodium_init () < 0)
        log_warn ("vindex: libsodium did not initialise");
    vindex_t *self = calloc (1, sizeof *self);
    assert (self);
    self->segment = segment;
    snprintf (self->dir, sizeof self->dir, "%s", dir);
    self->last_save_ms = s_now_ms ();
    return self;
}

static void
s_free_hints (vindex_t *self)
{
    free (self->hint_ids);
    free (self->hint_live);
    free (self->hint_table);
    self->hint_ids = NULL;
    self->hint_live = NULL;
    self->hint_table = NULL;
    self->n_hints = 0;
    self->hint_cap = 0;
}

void
vindex_destroy (vindex_t **self_p)
{
    assert (self_p);
    vindex_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->n_vecs; i++) {
        s_vec_t *v = &self->vecs [i];
        hnsw_destroy (&v->graph);
        hnsw_destroy (&v->rebuild);
        free (v->rebuild_has);
        free (v->ingraph);
        free (v->valid);
    }
    free (self->vecs);
    s_free_retired (self);
    free (self->retired);
    s_free_hints (self);
    free (self);
    *self_p = NULL;
}

int
vindex_configure (vindex_t *self, const char *name, const vindex_params_t *params)
{
    const segment_vspec_t *spec = segment_vspec (self->segment, name);
    if (!spec || spec->sparse)
        return -SH_EINVAL;
    s_vec_t *v = s_find (self, name);
    if (!v) {
        self->vecs = realloc (self->vecs, (self->n_vecs + 1) * sizeof *self->vecs);
        assert (self->vecs);
        v = &self->vecs [self->n_vecs++];
        memset (v, 0, sizeof *v);
        snprintf (v->name, sizeof v->name, "%s", spec->name);
        v->dim = spec->dim;
        v->distance = spec->distance;
        v->params = *params;
        return 0;
    }
    bool rebuild = params->m != v->params.m || params->ef_construct != v->params.ef_construct;
    v->params = *params;
    if (rebuild && (s_graph (v) || v->enabled)) {
        log_info ("vindex: vector \"%s\": m=%u ef_construct=%u now, dropping its graph",
                  v->name, params->m, params->ef_construct);
        s_drop_graph (self, v);
    }
    return 0;
}

void
vindex_after_writes (vindex_t *self, uint64_t committed_seq)
{
    self->committed_seq = committed_seq;
    for (size_t i = 0; i < self->n_vecs; i++) {
        s_vec_t *v = &self->vecs [i];
        hnsw_t *graph = s_graph (v);
        if (!graph && !v->rebuild)
            continue;
        const float *base = segment_dense_base (self->segment, v->name);
        if (base == v->base)
            continue;
        v->base = base;
        size_t stride = segment_dense_stride (self->segment, v->name);
        if (graph)
            hnsw_set_vectors (graph, base, stride);
        if (v->rebuild)
            hnsw_set_vectors (v->rebuild, base, stride);
    }
}

//  ---------------------------------------------------------------------------
//  Upkeep (optimizer thread, gate held for reading)

typedef struct {
    vindex_yield_fn *should_yield;  //  the caller's question
    void *arg;                      //  its argument
    int64_t start_ms;               //  when this call began
    size_t steps;                   //  inserts and deletes so far
    bool min_done;                  //  S_MIN_WORK_MS have passed
} s_budget_t;

//  True when the work should stop for now: once S_MIN_WORK_MS have passed
//  (so every call makes progress), whenever the caller says so.
static bool
s_yield (s_budget_t *b)
{
    if (!b->should_yield)
        return false;
    if (!b->min_done) {
        if (++b->steps % 8)
            return false;
        if (s_now_ms () - b->start_ms < S_MIN_WORK_MS)
            return false;
        b->min_done = true;
    }
    return b->should_yield (b->arg);
}

static void s_ingraph_set (s_vec_t *v, uint32_t slot);

//  s_yield for the insert threads: no shared counters, one clock look.
static bool
s_yield_now (const s_budget_t *b)
{
    return b->should_yield && s_now_ms () - b->start_ms >= S_MIN_WORK_MS
        && b->should_yield (b->arg);
}

//  One batch of slots inserted by several threads.
typedef struct {
    hnsw_t *graph;              //  where they go
    const uint32_t *slots;      //  the batch
    size_t n;                   //  its size
    size_t next;                //  atomic: next index to take
    uint8_t *done;              //  per index: inserted
    const s_budget_t *budget;   //  when to stop early
} s_batch_t;

static void *
s_insert_thread (void *arg)
{
    s_batch_t *batch = (s_batch_t *) arg;
    for (;;) {
        size_t i = __atomic_fetch_add (&batch->next, 1, __ATOMIC_RELAXED);
        if (i >= batch->n)
            break;
        hnsw_insert (batch->graph, batch->slots [i]);
        batch->done [i] = 1;
        if (s_yield_now (batch->budget)) {
            //  Leave the rest to a later round (a writer waits).
            __atomic_store_n (&batch->next, batch->n, __ATOMIC_RELAXED);
            break;
        }
    }
    return NULL;
}

//  Threads to insert with: the vector's max_indexing_threads, else one per
//  core.
static size_t
s_threads (const s_vec_t *v)
{
    if (v->params.threads)
        return v->params.threads;
    long cores = sysconf (_SC_NPROCESSORS_ONLN);
    return cores > 1 ? (size_t) (cores < S_MAX_THREADS ? cores : S_MAX_THREADS) : 1;
}

//  Inserts slots (concurrently: hnsw takes different slots from many
//  threads) and marks what went in. true if it stopped early.
static bool
s_insert_batch (vindex_t *self, s_vec_t *v, hnsw_t *graph, const uint32_t *slots, size_t n,
                s_budget_t *b)
{
    uint8_t done [S_BATCH] = { 0 };
    s_batch_t batch = { graph, slots, n, 0, done, b };
    size_t threads = s_threads (v);
    if (threads > n / 8)
        threads = n / 8 ? n / 8 : 1;
    pthread_t helpers [S_MAX_THREADS];
    size_t started = 0;
    for (size_t t = 1; t < threads; t++)
        if (pthread_create (&helpers [started], NULL, s_insert_thread, &batch) == 0)
            started++;
    s_insert_thread (&batch);
    for (size_t t = 0; t < started; t++)
        pthread_join (helpers [t], NULL);
    bool early = false;
    for (size_t i = 0; i < n; i++) {
        if (!done [i]) {
            early = true;
            continue;
        }
        s_ingraph_set (v, slots [i]);
        segment_set_indexed (self->segment, v->name, slots [i]);
        __atomic_store_n (&self->dirty, true, __ATOMIC_RELAXED);
    }
    return early;
}

static void
s_ingraph_set (s_vec_t *v, uint32_t slot)
{
    s_bits_grow (&v->ingraph, &v->ingraph_words, (size_t) slot + 1);
    uint64_t bit = 1ULL << (slot & 63);
    if (!(v->ingraph [slot >> 6] & bit)) {
        v->ingraph [slot >> 6] |= bit;
        v->n_ingraph++;
    }
}

static void
s_ingraph_clear (s_vec_t *v, uint32_t slot)
{
    uint64_t bit = 1ULL << (slot & 63);
    if (slot < v->ingraph_words * 64 && (v->ingraph [slot >> 6] & bit)) {
        v->ingraph [slot >> 6] &= ~bit;
        v->n_ingraph--;
    }
}

static hnsw_t *
s_new_graph (vindex_t *self, s_vec_t *v)
{
    hnsw_params_t hp = { .m = v->params.m, .ef_construct = v->params.ef_construct,
                         .seed = S_SEED };
    hnsw_t *graph = hnsw_new (v->distance, v->dim, &hp);
    assert (graph);     //  params were bounded when parsed
    v->base = segment_dense_base (self->segment, v->name);
    hnsw_set_vectors (graph, v->base, segment_dense_stride (self->segment, v->name));
    hnsw_reserve (graph, segment_slot_count (self->segment));
    return graph;
}

//  Continues a rebuild: every slot the live graph holds current goes into
//  the new one. true if work is left.
static bool
s_work_rebuild (vindex_t *self, s_vec_t *v, s_budget_t *b)
{
    const uint64_t *marks = segment_indexed_bits (self->segment, v->name);
    size_t slots = segment_slot_count (self->segment);
    s_bits_grow (&v->rebuild_has, &v->rebuild_words, slots);
    for (size_t w = 0; marks && w < s_words (slots); w++) {
        uint64_t todo = __atomic_load_n (&marks [w], __ATOMIC_RELAXED) & ~v->rebuild_has [w];
        while (todo) {
            uint32_t slot = (uint32_t) (w * 64 + (size_t) __builtin_ctzll (todo));
            todo &= todo - 1;
            hnsw_insert (v->rebuild, slot);
            v->rebuild_has [w] |= 1ULL << (slot & 63);
            if (s_yield (b))
                return true;
        }
    }
    v->swap_ready = true;
    return false;
}

//  Brings one vector's graph up to date. true if work is left.
static bool
s_work_vec (vindex_t *self, s_vec_t *v, s_budget_t *b)
{
    if (v->params.m == 0)
        return false;
    size_t count = segment_vector_count_of (self->segment, v->name);
    if (!__atomic_load_n (&v->enabled, __ATOMIC_RELAXED)) {
        uint64_t bytes = (uint64_t) count * v->dim * sizeof (float);
        if (v->params.indexing_kb == 0 || bytes < v->params.indexing_kb * 1024)
            return false;
        __atomic_store_n (&v->enabled, true, __ATOMIC_RELAXED);
    }
    if (v->rebuild)
        return v->swap_ready ? false : s_work_rebuild (self, v, b);
    hnsw_t *graph = s_graph (v);
    if (!graph) {
        graph = s_new_graph (self, v);
        __atomic_store_n (&v->graph, graph, __ATOMIC_RELEASE);
        v->building = true;
        v->build_start_ms = s_now_ms ();
        log_info ("vindex: building the graph of vector \"%s\" over %zu vectors (m=%u, "
                  "ef_construct=%u)", v->name, count, v->params.m, v->params.ef_construct);
    }
    //  New and changed vectors, a batch at a time.
    uint32_t slot = 0;
    for (;;) {
        uint32_t batch [S_BATCH];
        size_t n = 0;
        while (n < S_BATCH
               && (slot = segment_next_unindexed (self->segment, v->name, slot)) != UINT32_MAX)
            batch [n++] = slot++;
        if (n == 0)
            break;
        if (s_insert_batch (self, v, graph, batch, n, b) || s_yield_now (b))
            return true;
    }
    //  Nodes whose vector is gone: every unmarked in-graph slot, now that
    //  every slot with a vector is marked.
    if (v->n_ingraph > segment_indexed_count (self->segment, v->name)) {
        const uint64_t *marks = segment_indexed_bits (self->segment, v->name);
        for (size_t w = 0; w < v->ingraph_words; w++) {
            uint64_t gone = v->ingraph [w]
                          & ~(marks ? __atomic_load_n (&marks [w], __ATOMIC_RELAXED) : 0);
            while (gone) {
                uint32_t s = (uint32_t) (w * 64 + (size_t) __builtin_ctzll (gone));
                gone &= gone - 1;
                assert (!segment_slot_has_vector (self->segment, v->name, s));
                hnsw_delete (graph, s);
                s_ingraph_clear (v, s);
                __atomic_store_n (&self->dirty, true, __ATOMIC_RELAXED);
            }
        }
    }
    if (v->building) {
        v->building = false;
        self->build_done = true;
        log_info ("vindex: the graph of vector \"%s\" is built: %zu nodes in %.1f s",
                  v->name, hnsw_size (graph),
                  (double) (s_now_ms () - v->build_start_ms) / 1000.0);
    }
    size_t nodes = hnsw_node_count (graph), deleted = hnsw_deleted_count (graph);
    if (nodes >= S_REBUILD_MIN_NODES && (double) deleted > S_REBUILD_SHARE * (double) nodes) {
        log_info ("vindex: vector \"%s\": %zu of %zu graph nodes deleted, rebuilding",
                  v->name, deleted, nodes);
        v->rebuild = s_new_graph (self, v);
        v->swap_ready = false;
        return s_work_rebuild (self, v, b);
    }
    return false;
}

bool
vindex_work (vindex_t *self, vindex_yield_fn *should_yield, void *arg)
{
    assert (!self->saving);
    s_free_retired (self);
    s_budget_t b = { should_yield, arg, s_now_ms (), 0, false };
    bool more = false;
    for (size_t i = 0; i < self->n_vecs; i++)
        if (s_work_vec (self, &self->vecs [i], &b))
            more = true;
    return more;
}

bool
vindex_swap_due (vindex_t *self)
{
    for (size_t i = 0; i < self->n_vecs; i++)
        if (self->vecs [i].swap_ready)
            return true;
    return false;
}

void
vindex_swap (vindex_t *self)
{
    for (size_t i = 0; i < self->n_vecs; i++) {
        s_vec_t *v = &self->vecs [i];
        if (!v->swap_ready)
            continue;
        //  Slots changed since they went in lost their mark: the new graph
        //  relinks them like any changed slot.
        segment_keep_indexed (self->segment, v->name, v->rebuild_has, v->rebuild_words);
        hnsw_t *old = s_graph (v);
        __atomic_store_n (&v->graph, v->rebuild, __ATOMIC_RELEASE);
        hnsw_destroy (&old);
        free (v->ingraph);
        v->ingraph = v->rebuild_has;
        v->ingraph_words = v->rebuild_words;
        v->n_ingraph = 0;
        for (size_t w = 0; w < v->ingraph_words; w++)
            v->n_ingraph += (size_t) __builtin_popcountll (v->ingraph [w]);
        v->rebuild = NULL;
        v->rebuild_has = NULL;
        v->rebuild_words = 0;
        v->swap_ready = false;
        __atomic_store_n (&self->dirty, true, __ATOMIC_RELAXED);
        self->build_done = true;
        log_info ("vindex: vector \"%s\": rebuilt graph in place (%zu nodes)", v->name,
                  v->n_ingraph);
    }
}

//  ---------------------------------------------------------------------------
//  Saving

typedef struct {
    FILE *file;                             //  being written
    crypto_generichash_state hash;          //  over every byte written
    bool failed;                            //  a write failed
} s_out_t;

static void
s_put (s_out_t *out, const void *data, size_t len)
{
    if (out->failed || len == 0)
        return;
    if (fwrite (data, 1, len, out->file) != len)
        out->failed = true;
    crypto_generichash_update (&out->hash, data, len);
}

static int
s_fsync_dir (const char *dir)
{
    int fd = open (dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -SH_EIO;
    int rc = fsync (fd) == 0 ? 0 : -SH_EIO;
    close (fd);
    return rc;
}

//  Removes graph files the manifest no longer names.
static void
s_remove_stale (vindex_t *self, char **keep, size_t n_keep)
{
    DIR *dir = opendir (self->dir);
    if (!dir)
        return;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        const char *name = entry->d_name;
        size_t len = strlen (name);
        bool graph = strncmp (name, "hnsw-", 5) == 0
                  && ((len > 6 && strcmp (name + len - 6, ".graph") == 0)
                      || (len > 10 && strcmp (name + len - 10, ".graph.tmp") == 0));
        if (!graph)
            continue;
        char path [PATHS_MAX];
        if (s_file_path (self, name, path))
            continue;
        bool kept = false;
        for (size_t i = 0; i < n_keep && !kept; i++)
            kept = strcmp (keep [i], path) == 0;
        if (!kept && unlink (path) != 0)
            log_debug ("vindex: cannot remove %s: %s", path, strerror (errno));
    }
    closedir (dir);
}

bool
vindex_save_due (vindex_t *self, bool force)
{
    bool dirty = __atomic_load_n (&self->dirty, __ATOMIC_RELAXED);
    bool changed = dirty || self->committed_seq != self->saved_seq;
    bool any = false;
    for (size_t i = 0; i < self->n_vecs; i++)
        any = any || s_graph (&self->vecs [i]);
    if (!changed || (!any && !dirty))
        return false;
    if (force || self->build_done)
        return true;
    int64_t wait = S_SAVE_INTERVAL_MS;
    if (self->save_cost_ms * 10 > wait)
        wait = self->save_cost_ms * 10;
    return s_now_ms () - self->last_save_ms >= wait;
}

//  What a save writes, taken under the read side (vindex_save_begin) so
//  the files can be written with no side of the gate held: the manifest
//  in full, and per graph what names it. The graphs themselves are not
//  copied: only the optimizer thread changes a graph, and it is the one
//  writing them; one the main thread drops meanwhile is retired, not freed,
//  until the save is over.
typedef struct {
    char name [64];             //  vector name
    hnsw_t *graph;              //  its graph (retired, never freed, until the end)
} s_saved_t;

struct _vindex_save_t {
    uint64_t seq;               //  the committed seq the save covers
    uint64_t tag;               //  names the graph files of this save
    s_saved_t *graphs;          //  graphs to write
    size_t n_graphs;            //  entries in graphs
    uint8_t *manifest;          //  the manifest up to its hash
    size_t manifest_len;        //  its bytes
    size_t manifest_cap;        //  allocated
};

static void
s_snap_put (vindex_save_t *snap, const void *data, size_t len)
{
    if (snap->manifest_len + len > snap->manifest_cap) {
        size_t cap = snap->manifest_cap ? snap->manifest_cap : 4096;
        while (cap < snap->manifest_len + len)
            cap *= 2;
        snap->manifest = realloc (snap->manifest, cap);
        assert (snap->manifest);
        snap->manifest_cap = cap;
    }
    memcpy (snap->manifest + snap->manifest_len, data, len);
    snap->manifest_len += len;
}

static void
s_snap_u16 (vindex_save_t *snap, uint16_t v)
{
    uint8_t b [2] = { (uint8_t) v, (uint8_t) (v >> 8) };
    s_snap_put (snap, b, 2);
}

static void
s_snap_u32 (vindex_save_t *snap, uint32_t v)
{
    uint8_t b [4] = { (uint8_t) v, (uint8_t) (v >> 8), (uint8_t) (v >> 16),
                      (uint8_t) (v >> 24) };
    s_snap_put (snap, b, 4);
}

static void
s_snap_u64 (vindex_save_t *snap, uint64_t v)
{
    s_snap_u32 (snap, (uint32_t) v);
    s_snap_u32 (snap, (uint32_t) (v >> 32));
}

vindex_save_t *
vindex_save_begin (vindex_t *self)
{
    assert (!self->saving);
    s_free_retired (self);
    vindex_save_t *snap = calloc (1, sizeof *snap);
    assert (snap);
    snap->seq = self->committed_seq;
    snap->tag = (uint64_t) randombytes_random () << 32 | randombytes_random ();
    snap->graphs = calloc (self->n_vecs + 1, sizeof *snap->graphs);
    assert (snap->graphs);
    uint32_t slots = segment_slot_count (self->segment);
    s_vec_t **saved = calloc (self->n_vecs + 1, sizeof *saved);
    assert (saved);
    for (size_t i = 0; i < self->n_vecs; i++) {
        s_vec_t *v = &self->vecs [i];
        hnsw_t *graph = s_graph (v);
        if (!graph)
            continue;
        saved [snap->n_graphs] = v;
        snprintf (snap->graphs [snap->n_graphs].name, sizeof snap->graphs [0].name, "%s",
                  v->name);
        snap->graphs [snap->n_graphs++].graph = graph;
    }
    //  The manifest: see the file comment.
    s_snap_put (snap, S_MAGIC, 8);
    s_snap_u32 (snap, S_VERSION);
    s_snap_u64 (snap, snap->seq);
    s_snap_u64 (snap, snap->tag);
    s_snap_u32 (snap, (uint32_t) snap->n_graphs);
    for (size_t i = 0; i < snap->n_graphs; i++) {
        s_vec_t *v = saved [i];
        size_t len = strlen (v->name);
        s_snap_u16 (snap, (uint16_t) len);
        s_snap_put (snap, v->name, len);
        s_snap_u32 (snap, v->dim);
        s_snap_u32 (snap, (uint32_t) v->distance);
        s_snap_u32 (snap, v->params.m);
        s_snap_u32 (snap, v->params.ef_construct);
    }
    s_snap_u32 (snap, slots);
    for (uint32_t slot = 0; slot < slots; slot++) {
        uint8_t rec [1 + POINTID_KEY_SIZE];
        rec [0] = segment_slot_live (self->segment, slot);
        if (rec [0])
            pointid_key (segment_slot_id (self->segment, slot), rec + 1);
        s_snap_put (snap, rec, rec [0] ? sizeof rec : 1);
    }
    for (size_t i = 0; i < snap->n_graphs; i++) {
        const uint64_t *marks = segment_indexed_bits (self->segment, saved [i]->name);
        for (size_t w = 0; w < s_words (slots); w++) {
            uint64_t word = marks ? __atomic_load_n (&marks [w], __ATOMIC_RELAXED) : 0;
            if ((w + 1) * 64 > slots && slots % 64)
                word &= (1ULL << (slots % 64)) - 1;
            s_snap_u64 (snap, word);
        }
    }
    free (saved);
    //  What changes from now on is for the next save.
    __atomic_store_n (&self->dirty, false, __ATOMIC_RELAXED);
    self->build_done = false;
    self->saving = true;
    return snap;
}

int
vindex_save_finish (vindex_t *self, vindex_save_t **snap_p)
{
    vindex_save_t *snap = *snap_p;
    assert (snap && self->saving);
    int64_t start = s_now_ms ();
    size_t n = snap->n_graphs;
    char **paths = calloc (n + 1, sizeof *paths);
    assert (paths);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path [PATHS_MAX];
        if (s_graph_path (self, snap->graphs [i].name, snap->tag, path, sizeof path)) {
            rc = -SH_EIO;
            break;
        }
        rc = hnsw_save (snap->graphs [i].graph, path, snap->seq);
        paths [i] = strdup (path);
    }
    char manifest [PATHS_MAX], tmp [PATHS_MAX];
    if (rc == 0 && (s_file_path (self, VINDEX_MANIFEST, manifest)
                    || s_file_path (self, VINDEX_MANIFEST ".tmp", tmp)))
        rc = -SH_EIO;
    if (rc == 0) {
        s_out_t out = { .file = fopen (tmp, "wb") };
        if (!out.file)
            rc = -SH_EIO;
        else {
            crypto_generichash_init (&out.hash, NULL, 0, S_HASH_SIZE);
            s_put (&out, snap->manifest, snap->manifest_len);
            uint8_t hash [S_HASH_SIZE];
            crypto_generichash_final (&out.hash, hash, sizeof hash);
            if (!out.failed && fwrite (hash, 1, sizeof hash, out.file) != sizeof hash)
                out.failed = true;
            if (fflush (out.file) != 0 || fsync (fileno (out.file)) != 0)
                out.failed = true;
            if (fclose (out.file) != 0)
                out.failed = true;
            if (out.failed || rename (tmp, manifest) != 0 || s_fsync_dir (self->dir) != 0)
                rc = -SH_EIO;
        }
    }
    if (rc == 0)
        s_remove_stale (self, paths, n);
    else {
        log_error ("vindex: saving the graphs at seq=%" PRIu64 " failed: %s", snap->seq,
                   strerror (errno));
        unlink (tmp);
        //  What was taken off dirty is still unsaved.
        __atomic_store_n (&self->dirty, true, __ATOMIC_RELAXED);
    }
    for (size_t i = 0; i < n; i++)
        free (paths [i]);
    free (paths);
    int64_t end = s_now_ms ();
    self->last_save_ms = end;
    if (rc == 0) {
        self->saved_seq = snap->seq;
        self->save_cost_ms = end - start;
        log_info ("vindex: saved %zu graph(s) covering seq=%" PRIu64 " in %" PRId64 " ms", n,
                  snap->seq, end - start);
    }
    self->saving = false;
    free (snap->graphs);
    free (snap->manifest);
    free (snap);
    *snap_p = NULL;
    return rc;
}

int
vindex_save (vindex_t *self)
{
    vindex_save_t *snap = vindex_save_begin (self);
    return vindex_save_finish (self, &snap);
}

//  ---------------------------------------------------------------------------
//  Loading

typedef struct {
    const uint8_t *pos;         //  next byte
    const uint8_t *end;         //  end of the checked part
    bool bad;                   //  ran past the end
} s_in_t;

static const uint8_t *
s_take (s_in_t *in, size_t len)
{
    if (in->bad || (size_t) (in->end - in->pos) < len) {
        in->bad = true;
        return NULL;
    }
    const uint8_t *p = in->pos;
    in->pos += len;
    return p;
}

static uint32_t
s_get_u32 (s_in_t *in)
{
    const uint8_t *b = s_take (in, 4);
    return b ? (uint32_t) b [0] | (uint32_t) b [1] << 8 | (uint32_t) b [2] << 16
                   | (uint32_t) b [3] << 24
             : 0;
}

static uint64_t
s_get_u64 (s_in_t *in)
{
    uint64_t lo = s_get_u32 (in);
    return lo | (uint64_t) s_get_u32 (in) << 32;
}

static uint16_t
s_get_u16 (s_in_t *in)
{
    const uint8_t *b = s_take (in, 2);
    return b ? (uint16_t) (b [0] | b [1] << 8) : 0;
}

//  Reads a whole file. 0 and *data (free it), or -SH_ENOTFOUND / -SH_EIO.
static int
s_read_file (const char *path, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int fd = open (path, O_RDONLY);
    if (fd < 0)
        return errno == ENOENT ? -SH_ENOTFOUND : -SH_EIO;
    struct stat st;
    if (fstat (fd, &st) != 0 || st.st_size < 0) {
        close (fd);
        return -SH_EIO;
    }
    size_t size = (size_t) st.st_size;
    uint8_t *buf = malloc (size ? size : 1);
    assert (buf);
    size_t got = 0;
    while (got < size) {
        ssize_t r = read (fd, buf + got, size - got);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            break;
        }
        got += (size_t) r;
    }
    close (fd);
    if (got != size) {
        free (buf);
        return -SH_EIO;
    }
    *data = buf;
    *len = size;
    return 0;
}

static void
s_hint_put (vindex_t *self, uint32_t slot)
{
    size_t mask = self->hint_cap - 1;
    size_t i = pointid_hash (&self->hint_ids [slot]) & mask;
    while (self->hint_table [i] != UINT32_MAX)
        i = (i + 1) & mask;
    self->hint_table [i] = slot;
}

bool
vindex_slot_hint (vindex_t *self, const pointid_t *id, uint32_t *slot)
{
    if (!self->hint_table)
        return false;
    pointid_t key = *id;
    if (!key.is_uuid)
        memset (key.uuid, 0, sizeof key.uuid);
    size_t mask = self->hint_cap - 1;
    size_t i = pointid_hash (&key) & mask;
    while (self->hint_table [i] != UINT32_MAX) {
        uint32_t s = self->hint_table [i];
        if (pointid_eq (&self->hint_ids [s], &key)) {
            *slot = s;
            return true;
        }
        i = (i + 1) & mask;
    }
    return false;
}

//  Parses the manifest in data (checksum already checked) and loads the
//  graphs that match the config. 0, or -SH_EPROTO when it does not parse.
static int
s_parse_manifest (vindex_t *self, const uint8_t *data, size_t len)
{
    s_in_t in = { data, data + len, false };
    const uint8_t *magic = s_take (&in, 8);
    if (!magic || memcmp (magic, S_MAGIC, 8) != 0 || s_get_u32 (&in) != S_VERSION)
        return -SH_EPROTO;
    uint64_t seq = s_get_u64 (&in);
    uint64_t tag = s_get_u64 (&in);
    uint32_t n_graphs = s_get_u32 (&in);
    if (in.bad || n_graphs > 1024)
        return -SH_EPROTO;
    s_vec_t **matched = calloc (n_graphs + 1, sizeof *matched);
    assert (matched);
    int rc = 0;
    for (uint32_t g = 0; g < n_graphs && rc == 0; g++) {
        uint16_t name_len = s_get_u16 (&in);
        const uint8_t *name = s_take (&in, name_len);
        uint32_t dim = s_get_u32 (&in), distance = s_get_u32 (&in);
        uint32_t m = s_get_u32 (&in), ef = s_get_u32 (&in);
        if (in.bad || name_len >= 64 || memchr (name, 0, name_len)) {
            rc = -SH_EPROTO;
            break;
        }
        char text [64];
        memcpy (text, name, name_len);
        text [name_len] = 0;
        s_vec_t *v = s_find (self, text);
        if (!v || v->dim != dim || (uint32_t) v->distance != distance || v->params.m != m
            || v->params.ef_construct != ef) {
            log_info ("vindex: the saved graph of vector \"%s\" does not match the config, "
                      "rebuilding it", text);
            continue;
        }
        char path [PATHS_MAX];
        hnsw_t *graph = NULL;
        uint64_t covered = 0;
        int lrc = s_graph_path (self, v->name, tag, path, sizeof path);
        if (lrc == 0)
            lrc = hnsw_load (path, &graph, &covered);
        if (lrc == 0 && (covered != seq || hnsw_dim (graph) != v->dim
                         || hnsw_distance (graph) != v->distance)) {
            hnsw_destroy (&graph);
            lrc = -SH_EPROTO;
        }
        if (lrc) {
            log_error ("vindex: the saved graph of vector \"%s\" cannot be used (%s), "
                       "rebuilding it", v->name, lrc == -SH_EIO ? "unreadable or truncated"
                                                                : "corrupt");
            continue;
        }
        matched [g] = v;
        v->graph = graph;
    }
    uint32_t slots = rc == 0 ? s_get_u32 (&in) : 0;
    //  Each slot takes at least a byte: a count beyond what is left is bad.
    if (rc == 0 && (in.bad || slots > (size_t) (in.end - in.pos)))
        rc = -SH_EPROTO;
    if (rc == 0) {
        self->hint_ids = calloc ((size_t) slots + 1, sizeof *self->hint_ids);
        self->hint_live = calloc ((size_t) slots + 1, 1);
        assert (self->hint_ids && self->hint_live);
        self->n_hints = slots;
        for (uint32_t s = 0; s < slots && !in.bad; s++) {
            const uint8_t *live = s_take (&in, 1);
            if (!live || *live > 1) {
                in.bad = true;
                break;
            }
            if (!*live)
                continue;
            const uint8_t *key = s_take (&in, POINTID_KEY_SIZE);
            if (!key || pointid_from_key (key, POINTID_KEY_SIZE, &self->hint_ids [s])) {
                in.bad = true;
                break;
            }
            if (!self->hint_ids [s].is_uuid)
                memset (self->hint_ids [s].uuid, 0, sizeof self->hint_ids [s].uuid);
            self->hint_live [s] = 1;
        }
        for (uint32_t g = 0; g < n_graphs && !in.bad; g++) {
            size_t words = s_words (slots);
            const uint8_t *bits = s_take (&in, words * 8);
            if (!bits || !matched [g])
                continue;
            s_vec_t *v = matched [g];
            v->valid = calloc (words + 1, sizeof (uint64_t));
            assert (v->valid);
            v->valid_words = words;
            for (size_t w = 0; w < words; w++) {
                uint64_t word = 0;
                for (int b = 7; b >= 0; b--)
                    word = word << 8 | bits [w * 8 + (size_t) b];
                v->valid [w] = word;
            }
        }
        if (in.bad || in.pos != in.end)
            rc = -SH_EPROTO;
    }
    if (rc) {
        //  Nothing of a manifest that does not parse is trusted.
        for (uint32_t g = 0; g < n_graphs; g++)
            if (matched [g]) {
                hnsw_destroy (&matched [g]->graph);
                free (matched [g]->valid);
                matched [g]->valid = NULL;
            }
        s_free_hints (self);
    }
    free (matched);
    if (rc == 0)
        self->loaded_seq = seq;
    return rc;
}

int
vindex_load_begin (vindex_t *self, uint64_t store_seq)
{
    char path [PATHS_MAX];
    if (s_file_path (self, VINDEX_MANIFEST, path))
        return 0;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = s_read_file (path, &data, &len);
    if (rc == -SH_ENOTFOUND)
        return 0;
    if (rc == 0 && len < S_HASH_SIZE)
        rc = -SH_EIO;
    if (rc == 0) {
        uint8_t hash [S_HASH_SIZE];
        crypto_generichash (hash, sizeof hash, data, len - S_HASH_SIZE, NULL, 0);
        if (sodium_memcmp (hash, data + len - S_HASH_SIZE, S_HASH_SIZE) != 0)
            rc = -SH_EPROTO;
    }
    if (rc == 0)
        rc = s_parse_manifest (self, data, len - S_HASH_SIZE);
    free (data);
    if (rc == 0 && self->loaded_seq > store_seq) {
        log_error ("vindex: %s covers seq=%" PRIu64 " but the store ends at seq=%" PRIu64
                   "; every graph will be rebuilt", path, self->loaded_seq, store_seq);
        for (size_t i = 0; i < self->n_vecs; i++) {
            hnsw_destroy (&self->vecs [i].graph);
            free (self->vecs [i].valid);
            self->vecs [i].valid = NULL;
        }
        s_free_hints (self);
        self->loaded_seq = 0;
        return 0;
    }
    if (rc) {
        log_error ("vindex: %s is %s; every graph will be rebuilt", path,
                   rc == -SH_EIO ? "unreadable or truncated" : "corrupt");
        return 0;
    }
    bool any = false;
    for (size_t i = 0; i < self->n_vecs; i++)
        any = any || self->vecs [i].graph;
    if (!any) {
        s_free_hints (self);
        return 0;
    }
    self->hint_cap = 16;
    while (self->hint_cap < (size_t) self->n_hints * 2)
        self->hint_cap *= 2;
    self->hint_table = malloc (self->hint_cap * sizeof *self->hint_table);
    assert (self->hint_table);
    memset (self->hint_table, 0xff, self->hint_cap * sizeof *self->hint_table);
    for (uint32_t s = 0; s < self->n_hints; s++)
        if (self->hint_live [s])
            s_hint_put (self, s);
    if (segment_reserve_slots (self->segment, self->n_hints)) {
        log_error ("vindex: cannot reserve %u slots; every graph will be rebuilt",
                   self->n_hints);
        for (size_t i = 0; i < self->n_vecs; i++)
            hnsw_destroy (&self->vecs [i].graph);
        s_free_hints (self);
    }
    return 0;
}

void
vindex_load_end (vindex_t *self, uint64_t committed_seq)
{
    segment_reclaim_holes (self->segment);
    self->committed_seq = committed_seq;
    self->saved_seq = self->loaded_seq;
    uint32_t slots = segment_slot_count (self->segment);
    for (size_t i = 0; i < self->n_vecs; i++) {
        s_vec_t *v = &self->vecs [i];
        hnsw_t *graph = v->graph;
        if (!graph)
            continue;
        v->base = segment_dense_base (self->segment, v->name);
        hnsw_set_vectors (graph, v->base, segment_dense_stride (self->segment, v->name));
        v->enabled = true;
        size_t kept = 0, stale = 0, gone = 0;
        for (uint32_t slot = 0; slot < slots && slot < self->n_hints; slot++) {
            if (!hnsw_contains (graph, slot))
                continue;
            if (!segment_slot_has_vector (self->segment, v->name, slot)) {
                hnsw_delete (graph, slot);
                gone++;
                continue;
            }
            s_ingraph_set (v, slot);
            //  Placed here by its hint, so the same point as at the save;
            //  unchanged since if its version is not newer than the save.
            if (s_bit (v->valid, slot)
                && segment_slot_version (self->segment, slot) <= self->loaded_seq) {
                segment_set_indexed (self->segment, v->name, slot);
                kept++;
            }
            else
                stale++;
        }
        if (stale || gone)
            __atomic_store_n (&self->dirty, true, __ATOMIC_RELAXED);
        free (v->valid);
        v->valid = NULL;
        v->valid_words = 0;
        log_info ("vindex: loaded the graph of vector \"%s\" covering seq=%" PRIu64 ": %zu "
                  "vectors current, %zu to re-index, %zu deleted since", v->name,
                  self->loaded_seq, kept, stale, gone);
    }
    s_free_hints (self);
}

//  ---------------------------------------------------------------------------
//  Readers

bool
vindex_params (vindex_t *self, const char *name, vindex_params_t *out)
{
    s_vec_t *v = s_find (self, name);
    if (!v)
        return false;
    if (out)
        *out = v->params;
    return true;
}

bool
vindex_has_graph (vindex_t *self, const char *name)
{
    s_vec_t *v = s_find (self, name);
    return v && s_graph (v);
}

typedef struct {
    const uint64_t *marks;      //  the segment's indexed marks
    hnsw_accept_fn accept;      //  the caller's filter, or NULL
    void *arg;                  //  its argument
} s_accept_t;

static bool
s_accept (uint32_t slot, void *argp)
{
    s_accept_t *a = (s_accept_t *) argp;
    if (!((__atomic_load_n (&a->marks [slot >> 6], __ATOMIC_RELAXED) >> (slot & 63)) & 1))
        return false;
    return !a->accept || a->accept (slot, a->arg);
}

size_t
vindex_search (vindex_t *self, const char *name, const float *query, size_t k, size_t ef,
               hnsw_accept_fn accept, void *arg, uint32_t *slots)
{
    s_vec_t *v = s_find (self, name);
    hnsw_t *graph = v ? s_graph (v) : NULL;
    const uint64_t *marks = segment_indexed_bits (self->segment, name);
    if (!graph || !marks || k == 0)
        return 0;
    s_accept_t a = { marks, accept, arg };
    hnsw_hit_t *hits = malloc (k * sizeof *hits);
    assert (hits);
    size_t n = hnsw_search (graph, query, k, ef ? ef : v->params.ef_construct, s_accept, &a,
                            hits);
    for (size_t i = 0; i < n; i++)
        slots [i] = hits [i].slot;
    free (hits);
    return n;
}

size_t
vindex_indexed_count (vindex_t *self)
{
    size_t n = 0;
    for (size_t i = 0; i < self->n_vecs; i++)
        n += segment_indexed_count (self->segment, self->vecs [i].name);
    return n;
}

bool
vindex_behind (vindex_t *self)
{
    for (size_t i = 0; i < self->n_vecs; i++) {
        s_vec_t *v = &self->vecs [i];
        if (v->params.m == 0)
            continue;
        size_t count = segment_vector_count_of (self->segment, v->name);
        uint64_t bytes = (uint64_t) count * v->dim * sizeof (float);
        bool on = __atomic_load_n (&v->enabled, __ATOMIC_RELAXED)
               || (v->params.indexing_kb && bytes >= v->params.indexing_kb * 1024);
        if (on && segment_indexed_count (self->segment, v->name) < count)
            return true;
    }
    return false;
}
