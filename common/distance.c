/*  distance: Qdrant's four distances, their scores and ranking order, and
    the SIMD kernels behind them, chosen once at runtime for this CPU.

    Each instruction set has three kernels (dot product, squared L2, L1):
    AVX-512F and AVX2+FMA on x86-64, NEON on aarch64, and a portable one in
    plain C. The x86 kernels are compiled with GCC's per-function target
    attribute, so a generic x86-64 build (-Dnative=false) still carries them
    and runs the best one the CPU has; __builtin_cpu_supports picks it on the
    first call (it also checks that the OS saves the wide registers). The
    choice is one process-wide pointer to a constant table: it describes the
    CPU, which every actor shares, so it is the one static state here.

    The portable kernels are written so that gcc -O2 vectorizes them without
    -ffast-math: each loop keeps DIST_LANES independent partial sums in an
    array, so the vectorizer never has to reorder a float reduction (which
    it may not do under strict IEEE rules); the lanes are summed once at the
    end and a scalar tail takes the last dim % DIST_LANES elements. The SIMD
    kernels keep four accumulators (four independent FMA chains cover the
    FMA latency at two loads per FMA). On x86 they take the tail with masked
    loads, which never touch memory past the last element; NEON has none and
    takes it in scalar code. Any 4-byte-aligned pointer works; rows that
    start on a 64-byte boundary run about twice as fast with AVX-512 (an
    unaligned 64-byte load always spans two cache lines), so vector stores
    should align their arrays and rows. Every kernel sums in its own order,
    so results agree with each other to rounding, not bit for bit.
*/
#include "common/distance.h"
#include "common/distance_internal.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#if defined (__x86_64__)
#   define DIST_X86 1
#   include <immintrin.h>
#elif defined (__aarch64__)
#   define DIST_NEON 1
#   include <arm_neon.h>
#endif

//  Partial sums kept per loop in the portable kernels: 16 floats = two AVX
//  or one AVX-512 register, enough independent chains to hide the FMA
//  latency.
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

//  ---------------------------------------------------------------------------
//  Portable kernels

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

static float
s_dot_scalar (const float *restrict a, const float *restrict b, uint32_t dim)
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

static float
s_l2sq_scalar (const float *restrict a, const float *restrict b, uint32_t dim)
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

static float
s_l1_scalar (const float *restrict a, const float *restrict b, uint32_t dim)
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

//  Each SIMD body below is written once and instantiated per metric: the
//  metric is a constant argument of an always-inlined function, so each
//  kernel compiles to a loop with no branch on it.
typedef enum { S_DOT, S_L2SQ, S_L1 } s_op_t;

#if DIST_X86
//  ---------------------------------------------------------------------------
//  AVX-512F kernels: 16 floats a register, 64 per loop turn

#define S_AVX512 __attribute__ ((target ("avx512f")))
#define S_AVX512_INLINE __attribute__ ((target ("avx512f"), always_inline)) inline

S_AVX512_INLINE static __m512
s_step_avx512 (s_op_t op, __m512 acc, __m512 x, __m512 y)
{
    if (op == S_DOT)
        return _mm512_fmadd_ps (x, y, acc);
    __m512 d = _mm512_sub_ps (x, y);
    if (op == S_L2SQ)
        return _mm512_fmadd_ps (d, d, acc);
    return _mm512_add_ps (acc, _mm512_abs_ps (d));
}

S_AVX512_INLINE static float
s_run_avx512 (s_op_t op, const float *a, const float *b, uint32_t dim)
{
    __m512 s0 = _mm512_setzero_ps (), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= dim; i += 64) {
        s0 = s_step_avx512 (op, s0, _mm512_loadu_ps (a + i), _mm512_loadu_ps (b + i));
        s1 = s_step_avx512 (op, s1, _mm512_loadu_ps (a + i + 16),
                            _mm512_loadu_ps (b + i + 16));
        s2 = s_step_avx512 (op, s2, _mm512_loadu_ps (a + i + 32),
                            _mm512_loadu_ps (b + i + 32));
        s3 = s_step_avx512 (op, s3, _mm512_loadu_ps (a + i + 48),
                            _mm512_loadu_ps (b + i + 48));
    }
    for (; i + 16 <= dim; i += 16)
        s0 = s_step_avx512 (op, s0, _mm512_loadu_ps (a + i), _mm512_loadu_ps (b + i));
    if (i < dim) {
        //  Masked-off lanes load as 0 (adding 0 to every metric) and are
        //  never read, so a row that ends at the end of a mapping is safe.
        __mmask16 m = (__mmask16) ((1u << (dim - i)) - 1);
        s1 = s_step_avx512 (op, s1, _mm512_maskz_loadu_ps (m, a + i),
                            _mm512_maskz_loadu_ps (m, b + i));
    }
    return _mm512_reduce_add_ps (_mm512_add_ps (_mm512_add_ps (s0, s1),
                                                _mm512_add_ps (s2, s3)));
}

S_AVX512 static float
s_dot_avx512 (const float *a, const float *b, uint32_t dim)
{
    return s_run_avx512 (S_DOT, a, b, dim);
}

