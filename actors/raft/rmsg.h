/*  rmsg: a Raft message (rcore_msg_t) as the JSON of a RAFT_MESSAGE
    envelope, and back. Bytes (entry data, snapshot data) travel base64
    (libsodium's original variant), so the bytes a follower stores are
    exactly the leader's:

      {"type": n (rcore_msg_type_t), "from": u64, "to": u64, "term": u64,
       "index": u64, "log_term": u64, "commit": u64, "reject": bool,
       "hint": u64, "force": bool,
       "entries": [{"index": u64, "term": u64, "type": n, "data": base64}],
       "snapshot": {"index", "term", "data": base64, "voters": [u64...],
                    "learners": [u64...]}}

    Absent fields read as 0/false/empty; "entries" and "snapshot" only when
    the message has them. The decoder checks every field (types, ranges,
    counts against RCORE_MAX_VOTERS and the limits below) and never trusts a
    size it was given: a bad message is -SH_EPROTO, nothing is allocated.
    rcore_step then checks the message's meaning.
*/
#ifndef SH_RMSG_H
#define SH_RMSG_H

#include "actors/raft/rcore.h"
#include <jansson.h>

//  Most entries one message may carry.
#define RMSG_MAX_ENTRIES 4096
//  Most decoded bytes of all entries' data plus the snapshot's, together.
#define RMSG_MAX_BYTES (64u * 1024 * 1024)

//  The JSON for msg (a new reference). NULL only on allocation failure.
json_t *rmsg_encode (const rcore_msg_t *msg);
//  Fills out from json; entries, their data and the snapshot's data and
//  conf arrays are allocated: free them with rmsg_free. 0 or -SH_EPROTO
//  (out is zeroed and owns nothing).
int rmsg_decode (const json_t *json, rcore_msg_t *out);
void rmsg_free (rcore_msg_t *msg);

#endif
