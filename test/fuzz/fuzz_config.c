/*  fuzz_config: arbitrary bytes as a YAML config file, then as the JSON a
    supervisor hands its actors: errors are fine, crashes are not.
*/
#include "common/config.h"
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char err [512];
    json_t *tree = NULL;
    if (config_yaml_to_json ((const char *) data, size, &tree, err, sizeof err) == 0)
        json_decref (tree);
    char *text = (char *) malloc (size + 1);
    memcpy (text, data, size);
    text [size] = 0;
    config_t *config = NULL;
    if (config_from_json (text, &config, err, sizeof err) == 0)
        config_destroy (&config);
    free (text);
    return 0;
}
