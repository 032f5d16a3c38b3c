/*  filter: Qdrant's Filter (must / should / must_not / min_should), parsed
    once into a tree and evaluated against a point's id and payload.

    Conditions: field conditions {"key", "match": {"value"} | {"any": [..]} |
    {"except": [..]} | {"text"}, "range": {gt, gte, lt, lte} (numbers, or
    RFC 3339 datetime strings), "values_count": {gt, gte, lt, lte},
    "is_empty"/"is_null" forms}, {"is_empty": {"key"}}, {"is_null": {"key"}},
    {"has_id": [ids]}, {"nested": {"key", "filter"}}, and a Filter itself as a
    condition. Keys are paths: "a.b.c", "a[].b" (every element of array a),
    "a[0]"; a path that reaches an array matches if any element does, as in
    Qdrant.
*/
#ifndef SH_FILTER_H
#define SH_FILTER_H

#include "common/pointid.h"
#include <jansson.h>
#include <stdbool.h>

typedef struct _filter_t filter_t;

//  Parses json (a Filter object; JSON null means "no filter": *out = NULL and
//  0). -SH_EINVAL with a message for the user in err on bad input.
int filter_parse (const json_t *json, filter_t **out, char *err, size_t errlen);
void filter_destroy (filter_t **self_p);
//  True if the point matches. self NULL matches everything. payload may be NULL.
bool filter_match (const filter_t *self, const pointid_t *id, const json_t *payload);

//  Payload path helpers, shared with payload updates and selectors:
//  calls fn for every value the path reaches in payload (arrays flattened
//  where the path says [] or reaches an array at its end). Returns the number
//  of values visited.
typedef void (filter_visit_fn) (const json_t *value, void *arg);
size_t filter_path_visit (const json_t *payload, const char *path, filter_visit_fn *fn,
                          void *arg);

//  True if text is a valid payload path ("a.b[0].c", "a[].b", "a.\"b.c\"").
bool filter_path_valid (const char *path);

//  Payload edits by path, with Qdrant's semantics (set_payload with "key",
//  delete_payload):
//  Merges the keys of obj (an object) into the object at path in payload
//  (path NULL: payload itself), creating missing objects on the way; a key
//  whose value in obj is null is removed, as Qdrant's merge does. Values are
//  copied. 0, or -SH_EINVAL for a bad path or obj not an object.
int filter_path_set (json_t *payload, const char *path, const json_t *obj);
//  Removes the value(s) path names from payload ("a.b", "a[].b"; a trailing
//  [] empties the array). Returns the number removed, or -SH_EINVAL.
int filter_path_remove (json_t *payload, const char *path);

//  has_vector conditions need the point's vectors, which a payload does not
//  have: fn answers whether the point has the named vector.
typedef bool (filter_has_vector_fn) (const char *name, void *arg);
//  As filter_match, with has_vector answered by fn. filter_match is this with
//  fn NULL, where a has_vector condition never matches.
bool filter_match_ex (const filter_t *self, const pointid_t *id, const json_t *payload,
                      filter_has_vector_fn *fn, void *arg);

//  --- A read-only view of a parsed filter --------------------------------
//  For payload index planners (actors/shard/pindex), which decide conditions
//  from indexes instead of payloads and so must see the tree. Everything
//  returned is borrowed from the filter and lives as long as it. The view
//  describes exactly what filter_match evaluates, nothing more.
typedef struct _filter_node_view filter_node_t;     //  one Filter object
typedef struct _filter_cond_view filter_cond_t;     //  one condition in it

typedef enum {
    FILTER_MUST, FILTER_SHOULD, FILTER_MUST_NOT, FILTER_MIN_SHOULD
} filter_clause_t;

typedef enum {
    FILTER_COND_FILTER,         //  a Filter used as a condition
    FILTER_COND_FIELD,          //  {"key", match/range/geo/values_count/...}
    FILTER_COND_IS_EMPTY,       //  {"is_empty": {"key"}}
    FILTER_COND_IS_NULL,        //  {"is_null": {"key"}}
    FILTER_COND_HAS_ID,         //  {"has_id": [...]}
    FILTER_COND_HAS_VECTOR,     //  {"has_vector": name}
    FILTER_COND_SLICE,          //  {"slice": {total, index}}
    FILTER_COND_NESTED          //  {"nested": {"key", "filter"}}
} filter_cond_kind_t;

