/*  pindex: payload indexes of one shard, and the planner's reads of them.

    Layout of a field index (field_t). Values are first collected with the
    filter's own path walk, so an index sees exactly the values filter_match
    sees: the "raw" values the key reaches, and their flattening (an array
    value stands for its elements). From the raw values come the bitmaps
    that decide is_empty, is_null and values_count (present, nonempty,
    raw_null, has_null, no_null, and one bitmap per values_count). Each
    flattened value that is not null is then either of the index's type
    ("typed", stored), another scalar ("other"), or an array / object
    ("complex"); a condition the typed part cannot decide for the other
    values only widens the answer's upper bound by those slots.

    Typed values live in a hash map value -> bitmap of slots (keyword: the
    string bytes; uuid: the 16 bytes; integer: the 8 bytes; bool: two
    bitmaps) and, for ranges, in a column of (key, slot) entries kept sorted
    by key (integer: the value; float: an order-preserving int64 image of the
    double; datetime: microseconds since the epoch). Inserts go to an
    unsorted pending tail that is merged in when it passes an eighth of the
    column, so loading a million points costs a few dozen merges, not a
    memmove per point; reads scan the short tail. Deletes are lazy: every
    entry carries the generation of its slot, removing a point bumps the
    slot's generation, and entries of another generation are skipped by
    reads and dropped at the next merge. So removes and updates need no
    search in the column, and reads never write (they may run on several
    threads at once).

    Answers are pairs (lo, hi) of bitmaps, lo <= matching <= hi, computed per
    condition and combined through must / should / must_not / min_should;
    hi == lo (the same pointer) means exact. Combining keeps both bounds
    sound: must_not turns a pair (lo, hi) into (all - hi, all - lo). Inside a
    nested filter only upper bounds are kept: a slot-level index says some
    element has a value, not which element.

    Datetimes are compared by filter_match to the nanosecond, the column
    holds microseconds: ranges are answered with a tight and a loose key
    range (exact when they agree), and exactly when no stored value has a
    sub-microsecond part.
*/
#include "actors/shard/pindex.h"
#include "common/err.h"

#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  A column merges its pending tail once the tail is longer than this, or
//  than an eighth of the sorted part, whichever is more.
#define S_MERGE_MIN 4096
//  A column drops dead entries once they are more than this and half of it.
#define S_DEAD_MIN 4096
//  min_should over more (conditions x min_count) than this is not counted
//  from bitmaps: the answer is then 0 .. all, to be checked.
#define S_MIN_SHOULD_WORK 4096
//  Longest index path accepted (filter paths are at most 4096 bytes).
#define S_MAX_PATH 4096
//  A building field's cursor once every slot is in.
#define S_BUILT ((uint64_t) UINT32_MAX + 1)
//  Points a background build indexes between two looks at should_yield.
#define S_BUILD_STEP 256

//  --------------------------------------------------------------------------
//  Types

//  One column entry.
typedef struct {
    int64_t key;                //  the value's key (see the file comment)
    uint32_t slot;              //  the point's slot
    uint32_t gen;               //  the slot's generation when it was added
} entry_t;

//  A sorted (key, slot) column with a pending unsorted tail.
typedef struct {
    entry_t *sorted;            //  sorted by (key, slot)
    size_t n_sorted;            //  entries in sorted
    size_t cap_sorted;          //  allocated
    entry_t *pending;           //  appended since the last merge, any order
    size_t n_pending;           //  entries in pending
    size_t cap_pending;         //  allocated
    size_t n_dead;              //  entries of removed points not dropped yet
} column_t;

//  Keys up to this long are held in the cell itself (integers, UUIDs,
//  short keywords).
#define S_KEY_INLINE 16
//  A value's slots are a sorted array up to this many, then a CRoaring
//  bitmap: most values of a high-cardinality field (ids, prices) have a
//  few points, and a bitmap costs hundreds of bytes and several mallocs.
#define S_SET_SMALL 64
//  cap of a cell whose slots are a bitmap.
#define S_SET_BIG UINT32_MAX

//  One cell of a value map: a value and its slots.
typedef struct {
    uint64_t hash;              //  hash of the key
    union {
        uint8_t inl [S_KEY_INLINE];     //  len <= S_KEY_INLINE
        uint8_t *ptr;                   //  longer: malloc'd
    } key;                      //  the value's bytes
    uint32_t len;               //  key length
    uint32_t n;                 //  slots held; 0 = empty cell
    uint32_t cap;               //  0: slots inline (n <= 2); S_SET_BIG: bitmap;
                                //  else capacity of the sorted array
    union {
        uint32_t inl [2];               //  cap 0
        uint32_t *arr;                  //  sorted, cap entries
        roaring_bitmap_t *bm;           //  cap S_SET_BIG
    } set;                      //  the slots
} mcell_t;

//  Value -> slots, open addressing with linear probing, load <= 1/2,
//  backward-shift deletion (no tombstones).
typedef struct {
    mcell_t *cells;             //  cap cells
    size_t cap;                 //  a power of two, or 0
    size_t n;                   //  keys held
    size_t heap_bytes;          //  bytes of long keys and slot arrays (memory)
} vmap_t;

//  Slots whose key reaches a value with this values_count.
typedef struct {
    uint64_t count;             //  the count (null 0, array its length, else 1)
    roaring_bitmap_t *slots;    //  the slots
} vcount_t;

typedef struct {
    char *path;                 //  canonical path text
    pindex_schema_t schema;     //  type and options
    json_t *params;             //  the schema object as given, or NULL
    bool has_map;               //  map is used (keyword, uuid, integer lookup)
    bool has_col;               //  col is used (integer range, float, datetime)
    vmap_t map;                 //  value -> slots
    column_t col;               //  sorted values
    roaring_bitmap_t *is_true;  //  bool: slots with a true value
    roaring_bitmap_t *is_false; //  bool: slots with a false value
    roaring_bitmap_t *present;  //  the key reaches some value
    roaring_bitmap_t *nonempty; //  some reached value is not null nor []
    roaring_bitmap_t *raw_null; //  some reached value is null
    roaring_bitmap_t *has_null; //  some reached value is null or holds a null
    roaring_bitmap_t *no_null;  //  some reached value is neither
    vcount_t *counts;           //  per values_count, sorted by count
    size_t n_counts;            //  entries in counts
    roaring_bitmap_t *indexed;  //  some value of the index's type
    roaring_bitmap_t *o_str;    //  some string not of the index's type
    roaring_bitmap_t *o_int;    //  some integer not of the index's type
    roaring_bitmap_t *o_real;   //  some float not of the index's type
    roaring_bitmap_t *o_bool;   //  some boolean not of the index's type
    roaring_bitmap_t *complex;  //  some array or object (after flattening)
    roaring_bitmap_t *multi;    //  two or more distinct typed values
    vcount_t *tcounts;          //  slots per number (>= 2) of distinct typed values
    size_t n_tcounts;           //  entries in tcounts
    roaring_bitmap_t *noncanon; //  uuid: a value not in canonical text
    roaring_bitmap_t *subus;    //  datetime: a value finer than 1 us
    size_t max_values;          //  most distinct typed values of one point
    bool ready;                 //  atomic: answers reads (false while building)
    uint64_t cursor;            //  building: slots below it are indexed (done:
                                //  S_BUILT, above every slot)
    size_t points;              //  atomic: building: slots with a typed value
} field_t;

//  A typed value taken from a payload.
typedef struct {
    int64_t key;                //  integer, bool, column key
    const uint8_t *bytes;       //  keyword: string bytes (borrowed); uuid: uuid
    size_t len;                 //  length of bytes (0: none)
    uint8_t uuid [16];          //  uuid bytes (bytes points here)
    bool noncanon;              //  uuid: text was not canonical
    bool subus;                 //  datetime: sub-microsecond part
} tval_t;

struct _pindex_t {
    field_t **fields;           //  in creation order
    size_t n_fields;            //  how many
    roaring_bitmap_t *all;      //  slots added
    uint32_t *gen;              //  per slot: bumped by every remove
    size_t gen_cap;             //  slots gen covers
    const json_t **raw;         //  scratch: raw values of one key (writes only)
    size_t n_raw, cap_raw;      //  its fill and size
    tval_t *tv;                 //  scratch: typed values of one key
    size_t n_tv, cap_tv;        //  its fill and size
};

//  A pair of bounds: lo <= matching <= hi; lo == hi means exact.
typedef struct {
    roaring_bitmap_t *lo;       //  slots sure to match
    roaring_bitmap_t *hi;       //  slots that may match
} sel_t;

//  A key range over a column.
typedef struct {
    bool as_double;             //  compare (double) key to the bounds in b
    int64_t lo, hi;             //  else: lo <= key <= hi
    bool has [4];               //  as_double: bounds given (FILTER_LT ...)
    double b [4];               //  as_double: the bounds
    bool empty;                 //  no key can be in range
} krange_t;

//  --------------------------------------------------------------------------
//  Schemas

static const char *s_type_names [] = {
    [PINDEX_KEYWORD] = "keyword", [PINDEX_INTEGER] = "integer", [PINDEX_FLOAT] = "float",
    [PINDEX_BOOL] = "bool", [PINDEX_UUID] = "uuid", [PINDEX_DATETIME] = "datetime",
    [PINDEX_GEO] = "geo", [PINDEX_TEXT] = "text"
};
#define S_N_TYPES (sizeof s_type_names / sizeof s_type_names [0])

const char *
pindex_type_name (pindex_type_t type)
{
    return (size_t) type < S_N_TYPES ? s_type_names [type] : "unknown";
}

