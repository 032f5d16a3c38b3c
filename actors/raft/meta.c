/*  meta: the metadata state machine (see meta.h). Owns the JSON trees of
    peers, collections and aliases and the applied index. Every op is
    checked whole before anything changes, so a refused op leaves no trace.
*/
#include "actors/raft/meta.h"
#include "common/err.h"
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _meta_t {
    uint64_t applied;               //  index of the last entry applied
    json_t *peers;                  //  {"<peer id>": "uri"}
    json_t *collections;            //  {"<name>": {"uid", "config", "shards",
                                    //    "payload_schema"}}
    json_t *aliases;                //  {"<alias>": "<collection name>"}
    json_t *done;                   //  [{"op_id", "rc", "result", "error"}]: the
                                    //    last META_DONE_MAX ops that had an
                                    //    op_id, oldest first
};

meta_t *
meta_new (void)
{
    meta_t *self = (meta_t *) calloc (1, sizeof (meta_t));
    assert (self);
    self->peers = json_object ();
    self->collections = json_object ();
    self->aliases = json_object ();
    self->done = json_array ();
    assert (self->peers && self->collections && self->aliases && self->done);
    return self;
}

void
meta_destroy (meta_t **self_p)
{
    assert (self_p);
    meta_t *self = *self_p;
    if (!self)
        return;
    json_decref (self->peers);
    json_decref (self->collections);
    json_decref (self->aliases);
    json_decref (self->done);
    free (self);
    *self_p = NULL;
}

void
meta_set_peer (meta_t *self, uint64_t peer_id, const char *uri)
{
    char key [24];
    snprintf (key, sizeof key, "%" PRIu64, peer_id);
    json_object_set_new (self->peers, key, json_string (uri ? uri : ""));
}

void
meta_reset_peers (meta_t *self, uint64_t peer_id, const char *uri)
{
    json_object_clear (self->peers);
    meta_set_peer (self, peer_id, uri);
}

const char *
meta_peer_uri (const meta_t *self, uint64_t peer_id)
{
    char key [24];
    snprintf (key, sizeof key, "%" PRIu64, peer_id);
    return json_string_value (json_object_get (self->peers, key));
}

bool
meta_peer_has_shards (const meta_t *self, uint64_t peer_id)
{
    char key [24];
    snprintf (key, sizeof key, "%" PRIu64, peer_id);
    const char *name;
    json_t *coll;
    json_object_foreach (self->collections, name, coll) {
        size_t i;
        json_t *shard;
        json_array_foreach (json_object_get (coll, "shards"), i, shard) {
            if (json_object_get (json_object_get (shard, "replicas"), key))
                return true;
        }
    }
    return false;
}

static void s_drop_transfers_of (json_t *coll, uint64_t peer_id);

//  Drops peer from the peers map and from every shard's replica set (and
//  the transfers it takes part in).
static void
s_drop_peer (meta_t *self, uint64_t peer_id)
{
    char key [24];
    snprintf (key, sizeof key, "%" PRIu64, peer_id);
    json_object_del (self->peers, key);
    const char *name;
    json_t *coll;
    json_object_foreach (self->collections, name, coll) {
        s_drop_transfers_of (coll, peer_id);
        size_t i;
        json_t *shard;
        json_array_foreach (json_object_get (coll, "shards"), i, shard)
            json_object_del (json_object_get (shard, "replicas"), key);
    }
}

//  A peer id as ops and conf entries carry it: an integer in [1, 2^63).
static uint64_t
s_peer_id (const json_t *obj, const char *key)
{
    json_t *value = json_object_get (obj, key);
    if (!json_is_integer (value) || json_integer_value (value) < 1)
        return 0;
    return (uint64_t) json_integer_value (value);
}

//  A peer uri as ops and conf entries carry it: 1 to META_MAX_URI bytes.
static const char *
s_uri (const json_t *obj, const char *key)
{
    const char *uri = json_string_value (json_object_get (obj, key));
    if (!uri || !*uri || strlen (uri) > META_MAX_URI)
        return NULL;
    return uri;
}

static int
s_error (char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

static int
s_error (char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list args;
        va_start (args, fmt);
        vsnprintf (err, errlen, fmt, args);
        va_end (args);
    }
    return code;
}

//  A name as an op gives it: a non-empty string of at most META_MAX_NAME bytes.
static const char *
s_name (const json_t *obj, const char *key)
{
    const char *name = json_string_value (json_object_get (obj, key));
    if (!name || !*name || strlen (name) > META_MAX_NAME)
        return NULL;
    return name;
}

