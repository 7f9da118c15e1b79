/*
 * pop3c_drive: a test-only program (never installed) that runs one POP3
 * session through collect/collect_transport.h on its own event base, the way
 * the collector does, and prints what happened, for
 * tests/integration/test_collect_transport.py against tests/integration/fakepop3.py.
 *
 *   pop3c_drive --port P [--host 127.0.0.1] [--name SNI] --user U --pass-file F
 *               [--tls none|starttls|implicit] [--auth auto|user|apop] [--out DIR]
 *               [--dele] [--size-slack N] [--queue N] [--t-reply S] [--t-data S]
 *               [--t-tls S] [--t-greeting S] [--t-connect S] [--max-seconds S]
 *               [--second-port P]   (a second address to try after the first)
 *               [--pause-ms MS]     (pause reading at each MSG_BEGIN, resume MS later)
 *               [--abort-at N]      (collect_transport_abort() at message N's MSG_BEGIN)
 *
 * Policy (the collector's, simplified): RETR every listed message whose uid
 * is not a repeat, as room allows; with --dele, DELE each one whose MSG_END
 * came; QUIT at READY. A message's data goes to DIR/N.part, renamed N.eml at
 * its MSG_END (removed at MSG_ERROR or MSG_ABORTED). Lines on stdout:
 *   LISTING stat=C/O n=N uidl=0|1 dups=N, then ENTRY num size uid [dup]
 *   BEGIN n size | END n octets | ERROR n why code text | ABORTED n
 *   DELE_OK n | DELE_ERROR n | DELE_ABORTED n | READY
 *   DONE end=NAME code=CODE tls=0|1 discarded=N connects=N retrieved=N deleted=N reason=TEXT
 * Exit 0 after DONE; 2 for a usage error; 3 when --max-seconds (60) passed
 * without DONE (a hang: the test fails).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collect/collect_transport.h"

struct drive {
	struct event_base *base;
	const char *out;
	int dele;
	size_t next;
	FILE *part;
	int done;
	int pause_ms;
	uint64_t abort_at;
	struct collect_transport *s;
	struct event *unpause;
};

static void path_of(const struct drive *d, uint64_t n, const char *ext, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%llu.%s", d->out, (unsigned long long)n, ext);
}

static void retr_more(struct drive *d, struct collect_transport *s)
{
	const struct pop3_client_listing *l = collect_transport_listing(s);
	while (l && d->next < l->n && collect_transport_room(s) > 0) {
		const struct pop3_client_entry *e = &l->entries[d->next++];
		if (!e->dup_uid)
			collect_transport_retr(s, e->num);
	}
}

static void msg_gone(struct drive *d, uint64_t n)
{
	char p[4096];
	if (d->part) {
		fclose(d->part);
		d->part = NULL;
	}
	if (d->out) {
		path_of(d, n, "part", p, sizeof p);
		remove(p);
	}
}

static void on_event(void *arg, struct collect_transport *s, const struct pop3_client_event *ev)
{
	struct drive *d = arg;
	char p[4096], q[4096];
	const struct pop3_client_listing *l;
	switch (ev->action) {
	case POP3_CLIENT_ACT_LISTING:
		l = collect_transport_listing(s);
		printf("LISTING stat=%llu/%llu n=%zu uidl=%d dups=%zu\n",
		       (unsigned long long)l->stat_count, (unsigned long long)l->stat_octets, l->n,
		       l->have_uidl, l->dup_uids);
		for (size_t i = 0; i < l->n; i++)
			printf("ENTRY %llu %llu %s%s\n", (unsigned long long)l->entries[i].num,
			       (unsigned long long)l->entries[i].size,
			       l->entries[i].uid_len ? l->entries[i].uid : "-",
			       l->entries[i].dup_uid ? " dup" : "");
		retr_more(d, s);
		break;
	case POP3_CLIENT_ACT_MSG_BEGIN:
		printf("BEGIN %llu %llu\n", (unsigned long long)ev->num,
		       (unsigned long long)ev->size);
		if (d->out) {
			path_of(d, ev->num, "part", p, sizeof p);
			d->part = fopen(p, "wb");
		}
		if (d->abort_at == ev->num) {
			collect_transport_abort(s, "the driver aborted");
		} else if (d->pause_ms > 0) {
			/* The deadlines stop meanwhile: the data deadline must not fire. */
			struct timeval tv = {d->pause_ms / 1000, (d->pause_ms % 1000) * 1000};
			collect_transport_pause(s, 1);
			printf("PAUSED %llu\n", (unsigned long long)ev->num);
			evtimer_add(d->unpause, &tv);
		}
		break;
	case POP3_CLIENT_ACT_MSG_DATA:
		if (d->part)
			fwrite(ev->data, 1, ev->len, d->part);
		break;
	case POP3_CLIENT_ACT_MSG_END:
		printf("END %llu %llu\n", (unsigned long long)ev->num,
		       (unsigned long long)ev->size);
		if (d->part) {
			fclose(d->part);
			d->part = NULL;
			path_of(d, ev->num, "part", p, sizeof p);
			path_of(d, ev->num, "eml", q, sizeof q);
			rename(p, q);
		}
		if (d->dele)
			collect_transport_dele(s, ev->num);
		retr_more(d, s);
		break;
	case POP3_CLIENT_ACT_MSG_ERROR:
		printf("ERROR %llu %s %s %s\n", (unsigned long long)ev->num,
		       pop3_client_msg_error_name(ev->error),
		       ev->code ? pop3_resp_code_name(ev->code) : "-", ev->text);
		msg_gone(d, ev->num);
		retr_more(d, s);
		break;
	case POP3_CLIENT_ACT_MSG_ABORTED:
		printf("ABORTED %llu\n", (unsigned long long)ev->num);
		msg_gone(d, ev->num);
		break;
	case POP3_CLIENT_ACT_DELE_OK:
		printf("DELE_OK %llu\n", (unsigned long long)ev->num);
		retr_more(d, s);
		break;
	case POP3_CLIENT_ACT_DELE_ERROR:
		printf("DELE_ERROR %llu\n", (unsigned long long)ev->num);
		retr_more(d, s);
		break;
	case POP3_CLIENT_ACT_DELE_ABORTED:
		printf("DELE_ABORTED %llu\n", (unsigned long long)ev->num);
		break;
	case POP3_CLIENT_ACT_READY:
		printf("READY\n");
		collect_transport_quit(s);
		break;
	default: break;
	}
	fflush(stdout);
}

