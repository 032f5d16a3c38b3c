/*  fdio: reading and writing a non-blocking socket a piece at a time, as
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
//  Reads what fd (non-blocking) has, up to room bytes, into buf: the bytes
//  read (> 0), 0 when nothing is there now, -SH_EIO when the other side
//  closed or the read failed. An interrupted read is tried again.
long fdio_recv_some (int fd, void *buf, size_t room);

#endif
