/*  gw_points: the REST handlers that write and read points, and the helpers
    gw_search shares with them.

    Writes (upsert, delete, payload and vector edits, batch updates) are
    checked whole before anything is sent: ids, vector names and dimensions,
    sparse vectors, payloads, filters. Then each point id is routed to its
    shard by the consistent hash ring (common/hashring.h), one envelope per
    shard carries that shard's part, with every dense vector of the envelope
    in one float blob: an upsert as "records" (ids and payloads as lists,
    the rows in the blob in the order the records and the collection's
    vectors give, proto/msg.h), other writes as an object per point with
    vector references (proto/vecref.h). The body's vectors come parsed to
    float32 already (gw_points_vectors). A filter selector goes to every
    shard.
    A batch of operations is applied in order, one fan-out per operation.

    Reads fan out to every shard (retrieve by id only to the owning shards)
    and merge: retrieve keeps the request's order, scroll merges by id order
    and derives the next page from every shard's leftovers, count sums.

    Messages follow Qdrant's: "Wrong input: ..." (400) for input that does not
    fit the collection, "Format error in JSON body: ..." (400) for a body of the
    wrong shape, "Validation error in JSON body: [...]" (422) for values out of
    range, "Not found: ..." (404).
*/
#include "actors/gateway/gw.h"
#include "common/filter.h"
#include "common/hashring.h"
#include "common/log.h"
#include "proto/vecref.h"
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

//  Largest shard count whose ring is cached for the life of the process; a
//  collection with more shards builds its ring per request.
#define S_RING_CACHE 256

//  Rings are immutable once built, so one cache serves every connection
//  thread; the lock only guards filling a slot.
static hashring_t *s_rings [S_RING_CACHE + 1];
static pthread_mutex_t s_rings_lock = PTHREAD_MUTEX_INITIALIZER;

struct _gw_points_coll_t {
    json_t *json;                   //  the collection's metadata object (ref)
    uint64_t uid;                   //  collection uid (names its shards)
    size_t n_shards;                //  shard count
    uint32_t *shard_ids;            //  shard ids, ascending; ring index = position
    const hashring_t *ring;         //  the ring over n_shards (cached or own_ring)
    hashring_t *own_ring;           //  ring built for this request, when not cached
    size_t n_vspecs;                //  vector specs
    gw_points_vspec_t *vspecs;      //  dense then sparse; names borrowed from json
};

//  ---------------------------------------------------------------------------
//  Collections

static const hashring_t *
s_ring_cached (size_t n)
{
    pthread_mutex_lock (&s_rings_lock);
    if (!s_rings [n])
        s_rings [n] = hashring_new ((uint32_t) n);
    const hashring_t *ring = s_rings [n];
    pthread_mutex_unlock (&s_rings_lock);
    return ring;
}

static int
s_cmp_u32 (const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
    return x < y ? -1 : x > y;
}

//  Fills self from its metadata object; -SH_EINTERNAL with a message in err
//  when the metadata does not have the shape proto/msg.h promises.
static int
s_coll_load (gw_points_coll_t *self, char *err, size_t errlen)
{
    json_t *uid = json_object_get (self->json, "uid");
    if (!json_is_integer (uid) || json_integer_value (uid) < 0) {
        snprintf (err, errlen, "collection metadata has no uid");
        return -SH_EINTERNAL;
    }
    self->uid = (uint64_t) json_integer_value (uid);

    json_t *shards = json_object_get (self->json, "shards");
    if (!json_is_array (shards) || json_array_size (shards) == 0
        || json_array_size (shards) > UINT32_MAX) {
        snprintf (err, errlen, "collection metadata has no shards");
        return -SH_EINTERNAL;
    }
    self->n_shards = json_array_size (shards);
    self->shard_ids = calloc (self->n_shards, sizeof (uint32_t));
    assert (self->shard_ids);
    for (size_t i = 0; i < self->n_shards; i++) {
        json_t *sid = json_object_get (json_array_get (shards, i), "shard_id");
        if (!json_is_integer (sid) || json_integer_value (sid) < 0
            || json_integer_value (sid) > UINT32_MAX) {
            snprintf (err, errlen, "collection metadata has a bad shard id");
            return -SH_EINTERNAL;
        }
        self->shard_ids [i] = (uint32_t) json_integer_value (sid);
    }
    qsort (self->shard_ids, self->n_shards, sizeof (uint32_t), s_cmp_u32);
    if (self->n_shards <= S_RING_CACHE)
        self->ring = s_ring_cached (self->n_shards);
    else
        self->ring = self->own_ring = hashring_new ((uint32_t) self->n_shards);
    assert (self->ring);

    json_t *params = json_object_get (json_object_get (self->json, "config"), "params");
    json_t *vectors = json_object_get (params, "vectors");
    json_t *sparse = json_object_get (params, "sparse_vectors");
    size_t cap = (json_is_object (vectors) ? json_object_size (vectors) : 0)
               + (json_is_object (sparse) ? json_object_size (sparse) : 0) + 1;
    self->vspecs = calloc (cap, sizeof (gw_points_vspec_t));
    assert (self->vspecs);

    //  One unnamed VectorParams {"size", "distance"}, or a map name -> params.
    bool single = json_is_object (vectors)
               && json_is_integer (json_object_get (vectors, "size"))
               && json_is_string (json_object_get (vectors, "distance"));
    const char *key;
    json_t *value;
    if (single) {
        gw_points_vspec_t *spec = &self->vspecs [self->n_vspecs++];
        spec->name = "";
        json_int_t size = json_integer_value (json_object_get (vectors, "size"));
        const char *dname = json_string_value (json_object_get (vectors, "distance"));
        int dist = distance_parse (dname);
        if (size <= 0 || size > 65536 || dist < 0) {
            snprintf (err, errlen, "collection metadata has bad vector params");
            return -SH_EINTERNAL;
        }
        spec->dim = (uint32_t) size;
        spec->distance = (distance_t) dist;
    }
    else
    if (json_is_object (vectors)) {
        json_object_foreach (vectors, key, value) {
            json_int_t size = json_integer_value (json_object_get (value, "size"));
            const char *dname = json_string_value (json_object_get (value, "distance"));
            int dist = dname ? distance_parse (dname) : -1;
            if (size <= 0 || size > 65536 || dist < 0) {
                snprintf (err, errlen, "collection metadata has bad params for vector %s",
                          key);
                return -SH_EINTERNAL;
            }
            gw_points_vspec_t *spec = &self->vspecs [self->n_vspecs++];
            spec->name = key;
            spec->dim = (uint32_t) size;
            spec->distance = (distance_t) dist;
        }
    }
    if (json_is_object (sparse)) {
        json_object_foreach (sparse, key, value) {
            gw_points_vspec_t *spec = &self->vspecs [self->n_vspecs++];
            spec->name = key;
            spec->sparse = true;
            spec->distance = DIST_DOT;
        }
    }
    return 0;
}

static gw_points_coll_t *
s_coll_new (gw_req_t *req, json_t *json)
{
    gw_points_coll_t *self = calloc (1, sizeof (*self));
    assert (self);
    self->json = json;
    char err [256];
    if (s_coll_load (self, err, sizeof (err))) {
        log_error ("gateway: %s", err);
        gw_fail_http (req, 500, "Service internal error: %s", err);
        gw_points_coll_destroy (&self);
    }
    return self;
}

gw_points_coll_t *
gw_points_coll (gw_req_t *req)
{
    json_t *json = gw_collection_or_404 (req);
    return json ? s_coll_new (req, json) : NULL;
}

gw_points_coll_t *
gw_points_coll_named (gw_req_t *req, const char *name)
{
    json_t *json = gw_meta_collection (gw_meta (req->gw), name, NULL);
    if (!json) {
        gw_fail_http (req, 404, "Not found: Collection `%s` doesn't exist!", name);
        return NULL;
    }
    return s_coll_new (req, json);
}

void
gw_points_coll_destroy (gw_points_coll_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    gw_points_coll_t *self = *self_p;
    json_decref (self->json);
    free (self->shard_ids);
    hashring_destroy (&self->own_ring);
    free (self->vspecs);
    free (self);
    *self_p = NULL;
}

const json_t *
gw_points_coll_json (const gw_points_coll_t *self)
{
    return self->json;
}

size_t
gw_points_coll_shards (const gw_points_coll_t *self, const uint32_t **shard_ids)
{
    if (shard_ids)
        *shard_ids = self->shard_ids;
    return self->n_shards;
}

//  Position of the shard that owns id in shard_ids.
static size_t
s_pos_of (const gw_points_coll_t *self, const pointid_t *id)
{
    uint32_t pos = hashring_shard (self->ring, id);
    assert (pos < self->n_shards);
    return pos;
}

uint32_t
gw_points_shard_of (const gw_points_coll_t *self, const pointid_t *id)
{
    return self->shard_ids [s_pos_of (self, id)];
}

