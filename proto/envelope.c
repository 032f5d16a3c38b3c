/*  envelope: encode/decode of shoal's inter-process message (see envelope.h).
    Owns the header fields, the JSON frame and the float blobs of one message.
*/
#include "proto/envelope.h"
#include "proto/le.h"
#include "common/err.h"
#include "common/jsonx.h"
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

typedef struct {
    zframe_t *frame;    //  received frame whose data we borrow (aligned), or NULL
    float *owned;       //  our own buffer when frame is NULL
    size_t count;       //  floats in the blob
    size_t capacity;    //  floats allocated in owned
} s_blob_t;

struct _envelope_t {
    uint16_t type;              //  msg_type_t
    uint8_t kind;               //  0 request, 1 reply
    int32_t status;             //  0 or -SH_E..., replies only
    uint64_t request_id;        //  matches a reply to its request
    uint64_t deadline;          //  unix ms, 0 = none
    zframe_t *routing_id;       //  ROUTER peer to answer, or NULL
    json_t *json;               //  metadata frame, created on demand
    s_blob_t blobs [ENVELOPE_MAX_BLOBS];   //  float32 frames
    size_t n_blobs;             //  blobs in use
};

uint64_t
envelope_now_ms (void)
{
    struct timeval tv;
    gettimeofday (&tv, NULL);
    return (uint64_t) tv.tv_sec * 1000 + (uint64_t) tv.tv_usec / 1000;
}

envelope_t *
envelope_new (uint16_t type, uint64_t request_id, uint64_t deadline_ms)
{
    envelope_t *self = (envelope_t *) zmalloc (sizeof (envelope_t));
    assert (self);
    self->type = type;
    self->request_id = request_id;
    self->deadline = deadline_ms;
    return self;
}

envelope_t *
envelope_new_reply (const envelope_t *request, int status)
{
    assert (request);
    envelope_t *self = envelope_new (request->type, request->request_id, request->deadline);
    self->kind = 1;
    self->status = status;
    if (request->routing_id)
        self->routing_id = zframe_dup (request->routing_id);
    return self;
}

static void
s_blob_free (s_blob_t *blob)
{
    zframe_destroy (&blob->frame);
    free (blob->owned);
    memset (blob, 0, sizeof *blob);
}

void
envelope_destroy (envelope_t **self_p)
{
    assert (self_p);
    envelope_t *self = *self_p;
    if (!self)
        return;
    zframe_destroy (&self->routing_id);
    if (self->json)
        json_decref (self->json);
    for (size_t i = 0; i < self->n_blobs; i++)
        s_blob_free (&self->blobs [i]);
    free (self);
    *self_p = NULL;
}

uint16_t envelope_type (const envelope_t *self) { return self->type; }
bool envelope_is_reply (const envelope_t *self) { return self->kind == 1; }
int envelope_status (const envelope_t *self) { return self->status; }
uint64_t envelope_request_id (const envelope_t *self) { return self->request_id; }
uint64_t envelope_deadline (const envelope_t *self) { return self->deadline; }

void
envelope_set_status (envelope_t *self, int status)
{
    self->status = status;
}

void
envelope_set_request_id (envelope_t *self, uint64_t request_id)
{
    self->request_id = request_id;
}

json_t *
envelope_json (envelope_t *self)
{
    if (!self->json)
        self->json = json_object ();
    return self->json;
}

void
envelope_set_json (envelope_t *self, json_t *json)
{
    if (self->json)
        json_decref (self->json);
    self->json = json;
}

void
envelope_set_error (envelope_t *self, int status, const char *fmt, ...)
{
    char text [1024];
    va_list args;
    va_start (args, fmt);
    vsnprintf (text, sizeof text, fmt, args);
    va_end (args);
    self->status = status;
    envelope_set_json (self, json_pack ("{ss}", "error", text));
}

const char *
envelope_error (envelope_t *self)
{
    const char *text = json_string_value (json_object_get (envelope_json (self), "error"));
    return text ? text : sh_strerror (self->status);
}

