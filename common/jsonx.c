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

//  One number as the text said it: an integer that fits int64, or a real.
typedef struct {
    bool integral;                      //  which of the two
    json_int_t i;                       //  the integer
    double d;                           //  the real
} s_num_t;

typedef struct {
    json_t *holder;                     //  the placeholder in the tree (a reference)
    float *values;                      //  the numbers as float32
    size_t count;                       //  how many
} s_packed_item_t;

struct _jsonx_packed_t {
    s_packed_item_t *items;             //  one per packed array
    size_t n;                           //  items used
    size_t cap;                         //  items allocated
};

typedef struct {
    json_t *stack [JSONX_MAX_DEPTH];    //  open containers, innermost last
    char *keys [JSONX_MAX_DEPTH];       //  pending key of each open object
    size_t depth;                       //  entries in stack
    json_t *root;                       //  the finished top-level value
    const char *error;                  //  our own error (not YAJL's), or NULL
    int flags;                          //  JSONX_* given to jsonx_loadb
    const char *const *pack_keys;       //  keys whose number arrays are packed, or NULL
    jsonx_packed_t *packed;             //  what was packed so far, or NULL
    bool packing;                       //  inside an array that may still be packed
    s_num_t *nums;                      //  its numbers so far (to unpack them)
    float *floats;                      //  the same as float32
    size_t n_nums;                      //  how many
    size_t cap_nums;                    //  room in nums and floats
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

static int s_open (s_builder_t *self, json_t *container);
static int s_unpack (s_builder_t *self);

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
    s_builder_t *self = (s_builder_t *) ctx;
    if (self->packing && !s_unpack (self))
        return 0;
    return s_add (self, json_null ());
}

static int
s_on_boolean (void *ctx, int value)
{
    s_builder_t *self = (s_builder_t *) ctx;
    if (self->packing && !s_unpack (self))
        return 0;
    return s_add (self, json_boolean (value));
}

//  Reads one number token as jansson would take it; 0 with self->error set
//  when it cannot be kept (an integer beyond int64, a real beyond double).
static int
s_number (s_builder_t *self, const char *text, size_t len, s_num_t *num)
{
    //  One pass: the digits of an integer are summed until a '.', 'e' or
    //  'E' says it is a real (YAJL has checked the syntax).
    const char *p = text, *end = text + len;
    bool negative = *p == '-';
    if (negative)
        p++;
    uint64_t value = 0;
    bool overflow = false;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            break;
        uint64_t digit = (uint64_t) (*p - '0');
        if (value > (UINT64_MAX - digit) / 10)
            overflow = true;
        value = value * 10 + digit;
    }
    if (p == end) {
        //  As jansson: an integer must fit json_int_t (int64).
        if (overflow) {
            self->error = "too big integer";
            return 0;
        }
        if ((!negative && value > (uint64_t) INT64_MAX)
        ||  (negative && value > (uint64_t) INT64_MAX + 1)) {
            self->error = negative ? "too big negative integer" : "too big integer";
            return 0;
        }
        num->integral = true;
        num->i = negative ? (json_int_t) (0 - value) : (json_int_t) value;
        return 1;
    }
    double real = jsonx_strtod (text, len);
    if (real == HUGE_VAL || real == -HUGE_VAL) {
        self->error = "real number overflow";
        return 0;
    }
    num->integral = false;
    num->d = real;
    return 1;
}

static json_t *
s_num_json (const s_num_t *num)
{
    return num->integral ? json_integer (num->i) : json_real (num->d);
}

//  The array being packed holds something else than numbers: it becomes an
//  ordinary open array holding the numbers seen so far.
static int
s_unpack (s_builder_t *self)
{
    self->packing = false;
    json_t *array = json_array ();
    if (!array) {
        self->error = "out of memory";
        return 0;
    }
    for (size_t i = 0; i < self->n_nums; i++)
        json_array_append_new (array, s_num_json (&self->nums [i]));
    self->n_nums = 0;
    return s_open (self, array);
}

//  The array being packed closed: its numbers go to self->packed and a
//  placeholder to the tree (an empty array is an ordinary one).
static int
s_pack (s_builder_t *self)
{
    self->packing = false;
    if (self->n_nums == 0)
        return s_add (self, json_array ());
    if (!self->packed) {
        self->packed = (jsonx_packed_t *) calloc (1, sizeof (jsonx_packed_t));
        assert (self->packed);
    }
    jsonx_packed_t *packed = self->packed;
    if (packed->n == packed->cap) {
        packed->cap = packed->cap ? packed->cap * 2 : 8;
        packed->items = (s_packed_item_t *) realloc (packed->items,
                                                     packed->cap * sizeof (s_packed_item_t));
        assert (packed->items);
    }
    json_t *holder = json_object ();
    float *values = (float *) malloc (self->n_nums * sizeof (float));
    assert (holder && values);
    memcpy (values, self->floats, self->n_nums * sizeof (float));
    //  The set keeps its own reference, so a placeholder replaced in the
    //  tree (a duplicate key) is not freed and its address never reused
    //  for another value while the set lives.
    packed->items [packed->n++] = (s_packed_item_t) {
        .holder = json_incref (holder), .values = values, .count = self->n_nums
    };
    self->n_nums = 0;
    return s_add (self, holder);
}