const gw_points_vspec_t *
gw_points_vspec (const gw_points_coll_t *self, const char *name)
{
    for (size_t i = 0; i < self->n_vspecs; i++)
        if (streq (self->vspecs [i].name, name))
            return &self->vspecs [i];
    return NULL;
}

//  ---------------------------------------------------------------------------
//  Vectors

void
gw_points_vec_reset (gw_points_vec_t *self)
{
    if (!self)
        return;
    free (self->name);
    free (self->dense);
    free (self->indices);
    free (self->values);
    memset (self, 0, sizeof (*self));
}

static int
s_cmp_idx (const void *a, const void *b)
{
    return s_cmp_u32 (a, b);
}

//  A sparse {"indices","values"} into out (sparse fields only). 400/422 as
//  Qdrant: the shape is a format error, lengths and duplicates are
//  validation errors. *http gets the status, err the message.
static int
s_sparse_parse (const json_t *value, const char *where, gw_points_vec_t *out, int *http,
                char *err, size_t errlen)
{
    json_t *indices = json_object_get (value, "indices");
    json_t *values = json_object_get (value, "values");
    *http = 400;
    if (!json_is_array (indices) || !json_is_array (values)) {
        snprintf (err, errlen, "Format error in JSON body: %s: a sparse vector needs "
                  "arrays \"indices\" and \"values\"", where);
        return -SH_EINVAL;
    }
    size_t n = json_array_size (indices);
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get (indices, i);
        if (!json_is_integer (x) || json_integer_value (x) < 0
            || json_integer_value (x) > UINT32_MAX) {
            snprintf (err, errlen, "Format error in JSON body: %s.indices[%zu]: expected "
                      "an unsigned 32-bit integer", where, i);
            return -SH_EINVAL;
        }
    }
    for (size_t i = 0; i < json_array_size (values); i++)
        if (!json_is_number (json_array_get (values, i))) {
            snprintf (err, errlen, "Format error in JSON body: %s.values[%zu]: expected "
                      "a number", where, i);
            return -SH_EINVAL;
        }
    *http = 422;
    if (json_array_size (values) != n) {
        snprintf (err, errlen, "Validation error in JSON body: [%s.values: must be the "
                  "same length as indices]", where);
        return -SH_EINVAL;
    }
    if (n > UINT32_MAX) {
        snprintf (err, errlen, "Validation error in JSON body: [%s: too many entries]", where);
        return -SH_EINVAL;
    }
    out->sparse = true;
    out->nnz = (uint32_t) n;
    out->indices = malloc ((n ? n : 1) * sizeof (uint32_t));
    out->values = malloc ((n ? n : 1) * sizeof (float));
    assert (out->indices && out->values);
    for (size_t i = 0; i < n; i++) {
        out->indices [i] = (uint32_t) json_integer_value (json_array_get (indices, i));
        out->values [i] = (float) json_number_value (json_array_get (values, i));
    }
    uint32_t *sorted = malloc ((n ? n : 1) * sizeof (uint32_t));
    assert (sorted);
    memcpy (sorted, out->indices, n * sizeof (uint32_t));
    qsort (sorted, n, sizeof (uint32_t), s_cmp_idx);
    bool unique = true;
    for (size_t i = 1; i < n && unique; i++)
        unique = sorted [i] != sorted [i - 1];
    free (sorted);
    if (!unique) {
        snprintf (err, errlen, "Validation error in JSON body: [%s.indices: must be unique]",
                  where);
        return -SH_EINVAL;
    }
    return 0;
}

static bool
s_is_inference_object (const json_t *value)
{
    return json_is_object (value) && json_object_get (value, "model")
        && (json_object_get (value, "text") || json_object_get (value, "image")
            || json_object_get (value, "object"));
}

int
gw_points_vec_parse (gw_req_t *req, const gw_points_coll_t *coll, const char *name,
                     const json_t *value, const char *where, gw_points_vec_t *out)
{
    memset (out, 0, sizeof (*out));
    char err [512];
    int http = 400;
    int rc = -SH_EINVAL;
    const gw_points_vspec_t *spec = gw_points_vspec (coll, name);
    size_t n_packed = 0;
    const float *packed = gw_body_floats (req, value, &n_packed);

    //  A list of numbers, or one the body parser took to floats
    //  (gw_points_vectors).
    if (packed || json_is_array (value)) {
        size_t n = packed ? n_packed : json_array_size (value);
        if (!spec)
            snprintf (err, sizeof (err), "Wrong input: Not existing vector name error: %s",
                      name);
        else
        if (!packed && n > 0 && json_is_array (json_array_get (value, 0)))
            snprintf (err, sizeof (err), "Wrong input: Wrong usage of multi vectors");
        else
        if (spec->sparse)
            snprintf (err, sizeof (err), "Wrong input: Wrong usage of sparse vectors");
        else
        if (n == 0) {
            http = 422;
            snprintf (err, sizeof (err), "Validation error in JSON body: [%s: dense vector "
                      "must not be empty]", where);
        }
        else
        if (n != spec->dim)
            snprintf (err, sizeof (err), "Wrong input: Vector dimension error: expected dim: "
                      "%" PRIu32 ", got %zu", spec->dim, n);
        else {
            out->dense = malloc (n * sizeof (float));
            assert (out->dense);
            out->dim = (uint32_t) n;
            rc = 0;
            if (packed)
                memcpy (out->dense, packed, n * sizeof (float));
            for (size_t i = 0; !packed && i < n && rc == 0; i++) {
                json_t *x = json_array_get (value, i);
                if (json_is_number (x))
                    out->dense [i] = (float) json_number_value (x);
                else {
                    snprintf (err, sizeof (err), "Format error in JSON body: %s[%zu]: "
                              "expected a number", where, i);
                    rc = -SH_EINVAL;
                }
            }
        }
    }
    else
    if (json_is_object (value) && json_object_get (value, "indices")) {
        rc = s_sparse_parse (value, where, out, &http, err, sizeof (err));
        if (rc == 0 && !spec) {
            http = 400;
            snprintf (err, sizeof (err), "Wrong input: Not existing vector name error: %s",
                      name);
            rc = -SH_EINVAL;
        }
        else
        if (rc == 0 && !spec->sparse) {
            http = 400;
            snprintf (err, sizeof (err), "Wrong input: Wrong usage of sparse vectors");
            rc = -SH_EINVAL;
        }
    }
    else
    if (s_is_inference_object (value))
        snprintf (err, sizeof (err), "Bad request: %s: inference objects (Document, Image, "
                  "InferenceObject) are not supported, give the vector itself", where);
    else
        snprintf (err, sizeof (err), "Format error in JSON body: %s: data did not match any "
                  "variant of untagged enum Vector", where);

    if (rc) {
        gw_points_vec_reset (out);
        gw_fail_http (req, http, "%s", err);
        return -SH_EINVAL;
    }
    out->name = strdup (name);
    assert (out->name);
    return 0;
}

json_t *
gw_points_vec_json (envelope_t *env, int blob, const gw_points_vec_t *vec)
{
    if (!vec->sparse)
        return vecref_put (env, blob, vec->dense, vec->dim);
    json_t *indices = json_array ();
    json_t *values = json_array ();
    for (uint32_t i = 0; i < vec->nnz; i++) {
        json_array_append_new (indices, json_integer (vec->indices [i]));
        json_array_append_new (values, json_real (vec->values [i]));
    }
    return json_pack ("{soso}", "indices", indices, "values", values);
}

//  ---------------------------------------------------------------------------
//  Checks shared with gw_search

int
gw_points_check_filter (gw_req_t *req, const json_t *filter)
{
    if (!filter || json_is_null (filter))
        return 0;
    char err [512] = "";
    filter_t *parsed = NULL;
    int rc = filter_parse (filter, &parsed, err, sizeof (err));
    filter_destroy (&parsed);
    if (rc) {
        gw_fail_http (req, 400, "%s", *err ? err : "Format error in JSON body: bad filter");
        return -SH_EINVAL;
    }
    return 0;
}

static bool
s_is_string_array (const json_t *json)
{
    if (!json_is_array (json))
        return false;
    for (size_t i = 0; i < json_array_size (json); i++)
        if (!json_is_string (json_array_get (json, i)))
            return false;
    return true;
}

int
gw_points_check_with (gw_req_t *req, const gw_points_coll_t *coll,
                      const json_t *with_payload, const json_t *with_vector)
{
    if (with_payload && !json_is_null (with_payload) && !json_is_boolean (with_payload)
        && !s_is_string_array (with_payload)) {
        bool ok = json_is_object (with_payload) && json_object_size (with_payload) == 1
               && (s_is_string_array (json_object_get (with_payload, "include"))
                   || s_is_string_array (json_object_get (with_payload, "exclude")));
        if (!ok) {
            gw_fail_http (req, 400, "Format error in JSON body: with_payload: data did not "
                          "match any variant of untagged enum WithPayloadInterface");
            return -SH_EINVAL;
        }
    }
    if (with_vector && !json_is_null (with_vector) && !json_is_boolean (with_vector)) {
        if (!s_is_string_array (with_vector)) {
            gw_fail_http (req, 400, "Format error in JSON body: with_vector: data did not "
                          "match any variant of untagged enum WithVector");
            return -SH_EINVAL;
        }
        for (size_t i = 0; i < json_array_size (with_vector); i++) {
            const char *name = json_string_value (json_array_get (with_vector, i));
            if (!gw_points_vspec (coll, name)) {
                gw_fail_http (req, 400, "Wrong input: Not existing vector name error: %s", name);
                return -SH_EINVAL;
            }
        }
    }
    return 0;
}