static void
s_err (char *err, size_t errlen, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

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

static int
s_type_parse (const json_t *json, pindex_type_t *out, char *err, size_t errlen)
{
    if (!json_is_string (json)) {
        s_err (err, errlen, "field_schema type must be one of keyword, integer, float, "
               "geo, text, bool, datetime, uuid");
        return -SH_EINVAL;
    }
    for (size_t i = 0; i < S_N_TYPES; i++)
        if (strcmp (json_string_value (json), s_type_names [i]) == 0) {
            *out = (pindex_type_t) i;
            return 0;
        }
    s_err (err, errlen, "unknown field_schema type \"%.64s\" (expected keyword, integer, "
           "float, geo, text, bool, datetime or uuid)", json_string_value (json));
    return -SH_EINVAL;
}

int
pindex_schema_parse (const json_t *json, pindex_schema_t *out, char *err, size_t errlen)
{
    assert (out);
    *out = (pindex_schema_t) { PINDEX_KEYWORD, true, true };
    if (err && errlen)
        err [0] = 0;
    if (json_is_string (json))
        return s_type_parse (json, &out->type, err, errlen);
    if (!json_is_object (json)) {
        s_err (err, errlen, "field_schema must be a type name or an object with \"type\"");
        return -SH_EINVAL;
    }
    int rc = s_type_parse (json_object_get (json, "type"), &out->type, err, errlen);
    if (rc)
        return rc;
    //  Qdrant's options: booleans (or null for the default); memory a name.
    static const char *flags [] = { "lookup", "range", "is_tenant", "is_principal",
                                    "on_disk", "enable_hnsw", "prefix" };
    for (size_t i = 0; i < sizeof flags / sizeof flags [0]; i++) {
        const json_t *v = json_object_get (json, flags [i]);
        if (v && !json_is_boolean (v) && !json_is_null (v)) {
            s_err (err, errlen, "field_schema.%s must be a boolean", flags [i]);
            return -SH_EINVAL;
        }
    }
    const json_t *memory = json_object_get (json, "memory");
    if (memory && !json_is_string (memory) && !json_is_null (memory)) {
        s_err (err, errlen, "field_schema.memory must be a string");
        return -SH_EINVAL;
    }
    if (out->type == PINDEX_INTEGER) {
        const json_t *lookup = json_object_get (json, "lookup");
        const json_t *range = json_object_get (json, "range");
        out->lookup = !json_is_false (lookup);
        out->range = !json_is_false (range);
        if (!out->lookup && !out->range) {
            s_err (err, errlen, "the integer index needs lookup or range (or both)");
            return -SH_EINVAL;
        }
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Small helpers

static uint64_t
s_hash (const uint8_t *bytes, size_t len)
{
    uint64_t h = 1469598103934665603ULL;            //  FNV-1a, then mixed
    for (size_t i = 0; i < len; i++)
        h = (h ^ bytes [i]) * 1099511628211ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

//  An int64 whose order is the order of the doubles (-0 and 0 are one key).
static int64_t
s_dkey (double d)
{
    if (d == 0)
        d = 0;
    uint64_t u;
    memcpy (&u, &d, sizeof u);
    u = (u >> 63) ? ~u : u | (1ULL << 63);
    return (int64_t) (u ^ (1ULL << 63));
}

static bool
s_hex (unsigned char c, uint8_t *v)
{
    if (c >= '0' && c <= '9')
        *v = (uint8_t) (c - '0');
    else
    if (c >= 'a' && c <= 'f')
        *v = (uint8_t) (c - 'a' + 10);
    else
    if (c >= 'A' && c <= 'F')
        *v = (uint8_t) (c - 'A' + 10);
    else
        return false;
    return true;
}

//  A UUID in the forms Qdrant's uuid index reads (hyphenated, 32 hex digits,
//  {braced}, urn:uuid:), any case; *canonical is true when text is already
//  the lowercase hyphenated form.
static bool
s_uuid_parse (const char *text, size_t len, uint8_t *uuid, bool *canonical)
{
    *canonical = false;
    if (len == 45 && strncasecmp (text, "urn:uuid:", 9) == 0) {
        text += 9;
        len = 36;
    }
    else
    if (len == 38 && text [0] == '{' && text [37] == '}') {
        text += 1;
        len = 36;
    }
    else
        *canonical = len == 36;
    bool hyphenated = len == 36;
    if (!hyphenated && len != 32) {
        *canonical = false;
        return false;
    }
    size_t nibbles = 0;
    for (size_t i = 0; i < len; i++) {
        if (hyphenated && (i == 8 || i == 13 || i == 18 || i == 23)) {
            if (text [i] != '-')
                return false;
            continue;
        }
        uint8_t v;
        if (!s_hex ((unsigned char) text [i], &v))
            return false;
        if (isupper ((unsigned char) text [i]))
            *canonical = false;
        if (nibbles % 2 == 0)
            uuid [nibbles / 2] = (uint8_t) (v << 4);
        else
            uuid [nibbles / 2] |= v;
        nibbles++;
    }
    return true;
}

//  Microseconds of an instant (floor) and whether it had a finer part.
static int64_t
s_micros (const filter_instant_t *t, bool *subus)
{
    if (subus)
        *subus = t->nsec % 1000 != 0;
    return t->sec * 1000000 + t->nsec / 1000;
}

static size_t
s_bitmap_bytes (const roaring_bitmap_t *bm)
{
    if (!bm)
        return 0;
    roaring_statistics_t st;
    roaring_bitmap_statistics (bm, &st);
    return sizeof (roaring_bitmap_t) + st.n_bytes_array_containers
         + st.n_bytes_run_containers + st.n_bytes_bitset_containers
         + (size_t) bm->high_low_container.allocation_size
           * (sizeof (void *) + sizeof (uint16_t) + sizeof (uint8_t));
}

static roaring_bitmap_t *
s_bm_new (void)
{
    roaring_bitmap_t *bm = roaring_bitmap_create ();
    assert (bm);
    return bm;
}

static roaring_bitmap_t *
s_bm_copy (const roaring_bitmap_t *bm)
{
    roaring_bitmap_t *copy = roaring_bitmap_copy (bm);
    assert (copy);
    return copy;
}

//  --------------------------------------------------------------------------
//  Value map

static const uint8_t *
s_cell_key (const mcell_t *c)
{
    return c->len <= S_KEY_INLINE ? c->key.inl : c->key.ptr;
}

static const uint32_t *
s_cell_slots (const mcell_t *c)
{
    return c->cap == 0 ? c->set.inl : c->set.arr;
}

//  Where slot is, or would go, in a sorted array of n.
static size_t
s_lower_bound (const uint32_t *a, size_t n, uint32_t slot)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a [mid] < slot)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

//  out |= the cell's slots.
static void
s_cell_or_into (const mcell_t *c, roaring_bitmap_t *out)
{
    if (c->cap == S_SET_BIG)
        roaring_bitmap_or_inplace (out, c->set.bm);
    else
        roaring_bitmap_add_many (out, c->n, s_cell_slots (c));
}

//  Inserts slot into the cell's set (nothing if present).
static void
s_cell_add (vmap_t *map, mcell_t *c, uint32_t slot)
{
    if (c->cap == S_SET_BIG) {
        c->n += roaring_bitmap_add_checked (c->set.bm, slot);
        return;
    }
    uint32_t *a = c->cap == 0 ? c->set.inl : c->set.arr;
    size_t pos = s_lower_bound (a, c->n, slot);
    if (pos < c->n && a [pos] == slot)
        return;
    if (c->n == S_SET_SMALL) {
        //  Too many for an array: a bitmap from now on.
        roaring_bitmap_t *bm = s_bm_new ();
        roaring_bitmap_add_many (bm, c->n, a);
        roaring_bitmap_add (bm, slot);
        free (c->set.arr);
        map->heap_bytes -= c->cap * sizeof (uint32_t);
        c->set.bm = bm;
        c->cap = S_SET_BIG;
        c->n++;
        return;
    }
    uint32_t cap = c->cap == 0 ? 2 : c->cap;
    if (c->n == cap) {
        uint32_t grown = cap * 2;
        uint32_t *arr = malloc (grown * sizeof (uint32_t));
        assert (arr);
        memcpy (arr, a, c->n * sizeof (uint32_t));
        if (c->cap)
            free (c->set.arr);
        map->heap_bytes += (grown - c->cap) * sizeof (uint32_t);
        c->set.arr = arr;
        c->cap = grown;
        a = arr;
    }
    memmove (&a [pos + 1], &a [pos], (c->n - pos) * sizeof (uint32_t));
    a [pos] = slot;
    c->n++;
}

//  Removes slot from the cell's set (nothing if absent).
static void
s_cell_remove (mcell_t *c, uint32_t slot)
{
    if (c->cap == S_SET_BIG) {
        c->n -= roaring_bitmap_remove_checked (c->set.bm, slot);
        return;
    }
    uint32_t *a = c->cap == 0 ? c->set.inl : c->set.arr;
    size_t pos = s_lower_bound (a, c->n, slot);
    if (pos < c->n && a [pos] == slot) {
        memmove (&a [pos], &a [pos + 1], (c->n - pos - 1) * sizeof (uint32_t));
        c->n--;
    }
}

static void
s_cell_free (vmap_t *map, mcell_t *c)
{
    if (c->len > S_KEY_INLINE) {
        free (c->key.ptr);
        map->heap_bytes -= c->len;
    }
    if (c->cap == S_SET_BIG)
        roaring_bitmap_free (c->set.bm);
    else
    if (c->cap) {
        free (c->set.arr);
        map->heap_bytes -= c->cap * sizeof (uint32_t);
    }
    memset (c, 0, sizeof *c);
}

//  The cell index of key, or map->cap if absent.
static size_t
s_map_pos (const vmap_t *map, const uint8_t *key, size_t len, uint64_t hash)
{
    if (map->cap == 0)
        return 0;
    size_t mask = map->cap - 1;
    for (size_t i = hash & mask; map->cells [i].n; i = (i + 1) & mask) {
        const mcell_t *c = &map->cells [i];
        if (c->hash == hash && c->len == len && memcmp (s_cell_key (c), key, len) == 0)
            return i;
    }
    return map->cap;
}

//  The cell of key; NULL if no slot has that value.
static const mcell_t *
s_map_find (const vmap_t *map, const uint8_t *key, size_t len)
{
    size_t i = s_map_pos (map, key, len, s_hash (key, len));
    return i < map->cap ? &map->cells [i] : NULL;
}

static void
s_map_place (mcell_t *cells, size_t cap, const mcell_t *cell)
{
    size_t mask = cap - 1;
    size_t i = cell->hash & mask;
    while (cells [i].n)
        i = (i + 1) & mask;
    cells [i] = *cell;
}

static void
s_map_add (vmap_t *map, const uint8_t *key, size_t len, uint32_t slot)
{
    uint64_t hash = s_hash (key, len);
    size_t i = s_map_pos (map, key, len, hash);
    if (i < map->cap) {
        s_cell_add (map, &map->cells [i], slot);
        return;
    }
    if ((map->n + 1) * 2 > map->cap) {
        size_t cap = map->cap ? map->cap * 2 : 16;
        mcell_t *cells = calloc (cap, sizeof (mcell_t));
        assert (cells);
        for (size_t k = 0; k < map->cap; k++)
            if (map->cells [k].n)
                s_map_place (cells, cap, &map->cells [k]);
        free (map->cells);
        map->cells = cells;
        map->cap = cap;
    }
    mcell_t cell;
    memset (&cell, 0, sizeof cell);
    cell.hash = hash;
    cell.len = (uint32_t) len;
    if (len > S_KEY_INLINE) {
        cell.key.ptr = malloc (len);
        assert (cell.key.ptr);
        map->heap_bytes += len;
    }
    memcpy (len > S_KEY_INLINE ? cell.key.ptr : cell.key.inl, key, len);
    cell.n = 1;
    cell.set.inl [0] = slot;
    s_map_place (map->cells, map->cap, &cell);
    map->n++;
}

static void
s_map_remove (vmap_t *map, const uint8_t *key, size_t len, uint32_t slot)
{
    size_t i = s_map_pos (map, key, len, s_hash (key, len));
    if (i >= map->cap)
        return;
    s_cell_remove (&map->cells [i], slot);
    if (map->cells [i].n)
        return;
    //  The last slot left: the value goes, so memory follows the live data.
    s_cell_free (map, &map->cells [i]);
    map->n--;
    //  Backward shift: pull later cells of the probe run into the hole
    //  unless their home lies cyclically in (hole, j].
    size_t mask = map->cap - 1;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!map->cells [j].n)
            break;
        size_t home = map->cells [j].hash & mask;
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        map->cells [i] = map->cells [j];
        i = j;
    }
    memset (&map->cells [i], 0, sizeof (mcell_t));
}

static void
s_map_fini (vmap_t *map)
{
    for (size_t i = 0; i < map->cap; i++)
        if (map->cells [i].n)
            s_cell_free (map, &map->cells [i]);
    free (map->cells);
    memset (map, 0, sizeof *map);
}

//  A new bitmap of the slots with this value (empty if none).
static roaring_bitmap_t *
s_map_bitmap (const vmap_t *map, const uint8_t *key, size_t len)
{
    roaring_bitmap_t *bm = s_bm_new ();
    const mcell_t *c = s_map_find (map, key, len);
    if (c)
        s_cell_or_into (c, bm);
    return bm;
}

//  --------------------------------------------------------------------------
//  Sorted column

static int
s_entry_cmp (const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->slot > y->slot) - (x->slot < y->slot);
}

static bool
s_entry_live (const entry_t *e, const uint32_t *gen)
{
    return e->gen == gen [e->slot];
}

//  Sorts the pending tail into the sorted part and drops dead entries. The
//  merge runs backwards inside the sorted array (grown by half when full),
//  so a merge allocates nothing new most of the time.
static void
s_col_merge (column_t *col, const uint32_t *gen)
{
    if (col->n_pending == 0 && col->n_dead == 0)
        return;
    qsort (col->pending, col->n_pending, sizeof (entry_t), s_entry_cmp);
    size_t total = col->n_sorted + col->n_pending;
    if (total > col->cap_sorted) {
        size_t cap = col->cap_sorted ? col->cap_sorted : 64;
        while (cap < total)
            cap += cap / 2;
        col->sorted = realloc (col->sorted, cap * sizeof (entry_t));
        assert (col->sorted);
        col->cap_sorted = cap;
    }
    size_t i = col->n_sorted, j = col->n_pending, k = total;
    while (j > 0) {
        if (i > 0 && s_entry_cmp (&col->sorted [i - 1], &col->pending [j - 1]) > 0)
            col->sorted [--k] = col->sorted [--i];
        else
            col->sorted [--k] = col->pending [--j];
    }
    size_t n = total;
    if (col->n_dead) {
        n = 0;
        for (k = 0; k < total; k++)
            if (s_entry_live (&col->sorted [k], gen))
                col->sorted [n++] = col->sorted [k];
    }
    col->n_sorted = n;
    col->n_pending = 0;
    col->n_dead = 0;
    //  Memory follows the live entries after many deletes.
    if (col->cap_sorted > 2 * n + 1024) {
        col->cap_sorted = n + n / 2 + 64;
        col->sorted = realloc (col->sorted, col->cap_sorted * sizeof (entry_t));
        assert (col->sorted);
    }
    //  The tail's buffer is kept for the next inserts unless it grew large.
    if (col->cap_pending > S_MERGE_MIN * 4) {
        free (col->pending);
        col->pending = NULL;
        col->cap_pending = 0;
    }
}

