/*  gw_search: vector search over a collection's shards: the classic
    /points/search, /points/search/batch, /points/recommend and
    /points/recommend/batch, and the universal /points/query and
    /points/query/batch.

    Every request of an endpoint (a batch is many) is parsed and checked into
    one s_search_t: the query vector (points given by id are fetched from
    their shards first; recommend's examples are averaged into one vector, as
    Qdrant's average_vector strategy does), filter, limit, offset, threshold
    and what to return. Then one SHARD_SEARCH per shard carries every search of
    the request; each shard answers its best offset+limit per search, and the
    gateway merges them by score in the direction of the vector's distance
    (Cosine, Dot and sparse: higher first; Euclid, Manhattan: lower first; ties
    by id), drops the offset and keeps the limit. A query without a query
    vector lists points in id order (score 0), as Qdrant does.
*/
#include "actors/gateway/gw.h"
#include "common/log.h"
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

//  Bounds offset + limit, so that what a shard is asked to hold in memory is
//  bounded too.
#define S_MAX_WINDOW (1u << 20)

typedef struct {
    bool scroll;                    //  no query vector: points in id order, score 0
    gw_points_vec_t vec;            //  the query vector (not scroll)
    distance_t distance;            //  ranking of the vector's scores
    json_t *filter;                 //  the filter to send (owned), or NULL
    json_int_t limit;               //  results to return
    json_int_t offset;              //  results to skip
    bool has_threshold;             //  score_threshold given
    double threshold;               //  the threshold
    json_t *with_payload;           //  as given, or the endpoint's default (owned)
    json_t *with_vector;            //  as given, or false (owned)
    bool exact;                     //  params.exact
    json_int_t hnsw_ef;             //  params.hnsw_ef, 0 if not given
} s_search_t;

//  Which endpoint a body comes from: defaults and field names differ.
typedef enum { S_SEARCH, S_RECOMMEND, S_QUERY } s_kind_t;

static void
s_search_reset (s_search_t *self)
{
    gw_points_vec_reset (&self->vec);
    json_decref (self->filter);
    json_decref (self->with_payload);
    json_decref (self->with_vector);
    memset (self, 0, sizeof (*self));
}

static bool
s_given (const json_t *value)
{
    return value && !json_is_null (value);
}

static bool
s_is_packed (gw_req_t *req, const json_t *value)
{
    size_t count;
    return gw_body_floats (req, value, &count) != NULL;
}

//  gw_points_vec_parse for a query vector, which the body parser may have
//  taken straight to floats (the routes' `vectors` keys): then it is checked
//  as gw_points_vec_parse checks a dense array, with the same answers.
static int
s_vec_parse (gw_req_t *req, const gw_points_coll_t *coll, const char *name,
             const json_t *value, const char *where, gw_points_vec_t *out)
{
    size_t n = 0;
    const float *floats = gw_body_floats (req, value, &n);
    if (!floats)
        return gw_points_vec_parse (req, coll, name, value, where, out);
    memset (out, 0, sizeof (*out));
    const gw_points_vspec_t *spec = gw_points_vspec (coll, name);
    if (!spec)
        gw_fail_http (req, 400, "Wrong input: Not existing vector name error: %s", name);
    else
    if (spec->sparse)
        gw_fail_http (req, 400, "Wrong input: Wrong usage of sparse vectors");
    else
    if (n != spec->dim)
        gw_fail_http (req, 400, "Wrong input: Vector dimension error: expected dim: "
                      "%" PRIu32 ", got %zu", spec->dim, n);
    else {
        out->dense = malloc (n * sizeof (float));
        out->name = strdup (name);
        assert (out->dense && out->name);
        memcpy (out->dense, floats, n * sizeof (float));
        out->dim = (uint32_t) n;
        return 0;
    }
    return -SH_EINVAL;
}

//  ---------------------------------------------------------------------------
//  Fields every kind shares

