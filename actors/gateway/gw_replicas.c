/*  gw_replicas: replica choice and CollectionClusterInfo (see gw_replicas.h).
    Peer ids are the decimal keys of a shard's "replicas" object; anything
    that does not parse as one is skipped, never trusted.
*/
#include "actors/gateway/gw_replicas.h"
#include "proto/msg.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Most replicas of one shard considered (a shard has a handful).
#define S_MAX_REPLICAS 64

bool
gw_replicas_readable (const char *state)
{
    return state && (strcmp (state, "Active") == 0 || strcmp (state, "ActiveRead") == 0);
}

bool
gw_replicas_writable (const char *state)
{
    return state && (strcmp (state, "Active") == 0 || strcmp (state, "ActiveRead") == 0
                     || strcmp (state, "Initializing") == 0
                     || strcmp (state, "Listener") == 0);
}

bool
gw_replicas_is_write (int msg_type)
{
    return msg_type >= MSG_SHARD_UPSERT && msg_type <= MSG_SHARD_DELETE_VECTORS;
}

//  The shard object with shard_id, or NULL.
static const json_t *
s_shard (const json_t *collection, uint32_t shard_id)
{
    size_t i;
    json_t *shard;
    json_array_foreach (json_object_get (collection, "shards"), i, shard) {
        json_t *sid = json_object_get (shard, "shard_id");
        if (json_is_integer (sid) && json_integer_value (sid) == (json_int_t) shard_id)
            return shard;
    }
    return NULL;
}

//  A peer id key: decimal digits only, 1 .. 2^64-1. 0 if not one.
static uint64_t
s_peer_key (const char *key)
{
    if (!key || !*key || strlen (key) > 20)
        return 0;
    for (const char *p = key; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    char *end = NULL;
    unsigned long long id = strtoull (key, &end, 10);
    return end && *end == 0 ? (uint64_t) id : 0;
}

static int
s_cmp_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

int
gw_replicas_choose (const json_t *collection, uint32_t shard_id, bool write,
                    uint64_t self, uint64_t avoid, uint64_t spread, uint64_t *out,
                    size_t max)
{
    const json_t *shard = s_shard (collection, shard_id);
    json_t *replicas = json_object_get (shard, "replicas");
    if (!json_is_object (replicas))
        return -1;
    uint64_t fit [S_MAX_REPLICAS];
    size_t n = 0;
    bool self_fits = false;
    const char *key;
    json_t *value;
    json_object_foreach (replicas, key, value) {
        uint64_t peer = s_peer_key (key);
        const char *state = json_string_value (value);
        if (!peer || n == S_MAX_REPLICAS)
            continue;
        if (write ? !gw_replicas_writable (state) : !gw_replicas_readable (state))
            continue;
        fit [n++] = peer;
        self_fits |= peer == self;
    }
    //  Sorted, so that the choice does not depend on how the JSON object
    //  happens to iterate.
    qsort (fit, n, sizeof fit [0], s_cmp_u64);
    if (write) {
        size_t count = n < max ? n : max;
        memcpy (out, fit, count * sizeof (uint64_t));
        return (int) count;
    }
    if (n == 0 || max == 0)
        return 0;
    if (self_fits && (self != avoid || n == 1)) {
        out [0] = self;
        return 1;
    }
    uint64_t others [S_MAX_REPLICAS];
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (fit [i] != avoid)
            others [m++] = fit [i];
    if (m == 0) {
        out [0] = fit [0];          //  only the avoided one is left
        return 1;
    }
    out [0] = others [spread % m];
    return 1;
}

bool
gw_replicas_in_transfer (const json_t *collection, uint32_t shard_id)
{
    size_t i;
    json_t *entry;
    json_array_foreach (json_object_get (collection, "transfers"), i, entry) {
        json_t *sid = json_object_get (entry, "shard_id");
        if (json_is_integer (sid) && json_integer_value (sid) == (json_int_t) shard_id)
            return true;
    }
    return false;
}

const char *
gw_replicas_state (const json_t *collection, uint32_t shard_id, uint64_t peer)
{
    char key [24];
    snprintf (key, sizeof key, "%" PRIu64, peer);
    return json_string_value (json_object_get (
        json_object_get (s_shard (collection, shard_id), "replicas"), key));
}

//  Sort helpers for the info lists.
static int
s_cmp_remote (const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *) a, *y = *(const json_t *const *) b;
    json_int_t sx = json_integer_value (json_object_get (x, "shard_id"));
    json_int_t sy = json_integer_value (json_object_get (y, "shard_id"));
    if (sx != sy)
        return sx < sy ? -1 : 1;
    uint64_t px = (uint64_t) json_integer_value (json_object_get (x, "peer_id"));
    uint64_t py = (uint64_t) json_integer_value (json_object_get (y, "peer_id"));
    return px < py ? -1 : px > py;
}

