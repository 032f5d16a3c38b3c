/*  paths: where a node keeps things under its storage dir, and the ipc
    endpoints its actors bind. Every actor derives these from the same config,
    so they agree without being told.

      <storage>/peer_id                       this node's peer id (decimal)
      <storage>/raft/consensus.db             raft log, hard state, snapshots
      <storage>/collections/<uid>/<shard>/    one shard replica's files
      <ipc dir>/raft.sock, meta.sock, p2p.sock, shard-<uid>-<shard>.sock,
                srd-<uid>-<shard>.sock (a shard's direct reads, not zmq)

    The ipc dir is <storage>/ipc when that path is short enough for a unix
    socket (sun_path is 108 bytes), else a dir under $TMPDIR named by a hash
    of the absolute storage path.
*/
#ifndef SH_PATHS_H
#define SH_PATHS_H

#include <stddef.h>
#include <stdint.h>

#define PATHS_MAX 4096

//  Each writes into buf (PATHS_MAX) and returns 0, or -SH_EINVAL if too long.
int paths_ipc_dir (const char *storage, char *buf);
int paths_raft_endpoint (const char *storage, char *buf);   //  "ipc://..."
int paths_meta_endpoint (const char *storage, char *buf);   //  "ipc://..."
int paths_p2p_endpoint (const char *storage, char *buf);    //  "ipc://..."
int paths_shard_endpoint (const char *storage, uint64_t uid, uint32_t shard, char *buf);
//  The unix stream socket of a shard actor's direct read path (a file path,
//  no "ipc://"): <ipc dir>/srd-<uid>-<shard>.sock (proto/envelope.h).
int paths_shard_direct (const char *storage, uint64_t uid, uint32_t shard, char *buf);
int paths_raft_dir (const char *storage, char *buf);
int paths_collection_dir (const char *storage, uint64_t uid, char *buf);
int paths_shard_dir (const char *storage, uint64_t uid, uint32_t shard, char *buf);
//  mkdir -p; 0 or -SH_EIO.
int paths_mkdirs (const char *path);
//  rm -rf; 0 or -SH_EIO.
int paths_remove_tree (const char *path);

#endif
