/*  segment: a shard's points in memory and every read over them.

    Layout. A point lives in one slot, an index into parallel per-slot arrays
    (id, version, payload) and, for each vector spec, into that spec's
    storage: dense vectors in one flat float32 array of cap rows (slot-major,
    so exact search streams through memory), sparse vectors as a
    sorted (indices, values) pair of arrays per slot. A presence bitmap per
    spec says which live slots have that vector (a point may lack a named
    vector); a live bitmap says which slots hold a point at all. Slots freed by
    deletes go on a free list and are reused before the arrays grow.

    Dense stores also keep an "indexed" bitmap: the shard's HNSW graph of
    that vector holds the slot's current vector. It is a subset of the
    presence bitmap; storing or clearing a slot's vector clears its bit, and
    the optimizer sets bits (atomically, while searches read) as it inserts.
    A search scans the slots whose bit is clear and asks the graph for the
    rest. Holes are slots reserved for points a saved graph knows by slot
    (segment_reserve_slots): neither live nor free until filled or reclaimed.

    An open-addressing hash table (linear probing, backward-shift deletion so
    there are no tombstones, load <= 1/2) maps an id to its slot through
    pointid_hash; a cell keeps part of the hash beside the slot, so probes
    and rehashes rarely read the ids.

    Payloads are jansson objects held by reference: upsert takes a reference
    to the caller's object, reads hand out borrowed pointers. So every payload
    edit is copy-on-write: the stored object is deep-copied, the copy edited
    and swapped in, and the old reference dropped, so no one holding the old
    object sees it change.

    Dense rows are padded to a stride that keeps every row on whole 64-byte
    cache lines (a multiple of 16 floats; below 16 floats the next power of
    two, so small rows never straddle a line either), and the array starts
    on a line: a distance then touches no line more than it must and no
    SIMD load of a row is split across two lines. Common embedding sizes
    (128, 384, 768, 784, 1536 ...) need no padding.

    Exact search scans the presence bitmap of the searched vector, applies the
    filter before scoring, scores with common/distance and keeps the best
    `limit` hits in a bounded heap (ties go to the smaller id). Nothing is
    allocated per point; payloads are only looked at when the filter needs
    them. Euclid is ranked by its square and square-rooted only for the hits
    returned.
*/
#include "actors/shard/segment.h"
#include "common/err.h"
#include "common/vmarr.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Largest dense dimension a spec may have (Qdrant's limit).
#define S_MAX_DIM 65536
//  Slots are uint32_t; this one marks an empty hash table cell.
#define S_EMPTY UINT32_MAX
//  Most slots a segment holds (below S_EMPTY).
#define S_MAX_SLOTS (UINT32_MAX - 1)

//  Storage of one vector spec.
typedef struct {
    segment_vspec_t spec;       //  copy of the spec
    float *dense;               //  dense: cap rows of stride floats (vmarr)
    size_t stride;              //  dense: floats from a row to the next (>= dim)
    uint32_t **sp_idx;          //  sparse: per slot, sorted indices (malloc'd)
    float **sp_val;             //  sparse: per slot, values in the same order
    uint32_t *sp_nnz;           //  sparse: per slot, number of entries
    uint64_t *present;          //  bitmap over slots: slot has this vector
    uint64_t *indexed;          //  dense: bitmap over slots, subset of present:
                                //    the graph holds the current vector (atomic)
    size_t count;               //  number of slots with this vector
    size_t n_indexed;           //  bits set in indexed (atomic)
} vstore_t;

struct _segment_t {
    vstore_t *vs;               //  one per vector spec
    size_t n_vs;                //  number of specs
    size_t cap;                 //  slots allocated in every per-slot array
    size_t n_slots;             //  slots ever used: 0 .. n_slots-1
    pointid_t *ids;             //  per slot: the point's id
    uint64_t *versions;         //  per slot: version of the last write
    json_t **payloads;          //  per slot: payload object (a reference) or NULL
    uint64_t *live;             //  bitmap over slots: slot holds a point
    uint32_t *free;             //  slots freed by deletes, reused LIFO
    size_t n_free;              //  entries in free
    size_t size;                //  live points
    uint64_t *table;            //  hash table cells (s_cell) or S_FREE_CELL
    size_t table_cap;           //  cells, a power of two
    uint64_t *holes;            //  bitmap over slots: reserved, not live, not free
    size_t n_holes;             //  bits set in holes
    segment_observer_fn *observer;  //  told of payload and liveness changes
    void *observer_arg;         //  its argument
};

//  --------------------------------------------------------------------------
//  Small helpers

static inline bool
s_bit (const uint64_t *bits, size_t i)
{
    return (bits [i >> 6] >> (i & 63)) & 1;
}

static inline void
s_bit_set (uint64_t *bits, size_t i)
{
    bits [i >> 6] |= 1ULL << (i & 63);
}

static inline void
s_bit_clear (uint64_t *bits, size_t i)
{
    bits [i >> 6] &= ~(1ULL << (i & 63));
}

static size_t
s_words (size_t slots)
{
    return (slots + 63) / 64;
}

//  The per-slot arrays live in their own mappings (common/vmarr.h): they
//  grow without a copy and come zeroed.
static void *
s_realloc_zero (void *ptr, size_t old_n, size_t new_n, size_t elem)
{
    if (new_n == 0)
        return ptr;
    void *p = vmarr_resize (ptr, old_n * elem, new_n * elem);
    assert (p);
    return p;
}

static void
s_err (char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (err, errlen, fmt, ap);
    va_end (ap);
}

static vstore_t *
s_vstore (const segment_t *self, const char *name)
{
    if (!name)
        name = "";
    for (size_t i = 0; i < self->n_vs; i++)
        if (strcmp (self->vs [i].spec.name, name) == 0)
            return &self->vs [i];
    return NULL;
}

static void
s_notify (segment_t *self, uint32_t slot, const json_t *old_payload, bool was_live,
          const json_t *new_payload, bool is_live)
{
    if (self->observer)
        self->observer (slot, old_payload, was_live, new_payload, is_live,
                        self->observer_arg);
}

static bool
s_spec_valid (const segment_vspec_t *spec)
{
    if (memchr (spec->name, 0, sizeof spec->name) == NULL)
        return false;
    if (!spec->sparse && (spec->dim == 0 || spec->dim > S_MAX_DIM
                          || (unsigned) spec->distance > DIST_MANHATTAN))
        return false;
    return true;
}

//  Floats per dense row: dim padded to whole cache lines (see the top).
static size_t
s_stride (uint32_t dim)
{
    if (dim >= 16)
        return ((size_t) dim + 15) / 16 * 16;
    size_t stride = 1;
    while (stride < dim)
        stride *= 2;
    return stride;
}

