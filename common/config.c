/*  config: shoal's settings, layered and typed as Qdrant's (see config.h).
    Owns the YAML reader (libyaml events to a jansson tree), the layering of
    defaults, files and environment, the typed read of the keys shoal uses,
    and the public command line.

    Qdrant behaviour matched here, beyond what the header says:
      - a layer's null (an empty "service:" whose keys are all commented
        out) does not wipe a section of an earlier layer; a null replaces
        only a scalar (so "grpc_port: null" still disables gRPC);
      - a string key accepts a number (Qdrant's config crate turns 12345
        into "12345"), and a number or bool key accepts a string that reads
        as one ("7000", "true"): environment variables are text;
      - log_level may be a filter ("info,raft=warn"): its first plain level
        counts.
    Not supported: YAML anchors and aliases (an error names them), several
    documents in one file; .inf/.nan stay strings (jansson has no infinity).
*/
#include "common/config.h"
#include "common/err.h"
#include "common/log.h"
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>
#include <zmq.h>

//  A config file larger than this is a mistake, not a config.
#define S_MAX_FILE (16u * 1024 * 1024)
//  Deepest YAML nesting accepted (Qdrant's files go 4 deep).
#define S_MAX_DEPTH 64
//  Most "__"-separated levels in an environment override.
#define S_MAX_ENV_LEVELS 16

static const char *s_level_names [] = { "error", "warn", "info", "debug", "trace" };

//  Leaf keys shoal reads; any other key is kept and logged at debug level.
static const char *s_known_keys [] = {
    "log_level", "telemetry_disabled",
    "service.host", "service.http_port", "service.grpc_port", "service.api_key",
    "service.read_only_api_key", "service.max_request_size_mb",
    "service.max_workers", "service.enable_cors",
    "cluster.enabled", "cluster.p2p.port", "cluster.consensus.tick_period_ms",
    "cluster.consensus.compact_wal_entries", "cluster.p2p.curve_public_key",
    "cluster.p2p.curve_secret_key",
    "storage.storage_path", "storage.snapshots_path", "storage.node_type",
    NULL
};

static void
s_err (char *err, size_t errlen, const char *fmt, ...) __attribute__ ((format (printf, 3, 4)));

static void
s_err (char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list args;
    va_start (args, fmt);
    vsnprintf (err, errlen, fmt, args);
    va_end (args);
}

//  ---------------------------------------------------------------------
//  Scalars, typed as the YAML 1.2 core schema types a plain scalar

static bool
s_all_digits (const char *s, const char *digits)
{
    return *s && strspn (s, digits) == strlen (s);
}

//  [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
static bool
s_is_float (const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    size_t int_digits = strspn (s, "0123456789");
    s += int_digits;
    size_t frac_digits = 0;
    if (*s == '.') {
        s++;
        frac_digits = strspn (s, "0123456789");
        s += frac_digits;
    }
    if (int_digits == 0 && frac_digits == 0)
        return false;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+')
            s++;
        size_t exp_digits = strspn (s, "0123456789");
        if (exp_digits == 0)
            return false;
        s += exp_digits;
    }
    return *s == 0;
}

//  An integer, or a real when it overflows int64 (YAML has no bound).
static json_t *
s_int_or_real (const char *digits, int base, bool negative)
{
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull (digits, &end, base);
    if (errno == 0 && *end == 0) {
        if (!negative && v <= (unsigned long long) INT64_MAX)
            return json_integer ((json_int_t) v);
        if (negative && v <= (unsigned long long) INT64_MAX + 1)
            return json_integer ((json_int_t) (0 - v));
    }
    double d = base == 10 ? strtod (digits, NULL) : (double) v;
    return json_real (negative ? -d : d);
}

//  The JSON value of a plain (unquoted) scalar; NULL if it is not valid
//  UTF-8 text. len may count NUL bytes, which make it a string.
static json_t *
s_plain_scalar (const char *s, size_t len)
{
    if (strlen (s) != len)
        return json_stringn (s, len);
    if (len == 0 || !strcmp (s, "~") || !strcmp (s, "null") || !strcmp (s, "Null")
    ||  !strcmp (s, "NULL"))
        return json_null ();
    if (!strcmp (s, "true") || !strcmp (s, "True") || !strcmp (s, "TRUE"))
        return json_true ();
    if (!strcmp (s, "false") || !strcmp (s, "False") || !strcmp (s, "FALSE"))
        return json_false ();
    if (!strncmp (s, "0x", 2) && s_all_digits (s + 2, "0123456789abcdefABCDEF"))
        return s_int_or_real (s + 2, 16, false);
    if (!strncmp (s, "0o", 2) && s_all_digits (s + 2, "01234567"))
        return s_int_or_real (s + 2, 8, false);
    const char *digits = (*s == '-' || *s == '+') ? s + 1 : s;
    if (s_all_digits (digits, "0123456789"))
        return s_int_or_real (digits, 10, *s == '-');
    if (s_is_float (s)) {
        double d = strtod (s, NULL);
        if (isfinite (d))
            return json_real (d);
    }
    //  .inf, .nan and friends land here: jansson cannot hold them.
    return json_stringn (s, len);
}

//  An environment value: typed as a plain scalar, except that integers not
//  written the plain decimal way ("007", "0x1f", "+5") stay text, because
//  that is what a key or a name looks like and Qdrant keeps env values as
//  text; the typed getters still read such text as a number where one is
//  expected.
static json_t *
s_env_scalar (const char *s)
{
    json_t *value = s_plain_scalar (s, strlen (s));
    if (!json_is_number (value))
        return value;
    const char *digits = *s == '-' ? s + 1 : s;
    bool plain_int = s_all_digits (digits, "0123456789")
                  && (digits [0] != '0' || digits [1] == 0);
    bool looks_int = s_all_digits (digits, "0123456789") || !strncmp (s, "0x", 2)
                  || !strncmp (s, "0o", 2) || *s == '+';
    if (looks_int && !plain_int) {
        json_decref (value);
        return json_string (s);
    }
    return value;
}

