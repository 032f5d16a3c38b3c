/*  fdio: see fdio.h. */
#include "common/fdio.h"
#include "common/err.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

int
fdio_send_some (int fd, const void *data, size_t len, size_t *pos)
{
    const char *bytes = (const char *) data;
    while (*pos < len) {
        ssize_t done = send (fd, bytes + *pos, len - *pos, MSG_NOSIGNAL);
        if (done > 0)
            *pos += (size_t) done;
        else
        if (done < 0 && errno == EINTR)
            continue;
        else
        if (done < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        else
            return -SH_EIO;
    }
    return 0;
}

long
fdio_recv_some (int fd, void *buf, size_t room)
{
    while (true) {
        ssize_t got = read (fd, buf, room);
        if (got > 0)
            return (long) got;
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return -SH_EIO;             //  closed (0) or failed
    }
}