S_AVX512 static float
s_l2sq_avx512 (const float *a, const float *b, uint32_t dim)
{
    return s_run_avx512 (S_L2SQ, a, b, dim);
}

S_AVX512 static float
s_l1_avx512 (const float *a, const float *b, uint32_t dim)
{
    return s_run_avx512 (S_L1, a, b, dim);
}

//  ---------------------------------------------------------------------------
//  AVX2 + FMA kernels: 8 floats a register, 32 per loop turn

#define S_AVX2 __attribute__ ((target ("avx2,fma")))
#define S_AVX2_INLINE __attribute__ ((target ("avx2,fma"), always_inline)) inline

//  Eight all-ones then eight zeros: the 8 ints from s_tail_mask + 8 - n
//  select the first n lanes for vmaskmovps.
static const int32_t s_tail_mask [16] = {
    -1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0
};

S_AVX2_INLINE static __m256
s_step_avx2 (s_op_t op, __m256 acc, __m256 x, __m256 y)
{
    if (op == S_DOT)
        return _mm256_fmadd_ps (x, y, acc);
    __m256 d = _mm256_sub_ps (x, y);
    if (op == S_L2SQ)
        return _mm256_fmadd_ps (d, d, acc);
    //  |d|: clear the sign bit.
    return _mm256_add_ps (acc, _mm256_andnot_ps (_mm256_set1_ps (-0.0f), d));
}

S_AVX2_INLINE static float
s_run_avx2 (s_op_t op, const float *a, const float *b, uint32_t dim)
{
    __m256 s0 = _mm256_setzero_ps (), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= dim; i += 32) {
        s0 = s_step_avx2 (op, s0, _mm256_loadu_ps (a + i), _mm256_loadu_ps (b + i));
        s1 = s_step_avx2 (op, s1, _mm256_loadu_ps (a + i + 8), _mm256_loadu_ps (b + i + 8));
        s2 = s_step_avx2 (op, s2, _mm256_loadu_ps (a + i + 16),
                          _mm256_loadu_ps (b + i + 16));
        s3 = s_step_avx2 (op, s3, _mm256_loadu_ps (a + i + 24),
                          _mm256_loadu_ps (b + i + 24));
    }
    for (; i + 8 <= dim; i += 8)
        s0 = s_step_avx2 (op, s0, _mm256_loadu_ps (a + i), _mm256_loadu_ps (b + i));
    if (i < dim) {
        //  vmaskmovps zeroes masked-off lanes and does not fault on them.
        __m256i m = _mm256_loadu_si256 ((const __m256i *) (s_tail_mask + 8 - (dim - i)));
        s1 = s_step_avx2 (op, s1, _mm256_maskload_ps (a + i, m),
                          _mm256_maskload_ps (b + i, m));
    }
    __m256 s = _mm256_add_ps (_mm256_add_ps (s0, s1), _mm256_add_ps (s2, s3));
    __m128 h = _mm_add_ps (_mm256_castps256_ps128 (s), _mm256_extractf128_ps (s, 1));
    h = _mm_add_ps (h, _mm_movehl_ps (h, h));
    h = _mm_add_ss (h, _mm_movehdup_ps (h));
    return _mm_cvtss_f32 (h);
}

S_AVX2 static float
s_dot_avx2 (const float *a, const float *b, uint32_t dim)
{
    return s_run_avx2 (S_DOT, a, b, dim);
}

S_AVX2 static float
s_l2sq_avx2 (const float *a, const float *b, uint32_t dim)
{
    return s_run_avx2 (S_L2SQ, a, b, dim);
}

S_AVX2 static float
s_l1_avx2 (const float *a, const float *b, uint32_t dim)
{
    return s_run_avx2 (S_L1, a, b, dim);
}
#endif  //  DIST_X86

#if DIST_NEON
//  ---------------------------------------------------------------------------
//  NEON kernels (aarch64, where Advanced SIMD is always there): 4 floats a
//  register, 16 per loop turn, a scalar tail

static inline float32x4_t
s_step_neon (s_op_t op, float32x4_t acc, float32x4_t x, float32x4_t y)
{
    if (op == S_DOT)
        return vfmaq_f32 (acc, x, y);
    if (op == S_L2SQ) {
        float32x4_t d = vsubq_f32 (x, y);
        return vfmaq_f32 (acc, d, d);
    }
    return vaddq_f32 (acc, vabdq_f32 (x, y));
}

__attribute__ ((always_inline)) static inline float
s_run_neon (s_op_t op, const float *a, const float *b, uint32_t dim)
{
    float32x4_t s0 = vdupq_n_f32 (0), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 16 <= dim; i += 16) {
        s0 = s_step_neon (op, s0, vld1q_f32 (a + i), vld1q_f32 (b + i));
        s1 = s_step_neon (op, s1, vld1q_f32 (a + i + 4), vld1q_f32 (b + i + 4));
        s2 = s_step_neon (op, s2, vld1q_f32 (a + i + 8), vld1q_f32 (b + i + 8));
        s3 = s_step_neon (op, s3, vld1q_f32 (a + i + 12), vld1q_f32 (b + i + 12));
    }
    for (; i + 4 <= dim; i += 4)
        s0 = s_step_neon (op, s0, vld1q_f32 (a + i), vld1q_f32 (b + i));
    float sum = vaddvq_f32 (vaddq_f32 (vaddq_f32 (s0, s1), vaddq_f32 (s2, s3)));
    for (; i < dim; i++) {
        float d = a [i] - b [i];
        sum += op == S_DOT ? a [i] * b [i] : op == S_L2SQ ? d * d : fabsf (d);
    }
    return sum;
}

