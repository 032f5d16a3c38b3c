/*  rmsg: a Raft message (rcore_msg_t) as the JSON of a RAFT_MESSAGE
    envelope, and back (see rmsg.h). Bytes travel base64 in libsodium's
    original variant (with padding), so the bytes a follower stores are
    exactly the leader's.

    The decoder reads in two passes: the first checks every field's type and
    range and adds up the sizes the base64 texts can decode to (bounded by
    RMSG_MAX_ENTRIES, RCORE_MAX_VOTERS and RMSG_MAX_BYTES) without
    allocating; the second allocates and decodes. A failure in either
    leaves out zeroed and owning nothing.

    Every u64 is a JSON integer; jansson (like most JSON readers) holds
    integers as int64, so 0..INT64_MAX is the range that travels. Peer ids
    are at most 2^53 and terms and indexes never come near, so rmsg_encode
    returns NULL for a message with a larger value rather than sending
    something no peer can read.
*/
#include "actors/raft/rmsg.h"
#include "common/err.h"
#include <assert.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  Encoding

//  Sets key to u64 value (skipped when 0 unless always). False if the value
//  does not fit a JSON integer.
static bool
s_put_u64 (json_t *obj, const char *key, uint64_t value, bool always)
{
    if (value > (uint64_t) INT64_MAX)
        return false;
    if (value || always)
        json_object_set_new (obj, key, json_integer ((json_int_t) value));
    return true;
}

static json_t *
s_base64 (const uint8_t *data, size_t len)
{
    if (!len)
        return json_string ("");
    size_t size = sodium_base64_ENCODED_LEN (len, sodium_base64_VARIANT_ORIGINAL);
    char *text = (char *) malloc (size);
    assert (text);
    sodium_bin2base64 (text, size, data, len, sodium_base64_VARIANT_ORIGINAL);
    json_t *json = json_string (text);
    free (text);
    return json;
}

static json_t *
s_ids (const uint64_t *ids, size_t n, bool *ok)
{
    json_t *array = json_array ();
    for (size_t i = 0; i < n; i++) {
        if (ids [i] > (uint64_t) INT64_MAX)
            *ok = false;
        else
            json_array_append_new (array, json_integer ((json_int_t) ids [i]));
    }
    return array;
}

json_t *
rmsg_encode (const rcore_msg_t *msg)
{
    assert (msg);
    json_t *json = json_object ();
    if (!json)
        return NULL;
    bool ok = msg->type >= 0;
    json_object_set_new (json, "type", json_integer (msg->type));
    ok = ok && s_put_u64 (json, "from", msg->from, true);
    ok = ok && s_put_u64 (json, "to", msg->to, true);
    ok = ok && s_put_u64 (json, "term", msg->term, true);
    ok = ok && s_put_u64 (json, "index", msg->index, false);
    ok = ok && s_put_u64 (json, "log_term", msg->log_term, false);
    ok = ok && s_put_u64 (json, "commit", msg->commit, false);
    ok = ok && s_put_u64 (json, "hint", msg->reject_hint, false);
    if (msg->reject)
        json_object_set_new (json, "reject", json_true ());
    if (msg->force)
        json_object_set_new (json, "force", json_true ());
    if (ok && msg->n_entries) {
        json_t *entries = json_array ();
        for (size_t i = 0; ok && i < msg->n_entries; i++) {
            const rcore_entry_t *e = &msg->entries [i];
            json_t *entry = json_object ();
            ok = s_put_u64 (entry, "index", e->index, true)
              && s_put_u64 (entry, "term", e->term, true);
            json_object_set_new (entry, "type", json_integer (e->type));
            json_object_set_new (entry, "data", s_base64 (e->data, e->len));
            json_array_append_new (entries, entry);
        }
        json_object_set_new (json, "entries", entries);
    }
    const rcore_snapshot_t *s = &msg->snapshot;
    if (ok && (msg->type == RCORE_MSG_SNAPSHOT || s->index || s->term || s->len
               || s->conf.n_voters || s->conf.n_learners)) {
        json_t *snap = json_object ();
        ok = s_put_u64 (snap, "index", s->index, true) && s_put_u64 (snap, "term", s->term, true);
        json_object_set_new (snap, "data", s_base64 (s->data, s->len));
        json_object_set_new (snap, "voters", s_ids (s->conf.voters, s->conf.n_voters, &ok));
        json_object_set_new (snap, "learners",
                             s_ids (s->conf.learners, s->conf.n_learners, &ok));
        json_object_set_new (json, "snapshot", snap);
    }
    if (!ok) {
        json_decref (json);
        return NULL;
    }
    return json;
}

