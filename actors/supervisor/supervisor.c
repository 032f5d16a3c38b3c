/*  supervisor: keeps one node's actors running (see supervisor.h).

    It owns a table of children: the raft actor, the gateway, one shard
    actor per shard replica that the consensus state places on this peer,
    and in cluster mode the p2p actor (the only process on the p2p port).
    It learns placements from the raft actor: a META_GET at start (repeated
    until answered) and the META_STATE publications after that. The loop
    waits on those two sockets and on a self-pipe that the signal handlers
    write to (SIGCHLD, SIGTERM, SIGINT, SIGHUP), never blocking for longer
    than the next restart or deadline, and reaps children with WNOHANG.

    Destructive actions (stopping a shard actor for good, removing a
    collection's files) are taken only from a state that is provably recent
    enough: a collection's uid is the raft log index of its create, so a
    collection dir <uid> that is missing from a state whose applied index is
    >= uid was deleted; a state older than the collection (a raft actor that
    restarted and is still replaying) proves nothing and is not acted on.
    A replica that moves off this peer (a shard transfer finished, or the
    copy of an aborted one) is stopped and its shard dir removed once it
    exited, when the state that dropped it was settled (s_on_state); shard
    dirs are never removed by a scan, since a shard may move back.
*/
#include "actors/supervisor/supervisor.h"
#include "common/err.h"
#include "common/log.h"
#include "common/paths.h"
#include "proto/envelope.h"
#include "proto/msg.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define S_BACKOFF_FIRST_MS  100     //  first restart delay
#define S_BACKOFF_MAX_MS    5000    //  restart delays double up to this
#define S_BACKOFF_RESET_MS  10000   //  a run this long resets the backoff
#define S_STOP_GRACE_MS     5000    //  SIGTERM -> SIGKILL for a removed shard
#define S_GET_RETRY_MS      2000    //  META_GET until the first state arrives
#define S_MAX_WAIT_MS       1000    //  longest the loop sleeps
//  Shutdown: how long each phase may take before SIGKILL.
#define S_STOP_GATEWAY_MS   2000
#define S_STOP_SHARDS_MS    3000
#define S_STOP_RAFT_MS      2000
#define S_STOP_P2P_MS       2000

typedef enum { S_RAFT, S_GATEWAY, S_SHARD, S_P2P } s_kind_t;

typedef struct {
    s_kind_t kind;                  //  which actor
    uint64_t uid;                   //  shard actors: the collection's uid
    uint32_t shard;                 //  shard actors: the shard id
    pid_t pid;                      //  running process, 0 while not running
    int64_t started_at;             //  zclock_mono () of the last start
    int64_t start_at;               //  zclock_mono () when due to (re)start
    int64_t backoff_ms;             //  delay before the next restart
    bool wanted;                    //  false once stopped for good (not restarted)
    int64_t kill_at;                //  not wanted: SIGKILL if still alive then
    bool remove_dir;                //  not wanted: its collection was deleted
    bool remove_shard_dir;          //  not wanted: its replica moved off this peer
} s_child_t;

typedef struct {
    uint64_t uid;                   //  collection uid
    uint32_t shard;                 //  shard id
} s_placement_t;

struct _supervisor_t {
    char *storage;                  //  storage.storage_path
    uint64_t peer_id;               //  this node's peer id
    bool cluster_enabled;           //  cluster.enabled: run the p2p actor
    char peer_key [24];             //  peer_id in decimal: key of "replicas" maps
    int lock_fd;                    //  flock'ed <storage>/supervisor.lock
    char *run_config;               //  JSON for SHOAL_RUN_CONFIG
    char *run_config_reinit;        //  same with run.reinit, first raft start only
    bool reinit_used;               //  run_config_reinit was handed out once
    s_child_t **children;           //  the child table
    size_t n_children;              //  entries used
    size_t cap_children;            //  entries allocated
    zsock_t *sub;                   //  SUB on the meta endpoint (META_STATE)
    zsock_t *dealer;                //  DEALER on the raft endpoint (META_GET)
    uint64_t request_id;            //  last META_GET request id
    int64_t next_get_at;            //  when to repeat META_GET (no state yet)
    bool have_state;                //  a state has been accepted
    bool settled;                   //  that state has everything this peer knows
                                    //  to be committed applied (see s_on_state)
    uint64_t applied;               //  applied index of the last accepted state
    uint64_t *uids;                 //  uids of the collections in that state
    size_t n_uids;                  //  entries in uids
    bool stopping;                  //  shutting down: nothing is restarted
};

//  Signal handlers can reach nothing but globals: these flags and the write
//  end of the self-pipe are all of it. One supervisor per process.
static volatile sig_atomic_t s_term_count = 0;
static volatile sig_atomic_t s_hup_count = 0;
static int s_wake_fds [2] = { -1, -1 };