//  Reads an optional positive integer at config.params.<key>; 0 if absent,
//  -1 if present but not an integer in [1, max].
static int64_t
s_param (const json_t *config, const char *key, int64_t max)
{
    json_t *params = json_object_get (config, "params");
    if (!params)
        return 0;
    json_t *value = json_object_get (params, key);
    if (!value || json_is_null (value))
        return 0;
    if (!json_is_integer (value) || json_integer_value (value) < 1
        || json_integer_value (value) > max)
        return -1;
    return json_integer_value (value);
}

static int
s_cmp_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y ? 1 : 0;
}

//  The peer ids in the state, sorted (placement must not depend on the
//  order a JSON object happens to iterate in).
static size_t
s_sorted_peers (const meta_t *self, uint64_t **out)
{
    size_t n = json_object_size (self->peers);
    uint64_t *ids = (uint64_t *) calloc (n ? n : 1, sizeof (uint64_t));
    assert (ids);
    size_t count = 0;
    const char *key;
    json_t *value;
    json_object_foreach (self->peers, key, value) {
        char *end = NULL;
        unsigned long long id = strtoull (key, &end, 10);
        if (end && *end == 0 && id > 0)
            ids [count++] = (uint64_t) id;
    }
    qsort (ids, count, sizeof (uint64_t), s_cmp_u64);
    *out = ids;
    return count;
}

static int
s_create_collection (meta_t *self, uint64_t index, const json_t *op, json_t **result,
                     char *err, size_t errlen)
{
    const char *name = s_name (op, "name");
    if (!name)
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: create_collection needs a \"name\" of 1 to %d bytes",
                        META_MAX_NAME);
    json_t *config = json_object_get (op, "config");
    if (config && !json_is_object (config))
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: create_collection \"config\" must be an object");
    if (config && json_object_get (config, "params")
        && !json_is_object (json_object_get (config, "params")))
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: \"config.params\" must be an object");
    if (json_object_get (self->collections, name))
        return s_error (err, errlen, -SH_EEXIST,
                        "Wrong input: Collection `%s` already exists!", name);
    if (json_object_get (self->aliases, name))
        return s_error (err, errlen, -SH_EEXIST,
                        "Wrong input: Can't create collection with name %s. Alias with the "
                        "same name already exists", name);
    int64_t shard_number = s_param (config, "shard_number", META_MAX_SHARDS);
    if (shard_number < 0)
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: `shard_number` must be an integer from 1 to %d",
                        META_MAX_SHARDS);
    int64_t replication = s_param (config, "replication_factor", INT32_MAX);
    if (replication < 0)
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: `replication_factor` must be a positive integer");
    uint64_t *peers = NULL;
    size_t n_peers = s_sorted_peers (self, &peers);
    if (n_peers == 0) {
        free (peers);
        return s_error (err, errlen, -SH_EUNAVAIL,
                        "Service internal error: no peers to place shards on");
    }
    //  Qdrant's default: one shard per peer at creation (DESIGN §4).
    if (shard_number == 0)
        shard_number = (int64_t) n_peers;
    if (replication == 0)
        replication = 1;
    size_t copies = (size_t) replication < n_peers ? (size_t) replication : n_peers;

    json_t *conf = config ? json_deep_copy (config) : json_object ();
    json_t *params = json_object_get (conf, "params");
    if (!params) {
        params = json_object ();
        json_object_set_new (conf, "params", params);
    }
    if (!json_object_get (params, "shard_number")
        || json_is_null (json_object_get (params, "shard_number")))
        json_object_set_new (params, "shard_number", json_integer (shard_number));

    //  Shard i's replicas go round robin over the sorted peers, starting at
    //  peer i, on distinct peers; all start Active (no data to transfer yet).
    json_t *shards = json_array ();
    for (int64_t i = 0; i < shard_number; i++) {
        json_t *replicas = json_object ();
        for (size_t j = 0; j < copies; j++) {
            char key [24];
            snprintf (key, sizeof key, "%" PRIu64, peers [((size_t) i + j) % n_peers]);
            json_object_set_new (replicas, key, json_string ("Active"));
        }
        json_array_append_new (shards, json_pack ("{sIso}", "shard_id", (json_int_t) i,
                                                  "replicas", replicas));
    }
    free (peers);
    json_t *coll = json_pack ("{sIsosos{}s[]}", "uid", (json_int_t) index, "config", conf,
                              "shards", shards, "payload_schema", "transfers");
    assert (coll);
    json_object_set_new (self->collections, name, coll);
    *result = json_true ();
    return 0;
}