//  Grows the dense array from old_cap to new_cap rows, zeroed. Its mapping
//  starts on a page, so every row is on a 64-byte boundary.
static void
s_dense_grow (vstore_t *vs, size_t old_cap, size_t new_cap)
{
    vs->dense = (float *) s_realloc_zero (vs->dense, old_cap, new_cap,
                                          vs->stride * sizeof (float));
}

//  Row of slot in a dense store.
static inline float *
s_row (const vstore_t *vs, uint32_t slot)
{
    return vs->dense + (size_t) slot * vs->stride;
}

//  Grows vs's per-slot storage from old_cap to new_cap slots.
static void
s_vstore_grow (vstore_t *vs, size_t old_cap, size_t new_cap)
{
    if (vs->spec.sparse) {
        vs->sp_idx = s_realloc_zero (vs->sp_idx, old_cap, new_cap, sizeof (uint32_t *));
        vs->sp_val = s_realloc_zero (vs->sp_val, old_cap, new_cap, sizeof (float *));
        vs->sp_nnz = s_realloc_zero (vs->sp_nnz, old_cap, new_cap, sizeof (uint32_t));
    }
    else {
        if (new_cap > old_cap)
            s_dense_grow (vs, old_cap, new_cap);
        vs->indexed = s_realloc_zero (vs->indexed, s_words (old_cap), s_words (new_cap),
                                      sizeof (uint64_t));
    }
    vs->present = s_realloc_zero (vs->present, s_words (old_cap), s_words (new_cap),
                                  sizeof (uint64_t));
}

static void
s_vstore_fini (vstore_t *vs, size_t n_slots, size_t cap)
{
    if (vs->sp_idx)
        for (size_t i = 0; i < n_slots; i++) {
            free (vs->sp_idx [i]);
            free (vs->sp_val [i]);
        }
    vmarr_free (vs->sp_idx, cap * sizeof (uint32_t *));
    vmarr_free (vs->sp_val, cap * sizeof (float *));
    vmarr_free (vs->sp_nnz, cap * sizeof (uint32_t));
    vmarr_free (vs->dense, cap * vs->stride * sizeof (float));
    vmarr_free (vs->indexed, s_words (cap) * sizeof (uint64_t));
    vmarr_free (vs->present, s_words (cap) * sizeof (uint64_t));
}

//  Removes slot's vector from vs (if it has one).
static void
s_vstore_clear (vstore_t *vs, uint32_t slot)
{
    if (!s_bit (vs->present, slot))
        return;
    s_bit_clear (vs->present, slot);
    vs->count--;
    if (vs->indexed) {
        uint64_t bit = 1ULL << (slot & 63);
        uint64_t was = __atomic_fetch_and (&vs->indexed [slot >> 6], ~bit, __ATOMIC_RELAXED);
        if (was & bit)
            __atomic_fetch_sub (&vs->n_indexed, 1, __ATOMIC_RELAXED);
    }
    if (vs->spec.sparse) {
        free (vs->sp_idx [slot]);
        free (vs->sp_val [slot]);
        vs->sp_idx [slot] = NULL;
        vs->sp_val [slot] = NULL;
        vs->sp_nnz [slot] = 0;
    }
}

//  Sorts (idx, val) pairs by index; insertion sort for the short lists
//  sparse vectors usually are, qsort on a pair array otherwise.
typedef struct {
    uint32_t idx;
    float val;
} s_pair_t;

static int
s_pair_cmp (const void *a, const void *b)
{
    uint32_t x = ((const s_pair_t *) a)->idx, y = ((const s_pair_t *) b)->idx;
    return (x > y) - (x < y);
}

//  Copies a sparse vector sorted by index into fresh arrays. false if two
//  entries share an index.
static bool
s_sparse_sorted (const uint32_t *indices, const float *values, uint32_t nnz,
                 uint32_t **out_idx, float **out_val)
{
    s_pair_t *pairs = malloc ((nnz ? nnz : 1) * sizeof (s_pair_t));
    assert (pairs);
    for (uint32_t i = 0; i < nnz; i++)
        pairs [i] = (s_pair_t) { indices [i], values [i] };
    qsort (pairs, nnz, sizeof (s_pair_t), s_pair_cmp);
    for (uint32_t i = 1; i < nnz; i++)
        if (pairs [i].idx == pairs [i - 1].idx) {
            free (pairs);
            return false;
        }
    *out_idx = malloc ((nnz ? nnz : 1) * sizeof (uint32_t));
    *out_val = malloc ((nnz ? nnz : 1) * sizeof (float));
    assert (*out_idx && *out_val);
    for (uint32_t i = 0; i < nnz; i++) {
        (*out_idx) [i] = pairs [i].idx;
        (*out_val) [i] = pairs [i].val;
    }
    free (pairs);
    return true;
}

//  --------------------------------------------------------------------------
//  Id -> slot hash table

//  A cell holds a slot in its low 32 bits and the low 32 bits of the slot's
//  id hash above them: probes compare the hash before they read the id (a
//  cache miss into ids), and a rehash or a backward shift finds a cell's
//  home without it. S_FREE_CELL (slot S_EMPTY) is an empty cell.
#define S_FREE_CELL UINT64_MAX

static inline uint64_t
s_cell (uint64_t hash, uint32_t slot)
{
    return (hash << 32) | slot;
}

static inline uint32_t
s_cell_slot (uint64_t cell)
{
    return (uint32_t) cell;
}

static inline size_t
s_cell_home (uint64_t cell, size_t mask)
{
    return (size_t) (cell >> 32) & mask;
}

static uint32_t
s_lookup (const segment_t *self, const pointid_t *id)
{
    size_t mask = self->table_cap - 1;
    uint64_t hash = pointid_hash (id) & 0xffffffffULL;
    size_t i = (size_t) hash & mask;
    uint64_t cell;
    while ((cell = self->table [i]) != S_FREE_CELL) {
        if ((cell >> 32) == hash && pointid_eq (&self->ids [s_cell_slot (cell)], id))
            return s_cell_slot (cell);
        i = (i + 1) & mask;
    }
    return S_EMPTY;
}

static void
s_table_put (uint64_t *table, size_t cap, uint64_t cell)
{
    size_t mask = cap - 1;
    size_t i = s_cell_home (cell, mask);
    while (table [i] != S_FREE_CELL)
        i = (i + 1) & mask;
    table [i] = cell;
}

