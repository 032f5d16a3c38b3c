/*  filter: Qdrant's Filter, parsed once into a tree of conditions and then
    evaluated against points (id + payload) as often as a scan needs.

    The semantics follow Qdrant's payload checker (lib/segment, condition_
    checker.rs and query_checker.rs) for points without payload indexes:

    - must: all match; should: at least one, when not empty; must_not: none;
      min_should: at least min_count of its conditions. Each of must, should
      and must_not may be one condition or an array.
    - A field condition collects every value its key reaches. None reached
      (missing key) is answered by the condition's "empty" rule: values_count
      counts 0, is_empty matches, is_null does not, everything else (match,
      except, range, geo) does not match. Otherwise it matches if any value
      does; a value that is an array matches if any element does.
    - match value: strings, integers (never float payloads) and booleans, by
      equality; any/except: in / not in a list of strings or of integers
      (except matches a present value of another type, and not null); text and
      phrase: substring (no full-text index yet); text_any: any whitespace
      separated token is a substring; prefix: starts with.
    - range: numbers (integer or float payloads), or datetimes when the bounds
      are strings, compared as instants; payload strings are parsed the same
      way (RFC 3339, plus Qdrant's lenient forms: no timezone = UTC, a space
      instead of T, minutes without seconds, a bare date).
    - values_count: a value counts as 0 (null), its length (array) or 1.
    - is_empty: every value is null or [] (or none at all); is_null: some value
      is null ([] is not null).
    - has_id, has_vector, slice (SipHash-2-4 of the id, as Qdrant's contract),
      nested {key, filter}: the filter must match one element of the array at
      key on its own; has_id/has_vector/slice never match inside nested, as in
      Qdrant.
    - geo_radius (haversine, mean Earth radius), geo_bounding_box (crossing the
      antimeridian when top_left.lon > bottom_right.lon), geo_polygon (strict
      interior, holes excluded).

    Paths: "a.b", "a[0]", "a[]", "a.\"key with.dots\"". A key step applied to
    an array applies to each of its elements, so "a.b" on [{"b":1},{"b":2}]
    reaches both values as "a[].b" does.
*/
#include "common/filter.h"
#include "common/err.h"

#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  How deep filters may nest (filter in filter, nested in nested); deeper
//  input is refused rather than recursed into.
#define S_MAX_DEPTH 64
//  Longest path text accepted.
#define S_MAX_PATH 4096
//  Mean Earth radius in meters, as the geo crate Qdrant uses.
#define S_EARTH_RADIUS 6371008.8

//  --------------------------------------------------------------------------
//  Paths

typedef enum { STEP_KEY, STEP_INDEX, STEP_WILD } step_kind_t;

typedef struct {
    step_kind_t kind;       //  which of the below applies
    char *key;              //  STEP_KEY: object key
    size_t index;           //  STEP_INDEX: array index
} step_t;

typedef struct {
    step_t *steps;          //  first one is always a key
    size_t n;               //  number of steps
} path_t;

static bool
s_raw_char (unsigned char c)
{
    //  Qdrant's unquoted key: alphanumeric (Unicode), '_' or '-'; any
    //  non-ASCII byte is taken as part of such a character.
    return isalnum (c) || c == '_' || c == '-' || c >= 0x80;
}

static void
s_path_free (path_t *path)
{
    for (size_t i = 0; i < path->n; i++)
        free (path->steps [i].key);
    free (path->steps);
    path->steps = NULL;
    path->n = 0;
}

static void
s_path_push (path_t *path, step_kind_t kind, char *key, size_t index)
{
    path->steps = realloc (path->steps, (path->n + 1) * sizeof (step_t));
    assert (path->steps);
    path->steps [path->n++] = (step_t) { kind, key, index };
}

//  Reads a key (raw or quoted) at *p; NULL if there is none.
static char *
s_path_key (const char **p)
{
    const char *s = *p;
    if (*s == '"') {
        const char *e = s + 1;
        while (*e && *e != '"' && *e != '\\')
            e++;
        if (*e != '"')
            return NULL;
        *p = e + 1;
        return strndup (s + 1, (size_t) (e - s - 1));
    }
    const char *e = s;
    while (*e && s_raw_char ((unsigned char) *e))
        e++;
    if (e == s)
        return NULL;
    *p = e;
    return strndup (s, (size_t) (e - s));
}

static int
s_path_parse (const char *text, path_t *out)
{
    out->steps = NULL;
    out->n = 0;
    if (!text || strlen (text) > S_MAX_PATH)
        return -SH_EINVAL;
    const char *p = text;
    char *key = s_path_key (&p);
    if (!key)
        return -SH_EINVAL;
    s_path_push (out, STEP_KEY, key, 0);
    while (*p) {
        if (*p == '.') {
            p++;
            key = s_path_key (&p);
            if (!key)
                goto bad;
            s_path_push (out, STEP_KEY, key, 0);
        }
        else
        if (p [0] == '[' && p [1] == ']') {
            p += 2;
            s_path_push (out, STEP_WILD, NULL, 0);
        }
        else
        if (*p == '[' && isdigit ((unsigned char) p [1])) {
            p++;
            size_t index = 0;
            while (isdigit ((unsigned char) *p)) {
                size_t digit = (size_t) (*p - '0');
                if (index > (SIZE_MAX - digit) / 10)
                    goto bad;
                index = index * 10 + digit;
                p++;
            }
            if (*p != ']')
                goto bad;
            p++;
            s_path_push (out, STEP_INDEX, NULL, index);
        }
        else
            goto bad;
    }
    return 0;
bad:
    s_path_free (out);
    return -SH_EINVAL;
}

//  Values reached by a path, in payload order.
typedef struct {
    const json_t **v;           //  inline or heap
    size_t n;                   //  values held
    size_t cap;                 //  capacity of v
    const json_t *inline_ [8];  //  storage for the common case
} vals_t;

static void
s_vals_init (vals_t *vals)
{
    vals->v = vals->inline_;
    vals->n = 0;
    vals->cap = 8;
}

static void
s_vals_push (vals_t *vals, const json_t *value)
{
    if (vals->n == vals->cap) {
        size_t cap = vals->cap * 2;
        const json_t **v = malloc (cap * sizeof (*v));
        assert (v);
        memcpy (v, vals->v, vals->n * sizeof (*v));
        if (vals->v != vals->inline_)
            free (vals->v);
        vals->v = v;
        vals->cap = cap;
    }
    vals->v [vals->n++] = value;
}

static void
s_vals_fini (vals_t *vals)
{
    if (vals->v != vals->inline_)
        free (vals->v);
}

static void
s_walk (const json_t *value, const step_t *steps, size_t n, vals_t *out)
{
    if (n == 0) {
        s_vals_push (out, value);
        return;
    }
    switch (steps [0].kind) {
        case STEP_KEY:
            if (json_is_object (value)) {
                const json_t *child = json_object_get (value, steps [0].key);
                if (child)
                    s_walk (child, steps + 1, n - 1, out);
            }
            else
            if (json_is_array (value)) {
                //  A key applied to an array reaches into each element.
                size_t i;
                const json_t *elem;
                json_array_foreach (value, i, elem)
                    s_walk (elem, steps, n, out);
            }
            break;
        case STEP_INDEX:
            if (json_is_array (value) && steps [0].index < json_array_size (value))
                s_walk (json_array_get (value, steps [0].index), steps + 1, n - 1, out);
            break;
        case STEP_WILD:
            if (json_is_array (value)) {
                size_t i;
                const json_t *elem;
                json_array_foreach (value, i, elem)
                    s_walk (elem, steps + 1, n - 1, out);
            }
            break;
    }
}

//  Every value path reaches in payload, arrays at the end not flattened.
static void
s_path_get (const json_t *payload, const path_t *path, vals_t *out)
{
    if (json_is_object (payload))
        s_walk (payload, path->steps, path->n, out);
}

bool
filter_path_valid (const char *text)
{
    path_t path;
    if (s_path_parse (text, &path))
        return false;
    s_path_free (&path);
    return true;
}

