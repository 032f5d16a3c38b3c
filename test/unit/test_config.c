/*  test_config: the YAML reader, layering of files and environment, typed
    reads with their error messages, the JSON hand-over to actors and the
    command line. File tests run in a fresh mkdtemp dir that is the working
    dir, since the config/ files are read relative to it.
*/
#include "common/config.h"
#include "common/err.h"
#include "common/log.h"
#include "common/paths.h"
#include "test/unit/check_main.h"
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char s_tmp [512];            //  this test's working dir
static char s_cwd [PATHS_MAX];      //  working dir to go back to
static char s_err [512];            //  last error message

static void
s_setup (void)
{
    ck_assert_ptr_nonnull (getcwd (s_cwd, sizeof s_cwd));
    const char *base = getenv ("TMPDIR");
    snprintf (s_tmp, sizeof s_tmp, "%s/test_config.XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull (mkdtemp (s_tmp));
    ck_assert_int_eq (chdir (s_tmp), 0);
    s_err [0] = 0;
}

static void
s_teardown (void)
{
    ck_assert_int_eq (chdir (s_cwd), 0);
    ck_assert_int_eq (paths_remove_tree (s_tmp), 0);
}

//  Writes text to path (relative to the test dir), making its dir.
static void
s_write (const char *path, const char *text)
{
    char dir [256];
    snprintf (dir, sizeof dir, "%s", path);
    char *slash = strrchr (dir, '/');
    if (slash) {
        *slash = 0;
        ck_assert_int_eq (paths_mkdirs (dir), 0);
    }
    FILE *f = fopen (path, "w");
    ck_assert_ptr_nonnull (f);
    fputs (text, f);
    fclose (f);
}

static json_t *
s_yaml (const char *text)
{
    json_t *tree = NULL;
    int rc = config_yaml_to_json (text, strlen (text), &tree, s_err, sizeof s_err);
    ck_assert_msg (rc == 0, "YAML rejected: %s", s_err);
    ck_assert_ptr_nonnull (tree);
    return tree;
}

//  Expects the YAML to be refused with a "line:col: " message holding needle.
static void
s_yaml_fails (const char *text, const char *needle)
{
    json_t *tree = (json_t *) 1;
    int rc = config_yaml_to_json (text, strlen (text), &tree, s_err, sizeof s_err);
    ck_assert_int_eq (rc, -SH_EINVAL);
    ck_assert_ptr_null (tree);
    int line = 0, col = 0;
    ck_assert_msg (sscanf (s_err, "%d:%d: ", &line, &col) == 2 && line > 0 && col > 0,
                   "no line:col in \"%s\"", s_err);
    ck_assert_msg (strstr (s_err, needle), "\"%s\" lacks \"%s\"", s_err, needle);
}

static config_t *
s_load (const char *path, char **envp)
{
    config_t *cfg = NULL;
    int rc = config_load (path, envp, &cfg, s_err, sizeof s_err);
    ck_assert_msg (rc == 0, "config_load failed: %s", s_err);
    ck_assert_ptr_nonnull (cfg);
    return cfg;
}

//  Expects config_load to fail with exactly this message, or one holding
//  needle when exact is false.
static void
s_load_fails (const char *path, char **envp, const char *text, bool exact)
{
    config_t *cfg = (config_t *) 1;
    int rc = config_load (path, envp, &cfg, s_err, sizeof s_err);
    ck_assert_int_eq (rc, -SH_EINVAL);
    ck_assert_ptr_null (cfg);
    if (exact)
        ck_assert_str_eq (s_err, text);
    else
        ck_assert_msg (strstr (s_err, text), "\"%s\" lacks \"%s\"", s_err, text);
}

static const json_t *
s_at (const json_t *tree, const char *a, const char *b, const char *c)
{
    const json_t *node = json_object_get (tree, a);
    if (b)
        node = json_object_get (node, b);
    if (c)
        node = json_object_get (node, c);
    return node;
}

//  -----------------------------------------------------------------------
//  YAML

START_TEST (test_yaml_scalars_are_typed_as_the_core_schema)
{
    json_t *t = s_yaml (
        "n1: ~\nn2: null\nn3:\nn4: NULL\n"
        "b1: true\nb2: False\nb3: TRUE\nb4: yes\n"
        "i1: 42\ni2: -7\ni3: 0x1F\ni4: 0o17\ni5: +3\ni6: 007\n"
        "f1: 1.5\nf2: 2e3\nf3: .5\nf4: -1.25E-2\n"
        "s1: \"42\"\ns2: 'true'\ns3: hello world\ns4: .inf\ns5: 0x\ns6: !!str 123\n"
        "s7: \"\"\ns8: 1.2.3\n"
        "big: 99999999999999999999\n");
    ck_assert (json_is_null (json_object_get (t, "n1")));
    ck_assert (json_is_null (json_object_get (t, "n2")));
    ck_assert (json_is_null (json_object_get (t, "n3")));
    ck_assert (json_is_null (json_object_get (t, "n4")));
    ck_assert (json_is_true (json_object_get (t, "b1")));
    ck_assert (json_is_false (json_object_get (t, "b2")));
    ck_assert (json_is_true (json_object_get (t, "b3")));
    //  YAML 1.2: "yes" is just text.
    ck_assert_str_eq (json_string_value (json_object_get (t, "b4")), "yes");
    ck_assert_int_eq (json_integer_value (json_object_get (t, "i1")), 42);
    ck_assert_int_eq (json_integer_value (json_object_get (t, "i2")), -7);
    ck_assert_int_eq (json_integer_value (json_object_get (t, "i3")), 31);
    ck_assert_int_eq (json_integer_value (json_object_get (t, "i4")), 15);
    ck_assert_int_eq (json_integer_value (json_object_get (t, "i5")), 3);
    ck_assert_int_eq (json_integer_value (json_object_get (t, "i6")), 7);
    ck_assert (json_is_real (json_object_get (t, "f1")));
    ck_assert_double_eq (json_real_value (json_object_get (t, "f1")), 1.5);
    ck_assert_double_eq (json_real_value (json_object_get (t, "f2")), 2000.0);
    ck_assert_double_eq (json_real_value (json_object_get (t, "f3")), 0.5);
    ck_assert_double_eq (json_real_value (json_object_get (t, "f4")), -0.0125);
    ck_assert_str_eq (json_string_value (json_object_get (t, "s1")), "42");
    ck_assert_str_eq (json_string_value (json_object_get (t, "s2")), "true");
    ck_assert_str_eq (json_string_value (json_object_get (t, "s3")), "hello world");
    ck_assert_str_eq (json_string_value (json_object_get (t, "s4")), ".inf");
    ck_assert_str_eq (json_string_value (json_object_get (t, "s5")), "0x");
    ck_assert_str_eq (json_string_value (json_object_get (t, "s6")), "123");
    ck_assert_str_eq (json_string_value (json_object_get (t, "s7")), "");
    ck_assert_str_eq (json_string_value (json_object_get (t, "s8")), "1.2.3");
    ck_assert (json_is_real (json_object_get (t, "big")));
    json_decref (t);
}
END_TEST

START_TEST (test_yaml_collections_become_objects_and_arrays)
{
    json_t *t = s_yaml (
        "# a comment\n"
        "service:\n"
        "  http_port: 6333   # trailing comment\n"
        "  hosts:\n"
        "    - a\n"
        "    - 2\n"
        "    - {x: 1, y: [true, ~]}\n"
        "flow: [1, [2, 3], {}]\n"
        "empty_list: []\n"
        "block: |\n"
        "  line one\n"
        "  line two\n");
    ck_assert_int_eq (json_integer_value (s_at (t, "service", "http_port", NULL)), 6333);
    const json_t *hosts = s_at (t, "service", "hosts", NULL);
    ck_assert (json_is_array (hosts));
    ck_assert_uint_eq (json_array_size (hosts), 3);
    ck_assert_str_eq (json_string_value (json_array_get (hosts, 0)), "a");
    ck_assert_int_eq (json_integer_value (json_array_get (hosts, 1)), 2);
    const json_t *inner = json_array_get (hosts, 2);
    ck_assert_int_eq (json_integer_value (json_object_get (inner, "x")), 1);
    ck_assert (json_is_true (json_array_get (json_object_get (inner, "y"), 0)));
    ck_assert (json_is_null (json_array_get (json_object_get (inner, "y"), 1)));
    const json_t *flow = json_object_get (t, "flow");
    ck_assert_uint_eq (json_array_size (flow), 3);
    ck_assert_uint_eq (json_array_size (json_array_get (flow, 1)), 2);
    ck_assert (json_is_object (json_array_get (flow, 2)));
    ck_assert_uint_eq (json_array_size (json_object_get (t, "empty_list")), 0);
    ck_assert_str_eq (json_string_value (json_object_get (t, "block")),
                      "line one\nline two\n");
    json_decref (t);
}
END_TEST

START_TEST (test_yaml_empty_or_comment_only_is_an_empty_mapping)
{
    const char *texts [] = { "", "# nothing here\n\n# at all\n", "---\n", "~\n" };
    for (size_t i = 0; i < 4; i++) {
        json_t *t = s_yaml (texts [i]);
        ck_assert (json_is_object (t));
        ck_assert_uint_eq (json_object_size (t), 0);
        json_decref (t);
    }
}
END_TEST

START_TEST (test_yaml_malformed_input_names_line_and_column)
{
    s_yaml_fails ("a: [1, 2\n", "");
    s_yaml_fails ("service:\n  port: 1\n bad: 2\n", "");
    s_yaml_fails ("a: b: c\n", "mapping values are not allowed");
    s_yaml_fails ("a:\n\t- 1\n", "");
    s_yaml_fails ("key: \"unterminated\n", "");
    s_yaml_fails ("a: \xff\xfe\n", "");
    //  The line is right: the error is on line 3.
    s_yaml_fails ("a: 1\nb: 2\nc: [\n", "");
    int line = 0;
    sscanf (s_err, "%d:", &line);
    ck_assert_int_ge (line, 3);
}
END_TEST

START_TEST (test_yaml_anchors_aliases_duplicates_and_odd_shapes_are_refused)
{
    s_yaml_fails ("base: &b {x: 1}\nother: *b\n", "anchors (&b) are not supported");
    s_yaml_fails ("a: 1\nb: 2\na: 3\n", "duplicate key \"a\"");
    s_yaml_fails ("a: 1\n---\nb: 2\n", "more than one YAML document");
    s_yaml_fails ("? [a, b]\n: 1\n", "mapping key");
    //  Nesting deeper than any config goes: refused, not a deep recursion.
    char deep [400];
    memset (deep, '[', 200);
    memset (deep + 200, ']', 200);
    json_t *t = NULL;
    ck_assert_int_eq (config_yaml_to_json (deep, sizeof deep, &t, s_err, sizeof s_err),
                      -SH_EINVAL);
    ck_assert_ptr_nonnull (strstr (s_err, "nested deeper"));
    ck_assert_int_eq (config_yaml_to_json (NULL, 0, &t, s_err, sizeof s_err), -SH_EINVAL);
}
END_TEST

//  -----------------------------------------------------------------------
//  Layers

START_TEST (test_defaults_are_qdrants)
{
    char *envp [] = { NULL };
    config_t *cfg = s_load (NULL, envp);
    config_t *def = config_new_default ();
    config_t *both [] = { cfg, def };
    for (int i = 0; i < 2; i++) {
        config_t *c = both [i];
        ck_assert_int_eq (c->log_level, LOG_LEVEL_INFO);
        ck_assert_str_eq (c->host, "0.0.0.0");
        ck_assert_int_eq (c->http_port, 6333);
        ck_assert_int_eq (c->grpc_port, 6334);
        ck_assert_ptr_null (c->api_key);
        ck_assert_ptr_null (c->read_only_api_key);
        ck_assert_uint_eq (c->max_request_size_mb, 32);
        ck_assert_int_eq (c->max_workers, 0);
        ck_assert (c->enable_cors);
        ck_assert (!c->cluster_enabled);
        ck_assert_int_eq (c->p2p_port, 6335);
        ck_assert_int_eq (c->tick_period_ms, 100);
        ck_assert_int_eq (c->compact_wal_entries, 128);
        ck_assert_str_eq (c->storage_path, "./storage");
        ck_assert_str_eq (c->snapshots_path, "./snapshots");
        ck_assert_str_eq (c->node_type, "Normal");
        ck_assert (!c->telemetry_disabled);
        ck_assert (json_is_object (c->tree));
    }
    ck_assert (json_equal (cfg->tree, def->tree));
    config_destroy (&cfg);
    config_destroy (&def);
    ck_assert_ptr_null (cfg);
    config_destroy (&cfg);          //  NULL-safe
}
END_TEST

START_TEST (test_files_layer_in_qdrants_order)
{
    s_write ("config/config.yaml",
             "log_level: WARN\n"
             "service:\n  http_port: 1001\n  host: 127.0.0.1\n  grpc_port: 2001\n"
             "storage:\n  storage_path: /from/config\n");
    s_write ("config/development.yaml", "service:\n  http_port: 1002\n");
    s_write ("config/production.yaml", "service:\n  http_port: 1003\n");
    s_write ("config/local.yaml", "service:\n  grpc_port: 2004\n");
    s_write ("custom.yaml", "storage:\n  snapshots_path: /from/custom\n");

    char *dev [] = { NULL };
    config_t *cfg = s_load (NULL, dev);
    ck_assert_int_eq (cfg->log_level, LOG_LEVEL_WARN);
    ck_assert_int_eq (cfg->http_port, 1002);         //  development over config
    ck_assert_int_eq (cfg->grpc_port, 2004);         //  local over config
    ck_assert_str_eq (cfg->host, "127.0.0.1");       //  deep merge kept it
    ck_assert_str_eq (cfg->storage_path, "/from/config");
    ck_assert_str_eq (cfg->snapshots_path, "./snapshots");
    config_destroy (&cfg);

    char *prod [] = { "PATH=/bin", "RUN_MODE=production", NULL };
    cfg = s_load ("custom.yaml", prod);
    ck_assert_int_eq (cfg->http_port, 1003);
    ck_assert_str_eq (cfg->snapshots_path, "/from/custom");
    ck_assert_str_eq (cfg->storage_path, "/from/config");
    config_destroy (&cfg);

    //  --config-path comes after local.yaml.
    s_write ("custom.yaml", "service:\n  grpc_port: 2005\n");
    cfg = s_load ("custom.yaml", dev);
    ck_assert_int_eq (cfg->grpc_port, 2005);
    config_destroy (&cfg);
}
END_TEST

START_TEST (test_yml_extension_is_read_too)
{
    s_write ("config/config.yml", "service:\n  http_port: 4242\n");
    char *envp [] = { NULL };
    config_t *cfg = s_load (NULL, envp);
    ck_assert_int_eq (cfg->http_port, 4242);
    config_destroy (&cfg);
}
END_TEST

START_TEST (test_merge_replaces_arrays_and_keeps_sections_an_empty_layer_names)
{
    s_write ("config/config.yaml",
             "service:\n  http_port: 1001\n  api_key: secret\n"
             "extra:\n  list: [1, 2, 3]\n  keep: yes\n");
    //  "service:" with everything commented out is null: it must not wipe
    //  the section; a null scalar does replace (api_key: null = none).
    s_write ("config/local.yaml",
             "service:\n  # http_port: 9\n"
             "extra:\n  list: [4]\n");
    s_write ("over.yaml", "service:\n  api_key: null\n");
    char *envp [] = { NULL };
    config_t *cfg = s_load ("over.yaml", envp);
    ck_assert_int_eq (cfg->http_port, 1001);
    ck_assert_ptr_null (cfg->api_key);
    const json_t *list = s_at (cfg->tree, "extra", "list", NULL);
    ck_assert_uint_eq (json_array_size (list), 1);
    ck_assert_int_eq (json_integer_value (json_array_get (list, 0)), 4);
    ck_assert_str_eq (json_string_value (s_at (cfg->tree, "extra", "keep", NULL)), "yes");
    config_destroy (&cfg);
}
END_TEST

START_TEST (test_missing_config_path_and_bad_files_are_errors)
{
    char *envp [] = { NULL };
    s_load_fails ("nope.yaml", envp, "nope.yaml: No such file or directory", true);
    ck_assert_int_eq (mkdir ("adir", 0755), 0);
    s_load_fails ("adir", envp, "adir: not a regular file", true);

    s_write ("list.yaml", "- 1\n- 2\n");
    s_load_fails ("list.yaml", envp, "list.yaml: the top level must be a mapping", true);

    //  A malformed file: "file:line:col: reason".
    s_write ("config/config.yaml", "service:\n  http_port: 1\n bad: [\n");
    config_t *cfg = NULL;
    ck_assert_int_eq (config_load (NULL, envp, &cfg, s_err, sizeof s_err), -SH_EINVAL);
    int line = 0, col = 0;
    ck_assert_msg (sscanf (s_err, "config/config.yaml:%d:%d: ", &line, &col) == 2,
                   "got \"%s\"", s_err);
    ck_assert_int_eq (line, 3);
}
END_TEST

START_TEST (test_unknown_keys_are_kept_not_fatal)
{
    s_write ("config/config.yaml",
             "storage:\n  optimizers:\n    deleted_threshold: 0.2\n"
             "  hnsw_index:\n    m: 16\n"
             "service:\n  enable_tls: false\n"
             "totally_new_section:\n  x: [1, 2]\n");
    char *envp [] = { "QDRANT__STORAGE__WAL__WAL_CAPACITY_MB=64", NULL };
    log_set_level (LOG_LEVEL_DEBUG);        //  each unknown key is logged
    config_t *cfg = s_load (NULL, envp);
    ck_assert_double_eq (
        json_real_value (s_at (cfg->tree, "storage", "optimizers", "deleted_threshold")), 0.2);
    ck_assert_int_eq (json_integer_value (s_at (cfg->tree, "storage", "hnsw_index", "m")), 16);
    ck_assert (json_is_false (s_at (cfg->tree, "service", "enable_tls", NULL)));
    ck_assert_int_eq (json_integer_value (s_at (cfg->tree, "storage", "wal", "wal_capacity_mb")),
                      64);
    ck_assert (json_is_array (s_at (cfg->tree, "totally_new_section", "x", NULL)));
    config_destroy (&cfg);
}
END_TEST

//  -----------------------------------------------------------------------
//  Environment

START_TEST (test_env_overrides_set_typed_values)
{
    json_t *t = json_object ();
    ck_assert_int_eq (config_apply_env (t, "QDRANT__SERVICE__HTTP_PORT", "7000"), 1);
    ck_assert_int_eq (json_integer_value (s_at (t, "service", "http_port", NULL)), 7000);
    ck_assert_int_eq (config_apply_env (t, "QDRANT__CLUSTER__ENABLED", "true"), 1);
    ck_assert (json_is_true (s_at (t, "cluster", "enabled", NULL)));
    ck_assert_int_eq (config_apply_env (t, "QDRANT__LOG_LEVEL", "debug"), 1);
    ck_assert_str_eq (json_string_value (json_object_get (t, "log_level")), "debug");
    ck_assert_int_eq (config_apply_env (t, "SHOAL__CLUSTER__P2P__PORT", "6400"), 1);
    ck_assert_int_eq (json_integer_value (s_at (t, "cluster", "p2p", "port")), 6400);
    ck_assert_int_eq (config_apply_env (t, "QDRANT__STORAGE__RATIO", "0.5"), 1);
    ck_assert_double_eq (json_real_value (s_at (t, "storage", "ratio", NULL)), 0.5);
    //  Text that only looks like an odd number stays text (keys, names).
    ck_assert_int_eq (config_apply_env (t, "QDRANT__SERVICE__API_KEY", "007123"), 1);
    ck_assert_str_eq (json_string_value (s_at (t, "service", "api_key", NULL)), "007123");
    ck_assert_int_eq (config_apply_env (t, "QDRANT__SERVICE__API_KEY", "0xdead"), 1);
    ck_assert_str_eq (json_string_value (s_at (t, "service", "api_key", NULL)), "0xdead");
    ck_assert_int_eq (config_apply_env (t, "QDRANT__SERVICE__API_KEY", "hello world"), 1);
    ck_assert_str_eq (json_string_value (s_at (t, "service", "api_key", NULL)),
                      "hello world");
    //  A scalar in the way of a deeper key becomes a section.
    ck_assert_int_eq (config_apply_env (t, "QDRANT__LOG_LEVEL__X", "1"), 1);
    ck_assert_int_eq (json_integer_value (s_at (t, "log_level", "x", NULL)), 1);
    //  An empty value does not wipe a section.
    ck_assert_int_eq (config_apply_env (t, "QDRANT__SERVICE", ""), 1);
    ck_assert (json_is_object (json_object_get (t, "service")));
    json_decref (t);
}
END_TEST

START_TEST (test_env_names_that_are_not_overrides_are_ignored)
{
    json_t *t = json_object ();
    const char *names [] = { "PATH", "QDRANT_URI", "QDRANT__", "SHOAL__",
                             "QDRANT____PORT", "QDRANT__SERVICE__", "qdrant__service__x",
                             "QDRANT_SERVICE__HTTP_PORT", "XQDRANT__A",
                             "QDRANT__\xff__X", "QDRANT__A__\xc3" };
    for (size_t i = 0; i < sizeof names / sizeof names [0]; i++)
        ck_assert_msg (config_apply_env (t, names [i], "1") == 0, "%s applied", names [i]);
    ck_assert_uint_eq (json_object_size (t), 0);
    ck_assert_int_eq (config_apply_env (NULL, "QDRANT__A", "1"), 0);
    json_decref (t);
}
END_TEST

START_TEST (test_env_beats_files_and_shoal_beats_qdrant)
{
    s_write ("config/config.yaml", "service:\n  http_port: 1001\n  grpc_port: 2001\n");
    s_write ("custom.yaml", "service:\n  http_port: 1002\n");
    //  SHOAL__ wins whichever comes first in the environment.
    char *envp [] = {
        "SHOAL__SERVICE__HTTP_PORT=7001",
        "QDRANT__SERVICE__HTTP_PORT=7000",
        "QDRANT__SERVICE__GRPC_PORT=7002",
        "QDRANT__LOG_LEVEL=debug",
        "QDRANT__SERVICE__API_KEY=007123",
        "QDRANT__SERVICE__ENABLE_CORS=false",
        "QDRANT__CLUSTER__ENABLED=true",
        "QDRANT__CLUSTER__CONSENSUS__TICK_PERIOD_MS=50",
        "QDRANT__STORAGE__STORAGE_PATH=/env/storage",
        "QDRANT__STORAGE__NODE_TYPE=Listener",
        "SHOAL__SERVICE__READ_ONLY_API_KEY=ro",
        NULL
    };
    config_t *cfg = s_load ("custom.yaml", envp);
    ck_assert_int_eq (cfg->http_port, 7001);
    ck_assert_int_eq (cfg->grpc_port, 7002);
    ck_assert_int_eq (cfg->log_level, LOG_LEVEL_DEBUG);
    ck_assert_str_eq (cfg->api_key, "007123");
    ck_assert_str_eq (cfg->read_only_api_key, "ro");
    ck_assert (!cfg->enable_cors);
    ck_assert (cfg->cluster_enabled);
    ck_assert_int_eq (cfg->tick_period_ms, 50);
    ck_assert_str_eq (cfg->storage_path, "/env/storage");
    ck_assert_str_eq (cfg->node_type, "Listener");
    config_destroy (&cfg);
}
END_TEST

START_TEST (test_env_number_forms_still_read_where_numbers_are_expected)
{
    char *envp [] = { "QDRANT__SERVICE__HTTP_PORT=0x1B58", "QDRANT__SERVICE__GRPC_PORT=+7001",
                      NULL };
    config_t *cfg = s_load (NULL, envp);
    ck_assert_int_eq (cfg->http_port, 7000);
    ck_assert_int_eq (cfg->grpc_port, 7001);
    config_destroy (&cfg);
}
END_TEST

START_TEST (test_env_bad_value_is_an_error)
{
    char *envp [] = { "QDRANT__SERVICE__HTTP_PORT=abc", NULL };
    s_load_fails (NULL, envp,
                  "config key service.http_port: expected a port number (1-65535), got \"abc\"",
                  true);
}
END_TEST

//  -----------------------------------------------------------------------
//  Typed reads

START_TEST (test_bad_types_and_ranges_are_errors_naming_the_key)
{
    static const struct {
        const char *yaml;
        const char *message;
    } cases [] = {
        { "service:\n  http_port: abc\n",
          "config key service.http_port: expected a port number (1-65535), got \"abc\"" },
        { "service:\n  http_port: 70000\n",
          "config key service.http_port: expected a port number (1-65535), got 70000" },
        { "service:\n  http_port: 0\n",
          "config key service.http_port: expected a port number (1-65535), got 0" },
        { "service:\n  http_port: 6333.5\n",
          "config key service.http_port: expected a port number (1-65535), got 6333.5" },
        { "service:\n  http_port: null\n",
          "config key service.http_port: expected a port number (1-65535), got null" },
        { "cluster:\n  p2p:\n    port: [1]\n",
          "config key cluster.p2p.port: expected a port number (1-65535), got [1]" },
        { "service:\n  enable_cors: maybe\n",
          "config key service.enable_cors: expected true or false, got \"maybe\"" },
        { "cluster:\n  enabled: 1\n",
          "config key cluster.enabled: expected true or false, got 1" },
        { "storage:\n  node_type: Archive\n",
          "config key storage.node_type: expected \"Normal\" or \"Listener\", got \"Archive\"" },
        { "log_level: loud\n",
          "config key log_level: expected a log level (error, warn, info, debug or trace), "
          "got \"loud\"" },
        { "log_level: 3\n",
          "config key log_level: expected a log level (error, warn, info, debug or trace), "
          "got 3" },
        { "service: 5\n", "config key service: expected a mapping, got 5" },
        { "cluster:\n  consensus: [1]\n",
          "config key cluster.consensus: expected a mapping, got [1]" },
        { "service:\n  host: {a: 1}\n",
          "config key service.host: expected a string, got {\"a\":1}" },
        { "service:\n  host: \"\"\n",
          "config key service.host: expected a non-empty string, got \"\"" },
        { "storage:\n  storage_path: ~\n",
          "config key storage.storage_path: expected a string, got null" },
        { "service:\n  max_request_size_mb: 0\n",
          "config key service.max_request_size_mb: expected a size in MB (1-1048576), got 0" },
        { "service:\n  max_workers: -1\n",
          "config key service.max_workers: expected a worker count (0-4096, 0 = auto), got -1" },
        { "cluster:\n  consensus:\n    tick_period_ms: 0\n",
          "config key cluster.consensus.tick_period_ms: expected milliseconds (1-60000), got 0" },
        { "cluster:\n  consensus:\n    compact_wal_entries: -5\n",
          "config key cluster.consensus.compact_wal_entries: expected a positive entry count, "
          "got -5" },
        { "telemetry_disabled: sure\n",
          "config key telemetry_disabled: expected true or false, got \"sure\"" },
    };
    char *envp [] = { NULL };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        s_write ("bad.yaml", cases [i].yaml);
        s_load_fails ("bad.yaml", envp, cases [i].message, true);
    }
}
END_TEST

