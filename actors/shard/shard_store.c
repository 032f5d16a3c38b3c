/*  shard_store: one shard replica's points in SQLite (see shard_store.h).
    Owns the database handle, its prepared statements and the last committed
    seq; knows nothing of sockets or of the segment beyond its vector type.

    Durability: WAL mode with synchronous=NORMAL. A COMMIT appends the
    transaction to the -wal file with write(2) before returning, so once it
    returns the data is in the kernel's page cache and survives the process
    dying at any instant (kill -9, a crash, the OOM killer): that is the
    contract a reply to a write promises. What NORMAL gives up against FULL
    is an fsync per commit, so a power loss or kernel crash may lose the last
    few transactions; WAL still never leaves the database corrupt (the
    checkpoint fsyncs before it overwrites pages). The raft log, which must
    survive power loss to keep Raft's promises, uses FULL instead.

    Checkpoints. SQLite's automatic checkpoint runs inside the COMMIT that
    takes the WAL past 1000 pages: the committing thread copies the pages
    into the database and waits for two fsyncs, so the shard actor's loop
    stalls for as long (a shard move that streams 50 MB into a new replica
    stalled like this every 16 MB). Here the COMMIT only notes the WAL's
    size (a wal_hook, which replaces the automatic checkpoint), and a
    thread of this store with its own connection runs PASSIVE checkpoints
    past S_CKPT_PAGES, beside the writer (WAL lets a checkpoint run while a
    writer appends). A PASSIVE checkpoint never waits for the writer, so
    while writes keep coming it may not backfill the whole WAL and the WAL
    cannot restart from its beginning; past S_CKPT_INLINE_PAGES the writer
    checkpoints itself after its commit, as SQLite would, so the file stays
    bounded. What a checkpoint does not copy stays in the WAL, which
    recovery reads: a failed or skipped checkpoint loses nothing.
*/
#include "actors/shard/shard_store.h"
#include "common/err.h"
#include "common/jsonx.h"
#include "common/log.h"
#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  WAL pages after a commit that wake the checkpoint thread (SQLite's own
//  automatic checkpoint threshold), and that make the writer checkpoint
//  itself (the thread fell behind a steady stream of commits).
#define S_CKPT_PAGES 1000
#define S_CKPT_INLINE_PAGES 8000
//  Deferred writes queued past this many bytes make the actor wait.
#define S_DEFER_MAX_BYTES (64u << 20)
//  Deferred op kinds, and the payload length that stands for none.
#define S_OP_PUT 1
#define S_OP_DELETE 2
#define S_NO_PAYLOAD UINT32_MAX

typedef struct {
    uint8_t *data;      //  buffer
    size_t len;         //  bytes written
    size_t cap;         //  bytes allocated
} s_buf_t;

//  The checkpoint thread and what it shares with the writer.
typedef struct {
    sqlite3 *db;                //  its own connection (used by the thread only)
    pthread_t thread;           //  runs s_ckpt_main
    bool started;               //  the thread runs (join it)
    pthread_mutex_t mutex;      //  guards the three below
    pthread_cond_t cv;          //  signals due or stopping
    bool due;                   //  the WAL passed S_CKPT_PAGES: checkpoint
    bool stopping;              //  leave
    const char *path;           //  the store's path, for logs (the store's)
} s_ckpt_t;

//  One turn of deferred writes: ops are records of
//    u8 kind (S_OP_PUT, S_OP_DELETE), u8 key length, the key bytes, and for
//    a put: u64 version, u32 length + the vectors blob, u32 length + the
//    payload text (S_NO_PAYLOAD: none)
//  in host byte order (they never leave the process).
typedef struct s_turn_t {
    struct s_turn_t *next;      //  the next queued turn
    s_buf_t ops;                //  its writes, in order
    uint64_t seq;               //  the seq it commits
} s_turn_t;

//  The deferred writer thread and what it shares with the actor.
typedef struct {
    pthread_t thread;           //  runs s_defer_main
    bool started;               //  the thread runs (the actor's view)
    pthread_mutex_t mutex;      //  guards everything below but open
    pthread_cond_t cv;          //  work queued, room made, or stopping
    s_turn_t *head;             //  queued turns, oldest first
    s_turn_t *tail;             //  the newest
    size_t queued;              //  bytes of ops queued or being written
    bool stopping;              //  write what is queued, then leave
    int error;                  //  the first failure (sticky), 0 if none
    s_turn_t *open;             //  the turn being filled (actor only)
} s_defer_t;

struct _shard_store_t {
    sqlite3 *db;                //  the open database
    char *path;                 //  its file path, for logs
    sqlite3_stmt *begin;        //  BEGIN
    sqlite3_stmt *commit;       //  COMMIT
    sqlite3_stmt *rollback;     //  ROLLBACK
    sqlite3_stmt *put;          //  INSERT OR REPLACE INTO points
    sqlite3_stmt *del;          //  DELETE FROM points
    sqlite3_stmt *set_meta;     //  INSERT OR REPLACE INTO meta
    sqlite3_stmt *get_meta;     //  SELECT value FROM meta
    sqlite3_stmt *load;         //  SELECT every point in key order
    bool in_tx;                 //  between begin and commit/rollback
    uint64_t seq;               //  last committed seq
    uint64_t staged_seq;        //  seq set in the open transaction
    s_buf_t vectors;            //  put_point's vectors blob, reused point after point
    jsonx_buf_t payload;        //  put_point's payload text, reused likewise
    s_ckpt_t ckpt;              //  the checkpoint thread (see the top)
    int wal_pages;              //  WAL pages after the last commit (wal_hook)
    s_defer_t defer;            //  the deferred writer (see the header)
};

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shard_store writes floats as host bytes; add byte swapping here"
#endif

