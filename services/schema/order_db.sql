-- Schema of OrderService's database (order_db).
--
-- orders:   owned by OrderService (published with
--           SELECT evrep_publish('orders');)
-- customer: replica of CustomerService's table (filled by evrep after
--           SELECT evrep_subscribe('customer');), never written by the
--           service
--
-- Both service databases hold both tables with identical definitions
-- (service_tables.sql), so a replicated row always fits.
-- orders.customer_id deliberately has no foreign key to customer: the
-- customer table here is a replica that may lag behind CustomerService, and
-- evrep applies changes with session_replication_role = replica, which does
-- not check foreign keys anyway.  Instead OrderService.createOrder inserts
-- only if the customer is present in the replica, waiting up to
-- --customer-wait-ms (default 2000) for it, and otherwise fails with
-- "customer N not found (not yet replicated?)".
-- Idempotent: safe to run again.

\ir service_tables.sql