START_TEST (test_lenient_forms_qdrant_accepts)
{
    s_write ("ok.yaml",
             "log_level: \"info,raft=warn\"\n"
             "service:\n"
             "  http_port: \"7000\"\n"
             "  grpc_port: null\n"
             "  api_key: \"\"\n"
             "  read_only_api_key: 12345\n"
             "  enable_cors: \"false\"\n"
             "  max_request_size_mb: 1024\n"
             "  max_workers: ~\n"
             "storage:\n"
             "  node_type: listener\n");
    char *envp [] = { NULL };
    config_t *cfg = s_load ("ok.yaml", envp);
    ck_assert_int_eq (cfg->log_level, LOG_LEVEL_INFO);
    ck_assert_int_eq (cfg->http_port, 7000);
    ck_assert_int_eq (cfg->grpc_port, 0);               //  null: gRPC off
    ck_assert_ptr_null (cfg->api_key);                  //  "" = none
    ck_assert_str_eq (cfg->read_only_api_key, "12345");
    ck_assert (!cfg->enable_cors);
    ck_assert_uint_eq (cfg->max_request_size_mb, 1024);
    ck_assert_int_eq (cfg->max_workers, 0);
    ck_assert_str_eq (cfg->node_type, "Listener");
    config_destroy (&cfg);
}
END_TEST

