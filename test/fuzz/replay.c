/*  replay: runs every file of a fuzz corpus dir through a fuzz target's
    LLVMFuzzerTestOneInput, so `meson test` re-checks every input that once
    crashed a parser (and the seeds) without clang or libFuzzer. A crash
    fails the test; the file being replayed is printed first.
*/
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
main (int argc, char **argv)
{
    if (argc != 2) {
        fprintf (stderr, "usage: %s CORPUS_DIR\n", argv [0]);
        return 2;
    }
    DIR *dir = opendir (argv [1]);
    if (!dir) {
        perror (argv [1]);
        return 2;
    }
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        if (entry->d_name [0] == '.')
            continue;
        char path [4096];
        snprintf (path, sizeof path, "%s/%s", argv [1], entry->d_name);
        FILE *file = fopen (path, "rb");
        if (!file)
            continue;
        fseek (file, 0, SEEK_END);
        long size = ftell (file);
        rewind (file);
        uint8_t *data = (uint8_t *) malloc (size > 0 ? (size_t) size : 1);
        size_t got = fread (data, 1, (size_t) size, file);
        fclose (file);
        fprintf (stderr, "replay %s (%zu bytes)\n", path, got);
        LLVMFuzzerTestOneInput (data, got);
        free (data);
        count++;
    }
    closedir (dir);
    //  One "test case" per input, in the runner's plain closing format.
    printf ("%d passed, 0 failed\n", count);
    return 0;
}