static void
s_on_signal (int signo)
{
    int saved = errno;
    if (signo == SIGTERM || signo == SIGINT)
        s_term_count++;
    else
    if (signo == SIGHUP)
        s_hup_count++;
    if (s_wake_fds [1] >= 0) {
        char byte = (char) signo;
        ssize_t rc = write (s_wake_fds [1], &byte, 1);
        (void) rc;              //  a full pipe already holds a wake-up
    }
    errno = saved;
}

static void
s_err (char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list args;
    va_start (args, fmt);
    vsnprintf (err, errlen, fmt, args);
    va_end (args);
}

//  --------------------------------------------------------------------------
//  Peer id

static int
s_fsync_dir (const char *dir)
{
    int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -SH_EIO;
    int rc = fsync (fd);
    close (fd);
    return rc == 0 ? 0 : -SH_EIO;
}

static int
s_parse_peer_id (const char *text, uint64_t *out)
{
    //  Decimal digits, optional trailing whitespace; nothing else.
    const char *p = text;
    if (*p < '0' || *p > '9')
        return -SH_EINVAL;
    uint64_t value = 0;
    while (*p >= '0' && *p <= '9') {
        if (value > SUPERVISOR_PEER_ID_MAX)
            return -SH_EINVAL;
        value = value * 10 + (uint64_t) (*p - '0');
        p++;
    }
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
        p++;
    if (*p || value == 0 || value > SUPERVISOR_PEER_ID_MAX)
        return -SH_EINVAL;
    *out = value;
    return 0;
}

int
supervisor_load_peer_id (const char *storage, uint64_t *peer_id, char *err,
                         size_t errlen)
{
    char path [PATHS_MAX], tmp [PATHS_MAX];
    if (snprintf (path, sizeof path, "%s/peer_id", storage) >= (int) sizeof path
    ||  snprintf (tmp, sizeof tmp, "%s/peer_id.tmp", storage) >= (int) sizeof tmp) {
        s_err (err, errlen, "storage path too long: %s", storage);
        return -SH_EINVAL;
    }
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char text [64];
        ssize_t len = read (fd, text, sizeof text - 1);
        close (fd);
        if (len < 0) {
            s_err (err, errlen, "cannot read %s: %s", path, strerror (errno));
            return -SH_EIO;
        }
        text [len] = 0;
        if (s_parse_peer_id (text, peer_id)) {
            s_err (err, errlen, "%s does not hold a peer id (1..2^53): fix or remove it",
                   path);
            return -SH_EINVAL;
        }
        return 0;
    }
    if (errno != ENOENT) {
        s_err (err, errlen, "cannot open %s: %s", path, strerror (errno));
        return -SH_EIO;
    }
    if (sodium_init () < 0) {
        s_err (err, errlen, "libsodium failed to initialise");
        return -SH_EINTERNAL;
    }
    uint64_t random;
    randombytes_buf (&random, sizeof random);
    uint64_t id = (random & (SUPERVISOR_PEER_ID_MAX - 1)) + 1;

    //  Write-then-rename so a crash leaves either no file or a whole one.
    char text [32];
    int len = snprintf (text, sizeof text, "%" PRIu64 "\n", id);
    fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        s_err (err, errlen, "cannot create %s: %s", tmp, strerror (errno));
        return -SH_EIO;
    }
    bool ok = write (fd, text, (size_t) len) == len && fsync (fd) == 0;
    ok = (close (fd) == 0) && ok;
    if (!ok || rename (tmp, path) != 0 || s_fsync_dir (storage) != 0) {
        s_err (err, errlen, "cannot write %s: %s", path, strerror (errno));
        unlink (tmp);
        return -SH_EIO;
    }
    *peer_id = id;
    return 0;
}

//  --------------------------------------------------------------------------
//  Construction

static char *
s_run_config (const config_t *config, const cli_t *cli, bool reinit)
{
    char *merged = config_to_json (config);
    json_t *tree = json_loads (merged, 0, NULL);
    free (merged);
    if (!json_is_object (tree)) {
        json_decref (tree);
        return NULL;
    }
    if (cli->disable_telemetry)
        json_object_set_new (tree, "telemetry_disabled", json_true ());
    //  The command line's cluster flags, for the raft actor. Not a Qdrant
    //  config key: the section "run" is shoal's own and never read from files.
    json_t *run = json_object ();
    if (cli->uri)
        json_object_set_new (run, "uri", json_string (cli->uri));
    if (cli->bootstrap)
        json_object_set_new (run, "bootstrap", json_string (cli->bootstrap));
    json_object_set_new (run, "reinit", json_boolean (reinit));
    json_object_set_new (tree, "run", run);
    char *text = json_dumps (tree, JSON_COMPACT);
    json_decref (tree);
    return text;
}

