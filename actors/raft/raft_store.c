/*  raft_store: Raft's hard state, log and snapshot in SQLite (see
    raft_store.h). Owns the database handle, its prepared statements and
    the buffers the last load handed out.

    Ids and indexes are u64 and SQLite integers are i64: values are stored
    as their two's complement bit pattern and read back the same way, so a
    random 64-bit peer id in "vote" survives unchanged.
*/
#include "actors/raft/raft_store.h"
#include "common/err.h"
#include "common/log.h"
#include <assert.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_SCHEMA_VERSION 2

struct _raft_store_t {
    sqlite3 *db;                    //  consensus.db
    sqlite3_stmt *put_hard_state;   //  upsert of the one hard_state row
    sqlite3_stmt *delete_from;      //  DELETE entries with idx >= ?
    sqlite3_stmt *delete_upto;      //  DELETE entries with idx <= ?
    sqlite3_stmt *insert_entry;     //  INSERT one entry
    sqlite3_stmt *put_snapshot;     //  upsert of the one snapshot row
    sqlite3_stmt *clear_conf;       //  DELETE every snapshot_conf row
    sqlite3_stmt *insert_conf;      //  INSERT one snapshot_conf row
    rcore_entry_t *loaded;          //  entries handed out by the last load
    size_t n_loaded;
    uint8_t *loaded_snapshot;       //  snapshot bytes handed out by the last load
    uint64_t *loaded_voters;        //  snapshot voters handed out by the last load
    uint64_t *loaded_learners;      //  snapshot learners handed out by the last load
};

static const char *s_schema =
    "CREATE TABLE IF NOT EXISTS hard_state ("
    "  id INTEGER PRIMARY KEY CHECK (id = 0),"
    "  term INTEGER NOT NULL, vote INTEGER NOT NULL, \"commit\" INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS entries ("
    "  idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, type INTEGER NOT NULL, data BLOB);"
    "CREATE TABLE IF NOT EXISTS snapshot ("
    "  id INTEGER PRIMARY KEY CHECK (id = 0),"
    "  idx INTEGER NOT NULL, term INTEGER NOT NULL, data BLOB);"
    "CREATE TABLE IF NOT EXISTS snapshot_conf ("
    "  peer INTEGER PRIMARY KEY, learner INTEGER NOT NULL);";

static int
s_cmp_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y ? 1 : 0;
}

static int
s_fail (raft_store_t *self, const char *what)
{
    log_error ("raft_store: %s: %s", what, self->db ? sqlite3_errmsg (self->db) : "no db");
    return -SH_EIO;
}

static int
s_exec (raft_store_t *self, const char *sql)
{
    char *error = NULL;
    if (sqlite3_exec (self->db, sql, NULL, NULL, &error) != SQLITE_OK) {
        log_error ("raft_store: %s: %s", sql, error ? error : "?");
        sqlite3_free (error);
        return -SH_EIO;
    }
    return 0;
}

static int
s_prepare (raft_store_t *self, const char *sql, sqlite3_stmt **stmt)
{
    if (sqlite3_prepare_v2 (self->db, sql, -1, stmt, NULL) != SQLITE_OK)
        return s_fail (self, sql);
    return 0;
}

//  Runs a prepared statement that returns no rows, then resets it.
static int
s_step_done (raft_store_t *self, sqlite3_stmt *stmt, const char *what)
{
    int rc = sqlite3_step (stmt);
    sqlite3_reset (stmt);
    sqlite3_clear_bindings (stmt);
    if (rc != SQLITE_DONE)
        return s_fail (self, what);
    return 0;
}

static void
s_free_loaded (raft_store_t *self)
{
    for (size_t i = 0; i < self->n_loaded; i++)
        free (self->loaded [i].data);
    free (self->loaded);
    self->loaded = NULL;
    self->n_loaded = 0;
    free (self->loaded_snapshot);
    self->loaded_snapshot = NULL;
    free (self->loaded_voters);
    self->loaded_voters = NULL;
    free (self->loaded_learners);
    self->loaded_learners = NULL;
}

