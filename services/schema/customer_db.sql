-- Schema of CustomerService's database (customer_db).
--
-- customer: owned by CustomerService (published with
--           SELECT evrep_publish('customer');)
-- orders:   replica of OrderService's table (filled by evrep after
--           SELECT evrep_subscribe('orders');), never written by the service
--
-- Both service databases hold both tables with identical definitions, so a
-- replicated row always fits.  There is no foreign key from orders to
-- customer in either database: a replica may lag behind its origin, and
-- evrep applies changes with session_replication_role = replica, which does
-- not check foreign keys anyway.  OrderService checks that the customer
-- exists (with a bounded wait) before it inserts an order.
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
