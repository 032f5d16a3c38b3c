/*  gw_collections: /collections, aliases and a collection's cluster setup.

    Reads (list, info, exists, aliases, cluster info) come from the metadata
    cache, plus a SHARD_INFO fan-out for point counts (collection info: every
    shard, local or remote; cluster info: this peer's replicas, and each
    running transfer's progress from its source). Writes (create, update,
    delete, alias changes, shard moves) are validated here, turned into the
    raft actor's ops (proto/msg.h; a move is start_transfer, its abort
    abort_transfer) and proposed with META_PROPOSE; the reply carries the
    state the op produced, which is installed in the cache at once so the
    client's next request sees its own change.

    Validation follows Qdrant: a body that does not deserialize (wrong type,
    unknown enum variant, missing field) is 400 "Format error in JSON body:
    ..."; a value out of range is 422 "Validation error in JSON body: [field:
    ...]". Fields Qdrant does not know are ignored, as its request bodies do
    (so clients may send newer ones), except init_from, which older Qdrant
    honoured and shoal cannot: refusing it beats silently not copying. create_collection fills
    in Qdrant's defaults so the stored config is the full CollectionConfig
    that GET /collections/{name} returns.
*/
#include "actors/gateway/gw.h"
#include "actors/gateway/gw_replicas.h"
#include "common/filter.h"
#include "common/log.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Largest dense vector dimension accepted, as Qdrant's.
#define S_MAX_DIM 65536
//  Longest a collection info waits for its shards' counts (ms).
#define S_INFO_WAIT_MS 10000
//  How often a wait=true payload index creation asks whether it is built (ms).
#define S_INDEX_POLL_MS 10
//  Longest GET /collections/{name}/cluster waits for SHARD_INFO (ms).
#define S_CLUSTER_INFO_WAIT_MS 3000
//  Longest a collection or alias name.
#define S_MAX_NAME 255

//  --- validation helpers ----------------------------------------------------------
//  Each returns 0, or -SH_EINVAL after answering the request.

//  serde's way of naming a JSON value in "invalid type" messages.
static void
s_describe (const json_t *value, char *buf, size_t size)
{
    switch (json_typeof (value)) {
        case JSON_STRING: {
            const char *text = json_string_value (value);
            snprintf (buf, size, "string \"%.40s%s\"", text, strlen (text) > 40 ? "..." : "");
            break;
        }
        case JSON_INTEGER:
            snprintf (buf, size, "integer `%" JSON_INTEGER_FORMAT "`", json_integer_value (value));
            break;
        case JSON_REAL:
            snprintf (buf, size, "floating point `%g`", json_real_value (value));
            break;
        case JSON_TRUE:
            snprintf (buf, size, "boolean `true`");
            break;
        case JSON_FALSE:
            snprintf (buf, size, "boolean `false`");
            break;
        case JSON_NULL:
            snprintf (buf, size, "null");
            break;
        case JSON_ARRAY:
            snprintf (buf, size, "a sequence");
            break;
        default:
            snprintf (buf, size, "a map");
            break;
    }
}

static int
s_bad_type (gw_req_t *req, const char *path, const json_t *value, const char *expected)
{
    char what [96];
    s_describe (value, what, sizeof what);
    gw_fail (req, -SH_EINVAL, "Format error in JSON body: %s: invalid type: %s, expected %s",
             path, what, expected);
    return -SH_EINVAL;
}

