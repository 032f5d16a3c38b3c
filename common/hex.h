/*  hex: the value of a hexadecimal digit, for the parsers that read them
    (point ids as UUIDs in pointid.c, percent escapes in gw_http.c).
*/
#ifndef SH_HEX_H
#define SH_HEX_H

//  0..15 for a hex digit in either case, -1 for any other character.
static inline int
hex_value (int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