static void
s_table_insert (segment_t *self, uint32_t slot)
{
    //  Keep the load at most 1/2 so probes stay short.
    if ((self->size + 1) * 2 > self->table_cap) {
        size_t cap = self->table_cap * 2;
        uint64_t *table = malloc (cap * sizeof (uint64_t));
        assert (table);
        memset (table, 0xff, cap * sizeof (uint64_t));
        for (size_t i = 0; i < self->table_cap; i++)
            if (self->table [i] != S_FREE_CELL)
                s_table_put (table, cap, self->table [i]);
        free (self->table);
        self->table = table;
        self->table_cap = cap;
    }
    s_table_put (self->table, self->table_cap, s_cell (pointid_hash (&self->ids [slot]), slot));
}

static void
s_table_remove (segment_t *self, uint32_t slot)
{
    size_t mask = self->table_cap - 1;
    size_t i = (size_t) pointid_hash (&self->ids [slot]) & mask;
    while (s_cell_slot (self->table [i]) != slot) {
        assert (self->table [i] != S_FREE_CELL);
        i = (i + 1) & mask;
    }
    //  Backward shift: pull later entries of the probe run into the hole
    //  unless their home cell lies cyclically in (hole, j].
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (self->table [j] == S_FREE_CELL)
            break;
        size_t home = s_cell_home (self->table [j], mask);
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        self->table [i] = self->table [j];
        i = j;
    }
    self->table [i] = S_FREE_CELL;
}

//  --------------------------------------------------------------------------
//  Life cycle

segment_t *
segment_new (const segment_vspec_t *specs, size_t n_specs)
{
    if (n_specs && !specs)
        return NULL;
    for (size_t i = 0; i < n_specs; i++) {
        if (!s_spec_valid (&specs [i]))
            return NULL;
        for (size_t j = 0; j < i; j++)
            if (strcmp (specs [i].name, specs [j].name) == 0)
                return NULL;
    }
    segment_t *self = calloc (1, sizeof (segment_t));
    assert (self);
    self->table_cap = 16;
    self->table = malloc (self->table_cap * sizeof (uint64_t));
    assert (self->table);
    memset (self->table, 0xff, self->table_cap * sizeof (uint64_t));
    for (size_t i = 0; i < n_specs; i++) {
        int rc = segment_add_vspec (self, &specs [i]);
        assert (rc == 0);
    }
    return self;
}

void
segment_destroy (segment_t **self_p)
{
    assert (self_p);
    segment_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->n_vs; i++)
        s_vstore_fini (&self->vs [i], self->n_slots, self->cap);
    free (self->vs);
    for (size_t i = 0; i < self->n_slots; i++)
        json_decref (self->payloads [i]);
    vmarr_free (self->ids, self->cap * sizeof (pointid_t));
    vmarr_free (self->versions, self->cap * sizeof (uint64_t));
    vmarr_free (self->payloads, self->cap * sizeof (json_t *));
    vmarr_free (self->live, s_words (self->cap) * sizeof (uint64_t));
    vmarr_free (self->holes, s_words (self->cap) * sizeof (uint64_t));
    vmarr_free (self->free, self->cap * sizeof (uint32_t));
    free (self->table);
    free (self);
    *self_p = NULL;
}

size_t
segment_size (const segment_t *self)
{
    return self->size;
}

size_t
segment_vector_count (const segment_t *self)
{
    size_t total = 0;
    for (size_t i = 0; i < self->n_vs; i++)
        total += self->vs [i].count;
    return total;
}

const segment_vspec_t *
segment_vspec (const segment_t *self, const char *name)
{
    vstore_t *vs = s_vstore (self, name);
    return vs ? &vs->spec : NULL;
}

int
segment_add_vspec (segment_t *self, const segment_vspec_t *spec)
{
    if (!spec || !s_spec_valid (spec))
        return -SH_EINVAL;
    if (s_vstore (self, spec->name))
        return -SH_EEXIST;
    self->vs = realloc (self->vs, (self->n_vs + 1) * sizeof (vstore_t));
    assert (self->vs);
    vstore_t *vs = &self->vs [self->n_vs++];
    memset (vs, 0, sizeof *vs);
    vs->spec = *spec;
    if (vs->spec.sparse) {
        vs->spec.dim = 0;
        vs->spec.distance = DIST_DOT;
    }
    else
        vs->stride = s_stride (vs->spec.dim);
    s_vstore_grow (vs, 0, self->cap);
    return 0;
}

//  --------------------------------------------------------------------------
//  Writes

//  Checks vecs against the specs: names known and not repeated, the right
//  kind and dimension, sparse indices unique. 0 or -SH_EINVAL with err.
static int
s_check_vecs (const segment_t *self, const segment_vec_t *vecs, size_t n_vecs, char *err,
              size_t errlen)
{
    if (n_vecs && !vecs) {
        s_err (err, errlen, "no vectors given");
        return -SH_EINVAL;
    }
    for (size_t i = 0; i < n_vecs; i++) {
        const segment_vec_t *v = &vecs [i];
        const char *name = v->name ? v->name : "";
        vstore_t *vs = s_vstore (self, name);
        if (!vs) {
            s_err (err, errlen, "Not existing vector name error: %s", name);
            return -SH_EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp (vecs [j].name ? vecs [j].name : "", name) == 0) {
                s_err (err, errlen, "vector \"%s\" given twice", name);
                return -SH_EINVAL;
            }
        if (vs->spec.sparse) {
            if (v->dense) {
                s_err (err, errlen, "vector \"%s\" is sparse, a dense vector was given",
                       name);
                return -SH_EINVAL;
            }
            if (v->nnz && (!v->indices || !v->values)) {
                s_err (err, errlen, "sparse vector \"%s\": indices and values missing",
                       name);
                return -SH_EINVAL;
            }
            //  Duplicate indices show once sorted; checked before anything
            //  changes so a bad vector leaves the point as it was.
            uint32_t *idx;
            float *val;
            if (!s_sparse_sorted (v->indices, v->values, v->nnz, &idx, &val)) {
                s_err (err, errlen, "sparse vector \"%s\": indices must be unique", name);
                return -SH_EINVAL;
            }
            free (idx);
            free (val);
        }
        else {
            if (!v->dense) {
                s_err (err, errlen, "vector \"%s\" is dense, a sparse vector was given",
                       name);
                return -SH_EINVAL;
            }
            if (v->dim != vs->spec.dim) {
                s_err (err, errlen, "Vector dimension error: expected dim: %u, got %u",
                       vs->spec.dim, v->dim);
                return -SH_EINVAL;
            }
        }
    }
    return 0;
}

//  Stores one checked vector into slot.
static void
s_set_vec (segment_t *self, uint32_t slot, const segment_vec_t *v)
{
    vstore_t *vs = s_vstore (self, v->name);
    assert (vs);
    s_vstore_clear (vs, slot);
    if (vs->spec.sparse) {
        bool ok = s_sparse_sorted (v->indices, v->values, v->nnz, &vs->sp_idx [slot],
                                   &vs->sp_val [slot]);
        assert (ok);
        vs->sp_nnz [slot] = v->nnz;
    }
    else {
        float *row = s_row (vs, slot);
        memcpy (row, v->dense, vs->spec.dim * sizeof (float));
        if (vs->spec.distance == DIST_COSINE)
            distance_normalize (row, vs->spec.dim);
    }
    s_bit_set (vs->present, slot);
    vs->count++;
}

