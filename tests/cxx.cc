// tests/cxx.cc — C++ new and delete through hakmem: plain, sized, aligned
// (alignas(256) types and explicit std::align_val_t), arrays with cookies,
// nothrow and throwing failure, and standard containers. libstdc++'s
// operators call malloc/free, so every block must be hakmem's: in_use grows
// while they live and returns exactly to its start when all are deleted.
#include <malloc.h>
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "harness.h"
#include "util.h"

struct alignas(256) Big256 {
  unsigned char b[300];
};

struct Tracked {
  static int live;
  std::string s;
  Tracked() : s(40, 'x') { ++live; }
  ~Tracked() { --live; }
};
int Tracked::live;

static hak_stats_t stats() {
  hak_stats_t s;
  memset(&s, 0, sizeof s);
  if (hak.stats) hak.stats(&s);
  return s;
}

static void test_plain_and_sized() {
  int *ip = LAUNDER(new int(42));
  CHECK("new int works", *ip == 42 && malloc_usable_size(ip) >= sizeof(int));
  delete LAUNDER(ip);
  const size_t sizes[] = {1, 17, 1000, 5000, 100000, 3 * MiB};
  for (size_t n : sizes) {
    void *p = ::operator new(n);
    memset(p, 0x5A, n);
    CHECKV("operator new(n) returns a malloc block of >= n bytes", malloc_usable_size(p) >= n, "n=%zu", n);
    ::operator delete(p, n);
    char *a = LAUNDER(new char[n]);
    memset(a, 1, n);
    CHECKV("new char[n] block is usable", all_bytes(a, n, 1), "n=%zu", n);
    delete[] LAUNDER(a);
  }
}

static void test_arrays() {
  Tracked *arr = LAUNDER(new Tracked[100]);
  CHECK("new[] constructs every element", Tracked::live == 100 && arr[99].s.size() == 40);
  delete[] LAUNDER(arr);
  CHECK("delete[] destroys every element", Tracked::live == 0);
}

static void test_aligned() {
  enum { N = 100 };
  Big256 *b[N];
  bool aligned = true;
  for (int i = 0; i < N; i++) {
    b[i] = LAUNDER(new Big256);
    aligned &= (uintptr_t)b[i] % 256 == 0;
    memset(b[i]->b, i, sizeof b[i]->b);
  }
  CHECK("new of an alignas(256) type is 256-aligned", aligned);
  bool intact = true;
  for (int i = 0; i < N; i++) intact &= all_bytes(b[i]->b, sizeof b[i]->b, (unsigned char)i);
  CHECK("alignas(256) objects are intact", intact);
  for (int i = 0; i < N; i++) delete LAUNDER(b[i]);
  Big256 *ba = LAUNDER(new Big256[7]);
  CHECK("new[] of an alignas(256) type is 256-aligned", (uintptr_t)ba % 256 == 0);
  memset(ba, 3, sizeof(Big256) * 7);
  delete[] LAUNDER(ba);

  const size_t aligns[] = {16, 64, 128, 4096, 65536, 2 * MiB};
  for (size_t a : aligns) {
    void *p = ::operator new(10000, std::align_val_t(a));
    CHECKV("operator new(n, align_val_t) aligns", (uintptr_t)p % a == 0, "align %zu", a);
    memset(p, 7, 10000);
    ::operator delete(p, 10000, std::align_val_t(a));
    void *q = ::operator new[](300, std::align_val_t(a));
    CHECKV("operator new[](n, align_val_t) aligns", (uintptr_t)q % a == 0, "align %zu", a);
    memset(q, 8, 300);
    ::operator delete[](q, std::align_val_t(a));
  }
}

static void test_failure() {
  size_t huge = LAUNDER((size_t)PTRDIFF_MAX + 1);
  void *p = ::operator new(huge, std::nothrow);
  CHECK("nothrow operator new of a huge size returns nullptr", p == nullptr);
  p = ::operator new(huge, std::align_val_t(64), std::nothrow);
  CHECK("nothrow aligned operator new of a huge size returns nullptr", p == nullptr);
  bool threw = false;
  try {
    void *x = ::operator new(huge);
    ::operator delete(x);
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  CHECK("operator new of a huge size throws std::bad_alloc", threw);
  static int calls;
  std::set_new_handler([] {
    if (++calls == 3) std::set_new_handler(nullptr);
  });
  threw = false;
  try {
    void *x = ::operator new[](huge);
    ::operator delete[](x);
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  CHECKV("a failing operator new[] calls the new handler until it is gone, then throws", threw && calls == 3,
         "%d calls", calls);
}

static void test_containers() {
  hak_stats_t s0 = stats();
  {
    std::vector<std::string> v;
    for (int i = 0; i < 100000; i++)
      v.push_back(std::to_string((long)i * 7919 % 100003) + "-a-string-too-long-for-sso");
    std::sort(v.begin(), v.end());
    bool sorted = std::is_sorted(v.begin(), v.end());
    std::map<int, std::vector<int>> m;
    for (int i = 0; i < 20000; i++) m[i % 997].push_back(i);
    long sum = 0;
    for (auto &kv : m)
      for (int x : kv.second) sum += x;
    hak_stats_t s1 = stats();
    CHECK("std::sort of 100000 strings", sorted && v.size() == 100000);
    CHECK("std::map of vectors holds every value", sum == 20000L * 19999 / 2);
    CHECKV("container memory comes from hakmem", s1.in_use >= s0.in_use + 4 * MiB, "in_use %zu -> %zu",
           s0.in_use, s1.in_use);
  }
  hak_stats_t s2 = stats();
  CHECKV("every C++ block returned to hakmem", s2.in_use == s0.in_use, "in_use %zu -> %zu", s0.in_use,
         s2.in_use);
}

int main() {
  int have = hak_load();
  CHECK("hakmem is the process malloc", have && hakmem_is_malloc());
  hak_stats_t s0 = stats();
  test_plain_and_sized();
  test_arrays();
  test_aligned();
  test_failure();
  hak_stats_t s1 = stats();
  CHECKV("new/delete leave in_use where it started", s1.in_use == s0.in_use, "in_use %zu -> %zu", s0.in_use,
         s1.in_use);
  test_containers();
  return th_done();
}