static int
s_parse_common (gw_req_t *req, const gw_points_coll_t *coll, const json_t *body,
                s_kind_t kind, s_search_t *s)
{
    if (s_given (json_object_get (body, "shard_key"))) {
        gw_fail_http (req, 400, "Bad request: `shard_key` is not supported yet");
        return -SH_EINVAL;
    }
    //  limit: required for search and recommend ("top" is its old alias),
    //  10 by default for query.
    json_t *limit = json_object_get (body, "limit");
    if (!s_given (limit) && kind != S_QUERY)
        limit = json_object_get (body, "top");
    if (!s_given (limit)) {
        if (kind != S_QUERY) {
            gw_fail_http (req, 400, "Format error in JSON body: missing field `limit`");
            return -SH_EINVAL;
        }
        s->limit = 10;
    }
    else
    if (!json_is_integer (limit) || json_integer_value (limit) < 0) {
        gw_fail_http (req, 400, "Format error in JSON body: limit: expected an unsigned integer");
        return -SH_EINVAL;
    }
    else
        s->limit = json_integer_value (limit);
    if (s->limit < 1) {
        gw_fail_http (req, 422, "Validation error in JSON body: [limit: value 0 invalid, must be "
                      "1 or larger]");
        return -SH_EINVAL;
    }
    json_t *offset = json_object_get (body, "offset");
    if (s_given (offset) && (!json_is_integer (offset) || json_integer_value (offset) < 0)) {
        gw_fail_http (req, 400, "Format error in JSON body: offset: expected an unsigned "
                      "integer");
        return -SH_EINVAL;
    }
    s->offset = s_given (offset) ? json_integer_value (offset) : 0;
    if (s->limit > S_MAX_WINDOW || s->offset > S_MAX_WINDOW - s->limit) {
        gw_fail_http (req, 400, "Bad request: offset + limit must not exceed %u", S_MAX_WINDOW);
        return -SH_EINVAL;
    }

    json_t *threshold = json_object_get (body, "score_threshold");
    if (s_given (threshold)) {
        if (!json_is_number (threshold)) {
            gw_fail_http (req, 400, "Format error in JSON body: score_threshold: expected a "
                          "number");
            return -SH_EINVAL;
        }
        s->has_threshold = true;
        s->threshold = json_number_value (threshold);
    }

    json_t *params = json_object_get (body, "params");
    if (s_given (params)) {
        json_t *exact = json_object_get (params, "exact");
        json_t *ef = json_object_get (params, "hnsw_ef");
        json_t *indexed_only = json_object_get (params, "indexed_only");
        if (!json_is_object (params) || (s_given (exact) && !json_is_boolean (exact))
            || (s_given (indexed_only) && !json_is_boolean (indexed_only))
            || (s_given (ef) && (!json_is_integer (ef) || json_integer_value (ef) < 0))) {
            gw_fail_http (req, 400, "Format error in JSON body: params: expected SearchParams "
                          "{hnsw_ef, exact, quantization, indexed_only}");
            return -SH_EINVAL;
        }
        if (s_given (ef) && json_integer_value (ef) < 1) {
            gw_fail_http (req, 422, "Validation error in JSON body: [params.hnsw_ef: value 0 "
                          "invalid, must be 1 or larger]");
            return -SH_EINVAL;
        }
        s->exact = json_is_true (exact);
        s->hnsw_ef = s_given (ef) ? json_integer_value (ef) : 0;
    }

    json_t *filter = json_object_get (body, "filter");
    if (s_given (filter)) {
        if (!json_is_object (filter)) {
            gw_fail_http (req, 400, "Format error in JSON body: filter: expected a Filter "
                          "object");
            return -SH_EINVAL;
        }
        if (gw_points_check_filter (req, filter))
            return -SH_EINVAL;
        s->filter = json_incref (filter);
    }

    json_t *with_payload = json_object_get (body, "with_payload");
    json_t *with_vector = json_object_get (body, "with_vector");
    if (!with_vector)
        with_vector = json_object_get (body, "with_vectors");
    if (gw_points_check_with (req, coll, with_payload, with_vector))
        return -SH_EINVAL;
    //  Qdrant's defaults for search, recommend and query: neither.
    s->with_payload = s_given (with_payload) ? json_incref (with_payload) : json_false ();
    s->with_vector = s_given (with_vector) ? json_incref (with_vector) : json_false ();
    return 0;
}

//  Sets the ranking from the spec of the query vector.
static void
s_set_distance (const gw_points_coll_t *coll, s_search_t *s)
{
    const gw_points_vspec_t *spec = gw_points_vspec (coll, s->vec.name);
    assert (spec);
    s->distance = spec->sparse ? DIST_DOT : spec->distance;
}

//  Makes s->filter also exclude the points given by id: Qdrant never
//  returns the examples of a recommendation or the point of a query by id.
static void
s_exclude_ids (s_search_t *s, const pointid_t *ids, size_t n)
{
    if (n == 0)
        return;
    json_t *has_id = json_array ();
    for (size_t i = 0; i < n; i++)
        json_array_append_new (has_id, pointid_to_json (&ids [i]));
    json_t *filter = json_pack ("{s[{so}]}", "must_not", "has_id", has_id);
    if (s->filter)
        json_object_set_new (filter, "must", json_pack ("[o]", s->filter));
    s->filter = filter;
}

//  ---------------------------------------------------------------------------
//  Examples: vectors given inline or by point id, averaged for recommend

typedef struct {
    size_t n;                       //  examples
    gw_points_vec_t *vecs;          //  resolved vectors
    pointid_t *ids;                 //  ids of the examples given by id
    size_t n_ids;                   //  how many
} s_examples_t;

static void
s_examples_reset (s_examples_t *self)
{
    for (size_t i = 0; i < self->n; i++)
        gw_points_vec_reset (&self->vecs [i]);
    free (self->vecs);
    free (self->ids);
    memset (self, 0, sizeof (*self));
}

static bool
s_is_point_id (const json_t *value)
{
    pointid_t id;
    return (json_is_integer (value) || json_is_string (value))
        && pointid_from_json (value, &id) == 0;
}

//  Where examples given by id are looked up: lookup_from {"collection",
//  "vector"} or the searched collection and its `using` vector.
typedef struct {
    gw_points_coll_t *coll;         //  the lookup collection (own), NULL = searched one
    const char *vector;             //  the vector to read from it
    bool other;                     //  a different collection: its ids are not excluded
} s_lookup_t;

