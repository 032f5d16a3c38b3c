/*  vmarr: arrays in their own mappings (see vmarr.h). */
#include "common/vmarr.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t
s_pages (size_t bytes)
{
    static size_t page = 0;
    if (!page) {
        long sz = sysconf (_SC_PAGESIZE);
        page = sz > 0 ? (size_t) sz : 4096;
    }
    if (bytes > SIZE_MAX - page)
        return 0;
    return (bytes + page - 1) / page * page;
}

void *
vmarr_resize (void *ptr, size_t old_bytes, size_t new_bytes)
{
    if (new_bytes == 0) {
        vmarr_free (ptr, old_bytes);
        return NULL;
    }
    size_t new_len = s_pages (new_bytes);
    if (new_len == 0)
        return NULL;
    if (!ptr) {
        void *p = mmap (NULL, new_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    size_t old_len = s_pages (old_bytes);
    //  Shrinking keeps the rest of the last page: zero what was in use of
    //  it, so a later growth finds zeros there as the contract says.
    if (new_bytes < old_bytes)
        memset ((char *) ptr + new_bytes, 0,
                (new_len < old_bytes ? new_len : old_bytes) - new_bytes);
    if (new_len == old_len)
        return ptr;
    void *p = mremap (ptr, old_len, new_len, MREMAP_MAYMOVE);
    return p == MAP_FAILED ? NULL : p;
}

void
vmarr_free (void *ptr, size_t bytes)
{
    if (ptr)
        munmap (ptr, s_pages (bytes));
}