int
envelope_new_blob (envelope_t *self)
{
    if (self->n_blobs >= ENVELOPE_MAX_BLOBS)
        return -SH_EINVAL;
    memset (&self->blobs [self->n_blobs], 0, sizeof (s_blob_t));
    return (int) self->n_blobs++;
}

//  Makes blob writable (copies a borrowed received frame) with room for more.
static void
s_blob_reserve (s_blob_t *blob, size_t more)
{
    if (blob->frame) {
        float *copy = (float *) malloc ((blob->count + more + 1) * sizeof (float));
        assert (copy);
        memcpy (copy, zframe_data (blob->frame), blob->count * sizeof (float));
        zframe_destroy (&blob->frame);
        blob->owned = copy;
        blob->capacity = blob->count + more + 1;
    }
    if (blob->count + more > blob->capacity) {
        size_t cap = blob->capacity ? blob->capacity * 2 : 256;
        while (cap < blob->count + more)
            cap *= 2;
        blob->owned = (float *) realloc (blob->owned, cap * sizeof (float));
        assert (blob->owned);
        blob->capacity = cap;
    }
}

int64_t
envelope_append_floats (envelope_t *self, int index, const float *data, size_t count)
{
    if (index < 0 || (size_t) index >= self->n_blobs)
        return -SH_EINVAL;
    s_blob_t *blob = &self->blobs [index];
    s_blob_reserve (blob, count);
    int64_t offset = (int64_t) blob->count;
    if (count)
        memcpy (blob->owned + blob->count, data, count * sizeof (float));
    blob->count += count;
    return offset;
}

int
envelope_add_floats (envelope_t *self, const float *data, size_t count)
{
    int index = envelope_new_blob (self);
    if (index < 0)
        return index;
    envelope_append_floats (self, index, data, count);
    return index;
}

size_t
envelope_blob_count (const envelope_t *self)
{
    return self->n_blobs;
}