//  The top-level Filter; NULL if self is NULL.
const filter_node_t *filter_root (const filter_t *self);
//  Number of conditions in one clause of node (min_should: its conditions).
size_t filter_node_size (const filter_node_t *node, filter_clause_t clause);
//  Condition index (< filter_node_size) of that clause.
const filter_cond_t *filter_node_cond (const filter_node_t *node, filter_clause_t clause,
                                       size_t index);
//  min_should's min_count, or 0 when the node has no min_should.
size_t filter_node_min_count (const filter_node_t *node);

filter_cond_kind_t filter_cond_kind (const filter_cond_t *cond);
//  FILTER: the Filter; NESTED: the filter each array element is checked
//  against. NULL for other kinds.
const filter_node_t *filter_cond_node (const filter_cond_t *cond);
//  The condition's key in canonical path text (see filter_path_canonical);
//  for NESTED the array path with its trailing "[]" ("diet" gives "diet[]").
//  A new string (free it), or NULL for kinds without a key.
char *filter_cond_key (const filter_cond_t *cond);
//  HAS_ID: the ids, sorted by pointid_cmp; *n their count. NULL otherwise.
const pointid_t *filter_cond_ids (const filter_cond_t *cond, size_t *n);

//  An instant, as datetime ranges compare them.
typedef struct {
    int64_t sec;                //  seconds since 1970-01-01T00:00:00Z
    int32_t nsec;               //  0 .. 999999999
} filter_instant_t;

typedef enum {
    FILTER_MATCH_NONE,          //  no "match"
    FILTER_MATCH_STR,           //  {"value": string}
    FILTER_MATCH_INT,           //  {"value": integer}
    FILTER_MATCH_BOOL,          //  {"value": bool}
    FILTER_MATCH_ANY,           //  {"any": [...]}
    FILTER_MATCH_EXCEPT,        //  {"except": [...]}
    FILTER_MATCH_TEXT           //  text, text_any, phrase, prefix: string tests
} filter_match_kind_t;

typedef enum {
    FILTER_RANGE_NONE, FILTER_RANGE_FLOAT, FILTER_RANGE_DATETIME
} filter_range_kind_t;

//  Bound order in the arrays below.
enum { FILTER_LT, FILTER_GT, FILTER_LTE, FILTER_GTE };

//  What a FIELD condition tests. filter_match decides it per value the key
//  reaches: values_count if given, else is_empty if given, else is_null if
//  given, else match OR range OR geo (a missing key: values_count counts 0,
//  is_empty matches, is_null does not, the rest do not match).
typedef struct {
    filter_match_kind_t match;      //  kind of "match"
    const char *str;                //  MATCH_STR: the string (may hold NUL)
    size_t str_len;                 //  its length in bytes
    int64_t ival;                   //  MATCH_INT
    bool bval;                      //  MATCH_BOOL
    bool list_is_int;               //  ANY/EXCEPT: integers, else strings
    size_t n_list;                  //  ANY/EXCEPT: list length
    const int64_t *ints;            //  ANY/EXCEPT integers, sorted ascending
    filter_range_kind_t range;      //  kind of "range"
    bool has_bound [4];             //  range bounds given (FILTER_LT ...)
    double fbound [4];              //  FLOAT bounds
    filter_instant_t tbound [4];    //  DATETIME bounds
    bool has_geo;                   //  geo_radius, geo_bounding_box or geo_polygon
    bool has_count;                 //  values_count given
    bool has_cbound [4];            //  its bounds given
    uint64_t cbound [4];            //  its bounds
    int is_empty;                   //  -1 not given, else the bool
    int is_null;                    //  -1 not given, else the bool
} filter_field_view_t;

//  0 and *out for a FIELD condition, -SH_EINVAL for other kinds.
int filter_cond_field (const filter_cond_t *cond, filter_field_view_t *out);
//  ANY/EXCEPT string list entry index (sorted by bytes); *len its length.
const char *filter_cond_list_str (const filter_cond_t *cond, size_t index, size_t *len);

//  Canonical text of a payload path, so two spellings of one path compare
//  equal ("\"a\".b" gives "a.b"; keys that need quotes keep them). A new
//  string (free it), or NULL if text is not a valid path.
char *filter_path_canonical (const char *text);
//  As filter_path_visit, but a value that is an array is passed whole, not
//  element by element (is_empty / is_null / values_count look at it whole).
size_t filter_path_visit_raw (const json_t *payload, const char *path,
                              filter_visit_fn *fn, void *arg);
//  Parses a datetime exactly as datetime ranges parse payload strings and
//  bounds (RFC 3339 and Qdrant's lenient forms). len bytes of text.
bool filter_parse_datetime (const char *text, size_t len, filter_instant_t *out);

#endif
