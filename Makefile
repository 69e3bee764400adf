# Makefile for moverz_batch, built with PGXS.
#
#   make && make install      build and install the extension
#   make installcheck         pg_regress suite against a running server
#   test/run.sh               the whole test suite on a throwaway cluster
#
# The versioned install script is generated: the files of sql/src/ are
# concatenated in name order, one file per concern.

EXTENSION   = moverz_batch
EXTVERSION  = 0.1.0

MODULE_big  = moverz_batch
OBJS        = src/moverz_batch.o src/shmem.o src/worker_common.o src/photo_worker.o \
              src/claim.o src/ai_client.o src/inventory_worker.o

SQL_SOURCES = $(sort $(wildcard sql/src/*.sql))
DATA_built  = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA        = $(filter-out $(DATA_built),$(wildcard sql/$(EXTENSION)--*--*.sql))

REGRESS      = 01_create_batch 02_status_counters 03_progress_inventory 04_bad_input
REGRESS_OPTS = --inputdir=. --outputdir=results --dbname=moverz_regress

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS   = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK  = -lcurl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(DATA_built): $(SQL_SOURCES)
	cat $^ > $@

# The fake AI service used by the tests, the demo and the benchmarks.
FAKE_AI = test/fake_ai/fake_ai
$(FAKE_AI): test/fake_ai/fake_ai.c
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $< $(shell pkg-config --cflags --libs libmicrohttpd) -lpthread

fake_ai: $(FAKE_AI)
#all: $(FAKE_AI)

clean: clean-extra
clean-extra:
	rm -f $(FAKE_AI)
	rm -rf results

.PHONY: fake_ai clean-extra