//  Merges patch into target as a JSON merge patch (RFC 7386): objects merge
//  key by key, other values replace, and null removes the key (Qdrant's
//  metadata merge; the gateway sends a "Disabled" quantization as null).
static void
s_deep_merge (json_t *target, const json_t *patch)
{
    const char *key;
    json_t *value;
    json_object_foreach ((json_t *) patch, key, value) {
        if (json_is_null (value)) {
            json_object_del (target, key);
            continue;
        }
        json_t *current = json_object_get (target, key);
        if (json_is_object (value)) {
            if (!json_is_object (current)) {
                //  merged into an empty object, so its nulls vanish too
                current = json_object ();
                json_object_set_new (target, key, current);
            }
            s_deep_merge (current, value);
        }
        else
            json_object_set_new (target, key, json_deep_copy (value));
    }
}

static int
s_update_collection (meta_t *self, const json_t *op, json_t **result, char *err,
                     size_t errlen)
{
    const char *name = s_name (op, "name");
    if (!name)
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: update_collection needs a \"name\" of 1 to %d bytes",
                        META_MAX_NAME);
    json_t *patch = json_object_get (op, "config");
    if (!json_is_object (patch))
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: update_collection needs a \"config\" object");
    json_t *coll = json_object_get (self->collections, name);
    if (!coll)
        return s_error (err, errlen, -SH_ENOTFOUND,
                        "Not found: Collection `%s` doesn't exist!", name);
    json_t *params = json_object_get (patch, "params");
    if (params && !json_is_null (params) && !json_is_object (params))
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: \"config.params\" must be an object");
    json_t *shard_number = json_object_get (params, "shard_number");
    if (shard_number && !json_is_null (shard_number)
        && !json_equal (shard_number,
                        json_object_get (json_object_get (json_object_get (coll, "config"),
                                                          "params"), "shard_number")))
        //  The shards are placed at creation; an update cannot re-shard.
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: `shard_number` cannot be changed by an update");
    if (s_param (patch, "replication_factor", INT32_MAX) < 0)
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: `replication_factor` must be a positive integer");
    json_t *config = json_object_get (coll, "config");
    if (!json_is_object (config)) {
        config = json_object ();
        json_object_set_new (coll, "config", config);
    }
    s_deep_merge (config, patch);
    *result = json_true ();
    return 0;
}

//  Removes every alias pointing at collection name.
static void
s_drop_aliases_of (json_t *aliases, const char *name)
{
    const char *alias;
    json_t *target;
    void *tmp;
    json_object_foreach_safe (aliases, tmp, alias, target) {
        if (json_is_string (target) && strcmp (json_string_value (target), name) == 0)
            json_object_del (aliases, alias);
    }
}

static int
s_delete_collection (meta_t *self, const json_t *op, json_t **result, char *err,
                     size_t errlen)
{
    const char *name = s_name (op, "name");
    if (!name)
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: delete_collection needs a \"name\" of 1 to %d bytes",
                        META_MAX_NAME);
    //  Qdrant: the aliases go first, and a missing collection is not an error
    //  (the answer is false).
    s_drop_aliases_of (self->aliases, name);
    bool existed = json_object_del (self->collections, name) == 0;
    *result = json_boolean (existed);
    return 0;
}

//  One alias action against aliases (a working copy). 0 or an error.
static int
s_alias_action (meta_t *self, json_t *aliases, const json_t *action, size_t at, char *err,
                size_t errlen)
{
    if (!json_is_object (action) || json_object_size (action) != 1)
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: alias action %zu must be an object with one of "
                        "create_alias, delete_alias, rename_alias", at);
    json_t *create = json_object_get (action, "create_alias");
    json_t *delete = json_object_get (action, "delete_alias");
    json_t *rename = json_object_get (action, "rename_alias");
    if (json_is_object (create)) {
        const char *collection = s_name (create, "collection_name");
        const char *alias = s_name (create, "alias_name");
        if (!collection || !alias)
            return s_error (err, errlen, -SH_EINVAL,
                            "Wrong input: create_alias needs \"collection_name\" and "
                            "\"alias_name\"");
        if (!json_object_get (self->collections, collection))
            return s_error (err, errlen, -SH_ENOTFOUND,
                            "Not found: Collection `%s` doesn't exist!", collection);
        //  Collections and aliases share one namespace.
        if (json_object_get (self->collections, alias))
            return s_error (err, errlen, -SH_EEXIST,
                            "Wrong input: Collection `%s` already exists!", alias);
        //  Qdrant: an existing alias of that name is re-pointed.
        json_object_set_new (aliases, alias, json_string (collection));
        return 0;
    }
    if (json_is_object (delete)) {
        const char *alias = s_name (delete, "alias_name");
        if (!alias)
            return s_error (err, errlen, -SH_EINVAL,
                            "Wrong input: delete_alias needs \"alias_name\"");
        //  Qdrant: deleting an alias that does not exist is not an error.
        json_object_del (aliases, alias);
        return 0;
    }
    if (json_is_object (rename)) {
        const char *old_name = s_name (rename, "old_alias_name");
        const char *new_name = s_name (rename, "new_alias_name");
        if (!old_name || !new_name)
            return s_error (err, errlen, -SH_EINVAL,
                            "Wrong input: rename_alias needs \"old_alias_name\" and "
                            "\"new_alias_name\"");
        json_t *target = json_object_get (aliases, old_name);
        if (!target)
            return s_error (err, errlen, -SH_ENOTFOUND,
                            "Not found: Alias %s does not exists!", old_name);
        if (json_object_get (self->collections, new_name))
            return s_error (err, errlen, -SH_EEXIST,
                            "Wrong input: Collection `%s` already exists!", new_name);
        json_incref (target);
        json_object_del (aliases, old_name);
        json_object_set_new (aliases, new_name, target);
        return 0;
    }
    return s_error (err, errlen, -SH_EINVAL,
                    "Wrong input: alias action %zu must be an object with one of "
                    "create_alias, delete_alias, rename_alias", at);
}

