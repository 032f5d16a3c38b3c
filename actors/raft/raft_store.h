/*  raft_store: the durable half of Raft: the hard state, the log and the
    latest snapshot in SQLite (<raft dir>/consensus.db, WAL, synchronous=FULL).

    Every write is one transaction that is durable when the call returns, so
    the raft actor sends and acknowledges only what survives a crash (§3.8:
    a server persists its term, vote and log before it answers). Tables:
      hard_state (term, vote, "commit")                 one row
      entries    (idx PRIMARY KEY, term, type, data)    the log after the snapshot
      snapshot   (idx, term, data)                      at most one row
      snapshot_conf (peer PRIMARY KEY, learner)         the snapshot's configuration
    (A database from before snapshot_conf gets the table, empty, on open: its
    snapshot's configuration reads as unknown, which rcore takes as
    rcore_config_t.voters.)
*/
#ifndef SH_RAFT_STORE_H
#define SH_RAFT_STORE_H

#include "actors/raft/rcore.h"

typedef struct _raft_store_t raft_store_t;

//  Opens or creates dir/consensus.db (dir must exist). 0, or -SH_EIO with the
//  reason logged.
int raft_store_open (const char *dir, raft_store_t **out);
void raft_store_destroy (raft_store_t **self_p);

//  Reads everything back. out points into memory the store owns until the
//  next raft_store_load or destroy. -SH_EIO if the stored log is not a
//  contiguous run after the snapshot (a damaged file is not trusted).
int raft_store_load (raft_store_t *self, rcore_storage_t *out);

//  In one transaction: removes the stored entries from entries [0].index on
//  (the suffix a new leader overwrote, §3.5), appends entries, and writes
//  the hard state. entries must be contiguous. 0 or -SH_EIO.
int raft_store_save (raft_store_t *self, const rcore_hard_state_t *hard_state,
                     const rcore_entry_t *entries, size_t n_entries);

//  Installs a snapshot received from the leader (with its configuration):
//  replaces the stored snapshot and drops the stored log, except that when
//  the stored log holds the snapshot's last entry (same index and term; a
//  recovery snapshot, rcore_send_snapshot) the entries after it are kept
//  (§5.1, Figure 5.3). 0 or -SH_EIO.
int raft_store_install_snapshot (raft_store_t *self, const rcore_snapshot_t *snapshot);

//  Log compaction (§5.1): stores a snapshot taken locally at index with the
//  configuration as of index (rcore_conf_at; NULL = none known) and drops
//  the entries up to index, in one transaction. 0, -SH_EINVAL if index is
//  not past the stored snapshot, or -SH_EIO.
int raft_store_compact (raft_store_t *self, uint64_t index, uint64_t term, const void *data,
                        size_t len, const rcore_conf_t *conf);

#endif
