/*  hnswlib_bench: the native hnswlib peer of tools/bench/ann_bench.c.

    Builds hnswlib's HierarchicalNSW (Debian's header-only libhnswlib-dev,
    compiled here with -O3 -march=native, so it uses the CPU's SIMD, unlike
    Debian's python3-hnswlib) over DATA_DIR/NAME.base.fvecs with all threads,
    then measures recall@10 against NAME.gt.ivecs and searches/s on one
    thread and on all threads for each ef. Prints the same "key value" lines
    as ann_bench, which tools/bench/ann.py gathers into one table:

        hnswlib_bench DATA_DIR NAME [M [EF_CONSTRUCT [EF,EF,... [THREADS]]]]
*/
#include <hnswlib/hnswlib.h>

#include <sys/resource.h>
#include <unistd.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

struct matrix {
    std::vector<float> data;    //  rows * dim values
    std::vector<int> idata;     //  ivecs: rows * dim ids
    size_t rows = 0;            //  vector count
    size_t dim = 0;             //  values per vector
};

//  Reads an fvecs/ivecs file: every row is an int32 dim then dim 4-byte values.
static bool
read_vecs (const std::string &path, matrix &m, bool ints)
{
    FILE *f = fopen (path.c_str (), "rb");
    if (!f) {
        fprintf (stderr, "hnswlib_bench: cannot open %s\n", path.c_str ());
        return false;
    }
    int32_t d = 0;
    if (fread (&d, 4, 1, f) != 1 || d <= 0 || d > 1 << 20) {
        fclose (f);
        fprintf (stderr, "hnswlib_bench: bad header in %s\n", path.c_str ());
        return false;
    }
    fseek (f, 0, SEEK_END);
    long size = ftell (f);
    fseek (f, 0, SEEK_SET);
    size_t row_bytes = 4 * ((size_t) d + 1);
    if (size <= 0 || (size_t) size % row_bytes) {
        fclose (f);
        fprintf (stderr, "hnswlib_bench: %s is not a whole number of rows\n",
                 path.c_str ());
        return false;
    }
    m.dim = (size_t) d;
    m.rows = (size_t) size / row_bytes;
    std::vector<int32_t> row ((size_t) d + 1);
    if (ints)
        m.idata.resize (m.rows * m.dim);
    else
        m.data.resize (m.rows * m.dim);
    for (size_t i = 0; i < m.rows; i++) {
        if (fread (row.data (), 4, row.size (), f) != row.size () || row [0] != d) {
            fclose (f);
            fprintf (stderr, "hnswlib_bench: bad row %zu in %s\n", i, path.c_str ());
            return false;
        }
        if (ints)
            memcpy (&m.idata [i * m.dim], &row [1], 4 * m.dim);
        else
            memcpy (&m.data [i * m.dim], &row [1], 4 * m.dim);
    }
    fclose (f);
    return true;
}

static double
now_s ()
{
    return std::chrono::duration<double> (
        std::chrono::steady_clock::now ().time_since_epoch ()).count ();
}

