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

/*
 * 1 when the file system holding fd is one whose fsync(2) of a file also makes
 * durable every name change of that file made before the call (its creation in
 * a folder, a link(2) to it, an unlink(2) of another of its names), so no fsync
 * of the folder is needed for them; 0 when unknown (then fsync the folder).
 * Only ext4 and ext3 mounts answer 1 (both run by the ext4 driver; ext2's own
 * driver, same magic number, does not do it): with a journal, the name change
 * is logged in the same handle as the inode it changes (its link count, ctime),
 * and fsync commits every transaction up to the inode's last one; without one,
 * ext4_sync_file syncs the parent of a new entry itself (Linux commit
 * 14ece1028b3e, 2.6.35). A folder's fsync on ext4 commits the whole running
 * journal transaction, whatever it holds: skipping it keeps concurrent work out
 * of each other's journal commits. Reads /proc/self/mountinfo once per device
 * (cached: thread-safe).
 */
int fs_names_durable_with_file(int fd);

/*
 * Gives the file (or symlink: lchown) at `path` the owner and group of the folder
 * holding it, so a file the daemon creates as root (its SQLite databases) stays
 * usable by the unprivileged user owning the state folder. Does nothing, and
 * returns 0, when not running as root, when the folder is root's (uid and gid 0),
 * when the folder cannot be stat(2)ed, or for paths of 4096 octets or more.
 * Returns 0, or -1 with errno set when the lchown(2) failed.
 */
int fs_give_to_folder_owner(const char *path);

#endif