static int
s_lookup_parse (gw_req_t *req, const gw_points_coll_t *coll, const json_t *body,
                const char *using, s_lookup_t *out)
{
    memset (out, 0, sizeof (*out));
    out->vector = using;
    json_t *lookup = json_object_get (body, "lookup_from");
    if (!s_given (lookup))
        return 0;
    json_t *name = json_object_get (lookup, "collection");
    json_t *vector = json_object_get (lookup, "vector");
    if (!json_is_object (lookup) || !json_is_string (name)
        || (s_given (vector) && !json_is_string (vector))) {
        gw_fail_http (req, 400, "Format error in JSON body: lookup_from: expected "
                      "{\"collection\", \"vector\"}");
        return -SH_EINVAL;
    }
    if (s_given (vector))
        out->vector = json_string_value (vector);
    out->coll = gw_points_coll_named (req, json_string_value (name));
    if (!out->coll)
        return -SH_ENOTFOUND;
    //  Ids of another collection are not excluded from the results.
    out->other = !json_equal (json_object_get (gw_points_coll_json (out->coll), "uid"),
                              json_object_get (gw_points_coll_json (coll), "uid"));
    return 0;
}

//  Resolves items (an array of examples; NULL = none) into ex: inline
//  vectors are parsed as vector `using`, ids fetched through lookup.
static int
s_examples_parse (gw_req_t *req, const gw_points_coll_t *coll, const char *using,
                  const s_lookup_t *lookup, const json_t *items, const char *where,
                  s_examples_t *ex)
{
    memset (ex, 0, sizeof (*ex));
    if (!s_given (items))
        return 0;
    if (!json_is_array (items)) {
        gw_fail_http (req, 400, "Format error in JSON body: %s: expected an array", where);
        return -SH_EINVAL;
    }
    size_t n = json_array_size (items);
    ex->vecs = calloc (n ? n : 1, sizeof (gw_points_vec_t));
    ex->ids = calloc (n ? n : 1, sizeof (pointid_t));
    assert (ex->vecs && ex->ids);
    ex->n = n;
    size_t *id_slots = calloc (n ? n : 1, sizeof (size_t));
    assert (id_slots);
    int rc = 0;
    char path [128];
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *item = json_array_get (items, i);
        snprintf (path, sizeof (path), "%s[%zu]", where, i);
        if (s_is_point_id (item)) {
            pointid_from_json (item, &ex->ids [ex->n_ids]);
            id_slots [ex->n_ids++] = i;
        }
        else
            rc = gw_points_vec_parse (req, coll, using, item, path, &ex->vecs [i]);
    }
    if (rc == 0 && ex->n_ids > 0) {
        const gw_points_coll_t *from = lookup->coll ? lookup->coll : coll;
        gw_points_vec_t *fetched = calloc (ex->n_ids, sizeof (gw_points_vec_t));
        assert (fetched);
        rc = gw_points_fetch_vectors (req, from, lookup->vector, ex->ids, ex->n_ids, fetched);
        //  A vector read from another collection must still fit `using`.
        const gw_points_vspec_t *spec = gw_points_vspec (coll, using);
        for (size_t k = 0; k < ex->n_ids; k++) {
            if (rc == 0 && (!spec || spec->sparse != fetched [k].sparse
                            || (!spec->sparse && spec->dim != fetched [k].dim))) {
                if (!spec)
                    gw_fail_http (req, 400, "Wrong input: Not existing vector name error: %s",
                                  using);
                else
                if (spec->sparse != fetched [k].sparse)
                    gw_fail_http (req, 400, "Wrong input: Wrong usage of sparse vectors");
                else
                    gw_fail_http (req, 400, "Wrong input: Vector dimension error: expected "
                                  "dim: %" PRIu32 ", got %" PRIu32, spec->dim, fetched [k].dim);
                rc = -SH_EINVAL;
            }
            if (rc == 0) {
                free (fetched [k].name);
                fetched [k].name = strdup (using);
                assert (fetched [k].name);
                ex->vecs [id_slots [k]] = fetched [k];
            }
            else
                gw_points_vec_reset (&fetched [k]);
        }
        free (fetched);
    }
    free (id_slots);
    if (rc)
        s_examples_reset (ex);
    return rc;
}

//  Sparse accumulator: (index, value) pairs, summed per index at the end.
typedef struct {
    uint32_t index;                 //  sparse index
    float value;                    //  weighted value
} s_pair_t;

static int
s_pair_cmp (const void *a, const void *b)
{
    uint32_t x = ((const s_pair_t *) a)->index, y = ((const s_pair_t *) b)->index;
    return x < y ? -1 : x > y;
}

