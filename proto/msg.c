/*  msg: names of message types, for logs.  */
#include "proto/msg.h"

const char *
msg_type_name (int type)
{
    switch (type) {
        case MSG_META_GET: return "meta_get";
        case MSG_META_PROPOSE: return "meta_propose";
        case MSG_META_STATE: return "meta_state";
        case MSG_RAFT_MESSAGE: return "raft_message";
        case MSG_RAFT_JOIN: return "raft_join";
        case MSG_RAFT_RECOVER: return "raft_recover";
        case MSG_P2P_INFO: return "p2p_info";
        case MSG_SHARD_UPSERT: return "shard_upsert";
        case MSG_SHARD_DELETE: return "shard_delete";
        case MSG_SHARD_SET_PAYLOAD: return "shard_set_payload";
        case MSG_SHARD_OVERWRITE_PAYLOAD: return "shard_overwrite_payload";
        case MSG_SHARD_DELETE_PAYLOAD: return "shard_delete_payload";
        case MSG_SHARD_CLEAR_PAYLOAD: return "shard_clear_payload";
        case MSG_SHARD_UPDATE_VECTORS: return "shard_update_vectors";
        case MSG_SHARD_DELETE_VECTORS: return "shard_delete_vectors";
        case MSG_SHARD_SEARCH: return "shard_search";
        case MSG_SHARD_RETRIEVE: return "shard_retrieve";
        case MSG_SHARD_SCROLL: return "shard_scroll";
        case MSG_SHARD_COUNT: return "shard_count";
        case MSG_SHARD_INFO: return "shard_info";
        default: return "unknown";
    }
}
