/*  p2p_peers: the peer table, one link per peer and send-failure
    accounting (see p2p_peers.h).
*/
#include "actors/p2p/p2p_peers.h"
#include "common/err.h"
#include "common/log.h"
#include "proto/envelope.h"
#include "proto/route.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

//  Longest endpoint route_uri_endpoint can write for a uri of ROUTE_MAX_URI.
#define S_MAX_ENDPOINT (ROUTE_MAX_URI + 16)
//  Longest error message kept per uri.
#define S_MAX_ERROR 256

typedef enum {
    S_CONNECTING,                   //  new: within its grace time, never connected
    S_UP,                           //  handshake done: sends go out
    S_DOWN                          //  not connected; zmq keeps retrying
} s_state_t;

typedef struct {
    zmsg_t *msg;                    //  the message to send
    uint64_t token;                 //  for the fail handler; 0 = one-way
} s_queued_t;

struct _p2p_link_t {
    uint64_t peer;                  //  peer id; 0 for a link to a bootstrap uri
    char *uri;                      //  the peer's uri (key of its failures)
    char endpoint [S_MAX_ENDPOINT]; //  tcp://host:port it connects to
    zsock_t *dealer;                //  the connection
    zsock_t *monitor;               //  PAIR receiving the dealer's events
    s_state_t state;                //  see s_state_t
    int64_t created;                //  now when made (connect grace)
    int64_t last_used;              //  now of the last send (uri links expire)
    zlistx_t *queue;                //  s_queued_t waiting for the handshake
    bool retired;                   //  dropped; destroyed at the next tick
};

typedef struct {
    uint64_t count;                 //  failures since the last success
    char error [S_MAX_ERROR];       //  the latest one
    uint64_t unix_ms;               //  when it happened
} s_failure_t;

struct _p2p_peers_t {
    uint64_t self_id;               //  this peer (never linked to itself)
    bool curve;                     //  links are CURVE clients
    char curve_public [41];         //  cluster public key (Z85)
    char curve_secret [41];         //  cluster secret key (Z85)
    zhashx_t *by_id;                //  "<id>" -> p2p_link_t (the peer table)
    zhashx_t *by_uri;               //  uri -> p2p_link_t for dst-0 sends
    zlistx_t *retired;              //  p2p_link_t waiting for the next tick
    zhashx_t *failures;             //  uri -> s_failure_t
    p2p_peers_fail_fn *fail_fn;     //  reports queued messages that failed
    void *fail_arg;                 //  its argument
    unsigned monitor_seq;           //  names the monitors' inproc endpoints
};

static void
s_why (char *why, size_t whylen, const char *fmt, ...) __attribute__ ((format (printf, 3, 4)));

static void
s_why (char *why, size_t whylen, const char *fmt, ...)
{
    if (!why || !whylen)
        return;
    va_list args;
    va_start (args, fmt);
    vsnprintf (why, whylen, fmt, args);
    va_end (args);
}

//  "peer 12 (http://a:6335)" or "http://a:6335" for a uri link.
static void
s_name (const p2p_link_t *link, char *buf, size_t size)
{
    if (link->peer)
        snprintf (buf, size, "peer %" PRIu64 " (%s)", link->peer, link->uri);
    else
        snprintf (buf, size, "%s", link->uri);
}

