/* cxx.c — C++'s replaceable operator new and delete, as libstdc++
 * defines them over malloc and free, in the shared libraries only (the
 * Makefile leaves this file out of the archives: a static link could not
 * throw std::bad_alloc without libstdc++, and C programs have none; their
 * C++ programs keep libstdc++'s operators, which call malloc and free).
 *
 * Here the secure build knows a block of new from one of new[] (and from
 * malloc's) and sees the size sized delete is given: secure.c checks
 * both; the default build saves a call. The operators are weak: a program
 * that defines its own keeps them. As the standard asks of the defaults,
 * new[] calls the program's new if it has one, delete[] and sized delete
 * its delete, and sized delete[] its delete[]: each looks whether the
 * operator it would call is still this file's. libstdc++'s other forms
 * (nothrow, aligned) call these, or aligned_alloc and free. When
 * allocation fails, new calls std::get_new_handler's handler while there
 * is one, else throws std::bad_alloc (without libstdc++ loaded: a line on
 * stderr, and abort). */
#include <dlfcn.h>

#include "alloc.h"

#define CXX_WEAK __attribute__((weak, visibility("default")))
CXX_WEAK void *_Znwm(size_t size);
CXX_WEAK void *_Znam(size_t size);
CXX_WEAK void _ZdlPv(void *p);
CXX_WEAK void _ZdaPv(void *p);
CXX_WEAK void _ZdlPvm(void *p, size_t size);
CXX_WEAK void _ZdaPvm(void *p, size_t size);
typedef void (*hak_cxx_handler_t)(void);

/* libstdc++'s std::get_new_handler and std::__throw_bad_alloc, looked up
 * when first needed (a C program may load libstdc++ later, with a
 * plugin): NULL if it is not loaded. */
static void *cxx_symbol(void *_Atomic *cache, const char *name) {
  void *f = atomic_load_explicit(cache, memory_order_acquire);
  if (!f) {
    f = dlsym(RTLD_DEFAULT, name);
    atomic_store_explicit(cache, f, memory_order_release);
  }
  return f;
}

static __attribute__((noinline, cold)) void *cxx_alloc_failed(size_t size, int form, const char *who) {
  static void *_Atomic get_handler;
  static void *_Atomic throw_bad_alloc;
  for (;;) {
    hak_cxx_handler_t (*get)(void) =
        (hak_cxx_handler_t(*)(void))cxx_symbol(&get_handler, "_ZSt15get_new_handlerv");
    hak_cxx_handler_t handler = get ? get() : NULL;
    if (!handler) {
      void (*throw_it)(void) = (void (*)(void))cxx_symbol(&throw_bad_alloc, "_ZSt17__throw_bad_allocv");
      if (throw_it) throw_it();
      hak_buf_t b = {.fd = 2};
      _hak_buf_str(&b, "hakmem: ");
      _hak_buf_str(&b, who);
      _hak_buf_str(&b, "(): out of memory, and no std::bad_alloc to throw (libstdc++ is not loaded)\n");
      _hak_buf_flush(&b);
      _hak_os_abort();
    }
    handler();
    void *p = hak_cfg_secure ? _hak_secure_alloc(size, 16, false, form, who) : hak_alloc_inline(size, who);
    if (p) return p;
  }
}

static inline __attribute__((always_inline)) void *cxx_block(size_t size, int form, const char *who) {
  void *p = hak_cfg_secure ? _hak_secure_alloc(size, 16, false, form, who) : hak_alloc_inline(size, who);
  return HAK_LIKELY(p) ? p : cxx_alloc_failed(size, form, who);
}

static inline __attribute__((always_inline)) void cxx_release(void *p, size_t size, bool sized, int form,
                                                              const char *who) {
  if (hak_cfg_secure) _hak_secure_free(p, size, sized, form, who);
  else hak_free_inline(p, who);
}

#define CXX_OPERATOR(name, impl) __typeof__(name) name __attribute__((alias(#impl), used))

static void *cxx_alloc_object(size_t size) { return cxx_block(size, HAK_FORM_OBJECT, "operator new"); }

static void cxx_free_object(void *p) { cxx_release(p, 0, false, HAK_FORM_OBJECT, "operator delete"); }

static void *cxx_alloc_array(size_t size) {
  if ((void *)_Znwm != (void *)cxx_alloc_object) return _Znwm(size); /* the program's */
  return cxx_block(size, HAK_FORM_ARRAY, "operator new[]");
}

static void cxx_free_array(void *p) {
  if ((void *)_ZdlPv != (void *)cxx_free_object) _ZdlPv(p);
  else cxx_release(p, 0, false, HAK_FORM_ARRAY, "operator delete[]");
}

static void cxx_free_object_sized(void *p, size_t size) {
  if ((void *)_ZdlPv != (void *)cxx_free_object) _ZdlPv(p);
  else cxx_release(p, size, true, HAK_FORM_OBJECT, "operator delete");
}

static void cxx_free_array_sized(void *p, size_t size) {
  if ((void *)_ZdaPv != (void *)cxx_free_array || (void *)_ZdlPv != (void *)cxx_free_object) _ZdaPv(p);
  else cxx_release(p, size, true, HAK_FORM_ARRAY, "operator delete[]");
}

CXX_OPERATOR(_Znwm, cxx_alloc_object);
CXX_OPERATOR(_Znam, cxx_alloc_array);
CXX_OPERATOR(_ZdlPv, cxx_free_object);
CXX_OPERATOR(_ZdaPv, cxx_free_array);
CXX_OPERATOR(_ZdlPvm, cxx_free_object_sized);
CXX_OPERATOR(_ZdaPvm, cxx_free_array_sized);