static int
s_change_aliases (meta_t *self, const json_t *op, json_t **result, char *err, size_t errlen)
{
    json_t *actions = json_object_get (op, "actions");
    if (!json_is_array (actions))
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: change_aliases needs an \"actions\" array");
    //  All or nothing: the actions run on a copy that replaces the aliases
    //  only if every one of them succeeded.
    json_t *aliases = json_deep_copy (self->aliases);
    size_t at;
    json_t *action;
    json_array_foreach (actions, at, action) {
        int rc = s_alias_action (self, aliases, action, at, err, errlen);
        if (rc) {
            json_decref (aliases);
            return rc;
        }
    }
    json_decref (self->aliases);
    self->aliases = aliases;
    *result = json_true ();
    return 0;
}

//  {"type": "create_field_index", "name", "field_name", "field_schema":
//  {"data_type": type, "params": object|null}} (the gateway normalises
//  Qdrant's string-or-params form): sets collection.payload_schema
//  [field_name]; creating it again replaces it, as Qdrant does. Shards see
//  the schema in the state and build or drop their indexes.
static int
s_create_field_index (meta_t *self, const json_t *op, json_t **result, char *err,
                      size_t errlen)
{
    const char *name = s_name (op, "name");
    const char *field = s_name (op, "field_name");
    const json_t *schema = json_object_get (op, "field_schema");
    if (!name || !field || !json_is_object (schema)
        || !json_is_string (json_object_get (schema, "data_type")))
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: create_field_index needs \"name\", \"field_name\" and "
                        "a \"field_schema\" with a \"data_type\"");
    json_t *coll = json_object_get (self->collections, name);
    if (!coll)
        return s_error (err, errlen, -SH_ENOTFOUND,
                        "Not found: Collection `%s` doesn't exist!", name);
    json_t *schemas = json_object_get (coll, "payload_schema");
    if (!json_is_object (schemas)) {
        schemas = json_object ();
        json_object_set_new (coll, "payload_schema", schemas);
    }
    json_object_set_new (schemas, field, json_deep_copy (schema));
    *result = json_true ();
    return 0;
}

//  {"type": "delete_field_index", "name", "field_name"}: a field without an
//  index is not an error (Qdrant answers ok).
static int
s_delete_field_index (meta_t *self, const json_t *op, json_t **result, char *err,
                      size_t errlen)
{
    const char *name = s_name (op, "name");
    const char *field = s_name (op, "field_name");
    if (!name || !field)
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: delete_field_index needs \"name\" and \"field_name\"");
    json_t *coll = json_object_get (self->collections, name);
    if (!coll)
        return s_error (err, errlen, -SH_ENOTFOUND,
                        "Not found: Collection `%s` doesn't exist!", name);
    json_object_del (json_object_get (coll, "payload_schema"), field);
    *result = json_true ();
    return 0;
}

//  {"type": "set_peer", "peer_id", "uri"}: a peer's own address, proposed
//  by a leader that finds its uri missing or changed.
static int
s_set_peer (meta_t *self, const json_t *op, json_t **result, char *err, size_t errlen)
{
    uint64_t peer_id = s_peer_id (op, "peer_id");
    const char *uri = s_uri (op, "uri");
    if (!peer_id || !uri)
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: set_peer needs a positive \"peer_id\" and a \"uri\" of "
                        "1 to %d bytes", META_MAX_URI);
    meta_set_peer (self, peer_id, uri);
    *result = json_true ();
    return 0;
}