static void
s_grow (segment_t *self)
{
    size_t old = self->cap;
    size_t cap = old ? old * 2 : 64;
    if (cap > S_MAX_SLOTS)
        cap = S_MAX_SLOTS;
    assert (cap > old);
    self->ids = s_realloc_zero (self->ids, old, cap, sizeof (pointid_t));
    self->versions = s_realloc_zero (self->versions, old, cap, sizeof (uint64_t));
    self->payloads = s_realloc_zero (self->payloads, old, cap, sizeof (json_t *));
    self->live = s_realloc_zero (self->live, s_words (old), s_words (cap), sizeof (uint64_t));
    self->holes = s_realloc_zero (self->holes, s_words (old), s_words (cap), sizeof (uint64_t));
    self->free = s_realloc_zero (self->free, old, cap, sizeof (uint32_t));
    for (size_t i = 0; i < self->n_vs; i++)
        s_vstore_grow (&self->vs [i], old, cap);
    self->cap = cap;
}

//  Makes slot (free, new or a hole, already taken off its list) hold a new
//  point with this id, entered into the hash table.
static void
s_occupy_slot (segment_t *self, uint32_t slot, const pointid_t *id)
{
    self->ids [slot] = *id;
    if (!id->is_uuid)
        memset (self->ids [slot].uuid, 0, sizeof self->ids [slot].uuid);
    self->versions [slot] = 0;
    self->payloads [slot] = NULL;
    s_bit_set (self->live, slot);
    s_table_insert (self, slot);
    self->size++;
}

//  A slot for a new point with this id, entered into the hash table.
static uint32_t
s_alloc_slot (segment_t *self, const pointid_t *id)
{
    uint32_t slot;
    if (self->n_free)
        slot = self->free [--self->n_free];
    else {
        if (self->n_slots == self->cap)
            s_grow (self);
        slot = (uint32_t) self->n_slots++;
    }
    s_occupy_slot (self, slot, id);
    return slot;
}

//  The whole point in slot is replaced: vectors not given are gone.
static void
s_replace_point (segment_t *self, uint32_t slot, bool existed, uint64_t version,
                 const segment_vec_t *vecs, size_t n_vecs, json_t *payload)
{
    for (size_t i = 0; i < self->n_vs; i++)
        s_vstore_clear (&self->vs [i], slot);
    for (size_t i = 0; i < n_vecs; i++)
        s_set_vec (self, slot, &vecs [i]);
    json_t *old = self->payloads [slot];
    self->payloads [slot] = json_is_object (payload) ? json_incref (payload) : NULL;
    self->versions [slot] = version;
    s_notify (self, slot, old, existed, self->payloads [slot], true);
    json_decref (old);
}

int
segment_upsert (segment_t *self, const pointid_t *id, uint64_t version,
                const segment_vec_t *vecs, size_t n_vecs, json_t *payload, char *err,
                size_t errlen)
{
    if (!id) {
        s_err (err, errlen, "no point id");
        return -SH_EINVAL;
    }
    if (payload && !json_is_object (payload) && !json_is_null (payload)) {
        s_err (err, errlen, "payload must be an object");
        return -SH_EINVAL;
    }
    int rc = s_check_vecs (self, vecs, n_vecs, err, errlen);
    if (rc)
        return rc;
    uint32_t slot = s_lookup (self, id);
    bool existed = slot != S_EMPTY;
    if (!existed) {
        if (self->n_free == 0 && self->n_slots == S_MAX_SLOTS) {
            s_err (err, errlen, "segment is full");
            return -SH_ETOOBIG;
        }
        slot = s_alloc_slot (self, id);
    }
    s_replace_point (self, slot, existed, version, vecs, n_vecs, payload);
    return 0;
}

int
segment_delete (segment_t *self, const pointid_t *id)
{
    uint32_t slot = s_lookup (self, id);
    if (slot == S_EMPTY)
        return -SH_ENOTFOUND;
    s_table_remove (self, slot);
    for (size_t i = 0; i < self->n_vs; i++)
        s_vstore_clear (&self->vs [i], slot);
    json_t *old = self->payloads [slot];
    self->payloads [slot] = NULL;
    s_bit_clear (self->live, slot);
    s_notify (self, slot, old, true, NULL, false);
    json_decref (old);
    self->free [self->n_free++] = slot;
    self->size--;
    return 0;
}

//  A private copy of slot's payload to edit (copy-on-write).
static json_t *
s_payload_copy (const segment_t *self, uint32_t slot)
{
    json_t *p = self->payloads [slot];
    json_t *copy = p ? json_deep_copy (p) : json_object ();
    assert (copy);
    return copy;
}

static void
s_payload_replace (segment_t *self, uint32_t slot, json_t *payload)
{
    json_t *old = self->payloads [slot];
    self->payloads [slot] = payload;
    s_notify (self, slot, old, true, payload, true);
    json_decref (old);
}

int
segment_set_payload (segment_t *self, const pointid_t *id, uint64_t version,
                     const json_t *payload, const char *key)
{
    if (!json_is_object (payload) || (key && !filter_path_valid (key)))
        return -SH_EINVAL;
    uint32_t slot = s_lookup (self, id);
    if (slot == S_EMPTY)
        return -SH_ENOTFOUND;
    json_t *copy = s_payload_copy (self, slot);
    int rc = filter_path_set (copy, key, payload);
    assert (rc == 0);
    s_payload_replace (self, slot, copy);
    self->versions [slot] = version;
    return 0;
}

int
segment_overwrite_payload (segment_t *self, const pointid_t *id, uint64_t version,
                           const json_t *payload)
{
    if (payload && !json_is_object (payload) && !json_is_null (payload))
        return -SH_EINVAL;
    uint32_t slot = s_lookup (self, id);
    if (slot == S_EMPTY)
        return -SH_ENOTFOUND;
    //  Copied: payload is the caller's (const) and must not change under us.
    json_t *copy = json_is_object (payload) ? json_deep_copy (payload) : NULL;
    s_payload_replace (self, slot, copy);
    self->versions [slot] = version;
    return 0;
}

