/*  rest_bench: searches through a running node's REST API, measured the way
    a client sees them, over an fvecs data set from ../shared/data (see its
    README) whose base vectors were uploaded with ids = row numbers.

        rest_bench HOST PORT COLLECTION DATA_DIR NAME EF[,EF...] [OPTIONS]

          --clients N      connections for the all-clients figure (default 2)
          --batch K        also measure POST /points/search/batch with K
                           searches a request (0 = only single searches)
          --seconds S      length of a throughput run (default 1)
          --batch-only 1   with --batch, measure only the batch requests
                           (profiling; recall still from single searches)
          --filter-mod M   points carry an integer "sel" = id % M; with
          --filter-lt T    only points with sel < T are searched (filter
                           "range": {"lt": T}), and recall is against the
                           exact neighbours within that set, brute-forced
                           here over the base vectors
          --floor 1        first print "floor gw1 Q gwN Q shard1 Q shardN Q":
                           requests/s of two requests that search nothing,
                           on 1 and N connections: GET / (answered by the
                           gateway alone) and a retrieve of one id with no
                           payload or vector (gateway -> shard -> gateway,
                           the hops a search takes). Their times are the
                           floor under a REST search's: what the transport
                           costs on this machine whatever the search does

    For each ef it prints "ef EF recall R qps1 Q qpsN Q [qpsB Q qpsBN Q]"
    (the same key/value lines as ann_bench, which tools/bench/ann.py gathers
    into one table): recall@10 over the queries on one connection, then
    searches/s on one keep-alive connection and on N at once (each a thread
    that sends one request, reads the whole answer, and sends the next),
    and with --batch the same for batch requests, counted in searches.

    A client in C rather than Python: http.client spends more CPU a request
    than the server does, and on a small machine the client shares the cores
    with the node, so a slow client would be measured instead of the server.
    Request texts are made before the clock starts; answers are read whole
    and only the recall pass looks into them.
*/
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define S_K 10

typedef struct {
    float *data;            //  rows * dim values (floats or int32s)
    size_t rows;            //  vectors
    size_t dim;             //  values per vector
} matrix_t;

typedef struct {
    char *data;             //  bytes (NUL-terminated)
    size_t len;             //  bytes used
    size_t cap;             //  bytes allocated
} buf_t;

static _Noreturn void
s_die (const char *fmt, const char *what)
{
    fprintf (stderr, "rest_bench: ");
    fprintf (stderr, fmt, what);
    fprintf (stderr, "\n");
    exit (1);
}

static void
s_put (buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->data = realloc (b->data, cap);
        if (!b->data)
            s_die ("%s", "out of memory");
        b->cap = cap;
    }
    memcpy (b->data + b->len, s, n);
    b->len += n;
    b->data [b->len] = 0;
}

static void
s_puts (buf_t *b, const char *s)
{
    s_put (b, s, strlen (s));
}

//  Reads an fvecs/ivecs file (int32 dim, then dim 4-byte values, per row).
static void
s_read_vecs (const char *dir, const char *name, const char *suffix, matrix_t *m)
{
    char path [4096];
    snprintf (path, sizeof path, "%s/%s.%s", dir, name, suffix);
    FILE *f = fopen (path, "rb");
    if (!f)
        s_die ("cannot open %s", path);
    int32_t d = 0;
    if (fread (&d, 4, 1, f) != 1 || d <= 0 || d > 65536)
        s_die ("bad header in %s", path);
    fseek (f, 0, SEEK_END);
    long size = ftell (f);
    fseek (f, 0, SEEK_SET);
    size_t row_bytes = 4 * ((size_t) d + 1);
    if (size <= 0 || (size_t) size % row_bytes)
        s_die ("%s is not a whole number of rows", path);
    m->dim = (size_t) d;
    m->rows = (size_t) size / row_bytes;
    m->data = malloc (m->rows * m->dim * 4);
    int32_t *row = malloc (row_bytes);
    if (!m->data || !row)
        s_die ("out of memory for %s", path);
    for (size_t i = 0; i < m->rows; i++) {
        if (fread (row, 1, row_bytes, f) != row_bytes || row [0] != d)
            s_die ("bad row in %s", path);
        memcpy (m->data + i * m->dim, row + 1, 4 * m->dim);
    }
    free (row);
    fclose (f);
}

