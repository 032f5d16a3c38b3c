/*  pointid: Qdrant point ids (see pointid.h): parsing from JSON and URL text,
    formatting, ordering, hashing and the binary key used as a primary key.

    Integer ids: Qdrant's are u64, but jansson's json_int_t is a signed 64-bit
    integer, so ids above 2^63-1 cannot arrive in a JSON body (they would be
    read as a real and rejected) and could not be written back into JSON. For
    the same reason pointid_parse refuses URL ids above 2^63-1: an id that
    enters shoal must be one every actor can put into a JSON message.
*/
#include "common/pointid.h"
#include "common/hex.h"
#include "common/err.h"
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

//  Largest integer id: what a jansson integer can hold.
#define S_MAX_NUM ((uint64_t) INT64_MAX)

//  Reads 32 hex digits, with hyphens where the 8-4-4-4-12 form has them if
//  hyphenated is set. len must be 36 (hyphenated) or 32 (simple).
static int
s_parse_uuid_body (const char *text, size_t len, uint8_t *uuid)
{
    bool hyphenated = len == 36;
    if (!hyphenated && len != 32)
        return -SH_EINVAL;
    size_t n = 0;           //  nibbles read
    for (size_t i = 0; i < len; i++) {
        if (hyphenated && (i == 8 || i == 13 || i == 18 || i == 23)) {
            if (text [i] != '-')
                return -SH_EINVAL;
            continue;
        }
        int v = hex_value ((unsigned char) text [i]);
        if (v < 0)
            return -SH_EINVAL;
        if (n % 2 == 0)
            uuid [n / 2] = (uint8_t) (v << 4);
        else
            uuid [n / 2] |= (uint8_t) v;
        n++;
    }
    return n == 32 ? 0 : -SH_EINVAL;
}

//  Any of the UUID spellings Qdrant (the uuid crate) accepts: hyphenated,
//  simple, {braced}, urn:uuid:hyphenated; hex digits of either case.
static int
s_parse_uuid (const char *text, uint8_t *uuid)
{
    size_t len = strlen (text);
    if (len == 45 && strncasecmp (text, "urn:uuid:", 9) == 0)
        return s_parse_uuid_body (text + 9, 36, uuid);
    if (len == 38 && text [0] == '{' && text [37] == '}')
        return s_parse_uuid_body (text + 1, 36, uuid);
    return s_parse_uuid_body (text, len, uuid);
}

int
pointid_from_json (const json_t *json, pointid_t *out)
{
    if (!json || !out)
        return -SH_EINVAL;
    memset (out, 0, sizeof *out);
    if (json_is_integer (json)) {
        json_int_t v = json_integer_value (json);
        if (v < 0)
            return -SH_EINVAL;
        out->num = (uint64_t) v;
        return 0;
    }
    //  A string must be a UUID: Qdrant does not read "123" as an integer id.
    if (json_is_string (json)) {
        if (s_parse_uuid (json_string_value (json), out->uuid))
            return -SH_EINVAL;
        out->is_uuid = true;
        return 0;
    }
    return -SH_EINVAL;         //  reals (1.5 and 1.0), bools, null, containers
}

int
pointid_parse (const char *text, pointid_t *out)
{
    if (!text || !out)
        return -SH_EINVAL;
    memset (out, 0, sizeof *out);
    if (*text && strspn (text, "0123456789") == strlen (text)) {
        uint64_t v = 0;
        for (const char *p = text; *p; p++) {
            uint64_t digit = (uint64_t) (*p - '0');
            if (v > (S_MAX_NUM - digit) / 10)
                return -SH_EINVAL;         //  beyond what JSON can carry
            v = v * 10 + digit;
        }
        out->num = v;
        return 0;
    }
    if (s_parse_uuid (text, out->uuid))
        return -SH_EINVAL;
    out->is_uuid = true;
    return 0;
}

void
pointid_format (const pointid_t *id, char *buf)
{
    if (!id->is_uuid) {
        snprintf (buf, POINTID_TEXT_SIZE, "%" PRIu64, id->num);
        return;
    }
    static const char s_hex [] = "0123456789abcdef";
    char *p = buf;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = s_hex [id->uuid [i] >> 4];
        *p++ = s_hex [id->uuid [i] & 15];
    }
    *p = 0;
}

json_t *
pointid_to_json (const pointid_t *id)
{
    if (!id->is_uuid) {
        //  Ids above INT64_MAX cannot be made by the parsers (see top); one
        //  built by hand is our bug, not to be sent on as a negative id.
        assert (id->num <= S_MAX_NUM);
        return json_integer ((json_int_t) id->num);
    }
    char text [POINTID_TEXT_SIZE];
    pointid_format (id, text);
    return json_string (text);
}

int
pointid_cmp (const pointid_t *a, const pointid_t *b)
{
    if (a->is_uuid != b->is_uuid)
        return a->is_uuid ? 1 : -1;
    if (!a->is_uuid)
        return a->num < b->num ? -1 : a->num > b->num ? 1 : 0;
    int rc = memcmp (a->uuid, b->uuid, 16);
    return rc < 0 ? -1 : rc > 0 ? 1 : 0;
}

bool
pointid_eq (const pointid_t *a, const pointid_t *b)
{
    return pointid_cmp (a, b) == 0;
}

//  splitmix64's finaliser: every input bit affects every output bit.
static uint64_t
s_mix (uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t
s_get_be64 (const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p [i];
    return v;
}

static void
s_put_be64 (uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p [i] = (uint8_t) v;
        v >>= 8;
    }
}

uint64_t
pointid_hash (const pointid_t *id)
{
    if (!id->is_uuid)
        return s_mix (id->num);
    //  Chained so that swapping the halves changes the hash, and offset so
    //  that a UUID whose halves mix to an integer's hash is no likelier.
    uint64_t hi = s_get_be64 (id->uuid);
    uint64_t lo = s_get_be64 (id->uuid + 8);
    return s_mix (s_mix (hi ^ 0x5555555555555555ULL) ^ lo);
}

size_t
pointid_key (const pointid_t *id, uint8_t *out)
{
    memset (out, 0, POINTID_KEY_SIZE);
    if (id->is_uuid) {
        out [0] = 1;
        memcpy (out + 1, id->uuid, 16);
    }
    else
        s_put_be64 (out + 9, id->num);
    return POINTID_KEY_SIZE;
}

int
pointid_from_key (const uint8_t *key, size_t len, pointid_t *out)
{
    if (!key || !out || len != POINTID_KEY_SIZE || key [0] > 1)
        return -SH_EINVAL;
    memset (out, 0, sizeof *out);
    if (key [0] == 1) {
        out->is_uuid = true;
        memcpy (out->uuid, key + 1, 16);
        return 0;
    }
    //  An integer key has its high 8 bytes zero; anything else is not ours.
    for (int i = 1; i < 9; i++)
        if (key [i])
            return -SH_EINVAL;
    out->num = s_get_be64 (key + 9);
    return out->num <= S_MAX_NUM ? 0 : -SH_EINVAL;
}
