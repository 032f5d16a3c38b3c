/*  rcore: the pure Raft core (Ongaro's thesis, "Consensus: Bridging Theory
    and Practice", 2014; section numbers in comments are the thesis').

    No sockets, no clock, no disk, no rand (): the core takes ticks
    (rcore_tick), messages from peers (rcore_step) and proposals
    (rcore_propose), and hands back a "ready" batch (rcore_ready): the hard
    state and log entries to persist, the messages to send, a snapshot to
    install and the entries now committed. The caller does the I/O in this
    order, then calls rcore_advance:

        rcore_ready_t rd;
        while (rcore_ready (core, &rd)) {
            save rd.snapshot (if any), then rd.hard_state and rd.entries;
            send rd.messages;                  //  only once they are durable
            install rd.snapshot, apply rd.committed;
            rcore_advance (core, &rd);
        }

    Between rcore_ready and rcore_advance no other rcore call is allowed (the
    ready borrows the core's memory). Randomness (election timeouts) comes
    from a seed in the config, so a run is reproducible from its seed.

    Messages are plain structs; the transport encodes them (the core checks
    every message it is given and refuses a malformed one with -SH_EINVAL).
*/
#ifndef SH_RCORE_H
#define SH_RCORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Most voters a cluster may have (bounds what a config may ask us to track).
#define RCORE_MAX_VOTERS 256

typedef struct _rcore_t rcore_t;

typedef enum {
    RCORE_ENTRY_NORMAL = 0,         //  a state machine command (a meta op)
    RCORE_ENTRY_CONF = 1,           //  a membership change (§4.1), see rcore_conf_t
    RCORE_ENTRY_NOOP = 2,           //  a leader's blank entry for its term (§6.4)
    RCORE_ENTRY_TYPE_COUNT
} rcore_entry_type_t;

typedef struct {
    uint64_t index;                 //  position in the log, from 1
    uint64_t term;                  //  term of the leader that created it
    uint8_t type;                   //  rcore_entry_type_t
    uint8_t *data;                  //  command bytes (NULL when len is 0)
    size_t len;                     //  bytes in data
} rcore_entry_t;

//  What a server must persist before it answers anyone (§3.8).
typedef struct {
    uint64_t term;                  //  currentTerm
    uint64_t vote;                  //  votedFor in term, 0 = none
    uint64_t commit;                //  highest index known committed
} rcore_hard_state_t;

/*  Membership (§4.1: one server at a time; §4.2.1: a new server first
    joins as a learner, which replicates but does not vote, and is promoted
    once caught up). A server uses the latest configuration in its log,
    committed or not; a truncated conf entry reverts to the previous one.

    A CONF entry's data is JSON text, an object that holds the whole
    configuration it leads to (so the latest conf entry alone gives the
    configuration, whatever came before it) and the change that made it:
        {"change": "add_learner" | "promote" | "remove",
         "peer_id": u64, "voters": [u64...], "learners": [u64...],
         ... other keys (e.g. "uri") are the state machine's, ignored here}
    rcore_propose_conf builds it; rcore checks every conf entry it is given
    (from a leader or from storage) and treats a malformed one as -SH_EINVAL.
    Before any conf entry or snapshot conf exists, rcore_config_t.voters is
    the configuration (a fresh first node: itself; a joining node: none). */
typedef enum {
    RCORE_CONF_ADD_LEARNER = 0,     //  a new server, replicating, not voting
    RCORE_CONF_PROMOTE,             //  a learner becomes a voter
    RCORE_CONF_REMOVE,              //  a voter or learner leaves
    RCORE_CONF_CHANGE_COUNT
} rcore_conf_change_t;

//  A configuration (ids sorted ascending, no id in both lists).
typedef struct {
    uint64_t *voters;               //  voting servers
    size_t n_voters;
    uint64_t *learners;             //  non-voting servers
    size_t n_learners;
} rcore_conf_t;

//  A state machine snapshot replacing the log up to index (§5).
typedef struct {
    uint64_t index;                 //  last index it covers; 0 = no snapshot
    uint64_t term;                  //  term of that entry
    uint8_t *data;                  //  the serialized state machine
    size_t len;                     //  bytes in data
    rcore_conf_t conf;              //  configuration as of index (empty if
                                    //  none was known: then config.voters)
} rcore_snapshot_t;

//  What durable storage holds, handed to rcore_new (all borrowed; copied).
typedef struct {
    rcore_hard_state_t hard_state;
    rcore_snapshot_t snapshot;      //  index 0 if none
    const rcore_entry_t *entries;   //  the log after snapshot.index, in order
    size_t n_entries;
} rcore_storage_t;