static float
s_dot_neon (const float *a, const float *b, uint32_t dim)
{
    return s_run_neon (S_DOT, a, b, dim);
}

static float
s_l2sq_neon (const float *a, const float *b, uint32_t dim)
{
    return s_run_neon (S_L2SQ, a, b, dim);
}

static float
s_l1_neon (const float *a, const float *b, uint32_t dim)
{
    return s_run_neon (S_L1, a, b, dim);
}
#endif  //  DIST_NEON

//  ---------------------------------------------------------------------------
//  Runtime dispatch

typedef struct {
    const char *isa;                //  what distance_isa () reports
    distance_kernel_t dot;          //  dot product (Cosine, Dot)
    distance_kernel_t l2sq;         //  squared L2 (Euclid)
    distance_kernel_t l1;           //  L1 (Manhattan)
} s_kernels_t;

static const s_kernels_t s_scalar = { "scalar", s_dot_scalar, s_l2sq_scalar, s_l1_scalar };
#if DIST_X86
static const s_kernels_t s_avx512 = { "avx512", s_dot_avx512, s_l2sq_avx512, s_l1_avx512 };
static const s_kernels_t s_avx2 = { "avx2", s_dot_avx2, s_l2sq_avx2, s_l1_avx2 };
#endif
#if DIST_NEON
static const s_kernels_t s_neon = { "neon", s_dot_neon, s_l2sq_neon, s_l1_neon };
#endif

//  Every kernel set this build has, fastest first; the portable one last
//  runs everywhere.
static const s_kernels_t *const s_all [] = {
#if DIST_X86
    &s_avx512, &s_avx2,
#endif
#if DIST_NEON
    &s_neon,
#endif
    &s_scalar
};
#define S_N_ALL (sizeof (s_all) / sizeof (s_all [0]))

//  True when this CPU (and OS) can run the kernel set.
static bool
s_cpu_runs (const s_kernels_t *k)
{
#if DIST_X86
    //  libgcc fills the CPU model in a constructor already; this makes the
    //  order of constructors irrelevant.
    __builtin_cpu_init ();
    if (k == &s_avx512)
        return __builtin_cpu_supports ("avx512f");
    if (k == &s_avx2)
        return __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma");
#endif
    return k != NULL;
}

static pthread_once_t s_once = PTHREAD_ONCE_INIT;
//  The chosen set, NULL until the first call. Read on every distance call,
//  so the fast path is one atomic load rather than a pthread_once call.
static _Atomic (const s_kernels_t *) s_chosen;

static void
s_choose (void)
{
    const s_kernels_t *k = &s_scalar;
    for (size_t i = 0; i < S_N_ALL; i++)
        if (s_cpu_runs (s_all [i])) {
            k = s_all [i];
            break;
        }
    atomic_store_explicit (&s_chosen, k, memory_order_release);
}

static inline const s_kernels_t *
s_kernels (void)
{
    const s_kernels_t *k = atomic_load_explicit (&s_chosen, memory_order_acquire);
    if (__builtin_expect (k == NULL, 0)) {
        pthread_once (&s_once, s_choose);
        k = atomic_load_explicit (&s_chosen, memory_order_acquire);
    }
    return k;
}

static distance_kernel_t
s_kernel_of (const s_kernels_t *k, distance_t d)
{
    switch (d) {
        case DIST_COSINE:
        case DIST_DOT:
            return k->dot;
        case DIST_EUCLID:
            return k->l2sq;
        case DIST_MANHATTAN:
            return k->l1;
    }
    return NULL;
}

distance_kernel_t
distance_kernel (distance_t d)
{
    return s_kernel_of (s_kernels (), d);
}

const char *
distance_isa (void)
{
    return s_kernels ()->isa;
}

distance_kernel_t
distance_kernel_for_isa (const char *isa, distance_t d)
{
    if (!isa)
        return NULL;
    for (size_t i = 0; i < S_N_ALL; i++)
        if (strcmp (s_all [i]->isa, isa) == 0)
            return s_cpu_runs (s_all [i]) ? s_kernel_of (s_all [i], d) : NULL;
    return NULL;
}

//  ---------------------------------------------------------------------------
//  Scores

float
distance_dot (const float *a, const float *b, uint32_t dim)
{
    return s_kernels ()->dot (a, b, dim);
}

float
distance_l2sq (const float *a, const float *b, uint32_t dim)
{
    return s_kernels ()->l2sq (a, b, dim);
}

float
distance_l1 (const float *a, const float *b, uint32_t dim)
{
    return s_kernels ()->l1 (a, b, dim);
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
