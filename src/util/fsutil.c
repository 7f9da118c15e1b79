/* fsutil: see fsutil.h. */
#include "util/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FS_PATH_MAX 4096

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
