/*
 * verify_status: the daemon's view of the Minger servers it asks (Domain
 * Sharing peers, gateway and forward servers), written to
 * <state_dir>/peers.status for `sharemail peers`, and read back by the CLI with
 * verify_status_read() (one parser for both sides).
 *
 * File format (text, one server a line, fields separated by one space):
 *   # kind name minger_addr last_answer_epoch rtt_last_us rtt_avg_us queries failures
 *   peer b.example.com:25 192.0.2.7:4069 1700000000 812 790 1500 3
 * kind is peer|gateway|forward; name is the peer's HOST:SMTPPORT or the
 * gateway's / forwarded domain; minger_addr the address asked (netaddr_format);
 * last_answer_epoch 0 when it never answered; failures counts timeouts and
 * replies refused (bad mac, status 0-2 are answers, not failures). Lines
 * starting with '#' are comments. The file is replaced atomically (a temporary
 * file renamed over it), so a reader sees a whole file.
 *
 * Ownership: verify_status_read() returns an array the caller frees with free().
 */
#ifndef SHAREMAIL_VERIFY_VERIFY_STATUS_H
#define SHAREMAIL_VERIFY_VERIFY_STATUS_H

#include <stddef.h>
#include <stdint.h>

#define VERIFY_STATUS_FILE "peers.status"
#define VERIFY_STATUS_HEADER                                                                       \
	"# kind name minger_addr last_answer_epoch rtt_last_us rtt_avg_us queries failures"
#define VERIFY_STATUS_NAME_MAX 272 /* a host name and a port, or a domain */
#define VERIFY_STATUS_ADDR_MAX 64 /* "[v6]:port" */
#define VERIFY_STATUS_LINES_MAX 4096 /* servers a file may list */

enum verify_status_kind {
	VERIFY_STATUS_PEER = 0,
	VERIFY_STATUS_GATEWAY,
	VERIFY_STATUS_FORWARD,
};

struct verify_status_entry {
	enum verify_status_kind kind;
	char name[VERIFY_STATUS_NAME_MAX];
	char minger_addr[VERIFY_STATUS_ADDR_MAX];
	int64_t last_answer; /* epoch seconds; 0: never */
	uint64_t rtt_last_us;
	uint64_t rtt_avg_us;
	uint64_t queries; /* queries sent (not datagrams: retransmissions are one query) */
	uint64_t failures; /* timeouts and refused replies */
};

/* "peer", "gateway" or "forward". */
const char *verify_status_kind_name(enum verify_status_kind k);

/*
 * Formats the header and n entries into out. Returns the length, or -1 when it
 * does not fit (or a name holds a space or a control octet).
 */
int verify_status_format(const struct verify_status_entry *v, size_t n, char *out, size_t outsz);

/*
 * Replaces path with text[0..len) atomically: path.tmp written, then renamed (no
 * fsync: the file is a view, rebuilt by the daemon). Returns 0 or -1 (errno set).
 */
int verify_status_write(const char *path, const char *text, size_t len);

/* Told of a damaged line that verify_status_read() skips: where is "path:line: reason". */
typedef void (*verify_status_skip_cb)(void *arg, const char *where);

/*
 * Reads path. Returns 0 with *out (malloc'd, possibly NULL when *n is 0) and *n,
 * or -1 with "path:line: reason" (or "path: strerror", errno kept from the open:
 * ENOENT when the file is absent) in err. A damaged line (a field missing or
 * wrong, too long, not ended) is an error when skip is NULL (the daemon's own
 * file: damage); otherwise skip(arg, "path:line: reason") is called and the line
 * left out (`sharemail peers` still shows the rest).
 */
int verify_status_read(const char *path, struct verify_status_entry **out, size_t *n,
                       verify_status_skip_cb skip, void *arg, char *err, size_t errlen);

#endif
