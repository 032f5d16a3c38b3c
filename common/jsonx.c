/*  jsonx: YAJL tokens -> jansson tree, with fast exact number conversion
    (see jsonx.h for why).
*/
#include "common/jsonx.h"
#include "common/fmtnum.h"
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

//  The pre-scan of jsonx_loadb_packed: in document order, every array that
//  is the value of a pack key, and for those that are plain lists of
//  numbers, the numbers as float32. YAJL then reads a copy of the text in
//  which those lists are blanked out (spaces, so offsets stay those of the
//  text): its tokenizer costs ~15 ns a number, this scan ~3.
typedef struct _s_pre_array_t {
    bool parsed;                        //  a list of numbers, taken here
    size_t first;                       //  its index in floats
    size_t count;                       //  how many
} s_pre_array_t;

typedef struct _s_prescan_t {
    s_pre_array_t *arrays;              //  every pack key's array, in order
    size_t n;                           //  entries used
    size_t cap;                         //  entries allocated
    float *floats;                      //  the numbers of the parsed ones
    size_t n_floats;                    //  used
    size_t cap_floats;                  //  allocated
    char *text;                         //  the copy with the parsed lists blanked
} s_prescan_t;

static void
s_prescan_free (s_prescan_t *pre)
{
    free (pre->arrays);
    free (pre->floats);
    free (pre->text);
    memset (pre, 0, sizeof *pre);
}

static bool
s_is_ws (char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *
s_skip_ws (const char *p, const char *end)
{
    while (p < end && s_is_ws (*p))
        p++;
    return p;
}

//  One JSON number at p, strictly by the grammar, as jsonx_loadb would
//  take it; false (nothing taken) for anything else, including what the
//  loader would refuse (an integer beyond int64, a real beyond double):
//  the normal path then gives the answer.
static bool
s_scan_number (const char **pp, const char *end, float *out)
{
    const char *p = *pp, *start = p;
    bool negative = p < end && *p == '-';
    if (negative)
        p++;
    if (p == end || *p < '0' || *p > '9')
        return false;
    uint64_t value = 0;
    bool overflow = false;
    if (*p == '0')
        p++;
    else
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            uint64_t digit = (uint64_t) (*p - '0');
            if (value > (UINT64_MAX - digit) / 10)
                overflow = true;
            value = value * 10 + digit;
        }
    bool integral = true;
    if (p < end && *p == '.') {
        integral = false;
        p++;
        if (p == end || *p < '0' || *p > '9')
            return false;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integral = false;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || *p < '0' || *p > '9')
            return false;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (integral) {
        if (overflow || value > (uint64_t) INT64_MAX + negative)
            return false;
        json_int_t i = negative ? (json_int_t) (0 - value) : (json_int_t) value;
        *out = (float) (double) i;
    }
    else {
        double d = jsonx_strtod (start, (size_t) (p - start));
        if (d == HUGE_VAL || d == -HUGE_VAL)
            return false;
        *out = (float) d;
    }
    *pp = p;
    return true;
}

//  Takes the list of numbers that starts after the '[' at p (the list and
//  its ']'): true with the numbers added to pre, *after past the ']'.
static bool
s_scan_list (s_prescan_t *pre, const char *p, const char *end, const char **after)
{
    size_t mark = pre->n_floats;
    p = s_skip_ws (p, end);
    if (p < end && *p == ']')
        return false;                   //  empty: an ordinary array
    for (;;) {
        if (pre->n_floats == pre->cap_floats) {
            pre->cap_floats = pre->cap_floats ? pre->cap_floats * 2 : 1024;
            pre->floats = (float *) realloc (pre->floats, pre->cap_floats * sizeof (float));
            assert (pre->floats);
        }
        if (!s_scan_number (&p, end, &pre->floats [pre->n_floats])) {
            pre->n_floats = mark;
            return false;
        }
        pre->n_floats++;
        p = s_skip_ws (p, end);
        if (p < end && *p == ']') {
            *after = p + 1;
            return true;
        }
        if (p == end || *p != ',') {
            pre->n_floats = mark;
            return false;
        }
        p = s_skip_ws (p + 1, end);
    }
}

