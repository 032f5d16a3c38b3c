/*  fuzz_filter: arbitrary bytes as a Filter (parsed with the body parser),
    then matched against a payload with every kind of value: parse errors are
    fine, crashes and hangs are not.
*/
#include "common/filter.h"
#include "common/jsonx.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char err [256];
    json_t *json = jsonx_loadb ((const char *) data, size, 0, err, sizeof err);
    if (!json)
        return 0;
    filter_t *filter = NULL;
    if (filter_parse (json, &filter, err, sizeof err) == 0 && filter) {
        static const char *payload_text =
            "{\"a\": 1, \"b\": [1, 2.5, \"x\"], \"c\": {\"d\": [{\"e\": true}, {\"e\": null}]},"
            " \"t\": \"2024-01-01T00:00:00Z\", \"g\": {\"lat\": 1.0, \"lon\": 2.0}, \"n\": null,"
            " \"s\": \"hello world\", \"u\": \"550e8400-e29b-41d4-a716-446655440000\"}";
        json_t *payload = json_loads (payload_text, 0, NULL);
        pointid_t id = { .is_uuid = false, .num = 7 };
        (void) filter_match (filter, &id, payload);
        (void) filter_match (filter, &id, NULL);
        json_decref (payload);
        filter_destroy (&filter);
    }
    json_decref (json);
    return 0;
}
