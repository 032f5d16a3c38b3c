/*  fuzz_hnsw: arbitrary bytes as a saved HNSW graph. The input is the file
    body; the fuzzer appends the BLAKE2b hash the loader checks, so mutations
    reach the structure (counts, levels, neighbour ids) instead of dying at
    the checksum. A graph that loads is then searched and extended: a file
    whose hash is right but whose contents are not must be refused or be
    safe to use, never crash the shard.
*/
#include "actors/shard/hnsw.h"
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const float *
s_vector (uint32_t slot, void *arg)
{
    static float v [4096];
    (void) arg;
    for (int i = 0; i < 4096; i++)
        v [i] = (float) ((slot * 2654435761u + (uint32_t) i) % 97) / 97.0f;
    return v;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    static int ready = 0;
    if (!ready) {
        ready = sodium_init () >= 0;
        if (!ready)
            return 0;
    }
    char path [] = "/tmp/fuzz_hnsw.XXXXXX";
    int fd = mkstemp (path);
    if (fd < 0)
        return 0;
    uint8_t hash [crypto_generichash_BYTES];
    crypto_generichash (hash, sizeof hash, data, size, NULL, 0);
    if (write (fd, data, size) != (ssize_t) size
        || write (fd, hash, sizeof hash) != (ssize_t) sizeof hash) {
        close (fd);
        unlink (path);
        return 0;
    }
    close (fd);
    hnsw_t *graph = NULL;
    uint64_t seq = 0;
    if (hnsw_load (path, &graph, &seq) == 0) {
        if (hnsw_dim (graph) <= 4096) {
            hnsw_set_vector_fn (graph, s_vector, NULL);
            hnsw_hit_t hits [8];
            (void) hnsw_search (graph, s_vector (12345, NULL), 8, 16, NULL, NULL, hits);
            (void) hnsw_insert (graph, (uint32_t) hnsw_node_count (graph));
            (void) hnsw_search (graph, s_vector (7, NULL), 8, 16, NULL, NULL, hits);
        }
        hnsw_destroy (&graph);
    }
    unlink (path);
    return 0;
}