static void
s_col_maybe_merge (column_t *col, const uint32_t *gen)
{
    size_t tail_max = col->n_sorted / 8 > S_MERGE_MIN ? col->n_sorted / 8 : S_MERGE_MIN;
    size_t entries = col->n_sorted + col->n_pending;
    if (col->n_pending > tail_max
    ||  (col->n_dead > S_DEAD_MIN && col->n_dead * 2 > entries))
        s_col_merge (col, gen);
}

static void
s_col_push (column_t *col, int64_t key, uint32_t slot, uint32_t gen)
{
    if (col->n_pending == col->cap_pending) {
        col->cap_pending = col->cap_pending ? col->cap_pending * 2 : 64;
        col->pending = realloc (col->pending, col->cap_pending * sizeof (entry_t));
        assert (col->pending);
    }
    col->pending [col->n_pending++] = (entry_t) { key, slot, gen };
}

static bool
s_kr_above_lower (const krange_t *r, int64_t key)
{
    if (!r->as_double)
        return key >= r->lo;
    double x = (double) key;
    return (!r->has [FILTER_GT] || x > r->b [FILTER_GT])
        && (!r->has [FILTER_GTE] || x >= r->b [FILTER_GTE]);
}

static bool
s_kr_below_upper (const krange_t *r, int64_t key)
{
    if (!r->as_double)
        return key <= r->hi;
    double x = (double) key;
    return (!r->has [FILTER_LT] || x < r->b [FILTER_LT])
        && (!r->has [FILTER_LTE] || x <= r->b [FILTER_LTE]);
}

//  [*begin, *end) of the sorted part in range (dead entries included).
static void
s_col_span (const column_t *col, const krange_t *r, size_t *begin, size_t *end)
{
    *begin = *end = 0;
    if (r->empty)
        return;
    size_t lo = 0, hi = col->n_sorted;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s_kr_above_lower (r, col->sorted [mid].key))
            hi = mid;
        else
            lo = mid + 1;
    }
    *begin = lo;
    hi = col->n_sorted;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s_kr_below_upper (r, col->sorted [mid].key))
            lo = mid + 1;
        else
            hi = mid;
    }
    *end = lo;
}

static bool
s_kr_has (const krange_t *r, int64_t key)
{
    return !r->empty && s_kr_above_lower (r, key) && s_kr_below_upper (r, key);
}

//  Entries in range, dead ones included (an upper bound on live ones).
static size_t
s_col_count (const column_t *col, const krange_t *r)
{
    size_t begin, end;
    s_col_span (col, r, &begin, &end);
    size_t n = end - begin;
    for (size_t i = 0; i < col->n_pending; i++)
        n += s_kr_has (r, col->pending [i].key);
    return n;
}

//  Adds the slots of live entries in range to out.
static void
s_col_collect (const pindex_t *self, const column_t *col, const krange_t *r,
               roaring_bitmap_t *out)
{
    size_t begin, end;
    s_col_span (col, r, &begin, &end);
    uint32_t *buf = NULL;
    if (end - begin > 4096) {
        //  Many slots in key order are in random slot order: set them in a
        //  flat bitset, then hand them to CRoaring in increasing order.
        size_t words = (self->gen_cap + 63) / 64;
        uint64_t *bits = calloc (words ? words : 1, sizeof (uint64_t));
        assert (bits);
        for (size_t i = begin; i < end; i++) {
            const entry_t *e = &col->sorted [i];
            if (s_entry_live (e, self->gen))
                bits [e->slot >> 6] |= 1ULL << (e->slot & 63);
        }
        buf = malloc (4096 * sizeof (uint32_t));
        assert (buf);
        size_t n = 0;
        for (size_t w = 0; w < words; w++)
            for (uint64_t m = bits [w]; m; m &= m - 1) {
                buf [n++] = (uint32_t) (w * 64 + (size_t) __builtin_ctzll (m));
                if (n == 4096) {
                    roaring_bitmap_add_many (out, n, buf);
                    n = 0;
                }
            }
        roaring_bitmap_add_many (out, n, buf);
        free (buf);
        free (bits);
    }
    else
        for (size_t i = begin; i < end; i++) {
            const entry_t *e = &col->sorted [i];
            if (s_entry_live (e, self->gen))
                roaring_bitmap_add (out, e->slot);
        }
    for (size_t i = 0; i < col->n_pending; i++) {
        const entry_t *e = &col->pending [i];
        if (s_kr_has (r, e->key) && s_entry_live (e, self->gen))
            roaring_bitmap_add (out, e->slot);
    }
}

static void
s_col_fini (column_t *col)
{
    free (col->sorted);
    free (col->pending);
    memset (col, 0, sizeof *col);
}

//  --------------------------------------------------------------------------
//  Field index: adding and removing points

static void
s_field_destroy (field_t **self_p)
{
    field_t *f = *self_p;
    if (!f)
        return;
    free (f->path);
    json_decref (f->params);
    s_map_fini (&f->map);
    s_col_fini (&f->col);
    roaring_bitmap_t **bms [] = { &f->is_true, &f->is_false, &f->present, &f->nonempty,
                                  &f->raw_null, &f->has_null, &f->no_null, &f->indexed,
                                  &f->o_str, &f->o_int, &f->o_real, &f->o_bool,
                                  &f->complex, &f->multi, &f->noncanon, &f->subus };
    for (size_t i = 0; i < sizeof bms / sizeof bms [0]; i++)
        if (*bms [i])
            roaring_bitmap_free (*bms [i]);
    for (size_t i = 0; i < f->n_counts; i++)
        roaring_bitmap_free (f->counts [i].slots);
    free (f->counts);
    for (size_t i = 0; i < f->n_tcounts; i++)
        roaring_bitmap_free (f->tcounts [i].slots);
    free (f->tcounts);
    free (f);
    *self_p = NULL;
}

static field_t *
s_field_new (const char *path, const pindex_schema_t *schema, const json_t *params)
{
    field_t *f = calloc (1, sizeof (field_t));
    assert (f);
    f->path = strdup (path);
    assert (f->path);
    f->schema = *schema;
    f->params = json_is_object (params) ? json_deep_copy (params) : NULL;
    pindex_type_t t = schema->type;
    f->has_map = t == PINDEX_KEYWORD || t == PINDEX_UUID
              || (t == PINDEX_INTEGER && schema->lookup);
    f->has_col = t == PINDEX_FLOAT || t == PINDEX_DATETIME
              || (t == PINDEX_INTEGER && schema->range);
    roaring_bitmap_t **bms [] = { &f->present, &f->nonempty, &f->raw_null, &f->has_null,
                                  &f->no_null, &f->indexed, &f->o_str, &f->o_int,
                                  &f->o_real, &f->o_bool, &f->complex, &f->multi };
    for (size_t i = 0; i < sizeof bms / sizeof bms [0]; i++)
        *bms [i] = s_bm_new ();
    if (t == PINDEX_BOOL) {
        f->is_true = s_bm_new ();
        f->is_false = s_bm_new ();
    }
    if (t == PINDEX_UUID)
        f->noncanon = s_bm_new ();
    if (t == PINDEX_DATETIME)
        f->subus = s_bm_new ();
    return f;
}

static vcount_t *
s_count_find (vcount_t *counts, size_t n, uint64_t count, size_t *pos)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (counts [mid].count < count)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return lo < n && counts [lo].count == count ? &counts [lo] : NULL;
}

static void
s_count_add (vcount_t **counts, size_t *n, uint64_t count, uint32_t slot)
{
    size_t pos;
    vcount_t *c = s_count_find (*counts, *n, count, &pos);
    if (!c) {
        *counts = realloc (*counts, (*n + 1) * sizeof (vcount_t));
        assert (*counts);
        memmove (&(*counts) [pos + 1], &(*counts) [pos], (*n - pos) * sizeof (vcount_t));
        (*counts) [pos] = (vcount_t) { count, s_bm_new () };
        (*n)++;
        c = &(*counts) [pos];
    }
    roaring_bitmap_add (c->slots, slot);
}

//  Removes slot from every entry, dropping entries left empty.
static void
s_count_remove (vcount_t *counts, size_t *n, uint32_t slot)
{
    size_t kept = 0;
    for (size_t i = 0; i < *n; i++) {
        roaring_bitmap_remove (counts [i].slots, slot);
        if (roaring_bitmap_is_empty (counts [i].slots))
            roaring_bitmap_free (counts [i].slots);
        else
            counts [kept++] = counts [i];
    }
    *n = kept;
}

static void
s_collect_raw (const json_t *value, void *arg)
{
    pindex_t *self = arg;
    if (self->n_raw == self->cap_raw) {
        self->cap_raw = self->cap_raw ? self->cap_raw * 2 : 16;
        self->raw = realloc (self->raw, self->cap_raw * sizeof (json_t *));
        assert (self->raw);
    }
    self->raw [self->n_raw++] = value;
}

static tval_t *
s_tv_push (pindex_t *self)
{
    if (self->n_tv == self->cap_tv) {
        self->cap_tv = self->cap_tv ? self->cap_tv * 2 : 16;
        self->tv = realloc (self->tv, self->cap_tv * sizeof (tval_t));
        assert (self->tv);
    }
    tval_t *tv = &self->tv [self->n_tv++];
    memset (tv, 0, sizeof *tv);
    return tv;
}

//  Classes of flattened values that are not null and not of the index's
//  type, as flags.
enum {
    S_SEEN_STR = 1, S_SEEN_INT = 2, S_SEEN_REAL = 4, S_SEEN_BOOL = 8, S_SEEN_COMPLEX = 16
};
typedef enum { V_NULL = 0, V_TYPED = 32 } vclass_t;

//  Sorts one flattened value: V_NULL, V_TYPED (pushed on tv), or the
//  S_SEEN_ flag of its class.
static int
s_take (pindex_t *self, const field_t *f, const json_t *v)
{
    pindex_type_t t = f->schema.type;
    if (json_is_null (v))
        return V_NULL;
    if (json_is_object (v) && t == PINDEX_GEO
    &&  json_is_number (json_object_get (v, "lon"))
    &&  json_is_number (json_object_get (v, "lat"))) {
        s_tv_push (self);
        return V_TYPED;
    }
    if (json_is_array (v) || json_is_object (v))
        return S_SEEN_COMPLEX;
    if (json_is_string (v)) {
        const char *s = json_string_value (v);
        size_t len = json_string_length (v);
        if (t == PINDEX_KEYWORD || t == PINDEX_TEXT) {
            tval_t *tv = s_tv_push (self);
            tv->bytes = (const uint8_t *) s;
            tv->len = len;
            return V_TYPED;
        }
        if (t == PINDEX_UUID) {
            uint8_t uuid [16];
            bool canonical;
            if (!s_uuid_parse (s, len, uuid, &canonical))
                return S_SEEN_STR;
            tval_t *tv = s_tv_push (self);
            memcpy (tv->uuid, uuid, 16);
            tv->len = 16;
            tv->noncanon = !canonical;
            return V_TYPED;
        }
        if (t == PINDEX_DATETIME) {
            filter_instant_t when;
            if (!filter_parse_datetime (s, len, &when))
                return S_SEEN_STR;
            tval_t *tv = s_tv_push (self);
            tv->key = s_micros (&when, &tv->subus);
            return V_TYPED;
        }
        return S_SEEN_STR;
    }
    if (json_is_integer (v) && (t == PINDEX_INTEGER || t == PINDEX_FLOAT)) {
        tval_t *tv = s_tv_push (self);
        tv->key = t == PINDEX_INTEGER ? (int64_t) json_integer_value (v)
                                      : s_dkey ((double) json_integer_value (v));
        return V_TYPED;
    }
    if (json_is_real (v) && t == PINDEX_FLOAT) {
        s_tv_push (self)->key = s_dkey (json_real_value (v));
        return V_TYPED;
    }
    if (json_is_boolean (v) && t == PINDEX_BOOL) {
        s_tv_push (self)->key = json_is_true (v);
        return V_TYPED;
    }
    return json_is_integer (v) ? S_SEEN_INT
         : json_is_real (v) ? S_SEEN_REAL : S_SEEN_BOOL;
}

