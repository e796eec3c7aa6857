# install.mk — make install, make uninstall and make deb; included by the
# top Makefile.
#
#   make install     installs under PREFIX (/usr/local), or where BINDIR,
#                    LIBDIR, INCLUDEDIR and MANDIR say; DESTDIR stages it
#   make uninstall   removes what make install put there (the same variables)
#   make deb         Debian packages (debian/) into build/deb/, checked by lintian
#
# What is installed:
#   LIBDIR/libhakmem.so.0.x.y          the default build; libhakmem.so.0 (its
#                                      soname) links to it, libhakmem.so
#                                      (for -lhakmem) to that; libhakmem.a
#   LIBDIR/libhakmem-secure.*          the secure build, the same four
#   LIBDIR/libhakmem-stats.*           the stats build, the same four: the
#                                      launcher's run --count-all preloads
#                                      it, and a program that reads its own
#                                      exact counts (hak_stats) links it
#   LIBDIR/libhakmem-profile.*         the profile build, the same four: the
#                                      only one that samples with
#                                      HAKMEM_PROFILE=1 (run --profile
#                                      preloads it)
#   LIBDIR/pkgconfig/hakmem.pc, INCLUDEDIR/hakmem.h
#   BINDIR/hakmem                      the launcher, built to find the
#                                      libraries in LIBDIR
#   MANDIR/man1/hakmem.1, MANDIR/man3/hakmem.3
#
# What it installs is made in build/install/ for the layout asked for.

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
INSTALL    ?= install

INST        := build/install
PKGCONFIGDIR = $(LIBDIR)/pkgconfig
HAK_LIBS    := libhakmem libhakmem-secure libhakmem-stats libhakmem-profile
# Every path make install writes, without DESTDIR: make uninstall removes these.
INSTALLED    = $(foreach l,$(HAK_LIBS),$(addprefix $(LIBDIR)/$(l),.so.$(VERSION) .so.$(SOVERSION) .so .a)) \
               $(PKGCONFIGDIR)/hakmem.pc $(INCLUDEDIR)/hakmem.h $(BINDIR)/hakmem \
               $(MANDIR)/man1/hakmem.1 $(MANDIR)/man3/hakmem.3
# The man pages' date: the release's under dpkg-buildpackage
# (SOURCE_DATE_EPOCH, from debian/changelog), else today.
MAN_DATE     = $(shell date -u -d @$${SOURCE_DATE_EPOCH:-$$(date +%s)} +%Y-%m-%d)

.PHONY: install install-build uninstall deb FORCE

# What make install copies, built (dh_auto_build makes this with the layout).
install-build: $(HAK_LIBS:%=%.so) $(HAK_LIBS:%=%.a) $(INST)/hakmem $(INST)/hakmem.pc $(INST)/hakmem.1 \
               $(INST)/hakmem.3

install: install-build
	$(INSTALL) -d $(addprefix $(DESTDIR),$(LIBDIR) $(PKGCONFIGDIR) $(INCLUDEDIR) $(BINDIR) $(MANDIR)/man1 \
	  $(MANDIR)/man3)
	for l in $(HAK_LIBS); do \
	  $(INSTALL) -m 644 $$l.so $(DESTDIR)$(LIBDIR)/$$l.so.$(VERSION) && \
	  ln -sfn $$l.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$$l.so.$(SOVERSION) && \
	  ln -sfn $$l.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/$$l.so && \
	  $(INSTALL) -m 644 $$l.a $(DESTDIR)$(LIBDIR)/$$l.a || exit 1; \
	done
	$(INSTALL) -m 644 $(INST)/hakmem.pc $(DESTDIR)$(PKGCONFIGDIR)/hakmem.pc
	$(INSTALL) -m 644 include/hakmem.h $(DESTDIR)$(INCLUDEDIR)/hakmem.h
	$(INSTALL) -m 755 $(INST)/hakmem $(DESTDIR)$(BINDIR)/hakmem
	$(INSTALL) -m 644 $(INST)/hakmem.1 $(DESTDIR)$(MANDIR)/man1/hakmem.1
	$(INSTALL) -m 644 $(INST)/hakmem.3 $(DESTDIR)$(MANDIR)/man3/hakmem.3

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))