typedef struct {
    uint64_t id;                    //  this server's id, not 0
    //  initial voters, used only while storage holds no configuration (see
    //  rcore_conf_t): 0..RCORE_MAX_VOTERS ids; none = wait for a leader
    const uint64_t *voters;
    size_t n_voters;
    uint64_t seed;                  //  seeds the election timeout randomness
    int election_ticks;             //  minimum election timeout in ticks (10)
    int heartbeat_ticks;            //  leader heartbeat interval in ticks (1)
    bool pre_vote;                  //  run the pre-vote phase (§9.6) (true)
    bool check_quorum;              //  leader steps down without a quorum (§6.2) (true)
    size_t max_msg_entries;         //  most entries in one append (64)
    size_t max_msg_bytes;           //  soft byte cap of one append's data (1 MiB)
    size_t max_inflight;            //  unacknowledged entries per follower (1024)
    uint64_t applied;               //  already applied index; 0 = snapshot index
} rcore_config_t;

typedef enum {
    RCORE_MSG_NONE = 0,
    RCORE_MSG_APPEND,               //  AppendEntries (§3.5)
    RCORE_MSG_APPEND_RESP,
    RCORE_MSG_VOTE,                 //  RequestVote (§3.4)
    RCORE_MSG_VOTE_RESP,
    RCORE_MSG_PREVOTE,              //  pre-vote (§9.6)
    RCORE_MSG_PREVOTE_RESP,
    RCORE_MSG_HEARTBEAT,            //  empty AppendEntries carrying only the commit
    RCORE_MSG_HEARTBEAT_RESP,
    RCORE_MSG_SNAPSHOT,             //  InstallSnapshot (§5.1, Figure 5.3)
    RCORE_MSG_SNAPSHOT_RESP,        //  (index: the snapshot's index; reject if refused)
    RCORE_MSG_TIMEOUT_NOW,          //  leadership transfer: campaign now (§3.10)
    RCORE_MSG_TYPE_COUNT
} rcore_msg_type_t;

typedef struct {
    int type;                       //  rcore_msg_type_t
    uint64_t from;                  //  sender id
    uint64_t to;                    //  receiver id
    uint64_t term;                  //  sender's term (a pre-vote: the term it would take)
    //  APPEND: prevLogIndex; (PRE)VOTE: lastLogIndex; APPEND_RESP: last index
    //  the follower now matches, or when rejecting the prevLogIndex it refused
    uint64_t index;
    //  APPEND: prevLogTerm; (PRE)VOTE: lastLogTerm; APPEND_RESP reject: the
    //  follower's term at reject_hint (fast backtracking)
    uint64_t log_term;
    uint64_t commit;                //  APPEND/HEARTBEAT: leader's commit index
    bool reject;                    //  *_RESP: refused
    uint64_t reject_hint;           //  APPEND_RESP reject: follower's probe index
    rcore_entry_t *entries;         //  APPEND: entries index+1, index+2, ...
    size_t n_entries;
    rcore_snapshot_t snapshot;      //  SNAPSHOT
    //  VOTE/PREVOTE: sent on a leadership transfer, so it is granted even
    //  within the minimum election timeout of hearing from a leader (§4.2.3);
    //  SNAPSHOT: a recovery (rcore_send_snapshot): the receiver resets its
    //  state machine from it even if its commit is already past its index
    bool force;
} rcore_msg_t;

typedef enum {
    RCORE_FOLLOWER = 0,
    RCORE_PRE_CANDIDATE,
    RCORE_CANDIDATE,
    RCORE_LEADER
} rcore_role_t;

//  One batch of work for the caller; everything is borrowed until advance.
typedef struct {
    rcore_hard_state_t hard_state;  //  current hard state
    bool hard_state_changed;        //  differs from the one last persisted
    const rcore_snapshot_t *snapshot;   //  to persist and install, or NULL
    const rcore_entry_t *entries;   //  to append; a stored suffix from
    size_t n_entries;               //    entries [0].index on is replaced
    const rcore_msg_t *messages;    //  to send once the above is durable
    size_t n_messages;
    const rcore_entry_t *committed; //  to apply, in order
    size_t n_committed;
} rcore_ready_t;

//  Fills config with the defaults above (id, voters and seed left 0/NULL).
void rcore_config_defaults (rcore_config_t *config);

//  A core restored from storage (NULL: fresh). NULL if the config or the
//  stored state is invalid (ids, gaps, terms out of order, commit past log).
rcore_t *rcore_new (const rcore_config_t *config, const rcore_storage_t *storage);
void rcore_destroy (rcore_t **self_p);

