/*  fuzz_jsonx: arbitrary bytes through the request body parser; whatever it
    accepts must also be what jansson accepts, value for value.
*/
#include "common/jsonx.h"
#include <assert.h>
#include <stdint.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char err [256];
    json_t *got = jsonx_loadb ((const char *) data, size, 0, err, sizeof err);
    if (got) {
        json_error_t error;
        json_t *want = json_loadb ((const char *) data, size,
                                   JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
        //  Where both accept, both trees are equal (the last of two equal
        //  keys wins in both; "\u0000" is allowed in strings, not in keys).
        if (want)
            assert (json_equal (got, want));
        json_decref (want);
        json_decref (got);
    }
    return 0;
}
