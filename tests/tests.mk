# tests/tests.mk — builds and runs the test suite; included by the top Makefile.
#
#   make test-build   test binaries into tests/bin/
#   make test         all + debug + test-build, then tests/run.sh
#   make soak         the soak run, SOAK_SECONDS long (default 600)
#   make test-clean
#
# Every test is built four ways: tests/bin/NAME links the release library
# (-lhakmem, rpath to the repo root), tests/bin/debug/NAME the debug library,
# tests/bin/glibc/NAME plain glibc (run under LD_PRELOAD by run.sh), and
# tests/bin/api-static links libhakmem.a with -static. tests/bin/classes
# checks the size-class arithmetic itself: it compiles src/size_class.c in
# (-Isrc), links no allocator, and is built once.

TEST_CXX      ?= g++
TEST_OPT      := -O1 -g -pthread -Wall -Wextra -Werror -Iinclude
# The tests call malloc on purpose with sizes the compiler must not fold.
TEST_NOBUILTIN := -fno-builtin-malloc -fno-builtin-calloc -fno-builtin-realloc -fno-builtin-free
TEST_CFLAGS   := -std=gnu11 -D_GNU_SOURCE $(TEST_OPT) $(TEST_NOBUILTIN)
TEST_CXXFLAGS := -std=gnu++17 -D_GNU_SOURCE $(TEST_OPT) $(TEST_NOBUILTIN)
TEST_LIBS     := -ldl
TEST_LINK_REL := -L. -Wl,--no-as-needed -lhakmem -Wl,--disable-new-dtags,-rpath,'$$ORIGIN/../..'
TEST_LINK_DBG := -Ldebug -Wl,--no-as-needed -lhakmem \
                 -Wl,--disable-new-dtags,-rpath,'$$ORIGIN/../../../debug'

TEST_C_NAMES  := api stress fork churn transfer foreign tdtor options tiers bigcache rss
TEST_DEPS     := tests/harness.h tests/util.h include/hakmem.h tests/tests.mk

TEST_REL_C    := $(TEST_C_NAMES:%=tests/bin/%) tests/bin/soak
TEST_DBG_C    := $(TEST_C_NAMES:%=tests/bin/debug/%)
TEST_GLIBC_C  := $(TEST_C_NAMES:%=tests/bin/glibc/%) tests/bin/glibc/dlopen tests/bin/glibc/soak
TEST_BINS     := $(TEST_REL_C) $(TEST_DBG_C) $(TEST_GLIBC_C) tests/bin/cxx \
                 tests/bin/debug/cxx tests/bin/glibc/cxx tests/bin/api-static \
                 tests/bin/classes

.PHONY: test test-build test-clean soak

test-build: $(TEST_BINS)

test: all debug test-build
	bash tests/run.sh

# The soak run (tests/soak.c): SOAK_SECONDS of every tier and thread churn at
# once, RSS every 10 s and a verdict; make test runs it for 20 s.
SOAK_SECONDS ?= 600
soak: all tests/bin/soak
	tests/bin/soak $(SOAK_SECONDS)

test-clean:
	rm -rf tests/bin

$(TEST_REL_C): tests/bin/%: tests/%.c $(TEST_DEPS) libhakmem.so
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -DTEST_LINKED $< -o $@ $(TEST_LINK_REL) $(TEST_LIBS)

$(TEST_DBG_C): tests/bin/debug/%: tests/%.c $(TEST_DEPS) debug/libhakmem.so
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -DTEST_LINKED $< -o $@ $(TEST_LINK_DBG) $(TEST_LIBS)

$(TEST_GLIBC_C): tests/bin/glibc/%: tests/%.c $(TEST_DEPS)
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $< -o $@ $(TEST_LIBS)

tests/bin/cxx: tests/cxx.cc $(TEST_DEPS) libhakmem.so
	@mkdir -p $(@D)
	$(TEST_CXX) $(TEST_CXXFLAGS) -DTEST_LINKED $< -o $@ $(TEST_LINK_REL) $(TEST_LIBS)

tests/bin/debug/cxx: tests/cxx.cc $(TEST_DEPS) debug/libhakmem.so
	@mkdir -p $(@D)
	$(TEST_CXX) $(TEST_CXXFLAGS) -DTEST_LINKED $< -o $@ $(TEST_LINK_DBG) $(TEST_LIBS)

tests/bin/glibc/cxx: tests/cxx.cc $(TEST_DEPS)
	@mkdir -p $(@D)
	$(TEST_CXX) $(TEST_CXXFLAGS) $< -o $@ $(TEST_LIBS)

# Linking -static proves libhakmem.a defines the whole glibc malloc set:
# otherwise libc.a's malloc.o is pulled in and the link fails on duplicates.
tests/bin/api-static: tests/api.c $(TEST_DEPS) libhakmem.a
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -DTEST_STATIC $< -o $@ -static -L. -lhakmem

tests/bin/classes: tests/classes.c src/size_class.c src/size_class.h tests/harness.h tests/tests.mk
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -Isrc tests/classes.c src/size_class.c -o $@