//  --- the vectors blob ------------------------------------------------------

static void
s_buf_put (s_buf_t *buf, const void *data, size_t len)
{
    if (buf->len + len > buf->cap) {
        size_t cap = buf->cap ? buf->cap * 2 : 64;
        while (cap < buf->len + len)
            cap *= 2;
        buf->data = (uint8_t *) realloc (buf->data, cap);
        assert (buf->data);
        buf->cap = cap;
    }
    if (len)
        memcpy (buf->data + buf->len, data, len);
    buf->len += len;
}

static void
s_buf_u8 (s_buf_t *buf, uint8_t v)
{
    s_buf_put (buf, &v, 1);
}

static void
s_buf_u16 (s_buf_t *buf, uint16_t v)
{
    uint8_t b [2] = { (uint8_t) v, (uint8_t) (v >> 8) };
    s_buf_put (buf, b, 2);
}

static void
s_buf_u32 (s_buf_t *buf, uint32_t v)
{
    uint8_t b [4] = { (uint8_t) v, (uint8_t) (v >> 8), (uint8_t) (v >> 16),
                      (uint8_t) (v >> 24) };
    s_buf_put (buf, b, 4);
}

//  Appends the encoding of vecs to buf; nothing when they cannot be
//  encoded (checked first).
static int
s_encode_vectors (s_buf_t *buf, const segment_vec_t *vecs, size_t n_vecs)
{
    if (n_vecs > UINT32_MAX)
        return -SH_EINVAL;
    for (size_t i = 0; i < n_vecs; i++)
        if (!vecs [i].name || strlen (vecs [i].name) > UINT16_MAX)
            return -SH_EINVAL;
    s_buf_u8 (buf, SHARD_STORE_VECTORS_VERSION);
    s_buf_u32 (buf, (uint32_t) n_vecs);
    for (size_t i = 0; i < n_vecs; i++) {
        const segment_vec_t *v = &vecs [i];
        size_t name_len = strlen (v->name);
        s_buf_u8 (buf, v->dense ? 0 : 1);
        s_buf_u16 (buf, (uint16_t) name_len);
        s_buf_put (buf, v->name, name_len);
        if (v->dense) {
            s_buf_u32 (buf, v->dim);
            s_buf_put (buf, v->dense, (size_t) v->dim * sizeof (float));
        }
        else {
            s_buf_u32 (buf, v->nnz);
            for (uint32_t k = 0; k < v->nnz; k++)
                s_buf_u32 (buf, v->indices [k]);
            s_buf_put (buf, v->values, (size_t) v->nnz * sizeof (float));
        }
    }
    return 0;
}

int
shard_store_encode_vectors (const segment_vec_t *vecs, size_t n_vecs, uint8_t **out,
                            size_t *len)
{
    *out = NULL;
    *len = 0;
    s_buf_t buf = { 0 };
    int rc = s_encode_vectors (&buf, vecs, n_vecs);
    if (rc) {
        free (buf.data);
        return rc;
    }
    *out = buf.data;
    *len = buf.len;
    return 0;
}

//  A bounded reader over the blob: every take checks what is left first.
typedef struct {
    const uint8_t *pos;     //  next byte
    const uint8_t *end;     //  one past the last byte
} s_cursor_t;

static size_t
s_left (const s_cursor_t *c)
{
    return (size_t) (c->end - c->pos);
}

static int
s_take_u8 (s_cursor_t *c, uint8_t *out)
{
    if (s_left (c) < 1)
        return -SH_EIO;
    *out = *c->pos++;
    return 0;
}

static int
s_take_u16 (s_cursor_t *c, uint16_t *out)
{
    if (s_left (c) < 2)
        return -SH_EIO;
    *out = (uint16_t) (c->pos [0] | c->pos [1] << 8);
    c->pos += 2;
    return 0;
}

static uint32_t
s_get_u32 (const uint8_t *p)
{
    return (uint32_t) p [0] | (uint32_t) p [1] << 8 | (uint32_t) p [2] << 16
         | (uint32_t) p [3] << 24;
}

static int
s_take_u32 (s_cursor_t *c, uint32_t *out)
{
    if (s_left (c) < 4)
        return -SH_EIO;
    *out = s_get_u32 (c->pos);
    c->pos += 4;
    return 0;
}

//  One vector's header as read from the blob; its numbers stay in the blob.
typedef struct {
    uint8_t kind;               //  0 dense, 1 sparse
    const uint8_t *name;        //  name bytes inside the blob
    uint16_t name_len;          //  their count
    uint32_t count;             //  dim or nnz
    const uint8_t *numbers;     //  dense: dim f32; sparse: nnz u32 then nnz f32
} s_rawvec_t;