//  The pack matching key (len bytes) in an object at depth, or NULL.
static const jsonx_pack_t *
s_pack_match (const jsonx_pack_t *packs, const char *key, size_t len, size_t depth)
{
    for (const jsonx_pack_t *pack = packs; pack && pack->key; pack++)
        if ((pack->depth == 0 || (size_t) pack->depth == depth)
            && strlen (pack->key) == len && memcmp (pack->key, key, len) == 0)
            return pack;
    return NULL;
}

//  Takes one list of numbers at p (its '['), registered as the next packed
//  array: its numbers taken and blanked when it is a plain list. *after is
//  past its ']' when it was taken, else p + 1.
static void
s_prescan_array (s_prescan_t *pre, const char *text, size_t len, const char *p,
                 const char *end, const char **after)
{
    if (pre->n == pre->cap) {
        pre->cap = pre->cap ? pre->cap * 2 : 8;
        pre->arrays = (s_pre_array_t *) realloc (pre->arrays, pre->cap * sizeof (s_pre_array_t));
        assert (pre->arrays);
    }
    s_pre_array_t *array = &pre->arrays [pre->n++];
    *array = (s_pre_array_t) { .first = pre->n_floats };
    if (s_scan_list (pre, p + 1, end, after)) {
        array->parsed = true;
        array->count = pre->n_floats - array->first;
        if (!pre->text) {
            pre->text = (char *) malloc (len);
            assert (pre->text);
            memcpy (pre->text, text, len);
        }
        //  Blank what is between the brackets: YAJL sees [ ... ].
        memset (pre->text + (p + 1 - text), ' ', (size_t) (*after - 1 - (p + 1)));
    }
    else
        *after = p + 1;
}

//  Scans text for the arrays the packs name, in document order, as the
//  builder meets them (s_packs_here). false when it cannot tell: an
//  unterminated string, a key with escapes (YAJL would decode it to
//  something the raw text does not say), or a nested pack's array holding
//  anything but lists of numbers; then nothing is pre-scanned.
static bool
s_prescan (const char *text, size_t len, const jsonx_pack_t *packs, s_prescan_t *pre)
{
    const char *p = text, *end = text + len;
    size_t depth = 0;                   //  containers open at p
    while (p < end) {
        if (*p != '"') {
            if (*p == '{' || *p == '[')
                depth++;
            else
            if ((*p == '}' || *p == ']') && depth > 0)
                depth--;
            p++;
            continue;
        }
        const char *key = ++p;
        bool escaped = false;
        while (p < end && *p != '"') {
            if (*p == '\\') {
                escaped = true;
                p++;
            }
            p++;
        }
        if (p >= end)
            return false;
        size_t key_len = (size_t) (p - key);
        const char *colon = s_skip_ws (p + 1, end);
        p++;
        if (colon == end || *colon != ':')
            continue;                   //  a string value, not a key
        if (escaped)
            return false;
        const jsonx_pack_t *pack = s_pack_match (packs, key, key_len, depth);
        const char *value = s_skip_ws (colon + 1, end);
        p = value;
        if (!pack || value == end || *value != '[')
            continue;                   //  the loop counts what opens there
        if (!pack->nested) {
            const char *after;
            s_prescan_array (pre, text, len, value, end, &after);
            if (after == value + 1)
                depth++;                //  not taken: scanned on, it may hold keys
            p = after;
            continue;
        }
        //  A column: every element a list of numbers, or no pre-scan.
        const char *q = s_skip_ws (value + 1, end);
        if (q < end && *q == ']') {
            p = q + 1;
            continue;
        }
        for (;;) {
            if (q == end || *q != '[')
                return false;
            const char *after;
            s_prescan_array (pre, text, len, q, end, &after);
            if (after == q + 1)
                return false;
            q = s_skip_ws (after, end);
            if (q < end && *q == ',') {
                q = s_skip_ws (q + 1, end);
                continue;
            }
            if (q < end && *q == ']')
                break;
            return false;
        }
        p = q + 1;
    }
    return true;
}

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
    size_t next;                        //  where the next find starts (readers
                                        //  go in document order)
};

