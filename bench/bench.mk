# Benchmarks (included by the top Makefile). Programs are plain glibc-linked
# executables in bench/bin/; the runner swaps allocators with LD_PRELOAD.
#   make bench-build   build the benchmark programs
#   make bench         build the library and the programs, run bench/run.sh
#   make bench-instr   build the library and the probe, count callgrind instructions per free+malloc
#   make bench-programs  real programs (sqlite3, python3, g++, xz, redis) under each allocator: peak RSS, time
#   make bench-clean   remove bench/bin and temporary results
# Runner settings come from the environment or the command line, e.g.
#   make bench BENCH_QUICK=1   make bench BENCH_RUNS=9 BENCH_THREADS=4

BENCH_CC     ?= $(CC)
BENCH_CFLAGS ?= -O2 -pthread -std=gnu11 -Wall -Wextra
BENCH_LDLIBS ?= -lm
BENCH_BIN    := bench/bin
BENCH_PROGS  := fixed_size random_mixed mid_large_mt comprehensive larson xthread_churn large_churn prodcons \
                false_sharing mem_efficiency fragment phases fastpath measure
BENCH_EXES   := $(BENCH_PROGS:%=$(BENCH_BIN)/%)

.PHONY: bench bench-build bench-instr bench-programs bench-clean bench-deps bench-deps-instr bench-deps-programs

bench-build: $(BENCH_EXES)

$(BENCH_BIN)/%: bench/src/%.c bench/src/bench.h bench/bench.mk | $(BENCH_BIN)
	$(BENCH_CC) $(BENCH_CFLAGS) -o $@ $< $(BENCH_LDLIBS)

$(BENCH_BIN):
	@mkdir -p $@

# Installs gnuplot and the peer allocators when missing (apt-get, only then);
# a peer that cannot be installed is skipped by the runner.
bench-deps:
	@sh bench/deps.sh bench

bench-deps-instr:
	@sh bench/deps.sh instr

# The runner starts only once the library, the programs and the packages are
# all there, so `make -j bench` is safe.
bench: all bench-build bench-deps
	@bash bench/run.sh

bench-instr: all bench-build bench-deps-instr
	@bash bench/instr.sh

bench-deps-programs:
	@sh bench/deps.sh programs

bench-programs: all bench-build bench-deps-programs
	@bash bench/programs.sh

bench-clean:
	rm -rf $(BENCH_BIN) bench/results/tmp