static void on_done(void *arg, const struct collect_transport_result *r)
{
	struct drive *d = arg;
	const struct pop3_client_outcome *o = r->outcome;
	printf("DONE end=%s code=%s tls=%d discarded=%llu connects=%u retrieved=%llu deleted=%llu "
	       "addr=%s port=%d reason=%s\n",
	       pop3_client_end_name(o->end), o->code ? pop3_resp_code_name(o->code) : "-", r->tls,
	       (unsigned long long)r->discarded, r->connects, (unsigned long long)o->retrieved,
	       (unsigned long long)o->deleted, r->addr, r->port, o->reason);
	fflush(stdout);
	d->done = 1;
	event_base_loopbreak(d->base);
}

static void on_unpause(evutil_socket_t fd, short what, void *arg)
{
	struct drive *d = arg;
	collect_transport_pause(d->s, 0);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	struct drive *d = arg;
	printf("HANG no DONE within the time given\n");
	fflush(stdout);
	event_base_loopbreak(d->base);
}

static int read_password(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	if (f == NULL || fgets(buf, (int)len, f) == NULL) {
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return 0;
}

static void set_addr(struct sockaddr_storage *ss, const char *host, int port)
{
	struct sockaddr_in *a = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	memset(ss, 0, sizeof *ss);
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
	} else {
		a->sin_family = AF_INET;
		inet_pton(AF_INET, host, &a->sin_addr);
		a->sin_port = htons((uint16_t)port);
	}
}