int
supervisor_new (const config_t *config, const cli_t *cli, supervisor_t **out,
                char *err, size_t errlen)
{
    *out = NULL;
    const char *storage = config->storage_path ? config->storage_path : "./storage";
    if (paths_mkdirs (storage)) {
        s_err (err, errlen, "cannot create storage dir %s: %s", storage, strerror (errno));
        return -SH_EIO;
    }
    if (config->snapshots_path && paths_mkdirs (config->snapshots_path)) {
        s_err (err, errlen, "cannot create snapshots dir %s: %s", config->snapshots_path,
               strerror (errno));
        return -SH_EIO;
    }
    supervisor_t *self = (supervisor_t *) zmalloc (sizeof (supervisor_t));
    self->storage = strdup (storage);
    self->lock_fd = -1;
    self->cluster_enabled = config->cluster_enabled;

    //  Two supervisors on one storage dir would corrupt it. The lock is
    //  close-on-exec so actors never hold it after their supervisor died.
    char lock_path [PATHS_MAX];
    int rc = 0;
    if (snprintf (lock_path, sizeof lock_path, "%s/supervisor.lock", storage)
        >= (int) sizeof lock_path) {
        s_err (err, errlen, "storage path too long: %s", storage);
        rc = -SH_EINVAL;
        goto failed;
    }
    self->lock_fd = open (lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (self->lock_fd < 0) {
        s_err (err, errlen, "cannot open %s: %s", lock_path, strerror (errno));
        rc = -SH_EIO;
        goto failed;
    }
    if (flock (self->lock_fd, LOCK_EX | LOCK_NB)) {
        s_err (err, errlen, "storage dir %s is in use by another shoal process", storage);
        rc = -SH_EEXIST;
        goto failed;
    }
    rc = supervisor_load_peer_id (storage, &self->peer_id, err, errlen);
    if (rc)
        goto failed;
    snprintf (self->peer_key, sizeof self->peer_key, "%" PRIu64, self->peer_id);

    char ipc_dir [PATHS_MAX];
    if (paths_ipc_dir (storage, ipc_dir) || paths_mkdirs (ipc_dir)) {
        s_err (err, errlen, "cannot create the ipc dir for storage %s", storage);
        rc = -SH_EIO;
        goto failed;
    }
    self->run_config = s_run_config (config, cli, false);
    if (cli->reinit)
        self->run_config_reinit = s_run_config (config, cli, true);
    if (!self->run_config || (cli->reinit && !self->run_config_reinit)) {
        s_err (err, errlen, "cannot serialise the config");
        rc = -SH_EINTERNAL;
        goto failed;
    }
    *out = self;
    return 0;

failed:
    supervisor_destroy (&self);
    return rc;
}

void
supervisor_destroy (supervisor_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    supervisor_t *self = *self_p;
    for (size_t i = 0; i < self->n_children; i++)
        free (self->children [i]);
    free (self->children);
    free (self->uids);
    zsock_destroy (&self->sub);
    zsock_destroy (&self->dealer);
    if (self->lock_fd >= 0)
        close (self->lock_fd);
    free (self->run_config);
    free (self->run_config_reinit);
    free (self->storage);
    free (self);
    *self_p = NULL;
}

uint64_t
supervisor_peer_id (const supervisor_t *self)
{
    return self->peer_id;
}

//  --------------------------------------------------------------------------
//  The child table

static const char *
s_describe (const s_child_t *child, char *buf, size_t len)
{
    if (child->kind == S_RAFT)
        snprintf (buf, len, "raft");
    else
    if (child->kind == S_GATEWAY)
        snprintf (buf, len, "gateway");
    else
    if (child->kind == S_P2P)
        snprintf (buf, len, "p2p");
    else
        snprintf (buf, len, "shard uid=%" PRIu64 " shard=%" PRIu32, child->uid,
                  child->shard);
    return buf;
}

static s_child_t *
s_child_add (supervisor_t *self, s_kind_t kind, uint64_t uid, uint32_t shard)
{
    if (self->n_children == self->cap_children) {
        self->cap_children = self->cap_children ? self->cap_children * 2 : 8;
        self->children = (s_child_t **) realloc (self->children,
                                                 self->cap_children * sizeof (s_child_t *));
        assert (self->children);
    }
    s_child_t *child = (s_child_t *) zmalloc (sizeof (s_child_t));
    child->kind = kind;
    child->uid = uid;
    child->shard = shard;
    child->wanted = true;
    child->backoff_ms = S_BACKOFF_FIRST_MS;
    child->start_at = zclock_mono ();
    self->children [self->n_children++] = child;
    return child;
}

static void
s_child_remove (supervisor_t *self, s_child_t *child)
{
    for (size_t i = 0; i < self->n_children; i++)
        if (self->children [i] == child) {
            self->children [i] = self->children [--self->n_children];
            free (child);
            return;
        }
}

//  The table entry of a shard actor, wanted or still stopping; NULL if none.
static s_child_t *
s_find_shard (supervisor_t *self, uint64_t uid, uint32_t shard)
{
    for (size_t i = 0; i < self->n_children; i++) {
        s_child_t *child = self->children [i];
        if (child->kind == S_SHARD && child->uid == uid && child->shard == shard)
            return child;
    }
    return NULL;
}

static bool
s_uid_has_children (supervisor_t *self, uint64_t uid)
{
    for (size_t i = 0; i < self->n_children; i++)
        if (self->children [i]->kind == S_SHARD && self->children [i]->uid == uid)
            return true;
    return false;
}

static bool
s_uid_in_state (supervisor_t *self, uint64_t uid)
{
    for (size_t i = 0; i < self->n_uids; i++)
        if (self->uids [i] == uid)
            return true;
    return false;
}

static void
s_remove_collection_dir (supervisor_t *self, uint64_t uid)
{
    char dir [PATHS_MAX];
    if (paths_collection_dir (self->storage, uid, dir))
        return;
    struct stat st;
    if (stat (dir, &st) != 0)
        return;                 //  never created, or already gone
    if (paths_remove_tree (dir))
        log_error ("cannot remove collection dir uid=%" PRIu64 " path=%s", uid, dir);
    else
        log_info ("removed collection dir uid=%" PRIu64 " path=%s", uid, dir);
}

//  The files of a replica that moved off this peer (its actor has exited).
static void
s_remove_shard_dir (supervisor_t *self, uint64_t uid, uint32_t shard)
{
    char dir [PATHS_MAX];
    if (paths_shard_dir (self->storage, uid, shard, dir))
        return;
    struct stat st;
    if (stat (dir, &st) != 0)
        return;                 //  never created, or already gone
    if (paths_remove_tree (dir))
        log_error ("cannot remove shard dir uid=%" PRIu64 " shard=%" PRIu32 " path=%s", uid,
                   shard, dir);
    else
        log_info ("removed shard dir uid=%" PRIu64 " shard=%" PRIu32 " path=%s (replica "
                  "moved off this peer)", uid, shard, dir);
}

//  Builds environ with SHOAL_RUN_CONFIG replaced: done before fork, because
//  between fork and exec the child may only make async-signal-safe calls.
static char **
s_child_env (const char *run_config)
{
    size_t count = 0;
    while (environ [count])
        count++;
    char **envp = (char **) calloc (count + 2, sizeof (char *));
    assert (envp);
    size_t prefix = strlen (SUPERVISOR_RUN_CONFIG_ENV);
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if (strncmp (environ [i], SUPERVISOR_RUN_CONFIG_ENV, prefix) != 0
        ||  environ [i][prefix] != '=')
            envp [n++] = environ [i];
    size_t len = prefix + 1 + strlen (run_config) + 1;
    envp [n] = (char *) malloc (len);
    assert (envp [n]);
    snprintf (envp [n], len, "%s=%s", SUPERVISOR_RUN_CONFIG_ENV, run_config);
    return envp;
}

//  The delay before a child's next start; doubles the next one, up to the cap.
static int64_t
s_take_backoff (s_child_t *child)
{
    int64_t delay = child->backoff_ms;
    child->backoff_ms = delay * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS : delay * 2;
    return delay;
}

static void
s_spawn (supervisor_t *self, s_child_t *child)
{
    char name [64];
    s_describe (child, name, sizeof name);
    char peer [24], uid [24], shard [16];
    snprintf (peer, sizeof peer, "%" PRIu64, self->peer_id);
    snprintf (uid, sizeof uid, "%" PRIu64, child->uid);
    snprintf (shard, sizeof shard, "%" PRIu32, child->shard);
    const char *kind = child->kind == S_RAFT ? "raft"
                     : child->kind == S_GATEWAY ? "gateway"
                     : child->kind == S_P2P ? "p2p" : "shard";
    char *argv [] = { "shoal", "--actor", (char *) kind, "--peer-id", peer,
                      "--collection-uid", uid, "--shard-id", shard, NULL };
    if (child->kind != S_SHARD)
        argv [5] = NULL;

    //  --reinit applies to the raft actor's first start only: a restart after
    //  a crash must not throw its consensus state away again.
    const char *run_config = self->run_config;
    bool reinit = child->kind == S_RAFT && self->run_config_reinit && !self->reinit_used;
    if (reinit)
        run_config = self->run_config_reinit;
    char **envp = s_child_env (run_config);

    pid_t parent = getpid ();
    pid_t pid = fork ();
    if (pid == 0) {
        //  Die with the supervisor, even on its kill -9, so that no orphan
        //  keeps holding the node's ports; the getppid check closes the race
        //  of a supervisor that died before prctl ran.
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        if (getppid () != parent)
            _exit (127);
        //  Own process group: a terminal's Ctrl-C reaches the supervisor
        //  only, which then stops the actors in order.
        setpgid (0, 0);
        signal (SIGTERM, SIG_DFL);
        signal (SIGINT, SIG_DFL);
        signal (SIGHUP, SIG_DFL);
        signal (SIGCHLD, SIG_DFL);
        signal (SIGPIPE, SIG_DFL);
        sigset_t none;
        sigemptyset (&none);
        sigprocmask (SIG_SETMASK, &none, NULL);
        //  /proc/self/exe: the very binary running, even if rebuilt since.
        execve ("/proc/self/exe", argv, envp);
        _exit (127);
    }
    size_t last = 0;
    while (envp [last])
        last++;
    free (envp [last - 1]);     //  our SHOAL_RUN_CONFIG string
    free (envp);

    int64_t now = zclock_mono ();
    if (pid < 0) {
        int64_t delay = s_take_backoff (child);
        log_error ("cannot fork %s: %s; retrying in %" PRId64 " ms", name,
                   strerror (errno), delay);
        child->start_at = now + delay;
        return;
    }
    if (reinit)
        self->reinit_used = true;
    child->pid = pid;
    child->started_at = now;
    log_info ("started %s pid=%d", name, (int) pid);
}

//  A child exited: restart it (with backoff) if it is still wanted, else
//  forget it and remove its collection's files if that was the reason.
static void
s_on_exit (supervisor_t *self, s_child_t *child, int status)
{
    char name [64], why [48];
    s_describe (child, name, sizeof name);
    if (WIFSIGNALED (status))
        snprintf (why, sizeof why, "signal %d (%s)", WTERMSIG (status),
                  strsignal (WTERMSIG (status)));
    else
        snprintf (why, sizeof why, "exit status %d", WEXITSTATUS (status));
    int64_t now = zclock_mono ();
    int64_t ran_ms = now - child->started_at;
    child->pid = 0;

    if (!child->wanted || self->stopping) {
        if (child->wanted)
            log_info ("%s exited with %s", name, why);
        else
            log_info ("stopped %s (%s)", name, why);
        if (self->stopping)
            return;             //  the shutdown forgets the table itself
        uint64_t uid = child->uid;
        uint32_t shard = child->shard;
        bool remove_dir = child->remove_dir;
        bool remove_shard_dir = child->remove_shard_dir;
        s_child_remove (self, child);
        if (remove_dir && !s_uid_has_children (self, uid) && !s_uid_in_state (self, uid))
            s_remove_collection_dir (self, uid);
        else
        if (remove_shard_dir)
            s_remove_shard_dir (self, uid, shard);
        return;
    }
    if (ran_ms >= S_BACKOFF_RESET_MS)
        child->backoff_ms = S_BACKOFF_FIRST_MS;
    int64_t delay = s_take_backoff (child);
    child->start_at = now + delay;
    log_warn ("restarting %s after %s in %" PRId64 " ms", name, why, delay);
}

static s_child_t *
s_find_pid (supervisor_t *self, pid_t pid)
{
    for (size_t i = 0; i < self->n_children; i++)
        if (self->children [i]->pid == pid)
            return self->children [i];
    return NULL;
}

static void
s_reap (supervisor_t *self)
{
    int status;
    pid_t pid;
    while ((pid = waitpid (-1, &status, WNOHANG)) > 0) {
        s_child_t *child = s_find_pid (self, pid);
        if (child)
            s_on_exit (self, child, status);
    }
}

//  Stops a shard actor for good: SIGTERM now, SIGKILL after the grace time.
//  A replica that moved off this peer (the collection stays) has its files
//  removed once its actor exited, if the state that dropped it was settled:
//  a state in the middle of a replay may drop a replica that a later entry
//  this peer already holds places here again, with its only copy.
static void
s_stop_shard (supervisor_t *self, s_child_t *child, bool collection_deleted)
{
    char name [64];
    s_describe (child, name, sizeof name);
    child->wanted = false;
    child->remove_dir = collection_deleted;
    child->remove_shard_dir = !collection_deleted && self->settled;
    if (child->pid == 0) {
        log_info ("dropped %s (%s)", name,
                  collection_deleted ? "collection deleted" : "replica moved off this peer");
        uint64_t uid = child->uid;
        uint32_t shard = child->shard;
        bool remove_shard_dir = child->remove_shard_dir;
        s_child_remove (self, child);
        if (collection_deleted && !s_uid_has_children (self, uid))
            s_remove_collection_dir (self, uid);
        else
        if (remove_shard_dir)
            s_remove_shard_dir (self, uid, shard);
        return;
    }
    log_info ("stopping %s pid=%d (%s)", name, (int) child->pid,
              collection_deleted ? "collection deleted" : "replica moved off this peer");
    kill (child->pid, SIGTERM);
    child->kill_at = zclock_mono () + S_STOP_GRACE_MS;
}

//  --------------------------------------------------------------------------
//  Consensus state

//  Collection dirs of collections deleted while this node was down.
static void
s_remove_orphan_dirs (supervisor_t *self)
{
    char probe [PATHS_MAX];
    if (paths_collection_dir (self->storage, 1, probe))
        return;
    char *slash = strrchr (probe, '/');
    if (!slash)
        return;
    *slash = 0;                 //  <storage>/collections
    DIR *dir = opendir (probe);
    if (!dir)
        return;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        uint64_t uid;
        if (s_parse_peer_id (entry->d_name, &uid))
            continue;           //  not a uid: not ours to judge
        if (s_uid_in_state (self, uid) || uid > self->applied
        ||  s_uid_has_children (self, uid))
            continue;
        log_info ("collection uid=%" PRIu64 " is not in the state applied=%" PRIu64
                  ": removing its files", uid, self->applied);
        s_remove_collection_dir (self, uid);
    }
    closedir (dir);
}