//  ---------------------------------------------------------------------------
//  Calls

envelope_t *
gw_points_request (gw_req_t *req, int type)
{
    //  The id is left 0: gw_client numbers every call on the connection
    //  itself (a random one cost a getrandom system call per request).
    envelope_t *env = envelope_new ((uint16_t) type, 0, req->deadline_ms);
    assert (env);
    return env;
}

int
gw_points_call (gw_req_t *req, const gw_points_coll_t *coll, size_t n,
                const uint32_t *shard_ids, envelope_t **requests, envelope_t **replies)
{
    for (size_t i = 0; i < n; i++)
        replies [i] = NULL;
    if (n == 0)
        return 0;
    int rc = gw_call_shards (req->conn, coll->uid, n, shard_ids, requests, replies);
    for (size_t i = 0; i < n; i++)
        envelope_destroy (&requests [i]);

    int failed = -1;                //  first shard without a good reply
    for (size_t i = 0; i < n && failed < 0; i++)
        if (!replies [i] || envelope_status (replies [i]) != 0)
            failed = (int) i;
    if (failed >= 0 || rc) {
        if (failed >= 0 && replies [failed]) {
            rc = envelope_status (replies [failed]);
            gw_fail_reply (req, replies [failed]);
        }
        else
        if (rc == -SH_ETIMEDOUT || rc == 0) {
            rc = -SH_ETIMEDOUT;
            gw_fail (req, rc, "Timeout error: shard %" PRIu32 " did not answer in time",
                     failed >= 0 ? shard_ids [failed] : 0);
        }
        else
            gw_fail (req, rc, "Service internal error: %s", sh_strerror (rc));
        for (size_t i = 0; i < n; i++)
            envelope_destroy (&replies [i]);
        return rc;
    }
    return 0;
}

//  Resolves a record's vector `name` from reply into out (name set to name).
static int
s_vec_from_record (envelope_t *reply, const json_t *record, const char *name,
                   gw_points_vec_t *out)
{
    json_t *value = json_object_get (json_object_get (record, "vectors"), name);
    if (!value)
        return -SH_ENOTFOUND;
    if (vecref_is (value)) {
        const float *v;
        uint32_t dim;
        if (vecref_get (reply, value, &v, &dim) || dim == 0)
            return -SH_EPROTO;
        out->dense = malloc (dim * sizeof (float));
        assert (out->dense);
        memcpy (out->dense, v, dim * sizeof (float));
        out->dim = dim;
    }
    else {
        char err [256];
        int http;
        if (s_sparse_parse (value, "vector", out, &http, err, sizeof (err)))
            return -SH_EPROTO;
    }
    out->name = strdup (name);
    assert (out->name);
    return 0;
}

