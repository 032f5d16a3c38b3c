/*  vmarr: growable arrays that live in their own anonymous memory mapping,
    for the big per-slot arrays of a shard (dense vector rows, ids,
    versions, bitmaps). Growing one moves page tables (mremap), never the
    bytes, and the new part comes zeroed from the kernel: no copy and no
    memset, and each page is touched first by the write that fills it. A
    heap realloc of a 50 MB array copies it and zeroes the new half, which
    made a shard receiving a transfer spend most of its time in memmove,
    memset and page faults.

    Arrays start on a page boundary (so on any cache-line boundary too).
    Sizes are rounded up to whole pages inside; callers pass the sizes they
    asked for.
*/
#ifndef SH_VMARR_H
#define SH_VMARR_H

#include <stddef.h>

//  ptr (from vmarr, or NULL with old_bytes 0) resized to new_bytes: the
//  first min(old, new) bytes kept, the rest zero. Returns the array, which
//  may have moved; NULL if new_bytes is 0 (ptr freed) or the memory could
//  not be had (ptr untouched, still old_bytes long).
void *vmarr_resize (void *ptr, size_t old_bytes, size_t new_bytes);
//  Frees ptr (from vmarr, bytes as last resized; NULL-safe).
void vmarr_free (void *ptr, size_t bytes);

#endif