typedef struct {
    json_t *stack [JSONX_MAX_DEPTH];    //  open containers, innermost last
    char *keys [JSONX_MAX_DEPTH];       //  pending key of each open object
    size_t depth;                       //  entries in stack
    json_t *root;                       //  the finished top-level value
    const char *error;                  //  our own error (not YAJL's), or NULL
    int flags;                          //  JSONX_* given to jsonx_loadb
    const jsonx_pack_t *packs;          //  where number arrays are packed, or NULL
    jsonx_packed_t *packed;             //  what was packed so far, or NULL
    bool packing;                       //  inside an array that may still be packed
    const struct _s_prescan_t *pre;     //  arrays the pre-scan parsed, or NULL
    size_t n_seen;                      //  arrays under pack keys so far
    const struct _s_pre_array_t *taken; //  the pre-scanned one being read, or NULL
    bool mismatch;                      //  the pre-scan and YAJL disagreed
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
    if (self->taken) {
        //  Blanked by the pre-scan, yet YAJL found something in it.
        self->mismatch = true;
        self->error = "pre-scan mismatch";
        return 0;
    }
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
    const s_pre_array_t *taken = self->taken;
    self->taken = NULL;
    if (taken && self->n_nums) {
        //  The pre-scan blanked this list: YAJL cannot have seen numbers.
        self->mismatch = true;
        self->error = "pre-scan mismatch";
        return 0;
    }
    if (taken) {
        //  Its numbers, as the scan took them.
        if (self->cap_nums < taken->count) {
            self->cap_nums = taken->count;
            self->nums = (s_num_t *) realloc (self->nums, self->cap_nums * sizeof (s_num_t));
            self->floats = (float *) realloc (self->floats, self->cap_nums * sizeof (float));
            assert (self->nums && self->floats);
        }
        memcpy (self->floats, self->pre->floats + taken->first, taken->count * sizeof (float));
        self->n_nums = taken->count;
    }
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

//  True when the array about to start is one to pack: the value of a pack's
//  key in an object at its depth, or, for a nested pack, an element of the
//  array that is that value. (An array being packed is not on the stack;
//  a column's array is, with its key still pending in its object.)
static bool
s_packs_here (s_builder_t *self)
{
    if (!self->packs || self->depth == 0)
        return false;
    size_t d = self->depth;
    const char *key = self->keys [d - 1];
    if (key) {
        const jsonx_pack_t *pack = s_pack_match (self->packs, key, strlen (key), d);
        return pack && !pack->nested;
    }
    if (d < 2 || !json_is_array (self->stack [d - 1]) || !self->keys [d - 2])
        return false;
    key = self->keys [d - 2];
    const jsonx_pack_t *pack = s_pack_match (self->packs, key, strlen (key), d - 1);
    return pack && pack->nested;
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
        size_t k = self->n_seen++;
        if (self->pre && k < self->pre->n && self->pre->arrays [k].parsed)
            self->taken = &self->pre->arrays [k];
        return 1;
    }
    return s_open (self, json_array ());
}

static const yajl_callbacks s_callbacks = {
    s_on_null, s_on_boolean, NULL, NULL, s_on_number, s_on_string,
    s_on_start_map, s_on_map_key, s_on_end, s_on_start_array, s_on_end
};

