# evrep: event-driven replication between service databases through RabbitMQ.
# Built with PGXS; see README.md for the demo and test commands.

MODULE_big = evrep
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
EXTENSION = evrep
DATA = evrep--1.0.sql evrep--1.0--1.1.sql
PGFILEDESC = "evrep - event-driven replication through RabbitMQ"

REGRESS = setup capture publish apply deadletter security copy roundtrip truncate history
ISOLATION = late_commit
# initdb refuses to run as root: test/run runs installcheck as postgres with
# its output in a directory postgres owns.
REGRESS_DIR ?= $(CURDIR)
REGRESS_OPTS = --outputdir=$(REGRESS_DIR) --temp-instance=$(REGRESS_DIR)/tmp_check \
	--temp-config=$(CURDIR)/test/regress.conf --port=54329
ISOLATION_OPTS = --outputdir=$(REGRESS_DIR)/isolation --temp-instance=$(REGRESS_DIR)/tmp_check_iso \
	--temp-config=$(CURDIR)/test/regress.conf --port=54328

PG_CPPFLAGS = -Isrc $(shell pkg-config --cflags librabbitmq)
SHLIB_LINK = $(shell pkg-config --libs librabbitmq)
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare

EXTRA_CLEAN = tmp_check tmp_check_iso output_iso results log regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS knows no header dependencies: a changed struct must rebuild its users
$(OBJS): $(wildcard src/*.h)

.PHONY: test demo demo-stop services format
test:
	./test/run
# demo: deps, build, two databases + RabbitMQ + both services, show the
# replication, stop it all.  ./scripts/demo.sh keep leaves it running.
demo:
	./scripts/demo.sh
demo-stop:
	./scripts/demo.sh stop
services:
	$(MAKE) -C services
format:
	clang-format -i src/*.c src/*.h