int
segment_delete_payload (segment_t *self, const pointid_t *id, uint64_t version,
                        const char *const *keys, size_t n_keys)
{
    if (n_keys && !keys)
        return -SH_EINVAL;
    for (size_t i = 0; i < n_keys; i++)
        if (!filter_path_valid (keys [i]))
            return -SH_EINVAL;
    uint32_t slot = s_lookup (self, id);
    if (slot == S_EMPTY)
        return -SH_ENOTFOUND;
    if (self->payloads [slot] && n_keys) {
        json_t *copy = s_payload_copy (self, slot);
        for (size_t i = 0; i < n_keys; i++)
            filter_path_remove (copy, keys [i]);
        s_payload_replace (self, slot, copy);
    }
    self->versions [slot] = version;
    return 0;
}

int
segment_clear_payload (segment_t *self, const pointid_t *id, uint64_t version)
{
    uint32_t slot = s_lookup (self, id);
    if (slot == S_EMPTY)
        return -SH_ENOTFOUND;
    s_payload_replace (self, slot, NULL);
    self->versions [slot] = version;
    return 0;
}

int
segment_update_vectors (segment_t *self, const pointid_t *id, uint64_t version,
                        const segment_vec_t *vecs, size_t n_vecs, char *err, size_t errlen)
{
    int rc = s_check_vecs (self, vecs, n_vecs, err, errlen);
    if (rc)
        return rc;
    uint32_t slot = s_lookup (self, id);
    if (slot == S_EMPTY) {
        char text [POINTID_TEXT_SIZE];
        pointid_format (id, text);
        s_err (err, errlen, "No point with id %s found", text);
        return -SH_ENOTFOUND;
    }
    for (size_t i = 0; i < n_vecs; i++)
        s_set_vec (self, slot, &vecs [i]);
    self->versions [slot] = version;
    return 0;
}

int
segment_delete_vectors (segment_t *self, const pointid_t *id, uint64_t version,
                        const char *const *names, size_t n_names)
{
    if (n_names && !names)
        return -SH_EINVAL;
    for (size_t i = 0; i < n_names; i++)
        if (!s_vstore (self, names [i]))
            return -SH_EINVAL;
    uint32_t slot = s_lookup (self, id);
    if (slot == S_EMPTY)
        return -SH_ENOTFOUND;
    for (size_t i = 0; i < n_names; i++)
        s_vstore_clear (s_vstore (self, names [i]), slot);
    self->versions [slot] = version;
    return 0;
}

//  --------------------------------------------------------------------------
//  Reads

int
segment_get (const segment_t *self, const pointid_t *id, segment_point_t *out)
{
    uint32_t slot = s_lookup (self, id);
    if (slot == S_EMPTY)
        return -SH_ENOTFOUND;
    if (out) {
        out->id = self->ids [slot];
        out->version = self->versions [slot];
        out->payload = self->payloads [slot];
    }
    return 0;
}

int
segment_get_vector (const segment_t *self, const pointid_t *id, const char *name,
                    segment_vec_t *out)
{
    vstore_t *vs = s_vstore (self, name);
    uint32_t slot = s_lookup (self, id);
    if (!vs || slot == S_EMPTY || !s_bit (vs->present, slot))
        return -SH_ENOTFOUND;
    memset (out, 0, sizeof *out);
    out->name = vs->spec.name;
    if (vs->spec.sparse) {
        out->indices = vs->sp_idx [slot];
        out->values = vs->sp_val [slot];
        out->nnz = vs->sp_nnz [slot];
    }
    else {
        out->dense = s_row (vs, slot);
        out->dim = vs->spec.dim;
    }
    return 0;
}

//  What a filter's has_vector asks about one slot.
typedef struct {
    const segment_t *self;
    uint32_t slot;
} s_hv_arg_t;

static bool
s_has_vector (const char *name, void *arg)
{
    const s_hv_arg_t *hv = arg;
    vstore_t *vs = s_vstore (hv->self, name);
    return vs && s_bit (vs->present, hv->slot);
}

static bool
s_slot_matches (const segment_t *self, const filter_t *filter, uint32_t slot)
{
    if (!filter)
        return true;
    s_hv_arg_t hv = { self, slot };
    return filter_match_ex (filter, &self->ids [slot], self->payloads [slot], s_has_vector,
                            &hv);
}

size_t
segment_select (const segment_t *self, const filter_t *filter, pointid_t **ids)
{
    return segment_select_slots (self, filter, NULL, 0, ids);
}

size_t
segment_count (const segment_t *self, const filter_t *filter)
{
    return segment_count_slots (self, filter, NULL, 0);
}

//  Scroll: a max-heap (by pointid_cmp) of the smallest ids seen.
static void
s_idheap_sift_down (pointid_t *heap, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, big = i;
        if (l < n && pointid_cmp (&heap [l], &heap [big]) > 0)
            big = l;
        if (r < n && pointid_cmp (&heap [r], &heap [big]) > 0)
            big = r;
        if (big == i)
            return;
        pointid_t t = heap [i];
        heap [i] = heap [big];
        heap [big] = t;
        i = big;
    }
}

static void
s_idheap_push (pointid_t *heap, size_t n, const pointid_t *id)
{
    size_t i = n;
    heap [i] = *id;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (pointid_cmp (&heap [i], &heap [parent]) <= 0)
            break;
        pointid_t t = heap [i];
        heap [i] = heap [parent];
        heap [parent] = t;
        i = parent;
    }
}

static int
s_id_qsort_cmp (const void *a, const void *b)
{
    return pointid_cmp (a, b);
}

size_t
segment_scroll (const segment_t *self, const filter_t *filter, const pointid_t *offset,
                size_t limit, pointid_t *ids, pointid_t *next, bool *has_next)
{
    //  Keep the limit + 1 smallest matching ids >= offset: the last is the
    //  next page's offset.
    return segment_scroll_slots (self, filter, NULL, 0, offset, limit, ids, next, has_next);
}

//  Search: a heap of the best hits with the worst at the root.
typedef struct {
    float score;                //  ranking score (Euclid: squared)
    uint32_t slot;              //  the point's slot
} s_cand_t;

typedef struct {
    s_cand_t *items;            //  heap storage, limit entries
    size_t n;                   //  entries held
    size_t limit;               //  capacity
    bool higher;                //  higher scores rank first
    const pointid_t *ids;       //  the segment's ids, for ties
} s_topk_t;

//  True if a ranks before b: better score, or equal score and smaller id.
static inline bool
s_before (const s_topk_t *k, const s_cand_t *a, const s_cand_t *b)
{
    if (a->score != b->score)
        return k->higher ? a->score > b->score : a->score < b->score;
    return pointid_cmp (&k->ids [a->slot], &k->ids [b->slot]) < 0;
}

