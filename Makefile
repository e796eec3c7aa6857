# hakmem build. `make` builds the release library and the secure one
# (libhakmem-secure: the same sources with HAK_SECURE=1), the stats one
# (libhakmem-stats: HAK_STATS_BUILD=1, every call counted), the profile one
# (libhakmem-profile: HAK_PROFILE_BUILD=1, the heap profiler's countdown on
# malloc's fast path) and the launcher (./hakmem), `make debug` the
# checking one (and the profile build checked alike), `make test` builds and runs every test, `make bench` compares hakmem
# with glibc and the installed peer allocators, `make install` and `make deb`
# install it (install.mk).

CC      ?= gcc
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
BASE    := -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden -ftls-model=initial-exec \
           -fno-plt -fno-semantic-interposition -fno-builtin-malloc -fno-builtin-free \
           -pthread -Iinclude -Isrc $(WARN)
RELEASE := -O2 -DHAK_DEBUG=0 -DNDEBUG
DEBUG   := -O1 -g -DHAK_DEBUG=1
SECURE  := $(RELEASE) -DHAK_SECURE=1
STATS   := $(RELEASE) -DHAK_STATS_BUILD=1
PROFILE := $(RELEASE) -DHAK_PROFILE_BUILD=1
LDSO    := -shared -Wl,-z,nodelete -Wl,-z,now -Wl,--version-script=src/exports.map

# The version (include/hakmem.h); its major number is the shared libraries'
# soname: libhakmem.so.$(SOVERSION).
VERSION   := $(shell sed -n 's/^\#define HAKMEM_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$$/\2/p' include/hakmem.h | \
               paste -sd.)
SOVERSION := $(firstword $(subst ., ,$(VERSION)))

SRC     := $(sort $(wildcard src/*.c))
HDR     := $(wildcard src/*.h include/*.h)
OBJ_R   := $(SRC:src/%.c=build/release/%.o)
OBJ_D   := $(SRC:src/%.c=build/debug/%.o)
OBJ_S   := $(SRC:src/%.c=build/secure/%.o)
OBJ_T   := $(SRC:src/%.c=build/stats/%.o)
OBJ_P   := $(SRC:src/%.c=build/profile/%.o)
OBJ_DP  := $(SRC:src/%.c=build/debug-profile/%.o)

.PHONY: all debug clean test bench
all: libhakmem.so libhakmem.a libhakmem-secure.so libhakmem-secure.a libhakmem-stats.so libhakmem-stats.a \
     libhakmem-profile.so libhakmem-profile.a hakmem

debug: debug/libhakmem.so debug/libhakmem.a debug/libhakmem-profile.so

build/release/%.o: src/%.c $(HDR) Makefile
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(CC) $(BASE) $(RELEASE) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

build/debug/%.o: src/%.c $(HDR) Makefile
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(CC) $(BASE) $(DEBUG) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

build/secure/%.o: src/%.c $(HDR) Makefile
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(CC) $(BASE) $(SECURE) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# A release library: the objects among the prerequisites, with the soname
# NAME.so.$(SOVERSION) and that name as a link beside it, which programs
# linked with -lhakmem (the tests) load.
define hak_release_so
	$(CC) $(LDSO) -Wl,-soname,$(@F).$(SOVERSION) $(LDFLAGS) -o $@ $(filter %.o,$^) -pthread
	ln -sf $(@F) $@.$(SOVERSION)
endef

libhakmem.so: $(OBJ_R) src/exports.map
	$(hak_release_so)

# The archives leave out C++'s operators (src/cxx.c says why).
libhakmem.a: $(OBJ_R)
	rm -f $@ && ar rcs $@ $(filter-out %/cxx.o,$(OBJ_R))

build/stats/%.o: src/%.c $(HDR) Makefile
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(CC) $(BASE) $(STATS) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

libhakmem-stats.so: $(OBJ_T) src/exports.map
	$(hak_release_so)

libhakmem-stats.a: $(OBJ_T)
	rm -f $@ && ar rcs $@ $(filter-out %/cxx.o,$(OBJ_T))

build/profile/%.o: src/%.c $(HDR) Makefile
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(CC) $(BASE) $(PROFILE) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

libhakmem-profile.so: $(OBJ_P) src/exports.map
	$(hak_release_so)

libhakmem-profile.a: $(OBJ_P)
	rm -f $@ && ar rcs $@ $(filter-out %/cxx.o,$(OBJ_P))

libhakmem-secure.so: $(OBJ_S) src/exports.map
	$(hak_release_so)

libhakmem-secure.a: $(OBJ_S)
	rm -f $@ && ar rcs $@ $(filter-out %/cxx.o,$(OBJ_S))

# The launcher (launcher/hakmem.c): an ordinary program, on glibc's malloc.
# This one finds the libraries beside it or in ../lib; install.mk builds
# the one it installs.
LAUNCHER_CC = $(CC) -std=gnu11 -O2 -Iinclude -Isrc $(WARN) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS)
hakmem: launcher/hakmem.c src/options.h include/hakmem.h Makefile
	$(LAUNCHER_CC) -o $@ launcher/hakmem.c

debug/libhakmem.so: $(OBJ_D) src/exports.map
	@mkdir -p $(@D)
	$(CC) $(LDSO) -o $@ $(OBJ_D) -pthread

# The profile build checked as the debug one is (its sampled blocks' runs).
build/debug-profile/%.o: src/%.c $(HDR) Makefile
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(CC) $(BASE) $(DEBUG) -DHAK_PROFILE_BUILD=1 $(CPPFLAGS) $(CFLAGS) -c $< -o $@

debug/libhakmem-profile.so: $(OBJ_DP) src/exports.map
	@mkdir -p $(@D)
	$(CC) $(LDSO) -o $@ $(OBJ_DP) -pthread

debug/libhakmem.a: $(OBJ_D)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $(filter-out %/cxx.o,$(OBJ_D))

-include install.mk
-include tests/tests.mk
-include bench/bench.mk

clean: test-clean bench-clean
	rm -rf build debug libhakmem.so libhakmem.a libhakmem-secure.so libhakmem-secure.a libhakmem-stats.so \
	  libhakmem-stats.a libhakmem-profile.so libhakmem-profile.a hakmem \
	  $(addsuffix .$(SOVERSION),libhakmem.so libhakmem-secure.so libhakmem-stats.so libhakmem-profile.so)