//  --------------------------------------------------------------------------
//  Decoding

//  An optional u64 field (absent: 0).
static int
s_get_u64 (const json_t *obj, const char *key, uint64_t *out)
{
    const json_t *value = json_object_get (obj, key);
    *out = 0;
    if (!value)
        return 0;
    if (!json_is_integer (value) || json_integer_value (value) < 0)
        return -SH_EPROTO;
    *out = (uint64_t) json_integer_value (value);
    return 0;
}

//  An optional bool field (absent: false).
static int
s_get_bool (const json_t *obj, const char *key, bool *out)
{
    const json_t *value = json_object_get (obj, key);
    *out = false;
    if (!value)
        return 0;
    if (!json_is_boolean (value))
        return -SH_EPROTO;
    *out = json_is_true (value);
    return 0;
}

//  An optional small enum field in [0, count).
static int
s_get_enum (const json_t *obj, const char *key, int count, int *out)
{
    uint64_t value;
    if (s_get_u64 (obj, key, &value) || value >= (uint64_t) count)
        return -SH_EPROTO;
    *out = (int) value;
    return 0;
}

//  Checks an optional base64 field and adds the most bytes it can decode
//  to *total (padding included, so at most len / 4 * 3).
static int
s_check_base64 (const json_t *obj, const char *key, size_t *total)
{
    const json_t *value = json_object_get (obj, key);
    if (!value)
        return 0;
    if (!json_is_string (value))
        return -SH_EPROTO;
    size_t len = json_string_length (value);
    if (len % 4)
        return -SH_EPROTO;      //  the original variant is always padded
    size_t bytes = len / 4 * 3;
    if (bytes > RMSG_MAX_BYTES - *total)
        return -SH_EPROTO;
    *total += bytes;
    return 0;
}

//  Decodes an optional base64 field (already checked) into *data/*len.
static int
s_decode_base64 (const json_t *obj, const char *key, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    const json_t *value = json_object_get (obj, key);
    if (!value || json_string_length (value) == 0)
        return 0;
    const char *text = json_string_value (value);
    size_t text_len = json_string_length (value);
    size_t max = text_len / 4 * 3;
    uint8_t *bin = (uint8_t *) malloc (max);
    assert (bin);
    size_t got = 0;
    const char *end = NULL;
    if (sodium_base642bin (bin, max, text, text_len, NULL, &got, &end,
                           sodium_base64_VARIANT_ORIGINAL) != 0
        || end != text + text_len) {
        free (bin);
        return -SH_EPROTO;
    }
    if (got == 0) {
        free (bin);
        return 0;
    }
    *data = bin;
    *len = got;
    return 0;
}

//  Checks an optional array of ids (at most RCORE_MAX_VOTERS u64s).
static int
s_check_ids (const json_t *obj, const char *key)
{
    const json_t *array = json_object_get (obj, key);
    if (!array)
        return 0;
    if (!json_is_array (array) || json_array_size (array) > RCORE_MAX_VOTERS)
        return -SH_EPROTO;
    for (size_t i = 0; i < json_array_size (array); i++) {
        const json_t *item = json_array_get (array, i);
        if (!json_is_integer (item) || json_integer_value (item) < 0)
            return -SH_EPROTO;
    }
    return 0;
}

static void
s_read_ids (const json_t *obj, const char *key, uint64_t **ids, size_t *n)
{
    const json_t *array = json_object_get (obj, key);
    *ids = NULL;
    *n = array ? json_array_size (array) : 0;
    if (!*n)
        return;
    *ids = (uint64_t *) malloc (*n * sizeof (uint64_t));
    assert (*ids);
    for (size_t i = 0; i < *n; i++)
        (*ids) [i] = (uint64_t) json_integer_value (json_array_get (array, i));
}