static void
s_topk_sift_down (s_topk_t *k, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, worst = i;
        if (l < k->n && s_before (k, &k->items [worst], &k->items [l]))
            worst = l;
        if (r < k->n && s_before (k, &k->items [worst], &k->items [r]))
            worst = r;
        if (worst == i)
            return;
        s_cand_t t = k->items [i];
        k->items [i] = k->items [worst];
        k->items [worst] = t;
        i = worst;
    }
}

static inline void
s_topk_offer (s_topk_t *k, float score, uint32_t slot)
{
    s_cand_t c = { score, slot };
    if (k->n < k->limit) {
        size_t i = k->n++;
        k->items [i] = c;
        while (i > 0) {
            size_t parent = (i - 1) / 2;
            if (!s_before (k, &k->items [parent], &k->items [i]))
                break;
            s_cand_t t = k->items [i];
            k->items [i] = k->items [parent];
            k->items [parent] = t;
            i = parent;
        }
    }
    else
    if (s_before (k, &c, &k->items [0])) {
        k->items [0] = c;
        s_topk_sift_down (k, 0);
    }
}

//  Heapsort in place: the worst goes last, leaving the hits best first.
static void
s_topk_sort (s_topk_t *k)
{
    size_t n = k->n;
    while (k->n > 1) {
        s_cand_t t = k->items [0];
        k->items [0] = k->items [k->n - 1];
        k->items [k->n - 1] = t;
        k->n--;
        s_topk_sift_down (k, 0);
    }
    k->n = n;
}

//  Sparse dot product that also says whether any index is shared.
static inline bool
s_sparse_score (const uint32_t *ai, const float *av, uint32_t an, const uint32_t *bi,
                const float *bv, uint32_t bn, float *score)
{
    float sum = 0;
    bool shared = false;
    uint32_t i = 0, j = 0;
    while (i < an && j < bn) {
        if (ai [i] < bi [j])
            i++;
        else
        if (ai [i] > bi [j])
            j++;
        else {
            sum += av [i++] * bv [j++];
            shared = true;
        }
    }
    *score = sum;
    return shared;
}

//  Walks the slots a search, count or scroll looks at: the set bits of
//  bits (minus those of mask, read atomically as the optimizer sets them),
//  or the entries of a candidate list that are set in bits (and not mask).
typedef struct {
    const uint64_t *bits;       //  slots to visit
    const uint64_t *mask;       //  slots to skip, or NULL
    const uint32_t *list;       //  candidate slots (ascending), or NULL for all
    size_t n_list;              //  entries in list
    size_t n_slots;             //  slots in the bitmaps
    size_t pos;                 //  next list entry or next word
    uint64_t word;              //  bits left of the current word
} s_iter_t;

static void
s_iter_init (s_iter_t *it, const uint64_t *bits, const uint64_t *mask, const uint32_t *list,
             size_t n_list, size_t n_slots)
{
    memset (it, 0, sizeof *it);
    it->bits = bits;
    it->mask = mask;
    it->list = list;
    it->n_list = n_list;
    it->n_slots = n_slots;
}

static inline bool
s_masked (const uint64_t *mask, size_t slot)
{
    return mask
        && (__atomic_load_n (&mask [slot >> 6], __ATOMIC_RELAXED) >> (slot & 63)) & 1;
}

static inline bool
s_iter_next (s_iter_t *it, uint32_t *slot)
{
    if (it->list) {
        while (it->pos < it->n_list) {
            uint32_t candidate = it->list [it->pos++];
            if (candidate < it->n_slots && s_bit (it->bits, candidate)
                && !s_masked (it->mask, candidate)) {
                *slot = candidate;
                return true;
            }
        }
        return false;
    }
    while (!it->word) {
        if (it->pos >= s_words (it->n_slots))
            return false;
        uint64_t w = it->bits [it->pos];
        if (it->mask)
            w &= ~__atomic_load_n (&it->mask [it->pos], __ATOMIC_RELAXED);
        it->word = w;
        it->pos++;
    }
    *slot = (uint32_t) ((it->pos - 1) * 64 + (size_t) __builtin_ctzll (it->word));
    it->word &= it->word - 1;
    return true;
}

//  Raw ranking score of a dense row (Euclid: squared).
static inline float
s_raw_score (distance_t dist, const float *q, const float *row, uint32_t dim)
{
    switch (dist) {
        case DIST_EUCLID:
            return distance_l2sq (q, row, dim);
        case DIST_MANHATTAN:
            return distance_l1 (q, row, dim);
        default:
            return distance_dot (q, row, dim);
    }
}

int
segment_search (const segment_t *self, const segment_search_t *req, segment_hit_t *hits,
                char *err, size_t errlen)
{
    return segment_search_slots (self, req, NULL, 0, false, hits, NULL, err, errlen);
}

