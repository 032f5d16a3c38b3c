/*  pointid: Qdrant point ids: an unsigned 64-bit integer or a UUID.
    Parsing from JSON and URL text, formatting, total order (integers before
    UUIDs, as Qdrant's scroll orders them), hashing, and a binary key whose
    memcmp order equals pointid_cmp (for SQLite primary keys).
*/
#ifndef SH_POINTID_H
#define SH_POINTID_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    bool is_uuid;       //  which of the two below is meaningful
    uint64_t num;       //  the integer id
    uint8_t uuid [16];  //  the UUID, big-endian bytes as written
} pointid_t;

#define POINTID_KEY_SIZE 17
#define POINTID_TEXT_SIZE 37

//  A JSON integer >= 0, or a string holding a UUID (hyphenated, simple 32 hex,
//  braced {..} or urn:uuid:..., any case). 0 or -SH_EINVAL.
int pointid_from_json (const json_t *json, pointid_t *out);
//  Text from a URL path: decimal digits (fits u64) or a UUID as above.
int pointid_parse (const char *text, pointid_t *out);
//  New JSON value (integer, or lowercase hyphenated UUID string); yours.
json_t *pointid_to_json (const pointid_t *id);
//  Writes decimal or hyphenated UUID text into buf (POINTID_TEXT_SIZE).
void pointid_format (const pointid_t *id, char *buf);
//  <0, 0, >0: integers before UUIDs, integers by value, UUIDs by bytes.
int pointid_cmp (const pointid_t *a, const pointid_t *b);
bool pointid_eq (const pointid_t *a, const pointid_t *b);
//  A well-mixed 64-bit hash (for hash tables; not the shard hash).
uint64_t pointid_hash (const pointid_t *id);
//  Binary key: tag byte (0 int, 1 uuid) + 16 bytes big-endian; memcmp order
//  equals pointid_cmp. Returns POINTID_KEY_SIZE.
size_t pointid_key (const pointid_t *id, uint8_t *out);
int pointid_from_key (const uint8_t *key, size_t len, pointid_t *out);

#endif
