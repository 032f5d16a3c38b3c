/*  log: leveled logging to stderr, one line per event, tagged with the actor
    name and pid: "2026-11-28T10:00:00.123Z INFO raft[1234]: ...".
    The level check happens before any formatting (the macros test first).
*/
#ifndef SH_LOG_H
#define SH_LOG_H

#include <stdarg.h>

typedef enum { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO,
               LOG_LEVEL_DEBUG, LOG_LEVEL_TRACE } log_level_t;

//  Sets the tag printed on every line ("supervisor", "raft", "shard:3/0").
void log_set_actor (const char *actor);
void log_set_level (log_level_t level);
log_level_t log_get_level (void);
//  Parses "error|warn|warning|info|debug|trace" (any case); -1 if unknown.
int log_level_parse (const char *text);

void log_write (log_level_t level, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

#define log_error(...) log_write (LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  do { if (log_get_level () >= LOG_LEVEL_WARN) \
                                log_write (LOG_LEVEL_WARN, __VA_ARGS__); } while (0)
#define log_info(...)  do { if (log_get_level () >= LOG_LEVEL_INFO) \
                                log_write (LOG_LEVEL_INFO, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_get_level () >= LOG_LEVEL_DEBUG) \
                                log_write (LOG_LEVEL_DEBUG, __VA_ARGS__); } while (0)
#define log_trace(...) do { if (log_get_level () >= LOG_LEVEL_TRACE) \
                                log_write (LOG_LEVEL_TRACE, __VA_ARGS__); } while (0)

#endif