START_TEST (test_log_level_takes_the_first_plain_level_of_a_filter)
{
    static const struct {
        const char *text;
        int level;
    } cases [] = {
        { "INFO", LOG_LEVEL_INFO }, { "warn", LOG_LEVEL_WARN },
        { "Warning", LOG_LEVEL_WARN }, { "ERROR", LOG_LEVEL_ERROR },
        { "trace", LOG_LEVEL_TRACE }, { "debug,raft=warn", LOG_LEVEL_DEBUG },
        { "raft=warn, trace", LOG_LEVEL_TRACE }, { " error ", LOG_LEVEL_ERROR },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char name [128];
        snprintf (name, sizeof name, "QDRANT__LOG_LEVEL=%s", cases [i].text);
        char *envp [] = { name, NULL };
        config_t *cfg = s_load (NULL, envp);
        ck_assert_msg (cfg->log_level == cases [i].level, "%s gave %d", cases [i].text,
                       cfg->log_level);
        config_destroy (&cfg);
    }
    char *envp [] = { "QDRANT__LOG_LEVEL=raft=warn", NULL };
    s_load_fails (NULL, envp, "config key log_level: expected a log level", false);
}
END_TEST

//  -----------------------------------------------------------------------
//  JSON hand-over

START_TEST (test_json_round_trip_keeps_every_key_and_telemetry)
{
    s_write ("config/config.yaml",
             "log_level: \"debug,raft=trace\"\n"
             "service:\n  http_port: 7000\n  api_key: secret\n  grpc_port: null\n"
             "cluster:\n  enabled: true\n"
             "storage:\n  node_type: Listener\n  hnsw_index:\n    m: 32\n");
    char *envp [] = { NULL };
    config_t *cfg = s_load (NULL, envp);
    cfg->telemetry_disabled = true;             //  as --disable-telemetry does
    char *text = config_to_json (cfg);
    ck_assert_ptr_nonnull (text);
    ck_assert_ptr_null (strchr (text, '\n'));   //  compact

    config_t *back = NULL;
    ck_assert_int_eq (config_from_json (text, &back, s_err, sizeof s_err), 0);
    ck_assert (back->telemetry_disabled);
    ck_assert (json_is_true (json_object_get (back->tree, "telemetry_disabled")));
    ck_assert_int_eq (back->log_level, LOG_LEVEL_DEBUG);
    ck_assert_str_eq (json_string_value (json_object_get (back->tree, "log_level")),
                      "debug,raft=trace");      //  the filter survives as written
    ck_assert_int_eq (back->http_port, 7000);
    ck_assert_int_eq (back->grpc_port, 0);
    ck_assert_str_eq (back->api_key, "secret");
    ck_assert (back->cluster_enabled);
    ck_assert_str_eq (back->node_type, "Listener");
    ck_assert_int_eq (json_integer_value (s_at (back->tree, "storage", "hnsw_index", "m")), 32);
    ck_assert_int_eq (back->p2p_port, cfg->p2p_port);
    ck_assert_str_eq (back->host, cfg->host);
    ck_assert_str_eq (back->storage_path, cfg->storage_path);

    //  A second trip changes nothing.
    char *again = config_to_json (back);
    ck_assert_str_eq (again, text);
    free (again);
    free (text);

    //  A field changed after loading wins over the tree it came from.
    back->log_level = LOG_LEVEL_ERROR;
    free (back->api_key);
    back->api_key = NULL;
    text = config_to_json (back);
    config_t *third = NULL;
    ck_assert_int_eq (config_from_json (text, &third, s_err, sizeof s_err), 0);
    ck_assert_int_eq (third->log_level, LOG_LEVEL_ERROR);
    ck_assert_ptr_null (third->api_key);
    free (text);
    config_destroy (&third);
    config_destroy (&back);
    config_destroy (&cfg);
}
END_TEST