//  out = sum over (ex, weight) of weight * mean of ex. Qdrant's
//  average_vector: avg_pos + avg_pos - avg_neg, i.e. weights 2 and -1 when
//  there are negatives, else avg_pos alone.
static void
s_combine (const char *name, const s_examples_t *const *sets, const float *weights,
           size_t n_sets, gw_points_vec_t *out)
{
    memset (out, 0, sizeof (*out));
    out->name = strdup (name);
    assert (out->name);
    const gw_points_vec_t *first = &sets [0]->vecs [0];
    if (!first->sparse) {
        out->dim = first->dim;
        out->dense = calloc (out->dim, sizeof (float));
        assert (out->dense);
        for (size_t s = 0; s < n_sets; s++) {
            float w = weights [s] / (float) sets [s]->n;
            for (size_t i = 0; i < sets [s]->n; i++)
                for (uint32_t d = 0; d < out->dim; d++)
                    out->dense [d] += w * sets [s]->vecs [i].dense [d];
        }
        return;
    }
    size_t total = 0;
    for (size_t s = 0; s < n_sets; s++)
        for (size_t i = 0; i < sets [s]->n; i++)
            total += sets [s]->vecs [i].nnz;
    s_pair_t *pairs = calloc (total ? total : 1, sizeof (s_pair_t));
    assert (pairs);
    size_t k = 0;
    for (size_t s = 0; s < n_sets; s++) {
        float w = weights [s] / (float) sets [s]->n;
        for (size_t i = 0; i < sets [s]->n; i++)
            for (uint32_t j = 0; j < sets [s]->vecs [i].nnz; j++) {
                pairs [k].index = sets [s]->vecs [i].indices [j];
                pairs [k++].value = w * sets [s]->vecs [i].values [j];
            }
    }
    qsort (pairs, k, sizeof (s_pair_t), s_pair_cmp);
    out->sparse = true;
    out->indices = malloc ((k ? k : 1) * sizeof (uint32_t));
    out->values = malloc ((k ? k : 1) * sizeof (float));
    assert (out->indices && out->values);
    for (size_t i = 0; i < k; i++) {
        if (out->nnz > 0 && out->indices [out->nnz - 1] == pairs [i].index)
            out->values [out->nnz - 1] += pairs [i].value;
        else {
            out->indices [out->nnz] = pairs [i].index;
            out->values [out->nnz++] = pairs [i].value;
        }
    }
    free (pairs);
}

//  positive/negative examples (JSON arrays) into s->vec, with their ids
//  excluded from the results.
static int
s_recommend_vector (gw_req_t *req, const gw_points_coll_t *coll,
                    const json_t *body, const json_t *positive, const json_t *negative,
                    const json_t *strategy, const char *using, s_search_t *s)
{
    if (s_given (strategy)) {
        if (!json_is_string (strategy)
            || (!streq (json_string_value (strategy), "average_vector")
                && !streq (json_string_value (strategy), "best_score")
                && !streq (json_string_value (strategy), "sum_scores"))) {
            gw_fail_http (req, 400, "Format error in JSON body: strategy: unknown variant, "
                          "expected one of `average_vector`, `best_score`, `sum_scores`");
            return -SH_EINVAL;
        }
        if (!streq (json_string_value (strategy), "average_vector")) {
            gw_fail_http (req, 400, "Bad request: recommend strategy `%s` is not supported "
                          "yet, use `average_vector`", json_string_value (strategy));
            return -SH_EINVAL;
        }
    }
    if (!gw_points_vspec (coll, using)) {
        gw_fail_http (req, 400, "Wrong input: Not existing vector name error: %s", using);
        return -SH_EINVAL;
    }
    if (json_array_size (positive) == 0) {
        gw_fail_http (req, 400, "Bad request: At least one positive vector ID required with "
                      "this strategy");
        return -SH_EINVAL;
    }
    s_lookup_t lookup;
    if (s_lookup_parse (req, coll, body, using, &lookup))
        return -SH_EINVAL;
    s_examples_t pos, neg;
    memset (&neg, 0, sizeof (neg));
    int rc = s_examples_parse (req, coll, using, &lookup, positive, "positive", &pos);
    if (rc == 0) {
        rc = s_examples_parse (req, coll, using, &lookup, negative, "negative", &neg);
        if (rc)
            s_examples_reset (&pos);
    }
    if (rc == 0) {
        const s_examples_t *sets [2] = { &pos, &neg };
        const float weights [2] = { neg.n ? 2.0f : 1.0f, -1.0f };
        s_combine (using, sets, weights, neg.n ? 2 : 1, &s->vec);
        s_set_distance (coll, s);
        if (!lookup.other) {
            pointid_t *ids = calloc (pos.n_ids + neg.n_ids + 1, sizeof (pointid_t));
            assert (ids);
            if (pos.n_ids)
                memcpy (ids, pos.ids, pos.n_ids * sizeof (pointid_t));
            if (neg.n_ids)
                memcpy (ids + pos.n_ids, neg.ids, neg.n_ids * sizeof (pointid_t));
            s_exclude_ids (s, ids, pos.n_ids + neg.n_ids);
            free (ids);
        }
        s_examples_reset (&pos);
        s_examples_reset (&neg);
    }
    gw_points_coll_destroy (&lookup.coll);
    return rc;
}

static int
s_using (gw_req_t *req, const json_t *body, const char **using)
{
    json_t *value = json_object_get (body, "using");
    *using = "";
    if (!s_given (value))
        return 0;
    if (!json_is_string (value)) {
        gw_fail_http (req, 400, "Format error in JSON body: using: expected a vector name");
        return -SH_EINVAL;
    }
    *using = json_string_value (value);
    return 0;
}

//  ---------------------------------------------------------------------------
//  The three request kinds

