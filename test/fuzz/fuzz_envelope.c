/*  fuzz_envelope: arbitrary bytes as a multipart message (frames separated
    at every "\n--\n") through envelope_decode, then vecref_get on every
    object of the JSON frame: nothing a peer sends may crash the decoder.
*/
#include "proto/envelope.h"
#include "proto/vecref.h"
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    zmsg_t *msg = zmsg_new ();
    const uint8_t *start = data, *end = data + size;
    while (start <= end) {
        const uint8_t *sep = (const uint8_t *) memmem (start, (size_t) (end - start),
                                                        "\n--\n", 4);
        const uint8_t *stop = sep ? sep : end;
        zmsg_addmem (msg, start, (size_t) (stop - start));
        if (!sep)
            break;
        start = sep + 4;
    }
    envelope_t *env = NULL;
    bool routed = size > 0 && data [0] & 1;
    if (envelope_decode (&msg, routed, &env) == 0) {
        json_t *json = envelope_json (env);
        const char *key;
        json_t *value;
        json_object_foreach (json, key, value) {
            const float *v;
            uint32_t dim;
            if (vecref_get (env, value, &v, &dim) == 0 && dim)
                (void) v [dim - 1];      //  touch the last float: in bounds
        }
        zmsg_t *again = envelope_encode (env);
        zmsg_destroy (&again);
        envelope_destroy (&env);
    }
    return 0;
}
