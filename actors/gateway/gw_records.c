/*  gw_records: what the point and search handlers share to turn shard
    replies into Qdrant's JSON: the collection lookup that answers 404, and
    the conversion of a shard record (proto/msg.h) into a Record or a
    ScoredPoint.

    The shapes follow Qdrant's serialisation (api::rest Record / ScoredPoint):
    a ScoredPoint (a record with a "score") is {"id", "version", "score",
    "payload"?, "vector"?}; a Record is {"id", "payload"?, "vector"?}. payload
    and vector are left out when the record has none (they were not asked
    for), as serde's skip_serializing_if = "Option::is_none" does. A vector
    map holding only the unnamed dense vector of a collection configured with
    a single unnamed VectorParams is output as a plain array; any other
    vectors are output as a map of name to array or {"indices", "values"}.
*/
#include "actors/gateway/gw.h"
#include "common/fmtnum.h"
#include "common/log.h"
#include "proto/vecref.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

json_t *
gw_collection_or_404 (gw_req_t *req)
{
    const char *name = req->params [0];
    json_t *collection = gw_meta_collection (gw_meta (req->gw), name, NULL);
    if (!collection)
        gw_fail (req, -SH_ENOTFOUND, "Not found: Collection `%s` doesn't exist!",
                 name ? name : "");
    return collection;
}

json_t *
gw_json_float (float value)
{
    if (!isfinite (value))
        return json_null ();
    //  The double nearest the float's shortest decimal: it prints short
    //  again (0.1, not 0.100000001) when the response is written.
    return json_real (fmtnum_float_as_double (value));
}

//  True when the collection's "vectors" config is one unnamed VectorParams
//  ({"size", "distance", ...}) rather than a map of names.
static bool
s_single_unnamed (const json_t *collection)
{
    const json_t *vectors = json_object_get (
        json_object_get (json_object_get (collection, "config"), "params"), "vectors");
    return json_is_object (vectors) && json_object_get (vectors, "size") != NULL;
}

static json_t *
s_dense_json (envelope_t *reply, const json_t *ref)
{
    const float *v = NULL;
    uint32_t dim = 0;
    if (vecref_get (reply, ref, &v, &dim))
        return NULL;
    json_t *array = json_array ();
    for (uint32_t i = 0; i < dim; i++)
        json_array_append_new (array, gw_json_float (v [i]));
    return array;
}

static json_t *
s_sparse_json (const json_t *sparse)
{
    const json_t *indices = json_object_get (sparse, "indices");
    const json_t *values = json_object_get (sparse, "values");
    if (!json_is_array (indices) || !json_is_array (values)
        || json_array_size (indices) != json_array_size (values))
        return NULL;
    json_t *out_values = json_array ();
    for (size_t i = 0; i < json_array_size (values); i++) {
        const json_t *value = json_array_get (values, i);
        if (!json_is_number (value)) {
            json_decref (out_values);
            return NULL;
        }
        json_array_append_new (out_values,
                               gw_json_float ((float) json_number_value (value)));
    }
    for (size_t i = 0; i < json_array_size (indices); i++)
        if (!json_is_integer (json_array_get (indices, i))) {
            json_decref (out_values);
            return NULL;
        }
    return json_pack ("{sOso}", "indices", indices, "values", out_values);
}

//  One vector of a record's map: a vecref (dense) or {"indices","values"}.
static json_t *
s_vector_json (envelope_t *reply, const json_t *value)
{
    if (vecref_is (value))
        return s_dense_json (reply, value);
    if (json_is_object (value) && json_object_get (value, "indices"))
        return s_sparse_json (value);
    return NULL;
}

json_t *
gw_record_to_json (const json_t *collection, envelope_t *reply, const json_t *record)
{
    const json_t *id = json_object_get (record, "id");
    if (!json_is_object (record) || !(json_is_integer (id) || json_is_string (id))) {
        log_warn ("gateway: malformed record from a shard (no id)");
        return NULL;
    }
    json_t *out = json_object ();
    json_object_set (out, "id", (json_t *) id);
    const json_t *score = json_object_get (record, "score");
    if (score) {
        if (!json_is_number (score)) {
            log_warn ("gateway: malformed record from a shard (score)");
            json_decref (out);
            return NULL;
        }
        const json_t *version = json_object_get (record, "version");
        json_object_set_new (out, "version", json_is_integer (version)
                                                 ? json_incref ((json_t *) version)
                                                 : json_integer (0));
        json_object_set_new (out, "score", gw_json_float ((float) json_number_value (score)));
    }
    const json_t *payload = json_object_get (record, "payload");
    if (payload && !json_is_null (payload))
        json_object_set (out, "payload", (json_t *) payload);

    const json_t *vectors = json_object_get (record, "vectors");
    if (vectors && !json_is_null (vectors)) {
        if (!json_is_object (vectors)) {
            log_warn ("gateway: malformed record from a shard (vectors)");
            json_decref (out);
            return NULL;
        }
        const json_t *unnamed = json_object_get (vectors, "");
        json_t *vector = NULL;
        if (json_object_size (vectors) == 1 && vecref_is (unnamed)
            && s_single_unnamed (collection))
            vector = s_dense_json (reply, unnamed);
        else {
            vector = json_object ();
            const char *name;
            json_t *value;
            json_object_foreach ((json_t *) vectors, name, value) {
                json_t *one = s_vector_json (reply, value);
                if (!one) {
                    json_decref (vector);
                    vector = NULL;
                    break;
                }
                json_object_set_new (vector, name, one);
            }
        }
        if (!vector) {
            log_warn ("gateway: malformed vector in a shard record");
            json_decref (out);
            return NULL;
        }
        json_object_set_new (out, "vector", vector);
    }
    const json_t *order_value = json_object_get (record, "order_value");
    if (order_value && !json_is_null (order_value))
        json_object_set (out, "order_value", (json_t *) order_value);
    return out;
}