//  SearchRequest: "vector" is an array (unnamed), or {"name", "vector"}
//  where vector is dense or sparse.
static int
s_parse_search (gw_req_t *req, const gw_points_coll_t *coll, const json_t *body,
                s_search_t *s)
{
    if (!json_is_object (body)) {
        gw_fail_http (req, 400, "Format error in JSON body: expected a SearchRequest object");
        return -SH_EINVAL;
    }
    if (s_parse_common (req, coll, body, S_SEARCH, s))
        return -SH_EINVAL;
    json_t *vector = json_object_get (body, "vector");
    const char *name = "";
    json_t *value = vector;
    if (!vector) {
        gw_fail_http (req, 400, "Format error in JSON body: missing field `vector`");
        return -SH_EINVAL;
    }
    if (json_is_object (vector) && !s_is_packed (req, vector)) {
        json_t *jname = json_object_get (vector, "name");
        value = json_object_get (vector, "vector");
        if (!json_is_string (jname) || !value) {
            gw_fail_http (req, 400, "Format error in JSON body: vector: data did not match any "
                          "variant of untagged enum NamedVectorStruct");
            return -SH_EINVAL;
        }
        name = json_string_value (jname);
    }
    if (s_vec_parse (req, coll, name, value, "vector", &s->vec))
        return -SH_EINVAL;
    s_set_distance (coll, s);
    return 0;
}

//  RecommendRequest: positive/negative ids or vectors, strategy, using,
//  lookup_from.
static int
s_parse_recommend (gw_req_t *req, const gw_points_coll_t *coll, const json_t *body,
                s_search_t *s)
{
    if (!json_is_object (body)) {
        gw_fail_http (req, 400, "Format error in JSON body: expected a RecommendRequest object");
        return -SH_EINVAL;
    }
    const char *using;
    if (s_parse_common (req, coll, body, S_RECOMMEND, s) || s_using (req, body, &using))
        return -SH_EINVAL;
    json_t *positive = json_object_get (body, "positive");
    json_t *negative = json_object_get (body, "negative");
    if ((s_given (positive) && !json_is_array (positive))
        || (s_given (negative) && !json_is_array (negative))) {
        gw_fail_http (req, 400, "Format error in JSON body: positive and negative must be "
                      "arrays of point ids or vectors");
        return -SH_EINVAL;
    }
    return s_recommend_vector (req, coll, body, s_given (positive) ? positive : NULL,
                               negative, json_object_get (body, "strategy"), using, s);
}

//  The query kinds of Qdrant's Query this gateway does not serve yet.
static const char *s_unsupported_queries [] = {
    "discover", "context", "order_by", "fusion", "rrf", "formula", "sample",
    "relevance_feedback",
};

//  A VectorInput of a query (nearest): a dense or sparse vector, or a point
//  id whose `using` vector is fetched (and which is then left out of the
//  results).
static int
s_query_input (gw_req_t *req, const gw_points_coll_t *coll,
               const json_t *body, const json_t *input, const char *using, s_search_t *s)
{
    if (s_is_point_id (input)) {
        s_lookup_t lookup;
        if (s_lookup_parse (req, coll, body, using, &lookup))
            return -SH_EINVAL;
        s_examples_t ex;
        json_t *items = json_pack ("[O]", input);
        int rc = s_examples_parse (req, coll, using, &lookup, items, "query", &ex);
        json_decref (items);
        if (rc == 0) {
            s->vec = ex.vecs [0];
            memset (&ex.vecs [0], 0, sizeof (ex.vecs [0]));
            if (!lookup.other)
                s_exclude_ids (s, ex.ids, ex.n_ids);
            s_examples_reset (&ex);
        }
        gw_points_coll_destroy (&lookup.coll);
        if (rc == 0)
            s_set_distance (coll, s);
        return rc;
    }
    if (s_vec_parse (req, coll, using, input, "query", &s->vec))
        return -SH_EINVAL;
    s_set_distance (coll, s);
    return 0;
}

