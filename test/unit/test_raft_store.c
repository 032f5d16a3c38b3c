/*  test_raft_store: Raft's SQLite storage: save, reopen, truncate a
    conflicting suffix, compact, install a snapshot (keeping a matching log
    after it), the snapshot's configuration, a database from before it was
    stored, refuse a damaged log.
*/
#include "actors/raft/raft_store.h"
#include "common/err.h"
#include "test/unit/check_main.h"
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char s_dir [256];

static void
s_setup (void)
{
    const char *tmp = getenv ("TMPDIR");
    snprintf (s_dir, sizeof s_dir, "%s/raft_store.XXXXXX", tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull (mkdtemp (s_dir));
}

static void
s_teardown (void)
{
    char path [512];
    const char *files [] = { "consensus.db", "consensus.db-wal", "consensus.db-shm" };
    for (size_t i = 0; i < 3; i++) {
        snprintf (path, sizeof path, "%s/%s", s_dir, files [i]);
        unlink (path);
    }
    rmdir (s_dir);
}

static raft_store_t *
s_open (void)
{
    raft_store_t *store = NULL;
    ck_assert_int_eq (raft_store_open (s_dir, &store), 0);
    ck_assert_ptr_nonnull (store);
    return store;
}

static rcore_entry_t
s_entry (uint64_t index, uint64_t term, const char *text)
{
    rcore_entry_t e = { index, term, RCORE_ENTRY_NORMAL, (uint8_t *) text,
                        text ? strlen (text) : 0 };
    if (!text)
        e.type = RCORE_ENTRY_NOOP;
    return e;
}

START_TEST (test_empty_store_loads_nothing)
{
    raft_store_t *store = s_open ();
    rcore_storage_t st;
    ck_assert_int_eq (raft_store_load (store, &st), 0);
    ck_assert_uint_eq (st.hard_state.term, 0);
    ck_assert_uint_eq (st.hard_state.vote, 0);
    ck_assert_uint_eq (st.hard_state.commit, 0);
    ck_assert_uint_eq (st.snapshot.index, 0);
    ck_assert_uint_eq (st.n_entries, 0);
    raft_store_destroy (&store);
    ck_assert_ptr_null (store);
}
END_TEST

START_TEST (test_saved_state_survives_reopen)
{
    raft_store_t *store = s_open ();
    rcore_entry_t entries [3] = { s_entry (1, 1, NULL), s_entry (2, 1, "alpha"),
                                  s_entry (3, 2, "beta") };
    //  A random 64-bit peer id (top bit set) must come back unchanged.
    rcore_hard_state_t hs = { 2, 0xF00DFACE12345678ULL, 2 };
    ck_assert_int_eq (raft_store_save (store, &hs, entries, 3), 0);
    raft_store_destroy (&store);

    store = s_open ();
    rcore_storage_t st;
    ck_assert_int_eq (raft_store_load (store, &st), 0);
    ck_assert_uint_eq (st.hard_state.term, 2);
    ck_assert_uint_eq (st.hard_state.vote, 0xF00DFACE12345678ULL);
    ck_assert_uint_eq (st.hard_state.commit, 2);
    ck_assert_uint_eq (st.n_entries, 3);
    ck_assert_uint_eq (st.entries [0].index, 1);
    ck_assert_int_eq (st.entries [0].type, RCORE_ENTRY_NOOP);
    ck_assert_uint_eq (st.entries [0].len, 0);
    ck_assert_uint_eq (st.entries [2].term, 2);
    ck_assert_uint_eq (st.entries [2].len, 4);
    ck_assert (memcmp (st.entries [2].data, "beta", 4) == 0);

    //  What was loaded rebuilds a core with the same log.
    uint64_t voters [1] = { 1 };
    rcore_config_t config;
    rcore_config_defaults (&config);
    config.id = 1;
    config.voters = voters;
    config.n_voters = 1;
    rcore_t *core = rcore_new (&config, &st);
    ck_assert_ptr_nonnull (core);
    ck_assert_uint_eq (rcore_last_index (core), 3);
    ck_assert_uint_eq (rcore_commit (core), 2);
    rcore_destroy (&core);
    raft_store_destroy (&store);
}
END_TEST

START_TEST (test_save_truncates_the_conflicting_suffix)
{
    raft_store_t *store = s_open ();
    rcore_entry_t old [4] = { s_entry (1, 1, "a"), s_entry (2, 1, "b"), s_entry (3, 1, "c"),
                              s_entry (4, 1, "d") };
    rcore_hard_state_t hs = { 1, 1, 1 };
    ck_assert_int_eq (raft_store_save (store, &hs, old, 4), 0);
    //  A new leader replaces everything from 3 on with a shorter tail.
    rcore_entry_t replacement [1] = { s_entry (3, 2, "C") };
    hs.term = 2;
    ck_assert_int_eq (raft_store_save (store, &hs, replacement, 1), 0);
    //  Hard state alone (no entries) keeps the log.
    hs.commit = 3;
    ck_assert_int_eq (raft_store_save (store, &hs, NULL, 0), 0);
    raft_store_destroy (&store);

    store = s_open ();
    rcore_storage_t st;
    ck_assert_int_eq (raft_store_load (store, &st), 0);
    ck_assert_uint_eq (st.n_entries, 3);
    ck_assert_uint_eq (st.entries [2].term, 2);
    ck_assert (memcmp (st.entries [2].data, "C", 1) == 0);
    ck_assert_uint_eq (st.hard_state.commit, 3);
    raft_store_destroy (&store);
}
END_TEST

START_TEST (test_compact_keeps_the_tail_after_a_snapshot)
{
    raft_store_t *store = s_open ();
    rcore_entry_t entries [5] = { s_entry (1, 1, "a"), s_entry (2, 1, "b"), s_entry (3, 1, "c"),
                                  s_entry (4, 2, "d"), s_entry (5, 2, "e") };
    rcore_hard_state_t hs = { 2, 1, 5 };
    ck_assert_int_eq (raft_store_save (store, &hs, entries, 5), 0);
    ck_assert_int_eq (raft_store_compact (store, 3, 1, "{\"state\":1}", 11, NULL), 0);
    ck_assert_int_eq (raft_store_compact (store, 3, 1, "x", 1, NULL), -SH_EINVAL);  //  not past it
    ck_assert_int_eq (raft_store_compact (store, 2, 1, "x", 1, NULL), -SH_EINVAL);
    raft_store_destroy (&store);

    store = s_open ();
    rcore_storage_t st;
    ck_assert_int_eq (raft_store_load (store, &st), 0);
    ck_assert_uint_eq (st.snapshot.index, 3);
    ck_assert_uint_eq (st.snapshot.term, 1);
    ck_assert_uint_eq (st.snapshot.len, 11);
    ck_assert (memcmp (st.snapshot.data, "{\"state\":1}", 11) == 0);
    ck_assert_uint_eq (st.n_entries, 2);
    ck_assert_uint_eq (st.entries [0].index, 4);

    //  New entries keep following the compacted log.
    rcore_entry_t more [1] = { s_entry (6, 2, "f") };
    ck_assert_int_eq (raft_store_save (store, &hs, more, 1), 0);
    ck_assert_int_eq (raft_store_load (store, &st), 0);
    ck_assert_uint_eq (st.n_entries, 3);
    raft_store_destroy (&store);
}
END_TEST

START_TEST (test_installed_snapshot_replaces_the_log)
{
    raft_store_t *store = s_open ();
    rcore_entry_t entries [2] = { s_entry (1, 1, "a"), s_entry (2, 1, "b") };
    rcore_hard_state_t hs = { 1, 0, 1 };
    ck_assert_int_eq (raft_store_save (store, &hs, entries, 2), 0);
    rcore_snapshot_t snap = { .index = 10, .term = 3, .data = (uint8_t *) "SNAP", .len = 4 };
    ck_assert_int_eq (raft_store_install_snapshot (store, &snap), 0);
    hs = (rcore_hard_state_t) { 3, 0, 10 };
    rcore_entry_t after [1] = { s_entry (11, 3, "k") };
    ck_assert_int_eq (raft_store_save (store, &hs, after, 1), 0);
    raft_store_destroy (&store);

    store = s_open ();
    rcore_storage_t st;
    ck_assert_int_eq (raft_store_load (store, &st), 0);
    ck_assert_uint_eq (st.snapshot.index, 10);
    ck_assert_uint_eq (st.snapshot.term, 3);
    ck_assert_uint_eq (st.n_entries, 1);
    ck_assert_uint_eq (st.entries [0].index, 11);
    raft_store_destroy (&store);
}
END_TEST

START_TEST (test_snapshot_configuration_survives_reopen)
{
    raft_store_t *store = s_open ();
    rcore_entry_t entries [3] = { s_entry (1, 1, "a"), s_entry (2, 1, "b"), s_entry (3, 1, "c") };
    rcore_hard_state_t hs = { 1, 1, 3 };
    ck_assert_int_eq (raft_store_save (store, &hs, entries, 3), 0);
    //  Ids past INT64_MAX are stored as their bit pattern and come back
    //  sorted as unsigned numbers.
    uint64_t voters [3] = { 7, 900, 0xF00DFACE12345678ULL };
    uint64_t learners [1] = { 42 };
    rcore_conf_t conf = { voters, 3, learners, 1 };
    ck_assert_int_eq (raft_store_compact (store, 2, 1, "S2", 2, &conf), 0);
    raft_store_destroy (&store);

    store = s_open ();
    rcore_storage_t st;
    ck_assert_int_eq (raft_store_load (store, &st), 0);
    ck_assert_uint_eq (st.snapshot.index, 2);
    ck_assert_uint_eq (st.snapshot.conf.n_voters, 3);
    ck_assert_uint_eq (st.snapshot.conf.voters [0], 7);
    ck_assert_uint_eq (st.snapshot.conf.voters [1], 900);
    ck_assert_uint_eq (st.snapshot.conf.voters [2], 0xF00DFACE12345678ULL);
    ck_assert_uint_eq (st.snapshot.conf.n_learners, 1);
    ck_assert_uint_eq (st.snapshot.conf.learners [0], 42);

    //  An installed snapshot replaces the configuration with its own.
    uint64_t others [1] = { 5 };
    rcore_snapshot_t snap = { .index = 9, .term = 2, .data = (uint8_t *) "S9", .len = 2,
                              .conf = { others, 1, NULL, 0 } };
    ck_assert_int_eq (raft_store_install_snapshot (store, &snap), 0);
    ck_assert_int_eq (raft_store_load (store, &st), 0);
    ck_assert_uint_eq (st.snapshot.conf.n_voters, 1);
    ck_assert_uint_eq (st.snapshot.conf.voters [0], 5);
    ck_assert_uint_eq (st.snapshot.conf.n_learners, 0);
    ck_assert_ptr_null (st.snapshot.conf.learners);

    //  A compaction without a known configuration stores none.
    rcore_entry_t more [2] = { s_entry (10, 2, "j"), s_entry (11, 2, "k") };
    ck_assert_int_eq (raft_store_save (store, &hs, more, 2), 0);
    ck_assert_int_eq (raft_store_compact (store, 10, 2, "S10", 3, NULL), 0);
    ck_assert_int_eq (raft_store_load (store, &st), 0);
    ck_assert_uint_eq (st.snapshot.conf.n_voters + st.snapshot.conf.n_learners, 0);
    ck_assert_uint_eq (st.n_entries, 1);
    raft_store_destroy (&store);
}
END_TEST

START_TEST (test_recovery_snapshot_keeps_the_matching_log_after_it)
{
    raft_store_t *store = s_open ();
    rcore_entry_t entries [5] = { s_entry (1, 1, "a"), s_entry (2, 1, "b"), s_entry (3, 2, "c"),
                                  s_entry (4, 2, "d"), s_entry (5, 2, "e") };
    rcore_hard_state_t hs = { 2, 1, 5 };
    ck_assert_int_eq (raft_store_save (store, &hs, entries, 5), 0);
    //  The snapshot ends at an entry the log holds (3, term 2): 4 and 5 stay.
    uint64_t voters [1] = { 1 };
    rcore_snapshot_t snap = { .index = 3, .term = 2, .data = (uint8_t *) "S3", .len = 2,
                              .conf = { voters, 1, NULL, 0 } };
    ck_assert_int_eq (raft_store_install_snapshot (store, &snap), 0);
    rcore_storage_t st;
    ck_assert_int_eq (raft_store_load (store, &st), 0);
    ck_assert_uint_eq (st.snapshot.index, 3);
    ck_assert_uint_eq (st.n_entries, 2);
    ck_assert_uint_eq (st.entries [0].index, 4);
    ck_assert_uint_eq (st.entries [1].index, 5);
    ck_assert (memcmp (st.entries [1].data, "e", 1) == 0);

    //  The same snapshot again (it matches the stored snapshot): still kept.
    ck_assert_int_eq (raft_store_install_snapshot (store, &snap), 0);
    ck_assert_int_eq (raft_store_load (store, &st), 0);
    ck_assert_uint_eq (st.n_entries, 2);

    //  A snapshot whose last entry differs in term drops the whole log.
    rcore_snapshot_t other = { .index = 4, .term = 3, .data = (uint8_t *) "S4", .len = 2,
                               .conf = { voters, 1, NULL, 0 } };
    ck_assert_int_eq (raft_store_install_snapshot (store, &other), 0);
    ck_assert_int_eq (raft_store_load (store, &st), 0);
    ck_assert_uint_eq (st.snapshot.index, 4);
    ck_assert_uint_eq (st.n_entries, 0);
    //  And one past the end of the log too.
    rcore_entry_t next [1] = { s_entry (5, 3, "f") };
    ck_assert_int_eq (raft_store_save (store, &hs, next, 1), 0);
    rcore_snapshot_t ahead = { .index = 8, .term = 3, .data = (uint8_t *) "S8", .len = 2,
                               .conf = { voters, 1, NULL, 0 } };
    ck_assert_int_eq (raft_store_install_snapshot (store, &ahead), 0);
    ck_assert_int_eq (raft_store_load (store, &st), 0);
    ck_assert_uint_eq (st.snapshot.index, 8);
    ck_assert_uint_eq (st.n_entries, 0);
    raft_store_destroy (&store);
}
END_TEST

START_TEST (test_database_from_before_snapshot_conf_opens)
{
    //  The schema of the first version, with a snapshot and a log.
    char path [512];
    snprintf (path, sizeof path, "%s/consensus.db", s_dir);
    sqlite3 *db = NULL;
    ck_assert_int_eq (sqlite3_open (path, &db), SQLITE_OK);
    ck_assert_int_eq (sqlite3_exec (db,
        "CREATE TABLE hard_state (id INTEGER PRIMARY KEY CHECK (id = 0),"
        "  term INTEGER NOT NULL, vote INTEGER NOT NULL, \"commit\" INTEGER NOT NULL);"
        "CREATE TABLE entries (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL,"
        "  type INTEGER NOT NULL, data BLOB);"
        "CREATE TABLE snapshot (id INTEGER PRIMARY KEY CHECK (id = 0),"
        "  idx INTEGER NOT NULL, term INTEGER NOT NULL, data BLOB);"
        "PRAGMA user_version = 1;"
        "INSERT INTO hard_state VALUES (0, 3, 1, 6);"
        "INSERT INTO snapshot VALUES (0, 5, 2, x'7b7d');"
        "INSERT INTO entries VALUES (6, 3, 2, x'');",
        NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close (db);

    raft_store_t *store = s_open ();
    rcore_storage_t st;
    ck_assert_int_eq (raft_store_load (store, &st), 0);
    ck_assert_uint_eq (st.snapshot.index, 5);
    ck_assert_uint_eq (st.snapshot.conf.n_voters, 0);
    ck_assert_uint_eq (st.n_entries, 1);
    //  rcore takes the unknown configuration as config.voters.
    uint64_t voters [1] = { 1 };
    rcore_config_t config;
    rcore_config_defaults (&config);
    config.id = 1;
    config.voters = voters;
    config.n_voters = 1;
    rcore_t *core = rcore_new (&config, &st);
    ck_assert_ptr_nonnull (core);
    ck_assert (rcore_is_voter (core));
    rcore_conf_t conf;
    rcore_conf (core, &conf);
    ck_assert_uint_eq (conf.n_voters, 1);
    rcore_destroy (&core);
    //  And it takes a configuration from now on.
    rcore_entry_t more [1] = { s_entry (7, 3, "g") };
    rcore_hard_state_t hs = { 3, 1, 7 };
    ck_assert_int_eq (raft_store_save (store, &hs, more, 1), 0);
    rcore_conf_t known = { voters, 1, NULL, 0 };
    ck_assert_int_eq (raft_store_compact (store, 7, 3, "{}", 2, &known), 0);
    raft_store_destroy (&store);
    store = s_open ();
    ck_assert_int_eq (raft_store_load (store, &st), 0);
    ck_assert_uint_eq (st.snapshot.conf.n_voters, 1);
    raft_store_destroy (&store);
}
END_TEST

START_TEST (test_load_refuses_a_log_with_a_gap)
{
    raft_store_t *store = s_open ();
    rcore_entry_t entries [2] = { s_entry (1, 1, "a"), s_entry (2, 1, "b") };
    rcore_hard_state_t hs = { 1, 0, 0 };
    ck_assert_int_eq (raft_store_save (store, &hs, entries, 2), 0);
    raft_store_destroy (&store);

    //  Damage the file behind the store's back.
    char path [512];
    snprintf (path, sizeof path, "%s/consensus.db", s_dir);
    sqlite3 *db = NULL;
    ck_assert_int_eq (sqlite3_open (path, &db), SQLITE_OK);
    ck_assert_int_eq (sqlite3_exec (db, "INSERT INTO entries VALUES (7, 1, 0, x'00');",
                                    NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close (db);

    store = s_open ();
    rcore_storage_t st;
    ck_assert_int_eq (raft_store_load (store, &st), -SH_EIO);
    ck_assert_uint_eq (st.n_entries, 0);
    raft_store_destroy (&store);
}
END_TEST

START_TEST (test_open_fails_on_a_missing_dir)
{
    raft_store_t *store = NULL;
    char path [512];
    snprintf (path, sizeof path, "%s/no/such/dir", s_dir);
    ck_assert_int_eq (raft_store_open (path, &store), -SH_EIO);
    ck_assert_ptr_null (store);
}
END_TEST

Suite *
raft_store_suite (void)
{
    Suite *s = suite_create ("raft_store");
    TCase *tc = tcase_create ("store");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_add_test (tc, test_empty_store_loads_nothing);
    tcase_add_test (tc, test_saved_state_survives_reopen);
    tcase_add_test (tc, test_save_truncates_the_conflicting_suffix);
    tcase_add_test (tc, test_compact_keeps_the_tail_after_a_snapshot);
    tcase_add_test (tc, test_installed_snapshot_replaces_the_log);
    tcase_add_test (tc, test_snapshot_configuration_survives_reopen);
    tcase_add_test (tc, test_recovery_snapshot_keeps_the_matching_log_after_it);
    tcase_add_test (tc, test_database_from_before_snapshot_conf_opens);
    tcase_add_test (tc, test_load_refuses_a_log_with_a_gap);
    tcase_add_test (tc, test_open_fails_on_a_missing_dir);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (raft_store_suite)