int main(int argc, char **argv)
{
	struct collect_transport_conf cf;
	struct drive d = {0};
	const char *host = "127.0.0.1", *user = NULL, *pass_file = NULL, *name = "";
	int port = 0, port2 = 0, max_seconds = 60;
	char password[512];
	memset(&cf, 0, sizeof cf);
	pop3_client_conf_defaults(&cf.client);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int used = 1;
		if (strcmp(a, "--dele") == 0) {
			d.dele = 1;
			used = 0;
		} else if (v == NULL) {
			fprintf(stderr, "pop3c_drive: %s needs a value\n", a);
			return 2;
		} else if (strcmp(a, "--host") == 0) {
			host = v;
		} else if (strcmp(a, "--port") == 0) {
			port = atoi(v);
		} else if (strcmp(a, "--second-port") == 0) {
			port2 = atoi(v);
		} else if (strcmp(a, "--name") == 0) {
			name = v;
		} else if (strcmp(a, "--user") == 0) {
			user = v;
		} else if (strcmp(a, "--pass-file") == 0) {
			pass_file = v;
		} else if (strcmp(a, "--out") == 0) {
			d.out = v;
		} else if (strcmp(a, "--tls") == 0) {
			cf.client.tls = strcmp(v, "starttls") == 0   ? POP3_CLIENT_TLS_STARTTLS
			                : strcmp(v, "implicit") == 0 ? POP3_CLIENT_TLS_IMPLICIT
			                                             : POP3_CLIENT_TLS_NONE;
		} else if (strcmp(a, "--auth") == 0) {
			cf.client.auth = strcmp(v, "user") == 0   ? POP3_CLIENT_AUTH_USER
			                 : strcmp(v, "apop") == 0 ? POP3_CLIENT_AUTH_APOP
			                                          : POP3_CLIENT_AUTH_AUTO;
		} else if (strcmp(a, "--size-slack") == 0) {
			cf.client.size_slack = strtoull(v, NULL, 10);
		} else if (strcmp(a, "--queue") == 0) {
			cf.client.queue_max = strtoul(v, NULL, 10);
		} else if (strcmp(a, "--t-reply") == 0) {
			cf.client.timeouts.reply = (unsigned)atoi(v);
		} else if (strcmp(a, "--t-data") == 0) {
			cf.client.timeouts.data = (unsigned)atoi(v);
		} else if (strcmp(a, "--t-tls") == 0) {
			cf.client.timeouts.tls_handshake = (unsigned)atoi(v);
		} else if (strcmp(a, "--t-greeting") == 0) {
			cf.client.timeouts.greeting = (unsigned)atoi(v);
		} else if (strcmp(a, "--t-connect") == 0) {
			cf.client.timeouts.connect = (unsigned)atoi(v);
		} else if (strcmp(a, "--pause-ms") == 0) {
			d.pause_ms = atoi(v);
		} else if (strcmp(a, "--abort-at") == 0) {
			d.abort_at = strtoull(v, NULL, 10);
		} else if (strcmp(a, "--max-seconds") == 0) {
			max_seconds = atoi(v);
		} else {
			fprintf(stderr, "pop3c_drive: unknown option %s\n", a);
			return 2;
		}
		i += used;
	}
	if (port <= 0 || user == NULL || pass_file == NULL ||
	    read_password(pass_file, password, sizeof password) != 0) {
		fprintf(stderr,
		        "pop3c_drive: --port, --user and a readable --pass-file are needed\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct sockaddr_storage addrs[2];
	set_addr(&addrs[0], host, port);
	if (port2 > 0)
		set_addr(&addrs[1], host, port2);
	cf.client.user = user;
	cf.client.password = password;
	cf.host = name;
	cf.addrs = addrs;
	cf.n_addrs = port2 > 0 ? 2 : 1;
	d.base = event_base_new();
	struct event *dog = evtimer_new(d.base, on_watchdog, &d);
	struct timeval tv = {max_seconds, 0};
	evtimer_add(dog, &tv);
	d.unpause = evtimer_new(d.base, on_unpause, &d);
	struct collect_transport *s = collect_transport_new(d.base, &cf, on_event, on_done, &d);
	d.s = s;
	memset(password, 0, sizeof password);
	if (s == NULL) {
		fprintf(stderr, "pop3c_drive: collect_transport_new refused the conf\n");
		return 2;
	}
	event_base_dispatch(d.base);
	event_free(dog);
	event_free(d.unpause);
	if (d.done)
		event_base_free(d.base);
	return d.done ? 0 : 3;
}
