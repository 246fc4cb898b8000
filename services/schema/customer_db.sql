-- Schema of CustomerService's database (customer_db).
--
-- customer: owned by CustomerService (published with
--           SELECT evrep_publish('customer');)
-- orders:   replica of OrderService's table (filled by evrep after
--           SELECT evrep_subscribe('orders');), never written by the service
--
-- Both service databases hold both tables with identical definitions
-- (service_tables.sql), so a replicated row always fits.  There is no
-- foreign key from orders to customer in either database: a replica may lag
-- behind its origin, and evrep applies changes with session_replication_role
-- = replica, which does not check foreign keys anyway.  OrderService checks
-- that the customer exists (with a bounded wait) before it inserts an order.
-- Idempotent: safe to run again.

\ir service_tables.sql
