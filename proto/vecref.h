/*  vecref: a dense vector inside an envelope's float blob, referred to from
    the JSON frame as {"b": blob index, "o": float offset, "d": dimension}.
    The one place that puts vectors into envelopes and checks them coming out.
*/
#ifndef SH_VECREF_H
#define SH_VECREF_H

#include "proto/envelope.h"

//  Appends v (dim floats) to blob `blob` of env and returns a new reference
//  object {"b","o","d"} (yours). blob must exist (envelope_new_blob).
json_t *vecref_put (envelope_t *env, int blob, const float *v, uint32_t dim);
//  Resolves ref against env: 0 and a borrowed pointer valid while env lives,
//  or -SH_EPROTO when ref is not a well-formed reference inside the blob.
int vecref_get (const envelope_t *env, const json_t *ref, const float **v, uint32_t *dim);
//  True if json looks like a vecref (an object with "b", "o" and "d").
bool vecref_is (const json_t *json);

#endif
