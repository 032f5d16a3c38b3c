/*  distance: Qdrant's four distances, their scores and ranking order.

    The kernels are plain C written so that gcc -O2 -march=native vectorizes
    them without -ffast-math: each loop keeps DIST_LANES independent partial
    sums in an array, so the vectorizer never has to reorder a float
    reduction (which it may not do under strict IEEE rules); the lanes are
    summed once at the end and a scalar tail takes the last dim % DIST_LANES
    elements. Explicit SIMD can replace the bodies later without changing the
    interface.
*/
#include "common/distance.h"

#include <float.h>
#include <math.h>
#include <string.h>

//  Partial sums kept per loop: 16 floats = two AVX or one AVX-512 register,
//  enough independent chains to hide the FMA latency.
#define DIST_LANES 16

static const char *s_names [] = { "Cosine", "Euclid", "Dot", "Manhattan" };

int
distance_parse (const char *name)
{
    if (!name)
        return -1;
    for (int d = 0; d < 4; d++)
        if (strcmp (name, s_names [d]) == 0)
            return d;
    return -1;
}

const char *
distance_name (distance_t d)
{
    if ((unsigned) d < 4)
        return s_names [d];
    return "unknown";
}

static inline float
s_sum_lanes (const float *acc)
{
    //  Pairwise, so the result does not depend on lane order much.
    float s8 [8];
    for (int j = 0; j < 8; j++)
        s8 [j] = acc [j] + acc [j + 8];
    float s4 [4];
    for (int j = 0; j < 4; j++)
        s4 [j] = s8 [j] + s8 [j + 4];
    return (s4 [0] + s4 [2]) + (s4 [1] + s4 [3]);
}

float
distance_dot (const float *restrict a, const float *restrict b, uint32_t dim)
{
    float acc [DIST_LANES] = { 0 };
    size_t i = 0;
    for (; i + DIST_LANES <= dim; i += DIST_LANES) {
        const float *x = a + i, *y = b + i;
        for (int j = 0; j < DIST_LANES; j++)
            acc [j] += x [j] * y [j];
    }
    float sum = s_sum_lanes (acc);
    for (; i < dim; i++)
        sum += a [i] * b [i];
    return sum;
}

float
distance_l2sq (const float *restrict a, const float *restrict b, uint32_t dim)
{
    float acc [DIST_LANES] = { 0 };
    size_t i = 0;
    for (; i + DIST_LANES <= dim; i += DIST_LANES) {
        const float *x = a + i, *y = b + i;
        for (int j = 0; j < DIST_LANES; j++) {
            float d = x [j] - y [j];
            acc [j] += d * d;
        }
    }
    float sum = s_sum_lanes (acc);
    for (; i < dim; i++) {
        float d = a [i] - b [i];
        sum += d * d;
    }
    return sum;
}

float
distance_l1 (const float *restrict a, const float *restrict b, uint32_t dim)
{
    float acc [DIST_LANES] = { 0 };
    size_t i = 0;
    for (; i + DIST_LANES <= dim; i += DIST_LANES) {
        const float *x = a + i, *y = b + i;
        for (int j = 0; j < DIST_LANES; j++)
            acc [j] += fabsf (x [j] - y [j]);
    }
    float sum = s_sum_lanes (acc);
    for (; i < dim; i++)
        sum += fabsf (a [i] - b [i]);
    return sum;
}

float
distance_score (distance_t d, const float *a, const float *b, uint32_t dim)
{
    switch (d) {
        case DIST_COSINE:
        case DIST_DOT:
            return distance_dot (a, b, dim);
        case DIST_EUCLID:
            return sqrtf (distance_l2sq (a, b, dim));
        case DIST_MANHATTAN:
            return distance_l1 (a, b, dim);
    }
    return NAN;
}

bool
distance_higher_is_better (distance_t d)
{
    return d == DIST_COSINE || d == DIST_DOT;
}

bool
distance_better (distance_t d, float a, float b)
{
    return distance_higher_is_better (d) ? a > b : a < b;
}

void
distance_normalize (float *v, uint32_t dim)
{
    //  Summed in double: this runs once per insert or query, not per pair.
    double sum = 0;
    for (uint32_t i = 0; i < dim; i++)
        sum += (double) v [i] * v [i];
    //  As Qdrant: a (near) zero vector is left as it is rather than blown up
    //  into noise or NaN.
    if (sum < FLT_EPSILON)
        return;
    double inv = 1.0 / sqrt (sum);
    for (uint32_t i = 0; i < dim; i++)
        v [i] = (float) (v [i] * inv);
}

float
distance_sparse_dot (const uint32_t *ai, const float *av, uint32_t an,
                     const uint32_t *bi, const float *bv, uint32_t bn)
{
    float sum = 0;
    uint32_t i = 0, j = 0;
    while (i < an && j < bn) {
        if (ai [i] < bi [j])
            i++;
        else
        if (ai [i] > bi [j])
            j++;
        else
            sum += av [i++] * bv [j++];
    }
    return sum;
}