static int
s_tv_cmp (const void *a, const void *b)
{
    const tval_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    const uint8_t *xb = x->len == 16 && !x->bytes ? x->uuid : x->bytes;
    const uint8_t *yb = y->len == 16 && !y->bytes ? y->uuid : y->bytes;
    return x->len ? memcmp (xb, yb, x->len) : 0;
}

//  The map key of a typed value.
static const uint8_t *
s_tv_key (const field_t *f, const tval_t *tv, size_t *len)
{
    if (f->schema.type == PINDEX_UUID) {
        *len = 16;
        return tv->uuid;
    }
    if (f->schema.type == PINDEX_INTEGER) {
        *len = sizeof tv->key;
        return (const uint8_t *) &tv->key;
    }
    *len = tv->len;
    return tv->bytes;
}

//  Gathers the key's values in payload: raw values in self->raw, distinct
//  typed ones in self->tv. Returns the S_SEEN_ flags of the others.
static int
s_gather (pindex_t *self, const field_t *f, const json_t *payload)
{
    self->n_raw = 0;
    self->n_tv = 0;
    filter_path_visit_raw (payload, f->path, s_collect_raw, self);
    int seen = 0;
    for (size_t i = 0; i < self->n_raw; i++) {
        const json_t *r = self->raw [i];
        if (json_is_array (r)) {
            size_t k;
            const json_t *elem;
            json_array_foreach (r, k, elem)
                seen |= s_take (self, f, elem);
        }
        else
            seen |= s_take (self, f, r);
    }
    if (self->n_tv > 1) {
        qsort (self->tv, self->n_tv, sizeof (tval_t), s_tv_cmp);
        size_t n = 1;
        for (size_t i = 1; i < self->n_tv; i++) {
            tval_t *kept = &self->tv [n - 1];
            if (s_tv_cmp (kept, &self->tv [i]) != 0) {
                self->tv [n++] = self->tv [i];
                continue;
            }
            //  One key, several spellings ("A0EE.." and "a0ee..", two times in
            //  one microsecond): the key keeps what any of them says, or a
            //  finer time would be lost behind a whole one.
            kept->noncanon |= self->tv [i].noncanon;
            kept->subus |= self->tv [i].subus;
        }
        self->n_tv = n;
    }
    return seen & ~V_TYPED;
}

static bool
s_has_null (const json_t *v)
{
    if (json_is_null (v))
        return true;
    if (json_is_array (v)) {
        size_t i;
        const json_t *elem;
        json_array_foreach (v, i, elem)
            if (json_is_null (elem))
                return true;
    }
    return false;
}

static void
s_field_add (pindex_t *self, field_t *f, uint32_t slot, const json_t *payload)
{
    int seen = s_gather (self, f, payload);
    if (self->n_raw == 0)
        return;
    roaring_bitmap_add (f->present, slot);
    bool nonempty = false, raw_null = false, has_null = false, no_null = false;
    for (size_t i = 0; i < self->n_raw; i++) {
        const json_t *r = self->raw [i];
        uint64_t count = json_is_null (r) ? 0
                       : json_is_array (r) ? json_array_size (r) : 1;
        s_count_add (&f->counts, &f->n_counts, count, slot);
        nonempty |= count > 0;
        raw_null |= json_is_null (r);
        bool hn = s_has_null (r);
        has_null |= hn;
        no_null |= !hn;
    }
    if (nonempty)
        roaring_bitmap_add (f->nonempty, slot);
    if (raw_null)
        roaring_bitmap_add (f->raw_null, slot);
    if (has_null)
        roaring_bitmap_add (f->has_null, slot);
    if (no_null)
        roaring_bitmap_add (f->no_null, slot);
    roaring_bitmap_t *classes [] = { f->o_str, f->o_int, f->o_real, f->o_bool,
                                     f->complex };
    for (size_t i = 0; i < sizeof classes / sizeof classes [0]; i++)
        if (seen & (1 << i))
            roaring_bitmap_add (classes [i], slot);
    if (self->n_tv == 0)
        return;
    roaring_bitmap_add (f->indexed, slot);
    if (self->n_tv > 1) {
        roaring_bitmap_add (f->multi, slot);
        s_count_add (&f->tcounts, &f->n_tcounts, self->n_tv, slot);
    }
    if (self->n_tv > f->max_values)
        f->max_values = self->n_tv;
    for (size_t i = 0; i < self->n_tv; i++) {
        const tval_t *tv = &self->tv [i];
        if (f->has_map) {
            size_t len;
            const uint8_t *key = s_tv_key (f, tv, &len);
            s_map_add (&f->map, key, len, slot);
        }
        if (f->has_col)
            s_col_push (&f->col, tv->key, slot, self->gen [slot]);
        if (f->is_true)
            roaring_bitmap_add (tv->key ? f->is_true : f->is_false, slot);
        if (tv->noncanon)
            roaring_bitmap_add (f->noncanon, slot);
        if (tv->subus)
            roaring_bitmap_add (f->subus, slot);
    }
    if (f->has_col)
        s_col_maybe_merge (&f->col, self->gen);
}

static void
s_field_remove (pindex_t *self, field_t *f, uint32_t slot, const json_t *payload)
{
    if (!roaring_bitmap_contains (f->present, slot))
        return;
    if (f->has_map || f->has_col) {
        s_gather (self, f, payload);
        for (size_t i = 0; i < self->n_tv && f->has_map; i++) {
            size_t len;
            const uint8_t *key = s_tv_key (f, &self->tv [i], &len);
            s_map_remove (&f->map, key, len, slot);
        }
        //  The column's entries die with the slot's generation (bumped by
        //  the caller); only the count is kept here.
        if (f->has_col)
            f->col.n_dead += self->n_tv;
    }
    roaring_bitmap_t *bms [] = { f->is_true, f->is_false, f->present, f->nonempty,
                                 f->raw_null, f->has_null, f->no_null, f->indexed,
                                 f->o_str, f->o_int, f->o_real, f->o_bool, f->complex,
                                 f->multi, f->noncanon, f->subus };
    for (size_t i = 0; i < sizeof bms / sizeof bms [0]; i++)
        if (bms [i])
            roaring_bitmap_remove (bms [i], slot);
    s_count_remove (f->counts, &f->n_counts, slot);
    s_count_remove (f->tcounts, &f->n_tcounts, slot);
}

//  --------------------------------------------------------------------------
//  Life cycle and writes

pindex_t *
pindex_new (void)
{
    pindex_t *self = calloc (1, sizeof (pindex_t));
    assert (self);
    self->all = s_bm_new ();
    return self;
}

void
pindex_destroy (pindex_t **self_p)
{
    assert (self_p);
    pindex_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->n_fields; i++)
        s_field_destroy (&self->fields [i]);
    free (self->fields);
    roaring_bitmap_free (self->all);
    free (self->gen);
    free (self->raw);
    free (self->tv);
    free (self);
    *self_p = NULL;
}

//  The field index of path, built or building.
static void s_count_building (pindex_t *self);

static field_t *
s_find (const pindex_t *self, const char *path)
{
    for (size_t i = 0; i < self->n_fields; i++)
        if (strcmp (self->fields [i]->path, path) == 0)
            return self->fields [i];
    return NULL;
}

static inline bool
s_ready (const field_t *f)
{
    return __atomic_load_n (&f->ready, __ATOMIC_ACQUIRE);
}

//  What the field index covers: every point once built, the points below
//  the cursor while building.
static inline bool
s_covers (const field_t *f, uint32_t slot)
{
    return s_ready (f) || slot < f->cursor;
}

int
pindex_add_point (pindex_t *self, uint32_t slot, const json_t *payload)
{
    assert (self);
    if (slot == UINT32_MAX || roaring_bitmap_contains (self->all, slot))
        return -SH_EEXIST;
    if (slot >= self->gen_cap) {
        size_t cap = self->gen_cap ? self->gen_cap : 1024;
        while (cap <= slot)
            cap *= 2;
        self->gen = realloc (self->gen, cap * sizeof (uint32_t));
        assert (self->gen);
        memset (self->gen + self->gen_cap, 0, (cap - self->gen_cap) * sizeof (uint32_t));
        self->gen_cap = cap;
    }
    roaring_bitmap_add (self->all, slot);
    //  A building field takes the points its scan has passed; it reads the
    //  others when it gets to them.
    if (json_is_object (payload))
        for (size_t i = 0; i < self->n_fields; i++)
            if (s_covers (self->fields [i], slot))
                s_field_add (self, self->fields [i], slot, payload);
    s_count_building (self);
    return 0;
}

int
pindex_remove_point (pindex_t *self, uint32_t slot, const json_t *payload)
{
    assert (self);
    if (!roaring_bitmap_contains (self->all, slot))
        return -SH_ENOTFOUND;
    for (size_t i = 0; i < self->n_fields; i++)
        if (s_covers (self->fields [i], slot))
            s_field_remove (self, self->fields [i], slot, payload);
    roaring_bitmap_remove (self->all, slot);
    self->gen [slot]++;
    for (size_t i = 0; i < self->n_fields; i++)
        if (self->fields [i]->has_col)
            s_col_maybe_merge (&self->fields [i]->col, self->gen);
    s_count_building (self);
    return 0;
}

//  Sets the shown point counts of building fields (atomic: the main thread
//  reads them without the gate).
static void
s_count_building (pindex_t *self)
{
    for (size_t i = 0; i < self->n_fields; i++) {
        field_t *f = self->fields [i];
        if (!s_ready (f))
            __atomic_store_n (&f->points,
                              (size_t) roaring_bitmap_get_cardinality (f->indexed),
                              __ATOMIC_RELAXED);
    }
}

int
pindex_begin_field (pindex_t *self, const char *path, const json_t *field_schema,
                    char *err, size_t errlen)
{
    assert (self);
    pindex_schema_t schema;
    int rc = pindex_schema_parse (field_schema, &schema, err, errlen);
    if (rc)
        return rc;
    char *canonical = path && strlen (path) <= S_MAX_PATH ? filter_path_canonical (path)
                                                          : NULL;
    if (!canonical) {
        s_err (err, errlen, "invalid field_name \"%.100s\"", path ? path : "");
        return -SH_EINVAL;
    }
    field_t *old = s_find (self, canonical);
    if (old && old->schema.type == schema.type && old->schema.lookup == schema.lookup
    &&  old->schema.range == schema.range) {
        //  Options that change nothing here (on_disk ...) are still shown.
        json_decref (old->params);
        old->params = json_is_object (field_schema) ? json_deep_copy (field_schema)
                                                    : NULL;
        free (canonical);
        return 0;
    }
    if (old)
        pindex_drop_field (self, canonical);
    field_t *f = s_field_new (canonical, &schema, field_schema);
    free (canonical);
    self->fields = realloc (self->fields, (self->n_fields + 1) * sizeof (field_t *));
    assert (self->fields);
    self->fields [self->n_fields++] = f;
    return 0;
}

