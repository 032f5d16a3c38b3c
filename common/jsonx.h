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
*/
#ifndef SH_JSONX_H
#define SH_JSONX_H

#include <jansson.h>
#include <stddef.h>

//  Deepest nesting accepted (arrays and objects).
#define JSONX_MAX_DEPTH 512

//  Flags for jsonx_loadb.
#define JSONX_REJECT_DUPLICATES 1   //  a key twice in one object is an error

//  Parses len bytes of text. Returns a new reference, or NULL with a message
//  for the user in err ("lexical error: invalid char in json text at offset
//  12" and the like).
json_t *jsonx_loadb (const char *text, size_t len, int flags, char *err, size_t errlen);

//  Decimal text (valid JSON number syntax, len bytes) -> double, correctly
//  rounded. Exposed for the unit tests.
double jsonx_strtod (const char *text, size_t len);

#endif
