/* cli_peers: see cli_peers.h. */
#include "cli/cli_peers.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "verify/minger_client.h"

/* Longest line of domain_sharing_domains_file (a domain is at most 255 octets). */
#define DOMAINS_LINE_MAX 1024

const char *cli_peers_kind_word(enum cli_peer_kind k)
{
	switch (k) {
	case CLI_PEER_SHARING: return "peer";
	case CLI_PEER_GATEWAY: return "gateway";
	case CLI_PEER_FORWARD: return "forward";
	}
	return "peer";
}

static void format_hostport(const struct peer_spec_hostport *hp, char *out, size_t outsz)
{
	if (strchr(hp->host, ':'))
		snprintf(out, outsz, "[%s]:%u", hp->host, hp->port);
	else
		snprintf(out, outsz, "%s:%u", hp->host, hp->port);
}

/* A secret_file relative to the config file's folder (sharemail.conf(5): every path is). */
static void resolve_path(const struct conf *c, const char *file, char *out, size_t outsz)
{
	const char *slash = c->path ? strrchr(c->path, '/') : NULL;
	if (!file[0] || file[0] == '/' || !slash)
		snprintf(out, outsz, "%s", file);
	else
		snprintf(out, outsz, "%.*s/%s", (int)(slash - c->path), c->path, file);
}

static int push(struct cli_peers *p, const struct cli_peer *peer)
{
	struct cli_peer *v = realloc(p->v, (p->n + 1) * sizeof *v);
	if (!v) {
		cli_error("out of memory");
		return -1;
	}
	p->v = v;
	p->v[p->n++] = *peer;
	return 0;
}

static int load_peers(const struct conf *c, struct cli_peers *out)
{
	for (size_t i = 0; i < c->domain_sharing_host.n; i++) {
		struct peer_spec_peer spec;
		char err[256];
		if (peer_spec_parse_peer(c->domain_sharing_host.v[i], &spec, err, sizeof err) !=
		    0) {
			cli_error("domain_sharing_host %zu: %s", i + 1, err);
			return -1;
		}
		struct cli_peer peer = {.kind = CLI_PEER_SHARING};
		format_hostport(&spec.smtp, peer.name, sizeof peer.name);
		struct peer_spec_hostport m = spec.smtp;
		m.port = spec.minger_port;
		format_hostport(&m, peer.minger, sizeof peer.minger);
		resolve_path(c, spec.secret_file, peer.secret_file, sizeof peer.secret_file);
		if (push(out, &peer) != 0)
			return -1;
	}
	return 0;
}

static int load_gateways(const struct conf *c, const struct strlist *l, int forward,
                         struct cli_peers *out)
{
	for (size_t i = 0; i < l->n; i++) {
		struct peer_spec_gateway spec;
		char err[256];
		if (peer_spec_parse_gateway(l->v[i], forward, &spec, err, sizeof err) != 0) {
			cli_error("%s %zu: %s", forward ? "forward_domain" : "gateway_domain",
			          i + 1, err);
			return -1;
		}
		struct cli_peer peer = {.kind = forward ? CLI_PEER_FORWARD : CLI_PEER_GATEWAY};
		snprintf(peer.name, sizeof peer.name, "%s", spec.domain);
		format_hostport(&spec.minger, peer.minger, sizeof peer.minger);
		resolve_path(c, spec.secret_file, peer.secret_file, sizeof peer.secret_file);
		if (push(out, &peer) != 0)
			return -1;
	}
	return 0;
}

int cli_peers_load(const struct conf *c, struct cli_peers *out)
{
	memset(out, 0, sizeof *out);
	if (load_peers(c, out) != 0 || load_gateways(c, &c->gateway_domain, 0, out) != 0 ||
	    load_gateways(c, &c->forward_domain, 1, out) != 0) {
		cli_peers_free(out);
		return -1;
	}
	return 0;
}

void cli_peers_free(struct cli_peers *p)
{
	free(p->v);
	p->v = NULL;
	p->n = 0;
}

/* Trims blanks and the line end in place; returns the start. */
static char *trim(char *s)
{
	size_t len = strlen(s);
	while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ' ||
	               s[len - 1] == '\t'))
		s[--len] = '\0';
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* 1 when the file lists domain, 0 when it does not, 2 when it lists nothing, -1 on error. */
static int domains_file_lists(const char *path, const char *domain, size_t len)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		if (errno == ENOENT)
			return 2; /* absent: every local domain (the seed's default) */
		cli_error("cannot read domain_sharing_domains_file %s: %s", path, strerror(errno));
		return -1;
	}
	char line[DOMAINS_LINE_MAX];
	int any = 0, found = 0;
	while (!found && fgets(line, sizeof line, f)) {
		char *d = trim(line);
		if (!*d || *d == '#')
			continue;
		any = 1;
		found = strlen(d) == len && strncasecmp(d, domain, len) == 0;
	}
	int err = ferror(f);
	fclose(f);
	if (err) {
		cli_error("cannot read domain_sharing_domains_file %s", path);
		return -1;
	}
	return found ? 1 : any ? 0 : 2;
}

