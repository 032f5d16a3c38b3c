/*  ann_bench: shoal's HNSW graph (actors/shard/hnsw.c) in-process over an
    fvecs data set from ../shared/data (see its README): build time with all
    threads, memory, and for each ef recall@10 against the ground truth and
    searches/s on one thread and on all threads.

        ann_bench DATA_DIR NAME [M [EF_CONSTRUCT [EF,EF,... [THREADS]]]]

    Prints "key value" lines that tools/bench/ann.py gathers into one table
    with the hnswlib and faiss peers (hnswlib_bench.cpp, faiss_bench.py),
    which print the same lines. The vectors stay in one flat array, as in a
    segment; the graph only links slots (row numbers).
*/
#include "actors/shard/hnsw.h"
#include "common/distance.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    float *data;            //  rows * dim values (floats or int32s)
    size_t rows;            //  vectors
    size_t dim;             //  values per vector
} matrix_t;

//  Reads an fvecs/ivecs file (int32 dim, then dim 4-byte values, per row).
static int
s_read_vecs (const char *dir, const char *name, const char *suffix, matrix_t *m)
{
    char path [4096];
    snprintf (path, sizeof path, "%s/%s.%s", dir, name, suffix);
    FILE *f = fopen (path, "rb");
    if (!f) {
        fprintf (stderr, "ann_bench: cannot open %s\n", path);
        return -1;
    }
    int32_t d = 0;
    if (fread (&d, 4, 1, f) != 1 || d <= 0 || d > 65536) {
        fprintf (stderr, "ann_bench: bad header in %s\n", path);
        fclose (f);
        return -1;
    }
    fseek (f, 0, SEEK_END);
    long size = ftell (f);
    fseek (f, 0, SEEK_SET);
    size_t row_bytes = 4 * ((size_t) d + 1);
    if (size <= 0 || (size_t) size % row_bytes) {
        fprintf (stderr, "ann_bench: %s is not a whole number of rows\n", path);
        fclose (f);
        return -1;
    }
    m->dim = (size_t) d;
    m->rows = (size_t) size / row_bytes;
    //  64-byte aligned rows start on a cache line when dim % 16 == 0.
    m->data = aligned_alloc (64, (m->rows * m->dim * 4 + 63) / 64 * 64);
    int32_t *row = malloc (row_bytes);
    if (!m->data || !row) {
        fprintf (stderr, "ann_bench: out of memory for %s\n", path);
        fclose (f);
        return -1;
    }
    for (size_t i = 0; i < m->rows; i++) {
        if (fread (row, 1, row_bytes, f) != row_bytes || row [0] != d) {
            fprintf (stderr, "ann_bench: bad row %zu in %s\n", i, path);
            free (row);
            fclose (f);
            return -1;
        }
        memcpy (m->data + i * m->dim, row + 1, 4 * m->dim);
    }
    free (row);
    fclose (f);
    return 0;
}

static double
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static double
s_rss_now_mb (void)
{
    FILE *f = fopen ("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf (f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose (f);
    }
    return (double) resident * (double) sysconf (_SC_PAGESIZE) / 1048576.0;
}

