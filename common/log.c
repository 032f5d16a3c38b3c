/*  log: see log.h. The actor tag and level are process-wide by nature (one
    stderr per process), so this is the one module that keeps static state.
*/
#include "common/log.h"
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static char s_actor [48] = "shoal";
static log_level_t s_level = LOG_LEVEL_INFO;
static const char *s_names [] = { "ERROR", "WARN", "INFO", "DEBUG", "TRACE" };

void
log_set_actor (const char *actor)
{
    snprintf (s_actor, sizeof s_actor, "%s", actor ? actor : "shoal");
}

void
log_set_level (log_level_t level)
{
    s_level = level;
}

log_level_t
log_get_level (void)
{
    return s_level;
}

int
log_level_parse (const char *text)
{
    if (!text)
        return -1;
    if (!strcasecmp (text, "error"))
        return LOG_LEVEL_ERROR;
    if (!strcasecmp (text, "warn") || !strcasecmp (text, "warning"))
        return LOG_LEVEL_WARN;
    if (!strcasecmp (text, "info"))
        return LOG_LEVEL_INFO;
    if (!strcasecmp (text, "debug"))
        return LOG_LEVEL_DEBUG;
    if (!strcasecmp (text, "trace"))
        return LOG_LEVEL_TRACE;
    return -1;
}

void
log_write (log_level_t level, const char *fmt, ...)
{
    if (level > s_level)
        return;
    char line [2048];
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r (&ts.tv_sec, &tm);
    int n = snprintf (line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s[%d]: ",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                      tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, s_names [level],
                      s_actor, (int) getpid ());
    va_list args;
    va_start (args, fmt);
    int m = vsnprintf (line + n, sizeof line - (size_t) n - 1, fmt, args);
    va_end (args);
    size_t len = (size_t) n + (m < 0 ? 0 : (size_t) m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line [len++] = '\n';
    //  One write per line so lines of concurrent processes don't interleave.
    ssize_t rc = write (STDERR_FILENO, line, len);
    (void) rc;
}
