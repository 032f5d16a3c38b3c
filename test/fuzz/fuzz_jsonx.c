/*  fuzz_jsonx: arbitrary bytes through the request body parser; whatever it
    accepts must also be what jansson accepts, value for value. The packed
    parser (number arrays under given keys to floats, with its pre-scan)
    must accept exactly what the plain one does, with the same message when
    it refuses, and a tree that is the plain one's with each packed array
    replaced by its placeholder holding the same numbers (also with packs
    at a depth and columns of vectors); and what jsonx
    writes must read back as the same tree.
*/
#include "common/jsonx.h"
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const s_keys [] = { "vector", "query", "v", NULL };
//  Packs at a depth and a column (the gateway's upsert), and one at any
//  depth: the pre-scan's depth count and the column walk must agree with
//  the builder's, array for array.
static const jsonx_pack_t s_packs [] = {
    { "vector", 3, false }, { "vectors", 2, true }, { "v", 0, true }, { "w", 1, false },
    { NULL, 0, false }
};

//  True when got (packed) is plain with packed arrays as placeholders.
static bool
s_same (const json_t *plain, const json_t *got, const jsonx_packed_t *packed)
{
    size_t count = 0;
    const float *floats = jsonx_packed_find (packed, got, &count);
    if (floats) {
        if (!json_is_array (plain) || json_array_size (plain) != count)
            return false;
        for (size_t i = 0; i < count; i++) {
            const json_t *x = json_array_get (plain, i);
            if (!json_is_number (x) || (float) json_number_value (x) != floats [i])
                return false;
        }
        return true;
    }
    if (json_typeof (plain) != json_typeof (got))
        return false;
    if (json_is_object (plain)) {
        if (json_object_size (plain) != json_object_size (got))
            return false;
        const char *key;
        json_t *value;
        json_object_foreach ((json_t *) plain, key, value)
            if (!s_same (value, json_object_get (got, key), packed))
                return false;
        return true;
    }
    if (json_is_array (plain)) {
        if (json_array_size (plain) != json_array_size (got))
            return false;
        for (size_t i = 0; i < json_array_size (plain); i++)
            if (!s_same (json_array_get (plain, i), json_array_get (got, i), packed))
                return false;
        return true;
    }
    return json_equal (plain, got);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char err [256] = "", err2 [256] = "";
    json_t *got = jsonx_loadb ((const char *) data, size, 0, err, sizeof err);
    //  Packed by keys, then by packs: each against the plain parse.
    for (int by_packs = 0; by_packs < 2; by_packs++) {
        jsonx_packed_t *packed = NULL;
        json_t *pgot = by_packs
            ? jsonx_loadb_packs ((const char *) data, size, 0, s_packs, &packed, err2,
                                 sizeof err2)
            : jsonx_loadb_packed ((const char *) data, size, 0, s_keys, &packed, err2,
                                  sizeof err2);
        assert (!got == !pgot);
        if (!got)
            assert (strcmp (err, err2) == 0 && !packed);
        else
            assert (s_same (got, pgot, packed));
        json_decref (pgot);
        jsonx_packed_destroy (&packed);
    }
    if (got) {
        json_error_t error;
        json_t *want = json_loadb ((const char *) data, size,
                                   JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
        //  Where both accept, both trees are equal (the last of two equal
        //  keys wins in both; "\u0000" is allowed in strings, not in keys).
        if (want)
            assert (json_equal (got, want));
        json_decref (want);
        //  Written and read back: the same tree, both ways of writing.
        for (int exact = 0; exact < 2; exact++) {
            jsonx_buf_t text = { 0 };
            if (exact)
                jsonx_write_exact (&text, got);
            else
                jsonx_write (&text, got);
            json_t *back = jsonx_loadb (text.data, text.len, 0, err, sizeof err);
            assert (back && json_equal (back, got));
            json_decref (back);
            free (text.data);
        }
        json_decref (got);
    }
    return 0;
}
