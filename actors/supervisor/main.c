/*  main: the one shoal binary. Started by a user it is the supervisor
    (supervisor.h): it parses the public command line, loads the layered
    config and runs the node. Re-executed by the supervisor with the hidden
    first argument --actor it is one actor process:

        shoal --actor raft|gateway|p2p|shard --peer-id N
              [--collection-uid U --shard-id S]

    reading its config from the JSON in SHOAL_RUN_CONFIG (actors/actors.h).
*/
#include "actors/actors.h"
#include "actors/supervisor/supervisor.h"
#include "common/config.h"
#include "common/err.h"
#include "common/log.h"

#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#ifndef SHOAL_VERSION
#define SHOAL_VERSION "0.0.0"
#endif
//  The Qdrant REST API version shoal answers as.
#define SHOAL_QDRANT_API "1.19.0"

extern char **environ;

//  Strict unsigned decimal in [min, max]; 0 or -SH_EINVAL.
static int
s_parse_u64 (const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!text || *text < '0' || *text > '9')
        return -SH_EINVAL;
    errno = 0;
    char *end;
    unsigned long long value = strtoull (text, &end, 10);
    if (errno || *end || value < min || value > max)
        return -SH_EINVAL;
    *out = (uint64_t) value;
    return 0;
}

//  An actor's exit code must survive the trip through the 8-bit exit status:
//  a negative SH_E code could wrap to 0 and look like a clean exit.
static int
s_exit_code (int rc)
{
    return rc >= 0 && rc <= 125 ? rc : 1;
}

static int
s_actor_main (int argc, char **argv)
{
    const char *actor = NULL;
    uint64_t peer_id = 0, uid = 0, shard_id = 0;
    bool have_uid = false, have_shard = false;
    for (int i = 1; i < argc; i++) {
        const char *flag = argv [i];
        const char *value = i + 1 < argc ? argv [i + 1] : NULL;
        int rc = 0;
        if (!value)
            rc = -SH_EINVAL;
        else
        if (streq (flag, "--actor"))
            actor = value;
        else
        if (streq (flag, "--peer-id"))
            rc = s_parse_u64 (value, 1, SUPERVISOR_PEER_ID_MAX, &peer_id);
        else
        if (streq (flag, "--collection-uid")) {
            rc = s_parse_u64 (value, 1, UINT64_MAX, &uid);
            have_uid = true;
        }
        else
        if (streq (flag, "--shard-id")) {
            rc = s_parse_u64 (value, 0, UINT32_MAX, &shard_id);
            have_shard = true;
        }
        else
            rc = -SH_EINVAL;
        if (rc) {
            fprintf (stderr, "shoal: bad actor argument %s%s%s\n", flag,
                     value ? " " : "", value ? value : "");
            return 2;
        }
        i++;
    }
    bool is_shard = actor && streq (actor, "shard");
    if (!actor || (!is_shard && !streq (actor, "raft") && !streq (actor, "gateway")
                   && !streq (actor, "p2p"))
    ||  peer_id == 0 || (is_shard && !(have_uid && have_shard))
    ||  (!is_shard && (have_uid || have_shard))) {
        fprintf (stderr, "shoal: usage: shoal --actor raft|gateway|p2p|shard --peer-id N"
                         " [--collection-uid U --shard-id S]\n");
        return 2;
    }
    char tag [64];
    if (is_shard)
        snprintf (tag, sizeof tag, "shard:%" PRIu64 "/%" PRIu64, uid, shard_id);
    else
        snprintf (tag, sizeof tag, "%s", actor);
    log_set_actor (tag);
    //  Exec'ed through /proc/self/exe the kernel names us "exe": name every
    //  process of a node "shoal", as ps and pgrep users expect.
    prctl (PR_SET_NAME, "shoal");

    const char *text = getenv (SUPERVISOR_RUN_CONFIG_ENV);
    if (!text) {
        log_error ("%s is not set: actors are started by the supervisor",
                   SUPERVISOR_RUN_CONFIG_ENV);
        return 2;
    }
    char err [512] = "";
    config_t *config = NULL;
    if (config_from_json (text, &config, err, sizeof err)) {
        log_error ("bad %s: %s", SUPERVISOR_RUN_CONFIG_ENV, err);
        return 2;
    }
    log_set_level ((log_level_t) config->log_level);

    int rc;
    if (is_shard)
        rc = shard_actor_main (config, peer_id, uid, (uint32_t) shard_id);
    else
    if (streq (actor, "raft"))
        rc = raft_actor_main (config, peer_id);
    else
    if (streq (actor, "p2p"))
        rc = p2p_actor_main (config, peer_id);
    else
        rc = gateway_actor_main (config, peer_id);
    config_destroy (&config);
    if (rc)
        log_info ("exiting with code %d", rc);
    return s_exit_code (rc);
}

//  --generate-cluster-key: a fresh CURVE key pair as the two YAML lines of
//  cluster.p2p (Z85 holds no quote or backslash, so double quotes are safe).
static int
s_generate_cluster_key (void)
{
    char public_key [41], secret_key [41];
    if (zmq_curve_keypair (public_key, secret_key) != 0) {
        fprintf (stderr, "shoal: cannot generate a CURVE key pair: %s\n",
                 zmq_strerror (zmq_errno ()));
        return 1;
    }
    printf ("curve_public_key: \"%s\"\ncurve_secret_key: \"%s\"\n", public_key,
            secret_key);
    return fflush (stdout) == 0 ? 0 : 1;
}

int
main (int argc, char **argv)
{
    if (argc > 1 && streq (argv [1], "--actor")) {
        //  Actors allocate and free request-sized buffers (a 1,000-point
        //  upsert is MBs of JSON) on every request; glibc's defaults hand
        //  anything over 128 KiB back to the kernel at once, and the page
        //  faults to get it again cost more than the parsing. Keep it.
        mallopt (M_MMAP_THRESHOLD, 64 * 1024 * 1024);
        mallopt (M_TRIM_THRESHOLD, 256 * 1024 * 1024);
        return s_actor_main (argc, argv);
    }

    log_set_actor ("supervisor");
    char err [512] = "";
    cli_t cli;
    memset (&cli, 0, sizeof cli);
    if (cli_parse (argc, argv, &cli, err, sizeof err)) {
        fprintf (stderr, "shoal: %s\nTry 'shoal --help' for more information.\n", err);
        cli_reset (&cli);
        return 2;
    }
    if (cli.help) {
        fputs (cli_usage (), stdout);
        cli_reset (&cli);
        return 0;
    }
    if (cli.generate_cluster_key) {
        cli_reset (&cli);
        return s_generate_cluster_key ();
    }
    if (cli.version) {
        printf ("shoal %s (Qdrant API %s)\n", SHOAL_VERSION, SHOAL_QDRANT_API);
        cli_reset (&cli);
        return 0;
    }
    config_t *config = NULL;
    if (config_load (cli.config_path, environ, &config, err, sizeof err)) {
        fprintf (stderr, "shoal: %s\n", err);
        cli_reset (&cli);
        return 2;
    }
    log_set_level ((log_level_t) config->log_level);
    if (cli.disable_telemetry)
        config->telemetry_disabled = true;

    supervisor_t *supervisor = NULL;
    int rc = supervisor_new (config, &cli, &supervisor, err, sizeof err);
    config_destroy (&config);
    cli_reset (&cli);
    if (rc) {
        log_error ("%s", err);
        return 1;
    }
    rc = supervisor_run (supervisor);
    supervisor_destroy (&supervisor);
    return rc ? 1 : 0;
}