//  ---------------------------------------------------------------------------
//  Shard transfers (start_transfer, finish_transfer, abort_transfer; msg.h).
//  A transfer is an entry {"shard_id", "from", "to", "method", "sync"} in
//  the collection's "transfers" and a "Partial" replica on "to"; at most one
//  transfer per shard runs at a time. Messages follow Qdrant's.

//  The fields every transfer op names: the collection (an existing one, in
//  *coll), the shard id and the two peers. 0 or an error.
static int
s_transfer_key (meta_t *self, const json_t *op, json_t **coll, uint32_t *shard_id,
                uint64_t *from, uint64_t *to, char *err, size_t errlen)
{
    const char *type = json_string_value (json_object_get (op, "type"));
    const char *name = s_name (op, "collection");
    json_t *sid = json_object_get (op, "shard_id");
    *from = s_peer_id (op, "from");
    *to = s_peer_id (op, "to");
    if (!name || !json_is_integer (sid) || json_integer_value (sid) < 0
        || json_integer_value (sid) > UINT32_MAX || !*from || !*to)
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: %s needs a \"collection\", a \"shard_id\" and positive "
                        "\"from\" and \"to\" peer ids", type);
    *shard_id = (uint32_t) json_integer_value (sid);
    *coll = json_object_get (self->collections, name);
    if (!*coll)
        return s_error (err, errlen, -SH_ENOTFOUND,
                        "Not found: Collection `%s` doesn't exist!", name);
    return 0;
}

//  The replicas object of shard shard_id of coll, or NULL.
static json_t *
s_shard_replicas (json_t *coll, uint32_t shard_id)
{
    size_t i;
    json_t *shard;
    json_array_foreach (json_object_get (coll, "shards"), i, shard) {
        json_t *sid = json_object_get (shard, "shard_id");
        if (json_is_integer (sid) && json_integer_value (sid) == (json_int_t) shard_id)
            return json_object_get (shard, "replicas");
    }
    return NULL;
}

//  The collection's transfers array, made if a collection created before
//  transfers existed has none.
static json_t *
s_transfers (json_t *coll)
{
    json_t *transfers = json_object_get (coll, "transfers");
    if (!json_is_array (transfers)) {
        transfers = json_array ();
        json_object_set_new (coll, "transfers", transfers);
    }
    return transfers;
}

//  Index in transfers of the entry for (shard_id, from, to), or -1.
static int64_t
s_transfer_find (json_t *transfers, uint32_t shard_id, uint64_t from, uint64_t to)
{
    size_t i;
    json_t *entry;
    json_array_foreach (transfers, i, entry) {
        if (json_integer_value (json_object_get (entry, "shard_id")) == (json_int_t) shard_id
            && s_peer_id (entry, "from") == from && s_peer_id (entry, "to") == to)
            return (int64_t) i;
    }
    return -1;
}