bool
pindex_build_work (pindex_t *self, pindex_payload_fn *payload_of, void *arg,
                   pindex_yield_fn *should_yield, void *yield_arg)
{
    assert (self);
    //  The points added so far must be read to be indexed.
    assert (payload_of || roaring_bitmap_is_empty (self->all));
    for (size_t i = 0; i < self->n_fields; i++) {
        field_t *f = self->fields [i];
        if (s_ready (f) || f->cursor == S_BUILT)
            continue;
        //  From the cursor on, a step at a time; the iterator is made anew
        //  per call, as the points may have changed in between.
        roaring_uint32_iterator_t it;
        roaring_init_iterator (self->all, &it);
        bool more = f->cursor == 0 ? it.has_value
                  : roaring_move_uint32_iterator_equalorlarger (&it, (uint32_t) f->cursor);
        while (more) {
            uint32_t batch [S_BUILD_STEP];
            uint32_t n = roaring_read_uint32_iterator (&it, batch, S_BUILD_STEP);
            for (uint32_t k = 0; k < n; k++) {
                const json_t *payload = payload_of (batch [k], arg);
                if (json_is_object (payload))
                    s_field_add (self, f, batch [k], payload);
            }
            more = n == S_BUILD_STEP && it.has_value;
            f->cursor = more ? it.current_value : S_BUILT;
            __atomic_store_n (&f->points,
                              (size_t) roaring_bitmap_get_cardinality (f->indexed),
                              __ATOMIC_RELAXED);
            if (more && should_yield && should_yield (yield_arg))
                return true;
        }
        //  Every point is in: make reads as fast as they can be before the
        //  field starts answering them.
        f->cursor = S_BUILT;
        if (f->has_col)
            s_col_merge (&f->col, self->gen);
        if (should_yield && should_yield (yield_arg))
            break;
    }
    for (size_t i = 0; i < self->n_fields; i++)
        if (!s_ready (self->fields [i]) && self->fields [i]->cursor != S_BUILT)
            return true;
    return false;
}

bool
pindex_publish_due (const pindex_t *self)
{
    for (size_t i = 0; i < self->n_fields; i++)
        if (!s_ready (self->fields [i]) && self->fields [i]->cursor == S_BUILT)
            return true;
    return false;
}

size_t
pindex_publish (pindex_t *self)
{
    size_t published = 0;
    for (size_t i = 0; i < self->n_fields; i++) {
        field_t *f = self->fields [i];
        if (s_ready (f) || f->cursor != S_BUILT)
            continue;
        __atomic_store_n (&f->ready, true, __ATOMIC_RELEASE);
        published++;
    }
    return published;
}

bool
pindex_building (const pindex_t *self)
{
    for (size_t i = 0; i < self->n_fields; i++)
        if (!s_ready (self->fields [i]))
            return true;
    return false;
}

bool
pindex_field_ready (const pindex_t *self, const char *path)
{
    char *canonical = path ? filter_path_canonical (path) : NULL;
    const field_t *f = canonical ? s_find (self, canonical) : NULL;
    free (canonical);
    return f && s_ready (f);
}

int
pindex_create_field (pindex_t *self, const char *path, const json_t *field_schema,
                     pindex_payload_fn *payload_of, void *arg, char *err, size_t errlen)
{
    int rc = pindex_begin_field (self, path, field_schema, err, errlen);
    if (rc == 0) {
        //  No reader runs beside the writer: build and publish at once.
        pindex_build_work (self, payload_of, arg, NULL, NULL);
        pindex_publish (self);
    }
    return rc;
}

int
pindex_drop_field (pindex_t *self, const char *path)
{
    char *canonical = path ? filter_path_canonical (path) : NULL;
    if (!canonical)
        return -SH_ENOTFOUND;
    for (size_t i = 0; i < self->n_fields; i++)
        if (strcmp (self->fields [i]->path, canonical) == 0) {
            s_field_destroy (&self->fields [i]);
            memmove (&self->fields [i], &self->fields [i + 1],
                     (self->n_fields - i - 1) * sizeof (field_t *));
            self->n_fields--;
            free (canonical);
            return 0;
        }
    free (canonical);
    return -SH_ENOTFOUND;
}

void
pindex_optimize (pindex_t *self)
{
    for (size_t i = 0; i < self->n_fields; i++) {
        field_t *f = self->fields [i];
        if (!s_ready (f))
            continue;
        if (f->has_col)
            s_col_merge (&f->col, self->gen);
        if (f->has_map)
            for (size_t k = 0; k < f->map.cap; k++)
                if (f->map.cells [k].cap == S_SET_BIG)
                    roaring_bitmap_run_optimize (f->map.cells [k].set.bm);
        roaring_bitmap_t *bms [] = { f->is_true, f->is_false, f->present, f->nonempty,
                                     f->indexed, f->no_null };
        for (size_t k = 0; k < sizeof bms / sizeof bms [0]; k++)
            if (bms [k])
                roaring_bitmap_run_optimize (bms [k]);
        for (size_t k = 0; k < f->n_counts; k++)
            roaring_bitmap_run_optimize (f->counts [k].slots);
    }
    roaring_bitmap_run_optimize (self->all);
}

//  --------------------------------------------------------------------------
//  Reads: sizes

size_t
pindex_size (const pindex_t *self)
{
    return (size_t) roaring_bitmap_get_cardinality (self->all);
}

size_t
pindex_field_count (const pindex_t *self)
{
    return self->n_fields;
}

const char *
pindex_field_name (const pindex_t *self, size_t index)
{
    assert (index < self->n_fields);
    return self->fields [index]->path;
}

static const field_t *
s_find_text (const pindex_t *self, const char *path)
{
    char *canonical = path ? filter_path_canonical (path) : NULL;
    if (!canonical)
        return NULL;
    const field_t *f = s_find (self, canonical);
    free (canonical);
    return f;
}

int
pindex_field_schema (const pindex_t *self, const char *path, pindex_schema_t *out)
{
    const field_t *f = s_find_text (self, path);
    if (!f)
        return -SH_ENOTFOUND;
    *out = f->schema;
    return 0;
}

//  Points with a typed value: counted from the bitmap of a built field
//  (only writers change it), read from the count the build keeps of a
//  building one (its bitmap is the build's while it runs).
static size_t
s_points (const field_t *f)
{
    return s_ready (f) ? (size_t) roaring_bitmap_get_cardinality (f->indexed)
                       : __atomic_load_n (&f->points, __ATOMIC_RELAXED);
}

size_t
pindex_field_points (const pindex_t *self, const char *path)
{
    const field_t *f = s_find_text (self, path);
    return f ? s_points (f) : 0;
}

json_t *
pindex_payload_schema (const pindex_t *self)
{
    json_t *schema = json_object ();
    assert (schema);
    for (size_t i = 0; i < self->n_fields; i++) {
        const field_t *f = self->fields [i];
        json_int_t points = (json_int_t) s_points (f);
        json_t *info = json_pack ("{s:s, s:I}", "data_type",
                                  pindex_type_name (f->schema.type), "points", points);
        assert (info);
        if (f->params)
            json_object_set_new (info, "params", json_deep_copy (f->params));
        json_object_set_new (schema, f->path, info);
    }
    return schema;
}

size_t
pindex_memory (const pindex_t *self)
{
    size_t bytes = sizeof (pindex_t) + s_bitmap_bytes (self->all)
                 + self->gen_cap * sizeof (uint32_t)
                 + self->cap_raw * sizeof (json_t *) + self->cap_tv * sizeof (tval_t)
                 + self->n_fields * sizeof (field_t *);
    for (size_t i = 0; i < self->n_fields; i++) {
        const field_t *f = self->fields [i];
        if (!s_ready (f))
            continue;       //  the build's, counted once it is done
        bytes += sizeof (field_t) + strlen (f->path) + 1;
        bytes += f->map.cap * sizeof (mcell_t) + f->map.heap_bytes;
        for (size_t k = 0; k < f->map.cap; k++)
            if (f->map.cells [k].cap == S_SET_BIG)
                bytes += s_bitmap_bytes (f->map.cells [k].set.bm);
        bytes += (f->col.cap_sorted + f->col.cap_pending) * sizeof (entry_t);
        const roaring_bitmap_t *bms [] = { f->is_true, f->is_false, f->present,
                                           f->nonempty, f->raw_null, f->has_null,
                                           f->no_null, f->indexed, f->o_str, f->o_int,
                                           f->o_real, f->o_bool, f->complex, f->multi,
                                           f->noncanon, f->subus };
        for (size_t k = 0; k < sizeof bms / sizeof bms [0]; k++)
            bytes += s_bitmap_bytes (bms [k]);
        bytes += (f->n_counts + f->n_tcounts) * sizeof (vcount_t);
        for (size_t k = 0; k < f->n_counts; k++)
            bytes += s_bitmap_bytes (f->counts [k].slots);
        for (size_t k = 0; k < f->n_tcounts; k++)
            bytes += s_bitmap_bytes (f->tcounts [k].slots);
    }
    return bytes;
}

//  --------------------------------------------------------------------------
//  Reads: bound pairs

static sel_t
s_sel_exact (roaring_bitmap_t *bm)
{
    return (sel_t) { bm, bm };
}

static bool
s_sel_is_exact (const sel_t *s)
{
    return s->lo == s->hi;
}

//  Makes lo and hi one bitmap when they hold the same slots.
static void
s_sel_norm (sel_t *s)
{
    if (s->lo != s->hi
    &&  roaring_bitmap_get_cardinality (s->lo)
        == roaring_bitmap_get_cardinality (s->hi)) {
        roaring_bitmap_free (s->hi);
        s->hi = s->lo;
    }
}

static sel_t
s_sel_pair (roaring_bitmap_t *lo, roaring_bitmap_t *hi)
{
    sel_t s = { lo, hi };
    s_sel_norm (&s);
    return s;
}

static void
s_sel_free (sel_t *s)
{
    if (s->hi && s->hi != s->lo)
        roaring_bitmap_free (s->hi);
    if (s->lo)
        roaring_bitmap_free (s->lo);
    s->lo = s->hi = NULL;
}

//  Gives lo and hi their own bitmaps (before changing one of them).
static void
s_sel_split (sel_t *s)
{
    if (s->lo == s->hi)
        s->hi = s_bm_copy (s->lo);
}

static void
s_sel_and (sel_t *acc, const sel_t *x)
{
    if (s_sel_is_exact (acc) && s_sel_is_exact (x)) {
        roaring_bitmap_and_inplace (acc->lo, x->lo);
        return;
    }
    s_sel_split (acc);
    roaring_bitmap_and_inplace (acc->lo, x->lo);
    roaring_bitmap_and_inplace (acc->hi, x->hi);
    s_sel_norm (acc);
}

static void
s_sel_or (sel_t *acc, const sel_t *x)
{
    if (s_sel_is_exact (acc) && s_sel_is_exact (x)) {
        roaring_bitmap_or_inplace (acc->lo, x->lo);
        return;
    }
    s_sel_split (acc);
    roaring_bitmap_or_inplace (acc->lo, x->lo);
    roaring_bitmap_or_inplace (acc->hi, x->hi);
    s_sel_norm (acc);
}

//  Nothing is sure, everything possible.
static sel_t
s_sel_unknown (const pindex_t *self)
{
    return s_sel_pair (s_bm_new (), s_bm_copy (self->all));
}

//  Within a nested filter only the upper bound means something.
static void
s_sel_upper_only (sel_t *s)
{
    if (s->lo == s->hi)
        s->lo = s_bm_new ();
    else
        roaring_bitmap_clear (s->lo);
    s_sel_norm (s);
}

static roaring_bitmap_t *
s_or_new (const roaring_bitmap_t *a, const roaring_bitmap_t *b)
{
    roaring_bitmap_t *bm = roaring_bitmap_or (a, b);
    assert (bm);
    return bm;
}

static roaring_bitmap_t *
s_andnot_new (const roaring_bitmap_t *a, const roaring_bitmap_t *b)
{
    roaring_bitmap_t *bm = roaring_bitmap_andnot (a, b);
    assert (bm);
    return bm;
}

//  all - present: the slots where the key reaches nothing.
static roaring_bitmap_t *
s_missing (const pindex_t *self, const field_t *f)
{
    return s_andnot_new (self->all, f->present);
}

//  --------------------------------------------------------------------------
//  Reads: one field condition

//  Key ranges of a float range on a float column (dkeys).
static krange_t
s_krange_float (const filter_field_view_t *v)
{
    krange_t r = { .lo = INT64_MIN, .hi = INT64_MAX };
    if (v->has_bound [FILTER_GTE]) {
        int64_t k = s_dkey (v->fbound [FILTER_GTE]);
        r.lo = k > r.lo ? k : r.lo;
    }
    if (v->has_bound [FILTER_GT]) {
        int64_t k = s_dkey (v->fbound [FILTER_GT]);
        if (k == INT64_MAX)
            r.empty = true;
        else
            r.lo = k + 1 > r.lo ? k + 1 : r.lo;
    }
    if (v->has_bound [FILTER_LTE]) {
        int64_t k = s_dkey (v->fbound [FILTER_LTE]);
        r.hi = k < r.hi ? k : r.hi;
    }
    if (v->has_bound [FILTER_LT]) {
        int64_t k = s_dkey (v->fbound [FILTER_LT]);
        if (k == INT64_MIN)
            r.empty = true;
        else
            r.hi = k - 1 < r.hi ? k - 1 : r.hi;
    }
    if (r.lo > r.hi)
        r.empty = true;
    return r;
}