# The layout the files of build/install/ are made for, rewritten only when
# it changes, so that they are made again then.
$(INST)/layout: FORCE
	@mkdir -p $(@D)
	@echo '$(PREFIX) $(BINDIR) $(LIBDIR) $(INCLUDEDIR) $(MANDIR) $(MAN_DATE)' | cmp -s - $@ || \
	  echo '$(PREFIX) $(BINDIR) $(LIBDIR) $(INCLUDEDIR) $(MANDIR) $(MAN_DATE)' >$@

# The launcher, finding the libraries in LIBDIR as seen from BINDIR (so that
# a tree staged in DESTDIR finds its own).
$(INST)/hakmem: launcher/hakmem.c src/options.h include/hakmem.h Makefile install.mk $(INST)/layout
	$(LAUNCHER_CC) -DHAK_LIBDIR_FROM_BINDIR='"$(shell realpath -m --relative-to=$(BINDIR) $(LIBDIR))"' \
	  -o $@ launcher/hakmem.c

$(INST)/hakmem.pc: install.mk $(INST)/layout include/hakmem.h
	@printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCLUDEDIR)' '' \
	  'Name: hakmem' 'Description: general-purpose memory allocator, a drop-in replacement for malloc' \
	  'Version: $(VERSION)' \
	  'Libs: -L$${libdir} -lhakmem' 'Libs.private: -pthread' 'Cflags: -I$${includedir}' >$@

# hakmem(3) takes its lists of options and statistics from the sources
# (man/fragments.c prints them); both pages get the version, date and paths.
$(INST)/fragments: man/fragments.c src/options.h include/hakmem.h
	@mkdir -p $(@D)
	$(CC) -std=c11 -O1 -Iinclude -Isrc $(WARN) -o $@ man/fragments.c

$(INST)/options.man $(INST)/stats.man: $(INST)/%.man: $(INST)/fragments
	$(INST)/fragments $* >$@

$(INST)/hakmem.1 $(INST)/hakmem.3: $(INST)/%: man/%.in $(INST)/options.man $(INST)/stats.man $(INST)/layout
	sed -e 's|@VERSION@|$(VERSION)|g; s|@DATE@|$(MAN_DATE)|g; s|@LIBDIR@|$(LIBDIR)|g' \
	  -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	  -e '/^@OPTIONS@$$/{r $(INST)/options.man' -e 'd;}' -e '/^@STATISTICS@$$/{r $(INST)/stats.man' -e 'd;}' \
	  $< >$@

# make deb: dpkg-buildpackage builds the packages from a copy of what the
# build needs, in build/deb/hakmem-VERSION (so the tree's own build is left
# alone), and writes them beside it; lintian then checks them, and a warning
# fails. The tools (and build-essential, which dpkg-buildpackage requires)
# are installed with apt-get when missing (as root).
DEB_TOOLS := dpkg-buildpackage:dpkg-dev dh:debhelper lintian:lintian
DEB_SRC   := build/deb/hakmem-$(VERSION)

deb:
	@missing=; for t in $(DEB_TOOLS); do command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	dpkg -s build-essential >/dev/null 2>&1 || missing="$$missing build-essential"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make deb: missing$$missing (apt-get install$$missing as root)" >&2; exit 1; fi; \
	  echo "make deb: installing$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing || exit 1; \
	fi
	@v=$$(dpkg-parsechangelog -l debian/changelog -S Version); [ "$$v" = "$(VERSION)" ] || \
	  { echo "make deb: debian/changelog is at $$v, include/hakmem.h at $(VERSION): add a changelog entry (dch -v $(VERSION))" >&2; exit 1; }
	rm -rf build/deb && mkdir -p $(DEB_SRC)/tests $(DEB_SRC)/bench
	cp -r Makefile install.mk src include launcher man debian $(DEB_SRC)/
	cp tests/*.mk $(DEB_SRC)/tests/ && cp bench/*.mk $(DEB_SRC)/bench/
	cd $(DEB_SRC) && dpkg-buildpackage -b -us -uc
	lintian --fail-on error,warning build/deb/hakmem_$(VERSION)_amd64.changes
	@ls build/deb/*.deb
