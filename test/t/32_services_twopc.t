#!/usr/bin/env bash
# 32_services_twopc: services/twopc/test_twopc.sh run by ./test/run -- the
# two-phase commit baseline (customer_service_2pc, order_service_2pc) on two
# private PostgreSQL servers without evrep (topology.sh nodes with
# evrep=off): rows in both databases, a stopped peer, crashes before and
# after the decision, recovery, a concurrent load. The checks, ports
# (PostgreSQL 5895/5896, services 9491/9490) and EVREP_TEST_* overrides are
# that script's; it builds the services itself (make -C services). About 10 s.
exec "$(dirname "$0")/../../services/twopc/test_twopc.sh" "$@"