int
gw_points_fetch_vectors (gw_req_t *req, const gw_points_coll_t *coll, const char *name,
                         const pointid_t *ids, size_t n, gw_points_vec_t *out)
{
    for (size_t i = 0; i < n; i++)
        memset (&out [i], 0, sizeof (out [i]));
    if (!gw_points_vspec (coll, name)) {
        gw_fail_http (req, 400, "Wrong input: Not existing vector name error: %s", name);
        return -SH_EINVAL;
    }
    if (n == 0)
        return 0;
    //  One SHARD_RETRIEVE per owning shard.
    size_t ns = coll->n_shards;
    envelope_t **per_pos = calloc (ns, sizeof (envelope_t *));
    envelope_t **requests = calloc (ns, sizeof (envelope_t *));
    envelope_t **replies = calloc (ns, sizeof (envelope_t *));
    uint32_t *shard_ids = calloc (ns, sizeof (uint32_t));
    assert (per_pos && requests && replies && shard_ids);
    for (size_t i = 0; i < n; i++) {
        size_t pos = s_pos_of (coll, &ids [i]);
        if (!per_pos [pos]) {
            per_pos [pos] = gw_points_request (req, MSG_SHARD_RETRIEVE);
            envelope_set_json (per_pos [pos],
                               json_pack ("{s[]sbs[s]}", "ids", "with_payload", 0,
                                          "with_vector", name));
        }
        json_array_append_new (json_object_get (envelope_json (per_pos [pos]), "ids"),
                               pointid_to_json (&ids [i]));
    }
    size_t m = 0;
    for (size_t pos = 0; pos < ns; pos++)
        if (per_pos [pos]) {
            shard_ids [m] = coll->shard_ids [pos];
            requests [m++] = per_pos [pos];
        }
    int rc = gw_points_call (req, coll, m, shard_ids, requests, replies);
    for (size_t r = 0; r < m && rc == 0; r++) {
        json_t *points = json_object_get (envelope_json (replies [r]), "points");
        for (size_t k = 0; k < json_array_size (points) && rc == 0; k++) {
            json_t *record = json_array_get (points, k);
            pointid_t id;
            if (pointid_from_json (json_object_get (record, "id"), &id))
                continue;
            for (size_t i = 0; i < n && rc == 0; i++) {
                if (!pointid_eq (&id, &ids [i]) || out [i].name)
                    continue;
                int vrc = s_vec_from_record (replies [r], record, name, &out [i]);
                if (vrc == -SH_EPROTO) {
                    gw_fail_http (req, 500, "Service internal error: malformed vector in "
                                  "a shard reply");
                    rc = vrc;
                }
            }
        }
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        if (!out [i].name) {
            char text [POINTID_TEXT_SIZE];
            pointid_format (&ids [i], text);
            //  Tell a missing point from one without that vector.
            bool present = false;
            for (size_t r = 0; r < m && !present; r++) {
                json_t *points = json_object_get (envelope_json (replies [r]), "points");
                for (size_t k = 0; k < json_array_size (points) && !present; k++) {
                    pointid_t id;
                    present = pointid_from_json (json_object_get (json_array_get (points, k),
                                                                  "id"), &id) == 0
                           && pointid_eq (&id, &ids [i]);
                }
            }
            if (present)
                gw_fail_http (req, 400, "Wrong input: Point %s has no vector %s%s%s", text,
                              *name ? "`" : "(the default vector)", name, *name ? "`" : "");
            else
                gw_fail_http (req, 404, "Not found: No point with id %s found", text);
            rc = present ? -SH_EINVAL : -SH_ENOTFOUND;
        }
    for (size_t r = 0; r < m; r++)
        envelope_destroy (&replies [r]);
    if (rc)
        for (size_t i = 0; i < n; i++)
            gw_points_vec_reset (&out [i]);
    free (per_pos);
    free (requests);
    free (replies);
    free (shard_ids);
    return rc;
}

//  ---------------------------------------------------------------------------
//  Write plans: one envelope per shard that has something to do

typedef struct {
    const gw_points_coll_t *coll;   //  the collection
    int type;                       //  MSG_SHARD_* of every envelope
    envelope_t **envs;              //  per shard position, NULL if nothing to send
    int *blobs;                     //  per shard position: vector blob index, or -1
} s_plan_t;

static void
s_plan_init (s_plan_t *plan, const gw_points_coll_t *coll)
{
    plan->coll = coll;
    plan->type = MSG_NONE;
    plan->envs = calloc (coll->n_shards, sizeof (envelope_t *));
    plan->blobs = malloc (coll->n_shards * sizeof (int));
    assert (plan->envs && plan->blobs);
    for (size_t i = 0; i < coll->n_shards; i++)
        plan->blobs [i] = -1;
}

static void
s_plan_reset (s_plan_t *plan)
{
    if (plan->envs)
        for (size_t i = 0; i < plan->coll->n_shards; i++)
            envelope_destroy (&plan->envs [i]);
    free (plan->envs);
    free (plan->blobs);
    plan->envs = NULL;
    plan->blobs = NULL;
}

//  The JSON of shard position pos's envelope, made from base (copied) on
//  first use.
static json_t *
s_plan_json (gw_req_t *req, s_plan_t *plan, size_t pos, const json_t *base)
{
    if (!plan->envs [pos]) {
        plan->envs [pos] = gw_points_request (req, plan->type);
        envelope_set_json (plan->envs [pos],
                           base ? json_copy ((json_t *) base) : json_object ());
    }
    return envelope_json (plan->envs [pos]);
}

static int
s_plan_blob (s_plan_t *plan, size_t pos)
{
    if (plan->blobs [pos] < 0)
        plan->blobs [pos] = envelope_new_blob (plan->envs [pos]);
    assert (plan->blobs [pos] >= 0);
    return plan->blobs [pos];
}

//  Sends the plan; *op_id gets the largest operation id of the shards, or -1
//  when there was nothing to send. Answers the request on failure.
static int
s_plan_run (gw_req_t *req, s_plan_t *plan, int64_t *op_id)
{
    size_t ns = plan->coll->n_shards;
    uint32_t *shard_ids = calloc (ns, sizeof (uint32_t));
    envelope_t **requests = calloc (ns, sizeof (envelope_t *));
    envelope_t **replies = calloc (ns, sizeof (envelope_t *));
    assert (shard_ids && requests && replies);
    size_t m = 0;
    for (size_t pos = 0; pos < ns; pos++)
        if (plan->envs [pos]) {
            shard_ids [m] = plan->coll->shard_ids [pos];
            requests [m++] = plan->envs [pos];
            plan->envs [pos] = NULL;
        }
    *op_id = -1;
    int rc = gw_points_call (req, plan->coll, m, shard_ids, requests, replies);
    for (size_t i = 0; i < m && rc == 0; i++) {
        json_t *id = json_object_get (envelope_json (replies [i]), "operation_id");
        if (json_is_integer (id) && json_integer_value (id) > *op_id)
            *op_id = json_integer_value (id);
    }
    for (size_t i = 0; i < m; i++)
        envelope_destroy (&replies [i]);
    free (shard_ids);
    free (requests);
    free (replies);
    return rc;
}

static json_t *
s_update_result (int64_t op_id, bool wait)
{
    return json_pack ("{soss}", "operation_id",
                      op_id >= 0 ? json_integer (op_id) : json_null (),
                      "status", wait ? "completed" : "acknowledged");
}

//  ---------------------------------------------------------------------------
//  Parsing helpers for write bodies

//  Answers 400 for what this gateway does not do yet (custom sharding and
//  conditional upserts), rather than silently ignoring it.
static int
s_reject_unsupported (gw_req_t *req, const json_t *body)
{
    static const char *fields [] = { "shard_key", "update_filter", "update_mode" };
    for (size_t i = 0; i < sizeof (fields) / sizeof (fields [0]); i++) {
        json_t *value = json_object_get (body, fields [i]);
        if (value && !json_is_null (value)) {
            gw_fail_http (req, 400, "Bad request: `%s` is not supported yet", fields [i]);
            return -SH_EINVAL;
        }
    }
    return 0;
}

static int
s_need_object (gw_req_t *req, const json_t *body, const char *what)
{
    if (json_is_object (body))
        return 0;
    gw_fail_http (req, 400, "Format error in JSON body: expected %s object", what);
    return -SH_EINVAL;
}

static int
s_parse_id (gw_req_t *req, const json_t *json, const char *where, size_t index,
            pointid_t *out)
{
    if (pointid_from_json (json, out) == 0)
        return 0;
    gw_fail_http (req, 400, "Format error in JSON body: %s[%zu]: value is not a valid point "
                  "id (an unsigned integer or a UUID)", where, index);
    return -SH_EINVAL;
}

//  A VectorStruct (an array for the unnamed vector, or a map name -> vector)
//  parsed and checked: *vecs (yours: reset each, free the array) and *n.
//  On failure answers the request and returns -SH_EINVAL.
static int
s_vectors_parse (gw_req_t *req, const gw_points_coll_t *coll, const json_t *vstruct,
                 const char *where, gw_points_vec_t **vecs, size_t *n)
{
    *vecs = NULL;
    *n = 0;
    char path [256];
    size_t n_packed = 0;
    if (json_is_array (vstruct) || gw_body_floats (req, vstruct, &n_packed)) {
        *vecs = (gw_points_vec_t *) calloc (1, sizeof (gw_points_vec_t));
        assert (*vecs);
        if (gw_points_vec_parse (req, coll, "", vstruct, where, &(*vecs) [0])) {
            free (*vecs);
            *vecs = NULL;
            return -SH_EINVAL;
        }
        *n = 1;
        return 0;
    }
    if (s_is_inference_object (vstruct)) {
        gw_fail_http (req, 400, "Bad request: %s: inference objects (Document, Image, "
                      "InferenceObject) are not supported, give the vector itself", where);
        return -SH_EINVAL;
    }
    if (!json_is_object (vstruct)) {
        gw_fail_http (req, 400, "Format error in JSON body: %s: data did not match any "
                      "variant of untagged enum VectorStruct", where);
        return -SH_EINVAL;
    }
    *vecs = (gw_points_vec_t *) calloc (json_object_size (vstruct) + 1,
                                        sizeof (gw_points_vec_t));
    assert (*vecs);
    const char *name;
    json_t *value;
    json_object_foreach ((json_t *) vstruct, name, value) {
        snprintf (path, sizeof (path), "%s.%s", where, name);
        if (gw_points_vec_parse (req, coll, name, value, path, &(*vecs) [*n])) {
            for (size_t i = 0; i < *n; i++)
                gw_points_vec_reset (&(*vecs) [i]);
            free (*vecs);
            *vecs = NULL;
            *n = 0;
            return -SH_EINVAL;
        }
        (*n)++;
    }
    return 0;
}

//  A VectorStruct into a shard "vectors" map whose dense vectors go into
//  blob of env.
static int
s_vectors_json (gw_req_t *req, const gw_points_coll_t *coll, const json_t *vstruct,
                const char *where, envelope_t *env, int (*blob) (void *), void *blob_arg,
                json_t **out)
{
    *out = NULL;
    gw_points_vec_t *vecs;
    size_t n;
    if (s_vectors_parse (req, coll, vstruct, where, &vecs, &n))
        return -SH_EINVAL;
    json_t *map = json_object ();
    for (size_t i = 0; i < n; i++) {
        int index = vecs [i].sparse ? -1 : blob (blob_arg);
        json_object_set_new (map, vecs [i].name, gw_points_vec_json (env, index, &vecs [i]));
        gw_points_vec_reset (&vecs [i]);
    }
    free (vecs);
    *out = map;
    return 0;
}

typedef struct {
    s_plan_t *plan;                 //  the plan
    size_t pos;                     //  shard position
} s_blob_arg_t;

static int
s_blob_of (void *arg)
{
    s_blob_arg_t *a = arg;
    return s_plan_blob (a->plan, a->pos);
}

//  The parts every written point has: its id (from id_json) and, for a
//  payload given, an object or null; path gets "<where>[index].vector".
//  On failure answers the request and returns -SH_EINVAL.
static int
s_point_head (gw_req_t *req, const json_t *id_json, const char *where, size_t index,
              const json_t *vstruct, const json_t *payload, pointid_t *id, char *path,
              size_t size)
{
    snprintf (path, size, "%s[%zu]", where, index);
    if (pointid_from_json (id_json, id)) {
        gw_fail_http (req, 400, "Format error in JSON body: %s.id: value is not a valid point "
                      "id (an unsigned integer or a UUID)", path);
        return -SH_EINVAL;
    }
    if (payload && !json_is_null (payload) && !json_is_object (payload)) {
        gw_fail_http (req, 400, "Format error in JSON body: %s.payload: expected an object "
                      "or null", path);
        return -SH_EINVAL;
    }
    if (!vstruct) {
        gw_fail_http (req, 400, "Format error in JSON body: %s: missing field `vector`", path);
        return -SH_EINVAL;
    }
    snprintf (path + strlen (path), size - strlen (path), ".vector");
    return 0;
}

//  Adds one point of an update_vectors to its shard's "points" list:
//  {"id", "vectors"}.
static int
s_plan_point (gw_req_t *req, s_plan_t *plan, const json_t *id_json, const char *where,
              size_t index, const json_t *vstruct)
{
    char path [128];
    pointid_t id;
    if (s_point_head (req, id_json, where, index, vstruct, NULL, &id, path, sizeof path))
        return -SH_EINVAL;
    size_t pos = s_pos_of (plan->coll, &id);
    json_t *json = s_plan_json (req, plan, pos, NULL);
    json_t *points = json_object_get (json, "points");
    if (!points) {
        points = json_array ();
        json_object_set_new (json, "points", points);
    }
    s_blob_arg_t arg = { plan, pos };
    json_t *vectors;
    if (s_vectors_json (req, plan->coll, vstruct, path, plan->envs [pos], s_blob_of, &arg,
                        &vectors))
        return -SH_EINVAL;
    if (json_object_size (vectors) == 0) {
        gw_fail_http (req, 422, "Validation error in JSON body: [%s: must specify vectors to "
                      "update for point]", path);
        json_decref (vectors);
        return -SH_EINVAL;
    }
    json_array_append_new (points, json_pack ("{soso}", "id", pointid_to_json (&id),
                                              "vectors", vectors));
    return 0;
}

//  The "records" of shard position pos's upsert (proto/msg.h: ids, payloads,
//  every dense vector of the collection with the points that lack it, the
//  sparse ones as lists, the dense rows in one blob), made on first use.
static json_t *
s_plan_records (gw_req_t *req, s_plan_t *plan, size_t pos)
{
    json_t *json = s_plan_json (req, plan, pos, NULL);
    json_t *records = json_object_get (json, "records");
    if (records)
        return records;
    const gw_points_coll_t *coll = plan->coll;
    json_t *dense = json_array ();
    json_t *sparse = NULL;
    for (size_t k = 0; k < coll->n_vspecs; k++) {
        const gw_points_vspec_t *spec = &coll->vspecs [k];
        if (!spec->sparse)
            json_array_append_new (dense, json_pack ("{sssIs[]}", "name", spec->name, "dim",
                                                     (json_int_t) spec->dim, "missing"));
        else {
            if (!sparse)
                sparse = json_object ();
            json_object_set_new (sparse, spec->name, json_array ());
        }
    }
    records = json_pack ("{s[]s[]so}", "ids", "payloads", "dense", dense);
    if (sparse)
        json_object_set_new (records, "sparse", sparse);
    json_object_set_new (json, "records", records);
    return records;
}

//  One point of an upsert into its shard's records.
static int
s_plan_record (gw_req_t *req, s_plan_t *plan, const json_t *id_json, const char *where,
               size_t index, const json_t *vstruct, const json_t *payload)
{
    char path [128];
    pointid_t id;
    if (s_point_head (req, id_json, where, index, vstruct, payload, &id, path, sizeof path))
        return -SH_EINVAL;
    gw_points_vec_t *vecs;
    size_t n_vecs;
    if (s_vectors_parse (req, plan->coll, vstruct, path, &vecs, &n_vecs))
        return -SH_EINVAL;
    size_t pos = s_pos_of (plan->coll, &id);
    json_t *records = s_plan_records (req, plan, pos);
    json_t *ids = json_object_get (records, "ids");
    size_t at = json_array_size (ids);
    json_array_append_new (ids, pointid_to_json (&id));
    json_array_append_new (json_object_get (records, "payloads"),
                           json_is_object (payload) ? json_incref ((json_t *) payload)
                                                    : json_null ());
    size_t d = 0;
    for (size_t k = 0; k < plan->coll->n_vspecs; k++) {
        const gw_points_vspec_t *spec = &plan->coll->vspecs [k];
        const gw_points_vec_t *vec = NULL;
        for (size_t i = 0; i < n_vecs && !vec; i++)
            if (streq (vecs [i].name, spec->name))
                vec = &vecs [i];
        if (spec->sparse) {
            json_t *list = json_object_get (json_object_get (records, "sparse"), spec->name);
            json_array_append_new (list, vec ? gw_points_vec_json (plan->envs [pos], -1, vec)
                                             : json_null ());
            continue;
        }
        json_t *entry = json_array_get (json_object_get (records, "dense"), d++);
        if (!vec) {
            json_array_append_new (json_object_get (entry, "missing"),
                                   json_integer ((json_int_t) at));
            continue;
        }
        if (plan->blobs [pos] < 0)
            json_object_set_new (records, "blob",
                                 json_integer (s_plan_blob (plan, pos)));
        envelope_append_floats (plan->envs [pos], plan->blobs [pos], vec->dense, vec->dim);
    }
    for (size_t i = 0; i < n_vecs; i++)
        gw_points_vec_reset (&vecs [i]);
    free (vecs);
    return 0;
}

static int
s_prep_upsert (gw_req_t *req, s_plan_t *plan, const json_t *body)
{
    plan->type = MSG_SHARD_UPSERT;
    if (s_need_object (req, body, "a PointInsertOperations")
        || s_reject_unsupported (req, body))
        return -SH_EINVAL;
    json_t *points = json_object_get (body, "points");
    json_t *batch = json_object_get (body, "batch");
    if (json_is_array (points)) {
        for (size_t i = 0; i < json_array_size (points); i++) {
            json_t *point = json_array_get (points, i);
            if (!json_is_object (point) || !json_object_get (point, "id")) {
                gw_fail_http (req, 400, "Format error in JSON body: points[%zu]: expected a "
                              "point with an `id` and a `vector`", i);
                return -SH_EINVAL;
            }
            if (s_plan_record (req, plan, json_object_get (point, "id"), "points", i,
                               json_object_get (point, "vector"),
                               json_object_get (point, "payload")))
                return -SH_EINVAL;
        }
        return 0;
    }
    if (!json_is_object (batch)) {
        gw_fail_http (req, 400, "Format error in JSON body: data did not match any variant of "
                      "untagged enum PointInsertOperations (expected `points` or `batch`)");
        return -SH_EINVAL;
    }
    json_t *ids = json_object_get (batch, "ids");
    json_t *vectors = json_object_get (batch, "vectors");
    json_t *payloads = json_object_get (batch, "payloads");
    if (!json_is_array (ids)) {
        gw_fail_http (req, 400, "Format error in JSON body: batch: missing field `ids`");
        return -SH_EINVAL;
    }
    if (!json_is_array (vectors) && !json_is_object (vectors)) {
        gw_fail_http (req, 400, "Format error in JSON body: batch: missing field `vectors`");
        return -SH_EINVAL;
    }
    if (payloads && !json_is_null (payloads) && !json_is_array (payloads)) {
        gw_fail_http (req, 400, "Format error in JSON body: batch.payloads: expected an array");
        return -SH_EINVAL;
    }
    size_t n = json_array_size (ids);
    const char *name;
    json_t *column;
    if (json_is_array (vectors) && json_array_size (vectors) != n) {
        gw_fail_http (req, 422, "Validation error in JSON body: [batch: number of ids and "
                      "vectors must be equal (%zu != %zu)]", n, json_array_size (vectors));
        return -SH_EINVAL;
    }
    if (json_is_object (vectors))
        json_object_foreach (vectors, name, column) {
            if (!json_is_array (column)) {
                gw_fail_http (req, 400, "Format error in JSON body: batch.vectors.%s: expected "
                              "an array", name);
                return -SH_EINVAL;
            }
            if (json_array_size (column) != n) {
                gw_fail_http (req, 422, "Validation error in JSON body: [batch: number of ids "
                              "and vectors must be equal (%zu != %zu)]", n,
                              json_array_size (column));
                return -SH_EINVAL;
            }
        }
    if (json_is_array (payloads) && json_array_size (payloads) != n) {
        gw_fail_http (req, 422, "Validation error in JSON body: [batch: number of ids and "
                      "payloads must be equal (%zu != %zu)]", n, json_array_size (payloads));
        return -SH_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *vstruct;
        if (json_is_array (vectors))
            vstruct = json_incref (json_array_get (vectors, i));
        else {
            vstruct = json_object ();
            json_object_foreach (vectors, name, column)
                json_object_set (vstruct, name, json_array_get (column, i));
        }
        json_t *payload = json_is_array (payloads) ? json_array_get (payloads, i) : NULL;
        int rc = s_plan_record (req, plan, json_array_get (ids, i), "batch.ids", i, vstruct,
                                payload);
        json_decref (vstruct);
        if (rc)
            return rc;
    }
    return 0;
}

static int
s_prep_update_vectors (gw_req_t *req, s_plan_t *plan, const json_t *body)
{
    plan->type = MSG_SHARD_UPDATE_VECTORS;
    if (s_need_object (req, body, "an UpdateVectors") || s_reject_unsupported (req, body))
        return -SH_EINVAL;
    json_t *points = json_object_get (body, "points");
    if (!json_is_array (points)) {
        gw_fail_http (req, 400, "Format error in JSON body: missing field `points`");
        return -SH_EINVAL;
    }
    if (json_array_size (points) == 0) {
        gw_fail_http (req, 422, "Validation error in JSON body: [points: must have at least "
                      "1 item]");
        return -SH_EINVAL;
    }
    for (size_t i = 0; i < json_array_size (points); i++) {
        json_t *point = json_array_get (points, i);
        if (!json_is_object (point) || !json_object_get (point, "id")) {
            gw_fail_http (req, 400, "Format error in JSON body: points[%zu]: expected a point "
                          "with an `id` and a `vector`", i);
            return -SH_EINVAL;
        }
        if (s_plan_point (req, plan, json_object_get (point, "id"), "points", i,
                          json_object_get (point, "vector")))
            return -SH_EINVAL;
    }
    return 0;
}

//  Points selector: "points" (ids) or "filter". Ids go to their owning
//  shards only, a filter to every shard. Given both, the ids win and the
//  (still checked) filter is ignored, as Qdrant's payload operations do.
static int
s_prep_selector (gw_req_t *req, s_plan_t *plan, const json_t *body, const json_t *base)
{
    json_t *points = json_object_get (body, "points");
    json_t *filter = json_object_get (body, "filter");
    if (json_is_null (points))
        points = NULL;
    if (json_is_null (filter))
        filter = NULL;
    if (!points && !filter) {
        gw_fail_http (req, 400, "Format error in JSON body: Either list of point ids or "
                      "filter must be provided");
        return -SH_EINVAL;
    }
    if (points && !json_is_array (points)) {
        gw_fail_http (req, 400, "Format error in JSON body: points: expected an array of "
                      "point ids");
        return -SH_EINVAL;
    }
    if (filter && (!json_is_object (filter) || gw_points_check_filter (req, filter))) {
        if (!json_is_object (filter))
            gw_fail_http (req, 400, "Format error in JSON body: filter: expected a Filter "
                          "object");
        return -SH_EINVAL;
    }
    if (!points) {
        for (size_t pos = 0; pos < plan->coll->n_shards; pos++)
            json_object_set (s_plan_json (req, plan, pos, base), "filter", filter);
        return 0;
    }
    for (size_t i = 0; i < json_array_size (points); i++) {
        pointid_t id;
        if (s_parse_id (req, json_array_get (points, i), "points", i, &id))
            return -SH_EINVAL;
        size_t pos = s_pos_of (plan->coll, &id);
        json_t *json = s_plan_json (req, plan, pos, base);
        json_t *ids = json_object_get (json, "ids");
        if (!ids) {
            ids = json_array ();
            json_object_set_new (json, "ids", ids);
        }
        json_array_append_new (ids, pointid_to_json (&id));
    }
    return 0;
}

static int
s_prep_delete (gw_req_t *req, s_plan_t *plan, const json_t *body)
{
    plan->type = MSG_SHARD_DELETE;
    if (s_need_object (req, body, "a PointsSelector") || s_reject_unsupported (req, body))
        return -SH_EINVAL;
    return s_prep_selector (req, plan, body, NULL);
}

static int
s_prep_clear_payload (gw_req_t *req, s_plan_t *plan, const json_t *body)
{
    plan->type = MSG_SHARD_CLEAR_PAYLOAD;
    if (s_need_object (req, body, "a PointsSelector") || s_reject_unsupported (req, body))
        return -SH_EINVAL;
    return s_prep_selector (req, plan, body, NULL);
}

static int
s_prep_payload (gw_req_t *req, s_plan_t *plan, const json_t *body, bool overwrite)
{
    plan->type = overwrite ? MSG_SHARD_OVERWRITE_PAYLOAD : MSG_SHARD_SET_PAYLOAD;
    if (s_need_object (req, body, "a SetPayload") || s_reject_unsupported (req, body))
        return -SH_EINVAL;
    json_t *payload = json_object_get (body, "payload");
    json_t *key = json_object_get (body, "key");
    if (!json_is_object (payload)) {
        gw_fail_http (req, 400, "Format error in JSON body: %s", payload
                      ? "payload: expected an object" : "missing field `payload`");
        return -SH_EINVAL;
    }
    if (key && !json_is_null (key) && (!json_is_string (key) || !*json_string_value (key))) {
        gw_fail_http (req, 400, "Format error in JSON body: key: expected a payload path");
        return -SH_EINVAL;
    }
    if (overwrite && json_is_string (key)) {
        gw_fail_http (req, 400, "Bad request: `key` is not supported with overwrite payload "
                      "yet");
        return -SH_EINVAL;
    }
    json_t *base = json_pack ("{sO}", "payload", payload);
    if (json_is_string (key))
        json_object_set (base, "key", key);
    int rc = s_prep_selector (req, plan, body, base);
    json_decref (base);
    return rc;
}

static int
s_prep_set_payload (gw_req_t *req, s_plan_t *plan, const json_t *body)
{
    return s_prep_payload (req, plan, body, false);
}

static int
s_prep_overwrite_payload (gw_req_t *req, s_plan_t *plan, const json_t *body)
{
    return s_prep_payload (req, plan, body, true);
}

static int
s_prep_delete_payload (gw_req_t *req, s_plan_t *plan, const json_t *body)
{
    plan->type = MSG_SHARD_DELETE_PAYLOAD;
    if (s_need_object (req, body, "a DeletePayload") || s_reject_unsupported (req, body))
        return -SH_EINVAL;
    json_t *keys = json_object_get (body, "keys");
    if (!s_is_string_array (keys)) {
        gw_fail_http (req, 400, "Format error in JSON body: %s", keys
                      ? "keys: expected an array of strings" : "missing field `keys`");
        return -SH_EINVAL;
    }
    json_t *base = json_pack ("{sO}", "keys", keys);
    int rc = s_prep_selector (req, plan, body, base);
    json_decref (base);
    return rc;
}

static int
s_prep_delete_vectors (gw_req_t *req, s_plan_t *plan, const json_t *body)
{
    plan->type = MSG_SHARD_DELETE_VECTORS;
    if (s_need_object (req, body, "a DeleteVectors") || s_reject_unsupported (req, body))
        return -SH_EINVAL;
    json_t *names = json_object_get (body, "vector");
    if (!s_is_string_array (names)) {
        gw_fail_http (req, 400, "Format error in JSON body: %s",
                      names ? "vector: expected an array of vector names"
                            : "missing field `vector`");
        return -SH_EINVAL;
    }
    size_t n = json_array_size (names);
    if (n == 0) {
        gw_fail_http (req, 422, "Validation error in JSON body: [vector: must have at least "
                      "1 item]");
        return -SH_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = json_string_value (json_array_get (names, i));
        for (size_t j = 0; j < i; j++)
            if (streq (name, json_string_value (json_array_get (names, j)))) {
                gw_fail_http (req, 422, "Validation error in JSON body: [vector: items must "
                              "be unique]");
                return -SH_EINVAL;
            }
        if (!gw_points_vspec (plan->coll, name)) {
            gw_fail_http (req, 400, "Wrong input: Not existing vector name error: %s", name);
            return -SH_EINVAL;
        }
    }
    json_t *base = json_pack ("{sO}", "vector", names);
    int rc = s_prep_selector (req, plan, body, base);
    json_decref (base);
    return rc;
}

//  ---------------------------------------------------------------------------
//  Write handlers

typedef int (s_prep_fn) (gw_req_t *req, s_plan_t *plan, const json_t *body);

//  ?wait and ?ordering; answers 400 and returns false when malformed.
bool
gw_points_write_params (gw_req_t *req, bool *wait)
{
    bool bad = false;
    *wait = gw_query_bool (req, "wait", false, &bad);
    if (bad) {
        gw_fail_http (req, 400, "Deserialize error in query parameters: wait: expected true "
                      "or false");
        return false;
    }
    //  Every ordering is served by the receiving peer's shard replicas here;
    //  the value is still checked so a typo is not silently accepted.
    const char *ordering = gw_query (req, "ordering");
    if (ordering && !streq (ordering, "weak") && !streq (ordering, "medium")
        && !streq (ordering, "strong")) {
        gw_fail_http (req, 400, "Deserialize error in query parameters: unknown variant `%s`, "
                      "expected one of `weak`, `medium`, `strong`", ordering);
        return false;
    }
    return true;
}

static void
s_write (gw_req_t *req, s_prep_fn *prep)
{
    bool wait;
    if (!gw_points_write_params (req, &wait))
        return;
    gw_points_coll_t *coll = gw_points_coll (req);
    if (!coll)
        return;
    if (!req->body)
        gw_fail_http (req, 400, "Format error in JSON body: EOF while parsing a value");
    else {
        s_plan_t plan;
        s_plan_init (&plan, coll);
        int64_t op_id;
        if (prep (req, &plan, req->body) == 0 && s_plan_run (req, &plan, &op_id) == 0)
            gw_ok (req, s_update_result (op_id, wait));
        s_plan_reset (&plan);
    }
    gw_points_coll_destroy (&coll);
}

static void s_upsert (gw_req_t *req) { s_write (req, s_prep_upsert); }
static void s_delete (gw_req_t *req) { s_write (req, s_prep_delete); }
static void s_set_payload (gw_req_t *req) { s_write (req, s_prep_set_payload); }
static void s_overwrite_payload (gw_req_t *req) { s_write (req, s_prep_overwrite_payload); }
static void s_delete_payload (gw_req_t *req) { s_write (req, s_prep_delete_payload); }
static void s_clear_payload (gw_req_t *req) { s_write (req, s_prep_clear_payload); }
static void s_update_vectors (gw_req_t *req) { s_write (req, s_prep_update_vectors); }
static void s_delete_vectors (gw_req_t *req) { s_write (req, s_prep_delete_vectors); }

static const struct {
    const char *name;               //  UpdateOperation key
    s_prep_fn *prep;                //  its preparation
} s_operations [] = {
    { "upsert", s_prep_upsert },
    { "delete", s_prep_delete },
    { "set_payload", s_prep_set_payload },
    { "overwrite_payload", s_prep_overwrite_payload },
    { "delete_payload", s_prep_delete_payload },
    { "clear_payload", s_prep_clear_payload },
    { "update_vectors", s_prep_update_vectors },
    { "delete_vectors", s_prep_delete_vectors },
};

//  POST /points/batch: every operation is checked and prepared before the
//  first is sent; then they are applied in order, each waiting for the last.
static void
s_batch (gw_req_t *req)
{
    bool wait;
    if (!gw_points_write_params (req, &wait))
        return;
    gw_points_coll_t *coll = gw_points_coll (req);
    if (!coll)
        return;
    json_t *ops = json_object_get (req->body, "operations");
    if (!json_is_array (ops)) {
        gw_fail_http (req, 400, "Format error in JSON body: missing field `operations`");
        gw_points_coll_destroy (&coll);
        return;
    }
    size_t n = json_array_size (ops);
    s_plan_t *plans = calloc (n ? n : 1, sizeof (s_plan_t));
    assert (plans);
    size_t prepared = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *op = json_array_get (ops, i);
        const char *key = json_is_object (op) && json_object_size (op) == 1
                        ? json_object_iter_key (json_object_iter (op)) : NULL;
        s_prep_fn *prep = NULL;
        size_t n_ops = sizeof (s_operations) / sizeof (s_operations [0]);
        for (size_t k = 0; key && k < n_ops; k++)
            if (streq (key, s_operations [k].name))
                prep = s_operations [k].prep;
        if (!prep) {
            gw_fail_http (req, 400, "Format error in JSON body: operations[%zu]: data did not "
                          "match any variant of untagged enum UpdateOperation", i);
            rc = -SH_EINVAL;
            break;
        }
        s_plan_init (&plans [i], coll);
        prepared++;
        rc = prep (req, &plans [i], json_object_get (op, key));
    }
    json_t *results = json_array ();
    for (size_t i = 0; i < n && rc == 0; i++) {
        int64_t op_id;
        rc = s_plan_run (req, &plans [i], &op_id);
        if (rc == 0)
            json_array_append_new (results, s_update_result (op_id, wait));
    }
    if (rc == 0)
        gw_ok (req, results);
    else
        json_decref (results);
    for (size_t i = 0; i < prepared; i++)
        s_plan_reset (&plans [i]);
    free (plans);
    gw_points_coll_destroy (&coll);
}