size_t
filter_path_visit (const json_t *payload, const char *text, filter_visit_fn *fn, void *arg)
{
    path_t path;
    if (!payload || s_path_parse (text, &path))
        return 0;
    vals_t vals;
    s_vals_init (&vals);
    s_path_get (payload, &path, &vals);
    size_t count = 0;
    for (size_t i = 0; i < vals.n; i++) {
        if (json_is_array (vals.v [i])) {
            size_t k;
            const json_t *elem;
            json_array_foreach (vals.v [i], k, elem) {
                fn (elem, arg);
                count++;
            }
        }
        else {
            fn (vals.v [i], arg);
            count++;
        }
    }
    s_vals_fini (&vals);
    s_path_free (&path);
    return count;
}

//  --------------------------------------------------------------------------
//  Payload edits (Qdrant's JsonPath::value_set / value_remove)

static void
s_merge_object (json_t *dest, const json_t *src)
{
    const char *key;
    json_t *value;
    json_object_foreach ((json_t *) src, key, value) {
        if (json_is_null (value))
            json_object_del (dest, key);
        else
            json_object_set_new (dest, key, json_deep_copy (value));
    }
}

//  Sets into *slot (owned by its container, which set_fn replaces).
static json_t *s_value_set (json_t *dest, const step_t *steps, size_t n, const json_t *src);

//  dest_map [key] = value_set (rest, dest_map [key] or null).
static void
s_value_set_map (json_t *map, const char *key, const step_t *steps, size_t n,
                 const json_t *src)
{
    json_t *current = json_object_get (map, key);
    json_t *updated = s_value_set (current, steps, n, src);
    if (updated != current)
        json_object_set_new (map, key, updated);
}

//  Returns dest updated in place, or a new value to put where dest was.
static json_t *
s_value_set (json_t *dest, const step_t *steps, size_t n, const json_t *src)
{
    if (n == 0) {
        json_t *obj = json_is_object (dest) ? dest : json_object ();
        s_merge_object (obj, src);
        return obj;
    }
    switch (steps [0].kind) {
        case STEP_KEY: {
            json_t *obj = json_is_object (dest) ? dest : json_object ();
            s_value_set_map (obj, steps [0].key, steps + 1, n - 1, src);
            return obj;
        }
        case STEP_INDEX: {
            if (!json_is_array (dest))
                return json_array ();
            json_t *elem = json_array_get (dest, steps [0].index);
            if (elem) {
                json_t *updated = s_value_set (elem, steps + 1, n - 1, src);
                if (updated != elem)
                    json_array_set_new (dest, steps [0].index, updated);
            }
            return dest;
        }
        case STEP_WILD: {
            if (!json_is_array (dest))
                return json_array ();
            for (size_t i = 0; i < json_array_size (dest); i++) {
                json_t *elem = json_array_get (dest, i);
                json_t *updated = s_value_set (elem, steps + 1, n - 1, src);
                if (updated != elem)
                    json_array_set_new (dest, i, updated);
            }
            return dest;
        }
    }
    return dest;
}

int
filter_path_set (json_t *payload, const char *text, const json_t *obj)
{
    if (!json_is_object (payload) || !json_is_object (obj))
        return -SH_EINVAL;
    if (!text) {
        s_merge_object (payload, obj);
        return 0;
    }
    path_t path;
    if (s_path_parse (text, &path))
        return -SH_EINVAL;
    s_value_set_map (payload, path.steps [0].key, path.steps + 1, path.n - 1, obj);
    s_path_free (&path);
    return 0;
}

static int
s_value_remove (json_t *value, const step_t *steps, size_t n)
{
    const step_t *head = &steps [0];
    if (n > 1) {
        int removed = 0;
        if (head->kind == STEP_KEY && json_is_object (value)) {
            json_t *child = json_object_get (value, head->key);
            if (child)
                removed += s_value_remove (child, steps + 1, n - 1);
        }
        else
        if (head->kind == STEP_INDEX && json_is_array (value)) {
            json_t *child = json_array_get (value, head->index);
            if (child)
                removed += s_value_remove (child, steps + 1, n - 1);
        }
        else
        if (head->kind == STEP_WILD && json_is_array (value)) {
            size_t i;
            json_t *child;
            json_array_foreach (value, i, child)
                removed += s_value_remove (child, steps + 1, n - 1);
        }
        return removed;
    }
    if (head->kind == STEP_KEY && json_is_object (value))
        return json_object_del (value, head->key) == 0 ? 1 : 0;
    if (head->kind == STEP_WILD && json_is_array (value)) {
        json_array_clear (value);
        return 1;
    }
    //  As Qdrant: removing one array index is not idempotent, so it is not
    //  done.
    return 0;
}

int
filter_path_remove (json_t *payload, const char *text)
{
    path_t path;
    if (s_path_parse (text, &path))
        return -SH_EINVAL;
    int removed = 0;
    if (json_is_object (payload))
        removed = s_value_remove (payload, path.steps, path.n);
    s_path_free (&path);
    return removed;
}

//  --------------------------------------------------------------------------
//  Datetimes

typedef struct {
    int64_t sec;            //  seconds since 1970-01-01T00:00:00Z
    int32_t nsec;           //  0 .. 999999999
} instant_t;

static int
s_instant_cmp (const instant_t *a, const instant_t *b)
{
    if (a->sec != b->sec)
        return a->sec < b->sec ? -1 : 1;
    return (a->nsec > b->nsec) - (a->nsec < b->nsec);
}

static int64_t
s_days_from_civil (int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned) (y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t) doe - 719468;
}

static bool
s_digits (const char **p, const char *end, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (*p >= end || !isdigit ((unsigned char) **p))
            return false;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    *out = v;
    return true;
}

//  RFC 3339 and the other forms Qdrant accepts (see the file comment).
static bool
s_parse_instant (const char *s, size_t len, instant_t *out)
{
    const char *p = s, *end = s + len;
    int year, month, day, hour = 0, minute = 0, second = 0, offset = 0;
    int32_t nsec = 0;
    if (!s_digits (&p, end, 4, &year) || p >= end || *p++ != '-'
    ||  !s_digits (&p, end, 2, &month) || p >= end || *p++ != '-'
    ||  !s_digits (&p, end, 2, &day))
        return false;
    static const int mdays [] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (month < 1 || month > 12 || day < 1)
        return false;
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > mdays [month - 1] + (month == 2 && leap))
        return false;
    if (p < end) {
        if (*p != 'T' && *p != 't' && *p != ' ')
            return false;
        p++;
        if (!s_digits (&p, end, 2, &hour) || p >= end || *p++ != ':'
        ||  !s_digits (&p, end, 2, &minute))
            return false;
        if (p < end && *p == ':') {
            p++;
            if (!s_digits (&p, end, 2, &second))
                return false;
            if (p < end && *p == '.') {
                p++;
                int n = 0;
                while (p < end && isdigit ((unsigned char) *p)) {
                    if (n < 9) {
                        nsec = nsec * 10 + (*p - '0');
                        n++;
                    }
                    p++;
                }
                if (n == 0)
                    return false;
                for (; n < 9; n++)
                    nsec *= 10;
            }
        }
        if (hour > 23 || minute > 59 || second > 60)
            return false;
        if (p < end) {
            if (*p == 'Z' || *p == 'z')
                p++;
            else {
                if (*p == ' ')
                    p++;
                if (p >= end || (*p != '+' && *p != '-'))
                    return false;
                int sign = *p++ == '-' ? -1 : 1;
                int oh, om = 0;
                if (!s_digits (&p, end, 2, &oh))
                    return false;
                if (p < end && *p == ':')
                    p++;
                if (p < end && !s_digits (&p, end, 2, &om))
                    return false;
                if (oh > 23 || om > 59)
                    return false;
                offset = sign * (oh * 3600 + om * 60);
            }
        }
    }
    if (p != end)
        return false;
    int64_t days = s_days_from_civil (year, (unsigned) month, (unsigned) day);
    out->sec = days * 86400 + hour * 3600 + minute * 60 + second - offset;
    out->nsec = nsec;
    return true;
}

//  --------------------------------------------------------------------------
//  The condition tree

typedef struct {
    char *s;                //  bytes (NUL-terminated for convenience)
    size_t len;             //  length in bytes (JSON strings may hold NUL)
} str_t;

typedef enum {
    MATCH_NONE = 0, MATCH_STR, MATCH_INT, MATCH_BOOL, MATCH_ANY, MATCH_EXCEPT,
    MATCH_TEXT, MATCH_TEXT_ANY, MATCH_PREFIX
} match_kind_t;

typedef enum { RANGE_NONE = 0, RANGE_FLOAT, RANGE_DATETIME } range_kind_t;

