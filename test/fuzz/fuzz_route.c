/*  fuzz_route: arbitrary bytes as what a peer sends the p2p port. The input
    is cut into frames at every "\n--\n": the first frame goes through
    route_decode (and a decoded route through route_encode, which must give
    the same bytes back, and route_uri_endpoint on its uri), the rest through
    route_peek_envelope and, when that accepts them, route_set_request_id.
    The whole input is also what a local actor writes on a stream
    connection (route_stream_*): every message read from it is queued and
    written again, and must read back the same.
    Nothing a peer sends may crash the codec or make it read out of bounds.
*/
#include "common/err.h"
#include "proto/route.h"
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

//  A message read from a stream, written and read back: the same frames.
static void
s_stream_round_trip (zmsg_t *msg)
{
    int fds [2];
    if (socketpair (AF_UNIX, SOCK_STREAM, 0, fds))
        return;
    fcntl (fds [0], F_SETFL, O_NONBLOCK);
    fcntl (fds [1], F_SETFL, O_NONBLOCK);
    route_stream_t *out = route_stream_new ();
    route_stream_t *in = route_stream_new ();
    assert (route_stream_queue (out, msg) == 0);
    zmsg_t *back = NULL;
    //  Small inputs: the socket buffer takes them whole, a turn at a time.
    for (int turn = 0; turn < 64 && !back; turn++) {
        assert (route_stream_flush (out, fds [1]) == 0);
        assert (route_stream_read (in, fds [0]) == 0);
        back = route_stream_next (in);
    }
    assert (back);
    assert (zmsg_size (back) == zmsg_size (msg));
    for (zframe_t *a = zmsg_first (msg), *b = zmsg_first (back); a;
         a = zmsg_next (msg), b = zmsg_next (back))
        assert (zframe_eq (a, b));
    zmsg_destroy (&back);
    route_stream_destroy (&in);
    route_stream_destroy (&out);
    close (fds [0]);
    close (fds [1]);
}

//  data as the bytes of a stream connection.
static void
s_stream (const uint8_t *data, size_t size)
{
    int fds [2];
    if (socketpair (AF_UNIX, SOCK_STREAM, 0, fds))
        return;
    fcntl (fds [0], F_SETFL, O_NONBLOCK);
    //  More than a socket buffer is cut: the parser sees a prefix.
    ssize_t sent = write (fds [1], data, size);
    close (fds [1]);
    route_stream_t *stream = route_stream_new ();
    int rc = 0;
    for (int turn = 0; turn < 1024 && rc == 0 && sent >= 0; turn++) {
        rc = route_stream_read (stream, fds [0]);
        zmsg_t *msg;
        while ((msg = route_stream_next (stream))) {
            assert (zmsg_size (msg) >= 1 && zmsg_size (msg) <= ROUTE_STREAM_FRAMES);
            s_stream_round_trip (msg);
            zmsg_destroy (&msg);
        }
    }
    assert (rc == 0 || rc == -SH_EIO || rc == -SH_EPROTO);
    route_stream_destroy (&stream);
    close (fds [0]);
}

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

    s_stream (data, size);
    return 0;
}
