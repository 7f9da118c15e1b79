/*
 * sharemaild: the daemon. Loads the configuration, opens the directory index,
 * binds and starts every enabled service, then runs the main event loop (libevent)
 * for signals and housekeeping timers until SIGTERM or SIGINT. See sharemaild(8).
 *
 * Services built so far: Minger (UDP), SMTP and submission (smtpd_server), the
 * queue (<state_dir>/queue) and its local delivery runner. SMTPS and POP3
 * listeners are accepted in the configuration but not built yet: a warning says so.
 *
 * Shutdown (SIGTERM/SIGINT): stop accepting, end every SMTP session with 421
 * (a session waiting for a commit first gets its outcome), then stop the delivery
 * runner and close the queue. A second signal, or DRAIN_MAX_S seconds, cuts the
 * drain short.
 */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/conf.h"
#include "deliver/deliver.h"
#include "directory/directory.h"
#include "minger/minger_server.h"
#include "queue/queue.h"
#include "smtpd/smtpd_server.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "verify/mailbox_index.h"

#define REFRESH_INTERVAL_MS 1000
#define DRAIN_MAX_S 10

struct daemon {
	struct conf *conf;
	struct mailbox_index *index;
	struct minger_server *minger;
	struct event_base *base;
	struct queue *queue;
	struct deliver_runner *runner;
	struct smtpd_server *smtpd;
	struct event *drain_timer;
	int stopping;
	int refresh_failing;
};

static void usage(void)
{
	fprintf(stderr, "usage: sharemaild [-c FILE] [-t]\n"
	                "  -c FILE  configuration (default $SHAREMAIL_CONF or "
	                "/etc/sharemail/sharemail.conf)\n"
	                "  -t       check the configuration and exit\n");
}

static struct conf *load_conf(const char *path)
{
	struct conf_errors errs = {0};
	struct conf *c = conf_load(path, &errs);
	if (!c) {
		conf_errors_print(&errs);
		conf_errors_free(&errs);
	}
	return c;
}

static void warn_unbuilt(const struct conf *c)
{
	const struct {
		const char *key;
		size_t n;
	} unbuilt[] = {{"smtps_listen", c->smtps_listen.n}, {"pop3_listen", c->pop3_listen.n}};
	for (size_t i = 0; i < sizeof unbuilt / sizeof unbuilt[0]; i++)
		if (unbuilt[i].n)
			log_warning("%s is set but that service is not built yet; ignored",
			            unbuilt[i].key);
}

/* Opens (creating if needed) the directory, then builds the in-memory index. */
static int open_index(struct daemon *d)
{
	char path[4096], err[256];
	if (fs_mkdirs(d->conf->state_dir, 0700, 0) != 0) {
		log_err("cannot create state_dir %s: %s", d->conf->state_dir, strerror(errno));
		return -1;
	}
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

static void on_drained(void *arg)
{
	struct daemon *d = arg;
	event_base_loopbreak(d->base);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	log_warning("smtp: %zu connections still open after %d s; closing them",
	            smtpd_server_connections(d->smtpd), DRAIN_MAX_S);
	event_base_loopbreak(d->base);
}

/*
 * First signal: stop accepting and let the SMTP sessions end with 421 (the loop
 * keeps running so commits under way complete and their 250s go out). A second
 * signal stops at once.
 */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	if (d->stopping || !d->smtpd) {
		log_info("signal %d: shutting down", (int)sig);
		event_base_loopbreak(d->base);
		return;
	}
	d->stopping = 1;
	log_info("signal %d: shutting down (ending %zu SMTP sessions)", (int)sig,
	         smtpd_server_connections(d->smtpd));
	struct timeval tv = {DRAIN_MAX_S, 0};
	d->drain_timer = evtimer_new(d->base, on_drain_timeout, d);
	if (d->drain_timer)
		evtimer_add(d->drain_timer, &tv);
	smtpd_server_drain(d->smtpd, on_drained, d);
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	int n = mailbox_index_refresh(d->index);
	if (n < 0 && !d->refresh_failing)
		log_err("directory: refresh failed; lookups answer 'try later' until it works");
	else if (n >= 0 && d->refresh_failing)
		log_info("directory: refresh works again");
	else if (n > 0)
		log_debug("directory: %d addresses updated", n);
	d->refresh_failing = n < 0;
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
	d->smtpd = smtpd_server_new(d->conf, d->base, d->queue, d->index, err, sizeof err);
	if (!d->smtpd) {
		log_err("smtp: %s", err);
		return -1;
	}
	return 0;
}

static void stop_mail(struct daemon *d)
{
	smtpd_server_free(d->smtpd);
	d->smtpd = NULL;
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
	struct event *refresh = event_new(d->base, -1, EV_PERSIST, on_refresh, d);
	struct timeval tv = {REFRESH_INTERVAL_MS / 1000, (REFRESH_INTERVAL_MS % 1000) * 1000};
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	event_add(refresh, &tv);
	log_info("sharemaild ready (hostname %s)", d->conf->hostname);
	event_base_dispatch(d->base);
	event_free(sigterm);
	event_free(sigint);
	event_free(refresh);
	if (d->drain_timer)
		event_free(d->drain_timer);
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = getenv("SHAREMAIL_CONF");
	int check_only = 0, opt;
	if (!path || !*path)
		path = "/etc/sharemail/sharemail.conf";
	while ((opt = getopt(argc, argv, "c:th")) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 't': check_only = 1; break;
		default: usage(); return opt == 'h' ? 0 : 64;
		}
	}
	log_init("sharemaild", LOG_LEVEL_INFO);
	struct daemon d = {0};
	d.conf = load_conf(path);
	if (!d.conf)
		return CONF_EXIT_CONFIG;
	if (check_only) {
		conf_free(d.conf);
		return 0;
	}
	enum log_level lvl;
	if (log_level_parse(d.conf->log_level, &lvl) == 0)
		log_set_level(lvl);
	signal(SIGPIPE, SIG_IGN);
	warn_unbuilt(d.conf);
	int rc = 1;
	d.base = event_base_new();
	if (!d.base)
		log_err("cannot create the event loop");
	else if (open_index(&d) == 0 && start_services(&d) == 0 && run(&d) == 0)
		rc = 0;
	stop_mail(&d);
	if (d.base)
		event_base_free(d.base);
	minger_server_free(d.minger);
	mailbox_index_free(d.index);
	conf_free(d.conf);
	log_info("stopped");
	return rc;
}
