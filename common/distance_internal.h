/*  distance_internal: the test and benchmark hook into distance's dispatch.

    distance_kernel () hands out the fastest kernel this CPU runs; the unit
    suite and the kernel benchmark also need the slower ones, to check each
    against a reference on a CPU that would never pick them. Not for
    engine code: it would bypass the runtime choice.
*/
#ifndef SH_DISTANCE_INTERNAL_H
#define SH_DISTANCE_INTERNAL_H

#include "common/distance.h"

//  The kernel of one instruction set ("scalar", "avx2", "avx512", "neon")
//  for the metric's raw value, as distance_kernel () would give it; NULL
//  when this build has no such kernel or this CPU cannot run it.
distance_kernel_t distance_kernel_for_isa (const char *isa, distance_t d);

#endif