//  One tick of logical time: election timeouts, heartbeats, quorum checks.
void rcore_tick (rcore_t *self);
//  Starts an election now (as if the election timeout fired).
void rcore_campaign (rcore_t *self);
//  Feeds one message from a peer (copied). 0, or -SH_EINVAL if malformed
//  (wrong sender/receiver, bad type, entries out of order); stale messages
//  are ignored and return 0.
int rcore_step (rcore_t *self, const rcore_msg_t *msg);
//  Appends a new entry if this server is the leader; *index and *term (either
//  may be NULL) name it. -SH_ENOLEADER if not leader, -SH_EINVAL on bad type.
int rcore_propose (rcore_t *self, int type, const void *data, size_t len, uint64_t *index,
                   uint64_t *term);

//  True and fills rd when there is work; see the file comment.
bool rcore_ready (rcore_t *self, rcore_ready_t *rd);
//  The caller made rd durable, sent, installed and applied it.
void rcore_advance (rcore_t *self, const rcore_ready_t *rd);

//  Takes a snapshot of the state machine at index (<= applied, > current
//  snapshot) whose bytes are data (copied) and drops the log up to index
//  (§5.1). The caller persists the same with raft_store_compact. 0 or -SH_EINVAL.
int rcore_compact (rcore_t *self, uint64_t index, const void *data, size_t len);

/*  Membership changes (leader only). Builds the conf entry (see
    rcore_conf_t) with extra (a JSON object text whose keys are copied
    into the entry, e.g. {"uri": "..."}; NULL for none) and appends it.
    -SH_ENOLEADER if not leader; -SH_EUNAVAIL while another conf change is
    not yet committed or a leadership transfer runs; -SH_EEXIST adding a
    member; -SH_ENOTFOUND promoting or removing a non-member; -SH_EINVAL
    promoting a voter, removing the last voter, or bad extra. */
int rcore_propose_conf (rcore_t *self, int change, uint64_t peer, const char *extra,
                        uint64_t *index, uint64_t *term);
//  The configuration in effect (latest in the log); arrays borrowed until
//  the next call that changes the core.
void rcore_conf (const rcore_t *self, rcore_conf_t *out);
//  The configuration as of index (>= snapshot index, <= last index), for
//  persisting a snapshot taken there; arrays borrowed as above. 0 or -SH_EINVAL.
int rcore_conf_at (const rcore_t *self, uint64_t index, rcore_conf_t *out);
bool rcore_is_voter (const rcore_t *self);
//  Leader: highest index known replicated on peer (0 if unknown or not a member).
uint64_t rcore_match (const rcore_t *self, uint64_t peer);
//  Leader: a learner whose log is within `lag` entries of the leader's last
//  index and was heard from this election timeout (ready to be promoted).
bool rcore_caught_up (const rcore_t *self, uint64_t peer, uint64_t lag);

//  Leadership transfer (§3.10): the leader stops taking proposals, brings
//  target's log up to date, then sends it TIMEOUT_NOW; the transfer is
//  abandoned after an election timeout. 0, -SH_ENOLEADER if not leader,
//  -SH_ENOTFOUND if target is not a voter (or is self).
int rcore_transfer_leader (rcore_t *self, uint64_t target);
//  The transfer target while one runs, else 0.
uint64_t rcore_transferee (const rcore_t *self);

//  Leader: the next replication to peer sends the current snapshot (force
//  set) instead of entries, so that peer resets its state machine from it
//  (POST /cluster/recover). The caller compacts first so the snapshot is
//  recent. 0, -SH_ENOLEADER, -SH_ENOTFOUND, -SH_EINVAL if there is no snapshot.
int rcore_send_snapshot (rcore_t *self, uint64_t peer);

uint64_t rcore_id (const rcore_t *self);
uint64_t rcore_term (const rcore_t *self);
uint64_t rcore_vote (const rcore_t *self);
uint64_t rcore_leader (const rcore_t *self);        //  0 = unknown
rcore_role_t rcore_role (const rcore_t *self);
uint64_t rcore_commit (const rcore_t *self);
uint64_t rcore_applied (const rcore_t *self);
uint64_t rcore_first_index (const rcore_t *self);   //  first entry held in memory
uint64_t rcore_last_index (const rcore_t *self);
//  The entry at index, or NULL if compacted or past the end (borrowed).
const rcore_entry_t *rcore_entry (const rcore_t *self, uint64_t index);
//  The current snapshot (index 0 if none; borrowed).
const rcore_snapshot_t *rcore_snapshot (const rcore_t *self);

const char *rcore_role_name (int role);
const char *rcore_msg_type_name (int type);

#endif