static int
s_start_transfer (meta_t *self, const json_t *op, json_t **result, char *err, size_t errlen)
{
    json_t *coll;
    uint32_t shard_id;
    uint64_t from, to;
    int rc = s_transfer_key (self, op, &coll, &shard_id, &from, &to, err, errlen);
    if (rc)
        return rc;
    json_t *method = json_object_get (op, "method");
    if (method && !json_is_null (method) && !json_is_string (method))
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: start_transfer \"method\" must be a string");
    if (json_is_string (method) && strcmp (json_string_value (method), "stream_records"))
        return s_error (err, errlen, -SH_EINVAL,
                        "Bad request: shard transfer method `%.64s` is not supported yet "
                        "(only stream_records is)", json_string_value (method));
    if (from == to)
        return s_error (err, errlen, -SH_EUNPROC,
                        "Validation error: cannot transfer shard to itself, \"to_peer_id\" "
                        "must be different than %" PRIu64 " in \"from_peer_id\"", from);
    json_t *replicas = s_shard_replicas (coll, shard_id);
    if (!json_is_object (replicas))
        return s_error (err, errlen, -SH_ENOTFOUND, "Not found: Shard %" PRIu32 " of %s "
                        "does not exist", shard_id, json_string_value (json_object_get (op,
                                                                              "collection")));
    uint64_t peers [2] = { from, to };
    for (size_t i = 0; i < 2; i++)
        if (!meta_peer_uri (self, peers [i]))
            return s_error (err, errlen, -SH_ENOTFOUND,
                            "Not found: Peer %" PRIu64 " does not exist", peers [i]);
    char from_key [24], to_key [24];
    snprintf (from_key, sizeof from_key, "%" PRIu64, from);
    snprintf (to_key, sizeof to_key, "%" PRIu64, to);
    const char *state = json_string_value (json_object_get (replicas, from_key));
    if (!state || strcmp (state, "Active"))
        return s_error (err, errlen, -SH_EINVAL,
                        "Bad request: Shard %" PRIu32 " is not active on peer %" PRIu64,
                        shard_id, from);
    json_t *transfers = s_transfers (coll);
    size_t i;
    json_t *entry;
    json_array_foreach (transfers, i, entry) {
        if (json_integer_value (json_object_get (entry, "shard_id")) == (json_int_t) shard_id)
            return s_error (err, errlen, -SH_EINVAL,
                            "Bad request: Shard %" PRIu32 " is already involved in transfer "
                            "%" PRIu64 " -> %" PRIu64, shard_id, s_peer_id (entry, "from"),
                            s_peer_id (entry, "to"));
    }
    if (json_object_get (replicas, to_key))
        return s_error (err, errlen, -SH_EINVAL,
                        "Bad request: Shard %" PRIu32 " already has a replica on peer %" PRIu64,
                        shard_id, to);
    //  The target takes the source's stream, never direct writes, and serves
    //  no reads until finish_transfer makes it Active (Qdrant's Partial).
    json_object_set_new (replicas, to_key, json_string ("Partial"));
    json_array_append_new (transfers,
                           json_pack ("{sIsIsIsssb}", "shard_id", (json_int_t) shard_id,
                                      "from", (json_int_t) from, "to", (json_int_t) to,
                                      "method", "stream_records", "sync", 0));
    *result = json_true ();
    return 0;
}

//  finish_transfer and abort_transfer: the entry must exist.
static int
s_end_transfer (meta_t *self, const json_t *op, bool finish, json_t **result, char *err,
                size_t errlen)
{
    json_t *coll;
    uint32_t shard_id;
    uint64_t from, to;
    int rc = s_transfer_key (self, op, &coll, &shard_id, &from, &to, err, errlen);
    if (rc)
        return rc;
    json_t *transfers = s_transfers (coll);
    int64_t at = s_transfer_find (transfers, shard_id, from, to);
    json_t *replicas = s_shard_replicas (coll, shard_id);
    if (at < 0 || !json_is_object (replicas))
        return s_error (err, errlen, -SH_ENOTFOUND,
                        "Not found: Shard transfer %" PRIu64 " -> %" PRIu64 " for collection "
                        "%s:%" PRIu32 " does not exist", from, to,
                        json_string_value (json_object_get (op, "collection")), shard_id);
    char from_key [24], to_key [24];
    snprintf (from_key, sizeof from_key, "%" PRIu64, from);
    snprintf (to_key, sizeof to_key, "%" PRIu64, to);
    if (finish) {
        //  Never leave the shard without its data: the copy must still be there.
        if (!json_object_get (replicas, to_key))
            return s_error (err, errlen, -SH_EINVAL,
                            "Bad request: the target replica of shard %" PRIu32 " on peer %"
                            PRIu64 " is gone; abort the transfer", shard_id, to);
        json_object_set_new (replicas, to_key, json_string ("Active"));
        json_object_del (replicas, from_key);
    }
    else {
        const char *state = json_string_value (json_object_get (replicas, to_key));
        if (state && strcmp (state, "Active"))
            json_object_del (replicas, to_key);
    }
    json_array_remove (transfers, (size_t) at);
    *result = json_true ();
    return 0;
}

//  A peer leaves (meta_apply_conf "remove"): its transfers go with it, and
//  the unfinished copy of a transfer it was the source of too.
static void
s_drop_transfers_of (json_t *coll, uint64_t peer_id)
{
    json_t *transfers = json_object_get (coll, "transfers");
    for (size_t i = 0; i < json_array_size (transfers); ) {
        json_t *entry = json_array_get (transfers, i);
        uint64_t from = s_peer_id (entry, "from"), to = s_peer_id (entry, "to");
        if (from != peer_id && to != peer_id) {
            i++;
            continue;
        }
        json_int_t sid = json_integer_value (json_object_get (entry, "shard_id"));
        json_t *replicas = sid >= 0 && sid <= UINT32_MAX
                         ? s_shard_replicas (coll, (uint32_t) sid) : NULL;
        char to_key [24];
        snprintf (to_key, sizeof to_key, "%" PRIu64, to);
        const char *state = json_string_value (json_object_get (replicas, to_key));
        if (state && strcmp (state, "Active"))
            json_object_del (replicas, to_key);
        json_array_remove (transfers, i);
    }
}