//  ---------------------------------------------------------------------
//  YAML text to a JSON tree

typedef struct {
    json_t *node;       //  the object or array being filled (borrowed)
    char *key;          //  a mapping's key waiting for its value, or NULL
} s_frame_t;

typedef struct {
    s_frame_t stack [S_MAX_DEPTH];  //  open collections, innermost last
    int depth;                      //  entries in stack
    json_t *root;                   //  the document's value once begun
} s_builder_t;

//  Adds value (stolen) where the parser is: as the root, an array item, or
//  a mapping's value. A mapping's key goes through s_add_key instead.
static int
s_add_value (s_builder_t *b, json_t *value)
{
    if (b->depth == 0) {
        b->root = value;
        return 0;
    }
    s_frame_t *top = &b->stack [b->depth - 1];
    if (json_is_array (top->node))
        return json_array_append_new (top->node, value);
    assert (top->key);
    int rc = json_object_set_new (top->node, top->key, value);
    free (top->key);
    top->key = NULL;
    return rc;
}

static bool
s_wants_key (s_builder_t *b)
{
    return b->depth > 0 && json_is_object (b->stack [b->depth - 1].node)
        && !b->stack [b->depth - 1].key;
}

static json_t *
s_scalar_value (const yaml_event_t *event)
{
    const char *text = (const char *) event->data.scalar.value;
    size_t len = event->data.scalar.length;
    const char *tag = (const char *) event->data.scalar.tag;
    bool as_string = event->data.scalar.style != YAML_PLAIN_SCALAR_STYLE
                  || (tag && !strcmp (tag, YAML_STR_TAG));
    return as_string ? json_stringn (text, len) : s_plain_scalar (text, len);
}

//  Handles one parser event; 0, 1 at the end of the stream, or -SH_EINVAL.
static int
s_on_event (s_builder_t *b, const yaml_event_t *event, int *documents, char *err,
            size_t errlen)
{
    size_t line = event->start_mark.line + 1;
    size_t col = event->start_mark.column + 1;
    const char *anchor = NULL;
    switch (event->type) {
        case YAML_STREAM_END_EVENT:
            return 1;
        case YAML_DOCUMENT_START_EVENT:
            if (++*documents > 1) {
                s_err (err, errlen, "%zu:%zu: more than one YAML document", line, col);
                return -SH_EINVAL;
            }
            return 0;
        case YAML_ALIAS_EVENT:
            s_err (err, errlen, "%zu:%zu: YAML aliases (*%s) are not supported", line,
                   col, (const char *) event->data.alias.anchor);
            return -SH_EINVAL;
        case YAML_SCALAR_EVENT:
            anchor = (const char *) event->data.scalar.anchor;
            break;
        case YAML_SEQUENCE_START_EVENT:
            anchor = (const char *) event->data.sequence_start.anchor;
            break;
        case YAML_MAPPING_START_EVENT:
            anchor = (const char *) event->data.mapping_start.anchor;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            assert (b->depth > 0);          //  libyaml pairs them
            b->depth--;
            return 0;
        default:
            return 0;
    }
    if (anchor) {
        s_err (err, errlen, "%zu:%zu: YAML anchors (&%s) are not supported", line, col,
               anchor);
        return -SH_EINVAL;
    }
    if (event->type == YAML_SCALAR_EVENT) {
        if (s_wants_key (b)) {
            const char *key = (const char *) event->data.scalar.value;
            if (strlen (key) != event->data.scalar.length) {
                s_err (err, errlen, "%zu:%zu: NUL byte in a mapping key", line, col);
                return -SH_EINVAL;
            }
            if (json_object_get (b->stack [b->depth - 1].node, key)) {
                s_err (err, errlen, "%zu:%zu: duplicate key \"%.64s\"", line, col, key);
                return -SH_EINVAL;
            }
            b->stack [b->depth - 1].key = strdup (key);
            assert (b->stack [b->depth - 1].key);
            return 0;
        }
        json_t *value = s_scalar_value (event);
        if (!value || s_add_value (b, value)) {
            s_err (err, errlen, "%zu:%zu: invalid scalar", line, col);
            return -SH_EINVAL;
        }
        return 0;
    }
    //  A sequence or mapping starts.
    if (s_wants_key (b)) {
        s_err (err, errlen, "%zu:%zu: a mapping key must be a plain value", line, col);
        return -SH_EINVAL;
    }
    if (b->depth >= S_MAX_DEPTH) {
        s_err (err, errlen, "%zu:%zu: nested deeper than %d levels", line, col,
               S_MAX_DEPTH);
        return -SH_EINVAL;
    }
    json_t *node = event->type == YAML_MAPPING_START_EVENT ? json_object () : json_array ();
    assert (node);
    if (s_add_value (b, node)) {
        s_err (err, errlen, "%zu:%zu: invalid value", line, col);
        return -SH_EINVAL;
    }
    b->stack [b->depth].node = node;
    b->stack [b->depth].key = NULL;
    b->depth++;
    return 0;
}

