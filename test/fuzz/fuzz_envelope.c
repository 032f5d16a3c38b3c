/*  fuzz_envelope: arbitrary bytes as a multipart message (frames separated
    at every "\n--\n") through envelope_decode, then vecref_get on every
    object of the JSON frame: nothing a peer sends may crash the decoder.
    The same bytes also come through a stream socket (envelope_read_fd, the
    direct read path), and what decodes is written back to one and must
    read back.
*/
#include "proto/envelope.h"
#include "proto/vecref.h"
#include <assert.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

//  The bytes as a stream: written to a socket pair (as much as it holds),
//  whose writer is then closed, and read as one envelope.
static void
s_stream (const uint8_t *data, size_t size)
{
    int fds [2];
    if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds))
        return;
    ssize_t sent = size ? send (fds [0], data, size, MSG_NOSIGNAL) : 0;
    (void) sent;
    close (fds [0]);
    envelope_t *env = NULL;
    if (envelope_read_fd (fds [1], envelope_now_ms () + 1000, &env) == 0) {
        int pair [2];
        if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair) == 0) {
            envelope_t *back = NULL;
            //  Small enough to sit in the socket's buffer whole.
            if (size < 65536 && envelope_write_fd (env, pair [0], 0) == 0) {
                int rc = envelope_read_fd (pair [1], 0, &back);
                assert (rc == 0 && envelope_type (back) == envelope_type (env));
                envelope_destroy (&back);
            }
            close (pair [0]);
            close (pair [1]);
        }
        envelope_destroy (&env);
    }
    close (fds [1]);
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
    s_stream (data, size);
    return 0;
}