//  The record of an op applied under op_id, or NULL.
static const json_t *
s_done_find (const meta_t *self, const char *op_id)
{
    size_t i;
    const json_t *d;
    json_array_foreach (self->done, i, d)
        if (strcmp (json_string_value (json_object_get (d, "op_id")), op_id) == 0)
            return d;
    return NULL;
}

//  Remembers how the op under op_id ended, forgetting the oldest beyond
//  META_DONE_MAX.
static void
s_done_add (meta_t *self, const char *op_id, int rc, const json_t *result, const char *err)
{
    while (json_array_size (self->done) >= META_DONE_MAX)
        json_array_remove (self->done, 0);
    json_array_append_new (self->done,
                           json_pack ("{sssiso*ss}", "op_id", op_id, "rc", rc,
                                      "result", result ? json_deep_copy (result) : NULL,
                                      "error", err ? err : ""));
}

static int s_apply_op (meta_t *self, uint64_t index, const json_t *op, const char *type,
                       json_t **result, char *err, size_t errlen);

int
meta_apply (meta_t *self, uint64_t index, const json_t *op, json_t **result, char *err,
            size_t errlen)
{
    assert (self && result);
    *result = NULL;
    if (err && errlen)
        err [0] = 0;
    //  The entry is consumed whatever the outcome: every node moves on alike.
    if (index > self->applied)
        self->applied = index;
    const char *type = json_string_value (json_object_get (op, "type"));
    if (!json_is_object (op) || !type)
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: an operation must be an object with a \"type\"");
    const json_t *id = json_object_get (op, "op_id");
    if (id && (!json_is_string (id) || json_string_length (id) == 0
               || json_string_length (id) > META_MAX_OP_ID))
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: \"op_id\" must be a string of 1 to %d bytes",
                        META_MAX_OP_ID);
    const char *op_id = json_string_value (id);
    const json_t *done = op_id ? s_done_find (self, op_id) : NULL;
    if (done) {
        //  The same op again (a forwarder retried it): it ended already.
        const json_t *was = json_object_get (done, "result");
        *result = json_is_null (was) ? NULL : json_deep_copy (was);
        int rc = (int) json_integer_value (json_object_get (done, "rc"));
        if (rc)
            s_error (err, errlen, rc, "%s", json_string_value (json_object_get (done, "error")));
        return rc;
    }
    int rc = s_apply_op (self, index, op, type, result, err, errlen);
    if (op_id)
        s_done_add (self, op_id, rc, *result, err && errlen ? err : NULL);
    return rc;
}

static int
s_apply_op (meta_t *self, uint64_t index, const json_t *op, const char *type,
            json_t **result, char *err, size_t errlen)
{
    if (strcmp (type, "create_collection") == 0)
        return s_create_collection (self, index, op, result, err, errlen);
    if (strcmp (type, "update_collection") == 0)
        return s_update_collection (self, op, result, err, errlen);
    if (strcmp (type, "delete_collection") == 0)
        return s_delete_collection (self, op, result, err, errlen);
    if (strcmp (type, "change_aliases") == 0)
        return s_change_aliases (self, op, result, err, errlen);
    if (strcmp (type, "create_field_index") == 0)
        return s_create_field_index (self, op, result, err, errlen);
    if (strcmp (type, "delete_field_index") == 0)
        return s_delete_field_index (self, op, result, err, errlen);
    if (strcmp (type, "set_peer") == 0)
        return s_set_peer (self, op, result, err, errlen);
    if (strcmp (type, "start_transfer") == 0)
        return s_start_transfer (self, op, result, err, errlen);
    if (strcmp (type, "finish_transfer") == 0)
        return s_end_transfer (self, op, true, result, err, errlen);
    if (strcmp (type, "abort_transfer") == 0)
        return s_end_transfer (self, op, false, result, err, errlen);
    if (strcmp (type, "remove_peer") == 0)
        //  Membership goes through a Raft conf entry (meta_apply_conf); an
        //  op in the log would change the peers behind Raft's back.
        return s_error (err, errlen, -SH_EINVAL,
                        "Wrong input: remove_peer is a membership change, not an operation");
    return s_error (err, errlen, -SH_EINVAL, "Wrong input: unknown operation type `%.64s`",
                    type);
}

int
meta_apply_entry (meta_t *self, uint64_t index, const void *data, size_t len,
                  json_t **result, char *err, size_t errlen)
{
    json_error_t error;
    json_t *op = len ? json_loadb ((const char *) data, len, JSON_REJECT_DUPLICATES, &error)
                     : NULL;
    int rc = meta_apply (self, index, op, result, err, errlen);
    json_decref (op);
    return rc;
}

