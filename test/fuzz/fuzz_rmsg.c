/*  fuzz_rmsg: arbitrary bytes as the JSON of a RAFT_MESSAGE through
    rmsg_decode; a message that decodes is encoded and decoded again (it
    must come back the same) and stepped into a Raft core, whose ready
    cycle then runs: nothing a peer sends may crash the codec or the core.
*/
#include "actors/raft/rmsg.h"
#include <assert.h>
#include <string.h>

static void
s_check_same (const rcore_msg_t *a, const rcore_msg_t *b)
{
    assert (a->type == b->type && a->from == b->from && a->to == b->to
            && a->term == b->term && a->index == b->index && a->log_term == b->log_term
            && a->commit == b->commit && a->reject == b->reject
            && a->reject_hint == b->reject_hint && a->force == b->force
            && a->n_entries == b->n_entries);
    for (size_t i = 0; i < a->n_entries; i++)
        assert (a->entries [i].index == b->entries [i].index
                && a->entries [i].term == b->entries [i].term
                && a->entries [i].type == b->entries [i].type
                && a->entries [i].len == b->entries [i].len
                && (!a->entries [i].len
                    || memcmp (a->entries [i].data, b->entries [i].data,
                               a->entries [i].len) == 0));
    assert (a->snapshot.index == b->snapshot.index && a->snapshot.term == b->snapshot.term
            && a->snapshot.len == b->snapshot.len
            && a->snapshot.conf.n_voters == b->snapshot.conf.n_voters
            && a->snapshot.conf.n_learners == b->snapshot.conf.n_learners);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    json_error_t error;
    json_t *json = json_loadb ((const char *) data, size, JSON_DECODE_ANY, &error);
    if (!json)
        return 0;
    rcore_msg_t msg;
    if (rmsg_decode (json, &msg) == 0) {
        json_t *again = rmsg_encode (&msg);
        if (again) {
            rcore_msg_t back;
            int rc = rmsg_decode (again, &back);
            assert (rc == 0);
            s_check_same (&msg, &back);
            rmsg_free (&back);
            json_decref (again);
        }
        //  A core of voters {1, 2, 3} that the message is addressed to.
        uint64_t voters [3] = { 1, 2, 3 };
        rcore_config_t config;
        rcore_config_defaults (&config);
        config.id = msg.to ? msg.to : 1;
        config.voters = voters;
        config.n_voters = 3;
        rcore_t *core = rcore_new (&config, NULL);
        if (core) {
            rcore_step (core, &msg);
            rcore_ready_t rd;
            while (rcore_ready (core, &rd))
                rcore_advance (core, &rd);
            rcore_tick (core);
            rcore_destroy (&core);
        }
        rmsg_free (&msg);
    }
    json_decref (json);
    return 0;
}
