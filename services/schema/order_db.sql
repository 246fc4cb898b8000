-- Schema of OrderService's database (order_db).
--
-- orders:   owned by OrderService (published with
--           SELECT evrep_publish('orders');)
-- customer: replica of CustomerService's table (filled by evrep after
--           SELECT evrep_subscribe('customer');), never written by the
--           service
--
-- Both service databases hold both tables with identical definitions, so a
-- replicated row always fits.  orders.customer_id deliberately has no
-- foreign key to customer: the customer table here is a replica that may lag
-- behind CustomerService, and evrep applies changes with
-- session_replication_role = replica, which does not check foreign keys
-- anyway.  Instead OrderService.createOrder inserts only if the customer is
-- present in the replica, waiting up to --customer-wait-ms (default 2000)
-- for it, and otherwise fails with
-- "customer N not found (not yet replicated?)".
-- Idempotent: safe to run again.

CREATE TABLE IF NOT EXISTS customer (
    id            integer PRIMARY KEY,
    customer_name text    NOT NULL,
    credit_limit  integer NOT NULL
);

CREATE TABLE IF NOT EXISTS orders (
    id            integer PRIMARY KEY,
    order_amount  integer NOT NULL,
    status        text    NOT NULL,
    customer_id   integer NOT NULL
);

CREATE INDEX IF NOT EXISTS orders_customer_id_idx ON orders (customer_id);