static void
s_on_state (supervisor_t *self, json_t *state)
{
    json_t *applied_j = json_object_get (state, "applied");
    json_t *collections = json_object_get (state, "collections");
    if (!json_is_integer (applied_j) || json_integer_value (applied_j) < 0
    ||  !json_is_object (collections)) {
        log_warn ("ignored a malformed meta state (no applied index or collections)");
        return;
    }
    uint64_t applied = (uint64_t) json_integer_value (applied_j);
    json_t *from = json_object_get (state, "peer_id");
    if (json_is_integer (from) && (uint64_t) json_integer_value (from) != self->peer_id) {
        log_warn ("ignored a meta state published by peer=%" JSON_INTEGER_FORMAT,
                  json_integer_value (from));
        return;
    }
    if (self->have_state && applied < self->applied) {
        log_debug ("ignored a meta state older than the last one: applied=%" PRIu64
                   " < %" PRIu64, applied, self->applied);
        return;
    }
    bool changed = !self->have_state || applied != self->applied;

    //  Read the placements; a malformed entry makes the whole state unfit
    //  for destructive decisions (it might hide a collection we hold).
    size_t n_colls = json_object_size (collections);
    uint64_t *uids = (uint64_t *) calloc (n_colls + 1, sizeof (uint64_t));
    assert (uids);
    size_t n_uids = 0;
    s_placement_t *places = NULL;
    size_t n_places = 0, cap_places = 0;
    bool complete = true;
    const char *name;
    json_t *coll;
    json_object_foreach (collections, name, coll) {
        json_t *uid_j = json_object_get (coll, "uid");
        json_t *shards = json_object_get (coll, "shards");
        if (!json_is_integer (uid_j) || json_integer_value (uid_j) <= 0
        ||  !json_is_array (shards)) {
            log_warn ("meta state: collection '%.64s' has no valid uid or shards", name);
            complete = false;
            continue;
        }
        uint64_t uid = (uint64_t) json_integer_value (uid_j);
        uids [n_uids++] = uid;
        size_t index;
        json_t *shard;
        json_array_foreach (shards, index, shard) {
            json_t *id_j = json_object_get (shard, "shard_id");
            json_t *replicas = json_object_get (shard, "replicas");
            if (!json_is_integer (id_j) || json_integer_value (id_j) < 0
            ||  json_integer_value (id_j) > UINT32_MAX || !json_is_object (replicas)) {
                log_warn ("meta state: collection '%.64s' has a malformed shard", name);
                complete = false;
                continue;
            }
            if (!json_object_get (replicas, self->peer_key))
                continue;
            if (n_places == cap_places) {
                cap_places = cap_places ? cap_places * 2 : 16;
                places = (s_placement_t *) realloc (places, cap_places * sizeof *places);
                assert (places);
            }
            places [n_places].uid = uid;
            places [n_places].shard = (uint32_t) json_integer_value (id_j);
            n_places++;
        }
    }
    free (self->uids);
    self->uids = uids;
    self->n_uids = n_uids;
    self->applied = applied;
    //  Settled: without cluster mode every state is; in cluster mode once a
    //  leader is known (a restarted peer may hold log entries past the
    //  commit index it saved) and every entry known committed is applied.
    json_t *raft = json_object_get (state, "raft");
    self->settled = !json_is_object (raft)
                 || (json_is_integer (json_object_get (raft, "leader"))
                     && json_is_integer (json_object_get (raft, "commit"))
                     && (uint64_t) json_integer_value (json_object_get (raft, "commit"))
                        <= applied);
    if (!self->have_state)
        log_info ("first meta state: applied=%" PRIu64 " collections=%zu local shards=%zu",
                  applied, n_uids, n_places);
    self->have_state = true;

    //  Start what should run here and does not. A replica placed back here
    //  while its actor is still stopping is wanted again: it restarts once
    //  the old process is gone, never two actors on one shard endpoint.
    for (size_t i = 0; i < n_places; i++) {
        s_child_t *child = s_find_shard (self, places [i].uid, places [i].shard);
        if (!child)
            s_child_add (self, S_SHARD, places [i].uid, places [i].shard);
        else
        if (!child->wanted) {
            child->wanted = true;
            child->remove_dir = false;
            child->remove_shard_dir = false;
        }
    }

    //  Stop what should not run here any more.
    if (complete) {
        for (size_t i = 0; i < self->n_children; ) {
            s_child_t *child = self->children [i];
            bool placed = false;
            for (size_t j = 0; j < n_places && !placed; j++)
                placed = places [j].uid == child->uid && places [j].shard == child->shard;
            if (child->kind != S_SHARD || !child->wanted || placed
            ||  child->uid > applied) {
                i++;
                continue;
            }
            size_t before = self->n_children;
            s_stop_shard (self, child, !s_uid_in_state (self, child->uid));
            if (self->n_children == before)
                i++;            //  still in the table (stopping); else i now holds another
        }
        if (changed)
            s_remove_orphan_dirs (self);
    }
    free (places);
}