const float *
envelope_floats (const envelope_t *self, size_t index, size_t *count)
{
    if (index >= self->n_blobs)
        return NULL;
    const s_blob_t *blob = &self->blobs [index];
    if (count)
        *count = blob->count;
    if (blob->frame)
        return (const float *) zframe_data (blob->frame);
    static const float s_empty [1] = { 0 };
    return blob->owned ? blob->owned : s_empty;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shoal's float frames assume a little-endian host; add byte swapping here"
#endif

zmsg_t *
envelope_encode (const envelope_t *self)
{
    zmsg_t *msg = zmsg_new ();
    if (self->routing_id)
        zmsg_append (msg, &(zframe_t *) { zframe_dup (self->routing_id) });
    uint8_t head [ENVELOPE_HEADER_SIZE] = { 'S', 'H', ENVELOPE_VERSION, self->kind };
    le_put_u16 (head + 4, self->type);
    le_put_u16 (head + 6, 0);
    le_put_u32 (head + 8, (uint32_t) self->status);
    le_put_u64 (head + 12, self->request_id);
    le_put_u64 (head + 20, self->deadline);
    le_put_u32 (head + 28, 0);
    zmsg_addmem (msg, head, sizeof head);
    if (self->json) {
        //  jsonx_write_exact, not json_dumps: reals with a short form come
        //  out short (json_dumps spends ~1 us on each, and its 17 digits a
        //  strtod each to read back); all read back as the same doubles.
        jsonx_buf_t text = { 0 };
        jsonx_write_exact (&text, self->json);
        zmsg_addmem (msg, text.data, text.len);
        free (text.data);
    }
    else
        zmsg_addmem (msg, "{}", 2);
    for (size_t i = 0; i < self->n_blobs; i++) {
        size_t count = 0;
        const float *data = envelope_floats (self, i, &count);
        zmsg_addmem (msg, data, count * sizeof (float));
    }
    return msg;
}

int
envelope_send (envelope_t **self_p, zsock_t *sock)
{
    assert (self_p);
    envelope_t *self = *self_p;
    if (!self)
        return -SH_EINVAL;
    zmsg_t *msg = envelope_encode (self);
    envelope_destroy (self_p);
    int rc = zmsg_send (&msg, sock);
    zmsg_destroy (&msg);
    return rc == 0 ? 0 : -SH_EIO;
}

int
envelope_peek_request (const uint8_t *head, size_t len, uint16_t *type,
                       uint64_t *request_id, uint64_t *deadline_ms)
{
    if (!head || len != ENVELOPE_HEADER_SIZE || head [0] != 'S' || head [1] != 'H'
        || head [3] != 0)
        return -SH_EPROTO;
    if (type)
        *type = le_get_u16 (head + 4);
    if (request_id)
        *request_id = le_get_u64 (head + 12);
    if (deadline_ms)
        *deadline_ms = le_get_u64 (head + 20);
    return 0;
}

int
envelope_decode (zmsg_t **msg_p, bool has_routing_id, envelope_t **out)
{
    assert (msg_p && out);
    *out = NULL;
    zmsg_t *msg = *msg_p;
    if (!msg)
        return -SH_EPROTO;
    int rc = -SH_EPROTO;
    zframe_t *routing = NULL;
    envelope_t *self = NULL;
    if (has_routing_id) {
        routing = zmsg_pop (msg);
        if (!routing)
            goto done;
    }
    zframe_t *head = zmsg_pop (msg);
    if (!head || zframe_size (head) != ENVELOPE_HEADER_SIZE) {
        zframe_destroy (&head);
        goto done;
    }
    const uint8_t *h = zframe_data (head);
    if (h [0] != 'S' || h [1] != 'H' || h [2] != ENVELOPE_VERSION || h [3] > 1) {
        zframe_destroy (&head);
        goto done;
    }
    self = envelope_new (le_get_u16 (h + 4), le_get_u64 (h + 12), le_get_u64 (h + 20));
    self->kind = h [3];
    self->status = (int32_t) le_get_u32 (h + 8);
    zframe_destroy (&head);
    if (self->status > 0)
        goto done;

    zframe_t *jf = zmsg_pop (msg);
    if (!jf || zframe_size (jf) > ENVELOPE_MAX_JSON) {
        zframe_destroy (&jf);
        goto done;
    }
    //  jsonx, not json_loadb: a batch's metadata frame (ids, vecrefs,
    //  payloads) is parsed ~3x faster (see common/jsonx.h).
    char error [256];
    self->json = jsonx_loadb ((const char *) zframe_data (jf), zframe_size (jf),
                              JSONX_REJECT_DUPLICATES, error,
                              sizeof error);
    zframe_destroy (&jf);
    if (!self->json || !json_is_object (self->json))
        goto done;

    if (zmsg_size (msg) > ENVELOPE_MAX_BLOBS)
        goto done;
    zframe_t *bf;
    while ((bf = zmsg_pop (msg))) {
        size_t len = zframe_size (bf);
        if (len % sizeof (float) != 0 || len > ENVELOPE_MAX_BLOB) {
            zframe_destroy (&bf);
            goto done;
        }
        s_blob_t *blob = &self->blobs [self->n_blobs++];
        blob->count = len / sizeof (float);
        if (((uintptr_t) zframe_data (bf) % _Alignof (float)) == 0)
            blob->frame = bf;
        else {
            blob->owned = (float *) malloc (len + sizeof (float));
            assert (blob->owned);
            memcpy (blob->owned, zframe_data (bf), len);
            blob->capacity = blob->count + 1;
            zframe_destroy (&bf);
        }
    }
    self->routing_id = routing;
    routing = NULL;
    *out = self;
    self = NULL;
    rc = 0;
done:
    zframe_destroy (&routing);
    envelope_destroy (&self);
    zmsg_destroy (msg_p);
    return rc;
}

int
envelope_recv (zsock_t *sock, envelope_t **out)
{
    *out = NULL;
    zmsg_t *msg = zmsg_recv (sock);
    if (!msg)
        return -SH_EIO;
    return envelope_decode (&msg, zsock_type (sock) == ZMQ_ROUTER, out);
}

//  ---------------------------------------------------------------------------
//  Envelopes over a stream socket

//  Frames of a message on a stream: header, JSON, blobs.
#define S_FD_MAX_FRAMES (2 + ENVELOPE_MAX_BLOBS)
//  Deadline of a stream transfer given none (ms).
#define S_FD_DEFAULT_MS 10000
//  Bytes read at once while the frame lengths are not known yet.
#define S_FD_CHUNK 16384
//  Frames up to this size are allocated whole before they are read.
#define S_FD_EAGER (1u << 20)

static uint64_t
s_fd_deadline (uint64_t deadline_ms)
{
    return deadline_ms ? deadline_ms : envelope_now_ms () + S_FD_DEFAULT_MS;
}

//  Waits until fd is ready for events or the deadline: 0, -SH_ETIMEDOUT,
//  -SH_EIO.
static int
s_fd_wait (int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = envelope_now_ms ();
        if (now >= deadline)
            return -SH_ETIMEDOUT;
        struct pollfd item = { .fd = fd, .events = events };
        uint64_t wait = deadline - now;
        int rc = poll (&item, 1, wait > INT32_MAX ? INT32_MAX : (int) wait);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return -SH_EIO;
        if (rc == 0)
            continue;
        //  POLLHUP with data still to read is read first.
        if (item.revents & events)
            return 0;
        return -SH_EIO;
    }
}