int
meta_apply_conf (meta_t *self, uint64_t index, const void *data, size_t len, char *err,
                 size_t errlen)
{
    if (err && errlen)
        err [0] = 0;
    if (index > self->applied)
        self->applied = index;
    json_error_t error;
    json_t *conf = len ? json_loadb ((const char *) data, len, JSON_REJECT_DUPLICATES, &error)
                       : NULL;
    const char *change = json_string_value (json_object_get (conf, "change"));
    uint64_t peer_id = s_peer_id (conf, "peer_id");
    int rc = 0;
    if (!json_is_object (conf) || !change || !peer_id)
        rc = s_error (err, errlen, -SH_EINVAL,
                      "Wrong input: a conf entry needs a \"change\" and a \"peer_id\"");
    else
    if (strcmp (change, "add_learner") == 0 || strcmp (change, "promote") == 0) {
        //  The uri rides in the entry that makes the peer a member, so every
        //  node learns where it is at the same index.
        const char *uri = s_uri (conf, "uri");
        if (uri)
            meta_set_peer (self, peer_id, uri);
    }
    else
    if (strcmp (change, "remove") == 0)
        s_drop_peer (self, peer_id);
    else
        rc = s_error (err, errlen, -SH_EINVAL, "Wrong input: unknown conf change `%.32s`",
                      change);
    json_decref (conf);
    return rc;
}

void
meta_skip (meta_t *self, uint64_t index)
{
    if (index > self->applied)
        self->applied = index;
}

uint64_t
meta_applied (const meta_t *self)
{
    return self->applied;
}

json_t *
meta_state (const meta_t *self, uint64_t term, uint64_t leader, uint64_t peer_id)
{
    json_t *state = json_pack ("{sIsIsIsI}", "applied", (json_int_t) self->applied,
                               "term", (json_int_t) term, "leader", (json_int_t) leader,
                               "peer_id", (json_int_t) peer_id);
    assert (state);
    json_object_set_new (state, "peers", json_deep_copy (self->peers));
    json_object_set_new (state, "collections", json_deep_copy (self->collections));
    json_object_set_new (state, "aliases", json_deep_copy (self->aliases));
    return state;
}

const json_t *
meta_collections (const meta_t *self)
{
    return self->collections;
}

const json_t *
meta_aliases (const meta_t *self)
{
    return self->aliases;
}

char *
meta_dump (const meta_t *self, size_t *len)
{
    json_t *dump = json_pack ("{sIsOsOsOsO}", "applied", (json_int_t) self->applied,
                              "peers", self->peers, "collections", self->collections,
                              "aliases", self->aliases, "done", self->done);
    assert (dump);
    char *text = json_dumps (dump, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref (dump);
    assert (text);
    if (len)
        *len = strlen (text);
    return text;
}

//  A "done" list as meta_dump writes it.
static bool
s_done_valid (const json_t *done)
{
    if (!json_is_array (done) || json_array_size (done) > META_DONE_MAX)
        return false;
    size_t i;
    const json_t *d;
    json_array_foreach (done, i, d)
        if (!json_is_string (json_object_get (d, "op_id"))
            || !json_is_integer (json_object_get (d, "rc"))
            || json_integer_value (json_object_get (d, "rc")) > 0
            || !json_is_string (json_object_get (d, "error")))
            return false;
    return true;
}

int
meta_load (meta_t *self, const void *data, size_t len)
{
    json_error_t error;
    json_t *dump = json_loadb ((const char *) data, len, JSON_REJECT_DUPLICATES, &error);
    json_t *applied = json_object_get (dump, "applied");
    json_t *peers = json_object_get (dump, "peers");
    json_t *collections = json_object_get (dump, "collections");
    json_t *aliases = json_object_get (dump, "aliases");
    json_t *done = json_object_get (dump, "done");      //  absent before op ids
    if (!json_is_integer (applied) || json_integer_value (applied) < 0
        || !json_is_object (peers) || !json_is_object (collections)
        || !json_is_object (aliases) || (done && !s_done_valid (done))) {
        json_decref (dump);
        return -SH_EINVAL;
    }
    json_decref (self->peers);
    json_decref (self->collections);
    json_decref (self->aliases);
    self->applied = (uint64_t) json_integer_value (applied);
    self->peers = json_incref (peers);
    self->collections = json_incref (collections);
    self->aliases = json_incref (aliases);
    json_decref (self->done);
    self->done = done ? json_incref (done) : json_array ();
    json_decref (dump);
    return 0;
}