static int
s_take_vec (s_cursor_t *c, s_rawvec_t *out)
{
    if (s_take_u8 (c, &out->kind) || out->kind > 1 || s_take_u16 (c, &out->name_len)
        || s_left (c) < out->name_len)
        return -SH_EIO;
    out->name = c->pos;
    c->pos += out->name_len;
    if (s_take_u32 (c, &out->count))
        return -SH_EIO;
    size_t words_per = out->kind == 0 ? 1 : 2;
    //  Division, not multiplication: count * 4 * words_per could overflow.
    if (s_left (c) / (4 * words_per) < out->count)
        return -SH_EIO;
    out->numbers = c->pos;
    c->pos += (size_t) out->count * 4 * words_per;
    return 0;
}

int
shard_store_decode_vectors (const uint8_t *data, size_t len, segment_vec_t **vecs,
                            size_t *n_vecs)
{
    *vecs = NULL;
    *n_vecs = 0;
    s_cursor_t c = { data, data + len };
    uint8_t version;
    uint32_t n;
    if (!data || s_take_u8 (&c, &version) || version != SHARD_STORE_VECTORS_VERSION
        || s_take_u32 (&c, &n))
        return -SH_EIO;
    //  Each vector takes at least 7 bytes (kind, name length, count): bound
    //  n by what is left before allocating anything for it.
    if (n > s_left (&c) / 7)
        return -SH_EIO;

    //  Pass 1: check the whole blob and size the one allocation.
    size_t words = 0, name_bytes = 0;
    s_cursor_t scan = c;
    for (uint32_t i = 0; i < n; i++) {
        s_rawvec_t raw;
        if (s_take_vec (&scan, &raw))
            return -SH_EIO;
        words += (size_t) raw.count * (raw.kind == 0 ? 1 : 2);
        name_bytes += (size_t) raw.name_len + 1;
        //  Names are C strings for segment_vec_t: an embedded NUL would
        //  silently rename the vector.
        if (memchr (raw.name, 0, raw.name_len))
            return -SH_EIO;
    }
    if (s_left (&scan) != 0)
        return -SH_EIO;             //  trailing bytes: not what we wrote

    //  Pass 2: fill [vecs][u32/f32 words][names]. The words start at a
    //  multiple of sizeof (segment_vec_t), so they are 4-byte aligned.
    size_t head = (size_t) n * sizeof (segment_vec_t);
    uint8_t *block = (uint8_t *) malloc (head + words * 4 + name_bytes + 1);
    assert (block);
    segment_vec_t *out = (segment_vec_t *) block;
    uint32_t *word = (uint32_t *) (block + head);
    char *name = (char *) (block + head + words * 4);
    for (uint32_t i = 0; i < n; i++) {
        s_rawvec_t raw;
        int rc = s_take_vec (&c, &raw);
        assert (rc == 0);           //  pass 1 accepted the same bytes
        memset (&out [i], 0, sizeof out [i]);
        memcpy (name, raw.name, raw.name_len);
        name [raw.name_len] = 0;
        out [i].name = name;
        name += raw.name_len + 1;
        if (raw.kind == 0) {
            memcpy (word, raw.numbers, (size_t) raw.count * 4);
            out [i].dense = (const float *) word;
            out [i].dim = raw.count;
            word += raw.count;
        }
        else {
            for (uint32_t k = 0; k < raw.count; k++)
                word [k] = s_get_u32 (raw.numbers + 4 * (size_t) k);
            out [i].indices = word;
            word += raw.count;
            memcpy (word, raw.numbers + 4 * (size_t) raw.count, (size_t) raw.count * 4);
            out [i].values = (const float *) word;
            out [i].nnz = raw.count;
            word += raw.count;
        }
    }
    *vecs = out;
    *n_vecs = n;
    return 0;
}

//  --- the database ----------------------------------------------------------

static int
s_fail (shard_store_t *self, const char *what)
{
    log_error ("shard_store: %s failed on %s: %s", what, self->path,
               sqlite3_errmsg (self->db));
    return -SH_EIO;
}

static int
s_exec (shard_store_t *self, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec (self->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_error ("shard_store: \"%s\" failed on %s: %s", sql, self->path,
                   msg ? msg : "?");
        sqlite3_free (msg);
        return -SH_EIO;
    }
    return 0;
}

//  Runs a statement that returns no rows, then resets it for reuse.
static int
s_step_done (shard_store_t *self, sqlite3_stmt *stmt, const char *what)
{
    int rc = sqlite3_step (stmt);
    sqlite3_reset (stmt);
    sqlite3_clear_bindings (stmt);
    return rc == SQLITE_DONE ? 0 : s_fail (self, what);
}

