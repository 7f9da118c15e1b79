# sharemail: non-recursive GNU make. Everything is built under $(B) (default build/).
#   make            build build/sharemaild and build/sharemail
#   make check      unit tests, fuzz-corpus replay, integration tests
#   make check-asan unit tests and fuzz corpora under ASan+UBSan (build-asan/)
#   make run        demo server in the foreground on loopback
#   make bench      benchmarks (bench/), figures printed as ratios
#   make fuzz       libFuzzer binaries (clang) in build-fuzz/
#   make format-check  clang-format over src/ tests/unit fuzz bench
.SUFFIXES:
.DELETE_ON_ERROR:

B        ?= build
CC       ?= cc
PKGS     := openssl sqlite3 libevent_core libevent_pthreads
DEPS_OK  := $(shell scripts/install-deps >&2 && echo ok)
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS)) -lcrypt -lpthread
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
                               src/deliver/*.c))
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
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Fuzz targets are replayed over their corpora with a plain main() under gcc.
$(B)/fuzz/%-replay: $(B)/fuzz/%.o $(B)/fuzz/replay_main.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/bench/%: $(B)/bench/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit: $(UNIT_BIN) $(FUZZ_REPLAY)
bench-bin: $(BENCH_BIN) all

check: all unit
	python3 tests/run-all --build $(B)

check-unit: unit
	python3 tests/run-all --build $(B) --no-integration

check-asan:
	$(MAKE) B=build-asan SAN=1 unit all
	python3 tests/run-all --build build-asan --no-integration

check-asan-integration:
	$(MAKE) B=build-asan SAN=1 unit all
	python3 tests/run-all --build build-asan --integration-only

run: all
	python3 scripts/demo.py --build $(B)

bench: bench-bin
	python3 bench/minger/run.py --build $(B)
	python3 bench/smtp/run.py --build $(B)
	$(B)/bench/queue/bench_queue_open

FUZZ_B := build-fuzz
fuzz:
	@mkdir -p $(FUZZ_B)
	for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  clang -g -O1 -Isrc -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined $$f \
	    $(LIB_SRC) $(PKG_CFLAGS) $(PKG_LIBS) -o $(FUZZ_B)/$$n || exit 1; done

FORMAT_FILES = $(wildcard src/*.c src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h fuzz/*.c bench/*/*.c)
format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)
format:
	clang-format -i $(FORMAT_FILES)

clean:
	rm -rf build build-asan build-fuzz

.PHONY: all unit check check-unit check-asan check-asan-integration run bench bench-bin fuzz \
        format-check format clean
.PRECIOUS: $(B)/%.o $(B)/tests/unit/%.o $(B)/fuzz/%.o

-include $(shell find $(B) -name '*.d' 2>/dev/null)