START_TEST (test_from_json_fills_defaults_and_rejects_bad_input)
{
    config_t *cfg = NULL;
    ck_assert_int_eq (config_from_json ("{\"service\": {\"http_port\": 7001}}", &cfg, s_err,
                                        sizeof s_err), 0);
    ck_assert_int_eq (cfg->http_port, 7001);
    ck_assert_int_eq (cfg->grpc_port, 6334);
    ck_assert_str_eq (cfg->storage_path, "./storage");
    config_destroy (&cfg);

    ck_assert_int_eq (config_from_json ("{\"service\": ", &cfg, s_err, sizeof s_err),
                      -SH_EINVAL);
    ck_assert_ptr_null (cfg);
    ck_assert_ptr_nonnull (strstr (s_err, "config JSON"));
    ck_assert_int_eq (config_from_json ("[1]", &cfg, s_err, sizeof s_err), -SH_EINVAL);
    ck_assert_int_eq (config_from_json ("{\"a\": 1, \"a\": 2}", &cfg, s_err, sizeof s_err),
                      -SH_EINVAL);
    ck_assert_int_eq (config_from_json (NULL, &cfg, s_err, sizeof s_err), -SH_EINVAL);
    ck_assert_int_eq (config_from_json ("{\"cluster\": {\"p2p\": {\"port\": \"x\"}}}", &cfg,
                                        s_err, sizeof s_err), -SH_EINVAL);
    ck_assert_str_eq (s_err,
                      "config key cluster.p2p.port: expected a port number (1-65535), got \"x\"");
}
END_TEST