int
envelope_write_fd (const envelope_t *self, int fd, uint64_t deadline_ms)
{
    uint64_t deadline = s_fd_deadline (deadline_ms);
    zmsg_t *msg = envelope_encode (self);
    if (self->routing_id)
        zframe_destroy (&(zframe_t *) { zmsg_pop (msg) });
    size_t n = zmsg_size (msg);
    assert (n >= 2 && n <= S_FD_MAX_FRAMES);
    uint8_t prefix [4 * (1 + S_FD_MAX_FRAMES)];
    struct iovec iov [1 + S_FD_MAX_FRAMES];
    le_put_u32 (prefix, (uint32_t) n);
    iov [0].iov_base = prefix;
    iov [0].iov_len = 4 * (1 + n);
    size_t i = 1;
    for (zframe_t *frame = zmsg_first (msg); frame; frame = zmsg_next (msg), i++) {
        //  Blobs are at most ENVELOPE_MAX_BLOB, the JSON ENVELOPE_MAX_JSON.
        le_put_u32 (prefix + 4 * i, (uint32_t) zframe_size (frame));
        iov [i].iov_base = zframe_data (frame);
        iov [i].iov_len = zframe_size (frame);
    }
    int rc = 0;
    struct iovec *at = iov;
    int left = (int) (1 + n);
    while (left > 0) {
        //  MSG_NOSIGNAL: a reader gone is -SH_EIO here, not a SIGPIPE.
        struct msghdr mh = { .msg_iov = at, .msg_iovlen = (size_t) left };
        ssize_t done = sendmsg (fd, &mh, MSG_NOSIGNAL);
        if (done < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                rc = s_fd_wait (fd, POLLOUT, deadline);
                if (rc)
                    break;
                continue;
            }
            rc = -SH_EIO;               //  EPIPE: the reader is gone
            break;
        }
        while (left > 0 && (size_t) done >= at->iov_len) {
            done -= (ssize_t) at->iov_len;
            at++;
            left--;
        }
        if (left > 0) {
            at->iov_base = (uint8_t *) at->iov_base + done;
            at->iov_len -= (size_t) done;
        }
    }
    zmsg_destroy (&msg);
    return rc;
}

//  Reads from a stream: bytes are taken from what one read brought in
//  (most messages come whole in one), the rest of a long frame straight
//  into the frame.
typedef struct {
    int fd;                             //  the socket
    uint64_t deadline;                  //  unix ms
    uint8_t buf [S_FD_CHUNK];           //  bytes read ahead
    size_t have;                        //  bytes in buf
    size_t pos;                         //  bytes of buf consumed
} s_reader_t;

