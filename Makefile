# tidemalloc — `make` builds build/libtidemalloc.{so,a}; `make test` runs the
# suite (normal build; a few groups on a build whose free hint table has 64
# entries, so nearly every hint is wrong; the suite on an
# -fsanitize=undefined build).
#   make CC=clang                  build with clang
#   make SANITIZE=undefined BUILD=build-ubsan
#   make DEBUG=1 (asserts) / DEBUG=2 (asserts and O(n) checks)
#   make install PREFIX=/usr/local
#   make demo                      the README's main job
#   make bench / make bench-quick  benchmarks against the peers

CC       ?= cc
BUILD    ?= build
PREFIX   ?= /usr/local
DEBUG    ?= 0
SANITIZE ?=
OPT      ?= -O2

IS_CLANG := $(shell $(CC) --version 2>/dev/null | grep -qi clang && echo 1)

CFLAGS_ALL = -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
             -fPIC -pthread -fvisibility=hidden -fno-strict-aliasing \
             -fno-builtin-malloc -fno-builtin-free -fno-builtin-calloc \
             -fno-builtin-realloc -DTIDE_DEBUG=$(DEBUG) $(CFLAGS)
ifneq ($(IS_CLANG),1)
# Stops gcc from turning zeroing loops into memset calls and from assuming
# exported functions can be interposed (so tide_* calls inline).
CFLAGS_ALL += -fno-tree-loop-distribute-patterns -fno-semantic-interposition
endif
ifneq ($(SANITIZE),)
CFLAGS_ALL += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
LDSAN = -fsanitize=$(SANITIZE)
endif

SRCS  = $(wildcard src/*.c)
HDRS  = $(wildcard src/*.h) include/tidemalloc.h
LAYERS = os conf pagemap pageheap sizeclass slab heap release api

.PHONY: all test check-layers install uninstall clean demo bench bench-quick golden

all: $(BUILD)/libtidemalloc.so $(BUILD)/libtidemalloc.a

$(BUILD)/tidemalloc.o: $(SRCS) $(HDRS) Makefile
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_ALL) -c src/tidemalloc.c -o $@

$(BUILD)/libtidemalloc.so: $(BUILD)/tidemalloc.o
	$(CC) -shared -pthread $(LDSAN) -Wl,-soname,libtidemalloc.so -Wl,-z,now -o $@ $< $(LDFLAGS)

$(BUILD)/libtidemalloc.a: $(BUILD)/tidemalloc.o
	rm -f $@
	ar rcs $@ $<

# Every layer compiles on its own, including only what it declares.
check-layers:
	@for l in $(LAYERS); do $(CC) $(CFLAGS_ALL) -fsyntax-only src/$$l.c || exit 1; done
	@echo "layers compile alone: $(LAYERS)"

test:
	tools/deps.sh test
	$(MAKE) --no-print-directory all check-layers
	$(MAKE) --no-print-directory CC=clang BUILD=build-clang all
	tests/run.sh --lib $(BUILD)/libtidemalloc.so
	$(MAKE) --no-print-directory BUILD=build-hint6 CFLAGS=-DTD_PM_FLAT_BITS=6 all
	tests/run.sh --lib build-hint6/libtidemalloc.so --quick api/ stress/churn stress/xthread release/hint_race
	$(MAKE) --no-print-directory SANITIZE=undefined BUILD=build-ubsan all
	tests/run.sh --lib build-ubsan/libtidemalloc.so --quick

demo:
	tools/deps.sh demo
	$(MAKE) --no-print-directory all
	tools/demo.sh

bench:
	tools/deps.sh bench
	$(MAKE) --no-print-directory all
	bench/run.sh

bench-quick:
	tools/deps.sh bench
	$(MAKE) --no-print-directory all
	bench/run.sh --quick

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BUILD)/libtidemalloc.so $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(BUILD)/libtidemalloc.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/tidemalloc.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' tools/tidemalloc.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/tidemalloc.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/lib/libtidemalloc.so $(DESTDIR)$(PREFIX)/lib/libtidemalloc.a \
	      $(DESTDIR)$(PREFIX)/include/tidemalloc.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/tidemalloc.pc

clean:
	rm -rf build build-*
