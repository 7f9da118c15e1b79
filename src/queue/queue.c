/*
 * queue: the durable spool (see queue.h for the contract, queue_file.h for the
 * file format, doc/internals/queue.md for the durability rule). Layout under
 * the queue folder:
 *
 *   msg/<id>     messages: created in place, immutable once committed,
 *                self-validating (a file being received has no valid END yet)
 *   state/<id>   the recipients' delivery states, replaced atomically
 *   tmp/         state files being written (and, from before queue v2,
 *                messages being written); removed at start-up
 *   flush/       flush requests from the CLI: <id>, or "_all"
 *   quarantine/  damaged files, never-acknowledged files and junk names found
 *                at start-up
 *
 * Durability (hostile-inputs.md "Faults"): a message is reported committed only
 * after openat(msg/, O_EXCL), write, fsync(file), fsync(msg/). The file's fsync
 * commits the journal transaction that also holds its directory entry (ext4
 * logs the create with the inode): one journal commit per message, where tmp/ +
 * rename cost two. Where the file system is known to make the name durable that
 * way (fs_names_durable_with_file: ext4, ext3) the fsync of msg/ is left out:
 * on ext4 a folder's fsync forces a commit of the whole running transaction,
 * i.e. of other sessions' files and of delivery's Maildir copies, a second
 * journal commit on the 250's path. Everywhere else msg/ is fsynced, without
 * which the name would not be durable (doc/internals/queue.md).
 *
 * Nothing reads msg/ while the daemon runs: the runner learns of a message from
 * the commit (queue_take_committed) and of the queue at start-up from the one
 * pass of queue_open (queue_take_startup), so a file still being written is
 * never taken for a message, and a crash leaves at most files without a valid
 * END, which the next start-up quarantines.
 *
 * Group commit: committer threads take jobs from a list; the directory fsync is
 * shared by leader/follower: a committer that finds no fsync running takes every
 * job whose file is fsynced so far and fsyncs msg/ once for all of them;
 * committers arriving meanwhile wait for the next round. Completions return to
 * the event loop through an eventfd, which works whatever threading setup the
 * event_base has.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "queue/queue.h"
#include "queue/queue_file.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/timeutil.h"

#define QUEUE_COMMITTERS 8
#define MSG_BUF 32768
#define STATE_FILE_MAX (QUEUE_FILE_META_MAX + QUEUE_FILE_MAGIC_LEN + QUEUE_FILE_END_LEN_V1)
#define ID_TRIES 8 /* new ids tried when one is taken (O_EXCL) */
#define FLUSH_ALL "_all" /* '_' is not in the id alphabet: never a message's name */

enum crash_point {
	CRASH_NONE = 0,
	CRASH_MID_WRITE,
	CRASH_AFTER_WRITE,
	CRASH_AFTER_FSYNC,
	CRASH_AFTER_DIRSYNC
};

struct queue_msg {
	struct queue *q;
	struct queue_msg *next;
	char id[QUEUE_ID_MAX];
	int fd;
	int err; /* sticky errno of a failed write */
	uint64_t data_len;
	EVP_MD_CTX *hash; /* D1: over the magic line and every data octet so far */
	uint8_t *buf; /* data not yet written */
	size_t blen;
	struct queue_buf tail; /* envelope records + END, built at commit */
	size_t rec_len; /* the records' octets at the start of tail */
	struct envelope *kept; /* committed by a committer: the envelope decoded again */
	int rfd; /* and the file open for reading (-1: none) */
	void (*done)(void *arg, int ok, const char *id);
	void *arg;
	int ok;
	int dsync; /* directory fsync: 0 waiting, 1 done, -1 failed */
};

/* A message of the start-up pass, waiting for queue_take_startup. */
struct startup_msg {
	char id[QUEUE_ID_MAX];
	int64_t received_at;
	struct queue_pending_rcpt *rcpts; /* addr and route are heap copies */
	size_t n;
};

/* An id committed since the last queue_take_committed (with what the commit kept). */
struct committed {
	struct committed *next;
	char id[QUEUE_ID_MAX];
	struct envelope *env; /* NULL, or the envelope as committed */
	int fd; /* -1, or the file open for reading */
	uint64_t data_len;
};

struct queue {
	int dirfd, tmpfd, msgfd, statefd, quarfd, flushfd;
	int names_with_file; /* fs_names_durable_with_file(msg/): no fsync of msg/ needed */
	struct event_base *base;
	struct event *ev;
	int efd;
	enum crash_point crash;
	pthread_t threads[QUEUE_COMMITTERS];
	int nthreads;
	/* jobs waiting for a committer */
	pthread_mutex_t jmu;
	pthread_cond_t jcv;
	struct queue_msg *jobs, **jobs_tail;
	int stopping;
	/* the shared directory fsync */
	pthread_mutex_t dmu;
	pthread_cond_t dcv;
	struct queue_msg *dwait;
	int dsync_busy;
	/* file fsyncs of commits, for queue_ride (under rmu) */
	pthread_mutex_t rmu;
	pthread_cond_t rcv;
	uint64_t fsyncs_begun; /* numbered from 1 as they begin */
	uint64_t fsync_ended; /* the highest number among those that ended */
	uint64_t last_begin_us; /* time_mono_us of the last one begun */
	/* finished commits for the event loop */
	pthread_mutex_t cmu;
	struct queue_msg *done, **done_tail;
	void (*on_commit)(void *arg, const char *id);
	void *on_commit_arg;
	/* what the delivery code takes: the start-up pass, then commits (under lmu) */
	pthread_mutex_t lmu;
	struct startup_msg *startup;
	size_t n_startup;
	struct committed *committed, **committed_tail;
};