static double
rss_now_mb ()
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
cpu_s ()
{
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec * 1e-6
         + (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec * 1e-6;
}

static double
rss_peak_mb ()
{
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    return (double) ru.ru_maxrss / 1024.0;
}

int
main (int argc, char **argv)
{
    if (argc < 3) {
        fprintf (stderr, "usage: hnswlib_bench DATA_DIR NAME [M [EF_CONSTRUCT "
                         "[EF,EF,... [THREADS]]]]\n");
        return 2;
    }
    std::string dir = argv [1], name = argv [2];
    size_t m = argc > 3 ? strtoul (argv [3], nullptr, 10) : 16;
    size_t efc = argc > 4 ? strtoul (argv [4], nullptr, 10) : 100;
    std::vector<size_t> efs;
    {
        std::string list = argc > 5 ? argv [5] : "16,32,64,128";
        size_t pos = 0;
        while (pos < list.size ()) {
            size_t comma = list.find (',', pos);
            if (comma == std::string::npos)
                comma = list.size ();
            efs.push_back (strtoul (list.substr (pos, comma - pos).c_str (), nullptr, 10));
            pos = comma + 1;
        }
    }
    unsigned threads = argc > 6 ? (unsigned) atoi (argv [6])
                                : std::thread::hardware_concurrency ();
    if (m < 2 || efc < 1 || threads < 1 || efs.empty ()) {
        fprintf (stderr, "hnswlib_bench: bad arguments\n");
        return 2;
    }
    matrix base, query, gt;
    if (!read_vecs (dir + "/" + name + ".base.fvecs", base, false)
    ||  !read_vecs (dir + "/" + name + ".query.fvecs", query, false)
    ||  !read_vecs (dir + "/" + name + ".gt.ivecs", gt, true))
        return 1;
    if (query.dim != base.dim || gt.rows != query.rows || gt.dim < 10) {
        fprintf (stderr, "hnswlib_bench: data set files do not match\n");
        return 1;
    }
    bool angular = name.find ("angular") != std::string::npos;
    hnswlib::SpaceInterface<float> *space;
    if (angular)
        space = new hnswlib::InnerProductSpace (base.dim);
    else
        space = new hnswlib::L2Space (base.dim);
    double rss_before = rss_now_mb ();

    double t0 = now_s (), cpu0 = cpu_s ();
    auto *index = new hnswlib::HierarchicalNSW<float> (space, base.rows, m, efc, 100);
    //  As hnswlib's Python binding: the first point alone, then the rest from
    //  all threads taking the next row from a shared counter.
    index->addPoint (&base.data [0], 0);
    std::atomic<size_t> next (1);
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; t++)
        pool.emplace_back ([&] {
            for (size_t i; (i = next.fetch_add (1)) < base.rows;)
                index->addPoint (&base.data [i * base.dim], i);
        });
    for (auto &th : pool)
        th.join ();
    pool.clear ();
    double build_s = now_s () - t0, build_cpu_s = cpu_s () - cpu0;
    printf ("engine hnswlib\n");
    printf ("build_s %.3f\n", build_s);
    printf ("build_cpu_s %.3f\n", build_cpu_s);
    printf ("index_mb %.1f\n", rss_now_mb () - rss_before);

    const size_t k = 10;
    for (size_t ef : efs) {
        index->setEf (ef);
        //  Recall from one pass over the queries.
        size_t hits = 0;
        for (size_t q = 0; q < query.rows; q++) {
            auto res = index->searchKnn (&query.data [q * query.dim], k);
            std::vector<size_t> got;
            while (!res.empty ()) {
                got.push_back (res.top ().second);
                res.pop ();
            }
            for (size_t id : got)
                for (size_t j = 0; j < k; j++)
                    if ((int) id == gt.idata [q * gt.dim + j]) {
                        hits++;
                        break;
                    }
        }
        double recall = (double) hits / (double) (k * query.rows);
        //  Throughput: whole passes over the queries for at least a second.
        auto run = [&] (unsigned nthreads) {
            std::atomic<size_t> done (0);
            double start = now_s ();
            std::vector<std::thread> workers;
            for (unsigned t = 0; t < nthreads; t++)
                workers.emplace_back ([&, t] {
                    size_t n = 0;
                    do {
                        for (size_t q = t; q < query.rows; q += nthreads) {
                            index->searchKnn (&query.data [q * query.dim], k);
                            n++;
                        }
                    } while (now_s () - start < 1.0);
                    done += n;
                });
            for (auto &w : workers)
                w.join ();
            return (double) done.load () / (now_s () - start);
        };
        double qps1 = run (1);
        double qpsn = run (threads);
        printf ("ef %zu recall %.4f qps1 %.0f qpsN %.0f\n", ef, recall, qps1, qpsn);
        fflush (stdout);
    }
    printf ("rss_peak_mb %.1f\n", rss_peak_mb ());
    delete index;
    delete space;
    return 0;
}
