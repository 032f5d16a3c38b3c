/*  config: the node's settings, layered as Qdrant layers them:
      1. built-in defaults (the same as Qdrant's),
      2. config/config.yaml, config/$RUN_MODE.yaml (RUN_MODE defaults to
         "development"), config/local.yaml, relative to the working dir,
         each only if it exists,
      3. the file given with --config-path (must exist),
      4. environment variables QDRANT__SECTION__KEY=value and
         SHOAL__SECTION__KEY=value (SHOAL__ wins over QDRANT__), where
         section and key are lowercased and "__" separates levels.
    YAML is parsed with libyaml into a JSON tree (jansson); layers are merged
    object by object; then the keys shoal uses are read into config_t with
    type checks. Unknown keys are kept in the tree and logged at debug level,
    never fatal. A malformed value of a key shoal uses is an error.

    Children (actors) do not re-read files: the supervisor hands them the
    merged tree as JSON (config_to_json / config_from_json).
*/
#ifndef SH_CONFIG_H
#define SH_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    //  log_level: "info" default
    int log_level;                  //  log_level_t
    //  service.*
    char *host;                     //  service.host, "0.0.0.0"
    int http_port;                  //  service.http_port, 6333
    int grpc_port;                  //  service.grpc_port, 6334 (reserved)
    char *api_key;                  //  service.api_key, NULL = none
    char *read_only_api_key;        //  service.read_only_api_key, NULL = none
    size_t max_request_size_mb;     //  service.max_request_size_mb, 32
    int max_workers;                //  service.max_workers, 0 = auto
    bool enable_cors;               //  service.enable_cors, true
    //  cluster.*
    bool cluster_enabled;           //  cluster.enabled, false
    int p2p_port;                   //  cluster.p2p.port, 6335
    int tick_period_ms;             //  cluster.consensus.tick_period_ms, 100
    int compact_wal_entries;        //  cluster.consensus.compact_wal_entries, 128
    //  cluster.p2p.curve_public_key / curve_secret_key: the cluster's CURVE
    //  key pair (Z85, 40 characters each), both or neither; NULL = plain tcp.
    //  config_load checks that the public key belongs to the secret key.
    char *curve_public_key;
    char *curve_secret_key;
    //  storage.*
    char *storage_path;             //  storage.storage_path, "./storage"
    char *snapshots_path;           //  storage.snapshots_path, "./snapshots"
    char *node_type;                //  storage.node_type, "Normal" | "Listener"
    //  telemetry_disabled: true with --disable-telemetry
    bool telemetry_disabled;
    json_t *tree;                   //  the merged tree, every key given
} config_t;

typedef struct {
    char *config_path;              //  --config-path FILE
    char *uri;                      //  --uri URI or QDRANT_URI
    char *bootstrap;                //  --bootstrap URI or QDRANT_BOOTSTRAP
    bool reinit;                    //  --reinit
    bool disable_telemetry;         //  --disable-telemetry
    bool help;                      //  --help / -h
    bool version;                   //  --version / -V
    bool generate_cluster_key;      //  --generate-cluster-key
} cli_t;

//  Parses the public command line (argv[0] is the program). Also reads
//  QDRANT_URI / QDRANT_BOOTSTRAP when the flags are absent. Unknown flags and
//  missing values: -SH_EINVAL with a message in err. Free with cli_reset.
int cli_parse (int argc, char **argv, cli_t *out, char *err, size_t errlen);
void cli_reset (cli_t *cli);
//  The --help text.
const char *cli_usage (void);

//  Loads every layer (files relative to the working dir, config_path if not
//  NULL, then the environment `envp`, NULL-terminated "K=V" strings; pass
//  `environ`). -SH_EINVAL with a message in err (file, key and reason).
int config_load (const char *config_path, char **envp, config_t **out, char *err,
                 size_t errlen);
//  Built-in defaults only.
config_t *config_new_default (void);
//  The merged tree as compact JSON text (yours) and back.
char *config_to_json (const config_t *self);
int config_from_json (const char *text, config_t **out, char *err, size_t errlen);
void config_destroy (config_t **self_p);

//  Lower-level pieces, exposed for the unit tests:
//  YAML text -> JSON tree (a mapping -> object, scalars typed as YAML 1.2
//  core schema: null, true/false, ints, floats, else strings).
int config_yaml_to_json (const char *text, size_t len, json_t **out, char *err,
                         size_t errlen);
//  Applies one env var NAME=VALUE to tree if it has the QDRANT__/SHOAL__ prefix.
//  Returns 1 if applied, 0 if not an override.
int config_apply_env (json_t *tree, const char *name, const char *value);

#endif