int
segment_search_slots (const segment_t *self, const segment_search_t *req,
                      const uint32_t *slots, size_t n_slots, bool unindexed_only,
                      segment_hit_t *hits, uint32_t *hit_slots, char *err, size_t errlen)
{
    if (!req) {
        s_err (err, errlen, "no search request");
        return -SH_EINVAL;
    }
    const char *name = req->name ? req->name : "";
    vstore_t *vs = s_vstore (self, name);
    if (!vs) {
        s_err (err, errlen, "Not existing vector name error: %s", name);
        return -SH_EINVAL;
    }
    const segment_vec_t *q = &req->query;
    uint32_t *q_idx = NULL;
    float *q_val = NULL, *q_dense = NULL;
    if (vs->spec.sparse) {
        if (q->dense || (q->nnz && (!q->indices || !q->values))) {
            s_err (err, errlen, "vector \"%s\" is sparse: the query must be a sparse vector",
                   name);
            return -SH_EINVAL;
        }
        if (!s_sparse_sorted (q->indices, q->values, q->nnz, &q_idx, &q_val)) {
            s_err (err, errlen, "sparse query: indices must be unique");
            return -SH_EINVAL;
        }
    }
    else {
        if (!q->dense) {
            s_err (err, errlen, "vector \"%s\" is dense: the query must be a dense vector",
                   name);
            return -SH_EINVAL;
        }
        if (q->dim != vs->spec.dim) {
            s_err (err, errlen, "Vector dimension error: expected dim: %u, got %u",
                   vs->spec.dim, q->dim);
            return -SH_EINVAL;
        }
    }
    if (req->limit == 0 || vs->count == 0 || (slots && n_slots == 0)) {
        free (q_idx);
        free (q_val);
        return 0;
    }
    distance_t dist = vs->spec.sparse ? DIST_DOT : vs->spec.distance;
    size_t cap = req->limit < vs->count ? req->limit : vs->count;
    if (slots && n_slots < cap)
        cap = n_slots;
    s_topk_t topk = {
        .items = malloc (cap * sizeof (s_cand_t)),
        .n = 0,
        .limit = cap,
        .higher = distance_higher_is_better (dist),
        .ids = self->ids
    };
    assert (topk.items);
    //  The threshold in ranking units: Euclid ranks by squared distance.
    bool has_t = req->has_threshold;
    float t = req->score_threshold;
    bool none = false;
    if (has_t && dist == DIST_EUCLID) {
        if (t < 0)
            none = true;        //  no distance is negative
        else
        if (!isinf (t)) {
            //  The largest square whose root is still <= t, so the cut is
            //  exactly "sqrtf (l2sq) <= t" without a root per point.
            float t2 = t * t;
            while (sqrtf (t2) > t)
                t2 = nextafterf (t2, 0);
            while (sqrtf (nextafterf (t2, INFINITY)) <= t)
                t2 = nextafterf (t2, INFINITY);
            t = t2;
        }
    }
    if (has_t && isnan (t))
        none = true;

    s_iter_t it;
    s_iter_init (&it, vs->present, unindexed_only ? vs->indexed : NULL, slots, n_slots,
                 self->n_slots);
    const filter_t *filter = req->filter;
    uint32_t slot;
    if (!vs->spec.sparse && !none) {
        uint32_t dim = vs->spec.dim;
        //  The query on a line too, like the rows.
        q_dense = aligned_alloc (64, (s_stride (dim) * sizeof (float) + 63) / 64 * 64);
        assert (q_dense);
        memcpy (q_dense, q->dense, dim * sizeof (float));
        if (dist == DIST_COSINE)
            distance_normalize (q_dense, dim);
        while (s_iter_next (&it, &slot)) {
            if (filter && !s_slot_matches (self, filter, slot))
                continue;
            float score = s_raw_score (dist, q_dense, s_row (vs, slot), dim);
            if (isnan (score))
                continue;
            if (has_t && (topk.higher ? score < t : score > t))
                continue;
            s_topk_offer (&topk, score, slot);
        }
    }
    else
    if (!none) {
        while (s_iter_next (&it, &slot)) {
            if (filter && !s_slot_matches (self, filter, slot))
                continue;
            float score;
            //  As Qdrant: only points sharing an index with the query.
            if (!s_sparse_score (q_idx, q_val, q->nnz, vs->sp_idx [slot], vs->sp_val [slot],
                                 vs->sp_nnz [slot], &score))
                continue;
            if (isnan (score) || (has_t && score < t))
                continue;
            s_topk_offer (&topk, score, slot);
        }
    }
    s_topk_sort (&topk);
    for (size_t i = 0; i < topk.n; i++) {
        hits [i].id = self->ids [topk.items [i].slot];
        hits [i].score = dist == DIST_EUCLID ? sqrtf (topk.items [i].score)
                                             : topk.items [i].score;
        if (hit_slots)
            hit_slots [i] = topk.items [i].slot;
    }
    int n = (int) topk.n;
    free (topk.items);
    free (q_dense);
    free (q_idx);
    free (q_val);
    return n;
}

float
segment_slot_score (const segment_t *self, const char *name, const float *query,
                    uint32_t slot)
{
    vstore_t *vs = s_vstore (self, name);
    if (!vs || vs->spec.sparse || slot >= self->n_slots || !s_bit (vs->present, slot))
        return NAN;
    float raw = s_raw_score (vs->spec.distance, query, s_row (vs, slot), vs->spec.dim);
    return vs->spec.distance == DIST_EUCLID ? sqrtf (raw) : raw;
}

//  --------------------------------------------------------------------------
//  Slots

uint32_t
segment_slot_count (const segment_t *self)
{
    return (uint32_t) self->n_slots;
}

bool
segment_slot_of (const segment_t *self, const pointid_t *id, uint32_t *slot)
{
    uint32_t found = s_lookup (self, id);
    if (found == S_EMPTY)
        return false;
    if (slot)
        *slot = found;
    return true;
}

bool
segment_slot_live (const segment_t *self, uint32_t slot)
{
    return slot < self->n_slots && s_bit (self->live, slot);
}

const pointid_t *
segment_slot_id (const segment_t *self, uint32_t slot)
{
    assert (segment_slot_live (self, slot));
    return &self->ids [slot];
}

uint64_t
segment_slot_version (const segment_t *self, uint32_t slot)
{
    assert (segment_slot_live (self, slot));
    return self->versions [slot];
}

const json_t *
segment_slot_payload (const segment_t *self, uint32_t slot)
{
    return segment_slot_live (self, slot) ? self->payloads [slot] : NULL;
}

bool
segment_slot_match (const segment_t *self, const filter_t *filter, uint32_t slot)
{
    return segment_slot_live (self, slot) && s_slot_matches (self, filter, slot);
}

bool
segment_slot_has_vector (const segment_t *self, const char *name, uint32_t slot)
{
    vstore_t *vs = s_vstore (self, name);
    return vs && slot < self->n_slots && s_bit (vs->present, slot);
}

size_t
segment_scroll_slots (const segment_t *self, const filter_t *filter, const uint32_t *slots,
                      size_t n_slots, const pointid_t *offset, size_t limit, pointid_t *ids,
                      pointid_t *next, bool *has_next)
{
    if (has_next)
        *has_next = false;
    size_t bound = slots && n_slots < self->size ? n_slots : self->size;
    size_t keep = limit < bound ? limit + 1 : bound + 1;
    pointid_t *heap = malloc (keep * sizeof (pointid_t));
    assert (heap);
    size_t n = 0;
    s_iter_t it;
    s_iter_init (&it, self->live, NULL, slots, n_slots, self->n_slots);
    uint32_t slot;
    while (s_iter_next (&it, &slot)) {
        const pointid_t *id = &self->ids [slot];
        if (offset && pointid_cmp (id, offset) < 0)
            continue;
        if (n == keep && pointid_cmp (id, &heap [0]) >= 0)
            continue;           //  not among the smallest: skip the filter
        if (!s_slot_matches (self, filter, slot))
            continue;
        if (n < keep)
            s_idheap_push (heap, n++, id);
        else {
            heap [0] = *id;
            s_idheap_sift_down (heap, n, 0);
        }
    }
    qsort (heap, n, sizeof (pointid_t), s_id_qsort_cmp);
    size_t count = n < limit ? n : limit;
    if (count)
        memcpy (ids, heap, count * sizeof (pointid_t));
    if (n > limit) {
        if (next)
            *next = heap [limit];
        if (has_next)
            *has_next = true;
    }
    free (heap);
    return count;
}

size_t
segment_count_slots (const segment_t *self, const filter_t *filter, const uint32_t *slots,
                     size_t n_slots)
{
    if (!filter && !slots)
        return self->size;
    size_t n = 0;
    s_iter_t it;
    s_iter_init (&it, self->live, NULL, slots, n_slots, self->n_slots);
    uint32_t slot;
    while (s_iter_next (&it, &slot))
        n += s_slot_matches (self, filter, slot);
    return n;
}

