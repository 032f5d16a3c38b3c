/*  jsonx: YAJL tokens -> jansson tree, with fast exact number conversion
    (see jsonx.h for why).
*/
#include "common/jsonx.h"
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

typedef struct {
    json_t *stack [JSONX_MAX_DEPTH];    //  open containers, innermost last
    char *keys [JSONX_MAX_DEPTH];       //  pending key of each open object
    size_t depth;                       //  entries in stack
    json_t *root;                       //  the finished top-level value
    const char *error;                  //  our own error (not YAJL's), or NULL
    int flags;                          //  JSONX_* given to jsonx_loadb
} s_builder_t;

//  Powers of ten that are exact in a double (10^22 is the largest).
static const double s_pow10 [] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
};

double
jsonx_strtod (const char *text, size_t len)
{
    //  Clinger's fast path: with a mantissa below 2^53 and a power of ten
    //  within 10^±22, both operands are exact doubles and IEEE division or
    //  multiplication rounds once, correctly.
    const char *p = text, *end = text + len;
    bool negative = false;
    if (p < end && *p == '-') {
        negative = true;
        p++;
    }
    uint64_t mantissa = 0;
    int digits = 0;             //  significant digits taken into mantissa
    int exp10 = 0;
    bool exact = true;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (mantissa == 0 && *p == '0')
            continue;           //  leading zeros carry nothing
        if (digits < 19) {
            mantissa = mantissa * 10 + (uint64_t) (*p - '0');
            digits++;
        }
        else {
            exp10++;
            exact = false;      //  dropped a digit: let strtod round
        }
    }
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
            if (mantissa == 0 && *p == '0') {
                exp10--;
                continue;
            }
            if (digits < 19) {
                mantissa = mantissa * 10 + (uint64_t) (*p - '0');
                digits++;
                exp10--;
            }
            else if (*p != '0')
                exact = false;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        int e = 0;
        for (; p < end && *p >= '0' && *p <= '9'; p++)
            if (e < 100000)
                e = e * 10 + (*p - '0');
        exp10 += eneg ? -e : e;
    }
    if (exact && mantissa < (UINT64_C (1) << 53) && exp10 >= -22 && exp10 <= 22) {
        double value = (double) mantissa;
        value = exp10 < 0 ? value / s_pow10 [-exp10] : value * s_pow10 [exp10];
        return negative ? -value : value;
    }
    //  Rare: long mantissas, huge exponents. strtod needs a terminated
    //  string; the process runs in the C locale, so '.' is the radix.
    char buf [128];
    char *copy = len < sizeof buf ? buf : (char *) malloc (len + 1);
    assert (copy);
    memcpy (copy, text, len);
    copy [len] = 0;
    double value = strtod (copy, NULL);
    if (copy != buf)
        free (copy);
    return value;
}

//  Attaches a finished value to the innermost container (or makes it the
//  root). Steals value.
static int
s_add (s_builder_t *self, json_t *value)
{
    if (!value) {
        self->error = "out of memory";
        return 0;
    }
    if (self->depth == 0) {
        self->root = value;
        return 1;
    }
    json_t *top = self->stack [self->depth - 1];
    if (json_is_array (top))
        json_array_append_new (top, value);
    else {
        char *key = self->keys [self->depth - 1];
        assert (key);
        json_object_set_new_nocheck (top, key, value);
        free (key);
        self->keys [self->depth - 1] = NULL;
    }
    return 1;
}

static int
s_on_null (void *ctx)
{
    return s_add ((s_builder_t *) ctx, json_null ());
}

static int
s_on_boolean (void *ctx, int value)
{
    return s_add ((s_builder_t *) ctx, json_boolean (value));
}