int
config_yaml_to_json (const char *text, size_t len, json_t **out, char *err, size_t errlen)
{
    assert (out);
    *out = NULL;
    if (!text)
        return -SH_EINVAL;
    yaml_parser_t parser;
    if (!yaml_parser_initialize (&parser)) {
        s_err (err, errlen, "cannot start the YAML parser");
        return -SH_ENOMEM;
    }
    yaml_parser_set_input_string (&parser, (const unsigned char *) text, len);
    s_builder_t b = { .depth = 0 };
    int documents = 0;
    int rc = 0;
    while (rc == 0) {
        yaml_event_t event;
        if (!yaml_parser_parse (&parser, &event)) {
            const char *context = parser.context ? parser.context : "";
            s_err (err, errlen, "%zu:%zu: %s%s%s", parser.problem_mark.line + 1,
                   parser.problem_mark.column + 1,
                   parser.problem ? parser.problem : "malformed YAML",
                   *context ? " " : "", context);
            rc = -SH_EINVAL;
            break;
        }
        rc = s_on_event (&b, &event, &documents, err, errlen);
        yaml_event_delete (&event);
    }
    yaml_parser_delete (&parser);
    for (int i = 0; i < b.depth; i++)
        free (b.stack [i].key);
    if (rc < 0) {
        if (b.root)
            json_decref (b.root);
        return rc;
    }
    //  An empty file, or one of comments only, sets nothing.
    if (!b.root || json_is_null (b.root)) {
        if (b.root)
            json_decref (b.root);
        b.root = json_object ();
    }
    *out = b.root;
    return 0;
}

//  ---------------------------------------------------------------------
//  Layers

//  Merges src into dst: objects key by key, anything else replaced whole,
//  except that a null does not wipe an object (see the top of the file).
static void
s_merge (json_t *dst, const json_t *src)
{
    const char *key;
    json_t *sv;
    json_object_foreach ((json_t *) src, key, sv) {
        json_t *dv = json_object_get (dst, key);
        if (json_is_object (dv) && json_is_object (sv))
            s_merge (dv, sv);
        else
        if (json_is_object (dv) && json_is_null (sv))
            continue;
        else
            json_object_set_new (dst, key, json_deep_copy (sv));
    }
}

//  Qdrant's built-in defaults for the keys shoal reads.
static json_t *
s_defaults (void)
{
    json_t *tree = json_pack (
        "{s:s, s:b,"
        " s:{s:s, s:s, s:s},"
        " s:{s:s, s:i, s:i, s:i, s:i, s:b},"
        " s:{s:b, s:{s:i}, s:{s:i, s:i}}}",
        "log_level", "INFO", "telemetry_disabled", 0,
        "storage", "storage_path", "./storage", "snapshots_path", "./snapshots",
                   "node_type", "Normal",
        "service", "host", "0.0.0.0", "http_port", 6333, "grpc_port", 6334,
                   "max_request_size_mb", 32, "max_workers", 0, "enable_cors", 1,
        "cluster", "enabled", 0, "p2p", "port", 6335,
                   "consensus", "tick_period_ms", 100, "compact_wal_entries", 128);
    assert (tree);
    return tree;
}

//  Reads one YAML file into *out (an object). -SH_EINVAL with "file: why"
//  or "file:line:col: why".
static int
s_read_yaml_file (const char *path, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *file = fopen (path, "rb");
    if (!file) {
        s_err (err, errlen, "%s: %s", path, strerror (errno));
        return -SH_EINVAL;
    }
    struct stat st;
    if (fstat (fileno (file), &st) || !S_ISREG (st.st_mode)) {
        s_err (err, errlen, "%s: not a regular file", path);
        fclose (file);
        return -SH_EINVAL;
    }
    if ((uint64_t) st.st_size > S_MAX_FILE) {
        s_err (err, errlen, "%s: larger than %u bytes", path, S_MAX_FILE);
        fclose (file);
        return -SH_EINVAL;
    }
    size_t size = (size_t) st.st_size;
    char *text = (char *) malloc (size + 1);
    assert (text);
    size_t got = fread (text, 1, size, file);
    bool failed = ferror (file);
    fclose (file);
    if (failed) {
        s_err (err, errlen, "%s: read error", path);
        free (text);
        return -SH_EINVAL;
    }
    text [got] = 0;
    char why [512] = "";
    json_t *tree = NULL;
    int rc = config_yaml_to_json (text, got, &tree, why, sizeof why);
    free (text);
    if (rc) {
        s_err (err, errlen, "%s:%s", path, why);
        return -SH_EINVAL;
    }
    if (!json_is_object (tree)) {
        s_err (err, errlen, "%s: the top level must be a mapping", path);
        json_decref (tree);
        return -SH_EINVAL;
    }
    *out = tree;
    return 0;
}

static int
s_merge_file (json_t *tree, const char *path, char *err, size_t errlen)
{
    json_t *layer;
    int rc = s_read_yaml_file (path, &layer, err, errlen);
    if (rc)
        return rc;
    log_debug ("config: read %s", path);
    s_merge (tree, layer);
    json_decref (layer);
    return 0;
}

//  config/<name>.yaml, else config/<name>.yml, if either exists.
static int
s_merge_optional (json_t *tree, const char *name, char *err, size_t errlen)
{
    static const char *s_exts [] = { ".yaml", ".yml" };
    for (size_t i = 0; i < 2; i++) {
        char path [1024];
        int n = snprintf (path, sizeof path, "config/%s%s", name, s_exts [i]);
        if (n < 0 || (size_t) n >= sizeof path) {
            s_err (err, errlen, "config/%.64s...: name too long", name);
            return -SH_EINVAL;
        }
        struct stat st;
        if (stat (path, &st) == 0)
            return s_merge_file (tree, path, err, errlen);
        if (errno != ENOENT) {
            s_err (err, errlen, "%s: %s", path, strerror (errno));
            return -SH_EINVAL;
        }
    }
    return 0;
}

