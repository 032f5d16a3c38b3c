/*  shard_store: the durable copy of one shard replica's points, in SQLite
    (shard.db inside the shard's directory).

    The segment (segment.h) is what the shard actor reads and searches; this
    store is what survives a restart. The actor stages the points a turn
    changed between shard_store_begin and shard_store_commit (one transaction
    per turn), and on start shard_store_load hands every stored point back so
    the segment can be rebuilt.

    Tables:
      points (key BLOB PRIMARY KEY   pointid_key () bytes, memcmp = id order,
              version INTEGER        the shard seq that last wrote the point,
              vectors BLOB           the point's vectors, encoded as below,
              payload TEXT)          JSON object, or NULL for none
      meta   (name TEXT PRIMARY KEY, value INTEGER)
              "format": SHARD_STORE_FORMAT, "seq": last committed seq

    The vectors blob (all integers and floats little-endian):
      u8  SHARD_STORE_VECTORS_VERSION
      u32 number of vectors, then for each:
        u8  kind (0 dense, 1 sparse)
        u16 name length, then the name's bytes (no NUL)
        dense:  u32 dim, dim x f32
        sparse: u32 nnz, nnz x u32 indices, nnz x f32 values
    Decoding checks every length against what is left: a corrupt blob is
    -SH_EIO, never a read past the end.
*/
#ifndef SH_SHARD_STORE_H
#define SH_SHARD_STORE_H

#include "actors/shard/segment.h"
#include "common/pointid.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHARD_STORE_FORMAT 1
#define SHARD_STORE_VECTORS_VERSION 1
#define SHARD_STORE_FILE "shard.db"

typedef struct _shard_store_t shard_store_t;

//  Opens (creating if needed) dir/shard.db. 0 and *out, or -SH_EIO (logged)
//  when the file cannot be opened, is not a shard store, or was written by a
//  newer format.
int shard_store_open (const char *dir, shard_store_t **out);
//  Closes the database; an open transaction is rolled back. NULL-safe.
void shard_store_destroy (shard_store_t **self_p);

//  The last committed seq (0 for a new store).
uint64_t shard_store_seq (const shard_store_t *self);

//  --- writes: begin, any number of put/delete/set_seq, commit --------------
//  Each returns 0 or -SH_EIO (logged). After a failure, call rollback.
int shard_store_begin (shard_store_t *self);
//  Inserts or replaces the point. payload: an object or NULL.
int shard_store_put_point (shard_store_t *self, const pointid_t *id, uint64_t version,
                           const segment_vec_t *vecs, size_t n_vecs,
                           const json_t *payload);
//  Removes the point; a missing point is not an error.
int shard_store_delete_point (shard_store_t *self, const pointid_t *id);
int shard_store_set_seq (shard_store_t *self, uint64_t seq);
//  Makes the transaction durable (see shard_store.c on what survives what).
int shard_store_commit (shard_store_t *self);
//  Abandons the transaction; NULL-safe, harmless when none is open.
void shard_store_rollback (shard_store_t *self);

//  --- deferred writes --------------------------------------------------------
//  A replica being filled by a shard transfer need not make each batch
//  durable before acknowledging it: a target that restarts has the stream
//  start over (or the transfer aborted), and only the end of the stream
//  hands it the shard. So its turns go to a writer thread of this store,
//  which commits them (several queued turns in one transaction) while the
//  actor applies the next ones. While deferring, use only the calls below
//  (the others assert): puts and deletes fill a turn, defer_turn hands it
//  over. defer_sync waits until every handed-over turn is committed and
//  stops the writer; then the synchronous calls may be used again.
//  Each returns 0, -SH_EINVAL / -SH_ETOOBIG for a point that cannot be
//  stored, or the writer's first failure (-SH_EIO, sticky until the sync).
int shard_store_defer_put (shard_store_t *self, const pointid_t *id, uint64_t version,
                           const segment_vec_t *vecs, size_t n_vecs,
                           const json_t *payload);
int shard_store_defer_delete (shard_store_t *self, const pointid_t *id);
//  Hands the turn over with the seq it commits; waits while more than
//  S_DEFER_MAX_BYTES (shard_store.c) of turns are queued.
int shard_store_defer_turn (shard_store_t *self, uint64_t seq);
//  Writes everything handed over, then stops the writer. 0 when nothing
//  was deferred. Called by shard_store_destroy too.
int shard_store_defer_sync (shard_store_t *self);
//  The writer runs (turns were deferred since the last sync).
bool shard_store_deferring (const shard_store_t *self);

//  --- load -----------------------------------------------------------------
//  One stored point as shard_store_load hands it over: everything is
//  borrowed for the duration of the callback (json_incref the payload to
//  keep it).
typedef struct {
    pointid_t id;
    uint64_t version;
    const segment_vec_t *vecs;      //  n_vecs vectors
    size_t n_vecs;
    json_t *payload;                //  object or NULL
} shard_store_point_t;

//  Returns 0 to go on, or a negative code to stop the load with that code.
typedef int (shard_store_load_fn) (const shard_store_point_t *point, void *arg);

//  Calls fn for every stored point in id order. A row that does not decode
//  (bad key, vectors blob or payload) is logged and skipped, and counted in
//  *n_corrupt (may be NULL). 0, fn's code, or -SH_EIO.
int shard_store_load (shard_store_t *self, shard_store_load_fn *fn, void *arg,
                      size_t *n_corrupt);

//  --- the vectors blob, exposed for the unit tests ------------------------
//  Encodes vecs (a vector with dense != NULL is dense, else sparse). *out is
//  yours (free). 0, or -SH_EINVAL for a name longer than 65535 bytes.
int shard_store_encode_vectors (const segment_vec_t *vecs, size_t n_vecs, uint8_t **out,
                                size_t *len);
//  Decodes a blob into *vecs, one allocation holding the array, the names and
//  the numbers: free (*vecs) releases all of it. 0, or -SH_EIO if corrupt.
int shard_store_decode_vectors (const uint8_t *data, size_t len, segment_vec_t **vecs,
                                size_t *n_vecs);

#endif