//  QueryRequest: query (a VectorInput, {"nearest"}, {"recommend"}), using,
//  prefetch (not yet), lookup_from, and the common fields; limit 10 by
//  default.
static int
s_parse_query (gw_req_t *req, const gw_points_coll_t *coll, const json_t *body,
                s_search_t *s)
{
    if (!json_is_object (body)) {
        gw_fail_http (req, 400, "Format error in JSON body: expected a QueryRequest object");
        return -SH_EINVAL;
    }
    json_t *prefetch = json_object_get (body, "prefetch");
    if (s_given (prefetch) && !(json_is_array (prefetch) && json_array_size (prefetch) == 0)) {
        gw_fail_http (req, 400, "Bad request: prefetch is not supported yet");
        return -SH_EINVAL;
    }
    const char *using;
    if (s_parse_common (req, coll, body, S_QUERY, s) || s_using (req, body, &using))
        return -SH_EINVAL;
    json_t *query = json_object_get (body, "query");
    if (!s_given (query)) {
        if (s->has_threshold) {
            gw_fail_http (req, 400, "Bad request: A query is needed to use the score_threshold. "
                          "Can't have score_threshold without defining a query.");
            return -SH_EINVAL;
        }
        s->scroll = true;
        return 0;
    }
    if (json_is_object (query) && json_object_get (query, "nearest")) {
        json_t *mmr = json_object_get (query, "mmr");
        if (s_given (mmr)) {
            gw_fail_http (req, 400, "Bad request: mmr is not supported yet");
            return -SH_EINVAL;
        }
        return s_query_input (req, coll, body, json_object_get (query, "nearest"),
                              using, s);
    }
    if (json_is_object (query) && json_object_get (query, "recommend")) {
        json_t *input = json_object_get (query, "recommend");
        if (!json_is_object (input)) {
            gw_fail_http (req, 400, "Format error in JSON body: query.recommend: expected "
                          "{positive, negative, strategy}");
            return -SH_EINVAL;
        }
        json_t *positive = json_object_get (input, "positive");
        json_t *negative = json_object_get (input, "negative");
        if ((s_given (positive) && !json_is_array (positive))
            || (s_given (negative) && !json_is_array (negative))) {
            gw_fail_http (req, 400, "Format error in JSON body: query.recommend: positive and "
                          "negative must be arrays");
            return -SH_EINVAL;
        }
        if (json_array_size (positive) == 0 && json_array_size (negative) == 0) {
            gw_fail_http (req, 422, "Validation error in JSON body: [query.recommend.positives, "
                          "negatives: At least one positive or negative vector/id must be "
                          "provided]");
            return -SH_EINVAL;
        }
        if (json_array_size (positive) == 0) {
            gw_fail_http (req, 400, "Wrong input: Positive vectors should not be empty with "
                          "`average` strategy");
            return -SH_EINVAL;
        }
        return s_recommend_vector (req, coll, body, positive, negative,
                                   json_object_get (input, "strategy"), using, s);
    }
    if (json_is_object (query) && json_object_size (query) == 1) {
        const char *key = json_object_iter_key (json_object_iter (query));
        for (size_t i = 0; i < sizeof (s_unsupported_queries) / sizeof (char *); i++)
            if (streq (key, s_unsupported_queries [i])) {
                gw_fail_http (req, 400, "Bad request: `%s` queries are not supported yet", key);
                return -SH_EINVAL;
            }
    }
    return s_query_input (req, coll, body, query, using, s);
}

//  ---------------------------------------------------------------------------
//  Running searches and merging the shards' answers

typedef struct {
    float score;                    //  the record's score
    pointid_t id;                   //  its id
    envelope_t *reply;              //  the reply holding it (vecrefs)
    json_t *record;                 //  the record (borrowed from reply)
} s_scored_t;

//  qsort has no context argument: the ranking is passed by sorting with one
//  of two comparators.
static int
s_cmp_tail (const s_scored_t *a, const s_scored_t *b)
{
    return pointid_cmp (&a->id, &b->id);
}

static int
s_cmp_higher (const void *pa, const void *pb)
{
    const s_scored_t *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return s_cmp_tail (a, b);
}

static int
s_cmp_lower (const void *pa, const void *pb)
{
    const s_scored_t *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score < b->score ? -1 : 1;
    return s_cmp_tail (a, b);
}

//  True when a shard's record is {"id", "version", "score"[, "payload"]} in
//  that order, with no vectors: gw_record_to_json would build the same
//  object again with the score as gw_json_float gives it (the key order
//  of a ScoredPoint is the record's, and jansson keeps a replaced key in
//  its place), so s_merge sets the score and takes the record as it is:
//  a batch's hundreds of records are not rebuilt one by one.
static bool
s_plain_scored (const json_t *record)
{
    static const char *const keys [] = { "id", "version", "score", "payload" };
    size_t n = json_object_size (record);
    if (n < 3 || n > 4)
        return false;
    size_t i = 0;
    for (void *it = json_object_iter ((json_t *) record); it;
         it = json_object_iter_next ((json_t *) record, it), i++) {
        const json_t *value = json_object_iter_value (it);
        if (strcmp (json_object_iter_key (it), keys [i]) != 0
            || (i == 0 && !json_is_integer (value) && !json_is_string (value))
            || (i == 1 && !json_is_integer (value))
            || (i == 2 && !json_is_number (value))
            || (i == 3 && json_is_null (value)))
            return false;
    }
    return true;
}

