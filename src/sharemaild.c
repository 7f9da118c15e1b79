/*
 * sharemaild: the daemon. Loads the configuration, locks state_dir, opens the
 * directory index, binds and starts every enabled service, then runs the main
 * event loop (libevent) for signals and housekeeping timers until SIGTERM or
 * SIGINT. See sharemaild(8).
 *
 * Services built so far: Minger (UDP), SMTP, submission and SMTPS (smtpd_server), the
 * queue (<state_dir>/queue) and the delivery manager (local Maildirs and relay:
 * its own thread and event loop, deliver.h), SMTPS (implicit TLS) and STARTTLS
 * with tls_cert_file, and POP3 (pop3d_server: pop3_listen with STLS, pop3s_listen),
 * whose logins feed POP before SMTP (directory/pop_login.h).
 *
 * Shutdown (SIGTERM/SIGINT): stop accepting, end every SMTP session with 421
 * (a session waiting for a commit first gets its outcome) and every POP3 session
 * once the response under way is out (nothing removed), then stop the delivery
 * manager (relay transactions under way are ended and retried at the next start;
 * local copies and state writes finish; its workers are joined) and close the
 * queue. A second signal, or DRAIN_MAX_S seconds, cuts the
 * drain short.
 *
 * SIGHUP: the file is read again. With errors, each is logged (file:line) and the
 * running configuration stays. Otherwise conf_reload_merge() keeps the running
 * value of every key that needs a restart (named in one line), the log is set up
 * again (log_level, log_syslog, log_file reopened), and new SMTP sessions use the
 * new conf. The Minger workers, the delivery runner and the index keep the conf
 * they started with (boot); an older conf is freed once no SMTP session uses it.
 *
 * Privileges (util/privdrop.h): started as root with `user`, state_dir is made
 * the user's, the log file and the TCP listeners are opened as root, then root
 * is given up for good before any thread starts and before anything else is
 * created in state_dir (the directory, the queue, screen.db); every thread's ids
 * are checked. As root without `user`: one loud warning, and on.
 *
 * AUTH and the Dynamic Screen: the password checks run on their own threads
 * (directory/password_check.h) and answer on the loop; the screen (screen.h) is
 * asked at accept, ticked by the 1 s timer (the tool's changes come in there)
 * and reconfigured on SIGHUP.
 *
 * systemd: READY=1 once every port is bound, RELOADING=1 ... READY=1 around a
 * reload, STOPPING=1 on the first stop signal ($NOTIFY_SOCKET; see sdnotify.h).
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/conf.h"
#include "collect/collect.h"
#include "deliver/deliver.h"
#include "directory/directory.h"
#include "directory/password_check.h"
#include "directory/pop_login.h"
#include "minger/minger_server.h"
#include "pop3d/pop3d_server.h"
#include "queue/queue.h"
#include "screen/screen.h"
#include "smtpd/smtpd_server.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/privdrop.h"
#include "util/sdnotify.h"
#include "util/timeutil.h"
#include "util/version.h"
#include "verify/mailbox_index.h"
#include "verify/verify.h"

#define REFRESH_INTERVAL_MS 1000
#define DRAIN_MAX_S 10
#define PID_FILE "sharemaild.pid" /* in state_dir: our pid, and the lock */
#define PASSWORD_THREADS 2 /* hashing threads for AUTH (yescrypt costs ms each) */
#define PASSWORD_PENDING 256 /* checks queued at most; more answer 454 4.7.0 */

