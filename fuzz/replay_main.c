/*
 * replay_main: runs a libFuzzer target (LLVMFuzzerTestOneInput) over files or
 * directories given on the command line, under any compiler. Used by make check
 * to replay each fuzz corpus under ASan+UBSan. Prints "N passed, 0 failed": a
 * crash aborts the process, so reaching the end means every input passed.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long replayed;

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return -1;
	}
	size_t cap = 1 << 20, len = 0;
	uint8_t *buf = malloc(cap);
	if (!buf) {
		fclose(f);
		return -1;
	}
	len = fread(buf, 1, cap, f);
	fclose(f);
	/* Exact-size copy so ASan sees reads past the input. */
	uint8_t *exact = malloc(len ? len : 1);
	if (!exact) {
		free(buf);
		return -1;
	}
	memcpy(exact, buf, len);
	free(buf);
	LLVMFuzzerTestOneInput(exact, len);
	free(exact);
	replayed++;
	return 0;
}

static int replay_path(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		perror(path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return replay_file(path);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char sub[4096];
		snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
		if (replay_path(sub) != 0)
			rc = -1;
	}
	closedir(d);
	return rc;
}

int main(int argc, char **argv)
{
	int rc = 0;
	for (int i = 1; i < argc; i++)
		if (replay_path(argv[i]) != 0)
			rc = 1;
	if (replayed == 0) {
		fprintf(stderr, "no corpus inputs replayed\n");
		rc = 1;
	}
	printf("%lu passed, %d failed\n", replayed, rc);
	return rc;
}