int
config_apply_env (json_t *tree, const char *name, const char *value)
{
    if (!json_is_object (tree) || !name || !value)
        return 0;
    const char *rest;
    if (!strncmp (name, "QDRANT__", 8))
        rest = name + 8;
    else
    if (!strncmp (name, "SHOAL__", 7))
        rest = name + 7;
    else
        return 0;
    //  Split on "__" into lowercased levels; an empty level is no override.
    char *copy = strdup (rest);
    assert (copy);
    char *levels [S_MAX_ENV_LEVELS];
    size_t n_levels = 0;
    char *p = copy;
    while (true) {
        char *sep = strstr (p, "__");
        if (sep)
            *sep = 0;
        if (!*p || n_levels == S_MAX_ENV_LEVELS) {
            free (copy);
            return 0;
        }
        for (char *c = p; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char) (*c - 'A' + 'a');
        //  A name is any bytes; a JSON key must be UTF-8.
        json_t *probe = json_string (p);
        if (!probe) {
            free (copy);
            return 0;
        }
        json_decref (probe);
        levels [n_levels++] = p;
        if (!sep)
            break;
        p = sep + 2;
    }
    json_t *typed = s_env_scalar (value);
    if (!typed) {
        log_warn ("config: ignored %s: its value is not UTF-8 text", name);
        free (copy);
        return 0;
    }
    json_t *node = tree;
    for (size_t i = 0; i + 1 < n_levels; i++) {
        json_t *child = json_object_get (node, levels [i]);
        if (!json_is_object (child)) {
            child = json_object ();
            json_object_set_new (node, levels [i], child);
        }
        node = child;
    }
    const char *leaf = levels [n_levels - 1];
    //  Same rule as for files: an empty value does not wipe a section.
    if (json_is_null (typed) && json_is_object (json_object_get (node, leaf)))
        json_decref (typed);
    else
        json_object_set_new (node, leaf, typed);
    free (copy);
    return 1;
}

static int
s_strcmp_p (const void *a, const void *b)
{
    return strcmp (*(const char *const *) a, *(const char *const *) b);
}

//  Applies every override with prefix, in name order so that a section
//  override (QDRANT__SERVICE) comes before the keys inside it.
static void
s_apply_env_prefix (json_t *tree, char **envp, const char *prefix)
{
    size_t count = 0;
    for (char **e = envp; *e; e++)
        if (!strncmp (*e, prefix, strlen (prefix)))
            count++;
    if (count == 0)
        return;
    char **names = (char **) calloc (count, sizeof (char *));
    assert (names);
    size_t n = 0;
    for (char **e = envp; *e; e++)
        if (!strncmp (*e, prefix, strlen (prefix)))
            names [n++] = *e;
    qsort (names, n, sizeof (char *), s_strcmp_p);
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr (names [i], '=');
        if (!eq)
            continue;
        char *name = strndup (names [i], (size_t) (eq - names [i]));
        assert (name);
        if (config_apply_env (tree, name, eq + 1))
            log_debug ("config: %s from the environment", name);
        free (name);
    }
    free (names);
}

static const char *
s_env_get (char **envp, const char *name)
{
    size_t len = strlen (name);
    for (char **e = envp; e && *e; e++)
        if (!strncmp (*e, name, len) && (*e) [len] == '=')
            return *e + len + 1;
    return NULL;
}

//  ---------------------------------------------------------------------
//  Typed read of the keys shoal uses

//  A short, printable rendering of a bad value for an error message.
static void
s_describe (const json_t *value, char *buf, size_t size)
{
    char *text = json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
    const char *shown = text ? text : "?";
    size_t len = strlen (shown);
    if (len > 64)
        snprintf (buf, size, "%.60s...", shown);
    else
        snprintf (buf, size, "%s", shown);
    free (text);
}

static int
s_type_error (const char *path, const char *expected, const json_t *value, char *err,
              size_t errlen)
{
    char got [80];
    s_describe (value, got, sizeof got);
    s_err (err, errlen, "config key %s: expected %s, got %s", path, expected, got);
    return -SH_EINVAL;
}

//  The value at a dotted path; NULL if absent. A non-mapping on the way is
//  an error naming the key it sits at.
static int
s_lookup (const json_t *tree, const char *path, json_t **value, char *err, size_t errlen)
{
    *value = NULL;
    json_t *node = (json_t *) tree;
    char prefix [256] = "";
    const char *p = path;
    while (true) {
        const char *dot = strchr (p, '.');
        size_t len = dot ? (size_t) (dot - p) : strlen (p);
        char key [64];
        snprintf (key, sizeof key, "%.*s", (int) len, p);
        if (*prefix)
            strncat (prefix, ".", sizeof prefix - strlen (prefix) - 1);
        strncat (prefix, key, sizeof prefix - strlen (prefix) - 1);
        json_t *child = json_object_get (node, key);
        if (!dot) {
            *value = child;
            return 0;
        }
        if (!child)
            return 0;
        if (!json_is_object (child))
            return s_type_error (prefix, "a mapping", child, err, errlen);
        node = child;
        p = dot + 1;
    }
}

//  value as an integer: a JSON integer, or text that reads as one.
static bool
s_as_int (const json_t *value, json_int_t *out)
{
    if (json_is_integer (value)) {
        *out = json_integer_value (value);
        return true;
    }
    if (!json_is_string (value))
        return false;
    json_t *typed = s_plain_scalar (json_string_value (value), json_string_length (value));
    bool ok = json_is_integer (typed);
    if (ok)
        *out = json_integer_value (typed);
    json_decref (typed);
    return ok;
}

static int
s_get_int (const json_t *tree, const char *path, json_int_t min, json_int_t max,
           bool null_is_zero, const char *expected, json_int_t *out, char *err,
           size_t errlen)
{
    json_t *value;
    if (s_lookup (tree, path, &value, err, errlen))
        return -SH_EINVAL;
    if (!value)
        return 0;               //  absent: *out keeps its default
    if (json_is_null (value) && null_is_zero) {
        *out = 0;
        return 0;
    }
    json_int_t v;
    if (!s_as_int (value, &v) || v < min || v > max)
        return s_type_error (path, expected, value, err, errlen);
    *out = v;
    return 0;
}

static int
s_get_port (const json_t *tree, const char *path, bool null_is_zero, int *out, char *err,
            size_t errlen)
{
    json_int_t v = *out;
    if (s_get_int (tree, path, 1, 65535, null_is_zero, "a port number (1-65535)", &v,
                   err, errlen))
        return -SH_EINVAL;
    *out = (int) v;
    return 0;
}