//  -----------------------------------------------------------------------
//  Command line

static int
s_cli (cli_t *cli, int argc, char **argv)
{
    return cli_parse (argc, argv, cli, s_err, sizeof s_err);
}

START_TEST (test_cli_reads_every_flag_in_both_forms)
{
    unsetenv ("QDRANT_URI");
    unsetenv ("QDRANT_BOOTSTRAP");
    cli_t cli;
    char *argv [] = { "shoal", "--uri", "http://a:6335", "--bootstrap=http://b:6335",
                      "--reinit", "--config-path", "my.yaml", "--disable-telemetry" };
    ck_assert_int_eq (s_cli (&cli, 8, argv), 0);
    ck_assert_str_eq (cli.uri, "http://a:6335");
    ck_assert_str_eq (cli.bootstrap, "http://b:6335");
    ck_assert_str_eq (cli.config_path, "my.yaml");
    ck_assert (cli.reinit && cli.disable_telemetry && !cli.help && !cli.version);
    cli_reset (&cli);
    ck_assert_ptr_null (cli.uri);
    cli_reset (&cli);                   //  twice is fine

    char *argv2 [] = { "shoal", "-h", "-V", "--config-path=x=y.yaml", "--uri=u1", "--uri",
                       "u2" };
    ck_assert_int_eq (s_cli (&cli, 7, argv2), 0);
    ck_assert (cli.help && cli.version);
    ck_assert_str_eq (cli.config_path, "x=y.yaml");
    ck_assert_str_eq (cli.uri, "u2");           //  the last one wins
    ck_assert_ptr_null (cli.bootstrap);
    cli_reset (&cli);

    char *argv3 [] = { "shoal", "--help", "--version" };
    ck_assert_int_eq (s_cli (&cli, 3, argv3), 0);
    ck_assert (cli.help && cli.version);
    cli_reset (&cli);

    char *argv4 [] = { "shoal" };
    ck_assert_int_eq (s_cli (&cli, 1, argv4), 0);
    ck_assert (!cli.help && !cli.reinit && !cli.uri && !cli.config_path);
    cli_reset (&cli);
}
END_TEST