//  A float range on an integer column: keys compared as doubles, as
//  filter_match compares an integer payload to float bounds.
static krange_t
s_krange_int_as_double (const filter_field_view_t *v)
{
    krange_t r = { .as_double = true };
    for (int b = 0; b < 4; b++) {
        r.has [b] = v->has_bound [b];
        r.b [b] = v->fbound [b];
    }
    return r;
}

typedef enum { DT_EXACT, DT_TIGHT, DT_LOOSE } dt_mode_t;

//  Microsecond key ranges of a datetime range. Values are floor(t / 1 us):
//  DT_EXACT is exact when no value has a sub-microsecond part, DT_TIGHT
//  holds only matching values, DT_LOOSE every matching value.
static krange_t
s_krange_datetime (const filter_field_view_t *v, dt_mode_t mode)
{
    krange_t r = { .lo = INT64_MIN, .hi = INT64_MAX };
    for (int b = 0; b < 4; b++) {
        if (!v->has_bound [b])
            continue;
        bool frac;
        int64_t fl = s_micros (&v->tbound [b], &frac);
        int32_t rem = v->tbound [b].nsec % 1000;
        int64_t lo = INT64_MIN, hi = INT64_MAX;
        switch (b) {
            case FILTER_GTE:
                //  t >= B: exact key >= ceil (B), loose key >= floor (B).
                lo = mode == DT_LOOSE ? fl : fl + frac;
                break;
            case FILTER_GT:
                //  t > B: exact and tight key > floor (B); loose key >= floor.
                lo = mode == DT_LOOSE ? fl : fl + 1;
                break;
            case FILTER_LTE:
                //  t <= B: exact and loose key <= floor (B); tight needs the
                //  whole microsecond below B.
                hi = mode == DT_TIGHT ? fl - 1 + (rem == 999) : fl;
                break;
            case FILTER_LT:
                //  t < B: exact key < ceil (B); loose key <= floor (B - 1ns);
                //  tight key < floor (B).
                hi = mode == DT_EXACT ? fl + frac - 1 : mode == DT_LOOSE ? fl - !frac
                                                                           : fl - 1;
                break;
        }
        if (lo > r.lo)
            r.lo = lo;
        if (hi < r.hi)
            r.hi = hi;
    }
    if (r.lo > r.hi)
        r.empty = true;
    return r;
}

static roaring_bitmap_t *
s_col_bitmap (const pindex_t *self, const field_t *f, const krange_t *r)
{
    roaring_bitmap_t *bm = s_bm_new ();
    s_col_collect (self, &f->col, r, bm);
    return bm;
}

//  Slots having exactly this integer (map or column).
static roaring_bitmap_t *
s_int_eq (const pindex_t *self, const field_t *f, int64_t x)
{
    if (f->has_map)
        return s_map_bitmap (&f->map, (const uint8_t *) &x, sizeof x);
    krange_t r = { .lo = x, .hi = x };
    return s_col_bitmap (self, f, &r);
}

//  match {"value": string}.
static sel_t
s_match_str (const pindex_t *self, const field_t *f, const char *s, size_t len)
{
    (void) self;
    switch (f->schema.type) {
        case PINDEX_KEYWORD:
            return s_sel_exact (s_map_bitmap (&f->map, (const uint8_t *) s, len));
        case PINDEX_TEXT:
            return s_sel_pair (s_bm_new (), s_bm_copy (f->indexed));
        case PINDEX_UUID: {
            uint8_t uuid [16];
            bool canonical;
            if (!s_uuid_parse (s, len, uuid, &canonical))
                //  Equal strings parse alike: only non-UUID strings can match.
                return s_sel_pair (s_bm_new (), s_bm_copy (f->o_str));
            roaring_bitmap_t *bm = s_map_bitmap (&f->map, uuid, 16);
            //  A canonical query equals every canonical value of its UUID.
            roaring_bitmap_t *lo = canonical ? s_andnot_new (bm, f->noncanon)
                                             : s_bm_new ();
            return s_sel_pair (lo, bm);
        }
        case PINDEX_DATETIME: {
            filter_instant_t when;
            bool parses = filter_parse_datetime (s, len, &when);
            return s_sel_pair (s_bm_new (), s_bm_copy (parses ? f->indexed : f->o_str));
        }
        default:
            return s_sel_pair (s_bm_new (), s_bm_copy (f->o_str));
    }
}

//  match {"value": integer}.
static sel_t
s_match_int (const pindex_t *self, const field_t *f, int64_t x)
{
    if (f->schema.type == PINDEX_INTEGER)
        return s_sel_exact (s_int_eq (self, f, x));
    if (f->schema.type == PINDEX_FLOAT) {
        //  The column holds doubles: 3 and 3.0 (which does not match) look
        //  alike, so this is only an upper bound.
        int64_t k = s_dkey ((double) x);
        krange_t r = { .lo = k, .hi = k };
        return s_sel_pair (s_bm_new (), s_col_bitmap (self, f, &r));
    }
    return s_sel_pair (s_bm_new (), s_bm_copy (f->o_int));
}

static sel_t
s_match_bool (const field_t *f, bool b)
{
    if (f->schema.type == PINDEX_BOOL)
        return s_sel_exact (s_bm_copy (b ? f->is_true : f->is_false));
    return s_sel_pair (s_bm_new (), s_bm_copy (f->o_bool));
}

//  match text / text_any / phrase / prefix: some string may match.
static sel_t
s_match_text (const field_t *f)
{
    switch (f->schema.type) {
        case PINDEX_KEYWORD:
        case PINDEX_TEXT:
            return s_sel_pair (s_bm_new (), s_bm_copy (f->indexed));
        case PINDEX_UUID:
        case PINDEX_DATETIME:
            return s_sel_pair (s_bm_new (), s_or_new (f->indexed, f->o_str));
        default:
            return s_sel_pair (s_bm_new (), s_bm_copy (f->o_str));
    }
}

static sel_t
s_match_any (const pindex_t *self, const field_t *f, const filter_cond_t *cond,
             const filter_field_view_t *v)
{
    sel_t acc = s_sel_exact (s_bm_new ());
    for (size_t i = 0; i < v->n_list; i++) {
        sel_t one;
        if (v->list_is_int)
            one = s_match_int (self, f, v->ints [i]);
        else {
            size_t len;
            const char *s = filter_cond_list_str (cond, i, &len);
            one = s_match_str (self, f, s, len);
        }
        s_sel_or (&acc, &one);
        s_sel_free (&one);
    }
    return acc;
}

//  Number of distinct typed values of slot (a slot of multi).
static uint64_t
s_values_of (const field_t *f, uint32_t slot)
{
    for (size_t i = 0; i < f->n_tcounts; i++)
        if (roaring_bitmap_contains (f->tcounts [i].slots, slot))
            return f->tcounts [i].count;
    return 1;
}

//  Typed values of a keyword or integer index against an except list:
//  adds to lo the slots with an unlisted typed value, and returns the slots
//  that could not be decided (yours).
static roaring_bitmap_t *
s_except_decided (const pindex_t *self, const field_t *f, const filter_cond_t *cond,
                  const filter_field_view_t *v, roaring_bitmap_t *lo)
{
    //  One bitmap per distinct listed value (the lists come sorted).
    size_t m = 0;
    roaring_bitmap_t **vals = calloc (v->n_list ? v->n_list : 1,
                                      sizeof (roaring_bitmap_t *));
    assert (vals);
    const char *prev = NULL;
    size_t prev_len = 0;
    for (size_t i = 0; i < v->n_list; i++) {
        roaring_bitmap_t *bm;
        if (v->list_is_int) {
            if (i && v->ints [i] == v->ints [i - 1])
                continue;
            bm = s_int_eq (self, f, v->ints [i]);
        }
        else {
            size_t len;
            const char *s = filter_cond_list_str (cond, i, &len);
            if (prev && len == prev_len && memcmp (s, prev, len) == 0)
                continue;
            prev = s;
            prev_len = len;
            bm = s_map_bitmap (&f->map, (const uint8_t *) s, len);
        }
        vals [m++] = bm;
    }
    roaring_bitmap_t *listed = s_bm_new ();
    for (size_t i = 0; i < m; i++)
        roaring_bitmap_or_inplace (listed, vals [i]);
    //  A slot none of whose typed values is listed has a matching one; one
    //  with a single listed value has none.
    roaring_bitmap_t *unlisted = s_andnot_new (f->indexed, listed);
    roaring_bitmap_or_inplace (lo, unlisted);
    roaring_bitmap_free (unlisted);
    roaring_bitmap_and_inplace (listed, f->multi);
    //  Several values, some listed: it matches if fewer are listed than it
    //  has (values are distinct per slot, so each listed one is counted once).
    uint64_t work = roaring_bitmap_get_cardinality (listed) * (uint64_t) m;
    if (work <= (1 << 20)) {
        roaring_uint32_iterator_t *it = roaring_create_iterator (listed);
        assert (it);
        for (; it->has_value; roaring_advance_uint32_iterator (it)) {
            uint32_t slot = it->current_value;
            uint64_t in_list = 0;
            for (size_t i = 0; i < m; i++)
                in_list += roaring_bitmap_contains (vals [i], slot);
            if (in_list < s_values_of (f, slot))
                roaring_bitmap_add (lo, slot);
        }
        roaring_free_uint32_iterator (it);
        roaring_bitmap_clear (listed);
    }
    for (size_t i = 0; i < m; i++)
        roaring_bitmap_free (vals [i]);
    free (vals);
    return listed;
}

//  match {"except": [...]}: a value matches when it is not null and not in
//  the list; a value of another type than the list's always matches.
static sel_t
s_match_except (const pindex_t *self, const field_t *f, const filter_cond_t *cond,
                const filter_field_view_t *v)
{
    pindex_type_t t = f->schema.type;
    bool ints = v->list_is_int;
    //  Values of the other classes all match; those of the list's class are
    //  checked against it.
    roaring_bitmap_t *lo = s_bm_copy (f->complex);
    roaring_bitmap_or_inplace (lo, ints ? f->o_str : f->o_int);
    roaring_bitmap_or_inplace (lo, f->o_real);
    roaring_bitmap_or_inplace (lo, f->o_bool);
    roaring_bitmap_t *hi = s_bm_copy (ints ? f->o_int : f->o_str);
    //  Typed values that can never be of the list's class all match.
    bool disjoint = ints ? (t != PINDEX_INTEGER && t != PINDEX_FLOAT)
                         : (t == PINDEX_INTEGER || t == PINDEX_FLOAT || t == PINDEX_BOOL
                            || t == PINDEX_GEO);
    if (disjoint)
        roaring_bitmap_or_inplace (lo, f->indexed);
    else
    if (ints ? t == PINDEX_INTEGER : t == PINDEX_KEYWORD) {
        roaring_bitmap_t *open = s_except_decided (self, f, cond, v, lo);
        roaring_bitmap_or_inplace (hi, open);
        roaring_bitmap_free (open);
    }
    else
    if (t == PINDEX_UUID) {
        //  A UUID not listed under any spelling has text not in the list.
        roaring_bitmap_t *listed = s_bm_new ();
        for (size_t i = 0; i < v->n_list; i++) {
            size_t len;
            const char *s = filter_cond_list_str (cond, i, &len);
            uint8_t uuid [16];
            bool canonical;
            const mcell_t *c = s_uuid_parse (s, len, uuid, &canonical)
                             ? s_map_find (&f->map, uuid, 16) : NULL;
            if (c)
                s_cell_or_into (c, listed);
        }
        roaring_bitmap_t *unlisted = s_andnot_new (f->indexed, listed);
        roaring_bitmap_or_inplace (lo, unlisted);
        roaring_bitmap_or_inplace (hi, listed);
        roaring_bitmap_free (unlisted);
        roaring_bitmap_free (listed);
    }
    else
        //  float with integers, datetime / text with strings: undecided.
        roaring_bitmap_or_inplace (hi, f->indexed);
    roaring_bitmap_or_inplace (hi, lo);
    return s_sel_pair (lo, hi);
}

