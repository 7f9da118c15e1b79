/*
 * bench_queue_open: the queue's start-up cost with a big queue (ISSUE7.md,
 * Performance: "start-up with 100,000 queued messages under 10 s").
 *
 *   bench_queue_open [--messages N] [--size OCTETS] [--rounds R] [--dir DIR] [--keep]
 *
 * Fills a new queue in a temporary folder (under DIR, default $TMPDIR or /tmp)
 * with N messages of SIZE octets (default 100,000 of 4096) through the real
 * writer, queue_enqueue() from 16 threads, each message with a state file (one
 * recipient deferred to a dead destination, with a route and a last reply: the
 * queue a dead peer leaves behind). Then, in R interleaved rounds (default 3):
 *
 *   open     queue_open() with an event loop (the daemon's start-up pass: every
 *            message verified whole, every state read) + queue_take_startup()
 *            (everything the scheduler needs), then queue_close()
 *   read     the reference: the same files read with plain open/read/close
 *            after listing the folders, nothing parsed or hashed
 *
 * and prints both medians and their ratio, the same run, the same page cache
 * (warm: the files were just written or read; the figure for a cold cache is
 * the disk's). Then the cost of reading one message's envelope and state after
 * start-up (queue_read_envelope, the delivery code's read) for a 4 KiB and a
 * 10 MiB message: it must not grow with the message. Exit status 0, 1 when
 * something failed (never for a missed target: the lines say PASS or MISS).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "queue/queue.h"
#include "util/log.h"

#define BQ_THREADS 16
#define BQ_TARGET_S 10.0

struct bq_fill {
	struct queue *q;
	size_t from, to, size;
	size_t done;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A message of `size` octets: a few header fields, then 78-octet lines. */
static char *make_data(size_t size, size_t n)
{
	char *d = malloc(size + 1);
	if (!d)
		return NULL;
	int h = snprintf(d, size + 1,
	                 "From: sender@client.example\r\nTo: user%zu@dead.example\r\n"
	                 "Subject: queued message %zu\r\n\r\n",
	                 n, n);
	size_t at = h > 0 && (size_t)h < size ? (size_t)h : 0;
	while (at < size) {
		d[at] = (at + 2) % 80 == 0   ? '\r'
		        : (at + 1) % 80 == 0 ? '\n'
		                             : (char)('a' + at % 26);
		at++;
	}
	d[size] = '\0';
	return d;
}

static struct envelope *make_env(size_t n)
{
	char a[64];
	struct envelope *e = envelope_new();
	if (!e)
		return NULL;
	snprintf(a, sizeof a, "user%zu@dead.example", n);
	envelope_set(&e->mail_from, "sender@client.example");
	envelope_set(&e->helo, "client.example");
	envelope_set(&e->client_addr, "192.0.2.1");
	e->received_at = (int64_t)time(NULL);
	envelope_add_rcpt(e, a, NULL, 0);
	return e;
}

static void *fill(void *arg)
{
	struct bq_fill *f = arg;
	for (size_t i = f->from; i < f->to; i++) {
		char *data = make_data(f->size, i);
		struct envelope *e = make_env(i);
		if (!data || !e || queue_enqueue(f->q, e, data, f->size, e->id) < 0) {
			fprintf(stderr, "bench_queue_open: enqueue %zu failed: %s\n", i,
			        strerror(errno));
			free(data);
			envelope_free(e);
			return NULL;
		}
		struct envelope_rcpt *r = &e->rcpts[0];
		r->state = RCPT_DEFERRED;
		r->attempts = 3;
		r->next_try = e->received_at + 3600;
		envelope_set(&r->route, "dead.example");
		envelope_set(&r->status, "421 4.4.2 dead.example: connection timed out");
		if (queue_update(f->q, e) < 0) {
			fprintf(stderr, "bench_queue_open: state %zu failed\n", i);
			free(data);
			envelope_free(e);
			return NULL;
		}
		f->done++;
		free(data);
		envelope_free(e);
	}
	return NULL;
}