static json_t *
s_load_with (const char *text, size_t len, int flags, const jsonx_pack_t *packs,
             const s_prescan_t *pre, jsonx_packed_t **packed, char *err, size_t errlen,
             bool *mismatch)
{
    s_builder_t *self = (s_builder_t *) calloc (1, sizeof (s_builder_t));
    assert (self);
    self->flags = flags;
    self->packs = packs;
    self->pre = pre;
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
    *mismatch = self->mismatch;
    free (self->nums);
    free (self->floats);
    yajl_free (parser);
    free (self);
    return result;
}

static json_t *
s_load (const char *text, size_t len, int flags, const jsonx_pack_t *packs,
        jsonx_packed_t **packed, char *err, size_t errlen)
{
    s_prescan_t pre = { 0 };
    if (packs && !s_prescan (text, len, packs, &pre))
        s_prescan_free (&pre);
    bool mismatch = false;
    json_t *result = s_load_with (pre.text ? pre.text : text, len, flags, packs,
                                  pre.text ? &pre : NULL, packed, err, errlen, &mismatch);
    s_prescan_free (&pre);
    //  Not seen on valid or invalid input; should the scan and YAJL ever
    //  disagree, the text is parsed again without the scan.
    if (mismatch)
        result = s_load_with (text, len, flags, packs, NULL, packed, err, errlen, &mismatch);
    return result;
}

json_t *
jsonx_loadb (const char *text, size_t len, int flags, char *err, size_t errlen)
{
    return s_load (text, len, flags, NULL, NULL, err, errlen);
}

json_t *
jsonx_loadb_packs (const char *text, size_t len, int flags, const jsonx_pack_t *packs,
                   jsonx_packed_t **packed, char *err, size_t errlen)
{
    assert (packed);
    *packed = NULL;
    return s_load (text, len, flags, packs, packed, err, errlen);
}

json_t *
jsonx_loadb_packed (const char *text, size_t len, int flags, const char *const *keys,
                    jsonx_packed_t **packed, char *err, size_t errlen)
{
    size_t n = 0;
    while (keys && keys [n])
        n++;
    jsonx_pack_t *packs = (jsonx_pack_t *) calloc (n + 1, sizeof (jsonx_pack_t));
    assert (packs);
    for (size_t i = 0; i < n; i++)
        packs [i].key = keys [i];
    json_t *result = jsonx_loadb_packs (text, len, flags, packs, packed, err, errlen);
    free (packs);
    return result;
}

