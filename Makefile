# evrep: event-driven replication between service databases through RabbitMQ.
# Built with PGXS; see README.md for the demo and test commands.

# EVREP_SRC: the source tree ("." for `make` here; the tree's path when built
# elsewhere with `make -f TREE/Makefile VPATH=TREE`, as pg_buildext does for
# the Debian package, see debian/rules).
EVREP_SRC := $(patsubst %/,%,$(dir $(firstword $(MAKEFILE_LIST))))

MODULE_big = evrep
OBJS = $(patsubst $(EVREP_SRC)/%.c,%.o,$(sort $(wildcard $(EVREP_SRC)/src/*.c)))
EXTENSION = evrep
DATA = evrep--1.0.sql evrep--1.0--1.1.sql
PGFILEDESC = "evrep - event-driven replication through RabbitMQ"

REGRESS = setup capture publish apply deadletter security copy roundtrip truncate history \
	contract subscribe_target large json_rows
ISOLATION = late_commit upgrade_claim
# initdb refuses to run as root: test/run runs installcheck as postgres with
# its output in a directory postgres owns.
REGRESS_DIR ?= $(CURDIR)
REGRESS_OPTS = --outputdir=$(REGRESS_DIR) --temp-instance=$(REGRESS_DIR)/tmp_check \
	--temp-config=$(abspath $(EVREP_SRC))/test/regress.conf --port=54329
ISOLATION_OPTS = --outputdir=$(REGRESS_DIR)/isolation --temp-instance=$(REGRESS_DIR)/tmp_check_iso \
	--temp-config=$(abspath $(EVREP_SRC))/test/regress.conf --port=54328

# librabbitmq through pkg-config. PGXS expands PG_CPPFLAGS as it reads it
# (CPPFLAGS :=), so these calls run for every make, also before
# scripts/install-deps.sh installed anything: quiet here, and a build without
# them stops with a message saying what is missing (evrep-deps below).
RABBITMQ_OK := $(shell pkg-config --exists librabbitmq 2>/dev/null && echo yes)
PG_CPPFLAGS = -I$(EVREP_SRC)/src $(if $(RABBITMQ_OK),$(shell pkg-config --cflags librabbitmq))
SHLIB_LINK = $(if $(RABBITMQ_OK),$(shell pkg-config --libs librabbitmq))
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare

EXTRA_CLEAN = tmp_check tmp_check_iso output_iso results log regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
EVREP_MISSING = $(if $(PGXS),, the PostgreSQL 15 server development files ($(PG_CONFIG) --pgxs failed);)$(if $(RABBITMQ_OK),, librabbitmq (pkg-config librabbitmq))
EVREP_DEPS_HINT = run scripts/install-deps.sh first (as root; ./test/run and make demo run it too)
ifneq ($(PGXS),)
include $(PGXS)
else
# no PostgreSQL server development files: PGXS's targets say so
all install installcheck: evrep-deps
endif

.PHONY: evrep-deps
evrep-deps:
	@echo "evrep cannot be built here, missing:$(EVREP_MISSING)" >&2
	@echo "$(EVREP_DEPS_HINT)" >&2
	@exit 1
ifneq ($(RABBITMQ_OK),yes)
$(OBJS): evrep-deps
endif

# PGXS knows no header dependencies: a changed struct must rebuild its users
$(OBJS): $(wildcard $(EVREP_SRC)/src/*.h)
# a build outside the tree writes src/*.o into a src/ of its own
ifneq ($(EVREP_SRC),.)
$(shell mkdir -p src)
endif

.PHONY: test demo demo-stop services format deb
test:
	./test/run
# demo: deps, build, RabbitMQ, two service databases and both services, rows
# replicating both ways, then a third database joining late (its copy); stops
# it all.  ./scripts/demo.sh keep leaves it running, make demo-stop stops it.
demo:
	./scripts/demo.sh
demo-stop:
	./scripts/demo.sh stop
# deb: the Debian package postgresql-15-evrep in build/deb/ (scripts/build-deb.sh)
deb:
	./scripts/build-deb.sh
services:
	$(MAKE) -C services
format:
	clang-format -i src/*.c src/*.h