//  Collects the records of lists[0..m) (each a JSON array, from replies[r]),
//  ranks them and returns records offset..offset+limit as Qdrant JSON.
static json_t *
s_merge (const gw_points_coll_t *coll, const s_search_t *s, envelope_t **replies,
         json_t **lists, size_t m)
{
    size_t total = 0;
    for (size_t r = 0; r < m; r++)
        total += json_array_size (lists [r]);
    s_scored_t *all = calloc (total ? total : 1, sizeof (s_scored_t));
    assert (all);
    size_t k = 0;
    for (size_t r = 0; r < m; r++)
        for (size_t i = 0; i < json_array_size (lists [r]); i++) {
            json_t *record = json_array_get (lists [r], i);
            if (pointid_from_json (json_object_get (record, "id"), &all [k].id))
                continue;           //  a shard's bad record is dropped, not trusted
            json_t *score = json_object_get (record, "score");
            if (s->scroll || !json_is_number (score))
                json_object_set_new (record, "score", json_real (0.0));
            all [k].score = (float) json_number_value (json_object_get (record, "score"));
            all [k].reply = replies [r];
            all [k].record = record;
            k++;
        }
    if (s->scroll)
        qsort (all, k, sizeof (s_scored_t), s_cmp_higher);      //  all 0: id order
    else
        qsort (all, k, sizeof (s_scored_t),
               distance_higher_is_better (s->distance) ? s_cmp_higher : s_cmp_lower);
    json_t *out = json_array ();
    for (size_t i = (size_t) s->offset; i < k && i < (size_t) (s->offset + s->limit); i++) {
        json_t *record = all [i].record;
        if (s_plain_scored (record)) {
            //  Already the ScoredPoint, but for the score's form.
            json_object_set_new (record, "score", gw_json_float (all [i].score));
            json_array_append (out, record);
        }
        else
            json_array_append_new (out, gw_record_to_json (gw_points_coll_json (coll),
                                                           all [i].reply, all [i].record));
    }
    free (all);
    return out;
}

static json_t *
s_search_json (envelope_t *env, int blob, const s_search_t *s)
{
    json_t *vector = json_pack ("{ss}", "name", s->vec.name);
    json_object_set_new (vector, s->vec.sparse ? "sparse" : "dense",
                         gw_points_vec_json (env, blob, &s->vec));
    json_t *json = json_pack ("{sosIsIsOsO}", "vector", vector, "limit", s->limit, "offset",
                              s->offset, "with_payload", s->with_payload, "with_vector",
                              s->with_vector);
    if (s->filter)
        json_object_set (json, "filter", s->filter);
    if (s->has_threshold)
        json_object_set_new (json, "score_threshold", json_real (s->threshold));
    if (s->exact)
        json_object_set_new (json, "exact", json_true ());
    if (s->hnsw_ef)
        json_object_set_new (json, "hnsw_ef", json_integer (s->hnsw_ef));
    return json;
}

//  A query without a vector: offset+limit points in id order from every
//  shard, merged.
static int
s_run_scroll (gw_req_t *req, const gw_points_coll_t *coll, const s_search_t *s, json_t **out)
{
    const uint32_t *shard_ids;
    size_t n = gw_points_coll_shards (coll, &shard_ids);
    envelope_t **requests = calloc (n, sizeof (envelope_t *));
    envelope_t **replies = calloc (n, sizeof (envelope_t *));
    json_t **lists = calloc (n, sizeof (json_t *));
    assert (requests && replies && lists);
    for (size_t i = 0; i < n; i++) {
        requests [i] = gw_points_request (req, MSG_SHARD_SCROLL);
        json_t *json = json_pack ("{sIsOsO}", "limit", s->offset + s->limit, "with_payload",
                                  s->with_payload, "with_vector", s->with_vector);
        if (s->filter)
            json_object_set (json, "filter", s->filter);
        envelope_set_json (requests [i], json);
    }
    int rc = gw_points_call (req, coll, n, shard_ids, requests, replies);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            lists [i] = json_object_get (envelope_json (replies [i]), "points");
        *out = s_merge (coll, s, replies, lists, n);
    }
    for (size_t i = 0; i < n; i++)
        envelope_destroy (&replies [i]);
    free (requests);
    free (replies);
    free (lists);
    return rc;
}