static int
s_on_number (void *ctx, const char *text, size_t len)
{
    s_builder_t *self = (s_builder_t *) ctx;
    s_num_t num;
    if (!s_number (self, text, len, &num))
        return 0;
    if (!self->packing)
        return s_add (self, s_num_json (&num));
    if (self->n_nums == self->cap_nums) {
        self->cap_nums = self->cap_nums ? self->cap_nums * 2 : 1024;
        self->nums = (s_num_t *) realloc (self->nums, self->cap_nums * sizeof (s_num_t));
        self->floats = (float *) realloc (self->floats, self->cap_nums * sizeof (float));
        assert (self->nums && self->floats);
    }
    self->nums [self->n_nums] = num;
    //  What (float) json_number_value () of the jansson value would give.
    self->floats [self->n_nums] = (float) (num.integral ? (double) num.i : num.d);
    self->n_nums++;
    return 1;
}

static int
s_on_string (void *ctx, const unsigned char *text, size_t len)
{
    s_builder_t *self = (s_builder_t *) ctx;
    if (self->packing && !s_unpack (self))
        return 0;
    return s_add (self, json_stringn_nocheck ((const char *) text, len));
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
    s_builder_t *self = (s_builder_t *) ctx;
    if (self->packing && !s_unpack (self))
        return 0;
    return s_open (self, json_object ());
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
    s_builder_t *self = (s_builder_t *) ctx;
    //  Only an array can end while packing: opening a map unpacks.
    if (self->packing)
        return s_pack (self);
    return s_close (self);
}

//  True when the value about to start is that of a key to pack.
static bool
s_packs_here (s_builder_t *self)
{
    if (!self->pack_keys || self->depth == 0 || !self->keys [self->depth - 1])
        return false;
    for (const char *const *key = self->pack_keys; *key; key++)
        if (strcmp (*key, self->keys [self->depth - 1]) == 0)
            return true;
    return false;
}

static int
s_on_start_array (void *ctx)
{
    s_builder_t *self = (s_builder_t *) ctx;
    if (self->packing && !s_unpack (self))
        return 0;
    if (s_packs_here (self)) {
        //  Nothing is opened: the key stays pending until the array ends.
        self->packing = true;
        self->n_nums = 0;
        return 1;
    }
    return s_open (self, json_array ());
}

static const yajl_callbacks s_callbacks = {
    s_on_null, s_on_boolean, NULL, NULL, s_on_number, s_on_string,
    s_on_start_map, s_on_map_key, s_on_end, s_on_start_array, s_on_end
};

static json_t *
s_load (const char *text, size_t len, int flags, const char *const *keys,
        jsonx_packed_t **packed, char *err, size_t errlen)
{
    s_builder_t *self = (s_builder_t *) calloc (1, sizeof (s_builder_t));
    assert (self);
    self->flags = flags;
    self->pack_keys = keys;
    yajl_handle parser = yajl_alloc (&s_callbacks, NULL, self);
    assert (parser);
    yajl_status status = yajl_parse (parser, (const unsigned char *) text, len);
    if (status == yajl_status_ok)
        status = yajl_complete_parse (parser);
    json_t *result = NULL;
    if (status == yajl_status_ok && self->root && self->depth == 0 && !self->packing)
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
        jsonx_packed_destroy (&self->packed);
    }
    if (packed)
        *packed = self->packed;
    else
        jsonx_packed_destroy (&self->packed);
    free (self->nums);
    free (self->floats);
    yajl_free (parser);
    free (self);
    return result;
}

json_t *
jsonx_loadb (const char *text, size_t len, int flags, char *err, size_t errlen)
{
    return s_load (text, len, flags, NULL, NULL, err, errlen);
}

json_t *
jsonx_loadb_packed (const char *text, size_t len, int flags, const char *const *keys,
                    jsonx_packed_t **packed, char *err, size_t errlen)
{
    assert (packed);
    *packed = NULL;
    return s_load (text, len, flags, keys, packed, err, errlen);
}

const float *
jsonx_packed_find (const jsonx_packed_t *self, const json_t *value, size_t *count)
{
    if (!self || !value)
        return NULL;
    for (size_t i = 0; i < self->n; i++)
        if (self->items [i].holder == value) {
            *count = self->items [i].count;
            return self->items [i].values;
        }
    return NULL;
}

void
jsonx_packed_destroy (jsonx_packed_t **self_p)
{
    assert (self_p);
    jsonx_packed_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->n; i++) {
        json_decref (self->items [i].holder);
        free (self->items [i].values);
    }
    free (self->items);
    free (self);
    *self_p = NULL;
}