//  ---------------------------------------------------------------------------
//  Reads

//  One record of a shard reply, with the reply it came from (for vecrefs).
typedef struct {
    pointid_t id;                   //  the record's id
    envelope_t *reply;              //  the reply holding it
    const json_t *record;           //  the record (borrowed from reply)
} s_hit_t;

static int
s_hit_cmp (const void *a, const void *b)
{
    return pointid_cmp (&((const s_hit_t *) a)->id, &((const s_hit_t *) b)->id);
}

//  Every record of "points" in replies[0..m), sorted by id. *count gets the
//  number; the array is yours.
static s_hit_t *
s_gather (envelope_t **replies, size_t m, size_t *count)
{
    size_t total = 0;
    for (size_t r = 0; r < m; r++)
        total += json_array_size (json_object_get (envelope_json (replies [r]), "points"));
    s_hit_t *hits = calloc (total ? total : 1, sizeof (s_hit_t));
    assert (hits);
    size_t k = 0;
    for (size_t r = 0; r < m; r++) {
        json_t *points = json_object_get (envelope_json (replies [r]), "points");
        for (size_t i = 0; i < json_array_size (points); i++) {
            json_t *record = json_array_get (points, i);
            if (pointid_from_json (json_object_get (record, "id"), &hits [k].id))
                continue;           //  a shard's bad record is dropped, not trusted
            hits [k].reply = replies [r];
            hits [k].record = record;
            k++;
        }
    }
    qsort (hits, k, sizeof (s_hit_t), s_hit_cmp);
    *count = k;
    return hits;
}