//  Runs searches[0..n): all vector searches in one SHARD_SEARCH per shard,
//  then the id-order ones. out[i] gets the merged list of search i.
static int
s_run (gw_req_t *req, const gw_points_coll_t *coll, s_search_t *searches, size_t n,
       json_t **out)
{
    for (size_t i = 0; i < n; i++)
        out [i] = NULL;
    const uint32_t *shard_ids;
    size_t ns = gw_points_coll_shards (coll, &shard_ids);
    size_t n_vec = 0;
    for (size_t i = 0; i < n; i++)
        n_vec += !searches [i].scroll;
    int rc = 0;
    if (n_vec > 0) {
        envelope_t **requests = calloc (ns, sizeof (envelope_t *));
        envelope_t **replies = calloc (ns, sizeof (envelope_t *));
        json_t **lists = calloc (ns, sizeof (json_t *));
        assert (requests && replies && lists);
        for (size_t r = 0; r < ns; r++) {
            requests [r] = gw_points_request (req, MSG_SHARD_SEARCH);
            int blob = envelope_new_blob (requests [r]);
            json_t *list = json_array ();
            for (size_t i = 0; i < n; i++)
                if (!searches [i].scroll)
                    json_array_append_new (list, s_search_json (requests [r], blob,
                                                                &searches [i]));
            envelope_set_json (requests [r], json_pack ("{so}", "searches", list));
        }
        rc = gw_points_call (req, coll, ns, shard_ids, requests, replies);
        for (size_t r = 0; r < ns && rc == 0; r++) {
            json_t *results = json_object_get (envelope_json (replies [r]), "results");
            if (!json_is_array (results) || json_array_size (results) != n_vec) {
                log_warn ("gateway: shard %" PRIu32 " answered a search of %zu with %zu "
                          "result lists", shard_ids [r], n_vec, json_array_size (results));
                gw_fail_http (req, 500, "Service internal error: malformed search reply from "
                              "shard %" PRIu32, shard_ids [r]);
                rc = -SH_EPROTO;
            }
        }
        for (size_t i = 0, k = 0; i < n && rc == 0; i++) {
            if (searches [i].scroll)
                continue;
            for (size_t r = 0; r < ns; r++)
                lists [r] = json_array_get (json_object_get (envelope_json (replies [r]),
                                                             "results"), k);
            out [i] = s_merge (coll, &searches [i], replies, lists, ns);
            k++;
        }
        for (size_t r = 0; r < ns; r++)
            envelope_destroy (&replies [r]);
        free (requests);
        free (replies);
        free (lists);
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        if (searches [i].scroll)
            rc = s_run_scroll (req, coll, &searches [i], &out [i]);
    if (rc)
        for (size_t i = 0; i < n; i++) {
            json_decref (out [i]);
            out [i] = NULL;
        }
    return rc;
}

//  ---------------------------------------------------------------------------
//  Handlers

typedef int (s_parse_fn) (gw_req_t *req, const gw_points_coll_t *coll, const json_t *body,
                s_search_t *s);

//  Answers one request of bodies (a single body, or "searches" of a batch);
//  wrap (may be NULL) turns each result list into the endpoint's shape.
static void
s_handle (gw_req_t *req, s_parse_fn *parse, bool batch, json_t *(*wrap) (json_t *list))
{
    gw_points_coll_t *coll = gw_points_coll (req);
    if (!coll)
        return;

    json_t *bodies = NULL;
    if (!req->body)
        gw_fail_http (req, 400, "Format error in JSON body: EOF while parsing a value");
    else
    if (batch) {
        bodies = json_object_get (req->body, "searches");
        if (!json_is_array (bodies))
            gw_fail_http (req, 400, "Format error in JSON body: missing field `searches`");
        else
            json_incref (bodies);
    }
    else
        bodies = json_pack ("[O]", req->body);
    if (!bodies) {
        gw_points_coll_destroy (&coll);
        return;
    }
    size_t n = json_array_size (bodies);
    s_search_t *searches = calloc (n ? n : 1, sizeof (s_search_t));
    json_t **lists = calloc (n ? n : 1, sizeof (json_t *));
    assert (searches && lists);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = parse (req, coll, json_array_get (bodies, i), &searches [i]);
    if (rc == 0)
        rc = s_run (req, coll, searches, n, lists);
    if (rc == 0) {
        json_t *result = json_array ();
        for (size_t i = 0; i < n; i++)
            json_array_append_new (result, wrap ? wrap (lists [i]) : lists [i]);
        if (batch)
            gw_ok (req, result);
        else {
            gw_ok (req, json_incref (json_array_get (result, 0)));
            json_decref (result);
        }
    }
    for (size_t i = 0; i < n; i++)
        s_search_reset (&searches [i]);
    free (searches);
    free (lists);
    json_decref (bodies);
    gw_points_coll_destroy (&coll);
}

static json_t *
s_query_response (json_t *list)
{
    return json_pack ("{so}", "points", list);
}

static void s_search (gw_req_t *req) { s_handle (req, s_parse_search, false, NULL); }
static void s_search_batch (gw_req_t *req) { s_handle (req, s_parse_search, true, NULL); }
static void s_recommend (gw_req_t *req) { s_handle (req, s_parse_recommend, false, NULL); }
static void s_recommend_batch (gw_req_t *req) { s_handle (req, s_parse_recommend, true, NULL); }
static void s_query (gw_req_t *req) { s_handle (req, s_parse_query, false, s_query_response); }
static void s_query_batch (gw_req_t *req)
{
    s_handle (req, s_parse_query, true, s_query_response);
}

void
gw_search_routes (void (*add) (const gw_route_t *route, void *arg), void *arg)
{
    static const gw_route_t routes [] = {
        { "POST", "/collections/{collection_name}/points/search", s_search, false },
        { "POST", "/collections/{collection_name}/points/search/batch", s_search_batch, false },
        { "POST", "/collections/{collection_name}/points/recommend", s_recommend, false },
        { "POST", "/collections/{collection_name}/points/recommend/batch", s_recommend_batch,
          false },
        { "POST", "/collections/{collection_name}/points/query", s_query, false },
        { "POST", "/collections/{collection_name}/points/query/batch", s_query_batch, false },
    };
    for (size_t i = 0; i < sizeof (routes) / sizeof (routes [0]); i++)
        add (&routes [i], arg);
}

const jsonx_pack_t *
gw_search_vectors (gw_handler_fn *handler)
{
    //  The keys whose number arrays s_vec_parse reads as floats: a search's
    //  "vector" (also inside a NamedVector), a query's "query" or
    //  {"nearest": ...}. Recommend examples stay JSON (arrays of arrays).
    static const jsonx_pack_t search_keys [] = { { "vector", 0, false }, { NULL, 0, false } };
    static const jsonx_pack_t query_keys [] = {
        { "query", 0, false }, { "nearest", 0, false }, { NULL, 0, false }
    };
    if (handler == s_search || handler == s_search_batch)
        return search_keys;
    if (handler == s_query || handler == s_query_batch)
        return query_keys;
    return NULL;
}