int
raft_store_open (const char *dir, raft_store_t **out)
{
    assert (dir && out);
    *out = NULL;
    char path [4096];
    if ((size_t) snprintf (path, sizeof path, "%s/consensus.db", dir) >= sizeof path)
        return -SH_EINVAL;
    raft_store_t *self = (raft_store_t *) calloc (1, sizeof (raft_store_t));
    assert (self);
    if (sqlite3_open_v2 (path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL)
        != SQLITE_OK) {
        s_fail (self, path);
        raft_store_destroy (&self);
        return -SH_EIO;
    }
    sqlite3_busy_timeout (self->db, 5000);
    //  WAL + FULL: a commit is on disk (fsync of the WAL) when it returns.
    int rc = s_exec (self, "PRAGMA journal_mode = WAL;");
    if (!rc)
        rc = s_exec (self, "PRAGMA synchronous = FULL;");
    if (!rc)
        rc = s_exec (self, s_schema);
    if (!rc) {
        char sql [64];
        snprintf (sql, sizeof sql, "PRAGMA user_version = %d;", S_SCHEMA_VERSION);
        rc = s_exec (self, sql);
    }
    if (!rc)
        rc = s_prepare (self,
                        "INSERT INTO hard_state (id, term, vote, \"commit\")"
                        " VALUES (0, ?, ?, ?)"
                        " ON CONFLICT (id) DO UPDATE SET term = excluded.term,"
                        " vote = excluded.vote, \"commit\" = excluded.\"commit\"",
                        &self->put_hard_state);
    if (!rc)
        rc = s_prepare (self, "DELETE FROM entries WHERE idx >= ?", &self->delete_from);
    if (!rc)
        rc = s_prepare (self, "DELETE FROM entries WHERE idx <= ?", &self->delete_upto);
    if (!rc)
        rc = s_prepare (self,
                        "INSERT INTO entries (idx, term, type, data) VALUES (?, ?, ?, ?)",
                        &self->insert_entry);
    if (!rc)
        rc = s_prepare (self,
                        "INSERT INTO snapshot (id, idx, term, data) VALUES (0, ?, ?, ?)"
                        " ON CONFLICT (id) DO UPDATE SET idx = excluded.idx,"
                        " term = excluded.term, data = excluded.data",
                        &self->put_snapshot);
    if (!rc)
        rc = s_prepare (self, "DELETE FROM snapshot_conf", &self->clear_conf);
    if (!rc)
        rc = s_prepare (self, "INSERT INTO snapshot_conf (peer, learner) VALUES (?, ?)",
                        &self->insert_conf);
    if (rc) {
        raft_store_destroy (&self);
        return rc;
    }
    *out = self;
    return 0;
}

void
raft_store_destroy (raft_store_t **self_p)
{
    assert (self_p);
    raft_store_t *self = *self_p;
    if (!self)
        return;
    sqlite3_finalize (self->put_hard_state);
    sqlite3_finalize (self->delete_from);
    sqlite3_finalize (self->delete_upto);
    sqlite3_finalize (self->insert_entry);
    sqlite3_finalize (self->put_snapshot);
    sqlite3_finalize (self->clear_conf);
    sqlite3_finalize (self->insert_conf);
    if (self->db)
        sqlite3_close (self->db);
    s_free_loaded (self);
    free (self);
    *self_p = NULL;
}

static int
s_begin (raft_store_t *self)
{
    return s_exec (self, "BEGIN IMMEDIATE;");
}

static int
s_end (raft_store_t *self, int rc)
{
    if (rc) {
        s_exec (self, "ROLLBACK;");
        return rc;
    }
    return s_exec (self, "COMMIT;");
}

static int
s_put_conf_ids (raft_store_t *self, const uint64_t *ids, size_t n, int learner)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        sqlite3_bind_int64 (self->insert_conf, 1, (sqlite3_int64) ids [i]);
        sqlite3_bind_int (self->insert_conf, 2, learner);
        rc = s_step_done (self, self->insert_conf, "insert snapshot conf");
    }
    return rc;
}