static int
s_read_some (s_reader_t *r, void *into, size_t cap, size_t *got)
{
    for (;;) {
        ssize_t n = read (r->fd, into, cap);
        if (n > 0) {
            *got = (size_t) n;
            return 0;
        }
        if (n == 0)
            return -SH_EIO;             //  closed
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -SH_EIO;
        int rc = s_fd_wait (r->fd, POLLIN, r->deadline);
        if (rc)
            return rc;
    }
}

//  Fills out[0..len) from the stream.
static int
s_read_bytes (s_reader_t *r, uint8_t *out, size_t len)
{
    size_t ahead = r->have - r->pos;
    size_t take = ahead < len ? ahead : len;
    memcpy (out, r->buf + r->pos, take);
    r->pos += take;
    out += take;
    len -= take;
    while (len > 0) {
        size_t got = 0;
        int rc;
        if (len >= sizeof r->buf)
            rc = s_read_some (r, out, len, &got);
        else {
            //  Short: into the buffer, whose excess is the next frames.
            rc = s_read_some (r, r->buf, sizeof r->buf, &got);
            r->have = got;
            r->pos = 0;
            size_t part = got < len ? got : len;
            memcpy (out, r->buf, part);
            r->pos = part;
            got = part;
        }
        if (rc)
            return rc;
        out += got;
        len -= got;
    }
    return 0;
}

int
envelope_read_fd (int fd, uint64_t deadline_ms, envelope_t **out)
{
    assert (out);
    *out = NULL;
    s_reader_t *r = (s_reader_t *) malloc (sizeof (s_reader_t));
    assert (r);
    r->fd = fd;
    r->deadline = s_fd_deadline (deadline_ms);
    r->have = r->pos = 0;
    zmsg_t *msg = NULL;
    uint8_t word [4];
    int rc = s_read_bytes (r, word, 4);
    uint32_t n = rc ? 0 : le_get_u32 (word);
    if (rc == 0 && (n < 2 || n > S_FD_MAX_FRAMES))
        rc = -SH_EPROTO;
    uint32_t lengths [S_FD_MAX_FRAMES];
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        rc = s_read_bytes (r, word, 4);
        lengths [i] = rc ? 0 : le_get_u32 (word);
        //  Every bound before anything is allocated.
        size_t limit = i == 0 ? ENVELOPE_HEADER_SIZE
                     : i == 1 ? ENVELOPE_MAX_JSON : ENVELOPE_MAX_BLOB;
        if (rc == 0 && (lengths [i] > limit || (i == 0 && lengths [i] != limit)
                        || (i >= 2 && lengths [i] % sizeof (float))))
            rc = -SH_EPROTO;
    }
    if (rc == 0)
        msg = zmsg_new ();
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        zframe_t *frame = NULL;
        if (lengths [i] <= S_FD_EAGER) {
            frame = zframe_new (NULL, lengths [i]);
            assert (frame);
            rc = s_read_bytes (r, zframe_data (frame), lengths [i]);
        }
        else {
            //  Memory follows the bytes that came, not what the prefix
            //  claims: a peer cannot make us allocate a gigabyte with a
            //  few bytes.
            size_t cap = S_FD_EAGER, got = 0;
            uint8_t *buf = (uint8_t *) malloc (cap);
            assert (buf);
            while (rc == 0 && got < lengths [i]) {
                if (got == cap) {
                    cap = cap * 2 < lengths [i] ? cap * 2 : lengths [i];
                    buf = (uint8_t *) realloc (buf, cap);
                    assert (buf);
                }
                size_t want = (cap < lengths [i] ? cap : lengths [i]) - got;
                rc = s_read_bytes (r, buf + got, want);
                got += want;
            }
            if (rc == 0) {
                frame = zframe_new (buf, lengths [i]);
                assert (frame);
            }
            free (buf);
        }
        if (frame)
            zmsg_append (msg, &frame);
    }
    //  One message in flight: anything after it breaks the protocol.
    if (rc == 0 && r->pos != r->have)
        rc = -SH_EPROTO;
    free (r);
    if (rc) {
        zmsg_destroy (&msg);
        return rc;
    }
    return envelope_decode (&msg, false, out);
}