static int
s_on_number (void *ctx, const char *text, size_t len)
{
    s_builder_t *self = (s_builder_t *) ctx;
    bool integral = !memchr (text, '.', len) && !memchr (text, 'e', len)
                 && !memchr (text, 'E', len);
    if (integral) {
        //  As jansson: an integer must fit json_int_t (int64).
        const char *p = text;
        bool negative = *p == '-';
        if (negative)
            p++;
        uint64_t value = 0;
        for (; p < text + len; p++) {
            uint64_t digit = (uint64_t) (*p - '0');
            if (value > (UINT64_MAX - digit) / 10) {
                self->error = "too big integer";
                return 0;
            }
            value = value * 10 + digit;
        }
        if ((!negative && value > (uint64_t) INT64_MAX)
        ||  (negative && value > (uint64_t) INT64_MAX + 1)) {
            self->error = negative ? "too big negative integer" : "too big integer";
            return 0;
        }
        json_int_t number = negative ? (json_int_t) (0 - value) : (json_int_t) value;
        return s_add (self, json_integer (number));
    }
    double value = jsonx_strtod (text, len);
    if (value == HUGE_VAL || value == -HUGE_VAL) {
        self->error = "real number overflow";
        return 0;
    }
    return s_add (self, json_real (value));
}

static int
s_on_string (void *ctx, const unsigned char *text, size_t len)
{
    return s_add ((s_builder_t *) ctx, json_stringn_nocheck ((const char *) text, len));
}

static int
s_open (s_builder_t *self, json_t *container)
{
    if (self->depth >= JSONX_MAX_DEPTH) {
        json_decref (container);
        self->error = "maximum nesting depth exceeded";
        return 0;
    }
    self->stack [self->depth] = container;
    self->keys [self->depth] = NULL;
    self->depth++;
    return 1;
}

static int
s_close (s_builder_t *self)
{
    assert (self->depth > 0);
    self->depth--;
    json_t *container = self->stack [self->depth];
    return s_add (self, container);
}

static int
s_on_start_map (void *ctx)
{
    return s_open ((s_builder_t *) ctx, json_object ());
}

static int
s_on_map_key (void *ctx, const unsigned char *key, size_t len)
{
    s_builder_t *self = (s_builder_t *) ctx;
    if (memchr (key, 0, len)) {
        //  jansson keys are C strings: a NUL inside one cannot be kept.
        self->error = "NUL character in object key";
        return 0;
    }
    char *copy = (char *) malloc (len + 1);
    assert (copy);
    memcpy (copy, key, len);
    copy [len] = 0;
    if ((self->flags & JSONX_REJECT_DUPLICATES)
        && json_object_get (self->stack [self->depth - 1], copy)) {
        free (copy);
        self->error = "duplicate object key";
        return 0;
    }
    free (self->keys [self->depth - 1]);
    self->keys [self->depth - 1] = copy;
    return 1;
}

static int
s_on_end (void *ctx)
{
    return s_close ((s_builder_t *) ctx);
}

static int
s_on_start_array (void *ctx)
{
    return s_open ((s_builder_t *) ctx, json_array ());
}

static const yajl_callbacks s_callbacks = {
    s_on_null, s_on_boolean, NULL, NULL, s_on_number, s_on_string,
    s_on_start_map, s_on_map_key, s_on_end, s_on_start_array, s_on_end
};

json_t *
jsonx_loadb (const char *text, size_t len, int flags, char *err, size_t errlen)
{
    s_builder_t *self = (s_builder_t *) calloc (1, sizeof (s_builder_t));
    assert (self);
    self->flags = flags;
    yajl_handle parser = yajl_alloc (&s_callbacks, NULL, self);
    assert (parser);
    yajl_status status = yajl_parse (parser, (const unsigned char *) text, len);
    if (status == yajl_status_ok)
        status = yajl_complete_parse (parser);
    json_t *result = NULL;
    if (status == yajl_status_ok && self->root && self->depth == 0)
        result = self->root;
    else {
        if (self->error)
            snprintf (err, errlen, "%s at offset %zu", self->error,
                      yajl_get_bytes_consumed (parser));
        else {
            unsigned char *message = yajl_get_error (parser, 0, NULL, 0);
            //  YAJL's text ends with a newline; keep one line.
            snprintf (err, errlen, "%s at offset %zu",
                      message ? (const char *) message : "malformed JSON",
                      yajl_get_bytes_consumed (parser));
            size_t n = strlen (err);
            for (size_t i = 0; i < n; i++)
                if (err [i] == '\n')
                    err [i] = ' ';
            if (message)
                yajl_free_error (parser, message);
        }
        if (self->root)
            json_decref (self->root);
        while (self->depth > 0) {
            self->depth--;
            json_decref (self->stack [self->depth]);
            free (self->keys [self->depth]);
        }
    }
    yajl_free (parser);
    free (self);
    return result;
}
