// tests/cxx-own.cc — a program with operator new and delete of its own
// (each block behind a 16-byte header, counted): under hakmem (LD_PRELOAD,
// the release and the secure build) they stay the program's, and hakmem's
// defaults call them as the standard asks: new[] the program's new,
// delete[] and sized delete its delete, sized delete[] its delete (no
// other operator). A block of the program's reaching hakmem's free would
// be an interior pointer, which aborts.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "harness.h"

// Legal C++ (the default sized delete calls it), and the case under test.
#pragma GCC diagnostic ignored "-Wsized-deallocation"

static long allocs, frees;

void *operator new(size_t n) {
  allocs++;
  char *p = static_cast<char *>(malloc(n + 16));
  if (!p) throw std::bad_alloc();
  memcpy(p, &n, sizeof n);
  return p + 16;
}

void operator delete(void *p) noexcept {
  if (!p) return;
  frees++;
  free(static_cast<char *>(p) - 16);
}

struct WithDtor {
  long x[3];
  ~WithDtor() { x[0] = 0; }
};

int main() {
  int *a = new int[10];
  delete[] a;
  CHECKV("new[] and delete[] call the program's new and delete", allocs == 1 && frees == 1, "%ld %ld", allocs,
         frees);
  int *b = new int(4);
  delete b; // sized delete (C++14)
  CHECKV("sized delete calls the program's delete", allocs == 2 && frees == 2, "%ld %ld", allocs, frees);
  WithDtor *w = new WithDtor[3];
  delete[] w; // sized delete[]: the size of the array and its cookie
  CHECKV("sized delete[] calls the program's delete", allocs == 3 && frees == 3, "%ld %ld", allocs, frees);
  ::operator delete(::operator new(100), static_cast<size_t>(100));
  CHECKV("explicit sized delete too", allocs == 4 && frees == 4, "%ld %ld", allocs, frees);
  return th_done();
}
