/*  distance: Qdrant's four distances and their scores.
    Scores are what Qdrant reports: Cosine and Dot the dot product (Cosine
    vectors are normalized on insert and queries before scoring), Euclid the
    L2 distance (sqrt), Manhattan the L1 distance. Cosine and Dot rank higher
    scores first; Euclid and Manhattan lower first.
*/
#ifndef SH_DISTANCE_H
#define SH_DISTANCE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { DIST_COSINE = 0, DIST_EUCLID, DIST_DOT, DIST_MANHATTAN } distance_t;

//  "Cosine", "Euclid", "Dot", "Manhattan" (exact case, as Qdrant); -1 if unknown.
int distance_parse (const char *name);
const char *distance_name (distance_t d);

float distance_dot (const float *a, const float *b, uint32_t dim);
float distance_l2sq (const float *a, const float *b, uint32_t dim);
float distance_l1 (const float *a, const float *b, uint32_t dim);
//  The reported score of a against b (see above).
float distance_score (distance_t d, const float *a, const float *b, uint32_t dim);
//  True when larger scores are better (Cosine, Dot).
bool distance_higher_is_better (distance_t d);
//  True if score a ranks before score b.
bool distance_better (distance_t d, float a, float b);
//  Scales v to unit length in place; a zero vector stays zero.
void distance_normalize (float *v, uint32_t dim);
//  A raw kernel: dot product, squared L2 or L1 of two dim-float vectors.
typedef float (*distance_kernel_t) (const float *a, const float *b, uint32_t dim);
//  The fastest kernel this CPU runs for the metric's raw value (Cosine and
//  Dot: dot product; Euclid: squared L2; Manhattan: L1), picked once by
//  runtime CPU detection. Hot loops (exact scan, HNSW) call through it.
distance_kernel_t distance_kernel (distance_t d);
//  Name of the instruction set the kernels use ("avx512", "avx2", "neon",
//  "scalar"), for logs and the benchmark.
const char *distance_isa (void);

//  Sparse dot product over shared indices; both index lists sorted ascending.
float distance_sparse_dot (const uint32_t *ai, const float *av, uint32_t an,
                           const uint32_t *bi, const float *bv, uint32_t bn);

#endif
