/*  test_segment: points in, points out: upsert/get/delete with slot reuse,
    named and sparse vectors, rejected writes that change nothing, payload
    edits (copy-on-write), exact search against a brute-force reference for
    all four distances (with filter and threshold), sparse search, scroll
    paging and count.
*/
#include "actors/shard/segment.h"
#include "common/err.h"
#include "test/unit/check_main.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t s_rng = 0x9E3779B97F4A7C15ULL;

static float
s_randf (void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (float) ((s_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static pointid_t
s_num (uint64_t n)
{
    pointid_t id;
    memset (&id, 0, sizeof id);
    id.num = n;
    return id;
}

static pointid_t
s_uuid (uint8_t seed)
{
    pointid_t id;
    memset (&id, 0, sizeof id);
    id.is_uuid = true;
    for (int i = 0; i < 16; i++)
        id.uuid [i] = (uint8_t) (seed * 31 + i);
    return id;
}

static json_t *
s_json (const char *text)
{
    json_error_t error;
    json_t *json = json_loads (text, JSON_DECODE_ANY, &error);
    ck_assert_msg (json, "bad test JSON: %s", text);
    return json;
}

static filter_t *
s_filter (const char *text)
{
    json_t *json = s_json (text);
    filter_t *filter = NULL;
    char err [256];
    ck_assert_msg (filter_parse (json, &filter, err, sizeof err) == 0, "%s", err);
    json_decref (json);
    return filter;
}

static segment_vec_t
s_dense (const char *name, const float *v, uint32_t dim)
{
    segment_vec_t vec = { .name = name, .dense = v, .dim = dim };
    return vec;
}

static segment_vec_t
s_sparse (const char *name, const uint32_t *idx, const float *val, uint32_t nnz)
{
    segment_vec_t vec = { .name = name, .indices = idx, .values = val, .nnz = nnz };
    return vec;
}

static segment_vspec_t
s_spec (const char *name, uint32_t dim, distance_t d)
{
    segment_vspec_t spec;
    memset (&spec, 0, sizeof spec);
    snprintf (spec.name, sizeof spec.name, "%s", name);
    spec.dim = dim;
    spec.distance = d;
    return spec;
}

static segment_vspec_t
s_sparse_spec (const char *name)
{
    segment_vspec_t spec = s_spec (name, 0, DIST_DOT);
    spec.sparse = true;
    return spec;
}

//  A segment with one unnamed dense vector of dim 4 (Dot).
static segment_t *
s_simple (void)
{
    segment_vspec_t spec = s_spec ("", 4, DIST_DOT);
    segment_t *seg = segment_new (&spec, 1);
    ck_assert_ptr_nonnull (seg);
    return seg;
}

static int
s_put (segment_t *seg, uint64_t n, const float *v, const char *payload)
{
    pointid_t id = s_num (n);
    segment_vec_t vec = s_dense ("", v, 4);
    json_t *p = payload ? s_json (payload) : NULL;
    char err [128];
    int rc = segment_upsert (seg, &id, n, &vec, 1, p, err, sizeof err);
    json_decref (p);
    return rc;
}

//  --- life cycle ------------------------------------------------------------

START_TEST (test_new_refuses_bad_specs)
{
    segment_vspec_t specs [2] = { s_spec ("a", 0, DIST_DOT), s_spec ("b", 4, DIST_DOT) };
    ck_assert_ptr_null (segment_new (specs, 1));
    specs [0] = s_spec ("a", 65537, DIST_DOT);
    ck_assert_ptr_null (segment_new (specs, 1));
    specs [0] = s_spec ("b", 4, DIST_COSINE);
    ck_assert_ptr_null (segment_new (specs, 2));
    specs [0] = s_spec ("a", 4, (distance_t) 9);
    ck_assert_ptr_null (segment_new (specs, 1));
    specs [0] = s_spec ("a", 65536, DIST_EUCLID);
    memset (specs [1].name, 'x', sizeof specs [1].name);      //  no terminator
    ck_assert_ptr_null (segment_new (specs, 2));
    segment_t *seg = segment_new (specs, 1);
    ck_assert_ptr_nonnull (seg);
    ck_assert_ptr_nonnull (segment_vspec (seg, "a"));
    ck_assert_ptr_null (segment_vspec (seg, "b"));
    segment_vspec_t more = s_sparse_spec ("text");
    ck_assert_int_eq (segment_add_vspec (seg, &more), 0);
    ck_assert_int_eq (segment_add_vspec (seg, &more), -SH_EEXIST);
    more = s_spec ("zero", 0, DIST_DOT);
    ck_assert_int_eq (segment_add_vspec (seg, &more), -SH_EINVAL);
    ck_assert (segment_vspec (seg, "text")->sparse);
    segment_destroy (&seg);
    ck_assert_ptr_null (seg);
    segment_destroy (&seg);
    //  No vectors at all is a valid (payload-only) segment.
    seg = segment_new (NULL, 0);
    ck_assert_ptr_nonnull (seg);
    segment_destroy (&seg);
}
END_TEST

START_TEST (test_upsert_get_delete)
{
    segment_t *seg = s_simple ();
    float v [4] = { 1, 2, 3, 4 };
    ck_assert_int_eq (s_put (seg, 7, v, "{\"a\": 1}"), 0);
    ck_assert_uint_eq (segment_size (seg), 1);
    ck_assert_uint_eq (segment_vector_count (seg), 1);
    pointid_t id = s_num (7), other = s_num (8);
    segment_point_t point;
    ck_assert_int_eq (segment_get (seg, &id, &point), 0);
    ck_assert (pointid_eq (&point.id, &id));
    ck_assert_uint_eq (point.version, 7);
    ck_assert_int_eq (json_integer_value (json_object_get (point.payload, "a")), 1);
    ck_assert_int_eq (segment_get (seg, &other, &point), -SH_ENOTFOUND);
    segment_vec_t out;
    ck_assert_int_eq (segment_get_vector (seg, &id, "", &out), 0);
    ck_assert_uint_eq (out.dim, 4);
    ck_assert_mem_eq (out.dense, v, sizeof v);
    ck_assert_int_eq (segment_get_vector (seg, &id, "nope", &out), -SH_ENOTFOUND);
    //  Upsert again replaces the whole point.
    float w [4] = { 4, 3, 2, 1 };
    ck_assert_int_eq (s_put (seg, 7, w, NULL), 0);
    ck_assert_uint_eq (segment_size (seg), 1);
    ck_assert_int_eq (segment_get (seg, &id, &point), 0);
    ck_assert_ptr_null (point.payload);
    ck_assert_int_eq (segment_get_vector (seg, &id, "", &out), 0);
    ck_assert_mem_eq (out.dense, w, sizeof w);
    ck_assert_int_eq (segment_delete (seg, &id), 0);
    ck_assert_int_eq (segment_delete (seg, &id), -SH_ENOTFOUND);
    ck_assert_uint_eq (segment_size (seg), 0);
    ck_assert_uint_eq (segment_vector_count (seg), 0);
    ck_assert_int_eq (segment_get (seg, &id, &point), -SH_ENOTFOUND);
    ck_assert_int_eq (segment_get_vector (seg, &id, "", &out), -SH_ENOTFOUND);
    segment_destroy (&seg);
}
END_TEST

START_TEST (test_deleted_slots_are_reused)
{
    segment_t *seg = s_simple ();
    float v [4] = { 1, 0, 0, 0 };
    for (uint64_t i = 0; i < 3; i++)
        ck_assert_int_eq (s_put (seg, i, v, NULL), 0);
    pointid_t one = s_num (1), nine = s_num (9);
    segment_vec_t out;
    ck_assert_int_eq (segment_get_vector (seg, &one, "", &out), 0);
    const float *slot_of_one = out.dense;
    ck_assert_int_eq (segment_delete (seg, &one), 0);
    float w [4] = { 0, 0, 0, 9 };
    ck_assert_int_eq (s_put (seg, 9, w, NULL), 0);
    ck_assert_int_eq (segment_get_vector (seg, &nine, "", &out), 0);
    ck_assert_ptr_eq (out.dense, slot_of_one);
    ck_assert_float_eq (out.dense [3], 9.0f);
    ck_assert_uint_eq (segment_size (seg), 3);
    segment_destroy (&seg);
}
END_TEST

START_TEST (test_many_ids_survive_growth_and_deletes)
{
    segment_t *seg = s_simple ();
    float v [4] = { 1, 2, 3, 4 };
    const uint64_t n = 20000;
    for (uint64_t i = 0; i < n; i++) {
        v [0] = (float) i;
        ck_assert_int_eq (s_put (seg, i * 7919, v, NULL), 0);
    }
    for (uint64_t i = 0; i < n; i += 3) {
        pointid_t id = s_num (i * 7919);
        ck_assert_int_eq (segment_delete (seg, &id), 0);
    }
    for (uint8_t u = 0; u < 50; u++) {
        pointid_t id = s_uuid (u);
        segment_vec_t vec = s_dense ("", v, 4);
        ck_assert_int_eq (segment_upsert (seg, &id, 1, &vec, 1, NULL, NULL, 0), 0);
    }
    size_t live = 0;
    for (uint64_t i = 0; i < n; i++) {
        pointid_t id = s_num (i * 7919);
        segment_vec_t out;
        int rc = segment_get_vector (seg, &id, "", &out);
        if (i % 3 == 0)
            ck_assert_int_eq (rc, -SH_ENOTFOUND);
        else {
            ck_assert_int_eq (rc, 0);
            ck_assert_float_eq (out.dense [0], (float) i);
            live++;
        }
    }
    for (uint8_t u = 0; u < 50; u++) {
        pointid_t id = s_uuid (u);
        ck_assert_int_eq (segment_get (seg, &id, NULL), 0);
    }
    ck_assert_uint_eq (segment_size (seg), live + 50);
    segment_destroy (&seg);
}
END_TEST

//  --- named vectors and rejected writes --------------------------------------

static segment_t *
s_multi (void)
{
    segment_vspec_t specs [3] = {
        s_spec ("image", 3, DIST_COSINE), s_spec ("text", 2, DIST_EUCLID),
        s_sparse_spec ("words")
    };
    segment_t *seg = segment_new (specs, 3);
    ck_assert_ptr_nonnull (seg);
    return seg;
}

START_TEST (test_named_vectors_and_missing_ones)
{
    segment_t *seg = s_multi ();
    float img [3] = { 3, 0, 4 }, txt [2] = { 1, 1 };
    uint32_t idx [3] = { 9, 2, 5 };
    float val [3] = { 0.9f, 0.2f, 0.5f };
    segment_vec_t vecs [3] = {
        s_dense ("image", img, 3), s_dense ("text", txt, 2), s_sparse ("words", idx, val, 3)
    };
    pointid_t a = s_num (1), b = s_num (2);
    ck_assert_int_eq (segment_upsert (seg, &a, 1, vecs, 3, NULL, NULL, 0), 0);
    ck_assert_int_eq (segment_upsert (seg, &b, 1, vecs + 1, 1, NULL, NULL, 0), 0);
    ck_assert_uint_eq (segment_vector_count (seg), 4);
    segment_vec_t out;
    //  Cosine vectors are stored normalized.
    ck_assert_int_eq (segment_get_vector (seg, &a, "image", &out), 0);
    ck_assert_float_eq_tol (out.dense [0], 0.6f, 1e-6);
    ck_assert_float_eq_tol (out.dense [2], 0.8f, 1e-6);
    //  Sparse vectors are stored sorted by index.
    ck_assert_int_eq (segment_get_vector (seg, &a, "words", &out), 0);
    ck_assert_uint_eq (out.nnz, 3);
    ck_assert_ptr_null (out.dense);
    ck_assert_uint_eq (out.indices [0], 2);
    ck_assert_uint_eq (out.indices [2], 9);
    ck_assert_float_eq (out.values [2], 0.9f);
    ck_assert_str_eq (out.name, "words");
    ck_assert_int_eq (segment_get_vector (seg, &b, "image", &out), -SH_ENOTFOUND);
    ck_assert_int_eq (segment_get_vector (seg, &b, "text", &out), 0);
    //  has_vector sees which point has what.
    filter_t *filter = s_filter ("{\"must\": {\"has_vector\": \"image\"}}");
    ck_assert_uint_eq (segment_count (seg, filter), 1);
    filter_destroy (&filter);
    //  Search on "image" only sees the point that has it.
    segment_hit_t hits [4];
    segment_search_t req = { .name = "image", .query = s_dense (NULL, img, 3), .limit = 4 };
    ck_assert_int_eq (segment_search (seg, &req, hits, NULL, 0), 1);
    ck_assert (pointid_eq (&hits [0].id, &a));
    ck_assert_float_eq_tol (hits [0].score, 1.0f, 1e-5);
    //  update_vectors replaces only what it is given; delete_vectors removes.
    float img2 [3] = { 0, 1, 0 };
    segment_vec_t up = s_dense ("image", img2, 3);
    ck_assert_int_eq (segment_update_vectors (seg, &b, 5, &up, 1, NULL, 0), 0);
    ck_assert_int_eq (segment_get_vector (seg, &b, "text", &out), 0);
    ck_assert_int_eq (segment_get_vector (seg, &b, "image", &out), 0);
    segment_point_t point;
    ck_assert_int_eq (segment_get (seg, &b, &point), 0);
    ck_assert_uint_eq (point.version, 5);
    const char *names [1] = { "text" };
    ck_assert_int_eq (segment_delete_vectors (seg, &b, 6, names, 1), 0);
    ck_assert_int_eq (segment_get_vector (seg, &b, "text", &out), -SH_ENOTFOUND);
    ck_assert_uint_eq (segment_vector_count (seg), 4);
    const char *bad [1] = { "nope" };
    ck_assert_int_eq (segment_delete_vectors (seg, &b, 7, bad, 1), -SH_EINVAL);
    pointid_t missing = s_num (99);
    ck_assert_int_eq (segment_delete_vectors (seg, &missing, 7, names, 1), -SH_ENOTFOUND);
    char err [128];
    ck_assert_int_eq (segment_update_vectors (seg, &missing, 7, &up, 1, err, sizeof err),
                      -SH_ENOTFOUND);
    //  A vector spec added later.
    segment_vspec_t late = s_spec ("late", 2, DIST_MANHATTAN);
    ck_assert_int_eq (segment_add_vspec (seg, &late), 0);
    segment_vec_t lv = s_dense ("late", txt, 2);
    ck_assert_int_eq (segment_update_vectors (seg, &a, 8, &lv, 1, NULL, 0), 0);
    ck_assert_int_eq (segment_get_vector (seg, &a, "late", &out), 0);
    ck_assert_int_eq (segment_get_vector (seg, &a, "image", &out), 0);
    segment_destroy (&seg);
}
END_TEST

START_TEST (test_bad_writes_change_nothing)
{
    segment_t *seg = s_multi ();
    float img [3] = { 0, 1, 0 }, txt [2] = { 1, 2 }, wrong [4] = { 1, 2, 3, 4 };
    pointid_t a = s_num (1);
    segment_vec_t good [2] = { s_dense ("image", img, 3), s_dense ("text", txt, 2) };
    json_t *payload = s_json ("{\"k\": \"v\"}");
    ck_assert_int_eq (segment_upsert (seg, &a, 1, good, 2, payload, NULL, 0), 0);
    json_decref (payload);
    char err [128];
    //  Wrong dimension (even after a good vector in the same call).
    segment_vec_t bad [2] = { s_dense ("text", txt, 2), s_dense ("image", wrong, 4) };
    ck_assert_int_eq (segment_upsert (seg, &a, 2, bad, 2, NULL, err, sizeof err), -SH_EINVAL);
    ck_assert_str_eq (err, "Vector dimension error: expected dim: 3, got 4");
    ck_assert_int_eq (segment_update_vectors (seg, &a, 2, bad, 2, err, sizeof err),
                      -SH_EINVAL);
    //  Unknown name, the wrong kind, a name twice, repeated sparse indices.
    segment_vec_t unknown = s_dense ("audio", img, 3);
    ck_assert_int_eq (segment_upsert (seg, &a, 2, &unknown, 1, NULL, err, sizeof err),
                      -SH_EINVAL);
    ck_assert_str_eq (err, "Not existing vector name error: audio");
    segment_vec_t dense_as_sparse = s_dense ("words", img, 3);
    ck_assert_int_eq (segment_upsert (seg, &a, 2, &dense_as_sparse, 1, NULL, err, sizeof err),
                      -SH_EINVAL);
    uint32_t idx [2] = { 1, 2 };
    float val [2] = { 1, 1 };
    segment_vec_t sparse_as_dense = s_sparse ("image", idx, val, 2);
    ck_assert_int_eq (segment_upsert (seg, &a, 2, &sparse_as_dense, 1, NULL, err, sizeof err),
                      -SH_EINVAL);
    segment_vec_t twice [2] = { s_dense ("text", txt, 2), s_dense ("text", txt, 2) };
    ck_assert_int_eq (segment_upsert (seg, &a, 2, twice, 2, NULL, err, sizeof err),
                      -SH_EINVAL);
    uint32_t dup [2] = { 4, 4 };
    segment_vec_t dup_sparse = s_sparse ("words", dup, val, 2);
    ck_assert_int_eq (segment_upsert (seg, &a, 2, &dup_sparse, 1, NULL, err, sizeof err),
                      -SH_EINVAL);
    json_t *not_object = json_integer (5);
    ck_assert_int_eq (segment_upsert (seg, &a, 2, good, 2, not_object, err, sizeof err),
                      -SH_EINVAL);
    json_decref (not_object);
    //  Nothing changed: same vectors, payload, version, counts.
    segment_point_t point;
    ck_assert_int_eq (segment_get (seg, &a, &point), 0);
    ck_assert_uint_eq (point.version, 1);
    ck_assert_str_eq (json_string_value (json_object_get (point.payload, "k")), "v");
    segment_vec_t out;
    ck_assert_int_eq (segment_get_vector (seg, &a, "image", &out), 0);
    ck_assert_mem_eq (out.dense, img, sizeof img);
    ck_assert_int_eq (segment_get_vector (seg, &a, "text", &out), 0);
    ck_assert_mem_eq (out.dense, txt, sizeof txt);
    ck_assert_uint_eq (segment_size (seg), 1);
    ck_assert_uint_eq (segment_vector_count (seg), 2);
    //  A rejected upsert of a new id does not create it.
    pointid_t b = s_num (2);
    ck_assert_int_eq (segment_upsert (seg, &b, 2, bad, 2, NULL, err, sizeof err), -SH_EINVAL);
    ck_assert_int_eq (segment_get (seg, &b, &point), -SH_ENOTFOUND);
    ck_assert_uint_eq (segment_size (seg), 1);
    segment_destroy (&seg);
}
END_TEST

//  --- payload -----------------------------------------------------------------

START_TEST (test_payload_edits_are_copy_on_write)
{
    segment_t *seg = s_simple ();
    float v [4] = { 1, 2, 3, 4 };
    pointid_t id = s_num (1);
    segment_vec_t vec = s_dense ("", v, 4);
    json_t *mine = s_json ("{\"a\": {\"b\": 1, \"c\": 2}, \"x\": 1}");
    ck_assert_int_eq (segment_upsert (seg, &id, 1, &vec, 1, mine, NULL, 0), 0);
    segment_point_t point;
    ck_assert_int_eq (segment_get (seg, &id, &point), 0);
    json_t *held = json_incref ((json_t *) point.payload);
    //  Top-level merge: new keys in, null deletes (Qdrant's merge).
    json_t *set = s_json ("{\"y\": [1, 2], \"x\": null}");
    ck_assert_int_eq (segment_set_payload (seg, &id, 2, set, NULL), 0);
    //  Merge at a path, creating what is missing.
    json_t *deep = s_json ("{\"d\": true}");
    ck_assert_int_eq (segment_set_payload (seg, &id, 3, deep, "a.e"), 0);
    ck_assert_int_eq (segment_set_payload (seg, &id, 3, deep, "bad..path"), -SH_EINVAL);
    json_t *not_object = json_string ("x");
    ck_assert_int_eq (segment_set_payload (seg, &id, 3, not_object, NULL), -SH_EINVAL);
    json_decref (not_object);
    ck_assert_int_eq (segment_get (seg, &id, &point), 0);
    ck_assert_uint_eq (point.version, 3);
    json_t *expect = s_json ("{\"a\": {\"b\": 1, \"c\": 2, \"e\": {\"d\": true}}, \"y\": [1, 2]}");
    ck_assert (json_equal ((json_t *) point.payload, expect));
    json_decref (expect);
    //  Neither the caller's object nor a held reference changed.
    json_t *original = s_json ("{\"a\": {\"b\": 1, \"c\": 2}, \"x\": 1}");
    ck_assert (json_equal (mine, original));
    ck_assert (json_equal (held, original));
    //  delete_payload takes paths.
    const char *keys [2] = { "a.b", "y" };
    ck_assert_int_eq (segment_delete_payload (seg, &id, 4, keys, 2), 0);
    const char *bad_keys [1] = { "a..b" };
    ck_assert_int_eq (segment_delete_payload (seg, &id, 5, bad_keys, 1), -SH_EINVAL);
    ck_assert_int_eq (segment_get (seg, &id, &point), 0);
    ck_assert_uint_eq (point.version, 4);
    expect = s_json ("{\"a\": {\"c\": 2, \"e\": {\"d\": true}}}");
    ck_assert (json_equal ((json_t *) point.payload, expect));
    json_decref (expect);
    //  Overwrite replaces it all (with a copy), clear removes it.
    json_t *over = s_json ("{\"only\": 1}");
    ck_assert_int_eq (segment_overwrite_payload (seg, &id, 5, over), 0);
    json_object_set_new (over, "later", json_true ());
    ck_assert_int_eq (segment_get (seg, &id, &point), 0);
    ck_assert_uint_eq (json_object_size (point.payload), 1);
    ck_assert_int_eq (segment_clear_payload (seg, &id, 6), 0);
    ck_assert_int_eq (segment_get (seg, &id, &point), 0);
    ck_assert_ptr_null (point.payload);
    ck_assert_uint_eq (point.version, 6);
    //  Editing a point without payload starts from {}.
    ck_assert_int_eq (segment_set_payload (seg, &id, 7, deep, NULL), 0);
    ck_assert_int_eq (segment_get (seg, &id, &point), 0);
    ck_assert (json_is_true (json_object_get (point.payload, "d")));
    //  Missing points.
    pointid_t missing = s_num (42);
    ck_assert_int_eq (segment_set_payload (seg, &missing, 1, deep, NULL), -SH_ENOTFOUND);
    ck_assert_int_eq (segment_overwrite_payload (seg, &missing, 1, deep), -SH_ENOTFOUND);
    ck_assert_int_eq (segment_delete_payload (seg, &missing, 1, keys, 2), -SH_ENOTFOUND);
    ck_assert_int_eq (segment_clear_payload (seg, &missing, 1), -SH_ENOTFOUND);
    ck_assert (json_equal (held, original));
    json_decref (original);
    json_decref (over);
    json_decref (deep);
    json_decref (set);
    json_decref (held);
    json_decref (mine);
    segment_destroy (&seg);
}
END_TEST

//  --- search ------------------------------------------------------------------

#define N_POINTS 1500
#define DIM 19

typedef struct {
    pointid_t id;
    float score;
} ref_hit_t;

static distance_t s_ref_dist;

static int
s_ref_cmp (const void *a, const void *b)
{
    const ref_hit_t *x = a, *y = b;
    if (x->score != y->score)
        return distance_better (s_ref_dist, x->score, y->score) ? -1 : 1;
    return pointid_cmp (&x->id, &y->id);
}

//  Fills a segment with N_POINTS random points (ids 0.. shuffled with UUIDs
//  and deletes), payload {"group": i % 5, "tag": "t<i%3>"}.
static segment_t *
s_random_segment (distance_t d, float **vectors)
{
    segment_vspec_t spec = s_spec ("v", DIM, d);
    segment_t *seg = segment_new (&spec, 1);
    *vectors = malloc (N_POINTS * DIM * sizeof (float));
    for (int i = 0; i < N_POINTS; i++) {
        float *v = *vectors + i * DIM;
        for (int k = 0; k < DIM; k++)
            v [k] = s_randf ();
        pointid_t id = i % 10 == 9 ? s_uuid ((uint8_t) i) : s_num ((uint64_t) (i * 13 % 7001));
        if (i % 10 == 9)
            id.uuid [0] = (uint8_t) (i >> 8);
        char payload [64];
        snprintf (payload, sizeof payload, "{\"group\": %d, \"tag\": \"t%d\"}", i % 5, i % 3);
        json_t *p = s_json (payload);
        segment_vec_t vec = s_dense ("v", v, DIM);
        ck_assert_int_eq (segment_upsert (seg, &id, 1, &vec, 1, p, NULL, 0), 0);
        json_decref (p);
    }
    //  Some deletes, so the scan meets holes.
    for (uint64_t n = 0; n < 7001; n += 97) {
        pointid_t id = s_num (n);
        segment_delete (seg, &id);
    }
    return seg;
}

//  Brute force over everything the segment holds.
static size_t
s_reference (segment_t *seg, distance_t d, const float *query, const filter_t *filter,
             bool has_t, float t, ref_hit_t *out)
{
    float q [DIM];
    memcpy (q, query, sizeof q);
    if (d == DIST_COSINE)
        distance_normalize (q, DIM);
    pointid_t *ids;
    size_t n = segment_select (seg, filter, &ids);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        segment_vec_t v;
        ck_assert_int_eq (segment_get_vector (seg, &ids [i], "v", &v), 0);
        float score = distance_score (d, q, v.dense, DIM);
        //  Cross-check the float score with a double computation.
        double ref = 0;
        for (int k = 0; k < DIM; k++) {
            double a = q [k], b = v.dense [k];
            ref += d == DIST_EUCLID ? (a - b) * (a - b)
                 : d == DIST_MANHATTAN ? fabs (a - b) : a * b;
        }
        if (d == DIST_EUCLID)
            ref = sqrt (ref);
        ck_assert_double_eq_tol (score, ref, 1e-4);
        if (has_t && distance_better (d, t, score))
            continue;
        out [m++] = (ref_hit_t) { ids [i], score };
    }
    free (ids);
    s_ref_dist = d;
    qsort (out, m, sizeof (ref_hit_t), s_ref_cmp);
    return m;
}

static void
s_check_search (distance_t d)
{
    float *vectors;
    segment_t *seg = s_random_segment (d, &vectors);
    ref_hit_t *ref = malloc (N_POINTS * sizeof (ref_hit_t));
    segment_hit_t *hits = malloc (N_POINTS * sizeof (segment_hit_t));
    const char *filters [3] = {
        NULL, "{\"must\": {\"key\": \"group\", \"match\": {\"any\": [1, 3]}}}",
        "{\"must_not\": {\"key\": \"tag\", \"match\": {\"value\": \"t0\"}}}"
    };
    for (int round = 0; round < 12; round++) {
        float query [DIM];
        for (int k = 0; k < DIM; k++)
            query [k] = s_randf () * 1.5f;
        filter_t *filter = filters [round % 3] ? s_filter (filters [round % 3]) : NULL;
        size_t limit = round % 4 == 0 ? 1 : round % 4 == 1 ? 10 : round % 4 == 2 ? 100 : 5000;
        //  A threshold around the median score of an unfiltered run.
        bool has_t = round >= 6;
        float t = 0;
        if (has_t) {
            size_t all = s_reference (seg, d, query, NULL, false, 0, ref);
            t = ref [all / 3].score;
        }
        size_t m = s_reference (seg, d, query, filter, has_t, t, ref);
        segment_search_t req = {
            .name = "v", .query = s_dense (NULL, query, DIM), .filter = filter,
            .limit = limit, .has_threshold = has_t, .score_threshold = t
        };
        char err [128];
        int n = segment_search (seg, &req, hits, err, sizeof err);
        ck_assert_int_ge (n, 0);
        size_t expect = m < limit ? m : limit;
        ck_assert_int_eq ((size_t) n, expect);
        for (int i = 0; i < n; i++) {
            ck_assert_msg (pointid_eq (&hits [i].id, &ref [i].id),
                           "%s round %d hit %d: id differs", distance_name (d), round, i);
            ck_assert_float_eq (hits [i].score, ref [i].score);
            if (has_t)
                ck_assert (!distance_better (d, t, hits [i].score));
        }
        filter_destroy (&filter);
    }
    free (hits);
    free (ref);
    free (vectors);
    segment_destroy (&seg);
}

START_TEST (test_search_matches_brute_force_cosine)
{
    s_check_search (DIST_COSINE);
}
END_TEST

START_TEST (test_search_matches_brute_force_euclid)
{
    s_check_search (DIST_EUCLID);
}
END_TEST

START_TEST (test_search_matches_brute_force_dot)
{
    s_check_search (DIST_DOT);
}
END_TEST

START_TEST (test_search_matches_brute_force_manhattan)
{
    s_check_search (DIST_MANHATTAN);
}
END_TEST

START_TEST (test_search_breaks_ties_by_smaller_id)
{
    segment_t *seg = s_simple ();
    float v [4] = { 1, 1, 0, 0 };
    uint64_t order [5] = { 40, 3, 17, 8, 1 };
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq (s_put (seg, order [i], v, NULL), 0);
    pointid_t u = s_uuid (1);
    segment_vec_t vec = s_dense ("", v, 4);
    ck_assert_int_eq (segment_upsert (seg, &u, 1, &vec, 1, NULL, NULL, 0), 0);
    segment_hit_t hits [6];
    segment_search_t req = { .name = "", .query = s_dense (NULL, v, 4), .limit = 3 };
    ck_assert_int_eq (segment_search (seg, &req, hits, NULL, 0), 3);
    ck_assert_uint_eq (hits [0].id.num, 1);
    ck_assert_uint_eq (hits [1].id.num, 3);
    ck_assert_uint_eq (hits [2].id.num, 8);
    req.limit = 6;
    ck_assert_int_eq (segment_search (seg, &req, hits, NULL, 0), 6);
    ck_assert (hits [5].id.is_uuid);
    ck_assert_float_eq (hits [5].score, 2.0f);
    segment_destroy (&seg);
}
END_TEST

START_TEST (test_search_rejects_bad_requests)
{
    segment_t *seg = s_multi ();
    float q [3] = { 1, 0, 0 };
    segment_hit_t hits [2];
    char err [128];
    segment_search_t req = { .name = "audio", .query = s_dense (NULL, q, 3), .limit = 2 };
    ck_assert_int_eq (segment_search (seg, &req, hits, err, sizeof err), -SH_EINVAL);
    ck_assert_str_eq (err, "Not existing vector name error: audio");
    req.name = "text";
    ck_assert_int_eq (segment_search (seg, &req, hits, err, sizeof err), -SH_EINVAL);
    ck_assert_str_eq (err, "Vector dimension error: expected dim: 2, got 3");
    req.name = "words";
    ck_assert_int_eq (segment_search (seg, &req, hits, err, sizeof err), -SH_EINVAL);
    uint32_t idx [2] = { 1, 2 };
    float val [2] = { 1, 1 };
    req.name = "image";
    req.query = s_sparse (NULL, idx, val, 2);
    ck_assert_int_eq (segment_search (seg, &req, hits, err, sizeof err), -SH_EINVAL);
    //  An empty segment answers nothing, not an error.
    req.name = "image";
    req.query = s_dense (NULL, q, 3);
    ck_assert_int_eq (segment_search (seg, &req, hits, err, sizeof err), 0);
    //  A negative Euclid threshold can match nothing.
    float t [2] = { 1, 1 };
    pointid_t id = s_num (1);
    segment_vec_t vec = s_dense ("text", t, 2);
    ck_assert_int_eq (segment_upsert (seg, &id, 1, &vec, 1, NULL, NULL, 0), 0);
    req.name = "text";
    req.query = s_dense (NULL, t, 2);
    ck_assert_int_eq (segment_search (seg, &req, hits, err, sizeof err), 1);
    ck_assert_float_eq (hits [0].score, 0.0f);
    req.has_threshold = true;
    req.score_threshold = -1;
    ck_assert_int_eq (segment_search (seg, &req, hits, err, sizeof err), 0);
    req.score_threshold = 0;
    ck_assert_int_eq (segment_search (seg, &req, hits, err, sizeof err), 1);
    segment_destroy (&seg);
}
END_TEST

START_TEST (test_sparse_search_scores_shared_indices_only)
{
    segment_t *seg = s_multi ();
    struct {
        uint64_t id;
        uint32_t idx [3];
        float val [3];
        uint32_t nnz;
    } pts [5] = {
        { 1, { 1, 5, 9 }, { 1.0f, 2.0f, 3.0f }, 3 },    //  shares 5, 9: 2*1 + 3*0.5
        { 2, { 9, 2 }, { -1.0f, 4.0f }, 2 },              //  shares 9: -0.5
        { 3, { 3, 4 }, { 7.0f, 7.0f }, 2 },               //  shares nothing
        { 4, { 5 }, { 3.5f }, 1 },                        //  shares 5: 3.5
        { 5, { 0 }, { 0.0f }, 0 },                        //  empty vector
    };
    for (int i = 0; i < 5; i++) {
        pointid_t id = s_num (pts [i].id);
        segment_vec_t vec = s_sparse ("words", pts [i].idx, pts [i].val, pts [i].nnz);
        ck_assert_int_eq (segment_upsert (seg, &id, 1, &vec, 1, NULL, NULL, 0), 0);
    }
    //  A point without the sparse vector at all.
    float img [3] = { 1, 0, 0 };
    pointid_t other = s_num (6);
    segment_vec_t dense = s_dense ("image", img, 3);
    ck_assert_int_eq (segment_upsert (seg, &other, 1, &dense, 1, NULL, NULL, 0), 0);
    uint32_t qi [2] = { 9, 5 };
    float qv [2] = { 0.5f, 1.0f };
    segment_hit_t hits [8];
    segment_search_t req = { .name = "words", .query = s_sparse (NULL, qi, qv, 2), .limit = 8 };
    ck_assert_int_eq (segment_search (seg, &req, hits, NULL, 0), 3);
    //  1 and 4 tie at 3.5: the smaller id comes first.
    ck_assert_uint_eq (hits [0].id.num, 1);
    ck_assert_float_eq (hits [0].score, 3.5f);
    ck_assert_uint_eq (hits [1].id.num, 4);
    ck_assert_float_eq (hits [1].score, 3.5f);
    ck_assert_uint_eq (hits [2].id.num, 2);
    ck_assert_float_eq (hits [2].score, -0.5f);
    req.has_threshold = true;
    req.score_threshold = 0;
    ck_assert_int_eq (segment_search (seg, &req, hits, NULL, 0), 2);
    req.has_threshold = false;
    req.limit = 1;
    ck_assert_int_eq (segment_search (seg, &req, hits, NULL, 0), 1);
    //  A query with repeated indices is refused; an empty one finds nothing.
    uint32_t dup [2] = { 5, 5 };
    req.query = s_sparse (NULL, dup, qv, 2);
    ck_assert_int_eq (segment_search (seg, &req, hits, NULL, 0), -SH_EINVAL);
    req.query = s_sparse (NULL, NULL, NULL, 0);
    ck_assert_int_eq (segment_search (seg, &req, hits, NULL, 0), 0);
    segment_destroy (&seg);
}
END_TEST

//  --- scroll, count, select -----------------------------------------------------

static void
s_check_scroll (segment_t *seg, const filter_t *filter, size_t page)
{
    pointid_t *all;
    size_t n_all = segment_select (seg, filter, &all);
    ck_assert_uint_eq (segment_count (seg, filter), n_all);
    pointid_t *ids = malloc ((page + 1) * sizeof (pointid_t));
    pointid_t *seen = malloc ((n_all + 1) * sizeof (pointid_t));
    size_t n_seen = 0;
    pointid_t offset, next;
    bool has_offset = false, has_next = true;
    while (has_next) {
        size_t n = segment_scroll (seg, filter, has_offset ? &offset : NULL, page, ids, &next,
                                   &has_next);
        ck_assert_uint_le (n, page);
        if (has_next)
            ck_assert_uint_eq (n, page);
        for (size_t i = 0; i < n; i++) {
            if (i)
                ck_assert_int_lt (pointid_cmp (&ids [i - 1], &ids [i]), 0);
            if (n_seen)
                ck_assert_int_lt (pointid_cmp (&seen [n_seen - 1], &ids [i]), 0);
            ck_assert_uint_lt (n_seen, n_all);
            seen [n_seen++] = ids [i];
        }
        if (has_next) {
            ck_assert_int_lt (pointid_cmp (&ids [n - 1], &next), 0);
            offset = next;
            has_offset = true;
        }
    }
    //  Every matching id exactly once (sorted, strictly increasing above).
    ck_assert_uint_eq (n_seen, n_all);
    for (size_t i = 0; i < n_all; i++) {
        bool found = false;
        for (size_t k = 0; k < n_seen && !found; k++)
            found = pointid_eq (&all [i], &seen [k]);
        ck_assert (found);
    }
    free (seen);
    free (ids);
    free (all);
}

START_TEST (test_scroll_pages_cover_every_id_once)
{
    float *vectors;
    segment_t *seg = s_random_segment (DIST_DOT, &vectors);
    filter_t *filter = s_filter ("{\"must\": {\"key\": \"group\", \"match\": {\"value\": 2}}}");
    size_t pages [4] = { 1, 7, 100, 5000 };
    for (int i = 0; i < 4; i++) {
        s_check_scroll (seg, NULL, pages [i]);
        s_check_scroll (seg, filter, pages [i]);
    }
    //  Integers before UUIDs; an offset between ids starts at the next one.
    pointid_t ids [3], next, offset = s_num (14);
    bool has_next;
    ck_assert_uint_eq (segment_scroll (seg, NULL, &offset, 3, ids, &next, &has_next), 3);
    ck_assert (!ids [0].is_uuid);
    ck_assert_uint_ge (ids [0].num, 14);
    ck_assert (has_next);
    offset = s_uuid (0);
    memset (offset.uuid, 0, 16);
    ck_assert_uint_eq (segment_scroll (seg, NULL, &offset, 3, ids, &next, &has_next), 3);
    ck_assert (ids [0].is_uuid);
    //  An offset past everything, and a filter nothing matches.
    memset (offset.uuid, 0xff, 16);
    ck_assert_uint_eq (segment_scroll (seg, NULL, &offset, 3, ids, &next, &has_next), 0);
    ck_assert (!has_next);
    filter_t *none = s_filter ("{\"must\": {\"key\": \"group\", \"match\": {\"value\": 99}}}");
    ck_assert_uint_eq (segment_scroll (seg, none, NULL, 3, ids, &next, &has_next), 0);
    ck_assert (!has_next);
    ck_assert_uint_eq (segment_count (seg, none), 0);
    //  Limit 0 returns nothing but still says where the first page starts.
    ck_assert_uint_eq (segment_scroll (seg, NULL, NULL, 0, ids, &next, &has_next), 0);
    ck_assert (has_next);
    ck_assert (!next.is_uuid);
    filter_destroy (&none);
    filter_destroy (&filter);
    free (vectors);
    segment_destroy (&seg);
}
END_TEST

START_TEST (test_count_and_select_apply_the_filter)
{
    segment_t *seg = s_simple ();
    float v [4] = { 1, 2, 3, 4 };
    for (uint64_t i = 0; i < 100; i++) {
        char payload [64];
        snprintf (payload, sizeof payload, "{\"n\": %u, \"even\": %s}", (unsigned) i,
                  i % 2 ? "false" : "true");
        ck_assert_int_eq (s_put (seg, i, v, payload), 0);
    }
    ck_assert_uint_eq (segment_count (seg, NULL), 100);
    filter_t *f = s_filter ("{\"must\": [{\"key\": \"even\", \"match\": {\"value\": true}},"
                            "{\"key\": \"n\", \"range\": {\"lt\": 50}}]}");
    ck_assert_uint_eq (segment_count (seg, f), 25);
    pointid_t *ids;
    size_t n = segment_select (seg, f, &ids);
    ck_assert_uint_eq (n, 25);
    for (size_t i = 0; i < n; i++)
        ck_assert (ids [i].num % 2 == 0 && ids [i].num < 50);
    free (ids);
    filter_destroy (&f);
    f = s_filter ("{\"must\": {\"has_id\": [5, 6, 500]}}");
    ck_assert_uint_eq (segment_count (seg, f), 2);
    filter_destroy (&f);
    pointid_t five = s_num (5);
    segment_delete (seg, &five);
    ck_assert_uint_eq (segment_count (seg, NULL), 99);
    f = s_filter ("{\"must\": {\"has_id\": [5, 6, 500]}}");
    ck_assert_uint_eq (segment_count (seg, f), 1);
    filter_destroy (&f);
    segment_destroy (&seg);
}
END_TEST

//  --- slots, index marks, observer, placement -------------------------------

START_TEST (test_indexed_marks_clear_when_the_vector_changes)
{
    segment_t *seg = s_simple ();
    float v [4] = { 1, 2, 3, 4 };
    for (uint64_t i = 0; i < 10; i++)
        ck_assert_int_eq (s_put (seg, i, v, NULL), 0);
    ck_assert_uint_eq (segment_indexed_count (seg, ""), 0);
    ck_assert_uint_eq (segment_next_unindexed (seg, "", 0), 0);
    for (uint32_t slot = 0; slot < 10; slot++)
        ck_assert_int_eq (segment_set_indexed (seg, "", slot), 0);
    ck_assert_int_eq (segment_set_indexed (seg, "", 3), 0);      //  twice: counted once
    ck_assert_uint_eq (segment_indexed_count (seg, ""), 10);
    ck_assert_uint_eq (segment_next_unindexed (seg, "", 0), UINT32_MAX);
    ck_assert_int_eq (segment_set_indexed (seg, "", 10), -SH_ENOTFOUND);
    ck_assert_int_eq (segment_set_indexed (seg, "nope", 1), -SH_ENOTFOUND);
    //  An upsert, a vector update, a delete: each clears its slot's mark.
    pointid_t two = s_num (2), five = s_num (5), seven = s_num (7);
    uint32_t slot2, slot5, slot7;
    ck_assert (segment_slot_of (seg, &two, &slot2));
    ck_assert (segment_slot_of (seg, &five, &slot5));
    ck_assert (segment_slot_of (seg, &seven, &slot7));
    ck_assert_int_eq (s_put (seg, 2, v, "{\"a\": 1}"), 0);
    segment_vec_t vec = s_dense ("", v, 4);
    char err [128];
    ck_assert_int_eq (segment_update_vectors (seg, &five, 11, &vec, 1, err, sizeof err), 0);
    ck_assert_int_eq (segment_delete (seg, &seven), 0);
    ck_assert (!segment_is_indexed (seg, "", slot2));
    ck_assert (!segment_is_indexed (seg, "", slot5));
    ck_assert (!segment_is_indexed (seg, "", slot7));
    ck_assert_uint_eq (segment_indexed_count (seg, ""), 7);
    //  A payload edit leaves the vector, and its mark, alone.
    pointid_t one = s_num (1);
    json_t *p = s_json ("{\"b\": 2}");
    ck_assert_int_eq (segment_set_payload (seg, &one, 12, p, NULL), 0);
    json_decref (p);
    ck_assert (segment_is_indexed (seg, "", 1));
    //  Unindexed slots in order; a deleted slot has no vector to index.
    ck_assert_uint_eq (segment_next_unindexed (seg, "", 0), slot2 < slot5 ? slot2 : slot5);
    ck_assert_uint_eq (segment_next_unindexed (seg, "", (slot2 > slot5 ? slot2 : slot5) + 1),
                       UINT32_MAX);
    const uint64_t *bits = segment_indexed_bits (seg, "");
    ck_assert_ptr_nonnull (bits);
    ck_assert (bits [0] & 1);
    segment_clear_indexed (seg, "");
    ck_assert_uint_eq (segment_indexed_count (seg, ""), 0);
    segment_destroy (&seg);
}
END_TEST

START_TEST (test_search_slots_scans_candidates_or_unindexed_only)
{
    segment_t *seg = s_simple ();
    for (uint64_t i = 0; i < 20; i++) {
        float v [4] = { (float) i, 0, 0, 0 };
        ck_assert_int_eq (s_put (seg, i, v, NULL), 0);
    }
    float q [4] = { 1, 0, 0, 0 };
    segment_search_t req = { .name = "", .query = s_dense ("", q, 4), .limit = 3 };
    segment_hit_t hits [20];
    uint32_t hit_slots [20];
    char err [128];
    //  Dot with (1,0,0,0): the largest first; indexed ones are skipped.
    for (uint32_t slot = 15; slot < 20; slot++)
        ck_assert_int_eq (segment_set_indexed (seg, "", slot), 0);
    int n = segment_search_slots (seg, &req, NULL, 0, true, hits, hit_slots, err, sizeof err);
    ck_assert_int_eq (n, 3);
    ck_assert_uint_eq (hits [0].id.num, 14);
    ck_assert_uint_eq (hit_slots [0], 14);
    ck_assert_float_eq (hits [0].score, 14.0f);
    n = segment_search_slots (seg, &req, NULL, 0, false, hits, NULL, err, sizeof err);
    ck_assert_int_eq (n, 3);
    ck_assert_uint_eq (hits [0].id.num, 19);
    //  Candidates: only those, and only live ones.
    uint32_t cands [] = { 2, 4, 17, 30 };
    pointid_t four = s_num (4);
    ck_assert_int_eq (segment_delete (seg, &four), 0);
    n = segment_search_slots (seg, &req, cands, 4, false, hits, hit_slots, err, sizeof err);
    ck_assert_int_eq (n, 2);
    ck_assert_uint_eq (hits [0].id.num, 17);
    ck_assert_uint_eq (hits [1].id.num, 2);
    n = segment_search_slots (seg, &req, cands, 4, true, hits, hit_slots, err, sizeof err);
    ck_assert_int_eq (n, 1);
    ck_assert_uint_eq (hits [0].id.num, 2);
    n = segment_search_slots (seg, &req, cands, 0, false, hits, hit_slots, err, sizeof err);
    ck_assert_int_eq (n, 0);
    ck_assert_float_eq (segment_slot_score (seg, "", q, 17), 17.0f);
    ck_assert (isnan (segment_slot_score (seg, "", q, 4)));
    //  Count, select and scroll over candidates.
    ck_assert_uint_eq (segment_count_slots (seg, NULL, cands, 4), 2);
    pointid_t *ids;
    ck_assert_uint_eq (segment_select_slots (seg, NULL, cands, 4, &ids), 2);
    free (ids);
    pointid_t page [4], next;
    bool has_next;
    size_t got = segment_scroll_slots (seg, NULL, cands, 4, NULL, 1, page, &next, &has_next);
    ck_assert_uint_eq (got, 1);
    ck_assert_uint_eq (page [0].num, 2);
    ck_assert (has_next);
    ck_assert_uint_eq (next.num, 17);
    segment_destroy (&seg);
}
END_TEST

typedef struct {
    int adds, removes, updates;
    uint32_t last_slot;
    bool last_had_payload;
} s_events_t;

static void
s_observe (uint32_t slot, const json_t *old_payload, bool was_live, const json_t *new_payload,
           bool is_live, void *arg)
{
    s_events_t *ev = arg;
    ev->last_slot = slot;
    ev->last_had_payload = old_payload != NULL;
    if (!was_live && is_live)
        ev->adds++;
    else
    if (was_live && !is_live)
        ev->removes++;
    else {
        ck_assert (was_live && is_live);
        ev->updates++;
    }
}

START_TEST (test_observer_sees_every_payload_change)
{
    segment_t *seg = s_simple ();
    s_events_t ev = { 0 };
    segment_set_observer (seg, s_observe, &ev);
    float v [4] = { 1, 2, 3, 4 };
    ck_assert_int_eq (s_put (seg, 1, v, "{\"a\": 1}"), 0);
    ck_assert_int_eq (s_put (seg, 2, v, NULL), 0);
    ck_assert_int_eq (ev.adds, 2);
    ck_assert_int_eq (s_put (seg, 1, v, "{\"a\": 2}"), 0);
    ck_assert_int_eq (ev.updates, 1);
    ck_assert (ev.last_had_payload);
    pointid_t one = s_num (1);
    json_t *p = s_json ("{\"b\": 1}");
    ck_assert_int_eq (segment_set_payload (seg, &one, 5, p, NULL), 0);
    ck_assert_int_eq (segment_overwrite_payload (seg, &one, 6, p), 0);
    json_decref (p);
    const char *keys [] = { "b" };
    ck_assert_int_eq (segment_delete_payload (seg, &one, 7, keys, 1), 0);
    ck_assert_int_eq (segment_clear_payload (seg, &one, 8), 0);
    ck_assert_int_eq (ev.updates, 5);
    //  Vector-only writes do not touch the payload.
    segment_vec_t vec = s_dense ("", v, 4);
    char err [128];
    ck_assert_int_eq (segment_update_vectors (seg, &one, 9, &vec, 1, err, sizeof err), 0);
    ck_assert_int_eq (ev.updates, 5);
    ck_assert_int_eq (segment_delete (seg, &one), 0);
    ck_assert_int_eq (ev.removes, 1);
    ck_assert_int_eq (segment_delete (seg, &one), -SH_ENOTFOUND);
    ck_assert_int_eq (ev.removes, 1);
    segment_set_observer (seg, NULL, NULL);
    ck_assert_int_eq (s_put (seg, 3, v, NULL), 0);
    ck_assert_int_eq (ev.adds, 2);
    segment_destroy (&seg);
}
END_TEST

START_TEST (test_points_go_back_to_reserved_slots)
{
    segment_t *seg = s_simple ();
    s_events_t ev = { 0 };
    segment_set_observer (seg, s_observe, &ev);
    ck_assert_int_eq (segment_reserve_slots (seg, 100), 0);
    ck_assert_uint_eq (segment_slot_count (seg), 100);
    ck_assert_uint_eq (segment_size (seg), 0);
    float v [4] = { 1, 2, 3, 4 };
    segment_vec_t vec = s_dense ("", v, 4);
    char err [128];
    pointid_t a = s_num (1000), b = s_num (2000), c = s_num (3000);
    json_t *p = s_json ("{\"x\": 1}");
    ck_assert_int_eq (segment_upsert_at (seg, 42, &a, 5, &vec, 1, p, err, sizeof err), 0);
    json_decref (p);
    ck_assert_int_eq (ev.adds, 1);
    ck_assert_uint_eq (ev.last_slot, 42);
    //  Not a hole any more; the same id cannot go twice.
    ck_assert_int_eq (segment_upsert_at (seg, 42, &b, 5, &vec, 1, NULL, err, sizeof err),
                      -SH_EINVAL);
    ck_assert_int_eq (segment_upsert_at (seg, 43, &a, 5, &vec, 1, NULL, err, sizeof err),
                      -SH_EEXIST);
    ck_assert_int_eq (segment_upsert_at (seg, 100, &b, 5, &vec, 1, NULL, err, sizeof err),
                      -SH_EINVAL);
    //  A plain upsert never takes a hole.
    ck_assert_int_eq (segment_upsert (seg, &b, 6, &vec, 1, NULL, err, sizeof err), 0);
    uint32_t slot;
    ck_assert (segment_slot_of (seg, &b, &slot));
    ck_assert_uint_eq (slot, 100);
    ck_assert (segment_slot_of (seg, &a, &slot));
    ck_assert_uint_eq (slot, 42);
    ck_assert (segment_slot_live (seg, 42));
    ck_assert (!segment_slot_live (seg, 41));
    ck_assert (pointid_eq (segment_slot_id (seg, 42), &a));
    ck_assert_uint_eq (segment_slot_version (seg, 42), 5);
    ck_assert_int_eq (json_integer_value (json_object_get (segment_slot_payload (seg, 42),
                                                           "x")), 1);
    ck_assert (segment_slot_has_vector (seg, "", 42));
    ck_assert (!segment_slot_has_vector (seg, "", 41));
    //  Reclaimed holes are reused, lowest first.
    segment_reclaim_holes (seg);
    ck_assert_int_eq (segment_upsert (seg, &c, 7, &vec, 1, NULL, err, sizeof err), 0);
    ck_assert (segment_slot_of (seg, &c, &slot));
    ck_assert_uint_eq (slot, 0);
    ck_assert_int_eq (segment_upsert_at (seg, 1, &c, 5, &vec, 1, NULL, err, sizeof err),
                      -SH_EINVAL);
    ck_assert_uint_eq (segment_size (seg), 3);
    ck_assert_uint_eq (segment_count (seg, NULL), 3);
    segment_destroy (&seg);
}
END_TEST


//  Dense rows on whole cache lines: the array starts on a 64-byte boundary
//  and the stride pads dim to 16 floats (below 16, to a power of two), for
//  every dim, through growth and deletes; each row reads back as written,
//  and what lies between rows is not part of any vector (exact search and
//  scores see only dim floats).
START_TEST (test_dense_rows_start_on_cache_lines)
{
    const uint32_t dims [] = { 1, 3, 4, 5, 9, 16, 17, 24, 100, 784 };
    const size_t strides [] = { 1, 4, 4, 8, 16, 16, 32, 32, 112, 784 };
    for (size_t d = 0; d < sizeof dims / sizeof dims [0]; d++) {
        uint32_t dim = dims [d];
        segment_vspec_t spec = s_spec ("v", dim, DIST_EUCLID);
        segment_t *seg = segment_new (&spec, 1);
        ck_assert_uint_eq (segment_dense_stride (seg, "v"), strides [d]);
        ck_assert_uint_eq (segment_dense_stride (seg, "nope"), 0);
        enum { N = 3000 };
        float *rows = malloc ((size_t) N * dim * sizeof (float));
        //  Its own numbers, so the other tests' sequences stay as they were.
        uint32_t x = 12345 + dim;
        for (size_t i = 0; i < (size_t) N * dim; i++) {
            x = x * 1664525u + 1013904223u;
            rows [i] = (float) (x >> 8) / 16777216.0f - 0.5f;
        }
        char err [128];
        for (uint64_t n = 0; n < N; n++) {
            pointid_t id = s_num (n);
            segment_vec_t vec = s_dense ("v", rows + n * dim, dim);
            ck_assert_int_eq (segment_upsert (seg, &id, 1, &vec, 1, NULL, err, sizeof err),
                              0);
            //  Every growth keeps the array on a line.
            ck_assert_uint_eq ((uintptr_t) segment_dense_base (seg, "v") % 64, 0);
        }
        for (uint64_t n = 0; n < N; n += 3) {
            pointid_t id = s_num (n);
            ck_assert_int_eq (segment_delete (seg, &id), 0);
        }
        for (uint64_t n = 0; n < N; n += 3) {
            pointid_t id = s_num (n);
            segment_vec_t vec = s_dense ("v", rows + n * dim, dim);
            ck_assert_int_eq (segment_upsert (seg, &id, 2, &vec, 1, NULL, err, sizeof err),
                              0);
        }
        const float *base = segment_dense_base (seg, "v");
        size_t stride = segment_dense_stride (seg, "v");
        for (uint64_t n = 0; n < N; n++) {
            pointid_t id = s_num (n);
            uint32_t slot;
            ck_assert (segment_slot_of (seg, &id, &slot));
            const float *row = base + (size_t) slot * stride;
            ck_assert_uint_eq ((uintptr_t) row % (stride >= 16 ? 64 : stride * 4), 0);
            ck_assert (memcmp (row, rows + n * dim, dim * sizeof (float)) == 0);
            segment_vec_t got;
            ck_assert_int_eq (segment_get_vector (seg, &id, "v", &got), 0);
            ck_assert_ptr_eq (got.dense, row);
            //  Each point is its own nearest, at distance 0.
            if (n % 97 == 0) {
                segment_search_t req = { .name = "v", .query = s_dense ("v", row, dim),
                                         .limit = 1 };
                segment_hit_t hit;
                ck_assert_int_eq (segment_search (seg, &req, &hit, err, sizeof err), 1);
                ck_assert (hit.score == 0.0f);
                ck_assert (segment_slot_score (seg, "v", row, slot) == 0.0f);
            }
        }
        free (rows);
        segment_destroy (&seg);
    }
}
END_TEST

Suite *
segment_suite (void)
{
    Suite *s = suite_create ("segment");
    TCase *tc = tcase_create ("points");
    tcase_add_test (tc, test_new_refuses_bad_specs);
    tcase_add_test (tc, test_upsert_get_delete);
    tcase_add_test (tc, test_deleted_slots_are_reused);
    tcase_add_test (tc, test_many_ids_survive_growth_and_deletes);
    suite_add_tcase (s, tc);
    tc = tcase_create ("vectors");
    tcase_add_test (tc, test_named_vectors_and_missing_ones);
    tcase_add_test (tc, test_bad_writes_change_nothing);
    tcase_add_test (tc, test_dense_rows_start_on_cache_lines);
    suite_add_tcase (s, tc);
    tc = tcase_create ("payload");
    tcase_add_test (tc, test_payload_edits_are_copy_on_write);
    suite_add_tcase (s, tc);
    tc = tcase_create ("search");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_search_matches_brute_force_cosine);
    tcase_add_test (tc, test_search_matches_brute_force_euclid);
    tcase_add_test (tc, test_search_matches_brute_force_dot);
    tcase_add_test (tc, test_search_matches_brute_force_manhattan);
    tcase_add_test (tc, test_search_breaks_ties_by_smaller_id);
    tcase_add_test (tc, test_search_rejects_bad_requests);
    tcase_add_test (tc, test_sparse_search_scores_shared_indices_only);
    suite_add_tcase (s, tc);
    tc = tcase_create ("scroll");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_scroll_pages_cover_every_id_once);
    tcase_add_test (tc, test_count_and_select_apply_the_filter);
    suite_add_tcase (s, tc);
    tc = tcase_create ("slots");
    tcase_add_test (tc, test_indexed_marks_clear_when_the_vector_changes);
    tcase_add_test (tc, test_search_slots_scans_candidates_or_unindexed_only);
    tcase_add_test (tc, test_observer_sees_every_payload_change);
    tcase_add_test (tc, test_points_go_back_to_reserved_slots);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (segment_suite)
