/* cli_peers: see cli_peers.h. */
#include "cli/cli_peers.h"

#include <errno.h>
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

/* One peer's question, run on its own thread. */
struct ask_job {
	const struct conf *conf;
	const struct verify_server *peer;
	const char *mailbox;
	struct cli_peer_answer *answer;
	pthread_t tid;
	int started;
};

static void *ask_run(void *arg)
{
	struct ask_job *j = arg;
	struct cli_peer_answer *a = j->answer;
	struct netaddr server;
	char *secret = NULL;
	a->result = MINGER_RESULT_ERROR;
	if (verify_server_lookup(j->peer, &server, 1, a->why, sizeof a->why) < 0)
		return NULL;
	if (j->peer->secret_file[0] &&
	    !(secret = verify_servers_read_secret(j->peer, a->why, sizeof a->why)))
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

int cli_peers_ask(const struct conf *c, const struct verify_servers *p, const char *mailbox,
                  struct cli_peer_answer *answers)
{
	struct ask_job *jobs = calloc(p->npeers ? p->npeers : 1, sizeof *jobs);
	if (!jobs) {
		cli_error("out of memory");
		return -1;
	}
	for (size_t i = 0; i < p->npeers; i++) {
		jobs[i] = (struct ask_job){
		        .conf = c, .peer = &p->v[i], .mailbox = mailbox, .answer = &answers[i]};
		answers[i] = (struct cli_peer_answer){.result = MINGER_RESULT_ERROR};
		if (pthread_create(&jobs[i].tid, NULL, ask_run, &jobs[i]) == 0)
			jobs[i].started = 1;
		else
			ask_run(&jobs[i]); /* no thread: ask from here, one after another */
	}
	for (size_t i = 0; i < p->npeers; i++)
		if (jobs[i].started)
			pthread_join(jobs[i].tid, NULL);
	free(jobs);
	return 0;
}
