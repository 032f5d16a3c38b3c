/*  workers: a fixed pool of threads over one FIFO queue and the direct
    connections (see workers.h).

    The threads wait in epoll_wait on one epoll set that holds an eventfd
    for the queue, one that says stop, the listening socket and every
    accepted connection. All but the stop eventfd are armed one-shot: the
    worker woken for one takes it alone and re-arms it when done, so a
    connection is never read by two workers at once and each queued job
    wakes one worker. The queue is a ring of job pointers grown by doubling
    under the pool's mutex; its eventfd is non-zero exactly while jobs are
    queued (written and reset under that mutex), so a re-armed eventfd with
    jobs left wakes the next worker at once.

    Each worker creates, uses and destroys its PUSH socket on its own
    thread, as ZeroMQ requires, with a linger so results sent just before a
    stop still reach the main thread's PULL.
*/
#include "actors/shard/workers.h"
#include "common/err.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

//  How long a worker's socket keeps undelivered results once closed (ms).
#define S_LINGER_MS 2000
//  Connections waiting to be accepted.
#define S_BACKLOG 128
//  epoll data of the pool's own fds (connections carry their fd, < 2^31).
#define S_TAG_JOBS ((uint64_t) 1 << 40)
#define S_TAG_STOP ((uint64_t) 2 << 40)
#define S_TAG_LISTEN ((uint64_t) 3 << 40)

typedef struct {
    struct _workers_t *pool;    //  the pool this thread serves
    pthread_t thread;           //  the thread
    bool started;               //  pthread_create succeeded
} s_worker_t;

struct _workers_t {
    char *endpoint;             //  where the PUSH sockets connect
    workers_fn *fn;             //  runs a job
    workers_drop_fn *drop;      //  disposes of a job never run
    void *arg;                  //  for fn, drop and conn_fn
    pthread_mutex_t mutex;      //  guards the queue, stopping and conns
    void **ring;                //  queued jobs, a ring of cap entries
    size_t cap;                 //  ring capacity (a power of two)
    size_t head;                //  index of the oldest job
    size_t count;               //  jobs queued
    bool stopping;              //  workers leave once they see it
    int epfd;                   //  the epoll set the workers wait on
    int jobs_fd;                //  eventfd: non-zero while jobs are queued
    int stop_fd;                //  eventfd: written once, on stop
    int listen_fd;              //  direct connections' socket, or -1
    char *listen_path;          //  its file, removed on destroy
    workers_conn_fn *conn_fn;   //  serves a direct connection's request
    int *conns;                 //  open direct connections
    size_t n_conns;             //  entries used
    size_t cap_conns;           //  entries allocated
    s_worker_t *threads;        //  n_threads entries
    size_t n_threads;           //  threads started
};

//  (Re-)arms fd in the epoll set, one-shot, with data tag.
static void
s_arm (workers_t *self, int fd, uint64_t tag, int op)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = tag };
    if (tag < S_TAG_JOBS)
        ev.events |= EPOLLRDHUP;
    int rc = epoll_ctl (self->epfd, op, fd, &ev);
    assert (rc == 0 || op == EPOLL_CTL_ADD);
}

//  Takes the oldest job, or NULL; re-arms the queue's eventfd.
static void *
s_take_job (workers_t *self)
{
    void *job = NULL;
    pthread_mutex_lock (&self->mutex);
    if (self->count && !self->stopping) {
        job = self->ring [self->head];
        self->head = (self->head + 1) & (self->cap - 1);
        self->count--;
    }
    if (self->count == 0) {
        //  EAGAIN (it was reset already) is as good.
        uint64_t value;
        ssize_t got = read (self->jobs_fd, &value, sizeof value);
        (void) got;
    }
    pthread_mutex_unlock (&self->mutex);
    s_arm (self, self->jobs_fd, S_TAG_JOBS, EPOLL_CTL_MOD);
    return job;
}

