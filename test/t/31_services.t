#!/usr/bin/env bash
# 31_services: services/test_services.sh run by ./test/run -- CustomerService,
# OrderService and common_client against a private PostgreSQL without evrep
# or RabbitMQ (a topology.sh node with evrep=off; a fake replicator copies
# rows). The checks, ports (PostgreSQL 5891, services 9190/9191) and
# EVREP_TEST_* overrides are that script's; it builds the services itself
# (make -C services) and works in a directory of its own below
# EVREP_TEST_DIR. About 20 s.
exec "$(dirname "$0")/../../services/test_services.sh" "$@"