size_t
segment_select_slots (const segment_t *self, const filter_t *filter, const uint32_t *slots,
                      size_t n_slots, pointid_t **ids)
{
    assert (ids);
    size_t bound = slots && n_slots < self->size ? n_slots : self->size;
    pointid_t *out = malloc ((bound ? bound : 1) * sizeof (pointid_t));
    assert (out);
    size_t n = 0;
    s_iter_t it;
    s_iter_init (&it, self->live, NULL, slots, n_slots, self->n_slots);
    uint32_t slot;
    while (s_iter_next (&it, &slot))
        if (s_slot_matches (self, filter, slot))
            out [n++] = self->ids [slot];
    *ids = out;
    return n;
}

//  --------------------------------------------------------------------------
//  Dense vectors and index marks

const float *
segment_dense_base (const segment_t *self, const char *name)
{
    vstore_t *vs = s_vstore (self, name);
    return vs && !vs->spec.sparse ? vs->dense : NULL;
}

size_t
segment_dense_stride (const segment_t *self, const char *name)
{
    vstore_t *vs = s_vstore (self, name);
    return vs && !vs->spec.sparse ? vs->stride : 0;
}

size_t
segment_vector_count_of (const segment_t *self, const char *name)
{
    vstore_t *vs = s_vstore (self, name);
    return vs ? vs->count : 0;
}

int
segment_set_indexed (segment_t *self, const char *name, uint32_t slot)
{
    vstore_t *vs = s_vstore (self, name);
    if (!vs || !vs->indexed || slot >= self->n_slots || !s_bit (vs->present, slot))
        return -SH_ENOTFOUND;
    uint64_t bit = 1ULL << (slot & 63);
    uint64_t was = __atomic_fetch_or (&vs->indexed [slot >> 6], bit, __ATOMIC_RELAXED);
    if (!(was & bit))
        __atomic_fetch_add (&vs->n_indexed, 1, __ATOMIC_RELAXED);
    return 0;
}

bool
segment_is_indexed (const segment_t *self, const char *name, uint32_t slot)
{
    vstore_t *vs = s_vstore (self, name);
    return vs && vs->indexed && slot < self->n_slots && s_masked (vs->indexed, slot);
}

size_t
segment_indexed_count (const segment_t *self, const char *name)
{
    vstore_t *vs = s_vstore (self, name);
    return vs ? __atomic_load_n (&vs->n_indexed, __ATOMIC_RELAXED) : 0;
}

void
segment_clear_indexed (segment_t *self, const char *name)
{
    vstore_t *vs = s_vstore (self, name);
    if (!vs || !vs->indexed)
        return;
    memset (vs->indexed, 0, s_words (self->cap) * sizeof (uint64_t));
    __atomic_store_n (&vs->n_indexed, 0, __ATOMIC_RELAXED);
}

void
segment_keep_indexed (segment_t *self, const char *name, const uint64_t *keep,
                      size_t n_words)
{
    vstore_t *vs = s_vstore (self, name);
    if (!vs || !vs->indexed)
        return;
    size_t count = 0;
    for (size_t w = 0; w < s_words (self->cap); w++) {
        uint64_t word = vs->indexed [w] & (w < n_words ? keep [w] : 0);
        vs->indexed [w] = word;
        count += (size_t) __builtin_popcountll (word);
    }
    __atomic_store_n (&vs->n_indexed, count, __ATOMIC_RELAXED);
}

const uint64_t *
segment_indexed_bits (const segment_t *self, const char *name)
{
    vstore_t *vs = s_vstore (self, name);
    return vs ? vs->indexed : NULL;
}

uint32_t
segment_next_unindexed (const segment_t *self, const char *name, uint32_t from)
{
    vstore_t *vs = s_vstore (self, name);
    if (!vs || !vs->indexed || from >= self->n_slots)
        return UINT32_MAX;
    size_t w = from >> 6;
    uint64_t word = vs->present [w]
                  & ~__atomic_load_n (&vs->indexed [w], __ATOMIC_RELAXED)
                  & (~0ULL << (from & 63));
    for (;;) {
        if (word)
            return (uint32_t) (w * 64 + (size_t) __builtin_ctzll (word));
        if (++w >= s_words (self->n_slots))
            return UINT32_MAX;
        word = vs->present [w] & ~__atomic_load_n (&vs->indexed [w], __ATOMIC_RELAXED);
    }
}

//  --------------------------------------------------------------------------
//  Observer and placement

void
segment_set_observer (segment_t *self, segment_observer_fn *fn, void *arg)
{
    self->observer = fn;
    self->observer_arg = arg;
}

int
segment_reserve_slots (segment_t *self, uint32_t n)
{
    if (n > S_MAX_SLOTS)
        return -SH_ETOOBIG;
    while (self->cap < n)
        s_grow (self);
    for (size_t slot = self->n_slots; slot < n; slot++) {
        s_bit_set (self->holes, slot);
        self->n_holes++;
    }
    if (n > self->n_slots)
        self->n_slots = n;
    return 0;
}

int
segment_upsert_at (segment_t *self, uint32_t slot, const pointid_t *id, uint64_t version,
                   const segment_vec_t *vecs, size_t n_vecs, json_t *payload, char *err,
                   size_t errlen)
{
    if (!id) {
        s_err (err, errlen, "no point id");
        return -SH_EINVAL;
    }
    if (slot >= self->n_slots || !s_bit (self->holes, slot)) {
        s_err (err, errlen, "slot %u is not reserved", slot);
        return -SH_EINVAL;
    }
    if (s_lookup (self, id) != S_EMPTY) {
        s_err (err, errlen, "the point is in the segment already");
        return -SH_EEXIST;
    }
    if (payload && !json_is_object (payload) && !json_is_null (payload)) {
        s_err (err, errlen, "payload must be an object");
        return -SH_EINVAL;
    }
    int rc = s_check_vecs (self, vecs, n_vecs, err, errlen);
    if (rc)
        return rc;
    s_bit_clear (self->holes, slot);
    self->n_holes--;
    s_occupy_slot (self, slot, id);
    s_replace_point (self, slot, false, version, vecs, n_vecs, payload);
    return 0;
}

void
segment_reclaim_holes (segment_t *self)
{
    //  Highest first, so the LIFO free list hands out the lowest first.
    for (size_t slot = self->n_slots; slot-- > 0 && self->n_holes;) {
        if (!s_bit (self->holes, slot))
            continue;
        s_bit_clear (self->holes, slot);
        self->n_holes--;
        self->free [self->n_free++] = (uint32_t) slot;
    }
}