typedef struct {
    double lat, lon;
} geo_t;

typedef struct {
    geo_t *pts;             //  closed ring: first == last
    size_t n;               //  number of points
} ring_t;

typedef struct {
    path_t path;                //  the payload key

    match_kind_t match;         //  MATCH_NONE if no match condition
    str_t str;                  //  MATCH_STR, MATCH_TEXT, MATCH_PREFIX
    int64_t ival;               //  MATCH_INT
    bool bval;                  //  MATCH_BOOL
    bool list_is_int;           //  MATCH_ANY/EXCEPT: list of integers, else strings
    str_t *strs;                //  sorted string list
    int64_t *ints;              //  sorted integer list
    size_t n_list;              //  entries in the list
    str_t *tokens;              //  MATCH_TEXT_ANY: the query's tokens
    size_t n_tokens;            //  number of tokens

    range_kind_t range;         //  RANGE_NONE if no range
    bool has_b [4];             //  lt, gt, lte, gte given
    double fb [4];              //  RANGE_FLOAT bounds
    instant_t tb [4];           //  RANGE_DATETIME bounds

    bool has_radius;            //  geo_radius given
    geo_t center;               //  its center
    double radius;              //  its radius in meters
    bool has_box;               //  geo_bounding_box given
    geo_t top_left, bottom_right;   //  its corners
    bool has_polygon;           //  geo_polygon given
    ring_t exterior;            //  polygon outline
    ring_t *interiors;          //  holes
    size_t n_interiors;         //  number of holes

    bool has_count;             //  values_count given
    bool has_c [4];             //  lt, gt, lte, gte given
    uint64_t cb [4];            //  count bounds

    int is_empty;               //  -1 not given, else the bool
    int is_null;                //  -1 not given, else the bool
} field_t;

enum { B_LT, B_GT, B_LTE, B_GTE };
static const char *s_bound_names [4] = { "lt", "gt", "lte", "gte" };

typedef struct _node_t node_t;

typedef enum {
    COND_FILTER, COND_FIELD, COND_IS_EMPTY, COND_IS_NULL, COND_HAS_ID, COND_HAS_VECTOR,
    COND_SLICE, COND_NESTED
} cond_kind_t;

typedef struct {
    cond_kind_t kind;           //  which of the below applies
    node_t *filter;             //  COND_FILTER, COND_NESTED (the inner filter)
    field_t *field;             //  COND_FIELD
    path_t path;                //  COND_IS_EMPTY, COND_IS_NULL, COND_NESTED (key[])
    pointid_t *ids;             //  COND_HAS_ID, sorted by pointid_cmp
    size_t n_ids;               //  number of ids
    char *vector;               //  COND_HAS_VECTOR
    uint32_t total, index;      //  COND_SLICE
} cond_t;

typedef struct {
    cond_t *conds;              //  the conditions
    size_t n;                   //  how many
} clause_t;

struct _node_t {
    clause_t must;              //  all must match
    clause_t should;            //  one must match, if any are given
    clause_t must_not;          //  none may match
    clause_t min_should;        //  min_count must match, if has_min_should
    bool has_min_should;        //  min_should given
    size_t min_count;           //  see above
};

struct _filter_t {
    node_t *root;               //  the top-level Filter
};

static void s_node_free (node_t *node);

static void
s_field_free (field_t *f)
{
    if (!f)
        return;
    s_path_free (&f->path);
    free (f->str.s);
    for (size_t i = 0; f->strs && i < f->n_list; i++)
        free (f->strs [i].s);
    free (f->strs);
    free (f->ints);
    for (size_t i = 0; i < f->n_tokens; i++)
        free (f->tokens [i].s);
    free (f->tokens);
    free (f->exterior.pts);
    for (size_t i = 0; i < f->n_interiors; i++)
        free (f->interiors [i].pts);
    free (f->interiors);
    free (f);
}

static void
s_cond_fini (cond_t *c)
{
    s_node_free (c->filter);
    s_field_free (c->field);
    s_path_free (&c->path);
    free (c->ids);
    free (c->vector);
}

static void
s_clause_fini (clause_t *clause)
{
    for (size_t i = 0; i < clause->n; i++)
        s_cond_fini (&clause->conds [i]);
    free (clause->conds);
}

static void
s_node_free (node_t *node)
{
    if (!node)
        return;
    s_clause_fini (&node->must);
    s_clause_fini (&node->should);
    s_clause_fini (&node->must_not);
    s_clause_fini (&node->min_should);
    free (node);
}