//  Sends one request of `type` with JSON `body` (copied) to every shard.
static int
s_fan_out (gw_req_t *req, const gw_points_coll_t *coll, int type, const json_t *body,
           envelope_t **replies)
{
    envelope_t **requests = calloc (coll->n_shards, sizeof (envelope_t *));
    assert (requests);
    for (size_t i = 0; i < coll->n_shards; i++) {
        requests [i] = gw_points_request (req, type);
        envelope_set_json (requests [i], json_deep_copy (body));
    }
    int rc = gw_points_call (req, coll, coll->n_shards, coll->shard_ids, requests, replies);
    free (requests);
    return rc;
}

//  Retrieves ids from their owning shards; answers and returns the error on
//  failure. replies (n_shards slots) and *m are the replies to free.
static int
s_retrieve_ids (gw_req_t *req, const gw_points_coll_t *coll, const pointid_t *ids, size_t n,
                const json_t *with_payload, const json_t *with_vector, envelope_t **replies,
                size_t *m)
{
    size_t ns = coll->n_shards;
    envelope_t **per_pos = calloc (ns, sizeof (envelope_t *));
    envelope_t **requests = calloc (ns, sizeof (envelope_t *));
    uint32_t *shard_ids = calloc (ns, sizeof (uint32_t));
    assert (per_pos && requests && shard_ids);
    for (size_t i = 0; i < n; i++) {
        size_t pos = s_pos_of (coll, &ids [i]);
        if (!per_pos [pos]) {
            per_pos [pos] = gw_points_request (req, MSG_SHARD_RETRIEVE);
            envelope_set_json (per_pos [pos],
                               json_pack ("{s[]sOsO}", "ids", "with_payload", with_payload,
                                          "with_vector", with_vector));
        }
        json_array_append_new (json_object_get (envelope_json (per_pos [pos]), "ids"),
                               pointid_to_json (&ids [i]));
    }
    *m = 0;
    for (size_t pos = 0; pos < ns; pos++)
        if (per_pos [pos]) {
            shard_ids [*m] = coll->shard_ids [pos];
            requests [(*m)++] = per_pos [pos];
        }
    int rc = gw_points_call (req, coll, *m, shard_ids, requests, replies);
    if (rc)
        *m = 0;
    free (per_pos);
    free (requests);
    free (shard_ids);
    return rc;
}