static double
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

//  --- HTTP over one keep-alive connection -----------------------------------

typedef struct {
    int fd;                 //  the socket
    buf_t in;               //  bytes read and not consumed
} conn_t;

static const char *s_host;
static const char *s_port;

static void
s_connect (conn_t *c)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *addrs = NULL;
    if (getaddrinfo (s_host, s_port, &hints, &addrs) || !addrs)
        s_die ("cannot resolve %s", s_host);
    c->fd = socket (addrs->ai_family, SOCK_STREAM, 0);
    if (c->fd < 0 || connect (c->fd, addrs->ai_addr, addrs->ai_addrlen))
        s_die ("cannot connect: %s", strerror (errno));
    int one = 1;
    setsockopt (c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    freeaddrinfo (addrs);
    memset (&c->in, 0, sizeof c->in);
}

static void
s_send_all (conn_t *c, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send (c->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            s_die ("send failed: %s", strerror (errno));
        data += n;
        len -= (size_t) n;
    }
}

static void
s_fill (conn_t *c)
{
    char tmp [65536];
    ssize_t n;
    do
        n = recv (c->fd, tmp, sizeof tmp, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        s_die ("connection closed by the node: %s", n ? strerror (errno) : "EOF");
    s_put (&c->in, tmp, (size_t) n);
}

//  Sends one request and reads its whole answer; *body (into c->in, valid
//  until the next call) gets the response body. Exits on anything but 200.
static size_t
s_call (conn_t *c, const char *request, size_t len, const char **body)
{
    s_send_all (c, request, len);
    char *end;
    while (!c->in.len || !(end = memmem (c->in.data, c->in.len, "\r\n\r\n", 4)))
        s_fill (c);
    size_t head = (size_t) (end - c->in.data) + 4;
    if (strncmp (c->in.data, "HTTP/1.1 200", 12) != 0) {
        c->in.data [head < 300 ? head : 300] = 0;
        s_die ("the node answered: %s", c->in.data);
    }
    //  Headers only: the body may hold anything.
    char saved = end [2];
    end [2] = 0;
    const char *cl = strcasestr (c->in.data, "\r\ncontent-length:");
    size_t length = cl ? strtoul (cl + 17, NULL, 10) : 0;
    end [2] = saved;
    if (!cl)
        s_die ("%s", "an answer without Content-Length");
    while (c->in.len < head + length)
        s_fill (c);
    *body = c->in.data + head;
    if (c->in.len != head + length)
        s_die ("%s", "bytes after an answer (no pipelining here)");
    //  Consumed, but the body stays readable until the next call.
    c->in.len = 0;
    return length;
}

//  --- requests -----------------------------------------------------------------

typedef struct {
    char *text;             //  the whole HTTP request
    size_t len;             //  its length
    size_t searches;        //  searches it carries
} request_t;

static void
s_search_body (buf_t *b, const float *q, size_t dim, size_t ef, const char *filter)
{
    char num [32];
    s_puts (b, "{\"vector\":[");
    for (size_t i = 0; i < dim; i++) {
        //  %.9g round-trips a float; pixel values print as integers.
        int n = snprintf (num, sizeof num, i ? ",%.9g" : "%.9g", (double) q [i]);
        s_put (b, num, (size_t) n);
    }
    int n = snprintf (num, sizeof num, "],\"limit\":%d,", S_K);
    s_put (b, num, (size_t) n);
    n = snprintf (num, sizeof num, "\"params\":{\"hnsw_ef\":%zu}", ef);
    s_put (b, num, (size_t) n);
    if (filter) {
        s_puts (b, ",\"filter\":");
        s_puts (b, filter);
    }
    s_puts (b, "}");
}

static request_t
s_request (const char *path, const buf_t *body)
{
    buf_t b = { 0 };
    char head [512];
    int n = snprintf (head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n", path, s_host, body->len);
    if (n < 0 || (size_t) n >= sizeof head)
        s_die ("%s", "request line too long");
    s_put (&b, head, (size_t) n);
    s_put (&b, body->data, body->len);
    return (request_t) { .text = b.data, .len = b.len };
}

//  The ids of a search answer's hits, in order: every "id": of the result
//  (search results carry no nested objects with an "id" key unless payloads
//  are asked for, and they are not).
static size_t
s_ids (const char *body, size_t len, int64_t *ids, size_t max)
{
    size_t n = 0;
    const char *p = body, *end = body + len;
    while (n < max && (p = memmem (p, (size_t) (end - p), "\"id\":", 5))) {
        p += 5;
        ids [n++] = strtoll (p, NULL, 10);
    }
    return n;
}

//  --- throughput ---------------------------------------------------------------

typedef struct {
    request_t *requests;    //  all requests
    size_t n;               //  how many
    unsigned thread;        //  this client's number
    unsigned threads;       //  clients
    double start;           //  when the run began
    double seconds;         //  how long it lasts
    size_t done;            //  searches this client made
    conn_t conn;            //  its connection
} client_t;

static void *
s_client (void *arg)
{
    client_t *c = arg;
    size_t done = 0;
    const char *body;
    do {
        for (size_t i = c->thread; i < c->n; i += c->threads) {
            s_call (&c->conn, c->requests [i].text, c->requests [i].len, &body);
            done += c->requests [i].searches;
        }
    } while (s_now () - c->start < c->seconds);
    c->done = done;
    return NULL;
}

//  Searches/s over `threads` connections, each taking every threads-th
//  request in whole passes until the time is up.
static double
s_throughput (request_t *requests, size_t n, unsigned threads, double seconds)
{
    client_t clients [threads];
    pthread_t tids [threads];
    for (unsigned t = 0; t < threads; t++) {
        clients [t] = (client_t) { .requests = requests, .n = n, .thread = t,
                                   .threads = threads, .seconds = seconds };
        s_connect (&clients [t].conn);
    }
    double start = s_now ();
    for (unsigned t = 0; t < threads; t++) {
        clients [t].start = start;
        pthread_create (&tids [t], NULL, s_client, &clients [t]);
    }
    size_t done = 0;
    for (unsigned t = 0; t < threads; t++) {
        pthread_join (tids [t], NULL);
        done += clients [t].done;
    }
    double qps = (double) done / (s_now () - start);
    for (unsigned t = 0; t < threads; t++) {
        close (clients [t].conn.fd);
        free (clients [t].conn.in.data);
    }
    return qps;
}

//  --- filtered ground truth ----------------------------------------------------

typedef struct {
    const matrix_t *base;   //  base vectors
    const matrix_t *query;  //  queries
    const uint32_t *rows;   //  the rows the filter keeps
    size_t n_rows;          //  how many
    int32_t *truth;         //  out: S_K ids per query
    size_t next;            //  atomic: next query to do
} truth_job_t;

static void *
s_truth_worker (void *arg)
{
    truth_job_t *job = arg;
    size_t dim = job->base->dim;
    for (;;) {
        size_t q = __atomic_fetch_add (&job->next, 1, __ATOMIC_RELAXED);
        if (q >= job->query->rows)
            break;
        const float *x = job->query->data + q * dim;
        double best [S_K];
        int32_t ids [S_K];
        size_t have = 0;
        for (size_t r = 0; r < job->n_rows; r++) {
            const float *y = job->base->data + (size_t) job->rows [r] * dim;
            double d = 0;
            for (size_t i = 0; i < dim; i++) {
                double t = (double) x [i] - (double) y [i];
                d += t * t;
            }
            //  Insertion into the sorted top-k; ties by smaller id (rows
            //  come in id order, so a later equal one goes after).
            if (have == S_K && d >= best [S_K - 1])
                continue;
            size_t at = have < S_K ? have++ : S_K - 1;
            while (at > 0 && best [at - 1] > d) {
                best [at] = best [at - 1];
                ids [at] = ids [at - 1];
                at--;
            }
            best [at] = d;
            ids [at] = (int32_t) job->rows [r];
        }
        for (size_t i = 0; i < S_K; i++)
            job->truth [q * S_K + i] = i < have ? ids [i] : -1;
    }
    return NULL;
}

//  --- main ------------------------------------------------------------------

int
main (int argc, char **argv)
{
    if (argc < 7) {
        fprintf (stderr, "usage: rest_bench HOST PORT COLLECTION DATA_DIR NAME EF[,EF...] "
                         "[--clients N] [--batch K] [--seconds S] [--filter-mod M "
                         "--filter-lt T]\n");
        return 2;
    }
    s_host = argv [1];
    s_port = argv [2];
    const char *collection = argv [3], *dir = argv [4], *name = argv [5];
    const char *ef_list = argv [6];
    unsigned clients = 2;
    size_t batch = 0;
    double seconds = 1.0;
    long filter_mod = 0, filter_lt = -1;
    bool batch_only = false, floor = false;
    for (int i = 7; i + 1 < argc; i += 2) {
        if (!strcmp (argv [i], "--clients"))
            clients = (unsigned) atoi (argv [i + 1]);
        else
        if (!strcmp (argv [i], "--batch"))
            batch = strtoul (argv [i + 1], NULL, 10);
        else
        if (!strcmp (argv [i], "--seconds"))
            seconds = atof (argv [i + 1]);
        else
        if (!strcmp (argv [i], "--filter-mod"))
            filter_mod = atol (argv [i + 1]);
        else
        if (!strcmp (argv [i], "--filter-lt"))
            filter_lt = atol (argv [i + 1]);
        else
        if (!strcmp (argv [i], "--batch-only"))
            batch_only = atoi (argv [i + 1]) != 0;
        else
        if (!strcmp (argv [i], "--floor"))
            floor = atoi (argv [i + 1]) != 0;
        else
            s_die ("unknown option %s", argv [i]);
    }
    if (clients < 1 || clients > 256 || batch > 10000 || !(seconds > 0)
        || (filter_mod && (filter_lt < 1 || filter_lt > filter_mod)))
        s_die ("%s", "bad options");

    matrix_t query, gt;
    s_read_vecs (dir, name, "query.fvecs", &query);
    s_read_vecs (dir, name, "gt.ivecs", &gt);
    if (gt.rows != query.rows || gt.dim < S_K)
        s_die ("%s", "data set files do not match");
    int32_t *truth = malloc (query.rows * S_K * sizeof *truth);
    if (!truth)
        s_die ("%s", "out of memory");
    char filter [256];
    const char *filter_json = NULL;
    if (filter_mod) {
        matrix_t base;
        s_read_vecs (dir, name, "base.fvecs", &base);
        if (base.dim != query.dim)
            s_die ("%s", "base and queries differ in dimension");
        uint32_t *rows = malloc (base.rows * sizeof *rows);
        size_t n_rows = 0;
        for (size_t r = 0; r < base.rows; r++)
            if ((long) (r % (size_t) filter_mod) < filter_lt)
                rows [n_rows++] = (uint32_t) r;
        truth_job_t job = { .base = &base, .query = &query, .rows = rows,
                            .n_rows = n_rows, .truth = truth };
        long cores = sysconf (_SC_NPROCESSORS_ONLN);
        pthread_t tids [64];
        size_t nt = cores < 1 ? 1 : cores > 64 ? 64 : (size_t) cores;
        for (size_t t = 0; t < nt; t++)
            pthread_create (&tids [t], NULL, s_truth_worker, &job);
        for (size_t t = 0; t < nt; t++)
            pthread_join (tids [t], NULL);
        free (rows);
        free (base.data);
        snprintf (filter, sizeof filter,
                  "{\"must\":[{\"key\":\"sel\",\"range\":{\"lt\":%ld}}]}", filter_lt);
        filter_json = filter;
        printf ("selectivity %.4f\n", (double) n_rows / (double) base.rows);
    }
    else {
        const int32_t *g = (const int32_t *) gt.data;
        for (size_t q = 0; q < query.rows; q++)
            memcpy (truth + q * S_K, g + q * gt.dim, S_K * sizeof *truth);
    }

    char search_path [1024], batch_path [1024];
    snprintf (search_path, sizeof search_path, "/collections/%s/points/search", collection);
    snprintf (batch_path, sizeof batch_path, "/collections/%s/points/search/batch",
              collection);
    size_t n_batches = batch ? (query.rows + batch - 1) / batch : 0;
    request_t *singles = calloc (query.rows, sizeof *singles);
    request_t *batches = calloc (n_batches + 1, sizeof *batches);
    conn_t conn;
    s_connect (&conn);
    if (floor) {
        //  One request of each kind, repeated: their answers are the same
        //  every time, so nothing is cached that a search would not find.
        request_t root = { 0 }, one = { 0 };
        buf_t b = { 0 };
        char head [512];
        int n = snprintf (head, sizeof head, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", s_host);
        s_put (&b, head, (size_t) n);
        root = (request_t) { .text = b.data, .len = b.len, .searches = 1 };
        char path [1100];
        snprintf (path, sizeof path, "/collections/%s/points", collection);
        buf_t body = { 0 };
        s_puts (&body, "{\"ids\":[0],\"with_payload\":false,\"with_vector\":false}");
        one = s_request (path, &body);
        one.searches = 1;
        free (body.data);
        const char *answer;
        s_call (&conn, one.text, one.len, &answer);
        if (!strstr (answer, "\"id\":0"))
            s_die ("retrieve of id 0 did not find it: %s", answer);
        //  Each client takes every clients-th entry: one copy per client.
        request_t roots [256], ones [256];
        for (unsigned c = 0; c < clients; c++) {
            roots [c] = root;
            ones [c] = one;
        }
        //  One after another in this order (printf's arguments would run in
        //  any order).
        double gw1 = s_throughput (roots, 1, 1, seconds);
        double gwn = s_throughput (roots, clients, clients, seconds);
        double shard1 = s_throughput (ones, 1, 1, seconds);
        double shardn = s_throughput (ones, clients, clients, seconds);
        printf ("floor gw1 %.0f gwN %.0f shard1 %.0f shardN %.0f\n", gw1, gwn, shard1, shardn);
        fflush (stdout);
        free (root.text);
        free (one.text);
    }
    for (const char *p = ef_list; *p;) {
        char *end;
        size_t ef = strtoul (p, &end, 10);
        if (end == p || ef == 0)
            s_die ("bad ef list %s", ef_list);
        p = *end == ',' ? end + 1 : end;

        for (size_t q = 0; q < query.rows; q++) {
            buf_t body = { 0 };
            s_search_body (&body, query.data + q * query.dim, query.dim, ef, filter_json);
            free (singles [q].text);
            singles [q] = s_request (search_path, &body);
            singles [q].searches = 1;
            free (body.data);
        }
        for (size_t b = 0; b < n_batches; b++) {
            buf_t body = { 0 };
            s_puts (&body, "{\"searches\":[");
            size_t first = b * batch, last = first + batch;
            if (last > query.rows)
                last = query.rows;
            for (size_t q = first; q < last; q++) {
                if (q > first)
                    s_puts (&body, ",");
                s_search_body (&body, query.data + q * query.dim, query.dim, ef,
                               filter_json);
            }
            s_puts (&body, "]}");
            free (batches [b].text);
            batches [b] = s_request (batch_path, &body);
            batches [b].searches = last - first;
            free (body.data);
        }

        //  Recall over every query, one connection.
        size_t found = 0, wanted = 0;
        for (size_t q = 0; q < query.rows; q++) {
            const char *body;
            size_t len = s_call (&conn, singles [q].text, singles [q].len, &body);
            int64_t ids [S_K];
            size_t n = s_ids (body, len, ids, S_K);
            for (size_t j = 0; j < S_K; j++) {
                if (truth [q * S_K + j] < 0)
                    continue;
                wanted++;
                for (size_t i = 0; i < n; i++)
                    if (ids [i] == truth [q * S_K + j]) {
                        found++;
                        break;
                    }
            }
        }
        double recall = wanted ? (double) found / (double) wanted : 0;
        double qps1 = batch_only ? 0 : s_throughput (singles, query.rows, 1, seconds);
        double qpsn = batch_only ? 0 : s_throughput (singles, query.rows, clients, seconds);
        printf ("ef %zu recall %.4f qps1 %.0f qpsN %.0f", ef, recall, qps1, qpsn);
        if (batch) {
            double qpsb = s_throughput (batches, n_batches, 1, seconds);
            double qpsbn = s_throughput (batches, n_batches, clients, seconds);
            printf (" qpsB %.0f qpsBN %.0f", qpsb, qpsbn);
        }
        printf ("\n");
        fflush (stdout);
    }
    close (conn.fd);
    return 0;
}