static int
s_invalid (gw_req_t *req, const char *path, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_invalid (gw_req_t *req, const char *path, const char *fmt, ...)
{
    char text [256];
    va_list args;
    va_start (args, fmt);
    vsnprintf (text, sizeof text, fmt, args);
    va_end (args);
    gw_fail (req, -SH_EUNPROC, "Validation error in JSON body: [%s: %s]", path, text);
    return -SH_EINVAL;
}

//  prefix.key into buf; a path too long for buf is cut (it only names a
//  field in an error message).
static void
s_join (char *buf, size_t size, const char *prefix, const char *key)
{
    int n = prefix && *prefix ? snprintf (buf, size, "%s.%s", prefix, key)
                              : snprintf (buf, size, "%s", key);
    if (n < 0)
        buf [0] = 0;
}

//  Rejects keys of obj not in `known` (NULL-terminated), naming the first.
static int
s_known_fields (gw_req_t *req, const json_t *obj, const char *const *known)
{
    const char *key;
    json_t *value;
    json_object_foreach ((json_t *) obj, key, value) {
        bool ok = false;
        for (size_t i = 0; known [i] && !ok; i++)
            ok = streq (key, known [i]);
        if (ok)
            continue;
        char list [1024] = "";
        for (size_t i = 0; known [i]; i++) {
            size_t len = strlen (list);
            snprintf (list + len, sizeof list - len, "%s`%s`", i ? ", " : "", known [i]);
        }
        gw_fail (req, -SH_EINVAL,
                 "Format error in JSON body: unknown field `%s`, expected one of %s", key,
                 list);
        return -SH_EINVAL;
    }
    return 0;
}

//  obj[key] as an unsigned integer in [min, max]; absent or null leaves
//  *present false.
static int
s_uint (gw_req_t *req, const json_t *obj, const char *key, const char *prefix, uint64_t min,
        uint64_t max, bool *present, uint64_t *out)
{
    char path [512];
    s_join (path, sizeof path, prefix, key);
    *present = false;
    const json_t *value = json_object_get (obj, key);
    if (!value || json_is_null (value))
        return 0;
    if (!json_is_integer (value))
        return s_bad_type (req, path, value, "an unsigned integer");
    json_int_t v = json_integer_value (value);
    if (v < 0) {
        gw_fail (req, -SH_EINVAL,
                 "Format error in JSON body: %s: invalid value: integer `%" JSON_INTEGER_FORMAT
                 "`, expected an unsigned integer", path, v);
        return -SH_EINVAL;
    }
    if ((uint64_t) v < min || (uint64_t) v > max) {
        if (max == UINT64_MAX)
            return s_invalid (req, path, "value %" JSON_INTEGER_FORMAT
                              " invalid, must be %" PRIu64 " or larger", v, min);
        return s_invalid (req, path, "value %" JSON_INTEGER_FORMAT
                          " invalid, must be from %" PRIu64 " to %" PRIu64, v, min, max);
    }
    *present = true;
    *out = (uint64_t) v;
    return 0;
}

static int
s_number (gw_req_t *req, const json_t *obj, const char *key, const char *prefix, double min,
          double max, bool *present, double *out)
{
    char path [512];
    s_join (path, sizeof path, prefix, key);
    *present = false;
    const json_t *value = json_object_get (obj, key);
    if (!value || json_is_null (value))
        return 0;
    if (!json_is_number (value))
        return s_bad_type (req, path, value, "a number");
    double v = json_number_value (value);
    if (!(v >= min && v <= max))
        return s_invalid (req, path, "value %g invalid, must be from %g to %g", v, min, max);
    *present = true;
    *out = v;
    return 0;
}

static int
s_bool (gw_req_t *req, const json_t *obj, const char *key, const char *prefix)
{
    const json_t *value = json_object_get (obj, key);
    if (!value || json_is_null (value) || json_is_boolean (value))
        return 0;
    char path [512];
    s_join (path, sizeof path, prefix, key);
    return s_bad_type (req, path, value, "a boolean");
}

//  obj[key] one of `variants` (exact spelling, as serde's enums).
static int
s_enum (gw_req_t *req, const json_t *obj, const char *key, const char *prefix,
        const char *const *variants)
{
    const json_t *value = json_object_get (obj, key);
    if (!value || json_is_null (value))
        return 0;
    char path [512];
    s_join (path, sizeof path, prefix, key);
    if (!json_is_string (value))
        return s_bad_type (req, path, value, "a string");
    const char *text = json_string_value (value);
    for (size_t i = 0; variants [i]; i++)
        if (streq (text, variants [i]))
            return 0;
    char list [256] = "";
    for (size_t i = 0; variants [i]; i++) {
        size_t len = strlen (list);
        snprintf (list + len, sizeof list - len, "%s`%s`", i ? ", " : "", variants [i]);
    }
    gw_fail (req, -SH_EINVAL,
             "Format error in JSON body: %s: unknown variant `%.64s`, expected one of %s", path,
             text, list);
    return -SH_EINVAL;
}

static int
s_object_or_null (gw_req_t *req, const json_t *obj, const char *key, const char *prefix,
                  const char *expected)
{
    const json_t *value = json_object_get (obj, key);
    if (!value || json_is_null (value) || json_is_object (value))
        return 0;
    char path [512];
    s_join (path, sizeof path, prefix, key);
    return s_bad_type (req, path, value, expected);
}

//  A copy of obj without null members (a "diff" where null means unchanged).
static json_t *
s_without_nulls (const json_t *obj)
{
    json_t *out = json_object ();
    const char *key;
    json_t *value;
    json_object_foreach ((json_t *) obj, key, value)
        if (!json_is_null (value))
            json_object_set (out, key, value);
    return out;
}

static const char *const s_memory [] = { "cold", "cached", "pinned", NULL };
static const char *const s_datatypes [] = { "float32", "uint8", "float16", "turbo4", NULL };

//  HnswConfigDiff -> *out (nulls dropped).
static int
s_hnsw_diff (gw_req_t *req, const json_t *value, const char *path, json_t **out)
{
    *out = NULL;
    if (!value || json_is_null (value))
        return 0;
    if (!json_is_object (value))
        return s_bad_type (req, path, value, "struct HnswConfigDiff");
    bool present;
    uint64_t n;
    if (s_uint (req, value, "m", path, 0, UINT64_MAX, &present, &n)
        || s_uint (req, value, "ef_construct", path, 4, UINT64_MAX, &present, &n)
        || s_uint (req, value, "full_scan_threshold", path, 10, UINT64_MAX, &present, &n)
        || s_uint (req, value, "max_indexing_threads", path, 0, UINT64_MAX, &present, &n)
        || s_uint (req, value, "payload_m", path, 0, UINT64_MAX, &present, &n)
        || s_bool (req, value, "on_disk", path) || s_bool (req, value, "inline_storage", path)
        || s_enum (req, value, "memory", path, s_memory))
        return -SH_EINVAL;
    *out = s_without_nulls (value);
    return 0;
}

//  OptimizersConfigDiff -> *out, in the stored (OptimizersConfig) form:
//  max_optimization_threads "auto" is null there.
static int
s_optimizers_diff (gw_req_t *req, const json_t *value, const char *path, json_t **out)
{
    *out = NULL;
    if (!value || json_is_null (value))
        return 0;
    if (!json_is_object (value))
        return s_bad_type (req, path, value, "struct OptimizersConfigDiff");
    bool present;
    uint64_t n;
    double d;
    if (s_number (req, value, "deleted_threshold", path, 0.0, 1.0, &present, &d)
        || s_uint (req, value, "vacuum_min_vector_number", path, 100, UINT64_MAX, &present, &n)
        || s_uint (req, value, "default_segment_number", path, 0, UINT64_MAX, &present, &n)
        || s_uint (req, value, "max_segment_size", path, 1, UINT64_MAX, &present, &n)
        || s_uint (req, value, "memmap_threshold", path, 0, UINT64_MAX, &present, &n)
        || s_uint (req, value, "indexing_threshold", path, 0, UINT64_MAX, &present, &n)
        || s_uint (req, value, "flush_interval_sec", path, 0, UINT64_MAX, &present, &n)
        || s_bool (req, value, "prevent_unoptimized", path))
        return -SH_EINVAL;
    const json_t *threads = json_object_get (value, "max_optimization_threads");
    bool threads_auto = false;
    if (json_is_string (threads)) {
        static const char *const s_auto [] = { "auto", NULL };
        if (s_enum (req, value, "max_optimization_threads", path, s_auto))
            return -SH_EINVAL;
        threads_auto = true;
    }
    else if (s_uint (req, value, "max_optimization_threads", path, 0, UINT64_MAX, &present, &n))
        return -SH_EINVAL;
    *out = s_without_nulls (value);
    if (threads_auto)
        json_object_set_new (*out, "max_optimization_threads", json_null ());
    return 0;
}

static int
s_wal_diff (gw_req_t *req, const json_t *value, const char *path, json_t **out)
{
    *out = NULL;
    if (!value || json_is_null (value))
        return 0;
    if (!json_is_object (value))
        return s_bad_type (req, path, value, "struct WalConfigDiff");
    bool present;
    uint64_t n;
    if (s_uint (req, value, "wal_capacity_mb", path, 1, UINT64_MAX, &present, &n)
        || s_uint (req, value, "wal_segments_ahead", path, 0, UINT64_MAX, &present, &n)
        || s_uint (req, value, "wal_retain_closed", path, 0, UINT64_MAX, &present, &n))
        return -SH_EINVAL;
    *out = s_without_nulls (value);
    return 0;
}

//  QuantizationConfig: {"scalar"|"product"|"binary"|"turbo": {...}}, kept as
//  given; with allow_disabled, the string "Disabled" gives JSON null (unset).
static int
s_quantization (gw_req_t *req, const json_t *value, const char *path, bool allow_disabled,
                json_t **out)
{
    *out = NULL;
    if (!value || json_is_null (value))
        return 0;
    if (allow_disabled && json_is_string (value) && streq (json_string_value (value), "Disabled")) {
        *out = json_null ();
        return 0;
    }
    static const char *const kinds [] = { "scalar", "product", "binary", "turbo", NULL };
    if (!json_is_object (value) || json_object_size (value) != 1)
        return s_bad_type (req, path, value,
                           allow_disabled ? "a quantization config or \"Disabled\""
                                          : "a quantization config");
    if (s_known_fields (req, value, kinds))
        return -SH_EINVAL;
    const char *kind = json_object_iter_key (json_object_iter ((json_t *) value));
    char sub [512];
    s_join (sub, sizeof sub, path, kind);
    if (!json_is_object (json_object_get (value, kind)))
        return s_bad_type (req, sub, json_object_get (value, kind), "a map");
    *out = json_deep_copy (value);
    return 0;
}

//  One VectorParams (create) -> *out (known fields, nulls dropped).
static int
s_vector_params (gw_req_t *req, const json_t *value, const char *path, json_t **out)
{
    *out = NULL;
    if (!json_is_object (value))
        return s_bad_type (req, path, value, "struct VectorParams");
    static const char *const distances [] = { "Cosine", "Euclid", "Dot", "Manhattan", NULL };
    static const char *const comparators [] = { "max_sim", NULL };
    if (!json_object_get (value, "size") || json_is_null (json_object_get (value, "size"))) {
        gw_fail (req, -SH_EINVAL, "Format error in JSON body: %s: missing field `size`", path);
        return -SH_EINVAL;
    }
    if (!json_object_get (value, "distance")
        || json_is_null (json_object_get (value, "distance"))) {
        gw_fail (req, -SH_EINVAL, "Format error in JSON body: %s: missing field `distance`",
                 path);
        return -SH_EINVAL;
    }
    bool present;
    uint64_t size;
    if (s_uint (req, value, "size", path, 1, S_MAX_DIM, &present, &size)
        || s_enum (req, value, "distance", path, distances)
        || s_bool (req, value, "on_disk", path) || s_enum (req, value, "memory", path, s_memory)
        || s_enum (req, value, "datatype", path, s_datatypes)
        || s_object_or_null (req, value, "multivector_config", path,
                             "struct MultiVectorConfig"))
        return -SH_EINVAL;
    const json_t *multi = json_object_get (value, "multivector_config");
    if (json_is_object (multi)) {
        char sub [512];
        s_join (sub, sizeof sub, path, "multivector_config");
        if (!json_object_get (multi, "comparator")) {
            gw_fail (req, -SH_EINVAL,
                     "Format error in JSON body: %s: missing field `comparator`", sub);
            return -SH_EINVAL;
        }
        if (s_enum (req, multi, "comparator", sub, comparators))
            return -SH_EINVAL;
    }
    char sub [512];
    json_t *hnsw = NULL;
    json_t *quant = NULL;
    s_join (sub, sizeof sub, path, "hnsw_config");
    if (s_hnsw_diff (req, json_object_get (value, "hnsw_config"), sub, &hnsw))
        return -SH_EINVAL;
    s_join (sub, sizeof sub, path, "quantization_config");
    if (s_quantization (req, json_object_get (value, "quantization_config"), sub, false,
                        &quant)) {
        if (hnsw)
            json_decref (hnsw);
        return -SH_EINVAL;
    }
    json_t *params = json_pack ("{sIsO}", "size", (json_int_t) size, "distance",
                                json_object_get (value, "distance"));
    if (hnsw)
        json_object_set_new (params, "hnsw_config", hnsw);
    if (quant)
        json_object_set_new (params, "quantization_config", quant);
    static const char *const kept [] = { "on_disk", "memory", "datatype", "multivector_config",
                                         NULL };
    for (size_t i = 0; kept [i]; i++) {
        const json_t *v = json_object_get (value, kept [i]);
        if (v && !json_is_null (v))
            json_object_set (params, kept [i], (json_t *) v);
    }
    *out = params;
    return 0;
}

//  VectorsConfig: one unnamed VectorParams ({"size", "distance"}) or a map
//  of names to VectorParams; absent means no dense vectors ({}).
static int
s_vectors_config (gw_req_t *req, const json_t *value, json_t **out)
{
    *out = NULL;
    if (!value || json_is_null (value)) {
        *out = json_object ();
        return 0;
    }
    if (!json_is_object (value))
        return s_bad_type (req, "vectors", value, "struct VectorParams or a map of them");
    if (json_object_get (value, "size") || json_object_get (value, "distance"))
        return s_vector_params (req, value, "vectors", out);
    json_t *map = json_object ();
    const char *name;
    json_t *params;
    json_object_foreach ((json_t *) value, name, params) {
        if (!*name || strlen (name) > S_MAX_NAME) {
            json_decref (map);
            return s_invalid (req, "vectors", "vector name must be 1 to %d characters",
                              S_MAX_NAME);
        }
        char path [512];
        snprintf (path, sizeof path, "vectors.%s", name);
        json_t *one = NULL;
        if (s_vector_params (req, params, path, &one)) {
            json_decref (map);
            return -SH_EINVAL;
        }
        json_object_set_new (map, name, one);
    }
    *out = map;
    return 0;
}

//  SparseVectorParams (create, and update diffs) -> *out.
static int
s_sparse_params (gw_req_t *req, const json_t *value, const char *path, json_t **out)
{
    *out = NULL;
    if (!json_is_object (value))
        return s_bad_type (req, path, value, "struct SparseVectorParams");
    static const char *const modifiers [] = { "none", "idf", NULL };
    if (s_enum (req, value, "modifier", path, modifiers)
        || s_object_or_null (req, value, "index", path, "struct SparseIndexParams"))
        return -SH_EINVAL;
    const json_t *index = json_object_get (value, "index");
    json_t *result = json_object ();
    if (json_is_object (index)) {
        char sub [512];
        s_join (sub, sizeof sub, path, "index");
        bool present;
        uint64_t n;
        if (s_uint (req, index, "full_scan_threshold", sub, 0, UINT64_MAX, &present, &n)
            || s_bool (req, index, "on_disk", sub) || s_enum (req, index, "memory", sub, s_memory)
            || s_enum (req, index, "datatype", sub, s_datatypes)) {
            json_decref (result);
            return -SH_EINVAL;
        }
        json_object_set_new (result, "index", s_without_nulls (index));
    }
    const json_t *modifier = json_object_get (value, "modifier");
    if (json_is_string (modifier))
        json_object_set (result, "modifier", (json_t *) modifier);
    *out = result;
    return 0;
}

static int
s_sparse_map (gw_req_t *req, const json_t *value, json_t **out)
{
    *out = NULL;
    if (!value || json_is_null (value))
        return 0;
    if (!json_is_object (value))
        return s_bad_type (req, "sparse_vectors", value, "a map of SparseVectorParams");
    json_t *map = json_object ();
    const char *name;
    json_t *params;
    json_object_foreach ((json_t *) value, name, params) {
        if (!*name || strlen (name) > S_MAX_NAME) {
            json_decref (map);
            return s_invalid (req, "sparse_vectors",
                              "vector name must be 1 to %d characters", S_MAX_NAME);
        }
        char path [512];
        snprintf (path, sizeof path, "sparse_vectors.%s", name);
        json_t *one = NULL;
        if (s_sparse_params (req, params, path, &one)) {
            json_decref (map);
            return -SH_EINVAL;
        }
        json_object_set_new (map, name, one);
    }
    *out = map;
    return 0;
}

//  Qdrant's collection name rule (validate_collection_name): 1..255 chars,
//  none of < > : " / \ | ? * and no control characters.
static int
s_check_name (gw_req_t *req, const char *name)
{
    size_t len = name ? strlen (name) : 0;
    if (len < 1 || len > S_MAX_NAME) {
        gw_fail (req, -SH_EUNPROC, "Validation error in path parameters: [name: length must "
                                   "be between 1 and %d]", S_MAX_NAME);
        return -SH_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) name [i];
        if (c < 0x20 || c == 0x7f || strchr ("<>:\"/\\|?*", c)) {
            char shown [8];
            if (c < 0x20 || c == 0x7f)
                snprintf (shown, sizeof shown, "\\x%02x", c);
            else
                snprintf (shown, sizeof shown, "%c", c);
            gw_fail (req, -SH_EUNPROC, "Validation error in path parameters: [name: "
                                       "collection name cannot contain \"%s\" char]", shown);
            return -SH_EINVAL;
        }
    }
    return 0;
}