static void
s_request_state (supervisor_t *self)
{
    envelope_t *request = envelope_new (MSG_META_GET, ++self->request_id,
                                        envelope_now_ms () + S_GET_RETRY_MS);
    //  The DEALER queues it until the raft actor binds; SNDTIMEO 0 keeps a
    //  full queue from blocking the loop.
    if (envelope_send (&request, self->dealer))
        log_debug ("meta_get not sent (raft actor not reachable yet)");
    self->next_get_at = zclock_mono () + S_GET_RETRY_MS;
}

static void
s_read_sockets (supervisor_t *self)
{
    //  Only the newest publication matters: drain, then act once.
    envelope_t *latest = NULL;
    while (zsock_events (self->sub) & ZMQ_POLLIN) {
        envelope_t *env = NULL;
        int rc = envelope_recv (self->sub, &env);
        if (rc) {
            log_warn ("meta publication dropped: %s", sh_strerror (rc));
            if (rc == -SH_EIO)
                break;
            continue;
        }
        if (envelope_type (env) != MSG_META_STATE) {
            envelope_destroy (&env);
            continue;
        }
        envelope_destroy (&latest);
        latest = env;
    }
    while (zsock_events (self->dealer) & ZMQ_POLLIN) {
        envelope_t *env = NULL;
        int rc = envelope_recv (self->dealer, &env);
        if (rc) {
            log_warn ("meta_get reply dropped: %s", sh_strerror (rc));
            if (rc == -SH_EIO)
                break;
            continue;
        }
        if (envelope_type (env) == MSG_META_GET && envelope_status (env) == 0) {
            envelope_destroy (&latest);
            latest = env;
        }
        else {
            log_debug ("meta_get failed: %s", envelope_error (env));
            envelope_destroy (&env);
        }
    }
    if (latest) {
        json_t *state = json_object_get (envelope_json (latest), "state");
        if (json_is_object (state))
            s_on_state (self, state);
        else
            log_warn ("ignored a meta message without a state object");
        envelope_destroy (&latest);
    }
}