//  0 and *value (found is false when the row is absent), or -SH_EIO.
static int
s_get_meta (shard_store_t *self, const char *name, int64_t *value, bool *found)
{
    *found = false;
    sqlite3_bind_text (self->get_meta, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step (self->get_meta);
    if (rc == SQLITE_ROW) {
        *found = true;
        *value = sqlite3_column_int64 (self->get_meta, 0);
    }
    sqlite3_reset (self->get_meta);
    sqlite3_clear_bindings (self->get_meta);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : s_fail (self, "reading meta");
}

static int
s_set_meta (shard_store_t *self, const char *name, int64_t value)
{
    sqlite3_bind_text (self->set_meta, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64 (self->set_meta, 2, value);
    return s_step_done (self, self->set_meta, "writing meta");
}

static int
s_prepare (shard_store_t *self, sqlite3_stmt **stmt, const char *sql)
{
    if (sqlite3_prepare_v3 (self->db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL)
        != SQLITE_OK)
        return s_fail (self, sql);
    return 0;
}

//  --- checkpoints (see the top) ----------------------------------------------

//  sqlite3_wal_hook: runs in the writer's COMMIT, with the WAL's size.
static int
s_wal_hook (void *arg, sqlite3 *db, const char *name, int pages)
{
    (void) db;
    (void) name;
    shard_store_t *self = (shard_store_t *) arg;
    self->wal_pages = pages;
    if (pages >= S_CKPT_PAGES && self->ckpt.started) {
        pthread_mutex_lock (&self->ckpt.mutex);
        self->ckpt.due = true;
        pthread_cond_signal (&self->ckpt.cv);
        pthread_mutex_unlock (&self->ckpt.mutex);
    }
    return SQLITE_OK;
}

static void *
s_ckpt_main (void *arg)
{
    s_ckpt_t *ckpt = (s_ckpt_t *) arg;
    pthread_mutex_lock (&ckpt->mutex);
    while (!ckpt->stopping) {
        if (!ckpt->due) {
            pthread_cond_wait (&ckpt->cv, &ckpt->mutex);
            continue;
        }
        ckpt->due = false;
        pthread_mutex_unlock (&ckpt->mutex);
        int log_pages = 0, copied = 0;
        int rc = sqlite3_wal_checkpoint_v2 (ckpt->db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                            &log_pages, &copied);
        //  BUSY: the writer checkpoints itself right now; the next commit
        //  past the threshold wakes us again.
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn ("shard_store: a checkpoint of %s failed: %s (the WAL keeps the "
                      "data)", ckpt->path, sqlite3_errmsg (ckpt->db));
        pthread_mutex_lock (&ckpt->mutex);
    }
    pthread_mutex_unlock (&ckpt->mutex);
    return NULL;
}

//  Opens the thread's connection and starts it; without it (no thread, or
//  the file cannot be opened twice) SQLite's automatic checkpoint stays.
static void
s_ckpt_start (shard_store_t *self)
{
    s_ckpt_t *ckpt = &self->ckpt;
    ckpt->path = self->path;
    if (sqlite3_open_v2 (self->path, &ckpt->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                         NULL) != SQLITE_OK
        || sqlite3_busy_timeout (ckpt->db, 5000) != SQLITE_OK
        || sqlite3_exec (ckpt->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL)
               != SQLITE_OK) {
        log_warn ("shard_store: no checkpoint thread for %s (%s): commits checkpoint",
                  self->path, ckpt->db ? sqlite3_errmsg (ckpt->db) : "cannot open");
        sqlite3_close (ckpt->db);
        ckpt->db = NULL;
        return;
    }
    pthread_mutex_init (&ckpt->mutex, NULL);
    pthread_cond_init (&ckpt->cv, NULL);
    if (pthread_create (&ckpt->thread, NULL, s_ckpt_main, ckpt) != 0) {
        log_warn ("shard_store: no checkpoint thread for %s: commits checkpoint",
                  self->path);
        pthread_mutex_destroy (&ckpt->mutex);
        pthread_cond_destroy (&ckpt->cv);
        sqlite3_close (ckpt->db);
        ckpt->db = NULL;
        return;
    }
    ckpt->started = true;
    sqlite3_wal_hook (self->db, s_wal_hook, self);
}

static void
s_ckpt_stop (shard_store_t *self)
{
    s_ckpt_t *ckpt = &self->ckpt;
    if (!ckpt->started)
        return;
    sqlite3_wal_hook (self->db, NULL, NULL);
    pthread_mutex_lock (&ckpt->mutex);
    ckpt->stopping = true;
    pthread_cond_signal (&ckpt->cv);
    pthread_mutex_unlock (&ckpt->mutex);
    pthread_join (ckpt->thread, NULL);
    pthread_mutex_destroy (&ckpt->mutex);
    pthread_cond_destroy (&ckpt->cv);
    sqlite3_close (ckpt->db);
    ckpt->db = NULL;
    ckpt->started = false;
}

static int
s_setup (shard_store_t *self)
{
    //  A shard has one writer (its actor); a busy timeout only covers a
    //  checkpoint by a tool reading the file alongside.
    sqlite3_busy_timeout (self->db, 5000);
    //  16 KiB pages and a WITHOUT ROWID table clustered on the point key: a
    //  point is one b-tree entry, not a row plus a key index, and rows of a
    //  few hundred bytes (a 128-d vector) pack several to a page. Together
    //  they halve the cost of committing a 1,000-point batch. page_size only
    //  takes effect on a new file; older files keep working as they are.
    if (s_exec (self, "PRAGMA page_size=16384"))
        return -SH_EIO;
    //  journal_mode answers with the mode it got; anything but "wal" (a
    //  read-only dir, an odd filesystem) would silently weaken durability.
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2 (self->db, "PRAGMA journal_mode=WAL", -1, &stmt, NULL)
        != SQLITE_OK)
        return s_fail (self, "PRAGMA journal_mode");
    int rc = sqlite3_step (stmt);
    const char *mode = rc == SQLITE_ROW ? (const char *) sqlite3_column_text (stmt, 0) : NULL;
    bool wal = mode && strcmp (mode, "wal") == 0;
    sqlite3_finalize (stmt);
    if (!wal) {
        log_error ("shard_store: cannot put %s in WAL mode: %s", self->path,
                   sqlite3_errmsg (self->db));
        return -SH_EIO;
    }
    if (s_exec (self, "PRAGMA synchronous=NORMAL")
        || s_exec (self, "CREATE TABLE IF NOT EXISTS points (key BLOB PRIMARY KEY, "
                         "version INTEGER NOT NULL, vectors BLOB, payload TEXT) "
                         "WITHOUT ROWID")
        || s_exec (self, "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, "
                         "value INTEGER NOT NULL)"))
        return -SH_EIO;
    if (s_prepare (self, &self->begin, "BEGIN")
        || s_prepare (self, &self->commit, "COMMIT")
        || s_prepare (self, &self->rollback, "ROLLBACK")
        || s_prepare (self, &self->put,
                      "INSERT OR REPLACE INTO points (key, version, vectors, payload) "
                      "VALUES (?1, ?2, ?3, ?4)")
        || s_prepare (self, &self->del, "DELETE FROM points WHERE key = ?1")
        || s_prepare (self, &self->set_meta,
                      "INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)")
        || s_prepare (self, &self->get_meta, "SELECT value FROM meta WHERE name = ?1")
        || s_prepare (self, &self->load,
                      "SELECT key, version, vectors, payload FROM points ORDER BY key"))
        return -SH_EIO;

    int64_t format = 0, seq = 0;
    bool found = false;
    if (s_get_meta (self, "format", &format, &found))
        return -SH_EIO;
    if (!found) {
        if (s_set_meta (self, "format", SHARD_STORE_FORMAT))
            return -SH_EIO;
    }
    else
    if (format != SHARD_STORE_FORMAT) {
        log_error ("shard_store: %s has format %" PRId64 ", this build reads %d",
                   self->path, format, SHARD_STORE_FORMAT);
        return -SH_EIO;
    }
    if (s_get_meta (self, "seq", &seq, &found))
        return -SH_EIO;
    if (seq < 0) {
        log_error ("shard_store: %s has a negative seq", self->path);
        return -SH_EIO;
    }
    self->seq = (uint64_t) seq;
    return 0;
}

int
shard_store_open (const char *dir, shard_store_t **out)
{
    *out = NULL;
    shard_store_t *self = (shard_store_t *) calloc (1, sizeof *self);
    assert (self);
    size_t len = strlen (dir) + sizeof (SHARD_STORE_FILE) + 2;
    self->path = (char *) malloc (len);
    assert (self->path);
    snprintf (self->path, len, "%s/%s", dir, SHARD_STORE_FILE);
    int rc = sqlite3_open_v2 (self->path, &self->db,
                              SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                                  | SQLITE_OPEN_NOMUTEX,
                              NULL);
    if (rc != SQLITE_OK) {
        log_error ("shard_store: cannot open %s: %s", self->path,
                   self->db ? sqlite3_errmsg (self->db) : sqlite3_errstr (rc));
        shard_store_destroy (&self);
        return -SH_EIO;
    }
    if (s_setup (self)) {
        shard_store_destroy (&self);
        return -SH_EIO;
    }
    s_ckpt_start (self);
    *out = self;
    return 0;
}

void
shard_store_destroy (shard_store_t **self_p)
{
    assert (self_p);
    shard_store_t *self = *self_p;
    if (!self)
        return;
    //  What was deferred is written before the handle goes.
    shard_store_defer_sync (self);
    if (self->in_tx)
        shard_store_rollback (self);
    s_ckpt_stop (self);
    sqlite3_finalize (self->begin);
    sqlite3_finalize (self->commit);
    sqlite3_finalize (self->rollback);
    sqlite3_finalize (self->put);
    sqlite3_finalize (self->del);
    sqlite3_finalize (self->set_meta);
    sqlite3_finalize (self->get_meta);
    sqlite3_finalize (self->load);
    if (self->db && sqlite3_close (self->db) != SQLITE_OK)
        log_error ("shard_store: closing %s: %s", self->path, sqlite3_errmsg (self->db));
    free (self->path);
    free (self->vectors.data);
    free (self->payload.data);
    free (self);
    *self_p = NULL;
}

uint64_t
shard_store_seq (const shard_store_t *self)
{
    //  The deferred writer moves it on its thread.
    return __atomic_load_n (&self->seq, __ATOMIC_ACQUIRE);
}

static int
s_begin (shard_store_t *self)
{
    assert (!self->in_tx);
    if (s_step_done (self, self->begin, "BEGIN"))
        return -SH_EIO;
    self->in_tx = true;
    self->staged_seq = self->seq;
    return 0;
}

int
shard_store_begin (shard_store_t *self)
{
    assert (!self->defer.started);
    return s_begin (self);
}

//  Checks a point's version and payload and writes the payload's text into
//  self->payload (a buffer kept from point to point: a batch of thousands
//  of points costs no allocation per point). The text is jsonx's (what
//  json_dumps writes, with reals exact but short when they can be, and no
//  printf per number), read back by jsonx_loadb.
static int
s_encode_payload (shard_store_t *self, uint64_t version, const json_t *payload)
{
    if (version > INT64_MAX || (payload && !json_is_object (payload)))
        return -SH_EINVAL;
    self->payload.len = 0;
    if (payload)
        jsonx_write_exact (&self->payload, payload);
    return 0;
}

//  INSERT OR REPLACE of one encoded point (payload NULL: none).
static int
s_put_row (shard_store_t *self, const uint8_t *key, size_t key_len, uint64_t version,
           const void *vectors, size_t vectors_len, const char *payload, size_t payload_len)
{
    sqlite3_bind_blob (self->put, 1, key, (int) key_len, SQLITE_STATIC);
    sqlite3_bind_int64 (self->put, 2, (sqlite3_int64) version);
    sqlite3_bind_blob64 (self->put, 3, vectors_len ? vectors : (const void *) "", vectors_len,
                         SQLITE_STATIC);
    if (payload)
        sqlite3_bind_text64 (self->put, 4, payload, payload_len, SQLITE_STATIC, SQLITE_UTF8);
    else
        sqlite3_bind_null (self->put, 4);
    return s_step_done (self, self->put, "writing a point");
}

int
shard_store_put_point (shard_store_t *self, const pointid_t *id, uint64_t version,
                       const segment_vec_t *vecs, size_t n_vecs, const json_t *payload)
{
    assert (self->in_tx && !self->defer.started);
    uint8_t key [POINTID_KEY_SIZE];
    size_t key_len = pointid_key (id, key);
    self->vectors.len = 0;
    int rc = s_encode_payload (self, version, payload);
    if (rc == 0)
        rc = s_encode_vectors (&self->vectors, vecs, n_vecs);
    if (rc)
        return rc;
    return s_put_row (self, key, key_len, version, self->vectors.data, self->vectors.len,
                      payload ? self->payload.data : NULL, self->payload.len);
}

int
shard_store_delete_point (shard_store_t *self, const pointid_t *id)
{
    assert (self->in_tx);
    uint8_t key [POINTID_KEY_SIZE];
    size_t key_len = pointid_key (id, key);
    sqlite3_bind_blob (self->del, 1, key, (int) key_len, SQLITE_STATIC);
    return s_step_done (self, self->del, "deleting a point");
}

int
shard_store_set_seq (shard_store_t *self, uint64_t seq)
{
    assert (self->in_tx);
    if (seq > INT64_MAX)
        return -SH_EINVAL;
    if (s_set_meta (self, "seq", (int64_t) seq))
        return -SH_EIO;
    self->staged_seq = seq;
    return 0;
}

int
shard_store_commit (shard_store_t *self)
{
    assert (self->in_tx);
    if (s_step_done (self, self->commit, "COMMIT"))
        return -SH_EIO;
    self->in_tx = false;
    __atomic_store_n (&self->seq, self->staged_seq, __ATOMIC_RELEASE);
    if (self->ckpt.started && self->wal_pages >= S_CKPT_INLINE_PAGES) {
        //  The thread could not keep up (see the top): checkpoint here,
        //  with no write in between, so the WAL restarts at the next one.
        //  The commit is done whatever this says.
        int rc = sqlite3_wal_checkpoint_v2 (self->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL,
                                            NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn ("shard_store: a checkpoint of %s failed: %s (the WAL keeps the data)",
                      self->path, sqlite3_errmsg (self->db));
        self->wal_pages = 0;
    }
    return 0;
}

void
shard_store_rollback (shard_store_t *self)
{
    if (!self || !self->in_tx)
        return;
    //  After some errors SQLite has already rolled back by itself; then
    //  ROLLBACK fails with "no transaction is active", which is fine.
    if (!sqlite3_get_autocommit (self->db))
        s_step_done (self, self->rollback, "ROLLBACK");
    self->in_tx = false;
}

//  --- deferred writes ---------------------------------------------------------

static void
s_turn_destroy (s_turn_t **turn_p)
{
    if (*turn_p) {
        free ((*turn_p)->ops.data);
        free (*turn_p);
        *turn_p = NULL;
    }
}

//  Writes turns (a list, taken) in one transaction. 0 or -SH_EIO.
static int
s_defer_write (shard_store_t *self, s_turn_t *turns)
{
    int rc = s_begin (self);
    uint64_t seq = 0;
    for (s_turn_t *turn = turns; turn && rc == 0; turn = turn->next) {
        const uint8_t *at = turn->ops.data, *end = at + turn->ops.len;
        while (at < end && rc == 0) {
            uint8_t kind = at [0], key_len = at [1];
            const uint8_t *key = at + 2;
            at = key + key_len;
            if (kind == S_OP_DELETE) {
                sqlite3_bind_blob (self->del, 1, key, (int) key_len, SQLITE_STATIC);
                rc = s_step_done (self, self->del, "deleting a point");
                continue;
            }
            uint64_t version;
            uint32_t vectors_len, payload_len;
            memcpy (&version, at, 8);
            memcpy (&vectors_len, at + 8, 4);
            const uint8_t *vectors = at + 12;
            memcpy (&payload_len, vectors + vectors_len, 4);
            const char *payload = (const char *) vectors + vectors_len + 4;
            at = (const uint8_t *) payload + (payload_len == S_NO_PAYLOAD ? 0 : payload_len);
            rc = s_put_row (self, key, key_len, version, vectors, vectors_len,
                            payload_len == S_NO_PAYLOAD ? NULL : payload,
                            payload_len == S_NO_PAYLOAD ? 0 : payload_len);
        }
        seq = turn->seq;
    }
    if (rc == 0)
        rc = shard_store_set_seq (self, seq);
    if (rc == 0)
        rc = shard_store_commit (self);
    if (rc)
        shard_store_rollback (self);
    return rc ? -SH_EIO : 0;
}

//  The writer: takes every queued turn, writes them as one transaction,
//  until stopped with nothing queued. After a failure it drops what comes.
static void *
s_defer_main (void *arg)
{
    shard_store_t *self = (shard_store_t *) arg;
    s_defer_t *d = &self->defer;
    pthread_mutex_lock (&d->mutex);
    for (;;) {
        while (!d->head && !d->stopping)
            pthread_cond_wait (&d->cv, &d->mutex);
        if (!d->head)
            break;
        s_turn_t *turns = d->head;
        d->head = d->tail = NULL;
        bool failed = d->error != 0;
        pthread_mutex_unlock (&d->mutex);
        int rc = failed ? 0 : s_defer_write (self, turns);
        size_t bytes = 0;
        while (turns) {
            s_turn_t *next = turns->next;
            bytes += turns->ops.len;
            s_turn_destroy (&turns);
            turns = next;
        }
        pthread_mutex_lock (&d->mutex);
        if (rc && !d->error)
            d->error = rc;
        d->queued -= bytes;
        pthread_cond_broadcast (&d->cv);
    }
    pthread_mutex_unlock (&d->mutex);
    return NULL;
}

//  The turn being filled, the writer started first if need be. NULL if the
//  thread cannot start.
static s_turn_t *
s_defer_open (shard_store_t *self)
{
    s_defer_t *d = &self->defer;
    if (!d->started) {
        //  (Once it runs, the transaction is the writer's.)
        assert (!self->in_tx);
        pthread_mutex_init (&d->mutex, NULL);
        pthread_cond_init (&d->cv, NULL);
        d->stopping = false;
        d->error = 0;
        if (pthread_create (&d->thread, NULL, s_defer_main, self) != 0) {
            log_error ("shard_store: %s: cannot start the deferred writer", self->path);
            pthread_mutex_destroy (&d->mutex);
            pthread_cond_destroy (&d->cv);
            return NULL;
        }
        d->started = true;
    }
    if (!d->open) {
        d->open = (s_turn_t *) calloc (1, sizeof (s_turn_t));
        assert (d->open);
    }
    return d->open;
}

static void
s_defer_key (s_turn_t *turn, uint8_t kind, const pointid_t *id)
{
    uint8_t key [POINTID_KEY_SIZE];
    size_t key_len = pointid_key (id, key);
    s_buf_u8 (&turn->ops, kind);
    s_buf_u8 (&turn->ops, (uint8_t) key_len);
    s_buf_put (&turn->ops, key, key_len);
}

int
shard_store_defer_put (shard_store_t *self, const pointid_t *id, uint64_t version,
                       const segment_vec_t *vecs, size_t n_vecs, const json_t *payload)
{
    s_turn_t *turn = s_defer_open (self);
    if (!turn)
        return -SH_EIO;
    int rc = s_encode_payload (self, version, payload);
    if (rc)
        return rc;
    if (self->payload.len >= S_NO_PAYLOAD)
        return -SH_ETOOBIG;
    //  The vectors are encoded in place, their length written after.
    size_t mark = turn->ops.len;
    s_defer_key (turn, S_OP_PUT, id);
    s_buf_put (&turn->ops, &version, 8);
    size_t at = turn->ops.len;
    uint32_t vectors_len = 0;
    s_buf_put (&turn->ops, &vectors_len, 4);
    rc = s_encode_vectors (&turn->ops, vecs, n_vecs);
    size_t len = turn->ops.len - at - 4;
    if (rc || len >= S_NO_PAYLOAD) {
        turn->ops.len = mark;
        return rc ? rc : -SH_ETOOBIG;
    }
    vectors_len = (uint32_t) len;
    memcpy (turn->ops.data + at, &vectors_len, 4);
    uint32_t payload_len = payload ? (uint32_t) self->payload.len : S_NO_PAYLOAD;
    s_buf_put (&turn->ops, &payload_len, 4);
    if (payload)
        s_buf_put (&turn->ops, self->payload.data, self->payload.len);
    return 0;
}

int
shard_store_defer_delete (shard_store_t *self, const pointid_t *id)
{
    s_turn_t *turn = s_defer_open (self);
    if (!turn)
        return -SH_EIO;
    s_defer_key (turn, S_OP_DELETE, id);
    return 0;
}

int
shard_store_defer_turn (shard_store_t *self, uint64_t seq)
{
    if (seq > INT64_MAX)
        return -SH_EINVAL;
    s_turn_t *turn = s_defer_open (self);
    if (!turn)
        return -SH_EIO;
    s_defer_t *d = &self->defer;
    d->open = NULL;
    turn->seq = seq;
    pthread_mutex_lock (&d->mutex);
    if (d->tail)
        d->tail->next = turn;
    else
        d->head = turn;
    d->tail = turn;
    d->queued += turn->ops.len;
    pthread_cond_broadcast (&d->cv);
    while (d->queued > S_DEFER_MAX_BYTES && !d->error)
        pthread_cond_wait (&d->cv, &d->mutex);
    int rc = d->error;
    pthread_mutex_unlock (&d->mutex);
    return rc;
}

bool
shard_store_deferring (const shard_store_t *self)
{
    return self->defer.started;
}

int
shard_store_defer_sync (shard_store_t *self)
{
    s_defer_t *d = &self->defer;
    if (!d->started)
        return 0;
    //  A turn filled but not handed over is not written (as a transaction
    //  that is not committed).
    s_turn_destroy (&d->open);
    pthread_mutex_lock (&d->mutex);
    d->stopping = true;
    pthread_cond_broadcast (&d->cv);
    pthread_mutex_unlock (&d->mutex);
    pthread_join (d->thread, NULL);
    int rc = d->error;
    pthread_mutex_destroy (&d->mutex);
    pthread_cond_destroy (&d->cv);
    d->started = false;
    d->queued = 0;
    return rc;
}

//  Decodes one row of the load query; -SH_EIO (logged) if it is corrupt.
static int
s_decode_row (shard_store_t *self, sqlite3_stmt *stmt, shard_store_point_t *point,
              segment_vec_t **vecs)
{
    const uint8_t *key = (const uint8_t *) sqlite3_column_blob (stmt, 0);
    size_t key_len = (size_t) sqlite3_column_bytes (stmt, 0);
    if (!key || pointid_from_key (key, key_len, &point->id)) {
        log_error ("shard_store: %s: skipping a row with a bad key (%zu bytes)",
                   self->path, key_len);
        return -SH_EIO;
    }
    char idtext [POINTID_TEXT_SIZE];
    pointid_format (&point->id, idtext);
    //  Type first: reading the value may convert it.
    bool is_int = sqlite3_column_type (stmt, 1) == SQLITE_INTEGER;
    sqlite3_int64 version = sqlite3_column_int64 (stmt, 1);
    if (!is_int || version < 0) {
        log_error ("shard_store: %s: skipping point %s: bad version", self->path, idtext);
        return -SH_EIO;
    }
    point->version = (uint64_t) version;
    const uint8_t *blob = (const uint8_t *) sqlite3_column_blob (stmt, 2);
    size_t blob_len = (size_t) sqlite3_column_bytes (stmt, 2);
    if (shard_store_decode_vectors (blob, blob_len, vecs, &point->n_vecs)) {
        log_error ("shard_store: %s: skipping point %s: corrupt vectors blob (%zu bytes)",
                   self->path, idtext, blob_len);
        return -SH_EIO;
    }
    point->vecs = *vecs;
    point->payload = NULL;
    if (sqlite3_column_type (stmt, 3) != SQLITE_NULL) {
        const char *text = (const char *) sqlite3_column_text (stmt, 3);
        size_t text_len = (size_t) sqlite3_column_bytes (stmt, 3);
        //  jsonx, as the gateway and envelopes parse: it takes every payload
        //  they took (strings holding \u0000 included), and loads faster.
        char error [256];
        point->payload = text ? jsonx_loadb (text, text_len, 0, error, sizeof error) : NULL;
        if (!json_is_object (point->payload)) {
            log_error ("shard_store: %s: skipping point %s: payload is not a JSON object",
                       self->path, idtext);
            json_decref (point->payload);
            point->payload = NULL;
            free (*vecs);
            *vecs = NULL;
            return -SH_EIO;
        }
    }
    return 0;
}

int
shard_store_load (shard_store_t *self, shard_store_load_fn *fn, void *arg,
                  size_t *n_corrupt)
{
    size_t corrupt = 0;
    int rc = 0;
    while (true) {
        int step = sqlite3_step (self->load);
        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW) {
            rc = s_fail (self, "loading points");
            break;
        }
        shard_store_point_t point;
        segment_vec_t *vecs = NULL;
        if (s_decode_row (self, self->load, &point, &vecs)) {
            corrupt++;
            continue;
        }
        rc = fn (&point, arg);
        json_decref (point.payload);
        free (vecs);
        if (rc)
            break;
    }
    sqlite3_reset (self->load);
    if (n_corrupt)
        *n_corrupt = corrupt;
    return rc;
}