//  optimizers_config, also accepted as "optimizer_config" (the name GET
//  answers with), as Qdrant's serde alias does; both at once is a duplicate.
static int
s_optimizers_field (gw_req_t *req, const json_t *body, const json_t **out)
{
    const json_t *plural = json_object_get (body, "optimizers_config");
    const json_t *singular = json_object_get (body, "optimizer_config");
    if (plural && singular) {
        gw_fail (req, -SH_EINVAL,
                 "Format error in JSON body: duplicate field `optimizers_config`");
        return -SH_EINVAL;
    }
    *out = plural ? plural : singular;
    return 0;
}

//  --- proposals -------------------------------------------------------------------

//  Proposes op (stolen) and returns the op's result (yours), or NULL after
//  answering the request. `name` is the collection the op is about, for
//  Qdrant's wording of "exists" / "doesn't exist"; NULL forwards the raft
//  actor's own message.
static json_t *
s_propose (gw_req_t *req, json_t *op, const char *name)
{
    envelope_t *request = envelope_new (MSG_META_PROPOSE, 0, req->deadline_ms);
    json_object_set_new (envelope_json (request), "op", op);
    envelope_t *reply = NULL;
    int rc = gw_call_raft (req->conn, &request, &reply);
    if (rc == -SH_ETIMEDOUT) {
        gw_fail (req, -SH_EUNAVAIL,
                 "Service unavailable: the consensus did not commit the operation in time "
                 "(no consensus leader, or the raft actor is not answering); retry");
        return NULL;
    }
    if (rc) {
        gw_fail (req, rc, "Service unavailable: cannot reach the consensus: %s",
                 sh_strerror (rc));
        return NULL;
    }
    int status = envelope_status (reply);
    if (status) {
        if (status == -SH_EEXIST && name)
            gw_fail (req, status, "Wrong input: Collection `%s` already exists!", name);
        else if (status == -SH_ENOTFOUND && name)
            gw_fail (req, status, "Not found: Collection `%s` doesn't exist!", name);
        else
            gw_fail_reply (req, reply);
        envelope_destroy (&reply);
        return NULL;
    }
    json_t *json = envelope_json (reply);
    json_t *state = json_object_get (json, "state");
    if (json_is_object (state))
        gw_meta_update (gw_meta (req->gw), json_incref (state));
    json_t *result = json_object_get (json, "result");
    result = result ? json_incref (result) : json_true ();
    envelope_destroy (&reply);
    return result;
}

//  --- stats ----------------------------------------------------------------------