static int count_pending(void *arg, const struct queue_pending *p)
{
	size_t *n = arg;
	*n += p->n_rcpts;
	return 0;
}

/* Reads every file of dir/sub with open/read/close; returns the octets read, or -1. */
static long long read_folder(const char *dir, const char *sub, char *buf, size_t cap)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, sub);
	int dfd = open(p, O_RDONLY | O_DIRECTORY);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *de;
	long long total = 0;
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		int fd = openat(dfd, de->d_name, O_RDONLY);
		ssize_t n;
		if (fd < 0) {
			total = -1;
			break;
		}
		while ((n = read(fd, buf, cap)) > 0)
			total += n;
		close(fd);
	}
	closedir(d);
	return total;
}

static double median(double *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
			double t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Mean microseconds of queue_read_envelope(id) over `reps` calls. */
static double envelope_read_us(struct queue *q, const char *id, int reps)
{
	double t0 = now_s();
	for (int i = 0; i < reps; i++) {
		struct envelope *e = NULL;
		if (queue_read_envelope(q, id, &e) < 0)
			return -1;
		envelope_free(e);
	}
	return (now_s() - t0) * 1e6 / reps;
}

/* One message of `size` octets in a new small queue; its id into id. */
static int one_message(struct queue *q, size_t size, char id[QUEUE_ID_MAX])
{
	char *data = make_data(size, 0);
	struct envelope *e = make_env(0);
	int r = data && e ? queue_enqueue(q, e, data, size, id) : -1;
	free(data);
	envelope_free(e);
	return r;
}

static void rm_tree(const char *dir)
{
	static const char *const subs[] = {"tmp", "msg", "state", "quarantine", "flush"};
	char p[4096], f[8192];
	for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
		snprintf(p, sizeof p, "%s/%s", dir, subs[i]);
		DIR *d = opendir(p);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(f, sizeof f, "%s/%s", p, de->d_name);
			unlink(f);
		}
		if (d)
			closedir(d);
		rmdir(p);
	}
	rmdir(dir);
}

