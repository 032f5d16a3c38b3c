/*  fuzz_route: arbitrary bytes as what a peer sends the p2p port. The input
    is cut into frames at every "\n--\n": the first frame goes through
    route_decode (and a decoded route through route_encode, which must give
    the same bytes back, and route_uri_endpoint on its uri), the rest through
    route_peek_envelope and, when that accepts them, route_set_request_id.
    Nothing a peer sends may crash the codec or make it read out of bounds.
*/
#include "common/err.h"
#include "proto/route.h"
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
    zframe_t *first = zmsg_pop (msg);
    route_t route;
    if (route_decode (zframe_data (first), zframe_size (first), &route) == 0) {
        zframe_t *again = route_encode (&route);
        assert (again);
        assert (zframe_eq (again, first));
        zframe_destroy (&again);
        char endpoint [ROUTE_MAX_URI + 32];
        if (route_uri_endpoint (route.uri, endpoint, sizeof endpoint) == 0)
            assert (strncmp (endpoint, "tcp://", 6) == 0);
    }
    //  The uri parser on the raw frame too, as a string.
    char *text = (char *) malloc (zframe_size (first) + 1);
    memcpy (text, zframe_data (first), zframe_size (first));
    text [zframe_size (first)] = 0;
    char small [24];
    route_uri_endpoint (text, small, sizeof small);
    free (text);
    zframe_destroy (&first);

    route_env_t head;
    if (route_peek_envelope (msg, &head) == 0) {
        int rc = route_set_request_id (zmsg_first (msg), head.request_id + 1);
        assert (rc == 0);
    }
    zmsg_destroy (&msg);
    return 0;
}
