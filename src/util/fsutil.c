/* fsutil: see fsutil.h. */
#include "util/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define FS_PATH_MAX 4096
#define FS_SEEN_MAX 8 /* devices remembered by fs_names_durable_with_file */

int fs_fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return rc;
}

/* 1 if the mount of device dev (mountinfo's "major:minor") has type ext4 or ext3. */
static int mount_is_ext4(dev_t dev)
{
	char want[32], line[4096];
	snprintf(want, sizeof want, " %u:%u ", major(dev), minor(dev));
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return 0;
	int yes = 0;
	while (fgets(line, sizeof line, f)) {
		/* "ID PARENT MAJ:MIN ROOT POINT OPTS [TAGS] - TYPE SOURCE SUPEROPTS" */
		const char *sep = strstr(line, " - ");
		if (!strstr(line, want) || !sep || strstr(line, want) > sep)
			continue;
		yes = strncmp(sep + 3, "ext4 ", 5) == 0 || strncmp(sep + 3, "ext3 ", 5) == 0;
		break;
	}
	fclose(f);
	return yes;
}

int fs_names_durable_with_file(int fd)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static struct {
		dev_t dev;
		int yes;
	} seen[FS_SEEN_MAX];
	static size_t nseen;
	struct stat st;
	struct statfs sf;
	if (fstat(fd, &st) < 0 || fstatfs(fd, &sf) < 0 || sf.f_type != EXT4_SUPER_MAGIC)
		return 0;
	pthread_mutex_lock(&mu);
	size_t i = 0;
	while (i < nseen && seen[i].dev != st.st_dev)
		i++;
	if (i == nseen) {
		i = nseen < FS_SEEN_MAX ? nseen++ : FS_SEEN_MAX - 1; /* the last slot is reused */
		seen[i].dev = st.st_dev;
		seen[i].yes = mount_is_ext4(st.st_dev);
	}
	int r = seen[i].yes;
	pthread_mutex_unlock(&mu);
	return r;
}

/* fsyncs the parent folder of buf (buf is modified and restored). */
static int fsync_parent(char *buf)
{
	char *slash = strrchr(buf, '/');
	if (!slash || slash == buf)
		return 0;
	*slash = '\0';
	int rc = fs_fsync_path(buf);
	*slash = '/';
	return rc;
}

int fs_mkdirs(const char *path, mode_t mode, int durable)
{
	char buf[FS_PATH_MAX];
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof buf) {
		errno = len ? ENAMETOOLONG : ENOENT;
		return -1;
	}
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char saved = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, mode) == 0) {
			if (durable && fsync_parent(buf) < 0)
				return -1;
		} else if (errno != EEXIST) {
			return -1;
		}
		buf[i] = saved;
	}
	return 0;
}

int fs_give_to_folder_owner(const char *path)
{
	char copy[4096];
	struct stat dir;
	size_t len = strlen(path);
	if (geteuid() != 0 || len >= sizeof copy)
		return 0;
	memcpy(copy, path, len + 1);
	if (stat(dirname(copy), &dir) != 0 || (dir.st_uid == 0 && dir.st_gid == 0))
		return 0;
	return lchown(path, dir.st_uid, dir.st_gid);
}
