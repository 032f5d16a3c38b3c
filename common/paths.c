/*  paths: the layout of a node's storage dir and its ipc endpoints (see
    paths.h). Pure string work plus mkdir -p and rm -rf; no state.

    The ipc dir is always absolute (a relative storage path is joined to the
    working dir) so that an actor that changes its working dir still finds
    its peers' sockets. A unix socket path must fit sun_path (108 bytes with
    its NUL), and the longest name we put in the ipc dir is
    "/shard-<20 digits>-<10 digits>.sock": when <storage>/ipc plus that does
    not fit, the sockets go to $TMPDIR/shoal-<hash of the absolute storage
    path>, which is short and still the same for every actor of the node.
*/
#include "common/paths.h"
#include "common/err.h"
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

//  sun_path holds 108 bytes including the terminating NUL.
#define S_SUN_PATH_MAX 107
//  strlen ("/shard-18446744073709551615-4294967295.sock")
#define S_LONGEST_SOCKET 43

//  snprintf into buf (PATHS_MAX); -SH_EINVAL if it did not fit.
static int
s_fmt (char *buf, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static int
s_fmt (char *buf, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (buf, PATHS_MAX, fmt, args);
    va_end (args);
    return n >= 0 && n < PATHS_MAX ? 0 : -SH_EINVAL;
}

//  storage without trailing slashes ("/" stays "/"): so "data/" and "data"
//  give the same paths. Writes into buf (PATHS_MAX).
static int
s_trimmed (const char *storage, char *buf)
{
    if (!storage || !*storage)
        return -SH_EINVAL;
    size_t len = strlen (storage);
    while (len > 1 && storage [len - 1] == '/')
        len--;
    if (len >= PATHS_MAX)
        return -SH_EINVAL;
    memcpy (buf, storage, len);
    buf [len] = 0;
    return 0;
}

//  The absolute, lexically normalised form of storage ("." and empty
//  components dropped, ".." pops one): no file system access, so it works
//  before the dir exists and gives every actor the same answer.
static int
s_absolute (const char *storage, char *buf)
{
    char joined [PATHS_MAX];
    if (!storage || !*storage)
        return -SH_EINVAL;
    if (storage [0] == '/') {
        if (s_fmt (joined, "%s", storage))
            return -SH_EINVAL;
    }
    else {
        char cwd [PATHS_MAX];
        if (!getcwd (cwd, sizeof cwd))
            return -SH_EINVAL;
        if (s_fmt (joined, "%s/%s", cwd, storage))
            return -SH_EINVAL;
    }
    size_t len = 0;
    buf [0] = 0;
    char *save = NULL;
    for (char *part = strtok_r (joined, "/", &save); part;
         part = strtok_r (NULL, "/", &save)) {
        if (!strcmp (part, "."))
            continue;
        if (!strcmp (part, "..")) {
            while (len > 0 && buf [len - 1] != '/')
                len--;
            if (len > 0)
                len--;          //  the slash before the dropped component
            buf [len] = 0;
            continue;
        }
        size_t plen = strlen (part);
        if (len + 1 + plen >= PATHS_MAX)
            return -SH_EINVAL;
        buf [len++] = '/';
        memcpy (buf + len, part, plen);
        len += plen;
        buf [len] = 0;
    }
    if (len == 0) {
        buf [0] = '/';
        buf [1] = 0;
    }
    return 0;
}

int
paths_ipc_dir (const char *storage, char *buf)
{
    char abs [PATHS_MAX];
    if (s_absolute (storage, abs))
        return -SH_EINVAL;
    const char *sep = strcmp (abs, "/") ? "/" : "";
    if (strlen (abs) + strlen (sep) + strlen ("ipc") + S_LONGEST_SOCKET <= S_SUN_PATH_MAX)
        return s_fmt (buf, "%s%sipc", abs, sep);

    //  Too long for sun_path: a short dir named by the storage path's hash.
    if (sodium_init () < 0)
        return -SH_EINVAL;
    unsigned char hash [8];
    crypto_generichash (hash, sizeof hash, (const unsigned char *) abs, strlen (abs),
                        NULL, 0);
    char name [32] = "shoal-";
    for (size_t i = 0; i < sizeof hash; i++)
        snprintf (name + 6 + 2 * i, 3, "%02x", hash [i]);
    const char *tmp = getenv ("TMPDIR");
    if (!tmp || tmp [0] != '/'
    ||  strlen (tmp) + 1 + strlen (name) + S_LONGEST_SOCKET > S_SUN_PATH_MAX)
        tmp = "/tmp";           //  a relative or long $TMPDIR would not help
    char tmpdir [PATHS_MAX];
    if (s_trimmed (tmp, tmpdir))
        return -SH_EINVAL;
    return s_fmt (buf, "%s/%s", strcmp (tmpdir, "/") ? tmpdir : "", name);
}

static int
s_endpoint (const char *storage, const char *name, char *buf)
{
    char dir [PATHS_MAX];
    if (paths_ipc_dir (storage, dir))
        return -SH_EINVAL;
    return s_fmt (buf, "ipc://%s/%s", dir, name);
}

int
paths_raft_endpoint (const char *storage, char *buf)
{
    return s_endpoint (storage, "raft.sock", buf);
}

int
paths_meta_endpoint (const char *storage, char *buf)
{
    return s_endpoint (storage, "meta.sock", buf);
}

int
paths_p2p_endpoint (const char *storage, char *buf)
{
    return s_endpoint (storage, "p2p.sock", buf);
}

int
paths_shard_endpoint (const char *storage, uint64_t uid, uint32_t shard, char *buf)
{
    char name [64];
    snprintf (name, sizeof name, "shard-%" PRIu64 "-%" PRIu32 ".sock", uid, shard);
    return s_endpoint (storage, name, buf);
}

int
paths_raft_dir (const char *storage, char *buf)
{
    char base [PATHS_MAX];
    if (s_trimmed (storage, base))
        return -SH_EINVAL;
    return s_fmt (buf, "%s/raft", strcmp (base, "/") ? base : "");
}

int
paths_collection_dir (const char *storage, uint64_t uid, char *buf)
{
    char base [PATHS_MAX];
    if (s_trimmed (storage, base))
        return -SH_EINVAL;
    return s_fmt (buf, "%s/collections/%" PRIu64, strcmp (base, "/") ? base : "", uid);
}

int
paths_shard_dir (const char *storage, uint64_t uid, uint32_t shard, char *buf)
{
    char base [PATHS_MAX];
    if (s_trimmed (storage, base))
        return -SH_EINVAL;
    return s_fmt (buf, "%s/collections/%" PRIu64 "/%" PRIu32,
                  strcmp (base, "/") ? base : "", uid, shard);
}

int
paths_mkdirs (const char *path)
{
    char buf [PATHS_MAX];
    if (!path || !*path || strlen (path) >= sizeof buf)
        return -SH_EIO;
    strcpy (buf, path);
    //  Each prefix ending before a slash, then the whole path.
    for (char *p = buf + 1; ; p++) {
        if (*p != '/' && *p != 0)
            continue;
        char saved = *p;
        *p = 0;
        if (mkdir (buf, 0755) && errno != EEXIST)
            return -SH_EIO;
        struct stat st;
        //  EEXIST also covers a file in the way: only a dir will do.
        if (stat (buf, &st) || !S_ISDIR (st.st_mode))
            return -SH_EIO;
        *p = saved;
        if (saved == 0)
            break;
        while (p [1] == '/')
            p++;                //  "a//b": one step, not an empty name
        if (p [1] == 0)
            break;              //  trailing slash
    }
    return 0;
}

static int
s_remove_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) ftw;
    int rc = (flag == FTW_DP || flag == FTW_D) ? rmdir (path) : unlink (path);
    return rc && errno != ENOENT ? -1 : 0;
}

int
paths_remove_tree (const char *path)
{
    if (!path || !*path)
        return -SH_EIO;
    struct stat st;
    if (lstat (path, &st)) {
        //  rm -rf of what is not there is done.
        return errno == ENOENT ? 0 : -SH_EIO;
    }
    //  FTW_PHYS: a symlink inside is removed, never followed out of the tree.
    if (nftw (path, s_remove_one, 32, FTW_DEPTH | FTW_PHYS) != 0)
        return -SH_EIO;
    return 0;
}

int
paths_shard_direct (const char *storage, uint64_t uid, uint32_t shard, char *buf)
{
    char dir [PATHS_MAX];
    if (paths_ipc_dir (storage, dir))
        return -SH_EINVAL;
    //  Shorter than the zmq endpoint's name, so it fits sun_path too.
    return s_fmt (buf, "%s/srd-%" PRIu64 "-%" PRIu32 ".sock", dir, uid, shard);
}
