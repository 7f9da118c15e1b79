# sharemail: non-recursive GNU make (check, run, bench call it again after `make deps`).
# Everything is built under $(B) (default build/).
#   make            build build/sharemaild and build/sharemail (installs no packages)
#   make deps       install the Debian packages that build and test need (scripts/install-deps)
#   make check      deps, then unit tests, fuzz-corpus replay, integration tests, include layering
#   make check-asan unit tests and fuzz corpora under ASan+UBSan (build-asan/)
#   make run        deps, then a demo server in the foreground on loopback
#   make bench      deps (with --bench), then benchmarks (bench/), figures printed as ratios
#   make fuzz       libFuzzer binaries (clang) in build-fuzz/
#   make format-check  clang-format over src/ tests/unit fuzz bench
#   make install    binaries, man pages, example config, systemd files (PREFIX, DESTDIR)
#   make uninstall  removes what install put there, except the configuration
.SUFFIXES:
.DELETE_ON_ERROR:

B        ?= build
CC       ?= cc
PKGS     := openssl sqlite3 libevent_core libevent_pthreads libevent_openssl
# No package is installed while parsing: `make deps` does that, and the targets that
# need more than the build (check, run, bench) depend on it and build in a sub-make,
# which reads pkg-config after the packages are there.
PKG_OK     := $(shell pkg-config --exists $(PKGS) && echo ok)
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcrypt -lpthread
ifneq ($(PKG_OK),ok)
ifeq ($(filter deps deps-bench check check-unit check-asan check-asan-integration run bench \
                clean uninstall,$(MAKECMDGOALS)),)
$(warning pkg-config does not find $(PKGS): run `make deps` (scripts/install-deps) first)
endif
endif
WARN     := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-unused-parameter -Wvla -Wpointer-arith
OPT      ?= -O2 -g
SAN      ?=
ifeq ($(SAN),1)
OPT      := -O1 -g -fno-omit-frame-pointer
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all
endif
ifeq ($(WERROR),1)
WARN     += -Werror
endif
CPPFLAGS += -Isrc -D_GNU_SOURCE
CFLAGS   += -std=c11 $(OPT) $(WARN) $(SANFLAGS) $(PKG_CFLAGS) -MMD -MP
LDFLAGS  += $(SANFLAGS)
LDLIBS   += $(PKG_LIBS)