//  --------------------------------------------------------------------------
//  Loop

static void
s_drain_wake_pipe (void)
{
    char buf [64];
    while (read (s_wake_fds [0], buf, sizeof buf) > 0)
        ;
}

static int
s_install_signals (void)
{
    if (s_wake_fds [0] < 0 && pipe2 (s_wake_fds, O_NONBLOCK | O_CLOEXEC))
        return -SH_EIO;
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigemptyset (&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction (SIGTERM, &action, NULL);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGHUP, &action, NULL);
    action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction (SIGCHLD, &action, NULL);
    signal (SIGPIPE, SIG_IGN);
    return 0;
}

static int
s_wait_ms (supervisor_t *self)
{
    int64_t now = zclock_mono ();
    int64_t wait = S_MAX_WAIT_MS;
    for (size_t i = 0; i < self->n_children; i++) {
        s_child_t *child = self->children [i];
        if (child->wanted && child->pid == 0 && child->start_at - now < wait)
            wait = child->start_at - now;
        if (!child->wanted && child->pid && child->kill_at - now < wait)
            wait = child->kill_at - now;
    }
    if (!self->have_state && self->next_get_at - now < wait)
        wait = self->next_get_at - now;
    return wait < 0 ? 0 : (int) wait;
}

static void
s_tend_children (supervisor_t *self)
{
    int64_t now = zclock_mono ();
    for (size_t i = 0; i < self->n_children; i++) {
        s_child_t *child = self->children [i];
        if (child->wanted && child->pid == 0 && now >= child->start_at)
            s_spawn (self, child);
        else
        if (!child->wanted && child->pid && now >= child->kill_at) {
            char name [64];
            log_warn ("%s pid=%d ignored SIGTERM for %d ms: killing it",
                      s_describe (child, name, sizeof name), (int) child->pid,
                      S_STOP_GRACE_MS);
            kill (child->pid, SIGKILL);
            child->kill_at = now + S_STOP_GRACE_MS;
        }
    }
}