int cli_peers_domain_shared(const struct conf *c, const char *domain, size_t len)
{
	if (!c->domain_sharing || c->domain_sharing_host.n == 0 ||
	    !conf_is_local_domain(c, domain, len))
		return 0;
	if (!c->domain_sharing_domains_file || !c->domain_sharing_domains_file[0])
		return 1;
	int r = domains_file_lists(c->domain_sharing_domains_file, domain, len);
	return r < 0 ? -1 : r != 0;
}

int cli_peers_resolve(const struct cli_peer *peer, struct netaddr *out, char *err, size_t errlen)
{
	char host[CLI_PEER_HOSTPORT_MAX];
	const char *colon = strrchr(peer->minger, ':');
	if (!colon) {
		snprintf(err, errlen, "no port in %s", peer->minger);
		return -1;
	}
	const char *h = peer->minger;
	size_t hl = (size_t)(colon - h);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	snprintf(host, sizeof host, "%.*s", (int)hl, h);
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc != 0 || !res) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	memset(out, 0, sizeof *out);
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* One peer's question, run on its own thread. */
struct ask_job {
	const struct conf *conf;
	const struct cli_peer *peer;
	const char *mailbox;
	struct cli_peer_answer *answer;
	pthread_t tid;
	int started;
};

/* Reads the peer's first secret into *out (NULL without a secret_file). 0 or -1 with why. */
static int job_secret(struct ask_job *j, char **out)
{
	*out = NULL;
	if (!j->peer->secret_file[0])
		return 0;
	struct strlist secrets = {0};
	struct conf_errors errs = {0};
	int n = conf_read_secrets(j->peer->secret_file, &secrets, &errs);
	if (n >= 1 && secrets.n >= 1)
		*out = strdup(secrets.v[0]);
	for (size_t i = 0; i < secrets.n; i++)
		explicit_bzero(secrets.v[i], strlen(secrets.v[i]));
	strlist_free(&secrets);
	if (!*out)
		snprintf(j->answer->why, sizeof j->answer->why, "%s",
		         errs.n ? errs.v[0].message : "no usable secret in its secret_file");
	conf_errors_free(&errs);
	return *out ? 0 : -1;
}

static void *ask_run(void *arg)
{
	struct ask_job *j = arg;
	struct cli_peer_answer *a = j->answer;
	struct netaddr server;
	char *secret = NULL;
	a->result = MINGER_RESULT_ERROR;
	if (cli_peers_resolve(j->peer, &server, a->why, sizeof a->why) != 0 ||
	    job_secret(j, &secret) != 0)
		return NULL;
	struct minger_client_opts opts;
	minger_client_opts_init(&opts);
	opts.timeout_ms = j->conf->minger_timeout_ms;
	opts.retries = j->conf->minger_retries;
	opts.require_reply_mac = j->conf->minger_require_reply_mac;
	opts.secret = secret;
	if (opts.require_reply_mac && !secret)
		snprintf(a->why, sizeof a->why,
		         "minger_require_reply_mac = yes needs a secret_file for this peer");
	else
		a->result = minger_client_query(&server, j->mailbox, &opts, a->why, sizeof a->why);
	if (secret) {
		explicit_bzero(secret, strlen(secret));
		free(secret);
	}
	return NULL;
}

int cli_peers_ask(const struct conf *c, const struct cli_peers *p, const char *mailbox,
                  struct cli_peer_answer *answers)
{
	struct ask_job *jobs = calloc(p->n ? p->n : 1, sizeof *jobs);
	if (!jobs) {
		cli_error("out of memory");
		return -1;
	}
	for (size_t i = 0; i < p->n; i++) {
		if (p->v[i].kind != CLI_PEER_SHARING)
			continue;
		jobs[i] = (struct ask_job){
		        .conf = c, .peer = &p->v[i], .mailbox = mailbox, .answer = &answers[i]};
		answers[i] = (struct cli_peer_answer){.result = MINGER_RESULT_ERROR};
		if (pthread_create(&jobs[i].tid, NULL, ask_run, &jobs[i]) == 0)
			jobs[i].started = 1;
		else
			ask_run(&jobs[i]); /* no thread: ask from here, one after another */
	}
	for (size_t i = 0; i < p->n; i++)
		if (jobs[i].started)
			pthread_join(jobs[i].tid, NULL);
	free(jobs);
	return 0;
}