//  Writes the one snapshot row and its configuration (inside a transaction).
static int
s_put_snapshot (raft_store_t *self, uint64_t index, uint64_t term, const void *data,
                size_t len, const rcore_conf_t *conf)
{
    if (len > (size_t) INT32_MAX)
        return -SH_ETOOBIG;
    sqlite3_bind_int64 (self->put_snapshot, 1, (sqlite3_int64) index);
    sqlite3_bind_int64 (self->put_snapshot, 2, (sqlite3_int64) term);
    sqlite3_bind_blob (self->put_snapshot, 3, len ? data : "", (int) len, SQLITE_STATIC);
    int rc = s_step_done (self, self->put_snapshot, "put snapshot");
    if (!rc)
        rc = s_step_done (self, self->clear_conf, "clear snapshot conf");
    if (!rc && conf)
        rc = s_put_conf_ids (self, conf->voters, conf->n_voters, 0);
    if (!rc && conf)
        rc = s_put_conf_ids (self, conf->learners, conf->n_learners, 1);
    return rc;
}

//  The term of the stored entry at index, or of the stored snapshot if it
//  ends there; 0 if neither.
static int
s_stored_term (raft_store_t *self, uint64_t index, uint64_t *term)
{
    *term = 0;
    const char *sql [2] = { "SELECT term FROM entries WHERE idx = ?",
                            "SELECT term FROM snapshot WHERE id = 0 AND idx = ?" };
    for (int i = 0; i < 2 && *term == 0; i++) {
        sqlite3_stmt *stmt = NULL;
        int rc = s_prepare (self, sql [i], &stmt);
        if (rc)
            return rc;
        sqlite3_bind_int64 (stmt, 1, (sqlite3_int64) index);
        rc = sqlite3_step (stmt);
        if (rc == SQLITE_ROW)
            *term = (uint64_t) sqlite3_column_int64 (stmt, 0);
        sqlite3_finalize (stmt);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return s_fail (self, sql [i]);
    }
    return 0;
}

int
raft_store_save (raft_store_t *self, const rcore_hard_state_t *hs,
                 const rcore_entry_t *entries, size_t n_entries)
{
    assert (self && hs);
    for (size_t i = 1; i < n_entries; i++)
        assert (entries [i].index == entries [0].index + i);
    int rc = s_begin (self);
    if (rc)
        return rc;
    if (n_entries) {
        //  §3.5: a conflicting suffix goes before the leader's entries land
        sqlite3_bind_int64 (self->delete_from, 1, (sqlite3_int64) entries [0].index);
        rc = s_step_done (self, self->delete_from, "truncate entries");
    }
    for (size_t i = 0; i < n_entries && !rc; i++) {
        const rcore_entry_t *e = &entries [i];
        if (e->len > (size_t) INT32_MAX) {
            rc = -SH_ETOOBIG;
            break;
        }
        sqlite3_bind_int64 (self->insert_entry, 1, (sqlite3_int64) e->index);
        sqlite3_bind_int64 (self->insert_entry, 2, (sqlite3_int64) e->term);
        sqlite3_bind_int (self->insert_entry, 3, e->type);
        sqlite3_bind_blob (self->insert_entry, 4, e->len ? (const void *) e->data : "",
                           (int) e->len, SQLITE_STATIC);
        rc = s_step_done (self, self->insert_entry, "insert entry");
    }
    if (!rc) {
        sqlite3_bind_int64 (self->put_hard_state, 1, (sqlite3_int64) hs->term);
        sqlite3_bind_int64 (self->put_hard_state, 2, (sqlite3_int64) hs->vote);
        sqlite3_bind_int64 (self->put_hard_state, 3, (sqlite3_int64) hs->commit);
        rc = s_step_done (self, self->put_hard_state, "put hard state");
    }
    return s_end (self, rc);
}

