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

#endif
