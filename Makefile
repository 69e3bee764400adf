# Makefile for moverz_batch, built with PGXS.
#
#   make && make install      build and install the extension
#   make installcheck         pg_regress suite against a running server
#   test/run.sh               the whole test suite on a throwaway cluster
#
# The versioned install script is generated: the files of sql/src/ are
# concatenated in name order, one file per concern.  The install scripts of
# released versions are kept as released (sql/released/), with an update
# script from each to the next (sql/moverz_batch--A--B.sql).

EXTENSION   = moverz_batch
EXTVERSION  = 0.7.0

MODULE_big  = moverz_batch
OBJS        = src/moverz_batch.o src/shmem.o src/worker_common.o src/photo_worker.o \
              src/claim.o src/ai_client.o src/ai_result.o src/ai_provider.o src/ai_contract.o src/ai_answer.o src/outage.o src/url_policy.o src/progress.o src/assets.o \
              src/inventory_worker.o src/publish_queue.o src/publisher.o \
              src/s3_sign.o src/object_store.o src/object_fetch.o

SQL_SOURCES = $(sort $(wildcard sql/src/*.sql))
DATA_built  = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA        = $(wildcard sql/released/$(EXTENSION)--*.sql) $(wildcard sql/$(EXTENSION)--*--*.sql)

REGRESS      = 01_create_batch 02_status_counters 03_progress_inventory 04_bad_input 05_admin 06_duplicates
REGRESS_OPTS = --inputdir=.

PG_CPPFLAGS = -I$(srcdir)/src -DMOVERZ_VERSION='"$(EXTVERSION)"'
PG_CFLAGS   = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK  = -lcurl -lcrypto

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# the database of make installcheck: PGXS adds --dbname=$(CONTRIB_TESTDB) and
# sets it in Makefile.global, so it is overridden after the include
CONTRIB_TESTDB = moverz_regress

# the version is compiled into the User-Agent of the AI requests
src/ai_client.o src/worker_common.o: Makefile

$(DATA_built): $(SQL_SOURCES)
	cat $^ > $@

# The fake AI service used by the tests, the demo and the benchmarks.
FAKE_AI = test/fake_ai/fake_ai
$(FAKE_AI): $(wildcard test/fake_ai/*.c) test/fake_ai/fake_ai.h
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $(filter %.c,$^) $(shell pkg-config --cflags --libs libmicrohttpd libcrypto) -lpthread

fake_ai: $(FAKE_AI)
#all: $(FAKE_AI)

clean: clean-extra
clean-extra:
	rm -f $(FAKE_AI)
	rm -rf results

.PHONY: fake_ai clean-extra

# --- moverz-batch, the command-line client (C, libpq, libcurl) --------------
# Built by "make" and installed by "make install" next to PostgreSQL's own
# client programs ($(bindir), from pg_config --bindir); see tools/moverz-batch.c.
# libcurl sends the photo files submit uploads (tools/mb_upload.c).
MB_CLIENT      = tools/moverz-batch
MB_CLIENT_SRCS = tools/moverz-batch.c tools/mb_submit.c tools/mb_upload.c tools/mb_monitor.c tools/mb_bar.c
MB_CLIENT_CFLAGS = -O2 -g -Wall -Wextra -Werror -DMB_VERSION='"$(EXTVERSION)"'

all: $(MB_CLIENT)

$(MB_CLIENT): $(MB_CLIENT_SRCS) tools/moverz-batch.h src/image_type.h Makefile
	$(CC) $(MB_CLIENT_CFLAGS) -I$(srcdir)/src -I$(shell $(PG_CONFIG) --includedir) -o $@ $(MB_CLIENT_SRCS) \
		-L$(shell $(PG_CONFIG) --libdir) -lpq -lcurl

install: install-client
install-client: $(MB_CLIENT)
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) $(MB_CLIENT) '$(DESTDIR)$(bindir)/moverz-batch'

uninstall: uninstall-client
uninstall-client:
	rm -f '$(DESTDIR)$(bindir)/moverz-batch'

clean: clean-client
clean-client:
	rm -f $(MB_CLIENT)

.PHONY: install-client uninstall-client clean-client
# --- end of moverz-batch ------------------------------------------------------