int
raft_store_install_snapshot (raft_store_t *self, const rcore_snapshot_t *snapshot)
{
    assert (self && snapshot && snapshot->index > 0);
    int rc = s_begin (self);
    if (rc)
        return rc;
    //  §5.1, Figure 5.3: if the log holds an entry with the snapshot's last
    //  index and term, the entries after it stay; otherwise the snapshot
    //  replaces the whole log.
    uint64_t term = 0;
    rc = s_stored_term (self, snapshot->index, &term);
    if (!rc && term == snapshot->term) {
        sqlite3_bind_int64 (self->delete_upto, 1, (sqlite3_int64) snapshot->index);
        rc = s_step_done (self, self->delete_upto, "drop entries under the snapshot");
    }
    else
    if (!rc)
        rc = s_exec (self, "DELETE FROM entries;");
    if (!rc)
        rc = s_put_snapshot (self, snapshot->index, snapshot->term, snapshot->data,
                             snapshot->len, &snapshot->conf);
    return s_end (self, rc);
}

int
raft_store_compact (raft_store_t *self, uint64_t index, uint64_t term, const void *data,
                    size_t len, const rcore_conf_t *conf)
{
    assert (self);
    sqlite3_stmt *stmt = NULL;
    int rc = s_prepare (self, "SELECT idx FROM snapshot WHERE id = 0", &stmt);
    if (rc)
        return rc;
    uint64_t current = 0;
    if (sqlite3_step (stmt) == SQLITE_ROW)
        current = (uint64_t) sqlite3_column_int64 (stmt, 0);
    sqlite3_finalize (stmt);
    if (index == 0 || index <= current || (len && !data))
        return -SH_EINVAL;
    rc = s_begin (self);
    if (rc)
        return rc;
    rc = s_put_snapshot (self, index, term, data, len, conf);
    if (!rc) {
        sqlite3_bind_int64 (self->delete_upto, 1, (sqlite3_int64) index);
        rc = s_step_done (self, self->delete_upto, "compact entries");
    }
    return s_end (self, rc);
}

//  Reads the snapshot's configuration (ids sorted, as rcore_conf_t says).
//  -SH_EIO if it cannot be one (too many ids, a bad learner flag).
static int
s_load_conf (raft_store_t *self, rcore_conf_t *conf)
{
    sqlite3_stmt *stmt = NULL;
    int rc = s_prepare (self, "SELECT peer, learner FROM snapshot_conf", &stmt);
    if (rc)
        return rc;
    self->loaded_voters = (uint64_t *) malloc (RCORE_MAX_VOTERS * sizeof (uint64_t));
    self->loaded_learners = (uint64_t *) malloc (RCORE_MAX_VOTERS * sizeof (uint64_t));
    assert (self->loaded_voters && self->loaded_learners);
    int step;
    while ((step = sqlite3_step (stmt)) == SQLITE_ROW) {
        uint64_t peer = (uint64_t) sqlite3_column_int64 (stmt, 0);
        int learner = sqlite3_column_int (stmt, 1);
        size_t *n = learner ? &conf->n_learners : &conf->n_voters;
        uint64_t *ids = learner ? self->loaded_learners : self->loaded_voters;
        if ((learner != 0 && learner != 1) || *n >= RCORE_MAX_VOTERS) {
            log_error ("raft_store: damaged snapshot configuration at peer=%" PRIu64, peer);
            sqlite3_finalize (stmt);
            return -SH_EIO;
        }
        ids [(*n)++] = peer;
    }
    sqlite3_finalize (stmt);
    if (step != SQLITE_DONE)
        return s_fail (self, "load snapshot conf");
    //  The table's order is SQLite's signed one; ids are unsigned.
    qsort (self->loaded_voters, conf->n_voters, sizeof (uint64_t), s_cmp_u64);
    qsort (self->loaded_learners, conf->n_learners, sizeof (uint64_t), s_cmp_u64);
    conf->voters = conf->n_voters ? self->loaded_voters : NULL;
    conf->learners = conf->n_learners ? self->loaded_learners : NULL;
    return 0;
}

