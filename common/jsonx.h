/*  jsonx: fast JSON text -> jansson tree, for request bodies.

    jansson's own parser spends ~350 ns on every number (strtod under the
    locale lock plus an allocation), which makes a 1,000 x 128-d upsert body
    cost ~47 ms to parse, more than the whole budget of the upsert path.
    jsonx tokenizes with YAJL (Debian's libyajl, a streaming parser that
    validates UTF-8 and hands numbers over as text) and converts numbers
    itself: decimal -> double by Clinger's exact fast path when the digits
    fit (falling back to strtod otherwise), so values are identical to what
    jansson would have produced. The tree is plain jansson: nothing
    downstream knows the difference.

    Semantics follow json_loadb (..., JSON_DECODE_ANY): any JSON value at
    the top, integers that fit int64 as json_integer, everything else with a
    fraction or exponent as json_real, an integer out of int64 range is an
    error ("too big integer"), duplicate keys keep the last value unless
    JSONX_REJECT_DUPLICATES is given.

    jsonx_loadb_packed also takes the arrays of numbers that are the value of
    given object keys ("vector" of a search body) straight to float32, with
    no jansson value per number: a 784-d query costs ~50 ns a number as a
    tree of json_reals (an allocation and a free each), which is more than
    the search it asks for. The tree holds an empty object in such an
    array's place; jsonx_packed_find turns that object (by identity, so a
    user's own {} is never mistaken for one) into the floats. An array
    under such a key that holds anything but numbers, and an empty one, is
    built as usual. jsonx_loadb_packs also says at which depth a key counts
    and takes columns of vectors (an upsert's "batch" "vectors").
*/
#ifndef SH_JSONX_H
#define SH_JSONX_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

//  Deepest nesting accepted (arrays and objects).
#define JSONX_MAX_DEPTH 512

//  Flags for jsonx_loadb.
#define JSONX_REJECT_DUPLICATES 1   //  a key twice in one object is an error

//  Parses len bytes of text. Returns a new reference, or NULL with a message
//  for the user in err ("lexical error: invalid char in json text at offset
//  12" and the like).
json_t *jsonx_loadb (const char *text, size_t len, int flags, char *err, size_t errlen);

//  The number arrays jsonx_loadb_packed took to floats.
typedef struct _jsonx_packed_t jsonx_packed_t;

//  As jsonx_loadb, with the arrays of numbers that are the value of an
//  object key listed in keys (NULL-terminated) packed as above. *packed is
//  set to a new set when any was (yours: jsonx_packed_destroy), else NULL.
json_t *jsonx_loadb_packed (const char *text, size_t len, int flags,
                            const char *const *keys, jsonx_packed_t **packed,
                            char *err, size_t errlen);
//  Where jsonx_loadb_packs packs, a list ended by a NULL key: the arrays of
//  numbers that are the value of key in an object at depth (1: the
//  top-level object; 0: at any depth) or, nested, the arrays of numbers
//  that are the elements of the array that is that value (a column of
//  vectors: {"batch": {"vectors": [[...], [...]]}}). A depth keeps user
//  data (a payload's own "vector" key) out of reach.
typedef struct {
    const char *key;                //  object key
    int depth;                      //  depth of its object, 0 = any
    bool nested;                    //  its value is a column of number arrays
} jsonx_pack_t;
//  As jsonx_loadb_packed, with packs saying where.
json_t *jsonx_loadb_packs (const char *text, size_t len, int flags,
                           const jsonx_pack_t *packs, jsonx_packed_t **packed,
                           char *err, size_t errlen);
//  The float32 values (borrowed, *count of them) that placeholder value
//  stands for, or NULL when value is not one of self's placeholders.
//  NULL-safe: a NULL self has none.
const float *jsonx_packed_find (const jsonx_packed_t *self, const json_t *value,
                                size_t *count);
void jsonx_packed_destroy (jsonx_packed_t **self_p);

//  --- jansson tree -> text ---------------------------------------------------
//  json_dumps spends ~1 us on every real (%.17g, then a check) and its
//  17 digits then cost the reader a strtod each. jsonx_write writes what
//  json_dumps (json, JSON_COMPACT | JSON_ENCODE_ANY) would, but with reals
//  in their shortest round-trip form (common/fmtnum.h: 0.1, not
//  0.10000000000000001; ".0" kept on integral values, as serde does), which
//  read back as the same doubles; keys in insertion order, strings escaped
//  as serde_json does (control characters, in lower-case hex, '"' and
//  '\\'; UTF-8 as is).

//  A growing text buffer, NUL-terminated. Start from all zeros; data is
//  malloc'd and yours (free it).
typedef struct {
    char *data;                     //  the text, NULL before the first write
    size_t len;                     //  bytes used
    size_t cap;                     //  bytes allocated
} jsonx_buf_t;

//  Appends the JSON text of json.
void jsonx_write (jsonx_buf_t *buf, const json_t *json);
//  The same for text that programs read back (envelopes): a real that has
//  no short form (a float's score as a double, 482.29660034179688) is
//  written as %.17g, exact too, instead of searched for its shortest one,
//  which costs ~2 us.
void jsonx_write_exact (jsonx_buf_t *buf, const json_t *json);
//  Appends len bytes of s as a JSON string (quoted, escaped).
void jsonx_write_string (jsonx_buf_t *buf, const char *s, size_t len);
//  Appends len bytes as they are.
void jsonx_write_raw (jsonx_buf_t *buf, const char *s, size_t len);

//  Decimal text (valid JSON number syntax, len bytes) -> double, correctly
//  rounded. Exposed for the unit tests.
double jsonx_strtod (const char *text, size_t len);

#endif
