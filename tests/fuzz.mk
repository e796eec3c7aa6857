# tests/fuzz.mk — the libFuzzer target (tests/fuzz/alloc.c); included by
# tests/tests.mk.
#
#   make fuzz-build   tests/bin/fuzz/alloc, and alloc-secure over the
#                     secure build (HAK_SECURE=1)
#   make fuzz         builds alloc and runs it for FUZZ_SECONDS (default 60)
#                     over a copy of tests/fuzz/corpus/ in a temporary
#                     directory; a crash is saved in tests/fuzz/crashes/ and
#                     fails it (FUZZER=tests/bin/fuzz/alloc-secure: the other)
#
# The fuzzer is built with clang (FUZZ_CC) and libFuzzer (Debian:
# libclang-rt-14-dev): the sources of src/ with the debug build's flags
# (invariant checks after slow-path steps), libFuzzer's coverage and UBSan,
# linked into one relocatable object whose libc names (malloc, free and the
# rest of src/exports.map) are made local, so the process malloc stays
# glibc's and the fuzzer calls hakmem only through hak_*. make test builds
# both when clang and libFuzzer are there and tests/run.sh runs each for
# FUZZ_SECONDS (default 60); without them run.sh says it skipped them.
#
# A crash replays with `tests/bin/fuzz/alloc tests/fuzz/crashes/crash-...`.
# The inputs that found bugs in src/ are seeds in tests/fuzz/corpus/ (written
# by tests/fuzz/corpus.sh with the rest), which run.sh also replays one by
# one.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
# libFuzzer's options for every run (tests/run.sh reads this line): inputs of
# up to 1024 operations, 10 s per input, 1 GiB of RSS.
FUZZ_FLAGS   := -max_len=4096 -timeout=10 -rss_limit_mb=1024 -print_final_stats=1
FUZZ_CFLAGS  := $(BASE) $(DEBUG) $(CLANG_NOWARN) -fsanitize=fuzzer-no-link $(UBSAN_FLAGS)
FUZZ_RT      := $(wildcard $(shell $(FUZZ_CC) -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null))
FUZZ_OBJ     := $(SRC:src/%.c=tests/bin/fuzz/obj/%.o)
# The same target over the secure build (alloc-secure).
FUZZ_SEC_OBJ := $(SRC:src/%.c=tests/bin/fuzz/secure-obj/%.o)

.PHONY: fuzz fuzz-build

fuzz-build: tests/bin/fuzz/alloc tests/bin/fuzz/alloc-secure

ifneq ($(FUZZ_RT),)
test-build: tests/bin/fuzz/alloc tests/bin/fuzz/alloc-secure
endif

FUZZER ?= tests/bin/fuzz/alloc
fuzz: $(FUZZER)
	@mkdir -p tests/fuzz/crashes
	@d=$$(mktemp -d "$${TMPDIR:-/tmp}/hakmem-fuzz.XXXXXX") && cp tests/fuzz/corpus/* "$$d"/ && \
	  $(FUZZER) $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=tests/fuzz/crashes/ "$$d"; rc=$$?; rm -rf "$$d"; exit $$rc

tests/bin/fuzz/obj/%.o: src/%.c $(HDR) Makefile tests/tests.mk tests/fuzz.mk
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(if $(FUZZ_RT),,echo "fuzz: $(FUZZ_CC) with libFuzzer is needed (apt-get install clang libclang-rt-14-dev)" >&2; exit 1;)
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

tests/bin/fuzz/secure-obj/%.o: src/%.c $(HDR) Makefile tests/tests.mk tests/fuzz.mk
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(if $(FUZZ_RT),,echo "fuzz: $(FUZZ_CC) with libFuzzer is needed (apt-get install clang libclang-rt-14-dev)" >&2; exit 1;)
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -DHAK_SECURE=1 -c $< -o $@

tests/bin/fuzz/hakmem.o: $(FUZZ_OBJ) src/exports.map
	$(hak_private_object)

tests/bin/fuzz/hakmem-secure.o: $(FUZZ_SEC_OBJ) src/exports.map
	$(hak_private_object)

tests/bin/fuzz/alloc tests/bin/fuzz/alloc-secure: tests/bin/fuzz/alloc%: tests/fuzz/alloc.c tests/bin/fuzz/hakmem%.o \
                                                  tests/bound.h include/hakmem.h tests/fuzz.mk
	$(FUZZ_CC) -std=gnu11 -D_GNU_SOURCE -O2 -g $(WARN) -Iinclude -fsanitize=fuzzer $(UBSAN_FLAGS) \
	  tests/fuzz/alloc.c tests/bin/fuzz/hakmem$*.o -o $@ -pthread