static void
s_accept_all (workers_t *self)
{
    for (;;) {
        int fd = accept4 (self->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break;                      //  EAGAIN, or out of fds: try later
        }
        pthread_mutex_lock (&self->mutex);
        if (self->stopping) {
            pthread_mutex_unlock (&self->mutex);
            close (fd);
            continue;
        }
        if (self->n_conns == self->cap_conns) {
            self->cap_conns = self->cap_conns ? self->cap_conns * 2 : 16;
            self->conns = realloc (self->conns, self->cap_conns * sizeof *self->conns);
            assert (self->conns);
        }
        self->conns [self->n_conns++] = fd;
        pthread_mutex_unlock (&self->mutex);
        s_arm (self, fd, (uint64_t) fd, EPOLL_CTL_ADD);
    }
    s_arm (self, self->listen_fd, S_TAG_LISTEN, EPOLL_CTL_MOD);
}

static void
s_close_conn (workers_t *self, int fd)
{
    epoll_ctl (self->epfd, EPOLL_CTL_DEL, fd, NULL);
    pthread_mutex_lock (&self->mutex);
    for (size_t i = 0; i < self->n_conns; i++)
        if (self->conns [i] == fd) {
            self->conns [i] = self->conns [--self->n_conns];
            break;
        }
    pthread_mutex_unlock (&self->mutex);
    close (fd);
}

static bool
s_stopping (workers_t *self)
{
    pthread_mutex_lock (&self->mutex);
    bool stopping = self->stopping;
    pthread_mutex_unlock (&self->mutex);
    return stopping;
}

static void *
s_worker_main (void *argp)
{
    s_worker_t *worker = (s_worker_t *) argp;
    workers_t *self = worker->pool;
    zsock_t *out = zsock_new (ZMQ_PUSH);
    assert (out);
    zsock_set_linger (out, S_LINGER_MS);
    //  Results must never be dropped by a full pipe: the main thread
    //  always drains, so a blocked send only waits for it.
    zsock_set_sndhwm (out, 0);
    int rc = zsock_connect (out, "%s", self->endpoint);
    assert (rc == 0);
    for (;;) {
        struct epoll_event ev;
        int n = epoll_wait (self->epfd, &ev, 1, -1);
        if (n < 0 && errno == EINTR)
            continue;
        assert (n == 1);
        if (ev.data.u64 == S_TAG_STOP || s_stopping (self))
            break;                      //  an event taken here is not re-armed: all leave
        if (ev.data.u64 == S_TAG_JOBS) {
            void *job = s_take_job (self);
            if (job)
                self->fn (job, out, self->arg);
        }
        else
        if (ev.data.u64 == S_TAG_LISTEN)
            s_accept_all (self);
        else {
            int fd = (int) ev.data.u64;
            if (self->conn_fn (fd, self->arg))
                s_arm (self, fd, (uint64_t) fd, EPOLL_CTL_MOD);
            else
                s_close_conn (self, fd);
        }
    }
    zsock_destroy (&out);
    return NULL;
}

workers_t *
workers_new (size_t n, const char *endpoint, workers_fn *fn, workers_drop_fn *drop,
             void *arg)
{
    assert (endpoint && fn);
    if (n == 0)
        n = 1;
    workers_t *self = calloc (1, sizeof *self);
    assert (self);
    self->endpoint = strdup (endpoint);
    self->fn = fn;
    self->drop = drop;
    self->arg = arg;
    self->cap = 64;
    self->ring = calloc (self->cap, sizeof *self->ring);
    self->threads = calloc (n, sizeof *self->threads);
    assert (self->endpoint && self->ring && self->threads);
    pthread_mutex_init (&self->mutex, NULL);
    self->listen_fd = -1;
    self->epfd = epoll_create1 (EPOLL_CLOEXEC);
    self->jobs_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->stop_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->epfd < 0 || self->jobs_fd < 0 || self->stop_fd < 0) {
        workers_destroy (&self);
        return NULL;
    }
    s_arm (self, self->jobs_fd, S_TAG_JOBS, EPOLL_CTL_ADD);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = S_TAG_STOP };
    if (epoll_ctl (self->epfd, EPOLL_CTL_ADD, self->stop_fd, &ev)) {
        workers_destroy (&self);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        s_worker_t *worker = &self->threads [i];
        worker->pool = self;
        if (pthread_create (&worker->thread, NULL, s_worker_main, worker) != 0) {
            workers_destroy (&self);
            return NULL;
        }
        worker->started = true;
        self->n_threads++;
    }
    return self;
}

