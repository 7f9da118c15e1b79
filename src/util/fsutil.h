/*
 * fsutil: small file-system helpers shared by the daemon, delivery and the CLI.
 * No allocation.
 */
#ifndef SHAREMAIL_UTIL_FSUTIL_H
#define SHAREMAIL_UTIL_FSUTIL_H

#include <sys/types.h>

/*
 * mkdir -p: creates every missing folder of `path` with `mode`. With `durable`,
 * each folder it creates is made durable by fsyncing its parent (mail must not
 * vanish with the folder it was delivered into). Returns 0, or -1 with errno set
 * (ENAMETOOLONG for paths of 4096 octets or more).
 */
int fs_mkdirs(const char *path, mode_t mode, int durable);

/* fsyncs the folder or file at path. Returns 0 or -1 (errno). */
int fs_fsync_path(const char *path);

#endif
