/*  test_paths: storage layout, ipc endpoints (short and long storage
    paths), mkdir -p and rm -rf, all inside a fresh mkdtemp dir.
*/
#include "common/err.h"
#include "common/paths.h"
#include "test/unit/check_main.h"
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static char s_tmp [512];        //  this test's scratch dir
static char s_cwd [PATHS_MAX];      //  working dir to restore

static void
s_setup (void)
{
    ck_assert_ptr_nonnull (getcwd (s_cwd, sizeof s_cwd));
    const char *base = getenv ("TMPDIR");
    snprintf (s_tmp, sizeof s_tmp, "%s/test_paths.XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull (mkdtemp (s_tmp));
}

static void
s_teardown (void)
{
    ck_assert_int_eq (chdir (s_cwd), 0);
    ck_assert_int_eq (paths_remove_tree (s_tmp), 0);
}

static bool
s_is_dir (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0 && S_ISDIR (st.st_mode);
}

static bool
s_exists (const char *path)
{
    struct stat st;
    return lstat (path, &st) == 0;
}

static void
s_touch (const char *path)
{
    FILE *f = fopen (path, "w");
    ck_assert_ptr_nonnull (f);
    fputs ("x", f);
    fclose (f);
}

START_TEST (test_storage_layout_paths)
{
    char buf [PATHS_MAX];
    ck_assert_int_eq (paths_raft_dir ("/data/shoal", buf), 0);
    ck_assert_str_eq (buf, "/data/shoal/raft");
    ck_assert_int_eq (paths_raft_dir ("/data/shoal/", buf), 0);
    ck_assert_str_eq (buf, "/data/shoal/raft");
    ck_assert_int_eq (paths_raft_dir ("./storage", buf), 0);
    ck_assert_str_eq (buf, "./storage/raft");
    ck_assert_int_eq (paths_collection_dir ("/data/shoal", 18446744073709551615ULL, buf), 0);
    ck_assert_str_eq (buf, "/data/shoal/collections/18446744073709551615");
    ck_assert_int_eq (paths_shard_dir ("/data/shoal", 7, 3, buf), 0);
    ck_assert_str_eq (buf, "/data/shoal/collections/7/3");
    ck_assert_int_eq (paths_shard_dir ("/", 7, 3, buf), 0);
    ck_assert_str_eq (buf, "/collections/7/3");
    ck_assert_int_eq (paths_raft_dir ("", buf), -SH_EINVAL);
    ck_assert_int_eq (paths_raft_dir (NULL, buf), -SH_EINVAL);
}
END_TEST

START_TEST (test_short_storage_gets_its_own_ipc_dir)
{
    char buf [PATHS_MAX];
    ck_assert_int_eq (paths_ipc_dir ("/data/shoal", buf), 0);
    ck_assert_str_eq (buf, "/data/shoal/ipc");
    ck_assert_int_eq (paths_ipc_dir ("/data/./x/../shoal//", buf), 0);
    ck_assert_str_eq (buf, "/data/shoal/ipc");
    ck_assert_int_eq (paths_raft_endpoint ("/data/shoal", buf), 0);
    ck_assert_str_eq (buf, "ipc:///data/shoal/ipc/raft.sock");
    ck_assert_int_eq (paths_meta_endpoint ("/data/shoal", buf), 0);
    ck_assert_str_eq (buf, "ipc:///data/shoal/ipc/meta.sock");
    ck_assert_int_eq (paths_shard_endpoint ("/data/shoal", 12, 0, buf), 0);
    ck_assert_str_eq (buf, "ipc:///data/shoal/ipc/shard-12-0.sock");
}
END_TEST

START_TEST (test_relative_storage_is_made_absolute)
{
    ck_assert_int_eq (chdir (s_tmp), 0);
    //  The mkdtemp dir may sit behind a symlink; getcwd is what counts.
    char cwd [PATHS_MAX], expect [PATHS_MAX + 16], buf [PATHS_MAX];
    ck_assert_ptr_nonnull (getcwd (cwd, sizeof cwd));
    if (strlen (cwd) + strlen ("/storage/ipc") + 43 > 107)
        return;                 //  a TMPDIR this deep takes the hashed path instead
    snprintf (expect, sizeof expect, "%s/storage/ipc", cwd);
    ck_assert_int_eq (paths_ipc_dir ("./storage", buf), 0);
    ck_assert_str_eq (buf, expect);
    ck_assert_int_eq (paths_ipc_dir ("storage", buf), 0);
    ck_assert_str_eq (buf, expect);
}
END_TEST

START_TEST (test_long_storage_falls_back_to_a_hashed_tmp_dir)
{
    char storage [PATHS_MAX], other [PATHS_MAX], a [PATHS_MAX], b [PATHS_MAX];
    snprintf (storage, sizeof storage, "/srv/%0100d/storage", 0);
    snprintf (other, sizeof other, "/srv/%0100d/storage", 1);
    setenv ("TMPDIR", "/var/tmp", 1);
    ck_assert_int_eq (paths_ipc_dir (storage, a), 0);
    ck_assert_int_eq (strncmp (a, "/var/tmp/shoal-", 15), 0);
    ck_assert_uint_eq (strlen (a), strlen ("/var/tmp/shoal-") + 16);
    //  Same storage, same dir (every actor agrees); another storage, another.
    ck_assert_int_eq (paths_ipc_dir (storage, b), 0);
    ck_assert_str_eq (a, b);
    ck_assert_int_eq (paths_ipc_dir (other, b), 0);
    ck_assert_str_ne (a, b);
    //  The same path spelled with a trailing slash is the same storage.
    char slashed [PATHS_MAX + 2];
    snprintf (slashed, sizeof slashed, "%s/", storage);
    ck_assert_int_eq (paths_ipc_dir (slashed, b), 0);
    ck_assert_str_eq (a, b);

    unsetenv ("TMPDIR");
    ck_assert_int_eq (paths_ipc_dir (storage, b), 0);
    ck_assert_int_eq (strncmp (b, "/tmp/shoal-", 11), 0);
    ck_assert_str_eq (b + 11, a + 15);          //  the hash does not depend on TMPDIR

    //  Every endpoint still fits a unix socket path.
    char ep [PATHS_MAX];
    ck_assert_int_eq (paths_shard_endpoint (storage, UINT64_MAX, UINT32_MAX, ep), 0);
    ck_assert_uint_lt (strlen (ep) - strlen ("ipc://"), sizeof ((struct sockaddr_un *) 0)->sun_path);
}
END_TEST

START_TEST (test_ipc_dir_fits_sun_path_at_the_boundary)
{
    //  A storage path just short enough keeps <storage>/ipc; one byte longer
    //  falls back. Every endpoint fits sun_path either way.
    size_t sun = sizeof ((struct sockaddr_un *) 0)->sun_path;
    bool saw_local = false, saw_fallback = false;
    for (size_t len = 40; len < 80; len++) {
        char storage [PATHS_MAX] = "/";
        memset (storage + 1, 'a', len - 1);
        storage [len] = 0;
        char dir [PATHS_MAX], ep [PATHS_MAX];
        ck_assert_int_eq (paths_ipc_dir (storage, dir), 0);
        if (strncmp (dir, storage, len) == 0)
            saw_local = true;
        else
            saw_fallback = true;
        ck_assert_int_eq (paths_shard_endpoint (storage, UINT64_MAX, UINT32_MAX, ep), 0);
        ck_assert_uint_lt (strlen (ep) - strlen ("ipc://"), sun);
    }
    ck_assert (saw_local && saw_fallback);
}
END_TEST

START_TEST (test_too_long_is_an_error_not_a_truncation)
{
    static char storage [PATHS_MAX + 10];
    memset (storage, 'a', sizeof storage - 1);
    storage [0] = '/';
    storage [sizeof storage - 1] = 0;
    char buf [PATHS_MAX];
    ck_assert_int_eq (paths_raft_dir (storage, buf), -SH_EINVAL);
    ck_assert_int_eq (paths_shard_dir (storage, 1, 1, buf), -SH_EINVAL);
    ck_assert_int_eq (paths_ipc_dir (storage, buf), -SH_EINVAL);
    ck_assert_int_eq (paths_raft_endpoint (storage, buf), -SH_EINVAL);
}
END_TEST

START_TEST (test_mkdirs_makes_every_level_and_is_idempotent)
{
    char path [PATHS_MAX];
    snprintf (path, sizeof path, "%s/a/b//c/", s_tmp);
    ck_assert_int_eq (paths_mkdirs (path), 0);
    ck_assert_int_eq (paths_mkdirs (path), 0);
    snprintf (path, sizeof path, "%s/a/b/c", s_tmp);
    ck_assert (s_is_dir (path));

    //  Relative to the working dir.
    ck_assert_int_eq (chdir (s_tmp), 0);
    ck_assert_int_eq (paths_mkdirs ("rel/x"), 0);
    ck_assert (s_is_dir ("rel/x"));

    //  A file in the way is an error.
    s_touch ("file");
    ck_assert_int_eq (paths_mkdirs ("file/sub"), -SH_EIO);
    ck_assert_int_eq (paths_mkdirs ("file"), -SH_EIO);
    ck_assert_int_eq (paths_mkdirs (""), -SH_EIO);
}
END_TEST

START_TEST (test_remove_tree_removes_everything_but_follows_no_symlink)
{
    char root [PATHS_MAX], keep [PATHS_MAX], kept_file [PATHS_MAX + 16], path [PATHS_MAX + 32];
    snprintf (root, sizeof root, "%s/tree", s_tmp);
    snprintf (keep, sizeof keep, "%s/keep", s_tmp);
    snprintf (path, sizeof path, "%s/x/y/z", root);
    ck_assert_int_eq (paths_mkdirs (path), 0);
    ck_assert_int_eq (paths_mkdirs (keep), 0);
    snprintf (kept_file, sizeof kept_file, "%s/precious", keep);
    s_touch (kept_file);
    snprintf (path, sizeof path, "%s/x/file", root);
    s_touch (path);
    snprintf (path, sizeof path, "%s/x/y/z/deep", root);
    s_touch (path);
    snprintf (path, sizeof path, "%s/x/link", root);
    ck_assert_int_eq (symlink (keep, path), 0);

    ck_assert_int_eq (paths_remove_tree (root), 0);
    ck_assert (!s_exists (root));
    ck_assert (s_exists (kept_file));
    //  rm -rf of what is not there succeeds; so does removing a plain file.
    ck_assert_int_eq (paths_remove_tree (root), 0);
    ck_assert_int_eq (paths_remove_tree (kept_file), 0);
    ck_assert (!s_exists (kept_file));
    ck_assert_int_eq (paths_remove_tree (""), -SH_EIO);
}
END_TEST

Suite *
paths_suite (void)
{
    Suite *s = suite_create ("paths");
    TCase *tc = tcase_create ("names");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_add_test (tc, test_storage_layout_paths);
    tcase_add_test (tc, test_short_storage_gets_its_own_ipc_dir);
    tcase_add_test (tc, test_relative_storage_is_made_absolute);
    tcase_add_test (tc, test_long_storage_falls_back_to_a_hashed_tmp_dir);
    tcase_add_test (tc, test_ipc_dir_fits_sun_path_at_the_boundary);
    tcase_add_test (tc, test_too_long_is_an_error_not_a_truncation);
    suite_add_tcase (s, tc);
    tc = tcase_create ("files");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_add_test (tc, test_mkdirs_makes_every_level_and_is_idempotent);
    tcase_add_test (tc, test_remove_tree_removes_everything_but_follows_no_symlink);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (paths_suite)