const float *
jsonx_packed_find (const jsonx_packed_t *self, const json_t *value, size_t *count)
{
    if (!self || !value || self->n == 0)
        return NULL;
    //  From the last one found, around: a column of a thousand vectors read
    //  in order (each maybe twice) costs a compare or two each, not a walk.
    jsonx_packed_t *cursor = (jsonx_packed_t *) self;
    size_t start = self->next ? self->next - 1 : 0;
    for (size_t k = 0; k < self->n; k++) {
        size_t i = (start + k) % self->n;
        if (self->items [i].holder == value) {
            cursor->next = i + 1;
            *count = self->items [i].count;
            return self->items [i].values;
        }
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

//  ---------------------------------------------------------------------------
//  Tree -> text

void
jsonx_write_raw (jsonx_buf_t *buf, const char *s, size_t len)
{
    if (buf->len + len + 1 > buf->cap) {
        size_t cap = buf->cap ? buf->cap * 2 : 256;
        while (cap < buf->len + len + 1)
            cap *= 2;
        buf->data = (char *) realloc (buf->data, cap);
        assert (buf->data);
        buf->cap = cap;
    }
    memcpy (buf->data + buf->len, s, len);
    buf->len += len;
    buf->data [buf->len] = 0;
}

void
jsonx_write_string (jsonx_buf_t *buf, const char *s, size_t len)
{
    static const char hex [] = "0123456789abcdef";
    jsonx_write_raw (buf, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s [i];
        const char *esc = NULL;
        char ubuf [8];
        switch (c) {
            case '"': esc = "\\\""; break;
            case '\\': esc = "\\\\"; break;
            case '\n': esc = "\\n"; break;
            case '\r': esc = "\\r"; break;
            case '\t': esc = "\\t"; break;
            case '\b': esc = "\\b"; break;
            case '\f': esc = "\\f"; break;
            default:
                if (c < 0x20) {
                    memcpy (ubuf, "\\u00", 4);
                    ubuf [4] = hex [c >> 4];
                    ubuf [5] = hex [c & 15];
                    ubuf [6] = 0;
                    esc = ubuf;
                }
        }
        if (esc) {
            jsonx_write_raw (buf, s + i - run, run);
            run = 0;
            jsonx_write_raw (buf, esc, strlen (esc));
        }
        else
            run++;
    }
    jsonx_write_raw (buf, s + len - run, run);
    jsonx_write_raw (buf, "\"", 1);
}

static void
s_write_integer (jsonx_buf_t *buf, json_int_t value)
{
    char tmp [24];
    char *p = tmp + sizeof tmp;
    //  Through uint64: -INT64_MIN does not fit an int64.
    uint64_t magnitude = value < 0 ? 0 - (uint64_t) value : (uint64_t) value;
    do {
        *--p = (char) ('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0)
        *--p = '-';
    jsonx_write_raw (buf, p, (size_t) (tmp + sizeof tmp - p));
}

static void s_write (jsonx_buf_t *buf, const json_t *json, bool exact);

void
jsonx_write (jsonx_buf_t *buf, const json_t *json)
{
    s_write (buf, json, false);
}

void
jsonx_write_exact (jsonx_buf_t *buf, const json_t *json)
{
    s_write (buf, json, true);
}

static void
s_write_real (jsonx_buf_t *buf, double value, bool exact)
{
    char tmp [FMTNUM_SIZE];
    size_t n;
    if (!exact)
        n = fmtnum_double (value, tmp);
    else
    if (!fmtnum_double_short (value, tmp, &n)) {
        //  17 significant digits always read back as the same double.
        n = (size_t) snprintf (tmp, sizeof tmp, "%.17g", value);
        if (!memchr (tmp, '.', n) && !memchr (tmp, 'e', n)) {
            memcpy (tmp + n, ".0", 3);      //  a real stays a real
            n += 2;
        }
    }
    jsonx_write_raw (buf, tmp, n);
}

static void
s_write (jsonx_buf_t *buf, const json_t *json, bool exact)
{
    switch (json_typeof (json)) {
        case JSON_OBJECT: {
            jsonx_write_raw (buf, "{", 1);
            const char *key;
            json_t *value;
            bool first = true;
            json_object_foreach ((json_t *) json, key, value) {
                if (!first)
                    jsonx_write_raw (buf, ",", 1);
                first = false;
                jsonx_write_string (buf, key, strlen (key));
                jsonx_write_raw (buf, ":", 1);
                s_write (buf, value, exact);
            }
            jsonx_write_raw (buf, "}", 1);
            break;
        }
        case JSON_ARRAY: {
            jsonx_write_raw (buf, "[", 1);
            for (size_t i = 0; i < json_array_size (json); i++) {
                if (i)
                    jsonx_write_raw (buf, ",", 1);
                s_write (buf, json_array_get (json, i), exact);
            }
            jsonx_write_raw (buf, "]", 1);
            break;
        }
        case JSON_STRING:
            jsonx_write_string (buf, json_string_value (json), json_string_length (json));
            break;
        case JSON_INTEGER:
            s_write_integer (buf, json_integer_value (json));
            break;
        case JSON_REAL:
            s_write_real (buf, json_real_value (json), exact);
            break;
        case JSON_TRUE:
            jsonx_write_raw (buf, "true", 4);
            break;
        case JSON_FALSE:
            jsonx_write_raw (buf, "false", 5);
            break;
        case JSON_NULL:
        default:
            jsonx_write_raw (buf, "null", 4);
            break;
    }
}