static bool
s_any_alive (supervisor_t *self, s_kind_t kind)
{
    for (size_t i = 0; i < self->n_children; i++)
        if (self->children [i]->kind == kind && self->children [i]->pid)
            return true;
    return false;
}

//  Stops one kind of actor: SIGTERM, wait up to grace_ms (less if a second
//  SIGTERM/SIGINT says hurry), then SIGKILL what is left.
static void
s_stop_kind (supervisor_t *self, s_kind_t kind, int64_t grace_ms)
{
    for (size_t i = 0; i < self->n_children; i++) {
        s_child_t *child = self->children [i];
        if (child->kind == kind && child->pid)
            kill (child->pid, SIGTERM);
    }
    int64_t deadline = zclock_mono () + grace_ms;
    while (s_any_alive (self, kind) && s_term_count < 2) {
        int64_t left = deadline - zclock_mono ();
        if (left <= 0)
            break;
        struct pollfd item = { .fd = s_wake_fds [0], .events = POLLIN };
        poll (&item, 1, left > 100 ? 100 : (int) left);
        s_drain_wake_pipe ();
        s_reap (self);
    }
    for (size_t i = 0; i < self->n_children; i++) {
        s_child_t *child = self->children [i];
        if (child->kind == kind && child->pid) {
            char name [64];
            log_warn ("%s pid=%d did not stop in time: killing it",
                      s_describe (child, name, sizeof name), (int) child->pid);
            kill (child->pid, SIGKILL);
            int status;
            if (waitpid (child->pid, &status, 0) == child->pid)
                s_on_exit (self, child, status);
            child->pid = 0;
        }
    }
}