//  SHARD_INFO of shards of collection, summed into out: every shard from a
//  replica the metadata picks (all), or this peer's replicas only.
static int
s_stats (gw_req_t *req, const json_t *collection, uint64_t deadline_ms, bool all,
         gw_coll_stats_t *out)
{
    memset (out, 0, sizeof *out);
    json_int_t uid = json_integer_value (json_object_get (collection, "uid"));
    const json_t *shards = json_object_get (collection, "shards");
    if (!json_is_array (shards) || uid < 0)
        return 0;
    uint64_t self = gw_peer_id (req->gw);
    char peer [24];
    snprintf (peer, sizeof peer, "%" PRIu64, self);
    size_t n = json_array_size (shards);
    uint32_t *ids = (uint32_t *) calloc (n + 1, sizeof (uint32_t));
    uint64_t *peers = (uint64_t *) calloc (n + 1, sizeof (uint64_t));
    envelope_t **requests = (envelope_t **) calloc (n + 1, sizeof (envelope_t *));
    envelope_t **replies = (envelope_t **) calloc (n + 1, sizeof (envelope_t *));
    assert (ids && peers && requests && replies);
    size_t asked = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *shard = json_array_get (shards, i);
        json_int_t shard_id = json_integer_value (json_object_get (shard, "shard_id"));
        if (shard_id < 0 || shard_id > UINT32_MAX
            || (!all && !json_object_get (json_object_get (shard, "replicas"), peer)))
            continue;
        ids [asked] = (uint32_t) shard_id;
        peers [asked] = self;
        requests [asked] = envelope_new (MSG_SHARD_INFO, 0, deadline_ms);
        asked++;
    }
    out->shards = asked;
    if (asked && req->conn) {
        if (all)
            gw_call_shards (req->conn, (uint64_t) uid, asked, ids, requests, replies);
        else
            gw_call_replicas (req->conn, (uint64_t) uid, asked, ids, peers, requests, replies);
    }
    for (size_t i = 0; i < asked; i++) {
        envelope_destroy (&requests [i]);
        if (!replies [i] || envelope_status (replies [i])) {
            if (replies [i])
                log_debug ("gateway: collection uid=%" JSON_INTEGER_FORMAT " shard %" PRIu32
                           " info: %s", uid, ids [i], envelope_error (replies [i]));
            out->missing++;
            envelope_destroy (&replies [i]);
            continue;
        }
        json_t *info = envelope_json (replies [i]);
        json_int_t v;
        if ((v = json_integer_value (json_object_get (info, "points_count"))) > 0)
            out->points += (uint64_t) v;
        if ((v = json_integer_value (json_object_get (info, "vectors_count"))) > 0)
            out->vectors += (uint64_t) v;
        if ((v = json_integer_value (json_object_get (info, "indexed_vectors_count"))) > 0)
            out->indexed += (uint64_t) v;
        if ((v = json_integer_value (json_object_get (info, "segments_count"))) > 0)
            out->segments += (uint64_t) v;
        const char *status = json_string_value (json_object_get (info, "status"));
        if (status && !streq (status, "green"))
            out->yellow = true;
        const char *field;
        json_t *count;
        json_object_foreach (json_object_get (info, "payload_points"), field, count) {
            if (!json_is_integer (count) || json_integer_value (count) < 0)
                continue;
            if (!out->payload_points)
                out->payload_points = json_object ();
            json_t *sum = json_object_get (out->payload_points, field);
            json_object_set_new (out->payload_points, field,
                                 json_integer (json_integer_value (sum)
                                               + json_integer_value (count)));
        }
        json_t *built;
        json_object_foreach (json_object_get (info, "payload_ready"), field, built) {
            if (!json_is_true (built))
                continue;
            if (!out->payload_ready)
                out->payload_ready = json_object ();
            json_t *sum = json_object_get (out->payload_ready, field);
            json_object_set_new (out->payload_ready, field,
                                 json_integer (json_integer_value (sum) + 1));
        }
        envelope_destroy (&replies [i]);
    }
    free (replies);
    free (requests);
    free (peers);
    free (ids);
    return out->missing ? -SH_ETIMEDOUT : 0;
}

int
gw_collection_stats (gw_req_t *req, const json_t *collection, uint64_t deadline_ms,
                     gw_coll_stats_t *out)
{
    return s_stats (req, collection, deadline_ms, false, out);
}

void
gw_coll_stats_reset (gw_coll_stats_t *stats)
{
    json_decref (stats->payload_points);
    json_decref (stats->payload_ready);
    memset (stats, 0, sizeof *stats);
}

int
gw_collection_stats_all (gw_req_t *req, const json_t *collection, uint64_t deadline_ms,
                         gw_coll_stats_t *out)
{
    return s_stats (req, collection, deadline_ms, true, out);
}

//  --- handlers -----------------------------------------------------------------------