//  GET /collections/{c}/points/{id}
static void
s_get_point (gw_req_t *req)
{
    pointid_t id;
    if (pointid_parse (req->params [1], &id)) {
        gw_fail_http (req, 400, "Format error in path parameters: `%s` is not a valid point id "
                      "(an unsigned integer or a UUID)", req->params [1]);
        return;
    }
    gw_points_coll_t *coll = gw_points_coll (req);
    if (!coll)
        return;
    envelope_t **replies = calloc (coll->n_shards, sizeof (envelope_t *));
    assert (replies);
    size_t m = 0;
    json_t *yes = json_true ();
    if (s_retrieve_ids (req, coll, &id, 1, yes, yes, replies, &m) == 0) {
        size_t count;
        s_hit_t *hits = s_gather (replies, m, &count);
        if (count > 0 && pointid_eq (&hits [0].id, &id))
            gw_ok (req, gw_record_to_json (coll->json, hits [0].reply, hits [0].record));
        else
            gw_fail_http (req, 404, "Not found: No point with id %s found", req->params [1]);
        free (hits);
    }
    json_decref (yes);
    for (size_t i = 0; i < m; i++)
        envelope_destroy (&replies [i]);
    free (replies);
    gw_points_coll_destroy (&coll);
}

//  POST /collections/{c}/points: records in request order, missing left out.
static void
s_retrieve (gw_req_t *req)
{
    gw_points_coll_t *coll = gw_points_coll (req);
    if (!coll)
        return;
    json_t *body = req->body;
    json_t *ids_json = json_object_get (body, "ids");
    json_t *with_payload = json_object_get (body, "with_payload");
    json_t *with_vector = json_object_get (body, "with_vector");
    if (!with_vector)
        with_vector = json_object_get (body, "with_vectors");
    pointid_t *ids = NULL;
    envelope_t **replies = calloc (coll->n_shards, sizeof (envelope_t *));
    assert (replies);
    size_t m = 0;
    if (s_need_object (req, body, "a PointRequest") || s_reject_unsupported (req, body))
        goto done;
    if (!json_is_array (ids_json)) {
        gw_fail_http (req, 400, "Format error in JSON body: missing field `ids`");
        goto done;
    }
    if (gw_points_check_with (req, coll, with_payload, with_vector))
        goto done;
    size_t n = json_array_size (ids_json);
    ids = calloc (n ? n : 1, sizeof (pointid_t));
    assert (ids);
    for (size_t i = 0; i < n; i++)
        if (s_parse_id (req, json_array_get (ids_json, i), "ids", i, &ids [i]))
            goto done;
    //  Qdrant's defaults here: payload yes, vectors no.
    json_t *wp = with_payload && !json_is_null (with_payload)
               ? json_incref (with_payload) : json_true ();
    json_t *wv = with_vector && !json_is_null (with_vector)
               ? json_incref (with_vector) : json_false ();
    int rc = s_retrieve_ids (req, coll, ids, n, wp, wv, replies, &m);
    json_decref (wp);
    json_decref (wv);
    if (rc)
        goto done;
    size_t count;
    s_hit_t *hits = s_gather (replies, m, &count);
    json_t *result = json_array ();
    bool *emitted = calloc (count ? count : 1, sizeof (bool));
    assert (emitted);
    for (size_t i = 0; i < n; i++) {
        s_hit_t key = { .id = ids [i] };
        s_hit_t *hit = bsearch (&key, hits, count, sizeof (s_hit_t), s_hit_cmp);
        if (hit && !emitted [hit - hits]) {
            emitted [hit - hits] = true;
            json_array_append_new (result, gw_record_to_json (coll->json, hit->reply,
                                                              hit->record));
        }
    }
    free (emitted);
    free (hits);
    gw_ok (req, result);
done:
    for (size_t i = 0; i < m; i++)
        envelope_destroy (&replies [i]);
    free (replies);
    free (ids);
    gw_points_coll_destroy (&coll);
}