void
filter_destroy (filter_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        s_node_free ((*self_p)->root);
        free (*self_p);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Parsing

typedef struct {
    char *err;              //  message buffer for the user
    size_t errlen;          //  its size
} pctx_t;

static int
s_fail (pctx_t *ctx, const char *where, const char *fmt, ...)
{
    if (ctx->err && ctx->errlen) {
        //  A deep location is shortened so the message itself still fits.
        size_t len = strlen (where);
        int n = len > 160 ? snprintf (ctx->err, ctx->errlen, "%.60s...%s: ", where,
                                      where + len - 96)
                          : snprintf (ctx->err, ctx->errlen, "%s: ", where);
        if (n >= 0 && (size_t) n < ctx->errlen) {
            va_list ap;
            va_start (ap, fmt);
            vsnprintf (ctx->err + n, ctx->errlen - (size_t) n, fmt, ap);
            va_end (ap);
        }
    }
    return -SH_EINVAL;
}

//  Location of a sub-element for messages: "<where>.<name>" or "<where>[i]".
static void
s_loc (char *buf, size_t size, const char *where, const char *name, long index)
{
    int n = name ? snprintf (buf, size, "%s.%s", where, name)
                 : snprintf (buf, size, "%s[%ld]", where, index);
    //  A location deeper than the buffer is cut; the message stays readable.
    if (n < 0 || (size_t) n >= size)
        buf [size - 1] = 0;
}

#define LOC_SIZE 512

static int s_parse_node (pctx_t *ctx, const json_t *json, const char *where, int depth,
                         node_t **out);

static int
s_parse_key (pctx_t *ctx, const json_t *json, const char *where, path_t *path)
{
    char loc [LOC_SIZE];
    s_loc (loc, sizeof loc, where, "key", 0);
    if (!json_is_string (json))
        return s_fail (ctx, loc, "must be a string");
    if (s_path_parse (json_string_value (json), path))
        return s_fail (ctx, loc, "invalid payload key \"%.100s\"", json_string_value (json));
    return 0;
}

static int
s_str_cmp (const void *a, const void *b)
{
    const str_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp (x->s, y->s, n);
    if (c)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

static int
s_int_cmp (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

static str_t
s_str_dup (const json_t *json)
{
    size_t len = json_string_length (json);
    char *s = malloc (len + 1);
    assert (s);
    memcpy (s, json_string_value (json), len);
    s [len] = 0;
    return (str_t) { s, len };
}

//  "any" / "except": an array of strings or an array of integers.
static int
s_parse_list (pctx_t *ctx, field_t *f, const json_t *json, const char *where)
{
    if (!json_is_array (json))
        return s_fail (ctx, where, "must be an array of strings or of integers");
    size_t n = json_array_size (json);
    bool ints = n > 0 && json_is_integer (json_array_get (json, 0));
    f->list_is_int = ints;
    f->n_list = 0;
    if (ints)
        f->ints = malloc ((n ? n : 1) * sizeof (int64_t));
    else
        f->strs = malloc ((n ? n : 1) * sizeof (str_t));
    assert (f->ints || f->strs);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get (json, i);
        if (ints ? !json_is_integer (v) : !json_is_string (v)) {
            char loc [LOC_SIZE];
            s_loc (loc, sizeof loc, where, NULL, (long) i);
            return s_fail (ctx, loc, "must be %s like the first element",
                           ints ? "an integer" : "a string");
        }
        if (ints)
            f->ints [f->n_list++] = json_integer_value (v);
        else
            f->strs [f->n_list++] = s_str_dup (v);
    }
    if (ints)
        qsort (f->ints, f->n_list, sizeof (int64_t), s_int_cmp);
    else
        qsort (f->strs, f->n_list, sizeof (str_t), s_str_cmp);
    return 0;
}

static void
s_tokenize (field_t *f, const char *text)
{
    const char *p = text;
    while (*p) {
        while (*p && isspace ((unsigned char) *p))
            p++;
        const char *start = p;
        while (*p && !isspace ((unsigned char) *p))
            p++;
        if (p > start) {
            f->tokens = realloc (f->tokens, (f->n_tokens + 1) * sizeof (str_t));
            assert (f->tokens);
            f->tokens [f->n_tokens++] = (str_t) { strndup (start, (size_t) (p - start)),
                                                  (size_t) (p - start) };
        }
    }
}

static int
s_parse_match (pctx_t *ctx, field_t *f, const json_t *json, const char *where)
{
    if (!json_is_object (json))
        return s_fail (ctx, where, "must be an object");
    char loc [LOC_SIZE];
    const json_t *v;
    //  In the order of Qdrant's Match variants.
    if ((v = json_object_get (json, "value")) != NULL) {
        s_loc (loc, sizeof loc, where, "value", 0);
        if (json_is_string (v)) {
            f->match = MATCH_STR;
            f->str = s_str_dup (v);
        }
        else
        if (json_is_integer (v)) {
            f->match = MATCH_INT;
            f->ival = json_integer_value (v);
        }
        else
        if (json_is_boolean (v)) {
            f->match = MATCH_BOOL;
            f->bval = json_is_true (v);
        }
        else
            return s_fail (ctx, loc, "must be a string, an integer or a boolean");
        return 0;
    }
    static const struct {
        const char *name;
        match_kind_t kind;
    } texts [] = {
        { "text", MATCH_TEXT }, { "text_any", MATCH_TEXT_ANY }, { "phrase", MATCH_TEXT },
        { "prefix", MATCH_PREFIX }
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts [0]; i++) {
        if ((v = json_object_get (json, texts [i].name)) != NULL) {
            s_loc (loc, sizeof loc, where, texts [i].name, 0);
            if (!json_is_string (v))
                return s_fail (ctx, loc, "must be a string");
            f->match = texts [i].kind;
            f->str = s_str_dup (v);
            if (f->match == MATCH_TEXT_ANY)
                s_tokenize (f, f->str.s);
            return 0;
        }
    }
    if ((v = json_object_get (json, "any")) != NULL) {
        s_loc (loc, sizeof loc, where, "any", 0);
        f->match = MATCH_ANY;
        return s_parse_list (ctx, f, v, loc);
    }
    if ((v = json_object_get (json, "except")) != NULL) {
        s_loc (loc, sizeof loc, where, "except", 0);
        f->match = MATCH_EXCEPT;
        return s_parse_list (ctx, f, v, loc);
    }
    return s_fail (ctx, where,
                   "expected one of value, text, text_any, phrase, prefix, any, except");
}

static int
s_parse_range (pctx_t *ctx, field_t *f, const json_t *json, const char *where)
{
    if (!json_is_object (json))
        return s_fail (ctx, where, "must be an object");
    //  Numbers make a float range, strings a datetime range (Qdrant's
    //  RangeInterface); a range with no bound is a float range.
    int numbers = 0, strings = 0;
    for (int b = 0; b < 4; b++) {
        const json_t *v = json_object_get (json, s_bound_names [b]);
        if (!v || json_is_null (v))
            continue;
        char loc [LOC_SIZE];
        s_loc (loc, sizeof loc, where, s_bound_names [b], 0);
        if (json_is_number (v)) {
            f->fb [b] = json_number_value (v);
            if (isnan (f->fb [b]))
                return s_fail (ctx, loc, "must be a number");
            numbers++;
        }
        else
        if (json_is_string (v)) {
            if (!s_parse_instant (json_string_value (v), json_string_length (v), &f->tb [b]))
                return s_fail (ctx, loc, "'%.64s' does not match accepted datetime format "
                               "(RFC3339). Example: 2014-01-01T00:00:00Z",
                               json_string_value (v));
            strings++;
        }
        else
            return s_fail (ctx, loc, "must be a number or an RFC 3339 datetime string");
        f->has_b [b] = true;
    }
    if (numbers && strings)
        return s_fail (ctx, where, "bounds must be all numbers or all datetime strings");
    f->range = strings ? RANGE_DATETIME : RANGE_FLOAT;
    return 0;
}

static int
s_parse_geo_point (pctx_t *ctx, const json_t *json, const char *where, geo_t *out)
{
    if (!json_is_object (json))
        return s_fail (ctx, where, "must be an object {\"lon\", \"lat\"}");
    const json_t *lon = json_object_get (json, "lon");
    const json_t *lat = json_object_get (json, "lat");
    if (!json_is_number (lon) || !json_is_number (lat))
        return s_fail (ctx, where, "lon and lat must be numbers");
    out->lon = json_number_value (lon);
    out->lat = json_number_value (lat);
    if (!(out->lon >= -180 && out->lon <= 180 && out->lat >= -90 && out->lat <= 90))
        return s_fail (ctx, where, "expected `lat` = %g within [-90;90] and `lon` = %g "
                       "within [-180;180]", out->lat, out->lon);
    return 0;
}

static int
s_parse_ring (pctx_t *ctx, const json_t *json, const char *where, ring_t *ring)
{
    const json_t *points = json_is_object (json) ? json_object_get (json, "points") : NULL;
    if (!json_is_array (points))
        return s_fail (ctx, where, "must be an object {\"points\": [...]}");
    size_t n = json_array_size (points);
    if (n <= 3)
        return s_fail (ctx, where, "polygon invalid, the size must be at least 4, got %zu",
                       n);
    ring->pts = calloc (n, sizeof (geo_t));
    assert (ring->pts);
    ring->n = n;
    for (size_t i = 0; i < n; i++) {
        char loc [LOC_SIZE];
        s_loc (loc, sizeof loc, where, NULL, (long) i);
        int rc = s_parse_geo_point (ctx, json_array_get (points, i), loc, &ring->pts [i]);
        if (rc)
            return rc;
    }
    if (fabs (ring->pts [0].lat - ring->pts [n - 1].lat) > 2.2e-16
    ||  fabs (ring->pts [0].lon - ring->pts [n - 1].lon) > 2.2e-16)
        return s_fail (ctx, where, "polygon invalid, the first and the last points should "
                       "be the same to form a closed line");
    return 0;
}

static int
s_parse_count (pctx_t *ctx, field_t *f, const json_t *json, const char *where)
{
    if (!json_is_object (json))
        return s_fail (ctx, where, "must be an object");
    for (int b = 0; b < 4; b++) {
        const json_t *v = json_object_get (json, s_bound_names [b]);
        if (!v || json_is_null (v))
            continue;
        if (!json_is_integer (v) || json_integer_value (v) < 0) {
            char loc [LOC_SIZE];
            s_loc (loc, sizeof loc, where, s_bound_names [b], 0);
            return s_fail (ctx, loc, "must be a non-negative integer");
        }
        f->has_c [b] = true;
        f->cb [b] = (uint64_t) json_integer_value (v);
    }
    f->has_count = true;
    return 0;
}

//  Optional member: absent and null are both "not given".
static const json_t *
s_opt (const json_t *obj, const char *name)
{
    const json_t *v = json_object_get (obj, name);
    return json_is_null (v) ? NULL : v;
}

static int
s_parse_field (pctx_t *ctx, const json_t *json, const char *where, field_t **out)
{
    field_t *f = calloc (1, sizeof (field_t));
    assert (f);
    f->is_empty = f->is_null = -1;
    *out = f;
    int rc = s_parse_key (ctx, json_object_get (json, "key"), where, &f->path);
    if (rc)
        return rc;
    char loc [LOC_SIZE];
    bool any = false;
    const json_t *v;
    if ((v = s_opt (json, "match")) != NULL) {
        s_loc (loc, sizeof loc, where, "match", 0);
        if ((rc = s_parse_match (ctx, f, v, loc)))
            return rc;
        any = true;
    }
    if ((v = s_opt (json, "range")) != NULL) {
        s_loc (loc, sizeof loc, where, "range", 0);
        if ((rc = s_parse_range (ctx, f, v, loc)))
            return rc;
        any = true;
    }
    if ((v = s_opt (json, "geo_radius")) != NULL) {
        s_loc (loc, sizeof loc, where, "geo_radius", 0);
        if (!json_is_object (v))
            return s_fail (ctx, loc, "must be an object {\"center\", \"radius\"}");
        char sub [LOC_SIZE];
        s_loc (sub, sizeof sub, loc, "center", 0);
        if ((rc = s_parse_geo_point (ctx, json_object_get (v, "center"), sub, &f->center)))
            return rc;
        const json_t *radius = json_object_get (v, "radius");
        if (!json_is_number (radius) || isnan (json_number_value (radius)))
            return s_fail (ctx, loc, "radius must be a number (meters)");
        f->radius = json_number_value (radius);
        f->has_radius = any = true;
    }
    if ((v = s_opt (json, "geo_bounding_box")) != NULL) {
        s_loc (loc, sizeof loc, where, "geo_bounding_box", 0);
        if (!json_is_object (v))
            return s_fail (ctx, loc, "must be an object {\"top_left\", \"bottom_right\"}");
        char sub [LOC_SIZE];
        s_loc (sub, sizeof sub, loc, "top_left", 0);
        if ((rc = s_parse_geo_point (ctx, json_object_get (v, "top_left"), sub,
                                     &f->top_left)))
            return rc;
        s_loc (sub, sizeof sub, loc, "bottom_right", 0);
        if ((rc = s_parse_geo_point (ctx, json_object_get (v, "bottom_right"), sub,
                                     &f->bottom_right)))
            return rc;
        f->has_box = any = true;
    }
    if ((v = s_opt (json, "geo_polygon")) != NULL) {
        s_loc (loc, sizeof loc, where, "geo_polygon", 0);
        if (!json_is_object (v))
            return s_fail (ctx, loc, "must be an object {\"exterior\", \"interiors\"}");
        char sub [LOC_SIZE];
        s_loc (sub, sizeof sub, loc, "exterior", 0);
        if ((rc = s_parse_ring (ctx, json_object_get (v, "exterior"), sub, &f->exterior)))
            return rc;
        const json_t *interiors = s_opt (v, "interiors");
        if (interiors) {
            s_loc (sub, sizeof sub, loc, "interiors", 0);
            if (!json_is_array (interiors))
                return s_fail (ctx, sub, "must be an array");
            size_t n = json_array_size (interiors);
            f->interiors = calloc (n ? n : 1, sizeof (ring_t));
            assert (f->interiors);
            for (size_t i = 0; i < n; i++) {
                char ring_loc [LOC_SIZE];
                s_loc (ring_loc, sizeof ring_loc, sub, NULL, (long) i);
                f->n_interiors++;
                if ((rc = s_parse_ring (ctx, json_array_get (interiors, i), ring_loc,
                                        &f->interiors [i])))
                    return rc;
            }
        }
        f->has_polygon = any = true;
    }
    if ((v = s_opt (json, "values_count")) != NULL) {
        s_loc (loc, sizeof loc, where, "values_count", 0);
        if ((rc = s_parse_count (ctx, f, v, loc)))
            return rc;
        any = true;
    }
    if ((v = s_opt (json, "is_empty")) != NULL) {
        s_loc (loc, sizeof loc, where, "is_empty", 0);
        if (!json_is_boolean (v))
            return s_fail (ctx, loc, "must be a boolean");
        f->is_empty = json_is_true (v);
        any = true;
    }
    if ((v = s_opt (json, "is_null")) != NULL) {
        s_loc (loc, sizeof loc, where, "is_null", 0);
        if (!json_is_boolean (v))
            return s_fail (ctx, loc, "must be a boolean");
        f->is_null = json_is_true (v);
        any = true;
    }
    if (!any)
        return s_fail (ctx, where, "at least one field condition must be specified "
                       "(match, range, geo_radius, geo_bounding_box, geo_polygon, "
                       "values_count, is_empty, is_null)");
    return 0;
}

static int
s_pointid_cmp_qsort (const void *a, const void *b)
{
    return pointid_cmp (a, b);
}

static int
s_parse_cond (pctx_t *ctx, const json_t *json, const char *where, int depth, cond_t *c)
{
    if (!json_is_object (json))
        return s_fail (ctx, where, "a condition must be an object");
    char loc [LOC_SIZE];
    const json_t *v;
    //  In the order of Qdrant's (untagged) Condition variants.
    if (json_object_get (json, "key")) {
        c->kind = COND_FIELD;
        return s_parse_field (ctx, json, where, &c->field);
    }
    if ((v = json_object_get (json, "is_empty")) != NULL
    ||  (v = json_object_get (json, "is_null")) != NULL) {
        bool empty = json_object_get (json, "is_empty") != NULL;
        c->kind = empty ? COND_IS_EMPTY : COND_IS_NULL;
        s_loc (loc, sizeof loc, where, empty ? "is_empty" : "is_null", 0);
        if (!json_is_object (v))
            return s_fail (ctx, loc, "must be an object {\"key\": ...}");
        return s_parse_key (ctx, json_object_get (v, "key"), loc, &c->path);
    }
    if ((v = json_object_get (json, "has_id")) != NULL) {
        c->kind = COND_HAS_ID;
        s_loc (loc, sizeof loc, where, "has_id", 0);
        if (!json_is_array (v))
            return s_fail (ctx, loc, "must be an array of point ids");
        size_t n = json_array_size (v);
        c->ids = malloc ((n ? n : 1) * sizeof (pointid_t));
        assert (c->ids);
        for (size_t i = 0; i < n; i++) {
            if (pointid_from_json (json_array_get (v, i), &c->ids [i])) {
                char sub [LOC_SIZE];
                s_loc (sub, sizeof sub, loc, NULL, (long) i);
                return s_fail (ctx, sub, "must be an unsigned integer or a UUID");
            }
        }
        c->n_ids = n;
        qsort (c->ids, n, sizeof (pointid_t), s_pointid_cmp_qsort);
        return 0;
    }
    if ((v = json_object_get (json, "has_vector")) != NULL) {
        c->kind = COND_HAS_VECTOR;
        s_loc (loc, sizeof loc, where, "has_vector", 0);
        if (!json_is_string (v))
            return s_fail (ctx, loc, "must be a vector name");
        c->vector = strdup (json_string_value (v));
        return 0;
    }
    if ((v = json_object_get (json, "slice")) != NULL) {
        c->kind = COND_SLICE;
        s_loc (loc, sizeof loc, where, "slice", 0);
        const json_t *total = json_is_object (v) ? json_object_get (v, "total") : NULL;
        const json_t *index = json_is_object (v) ? json_object_get (v, "index") : NULL;
        if (!json_is_integer (total) || !json_is_integer (index)
        ||  json_integer_value (total) < 1 || json_integer_value (total) > UINT32_MAX
        ||  json_integer_value (index) < 0)
            return s_fail (ctx, loc, "must be {\"total\": n >= 1, \"index\": i >= 0}");
        if (json_integer_value (index) >= json_integer_value (total))
            return s_fail (ctx, loc, "Slice index must be less than the total number of "
                           "slices");
        c->total = (uint32_t) json_integer_value (total);
        c->index = (uint32_t) json_integer_value (index);
        return 0;
    }
    if ((v = json_object_get (json, "nested")) != NULL) {
        c->kind = COND_NESTED;
        s_loc (loc, sizeof loc, where, "nested", 0);
        if (!json_is_object (v))
            return s_fail (ctx, loc, "must be an object {\"key\", \"filter\"}");
        int rc = s_parse_key (ctx, json_object_get (v, "key"), loc, &c->path);
        if (rc)
            return rc;
        //  The key names the array: "diet" and "diet[]" are the same.
        if (c->path.steps [c->path.n - 1].kind != STEP_WILD)
            s_path_push (&c->path, STEP_WILD, NULL, 0);
        const json_t *inner = json_object_get (v, "filter");
        char sub [LOC_SIZE];
        s_loc (sub, sizeof sub, loc, "filter", 0);
        if (!json_is_object (inner))
            return s_fail (ctx, sub, "must be a filter object");
        return s_parse_node (ctx, inner, sub, depth + 1, &c->filter);
    }
    c->kind = COND_FILTER;
    return s_parse_node (ctx, json, where, depth + 1, &c->filter);
}

//  must / should / must_not: one condition or an array of them; null = none.
static int
s_parse_clause (pctx_t *ctx, const json_t *json, const char *where, int depth,
                clause_t *clause, bool *given)
{
    *given = false;
    if (!json || json_is_null (json))
        return 0;
    *given = true;
    if (json_is_object (json)) {
        clause->conds = calloc (1, sizeof (cond_t));
        assert (clause->conds);
        clause->n = 1;
        return s_parse_cond (ctx, json, where, depth, &clause->conds [0]);
    }
    if (!json_is_array (json))
        return s_fail (ctx, where, "must be a condition or an array of conditions");
    size_t n = json_array_size (json);
    clause->conds = calloc (n ? n : 1, sizeof (cond_t));
    assert (clause->conds);
    for (size_t i = 0; i < n; i++) {
        char loc [LOC_SIZE];
        s_loc (loc, sizeof loc, where, NULL, (long) i);
        clause->n++;
        int rc = s_parse_cond (ctx, json_array_get (json, i), loc, depth, &clause->conds [i]);
        if (rc)
            return rc;
    }
    return 0;
}

static int
s_parse_node (pctx_t *ctx, const json_t *json, const char *where, int depth, node_t **out)
{
    *out = NULL;
    if (depth > S_MAX_DEPTH)
        return s_fail (ctx, where, "filter nested too deeply (more than %d levels)",
                       S_MAX_DEPTH);
    if (!json_is_object (json))
        return s_fail (ctx, where, "a filter must be an object");
    node_t *node = calloc (1, sizeof (node_t));
    assert (node);
    *out = node;
    const char *key;
    const json_t *value;
    json_object_foreach ((json_t *) json, key, value) {
        if (strcmp (key, "must") && strcmp (key, "should") && strcmp (key, "must_not")
        &&  strcmp (key, "min_should")) {
            //  A Filter denies unknown fields: an object that is not a known
            //  condition and not a filter lands here.
            if (depth <= 1 && strcmp (where, "filter") == 0)
                return s_fail (ctx, where, "unknown field \"%.64s\" (expected must, "
                               "should, must_not, min_should)", key);
            return s_fail (ctx, where, "unknown condition (unexpected field \"%.64s\")",
                           key);
        }
    }
    char loc [LOC_SIZE];
    bool given;
    int rc;
    s_loc (loc, sizeof loc, where, "must", 0);
    if ((rc = s_parse_clause (ctx, json_object_get (json, "must"), loc, depth, &node->must,
                              &given)))
        return rc;
    s_loc (loc, sizeof loc, where, "should", 0);
    if ((rc = s_parse_clause (ctx, json_object_get (json, "should"), loc, depth,
                              &node->should, &given)))
        return rc;
    s_loc (loc, sizeof loc, where, "must_not", 0);
    if ((rc = s_parse_clause (ctx, json_object_get (json, "must_not"), loc, depth,
                              &node->must_not, &given)))
        return rc;
    const json_t *min_should = s_opt (json, "min_should");
    if (min_should) {
        s_loc (loc, sizeof loc, where, "min_should", 0);
        if (!json_is_object (min_should))
            return s_fail (ctx, loc, "must be an object {\"conditions\", \"min_count\"}");
        const json_t *conditions = json_object_get (min_should, "conditions");
        const json_t *min_count = json_object_get (min_should, "min_count");
        char sub [LOC_SIZE];
        s_loc (sub, sizeof sub, loc, "conditions", 0);
        if (!json_is_array (conditions))
            return s_fail (ctx, sub, "must be an array of conditions");
        if ((rc = s_parse_clause (ctx, conditions, sub, depth, &node->min_should, &given)))
            return rc;
        s_loc (sub, sizeof sub, loc, "min_count", 0);
        if (!json_is_integer (min_count) || json_integer_value (min_count) < 1)
            return s_fail (ctx, sub, "min_count must be greater than 0");
        node->has_min_should = true;
        node->min_count = (size_t) json_integer_value (min_count);
    }
    return 0;
}

int
filter_parse (const json_t *json, filter_t **out, char *err, size_t errlen)
{
    assert (out);
    *out = NULL;
    if (err && errlen)
        err [0] = 0;
    if (!json || json_is_null (json))
        return 0;
    pctx_t ctx = { err, errlen };
    node_t *root;
    int rc = s_parse_node (&ctx, json, "filter", 1, &root);
    if (rc) {
        s_node_free (root);
        return rc;
    }
    filter_t *self = calloc (1, sizeof (filter_t));
    assert (self);
    self->root = root;
    *out = self;
    return 0;
}

//  --------------------------------------------------------------------------
//  Evaluation

typedef struct {
    const pointid_t *id;            //  NULL inside nested
    filter_has_vector_fn *has_vector;   //  NULL: has_vector never matches
    void *arg;                      //  for has_vector
} ectx_t;

static bool s_node_match (const node_t *node, const ectx_t *ctx, const json_t *payload);

static bool
s_str_in (const field_t *f, const json_t *v)
{
    str_t key = { (char *) json_string_value (v), json_string_length (v) };
    return bsearch (&key, f->strs, f->n_list, sizeof (str_t), s_str_cmp) != NULL;
}

static bool
s_int_in (const field_t *f, int64_t x)
{
    return bsearch (&x, f->ints, f->n_list, sizeof (int64_t), s_int_cmp) != NULL;
}

static bool
s_contains (const json_t *v, const str_t *needle)
{
    return memmem (json_string_value (v), json_string_length (v), needle->s, needle->len)
           != NULL;
}

static bool
s_match_value (const field_t *f, const json_t *v)
{
    switch (f->match) {
        case MATCH_NONE:
            return false;
        case MATCH_STR:
            return json_is_string (v) && json_string_length (v) == f->str.len
                && memcmp (json_string_value (v), f->str.s, f->str.len) == 0;
        case MATCH_INT:
            return json_is_integer (v) && json_integer_value (v) == f->ival;
        case MATCH_BOOL:
            return json_is_boolean (v) && json_is_true (v) == f->bval;
        case MATCH_TEXT:
            return json_is_string (v) && s_contains (v, &f->str);
        case MATCH_TEXT_ANY:
            if (!json_is_string (v))
                return false;
            for (size_t i = 0; i < f->n_tokens; i++)
                if (s_contains (v, &f->tokens [i]))
                    return true;
            return false;
        case MATCH_PREFIX:
            return json_is_string (v) && json_string_length (v) >= f->str.len
                && memcmp (json_string_value (v), f->str.s, f->str.len) == 0;
        case MATCH_ANY:
            if (f->list_is_int)
                return json_is_integer (v) && s_int_in (f, json_integer_value (v));
            return json_is_string (v) && f->n_list && s_str_in (f, v);
        case MATCH_EXCEPT:
            //  As Qdrant: a value of the list's type must not be in it; null
            //  never matches; any other value does.
            if (json_is_null (v))
                return false;
            if (f->list_is_int && json_is_integer (v))
                return !s_int_in (f, json_integer_value (v));
            if (!f->list_is_int && json_is_string (v))
                return !(f->n_list && s_str_in (f, v));
            return true;
    }
    return false;
}

static bool
s_in_float_range (const field_t *f, double x)
{
    return (!f->has_b [B_LT] || x < f->fb [B_LT]) && (!f->has_b [B_GT] || x > f->fb [B_GT])
        && (!f->has_b [B_LTE] || x <= f->fb [B_LTE])
        && (!f->has_b [B_GTE] || x >= f->fb [B_GTE]);
}

static bool
s_in_time_range (const field_t *f, const instant_t *t)
{
    return (!f->has_b [B_LT] || s_instant_cmp (t, &f->tb [B_LT]) < 0)
        && (!f->has_b [B_GT] || s_instant_cmp (t, &f->tb [B_GT]) > 0)
        && (!f->has_b [B_LTE] || s_instant_cmp (t, &f->tb [B_LTE]) <= 0)
        && (!f->has_b [B_GTE] || s_instant_cmp (t, &f->tb [B_GTE]) >= 0);
}

static bool
s_match_range (const field_t *f, const json_t *v)
{
    if (f->range == RANGE_FLOAT)
        return json_is_number (v) && s_in_float_range (f, json_number_value (v));
    if (f->range == RANGE_DATETIME) {
        instant_t t;
        return json_is_string (v)
            && s_parse_instant (json_string_value (v), json_string_length (v), &t)
            && s_in_time_range (f, &t);
    }
    return false;
}

static double
s_rad (double deg)
{
    return deg * (M_PI / 180.0);
}

static double
s_haversine (const geo_t *a, const geo_t *b)
{
    double dlat = s_rad (b->lat - a->lat), dlon = s_rad (b->lon - a->lon);
    double s1 = sin (dlat / 2), s2 = sin (dlon / 2);
    double h = s1 * s1 + cos (s_rad (a->lat)) * cos (s_rad (b->lat)) * s2 * s2;
    return 2.0 * S_EARTH_RADIUS * asin (sqrt (h));
}

//  -1 outside, 0 on the boundary, 1 inside (even-odd rule).
static int
s_ring_locate (const ring_t *ring, const geo_t *p)
{
    bool inside = false;
    for (size_t i = 0, j = ring->n - 1; i < ring->n; j = i++) {
        double xi = ring->pts [i].lon, yi = ring->pts [i].lat;
        double xj = ring->pts [j].lon, yj = ring->pts [j].lat;
        //  On the edge: collinear and within its bounding box.
        double cross = (xj - xi) * (p->lat - yi) - (yj - yi) * (p->lon - xi);
        if (fabs (cross) <= 1e-12
        &&  p->lon >= fmin (xi, xj) && p->lon <= fmax (xi, xj)
        &&  p->lat >= fmin (yi, yj) && p->lat <= fmax (yi, yj))
            return 0;
        if ((yi > p->lat) != (yj > p->lat)
        &&  p->lon < (xj - xi) * (p->lat - yi) / (yj - yi) + xi)
            inside = !inside;
    }
    return inside ? 1 : -1;
}

static bool
s_payload_geo (const json_t *v, geo_t *out)
{
    if (!json_is_object (v))
        return false;
    const json_t *lon = json_object_get (v, "lon");
    const json_t *lat = json_object_get (v, "lat");
    if (!json_is_number (lon) || !json_is_number (lat))
        return false;
    out->lon = json_number_value (lon);
    out->lat = json_number_value (lat);
    return true;
}

static bool
s_match_geo (const field_t *f, const json_t *v)
{
    geo_t p;
    if (!s_payload_geo (v, &p))
        return false;
    if (f->has_radius && s_haversine (&f->center, &p) < f->radius)
        return true;
    if (f->has_box) {
        bool lon_ok = f->top_left.lon > f->bottom_right.lon
            ? p.lon > f->top_left.lon || p.lon < f->bottom_right.lon     //  antimeridian
            : f->top_left.lon < p.lon && p.lon < f->bottom_right.lon;
        if (lon_ok && f->bottom_right.lat < p.lat && p.lat < f->top_left.lat)
            return true;
    }
    if (f->has_polygon && s_ring_locate (&f->exterior, &p) > 0) {
        bool in_hole = false;
        for (size_t i = 0; i < f->n_interiors && !in_hole; i++)
            in_hole = s_ring_locate (&f->interiors [i], &p) >= 0;
        if (!in_hole)
            return true;
    }
    return false;
}

static bool
s_count_ok (const field_t *f, uint64_t n)
{
    return (!f->has_c [B_LT] || n < f->cb [B_LT]) && (!f->has_c [B_GT] || n > f->cb [B_GT])
        && (!f->has_c [B_LTE] || n <= f->cb [B_LTE])
        && (!f->has_c [B_GTE] || n >= f->cb [B_GTE]);
}

//  One non-array value against match / range / geo (any of them).
static bool
s_field_check_match (const field_t *f, const json_t *v)
{
    return s_match_value (f, v) || s_match_range (f, v)
        || ((f->has_radius || f->has_box || f->has_polygon) && s_match_geo (f, v));
}

static bool
s_is_empty_value (const json_t *v)
{
    return json_is_null (v) || (json_is_array (v) && json_array_size (v) == 0);
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

//  One value reached by the key (Qdrant's FieldCondition::check).
static bool
s_field_check (const field_t *f, const json_t *v)
{
    if (f->has_count) {
        uint64_t n = json_is_null (v) ? 0 : json_is_array (v) ? json_array_size (v) : 1;
        return s_count_ok (f, n);
    }
    if (f->is_empty >= 0)
        return s_is_empty_value (v) == (bool) f->is_empty;
    if (f->is_null >= 0)
        return s_has_null (v) == (bool) f->is_null;
    if (json_is_array (v)) {
        size_t i;
        const json_t *elem;
        json_array_foreach (v, i, elem)
            if (s_field_check_match (f, elem))
                return true;
        return false;
    }
    return s_field_check_match (f, v);
}

static bool
s_field_match (const field_t *f, const json_t *payload)
{
    vals_t vals;
    s_vals_init (&vals);
    s_path_get (payload, &f->path, &vals);
    bool result = false;
    if (vals.n == 0) {
        //  The key is missing: Qdrant's check_empty.
        if (f->has_count)
            result = s_count_ok (f, 0);
        else
        if (f->is_empty >= 0)
            result = f->is_empty;
        else
        if (f->is_null >= 0)
            result = !f->is_null;
    }
    else
        for (size_t i = 0; i < vals.n && !result; i++)
            result = s_field_check (f, vals.v [i]);
    s_vals_fini (&vals);
    return result;
}

static uint64_t
s_slice_hash (const pointid_t *id)
{
    static const unsigned char zero_key [crypto_shorthash_siphash24_KEYBYTES] = { 0 };
    unsigned char in [16], out [crypto_shorthash_siphash24_BYTES];
    size_t len;
    if (id->is_uuid) {
        memcpy (in, id->uuid, 16);
        len = 16;
    }
    else {
        for (int i = 0; i < 8; i++)
            in [i] = (unsigned char) (id->num >> (8 * i));
        len = 8;
    }
    crypto_shorthash_siphash24 (out, in, len, zero_key);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = h << 8 | out [i];
    return h;
}

static bool
s_cond_match (const cond_t *c, const ectx_t *ctx, const json_t *payload)
{
    switch (c->kind) {
        case COND_FILTER:
            return s_node_match (c->filter, ctx, payload);
        case COND_FIELD:
            return s_field_match (c->field, payload);
        case COND_IS_EMPTY: {
            vals_t vals;
            s_vals_init (&vals);
            s_path_get (payload, &c->path, &vals);
            bool empty = true;
            for (size_t i = 0; i < vals.n && empty; i++)
                empty = s_is_empty_value (vals.v [i]);
            s_vals_fini (&vals);
            return empty;
        }
        case COND_IS_NULL: {
            vals_t vals;
            s_vals_init (&vals);
            s_path_get (payload, &c->path, &vals);
            bool null = false;
            for (size_t i = 0; i < vals.n && !null; i++)
                null = json_is_null (vals.v [i]);
            s_vals_fini (&vals);
            return null;
        }
        case COND_HAS_ID:
            return ctx->id && bsearch (ctx->id, c->ids, c->n_ids, sizeof (pointid_t),
                                       s_pointid_cmp_qsort) != NULL;
        case COND_HAS_VECTOR:
            return ctx->id && ctx->has_vector && ctx->has_vector (c->vector, ctx->arg);
        case COND_SLICE:
            return ctx->id && s_slice_hash (ctx->id) % c->total == c->index;
        case COND_NESTED: {
            vals_t vals;
            s_vals_init (&vals);
            s_path_get (payload, &c->path, &vals);
            //  Inside, has_id / has_vector / slice do not apply (as Qdrant).
            ectx_t inner = { NULL, NULL, NULL };
            bool found = false;
            for (size_t i = 0; i < vals.n && !found; i++)
                if (json_is_object (vals.v [i]))
                    found = s_node_match (c->filter, &inner, vals.v [i]);
            s_vals_fini (&vals);
            return found;
        }
    }
    return false;
}

static bool
s_node_match (const node_t *node, const ectx_t *ctx, const json_t *payload)
{
    for (size_t i = 0; i < node->must.n; i++)
        if (!s_cond_match (&node->must.conds [i], ctx, payload))
            return false;
    for (size_t i = 0; i < node->must_not.n; i++)
        if (s_cond_match (&node->must_not.conds [i], ctx, payload))
            return false;
    if (node->should.n) {
        bool any = false;
        for (size_t i = 0; i < node->should.n && !any; i++)
            any = s_cond_match (&node->should.conds [i], ctx, payload);
        if (!any)
            return false;
    }
    if (node->has_min_should) {
        size_t matched = 0;
        for (size_t i = 0; i < node->min_should.n && matched < node->min_count; i++)
            matched += s_cond_match (&node->min_should.conds [i], ctx, payload);
        if (matched < node->min_count)
            return false;
    }
    return true;
}

bool
filter_match_ex (const filter_t *self, const pointid_t *id, const json_t *payload,
                 filter_has_vector_fn *fn, void *arg)
{
    if (!self)
        return true;
    ectx_t ctx = { id, fn, arg };
    return s_node_match (self->root, &ctx, payload);
}

bool
filter_match (const filter_t *self, const pointid_t *id, const json_t *payload)
{
    return filter_match_ex (self, id, payload, NULL, NULL);
}

//  --------------------------------------------------------------------------
//  Read-only view of the tree (for payload index planners). Added after the
//  evaluator and touching none of it: the view types are the internal ones
//  seen through opaque pointers.

_Static_assert ((int) FILTER_LT == (int) B_LT && (int) FILTER_GT == (int) B_GT
                && (int) FILTER_LTE == (int) B_LTE && (int) FILTER_GTE == (int) B_GTE,
                "the view's bound order is the internal one");

static const node_t *
s_node_of (const filter_node_t *node)
{
    return (const node_t *) node;
}

static const cond_t *
s_cond_of (const filter_cond_t *cond)
{
    return (const cond_t *) cond;
}

static const clause_t *
s_clause_of (const node_t *node, filter_clause_t clause)
{
    switch (clause) {
        case FILTER_MUST:
            return &node->must;
        case FILTER_SHOULD:
            return &node->should;
        case FILTER_MUST_NOT:
            return &node->must_not;
        case FILTER_MIN_SHOULD:
            return &node->min_should;
    }
    return NULL;
}

const filter_node_t *
filter_root (const filter_t *self)
{
    return self ? (const filter_node_t *) self->root : NULL;
}

size_t
filter_node_size (const filter_node_t *node, filter_clause_t clause)
{
    const clause_t *c = s_clause_of (s_node_of (node), clause);
    return c ? c->n : 0;
}

const filter_cond_t *
filter_node_cond (const filter_node_t *node, filter_clause_t clause, size_t index)
{
    const clause_t *c = s_clause_of (s_node_of (node), clause);
    assert (c && index < c->n);
    return (const filter_cond_t *) &c->conds [index];
}

size_t
filter_node_min_count (const filter_node_t *node)
{
    const node_t *n = s_node_of (node);
    return n->has_min_should ? n->min_count : 0;
}

filter_cond_kind_t
filter_cond_kind (const filter_cond_t *cond)
{
    switch (s_cond_of (cond)->kind) {
        case COND_FILTER:
            return FILTER_COND_FILTER;
        case COND_FIELD:
            return FILTER_COND_FIELD;
        case COND_IS_EMPTY:
            return FILTER_COND_IS_EMPTY;
        case COND_IS_NULL:
            return FILTER_COND_IS_NULL;
        case COND_HAS_ID:
            return FILTER_COND_HAS_ID;
        case COND_HAS_VECTOR:
            return FILTER_COND_HAS_VECTOR;
        case COND_SLICE:
            return FILTER_COND_SLICE;
        case COND_NESTED:
            return FILTER_COND_NESTED;
    }
    return FILTER_COND_FILTER;
}

const filter_node_t *
filter_cond_node (const filter_cond_t *cond)
{
    const cond_t *c = s_cond_of (cond);
    if (c->kind == COND_FILTER || c->kind == COND_NESTED)
        return (const filter_node_t *) c->filter;
    return NULL;
}

//  Path text that parses back to the same steps: keys bare when every byte
//  is a bare-key byte, else quoted (parsed keys never hold '"' or '\').
static char *
s_path_text (const path_t *path)
{
    size_t size = 1;
    for (size_t i = 0; i < path->n; i++)
        size += path->steps [i].key ? strlen (path->steps [i].key) + 3 : 24;
    char *text = malloc (size);
    assert (text);
    size_t len = 0;
    for (size_t i = 0; i < path->n; i++) {
        const step_t *step = &path->steps [i];
        if (step->kind == STEP_KEY) {
            bool bare = step->key [0] != 0;
            for (const char *k = step->key; *k && bare; k++)
                bare = s_raw_char ((unsigned char) *k);
            len += (size_t) snprintf (text + len, size - len, bare ? "%s%s" : "%s\"%s\"",
                                      i ? "." : "", step->key);
        }
        else
        if (step->kind == STEP_INDEX)
            len += (size_t) snprintf (text + len, size - len, "[%zu]", step->index);
        else
            len += (size_t) snprintf (text + len, size - len, "[]");
    }
    assert (len < size);
    return text;
}

char *
filter_path_canonical (const char *text)
{
    path_t path;
    if (s_path_parse (text, &path))
        return NULL;
    char *canonical = s_path_text (&path);
    s_path_free (&path);
    return canonical;
}

char *
filter_cond_key (const filter_cond_t *cond)
{
    const cond_t *c = s_cond_of (cond);
    switch (c->kind) {
        case COND_FIELD:
            return s_path_text (&c->field->path);
        case COND_IS_EMPTY:
        case COND_IS_NULL:
        case COND_NESTED:
            return s_path_text (&c->path);
        default:
            return NULL;
    }
}

const pointid_t *
filter_cond_ids (const filter_cond_t *cond, size_t *n)
{
    const cond_t *c = s_cond_of (cond);
    if (c->kind != COND_HAS_ID) {
        *n = 0;
        return NULL;
    }
    *n = c->n_ids;
    return c->ids;
}

int
filter_cond_field (const filter_cond_t *cond, filter_field_view_t *out)
{
    const cond_t *c = s_cond_of (cond);
    if (c->kind != COND_FIELD)
        return -SH_EINVAL;
    const field_t *f = c->field;
    memset (out, 0, sizeof *out);
    switch (f->match) {
        case MATCH_NONE:
            out->match = FILTER_MATCH_NONE;
            break;
        case MATCH_STR:
            out->match = FILTER_MATCH_STR;
            break;
        case MATCH_INT:
            out->match = FILTER_MATCH_INT;
            break;
        case MATCH_BOOL:
            out->match = FILTER_MATCH_BOOL;
            break;
        case MATCH_ANY:
            out->match = FILTER_MATCH_ANY;
            break;
        case MATCH_EXCEPT:
            out->match = FILTER_MATCH_EXCEPT;
            break;
        case MATCH_TEXT:
        case MATCH_TEXT_ANY:
        case MATCH_PREFIX:
            out->match = FILTER_MATCH_TEXT;
            break;
    }
    out->str = f->str.s;
    out->str_len = f->str.len;
    out->ival = f->ival;
    out->bval = f->bval;
    out->list_is_int = f->list_is_int;
    out->n_list = f->n_list;
    out->ints = f->list_is_int ? f->ints : NULL;
    out->range = f->range == RANGE_FLOAT ? FILTER_RANGE_FLOAT
               : f->range == RANGE_DATETIME ? FILTER_RANGE_DATETIME : FILTER_RANGE_NONE;
    for (int b = 0; b < 4; b++) {
        //  The internal bound order is the public one.
        out->has_bound [b] = f->has_b [b];
        out->fbound [b] = f->fb [b];
        out->tbound [b] = (filter_instant_t) { f->tb [b].sec, f->tb [b].nsec };
        out->has_cbound [b] = f->has_c [b];
        out->cbound [b] = f->cb [b];
    }
    out->has_geo = f->has_radius || f->has_box || f->has_polygon;
    out->has_count = f->has_count;
    out->is_empty = f->is_empty;
    out->is_null = f->is_null;
    return 0;
}

const char *
filter_cond_list_str (const filter_cond_t *cond, size_t index, size_t *len)
{
    const cond_t *c = s_cond_of (cond);
    assert (c->kind == COND_FIELD && !c->field->list_is_int && index < c->field->n_list);
    *len = c->field->strs [index].len;
    return c->field->strs [index].s;
}

size_t
filter_path_visit_raw (const json_t *payload, const char *text, filter_visit_fn *fn,
                       void *arg)
{
    path_t path;
    if (!payload || s_path_parse (text, &path))
        return 0;
    vals_t vals;
    s_vals_init (&vals);
    s_path_get (payload, &path, &vals);
    for (size_t i = 0; i < vals.n; i++)
        fn (vals.v [i], arg);
    size_t count = vals.n;
    s_vals_fini (&vals);
    s_path_free (&path);
    return count;
}

bool
filter_parse_datetime (const char *text, size_t len, filter_instant_t *out)
{
    instant_t t;
    if (!s_parse_instant (text, len, &t))
        return false;
    out->sec = t.sec;
    out->nsec = t.nsec;
    return true;
}
