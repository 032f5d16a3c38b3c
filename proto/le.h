/*  le: little-endian integers in byte buffers, the byte order of every
    fixed-size header on shoal's wire (envelope.h, route.h). Inline so each
    codec keeps its loops tight; no alignment is assumed.
*/
#ifndef SH_LE_H
#define SH_LE_H

#include <stdint.h>

static inline void
le_put_u16 (uint8_t *p, uint16_t v)
{
    p [0] = (uint8_t) v;
    p [1] = (uint8_t) (v >> 8);
}

static inline void
le_put_u32 (uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p [i] = (uint8_t) (v >> (8 * i));
}

static inline void
le_put_u64 (uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p [i] = (uint8_t) (v >> (8 * i));
}

static inline uint16_t
le_get_u16 (const uint8_t *p)
{
    return (uint16_t) (p [0] | p [1] << 8);
}

static inline uint32_t
le_get_u32 (const uint8_t *p)
{
    return (uint32_t) p [0] | (uint32_t) p [1] << 8 | (uint32_t) p [2] << 16
         | (uint32_t) p [3] << 24;
}

static inline uint64_t
le_get_u64 (const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p [i];
    return v;
}

#endif
