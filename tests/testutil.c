/* tests/testutil.c: see testutil.h. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *tu_shared_dir(void) {
    static char dir[4096];
    const char *env = getenv("SLMESH_SHARED");
    const char *cand = env && *env ? env : "../shared";
    struct stat st;
    if (stat(cand, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
    snprintf(dir, sizeof dir, "%s", cand);
    return dir;
}

const char *tu_shared_path(char *buf, size_t cap, const char *rel) {
    const char *dir = tu_shared_dir();
    struct stat st;
    if (!dir) {
        fprintf(stderr, "SKIP: shared/ not found (set SLMESH_SHARED); needed for %s\n", rel);
        return NULL;
    }
    snprintf(buf, cap, "%s/%s", dir, rel);
    if (stat(buf, &st) != 0) {
        fprintf(stderr, "SKIP: %s not found\n", buf);
        return NULL;
    }
    return buf;
}

char *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long size;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) goto done;
    buf = malloc((size_t)size + 1);
    if (!buf) goto done;
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
        goto done;
    }
    buf[size] = '\0';
    if (len) *len = (size_t)size;
done:
    fclose(f);
    return buf;
}

char *tu_write_temp(const void *data, size_t len, const char *suffix) {
    const char *tmp = getenv("TMPDIR");
    char *path = malloc(4096);
    int fd;
    if (!path) return NULL;
    snprintf(path, 4096, "%s/slmesh-test-XXXXXX%s", tmp && *tmp ? tmp : "/tmp", suffix ? suffix : "");
    fd = mkstemps(path, suffix ? (int)strlen(suffix) : 0);
    if (fd < 0) {
        free(path);
        return NULL;
    }
    if (write(fd, data, len) != (ssize_t)len) {
        close(fd);
        unlink(path);
        free(path);
        return NULL;
    }
    close(fd);
    return path;
}