//  First pass: every field's type and range, and the sizes. No allocation.
static int
s_check (const json_t *json)
{
    if (!json_is_object (json))
        return -SH_EPROTO;
    int type;
    uint64_t u;
    bool b;
    if (s_get_enum (json, "type", RCORE_MSG_TYPE_COUNT, &type) || type == RCORE_MSG_NONE)
        return -SH_EPROTO;
    const char *u64_keys [] = { "from", "to", "term", "index", "log_term", "commit", "hint" };
    for (size_t i = 0; i < sizeof u64_keys / sizeof u64_keys [0]; i++)
        if (s_get_u64 (json, u64_keys [i], &u))
            return -SH_EPROTO;
    if (s_get_bool (json, "reject", &b) || s_get_bool (json, "force", &b))
        return -SH_EPROTO;
    size_t total = 0;
    const json_t *entries = json_object_get (json, "entries");
    if (entries) {
        if (!json_is_array (entries) || json_array_size (entries) > RMSG_MAX_ENTRIES)
            return -SH_EPROTO;
        for (size_t i = 0; i < json_array_size (entries); i++) {
            const json_t *entry = json_array_get (entries, i);
            int etype;
            if (!json_is_object (entry) || s_get_u64 (entry, "index", &u)
                || s_get_u64 (entry, "term", &u)
                || s_get_enum (entry, "type", RCORE_ENTRY_TYPE_COUNT, &etype)
                || s_check_base64 (entry, "data", &total))
                return -SH_EPROTO;
        }
    }
    const json_t *snap = json_object_get (json, "snapshot");
    if (snap) {
        if (!json_is_object (snap) || s_get_u64 (snap, "index", &u)
            || s_get_u64 (snap, "term", &u) || s_check_base64 (snap, "data", &total)
            || s_check_ids (snap, "voters") || s_check_ids (snap, "learners"))
            return -SH_EPROTO;
    }
    return 0;
}

int
rmsg_decode (const json_t *json, rcore_msg_t *out)
{
    assert (out);
    memset (out, 0, sizeof *out);
    if (s_check (json))
        return -SH_EPROTO;
    //  Checked: the reads below cannot fail but for bad base64 text.
    s_get_enum (json, "type", RCORE_MSG_TYPE_COUNT, &out->type);
    s_get_u64 (json, "from", &out->from);
    s_get_u64 (json, "to", &out->to);
    s_get_u64 (json, "term", &out->term);
    s_get_u64 (json, "index", &out->index);
    s_get_u64 (json, "log_term", &out->log_term);
    s_get_u64 (json, "commit", &out->commit);
    s_get_u64 (json, "hint", &out->reject_hint);
    s_get_bool (json, "reject", &out->reject);
    s_get_bool (json, "force", &out->force);
    const json_t *entries = json_object_get (json, "entries");
    size_t n = entries ? json_array_size (entries) : 0;
    if (n) {
        out->entries = (rcore_entry_t *) calloc (n, sizeof (rcore_entry_t));
        assert (out->entries);
        out->n_entries = n;
        for (size_t i = 0; i < n; i++) {
            const json_t *entry = json_array_get (entries, i);
            rcore_entry_t *e = &out->entries [i];
            int etype = 0;
            s_get_u64 (entry, "index", &e->index);
            s_get_u64 (entry, "term", &e->term);
            s_get_enum (entry, "type", RCORE_ENTRY_TYPE_COUNT, &etype);
            e->type = (uint8_t) etype;
            if (s_decode_base64 (entry, "data", &e->data, &e->len)) {
                rmsg_free (out);
                return -SH_EPROTO;
            }
        }
    }
    const json_t *snap = json_object_get (json, "snapshot");
    if (snap) {
        rcore_snapshot_t *s = &out->snapshot;
        s_get_u64 (snap, "index", &s->index);
        s_get_u64 (snap, "term", &s->term);
        s_read_ids (snap, "voters", &s->conf.voters, &s->conf.n_voters);
        s_read_ids (snap, "learners", &s->conf.learners, &s->conf.n_learners);
        if (s_decode_base64 (snap, "data", &s->data, &s->len)) {
            rmsg_free (out);
            return -SH_EPROTO;
        }
    }
    return 0;
}

void
rmsg_free (rcore_msg_t *msg)
{
    if (!msg)
        return;
    for (size_t i = 0; i < msg->n_entries; i++)
        free (msg->entries [i].data);
    free (msg->entries);
    free (msg->snapshot.data);
    free (msg->snapshot.conf.voters);
    free (msg->snapshot.conf.learners);
    memset (msg, 0, sizeof *msg);
}