struct daemon {
	const char *conf_path; /* as given (-c, $SHAREMAIL_CONF or the default) */
	struct conf *boot; /* loaded at start: Minger, delivery and the index use it */
	struct conf *conf; /* in force: boot, or the last good reload */
	struct conf **retired; /* earlier reloads that SMTP sessions may still use */
	size_t n_retired;
	int lock_fd;
	struct mailbox_index *index;
	struct verify *verify; /* recipient and sender verdicts, over the index */
	struct minger_server *minger;
	struct event_base *base;
	struct queue *queue;
	struct deliver_runner *runner;
	struct collect_runner *collector; /* DomainPOP (collect/collect.h) */
	struct smtpd_server *smtpd;
	struct password_check *pc; /* AUTH's password checks */
	struct screen *screen; /* the Dynamic Screen */
	struct pop3d_server *pop3d; /* POP3 (pop3_listen, pop3s_listen) */
	int draining; /* services still draining */
	struct pop_login *pop_logins; /* POP before SMTP: the POP3 server notes, SMTP asks */
	int plan; /* enum privdrop_plan */
	struct privdrop_user user; /* with PRIVDROP_DROP */
	struct event *drain_timer;
	int stopping;
	int refresh_failing;
};

static void usage(FILE *out)
{
	fprintf(out, "usage: sharemaild [-c FILE] [-t]\n"
	             "       sharemaild --help | --version\n"
	             "  -c FILE    configuration (default $SHAREMAIL_CONF or "
	             "/etc/sharemail/sharemail.conf)\n"
	             "  -t         check the configuration, print \"FILE: ok\" and exit\n"
	             "  --help     print this text\n"
	             "  --version  print the version\n"
	             "Runs in the foreground. SIGTERM or SIGINT stops it; SIGHUP reloads the\n"
	             "configuration and reopens log_file. See sharemaild(8).\n");
}

static struct conf *load_conf(const char *path)
{
	struct conf_errors errs = {0};
	struct conf *c = conf_load(path, &errs);
	conf_errors_print(&errs); /* the errors, or the warnings of a file that loaded */
	conf_errors_free(&errs);
	return c;
}

/* log_level, log_syslog and log_file of c in force. Returns 0 or -1 (logged). */
static int log_apply(const struct conf *c)
{
	enum log_level lvl;
	enum log_syslog_mode mode;
	char err[512];
	if (log_level_parse(c->log_level, &lvl) == 0)
		log_set_level(lvl);
	if (log_syslog_parse(c->log_syslog, &mode) != 0)
		mode = LOG_SYSLOG_NO; /* the schema allows no other word */
	if (log_configure(c->log_file, mode, err, sizeof err) != 0) {
		log_err("%s", err);
		return -1;
	}
	return 0;
}

/* Another daemon holds the lock on fd: names it by the pid it wrote (digits only). */
static void lock_refused(const struct daemon *d, int fd, const char *path)
{
	char buf[32], pid[32];
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	size_t k = 0;
	for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++)
		pid[k++] = buf[i];
	pid[k] = '\0';
	log_err("state_dir %s is in use by sharemaild pid %s (lock %s); not starting",
	        d->boot->state_dir, k ? pid : "(not yet written)", path);
}

/*
 * Creates state_dir and takes its lock: an flock() on <state_dir>/sharemaild.pid,
 * which then holds our pid. Two daemons on one state would share a queue and
 * deliver each message twice, so a second one stops here, naming the first. The
 * kernel drops the lock when we exit, however we exit; the file stays (removing
 * it would let a third daemon lock a new file while a second holds the old one).
 */