static int
s_get_bool (const json_t *tree, const char *path, bool *out, char *err, size_t errlen)
{
    json_t *value;
    if (s_lookup (tree, path, &value, err, errlen))
        return -SH_EINVAL;
    if (!value)
        return 0;
    if (json_is_boolean (value)) {
        *out = json_is_true (value);
        return 0;
    }
    if (json_is_string (value)) {
        json_t *typed = s_plain_scalar (json_string_value (value),
                                        json_string_length (value));
        bool ok = json_is_boolean (typed);
        if (ok)
            *out = json_is_true (typed);
        json_decref (typed);
        if (ok)
            return 0;
    }
    return s_type_error (path, "true or false", value, err, errlen);
}

//  A string key: text, or a number or bool written as text. *out is freed
//  and replaced (NULL for null when allowed, and for "" when empty_is_null).
static int
s_get_string (const json_t *tree, const char *path, bool null_ok, bool empty_is_null,
              char **out, char *err, size_t errlen)
{
    json_t *value;
    if (s_lookup (tree, path, &value, err, errlen))
        return -SH_EINVAL;
    if (!value)
        return 0;
    char text [64];
    const char *s = NULL;
    if (json_is_string (value)) {
        s = json_string_value (value);
        if (strlen (s) != json_string_length (value))
            return s_type_error (path, "text without NUL bytes", value, err, errlen);
    }
    else
    if (json_is_integer (value)) {
        snprintf (text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value (value));
        s = text;
    }
    else
    if (json_is_real (value)) {
        snprintf (text, sizeof text, "%.17g", json_real_value (value));
        s = text;
    }
    else
    if (json_is_boolean (value))
        s = json_is_true (value) ? "true" : "false";
    else
    if (!(json_is_null (value) && null_ok))
        return s_type_error (path, "a string", value, err, errlen);

    if (s && !*s && empty_is_null)
        s = NULL;
    if (!s && !null_ok)
        return s_type_error (path, "a non-empty string", value, err, errlen);
    free (*out);
    *out = s ? strdup (s) : NULL;
    return 0;
}

//  Qdrant's log_level is an env_logger filter: "INFO", "info,raft=warn".
static int
s_get_log_level (const json_t *tree, int *out, char *err, size_t errlen)
{
    json_t *value;
    if (s_lookup (tree, "log_level", &value, err, errlen))
        return -SH_EINVAL;
    if (!value)
        return 0;
    const char *expected = "a log level (error, warn, info, debug or trace)";
    if (!json_is_string (value))
        return s_type_error ("log_level", expected, value, err, errlen);
    char *copy = strdup (json_string_value (value));
    assert (copy);
    int level = -1;
    char *save = NULL;
    for (char *token = strtok_r (copy, ",", &save); token && level < 0;
         token = strtok_r (NULL, ",", &save)) {
        token += strspn (token, " \t");
        size_t len = strlen (token);
        while (len > 0 && (token [len - 1] == ' ' || token [len - 1] == '\t'))
            token [--len] = 0;
        level = log_level_parse (token);
    }
    free (copy);
    if (level < 0)
        return s_type_error ("log_level", expected, value, err, errlen);
    *out = level;
    return 0;
}