static int envelope_cost(const char *root, struct event_base *b)
{
	char dir[4200], err[256], small[QUEUE_ID_MAX], big[QUEUE_ID_MAX];
	snprintf(dir, sizeof dir, "%s/sizes", root);
	struct queue *q = queue_open(dir, b, err, sizeof err);
	if (!q || one_message(q, 4096, small) < 0 || one_message(q, 10u << 20, big) < 0) {
		fprintf(stderr, "bench_queue_open: %s\n", q ? "enqueue failed" : err);
		queue_close(q);
		return -1;
	}
	double s = envelope_read_us(q, small, 2000), l = envelope_read_us(q, big, 2000);
	printf("  envelope + state read after start-up (queue_read_envelope): %.1f us for a "
	       "4 KiB message, %.1f us for a 10 MiB one (ratio %.2f)\n",
	       s, l, s > 0 ? l / s : 0);
	printf("%s reading a recipient's state does not grow with the message (10 MiB / 4 KiB "
	       "<= 2): %.2f\n",
	       s > 0 && l / s <= 2.0 ? "PASS" : "MISS", s > 0 ? l / s : 0);
	queue_close(q);
	rm_tree(dir);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_queue_open [--messages N] [--size OCTETS] [--rounds R] "
	                "[--dir DIR] [--keep]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	size_t n = 100000, size = 4096;
	int rounds = 3, keep = 0, c;
	const char *parent = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	static const struct option opts[] = {
	        {"messages", required_argument, NULL, 'n'}, {"size", required_argument, NULL, 's'},
	        {"rounds", required_argument, NULL, 'r'},   {"dir", required_argument, NULL, 'd'},
	        {"keep", no_argument, NULL, 'k'},           {NULL, 0, NULL, 0}};
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n': n = strtoul(optarg, NULL, 10); break;
		case 's': size = strtoul(optarg, NULL, 10); break;
		case 'r': rounds = atoi(optarg); break;
		case 'd': parent = optarg; break;
		case 'k': keep = 1; break;
		default: usage();
		}
	}
	if (n == 0 || size < 100 || rounds < 1 || rounds > 15)
		usage();
	log_set_level(LOG_LEVEL_WARNING);
	char root[4096], dir[4200], err[256];
	snprintf(root, sizeof root, "%s/bench_queue.XXXXXX", parent);
	if (!mkdtemp(root)) {
		perror(root);
		return 1;
	}
	snprintf(dir, sizeof dir, "%s/queue", root);
	struct event_base *b = event_base_new();
	struct queue *q = queue_open(dir, b, err, sizeof err);
	if (!q) {
		fprintf(stderr, "bench_queue_open: %s\n", err);
		return 1;
	}
	struct statfs sf;
	const char *fs = statfs(dir, &sf) == 0 && sf.f_type == 0xEF53 ? "ext4" : "not ext4";
	double t0 = now_s();
	struct bq_fill f[BQ_THREADS];
	pthread_t th[BQ_THREADS];
	for (int i = 0; i < BQ_THREADS; i++) {
		f[i] = (struct bq_fill){q, n * (size_t)i / BQ_THREADS,
		                        n * (size_t)(i + 1) / BQ_THREADS, size, 0};
		pthread_create(&th[i], NULL, fill, &f[i]);
	}
	size_t made = 0;
	for (int i = 0; i < BQ_THREADS; i++) {
		pthread_join(th[i], NULL);
		made += f[i].done;
	}
	double fill_s = now_s() - t0;
	queue_take_committed(q, NULL, NULL);
	queue_close(q);
	if (made != n) {
		fprintf(stderr, "bench_queue_open: only %zu of %zu messages queued\n", made, n);
		return 1;
	}
	printf("queue start-up: %zu messages of %zu octets, each with a state file (deferred, "
	       "routed), %s file system under %s; filled in %.1f s by queue_enqueue from %d "
	       "threads (%.0f msgs/s, every one durable); warm page cache; %d interleaved "
	       "rounds\n",
	       n, size, fs, parent, fill_s, BQ_THREADS, (double)n / fill_s, rounds);
	double open_s[15], read_s[15];
	size_t cap = 1 << 20;
	char *buf = malloc(cap);
	long long octets = 0;
	for (int r = 0; r < rounds; r++) {
		t0 = now_s();
		long long a = read_folder(dir, "msg", buf, cap),
		          s = read_folder(dir, "state", buf, cap);
		read_s[r] = now_s() - t0;
		if (a < 0 || s < 0) {
			fprintf(stderr, "bench_queue_open: cannot read %s\n", dir);
			return 1;
		}
		octets = a + s;
		size_t pending = 0;
		t0 = now_s();
		q = queue_open(dir, b, err, sizeof err);
		size_t msgs = q ? queue_take_startup(q, count_pending, &pending) : 0;
		open_s[r] = now_s() - t0;
		queue_close(q);
		if (msgs != n || pending != n) {
			fprintf(stderr,
			        "bench_queue_open: start-up found %zu messages, %zu pending\n",
			        msgs, pending);
			return 1;
		}
	}
	free(buf);
	printf("  queue_open + queue_take_startup  median %6.2f s  runs:", median(open_s, rounds));
	for (int r = 0; r < rounds; r++)
		printf(" %.2f", open_s[r]);
	printf("\n  plain read() of the same files    median %6.2f s  runs:",
	       median(read_s, rounds));
	for (int r = 0; r < rounds; r++)
		printf(" %.2f", read_s[r]);
	double mo = median(open_s, rounds), mr = median(read_s, rounds);
	printf("  (%.0f MiB)\n  start-up / plain read: %.2f\n", (double)octets / 1048576.0,
	       mr > 0 ? mo / mr : 0);
	printf("%s start-up with %zu queued messages under %.0f s: %.2f s\n",
	       mo < BQ_TARGET_S ? "PASS" : "MISS", n, BQ_TARGET_S, mo);
	int rc = envelope_cost(root, b) < 0 ? 1 : 0;
	if (keep)
		printf("  kept: %s\n", dir);
	else
		rm_tree(dir);
	if (!keep)
		rmdir(root);
	event_base_free(b);
	return rc;
}