START_TEST (test_cli_takes_uri_and_bootstrap_from_the_environment)
{
    setenv ("QDRANT_URI", "http://env-uri:6335", 1);
    setenv ("QDRANT_BOOTSTRAP", "http://env-boot:6335", 1);
    cli_t cli;
    char *argv [] = { "shoal" };
    ck_assert_int_eq (s_cli (&cli, 1, argv), 0);
    ck_assert_str_eq (cli.uri, "http://env-uri:6335");
    ck_assert_str_eq (cli.bootstrap, "http://env-boot:6335");
    cli_reset (&cli);
    //  A flag beats the environment.
    char *argv2 [] = { "shoal", "--uri", "http://flag:6335" };
    ck_assert_int_eq (s_cli (&cli, 3, argv2), 0);
    ck_assert_str_eq (cli.uri, "http://flag:6335");
    ck_assert_str_eq (cli.bootstrap, "http://env-boot:6335");
    cli_reset (&cli);
    setenv ("QDRANT_URI", "", 1);
    unsetenv ("QDRANT_BOOTSTRAP");
    ck_assert_int_eq (s_cli (&cli, 1, argv), 0);
    ck_assert_ptr_null (cli.uri);
    ck_assert_ptr_null (cli.bootstrap);
    cli_reset (&cli);
    unsetenv ("QDRANT_URI");
}
END_TEST