static sel_t
s_range_part (const pindex_t *self, const field_t *f, const filter_field_view_t *v)
{
    pindex_type_t t = f->schema.type;
    if (v->range == FILTER_RANGE_FLOAT) {
        if (t == PINDEX_FLOAT) {
            krange_t r = s_krange_float (v);
            return s_sel_exact (s_col_bitmap (self, f, &r));
        }
        if (t == PINDEX_INTEGER && f->has_col) {
            //  Floats in the payload are not in an integer index.
            krange_t r = s_krange_int_as_double (v);
            roaring_bitmap_t *lo = s_col_bitmap (self, f, &r);
            return s_sel_pair (lo, s_or_new (lo, f->o_real));
        }
        if (t == PINDEX_INTEGER)
            return s_sel_pair (s_bm_new (), s_or_new (f->indexed, f->o_real));
        return s_sel_pair (s_bm_new (), s_or_new (f->o_int, f->o_real));
    }
    //  A datetime range.
    if (t == PINDEX_DATETIME) {
        krange_t exact = s_krange_datetime (v, DT_EXACT);
        roaring_bitmap_t *bm = s_col_bitmap (self, f, &exact);
        if (roaring_bitmap_is_empty (f->subus))
            return s_sel_exact (bm);
        //  Slots without a finer value are decided by the microseconds.
        krange_t tight = s_krange_datetime (v, DT_TIGHT);
        krange_t loose = s_krange_datetime (v, DT_LOOSE);
        roaring_bitmap_andnot_inplace (bm, f->subus);
        s_col_collect (self, &f->col, &tight, bm);
        return s_sel_pair (bm, s_col_bitmap (self, f, &loose));
    }
    //  UUIDs never parse as datetimes (a digit, not '-', at offset 4).
    if (t == PINDEX_KEYWORD || t == PINDEX_TEXT)
        return s_sel_pair (s_bm_new (), s_bm_copy (f->indexed));
    return s_sel_pair (s_bm_new (), s_bm_copy (f->o_str));
}

static bool
s_count_ok (const filter_field_view_t *v, uint64_t n)
{
    return (!v->has_cbound [FILTER_LT] || n < v->cbound [FILTER_LT])
        && (!v->has_cbound [FILTER_GT] || n > v->cbound [FILTER_GT])
        && (!v->has_cbound [FILTER_LTE] || n <= v->cbound [FILTER_LTE])
        && (!v->has_cbound [FILTER_GTE] || n >= v->cbound [FILTER_GTE]);
}

//  A FIELD condition on an indexed key. nested: an upper bound is enough
//  and conditions a missing key satisfies say nothing about elements.
static sel_t
s_field_select (const pindex_t *self, const field_t *f, const filter_cond_t *cond,
                bool nested)
{
    filter_field_view_t v;
    int rc = filter_cond_field (cond, &v);
    assert (rc == 0);
    sel_t out;
    if (v.has_count) {
        if (nested && s_count_ok (&v, 0))
            return s_sel_unknown (self);
        roaring_bitmap_t *bm = s_count_ok (&v, 0) ? s_missing (self, f) : s_bm_new ();
        for (size_t i = 0; i < f->n_counts; i++)
            if (s_count_ok (&v, f->counts [i].count))
                roaring_bitmap_or_inplace (bm, f->counts [i].slots);
        out = s_sel_exact (bm);
    }
    else
    if (v.is_empty >= 0) {
        if (v.is_empty && nested)
            return s_sel_unknown (self);
        if (v.is_empty) {
            roaring_bitmap_t *bm = s_missing (self, f);
            size_t pos;
            const vcount_t *zero = s_count_find (f->counts, f->n_counts, 0, &pos);
            if (zero)
                roaring_bitmap_or_inplace (bm, zero->slots);
            out = s_sel_exact (bm);
        }
        else
            out = s_sel_exact (s_bm_copy (f->nonempty));
    }
    else
    if (v.is_null >= 0) {
        if (!v.is_null && nested)
            return s_sel_unknown (self);
        if (v.is_null)
            out = s_sel_exact (s_bm_copy (f->has_null));
        else {
            roaring_bitmap_t *bm = s_missing (self, f);
            roaring_bitmap_or_inplace (bm, f->no_null);
            out = s_sel_exact (bm);
        }
    }
    else {
        //  match OR range OR geo, each decided for every value.
        out = s_sel_exact (s_bm_new ());
        sel_t part = { NULL, NULL };
        switch (v.match) {
            case FILTER_MATCH_NONE:
                break;
            case FILTER_MATCH_STR:
                part = s_match_str (self, f, v.str, v.str_len);
                break;
            case FILTER_MATCH_INT:
                part = s_match_int (self, f, v.ival);
                break;
            case FILTER_MATCH_BOOL:
                part = s_match_bool (f, v.bval);
                break;
            case FILTER_MATCH_ANY:
                part = s_match_any (self, f, cond, &v);
                break;
            case FILTER_MATCH_EXCEPT:
                part = s_match_except (self, f, cond, &v);
                break;
            case FILTER_MATCH_TEXT:
                part = s_match_text (f);
                break;
        }
        if (part.lo) {
            s_sel_or (&out, &part);
            s_sel_free (&part);
        }
        if (v.range != FILTER_RANGE_NONE) {
            part = s_range_part (self, f, &v);
            s_sel_or (&out, &part);
            s_sel_free (&part);
        }
        if (v.has_geo) {
            //  Geo points are objects; only a geo index knows which.
            part = s_sel_pair (s_bm_new (), s_bm_copy (f->complex));
            if (f->schema.type == PINDEX_GEO)
                roaring_bitmap_or_inplace (part.hi, f->indexed);
            s_sel_norm (&part);
            s_sel_or (&out, &part);
            s_sel_free (&part);
        }
    }
    if (nested)
        s_sel_upper_only (&out);
    return out;
}

//  --------------------------------------------------------------------------
//  Reads: the tree

typedef struct {
    const pindex_t *self;       //  the indexes
    pindex_slot_fn *slot_of;    //  has_id lookups, or NULL
    void *arg;                  //  its argument
} rctx_t;

static sel_t s_node_select (const rctx_t *ctx, const filter_node_t *node,
                            const char *prefix, bool nested);

//  The index of a condition's key under a nested prefix; NULL if none.
//  *path is the full key (yours to free).
static const field_t *
s_cond_field (const pindex_t *self, const filter_cond_t *cond, const char *prefix,
              char **path)
{
    char *key = filter_cond_key (cond);
    assert (key);
    if (prefix) {
        size_t len = strlen (prefix) + strlen (key) + 2;
        char *full = malloc (len);
        assert (full);
        snprintf (full, len, "%s.%s", prefix, key);
        free (key);
        key = full;
    }
    *path = key;
    //  A field still building answers nothing yet: its key reads as
    //  unindexed.
    const field_t *f = s_find (self, key);
    return f && s_ready (f) ? f : NULL;
}

static sel_t
s_has_id (const rctx_t *ctx, const filter_cond_t *cond)
{
    size_t n;
    const pointid_t *ids = filter_cond_ids (cond, &n);
    roaring_bitmap_t *bm = s_bm_new ();
    for (size_t i = 0; i < n; i++) {
        uint32_t slot;
        if (ctx->slot_of (&ids [i], &slot, ctx->arg)
        &&  roaring_bitmap_contains (ctx->self->all, slot))
            roaring_bitmap_add (bm, slot);
    }
    return s_sel_exact (bm);
}

static sel_t
s_cond_select (const rctx_t *ctx, const filter_cond_t *cond, const char *prefix,
               bool nested)
{
    const pindex_t *self = ctx->self;
    switch (filter_cond_kind (cond)) {
        case FILTER_COND_FILTER:
            return s_node_select (ctx, filter_cond_node (cond), prefix, nested);
        case FILTER_COND_FIELD:
        case FILTER_COND_IS_EMPTY:
        case FILTER_COND_IS_NULL: {
            char *path;
            const field_t *f = s_cond_field (self, cond, prefix, &path);
            free (path);
            if (!f)
                return s_sel_unknown (self);
            filter_cond_kind_t kind = filter_cond_kind (cond);
            if (kind == FILTER_COND_FIELD)
                return s_field_select (self, f, cond, nested);
            if (kind == FILTER_COND_IS_NULL) {
                sel_t s = s_sel_exact (s_bm_copy (f->raw_null));
                if (nested)
                    s_sel_upper_only (&s);
                return s;
            }
            //  is_empty: no reached value is other than null or [].
            if (nested)
                return s_sel_unknown (self);
            return s_sel_exact (s_andnot_new (self->all, f->nonempty));
        }
        case FILTER_COND_HAS_ID:
            //  Inside nested, has_id never matches (as Qdrant).
            if (nested)
                return s_sel_exact (s_bm_new ());
            return ctx->slot_of ? s_has_id (ctx, cond) : s_sel_unknown (self);
        case FILTER_COND_HAS_VECTOR:
        case FILTER_COND_SLICE:
            if (nested)
                return s_sel_exact (s_bm_new ());
            return s_sel_unknown (self);
        case FILTER_COND_NESTED: {
            //  Element fields are indexed as "<array>[].<key>" at slot level:
            //  a slot matches only if some element passes, so the inner
            //  filter's upper bound over those keys bounds it.
            char *key = filter_cond_key (cond);
            assert (key);
            char *full = key;
            if (prefix) {
                size_t len = strlen (prefix) + strlen (key) + 2;
                full = malloc (len);
                assert (full);
                snprintf (full, len, "%s.%s", prefix, key);
                free (key);
            }
            sel_t s = s_node_select (ctx, filter_cond_node (cond), full, true);
            free (full);
            return s;
        }
    }
    return s_sel_unknown (self);
}

//  Slots in at least k of the pairs (lo from the lo's, hi from the hi's).
static sel_t
s_at_least (const pindex_t *self, sel_t *parts, size_t m, size_t k)
{
    if (k > m)
        return s_sel_exact (s_bm_new ());
    if (m * k > S_MIN_SHOULD_WORK)
        return s_sel_unknown (self);
    bool exact = true;
    for (size_t i = 0; i < m && exact; i++)
        exact = s_sel_is_exact (&parts [i]);
    roaring_bitmap_t *bound [2] = { NULL, NULL };
    for (int side = 0; side < (exact ? 1 : 2); side++) {
        //  at [j]: slots in at least j of the parts seen so far.
        roaring_bitmap_t **at = calloc (k + 1, sizeof (roaring_bitmap_t *));
        assert (at);
        at [0] = s_bm_copy (self->all);
        for (size_t j = 1; j <= k; j++)
            at [j] = s_bm_new ();
        for (size_t i = 0; i < m; i++) {
            const roaring_bitmap_t *x = side ? parts [i].hi : parts [i].lo;
            for (size_t j = (i + 1 < k ? i + 1 : k); j >= 1; j--) {
                roaring_bitmap_t *both = roaring_bitmap_and (at [j - 1], x);
                assert (both);
                roaring_bitmap_or_inplace (at [j], both);
                roaring_bitmap_free (both);
            }
        }
        bound [side] = at [k];
        for (size_t j = 0; j < k; j++)
            roaring_bitmap_free (at [j]);
        free (at);
    }
    return exact ? s_sel_exact (bound [0]) : s_sel_pair (bound [0], bound [1]);
}