//  An optional unsigned integer field: absent/null gives dflt. Answers 400
//  (not an unsigned integer) and returns -SH_EINVAL.
static int
s_opt_uint (gw_req_t *req, const json_t *body, const char *name, json_int_t dflt,
            json_int_t *out)
{
    json_t *value = json_object_get (body, name);
    if (!value || json_is_null (value)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer (value) || json_integer_value (value) < 0) {
        gw_fail_http (req, 400, "Format error in JSON body: %s: expected an unsigned integer",
                      name);
        return -SH_EINVAL;
    }
    *out = json_integer_value (value);
    return 0;
}

//  POST /collections/{c}/points/scroll: every shard gives `limit` points from
//  offset; the merged page is the first `limit` by id, and the next page
//  starts at the smallest id any shard has not shown yet.
static void
s_scroll (gw_req_t *req)
{
    gw_points_coll_t *coll = gw_points_coll (req);
    if (!coll)
        return;
    json_t *body = req->body ? json_incref (req->body) : json_object ();
    envelope_t **replies = calloc (coll->n_shards, sizeof (envelope_t *));
    assert (replies);
    json_t *shard_body = NULL;
    json_int_t limit;
    json_t *offset = json_object_get (body, "offset");
    json_t *filter = json_object_get (body, "filter");
    json_t *order_by = json_object_get (body, "order_by");
    json_t *with_payload = json_object_get (body, "with_payload");
    json_t *with_vector = json_object_get (body, "with_vector");
    if (!with_vector)
        with_vector = json_object_get (body, "with_vectors");
    if (s_need_object (req, body, "a ScrollRequest") || s_reject_unsupported (req, body)
        || s_opt_uint (req, body, "limit", 10, &limit)
        || gw_points_check_filter (req, filter)
        || gw_points_check_with (req, coll, with_payload, with_vector))
        goto done;
    if (limit < 1) {
        gw_fail_http (req, 422, "Validation error in JSON body: [limit: value 0 invalid, must "
                      "be 1 or larger]");
        goto done;
    }
    if (order_by && !json_is_null (order_by)) {
        gw_fail_http (req, 400, "Bad request: order_by is not supported yet");
        goto done;
    }
    pointid_t from;
    bool has_offset = offset && !json_is_null (offset);
    if (has_offset && pointid_from_json (offset, &from)) {
        gw_fail_http (req, 400, "Format error in JSON body: offset: value is not a valid "
                      "point id (an unsigned integer or a UUID)");
        goto done;
    }
    shard_body = json_pack ("{sIsOsO}", "limit", limit, "with_payload",
                            with_payload && !json_is_null (with_payload)
                            ? with_payload : json_true (),
                            "with_vector", with_vector && !json_is_null (with_vector)
                            ? with_vector : json_false ());
    if (has_offset)
        json_object_set_new (shard_body, "offset", pointid_to_json (&from));
    if (filter && !json_is_null (filter))
        json_object_set (shard_body, "filter", filter);
    if (s_fan_out (req, coll, MSG_SHARD_SCROLL, shard_body, replies))
        goto done;

    size_t count;
    s_hit_t *hits = s_gather (replies, coll->n_shards, &count);
    json_t *points = json_array ();
    size_t take = count < (size_t) limit ? count : (size_t) limit;
    for (size_t i = 0; i < take; i++)
        json_array_append_new (points, gw_record_to_json (coll->json, hits [i].reply,
                                                          hits [i].record));
    bool has_next = count > take;
    pointid_t next;
    if (has_next)
        next = hits [take].id;
    for (size_t r = 0; r < coll->n_shards; r++) {
        pointid_t id;
        json_t *npo = json_object_get (envelope_json (replies [r]), "next_page_offset");
        if (npo && !json_is_null (npo) && pointid_from_json (npo, &id) == 0
            && (!has_next || pointid_cmp (&id, &next) < 0)) {
            next = id;
            has_next = true;
        }
    }
    free (hits);
    gw_ok (req, json_pack ("{soso}", "points", points, "next_page_offset",
                           has_next ? pointid_to_json (&next) : json_null ()));
done:
    for (size_t i = 0; i < coll->n_shards; i++)
        envelope_destroy (&replies [i]);
    free (replies);
    json_decref (shard_body);
    json_decref (body);
    gw_points_coll_destroy (&coll);
}

//  POST /collections/{c}/points/count: the shards' counts summed (exact
//  either way: the shards count exactly).
static void
s_count (gw_req_t *req)
{
    gw_points_coll_t *coll = gw_points_coll (req);
    if (!coll)
        return;
    json_t *body = req->body ? json_incref (req->body) : json_object ();
    envelope_t **replies = calloc (coll->n_shards, sizeof (envelope_t *));
    assert (replies);
    json_t *filter = json_object_get (body, "filter");
    json_t *exact = json_object_get (body, "exact");
    if (s_need_object (req, body, "a CountRequest") || s_reject_unsupported (req, body)
        || gw_points_check_filter (req, filter))
        goto done;
    if (exact && !json_is_null (exact) && !json_is_boolean (exact)) {
        gw_fail_http (req, 400, "Format error in JSON body: exact: expected a boolean");
        goto done;
    }
    json_t *shard_body = json_object ();
    if (filter && !json_is_null (filter))
        json_object_set (shard_body, "filter", filter);
    int rc = s_fan_out (req, coll, MSG_SHARD_COUNT, shard_body, replies);
    json_decref (shard_body);
    if (rc)
        goto done;
    json_int_t total = 0;
    for (size_t r = 0; r < coll->n_shards; r++) {
        json_t *count = json_object_get (envelope_json (replies [r]), "count");
        if (json_is_integer (count) && json_integer_value (count) > 0)
            total += json_integer_value (count);
    }
    gw_ok (req, json_pack ("{sI}", "count", total));
done:
    for (size_t i = 0; i < coll->n_shards; i++)
        envelope_destroy (&replies [i]);
    free (replies);
    json_decref (body);
    gw_points_coll_destroy (&coll);
}

//  ---------------------------------------------------------------------------

void
gw_points_routes (void (*add) (const gw_route_t *route, void *arg), void *arg)
{
    static const gw_route_t routes [] = {
        { "PUT", "/collections/{collection_name}/points", s_upsert, true },
        { "POST", "/collections/{collection_name}/points/delete", s_delete, true },
        { "POST", "/collections/{collection_name}/points/payload", s_set_payload, true },
        { "PUT", "/collections/{collection_name}/points/payload", s_overwrite_payload, true },
        { "POST", "/collections/{collection_name}/points/payload/delete", s_delete_payload,
          true },
        { "POST", "/collections/{collection_name}/points/payload/clear", s_clear_payload,
          true },
        { "PUT", "/collections/{collection_name}/points/vectors", s_update_vectors, true },
        { "POST", "/collections/{collection_name}/points/vectors/delete", s_delete_vectors,
          true },
        { "POST", "/collections/{collection_name}/points/batch", s_batch, true },
        { "GET", "/collections/{collection_name}/points/{id}", s_get_point, false },
        { "POST", "/collections/{collection_name}/points", s_retrieve, false },
        { "POST", "/collections/{collection_name}/points/scroll", s_scroll, false },
        { "POST", "/collections/{collection_name}/points/count", s_count, false },
    };
    for (size_t i = 0; i < sizeof (routes) / sizeof (routes [0]); i++)
        add (&routes [i], arg);
}

const jsonx_pack_t *
gw_points_vectors (gw_handler_fn *handler)
{
    //  An upsert's vectors: a point's unnamed "vector" ({"points": [{...}]},
    //  objects at depth 3) and a batch's column of unnamed vectors
    //  ({"batch": {"vectors": [[...], ...]}}, depth 2). Payloads lie deeper
    //  and keep their own "vector" keys as JSON.
    static const jsonx_pack_t upsert [] = {
        { "vector", 3, false }, { "vectors", 2, true }, { NULL, 0, false }
    };
    return handler == s_upsert ? upsert : NULL;
}