START_TEST (test_cli_bad_flags_are_errors_with_a_message)
{
    unsetenv ("QDRANT_URI");
    static const struct {
        int argc;
        char *argv [4];
        const char *message;
    } cases [] = {
        { 2, { "shoal", "--frobnicate" }, "unknown flag --frobnicate (see --help)" },
        { 2, { "shoal", "--frob=1" }, "unknown flag --frob (see --help)" },
        { 2, { "shoal", "-x" }, "unknown flag -x (see --help)" },
        { 2, { "shoal", "--uri" }, "flag --uri needs a value" },
        { 2, { "shoal", "--uri=" }, "flag --uri needs a value" },
        { 3, { "shoal", "--bootstrap", "--reinit" }, "flag --bootstrap needs a value" },
        { 2, { "shoal", "--config-path" }, "flag --config-path needs a value" },
        { 2, { "shoal", "--reinit=yes" }, "flag --reinit takes no value" },
        { 2, { "shoal", "--help=1" }, "flag --help takes no value" },
        { 2, { "shoal", "stray" }, "unexpected argument \"stray\" (see --help)" },
        { 2, { "shoal", "-" }, "unexpected argument \"-\" (see --help)" },
        { 2, { "shoal", "--" }, "unknown flag -- (see --help)" },
        { 2, { "shoal", "-hV" }, "unexpected argument \"-hV\" (see --help)" },
        { 3, { "shoal", "--uri=a", "--uri" }, "flag --uri needs a value" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        cli_t cli;
        s_err [0] = 0;
        ck_assert_int_eq (s_cli (&cli, cases [i].argc, (char **) cases [i].argv), -SH_EINVAL);
        ck_assert_str_eq (s_err, cases [i].message);
        ck_assert_ptr_null (cli.uri);           //  nothing left to free
        cli_reset (&cli);
    }
}
END_TEST

START_TEST (test_cli_usage_lists_every_flag_and_variable)
{
    const char *text = cli_usage ();
    const char *needles [] = { "--uri", "--bootstrap", "--reinit", "--config-path",
                               "--disable-telemetry", "--help", "-h", "--version", "-V",
                               "QDRANT_URI", "QDRANT_BOOTSTRAP", "RUN_MODE",
                               "QDRANT__SECTION__KEY", "SHOAL__SECTION__KEY" };
    for (size_t i = 0; i < sizeof needles / sizeof needles [0]; i++)
        ck_assert_msg (strstr (text, needles [i]), "usage lacks %s", needles [i]);
}
END_TEST

//  etc/shoal.yaml ships as the documented default: it must load and give
//  the same settings as the built-in defaults.
START_TEST (test_shipped_config_file_matches_the_defaults)
{
    //  Found from this file's own path as the compiler saw it: relative to
    //  the build dir, which is where meson runs the suite.
    char path [2 * PATHS_MAX];
    const char *me = __FILE__;
    const char *tail = strstr (me, "test/unit/test_config.c");
    ck_assert_ptr_nonnull (tail);
    snprintf (path, sizeof path, "%s%s%.*setc/shoal.yaml", me [0] == '/' ? "" : s_cwd,
              me [0] == '/' ? "" : "/", (int) (tail - me), me);
    ck_assert_msg (access (path, R_OK) == 0, "%s not readable (run from the build dir)",
                   path);
    char *envp [] = { NULL };
    config_t *cfg = s_load (path, envp);
    config_t *def = config_new_default ();
    char *a = config_to_json (cfg);
    char *b = config_to_json (def);
    json_t *ja = json_loads (a, 0, NULL), *jb = json_loads (b, 0, NULL);
    //  Compare the keys shoal reads: the file may carry more.
    config_t *ca = NULL, *cb = NULL;
    ck_assert_int_eq (config_from_json (a, &ca, s_err, sizeof s_err), 0);
    ck_assert_int_eq (config_from_json (b, &cb, s_err, sizeof s_err), 0);
    ck_assert_int_eq (ca->log_level, cb->log_level);
    ck_assert_str_eq (ca->host, cb->host);
    ck_assert_int_eq (ca->http_port, cb->http_port);
    ck_assert_int_eq (ca->grpc_port, cb->grpc_port);
    ck_assert_ptr_null (ca->api_key);
    ck_assert_ptr_null (ca->read_only_api_key);
    ck_assert_uint_eq (ca->max_request_size_mb, cb->max_request_size_mb);
    ck_assert_int_eq (ca->enable_cors, cb->enable_cors);
    ck_assert_int_eq (ca->cluster_enabled, cb->cluster_enabled);
    ck_assert_int_eq (ca->p2p_port, cb->p2p_port);
    ck_assert_int_eq (ca->tick_period_ms, cb->tick_period_ms);
    ck_assert_int_eq (ca->compact_wal_entries, cb->compact_wal_entries);
    ck_assert_str_eq (ca->storage_path, cb->storage_path);
    ck_assert_str_eq (ca->snapshots_path, cb->snapshots_path);
    ck_assert_str_eq (ca->node_type, cb->node_type);
    ck_assert_int_eq (ca->telemetry_disabled, cb->telemetry_disabled);
    json_decref (ja);
    json_decref (jb);
    free (a);
    free (b);
    config_destroy (&ca);
    config_destroy (&cb);
    config_destroy (&cfg);
    config_destroy (&def);
}
END_TEST

Suite *
config_suite (void)
{
    Suite *s = suite_create ("config");
    TCase *tc = tcase_create ("yaml");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_add_test (tc, test_yaml_scalars_are_typed_as_the_core_schema);
    tcase_add_test (tc, test_yaml_collections_become_objects_and_arrays);
    tcase_add_test (tc, test_yaml_empty_or_comment_only_is_an_empty_mapping);
    tcase_add_test (tc, test_yaml_malformed_input_names_line_and_column);
    tcase_add_test (tc, test_yaml_anchors_aliases_duplicates_and_odd_shapes_are_refused);
    suite_add_tcase (s, tc);

    tc = tcase_create ("layers");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_add_test (tc, test_defaults_are_qdrants);
    tcase_add_test (tc, test_files_layer_in_qdrants_order);
    tcase_add_test (tc, test_yml_extension_is_read_too);
    tcase_add_test (tc, test_merge_replaces_arrays_and_keeps_sections_an_empty_layer_names);
    tcase_add_test (tc, test_missing_config_path_and_bad_files_are_errors);
    tcase_add_test (tc, test_unknown_keys_are_kept_not_fatal);
    tcase_add_test (tc, test_shipped_config_file_matches_the_defaults);
    suite_add_tcase (s, tc);

    tc = tcase_create ("env");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_add_test (tc, test_env_overrides_set_typed_values);
    tcase_add_test (tc, test_env_names_that_are_not_overrides_are_ignored);
    tcase_add_test (tc, test_env_beats_files_and_shoal_beats_qdrant);
    tcase_add_test (tc, test_env_number_forms_still_read_where_numbers_are_expected);
    tcase_add_test (tc, test_env_bad_value_is_an_error);
    suite_add_tcase (s, tc);

    tc = tcase_create ("typed");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_add_test (tc, test_bad_types_and_ranges_are_errors_naming_the_key);
    tcase_add_test (tc, test_lenient_forms_qdrant_accepts);
    tcase_add_test (tc, test_log_level_takes_the_first_plain_level_of_a_filter);
    suite_add_tcase (s, tc);

    tc = tcase_create ("json");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_add_test (tc, test_json_round_trip_keeps_every_key_and_telemetry);
    tcase_add_test (tc, test_from_json_fills_defaults_and_rejects_bad_input);
    suite_add_tcase (s, tc);

    tc = tcase_create ("cli");
    tcase_add_test (tc, test_cli_reads_every_flag_in_both_forms);
    tcase_add_test (tc, test_cli_takes_uri_and_bootstrap_from_the_environment);
    tcase_add_test (tc, test_cli_bad_flags_are_errors_with_a_message);
    tcase_add_test (tc, test_cli_usage_lists_every_flag_and_variable);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (config_suite)