static void
s_log_unknown (const json_t *node, const char *prefix)
{
    const char *key;
    json_t *value;
    json_object_foreach ((json_t *) node, key, value) {
        char path [512];
        snprintf (path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", key);
        if (json_is_object (value) && json_object_size (value) > 0) {
            s_log_unknown (value, path);
            continue;
        }
        bool known = false;
        for (const char **k = s_known_keys; *k && !known; k++)
            known = !strcmp (*k, path);
        if (!known)
            log_debug ("config: key %s is not used by shoal (kept)", path);
    }
}

static void
s_free_fields (config_t *self)
{
    free (self->host);
    free (self->api_key);
    free (self->read_only_api_key);
    free (self->storage_path);
    free (self->snapshots_path);
    free (self->node_type);
    free (self->curve_public_key);
    free (self->curve_secret_key);
}

//  The cluster's CURVE key pair: both keys or neither, each 40 Z85
//  characters (32 bytes), the public one derived from the secret one. A
//  mismatched pair would make every peer refuse every other with nothing
//  but handshake failures in the logs: say so at start instead.
static int
s_check_curve_keys (const config_t *self, char *err, size_t errlen)
{
    const char *pub = self->curve_public_key, *sec = self->curve_secret_key;
    if (!pub && !sec)
        return 0;
    if (!pub || !sec) {
        s_err (err, errlen, "cluster.p2p.curve_public_key and cluster.p2p.curve_secret_key"
               " go together: set both (see shoal --generate-cluster-key) or neither");
        return -SH_EINVAL;
    }
    const char *names [] = { "cluster.p2p.curve_public_key", "cluster.p2p.curve_secret_key" };
    const char *keys [] = { pub, sec };
    for (int i = 0; i < 2; i++) {
        uint8_t bytes [32];
        if (strlen (keys [i]) != 40 || !zmq_z85_decode (bytes, keys [i])) {
            s_err (err, errlen, "%s must be a CURVE key in Z85 (40 characters, see shoal"
                   " --generate-cluster-key), got %zu characters", names [i],
                   strlen (keys [i]));
            return -SH_EINVAL;
        }
    }
    char derived [41];
    if (zmq_curve_public (derived, sec) != 0) {
        s_err (err, errlen, "cluster.p2p.curve_secret_key: this libzmq has no CURVE"
               " support (%s)", zmq_strerror (zmq_errno ()));
        return -SH_EINVAL;
    }
    if (strcmp (derived, pub) != 0) {
        s_err (err, errlen, "cluster.p2p.curve_public_key is not the public key of"
               " cluster.p2p.curve_secret_key: give both keys of one pair");
        return -SH_EINVAL;
    }
    return 0;
}

//  Reads every key shoal uses from self->tree into the fields, which hold
//  defaults before (config_new's) and are only replaced by valid values.
static int
s_extract (config_t *self, char *err, size_t errlen)
{
    const json_t *t = self->tree;
    json_int_t mb = (json_int_t) self->max_request_size_mb;
    json_int_t workers = self->max_workers;
    json_int_t tick = self->tick_period_ms;
    json_int_t compact = self->compact_wal_entries;
    if (s_get_log_level (t, &self->log_level, err, errlen)
    ||  s_get_string (t, "service.host", false, false, &self->host, err, errlen)
    ||  s_get_port (t, "service.http_port", false, &self->http_port, err, errlen)
    ||  s_get_port (t, "service.grpc_port", true, &self->grpc_port, err, errlen)
    ||  s_get_string (t, "service.api_key", true, true, &self->api_key, err, errlen)
    ||  s_get_string (t, "service.read_only_api_key", true, true,
                      &self->read_only_api_key, err, errlen)
    ||  s_get_int (t, "service.max_request_size_mb", 1, 1024 * 1024, false,
                   "a size in MB (1-1048576)", &mb, err, errlen)
    ||  s_get_int (t, "service.max_workers", 0, 4096, true,
                   "a worker count (0-4096, 0 = auto)", &workers, err, errlen)
    ||  s_get_bool (t, "service.enable_cors", &self->enable_cors, err, errlen)
    ||  s_get_bool (t, "cluster.enabled", &self->cluster_enabled, err, errlen)
    ||  s_get_port (t, "cluster.p2p.port", false, &self->p2p_port, err, errlen)
    ||  s_get_int (t, "cluster.consensus.tick_period_ms", 1, 60000, false,
                   "milliseconds (1-60000)", &tick, err, errlen)
    ||  s_get_int (t, "cluster.consensus.compact_wal_entries", 1, INT32_MAX, false,
                   "a positive entry count", &compact, err, errlen)
    ||  s_get_string (t, "storage.storage_path", false, false, &self->storage_path,
                      err, errlen)
    ||  s_get_string (t, "storage.snapshots_path", false, false, &self->snapshots_path,
                      err, errlen)
    ||  s_get_string (t, "storage.node_type", false, false, &self->node_type, err,
                      errlen)
    ||  s_get_bool (t, "telemetry_disabled", &self->telemetry_disabled, err, errlen)
    ||  s_get_string (t, "cluster.p2p.curve_public_key", true, true,
                      &self->curve_public_key, err, errlen)
    ||  s_get_string (t, "cluster.p2p.curve_secret_key", true, true,
                      &self->curve_secret_key, err, errlen)
    ||  s_check_curve_keys (self, err, errlen))
        return -SH_EINVAL;
    self->max_request_size_mb = (size_t) mb;
    self->max_workers = (int) workers;
    self->tick_period_ms = (int) tick;
    self->compact_wal_entries = (int) compact;

    //  Qdrant's enum: Normal or Listener; spelled canonically from here on.
    if (!strcasecmp (self->node_type, "Normal") || !strcasecmp (self->node_type, "Listener")) {
        self->node_type [0] = (char) (self->node_type [0] & ~0x20);
        for (char *c = self->node_type + 1; *c; c++)
            *c = (char) (*c | 0x20);
    }
    else {
        json_t *value;
        s_lookup (t, "storage.node_type", &value, NULL, 0);
        return s_type_error ("storage.node_type", "\"Normal\" or \"Listener\"", value,
                             err, errlen);
    }
    if (!*self->host || !*self->storage_path || !*self->snapshots_path) {
        const char *path = !*self->host ? "service.host"
                         : !*self->storage_path ? "storage.storage_path"
                         : "storage.snapshots_path";
        json_t *value;
        s_lookup (t, path, &value, NULL, 0);
        return s_type_error (path, "a non-empty string", value, err, errlen);
    }
    return 0;
}

//  A config with the built-in values in its fields and tree, or the given tree.
static config_t *
s_config_new (json_t *tree)
{
    config_t *self = (config_t *) calloc (1, sizeof (config_t));
    assert (self);
    self->log_level = LOG_LEVEL_INFO;
    self->host = strdup ("0.0.0.0");
    self->http_port = 6333;
    self->grpc_port = 6334;
    self->max_request_size_mb = 32;
    self->max_workers = 0;
    self->enable_cors = true;
    self->cluster_enabled = false;
    self->p2p_port = 6335;
    self->tick_period_ms = 100;
    self->compact_wal_entries = 128;
    self->storage_path = strdup ("./storage");
    self->snapshots_path = strdup ("./snapshots");
    self->node_type = strdup ("Normal");
    self->telemetry_disabled = false;
    self->tree = tree ? tree : s_defaults ();
    assert (self->host && self->storage_path && self->snapshots_path && self->node_type);
    return self;
}

config_t *
config_new_default (void)
{
    config_t *self = s_config_new (NULL);
    int rc = s_extract (self, NULL, 0);
    assert (rc == 0);           //  the defaults are valid
    return self;
}

void
config_destroy (config_t **self_p)
{
    assert (self_p);
    config_t *self = *self_p;
    if (!self)
        return;
    s_free_fields (self);
    if (self->tree)
        json_decref (self->tree);
    free (self);
    *self_p = NULL;
}

//  Extracts, logs unknown keys; destroys self on failure.
static int
s_finish (config_t *self, config_t **out, char *err, size_t errlen)
{
    if (s_extract (self, err, errlen)) {
        config_destroy (&self);
        return -SH_EINVAL;
    }
    s_log_unknown (self->tree, "");
    *out = self;
    return 0;
}

int
config_load (const char *config_path, char **envp, config_t **out, char *err,
             size_t errlen)
{
    assert (out);
    *out = NULL;
    json_t *tree = s_defaults ();
    const char *run_mode = s_env_get (envp, "RUN_MODE");
    if (!run_mode || !*run_mode)
        run_mode = "development";
    const char *names [] = { "config", run_mode, "local" };
    for (size_t i = 0; i < 3; i++)
        if (s_merge_optional (tree, names [i], err, errlen)) {
            json_decref (tree);
            return -SH_EINVAL;
        }
    if (config_path && s_merge_file (tree, config_path, err, errlen)) {
        json_decref (tree);
        return -SH_EINVAL;
    }
    if (envp) {
        s_apply_env_prefix (tree, envp, "QDRANT__");
        s_apply_env_prefix (tree, envp, "SHOAL__");
    }
    return s_finish (s_config_new (tree), out, err, errlen);
}

//  Sets a dotted path in tree (creating sections), stealing value.
static void
s_set_path (json_t *tree, const char *path, json_t *value)
{
    char copy [256];
    snprintf (copy, sizeof copy, "%s", path);
    json_t *node = tree;
    char *save = NULL;
    char *key = strtok_r (copy, ".", &save);
    for (char *next = strtok_r (NULL, ".", &save); next;
         key = next, next = strtok_r (NULL, ".", &save)) {
        json_t *child = json_object_get (node, key);
        if (!json_is_object (child)) {
            child = json_object ();
            json_object_set_new (node, key, child);
        }
        node = child;
    }
    json_object_set_new (node, key, value);
}

static json_t *
s_string_or_null (const char *s)
{
    return s ? json_string (s) : json_null ();
}

char *
config_to_json (const config_t *self)
{
    assert (self);
    //  The fields win over the tree: a caller may have set one after loading
    //  (telemetry_disabled from --disable-telemetry, say).
    json_t *tree = json_deep_copy (self->tree);
    assert (tree);
    int level = LOG_LEVEL_INFO;
    if (s_get_log_level (tree, &level, NULL, 0) || level != self->log_level) {
        int index = self->log_level >= 0 && self->log_level <= LOG_LEVEL_TRACE
                  ? self->log_level : LOG_LEVEL_INFO;
        s_set_path (tree, "log_level", json_string (s_level_names [index]));
    }
    s_set_path (tree, "service.host", s_string_or_null (self->host));
    s_set_path (tree, "service.http_port", json_integer (self->http_port));
    s_set_path (tree, "service.grpc_port",
                self->grpc_port ? json_integer (self->grpc_port) : json_null ());
    s_set_path (tree, "service.api_key", s_string_or_null (self->api_key));
    s_set_path (tree, "service.read_only_api_key",
                s_string_or_null (self->read_only_api_key));
    s_set_path (tree, "service.max_request_size_mb",
                json_integer ((json_int_t) self->max_request_size_mb));
    s_set_path (tree, "service.max_workers", json_integer (self->max_workers));
    s_set_path (tree, "service.enable_cors", json_boolean (self->enable_cors));
    s_set_path (tree, "cluster.enabled", json_boolean (self->cluster_enabled));
    s_set_path (tree, "cluster.p2p.port", json_integer (self->p2p_port));
    s_set_path (tree, "cluster.consensus.tick_period_ms",
                json_integer (self->tick_period_ms));
    s_set_path (tree, "cluster.consensus.compact_wal_entries",
                json_integer (self->compact_wal_entries));
    s_set_path (tree, "cluster.p2p.curve_public_key",
                s_string_or_null (self->curve_public_key));
    s_set_path (tree, "cluster.p2p.curve_secret_key",
                s_string_or_null (self->curve_secret_key));
    s_set_path (tree, "storage.storage_path", s_string_or_null (self->storage_path));
    s_set_path (tree, "storage.snapshots_path", s_string_or_null (self->snapshots_path));
    s_set_path (tree, "storage.node_type", s_string_or_null (self->node_type));
    s_set_path (tree, "telemetry_disabled", json_boolean (self->telemetry_disabled));
    char *text = json_dumps (tree, JSON_COMPACT);
    json_decref (tree);
    assert (text);
    return text;
}

int
config_from_json (const char *text, config_t **out, char *err, size_t errlen)
{
    assert (out);
    *out = NULL;
    if (!text) {
        s_err (err, errlen, "config JSON: none given");
        return -SH_EINVAL;
    }
    json_error_t jerr;
    json_t *given = json_loads (text, JSON_REJECT_DUPLICATES, &jerr);
    if (!given) {
        s_err (err, errlen, "config JSON:%d:%d: %s", jerr.line, jerr.column, jerr.text);
        return -SH_EINVAL;
    }
    if (!json_is_object (given)) {
        s_err (err, errlen, "config JSON: the top level must be an object");
        json_decref (given);
        return -SH_EINVAL;
    }
    json_t *tree = s_defaults ();
    s_merge (tree, given);
    json_decref (given);
    return s_finish (s_config_new (tree), out, err, errlen);
}

//  ---------------------------------------------------------------------
//  The command line

typedef enum { S_URI, S_BOOTSTRAP, S_CONFIG_PATH, S_REINIT, S_DISABLE_TELEMETRY,
               S_HELP, S_VERSION, S_GENERATE_CLUSTER_KEY } s_flag_t;

static const struct {
    const char *name;       //  long name without "--"
    char short_name;        //  single-dash letter, or 0
    bool takes_value;       //  URI / FILE follows
    s_flag_t flag;
} s_flags [] = {
    { "uri",               0,   true,  S_URI },
    { "bootstrap",         0,   true,  S_BOOTSTRAP },
    { "config-path",       0,   true,  S_CONFIG_PATH },
    { "reinit",            0,   false, S_REINIT },
    { "disable-telemetry", 0,   false, S_DISABLE_TELEMETRY },
    { "help",              'h', false, S_HELP },
    { "version",           'V', false, S_VERSION },
    { "generate-cluster-key", 0, false, S_GENERATE_CLUSTER_KEY },
};
#define S_N_FLAGS (sizeof s_flags / sizeof s_flags [0])

void
cli_reset (cli_t *cli)
{
    if (!cli)
        return;
    free (cli->config_path);
    free (cli->uri);
    free (cli->bootstrap);
    memset (cli, 0, sizeof *cli);
}

static void
s_set_text (char **field, const char *value)
{
    free (*field);
    *field = strdup (value);
    assert (*field);
}

int
cli_parse (int argc, char **argv, cli_t *out, char *err, size_t errlen)
{
    assert (out);
    memset (out, 0, sizeof *out);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv [i];
        const char *name = NULL;        //  flag name as typed, for messages
        size_t name_len = 0;
        const char *inline_value = NULL;
        size_t which = S_N_FLAGS;
        if (arg [0] == '-' && arg [1] == '-' && arg [2]) {
            name = arg;
            const char *eq = strchr (arg, '=');
            name_len = eq ? (size_t) (eq - arg) : strlen (arg);
            inline_value = eq ? eq + 1 : NULL;
            for (size_t f = 0; f < S_N_FLAGS; f++)
                if (strlen (s_flags [f].name) == name_len - 2
                &&  !strncmp (s_flags [f].name, arg + 2, name_len - 2))
                    which = f;
        }
        else
        if (arg [0] == '-' && arg [1] && !arg [2]) {
            name = arg;
            name_len = 2;
            for (size_t f = 0; f < S_N_FLAGS; f++)
                if (s_flags [f].short_name && s_flags [f].short_name == arg [1])
                    which = f;
        }
        else {
            s_err (err, errlen, "unexpected argument \"%.64s\" (see --help)", arg);
            cli_reset (out);
            return -SH_EINVAL;
        }
        if (which == S_N_FLAGS) {
            s_err (err, errlen, "unknown flag %.*s (see --help)",
                   (int) (name_len > 64 ? 64 : name_len), name);
            cli_reset (out);
            return -SH_EINVAL;
        }
        const char *value = NULL;
        if (s_flags [which].takes_value) {
            if (inline_value)
                value = inline_value;
            else
            if (i + 1 < argc && !(argv [i + 1][0] == '-' && argv [i + 1][1]))
                value = argv [++i];
            if (!value || !*value) {
                s_err (err, errlen, "flag --%s needs a value", s_flags [which].name);
                cli_reset (out);
                return -SH_EINVAL;
            }
        }
        else
        if (inline_value) {
            s_err (err, errlen, "flag --%s takes no value", s_flags [which].name);
            cli_reset (out);
            return -SH_EINVAL;
        }
        switch (s_flags [which].flag) {
            case S_URI:               s_set_text (&out->uri, value); break;
            case S_BOOTSTRAP:         s_set_text (&out->bootstrap, value); break;
            case S_CONFIG_PATH:       s_set_text (&out->config_path, value); break;
            case S_REINIT:            out->reinit = true; break;
            case S_DISABLE_TELEMETRY: out->disable_telemetry = true; break;
            case S_HELP:              out->help = true; break;
            case S_VERSION:           out->version = true; break;
            case S_GENERATE_CLUSTER_KEY: out->generate_cluster_key = true; break;
        }
    }
    //  Qdrant reads these when the flags are absent (clap's env = ...).
    const char *env_uri = getenv ("QDRANT_URI");
    if (!out->uri && env_uri && *env_uri)
        s_set_text (&out->uri, env_uri);
    const char *env_bootstrap = getenv ("QDRANT_BOOTSTRAP");
    if (!out->bootstrap && env_bootstrap && *env_bootstrap)
        s_set_text (&out->bootstrap, env_bootstrap);
    return 0;
}