void
p2p_peers_rfc3339 (uint64_t unix_ms, char *buf, size_t size)
{
    time_t secs = (time_t) (unix_ms / 1000);
    struct tm tm;
    gmtime_r (&secs, &tm);
    char date [32];
    strftime (date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf (buf, size, "%s.%03uZ", date, (unsigned) (unix_ms % 1000));
}

//  libzmq attaches a new connection's pipe to the socket by a command the
//  socket processes at its next call, and send/recv process commands at
//  most once a millisecond: a send right after the handshake event can
//  find no pipe yet. ZMQ_EVENTS processes them unthrottled.
static int
s_send_link (p2p_link_t *link, zmsg_t *msg)
{
    if (p2p_peers_sendmsg (link->dealer, msg) == 0)
        return 0;
    (void) zsock_events (link->dealer);
    return p2p_peers_sendmsg (link->dealer, msg);
}

int
p2p_peers_sendmsg (zsock_t *sock, zmsg_t *msg)
{
    size_t count = zmsg_size (msg);
    if (count == 0)
        return -SH_EINVAL;
    size_t index = 0;
    for (zframe_t *frame = zmsg_first (msg); frame; frame = zmsg_next (msg), index++) {
        int flags = ZFRAME_REUSE | ZFRAME_DONTWAIT | (index + 1 < count ? ZFRAME_MORE : 0);
        if (zframe_send (&frame, sock, flags) != 0) {
            //  zmq takes the rest of a message once it took the first frame;
            //  a refusal after that would leave a half message behind.
            assert (index == 0);
            return -SH_EUNAVAIL;
        }
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Failures

static void
s_failure_destroy (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

void
p2p_peers_note_failure (p2p_peers_t *self, const char *uri, const char *error,
                        uint64_t unix_ms)
{
    if (!uri || !*uri)
        return;
    s_failure_t *failure = (s_failure_t *) zhashx_lookup (self->failures, uri);
    if (!failure) {
        failure = (s_failure_t *) zmalloc (sizeof (s_failure_t));
        zhashx_insert (self->failures, uri, failure);
    }
    failure->count++;
    snprintf (failure->error, sizeof failure->error, "%s", error ? error : "send failed");
    failure->unix_ms = unix_ms;
}

void
p2p_peers_note_success (p2p_peers_t *self, const char *uri)
{
    if (uri)
        zhashx_delete (self->failures, uri);
}

//  --------------------------------------------------------------------------
//  Links

static void
s_queued_destroy (void **item_p)
{
    s_queued_t *item = (s_queued_t *) *item_p;
    if (!item)
        return;
    zmsg_destroy (&item->msg);
    free (item);
    *item_p = NULL;
}

static void
s_set_int (zsock_t *sock, int option, int value)
{
    if (zmq_setsockopt (zsock_resolve (sock), option, &value, sizeof value))
        log_warn ("p2p: setsockopt %d=%d failed: %s", option, value,
                  zmq_strerror (zmq_errno ()));
}

static p2p_link_t *
s_link_new (p2p_peers_t *self, uint64_t peer, const char *uri, const char *endpoint,
            int64_t now)
{
    p2p_link_t *link = (p2p_link_t *) zmalloc (sizeof (p2p_link_t));
    link->peer = peer;
    link->uri = strdup (uri);
    assert (link->uri);
    snprintf (link->endpoint, sizeof link->endpoint, "%s", endpoint);
    link->state = S_CONNECTING;
    link->created = now;
    link->last_used = now;
    link->queue = zlistx_new ();
    zlistx_set_destructor (link->queue, s_queued_destroy);

    link->dealer = zsock_new (ZMQ_DEALER);
    assert (link->dealer);
    s_set_int (link->dealer, ZMQ_LINGER, 0);
    s_set_int (link->dealer, ZMQ_IMMEDIATE, 1);
    s_set_int (link->dealer, ZMQ_SNDHWM, P2P_SNDHWM);
    s_set_int (link->dealer, ZMQ_SNDTIMEO, 0);
    s_set_int (link->dealer, ZMQ_IPV6, 1);
    s_set_int (link->dealer, ZMQ_RECONNECT_IVL_MAX, P2P_RECONNECT_MAX_MS);
    s_set_int (link->dealer, ZMQ_HEARTBEAT_IVL, P2P_HEARTBEAT_IVL_MS);
    s_set_int (link->dealer, ZMQ_HEARTBEAT_TIMEOUT, P2P_HEARTBEAT_TIMEOUT_MS);
    s_set_int (link->dealer, ZMQ_HEARTBEAT_TTL, P2P_HEARTBEAT_TIMEOUT_MS);
    int64_t max_frame = P2P_MAX_FRAME;
    zmq_setsockopt (zsock_resolve (link->dealer), ZMQ_MAXMSGSIZE, &max_frame,
                    sizeof max_frame);
    if (self->curve) {
        zsock_set_curve_serverkey (link->dealer, self->curve_public);
        zsock_set_curve_publickey (link->dealer, self->curve_public);
        zsock_set_curve_secretkey (link->dealer, self->curve_secret);
    }

    //  The monitor first, so that no event of the connection is missed.
    char monitor [96];
    snprintf (monitor, sizeof monitor, "inproc://p2p-monitor-%p-%u", (void *) self,
              ++self->monitor_seq);
    int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED
               | ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
               | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    int rc = zmq_socket_monitor (zsock_resolve (link->dealer), monitor, events);
    assert (rc == 0);
    link->monitor = zsock_new (ZMQ_PAIR);
    assert (link->monitor);
    s_set_int (link->monitor, ZMQ_LINGER, 0);
    //  libzmq's I/O thread sends monitor events blocking: a full monitor
    //  pipe would stall every connection of the process. Unbounded here;
    //  the actor drains it every turn and events are few.
    s_set_int (link->monitor, ZMQ_RCVHWM, 0);
    rc = zsock_connect (link->monitor, "%s", monitor);
    assert (rc == 0);
    if (zsock_connect (link->dealer, "%s", endpoint) != 0) {
        //  route_uri_endpoint checked the form; a host name that does not
        //  resolve makes zmq refuse it here. The link stays down.
        log_warn ("p2p: cannot connect to %s (%s): %s", uri, endpoint,
                  zmq_strerror (zmq_errno ()));
        link->state = S_DOWN;
    }
    char name [ROUTE_MAX_URI + 40];
    s_name (link, name, sizeof name);
    log_info ("p2p: linking to %s at %s", name, endpoint);
    return link;
}

//  Fails every message waiting in the link's queue.
static void
s_fail_queue (p2p_peers_t *self, p2p_link_t *link, const char *reason)
{
    if (zlistx_size (link->queue) == 0)
        return;
    char name [ROUTE_MAX_URI + 40];
    s_name (link, name, sizeof name);
    char why [ROUTE_MAX_URI + 200];
    snprintf (why, sizeof why, "%s could not be reached: %s", name, reason);
    s_queued_t *item;
    while ((item = (s_queued_t *) zlistx_first (link->queue))) {
        uint64_t token = item->token;
        zlistx_delete (link->queue, zlistx_cursor (link->queue));
        p2p_peers_note_failure (self, link->uri, why, envelope_now_ms ());
        if (token && self->fail_fn)
            self->fail_fn (self->fail_arg, token, -SH_EUNAVAIL, why);
    }
}

static void
s_link_destroy (p2p_link_t **link_p)
{
    p2p_link_t *link = *link_p;
    if (!link)
        return;
    zmq_socket_monitor (zsock_resolve (link->dealer), NULL, 0);
    zsock_destroy (&link->monitor);
    zsock_destroy (&link->dealer);
    zlistx_destroy (&link->queue);
    free (link->uri);
    free (link);
    *link_p = NULL;
}

//  Takes a link out of service: its queue fails now, its sockets stay
//  readable until the next tick.
static void
s_retire (p2p_peers_t *self, p2p_link_t *link, const char *reason)
{
    s_fail_queue (self, link, reason);
    link->retired = true;
    zlistx_add_end (self->retired, link);
}

//  Sends what waits in a link's queue, in order, now that it is up.
static void
s_flush_queue (p2p_peers_t *self, p2p_link_t *link)
{
    s_queued_t *item;
    while ((item = (s_queued_t *) zlistx_first (link->queue))) {
        if (s_send_link (link, item->msg) != 0) {
            s_fail_queue (self, link, "send queue full");
            return;
        }
        zlistx_delete (link->queue, zlistx_cursor (link->queue));
        p2p_peers_note_success (self, link->uri);
    }
}

void
p2p_peers_on_monitor (p2p_peers_t *self, p2p_link_t *link)
{
    while (zsock_events (link->monitor) & ZMQ_POLLIN) {
        zmsg_t *msg = zmsg_recv (link->monitor);
        if (!msg)
            return;
        zframe_t *head = zmsg_first (msg);
        if (!head || zframe_size (head) < 6) {
            zmsg_destroy (&msg);
            continue;
        }
        const uint8_t *data = zframe_data (head);
        uint16_t event = (uint16_t) (data [0] | data [1] << 8);
        uint32_t value = (uint32_t) data [2] | (uint32_t) data [3] << 8
                       | (uint32_t) data [4] << 16 | (uint32_t) data [5] << 24;
        zmsg_destroy (&msg);
        if (link->retired)
            continue;
        char name [ROUTE_MAX_URI + 40];
        s_name (link, name, sizeof name);
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            if (link->state != S_UP)
                log_info ("p2p: connected to %s", name);
            link->state = S_UP;
            s_flush_queue (self, link);
            continue;
        }
        const char *reason =
            event == ZMQ_EVENT_DISCONNECTED ? "disconnected"
          : event == ZMQ_EVENT_CONNECT_RETRIED ? "connection refused or timed out"
          : event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ? "handshake refused (wrong cluster key?)"
          : event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                ? "handshake failed (protocol or CURVE mismatch)"
          : event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ? "handshake failed"
          : NULL;
        if (!reason)
            continue;
        if (link->state == S_UP)
            log_info ("p2p: lost %s: %s", name, reason);
        else
        if (event != ZMQ_EVENT_CONNECT_RETRIED)
            log_debug ("p2p: %s: %s (value %" PRIu32 ")", name, reason, value);
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
        ||  event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
            p2p_peers_note_failure (self, link->uri, reason, envelope_now_ms ());
        link->state = S_DOWN;
        s_fail_queue (self, link, reason);
    }
}

//  --------------------------------------------------------------------------
//  The table

p2p_peers_t *
p2p_peers_new (uint64_t self_id, const char *curve_public, const char *curve_secret)
{
    p2p_peers_t *self = (p2p_peers_t *) zmalloc (sizeof (p2p_peers_t));
    self->self_id = self_id;
    if (curve_public && curve_secret) {
        assert (strlen (curve_public) == 40 && strlen (curve_secret) == 40);
        self->curve = true;
        memcpy (self->curve_public, curve_public, 41);
        memcpy (self->curve_secret, curve_secret, 41);
    }
    self->by_id = zhashx_new ();
    self->by_uri = zhashx_new ();
    self->retired = zlistx_new ();
    self->failures = zhashx_new ();
    zhashx_set_destructor (self->failures, s_failure_destroy);
    return self;
}

void
p2p_peers_destroy (p2p_peers_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    p2p_peers_t *self = *self_p;
    zhashx_t *tables [] = { self->by_id, self->by_uri };
    for (int i = 0; i < 2; i++) {
        for (p2p_link_t *link = (p2p_link_t *) zhashx_first (tables [i]); link;
             link = (p2p_link_t *) zhashx_next (tables [i]))
            s_link_destroy (&link);
        zhashx_destroy (&tables [i]);
    }
    p2p_link_t *link;
    while ((link = (p2p_link_t *) zlistx_detach (self->retired, NULL)))
        s_link_destroy (&link);
    zlistx_destroy (&self->retired);
    zhashx_destroy (&self->failures);
    memset (self->curve_secret, 0, sizeof self->curve_secret);
    free (self);
    *self_p = NULL;
}

void
p2p_peers_set_fail_handler (p2p_peers_t *self, p2p_peers_fail_fn *fn, void *arg)
{
    self->fail_fn = fn;
    self->fail_arg = arg;
}

//  Strict decimal u64 > 0; false for anything else.
static bool
s_parse_id (const char *text, uint64_t *out)
{
    if (!text || *text < '1' || *text > '9' || strlen (text) > 20)
        return false;
    uint64_t value = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        uint64_t digit = (uint64_t) (*p - '0');
        if (value > (UINT64_MAX - digit) / 10)
            return false;
        value = value * 10 + digit;
    }
    *out = value;
    return true;
}

//  Closes the link of a peer id (taken out of the table), and forgets its
//  uri's failures unless a uri link still sends there.
static void
s_drop_peer (p2p_peers_t *self, const char *key, const char *reason)
{
    p2p_link_t *link = (p2p_link_t *) zhashx_lookup (self->by_id, key);
    if (!link)
        return;
    zhashx_delete (self->by_id, key);
    if (!zhashx_lookup (self->by_uri, link->uri))
        zhashx_delete (self->failures, link->uri);
    char name [ROUTE_MAX_URI + 40];
    s_name (link, name, sizeof name);
    log_info ("p2p: dropping %s: %s", name, reason);
    s_retire (self, link, reason);
}

int
p2p_peers_update (p2p_peers_t *self, json_t *peers, bool authoritative, int64_t now)
{
    if (!json_is_object (peers))
        return -SH_EINVAL;
    int changes = 0;
    const char *key;
    json_t *value;
    json_object_foreach (peers, key, value) {
        uint64_t id;
        const char *uri = json_string_value (value);
        char endpoint [S_MAX_ENDPOINT];
        if (!s_parse_id (key, &id) || !uri || strlen (uri) > ROUTE_MAX_URI
        ||  route_uri_endpoint (uri, endpoint, sizeof endpoint) != 0) {
            log_warn ("p2p: skipped a peer entry that is not id -> uri: %.40s", key);
            continue;
        }
        if (id == self->self_id)
            continue;
        char id_key [24];
        snprintf (id_key, sizeof id_key, "%" PRIu64, id);
        p2p_link_t *link = (p2p_link_t *) zhashx_lookup (self->by_id, id_key);
        if (link && streq (link->uri, uri))
            continue;
        if (link)
            s_drop_peer (self, id_key, "its uri changed");
        zhashx_insert (self->by_id, id_key, s_link_new (self, id, uri, endpoint, now));
        changes++;
    }
    if (authoritative) {
        zlistx_t *keys = zhashx_keys (self->by_id);
        for (const char *k = (const char *) zlistx_first (keys); k;
             k = (const char *) zlistx_next (keys))
            if (!json_object_get (peers, k)) {
                s_drop_peer (self, k, "no longer a member of the cluster");
                changes++;
            }
        zlistx_destroy (&keys);
    }
    return changes;
}

const char *
p2p_peers_uri (p2p_peers_t *self, uint64_t id)
{
    char key [24];
    snprintf (key, sizeof key, "%" PRIu64, id);
    p2p_link_t *link = (p2p_link_t *) zhashx_lookup (self->by_id, key);
    return link ? link->uri : NULL;
}

size_t
p2p_peers_size (p2p_peers_t *self)
{
    return zhashx_size (self->by_id);
}

//  --------------------------------------------------------------------------
//  Sending

int
p2p_peers_send (p2p_peers_t *self, uint64_t dst, const char *uri, zmsg_t **msg_p,
                uint64_t token, int64_t now, char *why, size_t whylen)
{
    assert (msg_p);
    zmsg_t *msg = *msg_p;
    *msg_p = NULL;
    p2p_link_t *link = NULL;
    if (dst) {
        char key [24];
        snprintf (key, sizeof key, "%" PRIu64, dst);
        link = (p2p_link_t *) zhashx_lookup (self->by_id, key);
        if (!link) {
            s_why (why, whylen, "peer %" PRIu64 " is not known to this peer", dst);
            zmsg_destroy (&msg);
            return -SH_EUNAVAIL;
        }
    }
    else {
        char endpoint [S_MAX_ENDPOINT];
        if (!uri || strlen (uri) > ROUTE_MAX_URI
        ||  route_uri_endpoint (uri, endpoint, sizeof endpoint) != 0) {
            s_why (why, whylen, "not a peer address: %.100s", uri ? uri : "(none)");
            zmsg_destroy (&msg);
            return -SH_EINVAL;
        }
        link = (p2p_link_t *) zhashx_lookup (self->by_uri, uri);
        if (!link) {
            link = s_link_new (self, 0, uri, endpoint, now);
            zhashx_insert (self->by_uri, uri, link);
        }
    }
    link->last_used = now;
    char name [ROUTE_MAX_URI + 40];
    s_name (link, name, sizeof name);

    //  Order is kept: nothing overtakes what waits in the queue.
    if (zlistx_size (link->queue) == 0 && s_send_link (link, msg) == 0) {
        zmsg_destroy (&msg);
        p2p_peers_note_success (self, link->uri);
        return 0;
    }
    if (link->state == S_CONNECTING && now - link->created < P2P_CONNECT_GRACE_MS
    &&  zlistx_size (link->queue) < P2P_QUEUE_MAX) {
        s_queued_t *item = (s_queued_t *) zmalloc (sizeof (s_queued_t));
        item->msg = msg;
        item->token = token;
        zlistx_add_end (link->queue, item);
        return 0;
    }
    zmsg_destroy (&msg);
    if (link->state == S_UP)
        s_why (why, whylen, "send queue to %s is full", name);
    else
    if (link->state == S_CONNECTING)
        s_why (why, whylen, "%s is still connecting (%zu messages waiting)", name,
               zlistx_size (link->queue));
    else
        s_why (why, whylen, "%s is not connected", name);
    p2p_peers_note_failure (self, link->uri, why, envelope_now_ms ());
    return -SH_EUNAVAIL;
}

//  --------------------------------------------------------------------------
//  Info, links, tick

json_t *
p2p_peers_info (p2p_peers_t *self)
{
    json_t *failures = json_object ();
    for (s_failure_t *f = (s_failure_t *) zhashx_first (self->failures); f;
         f = (s_failure_t *) zhashx_next (self->failures)) {
        char stamp [40];
        p2p_peers_rfc3339 (f->unix_ms, stamp, sizeof stamp);
        json_object_set_new (failures, (const char *) zhashx_cursor (self->failures),
                             json_pack ("{sIssss}", "count", (json_int_t) f->count,
                                        "latest_error", f->error,
                                        "latest_error_timestamp", stamp));
    }
    json_t *peers = json_object ();
    for (p2p_link_t *link = (p2p_link_t *) zhashx_first (self->by_id); link;
         link = (p2p_link_t *) zhashx_next (self->by_id))
        json_object_set_new (peers, (const char *) zhashx_cursor (self->by_id),
                             json_pack ("{sssb}", "uri", link->uri, "connected",
                                        link->state == S_UP));
    return json_pack ("{soso}", "message_send_failures", failures, "peers", peers);
}

size_t
p2p_peers_links (p2p_peers_t *self, p2p_link_t **links, size_t max)
{
    size_t count = 0;
    zhashx_t *tables [] = { self->by_id, self->by_uri };
    for (int i = 0; i < 2; i++)
        for (p2p_link_t *link = (p2p_link_t *) zhashx_first (tables [i]); link;
             link = (p2p_link_t *) zhashx_next (tables [i])) {
            if (count < max)
                links [count] = link;
            count++;
        }
    for (p2p_link_t *link = (p2p_link_t *) zlistx_first (self->retired); link;
         link = (p2p_link_t *) zlistx_next (self->retired)) {
        if (count < max)
            links [count] = link;
        count++;
    }
    return count;
}

zsock_t *p2p_link_socket (p2p_link_t *link) { return link->dealer; }
zsock_t *p2p_link_monitor (p2p_link_t *link) { return link->monitor; }
uint64_t p2p_link_peer (p2p_link_t *link) { return link->peer; }
const char *p2p_link_uri (p2p_link_t *link) { return link->uri; }
bool p2p_link_connected (p2p_link_t *link) { return link->state == S_UP; }

void
p2p_peers_tick (p2p_peers_t *self, int64_t now)
{
    p2p_link_t *link;
    while ((link = (p2p_link_t *) zlistx_detach (self->retired, NULL)))
        s_link_destroy (&link);

    zhashx_t *tables [] = { self->by_id, self->by_uri };
    for (int i = 0; i < 2; i++)
        for (link = (p2p_link_t *) zhashx_first (tables [i]); link;
             link = (p2p_link_t *) zhashx_next (tables [i]))
            if (link->state == S_CONNECTING && now - link->created >= P2P_CONNECT_GRACE_MS) {
                link->state = S_DOWN;
                s_fail_queue (self, link, "no connection within the connect time");
            }

    //  Idle uri links: collected first, the table is not changed while walked.
    zlistx_t *idle = zlistx_new ();
    for (link = (p2p_link_t *) zhashx_first (self->by_uri); link;
         link = (p2p_link_t *) zhashx_next (self->by_uri))
        if (now - link->last_used >= P2P_URI_LINK_IDLE_MS)
            zlistx_add_end (idle, link);
    for (link = (p2p_link_t *) zlistx_first (idle); link;
         link = (p2p_link_t *) zlistx_next (idle)) {
        zhashx_delete (self->by_uri, link->uri);
        bool peer_uri = false;
        for (p2p_link_t *other = (p2p_link_t *) zhashx_first (self->by_id); other && !peer_uri;
             other = (p2p_link_t *) zhashx_next (self->by_id))
            peer_uri = streq (other->uri, link->uri);
        if (!peer_uri)
            zhashx_delete (self->failures, link->uri);
        log_debug ("p2p: closing idle link to %s", link->uri);
        s_retire (self, link, "idle");
    }
    zlistx_destroy (&idle);
}