static void
s_shutdown (supervisor_t *self)
{
    log_info ("shutting down: stopping the gateway, then shards, then raft%s",
              self->cluster_enabled ? ", then p2p" : "");
    self->stopping = true;
    //  The gateway first so no new request arrives; raft after the shards so
    //  they can still reach it while they flush; p2p last, because a leaving
    //  leader's raft actor hands its leadership over through it.
    s_stop_kind (self, S_GATEWAY, S_STOP_GATEWAY_MS);
    s_stop_kind (self, S_SHARD, S_STOP_SHARDS_MS);
    s_stop_kind (self, S_RAFT, S_STOP_RAFT_MS);
    s_stop_kind (self, S_P2P, S_STOP_P2P_MS);
    s_reap (self);
    log_info ("stopped");
}

int
supervisor_run (supervisor_t *self)
{
    //  czmq's own SIGINT/SIGTERM handler would only set zsys_interrupted;
    //  the supervisor needs the signals on its self-pipe instead. Actors are
    //  exec'ed, so they get czmq's default handling back.
    zsys_handler_set (NULL);
    zsys_init ();
    if (s_install_signals ()) {
        log_error ("cannot create the signal pipe: %s", strerror (errno));
        return -SH_EIO;
    }
    char raft_endpoint [PATHS_MAX], meta_endpoint [PATHS_MAX];
    if (paths_raft_endpoint (self->storage, raft_endpoint)
    ||  paths_meta_endpoint (self->storage, meta_endpoint)) {
        log_error ("storage path too long for ipc endpoints: %s", self->storage);
        return -SH_EINVAL;
    }
    self->sub = zsock_new (ZMQ_SUB);
    self->dealer = zsock_new (ZMQ_DEALER);
    if (!self->sub || !self->dealer) {
        log_error ("cannot create sockets: %s", zmq_strerror (zmq_errno ()));
        return -SH_EIO;
    }
    zsock_set_linger (self->sub, 0);
    zsock_set_linger (self->dealer, 0);
    zsock_set_sndtimeo (self->dealer, 0);
    zsock_set_subscribe (self->sub, "");
    if (zsock_connect (self->sub, "%s", meta_endpoint)
    ||  zsock_connect (self->dealer, "%s", raft_endpoint)) {
        log_error ("cannot connect to the raft actor's endpoints: %s",
                   zmq_strerror (zmq_errno ()));
        return -SH_EIO;
    }
    log_info ("peer_id=%" PRIu64 " storage=%s", self->peer_id, self->storage);
    //  In table order: p2p first, so the raft actor's first messages to
    //  other peers find it listening.
    if (self->cluster_enabled)
        s_child_add (self, S_P2P, 0, 0);
    s_child_add (self, S_RAFT, 0, 0);
    s_child_add (self, S_GATEWAY, 0, 0);
    s_request_state (self);

    while (s_term_count == 0) {
        zmq_pollitem_t items [] = {
            { zsock_resolve (self->sub), 0, ZMQ_POLLIN, 0 },
            { zsock_resolve (self->dealer), 0, ZMQ_POLLIN, 0 },
            { NULL, s_wake_fds [0], ZMQ_POLLIN, 0 },
        };
        if (zmq_poll (items, 3, s_wait_ms (self)) < 0 && zmq_errno () != EINTR) {
            log_error ("poll failed: %s", zmq_strerror (zmq_errno ()));
            break;
        }
        s_drain_wake_pipe ();
        if (s_term_count)
            break;
        if (s_hup_count) {
            s_hup_count = 0;
            log_info ("SIGHUP: logs go to stderr, nothing to reopen");
        }
        s_read_sockets (self);
        s_reap (self);
        s_tend_children (self);
        if (!self->have_state && zclock_mono () >= self->next_get_at)
            s_request_state (self);
    }
    s_shutdown (self);
    return 0;
}