const char *
cli_usage (void)
{
    return
        "Usage: shoal [OPTIONS]\n"
        "\n"
        "A distributed vector search engine that speaks Qdrant's REST API.\n"
        "\n"
        "Options:\n"
        "      --uri <URI>           This peer's address as other peers reach it, e.g.\n"
        "                            http://10.0.0.1:6335 (cluster mode) [env: QDRANT_URI]\n"
        "      --bootstrap <URI>     Address of a running peer to join; without it this\n"
        "                            peer starts a new cluster [env: QDRANT_BOOTSTRAP]\n"
        "      --reinit              Reinitialise this peer's consensus state (keeping its\n"
        "                            peer id): from the bootstrap peer if one is given, else\n"
        "                            as the single member of a new cluster\n"
        "      --config-path <FILE>  A YAML config file read after config/*.yaml\n"
        "                            (must exist)\n"
        "      --disable-telemetry   Send no usage telemetry\n"
        "      --generate-cluster-key\n"
        "                            Print a new CURVE key pair for the p2p port as the\n"
        "                            two YAML lines curve_public_key/curve_secret_key of\n"
        "                            cluster.p2p (the same on every peer) and exit\n"
        "  -h, --help                Print this help and exit\n"
        "  -V, --version             Print the version and exit\n"
        "\n"
        "Every flag with a value also takes the form --flag=value.\n"
        "\n"
        "Environment:\n"
        "  QDRANT_URI, QDRANT_BOOTSTRAP  Used when --uri / --bootstrap are not given\n"
        "  RUN_MODE                      Picks config/$RUN_MODE.yaml (default development)\n"
        "  QDRANT__SECTION__KEY=value    Overrides a config key, e.g.\n"
        "                                QDRANT__SERVICE__HTTP_PORT=7000\n"
        "  SHOAL__SECTION__KEY=value     The same, applied after (and winning over)\n"
        "                                QDRANT__ overrides\n"
        "\n"
        "Config layers, later wins: built-in defaults, config/config.yaml,\n"
        "config/$RUN_MODE.yaml, config/local.yaml, --config-path, environment.\n";
}
