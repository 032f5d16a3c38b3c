/*  vecref: dense vectors by reference into envelope blobs (see vecref.h).  */
#include "proto/vecref.h"
#include "common/err.h"

json_t *
vecref_put (envelope_t *env, int blob, const float *v, uint32_t dim)
{
    int64_t offset = envelope_append_floats (env, blob, v, dim);
    assert (offset >= 0);
    return json_pack ("{sIsIsI}", "b", (json_int_t) blob, "o", (json_int_t) offset,
                      "d", (json_int_t) dim);
}

bool
vecref_is (const json_t *json)
{
    return json_is_object (json) && json_is_integer (json_object_get (json, "b"))
        && json_is_integer (json_object_get (json, "o"))
        && json_is_integer (json_object_get (json, "d"));
}

int
vecref_get (const envelope_t *env, const json_t *ref, const float **v, uint32_t *dim)
{
    if (!vecref_is (ref))
        return -SH_EPROTO;
    json_int_t b = json_integer_value (json_object_get (ref, "b"));
    json_int_t o = json_integer_value (json_object_get (ref, "o"));
    json_int_t d = json_integer_value (json_object_get (ref, "d"));
    if (b < 0 || o < 0 || d < 0 || d > UINT32_MAX || (size_t) b >= envelope_blob_count (env))
        return -SH_EPROTO;
    size_t count = 0;
    const float *data = envelope_floats (env, (size_t) b, &count);
    //  Subtraction, not addition: o + d could overflow.
    if ((size_t) o > count || (size_t) d > count - (size_t) o)
        return -SH_EPROTO;
    *v = data + o;
    *dim = (uint32_t) d;
    return 0;
}