/* ---- helpers ---- */

static int id_valid(const char *id)
{
	size_t n = 0;
	if (!id)
		return 0;
	for (; id[n]; n++) {
		char c = id[n];
		if (n >= QUEUE_ID_MAX - 1 ||
		    !((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
			return 0;
	}
	return n > 0;
}

static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/*
 * Queue id: 10 base-62 digits of the wall clock in microseconds (sortable: the
 * digits are in ASCII order) and 8 random base-62 digits against collisions.
 */
static int id_new(char out[QUEUE_ID_MAX])
{
	struct timeval tv;
	uint8_t rnd[8];
	gettimeofday(&tv, NULL);
	uint64_t us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
	if (RAND_bytes(rnd, sizeof rnd) != 1)
		return -1;
	for (int i = 9; i >= 0; i--) {
		out[i] = b62[us % 62];
		us /= 62;
	}
	for (int i = 0; i < 8; i++)
		out[10 + i] = b62[rnd[i] % 62];
	out[18] = '\0';
	return 0;
}

int64_t queue_id_time_us(const char *id)
{
	uint64_t us = 0;
	if (!id_valid(id) || strlen(id) != 18)
		return -1;
	for (int i = 0; i < 10; i++) {
		const char *d = strchr(b62, id[i]);
		us = us * 62 + (uint64_t)(d - b62);
	}
	return us > (uint64_t)INT64_MAX ? -1 : (int64_t)us;
}

static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t r = write(fd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Both buffers in as few system calls as the kernel allows (usually one). */
static int writev_all(int fd, const void *a, size_t alen, const void *b, size_t blen)
{
	struct iovec iov[2] = {{(void *)a, alen}, {(void *)b, blen}};
	struct iovec *v = iov;
	int n = 2;
	while (n > 0) {
		ssize_t r = writev(fd, v, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		size_t done = (size_t)r;
		while (n > 0 && done >= v->iov_len) {
			done -= v->iov_len;
			v++;
			n--;
		}
		if (n > 0) {
			v->iov_base = (uint8_t *)v->iov_base + done;
			v->iov_len -= done;
		}
	}
	return 0;
}

static void crash_at(const struct queue *q, enum crash_point p)
{
	if (q->crash == p)
		raise(SIGKILL);
}

static enum crash_point crash_parse(const char *s)
{
	static const struct {
		const char *name;
		enum crash_point p;
	} points[] = {{"mid-write", CRASH_MID_WRITE},
	              {"after-write", CRASH_AFTER_WRITE},
	              {"after-fsync", CRASH_AFTER_FSYNC},
	              /* Before queue v2 a rename followed the file's fsync; nothing does now. */
	              {"after-rename", CRASH_AFTER_FSYNC},
	              {"after-dirsync", CRASH_AFTER_DIRSYNC}};
	for (size_t i = 0; s && i < sizeof points / sizeof points[0]; i++)
		if (strcmp(s, points[i].name) == 0)
			return points[i].p;
	return CRASH_NONE;
}

static int open_sub(int dirfd, const char *name)
{
	if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
		return -1;
	return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* ---- committing ---- */

static void msg_free(struct queue_msg *m)
{
	if (m->fd >= 0)
		close(m->fd);
	if (m->rfd >= 0)
		close(m->rfd);
	envelope_free(m->kept);
	EVP_MD_CTX_free(m->hash);
	free(m->buf);
	queue_buf_free(&m->tail);
	free(m);
}

/* Hands a finished commit (or, without done(), an announcement) to the event loop. */
static void complete(struct queue_msg *m, int ok)
{
	struct queue *q = m->q;
	uint64_t one = 1;
	m->ok = ok;
	m->next = NULL;
	pthread_mutex_lock(&q->cmu);
	*q->done_tail = m;
	q->done_tail = &m->next;
	pthread_mutex_unlock(&q->cmu);
	while (write(q->efd, &one, sizeof one) < 0 && errno == EINTR)
		;
}

/* Shared fsync of msg/: returns once an fsync begun after m's file was fsynced finished. */
static int dir_sync(struct queue_msg *m)
{
	struct queue *q = m->q;
	pthread_mutex_lock(&q->dmu);
	m->dsync = 0;
	m->next = q->dwait;
	q->dwait = m;
	while (m->dsync == 0) {
		if (q->dsync_busy) {
			pthread_cond_wait(&q->dcv, &q->dmu);
			continue;
		}
		/* Leader: every job in the list was created and fsynced before this fsync. */
		struct queue_msg *batch = q->dwait;
		q->dwait = NULL;
		q->dsync_busy = 1;
		pthread_mutex_unlock(&q->dmu);
		int r = fsync(q->msgfd);
		pthread_mutex_lock(&q->dmu);
		for (struct queue_msg *j = batch; j; j = j->next)
			j->dsync = r == 0 ? 1 : -1;
		q->dsync_busy = 0;
		pthread_cond_broadcast(&q->dcv);
	}
	int ok = m->dsync > 0;
	pthread_mutex_unlock(&q->dmu);
	return ok ? 0 : -1;
}

/* A commit's file fsync begins: its number, for queue_ride. */
static uint64_t ride_begin(struct queue *q)
{
	pthread_mutex_lock(&q->rmu);
	uint64_t n = ++q->fsyncs_begun;
	q->last_begin_us = time_mono_us();
	pthread_mutex_unlock(&q->rmu);
	return n;
}

/* Fsync number n ended (well or not): the riders waiting for it go on. */
static void ride_end(struct queue *q, uint64_t n)
{
	pthread_mutex_lock(&q->rmu);
	if (n > q->fsync_ended)
		q->fsync_ended = n;
	pthread_cond_broadcast(&q->rcv);
	pthread_mutex_unlock(&q->rmu);
}

int queue_ride(struct queue *q, unsigned max_us)
{
	uint64_t now = time_mono_us();
	pthread_mutex_lock(&q->rmu);
	uint64_t mark = q->fsyncs_begun;
	int busy = q->base && q->last_begin_us && now - q->last_begin_us < max_us;
	if (busy) {
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += max_us / 1000000;
		until.tv_nsec += (long)(max_us % 1000000) * 1000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		while (q->fsync_ended <= mark)
			if (pthread_cond_timedwait(&q->rcv, &q->rmu, &until) == ETIMEDOUT)
				break;
	}
	int carried = q->fsync_ended > mark;
	pthread_mutex_unlock(&q->rmu);
	return carried;
}

/*
 * Makes one message durable: write the rest, fsync the file, fsync msg/ (in that
 * order). Returns 0, or -1 with errno after removing the file (the client gets
 * a 4xx and retries; a crash before the removal is durable leaves a whole file
 * that may be delivered: a duplicate, never a loss).
 */
static int commit_write(struct queue_msg *m)
{
	struct queue *q = m->q;
	int fd = m->fd, e;
	m->fd = -1;
	if (q->crash == CRASH_MID_WRITE) {
		/* Everything but the last octet of the END record: a file cut short. */
		if (writev_all(fd, m->buf, m->blen, m->tail.p, m->tail.len - 1) == 0)
			raise(SIGKILL);
		goto fail;
	}
	if (writev_all(fd, m->buf, m->blen, m->tail.p, m->tail.len) < 0)
		goto fail;
	crash_at(q, CRASH_AFTER_WRITE);
	uint64_t n = ride_begin(q);
	int r = fsync(fd);
	ride_end(q, n);
	if (r < 0)
		goto fail;
	crash_at(q, CRASH_AFTER_FSYNC);
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	/* Where the file's fsync made its name durable (ext4), a folder fsync would only
	 * commit whatever else is running: other sessions' files, deliveries. */
	if (!q->names_with_file && dir_sync(m) < 0) {
		e = errno;
		log_err("queue: fsync of msg/ failed for %s: %s", m->id, strerror(e));
		unlinkat(q->msgfd, m->id, 0);
		errno = e;
		return -1;
	}
	crash_at(q, CRASH_AFTER_DIRSYNC);
	return 0;
fail:
	e = errno;
	log_err("queue: cannot commit %s: %s", m->id, strerror(e));
	if (fd >= 0)
		close(fd);
	unlinkat(q->msgfd, m->id, 0);
	errno = e;
	return -1;
}

/*
 * On the committer thread, once the file is durable: what delivery would read
 * back from it (the envelope, decoded from the records just written, and the
 * file open for reading), so the delivery runner can start at once
 * (queue_take_committed_env). Only for queue_msg_commit: such a message has no
 * state file. Neither is kept when either cannot be made.
 */
static void keep_for_delivery(struct queue_msg *m)
{
	struct queue *q = m->q;
	m->rfd = openat(q->msgfd, m->id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (m->rfd < 0 || queue_file_decode_envelope(m->tail.p, m->rec_len, &m->kept) < 0) {
		if (m->rfd >= 0)
			close(m->rfd);
		m->rfd = -1;
		m->kept = NULL;
		return;
	}
	snprintf(m->kept->id, sizeof m->kept->id, "%s", m->id);
}

static void *committer(void *arg)
{
	struct queue *q = arg;
	pthread_mutex_lock(&q->jmu);
	for (;;) {
		while (!q->jobs && !q->stopping)
			pthread_cond_wait(&q->jcv, &q->jmu);
		struct queue_msg *m = q->jobs;
		if (!m)
			break; /* stopping and nothing left */
		q->jobs = m->next;
		if (!q->jobs)
			q->jobs_tail = &q->jobs;
		pthread_mutex_unlock(&q->jmu);
		int ok = commit_write(m) == 0;
		if (ok)
			keep_for_delivery(m);
		complete(m, ok);
		pthread_mutex_lock(&q->jmu);
	}
	pthread_mutex_unlock(&q->jmu);
	return NULL;
}

static void committed_free(struct committed *c)
{
	envelope_free(c->env);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

/* Remembers a committed id for queue_take_committed, with what m kept (taken from m). */
static void note_committed(struct queue *q, struct queue_msg *m)
{
	struct committed *c = malloc(sizeof *c);
	if (!c) {
		log_err("queue: out of memory: %s is delivered after the next restart", m->id);
		return;
	}
	snprintf(c->id, sizeof c->id, "%s", m->id);
	c->env = m->kept;
	c->fd = m->rfd;
	c->data_len = m->data_len;
	m->kept = NULL;
	m->rfd = -1;
	c->next = NULL;
	pthread_mutex_lock(&q->lmu);
	*q->committed_tail = c;
	q->committed_tail = &c->next;
	pthread_mutex_unlock(&q->lmu);
}

/* Runs done() and the on-commit callback of every finished commit. */
static void run_completions(struct queue *q)
{
	pthread_mutex_lock(&q->cmu);
	struct queue_msg *list = q->done;
	q->done = NULL;
	q->done_tail = &q->done;
	pthread_mutex_unlock(&q->cmu);
	while (list) {
		struct queue_msg *m = list;
		list = m->next;
		if (m->ok)
			note_committed(q, m);
		if (m->done)
			m->done(m->arg, m->ok, m->id);
		if (m->ok && q->on_commit)
			q->on_commit(q->on_commit_arg, m->id);
		msg_free(m);
	}
}

static void on_eventfd(evutil_socket_t fd, short what, void *arg)
{
	uint64_t n;
	while (read(fd, &n, sizeof n) < 0 && errno == EINTR)
		;
	run_completions(arg);
}

/* ---- start-up pass ---- */

/* Moves dir/name to quarantine/ (as name, or name.N if taken) and logs it. */
static void quarantine(struct queue *q, int dirfd, const char *dirname, const char *name,
                       const char *suffix, const char *why)
{
	char dst[512];
	for (int i = 0; i < 100; i++) {
		int n = i ? snprintf(dst, sizeof dst, "%.200s%s.%d", name, suffix, i)
		          : snprintf(dst, sizeof dst, "%.200s%s", name, suffix);
		if (n < 0 || (size_t)n >= sizeof dst)
			break;
		if (faccessat(q->quarfd, dst, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
			continue;
		if (renameat(dirfd, name, q->quarfd, dst) == 0) {
			log_warning("queue: %s/%s is %s: moved to quarantine/%s", dirname, name,
			            why, dst);
			return;
		}
		break;
	}
	log_err("queue: %s/%s is %s and cannot be quarantined: %s", dirname, name, why,
	        strerror(errno));
}

/* Reads a whole state file (bounded) and applies it. 1 applied, 0 absent, -1 damaged. */
static int load_state(struct queue *q, const char *id, struct envelope *env)
{
	int fd = openat(q->statefd, id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	struct stat st;
	int r = -1;
	uint8_t *buf = NULL;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= (off_t)STATE_FILE_MAX) {
		size_t n = (size_t)st.st_size;
		buf = malloc(n ? n : 1);
		ssize_t got = buf ? pread(fd, buf, n, 0) : -1;
		if (got == (ssize_t)n && queue_file_apply_state(buf, n, env) == 0)
			r = 1;
	}
	free(buf);
	close(fd);
	return r;
}

static int is_dot(const char *n)
{
	return strcmp(n, ".") == 0 || strcmp(n, "..") == 0;
}

/* Every name in a folder (the folder may change meanwhile; the list may not). */
static char **list_names(int parent, const char *sub, size_t *count)
{
	int fd = openat(parent, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	while ((de = readdir(d))) {
		if (is_dot(de->d_name))
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			char **nn = realloc(names, nc * sizeof *nn);
			if (!nn)
				goto fail;
			names = nn;
			cap = nc;
		}
		if (!(names[n] = strdup(de->d_name)))
			goto fail;
		n++;
	}
	closedir(d);
	*count = n;
	return names ? names : calloc(1, sizeof *names);
fail:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return NULL;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * tmp/ holds state files being written and, from before queue v2, messages being
 * written: nobody was told 250 for any of them.
 */
static void scan_tmp(struct queue *q)
{
	size_t n = 0;
	char **names = list_names(q->dirfd, "tmp", &n);
	for (size_t i = 0; names && i < n; i++) {
		if (unlinkat(q->tmpfd, names[i], 0) < 0 &&
		    unlinkat(q->tmpfd, names[i], AT_REMOVEDIR) < 0)
			log_warning("queue: cannot remove tmp/%s: %s", names[i], strerror(errno));
		else
			log_info("queue: removed unfinished tmp/%s", names[i]);
	}
	free_names(names, n);
}

static void startup_free(struct startup_msg *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free((char *)s->rcpts[i].addr);
		free((char *)s->rcpts[i].route);
	}
	free(s->rcpts);
	s->rcpts = NULL;
	s->n = 0;
}

/* Keeps a verified message and its unfinished recipients for queue_take_startup. */
static int startup_add(struct queue *q, const char *id, const struct envelope *env, size_t *cap)
{
	if (q->n_startup == *cap) {
		size_t nc = *cap ? *cap * 2 : 256;
		struct startup_msg *v = realloc(q->startup, nc * sizeof *v);
		if (!v)
			return -1;
		q->startup = v;
		*cap = nc;
	}
	struct startup_msg *s = &q->startup[q->n_startup];
	memset(s, 0, sizeof *s);
	snprintf(s->id, sizeof s->id, "%s", id);
	s->received_at = env->received_at;
	s->rcpts = calloc(env->n_rcpts ? env->n_rcpts : 1, sizeof *s->rcpts);
	if (!s->rcpts)
		return -1;
	for (size_t i = 0; i < env->n_rcpts; i++) {
		const struct envelope_rcpt *r = &env->rcpts[i];
		if (r->state == RCPT_DELIVERED || r->state == RCPT_FAILED)
			continue;
		struct queue_pending_rcpt *p = &s->rcpts[s->n++];
		p->index = i;
		p->state = r->state;
		p->attempts = r->attempts;
		p->next_try = r->next_try;
		p->delay_notified = r->delay_notified;
		p->addr = strdup(r->addr);
		p->route = r->route && *r->route ? strdup(r->route) : NULL;
		if (!p->addr || (r->route && *r->route && !p->route)) {
			startup_free(s);
			return -1;
		}
	}
	q->n_startup++;
	return 0;
}

/* Why a message file does not verify, for the log. */
static const char *damage_kind(int fd)
{
	uint64_t off, len;
	if (fd >= 0 && queue_file_locate_data(fd, &off, &len) == 0)
		return "damaged (its digest does not match)";
	return "incomplete or damaged (no valid END record: never acknowledged)";
}

/* One message file of the start-up pass: verified whole, its state read. 1 kept, 0 not. */
static int scan_one(struct queue *q, const char *id, size_t *cap)
{
	struct envelope *env = NULL;
	int fd = openat(q->msgfd, id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	int ok = fd >= 0 && queue_file_read(fd, &env, NULL, NULL, NULL) == 0;
	if (!ok) {
		quarantine(q, q->msgfd, "msg", id, "", damage_kind(fd));
		if (fd >= 0)
			close(fd);
		if (faccessat(q->statefd, id, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
			quarantine(q, q->statefd, "state", id, ".state", "of a damaged message");
		return 0;
	}
	close(fd);
	if (load_state(q, id, env) < 0)
		quarantine(q, q->statefd, "state", id, ".state",
		           "damaged (every recipient is pending again)");
	if (startup_add(q, id, env, cap) < 0)
		log_err("queue: out of memory at start-up: msg/%s waits for the next restart", id);
	envelope_free(env);
	return 1;
}

/* msg/: every file verified whole once; junk names and damaged files quarantined. */
static void scan_msg(struct queue *q)
{
	size_t n = 0, cap = 0;
	char **names = list_names(q->dirfd, "msg", &n);
	if (!names) {
		log_err("queue: cannot list msg/: %s", strerror(errno));
		return;
	}
	qsort(names, n, sizeof *names, cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (!id_valid(names[i]))
			quarantine(q, q->msgfd, "msg", names[i], "", "not a queue id");
		else
			scan_one(q, names[i], &cap);
	}
	free_names(names, n);
}

static int cmp_startup(const void *key, const void *elem)
{
	return strcmp(key, ((const struct startup_msg *)elem)->id);
}

/* 1 if the start-up pass kept message id (the list is in id order). */
static int startup_has(const struct queue *q, const char *id)
{
	return q->n_startup &&
	       bsearch(id, q->startup, q->n_startup, sizeof *q->startup, cmp_startup) != NULL;
}

/* state/: junk names are quarantined; states of removed messages are deleted. */
static void scan_state(struct queue *q)
{
	size_t n = 0;
	char **names = list_names(q->dirfd, "state", &n);
	for (size_t i = 0; names && i < n; i++) {
		if (!id_valid(names[i]))
			quarantine(q, q->statefd, "state", names[i], "", "not a queue id");
		else if (!startup_has(q, names[i]) &&
		         faccessat(q->msgfd, names[i], F_OK, AT_SYMLINK_NOFOLLOW) < 0 &&
		         errno == ENOENT && unlinkat(q->statefd, names[i], 0) == 0)
			log_info("queue: removed state/%s of a removed message", names[i]);
	}
	free_names(names, n);
}

/* ---- open/close ---- */

static int start_commits(struct queue *q, char *err, size_t errlen)
{
	q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->efd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		return -1;
	}
	q->ev = event_new(q->base, q->efd, EV_READ | EV_PERSIST, on_eventfd, q);
	if (!q->ev || event_add(q->ev, NULL) < 0) {
		snprintf(err, errlen, "cannot register the queue's event");
		return -1;
	}
	for (int i = 0; i < QUEUE_COMMITTERS; i++) {
		int e = pthread_create(&q->threads[i], NULL, committer, q);
		if (e) {
			snprintf(err, errlen, "pthread_create: %s", strerror(e));
			return -1;
		}
		q->nthreads++;
	}
	return 0;
}

struct queue *queue_open(const char *dir, struct event_base *base, char *err, size_t errlen)
{
	struct queue *q = calloc(1, sizeof *q);
	if (!q) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	q->dirfd = q->tmpfd = q->msgfd = q->statefd = q->quarfd = q->flushfd = q->efd = -1;
	q->base = base;
	q->jobs_tail = &q->jobs;
	q->done_tail = &q->done;
	q->committed_tail = &q->committed;
	pthread_mutex_init(&q->jmu, NULL);
	pthread_cond_init(&q->jcv, NULL);
	pthread_mutex_init(&q->dmu, NULL);
	pthread_cond_init(&q->dcv, NULL);
	pthread_mutex_init(&q->cmu, NULL);
	pthread_mutex_init(&q->lmu, NULL);
	pthread_mutex_init(&q->rmu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->rcv, &ca);
	pthread_condattr_destroy(&ca);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	q->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (q->dirfd < 0 || (q->tmpfd = open_sub(q->dirfd, "tmp")) < 0 ||
	    (q->msgfd = open_sub(q->dirfd, "msg")) < 0 ||
	    (q->statefd = open_sub(q->dirfd, "state")) < 0 ||
	    (q->quarfd = open_sub(q->dirfd, "quarantine")) < 0 ||
	    (q->flushfd = open_sub(q->dirfd, "flush")) < 0) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	if (!base)
		return q; /* the CLI: never touch files another process may be writing */
	q->crash = crash_parse(getenv("SHAREMAIL_TEST_CRASH_AT"));
	q->names_with_file = fs_names_durable_with_file(q->msgfd);
	scan_tmp(q);
	scan_msg(q);
	scan_state(q);
	/* Make the clean-up itself durable before new messages arrive. */
	fsync(q->tmpfd);
	fsync(q->msgfd);
	fsync(q->statefd);
	fsync(q->quarfd);
	if (start_commits(q, err, errlen) < 0)
		goto fail;
	return q;
fail:
	queue_close(q);
	return NULL;
}

void queue_close(struct queue *q)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->jmu);
	q->stopping = 1;
	pthread_cond_broadcast(&q->jcv);
	pthread_mutex_unlock(&q->jmu);
	for (int i = 0; i < q->nthreads; i++)
		pthread_join(q->threads[i], NULL);
	/* Commits finished meanwhile still owe their callers an answer. */
	run_completions(q);
	if (q->ev)
		event_free(q->ev);
	int fds[] = {q->efd, q->dirfd, q->tmpfd, q->msgfd, q->statefd, q->quarfd, q->flushfd};
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	for (size_t i = 0; i < q->n_startup; i++)
		startup_free(&q->startup[i]);
	free(q->startup);
	while (q->committed) {
		struct committed *c = q->committed;
		q->committed = c->next;
		committed_free(c);
	}
	pthread_mutex_destroy(&q->jmu);
	pthread_cond_destroy(&q->jcv);
	pthread_mutex_destroy(&q->dmu);
	pthread_cond_destroy(&q->dcv);
	pthread_mutex_destroy(&q->cmu);
	pthread_mutex_destroy(&q->lmu);
	pthread_mutex_destroy(&q->rmu);
	pthread_cond_destroy(&q->rcv);
	free(q);
}

long long queue_free_space(const struct queue *q)
{
	struct statvfs sv;
	if (!q || fstatvfs(q->dirfd, &sv) < 0)
		return -1;
	return (long long)sv.f_bavail * (long long)sv.f_frsize;
}

void queue_on_commit(struct queue *q, void (*fn)(void *arg, const char *id), void *arg)
{
	q->on_commit = fn;
	q->on_commit_arg = arg;
}

size_t queue_take_startup(struct queue *q, int (*fn)(void *arg, const struct queue_pending *p),
                          void *arg)
{
	pthread_mutex_lock(&q->lmu);
	struct startup_msg *list = q->startup;
	size_t n = q->n_startup, given = 0;
	q->startup = NULL;
	q->n_startup = 0;
	pthread_mutex_unlock(&q->lmu);
	int stop = 0;
	for (size_t i = 0; i < n; i++) {
		struct queue_pending p = {list[i].id, list[i].received_at, list[i].rcpts,
		                          list[i].n};
		if (!stop) {
			given++;
			stop = fn(arg, &p) != 0;
		}
		startup_free(&list[i]);
	}
	free(list);
	return given;
}

size_t queue_take_committed_env(struct queue *q, void (*fn)(void *arg, struct queue_committed *c),
                                void *arg)
{
	pthread_mutex_lock(&q->lmu);
	struct committed *list = q->committed;
	q->committed = NULL;
	q->committed_tail = &q->committed;
	pthread_mutex_unlock(&q->lmu);
	size_t n = 0;
	while (list) {
		struct committed *c = list;
		list = c->next;
		struct queue_committed qc = {c->id, c->env, c->fd, QUEUE_FILE_MAGIC_LEN,
		                             c->data_len};
		if (fn)
			fn(arg, &qc);
		c->env = qc.env; /* what the callee did not take */
		c->fd = qc.fd;
		committed_free(c);
		n++;
	}
	return n;
}

struct take_ids {
	void (*fn)(void *arg, const char *id);
	void *arg;
};

static void take_id(void *arg, struct queue_committed *c)
{
	struct take_ids *t = arg;
	t->fn(t->arg, c->id);
}

size_t queue_take_committed(struct queue *q, void (*fn)(void *arg, const char *id), void *arg)
{
	struct take_ids t = {fn, arg};
	return queue_take_committed_env(q, fn ? take_id : NULL, &t);
}

/* ---- writing a message ---- */

/* Creates the message file in msg/ under a new id; O_EXCL: never another's file. */
static int create_file(struct queue *q, struct queue_msg *m)
{
	for (int i = 0; i < ID_TRIES; i++) {
		if (id_new(m->id) < 0) {
			errno = ENOMEM;
			return -1;
		}
		m->fd = openat(q->msgfd, m->id, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (m->fd >= 0 || errno != EEXIST)
			return m->fd;
	}
	return -1;
}

struct queue_msg *queue_msg_begin(struct queue *q)
{
	struct queue_msg *m = calloc(1, sizeof *m);
	if (!m) {
		errno = ENOMEM;
		return NULL;
	}
	m->q = q;
	m->fd = -1;
	m->rfd = -1;
	m->buf = malloc(MSG_BUF);
	m->hash = EVP_MD_CTX_new();
	if (!m->buf || !m->hash || !EVP_DigestInit_ex(m->hash, EVP_sha256(), NULL)) {
		msg_free(m);
		errno = ENOMEM;
		return NULL;
	}
	if (create_file(q, m) < 0) {
		int e = errno;
		msg_free(m);
		errno = e;
		return NULL;
	}
	memcpy(m->buf, QUEUE_FILE_MAGIC, QUEUE_FILE_MAGIC_LEN);
	m->blen = QUEUE_FILE_MAGIC_LEN;
	EVP_DigestUpdate(m->hash, QUEUE_FILE_MAGIC, QUEUE_FILE_MAGIC_LEN);
	return m;
}

const char *queue_msg_id(const struct queue_msg *m)
{
	return m->id;
}

int queue_msg_write(struct queue_msg *m, const void *data, size_t len)
{
	if (m->err) {
		errno = m->err;
		return -1;
	}
	if (!EVP_DigestUpdate(m->hash, data, len)) {
		m->err = errno = ENOMEM;
		return -1;
	}
	m->data_len += len;
	if (m->blen + len > MSG_BUF) {
		/* Bounded memory: data goes to the file as it arrives (page cache). */
		if (write_all(m->fd, m->buf, m->blen) < 0 ||
		    (len >= MSG_BUF && write_all(m->fd, data, len) < 0)) {
			m->err = errno;
			return -1;
		}
		m->blen = 0;
		if (len >= MSG_BUF)
			return 0;
	}
	memcpy(m->buf + m->blen, data, len);
	m->blen += len;
	return 0;
}

/* Builds the envelope records and the END record (D1, D2); sets m->err on failure. */
static void build_tail(struct queue_msg *m, const struct envelope *env)
{
	uint8_t d1[QUEUE_FILE_DIGEST_LEN];
	if (m->err)
		return;
	int r = queue_file_encode_envelope(env, &m->tail);
	m->rec_len = m->tail.len;
	if (r < 0 || !EVP_DigestFinal_ex(m->hash, d1, NULL) ||
	    queue_file_encode_end(m->data_len, d1, m->tail.p, m->tail.len, &m->tail) < 0)
		m->err = env->mail_from ? ENOMEM : EINVAL; /* no reverse-path: a caller's bug */
}

/* A commit that cannot start: the file is removed. */
static void discard(struct queue_msg *m)
{
	log_err("queue: cannot commit %s: %s", m->id, strerror(m->err));
	close(m->fd);
	m->fd = -1;
	unlinkat(m->q->msgfd, m->id, 0);
}

void queue_msg_commit(struct queue_msg *m, const struct envelope *env,
                      void (*done)(void *arg, int ok, const char *id), void *arg)
{
	struct queue *q = m->q;
	m->done = done;
	m->arg = arg;
	if (!q->base && !m->err)
		m->err = EINVAL; /* opened without an event loop: commits are unavailable */
	build_tail(m, env);
	if (m->err) {
		discard(m);
		if (q->base)
			complete(m, 0); /* reported from the loop, never before we return */
		else
			msg_free(m);
		return;
	}
	m->next = NULL;
	pthread_mutex_lock(&q->jmu);
	*q->jobs_tail = m;
	q->jobs_tail = &m->next;
	pthread_cond_signal(&q->jcv);
	pthread_mutex_unlock(&q->jmu);
}

int queue_msg_commit_wait(struct queue_msg *m, const struct envelope *env, char id[QUEUE_ID_MAX])
{
	struct queue *q = m->q;
	if (!q->base && !m->err)
		m->err = EINVAL;
	build_tail(m, env);
	if (m->err) {
		int e = m->err;
		discard(m);
		msg_free(m);
		errno = e;
		return -1;
	}
	if (commit_write(m) < 0) {
		int e = errno;
		msg_free(m);
		errno = e;
		return -1;
	}
	snprintf(id, QUEUE_ID_MAX, "%s", m->id);
	/* What is left travels to the event loop: on_commit and the committed list. */
	EVP_MD_CTX_free(m->hash);
	free(m->buf);
	queue_buf_free(&m->tail);
	m->hash = NULL;
	m->buf = NULL;
	m->done = NULL;
	complete(m, 1);
	return 0;
}

int queue_enqueue(struct queue *q, const struct envelope *env, const void *data, size_t len,
                  char id[QUEUE_ID_MAX])
{
	if (!q->base) {
		errno = EINVAL;
		return -1;
	}
	struct queue_msg *m = queue_msg_begin(q);
	if (!m)
		return -1;
	if (queue_msg_write(m, data, len) < 0) {
		int e = errno;
		queue_msg_abort(m);
		errno = e;
		return -1;
	}
	return queue_msg_commit_wait(m, env, id);
}

void queue_msg_abort(struct queue_msg *m)
{
	if (!m)
		return;
	if (m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
	unlinkat(m->q->msgfd, m->id, 0);
	msg_free(m);
}

/* ---- reading and updating ---- */

int queue_list(struct queue *q, int (*fn)(void *arg, const char *id), void *arg)
{
	size_t n = 0, count = 0;
	char **names = list_names(q->dirfd, "msg", &n);
	if (!names)
		return -1;
	qsort(names, n, sizeof *names, cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (!id_valid(names[i]))
			continue;
		count++;
		if (fn && fn(arg, names[i]) != 0)
			break;
	}
	free_names(names, n);
	return (int)count;
}

int queue_read_envelope(struct queue *q, const char *id, struct envelope **env)
{
	struct envelope *e = NULL;
	if (!id_valid(id)) {
		errno = ENOENT;
		return -1;
	}
	int fd = openat(q->msgfd, id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	int r = queue_file_read_meta(fd, &e, NULL, NULL, NULL);
	int saved = errno;
	close(fd);
	if (r < 0) {
		errno = saved == ENOENT ? EIO : saved;
		return -1;
	}
	snprintf(e->id, sizeof e->id, "%s", id);
	if (load_state(q, id, e) < 0)
		log_warning("queue: state/%s is damaged; its recipients count as pending", id);
	*env = e;
	return 0;
}

int queue_read_state(struct queue *q, struct envelope *env)
{
	if (!id_valid(env->id))
		return -1;
	return load_state(q, env->id, env);
}

int queue_open_data(struct queue *q, const char *id, uint64_t *len)
{
	uint64_t off;
	if (!id_valid(id))
		return -1;
	int fd = openat(q->msgfd, id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	if (queue_file_locate_data(fd, &off, len) < 0 || lseek(fd, (off_t)off, SEEK_SET) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int queue_update(struct queue *q, const struct envelope *env)
{
	struct queue_buf b = {0};
	char tmp[64];
	uint8_t rnd[4];
	if (!id_valid(env->id) || RAND_bytes(rnd, sizeof rnd) != 1 ||
	    faccessat(q->msgfd, env->id, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
		return -1;
	/* "s." cannot begin a queue id, so this never collides with an old message's tmp file. */
	snprintf(tmp, sizeof tmp, "s.%s.%02x%02x%02x%02x", env->id, rnd[0], rnd[1], rnd[2], rnd[3]);
	if (queue_file_encode_state(env, &b) < 0) {
		queue_buf_free(&b);
		return -1;
	}
	int fd = openat(q->tmpfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int r = -1;
	if (fd >= 0) {
		/* Atomic replacement: a crash leaves the old state or the new one. */
		r = write_all(fd, b.p, b.len) == 0 && fsync(fd) == 0 ? 0 : -1;
		if (close(fd) < 0)
			r = -1;
		if (r == 0)
			r = renameat(q->tmpfd, tmp, q->statefd, env->id) == 0 &&
			                    fsync(q->statefd) == 0
			            ? 0
			            : -1;
		if (r < 0)
			unlinkat(q->tmpfd, tmp, 0);
	}
	queue_buf_free(&b);
	return r;
}

/* Unlinks a whole message file (never one being received) and its state file. */
static int unlink_whole(struct queue *q, const char *id)
{
	uint64_t off, len;
	if (!id_valid(id))
		return -1;
	/* A file without a valid END is being received (or damaged): not ours to remove. */
	int fd = openat(q->msgfd, id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	int whole = fd >= 0 && queue_file_locate_data(fd, &off, &len) == 0;
	if (fd >= 0)
		close(fd);
	if (!whole || unlinkat(q->msgfd, id, 0) < 0)
		return -1;
	/* A crash here leaves an orphan state file; the start-up pass deletes it. */
	unlinkat(q->statefd, id, 0);
	return 0;
}

int queue_remove(struct queue *q, const char *id)
{
	if (unlink_whole(q, id) < 0)
		return -1;
	fsync(q->msgfd);
	return 0;
}

int queue_remove_done(struct queue *q, const char *id)
{
	/* Not fsynced: the next journal commit of anything carries the unlink (see queue.h). */
	return unlink_whole(q, id);
}

/* ---- flush requests ---- */

struct flush_ctx {
	struct queue *q;
	int count;
};

/* Counts a message's DEFERRED recipients (what a flush makes due). */
static int count_deferred(void *arg, const char *id)
{
	struct flush_ctx *c = arg;
	struct envelope *env = NULL;
	if (queue_read_envelope(c->q, id, &env) < 0)
		return 0; /* removed meanwhile, being received, or damaged */
	for (size_t i = 0; i < env->n_rcpts; i++)
		c->count += env->rcpts[i].state == RCPT_DEFERRED;
	envelope_free(env);
	return 0;
}

int queue_flush(struct queue *q, const char *id)
{
	struct flush_ctx c = {q, 0};
	if (id) {
		struct envelope *env = NULL;
		if (!id_valid(id) || queue_read_envelope(q, id, &env) < 0) {
			errno = ENOENT;
			return -1;
		}
		envelope_free(env);
		count_deferred(&c, id);
	} else if (queue_list(q, count_deferred, &c) < 0) {
		return -1;
	}
	/* The request: an empty file named for the message, or "_all". Losing it in a
	 * crash costs a retry's delay, nothing else, so it is not fsynced. */
	int fd = openat(q->flushfd, id ? id : FLUSH_ALL, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	close(fd);
	return c.count;
}

size_t queue_take_flush(struct queue *q, void (*fn)(void *arg, const char *id), void *arg)
{
	size_t n = 0, taken = 0;
	char **names = list_names(q->dirfd, "flush", &n);
	for (size_t i = 0; names && i < n; i++) {
		int all = strcmp(names[i], FLUSH_ALL) == 0;
		if (unlinkat(q->flushfd, names[i], 0) < 0 || (!all && !id_valid(names[i])))
			continue; /* junk is only removed */
		fn(arg, all ? NULL : names[i]);
		taken++;
	}
	free_names(names, n);
	return taken;
}