//  Sorts a JSON array in place by cmp.
static void
s_sort_array (json_t *array, int (*cmp) (const void *, const void *))
{
    size_t n = json_array_size (array);
    if (n < 2)
        return;
    json_t **items = (json_t **) calloc (n, sizeof (json_t *));
    if (!items)
        return;
    for (size_t i = 0; i < n; i++)
        items [i] = json_incref (json_array_get (array, i));
    qsort (items, n, sizeof (json_t *), cmp);
    json_array_clear (array);
    for (size_t i = 0; i < n; i++)
        json_array_append_new (array, items [i]);
    free (items);
}

json_t *
gw_replicas_cluster_info (const json_t *collection, uint64_t self, const json_t *points,
                          const json_t *progress)
{
    json_t *local = json_array ();
    json_t *remote = json_array ();
    json_t *transfers = json_array ();
    const json_t *shards = json_object_get (collection, "shards");
    size_t i;
    json_t *shard;
    json_array_foreach (shards, i, shard) {
        json_t *sid = json_object_get (shard, "shard_id");
        if (!json_is_integer (sid) || json_integer_value (sid) < 0
            || json_integer_value (sid) > UINT32_MAX)
            continue;
        json_int_t shard_id = json_integer_value (sid);
        char sid_key [16];
        snprintf (sid_key, sizeof sid_key, "%" JSON_INTEGER_FORMAT, shard_id);
        const char *key;
        json_t *value;
        json_object_foreach (json_object_get (shard, "replicas"), key, value) {
            uint64_t peer = s_peer_key (key);
            if (!peer || !json_is_string (value))
                continue;
            if (peer == self) {
                json_int_t count = json_integer_value (json_object_get (points, sid_key));
                json_array_append_new (local,
                                       json_pack ("{sIsIsO}", "shard_id", shard_id,
                                                  "points_count", count > 0 ? count : 0,
                                                  "state", value));
            }
            else
                json_array_append_new (remote,
                                       json_pack ("{sIsIsO}", "shard_id", shard_id,
                                                  "peer_id", (json_int_t) peer,
                                                  "state", value));
        }
    }
    s_sort_array (local, s_cmp_remote);     //  peer_id absent: by shard id
    s_sort_array (remote, s_cmp_remote);

    json_t *entry;
    json_array_foreach (json_object_get (collection, "transfers"), i, entry) {
        json_t *sid = json_object_get (entry, "shard_id");
        json_t *from = json_object_get (entry, "from");
        json_t *to = json_object_get (entry, "to");
        if (!json_is_integer (sid) || !json_is_integer (from) || !json_is_integer (to))
            continue;
        json_t *method = json_object_get (entry, "method");
        json_t *info = json_pack ("{sOsOsOsbsO}", "shard_id", sid, "from", from, "to", to,
                                  "sync", json_is_true (json_object_get (entry, "sync")),
                                  "method", json_is_string (method) ? method : json_null ());
        char sid_key [24];
        snprintf (sid_key, sizeof sid_key, "%" JSON_INTEGER_FORMAT, json_integer_value (sid));
        json_t *done = json_object_get (progress, sid_key);
        json_int_t sent = json_integer_value (json_object_get (done, "transferred"));
        json_int_t total = json_integer_value (json_object_get (done, "total"));
        if (json_is_object (done) && sent >= 0 && total >= 0) {
            //  Qdrant's wording; the total is never shown below the count
            //  (points written during the transfer are streamed too).
            char comment [96];
            snprintf (comment, sizeof comment,
                      "Transferring records (%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT
                      ")", sent, total > sent ? total : sent);
            json_object_set_new (info, "comment", json_string (comment));
        }
        json_array_append_new (transfers, info);
    }
    return json_pack ("{sIsIsososo}", "peer_id", (json_int_t) self, "shard_count",
                      (json_int_t) json_array_size (shards), "local_shards", local,
                      "remote_shards", remote, "shard_transfers", transfers);
}
