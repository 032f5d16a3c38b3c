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

#endif