static int lock_state(struct daemon *d)
{
	char path[4096], text[32];
	if (fs_mkdirs(d->boot->state_dir, 0700, 0) != 0) {
		log_err("cannot create state_dir %s: %s", d->boot->state_dir, strerror(errno));
		return -1;
	}
	if (conf_state_path(d->boot, PID_FILE, path, sizeof path) != 0) {
		log_err("state_dir too long");
		return -1;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0644);
	if (fd < 0) {
		log_err("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EWOULDBLOCK)
			lock_refused(d, fd, path);
		else
			log_err("cannot lock %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (d->plan == PRIVDROP_DROP && fchown(fd, d->user.uid, d->user.gid) != 0) {
		log_err("cannot give %s to user %s: %s", path, d->user.name, strerror(errno));
		close(fd);
		return -1;
	}
	int n = snprintf(text, sizeof text, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n) {
		log_err("cannot write %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	d->lock_fd = fd;
	return 0;
}

/* At exit: the pid goes (an empty file means no daemon), then the lock. */
static void unlock_state(struct daemon *d)
{
	if (d->lock_fd < 0)
		return;
	if (ftruncate(d->lock_fd, 0) != 0)
		log_warning("cannot empty the pid file: %s", strerror(errno));
	close(d->lock_fd);
	d->lock_fd = -1;
}

/*
 * The start-up decision on privileges, after the log is open: as root with
 * `user`, state_dir and the log file become the user's (nothing is dropped yet:
 * the ports come first); as root without it, the one loud warning.
 */
static int privileges_prepare(struct daemon *d)
{
	char err[512];
	d->plan = privdrop_decide(d->boot->user, geteuid(), &d->user, err, sizeof err);
	if (d->plan < 0) {
		log_err("%s; not starting", err);
		return -1;
	}
	if (d->plan == PRIVDROP_ROOT_WARN) {
		log_warning("running as root: set `user` (e.g. user = sharemail) so that "
		            "sharemaild drops root after binding its ports");
		return 0;
	}
	if (d->plan != PRIVDROP_DROP)
		return 0;
	long n = privdrop_prepare_dir(d->boot->state_dir, &d->user, err, sizeof err);
	if (n < 0) {
		log_err("%s; not starting", err);
		return -1;
	}
	if (n > 0)
		log_info("state_dir %s: %ld files and folders given to user %s", d->boot->state_dir,
		         n, d->user.name);
	if (d->boot->log_file && *d->boot->log_file &&
	    privdrop_own_file(d->boot->log_file, &d->user, err, sizeof err) != 0) {
		log_err("%s; not starting", err);
		return -1;
	}
	return 0;
}

/* The ports are bound: root goes, for good, before any thread starts. */
static int privileges_drop(struct daemon *d)
{
	char err[512];
	if (d->plan != PRIVDROP_DROP)
		return 0;
	if (privdrop_apply(&d->user, d->boot->state_dir, err, sizeof err) != 0) {
		log_err("cannot drop privileges: %s; not starting", err);
		return -1;
	}
	int n = privdrop_check_threads(d->user.uid, d->user.gid, err, sizeof err);
	if (n < 0) {
		log_err("privileges: %s; not starting", err);
		return -1;
	}
	log_info("running as user %s (uid %ld, gid %ld; %d thread checked)", d->user.name,
	         (long)d->user.uid, (long)d->user.gid, n);
	return 0;
}

/* The TCP listeners, bound while we may still be root (the rest attaches later). */
static int bind_smtp(struct daemon *d)
{
	char err[256];
	d->smtpd = smtpd_server_new(d->conf, d->base, NULL, NULL, NULL, err, sizeof err);
	if (!d->smtpd) {
		log_err("smtp: %s", err);
		return -1;
	}
	d->pop3d = pop3d_server_new(d->conf, d->base, err, sizeof err);
	if (!d->pop3d) {
		log_err("pop3: %s", err);
		return -1;
	}
	return 0;
}

/* AUTH's password checks and the Dynamic Screen (threads: after the drop). */
static int start_auth(struct daemon *d)
{
	char path[4096], err[256];
	struct screen_config cfg;
	if (conf_state_path(d->conf, "directory.db", path, sizeof path) != 0)
		return -1;
	d->pc = password_check_new(d->base, path, PASSWORD_THREADS, PASSWORD_PENDING,
	                           smtpd_server_password_done, d->smtpd, err, sizeof err);
	if (!d->pc) {
		log_err("auth: %s", err);
		return -1;
	}
	if (password_check_set_cache(d->pc, d->conf->auth_cache_ttl) != 0)
		log_warning("auth: no success cache (out of memory): every AUTH hashes");
	if (conf_state_path(d->conf, SCREEN_DB_FILE, path, sizeof path) != 0)
		return -1;
	screen_config_from_conf(d->conf, &cfg);
	d->screen = screen_open(path, &cfg, time_wall_s(), err, sizeof err);
	if (!d->screen) {
		log_err("screen: %s", err);
		return -1;
	}
	smtpd_server_set_auth(d->smtpd, d->pc, d->screen);
	d->pop_logins = pop_login_new(POP_LOGIN_DEFAULT_MAX);
	if (!d->pop_logins) {
		log_err("pop before smtp: out of memory");
		return -1;
	}
	smtpd_server_set_pop_logins(d->smtpd, d->pop_logins);
	if (pop3d_server_attach(d->pop3d, d->pc, d->screen, d->pop_logins, err, sizeof err) != 0) {
		log_err("pop3: %s", err);
		return -1;
	}
	return 0;
}

/* Opens (creating if needed) the directory, then builds the in-memory index. */
static int open_index(struct daemon *d)
{
	char path[4096], err[256];
	if (conf_state_path(d->conf, "directory.db", path, sizeof path) != 0)
		return -1;
	struct directory *dir = directory_open(path, 0, err, sizeof err);
	if (!dir) {
		log_err("%s: %s", path, err);
		return -1;
	}
	directory_close(dir);
	uint64_t t0 = time_mono_ms();
	d->index = mailbox_index_open(path, (const char *const *)d->conf->local_domains.v,
	                              d->conf->local_domains.n, err, sizeof err);
	if (!d->index) {
		log_err("%s: %s", path, err);
		return -1;
	}
	log_info("directory: %zu addresses indexed in %llu ms (%zu KiB)",
	         mailbox_index_count(d->index), (unsigned long long)(time_mono_ms() - t0),
	         mailbox_index_memory(d->index) / 1024);
	return 0;
}

/* The verifier over the index (Domain Sharing peers, gateway and forward domains). */
static int open_verify(struct daemon *d)
{
	char err[256];
	d->verify = verify_new(d->base, d->boot, d->index, err, sizeof err);
	if (!d->verify) {
		log_err("verify: %s", err);
		return -1;
	}
	return 0;
}

static void on_drained(void *arg)
{
	struct daemon *d = arg;
	if (--d->draining > 0)
		return; /* the other service still has sessions */
	event_base_loopbreak(d->base);
}

/* Names the services with connections left, e.g. "smtp 2, pop3 1"; "none" when none. */
static void format_draining(const struct daemon *d, char *out, size_t outsz)
{
	const struct {
		const char *name;
		size_t n;
	} svc[] = {{"smtp", smtpd_server_connections(d->smtpd)},
	           {"pop3", pop3d_server_connections(d->pop3d)}};
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < sizeof svc / sizeof svc[0]; i++) {
		if (svc[i].n == 0 || o >= outsz)
			continue;
		int w = snprintf(out + o, outsz - o, "%s%s %zu", o ? ", " : "", svc[i].name,
		                 svc[i].n);
		o += w > 0 ? (size_t)w : 0;
	}
	if (o == 0)
		snprintf(out, outsz, "none");
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	char left[64];
	format_draining(d, left, sizeof left);
	log_warning("shutdown: connections still open after %d s (%s); closing them", DRAIN_MAX_S,
	            left);
	event_base_loopbreak(d->base);
}

/*
 * First signal: stop accepting and let the SMTP sessions end with 421 and the
 * POP3 ones after the response under way (the loop keeps running so commits under
 * way complete and their 250s go out). A second signal, or DRAIN_MAX_S seconds,
 * stops at once.
 */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	if (!d->stopping)
		sdnotify_send("STOPPING=1");
	if (d->stopping || !d->smtpd) {
		log_info("signal %d: shutting down", (int)sig);
		event_base_loopbreak(d->base);
		return;
	}
	d->stopping = 1;
	log_info("signal %d: shutting down (ending %zu SMTP and %zu POP3 sessions)", (int)sig,
	         smtpd_server_connections(d->smtpd), pop3d_server_connections(d->pop3d));
	struct timeval tv = {DRAIN_MAX_S, 0};
	d->drain_timer = evtimer_new(d->base, on_drain_timeout, d);
	if (d->drain_timer)
		evtimer_add(d->drain_timer, &tv);
	d->draining = 2;
	smtpd_server_drain(d->smtpd, on_drained, d);
	pop3d_server_drain(d->pop3d, on_drained, d);
}

/* ---- SIGHUP ---- */

/* Frees the retired confs that no SMTP session uses any more. */
static void reap_confs(struct daemon *d)
{
	size_t k = 0;
	for (size_t i = 0; i < d->n_retired; i++) {
		if (smtpd_server_conf_in_use(d->smtpd, d->retired[i]) ||
		    pop3d_server_conf_in_use(d->pop3d, d->retired[i])) {
			d->retired[k++] = d->retired[i];
		} else {
			conf_free(d->retired[i]);
			log_debug("SIGHUP: an earlier configuration is used by no session; freed");
		}
	}
	d->n_retired = k;
}

/* c is no longer in force; sessions may still use it. The boot conf stays anyway. */
static void retire_conf(struct daemon *d, struct conf *c)
{
	if (c == d->boot)
		return;
	struct conf **v = realloc(d->retired, (d->n_retired + 1) * sizeof *v);
	if (!v) { /* kept to the end rather than freed under a session */
		log_warning("SIGHUP: out of memory; the previous configuration is kept");
		return;
	}
	d->retired = v;
	v[d->n_retired++] = c;
}

/* Logs each problem found on reload: errors at err, warnings at warning. */
static void log_conf_errors(const struct conf_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++) {
		const struct conf_error *e = &errs->v[i];
		int warn = e->severity == CONF_SEVERITY_WARNING;
		enum log_level lvl = warn ? LOG_LEVEL_WARNING : LOG_LEVEL_ERR;
		const char *kind = warn ? "warning: " : "";
		if (e->line > 0)
			log_msg(lvl, "SIGHUP: %s:%d: %s%s", e->file, e->line, kind, e->message);
		else
			log_msg(lvl, "SIGHUP: %s: %s%s", e->file, kind, e->message);
	}
}

/* Reads the file again and puts what can change at run time in force. */
static void reload(struct daemon *d)
{
	struct conf_errors errs = {0};
	struct conf_diff diff;
	log_info("SIGHUP: reading %s", d->conf_path);
	struct conf *next = conf_load(d->conf_path, &errs);
	if (!next) {
		log_conf_errors(&errs);
		conf_errors_free(&errs);
		log_err("SIGHUP: %s has errors; the running configuration stays in force",
		        d->conf_path);
		return;
	}
	log_conf_errors(&errs); /* warnings only */
	conf_errors_free(&errs);
	if (conf_reload_merge(next, d->conf, &diff) != 0) {
		conf_free(next);
		log_err("SIGHUP: out of memory; the running configuration stays in force");
		return;
	}
	log_apply(next); /* a log_file that cannot be opened: logged, the old one kept */
	if (diff.n_restart)
		log_warning("SIGHUP: these keys need a restart: %s", diff.restart);
	smtpd_server_reload(d->smtpd, next);
	pop3d_server_reload(d->pop3d, next);
	collect_runner_reload(d->collector, next);
	if (d->screen) {
		struct screen_config cfg;
		screen_config_from_conf(next, &cfg);
		if (screen_configure(d->screen, &cfg) != 0)
			log_warning("SIGHUP: out of memory; the screen keeps its configuration");
	}
	retire_conf(d, d->conf);
	d->conf = next;
	reap_confs(d);
	if (diff.n_reloaded)
		log_info("SIGHUP: configuration reloaded; changed: %s", diff.reloaded);
	else
		log_info("SIGHUP: configuration reloaded; no key that reloads changed");
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	if (d->stopping) {
		log_info("SIGHUP: shutting down; not reloading");
		return;
	}
	sdnotify_reloading();
	reload(d);
	sdnotify_send("READY=1");
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	if (d->n_retired)
		reap_confs(d);
	if (d->screen)
		screen_tick(d->screen, time_wall_s()); /* `sharemail screen` changes come in here */
	int n = mailbox_index_refresh(d->index);
	if (n < 0 && !d->refresh_failing)
		log_err("directory: refresh failed; lookups answer 'try later' until it works");
	else if (n >= 0 && d->refresh_failing)
		log_info("directory: refresh works again");
	else if (n > 0)
		log_debug("directory: %d addresses updated", n);
	d->refresh_failing = n < 0;
}

/*
 * libevent's own messages (evdns: a name server that stopped answering, ...)
 * go to our log, at the matching level, so they reach syslog or log_file too.
 */
static void on_libevent_log(int severity, const char *msg)
{
	enum log_level lvl = severity >= EVENT_LOG_ERR    ? LOG_LEVEL_ERR
	                     : severity == EVENT_LOG_WARN ? LOG_LEVEL_WARNING
	                     : severity == EVENT_LOG_MSG  ? LOG_LEVEL_INFO
	                                                  : LOG_LEVEL_DEBUG;
	log_msg(lvl, "libevent: %s", msg);
}

/* Called on the event loop after each durable commit: wake the delivery runner. */
static void on_queue_commit(void *arg, const char *id)
{
	struct daemon *d = arg;
	deliver_runner_kick(d->runner);
}

/* The queue, its delivery runner, then the SMTP listeners that feed the queue. */
static int start_mail(struct daemon *d)
{
	char path[4096], err[256];
	if (conf_state_path(d->conf, "queue", path, sizeof path) != 0) {
		log_err("state_dir too long");
		return -1;
	}
	d->queue = queue_open(path, d->base, err, sizeof err);
	if (!d->queue) {
		log_err("queue: %s", err);
		return -1;
	}
	d->runner = deliver_runner_start(d->conf, d->queue, d->index, err, sizeof err);
	if (!d->runner) {
		log_err("deliver: %s", err);
		return -1;
	}
	queue_on_commit(d->queue, on_queue_commit, d);
	d->collector = collect_runner_start(d->conf, d->queue, d->index, err, sizeof err);
	if (!d->collector) {
		log_err("collect: %s", err);
		return -1;
	}
	smtpd_server_attach(d->smtpd, d->queue, d->index, d->verify);
	return start_auth(d);
}

static void stop_mail(struct daemon *d)
{
	password_check_free(d->pc); /* no result after this: the server drops what it owed */
	d->pc = NULL;
	smtpd_server_free(d->smtpd);
	d->smtpd = NULL;
	pop3d_server_free(d->pop3d);
	d->pop3d = NULL;
	screen_close(d->screen);
	d->screen = NULL;
	collect_runner_stop(d->collector); /* its commits feed the queue and delivery */
	d->collector = NULL;
	deliver_runner_stop(d->runner);
	d->runner = NULL;
	queue_close(d->queue);
	d->queue = NULL;
}

static int start_services(struct daemon *d)
{
	char err[256];
	if (start_mail(d) != 0)
		return -1;
	if (d->conf->minger_listen.n == 0) {
		log_info("minger: no minger_listen; Minger server off");
		return 0;
	}
	d->minger = minger_server_new(d->conf, d->index, err, sizeof err);
	if (!d->minger || minger_server_start(d->minger, err, sizeof err) != 0) {
		log_err("minger: %s", err);
		return -1;
	}
	return 0;
}

static int run(struct daemon *d)
{
	struct event *sigterm = evsignal_new(d->base, SIGTERM, on_signal, d);
	struct event *sigint = evsignal_new(d->base, SIGINT, on_signal, d);
	struct event *sighup = evsignal_new(d->base, SIGHUP, on_sighup, d);
	struct event *refresh = event_new(d->base, -1, EV_PERSIST, on_refresh, d);
	struct timeval tv = {REFRESH_INTERVAL_MS / 1000, (REFRESH_INTERVAL_MS % 1000) * 1000};
	struct event *all[] = {sigterm, sigint, sighup, refresh};
	int rc = 0;
	for (size_t i = 0; i < sizeof all / sizeof all[0] && rc == 0; i++)
		if (!all[i] || event_add(all[i], all[i] == refresh ? &tv : NULL) != 0)
			rc = -1;
	if (rc == 0) {
		log_info("sharemaild ready (version %s, hostname %s)", SHAREMAIL_VERSION,
		         d->conf->hostname);
		log_set_errors_to_stderr(0);
		if (sdnotify_send("READY=1") < 0)
			log_warning("NOTIFY_SOCKET: cannot tell the service manager: %s",
			            strerror(errno));
		event_base_dispatch(d->base);
	} else {
		log_err("cannot set up the signal handlers and timers");
	}
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		if (all[i])
			event_free(all[i]);
	if (d->drain_timer)
		event_free(d->drain_timer);
	return rc;
}

/* Frees every conf: the one in force, the retired ones and the boot one. */
static void free_confs(struct daemon *d)
{
	for (size_t i = 0; i < d->n_retired; i++)
		conf_free(d->retired[i]);
	free(d->retired);
	if (d->conf != d->boot)
		conf_free(d->conf);
	conf_free(d->boot);
}

/* -t: the same load as the daemon's, and "FILE: ok" as `sharemail check-config` says. */
static int check_only(const char *path)
{
	struct conf *c = load_conf(path);
	if (!c)
		return CONF_EXIT_CONFIG;
	conf_free(c);
	printf("%s: ok\n", path);
	return fflush(stdout) == 0 ? 0 : 74; /* EX_IOERR, as check-config */
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {0}};
	const char *path = getenv("SHAREMAIL_CONF");
	int check = 0, opt;
	if (!path || !*path)
		path = "/etc/sharemail/sharemail.conf";
	while ((opt = getopt_long(argc, argv, "c:th", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 't': check = 1; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("sharemaild %s\n", SHAREMAIL_VERSION); return 0;
		default: usage(stderr); return 64;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 64;
	}
	log_init("sharemaild", LOG_LEVEL_INFO);
	event_set_log_callback(on_libevent_log);
	if (check)
		return check_only(path);
	/* Until the handler is in place, a SIGHUP (logrotate) must not kill a starting daemon. */
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	struct daemon d = {.conf_path = path, .lock_fd = -1};
	d.boot = d.conf = load_conf(path);
	if (!d.conf)
		return CONF_EXIT_CONFIG;
	log_set_errors_to_stderr(1);
	int rc = 1;
	if (log_apply(d.conf) != 0) {
		free_confs(&d);
		return rc;
	}
	if (privileges_prepare(&d) != 0) {
		free_confs(&d);
		return rc;
	}
	d.base = event_base_new();
	if (!d.base)
		log_err("cannot create the event loop");
	else if (lock_state(&d) == 0 && bind_smtp(&d) == 0 && privileges_drop(&d) == 0 &&
	         open_index(&d) == 0 && open_verify(&d) == 0 && start_services(&d) == 0 &&
	         run(&d) == 0)
		rc = 0;
	stop_mail(&d);
	verify_free(d.verify); /* after the SMTP sessions that used it */
	if (d.base)
		event_base_free(d.base);
	minger_server_free(d.minger);
	mailbox_index_free(d.index);
	pop_login_free(d.pop_logins); /* after every service that noted or asked */
	log_info("stopped");
	unlock_state(&d);
	free_confs(&d);
	return rc;
}