int
raft_store_load (raft_store_t *self, rcore_storage_t *out)
{
    assert (self && out);
    s_free_loaded (self);
    memset (out, 0, sizeof *out);
    sqlite3_stmt *stmt = NULL;
    int rc = s_prepare (self, "SELECT term, vote, \"commit\" FROM hard_state WHERE id = 0",
                        &stmt);
    if (rc)
        return rc;
    if (sqlite3_step (stmt) == SQLITE_ROW) {
        out->hard_state.term = (uint64_t) sqlite3_column_int64 (stmt, 0);
        out->hard_state.vote = (uint64_t) sqlite3_column_int64 (stmt, 1);
        out->hard_state.commit = (uint64_t) sqlite3_column_int64 (stmt, 2);
    }
    sqlite3_finalize (stmt);

    rc = s_prepare (self, "SELECT idx, term, data FROM snapshot WHERE id = 0", &stmt);
    if (rc)
        return rc;
    if (sqlite3_step (stmt) == SQLITE_ROW) {
        out->snapshot.index = (uint64_t) sqlite3_column_int64 (stmt, 0);
        out->snapshot.term = (uint64_t) sqlite3_column_int64 (stmt, 1);
        const void *blob = sqlite3_column_blob (stmt, 2);
        int len = sqlite3_column_bytes (stmt, 2);
        if (blob && len > 0) {
            self->loaded_snapshot = (uint8_t *) malloc ((size_t) len);
            assert (self->loaded_snapshot);
            memcpy (self->loaded_snapshot, blob, (size_t) len);
            out->snapshot.data = self->loaded_snapshot;
            out->snapshot.len = (size_t) len;
        }
    }
    sqlite3_finalize (stmt);
    rc = out->snapshot.index ? s_load_conf (self, &out->snapshot.conf) : 0;
    if (rc) {
        s_free_loaded (self);
        memset (out, 0, sizeof *out);
        return rc;
    }

    rc = s_prepare (self, "SELECT COUNT (*) FROM entries", &stmt);
    if (rc)
        return rc;
    size_t count = 0;
    if (sqlite3_step (stmt) == SQLITE_ROW)
        count = (size_t) sqlite3_column_int64 (stmt, 0);
    sqlite3_finalize (stmt);
    rc = s_prepare (self, "SELECT idx, term, type, data FROM entries ORDER BY idx", &stmt);
    if (rc)
        return rc;
    if (count) {
        self->loaded = (rcore_entry_t *) calloc (count, sizeof (rcore_entry_t));
        assert (self->loaded);
    }
    int step;
    while ((step = sqlite3_step (stmt)) == SQLITE_ROW) {
        uint64_t index = (uint64_t) sqlite3_column_int64 (stmt, 0);
        int type = sqlite3_column_int (stmt, 2);
        //  The log must be a contiguous run right after the snapshot.
        if (self->n_loaded >= count || index != out->snapshot.index + 1 + self->n_loaded
            || type < 0 || type >= RCORE_ENTRY_TYPE_COUNT) {
            log_error ("raft_store: damaged log at idx=%" PRIu64 " (expected %" PRIu64 ")",
                       index, out->snapshot.index + 1 + self->n_loaded);
            sqlite3_finalize (stmt);
            s_free_loaded (self);
            memset (out, 0, sizeof *out);
            return -SH_EIO;
        }
        rcore_entry_t *e = &self->loaded [self->n_loaded++];
        e->index = index;
        e->term = (uint64_t) sqlite3_column_int64 (stmt, 1);
        e->type = (uint8_t) type;
        const void *blob = sqlite3_column_blob (stmt, 3);
        int len = sqlite3_column_bytes (stmt, 3);
        if (blob && len > 0) {
            e->data = (uint8_t *) malloc ((size_t) len);
            assert (e->data);
            memcpy (e->data, blob, (size_t) len);
            e->len = (size_t) len;
        }
    }
    sqlite3_finalize (stmt);
    if (step != SQLITE_DONE) {
        s_free_loaded (self);
        memset (out, 0, sizeof *out);
        return s_fail (self, "load entries");
    }
    out->entries = self->loaded;
    out->n_entries = self->n_loaded;
    return 0;
}