static sel_t
s_node_select (const rctx_t *ctx, const filter_node_t *node, const char *prefix,
               bool nested)
{
    const pindex_t *self = ctx->self;
    sel_t acc = s_sel_exact (s_bm_copy (self->all));
    size_t n = filter_node_size (node, FILTER_MUST);
    for (size_t i = 0; i < n && !roaring_bitmap_is_empty (acc.hi); i++) {
        sel_t s = s_cond_select (ctx, filter_node_cond (node, FILTER_MUST, i), prefix,
                                 nested);
        s_sel_and (&acc, &s);
        s_sel_free (&s);
    }
    n = filter_node_size (node, FILTER_SHOULD);
    if (n && !roaring_bitmap_is_empty (acc.hi)) {
        sel_t any = s_sel_exact (s_bm_new ());
        for (size_t i = 0; i < n; i++) {
            sel_t s = s_cond_select (ctx, filter_node_cond (node, FILTER_SHOULD, i), prefix,
                                     nested);
            s_sel_or (&any, &s);
            s_sel_free (&s);
        }
        s_sel_and (&acc, &any);
        s_sel_free (&any);
    }
    n = filter_node_size (node, FILTER_MUST_NOT);
    if (n && !roaring_bitmap_is_empty (acc.hi)) {
        //  None of them: all - (union of them), bounds swapped.
        sel_t any = s_sel_exact (s_bm_new ());
        for (size_t i = 0; i < n; i++) {
            sel_t s = s_cond_select (ctx, filter_node_cond (node, FILTER_MUST_NOT, i),
                                     prefix, nested);
            s_sel_or (&any, &s);
            s_sel_free (&s);
        }
        sel_t none;
        if (s_sel_is_exact (&any))
            none = s_sel_exact (s_andnot_new (self->all, any.lo));
        else
            none = s_sel_pair (s_andnot_new (self->all, any.hi),
                               s_andnot_new (self->all, any.lo));
        s_sel_and (&acc, &none);
        s_sel_free (&none);
        s_sel_free (&any);
    }
    size_t k = filter_node_min_count (node);
    if (k && !roaring_bitmap_is_empty (acc.hi)) {
        n = filter_node_size (node, FILTER_MIN_SHOULD);
        sel_t *parts = calloc (n ? n : 1, sizeof (sel_t));
        assert (parts);
        for (size_t i = 0; i < n; i++)
            parts [i] = s_cond_select (ctx, filter_node_cond (node, FILTER_MIN_SHOULD, i),
                                       prefix, nested);
        sel_t enough = s_at_least (self, parts, n, k);
        for (size_t i = 0; i < n; i++)
            s_sel_free (&parts [i]);
        free (parts);
        s_sel_and (&acc, &enough);
        s_sel_free (&enough);
    }
    if (nested)
        s_sel_upper_only (&acc);
    return acc;
}

void
pindex_select (const pindex_t *self, const filter_t *filter, pindex_slot_fn *slot_of,
               void *arg, roaring_bitmap_t **out, bool *exact)
{
    assert (self && out && exact);
    if (!filter) {
        *out = s_bm_copy (self->all);
        *exact = true;
        return;
    }
    rctx_t ctx = { self, slot_of, arg };
    sel_t s = s_node_select (&ctx, filter_root (filter), NULL, false);
    *exact = s_sel_is_exact (&s);
    *out = s.hi;
    if (s.lo != s.hi)
        roaring_bitmap_free (s.lo);
}

//  --------------------------------------------------------------------------
//  Reads: estimates (Qdrant's combination rules over per-condition bounds)

typedef struct {
    double min, exp, max;       //  as pindex_card_t, as doubles while combining
} est_t;

static est_t
s_est_clamp (est_t e, double n)
{
    if (e.max > n)
        e.max = n;
    if (e.min < 0)
        e.min = 0;
    if (e.min > e.max)
        e.min = e.max;
    if (e.exp < e.min)
        e.exp = e.min;
    if (e.exp > e.max)
        e.exp = e.max;
    return e;
}

static est_t
s_est_unknown (double n)
{
    return (est_t) { 0, n / 2, n };
}

static est_t
s_est_of_sel (sel_t *s)
{
    double lo = (double) roaring_bitmap_get_cardinality (s->lo);
    double hi = s_sel_is_exact (s) ? lo : (double) roaring_bitmap_get_cardinality (s->hi);
    s_sel_free (s);
    return (est_t) { lo, (lo + hi) / 2, hi };
}

//  A pure range on a column, counted from the column instead of collected:
//  the planner asks before it decides to build anything.
static bool
s_est_range (const pindex_t *self, const field_t *f, const filter_field_view_t *v,
             double n, est_t *out)
{
    pindex_type_t t = f->schema.type;
    if (!f->has_col || v->match != FILTER_MATCH_NONE || v->has_geo || v->has_count
    ||  v->is_empty >= 0 || v->is_null >= 0)
        return false;
    krange_t tight, loose;
    double widen;           //  other values that may match
    if (v->range == FILTER_RANGE_FLOAT && t == PINDEX_FLOAT) {
        tight = loose = s_krange_float (v);
        widen = 0;
    }
    else
    if (v->range == FILTER_RANGE_FLOAT && t == PINDEX_INTEGER) {
        tight = loose = s_krange_int_as_double (v);
        widen = (double) roaring_bitmap_get_cardinality (f->o_real);
    }
    else
    if (v->range == FILTER_RANGE_DATETIME && t == PINDEX_DATETIME) {
        bool exact = roaring_bitmap_is_empty (f->subus);
        tight = s_krange_datetime (v, exact ? DT_EXACT : DT_TIGHT);
        loose = s_krange_datetime (v, exact ? DT_EXACT : DT_LOOSE);
        widen = 0;
    }
    else
        return false;
    double indexed = (double) roaring_bitmap_get_cardinality (f->indexed);
    double entries = (double) (f->col.n_sorted + f->col.n_pending);
    double live = entries - (double) f->col.n_dead;
    if (live < 0)
        live = 0;
    double in_tight = (double) s_col_count (&f->col, &tight);
    double in_loose = memcmp (&tight, &loose, sizeof tight) == 0
                    ? in_tight : (double) s_col_count (&f->col, &loose);
    double per_point = f->max_values ? (double) f->max_values : 1;
    est_t e;
    //  Dead entries may be among those counted; each point may hold up to
    //  max_values of them.
    e.min = ceil (fmax (0, in_tight - (double) f->col.n_dead) / per_point);
    e.max = fmin (in_loose, indexed) + widen;
    //  Live entries per indexed point scale the count down to points.
    double scale = live > 0 && indexed > 0 ? indexed / entries : 1;
    e.exp = (in_tight + in_loose) / 2 * scale + widen / 2;
    *out = s_est_clamp (e, n);
    return true;
}

static est_t s_node_estimate (const rctx_t *ctx, const filter_node_t *node, double n);

static est_t
s_cond_estimate (const rctx_t *ctx, const filter_cond_t *cond, double n)
{
    const pindex_t *self = ctx->self;
    switch (filter_cond_kind (cond)) {
        case FILTER_COND_FILTER:
            return s_node_estimate (ctx, filter_cond_node (cond), n);
        case FILTER_COND_FIELD: {
            char *path;
            const field_t *f = s_cond_field (self, cond, NULL, &path);
            free (path);
            if (!f)
                return s_est_unknown (n);
            filter_field_view_t v;
            filter_cond_field (cond, &v);
            est_t e;
            if (s_est_range (self, f, &v, n, &e))
                return e;
            sel_t s = s_cond_select (ctx, cond, NULL, false);
            return s_est_of_sel (&s);
        }
        case FILTER_COND_IS_EMPTY:
        case FILTER_COND_IS_NULL:
        case FILTER_COND_HAS_ID: {
            sel_t s = s_cond_select (ctx, cond, NULL, false);
            return s_est_of_sel (&s);
        }
        case FILTER_COND_NESTED: {
            sel_t s = s_cond_select (ctx, cond, NULL, false);
            est_t e = s_est_of_sel (&s);
            return (est_t) { 0, e.max / 2, e.max };
        }
        case FILTER_COND_HAS_VECTOR:
        case FILTER_COND_SLICE:
            break;
    }
    return s_est_unknown (n);
}

//  All of them: min by inclusion-exclusion, max the smallest, exp as if
//  independent.
static est_t
s_est_must (const est_t *parts, size_t m, double n)
{
    est_t e = { n, n, n };
    if (n <= 0)
        return (est_t) { 0, 0, 0 };
    double min = n, prob = 1;
    for (size_t i = 0; i < m; i++) {
        min += parts [i].min - n;
        if (parts [i].max < e.max)
            e.max = parts [i].max;
        prob *= parts [i].exp / n;
    }
    e.min = min;
    e.exp = prob * n;
    return s_est_clamp (e, n);
}

//  Any of them: min the largest, max the sum, exp as if independent.
static est_t
s_est_should (const est_t *parts, size_t m, double n)
{
    if (n <= 0)
        return (est_t) { 0, 0, 0 };
    est_t e = { 0, 0, 0 };
    double miss = 1;
    for (size_t i = 0; i < m; i++) {
        if (parts [i].min > e.min)
            e.min = parts [i].min;
        e.max += parts [i].max;
        miss *= 1 - parts [i].exp / n;
    }
    e.exp = (1 - miss) * n;
    return s_est_clamp (e, n);
}

//  At least k of m: Sum |S_i| <= m X + (k-1)(n - X) bounds X below, k X <=
//  Sum |S_i| above; exp from the independent (Poisson binomial) count.
static est_t
s_est_at_least (const est_t *parts, size_t m, size_t k, double n)
{
    if (k > m || n <= 0)
        return (est_t) { 0, 0, 0 };
    double sum_min = 0, sum_max = 0;
    for (size_t i = 0; i < m; i++) {
        sum_min += parts [i].min;
        sum_max += parts [i].max;
    }
    est_t e;
    e.min = ceil ((sum_min - (double) (k - 1) * n) / (double) (m - k + 1));
    e.max = floor (sum_max / (double) k);
    double *p = calloc (k + 1, sizeof (double));
    assert (p);
    p [0] = 1;                  //  p [j]: probability of exactly j (j < k), or >= k
    for (size_t i = 0; i < m; i++) {
        double q = parts [i].exp / n;
        p [k] += p [k - 1] * q;
        for (size_t j = k - 1; j >= 1; j--)
            p [j] = p [j] * (1 - q) + p [j - 1] * q;
        p [0] *= 1 - q;
    }
    e.exp = p [k] * n;
    free (p);
    return s_est_clamp (e, n);
}

static est_t
s_node_estimate (const rctx_t *ctx, const filter_node_t *node, double n)
{
    est_t clauses [4];
    size_t n_clauses = 0;
    static const filter_clause_t kinds [] = { FILTER_MUST, FILTER_SHOULD, FILTER_MUST_NOT,
                                              FILTER_MIN_SHOULD };
    for (size_t c = 0; c < 4; c++) {
        size_t m = filter_node_size (node, kinds [c]);
        if (kinds [c] == FILTER_MIN_SHOULD && filter_node_min_count (node) == 0)
            continue;
        if (m == 0 && kinds [c] != FILTER_MIN_SHOULD)
            continue;
        est_t *parts = calloc (m ? m : 1, sizeof (est_t));
        assert (parts);
        for (size_t i = 0; i < m; i++) {
            parts [i] = s_cond_estimate (ctx, filter_node_cond (node, kinds [c], i), n);
            if (kinds [c] == FILTER_MUST_NOT)
                parts [i] = (est_t) { n - parts [i].max, n - parts [i].exp,
                                      n - parts [i].min };
        }
        est_t e;
        if (kinds [c] == FILTER_SHOULD)
            e = s_est_should (parts, m, n);
        else
        if (kinds [c] == FILTER_MIN_SHOULD)
            e = s_est_at_least (parts, m, filter_node_min_count (node), n);
        else
            e = s_est_must (parts, m, n);
        free (parts);
        clauses [n_clauses++] = e;
    }
    return s_est_must (clauses, n_clauses, n);
}

void
pindex_estimate (const pindex_t *self, const filter_t *filter, pindex_slot_fn *slot_of,
                 void *arg, pindex_card_t *out)
{
    assert (self && out);
    double n = (double) roaring_bitmap_get_cardinality (self->all);
    est_t e = { n, n, n };
    if (filter) {
        rctx_t ctx = { self, slot_of, arg };
        e = s_est_clamp (s_node_estimate (&ctx, filter_root (filter), n), n);
    }
    out->min = (size_t) ceil (e.min);
    out->max = (size_t) floor (e.max);
    if (out->min > out->max)
        out->min = out->max;
    out->exp = (size_t) llround (e.exp);
    if (out->exp < out->min)
        out->exp = out->min;
    if (out->exp > out->max)
        out->exp = out->max;
}