LIB_SRC  := $(sort $(wildcard src/util/*.c src/proto/*.c src/conf/*.c src/directory/*.c \
                               src/verify/*.c src/queue/*.c src/minger/*.c src/smtpd/*.c \
                               src/deliver/*.c src/screen/*.c src/net/*.c \
                               src/store/*.c src/pop3d/*.c src/collect/*.c))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(B)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(B)/%.o)
LIB      := $(B)/libsharemail.a

UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_REPLAY := $(FUZZ_SRC:fuzz/%.c=$(B)/fuzz/%-replay)
BENCH_SRC := $(sort $(wildcard bench/*/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(B)/bench/%)

all: $(B)/sharemaild $(B)/sharemail

$(B)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^

$(B)/sharemaild: $(B)/src/sharemaild.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/sharemail: $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/tests/%: $(B)/tests/unit/%.o $(B)/tests/unit/harness.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(filter-out $(LIB),$^) $(LIB) $(LDLIBS)

# The one fake of the SMTP session's ops (and the transcript buffers), shared by the
# session and transcript unit tests, the client transcript test and the session fuzzer
# (an extra prerequisite: the link rules put it before the library).
FAKE_SESSION_SRC := tests/unit/fake_session_ops.c
FAKE_SESSION_OBJ := $(B)/tests/unit/fake_session_ops.o
$(B)/tests/test_smtp_session $(B)/tests/test_transcripts $(B)/tests/test_smtp_client \
        $(B)/tests/test_smtp_session_tls $(B)/tests/test_pop3_client: \
        $(FAKE_SESSION_OBJ)
$(B)/fuzz/fuzz_smtp_session-replay: $(FAKE_SESSION_OBJ)
# The POP3 session's fake ops: its transcript test, its unit test and its fuzzer.
FAKE_POP3_SRC := tests/unit/fake_pop3_ops.c
FAKE_POP3_OBJ := $(B)/tests/unit/fake_pop3_ops.o
$(B)/tests/test_pop3_transcripts $(B)/tests/test_pop3_session: $(FAKE_POP3_OBJ)
$(B)/fuzz/fuzz_pop3_session-replay: $(FAKE_POP3_OBJ)

# Fuzz targets are replayed over their corpora with a plain main() under gcc.
$(B)/fuzz/%-replay: $(B)/fuzz/%.o $(B)/fuzz/replay_main.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(filter-out $(LIB),$^) $(LIB) $(LDLIBS)

$(B)/bench/%: $(B)/bench/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Test-only programs the integration tests run (not test suites themselves).
TEST_TOOLS := $(B)/tests/pop3c_drive
unit: $(UNIT_BIN) $(FUZZ_REPLAY) $(TEST_TOOLS)
# bench/collect's LD_PRELOAD shim (TCP_NODELAY for fetchmail, the reference; see the file).
NODELAY_SO := $(B)/bench/collect/tcp_nodelay.so
$(NODELAY_SO): bench/collect/preload/tcp_nodelay.c
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -shared -fPIC -o $@ $< -ldl
bench-bin: $(BENCH_BIN) $(NODELAY_SO) all

deps:
	scripts/install-deps

deps-bench:
	scripts/install-deps --bench

check: deps check-layering
	$(MAKE) --no-print-directory all unit
	python3 tests/run-all --build $(B)

# Includes follow the layers of HACKING.md (the checker tests itself on fake trees first).
check-layering:
	python3 scripts/check-layering --self-test

check-unit: deps
	$(MAKE) --no-print-directory unit
	python3 tests/run-all --build $(B) --no-integration

check-asan: deps
	$(MAKE) B=build-asan SAN=1 unit all
	python3 tests/run-all --build build-asan --no-integration

check-asan-integration: deps
	$(MAKE) B=build-asan SAN=1 unit all
	python3 tests/run-all --build build-asan --integration-only

run: deps
	$(MAKE) --no-print-directory all
	python3 scripts/demo.py --build $(B)

bench: deps-bench
	$(MAKE) --no-print-directory bench-bin
	python3 bench/minger/run.py --build $(B)
	python3 bench/smtp/run.py --build $(B)
	python3 bench/tls/run.py --build $(B)
	python3 bench/relay/run.py --build $(B)
	python3 bench/sharing/run.py --build $(B)
	python3 bench/pop3/run.py --build $(B)
	python3 bench/collect/run.py --build $(B)
	$(B)/bench/queue/bench_queue_open
	$(B)/bench/sched/bench_sched

# Install paths. PREFIX=/usr is what a Debian package uses; SYSCONFDIR stays /etc for any
# PREFIX. The systemd files go under PREFIX too: systemd reads /usr/lib/systemd/system (the
# same folder as /lib/systemd/system on a merged-/usr Debian), /usr/local/lib/systemd/system
# and the matching sysusers.d and tmpfiles.d folders; set SYSTEMDDIR, SYSUSERSDIR and
# TMPFILESDIR for another PREFIX. The example config is installed only where none exists.
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
SBINDIR     ?= $(PREFIX)/sbin
MANDIR      ?= $(PREFIX)/share/man
SYSCONFDIR  ?= /etc
SYSTEMDDIR  ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
INSTALL     ?= install
CREATE_USER ?= yes
CONF_DEST   := $(DESTDIR)$(SYSCONFDIR)/sharemail/sharemail.conf
UNIT_DEST   := $(DESTDIR)$(SYSTEMDDIR)/sharemaild.service
INSTALLED   := $(DESTDIR)$(SBINDIR)/sharemaild $(DESTDIR)$(BINDIR)/sharemail \
               $(DESTDIR)$(MANDIR)/man8/sharemaild.8 $(DESTDIR)$(MANDIR)/man1/sharemail.1 \
               $(DESTDIR)$(MANDIR)/man5/sharemail.conf.5 $(UNIT_DEST) \
               $(DESTDIR)$(SYSUSERSDIR)/sharemail.conf $(DESTDIR)$(TMPFILESDIR)/sharemail.conf

install: all
	@# install -d would also chmod folders that exist (an /etc/sharemail made 0750): skip those.
	@for d in $(sort $(dir $(INSTALLED) $(CONF_DEST))); do \
	  [ -d "$$d" ] || { echo "$(INSTALL) -d -m 0755 $$d"; $(INSTALL) -d -m 0755 "$$d"; } || exit 1; \
	done
	$(INSTALL) -m 0755 $(B)/sharemaild $(DESTDIR)$(SBINDIR)/sharemaild
	$(INSTALL) -m 0755 $(B)/sharemail $(DESTDIR)$(BINDIR)/sharemail
	$(INSTALL) -m 0644 doc/sharemaild.8 $(DESTDIR)$(MANDIR)/man8/sharemaild.8
	$(INSTALL) -m 0644 doc/sharemail.1 $(DESTDIR)$(MANDIR)/man1/sharemail.1
	$(INSTALL) -m 0644 doc/sharemail.conf.5 $(DESTDIR)$(MANDIR)/man5/sharemail.conf.5
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	  etc/systemd/sharemaild.service.in > $(UNIT_DEST).tmp
	chmod 0644 $(UNIT_DEST).tmp
	mv -f $(UNIT_DEST).tmp $(UNIT_DEST)
	$(INSTALL) -m 0644 etc/systemd/sharemail.sysusers $(DESTDIR)$(SYSUSERSDIR)/sharemail.conf
	$(INSTALL) -m 0644 etc/systemd/sharemail.tmpfiles $(DESTDIR)$(TMPFILESDIR)/sharemail.conf
	@if [ -e $(CONF_DEST) ]; then \
	  echo "install: kept the existing $(CONF_DEST) (the example is etc/sharemail.conf)"; \
	else \
	  echo "$(INSTALL) -m 0644 etc/sharemail.conf $(CONF_DEST)"; \
	  $(INSTALL) -m 0644 etc/sharemail.conf $(CONF_DEST); \
	fi
	@# The user of the unit and of the example's `user = sharemail`, on this machine only
	@# (a DESTDIR install is a package's: its postinst runs systemd-sysusers).
	@if [ -z "$(DESTDIR)" ] && [ "$(CREATE_USER)" != no ] && [ "$$(id -u)" = 0 ] && \
	    ! getent passwd sharemail >/dev/null; then \
	  if command -v systemd-sysusers >/dev/null 2>&1; then \
	    echo "systemd-sysusers $(SYSUSERSDIR)/sharemail.conf"; \
	    systemd-sysusers $(SYSUSERSDIR)/sharemail.conf; \
	  else \
	    echo "useradd --system --user-group --home-dir /var/lib/sharemail --no-create-home" \
	         "--shell /usr/sbin/nologin sharemail"; \
	    useradd --system --user-group --home-dir /var/lib/sharemail --no-create-home \
	      --shell /usr/sbin/nologin --comment "sharemail mail server" sharemail; \
	  fi; \
	fi

uninstall:
	rm -f $(INSTALLED)
	@echo "uninstall: kept $(DESTDIR)$(SYSCONFDIR)/sharemail/ and state_dir (/var/lib/sharemail)"

FUZZ_B := build-fuzz
fuzz:
	@mkdir -p $(FUZZ_B)
	for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  clang -g -O1 -Isrc -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined $$f \
	    $(LIB_SRC) $(FAKE_SESSION_SRC) $(FAKE_POP3_SRC) $(PKG_CFLAGS) $(PKG_LIBS) -o $(FUZZ_B)/$$n || exit 1; done

FORMAT_FILES = $(wildcard src/*.c src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h fuzz/*.c bench/*/*.c \
                bench/*/preload/*.c)
format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)
format:
	clang-format -i $(FORMAT_FILES)

clean:
	rm -rf build build-asan build-fuzz

.PHONY: all deps deps-bench unit check check-layering check-unit check-asan \
        check-asan-integration run bench bench-bin fuzz format-check format clean install uninstall
.PRECIOUS: $(B)/%.o $(B)/tests/unit/%.o $(B)/fuzz/%.o

-include $(shell find $(B) -name '*.d' 2>/dev/null)
