# tests/sanitize.mk — the sanitizer builds tests/run.sh runs; included by
# tests/tests.mk.
#
#   make sanitize-build           builds both:
#   tests/bin/ubsan/libhakmem.so  the release library with UBSan; run.sh
#                                 runs api, stress, churn and transfer (the
#                                 glibc binaries) with it as LD_PRELOAD
#   tests/bin/tsan/tsan           tests/tsan.c under TSan, over the sources
#                                 of src/ built with TSan too
#
# Both are built with clang (SAN_CC) and its runtimes (Debian:
# libclang-rt-14-dev), and make test builds each when its runtime is there;
# without it run.sh says it skipped the runs. The UBSan library needs
# clang's runtime: it starts when it is loaded, while gcc's starts at its
# first report, where it calls dlsym, which calls malloc, which waits for
# the hakmem lock held by the code being reported (a report from a slow
# path hangs instead of printing). The library finds the runtime through
# its rpath.
#
# The TSan program's copy of hakmem has the release build's flags and its
# libc names made local (hak_private_object), so the process malloc is
# TSan's own; run.sh runs it with TSAN_OPTIONS=halt_on_error=1 and the
# suppressions of tests/tsan.supp.

SAN_CC       ?= clang
UBSAN_RT     := $(wildcard $(shell $(SAN_CC) -print-file-name=libclang_rt.ubsan_standalone-x86_64.so 2>/dev/null))
TSAN_RT      := $(wildcard $(shell $(SAN_CC) -print-file-name=libclang_rt.tsan-x86_64.a 2>/dev/null))
SAN_CFLAGS   := $(BASE) $(RELEASE) $(CLANG_NOWARN) -g
UBSAN_OBJ    := $(SRC:src/%.c=tests/bin/ubsan/obj/%.o)
TSAN_OBJ     := $(SRC:src/%.c=tests/bin/tsan/obj/%.o)

.PHONY: sanitize-build

sanitize-build: tests/bin/ubsan/libhakmem.so tests/bin/tsan/tsan

ifneq ($(UBSAN_RT),)
test-build: tests/bin/ubsan/libhakmem.so
endif
ifneq ($(TSAN_RT),)
test-build: tests/bin/tsan/tsan
endif

tests/bin/ubsan/obj/%.o: src/%.c $(HDR) Makefile tests/tests.mk tests/sanitize.mk
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(if $(UBSAN_RT),,echo "ubsan: $(SAN_CC) with its UBSan runtime is needed (apt-get install clang libclang-rt-14-dev)" >&2; exit 1;)
	@$(SAN_CC) $(SAN_CFLAGS) $(UBSAN_FLAGS) -c $< -o $@

tests/bin/ubsan/libhakmem.so: $(UBSAN_OBJ) src/exports.map
	$(SAN_CC) $(LDSO) $(UBSAN_FLAGS) -shared-libsan -Wl,-rpath,$(dir $(UBSAN_RT)) -o $@ $(UBSAN_OBJ) -pthread

tests/bin/tsan/obj/%.o: src/%.c $(HDR) Makefile tests/tests.mk tests/sanitize.mk
	@mkdir -p $(@D)
	@echo "  CC      $@"
	@$(if $(TSAN_RT),,echo "tsan: $(SAN_CC) with its TSan runtime is needed (apt-get install clang libclang-rt-14-dev)" >&2; exit 1;)
	@$(SAN_CC) $(SAN_CFLAGS) -fsanitize=thread -c $< -o $@

# os.c's object stays out of the one object, so that the program's link
# can wrap the calls that map memory (tests/tsan.c says why).
tests/bin/tsan/hakmem.o: $(filter-out %/os.o,$(TSAN_OBJ)) src/exports.map
	$(hak_private_object)

tests/bin/tsan/tsan: tests/tsan.c tests/harness.h $(HDR) tests/bin/tsan/hakmem.o tests/bin/tsan/obj/os.o \
                     tests/sanitize.mk
	$(SAN_CC) -std=gnu11 -D_GNU_SOURCE -O1 -g $(WARN) -Iinclude -Isrc -fsanitize=thread tests/tsan.c \
	  tests/bin/tsan/hakmem.o tests/bin/tsan/obj/os.o -o $@ -pthread \
	  -Wl,--wrap=_hak_os_map,--wrap=_hak_os_remap