//  CPU seconds (user + system) of every thread of the process so far.
static double
s_cpu_s (void)
{
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec * 1e-6
         + (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec * 1e-6;
}

static double
s_rss_peak_mb (void)
{
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    return (double) ru.ru_maxrss / 1024.0;
}

typedef struct {
    hnsw_t *graph;          //  the index
    matrix_t *base;         //  vectors (build)
    matrix_t *query;        //  queries (search)
    size_t next;            //  atomic: next row to insert
    unsigned thread;        //  this worker's number (search)
    unsigned threads;       //  worker count (search)
    size_t ef;              //  search ef
    double start;           //  when the timed run began
    size_t done;            //  searches this worker made
} job_t;

static void *
s_build_worker (void *arg)
{
    job_t *job = arg;
    for (;;) {
        size_t i = __atomic_fetch_add (&job->next, 1, __ATOMIC_RELAXED);
        if (i >= job->base->rows)
            break;
        int rc = hnsw_insert (job->graph, (uint32_t) i);
        if (rc != 0) {
            fprintf (stderr, "ann_bench: insert %zu failed: %d\n", i, rc);
            exit (1);
        }
    }
    return NULL;
}

//  Whole passes over this worker's share of the queries for >= 1 s.
static void *
s_search_worker (void *arg)
{
    job_t *job = arg;
    hnsw_hit_t hits [10];
    size_t n = 0;
    do {
        for (size_t q = job->thread; q < job->query->rows; q += job->threads) {
            hnsw_search (job->graph, job->query->data + q * job->query->dim, 10,
                         job->ef, NULL, NULL, hits);
            n++;
        }
    } while (s_now () - job->start < 1.0);
    job->done = n;
    return NULL;
}

static double
s_throughput (hnsw_t *graph, matrix_t *query, size_t ef, unsigned threads)
{
    job_t jobs [threads];
    pthread_t tids [threads];
    double start = s_now ();
    for (unsigned t = 0; t < threads; t++) {
        jobs [t] = (job_t) { .graph = graph, .query = query, .thread = t,
                             .threads = threads, .ef = ef, .start = start };
        pthread_create (&tids [t], NULL, s_search_worker, &jobs [t]);
    }
    size_t done = 0;
    for (unsigned t = 0; t < threads; t++) {
        pthread_join (tids [t], NULL);
        done += jobs [t].done;
    }
    return (double) done / (s_now () - start);
}

int
main (int argc, char **argv)
{
    if (argc < 3) {
        fprintf (stderr, "usage: ann_bench DATA_DIR NAME [M [EF_CONSTRUCT "
                         "[EF,EF,... [THREADS]]]]\n");
        return 2;
    }
    const char *dir = argv [1], *name = argv [2];
    uint32_t m = argc > 3 ? (uint32_t) strtoul (argv [3], NULL, 10) : 16;
    uint32_t efc = argc > 4 ? (uint32_t) strtoul (argv [4], NULL, 10) : 100;
    const char *ef_list = argc > 5 ? argv [5] : "16,32,64,128";
    long cores = sysconf (_SC_NPROCESSORS_ONLN);
    unsigned threads = argc > 6 ? (unsigned) atoi (argv [6]) : (unsigned) cores;
    if (threads < 1 || threads > 1024) {
        fprintf (stderr, "ann_bench: bad thread count\n");
        return 2;
    }
    matrix_t base, query, gt;
    if (s_read_vecs (dir, name, "base.fvecs", &base)
    ||  s_read_vecs (dir, name, "query.fvecs", &query)
    ||  s_read_vecs (dir, name, "gt.ivecs", &gt))
        return 1;
    if (query.dim != base.dim || gt.rows != query.rows || gt.dim < 10
    ||  base.rows >= HNSW_NO_SLOT) {
        fprintf (stderr, "ann_bench: data set files do not match\n");
        return 1;
    }
    //  "-angular" sets hold unit vectors compared by inner product.
    distance_t metric = strstr (name, "angular") ? DIST_COSINE : DIST_EUCLID;
    if (metric == DIST_COSINE) {
        for (size_t i = 0; i < base.rows; i++)
            distance_normalize (base.data + i * base.dim, (uint32_t) base.dim);
        for (size_t i = 0; i < query.rows; i++)
            distance_normalize (query.data + i * query.dim, (uint32_t) query.dim);
    }
    hnsw_params_t params = { .m = m, .ef_construct = efc, .seed = 100 };
    hnsw_t *graph = hnsw_new (metric, (uint32_t) base.dim, &params);
    if (!graph) {
        fprintf (stderr, "ann_bench: bad parameters\n");
        return 2;
    }
    double rss_before = s_rss_now_mb ();
    hnsw_set_vectors (graph, base.data, base.dim);

    double t0 = s_now (), cpu0 = s_cpu_s ();
    hnsw_reserve (graph, (uint32_t) base.rows);
    job_t build = { .graph = graph, .base = &base };
    pthread_t tids [threads];
    for (unsigned t = 0; t < threads; t++)
        pthread_create (&tids [t], NULL, s_build_worker, &build);
    for (unsigned t = 0; t < threads; t++)
        pthread_join (tids [t], NULL);
    double build_s = s_now () - t0, build_cpu_s = s_cpu_s () - cpu0;
    printf ("engine shoal\n");
    printf ("isa %s\n", distance_isa ());
    printf ("build_s %.3f\n", build_s);
    printf ("build_cpu_s %.3f\n", build_cpu_s);
    printf ("index_mb %.1f\n", s_rss_now_mb () - rss_before);
    printf ("graph_mb %.1f\n", (double) hnsw_memory (graph) / 1048576.0);
    fflush (stdout);

    const int32_t *truth = (const int32_t *) gt.data;
    for (const char *p = ef_list; *p;) {
        char *end;
        size_t ef = strtoul (p, &end, 10);
        if (end == p || ef == 0) {
            fprintf (stderr, "ann_bench: bad ef list %s\n", ef_list);
            return 2;
        }
        p = *end == ',' ? end + 1 : end;
        size_t found = 0;
        hnsw_hit_t hits [10];
        for (size_t q = 0; q < query.rows; q++) {
            size_t n = hnsw_search (graph, query.data + q * query.dim, 10, ef,
                                    NULL, NULL, hits);
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < 10; j++)
                    if ((int32_t) hits [i].slot == truth [q * gt.dim + j]) {
                        found++;
                        break;
                    }
        }
        double recall = (double) found / (double) (10 * query.rows);
        double qps1 = s_throughput (graph, &query, ef, 1);
        double qpsn = s_throughput (graph, &query, ef, threads);
        printf ("ef %zu recall %.4f qps1 %.0f qpsN %.0f\n", ef, recall, qps1, qpsn);
        fflush (stdout);
    }
    printf ("rss_peak_mb %.1f\n", s_rss_peak_mb ());
    hnsw_destroy (&graph);
    free (base.data);
    free (query.data);
    free (gt.data);
    return 0;
}
