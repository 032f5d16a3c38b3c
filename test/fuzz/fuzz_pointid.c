/*  fuzz_pointid: arbitrary text as a point id from a URL path, and as a
    binary key read back from storage.
*/
#include "common/pointid.h"
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char *text = (char *) malloc (size + 1);
    memcpy (text, data, size);
    text [size] = 0;
    pointid_t id;
    if (pointid_parse (text, &id) == 0) {
        char buf [POINTID_TEXT_SIZE];
        pointid_format (&id, buf);
        json_decref (pointid_to_json (&id));
    }
    if (pointid_from_key (data, size, &id) == 0) {
        uint8_t key [POINTID_KEY_SIZE];
        pointid_key (&id, key);
    }
    free (text);
    return 0;
}