static int
s_cmp_str (const void *a, const void *b)
{
    return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static void
s_list (gw_req_t *req)
{
    json_t *state = gw_meta_state (gw_meta (req->gw));
    json_t *collections = json_object_get (state, "collections");
    size_t n = json_object_size (collections);
    const char **names = (const char **) calloc (n + 1, sizeof (char *));
    assert (names);
    size_t i = 0;
    const char *name;
    json_t *value;
    json_object_foreach (collections, name, value)
        names [i++] = name;
    qsort (names, i, sizeof (char *), s_cmp_str);
    json_t *list = json_array ();
    for (size_t k = 0; k < i; k++)
        json_array_append_new (list, json_pack ("{ss}", "name", names [k]));
    free (names);
    json_decref (state);
    gw_ok (req, json_pack ("{so}", "collections", list));
}

static void
s_info (gw_req_t *req)
{
    json_t *collection = gw_collection_or_404 (req);
    if (!collection)
        return;
    uint64_t deadline = envelope_now_ms () + S_INFO_WAIT_MS;
    if (req->deadline_ms && req->deadline_ms < deadline)
        deadline = req->deadline_ms;
    //  Qdrant's collection info counts every shard of the collection, on
    //  whichever peer it is.
    gw_coll_stats_t stats;
    gw_collection_stats_all (req, collection, deadline, &stats);

    json_t *info = json_object ();
    json_object_set_new (info, "status",
                         json_string (stats.missing || stats.yellow ? "yellow" : "green"));
    json_object_set_new (info, "optimizer_status", json_string ("ok"));
    if (stats.missing) {
        char text [160];
        snprintf (text, sizeof text,
                  "%zu of %zu shards did not answer; their points are not counted",
                  stats.missing, stats.shards);
        json_object_set_new (info, "warnings", json_pack ("[{ss}]", "message", text));
    }
    json_object_set_new (info, "indexed_vectors_count", json_integer ((json_int_t) stats.indexed));
    json_object_set_new (info, "points_count", json_integer ((json_int_t) stats.points));
    json_object_set_new (info, "segments_count", json_integer ((json_int_t) stats.segments));
    json_t *config = json_object_get (collection, "config");
    json_object_set (info, "config", config ? config : json_object ());
    //  PayloadIndexInfo: the stored schema plus how many points the shards
    //  hold a value for.
    json_t *schema = json_object ();
    const char *field;
    json_t *entry;
    json_object_foreach (json_object_get (collection, "payload_schema"), field, entry) {
        json_t *out = json_pack ("{sO}", "data_type", json_object_get (entry, "data_type"));
        json_t *params = json_object_get (entry, "params");
        if (json_is_object (params))
            json_object_set (out, "params", params);
        json_int_t points = json_integer_value (json_object_get (stats.payload_points, field));
        json_object_set_new (out, "points", json_integer (points));
        json_object_set_new (schema, field, out);
    }
    json_object_set_new (info, "payload_schema", schema);
    gw_coll_stats_reset (&stats);
    json_decref (collection);
    gw_ok (req, info);
}

static void
s_exists (gw_req_t *req)
{
    json_t *collection = gw_meta_collection (gw_meta (req->gw), req->params [0], NULL);
    gw_ok (req, json_pack ("{sb}", "exists", collection != NULL));
    if (collection)
        json_decref (collection);
}

static void
s_create (gw_req_t *req)
{
    const char *name = req->params [0];
    if (s_check_name (req, name))
        return;
    json_t *empty = json_object ();
    const json_t *body = req->body ? req->body : empty;
    static const char *const methods [] = { "auto", "custom", NULL };
    json_t *vectors = NULL, *hnsw = NULL, *optim = NULL, *wal = NULL, *quant = NULL;
    json_t *sparse = NULL;
    bool has_shards, has_rf, has_wcf;
    uint64_t shard_number = 1, rf = 1, wcf = 1;
    const json_t *optimizers = NULL;
    if (s_optimizers_field (req, body, &optimizers))
        goto done;
    const json_t *init_from = json_object_get (body, "init_from");
    if (init_from && !json_is_null (init_from)) {
        gw_fail (req, -SH_EINVAL, "Bad request: init_from is not supported; copy the points "
                                  "with scroll and upsert instead");
        goto done;
    }
    if (s_uint (req, body, "shard_number", "", 1, UINT32_MAX, &has_shards, &shard_number)
        || s_uint (req, body, "replication_factor", "", 1, UINT32_MAX, &has_rf, &rf)
        || s_uint (req, body, "write_consistency_factor", "", 1, UINT32_MAX, &has_wcf, &wcf)
        || s_enum (req, body, "sharding_method", "", methods)
        || s_bool (req, body, "on_disk_payload", "")
        || s_object_or_null (req, body, "payload", "", "struct PayloadStorageParams")
        || s_object_or_null (req, body, "strict_mode_config", "", "struct StrictModeConfig")
        || s_object_or_null (req, body, "metadata", "", "a map")
        || s_vectors_config (req, json_object_get (body, "vectors"), &vectors)
        || s_hnsw_diff (req, json_object_get (body, "hnsw_config"), "hnsw_config", &hnsw)
        || s_optimizers_diff (req, optimizers, "optimizers_config", &optim)
        || s_wal_diff (req, json_object_get (body, "wal_config"), "wal_config", &wal)
        || s_quantization (req, json_object_get (body, "quantization_config"),
                           "quantization_config", false, &quant)
        || s_sparse_map (req, json_object_get (body, "sparse_vectors"), &sparse))
        goto done;
    //  A name may not be both a dense and a sparse vector.
    if (sparse && !json_object_get (vectors, "size")) {
        const char *vname;
        json_t *v;
        json_object_foreach (sparse, vname, v)
            if (json_object_get (vectors, vname)) {
                gw_fail (req, -SH_EINVAL, "Bad request: vector name `%s` is used by both a "
                                          "dense and a sparse vector", vname);
                goto done;
            }
    }
    if (!has_shards) {
        //  Qdrant: 1 in single-node mode, else one per peer.
        shard_number = 1;
        if (gw_config (req->gw)->cluster_enabled) {
            json_t *state = gw_meta_state (gw_meta (req->gw));
            size_t peers = json_object_size (json_object_get (state, "peers"));
            json_decref (state);
            if (peers > 1)
                shard_number = peers;
        }
    }
    const json_t *method = json_object_get (body, "sharding_method");
    const json_t *on_disk_payload = json_object_get (body, "on_disk_payload");
    json_t *params = json_pack (
        "{sOsIsosIsIso}", "vectors", vectors, "shard_number", (json_int_t) shard_number,
        "sharding_method",
        json_is_string (method) ? json_incref ((json_t *) method) : json_string ("auto"),
        "replication_factor", (json_int_t) rf, "write_consistency_factor", (json_int_t) wcf,
        "on_disk_payload",
        json_is_boolean (on_disk_payload) ? json_incref ((json_t *) on_disk_payload)
                                          : json_true ());
    const json_t *payload = json_object_get (body, "payload");
    if (json_is_object (payload))
        json_object_set (params, "payload", (json_t *) payload);
    if (sparse)
        json_object_set (params, "sparse_vectors", sparse);

    json_t *hnsw_full = json_pack ("{sisisisisb}", "m", 16, "ef_construct", 100,
                                   "full_scan_threshold", 10000, "max_indexing_threads", 0,
                                   "on_disk", 0);
    if (hnsw)
        json_object_update (hnsw_full, hnsw);
    json_t *optim_full = json_pack ("{sfsisisnsnsisisn}", "deleted_threshold", 0.2,
                                    "vacuum_min_vector_number", 1000, "default_segment_number", 0,
                                    "max_segment_size", "memmap_threshold",
                                    "indexing_threshold", 10000, "flush_interval_sec", 5,
                                    "max_optimization_threads");
    if (optim)
        json_object_update (optim_full, optim);
    json_t *wal_full = json_pack ("{sisi}", "wal_capacity_mb", 32, "wal_segments_ahead", 0);
    if (wal)
        json_object_update (wal_full, wal);
    json_t *config = json_pack ("{sososososo*}", "params", params, "hnsw_config", hnsw_full,
                                "optimizer_config", optim_full, "wal_config", wal_full,
                                "quantization_config", quant);
    if (!quant)
        json_object_set_new (config, "quantization_config", json_null ());
    quant = NULL;                       //  now owned by config
    const json_t *strict = json_object_get (body, "strict_mode_config");
    if (json_is_object (strict))
        json_object_set (config, "strict_mode_config", (json_t *) strict);
    const json_t *metadata = json_object_get (body, "metadata");
    if (json_is_object (metadata))
        json_object_set (config, "metadata", (json_t *) metadata);

    json_t *op = json_pack ("{sssssO}", "type", "create_collection", "name", name, "config",
                            config);
    json_decref (config);
    json_t *result = s_propose (req, op, name);
    if (result) {
        log_info ("gateway: created collection %s", name);
        gw_ok (req, result);
    }
done:
    json_decref (empty);
    if (vectors)
        json_decref (vectors);
    if (hnsw)
        json_decref (hnsw);
    if (optim)
        json_decref (optim);
    if (wal)
        json_decref (wal);
    if (quant)
        json_decref (quant);
    if (sparse)
        json_decref (sparse);
}

//  Sets partial[section] (an object, made on demand) and returns it.
static json_t *
s_section (json_t *partial, const char *section)
{
    json_t *obj = json_object_get (partial, section);
    if (!obj) {
        obj = json_object ();
        json_object_set_new (partial, section, obj);
    }
    return obj;
}

//  VectorParamsDiff for an existing vector -> *out.
static int
s_vector_diff (gw_req_t *req, const json_t *value, const char *path, json_t **out)
{
    *out = NULL;
    if (!json_is_object (value))
        return s_bad_type (req, path, value, "struct VectorParamsDiff");
    if (s_bool (req, value, "on_disk", path) || s_enum (req, value, "memory", path, s_memory))
        return -SH_EINVAL;
    char sub [512];
    json_t *hnsw = NULL, *quant = NULL;
    s_join (sub, sizeof sub, path, "hnsw_config");
    if (s_hnsw_diff (req, json_object_get (value, "hnsw_config"), sub, &hnsw))
        return -SH_EINVAL;
    s_join (sub, sizeof sub, path, "quantization_config");
    if (s_quantization (req, json_object_get (value, "quantization_config"), sub, true,
                        &quant)) {
        if (hnsw)
            json_decref (hnsw);
        return -SH_EINVAL;
    }
    json_t *diff = json_object ();
    if (hnsw)
        json_object_set_new (diff, "hnsw_config", hnsw);
    if (quant)
        json_object_set_new (diff, "quantization_config", quant);
    static const char *const kept [] = { "on_disk", "memory", NULL };
    for (size_t i = 0; kept [i]; i++) {
        const json_t *v = json_object_get (value, kept [i]);
        if (v && !json_is_null (v))
            json_object_set (diff, kept [i], (json_t *) v);
    }
    *out = diff;
    return 0;
}

static void
s_update (gw_req_t *req)
{
    char *name = NULL;
    json_t *collection = gw_meta_collection (gw_meta (req->gw), req->params [0], &name);
    if (!collection) {
        gw_fail (req, -SH_ENOTFOUND, "Not found: Collection `%s` doesn't exist!",
                 req->params [0]);
        return;
    }
    json_t *empty = json_object ();
    const json_t *body = req->body ? req->body : empty;
    json_t *partial = json_object ();
    const json_t *optimizers = NULL;
    if (s_optimizers_field (req, body, &optimizers))
        goto done;
    const json_t *config = json_object_get (collection, "config");
    const json_t *cur_params = json_object_get (config, "params");
    const json_t *cur_vectors = json_object_get (cur_params, "vectors");
    bool single = json_is_object (cur_vectors) && json_object_get (cur_vectors, "size");

    const json_t *vectors = json_object_get (body, "vectors");
    if (vectors && !json_is_null (vectors)) {
        if (!json_is_object (vectors)) {
            s_bad_type (req, "vectors", vectors, "a map of VectorParamsDiff");
            goto done;
        }
        const char *vname;
        json_t *diff_in;
        json_object_foreach ((json_t *) vectors, vname, diff_in) {
            bool exists = single ? !*vname : json_object_get (cur_vectors, vname) != NULL;
            if (!exists) {
                gw_fail (req, -SH_EINVAL, "Wrong input: Not existing vector name error: %s",
                         vname);
                goto done;
            }
            char path [512];
            snprintf (path, sizeof path, "vectors.%s", vname);
            json_t *diff = NULL;
            if (s_vector_diff (req, diff_in, path, &diff))
                goto done;
            json_t *params = s_section (partial, "params");
            if (single)
                json_object_set_new (params, "vectors", diff);
            else
                json_object_set_new (s_section (params, "vectors"), vname, diff);
        }
    }
    const json_t *params = json_object_get (body, "params");
    if (params && !json_is_null (params)) {
        if (!json_is_object (params)) {
            s_bad_type (req, "params", params, "struct CollectionParamsDiff");
            goto done;
        }
        bool present;
        uint64_t n;
        if (s_uint (req, params, "replication_factor", "params", 1, UINT32_MAX, &present, &n)
            || s_uint (req, params, "write_consistency_factor", "params", 1, UINT32_MAX,
                       &present, &n)
            || s_uint (req, params, "read_fan_out_factor", "params", 0, UINT32_MAX, &present, &n)
            || s_uint (req, params, "read_fan_out_delay_ms", "params", 0, UINT64_MAX, &present,
                       &n)
            || s_bool (req, params, "on_disk_payload", "params")
            || s_object_or_null (req, params, "payload", "params",
                                 "struct PayloadStorageParams"))
            goto done;
        json_t *cleaned = s_without_nulls (params);
        json_object_update (s_section (partial, "params"), cleaned);
        json_decref (cleaned);
    }
    json_t *diff = NULL;
    if (s_hnsw_diff (req, json_object_get (body, "hnsw_config"), "hnsw_config", &diff))
        goto done;
    if (diff)
        json_object_set_new (partial, "hnsw_config", diff);
    if (s_optimizers_diff (req, optimizers, "optimizers_config", &diff))
        goto done;
    if (diff)
        json_object_set_new (partial, "optimizer_config", diff);
    if (s_quantization (req, json_object_get (body, "quantization_config"),
                        "quantization_config", true, &diff))
        goto done;
    if (diff)
        json_object_set_new (partial, "quantization_config", diff);

    const json_t *sparse = json_object_get (body, "sparse_vectors");
    if (sparse && !json_is_null (sparse)) {
        if (!json_is_object (sparse)) {
            s_bad_type (req, "sparse_vectors", sparse, "a map of SparseVectorParams");
            goto done;
        }
        const json_t *cur_sparse = json_object_get (cur_params, "sparse_vectors");
        const char *vname;
        json_t *diff_in;
        json_object_foreach ((json_t *) sparse, vname, diff_in) {
            if (!json_object_get (cur_sparse, vname)) {
                gw_fail (req, -SH_EINVAL, "Wrong input: Not existing vector name error: %s",
                         vname);
                goto done;
            }
            char path [512];
            snprintf (path, sizeof path, "sparse_vectors.%s", vname);
            json_t *one = NULL;
            if (s_sparse_params (req, diff_in, path, &one))
                goto done;
            json_object_set_new (s_section (s_section (partial, "params"), "sparse_vectors"),
                                 vname, one);
        }
    }
    if (s_object_or_null (req, body, "strict_mode_config", "", "struct StrictModeConfig")
        || s_object_or_null (req, body, "metadata", "", "a map"))
        goto done;
    const json_t *strict = json_object_get (body, "strict_mode_config");
    if (json_is_object (strict))
        json_object_set (partial, "strict_mode_config", (json_t *) strict);
    //  Metadata merges key by key; a null value removes the key (the raft
    //  actor's deep merge), so nulls are kept here.
    const json_t *metadata = json_object_get (body, "metadata");
    if (json_is_object (metadata))
        json_object_set (partial, "metadata", (json_t *) metadata);

    json_t *op = json_pack ("{sssssO}", "type", "update_collection", "name", name, "config",
                            partial);
    json_t *result = s_propose (req, op, name);
    if (result)
        gw_ok (req, result);
done:
    json_decref (partial);
    json_decref (empty);
    json_decref (collection);
    free (name);
}

static void
s_delete (gw_req_t *req)
{
    const char *name = req->params [0];
    json_t *op = json_pack ("{ssss}", "type", "delete_collection", "name", name);
    json_t *result = s_propose (req, op, NULL);
    if (result) {
        log_info ("gateway: delete collection %s -> %s", name,
                  json_is_true (result) ? "deleted" : "absent");
        gw_ok (req, result);
    }
}

//  One alias action: exactly one of the three kinds, with string fields.
static int
s_alias_action (gw_req_t *req, const json_t *action, size_t index, json_t **out)
{
    static const struct {
        const char *kind;
        const char *fields [3];
    } kinds [] = {
        { "create_alias", { "collection_name", "alias_name", NULL } },
        { "delete_alias", { "alias_name", NULL } },
        { "rename_alias", { "old_alias_name", "new_alias_name", NULL } },
    };
    char path [64];
    snprintf (path, sizeof path, "actions[%zu]", index);
    *out = NULL;
    if (!json_is_object (action) || json_object_size (action) != 1)
        return s_bad_type (req, path, action,
                           "one of create_alias, delete_alias or rename_alias");
    for (size_t k = 0; k < 3; k++) {
        const json_t *inner = json_object_get (action, kinds [k].kind);
        if (!inner)
            continue;
        char sub [512];
        snprintf (sub, sizeof sub, "%s.%s", path, kinds [k].kind);
        if (!json_is_object (inner))
            return s_bad_type (req, sub, inner, "a map");
        json_t *clean = json_object ();
        for (size_t f = 0; kinds [k].fields [f]; f++) {
            const json_t *value = json_object_get (inner, kinds [k].fields [f]);
            if (!json_is_string (value)) {
                json_decref (clean);
                if (!value) {
                    gw_fail (req, -SH_EINVAL,
                             "Format error in JSON body: %s: missing field `%s`", sub,
                             kinds [k].fields [f]);
                    return -SH_EINVAL;
                }
                char field [512];
                s_join (field, sizeof field, sub, kinds [k].fields [f]);
                return s_bad_type (req, field, value, "a string");
            }
            const char *text = json_string_value (value);
            if (!*text || strlen (text) > S_MAX_NAME) {
                json_decref (clean);
                char field [512];
                s_join (field, sizeof field, sub, kinds [k].fields [f]);
                return s_invalid (req, field, "length must be between 1 and %d", S_MAX_NAME);
            }
            json_object_set (clean, kinds [k].fields [f], (json_t *) value);
        }
        *out = json_pack ("{so}", kinds [k].kind, clean);
        return 0;
    }
    return s_bad_type (req, path, action, "one of create_alias, delete_alias or rename_alias");
}

static void
s_change_aliases (gw_req_t *req)
{
    const json_t *actions = req->body ? json_object_get (req->body, "actions") : NULL;
    if (!actions) {
        gw_fail (req, -SH_EINVAL, "Format error in JSON body: missing field `actions`");
        return;
    }
    if (!json_is_array (actions)) {
        s_bad_type (req, "actions", actions, "a sequence");
        return;
    }
    json_t *clean = json_array ();
    for (size_t i = 0; i < json_array_size (actions); i++) {
        json_t *action = NULL;
        if (s_alias_action (req, json_array_get (actions, i), i, &action)) {
            json_decref (clean);
            return;
        }
        json_array_append_new (clean, action);
    }
    json_t *op = json_pack ("{ssso}", "type", "change_aliases", "actions", clean);
    json_t *result = s_propose (req, op, NULL);
    if (result)
        gw_ok (req, result);
}

//  {"aliases": [{"alias_name", "collection_name"}]} for every alias, or
//  only those of `collection` when not NULL; sorted by alias name.
static json_t *
s_aliases_json (json_t *state, const char *collection)
{
    json_t *aliases = json_object_get (state, "aliases");
    size_t n = json_object_size (aliases);
    const char **names = (const char **) calloc (n + 1, sizeof (char *));
    assert (names);
    size_t count = 0;
    const char *alias;
    json_t *target;
    json_object_foreach (aliases, alias, target)
        if (json_is_string (target)
            && (!collection || streq (json_string_value (target), collection)))
            names [count++] = alias;
    qsort (names, count, sizeof (char *), s_cmp_str);
    json_t *list = json_array ();
    for (size_t i = 0; i < count; i++)
        json_array_append_new (list, json_pack ("{ssss}", "alias_name", names [i],
                                                "collection_name",
                                                json_string_value (
                                                    json_object_get (aliases, names [i]))));
    free (names);
    return json_pack ("{so}", "aliases", list);
}

static void
s_collection_aliases (gw_req_t *req)
{
    char *name = NULL;
    json_t *collection = gw_meta_collection (gw_meta (req->gw), req->params [0], &name);
    if (!collection) {
        gw_fail (req, -SH_ENOTFOUND, "Not found: Collection `%s` doesn't exist!",
                 req->params [0]);
        return;
    }
    json_t *state = gw_meta_state (gw_meta (req->gw));
    gw_ok (req, s_aliases_json (state, name));
    json_decref (state);
    json_decref (collection);
    free (name);
}

static void
s_all_aliases (gw_req_t *req)
{
    json_t *state = gw_meta_state (gw_meta (req->gw));
    gw_ok (req, s_aliases_json (state, NULL));
    json_decref (state);
}

//  --- payload indexes ---------------------------------------------------------
//  The schema goes through consensus (every replica of every shard indexes
//  the same fields); each shard actor builds or drops its index when the
//  published state changes. Answered with Qdrant's UpdateResult.

//  The collection (or alias) of the path and its own name, one lookup;
//  NULL after answering 404.
static json_t *
s_collection_named (gw_req_t *req, char **name)
{
    json_t *collection = gw_meta_collection (gw_meta (req->gw), req->params [0], name);
    if (!collection)
        gw_fail (req, -SH_ENOTFOUND, "Not found: Collection `%s` doesn't exist!",
                 req->params [0]);
    return collection;
}

static void
s_index_result (gw_req_t *req, json_t *result, bool wait)
{
    json_int_t applied = json_integer_value (
        json_object_get (gw_meta_state (gw_meta (req->gw)), "applied"));
    json_decref (result);
    gw_ok (req, json_pack ("{sIss}", "operation_id", applied,
                           "status", wait ? "completed" : "acknowledged"));
}

//  wait=true on a new payload index: as Qdrant, the answer comes once the
//  index is built, here once every shard reports it built (a shard that has
//  not applied the new schema yet does not list it). -SH_ETIMEDOUT after
//  answering the request when the deadline passes first.
static int
s_wait_index_built (gw_req_t *req, const char *name, const char *field)
{
    while (true) {
        json_t *collection = gw_meta_collection (gw_meta (req->gw), name, NULL);
        gw_coll_stats_t stats;
        if (collection)
            gw_collection_stats_all (req, collection, req->deadline_ms, &stats);
        bool built = collection && !stats.missing
                  && json_integer_value (json_object_get (stats.payload_ready, field))
                     == (json_int_t) stats.shards;
        if (collection)
            gw_coll_stats_reset (&stats);
        json_decref (collection);
        if (built)
            return 0;
        if (envelope_now_ms () + S_INDEX_POLL_MS >= req->deadline_ms) {
            gw_fail (req, -SH_ETIMEDOUT, "Timeout error: the payload index on `%s` was "
                     "created but is not built on every shard yet", field);
            return -SH_ETIMEDOUT;
        }
        zclock_sleep (S_INDEX_POLL_MS);
    }
}

static void
s_create_index (gw_req_t *req)
{
    static const char *types [] = { "keyword", "integer", "float", "bool", "uuid",
                                    "datetime" };
    bool wait;
    if (!gw_points_write_params (req, &wait))
        return;
    if (!req->body) {
        gw_fail_http (req, 400, "Format error in JSON body: EOF while parsing a value");
        return;
    }
    char *name = NULL;
    json_t *collection = s_collection_named (req, &name);
    if (!collection)
        return;
    const json_t *body = req->body;
    const char *field = json_string_value (json_object_get (body, "field_name"));
    const json_t *schema = json_object_get (body, "field_schema");
    //  Qdrant's PayloadFieldSchema: a type name, or params with a "type".
    const json_t *params = json_is_object (schema) ? schema : NULL;
    const char *type = json_is_string (schema) ? json_string_value (schema)
                     : json_string_value (json_object_get (params, "type"));
    if (!field || !*field || !filter_path_valid (field))
        gw_fail_http (req, 400, "Format error in JSON body: field_name: expected a payload "
                      "key path such as \"city\" or \"a.b[].c\"");
    else
    if (!type)
        gw_fail_http (req, 400, "Format error in JSON body: field_schema: expected one of "
                      "keyword, integer, float, bool, uuid, datetime (or {\"type\": ...})");
    else {
        bool known = false;
        for (size_t i = 0; i < sizeof types / sizeof types [0]; i++)
            known |= streq (type, types [i]);
        if (!known && (streq (type, "geo") || streq (type, "text")))
            gw_fail_http (req, 400, "Bad request: %s payload indexes are not supported yet",
                          type);
        else
        if (!known)
            gw_fail_http (req, 400, "Format error in JSON body: field_schema: unknown variant "
                          "`%s`, expected one of `keyword`, `integer`, `float`, `geo`, "
                          "`text`, `bool`, `datetime`, `uuid`", type);
        else {
            json_t *stored = json_pack ("{ss}", "data_type", type);
            json_object_set_new (stored, "params",
                                 params ? json_deep_copy (params) : json_null ());
            json_t *op = json_pack ("{sssssssO}", "type", "create_field_index", "name", name,
                                    "field_name", field, "field_schema", stored);
            json_decref (stored);
            json_t *result = s_propose (req, op, name);
            if (result && wait && s_wait_index_built (req, name, field))
                json_decref (result);
            else
            if (result)
                s_index_result (req, result, wait);
        }
    }
    free (name);
    json_decref (collection);
}

static void
s_delete_index (gw_req_t *req)
{
    bool wait;
    if (!gw_points_write_params (req, &wait))
        return;
    char *name = NULL;
    json_t *collection = s_collection_named (req, &name);
    if (!collection)
        return;
    json_t *op = json_pack ("{ssssss}", "type", "delete_field_index", "name", name,
                            "field_name", req->params [1]);
    json_t *result = s_propose (req, op, name);
    if (result)
        s_index_result (req, result, wait);
    free (name);
    json_decref (collection);
}

//  --- collection cluster (GET/POST /collections/{name}/cluster) ----------------

//  GET: Qdrant's CollectionClusterInfo. The points of this peer's replicas
//  and each running transfer's progress come from SHARD_INFO of the
//  replicas concerned (the transfer's source holds its "transfer"), asked
//  at once; a replica that does not answer in time shows 0 points, a
//  transfer whose source does not answer has no comment.
static void
s_cluster_info (gw_req_t *req)
{
    json_t *collection = gw_collection_or_404 (req);
    if (!collection)
        return;
    uint64_t self = gw_peer_id (req->gw);
    uint64_t deadline = envelope_now_ms () + S_CLUSTER_INFO_WAIT_MS;
    if (req->deadline_ms && req->deadline_ms < deadline)
        deadline = req->deadline_ms;
    json_int_t uid = json_integer_value (json_object_get (collection, "uid"));
    const json_t *shards = json_object_get (collection, "shards");
    const json_t *transfers = json_object_get (collection, "transfers");
    size_t cap = json_array_size (shards) + json_array_size (transfers) + 1;
    uint32_t *ids = (uint32_t *) calloc (cap, sizeof (uint32_t));
    uint64_t *peers = (uint64_t *) calloc (cap, sizeof (uint64_t));
    bool *is_transfer = (bool *) calloc (cap, sizeof (bool));
    envelope_t **requests = (envelope_t **) calloc (cap, sizeof (envelope_t *));
    envelope_t **replies = (envelope_t **) calloc (cap, sizeof (envelope_t *));
    assert (ids && peers && is_transfer && requests && replies);
    size_t n = 0;
    size_t i;
    json_t *item;
    json_array_foreach (shards, i, item) {
        json_int_t sid = json_integer_value (json_object_get (item, "shard_id"));
        if (sid < 0 || sid > UINT32_MAX
            || !gw_replicas_state (collection, (uint32_t) sid, self))
            continue;
        ids [n] = (uint32_t) sid;
        peers [n] = self;
        requests [n++] = envelope_new (MSG_SHARD_INFO, 0, deadline);
    }
    json_array_foreach (transfers, i, item) {
        json_int_t sid = json_integer_value (json_object_get (item, "shard_id"));
        json_int_t from = json_integer_value (json_object_get (item, "from"));
        if (sid < 0 || sid > UINT32_MAX || from <= 0)
            continue;
        ids [n] = (uint32_t) sid;
        peers [n] = (uint64_t) from;
        is_transfer [n] = true;
        requests [n++] = envelope_new (MSG_SHARD_INFO, 0, deadline);
    }
    if (n && uid > 0)
        gw_call_replicas (req->conn, (uint64_t) uid, n, ids, peers, requests, replies);
    json_t *points = json_object ();
    json_t *progress = json_object ();
    for (size_t k = 0; k < n; k++) {
        envelope_destroy (&requests [k]);
        if (!replies [k] || envelope_status (replies [k])) {
            if (replies [k])
                log_debug ("gateway: cluster info of %s: shard %" PRIu32 " on peer %" PRIu64
                           ": %s", req->params [0], ids [k], peers [k],
                           envelope_error (replies [k]));
            envelope_destroy (&replies [k]);
            continue;
        }
        json_t *info = envelope_json (replies [k]);
        char key [16];
        snprintf (key, sizeof key, "%" PRIu32, ids [k]);
        if (!is_transfer [k]) {
            json_t *count = json_object_get (info, "points_count");
            if (json_is_integer (count))
                json_object_set (points, key, count);
        }
        else {
            json_t *transfer = json_object_get (info, "transfer");
            //  Only the progress of the transfer this entry is about.
            json_int_t to = 0;
            json_array_foreach (transfers, i, item)
                if (json_integer_value (json_object_get (item, "shard_id")) == (json_int_t) ids [k]
                    && (uint64_t) json_integer_value (json_object_get (item, "from")) == peers [k])
                    to = json_integer_value (json_object_get (item, "to"));
            if (json_is_object (transfer)
                && json_integer_value (json_object_get (transfer, "to")) == to)
                json_object_set (progress, key, transfer);
        }
        envelope_destroy (&replies [k]);
    }
    gw_ok (req, gw_replicas_cluster_info (collection, self, points, progress));
    json_decref (points);
    json_decref (progress);
    free (replies);
    free (requests);
    free (is_transfer);
    free (peers);
    free (ids);
    json_decref (collection);
}

//  The ids of a MoveShard / AbortShardTransfer object (`op` names it for
//  messages): shard_id (u32) and the two peers (u64); 0, or -SH_EINVAL
//  after answering as serde would.
static int
s_transfer_ids (gw_req_t *req, const json_t *obj, const char *op, uint32_t *shard_id,
                uint64_t *from, uint64_t *to)
{
    static const char *required [] = { "shard_id", "to_peer_id", "from_peer_id" };
    for (size_t i = 0; i < 3; i++)
        if (!json_object_get (obj, required [i]) || json_is_null (json_object_get (obj,
                                                                                 required [i]))) {
            gw_fail (req, -SH_EINVAL, "Format error in JSON body: data did not match any "
                     "variant of untagged enum ClusterOperations (%s: missing field `%s`)",
                     op, required [i]);
            return -SH_EINVAL;
        }
    bool present;
    uint64_t value;
    if (s_uint (req, obj, "shard_id", op, 0, UINT32_MAX, &present, &value))
        return -SH_EINVAL;
    *shard_id = (uint32_t) value;
    if (s_uint (req, obj, "from_peer_id", op, 0, UINT64_MAX, &present, from)
        || s_uint (req, obj, "to_peer_id", op, 0, UINT64_MAX, &present, to))
        return -SH_EINVAL;
    //  Resharding's target shard is not a thing here yet.
    json_t *to_shard = json_object_get (obj, "to_shard_id");
    if (to_shard && !json_is_null (to_shard)) {
        gw_fail (req, -SH_EINVAL, "Bad request: `to_shard_id` is for resharding transfers, "
                 "which are not supported yet");
        return -SH_EINVAL;
    }
    return 0;
}

static bool
s_has_shard (const json_t *collection, uint32_t shard_id)
{
    size_t i;
    json_t *shard;
    json_array_foreach (json_object_get (collection, "shards"), i, shard)
        if (json_integer_value (json_object_get (shard, "shard_id")) == (json_int_t) shard_id)
            return true;
    return false;
}

//  True if peer (id) is a member in the metadata; answers 400 as Qdrant
//  when not.
static bool
s_peer_known (gw_req_t *req, const json_t *state, uint64_t peer)
{
    char key [24];
    snprintf (key, sizeof key, "%" PRIu64, peer);
    if (json_object_get (json_object_get (state, "peers"), key))
        return true;
    gw_fail (req, -SH_EINVAL, "Bad request: Peer %" PRIu64 " does not exist", peer);
    return false;
}

//  POST: move_shard and abort_transfer go through consensus as
//  start_transfer / abort_transfer (proto/msg.h); the shard's source replica
//  runs the move. Checks follow Qdrant's order: the body's shape (400),
//  its values (422), distributed mode (400), the collection (404), the
//  shard and peers (400), an abort's transfer (404).
static void
s_cluster_update (gw_req_t *req)
{
    static const char *const known [] = { "move_shard", "replicate_shard", "abort_transfer",
                                          "drop_replica", "create_sharding_key",
                                          "drop_sharding_key", "restart_transfer",
                                          "start_resharding", "abort_resharding",
                                          "replicate_points", NULL };
    static const char *const methods [] = { "stream_records", "snapshot", "wal_delta",
                                            "resharding_stream_records", NULL };
    const json_t *body = req->body;
    const char *kind = NULL;
    if (json_is_object (body) && json_object_size (body) == 1) {
        const char *key = json_object_iter_key (json_object_iter ((json_t *) body));
        for (size_t i = 0; known [i] && !kind; i++)
            if (streq (key, known [i]))
                kind = known [i];
    }
    const json_t *args = kind ? json_object_get (body, kind) : NULL;
    if (!kind || !json_is_object (args)) {
        gw_fail (req, -SH_EINVAL, "Format error in JSON body: data did not match any variant "
                 "of untagged enum ClusterOperations");
        return;
    }
    bool move = streq (kind, "move_shard");
    if (!move && !streq (kind, "abort_transfer")) {
        gw_fail (req, -SH_EINVAL, "Bad request: `%s` is not supported yet: shoal keeps one "
                 "replica per shard until replication lands (move_shard and abort_transfer "
                 "are supported)", kind);
        return;
    }
    uint32_t shard_id;
    uint64_t from, to;
    if (s_transfer_ids (req, args, kind, &shard_id, &from, &to))
        return;
    if (move && s_enum (req, args, "method", kind, methods))
        return;
    const char *method = json_string_value (json_object_get (args, "method"));
    if (move && from == to) {
        s_invalid (req, "move_shard.to_peer_id", "cannot transfer shard to itself, "
                   "\"to_peer_id\" must be different than %" PRIu64 " in \"from_peer_id\"",
                   from);
        return;
    }
    if (move && method && !streq (method, "stream_records")) {
        gw_fail (req, -SH_EINVAL, "Bad request: shard transfer method `%s` is not supported "
                 "yet (only stream_records is)", method);
        return;
    }
    if (!gw_config (req->gw)->cluster_enabled) {
        gw_fail (req, -SH_EINVAL, "Bad request: Distributed mode disabled");
        return;
    }
    char *name = NULL;
    json_t *collection = s_collection_named (req, &name);
    if (!collection)
        return;
    json_t *state = gw_meta_state (gw_meta (req->gw));
    if (move) {
        if (!s_has_shard (collection, shard_id))
            gw_fail (req, -SH_EINVAL, "Bad request: Shard %" PRIu32 " of %s does not exist",
                     shard_id, name);
        else
        if (s_peer_known (req, state, to) && s_peer_known (req, state, from)) {
            json_t *op = json_pack ("{sssssIsIsIss}", "type", "start_transfer",
                                    "collection", name, "shard_id", (json_int_t) shard_id,
                                    "from", (json_int_t) from, "to", (json_int_t) to,
                                    "method", "stream_records");
            json_t *result = s_propose (req, op, NULL);
            if (result) {
                log_info ("gateway: move shard %s:%" PRIu32 " from peer %" PRIu64 " to %"
                          PRIu64 " started", name, shard_id, from, to);
                json_decref (result);
                gw_ok (req, json_true ());
            }
        }
    }
    else {
        bool found = false;
        size_t i;
        json_t *entry;
        json_array_foreach (json_object_get (collection, "transfers"), i, entry)
            found |= json_integer_value (json_object_get (entry, "shard_id"))
                         == (json_int_t) shard_id
                  && (uint64_t) json_integer_value (json_object_get (entry, "from")) == from
                  && (uint64_t) json_integer_value (json_object_get (entry, "to")) == to;
        if (!found)
            gw_fail (req, -SH_ENOTFOUND, "Not found: Shard transfer %" PRIu64 " -> %" PRIu64
                     " for collection %s:%" PRIu32 " does not exist", from, to, name,
                     shard_id);
        else {
            json_t *op = json_pack ("{sssssIsIsI}", "type", "abort_transfer",
                                    "collection", name, "shard_id", (json_int_t) shard_id,
                                    "from", (json_int_t) from, "to", (json_int_t) to);
            json_t *result = s_propose (req, op, NULL);
            if (result) {
                log_info ("gateway: transfer of shard %s:%" PRIu32 " from peer %" PRIu64
                          " to %" PRIu64 " aborted by request", name, shard_id, from, to);
                json_decref (result);
                gw_ok (req, json_true ());
            }
        }
    }
    json_decref (state);
    json_decref (collection);
    free (name);
}

void
gw_collections_routes (void (*add) (const gw_route_t *route, void *arg), void *arg)
{
    static const gw_route_t routes [] = {
        { "GET", "/collections", s_list, false },
        { "POST", "/collections/aliases", s_change_aliases, true },
        { "GET", "/collections/{collection_name}", s_info, false },
        { "PUT", "/collections/{collection_name}", s_create, true },
        { "PATCH", "/collections/{collection_name}", s_update, true },
        { "DELETE", "/collections/{collection_name}", s_delete, true },
        { "GET", "/collections/{collection_name}/exists", s_exists, false },
        { "GET", "/collections/{collection_name}/aliases", s_collection_aliases, false },
        { "GET", "/aliases", s_all_aliases, false },
        { "PUT", "/collections/{collection_name}/index", s_create_index, true },
        { "DELETE", "/collections/{collection_name}/index/{field_name}", s_delete_index, true },
        { "GET", "/collections/{collection_name}/cluster", s_cluster_info, false },
        { "POST", "/collections/{collection_name}/cluster", s_cluster_update, true },
    };
    for (size_t i = 0; i < sizeof (routes) / sizeof (routes [0]); i++)
        add (&routes [i], arg);
}
