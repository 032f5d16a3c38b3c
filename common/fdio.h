/*  fdio: writing a buffer to a non-blocking socket a piece at a time, as
    the poll loops that own such sockets need (the p2p actor's connections
    to shards' direct sockets, proto/route.h's stream connections).
*/
#ifndef SH_FDIO_H
#define SH_FDIO_H

#include <stddef.h>

//  Writes data [*pos, len) to fd without blocking and moves *pos past what
//  went. 0: all of it went, or the rest waits for room (*pos < len: poll
//  for POLLOUT and call again); -SH_EIO: the other side is gone or the
//  write failed. A reader gone is an error, never a SIGPIPE.
int fdio_send_some (int fd, const void *data, size_t len, size_t *pos);

#endif