int
workers_listen (workers_t *self, const char *path, workers_conn_fn *fn)
{
    assert (path && fn);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (self->listen_fd >= 0 || strlen (path) >= sizeof addr.sun_path)
        return -SH_EIO;
    strcpy (addr.sun_path, path);
    int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -SH_EIO;
    //  A file left by a process that died is in the way of bind.
    unlink (path);
    if (bind (fd, (struct sockaddr *) &addr, sizeof addr) || listen (fd, S_BACKLOG)) {
        close (fd);
        return -SH_EIO;
    }
    self->listen_path = strdup (path);
    assert (self->listen_path);
    self->conn_fn = fn;
    self->listen_fd = fd;
    s_arm (self, fd, S_TAG_LISTEN, EPOLL_CTL_ADD);
    return 0;
}

void
workers_destroy (workers_t **self_p)
{
    assert (self_p);
    workers_t *self = *self_p;
    if (!self)
        return;
    workers_stop (self);
    for (size_t i = 0; i < self->n_threads; i++)
        if (self->threads [i].started)
            pthread_join (self->threads [i].thread, NULL);
    //  Threads are gone: the queue and the connections are ours alone.
    while (self->count) {
        void *job = self->ring [self->head];
        self->head = (self->head + 1) & (self->cap - 1);
        self->count--;
        if (self->drop)
            self->drop (job, self->arg);
    }
    for (size_t i = 0; i < self->n_conns; i++)
        close (self->conns [i]);
    if (self->listen_fd >= 0) {
        close (self->listen_fd);
        unlink (self->listen_path);
    }
    if (self->epfd >= 0)
        close (self->epfd);
    if (self->jobs_fd >= 0)
        close (self->jobs_fd);
    if (self->stop_fd >= 0)
        close (self->stop_fd);
    pthread_mutex_destroy (&self->mutex);
    free (self->conns);
    free (self->listen_path);
    free (self->ring);
    free (self->threads);
    free (self->endpoint);
    free (self);
    *self_p = NULL;
}

void
workers_stop (workers_t *self)
{
    pthread_mutex_lock (&self->mutex);
    bool first = !self->stopping;
    self->stopping = true;
    pthread_mutex_unlock (&self->mutex);
    if (first && self->stop_fd >= 0) {
        uint64_t one = 1;
        if (write (self->stop_fd, &one, sizeof one) < 0)
            assert (false);             //  an eventfd write of 1 cannot fail here
    }
}

void
workers_submit (workers_t *self, void *job)
{
    pthread_mutex_lock (&self->mutex);
    if (self->count == self->cap) {
        //  Unroll the ring into a twice larger one.
        void **ring = calloc (self->cap * 2, sizeof *ring);
        assert (ring);
        for (size_t i = 0; i < self->count; i++)
            ring [i] = self->ring [(self->head + i) & (self->cap - 1)];
        free (self->ring);
        self->ring = ring;
        self->head = 0;
        self->cap *= 2;
    }
    self->ring [(self->head + self->count) & (self->cap - 1)] = job;
    self->count++;
    uint64_t one = 1;
    if (write (self->jobs_fd, &one, sizeof one) < 0)
        assert (false);                 //  cannot overflow: reset whenever drained
    pthread_mutex_unlock (&self->mutex);
}

size_t
workers_queued (workers_t *self)
{
    pthread_mutex_lock (&self->mutex);
    size_t n = self->count;
    pthread_mutex_unlock (&self->mutex);
    return n;
}

size_t
workers_size (const workers_t *self)
{
    return self->n_threads;
}

size_t
workers_default_count (void)
{
    long n = sysconf (_SC_NPROCESSORS_ONLN);
    return n >= 2 ? (size_t) n : 2;
}
